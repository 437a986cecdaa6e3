"""Tiny generated music for tests: harmonic tones with exact note truth, in the set layout
(`audio/*.wav` + `notes/*.csv`) that `hark data` writes and the evaluation reads."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SR = 22050


def tone(midi: float, seconds: float, sr: int = SR, harmonics: int = 4) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    x = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, harmonics + 1) if f0 * h < sr / 2)
    env = np.minimum(1.0, t / 0.01) * np.exp(-1.5 * t)
    return (0.3 * x * env).astype(np.float32)


def render_notes(notes: list[tuple[float, float, int]], seconds: float, sr: int = SR) -> np.ndarray:
    audio = np.zeros(int(seconds * sr), np.float32)
    for start, end, pitch in notes:
        seg = tone(pitch, end - start, sr)
        i = int(start * sr)
        audio[i : i + len(seg)] += seg[: len(audio) - i]
    return audio


def random_notes(rng: np.random.Generator, seconds: float, lo: int = 48, hi: int = 84) -> list[tuple[float, float, int]]:
    notes, t = [], 0.1
    while t < seconds - 0.5:
        for p in rng.choice(np.arange(lo, hi), size=int(rng.integers(1, 4)), replace=False):
            notes.append((t, t + float(rng.uniform(0.2, 0.6)), int(p)))
        t += float(rng.uniform(0.25, 0.7))
    return notes


def write_set(root: Path, n_clips: int = 4, seconds: float = 4.0, seed: int = 0, prefix: str = "clip") -> Path:
    (root / "audio").mkdir(parents=True, exist_ok=True)
    (root / "notes").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n_clips):
        notes = random_notes(rng, seconds)
        name = f"{prefix}_{i:03d}"
        sf.write(str(root / "audio" / f"{name}.wav"), render_notes(notes, seconds), SR, subtype="PCM_16")
        rows = ["# audio: ../audio/%s.wav (generated tones)" % name, "onset_s,offset_s,midi_pitch,velocity"]
        rows += [f"{s:.4f},{e:.4f},{p},80" for s, e, p in notes]
        (root / "notes" / f"{name}.csv").write_text("\n".join(rows) + "\n")
    return root
