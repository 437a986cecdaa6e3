"""Spectrograms side by side (the codec tab: what went in beside what came out).

Same colour scale for both panels, referenced to the first signal's peak, so that energy the
codec lost or invented shows as a difference in brightness, not a rescaling.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

N_FFT = 512  # 32 ms at 16 kHz: formants and harmonics both visible
DYNAMIC_RANGE_DB = 70.0
DPI = 100


def db_spectrogram(audio: np.ndarray, n_fft: int = N_FFT, max_frames: int = 1500) -> tuple[np.ndarray, int]:
    """(|STFT| in dB, shape (bins, frames); hop in samples). The hop grows with the clip's length
    so that long uploads cost a bounded amount of work."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    hop = max(n_fft // 4, int(np.ceil(audio.size / max_frames)))
    padded = np.pad(audio, (n_fft // 2, n_fft // 2 + max(0, n_fft - audio.size)))
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
    mag = np.abs(np.fft.rfft(frames * np.hanning(n_fft).astype(np.float32), axis=1))
    return (20 * np.log10(mag + 1e-9)).T, hop


def side_by_side_image(signals: Sequence[np.ndarray], titles: Sequence[str], sample_rate: int,
                       width: int = 1200, height: int = 360) -> np.ndarray:
    """RGB uint8 image (height, width, 3): one spectrogram panel per signal, shared colour scale."""
    specs = [db_spectrogram(s) for s in signals]
    top = max(float(specs[0][0].max()), -120.0)
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    canvas = FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(specs), sharey=True, squeeze=False)[0]
    for ax, (db, hop), title in zip(axes, specs, titles):
        seconds = db.shape[1] * hop / sample_rate
        ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=top - DYNAMIC_RANGE_DB, vmax=top,
                  extent=(0.0, seconds, 0.0, sample_rate / 2000))
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("time (s)")
    axes[0].set_ylabel("frequency (kHz)")
    fig.tight_layout()
    canvas.draw()
    return np.ascontiguousarray(np.asarray(canvas.buffer_rgba())[..., :3])
