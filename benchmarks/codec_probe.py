"""Where a codec checkpoint loses quality: the quantizer, the decoder's magnitudes, or its phase.

`python -m benchmarks.codec_probe [--checkpoint checkpoints/codec.pt] [--out runs/codec-probe.json]`
(with `--ship`, or `--readme FILE`, the table also replaces the `<!-- bench:codec-probe -->` block of docs/codec.md, or of FILE)

On the held-out speakers' clips (as `hark eval codec` prepares them), the decoder is run from the
2 kbps codes, from the 1 kbps codes and from the unquantised latent; and its 2 kbps STFT is
resynthesised with the input's phase in place of its own, the input's magnitudes with its own
phase (the decoder's 20 ms sqrt-Hann grid, the input analysed on that grid), and its magnitudes
with a phase built from them alone by phase-gradient heap integration (benchmarks.codec_phase). Each is scored like
the eval (PESQ-WB, STOI, log-mel distance, SI-SDR; mean over clips). Also how many entries of each
codebook the 2 kbps codes use, and their perplexity. Torch, not ONNX: the probe opens the graph.
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks import codec_phase, report
from benchmarks.codec import DEFAULT_DATA, METRICS, heldout_files, load_clip, score
from benchmarks.harness import display

REPO = Path(__file__).resolve().parent.parent
VARIANTS = {
    "2kbps": "2 kbps codes (as served)",
    "1kbps": "1 kbps codes",
    "unquantised": "unquantised latent (no bitrate limit)",
    "own_magnitude_input_phase": "2 kbps magnitudes, the input's phase",
    "input_magnitude_own_phase": "the input's magnitudes, the 2 kbps phase",
    "own_magnitude_pghi_phase": "2 kbps magnitudes, phase from them by PGHI (no training)",
}


def _input_spectrum(model: Any, padded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The input on the decoder's grid (its synthesis window's analysis twin, same causal framing)."""
    return model.decoder.analyse(padded)


@functools.lru_cache(maxsize=None)
def _lambda(n_fft: int) -> float:
    """The Gaussian width PGHI assumes for the decoder's sqrt-Hann synthesis window."""
    from models.codec import _periodic_hann

    return codec_phase.gaussian_lambda(np.sqrt(_periodic_hann(n_fft)))


@torch.no_grad()
def probe_clip(model: Any, ref: np.ndarray, counts: list[np.ndarray]) -> dict[str, dict[str, float]]:
    x = model.pad(torch.from_numpy(ref)[None])
    z = model.encoder(x)
    q = model.quantizer
    codes = q.encode(z, q.stages)
    for g in range(q.groups):
        for s in range(q.stages):
            counts[g * q.stages + s] += np.bincount(codes[0, :, g, s].numpy(), minlength=counts[0].size)
    re, im = model.decoder.spectrum(q.decode(codes))
    tre, tim = _input_spectrum(model, x)
    n = min(re.shape[-1], tre.shape[-1])
    mag, phase = torch.hypot(re, im)[..., :n], torch.atan2(im, re)[..., :n]
    tmag, tphase = torch.hypot(tre, tim)[..., :n], torch.atan2(tim, tre)[..., :n]
    synthesise = model.decoder.synthesise
    cfg = model.cfg
    pghi_phase = torch.from_numpy(codec_phase.pghi(mag[0].double().numpy(), cfg.n_fft, cfg.hop, _lambda(cfg.n_fft)))
    pghi_phase = pghi_phase[None].to(mag.dtype)
    out = {
        "2kbps": synthesise(re, im),
        "1kbps": model.decoder(q.decode(codes[..., :1])),
        "unquantised": model.decoder(z),
        "own_magnitude_input_phase": synthesise(mag * torch.cos(tphase), mag * torch.sin(tphase)),
        "input_magnitude_own_phase": synthesise(tmag * torch.cos(phase), tmag * torch.sin(phase)),
        "own_magnitude_pghi_phase": synthesise(mag * torch.cos(pghi_phase), mag * torch.sin(pghi_phase)),
    }
    return {name: score(ref, audio[0, :ref.size].numpy()) for name, audio in out.items()}


def probe(checkpoint: Path, data: list[Path], limit_s: float | None = None) -> dict[str, Any]:
    from tqdm import tqdm

    from export.codec import load_checkpoint

    torch.set_num_threads(1)
    model, _ = load_checkpoint(checkpoint)
    files = heldout_files(data)
    counts = [np.zeros(model.cfg.codebook_size) for _ in model.quantizer.codebooks]
    per_clip = [probe_clip(model, load_clip(f, limit_s), counts) for f in tqdm(files, desc="probe", file=sys.stderr)]
    means = {name: {key: round(float(np.mean([c[name][key] for c in per_clip])), 4) for key, *_ in METRICS}
             for name in VARIANTS}
    usage = []
    for c in counts:
        p = c[c > 0] / c.sum()
        usage.append({"used": int((c > 0).sum()), "perplexity": round(float(np.exp(-(p * np.log(p)).sum())), 1)})
    return {"checkpoint": display(checkpoint), "clips": len(files), "codebook_size": model.cfg.codebook_size,
            "variants": means, "codebooks": usage}


def render(result: dict[str, Any]) -> str:
    lines = ["| decoder run from | " + " | ".join(title for _, title, *_ in METRICS) + " |",
             "|---|" + "---:|" * len(METRICS)]
    for name, title in VARIANTS.items():
        m = result["variants"][name]
        lines.append(f"| {title} | " + " | ".join(f"{m[key]:.{digits}f}" for key, _, digits, _ in METRICS) + " |")
    books = ", ".join(f"{b['used']} used / perplexity {b['perplexity']:.0f}" for b in result["codebooks"])
    return ("\n".join(lines) + f"\n\nCodebook entries the 2 kbps codes use (of {result['codebook_size']}): {books}. "
            f"`python -m benchmarks.codec_probe` on {result['checkpoint']}, {result['clips']} held-out clips; "
            "mean over clips.\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=REPO / "checkpoints" / "codec.pt")
    parser.add_argument("--data", type=Path, nargs="+", default=[DEFAULT_DATA])
    parser.add_argument("--limit-seconds", type=float, default=None)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "codec-probe.json")
    parser.add_argument("--readme", type=Path, default=None, help="a markdown file whose codec-probe block to refresh")
    parser.add_argument("--ship", action="store_true", help="refresh the codec-probe block of docs/codec.md")
    args = parser.parse_args(argv)
    result = probe(args.checkpoint, args.data, args.limit_seconds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    table = render(result)
    readme = args.readme or (report.family_page(REPO, "codec-probe") if args.ship else None)
    if readme is not None:
        report.update_readme(readme, table, "codec-probe")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
