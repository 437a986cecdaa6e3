"""Streams of the longest accepted length (600 s, the default HARK_MAX_AUDIO_SECONDS) sent as
fast as a client can, reading only after everything is sent, as the simplest client does.

Before the server read its streams ahead, the transcriber's closed with 1011 (keepalive ping
timeout: the client's pings waited behind its audio while the server computed) and the codec's
deadlocked (the server's sends waited on a client that reads only after sending). The models
here are cheap stand-ins, so the 600 s take seconds of compute, not minutes; the transport path is
the one the shipped models use.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import CODEC_SR, Server, start_server, stop_server
from websockets.sync.client import connect

MAX_S = 600  # the default of HARK_MAX_AUDIO_SECONDS, checked below
SR = 22050
HOP = 256

pytestmark = pytest.mark.slow


def build_light_transcriber(directory: Path) -> Path:
    """A transcriber of any input length whose output is each frame's loudness on three keys:
    the stream runs long windows of it, so 600 s cost seconds."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    directory.mkdir(parents=True, exist_ok=True)
    keys = np.zeros(88, np.float32)
    keys[[39, 43, 46]] = 4.0
    init = [
        numpy_helper.from_array(np.array([0, -1, HOP], np.int64), "frames_shape"),
        numpy_helper.from_array(keys, "keys"),
        numpy_helper.from_array(np.repeat(keys, 3), "bins"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
    ]
    nodes = [
        helper.make_node("Reshape", ["audio", "frames_shape"], ["framed"]),
        helper.make_node("Abs", ["framed"], ["magnitude"]),
        helper.make_node("ReduceMean", ["magnitude"], ["level"], axes=[2], keepdims=1),
        helper.make_node("Mul", ["level", "keys"], ["raw_note"]),
        helper.make_node("Clip", ["raw_note", "zero", "one"], ["note"]),
        helper.make_node("Identity", ["note"], ["onset"]),
        helper.make_node("Mul", ["level", "bins"], ["raw_contour"]),
        helper.make_node("Clip", ["raw_contour", "zero", "one"], ["contour"]),
    ]
    graph = helper.make_graph(
        nodes, "light_transcriber",
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", "samples"])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", "frames", width])
         for name, width in (("onset", 88), ("note", 88), ("contour", 264))],
        init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, directory / "transcriber.onnx")
    card = {"name": "transcriber", "version": "light", "files": {"model": "transcriber.onnx"},
            "io": {"sample_rate": SR, "hop": HOP, "window_samples": 172 * HOP, "n_keys": 88, "min_midi": 21,
                   "bins_per_semitone": 3, "contour_bins": 264},
            "thresholds": {"onset": 0.5, "frame": 0.5}, "config": {"kind": "test stand-in: frame loudness"}}
    (directory / "card.json").write_text(json.dumps(card))
    return directory


@pytest.fixture(scope="module")
def long_server(tmp_path_factory: pytest.TempPathFactory, stand_in_model_dir: Path):
    import shutil

    root = tmp_path_factory.mktemp("long_artifacts")
    for family in ("codec", "extractor", "classifier"):
        shutil.copytree(stand_in_model_dir.parent / family, root / family)
    model_dir = build_light_transcriber(root / "transcriber")
    # The default limit, on purpose: the test is about the longest stream a default server takes.
    srv = start_server("services.hark:Hark", tmp_path_factory.mktemp("long_server"), model_dir,
                       HARK_UI="0", HARK_WORKERS="1")
    assert "HARK_MAX_AUDIO_SECONDS" not in srv.env
    yield srv
    stop_server(srv)


def ws_url(server: Server, path: str) -> str:
    return server.url.replace("http://", "ws://") + path


def bursts(seconds: float, sr: int) -> np.ndarray:
    """0.5 s tones every 2 s, so the stream has something to say all along."""
    t = np.arange(int(seconds * sr)) / sr
    return (0.4 * np.sin(2 * np.pi * 220 * t) * ((t % 2.0) < 0.5)).astype("<f4")


def test_the_longest_transcriber_stream_completes(long_server: Server) -> None:
    audio = bursts(MAX_S, SR)
    with connect(ws_url(long_server, f"/stream/transcriber?sample_rate={SR}")) as ws:
        ready = json.loads(ws.recv(timeout=30))
        assert ready["max_seconds"] == MAX_S
        for i in range(0, audio.size, SR // 10):  # the README's 100 ms chunks, all sent before reading
            ws.send(audio[i:i + SR // 10].tobytes())
        ws.send(json.dumps({"type": "end"}))
        events = []
        while (event := json.loads(ws.recv(timeout=120)))["type"] != "done":
            events.append(event)
    assert event["audio_s"] == pytest.approx(MAX_S, abs=1e-3)
    # Every 2 s burst is a note, to the last: the stream was decoded to its end.
    offs = [e for e in events if e["type"] == "note_off"]
    assert len(offs) >= 3 * (MAX_S // 2) - 3 and max(e["end_s"] for e in offs) > MAX_S - 2


def test_the_longest_codec_stream_completes(long_server: Server) -> None:
    audio = bursts(MAX_S, CODEC_SR)
    decoded = 0
    with connect(ws_url(long_server, f"/stream/codec?mode=reconstruct&sample_rate={CODEC_SR}")) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "ready"
        for i in range(0, audio.size, CODEC_SR // 50):  # the README's 20 ms chunks, all sent before reading
            ws.send(audio[i:i + CODEC_SR // 50].tobytes())
        ws.send(json.dumps({"type": "end"}))
        while not isinstance(msg := ws.recv(timeout=120), str):
            decoded += len(msg) // 4
    done = json.loads(msg)
    assert {k: done[k] for k in ("type", "audio_s", "frames")} == {"type": "done", "audio_s": MAX_S, "frames": MAX_S * 50}
    assert abs(done["gain_db"]) <= 20  # the level correction a .hark file of this audio would carry
    assert decoded == audio.size
