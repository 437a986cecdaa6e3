"""Target speech hearing: an enrollment encoder and a causal, speaker-conditioned binaural separator.

Framing. An 8 ms hop (128 samples at 16 kHz) and a 12 ms window (192 samples) whose analysis and
synthesis windows are both sqrt([rise, flat, fall]) with 4 ms sin^2/cos^2 ramps: their products
overlap-add to exactly one. A frame can be synthesised only when its last 64 input samples have
arrived, so the output lags the input by 4 ms (the look-ahead); chunks of 8 ms in, 8 ms out.

Separator. Its input, per frame: both ears' 12 ms spectra, power-law compressed (|X|^0.3, phase
kept: the interaural phase), and both ears' compressed magnitudes over a longer 32 ms window that
ends with the frame (`context`). The long window looks only into the past, so it costs no latency,
and its 31 Hz bins resolve the harmonics that tell voices apart, which 83 Hz bins cannot. Two
kinds (`ExtractorConfig.separator`): "gru", a linear layer and a stack of GRUs over whole frames;
"grid", blocks that alternate a convolution across the bins of a frame with one small GRU per bin
across time, every bin sharing the same weights (after TF-GridNet). In both, the speaker embedding
scales and shifts the features before each GRU (FiLM). The output is a complex mask per ear and
bin, applied to the uncompressed spectra: the output keeps each ear's own phase and level
differences, so the target stays where it was.

Enrollment encoder. resemblyzer's d-vector network (3-layer LSTM over 40 mel bands, 1.6 s windows)
with 40 more input bands (the side signal, see `core.extractor_enroll`) whose weights start
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
    context: int = 512  # the features' window: a whole number of hops, ending with the frame
    embed_dim: int = 256
    separator: str = "gru"  # "gru": GRUs over whole frames; "grid": per-bin blocks (see GridSeparator)
    hidden: int = 256       # gru: units per GRU; grid: units of each bin's time GRU
    layers: int = 3         # GRUs, or grid blocks
    channels: int = 16      # grid: features per bin
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

    @property
    def context_bins(self) -> int:
        return self.context // 2 + 1

    @property
    def state_size(self) -> int:
        """Recurrent state per layer and example: one GRU's, or one per bin."""
        return self.hidden * (self.bins if self.separator == "grid" else 1)

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


