"""WebSocket streaming for the codec: `ws://HOST:3000/stream/codec`.

Protocol (see docs/CONTRACT.md):

- query parameters: `mode` = `encode` (audio in, codes out), `decode` (codes in, audio out) or
  `reconstruct` (audio in, coded audio out; default); `bitrate_kbps` (encode, reconstruct;
  default the highest); `sample_rate` and `format` (`f32` or `s16`) of the audio the client
  sends (encode, reconstruct; default 16 kHz f32); `gain_db` (decode: the level correction of
  the token file the codes come from, applied to the audio; default 0);
- the server first sends `{"type": "ready", ...}` with the model, bitrates and latency;
- audio goes in binary messages of mono PCM; codes go in text messages
  `{"type": "codes", "codes": [[[c, ...], ...], ...]}` ([frames, groups, stages]);
- the server answers each message with what it completes: `{"type": "codes", ...}` messages
  (encode) or binary float32 little-endian audio at the model's rate (decode, reconstruct);
- the client sends `{"type": "end"}` when done; the server sends what remains and
  `{"type": "done", "audio_s", "frames", "gain_db"}`. Concatenated, the streamed output equals
  the offline output of /encode or /decode (the codes exactly, the audio within 1e-4). The level
  correction needs the whole recording, so a stream reports it at the end (`gain_db`, encode and
  reconstruct; the value a .hark file of the same audio carries) rather than applying it to
  audio already sent: a decode stream applies the `gain_db` it is given;
- bad parameters or messages give `{"type": "error", "reason", "error"}` and close code 1008.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from functools import partial
from typing import Any

import numpy as np
from starlette.websockets import WebSocket

from core import audio, codec_tokens, config
from services import metrics
from core.codec_model import CodecModel, DecoderStream, EncoderStream, apply_gain, correction_db
from services.stream_io import StreamError, guarded, incoming, pcm_format, samples

NAME = "codec"
MODES = ("encode", "decode", "reconstruct")
MAX_FRAMES_PER_MESSAGE = 3000  # a minute of codes


class CodecSession:
    """One stream's state: the chosen mode and the encoder/decoder streams it needs."""

    def __init__(self, model: CodecModel, query: dict[str, str]):
        unknown = sorted(set(query) - {"mode", "bitrate_kbps", "sample_rate", "format", "gain_db"})
        if unknown:
            raise StreamError("params", f"Unknown query parameters {unknown}; accepted: mode, bitrate_kbps, "
                                        "sample_rate, format, gain_db")
        self.mode = query.get("mode", "reconstruct")
        if self.mode not in MODES:
            raise StreamError("params", f"mode must be one of {list(MODES)}, not {self.mode!r}")
        try:
            self.kbps = float(query.get("bitrate_kbps", model.bitrates_kbps[-1]))
            stages = model.stages_for(self.kbps)
        except ValueError as exc:
            raise StreamError("params", f"bitrate_kbps: {exc}") from None
        self.rate, self.dtype = pcm_format(query, model.sample_rate)
        try:
            self.gain_db = float(query.get("gain_db", 0.0))
            if self.mode != "decode" and self.gain_db:
                raise ValueError("only mode=decode takes it (encode and reconstruct measure it)")
            if not abs(self.gain_db) <= codec_tokens.MAX_GAIN_DB:
                raise ValueError(f"at most +-{codec_tokens.MAX_GAIN_DB:g} dB")
        except ValueError as exc:
            raise StreamError("params", f"gain_db: {exc}") from None
        self.model = model
        self.resample = audio.ChunkResampler(self.rate, model.sample_rate)
        self.encoder = EncoderStream(model, self.kbps) if self.mode != "decode" else None
        self.decoder = DecoderStream(model) if self.mode != "encode" else None
        # encode decodes too, unheard, to measure the level correction its codes need
        self.shadow = DecoderStream(model) if self.mode == "encode" else None
        self.level_in = audio.LevelMeter(model.sample_rate)
        self.level_out = audio.LevelMeter(model.sample_rate)
        self.stages, self.frames, self.emitted, self.metered = stages, 0, 0, 0
        self.taken = 0  # samples of audio received (or that the codes received decode to), counted by take

    @property
    def audio_s(self) -> float:
        if self.encoder is not None:
            return self.encoder.samples / self.model.sample_rate
        return self.frames * self.model.frame_hop / self.model.sample_rate

    def ready(self) -> dict[str, Any]:
        m = self.model
        return {"type": "ready", "model": m.name, "version": m.version, "mode": self.mode,
                "bitrate_kbps": self.kbps, "bitrates_kbps": m.bitrates_kbps, "sample_rate": self.rate,
                "model_sample_rate": m.sample_rate, "frame_rate": m.frame_rate, "groups": m.groups,
                "stages": self.stages, "codebook_size": m.codebook_size, "latency_ms": m.latency_ms,
                "max_seconds": config.max_audio_seconds()}

    def take(self, message: Any) -> tuple[str, Any]:
        """Check and convert one client message as it arrives, ahead of the model: ("audio",
        samples at the model's rate), ("codes", full codes) or ("end", None). Length limits are
        counted here, on what was received, so a refusal comes as soon as the limit is passed."""
        limit = config.max_audio_seconds()
        if isinstance(message, bytes):
            if self.encoder is None:
                raise StreamError("bad_message", "mode=decode takes codes in text messages, not audio")
            x = self.resample(samples(message, self.dtype))
            self.taken += x.size
            if self.taken > limit * self.model.sample_rate:
                raise StreamError("too_long", f"The stream is over {limit:g} s (HARK_MAX_AUDIO_SECONDS)")
            return "audio", x
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "end":
            return "end", None
        if kind != "codes":
            raise StreamError("bad_message", 'Text messages are {"type": "codes", "codes": [...]} '
                                             'or {"type": "end"}')
        if self.decoder is None or self.encoder is not None:
            raise StreamError("bad_message", f"mode={self.mode} takes audio in binary messages, not codes")
        try:
            codes = np.asarray(message.get("codes"), dtype=np.int64)
            if codes.ndim != 3 or codes.shape[0] > MAX_FRAMES_PER_MESSAGE:
                raise ValueError(f"codes must be [frames <= {MAX_FRAMES_PER_MESSAGE}, groups, stages]")
            full = self.model.full_codes(codes)
        except (TypeError, ValueError) as exc:
            raise StreamError("bad_codes", f"Bad codes: {exc}") from None
        self.taken += full.shape[0] * self.model.frame_hop
        refusal = codec_tokens.too_long(self.taken / self.model.sample_rate, limit)
        if refusal is not None:
            raise StreamError("too_long", refusal)
        return "codes", codes

    def audio_in(self, x: np.ndarray) -> list[Any]:
        self.level_in.push(x)
        return self._codes_out(self.encoder.push(x))

    def codes_in(self, codes: np.ndarray) -> list[Any]:
        self.frames += codes.shape[0]
        return [apply_gain(self._audio_out(self.decoder.push(codes)), self.gain_db)]

    def _audio_out(self, y: np.ndarray) -> np.ndarray:
        self.emitted += y.size
        self._meter(y)
        return y

    def _meter(self, y: np.ndarray) -> None:
        """Meter decoded audio up to the input's length, as the offline correction does (the last
        frame's zero padding decodes to samples that are cut)."""
        if self.encoder is not None:
            take = max(0, min(y.size, self.encoder.samples - self.metered))
            self.level_out.push(y[:take])
            self.metered += take

    def _codes_out(self, codes: np.ndarray) -> list[Any]:
        self.frames += codes.shape[0]
        if self.decoder is not None:
            return [self._audio_out(self.decoder.push(codes))]
        if self.shadow is not None:
            self._meter(self.shadow.push(codes))
        return [{"type": "codes", "codes": codes.tolist()}] if codes.shape[0] else []

    def correction_db(self) -> float:
        """The level correction a .hark file of this stream's audio carries (decode: the given one)."""
        if self.encoder is None:
            return self.gain_db
        return correction_db(self.level_in.all_powers(), self.level_out.all_powers())

    def end(self) -> list[Any]:
        out: list[Any] = []
        if self.encoder is not None:
            flushed = self.resample(np.zeros(0, np.float32), last=True)
            self.level_in.push(flushed)
            out += self._codes_out(self.encoder.push(flushed))
            out += self._codes_out(self.encoder.finish())
        if self.shadow is not None:
            self._meter(self.shadow.finish())
        if self.decoder is not None:
            out.append(self._audio_out(self.decoder.finish()))
            if self.encoder is not None:  # cut the zero padding of the last frame, as /reconstruct does
                excess = self.emitted - self.encoder.samples
                for i in range(len(out) - 1, -1, -1):
                    if excess <= 0:
                        break
                    if isinstance(out[i], np.ndarray):
                        cut = min(excess, out[i].size)
                        out[i], excess = out[i][:out[i].size - cut], excess - cut
        return out


