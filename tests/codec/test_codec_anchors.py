"""Opus and Codec2 through ffmpeg: right length, aligned with the input, near the asked bitrate."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks import codec_anchors as ca

pytestmark = pytest.mark.skipif(not ca.available()[0], reason=ca.available()[1] or "ffmpeg missing")


def voiced(seconds: float = 3.0, sr: int = ca.SAMPLE_RATE) -> np.ndarray:
    """A speech-like signal: a gliding harmonic source, syllable-rate amplitude modulation."""
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(h * phase) / h for h in range(1, 20) if h * 150 < sr / 2)
    return (0.2 * x * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)


@pytest.mark.parametrize("name, run, bps", [
    ("opus-6kbps", lambda a: ca.opus(a, 6), 6000), ("opus-12kbps", lambda a: ca.opus(a, 12), 12000),
    ("codec2-3200", lambda a: ca.codec2(a, 3200), 3200), ("codec2-1300", lambda a: ca.codec2(a, 1300), 1300),
])
def test_anchor_output_is_aligned_and_near_its_bitrate(name, run, bps) -> None:
    x = voiced()
    y, size = run(x)
    assert y.shape == x.shape and y.dtype == np.float32
    vocoder = name.startswith("codec2")  # keeps the envelope, not the waveform
    assert ca.best_lag(x, np.pad(y, (0, ca.MAX_LAG)), envelope=vocoder) <= (40 if vocoder else 2)
    core = slice(1600, -1600)
    if vocoder:
        assert np.corrcoef(ca._envelope(x)[core], ca._envelope(y)[core])[0, 1] > 0.8
    else:
        assert np.corrcoef(x[core], y[core])[0, 1] > 0.5
    assert 0.5 * bps < size * 8 / 3.0 < 1.5 * bps


def test_best_lag_finds_a_known_delay() -> None:
    x = voiced(1.0)
    assert ca.best_lag(x, np.concatenate([np.zeros(321, np.float32), x])) == 321