class ContextMagnitude(nn.Module):
    """Power-law compressed magnitudes of a Hann-windowed long frame (features only: never inverted)."""

    def __init__(self, size: int, power: float):
        super().__init__()
        n = torch.arange(size, dtype=torch.float64)
        k = torch.arange(size // 2 + 1, dtype=torch.float64)
        angle = 2 * torch.pi * n[:, None] * k[None] / size
        hann = 0.5 - 0.5 * torch.cos(2 * torch.pi * n / size)
        self.register_buffer("basis", torch.cat([torch.cos(angle), -torch.sin(angle)], 1).mul(hann[:, None]).float())
        self.power = power

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        spec = frames @ self.basis
        f = spec.shape[-1] // 2
        return (spec[..., :f].pow(2) + spec[..., f:].pow(2) + 1e-10).pow(self.power / 2)


def compressed(spectra: torch.Tensor, power: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Real and imaginary parts (..., 2 * bins) with the magnitude raised to `power`, phase kept."""
    f = spectra.shape[-1] // 2
    re, im = spectra[..., :f], spectra[..., f:]
    squash = torch.sqrt(re * re + im * im + 1e-10).pow(power - 1.0)
    return re * squash, im * squash


class Separator(nn.Module):
    def __init__(self, cfg: ExtractorConfig):
        super().__init__()
        f, h = cfg.bins, cfg.hidden
        self.cfg = cfg
        self.inp = nn.Sequential(nn.Linear(4 * f + 2 * cfg.context_bins, h), nn.LayerNorm(h))
        self.film = nn.Linear(cfg.embed_dim, 2 * h * cfg.layers)
        self.grus = nn.ModuleList(nn.GRU(h, h, batch_first=True) for _ in range(cfg.layers))
        self.norms = nn.ModuleList(nn.LayerNorm(h) for _ in range(cfg.layers))
        self.out = nn.Linear(h, 4 * f)
        nn.init.normal_(self.film.weight, std=0.01)  # small: starts near "no speaker", can learn from step one
        nn.init.zeros_(self.film.bias)
        nn.init.normal_(self.out.weight, std=1e-3)
        nn.init.zeros_(self.out.bias)

    def forward(self, spectra: torch.Tensor, context: torch.Tensor, embedding: torch.Tensor,
                hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """spectra (B, T, 2 ears, 2 * bins), context magnitudes (B, T, 2 ears, context bins) ->
        masked spectra like `spectra`, new hidden (layers, B, hidden)."""
        b, t = spectra.shape[:2]
        x = self.inp(torch.cat([*compressed(spectra, self.cfg.compress), context], -1).reshape(b, t, -1))
        film = self.film(embedding).reshape(b, 1, self.cfg.layers, 2, -1)
        states = []
        for i, (gru, norm) in enumerate(zip(self.grus, self.norms)):
            y = x * (1 + film[:, :, i, 0]) + film[:, :, i, 1]
            y, h = gru(y, hidden[i:i + 1].contiguous())
            states.append(h)
            x = norm(x + y)
        m = self.out(x).reshape(b, t, 2, 2, -1)  # ears, (real, imag), bins
        return apply_mask(spectra, m[:, :, :, 0], m[:, :, :, 1]), torch.cat(states, 0)


def apply_mask(spectra: torch.Tensor, m_re: torch.Tensor, m_im: torch.Tensor) -> torch.Tensor:
    """Complex masks (B, T, 2 ears, bins) times spectra (B, T, 2, 2 * bins: real, then imaginary)."""
    f = spectra.shape[-1] // 2
    re, im = spectra[..., :f], spectra[..., f:]
    return torch.cat([m_re * re - m_im * im, m_re * im + m_im * re], -1)


class GridBlock(nn.Module):
    """Across frequency within a frame: a dilated convolution over the bins; across time: one GRU
    per bin, its weights shared by all bins. The speaker embedding scales and shifts the features
    the GRU hears (FiLM)."""

    def __init__(self, channels: int, hidden: int, dilation: int, embed_dim: int):
        super().__init__()
        c = channels
        self.freq_norm = nn.LayerNorm(c)
        self.freq = nn.Sequential(nn.Conv1d(c, 2 * c, 5, dilation=dilation, padding=2 * dilation), nn.GELU(),
                                  nn.Conv1d(2 * c, c, 1))
        self.time_norm = nn.LayerNorm(c)
        self.film = nn.Linear(embed_dim, 2 * c)
        self.gru = nn.GRU(c, hidden, batch_first=True)
        self.proj = nn.Linear(hidden, c)
        nn.init.normal_(self.film.weight, std=0.01)
        nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor, hidden: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, bins, C), hidden (1, B * bins, H) -> x, hidden."""
        b, t, f, c = x.shape
        y = self.freq_norm(x).reshape(b * t, f, c).transpose(1, 2)
        x = x + self.freq(y).transpose(1, 2).reshape(b, t, f, c)
        film = self.film(embedding).reshape(b, 1, 1, 2, c)
        y = self.time_norm(x) * (1 + film[..., 0, :]) + film[..., 1, :]
        y, hidden = self.gru(y.transpose(1, 2).reshape(b * f, t, c), hidden)
        return x + self.proj(y).reshape(b, f, t, c).transpose(1, 2), hidden


class GridSeparator(nn.Module):
    """Per-bin features (both ears' compressed real and imaginary parts, and 4 more projected from
    the 32 ms context magnitudes of the whole frame) through `GridBlock`s whose weights every bin
    shares, as TF-GridNet's are: each bin is a training example for the same small network, where
    the GRU separator learns one weight per bin. Output: a complex mask per ear and bin."""

    def __init__(self, cfg: ExtractorConfig):
        super().__init__()
        self.cfg = cfg
        self.context = nn.Linear(2 * cfg.context_bins, 4 * cfg.bins)
        self.inp = nn.Linear(8, cfg.channels)
        self.blocks = nn.ModuleList(GridBlock(cfg.channels, cfg.hidden, 2 ** (i % 3), cfg.embed_dim)
                                    for i in range(cfg.layers))
        self.out = nn.Linear(cfg.channels, 4)
        nn.init.normal_(self.out.weight, std=1e-3)
        nn.init.zeros_(self.out.bias)

    def forward(self, spectra: torch.Tensor, context: torch.Tensor, embedding: torch.Tensor,
                hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """As `Separator.forward`; hidden (layers, B, bins * hidden)."""
        b, t, _, two_f = spectra.shape
        f = two_f // 2
        ears = torch.stack(compressed(spectra, self.cfg.compress), -1).permute(0, 1, 3, 2, 4).reshape(b, t, f, 4)
        x = self.inp(torch.cat([ears, self.context(context.reshape(b, t, -1)).reshape(b, t, f, 4)], -1))
        states = []
        for i, block in enumerate(self.blocks):
            x, h = block(x, embedding, hidden[i].reshape(1, b * f, -1))
            states.append(h.reshape(1, b, -1))
        m = self.out(x).reshape(b, t, f, 2, 2)  # bins, ears, (real, imag)
        return apply_mask(spectra, m[..., 0].transpose(2, 3), m[..., 1].transpose(2, 3)), torch.cat(states, 0)


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
        if cfg.context % cfg.hop or cfg.context < cfg.window or cfg.lookahead > cfg.hop:
            raise ValueError("need context = a whole number of hops >= window, and window - hop <= hop")
        self.cfg = cfg
        self.dft = Dft(cfg.window, cfg.hop)
        self.context_magnitude = ContextMagnitude(cfg.context, cfg.compress)
        if cfg.separator not in ("gru", "grid"):
            raise ValueError(f"separator must be 'gru' or 'grid', got {cfg.separator!r}")
        self.separator = GridSeparator(cfg) if cfg.separator == "grid" else Separator(cfg)
        self.enroll = EnrollEncoder(cfg)

    def initial_hidden(self, batch: int, device: torch.device | None = None) -> torch.Tensor:
        return torch.zeros(self.cfg.layers, batch, self.cfg.state_size, device=device)

    def zero_state(self, batch: int = 1) -> dict[str, torch.Tensor]:
        """`ExtractorStep`'s state before the first chunk, by name."""
        cfg = self.cfg
        return {"input_tail": torch.zeros(batch, 2, cfg.context - cfg.hop),
                "output_tail": torch.zeros(batch, 2, cfg.lookahead), "hidden": self.initial_hidden(batch)}

    def separate_frames(self, frames: torch.Tensor, embedding: torch.Tensor, hidden: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """Context frames (B, T, 2, context) -> synthesised output frames (B, T, 2, window), hidden."""
        spectra = self.dft.analyse(frames[..., -self.cfg.window:])
        out, hidden = self.separator(spectra, self.context_magnitude(frames), embedding, hidden)
        return self.dft.synthesise(out), hidden

    def forward(self, mixture: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """Whole-file extraction, (B, 2, N) -> (B, 2, N) aligned with the input (the last 4 ms
        are computed as if the input continued with silence).

        Framing and overlap-add are slices and reshapes of hop-sized blocks (no unfold/fold), so
        this graph exports to ONNX with a dynamic length: context frame t is blocks t..t+m-1;
        each synthesised frame's first hop lands on block t, its last `lookahead` samples on the
        head of block t+1."""
        cfg = self.cfg
        hop, look, m = cfg.hop, cfg.lookahead, cfg.context // cfg.hop
        b, c, n = mixture.shape
        frames_n = (n + look + hop - 1) // hop
        padded = nn.functional.pad(mixture, (cfg.context - hop, (frames_n + 1) * hop - n))
        blocks = padded.reshape(b, c, -1, hop)  # (B, 2, T + m, hop): one spare block at the end
        frames = torch.cat([blocks[:, :, i:i - m] for i in range(m)], -1).transpose(1, 2)  # (B, T, 2, context)
        y, _ = self.separate_frames(frames, embedding, self.initial_hidden(b, mixture.device).to(mixture.dtype))
        y = y.transpose(1, 2)  # (B, 2, T, window)
        head = nn.functional.pad(y[..., :hop], (0, 0, 0, 1))
        tail = nn.functional.pad(y[..., hop:], (0, hop - look, 1, 0))
        return (head + tail).reshape(b, c, -1)[..., look:look + n]


class ExtractorStep(nn.Module):
    """One 8 ms chunk with explicit state: what streams. Its output lags its input by 4 ms:
    the concatenated outputs equal `Extractor.forward` on the whole input, shifted by `lookahead`."""

    def __init__(self, model: Extractor):
        super().__init__()
        self.model = model

    def forward(self, chunk: torch.Tensor, embedding: torch.Tensor, input_tail: torch.Tensor,
                output_tail: torch.Tensor, hidden: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """chunk (B, 2, hop), input_tail (B, 2, context - hop), output_tail (B, 2, lookahead),
        hidden (layers, B, cfg.state_size) -> output (B, 2, hop) and the three new states."""
        cfg = self.model.cfg
        frame = torch.cat([input_tail, chunk], -1)  # (B, 2, context)
        y, hidden = self.model.separate_frames(frame.unsqueeze(1), embedding, hidden)
        y = y[:, 0]  # (B, 2, window)
        output = torch.cat([y[..., :cfg.lookahead] + output_tail, y[..., cfg.lookahead:cfg.hop]], -1)
        return output, frame[..., cfg.hop:], y[..., cfg.hop:], hidden
