"""WebSocket streaming for the extractor: `ws://HOST:3000/stream/extractor`.

Protocol:

- the client first sends a text message
  `{"type": "start", "enrollment_id": ID}` (an id from /enroll, valid in the worker that made it)
  or `{"type": "start", "embedding": [256 numbers]}` (the `embedding` /enroll returns: works with
  any worker), plus optionally `"format"`: `"f32"` (default) or `"s16"` and `"sample_rate"`: 16000
  (the only rate: resampling would add its own delay to the 4 ms the model needs);
- the server answers `{"type": "ready", ...}` with the model version, the format and the latency;
- audio goes in binary messages of interleaved stereo PCM (left, right, left, right, ...), each a
  whole number of 8 ms chunks (128 frames: 512 bytes of s16, 1024 of f32 per chunk);
- the server answers each message with one binary message of the same length and format: the
  enrolled voice, 64 frames (4 ms) behind the input;
- the client sends `{"type": "end"}`; the server sends the last 64 frames, then
  `{"type": "done", "audio_s", "chunks"}` and closes. Concatenated and shifted by 64 frames, the
  streamed output equals /extract's output (within 1e-4 for f32);
- bad messages get `{"type": "error", "reason", "error"}` and close code 1008; a server fault
  closes with 1011.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from functools import partial
from typing import Any

import numpy as np
from starlette.websockets import WebSocket

from core import config
from services import metrics, stream_io
from core.extractor_model import EMBED_DIM, HOP, LOOKAHEAD, SAMPLE_RATE, ExtractorModel
from core.extractor_enrollment import check_embedding
from services.extractor_state import enrollment_store, missing_reason
from services.extractor_store import EnrollmentMissing
from services.stream_io import StreamError, guarded, incoming, pcm_format, samples

NAME = "extractor"
START_KEYS = {"type", "enrollment_id", "embedding", "format", "sample_rate", "channels"}
CHANNELS = 2


class ExtractorSession:
    """One stream's state: the voice, the PCM format and the model's stream (its recurrent state
    and the overlap-add tail)."""

    def __init__(self, model: Any, start: dict[str, Any]):
        unknown = sorted(set(start) - START_KEYS)
        if unknown:
            raise StreamError("params", f"Unknown keys {unknown} in the start message; accepted: "
                                        f"{sorted(START_KEYS - {'type'})}")
        rate, self.dtype = pcm_format({"format": str(start.get("format", "f32")),
                                       "sample_rate": str(start.get("sample_rate", SAMPLE_RATE))}, SAMPLE_RATE)
        if rate != SAMPLE_RATE:
            raise StreamError("params", f"sample_rate must be {SAMPLE_RATE}, not {rate}: the stream is not "
                                        "resampled (that would add delay); resample before sending")
        if start.get("channels", CHANNELS) != CHANNELS:
            raise StreamError("params", f"channels must be {CHANNELS} (binaural, interleaved left/right), "
                                        f"not {start['channels']!r}")
        has_id, has_embedding = start.get("enrollment_id") is not None, start.get("embedding") is not None
        if has_id == has_embedding:
            raise StreamError("params", "The start message needs exactly one of enrollment_id (from /enroll) "
                                        f"or embedding ({EMBED_DIM} numbers, the 'embedding' /enroll returns)")
        if has_embedding:
            try:
                embedding = check_embedding(start["embedding"])
            except ValueError as exc:
                raise StreamError("params", str(exc)) from None
        else:
            try:
                embedding = enrollment_store().get(str(start["enrollment_id"]))
            except EnrollmentMissing as exc:
                raise StreamError(f"{exc.reason}_enrollment",
                                  f"enrollment_id {exc.enrollment_id!r} is {exc.reason} in this worker process; "
                                  "enroll again, or start with the 'embedding' /enroll returned (it works "
                                  "with any worker)") from None
        self.model = model
        self.stream = model.stream(embedding)
        self.frames = self.chunks = 0
        self.taken = 0  # frames received, counted by take
        self.chunk_bytes = HOP * CHANNELS * self.dtype.itemsize

    @property
    def audio_s(self) -> float:
        return self.frames / SAMPLE_RATE

    def ready(self) -> dict[str, Any]:
        m = self.model
        return {"type": "ready", "model": m.name, "version": m.version,
                "sample_rate": SAMPLE_RATE, "channels": CHANNELS,
                "format": "s16" if self.dtype.kind == "i" else "f32",
                "chunk_frames": HOP, "chunk_ms": 1000 * HOP / SAMPLE_RATE,
                "lookahead_frames": LOOKAHEAD, "lookahead_ms": 1000 * LOOKAHEAD / SAMPLE_RATE,
                "latency_ms": m.latency_ms,  # algorithmic: one chunk plus the look-ahead
                "max_seconds": config.max_audio_seconds()}

    def take(self, message: Any) -> np.ndarray | None:
        """Check and convert one client message as it arrives, ahead of the model: the audio as
        [2, frames], or None for the end."""
        if not isinstance(message, bytes):
            if not (isinstance(message, dict) and message.get("type") == "end"):
                raise StreamError("bad_message", 'After the start message, send audio in binary messages and '
                                                 'finally {"type": "end"}')
            return None
        if len(message) % self.chunk_bytes:
            raise StreamError("bad_chunk", f"A binary message must hold whole 8 ms chunks of {HOP} stereo frames "
                                           f"({self.chunk_bytes} bytes each in this format); got {len(message)} bytes")
        x = samples(message, self.dtype).reshape(-1, CHANNELS).T
        self.taken += x.shape[1]
        if self.taken / SAMPLE_RATE > config.max_audio_seconds():
            raise StreamError("too_long", f"The stream is over {config.max_audio_seconds():g} s "
                                          "(HARK_MAX_AUDIO_SECONDS)")
        return x

    def audio_in(self, x: np.ndarray) -> bytes:
        if not x.shape[1]:
            return b""
        self.frames += x.shape[1]
        self.chunks += x.shape[1] // HOP
        return self._pcm(self.stream.process(np.ascontiguousarray(x)))

    def end(self) -> bytes:
        return self._pcm(self.stream.flush())

    def _pcm(self, y: np.ndarray) -> bytes:
        interleaved = np.asarray(y, dtype=np.float32).T.reshape(-1)
        if self.dtype.kind == "i":
            return np.clip(np.round(interleaved * 32768.0), -32768, 32767).astype("<i2").tobytes()
        return interleaved.astype("<f4").tobytes()


async def extractor_stream(websocket: WebSocket, model: ExtractorModel | None) -> None:
    await guarded(websocket, NAME, "extraction failed on the server", partial(_extractor_session, model=model))


async def _start_message(websocket: WebSocket) -> dict[str, Any] | None:
    message = await stream_io.receive(websocket, "start message")
    if message["type"] == "websocket.disconnect":
        return None
    start = stream_io.json_text(message)
    if not isinstance(start, dict) or start.get("type") != "start":
        raise StreamError("bad_message", 'The first message must be text: {"type": "start", "enrollment_id": ID} '
                                         f'or {{"type": "start", "embedding": [{EMBED_DIM} numbers]}}, with '
                                         'optional "format" ("f32" or "s16") and "sample_rate" (16000)')
    return start


async def _extractor_session(websocket: WebSocket, model: ExtractorModel | None) -> None:
    if model is None:
        reason = missing_reason()
        raise StreamError("unavailable" if reason else "not_ready",
                          f"This server has no extractor model ({reason})" if reason
                          else "The extractor model is still loading; retry in a moment")
    start = await _start_message(websocket)
    if start is None:
        return
    session = ExtractorSession(model, start)
    await websocket.send_json(session.ready())
    busy_s = 0.0
    try:
        async with contextlib.aclosing(incoming(websocket, session.take)) as messages:
            async for x in messages:
                t0 = time.perf_counter()
                if x is not None:
                    out = await asyncio.to_thread(session.audio_in, x)
                    busy_s += time.perf_counter() - t0
                    if out:
                        await websocket.send_bytes(out)
                    continue
                out = await asyncio.to_thread(session.end)
                busy_s += time.perf_counter() - t0
                await websocket.send_bytes(out)
                await websocket.send_json({"type": "done", "audio_s": round(session.audio_s, 4),
                                           "chunks": session.chunks})
                await websocket.close()
                return
    finally:  # counted however the stream ends: a client may just hang up
        if session.frames:
            metrics.observe_inference(NAME, session.audio_s, busy_s)
