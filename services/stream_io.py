"""What every family's WebSocket stream shares: refusals, the PCM message format, rate parsing,
receiving the client's messages.

A refusal is a `StreamError` (reason, message); `guarded` sends it as
`{"type": "error", "reason": ..., "error": ...}` and closes with 1008.
"""
from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import numpy as np

log = logging.getLogger("hark.stream")

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


def json_text(message: dict[str, Any]) -> Any:
    """A text message's JSON, or None when it is not JSON: each stream says what it expected."""
    try:
        return json.loads(message.get("text") or "")
    except json.JSONDecodeError:
        return None


async def receive(websocket: Any, what: str = "message") -> MutableMapping[str, Any]:
    """The next ASGI message; a client silent for HARK_WS_IDLE_S is refused, so an idle socket
    does not hold its slot for ever."""
    import asyncio

    from core import config

    idle = config.ws_idle_s()
    try:
        message = await asyncio.wait_for(websocket.receive(), idle)
    except asyncio.TimeoutError:
        raise StreamError("idle", f"No {what} for {idle:g} s (HARK_WS_IDLE_S): send audio more often, "
                                  'or {"type": "end"} when done') from None
    text = message.get("text")
    if text is not None and len(text) > MAX_MESSAGE_BYTES:
        raise StreamError("too_large", f"A text message may carry at most {MAX_MESSAGE_BYTES} bytes; "
                                       "send the codes in smaller messages")
    return message


async def incoming(websocket: Any) -> AsyncIterator[bytes | Any]:
    """The client's messages until it hangs up: a binary one as its bytes, a text one as its
    JSON (json_text). The stream's loop ends when the client disconnects."""
    while True:
        message = await receive(websocket)
        if message["type"] == "websocket.disconnect":
            return
        yield message["bytes"] if message.get("bytes") is not None else json_text(message)


async def guarded(websocket: Any, family: str, fault: str, session: Callable[[Any], Awaitable[None]]) -> None:
    """Accept the socket and run one stream `session`; a refusal is sent and closes with 1008,
    a server fault is logged, said on the socket and closes with 1011."""
    from starlette.websockets import WebSocketDisconnect

    from services import metrics

    await websocket.accept()
    try:
        await session(websocket)
    except StreamError as exc:
        metrics.count_rejection(family, exc.reason)
        await websocket.send_json({"type": "error", "reason": exc.reason, "error": exc.message})
        await websocket.close(code=1008)
    except WebSocketDisconnect:
        return
    except Exception:  # a server fault: say so on the socket rather than dropping it silently
        log.exception("%s stream failed", family)
        await websocket.send_json({"type": "error", "reason": "internal", "error": fault})
        await websocket.close(code=1011)
