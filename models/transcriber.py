"""Polyphonic note transcriber in the Basic Pitch class.

Raw 22.05 kHz audio goes in, the log-frequency front end runs inside the graph (so the exported
ONNX model needs no DSP outside it), and three posteriorgrams come out per 256-sample frame:
onsets and notes over the 88 piano keys, and a pitch contour at 3 bins per semitone.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from core.notes import BINS_PER_SEMITONE, HOP, MIN_MIDI, N_KEYS, SAMPLE_RATE

A0_HZ = 27.5


@dataclass
class TranscriberConfig:
    sample_rate: int = SAMPLE_RATE
    hop: int = HOP
    window_samples: int = 44032  # 172 frames: the fixed window the service batches
    n_keys: int = N_KEYS
    min_midi: int = MIN_MIDI
    bins_per_semitone: int = BINS_PER_SEMITONE
    max_hz: float = 8000.0
    # Each band: (decimation, n_fft, low Hz, high Hz). Low notes need long windows to resolve
    # semitones; decimating first keeps those windows cheap (a CQT-like trade in three steps).
    bands: list[tuple[int, int, float, float]] = field(
        default_factory=lambda: [(16, 1024, 0.0, 220.0), (4, 1024, 220.0, 880.0), (1, 1024, 880.0, 8000.0)]
    )
    harmonics: list[float] = field(default_factory=lambda: [0.5, 1, 2, 3, 4, 5, 6, 7])
    channels: int = 32
    head_channels: int = 16

    @property
    def contour_bins(self) -> int:
        return self.n_keys * self.bins_per_semitone

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    def to_dict(self) -> dict:
        return asdict(self)


def contour_bin_hz(c: np.ndarray | float, bins_per_semitone: int = 3) -> np.ndarray:
    """Centre frequency of contour bin `c`; bin 3k+1 is the centre of key k (MIDI 21 + k)."""
    per_octave = 12 * bins_per_semitone
    return A0_HZ * 2.0 ** ((np.asarray(c, dtype=np.float64) - 1) / per_octave)


def _lowpass(decimation: int) -> np.ndarray:
    """Windowed-sinc anti-alias filter for decimating by `decimation`."""
    taps = 16 * decimation + 1
    cutoff = 0.45 / decimation  # cycles per input sample, leaves a guard band below the new Nyquist
    n = np.arange(taps) - taps // 2
    h = 2 * cutoff * np.sinc(2 * cutoff * n) * np.blackman(taps)
    return (h / h.sum()).astype(np.float32)


def _interp_matrix(fft_hz: np.ndarray, log_hz: np.ndarray, spacing_hz: np.ndarray) -> np.ndarray:
    """Triangular weights from linear FFT bins to log bins; wide enough that no log bin is empty."""
    df = fft_hz[1] - fft_hz[0]
    width = np.maximum(spacing_hz, df)[:, None]
    w = np.clip(1.0 - np.abs(fft_hz[None, :] - log_hz[:, None]) / width, 0.0, None)
    return (w / np.maximum(w.sum(axis=1, keepdims=True), 1e-8)).astype(np.float32)


class LogFrequencyFrontEnd(nn.Module):
    """Audio [B, N] -> log-magnitude spectrogram [B, T, K] on a 1/3-semitone grid from A0.

    Each band decimates, frames with a Hann-windowed DFT restricted to the FFT bins it needs
    (a strided conv1d, which exports to any ONNX runtime), and interpolates onto the log grid.
    """

    def __init__(self, cfg: TranscriberConfig):
        super().__init__()
        self.hop = cfg.hop
        per_octave = 12 * cfg.bins_per_semitone
        n_bins = int(math.floor(1 + per_octave * math.log2(cfg.max_hz / A0_HZ))) + 1
        log_hz = contour_bin_hz(np.arange(n_bins), cfg.bins_per_semitone)
        spacing = log_hz * (2 ** (1 / per_octave) - 1)
        self.n_bins = n_bins
        self.band_ranges: list[tuple[int, int]] = []
        for i, (dec, n_fft, lo, hi) in enumerate(cfg.bands):
            assert cfg.hop % dec == 0, "decimation must divide the hop"
            sel = np.nonzero((log_hz >= lo) & (log_hz < hi))[0]
            if len(sel) == 0:
                raise ValueError(f"band {i} ({lo}-{hi} Hz) holds no log bins")
            rate = cfg.sample_rate / dec
            span = log_hz[sel]
            k_lo = max(int(np.floor((span[0] - spacing[sel[0]]) * n_fft / rate)) - 1, 0)
            k_hi = min(int(np.ceil((span[-1] + spacing[sel[-1]]) * n_fft / rate)) + 2, n_fft // 2 + 1)
            k = np.arange(k_lo, k_hi)
            t = np.arange(n_fft)
            window = np.hanning(n_fft + 1)[:-1]
            phase = 2 * np.pi * np.outer(k, t) / n_fft
            # Scale so a full-scale sine reads ~1 in every band whatever its n_fft.
            basis = np.concatenate([np.cos(phase), -np.sin(phase)]) * window * (2.0 / window.sum())
            self.register_buffer(f"dft{i}", torch.from_numpy(basis.astype(np.float32))[:, None, :])
            self.register_buffer(f"interp{i}", torch.from_numpy(_interp_matrix(k * rate / n_fft, span, spacing[sel])))
            if dec > 1:
                self.register_buffer(f"lowpass{i}", torch.from_numpy(_lowpass(dec))[None, None, :])
            self.band_ranges.append((int(sel[0]), int(sel[-1]) + 1))
        self.bands = [(dec, n_fft) for dec, n_fft, _, _ in cfg.bands]

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        frames = audio.shape[-1] // self.hop
        x = audio.unsqueeze(1)
        out = []
        for i, (dec, n_fft) in enumerate(self.bands):
            y = x
            if dec > 1:
                lp = getattr(self, f"lowpass{i}")
                y = F.conv1d(F.pad(y, (lp.shape[-1] // 2, lp.shape[-1] // 2)), lp, stride=dec)
            y = F.conv1d(F.pad(y, (n_fft // 2, n_fft // 2)), getattr(self, f"dft{i}"), stride=self.hop // dec)
            y = y[:, :, :frames]
            re, im = y.chunk(2, dim=1)
            mag = torch.sqrt(re * re + im * im + 1e-12)  # [B, k, T]
            out.append(torch.matmul(getattr(self, f"interp{i}"), mag))  # [B, bins, T]
        spec = torch.cat(out, dim=1).transpose(1, 2)  # [B, T, K]
        return torch.log(spec + 1e-4)


class HarmonicStack(nn.Module):
    """[B, T, K] -> [B, H, T, contour_bins]: channel h sees the spectrum shifted by harmonic h."""

    def __init__(self, cfg: TranscriberConfig, n_bins: int, floor: float = math.log(1e-4)):
        super().__init__()
        per_octave = 12 * cfg.bins_per_semitone
        self.shifts = [int(round(per_octave * math.log2(h))) for h in cfg.harmonics]
        self.out_bins = cfg.contour_bins
        self.pad_lo = max(0, -min(self.shifts))
        self.pad_hi = max(0, max(self.shifts) + self.out_bins - n_bins)
        self.floor = floor

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        padded = F.pad(spec, (self.pad_lo, self.pad_hi), value=self.floor)
        chans = [padded[..., self.pad_lo + s : self.pad_lo + s + self.out_bins] for s in self.shifts]
        return torch.stack(chans, dim=1)


def _conv(c_in: int, c_out: int, kernel: tuple[int, int], dilation=(1, 1), groups: int = 1) -> nn.Conv2d:
    pad = (dilation[0] * (kernel[0] - 1) // 2, dilation[1] * (kernel[1] - 1) // 2)
    return nn.Conv2d(c_in, c_out, kernel, padding=pad, dilation=dilation, groups=groups)


class Transcriber(nn.Module):
    """Front end + harmonic stack + a small conv net with contour, note and onset heads.

    `forward` returns logits (what the losses want); `posteriorgrams` returns probabilities in
    the layout of the ONNX contract: onset [B,T,88], note [B,T,88], contour [B,T,264].
    """

    def __init__(self, cfg: TranscriberConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or TranscriberConfig()
        self.front = LogFrequencyFrontEnd(cfg)
        self.stack = HarmonicStack(cfg, self.front.n_bins)
        bps, c, hc = cfg.bins_per_semitone, cfg.channels, cfg.head_channels
        c_in = len(cfg.harmonics) * bps
        # The sub-semitone bins are folded into channels, so every conv runs on 88 keys: on a
        # CPU these layers are memory-bound, and 3x narrower activations train ~3x faster.
        self.norm = nn.BatchNorm2d(c_in)
        self.trunk = nn.Sequential(
            _conv(c_in, c, (3, 3)), nn.BatchNorm2d(c), nn.ReLU(),
            _conv(c, c, (3, 5)), nn.BatchNorm2d(c), nn.ReLU(),
            _conv(c, c, (3, 3), dilation=(1, 12)), nn.BatchNorm2d(c), nn.ReLU(),
        )
        self.contour_head = _conv(c, bps, (3, 3))
        self.note_head = nn.Sequential(_conv(c, hc, (5, 3)), nn.ReLU(), _conv(hc, 1, (3, 3)))
        self.onset_features = nn.Sequential(_conv(c_in, hc, (5, 3)), nn.BatchNorm2d(hc), nn.ReLU())
        # Onsets see the raw harmonic stack (sharp in time), the trunk (which key it is) and
        # the note activation (whether the key was already sounding).
        self.onset_head = _conv(hc + c + 1, 1, (3, 3))

    def _fold(self, x: torch.Tensor) -> torch.Tensor:
        b, h, t, _ = x.shape
        bps = self.cfg.bins_per_semitone
        return x.reshape(b, h, t, -1, bps).permute(0, 1, 4, 2, 3).reshape(b, h * bps, t, -1)

    def forward(self, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.norm(self._fold(self.stack(self.front(audio))))
        z = self.trunk(x)
        c = self.contour_head(z)  # [B, bps, T, keys] -> [B, T, keys * bps]
        contour = c.permute(0, 2, 3, 1).reshape(c.shape[0], c.shape[2], -1)
        note = self.note_head(z)
        onset = self.onset_head(torch.cat([self.onset_features(x), z, torch.sigmoid(note)], dim=1))
        return {"onset": onset[:, 0], "note": note[:, 0], "contour": contour}

    def posteriorgrams(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.forward(audio)
        return torch.sigmoid(out["onset"]), torch.sigmoid(out["note"]), torch.sigmoid(out["contour"])


class TranscriberExport(nn.Module):
    """The graph that ships: audio in, probabilities out (names fixed by the ONNX contract)."""

    def __init__(self, model: Transcriber):
        super().__init__()
        self.model = model

    def forward(self, audio: torch.Tensor):
        return self.model.posteriorgrams(audio)
