"""Target speech hearing: an enrollment encoder and a causal, speaker-conditioned binaural separator.

Framing. An 8 ms hop (128 samples at 16 kHz) and a 12 ms window (192 samples) whose analysis and
synthesis windows are both sqrt([rise, flat, fall]) with 4 ms sin^2/cos^2 ramps: their products
overlap-add to exactly one. A frame can be synthesised only when its last 64 input samples have
arrived, so the output lags the input by 4 ms (the look-ahead); chunks of 8 ms in, 8 ms out.

Separator. Both ears' spectra, power-law compressed (|X|^0.3, phase kept), go through a linear
layer and a stack of GRUs; before each GRU the speaker embedding scales and shifts the features
(FiLM). The output is a complex mask per ear and bin, applied to the uncompressed spectra: the
output keeps each ear's own phase and level differences, so the target stays where it was.

Enrollment encoder. resemblyzer's d-vector network (3-layer LSTM over 40 mel bands, 1.6 s windows)
with 40 more input bands (the side signal, see `services.extractor_enroll`) whose weights start
at zero, so it starts as the teacher and learns to ignore what is not in front of the head.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass
class ExtractorConfig:
    sample_rate: int = 16000
    hop: int = 128
    window: int = 192
    embed_dim: int = 256
    hidden: int = 256
    layers: int = 3
    enroll_features: int = 80
    enroll_hidden: int = 256
    enroll_layers: int = 3
    compress: float = 0.3

    @property
    def bins(self) -> int:
        return self.window // 2 + 1

    @property
    def lookahead(self) -> int:
        return self.window - self.hop

    def to_dict(self) -> dict:
        return asdict(self)


def frame_window(window: int, hop: int) -> torch.Tensor:
    """sqrt of [sin^2 ramp, ones, cos^2 ramp]: used for analysis and synthesis, its square
    overlap-adds to one at this hop."""
    ramp = window - hop
    t = (torch.arange(ramp, dtype=torch.float64) + 0.5) / ramp * (torch.pi / 2)
    w = torch.cat([torch.sin(t), torch.ones(window - 2 * ramp, dtype=torch.float64), torch.cos(t)])
    return w.float()


class Dft(nn.Module):
    """Real DFT of windowed frames by matrix products (exports to any ONNX runtime as MatMul)."""

    def __init__(self, window: int, hop: int):
        super().__init__()
        n = torch.arange(window, dtype=torch.float64)
        k = torch.arange(window // 2 + 1, dtype=torch.float64)
        angle = 2 * torch.pi * n[:, None] * k[None] / window
        w = frame_window(window, hop).double()
        self.register_buffer("forward_basis", torch.cat([torch.cos(angle), -torch.sin(angle)], 1).mul(w[:, None]).float())
        scale = torch.full((window // 2 + 1,), 2.0, dtype=torch.float64)
        scale[0] = 1.0
        if window % 2 == 0:
            scale[-1] = 1.0
        inverse = torch.cat([torch.cos(angle).T * scale[:, None], -torch.sin(angle).T * scale[:, None]], 0) / window
        self.register_buffer("inverse_basis", (inverse * w[None]).float())

    def analyse(self, frames: torch.Tensor) -> torch.Tensor:
        """(..., window) -> (..., 2 * bins): real parts, then imaginary parts."""
        return frames @ self.forward_basis

    def synthesise(self, spectrum: torch.Tensor) -> torch.Tensor:
        return spectrum @ self.inverse_basis


class Separator(nn.Module):
    def __init__(self, cfg: ExtractorConfig):
        super().__init__()
        f, h = cfg.bins, cfg.hidden
        self.cfg = cfg
        self.inp = nn.Sequential(nn.Linear(4 * f, h), nn.LayerNorm(h))
        self.film = nn.Linear(cfg.embed_dim, 2 * h * cfg.layers)
        self.grus = nn.ModuleList(nn.GRU(h, h, batch_first=True) for _ in range(cfg.layers))
        self.norms = nn.ModuleList(nn.LayerNorm(h) for _ in range(cfg.layers))
        self.out = nn.Linear(h, 4 * f)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        nn.init.normal_(self.out.weight, std=1e-3)
        nn.init.zeros_(self.out.bias)

    def forward(self, spectra: torch.Tensor, embedding: torch.Tensor, hidden: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """spectra (B, T, 2 ears, 2 * bins) -> masked spectra of the same shape, new hidden
        (layers, B, hidden)."""
        b, t, _, two_f = spectra.shape
        f = two_f // 2
        re, im = spectra[..., :f], spectra[..., f:]
        mag = torch.sqrt(re * re + im * im + 1e-10)
        squash = mag.pow(self.cfg.compress - 1.0)
        x = self.inp(torch.cat([re * squash, im * squash], -1).reshape(b, t, 4 * f))
        film = self.film(embedding).reshape(b, 1, self.cfg.layers, 2, -1)
        states = []
        for i, (gru, norm) in enumerate(zip(self.grus, self.norms)):
            y = x * (1 + film[:, :, i, 0]) + film[:, :, i, 1]
            y, h = gru(y, hidden[i:i + 1].contiguous())
            states.append(h)
            x = norm(x + y)
        m = self.out(x).reshape(b, t, 2, 2, f)  # ears, (real, imag), bins
        m_re, m_im = m[:, :, :, 0], m[:, :, :, 1]
        out = torch.cat([m_re * re - m_im * im, m_re * im + m_im * re], -1)
        return out, torch.cat(states, 0)


class EnrollEncoder(nn.Module):
    def __init__(self, cfg: ExtractorConfig):
        super().__init__()
        self.lstm = nn.LSTM(cfg.enroll_features, cfg.enroll_hidden, cfg.enroll_layers, batch_first=True)
        self.linear = nn.Linear(cfg.enroll_hidden, cfg.embed_dim)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        """(windows, frames, features) -> (windows, embed_dim) unit vectors."""
        _, (hidden, _) = self.lstm(mels)
        raw = torch.relu(self.linear(hidden[-1]))
        return raw / raw.norm(dim=1, keepdim=True).clamp(min=1e-12)

    def load_resemblyzer(self) -> None:
        """Start from the d-vector network in the resemblyzer wheel; the extra input bands get
        zero weights, so the output equals the teacher's until training moves them."""
        from resemblyzer import VoiceEncoder

        teacher = VoiceEncoder("cpu", verbose=False)
        state = {k: v.clone() for k, v in teacher.state_dict().items()}
        w = state["lstm.weight_ih_l0"]
        if w.shape[1] < self.lstm.input_size:
            state["lstm.weight_ih_l0"] = torch.cat([w, w.new_zeros(w.shape[0], self.lstm.input_size - w.shape[1])], 1)
        self.load_state_dict(state)


