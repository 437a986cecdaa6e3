"""The codec over HTTP and WebSocket, against the real server (stand-in codec, 2 workers)."""
from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pytest
import soundfile as sf
from conftest import CODEC_HOP, CODEC_SR, MAX_AUDIO_SECONDS, MAX_UPLOAD_MB, Server, wav_bytes
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from core import codec_tokens


def speech_like(seconds: float = 1.3, sr: int = CODEC_SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 20 * np.sin(2 * np.pi * 2 * t)
    voiced = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / sr) / k for k in range(1, 12))
    return (0.1 * voiced * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)


def post(server: Server, route: str, files: dict, data: dict | None = None) -> httpx.Response:
    return httpx.post(f"{server.url}{route}", files=files, data=data or {}, timeout=60)


def wav_of(response: httpx.Response) -> np.ndarray:
    audio, sr = sf.read(io.BytesIO(response.content), dtype="float32")
    assert sr == CODEC_SR
    return audio


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return speech_like()


@pytest.mark.parametrize("kbps", [1, 2])
def test_encode_then_decode_equals_reconstruct(server: Server, clip: np.ndarray, kbps: int) -> None:
    upload = {"audio": ("speech.wav", wav_bytes(clip, CODEC_SR), "audio/wav")}
    encoded = post(server, "/encode", upload, {"bitrate_kbps": str(kbps)})
    assert encoded.status_code == 200, encoded.text
    assert encoded.headers["content-disposition"].endswith('speech.hark"')
    tokens = codec_tokens.loads(encoded.content)
    assert tokens.codes.shape == (-(-clip.size // CODEC_HOP), 2, kbps) and tokens.samples == clip.size
    decoded = post(server, "/decode", {"tokens": ("speech.hark", encoded.content, "application/octet-stream")})
    assert decoded.status_code == 200, decoded.text
    coded = post(server, "/reconstruct", upload, {"bitrate_kbps": str(kbps)})
    assert coded.status_code == 200, coded.text
    a, b = wav_of(decoded), wav_of(coded)
    assert a.size == b.size == clip.size and np.abs(a - b).max() <= 1 / 32768 + 1e-6


def test_encode_as_json(server: Server, clip: np.ndarray) -> None:
    upload = {"audio": ("speech.wav", wav_bytes(clip, CODEC_SR), "audio/wav")}
    r = post(server, "/encode", upload, {"format": "json", "bitrate_kbps": "1"})
    assert r.status_code == 200, r.text
    body = r.json()
    codes = np.asarray(body["codes"])
    assert codes.shape == (body["frames"], 2, 1) and body["bitrate_kbps"] == 1.0
    binary = codec_tokens.loads(post(server, "/encode", upload, {"bitrate_kbps": "1"}).content)
    assert np.array_equal(codes, binary.codes)
    assert body["file_bytes"] == len(codec_tokens.dumps(binary))


def _token_file(clip: np.ndarray, server: Server) -> bytes:
    upload = {"audio": ("speech.wav", wav_bytes(clip, CODEC_SR), "audio/wav")}
    return post(server, "/encode", upload).content


def test_malformed_token_files_are_refused(server: Server, clip: np.ndarray) -> None:
    good = _token_file(clip, server)
    flipped = bytearray(good)
    flipped[40] ^= 0xFF
    foreign = codec_tokens.dumps(codec_tokens.Tokens(np.zeros((10, 2, 2), dtype=np.int64), CODEC_SR, 50.0, 512, 3200))
    cases = {"truncated": good[:-7], "bad magic": b"RIFF" + good[4:], "bad checksum": bytes(flipped),
             "empty": b"", "other layout": foreign, "a wav file": wav_bytes(clip, CODEC_SR)}
    for name, data in cases.items():
        r = post(server, "/decode", {"tokens": ("t.hark", data, "application/octet-stream")})
        assert r.status_code == 400, (name, r.status_code, r.text)
        assert r.json()["reason"] == "bad_tokens", name


def test_bad_requests(server: Server, clip: np.ndarray) -> None:
    upload = {"audio": ("speech.wav", wav_bytes(clip, CODEC_SR), "audio/wav")}
    r = post(server, "/reconstruct", upload, {"bitrate_kbps": "3"})
    assert r.status_code == 400 and "1, 2" in r.json()["error"]
    r = httpx.post(f"{server.url}/decode", files={"other": ("x", b"x")}, timeout=30)
    assert r.status_code == 400 and r.json()["reason"] == "unknown_field"
    r = post(server, "/reconstruct", {"audio": ("x.wav", b"not audio at all", "audio/wav")})
    assert r.status_code == 400


def ws_url(server: Server, query: str) -> str:
    return server.url.replace("http://", "ws://") + "/stream/codec?" + query


def stream(server: Server, query: str, messages: list) -> tuple[dict, list]:
    """Send `messages` (bytes or dicts), then end; returns (ready, replies as arrays or dicts)."""
    replies = []
    with connect(ws_url(server, query)) as ws:
        ready = json.loads(ws.recv(timeout=30))
        for m in messages:
            ws.send(m if isinstance(m, bytes) else json.dumps(m))
        ws.send(json.dumps({"type": "end"}))
        try:
            while True:
                msg = ws.recv(timeout=30)
                replies.append(np.frombuffer(msg, "<f4") if isinstance(msg, bytes) else json.loads(msg))
                if isinstance(replies[-1], dict) and replies[-1]["type"] in ("done", "error"):
                    break
        except ConnectionClosed:
            pass
    return ready, replies


def test_stream_reconstruct_equals_offline(server: Server, clip: np.ndarray) -> None:
    pcm = clip.astype("<f4")
    chunks = [pcm[i:i + 700].tobytes() for i in range(0, pcm.size, 700)]  # not frame-aligned
    ready, replies = stream(server, "mode=reconstruct&bitrate_kbps=1", chunks)
    assert ready["type"] == "ready" and ready["latency_ms"] <= 40
    assert replies[-1]["type"] == "done"
    streamed = np.concatenate([r for r in replies if isinstance(r, np.ndarray)])
    offline = post(server, "/reconstruct", {"audio": ("s.wav", wav_bytes(clip, CODEC_SR, "FLOAT"), "audio/wav")},
                   {"bitrate_kbps": "1"})
    ref = wav_of(offline)
    assert streamed.size == clip.size
    # The level correction needs the whole recording: the stream reports it at the end, and it is
    # the one the offline reconstruction applied.
    gain = replies[-1]["gain_db"]
    assert gain != 0.0
    streamed = np.clip(streamed * 10 ** (gain / 20), -1, 1)
    # The WAV reply is 16-bit: compare within its quantisation step.
    assert np.abs(streamed - ref).max() <= 1 / 32768 + 1e-4


def test_stream_encode_then_decode_equals_offline(server: Server, clip: np.ndarray) -> None:
    pcm = (clip * 32767).astype("<i2")
    _, replies = stream(server, "mode=encode&format=s16", [pcm[i:i + 1000].tobytes() for i in range(0, pcm.size, 1000)])
    codes = np.concatenate([np.asarray(r["codes"]) for r in replies if isinstance(r, dict) and r["type"] == "codes"])
    upload = {"audio": ("s.wav", wav_bytes(pcm.astype(np.float32) / 32768, CODEC_SR, "FLOAT"), "audio/wav")}
    offline = np.asarray(post(server, "/encode", upload, {"format": "json"}).json()["codes"])
    assert np.array_equal(codes, offline)
    token_file = codec_tokens.loads(post(server, "/encode", upload).content)
    assert replies[-1]["gain_db"] == pytest.approx(token_file.gain_db, abs=0.02)
    _, replies = stream(server, "mode=decode", [{"type": "codes", "codes": codes[i:i + 7].tolist()}
                                                for i in range(0, len(codes), 7)])
    audio = np.concatenate([r for r in replies if isinstance(r, np.ndarray)])
    assert audio.size == len(codes) * CODEC_HOP


@pytest.mark.parametrize("query, messages, reason", [
    ("mode=sing", [], "params"),
    ("bitrate_kbps=5", [], "params"),
    ("mode=decode", [b"\x00\x00\x00\x00"], "bad_message"),
    ("mode=decode", [{"type": "codes", "codes": [[[1024, 0]]]}], "bad_codes"),
    ("mode=encode", [b"\x00\x00\x00"], "bad_audio"),
])
def test_stream_refusals(server: Server, query: str, messages: list, reason: str) -> None:
    with connect(ws_url(server, query)) as ws:
        first = json.loads(ws.recv(timeout=30))
        if first["type"] == "ready":
            for m in messages:
                ws.send(m if isinstance(m, bytes) else json.dumps(m))
            first = json.loads(ws.recv(timeout=30))
        assert first["type"] == "error" and first["reason"] == reason
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=30)
        assert ws.close_code == 1008


def one_hour_of_tokens() -> bytes:
    frames = 3600 * CODEC_SR // CODEC_HOP
    codes = np.zeros((frames, 2, 2), np.int64)
    return codec_tokens.dumps(codec_tokens.Tokens(codes, CODEC_SR, CODEC_SR / CODEC_HOP, 1024, frames * CODEC_HOP))


def test_decode_refuses_tokens_longer_than_the_audio_limit(server: Server) -> None:
    data = one_hour_of_tokens()
    assert len(data) < MAX_UPLOAD_MB * 1_000_000  # under the byte cap: only the duration refuses it
    r = post(server, "/decode", {"tokens": ("hour.hark", data, "application/octet-stream")})
    assert r.status_code == 413, r.text
    body = r.json()
    assert body["reason"] == "too_long"
    assert "3600.0 s" in body["error"] and f"{MAX_AUDIO_SECONDS} s" in body["error"]
    assert "HARK_MAX_AUDIO_SECONDS" in body["error"]


def test_stream_decode_refuses_codes_past_the_audio_limit(server: Server) -> None:
    frames = int((MAX_AUDIO_SECONDS + 1) * CODEC_SR / CODEC_HOP)
    codes = np.zeros((frames, 2, 2), np.int64).tolist()
    with connect(ws_url(server, "mode=decode")) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "ready"
        ws.send(json.dumps({"type": "codes", "codes": codes}))
        reply = json.loads(ws.recv(timeout=30))
        assert reply["type"] == "error" and reply["reason"] == "too_long", reply
        assert f"{MAX_AUDIO_SECONDS} s" in reply["error"]
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=30)
        assert ws.close_code == 1008
