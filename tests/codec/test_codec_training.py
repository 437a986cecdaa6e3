"""Codec training pieces: the speaker split, training windows, losses, critics and the GAN loop."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from models.codec import Codec, CodecConfig
from models.codec_stream import DecoderStep, EncoderStep
from models.discriminators import Critics
from training.codec import CodecLoss, LossConfig
from training.data.speech import HELDOUT_SPEAKERS, SpeechWindows, speaker_of, split_files
from training.loop import LoopConfig, fit, slim_checkpoint
from training.losses import SpectralLoss, mel_filterbank

TINY = CodecConfig(channels=16, encoder_layers=2, decoder_channels=16, decoder_layers=1, latent_dim=8,
                   codebook_size=16)


@pytest.fixture()
def speech_dir(tmp_path):
    """Three training speakers and one held-out speaker, as LibriSpeech-named FLAC files."""
    rng = np.random.default_rng(0)
    heldout = sorted(HELDOUT_SPEAKERS)[0].removeprefix("librispeech-")
    for spk in ("19", "26", "32", heldout):
        sf.write(tmp_path / f"{spk}-100-0000.flac", (rng.standard_normal(16000) * 0.05).astype(np.float32), 16000)
    return tmp_path


def test_speakers_and_split(speech_dir) -> None:
    assert speaker_of("1034-121119-0000.flac") == "librispeech-1034"
    assert speaker_of("cmu_arctic_us_aew_a0001.wav") == "arctic-aew"
    assert len(HELDOUT_SPEAKERS) == 20
    train, held = split_files([speech_dir], "train"), split_files([speech_dir], "heldout")
    assert len(train) == 3 and len(held) == 1 and speaker_of(held[0]) in HELDOUT_SPEAKERS
    with pytest.raises(FileNotFoundError):
        split_files([speech_dir / "nope"], "train")


def test_windows_never_read_heldout_speakers(speech_dir) -> None:
    ds = SpeechWindows([speech_dir], 3200, length=8, seed=1)
    assert all(speaker_of(f) not in HELDOUT_SPEAKERS for f in ds.files)
    a, b = ds[3]["audio"], ds[3]["audio"]
    assert a.shape == (3200,) and torch.equal(a, b)  # a window depends only on (seed, epoch, index)
    rms_db = 20 * np.log10(float(a.pow(2).mean().sqrt()))
    assert -36 <= rms_db <= -14


def test_mel_filterbank_covers_the_band() -> None:
    fb = mel_filterbank(16000, 512, 40)
    assert fb.shape == (40, 257) and (fb.sum(axis=0)[3:-3] > 0).all() and fb.max() <= 1.0


def test_spectral_loss_is_zero_only_for_equal_signals() -> None:
    loss = SpectralLoss(16000)
    x = torch.randn(2, 8000) * 0.1
    same = loss(x, x)
    assert all(float(v) < 1e-6 for v in same.values())
    assert float(loss(x * 0.5, x)["mel"]) > 0.1


def test_critics_see_real_and_generated_audio() -> None:
    outs = Critics()(torch.randn(3, 5120))
    assert len(outs) == 8 and all(logits.shape[0] == 3 and feats for logits, feats in outs)


def test_gan_loop_trains_critics_and_resumes_from_a_slim_checkpoint(speech_dir, tmp_path) -> None:
    ds = SpeechWindows([speech_dir], 3200, length=8, seed=0)
    loss = CodecLoss(LossConfig(adversarial_start=1, critic_seconds=0.1), 16000)
    cfg = LoopConfig(steps=3, batch_size=4, lr=1e-3, num_workers=0, device="cpu", log_every=1)
    run = tmp_path / "run"
    critics = Critics()
    before = [p.detach().clone() for p in critics.parameters()]
    summary = fit(Codec(TINY), loss, ds, cfg, run, extra_state={"model_config": TINY.to_dict()}, critic=critics)
    assert summary["steps"] == 3 and "critic" in summary["last"] and "feature_matching" in summary["last"]
    assert any(not torch.equal(a, b) for a, b in zip(before, critics.parameters()))
    state = torch.load(run / "last.pt", weights_only=False)
    assert {"critic", "critic_optimizer", "optimizer"} <= set(state)
    slim_checkpoint(run / "last.pt", run / "last.pt")
    state = torch.load(run / "last.pt", weights_only=False)
    assert "optimizer" not in state and state["model"]["decoder.head.weight"].dtype == torch.float16
    cfg.steps = 4
    summary = fit(Codec(TINY), loss, ds, cfg, run, resume=True, critic=Critics())
    assert summary["steps"] == 4


def test_streaming_steps_reproduce_the_whole_signal() -> None:
    torch.manual_seed(0)
    model = Codec(TINY).eval()
    x = torch.randn(1, 320 * 9) * 0.1
    with torch.no_grad():
        codes, audio = model.encode(x), model.decode(model.encode(x))
        enc, dec = EncoderStep(model), DecoderStep(model)
        es, ds, cs, ys = enc.initial_state(), dec.initial_state(), [], []
        for a, b in ((0, 2), (2, 3), (3, 9)):
            c, *es = enc(x[:, a * 320:b * 320], *es)
            y, *ds = dec(c, *ds)
            cs.append(c)
            ys.append(y)
    assert torch.equal(torch.cat(cs, 1), codes)
    streamed = torch.cat(ys + [ds[-1]], -1)[:, dec.overlap:]
    assert torch.allclose(streamed, audio, atol=1e-5)