class Extractor(nn.Module):
    def __init__(self, cfg: ExtractorConfig):
        super().__init__()
        self.cfg = cfg
        self.dft = Dft(cfg.window, cfg.hop)
        self.separator = Separator(cfg)
        self.enroll = EnrollEncoder(cfg)

    def initial_hidden(self, batch: int, device: torch.device | None = None) -> torch.Tensor:
        return torch.zeros(self.cfg.layers, batch, self.cfg.hidden, device=device)

    def forward(self, mixture: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """Whole-file extraction, (B, 2, N) -> (B, 2, N) aligned with the input (the last 4 ms
        are computed as if the input continued with silence)."""
        cfg = self.cfg
        b, _, n = mixture.shape
        frames_n = -(-(n + cfg.lookahead) // cfg.hop)
        padded = nn.functional.pad(mixture, (cfg.lookahead, frames_n * cfg.hop - n))
        frames = padded.unfold(-1, cfg.window, cfg.hop).transpose(1, 2)  # (B, T, 2, window)
        out, _ = self.separator(self.dft.analyse(frames), embedding, self.initial_hidden(b, mixture.device))
        y = self.dft.synthesise(out)  # (B, T, 2, window)
        return overlap_add(y, cfg.hop)[..., cfg.lookahead:cfg.lookahead + n]


def overlap_add(frames: torch.Tensor, hop: int) -> torch.Tensor:
    """(B, T, C, W) -> (B, C, (T - 1) * hop + W)."""
    b, t, c, w = frames.shape
    folded = nn.functional.fold(frames.permute(0, 2, 3, 1).reshape(b * c, w, t), (1, (t - 1) * hop + w),
                                kernel_size=(1, w), stride=(1, hop))
    return folded.reshape(b, c, -1)


class ExtractorStep(nn.Module):
    """One 8 ms chunk with explicit state: what streams. Its output lags its input by 4 ms:
    the concatenated outputs equal `Extractor.forward` on the whole input, shifted by `lookahead`."""

    def __init__(self, model: Extractor):
        super().__init__()
        self.model = model

    def forward(self, chunk: torch.Tensor, embedding: torch.Tensor, input_tail: torch.Tensor,
                output_tail: torch.Tensor, hidden: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """chunk (B, 2, hop), input_tail (B, 2, lookahead), output_tail (B, 2, lookahead),
        hidden (layers, B, hidden) -> output (B, 2, hop) and the three new states."""
        cfg = self.model.cfg
        frame = torch.cat([input_tail, chunk], -1)  # (B, 2, window)
        out, hidden = self.model.separator(self.model.dft.analyse(frame).unsqueeze(1), embedding, hidden)
        y = self.model.dft.synthesise(out)[:, 0]  # (B, 2, window)
        head = y[..., :cfg.lookahead] + output_tail
        output = torch.cat([head, y[..., cfg.lookahead:cfg.hop]], -1)
        return output, frame[..., cfg.hop:], y[..., cfg.hop:], hidden
