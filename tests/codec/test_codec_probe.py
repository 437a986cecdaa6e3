"""benchmarks.codec_probe: the input's own spectrum on the decoder's grid resynthesises the input,
and a probe of a tiny checkpoint scores every variant and counts codebook use."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from benchmarks import codec_probe
from models.codec import Codec, CodecConfig

TINY = CodecConfig(channels=16, encoder_layers=2, decoder_channels=16, decoder_layers=1, latent_dim=8,
                   codebook_size=16)


def test_the_input_spectrum_resynthesises_the_input() -> None:
    model = Codec(TINY).eval()
    x = model.pad(torch.randn(1, 3000) * 0.1)
    re, im = codec_probe._input_spectrum(model, x)
    y = model.decoder.synthesise(re, im)
    assert np.abs(y[0, :x.shape[-1]].numpy() - x[0].numpy()).max() < 1e-5


def test_probe_scores_every_variant_and_counts_codes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    checkpoint = tmp_path / "tiny.pt"
    torch.save({"model": Codec(TINY).state_dict(), "model_config": TINY.to_dict(), "step": 0}, checkpoint)
    speech = tmp_path / "speech"
    speech.mkdir()
    t = np.arange(16000) / 16000
    sf.write(speech / "6147-1-0000.flac", (0.2 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), 16000)
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- bench:codec-probe -->\nold\n<!-- /bench:codec-probe -->\nend\n")
    out = tmp_path / "probe.json"
    assert codec_probe.main(["--checkpoint", str(checkpoint), "--data", str(speech), "--out", str(out),
                             "--readme", str(readme)]) == 0
    result = json.loads(out.read_text())
    assert set(result["variants"]) == set(codec_probe.VARIANTS) and result["clips"] == 1
    assert all(np.isfinite(v["stoi"]) for v in result["variants"].values())
    assert len(result["codebooks"]) == TINY.groups * TINY.stages
    assert all(1 <= b["used"] <= TINY.codebook_size for b in result["codebooks"])
    text = readme.read_text()
    assert "old" not in text and "perplexity" in text and text.endswith("end\n")
