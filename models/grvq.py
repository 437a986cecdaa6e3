"""Group-residual vector quantization (GRVQ), as in HiFi-Codec.

The latent [B, D, T] is split into `groups` slices along D; each slice is quantized by a
residual stack of `stages` codebooks: stage s encodes what stages < s left over. Codes are
[B, T, groups, stages]; keeping only the first s stages of every group is a lower bitrate of
the same stream (quantizer dropout trains for that).

Codebooks are learned by exponential moving averages of the vectors assigned to each entry
(no gradients), and entries that fall out of use are restarted on random vectors of the
current batch, so all of them keep carrying bits.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class EMACodebook(nn.Module):
    def __init__(self, size: int, dim: int, decay: float = 0.99, dead_after: float = 1.0, eps: float = 1e-5):
        super().__init__()
        self.size, self.dim, self.decay, self.eps = size, dim, decay, eps
        self.dead_after = dead_after  # restart entries whose EMA usage falls below this many vectors
        self.register_buffer("embedding", torch.randn(size, dim) * 0.1)
        self.register_buffer("usage", torch.ones(size))
        self.register_buffer("summed", self.embedding.clone())
        self.register_buffer("initialized", torch.tensor(False))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[N, dim] -> [N] nearest entries."""
        d = (x.pow(2).sum(1, keepdim=True) - 2 * x @ self.embedding.t() + self.embedding.pow(2).sum(1)[None])
        return d.argmin(dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return F.embedding(codes, self.embedding)

    @torch.no_grad()
    def update(self, x: torch.Tensor, codes: torch.Tensor) -> None:
        """One EMA step on the vectors `x` [N, dim] and their codes; restart dead entries."""
        if not bool(self.initialized):  # start from the data, not from noise
            self.embedding.copy_(x[torch.randint(0, x.shape[0], (self.size,), device=x.device)])
            self.summed.copy_(self.embedding)
            self.usage.fill_(1.0)
            self.initialized.fill_(True)
            return
        onehot = F.one_hot(codes, self.size).type(x.dtype)
        counts, sums = onehot.sum(0), onehot.t() @ x
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(counts)
            torch.distributed.all_reduce(sums)
        self.usage.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.summed.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.usage.sum()
        smoothed = (self.usage + self.eps) / (n + self.size * self.eps) * n
        self.embedding.copy_(self.summed / smoothed[:, None])
        dead = self.usage < self.dead_after
        if dead.any():
            fresh = x[torch.randint(0, x.shape[0], (int(dead.sum()),), device=x.device)]
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.broadcast(fresh, 0)  # every rank restarts the same way
            self.embedding[dead] = fresh
            self.summed[dead] = fresh
            self.usage[dead] = 1.0


class GRVQ(nn.Module):
    def __init__(self, dim: int, groups: int = 2, stages: int = 2, codebook_size: int = 1024,
                 decay: float = 0.99, commitment: float = 0.25):
        super().__init__()
        if dim % groups:
            raise ValueError(f"dim {dim} must split into {groups} groups")
        self.groups, self.stages, self.group_dim, self.commitment = groups, stages, dim // groups, commitment
        self.codebooks = nn.ModuleList(EMACodebook(codebook_size, dim // groups, decay)
                                       for _ in range(groups * stages))

    def _book(self, g: int, s: int) -> EMACodebook:
        return self.codebooks[g * self.stages + s]

    def forward(self, z: torch.Tensor, stages: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z [B, D, T] -> (quantized [B, D, T] with straight-through gradients, codes
        [B, T, groups, stages_used], commitment loss). In training the codebooks update."""
        stages = stages or self.stages
        b, _, t = z.shape
        out, codes, loss = [], [], z.new_zeros(())
        for g, part in enumerate(z.split(self.group_dim, dim=1)):
            x = part.permute(0, 2, 1).reshape(-1, self.group_dim)
            residual, total, group_codes = x, torch.zeros_like(x), []
            for s in range(stages):
                book = self._book(g, s)
                c = book.encode(residual.detach())
                if self.training:
                    book.update(residual.detach(), c)
                q = book.decode(c)
                loss = loss + F.mse_loss(residual, q.detach())
                total = total + q
                residual = residual - q.detach()
                group_codes.append(c)
            quantized = x + (total - x).detach()  # straight-through
            out.append(quantized.reshape(b, t, -1).permute(0, 2, 1))
            codes.append(torch.stack(group_codes, dim=-1).reshape(b, t, stages))
        return torch.cat(out, dim=1), torch.stack(codes, dim=2), self.commitment * loss

    def encode(self, z: torch.Tensor, stages: int | None = None) -> torch.Tensor:
        """z [B, D, T] -> codes [B, T, groups, stages] (no updates)."""
        stages = stages or self.stages
        b, _, t = z.shape
        codes = []
        for g, part in enumerate(z.split(self.group_dim, dim=1)):
            residual, group_codes = part.permute(0, 2, 1).reshape(-1, self.group_dim), []
            for s in range(stages):
                c = self._book(g, s).encode(residual)
                residual = residual - self._book(g, s).decode(c)
                group_codes.append(c)
            codes.append(torch.stack(group_codes, dim=-1).reshape(b, t, stages))
        return torch.stack(codes, dim=2)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, T, groups, s] (s <= stages: a lower bitrate) -> [B, D, T]."""
        parts = []
        for g in range(self.groups):
            q = sum(self._book(g, s).decode(codes[:, :, g, s]) for s in range(codes.shape[-1]))
            parts.append(q.permute(0, 2, 1))
        return torch.cat(parts, dim=1)
