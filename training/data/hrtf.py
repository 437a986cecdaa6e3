"""Head-related impulse responses from SOFA files, resampled to 16 kHz, looked up by direction.

Heads, not directions, are held out: `TRAIN_HEADS` (KEMAR with both pinnae) render every training
scene, `HELDOUT_HEADS` (FABIAN, a different head and torso) only the evaluation scenes.
SOFA `SourcePosition` is (azimuth deg, counter-clockwise from the front, i.e. +90 = left;
elevation deg; distance m), and `Data.IR` is (directions, ears [left, right], taps).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
DEFAULT_HRTF_DIR = "../shared/data/real/hrtf"
TRAIN_HEADS = ("mit_kemar_normal_pinna", "mit_kemar_large_pinna")
HELDOUT_HEADS = ("fabian_hrirs",)


@dataclass
class Hrirs:
    name: str
    ir: np.ndarray          # (directions, 2, taps) float32 at SAMPLE_RATE
    unit: np.ndarray        # (directions, 3) unit vectors: x front, y left, z up

    def nearest(self, direction: np.ndarray) -> np.ndarray:
        """Index of the measured direction closest to each of `direction` (..., 3), any length."""
        d = direction / np.maximum(np.linalg.norm(direction, axis=-1, keepdims=True), 1e-9)
        return np.argmax(d @ self.unit.T, axis=-1)


def unit_vectors(azimuth_deg: np.ndarray, elevation_deg: np.ndarray) -> np.ndarray:
    az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
    return np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1)


def load_hrirs(path: str | Path, sample_rate: int = SAMPLE_RATE) -> Hrirs:
    import h5py  # training only: serving never reads SOFA
    import soxr

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"HRTF file not found: {path}")
    with h5py.File(path, "r") as f:
        ir = np.asarray(f["Data.IR"], dtype=np.float64)
        pos = np.asarray(f["SourcePosition"], dtype=np.float64)
        rate = float(np.asarray(f["Data.SamplingRate"]).ravel()[0])
    if ir.ndim != 3 or ir.shape[1] != 2:
        raise ValueError(f"{path}: expected Data.IR of shape (directions, 2, taps), got {ir.shape}")
    if rate != sample_rate:
        flat = ir.reshape(-1, ir.shape[-1]).T  # soxr resamples along axis 0
        ir = soxr.resample(flat, rate, sample_rate).T.reshape(ir.shape[0], 2, -1)
    return Hrirs(path.stem, ir.astype(np.float32), unit_vectors(pos[:, 0], pos[:, 1]))


def head_files(hrtf_dir: str | Path, heads: tuple[str, ...]) -> list[Path]:
    files = [Path(hrtf_dir) / f"{h}.sofa" for h in heads]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"HRTF files not found: {', '.join(missing)}")
    return files
