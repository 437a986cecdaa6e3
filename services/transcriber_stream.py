"""WebSocket streaming for the transcriber: `ws://HOST:3000/stream/transcriber`.

Protocol (see docs/CONTRACT.md):

- query parameters: `sample_rate` of the audio sent (default: the model's), `format` `f32`
  (float32 little-endian, default) or `s16` (int16 little-endian), and the decoding parameters
  of /transcribe (`onset_threshold`, `frame_threshold`, `min_note_ms`, `min_freq_hz`,
  `max_freq_hz`, `include_pitch_bends`);
- the server first sends `{"type": "ready", ...}` with the model, the rates and the latency;
- the client sends mono PCM as binary messages, any size up to MAX_MESSAGE_BYTES, and the text
  message `{"type": "end"}` (or simply closes) when the recording stops;
- the server answers `note_on` (start_s, pitch_midi, velocity) as soon as a note is certain and
  `note_off` (the whole note, with pitch bends) when it has ended, then `{"type": "done"}`;
- bad parameters, bad messages or a stream over HARK_MAX_AUDIO_SECONDS give
  `{"type": "error", "reason": ..., "error": ...}` and the socket closes with code 1008.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from functools import partial
from typing import Any

import numpy as np
from starlette.websockets import WebSocket

from core import audio, config
from services import metrics
from services.stream_io import StreamError, guarded, incoming, pcm_format, samples
from core.streaming import LOOKAHEAD_FRAMES, STEP_FRAMES, StreamingTranscriber
from core.transcriber_model import TranscriberModel
from core.transcriber_params import request_params  # the HTTP API's bounds, once

NAME = "transcriber"
_PARAMS = ("onset_threshold", "frame_threshold", "min_note_ms", "min_freq_hz", "max_freq_hz", "include_pitch_bends")


def _setup(query: dict[str, str], model: Any) -> tuple[int, np.dtype, StreamingTranscriber]:
    unknown = sorted(set(query) - {"sample_rate", "format", *_PARAMS})
    if unknown:
        raise StreamError("params", f"Unknown query parameters {unknown}; accepted: sample_rate, format, {', '.join(_PARAMS)}")
    rate, dtype = pcm_format(query, model.sample_rate)
    try:
        _, decode_kwargs = request_params(model, {k: query[k] for k in _PARAMS if k in query})
    except ValueError as exc:
        raise StreamError("params", f"Invalid parameters: {exc}") from None
    return rate, dtype, StreamingTranscriber(model, decode_kwargs)


async def transcribe_stream(websocket: WebSocket, model: TranscriberModel | None) -> None:
    await guarded(websocket, NAME, "transcription failed on the server", partial(_transcribe_session, model=model))


async def _transcribe_session(websocket: WebSocket, model: TranscriberModel | None) -> None:
    started, processed_s = time.perf_counter(), 0.0
    if model is None:
        raise StreamError("not_ready", "The transcriber model is still loading; retry in a moment")
    rate, dtype, stream = _setup(dict(websocket.query_params), model)
    resample = audio.ChunkResampler(rate, model.sample_rate)
    max_s = config.max_audio_seconds()
    await websocket.send_json({
        "type": "ready", "model": model.name, "version": model.version, "sample_rate": rate,
        "model_sample_rate": model.sample_rate, "frame_rate": model.frame_rate,
        "latency_s": round((LOOKAHEAD_FRAMES + STEP_FRAMES + stream.settle) / model.frame_rate, 3),
        "max_seconds": max_s,
    })
    received = 0  # samples at the model's rate; counted exactly, so a stream of the limit passes

    def take(message: Any) -> tuple[bool, np.ndarray]:  # as each message arrives: (is it the end, samples)
        nonlocal received
        if isinstance(message, bytes):
            x = resample(samples(message, dtype))
            received += x.size
            if received > max_s * model.sample_rate:
                raise StreamError("too_long", f"The stream is over {max_s:g} s (HARK_MAX_AUDIO_SECONDS)")
            return False, x
        if not isinstance(message, dict) or message.get("type") != "end":
            raise StreamError("bad_message", 'Text messages must be {"type": "end"}; audio goes in binary messages')
        return True, resample(np.zeros(0, np.float32), last=True)

    async with contextlib.aclosing(incoming(websocket, take)) as messages:
        async for end, x in messages:
            t0 = time.perf_counter()
            if not end:
                events = await asyncio.to_thread(stream.push, x)
                processed_s += time.perf_counter() - t0
                for e in events:
                    await websocket.send_json(e)
                continue
            events = await asyncio.to_thread(lambda: stream.push(x) + stream.finish())
            processed_s += time.perf_counter() - t0
            for e in events:
                await websocket.send_json(e)
            metrics.observe_inference(model.name, stream.seconds_received, processed_s)
            await websocket.send_json({"type": "done", "audio_s": round(stream.seconds_received, 3),
                                       "wall_s": round(time.perf_counter() - started, 3)})
            await websocket.close()
            return
