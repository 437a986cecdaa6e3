"""Run a fixed-window frame model over audio of any length.

The model sees `window_samples` at a time and answers `window_frames` frames, frame t of a window
centred on its sample t * hop. Frames near a window's edges see zero padding instead of the real
neighbouring audio, so each window contributes only its centre: `margin` frames are dropped at
both edges, except at the outer edges of the first and last windows, which have no neighbour.
Consecutive windows therefore start `window_frames - 2 * margin` frames apart, and frame t of the
stitched output is centred on sample t * hop of the input, as for a single pass.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

# A batch of windows [batch, window_samples] -> outputs by name, each [batch, window_frames, ...].
BatchModel = Callable[[np.ndarray], Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class Plan:
    """Where each window starts and which of its frames it contributes."""

    n_frames: int  # frames of the stitched output
    n_windows: int
    window_samples: int
    window_frames: int
    hop: int
    margin: int

    @property
    def step_frames(self) -> int:
        return self.window_frames - 2 * self.margin

    def window_start_sample(self, i: int) -> int:
        return i * self.step_frames * self.hop

    def kept(self, i: int) -> tuple[int, int, int]:
        """(first local frame, one past the last local frame, first global frame) of window i."""
        first = 0 if i == 0 else self.margin
        last = self.window_frames if i == self.n_windows - 1 else self.window_frames - self.margin
        offset = i * self.step_frames
        last = min(last, self.n_frames - offset)
        return first, last, offset + first


def plan(n_samples: int, *, window_samples: int, hop: int, margin: int) -> Plan:
    if window_samples % hop:
        raise ValueError(f"window_samples {window_samples} must be a multiple of hop {hop}")
    window_frames = window_samples // hop
    if not 0 <= 2 * margin < window_frames:
        raise ValueError(f"margin {margin} leaves no centre in a {window_frames}-frame window")
    n_frames = max(1, math.ceil(n_samples / hop))
    step = window_frames - 2 * margin
    n_windows = 1 if n_frames <= window_frames else 1 + math.ceil((n_frames - window_frames) / step)
    return Plan(n_frames, n_windows, window_samples, window_frames, hop, margin)


def iter_batches(audio: np.ndarray, p: Plan, batch_size: int) -> Iterator[np.ndarray]:
    """Windows of `audio` (zero-padded past its end), `batch_size` at a time, as contiguous float32."""
    total = p.window_start_sample(p.n_windows - 1) + p.window_samples
    padded = np.zeros(total, dtype=np.float32)
    padded[: min(audio.size, total)] = audio[:total]
    step = p.step_frames * p.hop
    views = np.lib.stride_tricks.sliding_window_view(padded, p.window_samples)[::step]
    for i in range(0, p.n_windows, batch_size):
        yield np.ascontiguousarray(views[i:i + batch_size])


def run(
    model: BatchModel,
    audio: np.ndarray,
    *,
    window_samples: int,
    hop: int,
    margin: int,
    batch_size: int = 16,
) -> dict[str, np.ndarray]:
    """Stitched model outputs for the whole of `audio`: name -> [frames, ...]."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    p = plan(audio.size, window_samples=window_samples, hop=hop, margin=margin)
    out: dict[str, np.ndarray] = {}
    index = 0
    for batch in iter_batches(audio, p, batch_size):
        results = model(batch)
        for name, value in results.items():
            value = np.asarray(value)
            if value.shape[:2] != (batch.shape[0], p.window_frames):
                raise ValueError(
                    f"model output {name!r} has shape {value.shape}; expected "
                    f"[{batch.shape[0]}, {p.window_frames}, ...]"
                )
            if name not in out:
                out[name] = np.empty((p.n_frames, *value.shape[2:]), dtype=value.dtype)
            for j in range(batch.shape[0]):
                first, last, at = p.kept(index + j)
                out[name][at:at + last - first] = value[j, first:last]
        index += batch.shape[0]
    return out
