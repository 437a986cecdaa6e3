"""Random fixed-length windows of rendered music with frame-level onset/note/contour targets."""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from training.data.augment import AugmentConfig, Augmenter

PRE_ROLL_S = 1.0  # audio before the window, so augmentation reverb has a history


@dataclass
class Clip:
    wav: Path
    notes: np.ndarray  # [n, 4]: onset_s, offset_s, midi_pitch, velocity
    frames: int


def read_notes_csv(path: Path) -> np.ndarray:
    rows = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    if len(rows) <= 1:
        return np.zeros((0, 4))
    data = np.loadtxt(rows[1:], delimiter=",", ndmin=2)
    if data.shape[1] == 3:
        data = np.concatenate([data, np.full((len(data), 1), 80.0)], axis=1)
    return data[:, :4]


def is_validation(name: str, every: int) -> bool:
    """A stable slice of the training set that is never trained on (threshold tuning, val loss)."""
    return zlib.crc32(name.encode()) % every == 0


def load_clips(dirs: list[str | Path], subset: str = "train", validation_every: int = 50,
               known: dict[Path, Clip] | None = None) -> list[Clip]:
    """Clips of `subset` ('train' or 'validation'); `known` ones are reused without re-reading."""
    known = known or {}
    clips = []
    for d in dirs:
        for csv in sorted((Path(d) / "notes").glob("*.csv")):
            wav = Path(d) / "audio" / (csv.stem + ".wav")
            if not wav.exists() or is_validation(csv.stem, validation_every) != (subset == "validation"):
                continue
            clips.append(known.get(wav) or Clip(wav, read_notes_csv(csv), sf.info(str(wav)).frames))
    return clips


def frame_targets(notes: np.ndarray, start_s: float, frames: int, frame_rate: float, n_keys: int = 88,
                  min_midi: int = 21, bins_per_semitone: int = 3) -> dict[str, np.ndarray]:
    """Frame t sits at start_s + t / frame_rate. Contour gets 1 on the key's centre bin and a
    softer 0.5 on its neighbours, which tolerates tuning and vibrato."""
    onset = np.zeros((frames, n_keys), np.float32)
    note = np.zeros((frames, n_keys), np.float32)
    contour = np.zeros((frames, n_keys * bins_per_semitone), np.float32)
    for on, off, pitch, _ in notes:
        k = int(round(pitch)) - min_midi
        if not 0 <= k < n_keys:
            continue
        f_on = int(round((on - start_s) * frame_rate))
        f_off = max(int(round((off - start_s) * frame_rate)), f_on + 1)
        if f_off <= 0 or f_on >= frames:
            continue
        if 0 <= f_on < frames:
            onset[f_on, k] = 1.0
        a, b = max(f_on, 0), min(f_off, frames)
        note[a:b, k] = 1.0
        c = bins_per_semitone * k + bins_per_semitone // 2
        contour[a:b, c] = 1.0
        for nb in (c - 1, c + 1):
            contour[a:b, nb] = np.maximum(contour[a:b, nb], 0.5)
    return {"onset": onset, "note": note, "contour": contour}


class MusicWindows(Dataset):
    """`length` random windows per epoch; window i of epoch e depends only on (seed, e, i) and the
    clips present. The set directories are rescanned every epoch, so training can start while
    `hark data` is still rendering."""

    def __init__(self, dirs: list[str | Path], window_samples: int, hop: int, sample_rate: int,
                 length: int, augment: AugmentConfig | None, seed: int = 0, validation_every: int = 50):
        self.dirs, self.validation_every = dirs, validation_every
        self.window, self.hop, self.sr = window_samples, hop, sample_rate
        self.length, self.seed, self.epoch = length, seed, 0
        self.augment = Augmenter(augment, sample_rate) if augment else None
        self.clips: list[Clip] = []
        self.refresh()

    def refresh(self) -> None:
        known = {c.wav: c for c in self.clips}
        fresh = load_clips(self.dirs, "train", self.validation_every, known)
        if not fresh:
            raise ValueError(f"no training clips in {self.dirs}: render a set first with `hark data transcriber`")
        self.clips = fresh
        weights = np.array([c.frames for c in fresh], dtype=np.float64)
        self.p = weights / weights.sum()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.refresh()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, i])
        clip = self.clips[int(rng.choice(len(self.clips), p=self.p))]
        start = int(rng.integers(-self.window // 4, max(clip.frames - self.window * 3 // 4, 1)))
        pre = int(PRE_ROLL_S * self.sr) if self.augment else 0
        a, b = start - pre, start + self.window
        audio = sf.read(str(clip.wav), start=max(a, 0), stop=min(b, clip.frames), dtype="float32")[0]
        audio = np.pad(audio, (max(-a, 0), max(b - clip.frames, 0)))
        if self.augment:
            audio = self.augment(audio, rng, self.window)
        targets = frame_targets(clip.notes, start / self.sr, self.window // self.hop, self.sr / self.hop)
        return {"audio": torch.from_numpy(audio.astype(np.float32)), **{k: torch.from_numpy(v) for k, v in targets.items()}}
