"""Waveform augmentation: the EQ's resonances re-weight narrow bands, within their bound."""
import numpy as np

from training.data.augment import random_eq


def _db_spectrum(x: np.ndarray) -> np.ndarray:
    return 20 * np.log10(np.abs(np.fft.rfft(x)) + 1e-9)


def test_resonances_add_bounded_narrow_bumps_to_the_smooth_curve():
    audio = np.random.default_rng(0).normal(size=22050).astype(np.float32)
    smooth = random_eq(np.random.default_rng(7), audio, max_db=10.0)
    shaped = random_eq(np.random.default_rng(7), audio, max_db=10.0, resonances=3)
    diff = _db_spectrum(shaped) - _db_spectrum(smooth)  # same smooth curve: the bumps alone
    assert np.isfinite(shaped).all() and shaped.shape == audio.shape
    assert np.abs(diff).max() > 1.0
    assert np.abs(diff).max() <= 3 * 10.0 + 1e-3
    # Narrow: most of the top seven octaves keep the smooth curve within a dB.
    assert np.mean(np.abs(diff) < 1.0) > 0.25
