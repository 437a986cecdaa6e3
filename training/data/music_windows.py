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
from training.data.expression import CURVE_RATE, read_curves

PRE_ROLL_S = 1.0  # audio before the window, so augmentation reverb has a history


@dataclass
class Clip:
    wav: Path
    notes: np.ndarray  # [n, 5]: onset_s, offset_s, midi_pitch, velocity, track
    frames: int
    bends: np.ndarray | None = None  # [tracks, samples] semitones at CURVE_RATE
    ring_ends: np.ndarray | None = None  # [n] seconds a note's string may ring on past its offset (pedal)


def read_notes_csv(path: Path) -> np.ndarray:
    """[n, 5] rows; velocity defaults to 80 and track to 0 when the CSV lacks them."""
    return _read_columns(path)[0]


def _read_columns(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """([n, 5] rows as read_notes_csv, the `ring_end_s` column if the CSV has one)."""
    rows = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    if len(rows) <= 1:
        return np.zeros((0, 5)), None
    header = [h.strip() for h in rows[0].split(",")]
    data = np.loadtxt(rows[1:], delimiter=",", ndmin=2)
    ring = data[:, header.index("ring_end_s")].copy() if "ring_end_s" in header else None
    defaults = np.array([0.0, 0.0, 0.0, 80.0, 0.0])
    if data.shape[1] < 5:
        data = np.concatenate([data, np.tile(defaults[data.shape[1]:], (len(data), 1))], axis=1)
    return data[:, :5], ring


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
            if wav in known:
                clips.append(known[wav])
                continue
            notes, ring = _read_columns(csv)
            clips.append(Clip(wav, notes, sf.info(str(wav)).frames,
                              read_curves(Path(d) / "bends" / (csv.stem + ".npy")), ring))
    return clips


def frame_targets(notes: np.ndarray, start_s: float, frames: int, frame_rate: float, n_keys: int = 88,
                  min_midi: int = 21, bins_per_semitone: int = 3, bends: np.ndarray | None = None,
                  ring_ends: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Frame t sits at start_s + t / frame_rate. Onset and note stay on the written key; the
    contour follows the sounding pitch (key plus its track's bend curve), 1 on the nearest bin
    and a softer 0.5 on its neighbours. `note_mask` is 0 where a note's string rings on under
    the pedal after its key came up (`ring_ends`): neither a note nor silence to learn from."""
    onset = np.zeros((frames, n_keys), np.float32)
    note = np.zeros((frames, n_keys), np.float32)
    mask = np.ones((frames, n_keys), np.float32)
    if ring_ends is not None:
        for row, ring in zip(notes, ring_ends):
            k = int(round(row[2])) - min_midi
            a = max(int(round((row[1] - start_s) * frame_rate)), 0)
            b = min(int(round((ring - start_s) * frame_rate)), frames)
            if 0 <= k < n_keys and b > a:
                mask[a:b, k] = 0.0
    n_bins = n_keys * bins_per_semitone
    contour = np.zeros((frames, n_bins), np.float32)
    times = start_s + np.arange(frames) / frame_rate
    curve_idx = np.clip(np.round(times * CURVE_RATE).astype(int), 0, None)
    for row in notes:
        on, off, pitch = row[:3]
        track = int(row[4]) if len(row) > 4 else 0
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
        c = np.full(b - a, bins_per_semitone * k + bins_per_semitone // 2)
        if bends is not None and track < len(bends):
            idx = np.minimum(curve_idx[a:b], bends.shape[1] - 1)
            c = c + np.round(bends[track, idx] * bins_per_semitone).astype(int)
        rows = np.arange(a, b)
        for nb, value in ((c - 1, 0.5), (c + 1, 0.5), (c, 1.0)):
            ok = (nb >= 0) & (nb < n_bins)
            contour[rows[ok], nb[ok]] = np.maximum(contour[rows[ok], nb[ok]], value)
    mask[note > 0] = 1.0  # a key's next note is always a target, even inside an earlier one's ring
    return {"onset": onset, "note": note, "contour": contour, "note_mask": mask}


class MusicWindows(Dataset):
    """`length` random windows per epoch; window i of epoch e depends only on (seed, e, i) and the
    clips present. The set directories are rescanned every epoch, so training can start while
    `hark data` is still rendering."""

    def __init__(self, dirs: list[str | Path], window_samples: int, hop: int, sample_rate: int,
                 length: int, augment: AugmentConfig | None, seed: int = 0, validation_every: int = 50,
                 dir_weights: list[float] | None = None):
        if dir_weights is not None and len(dir_weights) != len(dirs):
            raise ValueError(f"dir_weights {dir_weights} needs one weight per directory of {dirs}")
        self.dirs, self.validation_every, self.dir_weights = dirs, validation_every, dir_weights
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
        if self.dir_weights is not None:
            # Each directory gets its share of the windows however much of it is rendered yet, so
            # a small added set (a fine-tune's) neither drowns nor takes over.
            home = np.array([next(i for i, d in enumerate(self.dirs) if c.wav.parent.parent == Path(d))
                             for c in fresh])
            for i, w in enumerate(self.dir_weights):
                mine = home == i
                if mine.any():
                    weights[mine] *= w / weights[mine].sum()
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
        targets = frame_targets(clip.notes, start / self.sr, self.window // self.hop, self.sr / self.hop,
                                bends=clip.bends, ring_ends=clip.ring_ends)
        return {"audio": torch.from_numpy(audio.astype(np.float32)), **{k: torch.from_numpy(v) for k, v in targets.items()}}
