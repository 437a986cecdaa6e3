"""The enrollment front end, numpy only: binaural clip -> mel frames of its mid and side signals.

The enrollment encoder starts as resemblyzer's d-vector network, whose input is 40 mel-power bands
(see `core.classifier_features`). It gets the same bands twice: of the mid signal (L+R)/2,
which adds up a talker in front of the head in phase, and of the side signal (L-R)/2, where that
talker nearly cancels and the off-axis interferers and noise remain. The side bands tell the
encoder what to ignore. Training computes its inputs with this same function.

Both signals are scaled together so that the mid signal sits at -30 dBFS RMS (resemblyzer's level),
then cut into resemblyzer's 1.6 s partial windows; the encoder's embedding of a clip is the
normalised mean of its windows' embeddings.
"""
from __future__ import annotations

import numpy as np

from core.classifier_features import MEL_HOP, PARTIAL_FRAMES, TARGET_DBFS, mel_power, partial_starts

ENROLL_FEATURES = 80  # 40 mid bands, then 40 side bands


def enrollment_mels(binaural: np.ndarray) -> np.ndarray:
    """(2, samples) float audio at 16 kHz -> (windows, 160, 80) float32."""
    if binaural.ndim != 2 or binaural.shape[0] != 2:
        raise ValueError(f"enrollment must be (2, samples), got {binaural.shape}")
    mid = 0.5 * (binaural[0] + binaural[1]).astype(np.float32)
    side = 0.5 * (binaural[0] - binaural[1]).astype(np.float32)
    rms = float(np.sqrt(np.mean(np.square(mid, dtype=np.float64)))) if mid.size else 0.0
    if rms > 0:
        gain = np.float32(10 ** (TARGET_DBFS / 20) / rms)
        mid, side = mid * gain, side * gain
    starts = partial_starts(len(mid))
    needed = (int(starts[-1]) + PARTIAL_FRAMES) * MEL_HOP
    if needed > len(mid):
        mid, side = np.pad(mid, (0, needed - len(mid))), np.pad(side, (0, needed - len(side)))
    mels = np.concatenate([mel_power(mid), mel_power(side)], axis=1)
    return np.stack([mels[s:s + PARTIAL_FRAMES] for s in starts]).astype(np.float32)
