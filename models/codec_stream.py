"""Graph forms of the codec for export: whole-signal encode/decode, and chunk-by-chunk steps
whose causal context travels as explicit state tensors (what an ONNX streaming graph needs).

A step sees the same inputs as the whole-signal pass (every layer is causal), so streaming
reproduces the offline codes and audio. The decoder's overlap-add leaves the last `n_fft - hop`
samples of each chunk unfinished; they are carried in the state, so a stream of decoder steps
emits the offline audio delayed by that many samples (see `DecoderStep`).

Codes equal to `codebook_size` mean "stage not sent" and decode to zero: the same decoder graph
serves every bitrate.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.codec import Codec, CausalConv1d


def _conv_step(conv: CausalConv1d, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    full = torch.cat([state, x], dim=-1)
    y = F.conv1d(full, conv.weight, conv.bias, dilation=conv.dilation, groups=conv.groups)
    return y, full[..., full.shape[-1] - conv.left:]


class CodeTables(nn.Module):
    """Codebook tables with an all-zero entry appended, for decoding codes at any bitrate."""

    def __init__(self, codec: Codec):
        super().__init__()
        q = codec.quantizer
        tables = [torch.cat([q._book(g, s).embedding, q._book(g, s).embedding.new_zeros(1, q.group_dim)])
                  for g in range(q.groups) for s in range(q.stages)]
        self.register_buffer("tables", torch.stack(tables))  # [groups * stages, size + 1, group_dim]
        self.groups, self.stages = q.groups, q.stages

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, T, groups, stages] -> latent [B, D, T]."""
        parts = []
        for g in range(self.groups):
            q = sum(F.embedding(codes[:, :, g, s], self.tables[g * self.stages + s]) for s in range(self.stages))
            parts.append(q)
        return torch.cat(parts, dim=-1).transpose(1, 2)


class EncoderGraph(nn.Module):
    """audio [B, T] (T a multiple of frame_hop) -> codes [B, T / frame_hop, groups, stages]."""

    def __init__(self, codec: Codec):
        super().__init__()
        self.codec = codec

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.codec.quantizer.encode(self.codec.encoder(audio))


class DecoderGraph(nn.Module):
    """codes [B, T, groups, stages] -> audio [B, T * frame_hop]."""

    def __init__(self, codec: Codec):
        super().__init__()
        self.tables, self.decoder = CodeTables(codec), codec.decoder

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.tables(codes))


class EncoderStep(nn.Module):
    """(audio chunk [B, n * frame_hop], *state) -> (codes [B, n, groups, stages], *new state)."""

    def __init__(self, codec: Codec):
        super().__init__()
        self.codec, self.cfg = codec, codec.cfg

    def initial_state(self, batch: int = 1) -> list[torch.Tensor]:
        cfg, enc = self.cfg, self.codec.encoder
        return [torch.zeros(batch, cfg.analysis_fft - cfg.hop),
                *(torch.zeros(batch, cfg.channels, layer.left) for layer in enc.layers)]

    def forward(self, audio: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        cfg, enc = self.cfg, self.codec.encoder
        x = torch.cat([state[0], audio], dim=-1)
        h = enc.frames(x[:, None])
        new_state = [x[:, x.shape[-1] - (cfg.analysis_fft - cfg.hop):]]
        for layer, s in zip(enc.layers, state[1:]):
            y, s = _conv_step(layer, h, s)
            h = h + F.gelu(y)
            new_state.append(s)
        return (self.codec.quantizer.encode(enc.out(h)), *new_state)


class DecoderStep(nn.Module):
    """(codes [B, n, groups, stages], *state) -> (audio [B, n * frame_hop], *new state).

    The audio of a step ends `n_fft - hop` samples before the offline audio of the same codes
    does (that overlap waits in the state for the next chunk): offline audio = the concatenated
    steps with their first `n_fft - hop` samples dropped, plus the final state's tail.
    """

    def __init__(self, codec: Codec):
        super().__init__()
        self.tables, self.decoder, self.cfg = CodeTables(codec), codec.decoder, codec.cfg

    @property
    def overlap(self) -> int:
        return self.cfg.n_fft - self.cfg.hop

    def initial_state(self, batch: int = 1) -> list[torch.Tensor]:
        dec, c = self.decoder, self.cfg.decoder_channels
        return [torch.zeros(batch, self.cfg.latent_dim, dec.inp.left),
                *(torch.zeros(batch, c, block.dw.left) for block in dec.blocks),
                torch.zeros(batch, self.overlap)]

    def forward(self, codes: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        cfg, dec = self.cfg, self.decoder
        h, s0 = _conv_step(dec.inp, self.tables(codes), state[0])
        new_state = [s0]
        for block, s in zip(dec.blocks, state[1:-1]):
            y, s = _conv_step(block.dw, h, s)
            y = block.pw2(F.gelu(block.pw1(block.norm(y.transpose(1, 2))))) * block.scale
            h = h + y.transpose(1, 2)
            new_state.append(s)
        re, im = dec.spectrum_head(h)
        y = F.conv_transpose1d(torch.cat([re, im], dim=1), dec.synthesis, stride=cfg.hop)[:, 0]
        n = codes.shape[1] * cfg.frame_hop
        y = torch.cat([y[:, :self.overlap] + state[-1], y[:, self.overlap:]], dim=-1)
        return (y[:, :n], *new_state, y[:, n:])
