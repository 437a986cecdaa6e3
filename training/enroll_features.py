"""`core.extractor_enroll.enrollment_mels` in torch, for enrollments mixed on the training
device (`scenes.mix_on_device`); services never import torch, so the twin lives here, and
tests/extractor/test_extractor_device_mix.py holds the two to the same numbers."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from core.classifier_features import MEL_HOP, MEL_WINDOW, PARTIAL_FRAMES, TARGET_DBFS, mel_filterbank


@lru_cache(maxsize=8)
def _constants(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    # Computed as services computes them (float64, then float32): the same periodic Hann and filters.
    hann = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(MEL_WINDOW) / MEL_WINDOW)).astype(np.float32)
    bank = mel_filterbank().T.astype(np.float32)  # (bins, mels)
    return torch.from_numpy(hann).to(device), torch.from_numpy(bank).to(device)


def first_window_mels(binaural: torch.Tensor) -> torch.Tensor:
    """(B, 2, samples) at 16 kHz -> (B, 160, 80): the first partial window of `enrollment_mels`
    (a training enrollment of 1.6 s has only that one), 40 mid bands then 40 side bands."""
    hann, bank = _constants(binaural.device)
    mid_side = torch.stack([binaural[:, 0] + binaural[:, 1], binaural[:, 0] - binaural[:, 1]], 1) * 0.5
    rms = mid_side[:, :1].pow(2).mean(-1, keepdim=True).sqrt()  # of the mid signal only
    gain = 10 ** (TARGET_DBFS / 20) / rms.clamp_min(1e-30)
    mid_side = mid_side * torch.where(rms > 0, gain, torch.ones_like(gain))
    # Frame t is centred on sample 160 t, the signal continued by zeros at both ends.
    half, span = MEL_WINDOW // 2, (PARTIAL_FRAMES - 1) * MEL_HOP + MEL_WINDOW
    padded = torch.nn.functional.pad(mid_side, (half, max(0, span - half - mid_side.shape[-1])))[..., :span]
    frames = padded.unfold(-1, MEL_WINDOW, MEL_HOP)  # (B, 2, 160, 400)
    spectrum = torch.fft.rfft(frames * hann, dim=-1)
    mels = (spectrum.real ** 2 + spectrum.imag ** 2) @ bank  # (B, 2, 160, 40)
    return mels.transpose(1, 2).reshape(binaural.shape[0], PARTIAL_FRAMES, -1)
