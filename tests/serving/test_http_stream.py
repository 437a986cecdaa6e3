"""The transcriber's WebSocket stream, against the real server (stand-in model, 2 workers)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import MAX_AUDIO_SECONDS, SR, Server, tone
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect


def ws_url(server: Server, query: str = "") -> str:
    return server.url.replace("http://", "ws://") + "/stream/transcriber" + (f"?{query}" if query else "")


def receive_all(ws) -> list[dict]:
    out = []
    try:
        while True:
            out.append(json.loads(ws.recv(timeout=30)))
            if out[-1]["type"] in ("done", "error"):
                return out
    except ConnectionClosed:
        return out


def test_stream_gives_notes_then_done(server: Server) -> None:
    audio = tone(440.0, 1.0, start_s=0.5, total_s=3.0)
    with connect(ws_url(server, "format=s16")) as ws:
        ready = json.loads(ws.recv(timeout=30))
        assert ready["type"] == "ready" and ready["sample_rate"] == SR and 0 < ready["latency_s"] <= 0.5
        pcm = (audio * 32767).astype("<i2")
        for i in range(0, pcm.size, 2048):
            ws.send(pcm[i:i + 2048].tobytes())
        ws.send(json.dumps({"type": "end"}))
        events = receive_all(ws)
    assert events[-1]["type"] == "done" and events[-1]["audio_s"] == pytest.approx(3.0, abs=1e-3)
    ons = [e for e in events if e["type"] == "note_on"]
    offs = [e for e in events if e["type"] == "note_off"]
    assert [e["pitch_midi"] for e in ons] == [69] and [e["pitch_midi"] for e in offs] == [69]
    assert ons[0]["start_s"] == pytest.approx(0.5, abs=0.05) and offs[0]["end_s"] == pytest.approx(1.5, abs=0.1)


def test_stream_resamples_other_rates(server: Server) -> None:
    sr = 16000
    t = np.arange(int(2.0 * sr)) / sr
    audio = (0.5 * np.sin(2 * np.pi * 440.0 * t) * ((t > 0.4) & (t < 1.4))).astype("<f4")
    with connect(ws_url(server, f"sample_rate={sr}")) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "ready"
        for i in range(0, audio.size, 1600):
            ws.send(audio[i:i + 1600].tobytes())
        ws.send(json.dumps({"type": "end"}))
        events = receive_all(ws)
    ons = [e for e in events if e["type"] == "note_on"]
    assert [e["pitch_midi"] for e in ons] == [69] and ons[0]["start_s"] == pytest.approx(0.4, abs=0.05)


@pytest.mark.parametrize("query, first, reason", [
    ("onset_threshold=2", None, "params"),
    ("format=mp3", None, "params"),
    ("sample_rate=abc", None, "params"),
    ("volume=11", None, "params"),
    ("", b"\x00\x00\x80", "bad_audio"),  # not whole float32 samples
    ("", np.array([np.nan], "<f4").tobytes(), "bad_audio"),
    ("", "hello", "bad_message"),
])
def test_bad_streams_get_an_error_and_a_close(server: Server, query: str, first, reason: str) -> None:
    with connect(ws_url(server, query)) as ws:
        msgs = []
        if first is not None:
            msgs.append(json.loads(ws.recv(timeout=30)))
            ws.send(first)
        msgs += receive_all(ws)
        assert msgs[-1]["type"] == "error" and msgs[-1]["reason"] == reason and msgs[-1]["error"]
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=30)
    assert closed.value.rcvd.code == 1008


def test_stream_over_the_length_limit_is_refused(server: Server) -> None:
    second = np.zeros(SR, "<f4").tobytes()
    with connect(ws_url(server)) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "ready"
        for _ in range(MAX_AUDIO_SECONDS + 1):
            ws.send(second)
        events = receive_all(ws)
    assert events[-1]["type"] == "error" and events[-1]["reason"] == "too_long"
