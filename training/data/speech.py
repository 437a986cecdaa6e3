"""Speech for the codec: real recordings split by speaker, and random training windows.

Speakers, not utterances, are held out: a codec that has heard a voice in training flatters
itself on it. The 20 LibriSpeech speakers in HELDOUT_SPEAKERS are never trained on and form the
evaluation set. They are the 20 lowest SHA-1 hashes of "librispeech-<id>" over the shared
corpus; the list is written out so that a packed subset of the corpus splits the same way.

`hark data codec --out DIR` copies one split as 16 kHz FLAC (optionally trimmed per file), the
form in which a training set travels to another machine.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

SAMPLE_RATE = 16000
AUDIO_EXTS = {".wav", ".flac", ".ogg", ".opus"}
DEFAULT_SOURCES = ["../shared/data/real/speech"]
HELDOUT_SPEAKERS = frozenset(f"librispeech-{s}" for s in (
    "6147", "446", "7800", "5104", "226", "6209", "3240", "1098", "8465", "3857",
    "7302", "8095", "211", "2416", "87", "150", "4137", "909", "39", "1263"))


def speaker_of(path: str | Path) -> str:
    """A corpus-qualified speaker id from the file name (LibriSpeech, CMU ARCTIC, LJSpeech) or,
    for speechocean762, from its SPEAKER<id> folder."""
    name, folder = Path(path).stem, Path(path).parent.name
    if m := re.match(r"^SPEAKER(\d+)$", folder):
        return f"speechocean-{m.group(1)}"
    if m := re.match(r"^(\d+)-\d+-\d+$", name):
        return f"librispeech-{m.group(1)}"
    if m := re.match(r"^cmu_arctic_\w\w_(\w+?)_[ab]\d+$", name):
        return f"arctic-{m.group(1)}"
    if name.startswith("LJ"):
        return "ljspeech"
    return f"{folder}-{name}"


def list_audio(dirs: list[str | Path]) -> list[Path]:
    missing = [str(d) for d in dirs if not Path(d).is_dir()]
    if missing:
        raise FileNotFoundError(f"speech directories not found: {', '.join(missing)}")
    return sorted(p for d in dirs for p in Path(d).rglob("*") if p.suffix.lower() in AUDIO_EXTS)


def split_files(dirs: list[str | Path], split: str) -> list[Path]:
    """The files of one split ('train' or 'heldout') under `dirs`."""
    if split not in ("train", "heldout"):
        raise ValueError(f"unknown split {split!r}")
    return [f for f in list_audio(dirs) if (speaker_of(f) in HELDOUT_SPEAKERS) == (split == "heldout")]


def load(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 at `sample_rate`."""
    audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if sr != sample_rate:
        import soxr  # only where a file needs it: a packed 16 kHz set does not

        audio = soxr.resample(audio, sr, sample_rate).astype(np.float32)
    return audio


def normalise(audio: np.ndarray, target_db: float = -25.0) -> np.ndarray:
    """Scale to an RMS of `target_db` dBFS (clipped to [-1, 1])."""
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2) + 1e-12))
    return np.clip(audio * (10 ** (target_db / 20) / rms), -1, 1).astype(np.float32)


class SpeechWindows(Dataset):
    """`length` random windows per epoch from the training speakers, held in memory.

    Window i of epoch e depends only on (seed, e, i). Augmentation: a random level, and with
    probability `speed_prob` a resampling by up to +-`speed_range` (pitch, formants and rate move
    together: cheap extra voices).
    """

    def __init__(self, dirs: list[str | Path], window_samples: int, length: int, seed: int = 0,
                 level_db: tuple[float, float] = (-35.0, -15.0), speed_prob: float = 0.5,
                 speed_range: float = 0.1):
        files = split_files(dirs, "train")
        if not files:
            raise ValueError(f"no training speech under {dirs}")
        self.audio = [normalise(load(f)) for f in tqdm(files, desc="loading speech", unit="file", leave=False)]
        self.files = files
        self.window, self.length, self.seed, self.epoch = window_samples, length, seed, 0
        self.level_db, self.speed_prob, self.speed_range = level_db, speed_prob, speed_range
        weights = np.array([len(a) for a in self.audio], dtype=np.float64)
        self.p = weights / weights.sum()

    @property
    def seconds(self) -> float:
        return sum(len(a) for a in self.audio) / SAMPLE_RATE

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, i])
        audio = self.audio[int(rng.choice(len(self.audio), p=self.p))]
        speed = 1.0 + rng.uniform(-self.speed_range, self.speed_range) if rng.random() < self.speed_prob else 1.0
        span = int(np.ceil(self.window * speed)) + 1
        start = int(rng.integers(0, max(len(audio) - span, 1)))
        piece = audio[start:start + span]
        piece = np.pad(piece, (0, max(span - len(piece), 0)))
        if speed != 1.0:  # linear interpolation is enough at +-10 %: the codec sees the result as-is
            piece = np.interp(np.arange(self.window) * speed, np.arange(span), piece).astype(np.float32)
        else:
            piece = piece[:self.window]
        rms = float(np.sqrt(np.mean(piece.astype(np.float64) ** 2) + 1e-12))
        gain = 10 ** (rng.uniform(*self.level_db) / 20) / max(rms, 10 ** (-50 / 20))
        return {"audio": torch.from_numpy(np.clip(piece * gain, -1, 1).astype(np.float32))}


def pack(sources: list[str | Path], out: Path, split: str, max_seconds: float | None = None) -> list[Path]:
    """Write one split as 16 kHz FLAC under `out`, keeping file names (and so speakers)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for f in tqdm(split_files(sources, split), desc=f"packing {split}", unit="file"):
        audio = load(f)
        if max_seconds:
            audio = audio[:int(max_seconds * SAMPLE_RATE)]
        path = out / f"{f.stem}.flac"
        sf.write(str(path), audio, SAMPLE_RATE, subtype="PCM_16")
        written.append(path)
    return written


def add_arguments_data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="directory to write 16 kHz FLAC files into")
    parser.add_argument("--split", choices=["train", "heldout"], default="train",
                        help="train: every speaker but the 20 held-out ones; heldout: only those")
    parser.add_argument("--source", action="append", help=f"speech directories (default {DEFAULT_SOURCES})")
    parser.add_argument("--max-seconds", type=float,
                        help="keep at most this much of each file (a smaller set to carry elsewhere)")


def run_data(args: argparse.Namespace) -> int:
    files = pack(args.source or DEFAULT_SOURCES, args.out, args.split, args.max_seconds)
    seconds = sum(sf.info(str(p)).duration for p in files)
    print(f"wrote {len(files)} files, {seconds / 60:.1f} min, to {args.out}")
    return 0
