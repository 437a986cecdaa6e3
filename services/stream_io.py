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


async def incoming(websocket: Any, take: Callable[[Any], Any] | None = None) -> AsyncIterator[Any]:
    """The client's messages until it hangs up, read ahead of the stream's work: a binary one as
    its bytes, a text one as its JSON (json_text), each passed through `take` when given. Use it
    as `async with contextlib.aclosing(incoming(ws, take)) as messages`, so the reader stops with
    the stream.

    A task reads the socket all the time, even while the stream computes or waits to send, and
    queues what it reads, because the server sees the client's pings and pongs only while it reads:
    a stream that stopped reading while busy left a fast client's control frames behind its audio
    and ended in "keepalive ping timeout" (1011), and one that stopped reading while its sends
    waited deadlocked with a client that reads only after sending everything. `take` runs in the
    reader: it checks and converts a message (to samples at the model's rate), so what waits in the
    queue is bounded by HARK_MAX_AUDIO_SECONDS, not by the client's format. A refusal (from `take`
    or the idle limit) is raised in its place in the order, after the answers to what came before.
    After {"type": "end"} or a refusal the reader goes on reading (and drops what comes), with
    no idle limit, while the rest is computed.
    """
    import asyncio

    queue: asyncio.Queue[Any] = asyncio.Queue()
    reader = asyncio.create_task(_read_ahead(websocket, queue, take))
    try:
        while True:
            item = await queue.get()
            if item is _HUNG_UP:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        reader.cancel()


_HUNG_UP = object()


async def _read_ahead(websocket: Any, queue: Any, take: Callable[[Any], Any] | None) -> None:
    done = False  # after "end" or a refusal: read on, only so that control frames keep flowing
    while True:
        try:
            message = await (websocket.receive() if done else receive(websocket))
            if message["type"] == "websocket.disconnect":
                queue.put_nowait(_HUNG_UP)
                return
            if done:
                continue
            data = message["bytes"] if message.get("bytes") is not None else json_text(message)
            done = isinstance(data, dict) and data.get("type") == "end"
            queue.put_nowait(take(data) if take is not None else data)
        except StreamError as exc:  # raised by the stream in its place, after the work queued before it
            queue.put_nowait(exc)
            done = True
        except Exception as exc:  # a fault, or the socket already closed: the stream ends with it
            queue.put_nowait(exc)
            return


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
