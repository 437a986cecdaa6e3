"""Phase from STFT magnitudes alone, by phase-gradient heap integration (PGHI; Prusa, Balazs and
Sondergaard, "A noniterative method for reconstruction of phase from STFT magnitude", IEEE/ACM
TASLP 2017): the codec probe's no-training baseline for the decoder's own phase.

For a Gaussian window exp(-pi t^2 / lam) (t in samples), the phase of an STFT coefficient
advances, per hop, by hop * n_fft / lam times the log magnitude's slope across bins, plus the
bin's centre frequency; and across bins by -lam / (hop * n_fft) times its slope across frames,
plus -pi for a frame-local DFT whose window is centred at n_fft / 2. Other windows use the
Gaussian closest to them. The heap integrates these steps outwards from the loudest coefficient
first, so the phase of quiet coefficients, whose slopes are unreliable, is decided last.
"""
from __future__ import annotations

import heapq

import numpy as np


def gaussian_lambda(window: np.ndarray) -> float:
    """lam (samples^2) of the Gaussian exp(-pi t^2 / lam) closest to `window` in least squares
    (for a Hann window of length L this gives about 0.258 L^2)."""
    w = np.asarray(window, dtype=np.float64)
    w = w / w.max()
    t = np.arange(w.size) - w.size / 2
    grid = np.linspace(0.02, 1.5, 3000) * w.size ** 2
    errors = [((np.exp(-np.pi * t * t / lam) - w) ** 2).sum() for lam in grid]
    return float(grid[int(np.argmin(errors))])


def phase_steps(magnitude: np.ndarray, n_fft: int, hop: int, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """(phase advance per frame, phase advance per bin) of each coefficient of a one-sided,
    frame-local STFT magnitude [bins, frames]."""
    logs = np.log(np.maximum(magnitude, 1e-12))
    bins, frames = logs.shape
    d_bins = np.gradient(logs, axis=0) if bins > 1 else np.zeros_like(logs)
    d_frames = np.gradient(logs, axis=1) if frames > 1 else np.zeros_like(logs)
    centre = 2 * np.pi * hop * np.arange(bins)[:, None] / n_fft
    return hop * n_fft / lam * d_bins + centre, -lam / (hop * n_fft) * d_frames - np.pi


def pghi(magnitude: np.ndarray, n_fft: int, hop: int, lam: float, tol: float = 1e-5,
         seed: int = 0) -> np.ndarray:
    """Phase [bins, frames] for `magnitude` [bins, frames] by heap integration; coefficients
    below `tol` times the largest get a random phase (they carry nothing audible)."""
    mag = np.asarray(magnitude, dtype=np.float64)
    step_t, step_f = phase_steps(mag, n_fft, hop, lam)
    bins, frames = mag.shape
    phase = np.random.default_rng(seed).uniform(-np.pi, np.pi, mag.shape)
    done = mag < tol * max(mag.max(), 1e-30)
    order = np.argsort(-mag, axis=None)  # seeds for islands the heap cannot reach
    next_seed = 0
    heap: list[tuple[float, int, int]] = []
    while not done.all():
        if not heap:
            while done.flat[order[next_seed]]:
                next_seed += 1
            b, f = divmod(int(order[next_seed]), frames)
            phase[b, f], done[b, f] = 0.0, True
            heapq.heappush(heap, (-mag[b, f], b, f))
        _, b, f = heapq.heappop(heap)
        for nb, nf in ((b, f + 1), (b, f - 1), (b + 1, f), (b - 1, f)):
            if not (0 <= nb < bins and 0 <= nf < frames) or done[nb, nf]:
                continue
            if nb == b:  # along time, the trapezoid of the two frames' advances
                sign = 1.0 if nf > f else -1.0
                phase[nb, nf] = phase[b, f] + sign * (step_t[b, f] + step_t[nb, nf]) / 2
            else:
                sign = 1.0 if nb > b else -1.0
                phase[nb, nf] = phase[b, f] + sign * (step_f[b, f] + step_f[nb, nf]) / 2
            done[nb, nf] = True
            heapq.heappush(heap, (-mag[nb, nf], nb, nf))
    return phase
