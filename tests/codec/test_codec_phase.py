"""PGHI (benchmarks.codec_phase): phase from magnitudes alone, on the codec decoder's STFT grid."""
from __future__ import annotations

import numpy as np

from benchmarks.codec_phase import gaussian_lambda, pghi

N_FFT, HOP = 320, 160
WINDOW = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT))  # sqrt-Hann: 50 % overlap sums to 1


def stft(x: np.ndarray) -> np.ndarray:
    frames = 1 + (x.size - N_FFT) // HOP
    idx = np.arange(N_FFT)[None] + HOP * np.arange(frames)[:, None]
    return np.fft.rfft(x[idx] * WINDOW, axis=1).T


def istft(spec: np.ndarray) -> np.ndarray:
    frames = np.fft.irfft(spec.T, n=N_FFT, axis=1) * WINDOW
    out = np.zeros(HOP * (len(frames) - 1) + N_FFT)
    for i, frame in enumerate(frames):
        out[i * HOP:i * HOP + N_FFT] += frame
    return out


def inconsistency(mag: np.ndarray, phase: np.ndarray) -> float:
    """How far the magnitudes of the signal made from (mag, phase) are from mag (0: consistent)."""
    return float(np.linalg.norm(np.abs(stft(istft(mag * np.exp(1j * phase)))) - mag) / np.linalg.norm(mag))


def test_gaussian_width_of_a_hann_window() -> None:
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(512) / 512)
    assert abs(gaussian_lambda(hann) / 512 ** 2 - 0.2565) < 0.01  # the width Prusa et al. give


def test_pghi_phase_is_far_more_consistent_than_random() -> None:
    sr = 16000
    t = np.arange(2 * sr) / sr
    x = sum(np.sin(2 * np.pi * (140 * k * t + 25 * k * t * t)) / k for k in range(1, 16))
    x = x * (1 + 0.6 * np.sin(2 * np.pi * 3 * t))  # a gliding voice-like tone with syllables
    mag = np.abs(stft(x))
    built = inconsistency(mag, pghi(mag, N_FFT, HOP, gaussian_lambda(WINDOW)))
    random = inconsistency(mag, np.random.default_rng(1).uniform(-np.pi, np.pi, mag.shape))
    assert built < 0.25 and built < random / 3
