"""Discriminators for adversarial waveform training (the codec's critics).

Multi-period (HiFi-GAN): the waveform folded into [T / p, p] images, so each 2-D column sees
samples exactly p apart, which exposes periodic (pitch) structure. Multi-scale STFT (EnCodec):
complex spectrograms at several resolutions, which exposes spectral texture and phase. Both
return, per sub-discriminator, a logit map and the intermediate features used for feature
matching. Channel counts are small: the critic only has to be good enough to keep the
generator honest, and its weights travel in every checkpoint.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

Features = list[torch.Tensor]


class PeriodCritic(nn.Module):
    def __init__(self, period: int, channels: tuple[int, ...] = (16, 32, 64, 128)):
        super().__init__()
        self.period = period
        layers, c_in = [], 1
        for c in channels:
            layers.append(weight_norm(nn.Conv2d(c_in, c, (5, 1), (3, 1), padding=(2, 0))))
            c_in = c
        layers.append(weight_norm(nn.Conv2d(c_in, c_in, (5, 1), 1, padding=(2, 0))))
        self.layers = nn.ModuleList(layers)
        self.out = weight_norm(nn.Conv2d(c_in, 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, Features]:
        b, t = audio.shape
        x = F.pad(audio, (0, (-t) % self.period), mode="reflect")[:, None]
        x = x.reshape(b, 1, -1, self.period)
        feats = []
        for layer in self.layers:
            x = F.leaky_relu(layer(x), 0.1)
            feats.append(x)
        return self.out(x).flatten(1), feats


class SpectrogramCritic(nn.Module):
    def __init__(self, n_fft: int, channels: int = 16):
        super().__init__()
        self.n_fft, self.hop = n_fft, n_fft // 4
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        c = channels
        self.layers = nn.ModuleList([
            weight_norm(nn.Conv2d(2, c, (3, 9), (1, 2), padding=(1, 4))),
            weight_norm(nn.Conv2d(c, c, (3, 9), (1, 2), dilation=(1, 1), padding=(1, 4))),
            weight_norm(nn.Conv2d(c, c, (3, 9), (1, 2), dilation=(2, 1), padding=(2, 4))),
            weight_norm(nn.Conv2d(c, c, (3, 9), (1, 2), dilation=(4, 1), padding=(4, 4))),
            weight_norm(nn.Conv2d(c, c, (3, 3), padding=(1, 1))),
        ])
        self.out = weight_norm(nn.Conv2d(c, 1, (3, 3), padding=(1, 1)))

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, Features]:
        spec = torch.stft(audio.float(), self.n_fft, self.hop, window=self.window, return_complex=True)
        x = torch.stack([spec.real, spec.imag], dim=1).transpose(2, 3)  # [B, 2, frames, bins]
        feats = []
        for layer in self.layers:
            x = F.leaky_relu(layer(x), 0.1)
            feats.append(x)
        return self.out(x).flatten(1), feats


class Critics(nn.Module):
    """Every sub-discriminator; forward returns a (logits, features) pair per critic."""

    def __init__(self, periods: tuple[int, ...] = (2, 3, 5, 7, 11), ffts: tuple[int, ...] = (1024, 512, 256)):
        super().__init__()
        self.critics = nn.ModuleList([*(PeriodCritic(p) for p in periods), *(SpectrogramCritic(n) for n in ffts)])

    def forward(self, audio: torch.Tensor) -> list[tuple[torch.Tensor, Features]]:
        return [critic(audio) for critic in self.critics]
