"""Waveform augmentation shared by the families: level, EQ, room reverb and background noise.

All of it is numpy, driven by an explicit Generator so a sample is reproducible from its seed.
Real impulse responses and noise recordings are optional directories; without them the room
and the noise are synthesized.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from scipy.signal import fftconvolve


@dataclass
class AugmentConfig:
    gain_db: tuple[float, float] = (-30.0, 0.0)
    eq_prob: float = 0.6
    eq_max_db: float = 10.0
    # Peaks and notches (0.1-0.5 octave wide) added to an EQ'd clip, drawn from [lo, hi]: the
    # body and bore resonances of real instruments, which re-weight single harmonics and which
    # the smooth curve cannot make.
    eq_resonances: tuple[int, int] = (0, 0)
    reverb_prob: float = 0.5
    rt60_s: tuple[float, float] = (0.15, 1.0)
    noise_prob: float = 0.5
    snr_db: tuple[float, float] = (5.0, 40.0)
    rir_dir: str | None = None
    noise_dir: str | None = None


def _load_dir(path: str | None, sample_rate: int, min_seconds: float) -> list[np.ndarray]:
    if not path or not Path(path).is_dir():
        return []
    out = []
    for f in sorted(Path(path).rglob("*")):
        if f.suffix.lower() not in (".wav", ".flac", ".ogg"):
            continue
        audio, sr = sf.read(str(f), dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
        if sr != sample_rate:
            audio = soxr.resample(audio, sr, sample_rate)
        if len(audio) >= min_seconds * sample_rate:
            out.append(audio.astype(np.float32))
    return out


def colored_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """1/f^exponent noise: 0 white, 1 pink, 2 brown."""
    spec = rng.normal(size=n // 2 + 1) + 1j * rng.normal(size=n // 2 + 1)
    f = np.maximum(np.arange(n // 2 + 1), 1.0)
    x = np.fft.irfft(spec / f ** (exponent / 2), n)
    return (x / (x.std() + 1e-12)).astype(np.float32)


def synthetic_rir(rng: np.random.Generator, sample_rate: int, rt60: float) -> np.ndarray:
    """Exponentially decaying noise after a direct path: a cheap diffuse room."""
    n = int(min(rt60 * 1.2, 1.5) * sample_rate)
    t = np.arange(n) / sample_rate
    tail = rng.normal(size=n) * np.exp(-6.9 * t / rt60)
    tail[: int(rng.uniform(0.002, 0.02) * sample_rate)] = 0.0  # pre-delay before the first reflections
    rir = tail * rng.uniform(0.2, 0.8) / (np.sqrt((tail**2).sum()) + 1e-12)
    rir[0] = 1.0
    return rir.astype(np.float32)


def random_eq(rng: np.random.Generator, audio: np.ndarray, max_db: float, resonances: int = 0) -> np.ndarray:
    """A smooth random gain curve over log frequency plus `resonances` narrow peaks or notches
    (in the top seven octaves below Nyquist), applied in the FFT domain."""
    n = len(audio)
    spec = np.fft.rfft(audio)
    points = rng.uniform(-max_db, max_db, size=8)
    logf = np.log2(np.maximum(np.arange(len(spec)), 1.0))
    curve_db = np.interp(logf, np.linspace(0, logf[-1], 8), points)
    for _ in range(resonances):
        centre, width = rng.uniform(logf[-1] - 7.0, logf[-1] - 0.5), rng.uniform(0.1, 0.5)
        curve_db += rng.uniform(-max_db, max_db) * np.exp(-0.5 * ((logf - centre) / width) ** 2)
    return np.fft.irfft(spec * 10 ** (curve_db / 20), n).astype(np.float32)


class Augmenter:
    def __init__(self, cfg: AugmentConfig, sample_rate: int):
        self.cfg, self.sample_rate = cfg, sample_rate
        self.rirs = _load_dir(cfg.rir_dir, sample_rate, 0.0)
        self.noises = _load_dir(cfg.noise_dir, sample_rate, 1.0)

    def __call__(self, audio: np.ndarray, rng: np.random.Generator, keep: int) -> np.ndarray:
        """Augment `audio` and return its last `keep` samples.

        The caller passes some audio before the crop, so the reverb tail of earlier notes
        reaches into it as it would in a room.
        """
        cfg = self.cfg
        x = audio.astype(np.float32)
        if rng.random() < cfg.eq_prob:
            lo, hi = cfg.eq_resonances
            x = random_eq(rng, x, cfg.eq_max_db, int(rng.integers(lo, hi + 1)) if hi > 0 else 0)
        if rng.random() < cfg.reverb_prob:
            if self.rirs and rng.random() < 0.5:
                rir = self.rirs[int(rng.integers(len(self.rirs)))]
            else:
                rir = synthetic_rir(rng, self.sample_rate, float(rng.uniform(*cfg.rt60_s)))
            x = fftconvolve(x, rir)[: len(x)].astype(np.float32)
        x = x[-keep:]
        if rng.random() < cfg.noise_prob:
            noise = self._noise(rng, len(x))
            snr = rng.uniform(*cfg.snr_db)
            power = float((x**2).mean()) + 1e-10
            x = x + noise * np.sqrt(power / 10 ** (snr / 10))
        peak = float(np.abs(x).max()) + 1e-9
        x = x / peak * 10 ** (rng.uniform(*cfg.gain_db) / 20)
        return x.astype(np.float32)

    def _noise(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.noises and rng.random() < 0.5:
            src = self.noises[int(rng.integers(len(self.noises)))]
            if len(src) < n:
                src = np.tile(src, n // len(src) + 1)
            start = int(rng.integers(len(src) - n + 1))
            seg = src[start : start + n]
            return seg / (seg.std() + 1e-9)
        return colored_noise(rng, n, float(rng.choice([0.0, 1.0, 2.0])))