async def _send(websocket: WebSocket, items: list[Any]) -> None:
    for item in items:
        if isinstance(item, np.ndarray):
            if item.size:
                await websocket.send_bytes(item.astype("<f4").tobytes())
        else:
            await websocket.send_json(item)


async def codec_stream(websocket: WebSocket, model: CodecModel | None) -> None:
    await guarded(websocket, NAME, "coding failed on the server", partial(_codec_session, model=model))


async def _codec_session(websocket: WebSocket, model: CodecModel | None) -> None:
    processed_s = 0.0
    if model is None:
        raise StreamError("not_ready", "The codec model is still loading; retry in a moment")
    session = CodecSession(model, dict(websocket.query_params))
    await websocket.send_json(session.ready())
    async with contextlib.aclosing(incoming(websocket, session.take)) as messages:
        async for kind, payload in messages:
            t0 = time.perf_counter()
            if kind == "audio":
                out = await asyncio.to_thread(session.audio_in, payload)
            elif kind == "codes":
                out = await asyncio.to_thread(session.codes_in, payload)
            else:
                out = await asyncio.to_thread(session.end)
                await _send(websocket, out)
                processed_s += time.perf_counter() - t0
                metrics.observe_inference(model.name, session.audio_s, processed_s)
                await websocket.send_json({"type": "done", "audio_s": round(session.audio_s, 4),
                                           "frames": session.frames, "gain_db": session.correction_db()})
                await websocket.close()
                return
            processed_s += time.perf_counter() - t0
            await _send(websocket, out)
