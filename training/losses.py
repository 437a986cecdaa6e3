"""Waveform losses: multi-resolution spectral distances and the least-squares GAN terms.

No single STFT size sees both the glottal pulses (short windows) and the harmonics (long
windows) of speech, so spectral losses sum over several resolutions.

None of those look at phase, so a decoder that predicts its own phase (models/codec.py) also gets
the anti-wrapping phase losses of APNet (Ai and Ling, 2023): its instantaneous phase, group delay
and instantaneous angular frequency against the target's, on its own STFT grid, and a
consistency loss between the spectrum it predicts and the STFT of the waveform made from it.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """[n_mels, n_fft // 2 + 1] triangular filters, equally spaced on the HTK mel scale."""
    fmax = fmax or sample_rate / 2
    mel = lambda f: 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)  # noqa: E731
    hz = lambda m: 700.0 * (10 ** (np.asarray(m) / 2595.0) - 1.0)  # noqa: E731
    edges = hz(np.linspace(mel(fmin), mel(fmax), n_mels + 2))
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    lower = (freqs[None] - edges[:-2, None]) / np.maximum(edges[1:-1, None] - edges[:-2, None], 1e-9)
    upper = (edges[2:, None] - freqs[None]) / np.maximum(edges[2:, None] - edges[1:-1, None], 1e-9)
    return np.maximum(0.0, np.minimum(lower, upper)).astype(np.float32)


class SpectralLoss(torch.nn.Module):
    """Sum over resolutions of: L1 between log-mel spectrograms, and L1 between log-magnitude
    spectrograms plus spectral convergence."""

    def __init__(self, sample_rate: int, ffts: tuple[int, ...] = (256, 512, 1024, 2048),
                 mels: tuple[int, ...] = (40, 64, 80, 80)):
        super().__init__()
        self.ffts = ffts
        for n, m in zip(ffts, mels):
            self.register_buffer(f"mel_{n}", torch.from_numpy(mel_filterbank(sample_rate, n, m)), persistent=False)
            self.register_buffer(f"win_{n}", torch.hann_window(n), persistent=False)

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        mel = mag = conv = estimate.new_zeros(())
        for n in self.ffts:
            window, fb = getattr(self, f"win_{n}"), getattr(self, f"mel_{n}")
            spec = lambda x: torch.stft(x.float(), n, n // 4, window=window, return_complex=True).abs()  # noqa: E731
            e, t = spec(estimate), spec(target)
            mel = mel + F.l1_loss(torch.log(fb @ e + 1e-5), torch.log(fb @ t + 1e-5))
            mag = mag + F.l1_loss(torch.log(e + 1e-5), torch.log(t + 1e-5))
            conv = conv + torch.linalg.norm(t - e) / (torch.linalg.norm(t) + 1e-7)
        k = len(self.ffts)
        return {"mel": mel / k, "stft": mag / k, "convergence": conv / k}


def critic_loss(real: list, fake: list) -> torch.Tensor:
    """Least-squares GAN, discriminator side: real -> 1, fake -> 0."""
    return sum(torch.mean((1 - r) ** 2) + torch.mean(f ** 2) for (r, _), (f, _) in zip(real, fake)) / len(real)


def generator_losses(real: list, fake: list) -> dict[str, torch.Tensor]:
    """Least-squares GAN, generator side, and feature matching (L1 between the critics'
    intermediate features on real and generated audio, each map normalised by the real
    features' mean magnitude so that no layer dominates)."""
    adv = sum(torch.mean((1 - f) ** 2) for f, _ in fake) / len(fake)
    fm, n = fake[0][0].new_zeros(()), 0
    for (_, rf), (_, ff) in zip(real, fake):
        for r, f in zip(rf, ff):
            fm = fm + F.l1_loss(f, r.detach()) / (r.detach().abs().mean() + 1e-5)
            n += 1
    return {"adversarial": adv, "feature_matching": fm / n}


def anti_wrap(x: torch.Tensor) -> torch.Tensor:
    """|x - 2 pi round(x / 2 pi)|: the distance between two phases whose difference is x, in
    [0, pi]; 0 for any multiple of 2 pi, the same for x and -x."""
    return torch.abs(x - 2 * math.pi * torch.round(x / (2 * math.pi)))


def _weighted_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per example sum(w * v) / sum(w), then the mean over the batch: a quiet window counts as
    much as a loud one (the recipe draws levels 20 dB apart)."""
    dims = tuple(range(1, values.dim()))
    return ((values * weight).sum(dims) / weight.sum(dims).clamp_min(1e-12)).mean()


def phase_losses(phase: torch.Tensor, target_phase: torch.Tensor, target_mag: torch.Tensor) -> dict[str, torch.Tensor]:
    """Anti-wrapping distances between a predicted and a target phase, [B, bins, frames] each:
    instantaneous phase ("ip"), group delay (differences along frequency, "gd") and
    instantaneous angular frequency (differences along time, "iaf"), in radians.

    Each bin is weighted by the target's magnitude (a difference by the smaller of its two
    bins'), not masked: a bin's phase error costs the waveform |m e^{ia} - m e^{ib}| =
    2m |sin((a - b) / 2)|, proportional to m, so weighting by m spends the loss where the phase
    is audible and lets silence and the noise floor, whose phase is random and unlearnable, count
    for almost nothing, without a threshold to tune."""
    weight = target_mag.detach()
    gd = lambda p: p[:, 1:] - p[:, :-1]  # noqa: E731
    iaf = lambda p: p[..., 1:] - p[..., :-1]  # noqa: E731
    return {
        "ip": _weighted_mean(anti_wrap(phase - target_phase), weight),
        "gd": _weighted_mean(anti_wrap(gd(phase) - gd(target_phase)), torch.minimum(weight[:, 1:], weight[:, :-1])),
        "iaf": _weighted_mean(anti_wrap(iaf(phase) - iaf(target_phase)),
                              torch.minimum(weight[..., 1:], weight[..., :-1])),
    }


def consistency_loss(re: torch.Tensor, im: torch.Tensor, re_again: torch.Tensor, im_again: torch.Tensor) -> torch.Tensor:
    """Squared distance between a predicted spectrum (re, im) [B, bins, frames] and the STFT of
    the waveform synthesised from it, on the same grid (0 when the prediction is the STFT of some
    signal). Per example relative to the predicted spectrum's energy, so the term does not scale
    with the window's level. The first and last frames are left out: overlap-add there lacks a
    neighbour (the first frame's head falls before the signal, the last's tail after it), so they
    differ even for a consistent spectrum."""
    err = ((re - re_again) ** 2 + (im - im_again) ** 2)[..., 1:-1]
    energy = (re * re + im * im)[..., 1:-1].detach()
    return (err.mean(dim=(1, 2)) / energy.mean(dim=(1, 2)).clamp_min(1e-12)).mean()
