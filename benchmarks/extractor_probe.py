"""How fast the extractor's separator learns to pick one voice out of two, and how far that carries
to voices it never heard.

`python -m benchmarks.extractor_probe [--corpora librispeech,speechocean] [--speakers N] [--seed S] [--steps 2000]`
`python -m benchmarks.extractor_probe --table runs/extractor-probe`  (the README's rows, from the runs' JSON)

Dry pairs at 0 dB, the same signal at both ears: 2 s of a training speaker plus 2 s of another at
the same level. The separator of models/extractor.py (2 x 128 GRU; the enrollment encoder is not
used) is told the target's teacher d-vector and trained on negative SNR for --steps steps of 8
pairs (AdamW, 1e-3 annealed to zero), on one thread (about 4 minutes per 1000 steps here). It is
then scored, SI-SNRi as `hark eval extractor` computes it, on 256 pairs of the held-out speakers,
paired at random and paired man with woman. `--speakers N` trains on a random N of the training speakers: repeated over N, it shows
what more voices buy. `--corpora` picks the training corpora: LibriSpeech (one ~12 s excerpt per
speaker) and/or speechocean762 (all of a speaker's ~20 utterances of 2-8 s, joined; children and
adults); the held-out speakers are always the 20 LibriSpeech ones. Needs the teacher d-vectors of
`hark data extractor` and the sex of each speaker (LibriSpeech's SPEAKERS.TXT, speechocean762's
spk2gender, in the shared speech corpus). Each run writes its JSON to
runs/extractor-probe/<corpora>-<speakers>-seed<S>.json (or --out).
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
# Corpus name -> its folder under the speech directory.
CORPORA = {"librispeech": "librispeech-train-clean-100", "speechocean": "speechocean762"}
WINDOW = 32000  # 2 s at 16 kHz
LEVEL = 0.1


@dataclass
class Voice:
    audio: np.ndarray
    dvector: np.ndarray  # the teacher's, at normal speed
    sex: str
    speaker: str = ""
    files: int = 1  # recordings joined into `audio`


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


def speechocean_sexes(speech_dir: Path) -> dict[str, str]:
    """Speaker id as training.data.speech names it -> 'M' or 'F', from speechocean762's spk2gender
    (Kaldi style, `0001 m`; ids without the SPEAKER prefix of the folders)."""
    sexes = {}
    for path in Path(speech_dir).rglob("spk2gender"):
        for line in path.read_text().splitlines():
            fields = line.split()
            if len(fields) == 2:
                sexes[f"speechocean-{fields[0]}"] = fields[1].upper()
    if not sexes:
        raise FileNotFoundError(f"no speechocean762 spk2gender under {speech_dir}: the probe pairs voices by sex")
    return sexes


def corpus_dirs(speech_dir: Path, corpora: list[str]) -> list[Path]:
    """The folders of `corpora` under `speech_dir`: only these are read (and decoded)."""
    unknown = [c for c in corpora if c not in CORPORA]
    if unknown:
        raise ValueError(f"unknown corpora {unknown}; known: {', '.join(CORPORA)}")
    dirs = [Path(speech_dir) / CORPORA[c] for c in corpora]
    missing = [str(d) for d in dirs if not d.is_dir()]
    if missing:
        raise FileNotFoundError(f"corpus folders not found: {', '.join(missing)}")
    return dirs


def load_voices(sources: list[Path], split: str, dvector_file: Path, sexes: dict[str, str]) -> list[Voice]:
    """The split's speakers of known sex with at least one window of speech, one voice per speaker
    (all of a speaker's files joined, as `training.data.scenes.Voices` does)."""
    from training.data.scenes import SPEEDS, Voices
    from training.data.speech import speaker_of, split_files

    files: dict[str, int] = {}
    for f in split_files(sources, split):
        files[speaker_of(f)] = files.get(speaker_of(f), 0) + 1
    voices = Voices.load(sources, split, dvector_file)
    normal = SPEEDS.index(1.0)
    return [Voice(a, voices.dvectors[i][normal], sexes[s], s, files[s])
            for i, (a, s) in enumerate(zip(voices.audio, voices.speakers)) if len(a) >= WINDOW and s in sexes]


def describe(voices: list[Voice]) -> dict:
    """How much speech per speaker the probe trained on, per corpus."""
    out = {}
    for corpus in sorted({v.speaker.split("-")[0] for v in voices}):
        mine = [v for v in voices if v.speaker.split("-")[0] == corpus]
        seconds = [len(v.audio) / 16000 for v in mine]
        out[corpus] = {"speakers": len(mine), "men": sum(v.sex == "M" for v in mine),
                       "files_per_speaker": round(float(np.mean([v.files for v in mine])), 1),
                       "seconds_per_speaker_mean": round(float(np.mean(seconds)), 1),
                       "seconds_per_speaker_median": round(float(np.median(seconds)), 1),
                       "minutes": round(sum(seconds) / 60, 1)}
    return out


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


def table(folder: Path) -> str:
    """Markdown rows of the README's probe table from the runs' JSON under `folder`: one row per
    (corpora, speakers, steps), the mean over seeds and each seed's held-out value in brackets."""
    runs: dict[tuple, list[dict]] = {}
    for path in sorted(Path(folder).glob("*.json")):
        r = json.loads(path.read_text())
        runs.setdefault((r.get("corpora", "librispeech"), r["speakers"], r["steps"]), []).append(r)
    lines = []
    for (corpora, speakers, steps), rs in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        rs.sort(key=lambda r: r["seed"])
        mean = lambda key: float(np.mean([r[key] for r in rs]))  # noqa: E731
        parts = " + ".join(f"{c} {d['speakers']}" for c, d in rs[0].get("training_data", {}).items())
        seeds = ", ".join(f"{r['heldout_si_snri_db']:.2f}" for r in rs)
        lines.append(f"| {speakers} ({parts or corpora}) | {mean('training_si_snri_db'):+.2f} | "
                     f"{mean('heldout_si_snri_db'):+.2f} ({seeds}) | {mean('heldout_cross_sex_si_snri_db'):+.2f} |"
                     + ("" if steps == 2000 else f" <!-- {steps} steps -->"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--speech", type=Path, default=DEFAULT_SPEECH)
    parser.add_argument("--corpora", default="librispeech",
                        help=f"comma-separated training corpora: {', '.join(CORPORA)} (held out: LibriSpeech's 20)")
    parser.add_argument("--dvectors", type=Path, default=REPO / "data" / "extractor",
                        help="the folder of `hark data extractor` (dvectors_train.npz, dvectors_heldout.npz)")
    parser.add_argument("--speakers", type=int, default=None, help="train on a random N of the training speakers")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None,
                        help="result JSON (default runs/extractor-probe/<corpora>-<speakers>-seed<S>.json)")
    parser.add_argument("--make-dvectors", action="store_true",
                        help="write --dvectors DIR's tables first where missing, at normal speed only (all the "
                             "probe uses; minutes, where `hark data extractor`'s five speeds take far longer)")
    parser.add_argument("--table", type=Path, default=None, metavar="DIR",
                        help="print the README table's rows from the JSON files in DIR and exit")
    args = parser.parse_args(argv)
    if args.table:
        print(table(args.table))
        return 0
    torch.set_num_threads(1)
    corpora = [c.strip() for c in args.corpora.split(",") if c.strip()]
    train_dirs, held_dirs = corpus_dirs(args.speech, corpora), corpus_dirs(args.speech, ["librispeech"])
    if args.make_dvectors:
        from training.data.scenes import teacher_dvectors

        args.dvectors.mkdir(parents=True, exist_ok=True)
        for split, dirs in (("train", train_dirs), ("heldout", held_dirs)):
            if not (args.dvectors / f"dvectors_{split}.npz").exists():
                np.savez(args.dvectors / f"dvectors_{split}.npz", **teacher_dvectors(dirs, split, speeds=(1.0,)))
    sexes = librispeech_sexes(args.speech)
    if "speechocean" in corpora:
        sexes.update(speechocean_sexes(args.speech))
    train = load_voices(train_dirs, "train", args.dvectors / "dvectors_train.npz", sexes)
    if args.speakers:
        keep = np.random.default_rng(123).permutation(len(train))[:args.speakers]
        train = [train[i] for i in sorted(keep)]
    print(f"training on {len(train)} speakers ({sum(v.sex == 'M' for v in train)} men)", file=sys.stderr)
    model, trained = train_probe(train, args.steps, args.seed, log=lambda m: print(m, file=sys.stderr))
    # Held-out voices are read after training: their d-vectors may still be being written.
    held = load_voices(held_dirs, "heldout",
                       args.dvectors / "dvectors_heldout.npz", sexes)
    print(f"scoring on {len(held)} held-out speakers", file=sys.stderr)
    result = {"corpora": "+".join(corpora), "speakers": len(train), "steps": args.steps, "seed": args.seed,
              "training_data": describe(train), "heldout_speakers": len(held),
              "dvectors": str(args.dvectors),
              "training_si_snri_db": round(trained, 3),
              "heldout_si_snri_db": round(heldout_si_snri(model, held, cross=False), 3),
              "heldout_cross_sex_si_snri_db": round(heldout_si_snri(model, held, cross=True), 3),
              "command": "python -m benchmarks.extractor_probe " + " ".join(sys.argv[1:] if argv is None else argv)}
    out = args.out or REPO / "runs" / "extractor-probe" / f"{'+'.join(corpora)}-{len(train)}-seed{args.seed}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
