"""A streaming neural speech codec: 16 kHz audio <-> GRVQ codes at 50 frames/s.

Encoder: a causal log-magnitude STFT (hop 160) folded in pairs of frames, then causal 1-D
convolutions at 50 Hz down to the latent. Quantizer: GRVQ (models/grvq.py), 2 groups x 2
stages x 1024 entries = 2 kbps, the first stage of each group alone = 1 kbps. Decoder: causal
ConvNeXt blocks at 50 Hz, an upsampling to 100 Hz, and an iSTFT head (magnitude and phase per
bin, overlap-added by a transposed convolution), which is far cheaper on a CPU than upsampling
a waveform through transposed convolutions. The phase is the head's raw output (`phase_head`
"direct", the shipped models) or that plus atan2 of two more outputs ("atan2").

Every layer is causal, so a streaming graph is the same computation with explicit state.
Algorithmic latency: one 20 ms code frame plus the synthesis window's overlap (n_fft - hop
samples, 10 ms): 30 ms.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.grvq import GRVQ

PHASE_HEADS = ("direct", "atan2")


@dataclass
class CodecConfig:
    sample_rate: int = 16000
    hop: int = 160  # STFT hop: 100 frames/s
    n_fft: int = 320  # synthesis window (sqrt-Hann, 50 % overlap)
    analysis_fft: int = 512  # the encoder's window: longer for pitch resolution, still causal
    frame_hop: int = 320  # code frames at 50 Hz
    channels: int = 256
    encoder_layers: int = 4
    decoder_channels: int = 384
    decoder_layers: int = 6
    latent_dim: int = 128
    groups: int = 2
    stages: int = 2
    codebook_size: int = 1024
    # "direct": the head's raw phase row, used through cos/sin (the shipped models). "atan2": two
    # more rows per bin, a pseudo real R and imaginary I, and phase = raw + atan2(I, R) (see
    # Decoder.polar_head for why the raw row stays).
    phase_head: str = "direct"

    def __post_init__(self) -> None:
        if self.phase_head not in PHASE_HEADS:
            raise ValueError(f"phase_head must be one of {PHASE_HEADS}, not {self.phase_head!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.frame_hop

    @property
    def latency_ms(self) -> float:
        return 1000.0 * (self.frame_hop + self.n_fft - self.hop) / self.sample_rate

    def bitrate(self, stages: int | None = None) -> float:
        bits = math.ceil(math.log2(self.codebook_size))
        return self.groups * (stages or self.stages) * bits * self.frame_rate


class CausalConv1d(nn.Conv1d):
    """A Conv1d padded on the left only: output t sees inputs <= t."""

    def __init__(self, c_in: int, c_out: int, kernel: int, dilation: int = 1, groups: int = 1):
        super().__init__(c_in, c_out, kernel, dilation=dilation, groups=groups)
        self.left = dilation * (kernel - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.left, 0)))


class ConvNeXtBlock(nn.Module):
    def __init__(self, channels: int, kernel: int = 7, expand: int = 3):
        super().__init__()
        self.dw = CausalConv1d(channels, channels, kernel, groups=channels)
        self.norm = nn.LayerNorm(channels)
        self.pw1 = nn.Linear(channels, channels * expand)
        self.pw2 = nn.Linear(channels * expand, channels)
        self.scale = nn.Parameter(torch.full((channels,), 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dw(x).transpose(1, 2))
        y = self.pw2(F.gelu(self.pw1(y))) * self.scale
        return x + y.transpose(1, 2)


def _periodic_hann(n: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)


def _dft(n_fft: int, window: np.ndarray) -> np.ndarray:
    """[2 * bins, n_fft]: windowed cos rows then -sin rows (a real DFT as a conv)."""
    phase = 2 * np.pi * np.outer(np.arange(n_fft // 2 + 1), np.arange(n_fft)) / n_fft
    return np.concatenate([np.cos(phase), -np.sin(phase)]) * window


def _inverse_dft(n_fft: int, window: np.ndarray) -> np.ndarray:
    """[2 * bins, n_fft]: (re, im) per bin back to a windowed frame; with sqrt-Hann windows at
    50 % overlap, analysis then this overlap-added reconstructs exactly."""
    bins = n_fft // 2 + 1
    weight = np.full(bins, 2.0)
    weight[0] = weight[-1] = 1.0  # DC and Nyquist appear once in a real spectrum
    phase = 2 * np.pi * np.outer(np.arange(bins), np.arange(n_fft)) / n_fft
    rows = np.concatenate([np.cos(phase) * weight[:, None], -np.sin(phase) * weight[:, None]])
    return rows / n_fft * window


def _as_kernel(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a.astype(np.float32))[:, None, :]


class Encoder(nn.Module):
    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("analysis", _as_kernel(_dft(cfg.analysis_fft, _periodic_hann(cfg.analysis_fft))),
                             persistent=False)  # derived from the config, not learned
        bins = cfg.analysis_fft // 2 + 1
        per_code = cfg.frame_hop // cfg.hop
        c = cfg.channels
        self.inp = nn.Conv1d(bins * per_code, c, 1)
        self.layers = nn.ModuleList(CausalConv1d(c, c, 3, dilation=2 ** (i % 3)) for i in range(cfg.encoder_layers))
        self.out = nn.Conv1d(c, cfg.latent_dim, 1)

    def frames(self, padded: torch.Tensor) -> torch.Tensor:
        """Audio [B, 1, analysis_fft - hop + T], history first -> the first layer's output
        [B, channels, T / frame_hop]: each code frame's STFT frames stacked."""
        cfg = self.cfg
        re, im = F.conv1d(padded, self.analysis, stride=cfg.hop).chunk(2, dim=1)
        logmag = torch.log(re * re + im * im + 1e-7)  # [B, bins, frames at 100 Hz]
        b, bins, n = logmag.shape
        per_code = cfg.frame_hop // cfg.hop
        stacked = logmag.reshape(b, bins, n // per_code, per_code).permute(0, 3, 1, 2).reshape(b, bins * per_code, -1)
        return self.inp(stacked)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """audio [B, T] (T a multiple of frame_hop) -> latent [B, D, T / frame_hop]."""
        cfg = self.cfg
        # Frame f covers the analysis_fft samples that end where hop f ends: causal analysis.
        h = self.frames(F.pad(audio[:, None], (cfg.analysis_fft - cfg.hop, 0)))
        for layer in self.layers:
            h = h + F.gelu(layer(h))
        return self.out(h)


class _SafeAtan2(torch.autograd.Function):
    """atan2 whose gradient stays finite where R = I = 0 (torch's is 0 / 0 there): a head that
    starts a bin at the origin must not put NaNs into the optimizer."""

    @staticmethod
    def forward(ctx, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(y, x)
        return torch.atan2(y, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        y, x = ctx.saved_tensors
        r2 = (x * x + y * y).clamp_min(1e-8)
        return grad * x / r2, -grad * y / r2


def safe_atan2(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """torch.atan2 with a bounded gradient; the plain op where no gradient is taken, so that an
    ONNX export traces an op it knows rather than a Python function."""
    if torch.onnx.is_in_onnx_export() or not (torch.is_grad_enabled() and (y.requires_grad or x.requires_grad)):
        return torch.atan2(y, x)
    return _SafeAtan2.apply(y, x)


class Decoder(nn.Module):
    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg.decoder_channels
        self.inp = CausalConv1d(cfg.latent_dim, c, 3)
        self.blocks = nn.ModuleList(ConvNeXtBlock(c) for _ in range(cfg.decoder_layers))
        self.norm = nn.LayerNorm(c)
        per_code = cfg.frame_hop // cfg.hop
        bins = cfg.n_fft // 2 + 1
        # Each 50 Hz frame predicts its `per_code` STFT frames: per bin a log-magnitude and a raw
        # phase, and with phase_head "atan2" also a pseudo real and imaginary part.
        self.head = nn.Linear(c, per_code * bins * self.rows_per_bin)
        window = np.sqrt(_periodic_hann(cfg.n_fft))
        self.register_buffer("synthesis", _as_kernel(_inverse_dft(cfg.n_fft, window)), persistent=False)
        # The synthesis window's analysis twin: the STFT grid the decoder's own spectra live on
        # (what the phase and consistency losses compare against).
        self.register_buffer("analysis", _as_kernel(_dft(cfg.n_fft, window)), persistent=False)
        self.register_load_state_dict_pre_hook(self._widen_direct_head)

    @property
    def rows_per_bin(self) -> int:
        return 4 if self.cfg.phase_head == "atan2" else 2

    def _widen_direct_head(self, module: nn.Module, state: dict, prefix: str, *_: object) -> None:
        """A "direct" head's weights loaded into an "atan2" decoder: its magnitude and raw phase
        rows carry over, and R = 1, I = 0 (zero weights, bias 1 and 0), so atan2(I, R) = 0 and
        the decoder starts out computing exactly what the "direct" checkpoint did. (A plain
        atan2 of two linear outputs cannot reproduce a phase that is linear in the features,
        which is why the raw row stays and the atan2 term is a correction to it.)"""
        if self.rows_per_bin != 4:
            return
        per_code, bins = self.cfg.frame_hop // self.cfg.hop, self.cfg.n_fft // 2 + 1
        for name in ("weight", "bias"):
            old = state.get(prefix + "head." + name)
            if old is None or old.shape[0] != per_code * bins * 2:
                continue
            old = old.reshape(per_code, 2, bins, *old.shape[1:])
            extra = torch.zeros_like(old)
            if name == "bias":
                extra[:, 0] = 1.0  # R = 1
            state[prefix + "head." + name] = torch.cat([old, extra], dim=1).reshape(-1, *old.shape[3:])

    def trunk(self, latent: torch.Tensor) -> torch.Tensor:
        h = self.inp(latent)
        for block in self.blocks:
            h = block(h)
        return h

    def polar(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """latent [B, D, T] -> (log-magnitude, phase) [B, bins, 2T]: what the phase losses see."""
        return self.polar_head(self.trunk(latent))

    def polar_head(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Trunk features [B, C, T] -> (log-magnitude as synthesised, i.e. clamped; phase in
        radians, not wrapped) [B, bins, 2T]."""
        cfg = self.cfg
        h = self.head(self.norm(h.transpose(1, 2)))  # [B, T, per_code * bins * rows]
        b, t, _ = h.shape
        bins = cfg.n_fft // 2 + 1
        per_code = cfg.frame_hop // cfg.hop
        h = h.reshape(b, t * per_code, self.rows_per_bin, bins)
        log_mag = h[:, :, 0].clamp(max=6.0)
        phase = h[:, :, 1]
        if self.rows_per_bin == 4:
            # The atan2 term can turn a bin by any angle, a jump of pi included, through a small
            # move of (R, I), where the raw row would have to travel the whole way.
            phase = phase + safe_atan2(h[:, :, 3], h[:, :, 2])
        return log_mag.transpose(1, 2), phase.transpose(1, 2)

    @staticmethod
    def from_polar(log_mag: torch.Tensor, phase: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mag = torch.exp(log_mag)
        return mag * torch.cos(phase), mag * torch.sin(phase)

    def spectrum(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """latent [B, D, T] -> (re, im) [B, bins, 2T] at 100 Hz."""
        return self.spectrum_head(self.trunk(latent))

    def spectrum_head(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Trunk features [B, C, T] -> (re, im) [B, bins, 2T]: magnitude and phase per bin."""
        return self.from_polar(*self.polar_head(h))

    def analyse(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """audio [B, T] -> (re, im) [B, bins, T / hop] on the synthesis grid: frame f ends at
        sample (f + 1) * hop, as `synthesise` frames it; analyse(synthesise(S)) = S for every
        consistent S (frames whose overlap lies inside the signal)."""
        cfg = self.cfg
        spec = F.conv1d(F.pad(audio[:, None], (cfg.n_fft - cfg.hop, 0)), self.analysis, stride=cfg.hop)
        re, im = spec.chunk(2, dim=1)
        return re, im

    def synthesise(self, re: torch.Tensor, im: torch.Tensor) -> torch.Tensor:
        """(re, im) [B, bins, F] at 100 Hz -> audio [B, F * hop] by overlap-add."""
        cfg = self.cfg
        audio = F.conv_transpose1d(torch.cat([re, im], dim=1), self.synthesis, stride=cfg.hop)[:, 0]
        # Frame f ends at sample (f + 1) * hop (causal framing, as the encoder's).
        start = cfg.n_fft - cfg.hop
        return audio[:, start:start + re.shape[-1] * cfg.hop]

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """latent [B, D, T] -> audio [B, T * frame_hop]."""
        return self.synthesise(*self.spectrum(latent))


class Codec(nn.Module):
    def __init__(self, cfg: CodecConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or CodecConfig()
        if cfg.frame_hop % cfg.hop or cfg.n_fft != 2 * cfg.hop:
            raise ValueError("frame_hop must be a multiple of hop, and n_fft twice the hop (50 % overlap)")
        self.encoder = Encoder(cfg)
        self.quantizer = GRVQ(cfg.latent_dim, cfg.groups, cfg.stages, cfg.codebook_size)
        self.decoder = Decoder(cfg)

    def pad(self, audio: torch.Tensor) -> torch.Tensor:
        return F.pad(audio, (0, (-audio.shape[-1]) % self.cfg.frame_hop))

    def forward(self, audio: torch.Tensor, stages: int | None = None) -> dict[str, torch.Tensor]:
        """Training pass: audio [B, T] -> reconstruction, codes and the commitment loss."""
        audio = self.pad(audio)
        quantized, codes, commit = self.quantizer(self.encoder(audio), stages)
        # The polar spectrum and its complex form go out too, for the phase and consistency
        # losses: one decoder run, the same audio as self.decoder(quantized).
        log_mag, phase = self.decoder.polar(quantized)
        re, im = self.decoder.from_polar(log_mag, phase)
        return {"audio": self.decoder.synthesise(re, im), "codes": codes, "commitment": commit,
                "log_mag": log_mag, "phase": phase, "re": re, "im": im}

    @torch.no_grad()
    def encode(self, audio: torch.Tensor, stages: int | None = None) -> torch.Tensor:
        return self.quantizer.encode(self.encoder(self.pad(audio)), stages)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.quantizer.decode(codes))
