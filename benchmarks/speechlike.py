"""A synthetic talker for tests and benchmarks: syllables of a harmonic voice whose pitch glides, with pauses,
so that `core.voice.find_voice` hears a voice (a steady tone or a slow vibrato it would not)."""
from __future__ import annotations

import numpy as np

SR = 16000


def speech_like(seconds: float, f0: float = 140.0, seed: int = 0, sr: int = SR) -> np.ndarray:
    """Mono float32: 120-260 ms syllables, each gliding up to 3 semitones, 40-120 ms apart."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    pitch = np.full(n, f0)
    gain = np.zeros(n)
    start = int(0.05 * sr)
    while start < n:
        length = int(rng.uniform(0.12, 0.26) * sr)
        end = min(n, start + length)
        ramp = np.linspace(0.0, 1.0, end - start)
        pitch[start:end] = f0 * 2 ** ((rng.uniform(-2, 1) + rng.uniform(-3, 3) * ramp) / 12)
        gain[start:end] = np.sin(np.pi * ramp) ** 0.5
        start = end + int(rng.uniform(0.04, 0.12) * sr)
    phase = 2 * np.pi * np.cumsum(pitch) / sr
    # Falling harmonic weights, with a formant-like bump, as a vowel has.
    voice = sum(np.sin(k * phase) / k * (1.5 if 3 <= k <= 5 else 1.0) for k in range(1, 16))
    noise = 0.003 * rng.standard_normal(n)
    return (0.08 * voice * gain + noise).astype(np.float32)
