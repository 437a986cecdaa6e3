"""How fast the extractor's separator learns to pick one voice out of two, and how far that carries
to voices it never heard.

`python -m benchmarks.extractor_probe [--speakers N] [--steps 2000] [--out runs/extractor-probe.json]`

Dry pairs at 0 dB, the same signal at both ears: 2 s of a training speaker plus 2 s of another at
the same level. The separator of models/extractor.py (2 x 128 GRU; the enrollment encoder is not
used) is told the target's teacher d-vector and trained on negative SNR for --steps steps of 8
pairs (AdamW, 1e-3 annealed to zero), on one thread (about 4 minutes per 1000 steps here). It is
then scored, SI-SNRi as `hark eval extractor` computes it, on 256 pairs of the held-out speakers,
paired at random and paired man with woman. `--speakers N` trains on a random N of the training speakers: repeated over N, it shows
what more voices buy. Needs the teacher d-vectors of `hark data extractor` and the sex of each
LibriSpeech speaker (its SPEAKERS.TXT, in the shared speech corpus).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SPEECH = REPO.parent / "shared" / "data" / "real" / "speech"
WINDOW = 32000  # 2 s at 16 kHz
LEVEL = 0.1


@dataclass
class Voice:
    audio: np.ndarray
    dvector: np.ndarray  # the teacher's, at normal speed
    sex: str


def librispeech_sexes(speech_dir: Path) -> dict[str, str]:
    """Speaker id as training.data.speech names it -> 'M' or 'F', from LibriSpeech's SPEAKERS.TXT."""
    sexes = {}
    for path in Path(speech_dir).rglob("SPEAKERS.TXT"):
        for line in path.read_text().splitlines():
            if line.strip() and not line.startswith(";"):
                fields = [x.strip() for x in line.split("|")]
                sexes[f"librispeech-{fields[0]}"] = fields[1]
    if not sexes:
        raise FileNotFoundError(f"no LibriSpeech SPEAKERS.TXT under {speech_dir}: the probe pairs voices by sex")
    return sexes


def load_voices(speech_dir: Path, split: str, dvector_file: Path, sexes: dict[str, str]) -> list[Voice]:
    """The split's speakers of known sex with at least one window of speech."""
    from training.data.scenes import SPEEDS, Voices

    voices = Voices.load([speech_dir], split, dvector_file)
    normal = SPEEDS.index(1.0)
    return [Voice(a, voices.dvectors[i][normal], sexes[s]) for i, (a, s) in enumerate(zip(voices.audio, voices.speakers))
            if len(a) >= WINDOW and s in sexes]


def pairs(voices: list[Voice], rng: np.random.Generator, n: int, cross: bool
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n (mixture, target) pairs at 0 dB, both [n, 2 ears, WINDOW], and the targets' d-vectors."""
    mixes, targets, dvectors = [], [], []
    for _ in range(n):
        i = int(rng.integers(len(voices)))
        others = [k for k in range(len(voices)) if k != i and (not cross or voices[k].sex != voices[i].sex)]
        j = others[int(rng.integers(len(others)))]
        at, bt = (int(rng.integers(len(voices[k].audio) - WINDOW + 1)) for k in (i, j))
        a, b = voices[i].audio[at:at + WINDOW], voices[j].audio[bt:bt + WINDOW]
        b = b * np.sqrt((a @ a) / (b @ b + 1e-9))
        mixes.append(a + b)
        targets.append(a)
        dvectors.append(voices[i].dvector)
    ears = lambda x: (torch.from_numpy(np.stack(x).astype(np.float32))[:, None] * LEVEL).expand(-1, 2, -1)  # noqa: E731
    return ears(mixes), ears(targets), torch.from_numpy(np.stack(dvectors))


def train_probe(voices: list[Voice], steps: int, seed: int = 0, log=print) -> tuple[torch.nn.Module, float]:
    """Train a fresh separator; returns it and its mean training-batch SI-SNRi over the last 100 steps."""
    from models.extractor import Extractor, ExtractorConfig
    from training.extractor import si_snri_db, snr_db

    torch.manual_seed(seed)
    model = Extractor(ExtractorConfig(hidden=128, layers=2, embed_dim=voices[0].dvector.size))
    opt = torch.optim.AdamW([p for n, p in model.named_parameters() if not n.startswith("enroll")], 1e-3)
    # Annealed to zero: at a constant rate the held-out score of the last step swings by tenths of
    # a dB from one step to the next, as much as the effects the probe is for.
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.5 * (1 + math.cos(math.pi * k / steps)))
    rng, history, start = np.random.default_rng(seed), [], time.time()
    for step in range(1, steps + 1):
        mix, target, dvector = pairs(voices, rng, 8, cross=False)
        out = model(mix, dvector)
        loss = -snr_db(out, target, 30.0).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        schedule.step()
        history.append(si_snri_db(out.detach(), target, mix).mean().item())
        if step % 100 == 0:
            log(f"step {step}: training SI-SNRi {np.mean(history[-100:]):+.2f} dB ({time.time() - start:.0f} s)")
    return model, float(np.mean(history[-100:]))


@torch.no_grad()
def heldout_si_snri(model: torch.nn.Module, voices: list[Voice], cross: bool, batches: int = 32, seed: int = 1) -> float:
    from training.extractor import si_snri_db

    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(batches):
        mix, target, dvector = pairs(voices, rng, 8, cross)
        scores.append(si_snri_db(model(mix, dvector), target, mix).mean().item())
    return float(np.mean(scores))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--speech", type=Path, default=DEFAULT_SPEECH)
    parser.add_argument("--dvectors", type=Path, default=REPO / "data" / "extractor",
                        help="the folder of `hark data extractor` (dvectors_train.npz, dvectors_heldout.npz)")
    parser.add_argument("--speakers", type=int, default=None, help="train on a random N of the training speakers")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "extractor-probe.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    sexes = librispeech_sexes(args.speech)
    train = load_voices(args.speech, "train", args.dvectors / "dvectors_train.npz", sexes)
    held = load_voices(args.speech, "heldout", args.dvectors / "dvectors_heldout.npz", sexes)
    if args.speakers:
        keep = np.random.default_rng(123).permutation(len(train))[:args.speakers]
        train = [train[i] for i in sorted(keep)]
    print(f"training on {len(train)} speakers ({sum(v.sex == 'M' for v in train)} men), "
          f"scoring on {len(held)}", file=sys.stderr)
    model, trained = train_probe(train, args.steps, args.seed, log=lambda m: print(m, file=sys.stderr))
    result = {"speakers": len(train), "steps": args.steps, "seed": args.seed, "training_si_snri_db": round(trained, 3),
              "heldout_si_snri_db": round(heldout_si_snri(model, held, cross=False), 3),
              "heldout_cross_sex_si_snri_db": round(heldout_si_snri(model, held, cross=True), 3)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
