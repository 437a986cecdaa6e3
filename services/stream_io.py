"""What every family's WebSocket stream shares: refusals, the PCM message format, rate parsing.

A refusal is a `StreamError` (reason, message); the handler sends it as
`{"type": "error", "reason": ..., "error": ...}` and closes with 1008.
"""
from __future__ import annotations

import numpy as np

MAX_MESSAGE_BYTES = 1 << 20
FORMATS = {"f32": np.dtype("<f4"), "s16": np.dtype("<i2")}


class StreamError(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


def pcm_format(query: dict[str, str], default_rate: int) -> tuple[int, np.dtype]:
    """(sample_rate, sample dtype) from the `sample_rate` and `format` query parameters."""
    fmt = query.get("format", "f32")
    if fmt not in FORMATS:
        raise StreamError("params", f"format must be one of {sorted(FORMATS)}, not {fmt!r}")
    try:
        rate = int(query.get("sample_rate", default_rate))
    except ValueError:
        raise StreamError("params", f"sample_rate must be an integer, not {query['sample_rate']!r}") from None
    if not 8000 <= rate <= 192000:
        raise StreamError("params", f"sample_rate must be 8000-192000 Hz, not {rate}")
    return rate, FORMATS[fmt]


def samples(data: bytes, dtype: np.dtype) -> np.ndarray:
    """A binary message -> float32 samples; refuses oversize, ragged and non-finite messages."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise StreamError("too_large", f"A message may carry at most {MAX_MESSAGE_BYTES} bytes; send smaller chunks")
    if len(data) % dtype.itemsize:
        raise StreamError("bad_audio", f"A binary message must hold whole {dtype.itemsize}-byte samples")
    x = np.frombuffer(data, dtype=dtype)
    x = x.astype(np.float32) / 32768.0 if dtype.kind == "i" else x.astype(np.float32)
    if not np.isfinite(x).all():
        raise StreamError("bad_audio", "The audio holds NaN or infinite samples")
    return x
