"""Shared fixtures: a stand-in transcriber ONNX model, WAV helpers, and a real `bentoml serve`.

The stand-in model keeps the tests independent of training: it honours the ONNX contract
(audio [batch, 44032] -> onset/note [batch, 172, 88], contour [batch, 172, 264]) and is a crude
but real pitch detector (a DFT at every contour bin's frequency), so a pure tone comes out as
the right note. It is built in a temporary directory, never in artifacts/.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
SR = 22050
HOP = 256
WINDOW = 44032
KEYS = 88
BINS = 264
DFT_SIZE = 2048


# --- audio helpers ------------------------------------------------------------------------------


def tone(hz: float, seconds: float, sr: int = SR, amp: float = 0.5, start_s: float = 0.0,
         total_s: float | None = None) -> np.ndarray:
    """A sine of `seconds` starting at start_s inside a signal of total_s (zeros elsewhere)."""
    total = int(round((total_s if total_s is not None else start_s + seconds) * sr))
    out = np.zeros(total, dtype=np.float32)
    a, n = int(round(start_s * sr)), int(round(seconds * sr))
    t = np.arange(n) / sr
    out[a:a + n] = (amp * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    return out


def wav_bytes(samples: np.ndarray, sr: int = SR, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, sr, format="WAV", subtype=subtype)
    return buffer.getvalue()


# --- the stand-in model -------------------------------------------------------------------------


def build_stand_in_model(directory: Path, version: str = "stand-in") -> Path:
    """Write transcriber.onnx + card.json to `directory` and return it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    directory.mkdir(parents=True, exist_ok=True)
    hz = 27.5 * 2.0 ** ((np.arange(BINS) - 1) / 36.0)
    n = np.arange(DFT_SIZE)
    window = np.hanning(DFT_SIZE + 1)[:-1]
    scale = 2.0 / window.sum()  # a full-scale sine reads ~1
    phase = 2 * np.pi * np.outer(hz, n - DFT_SIZE // 2) / SR
    kernel = np.concatenate([np.cos(phase), np.sin(phase)]) * window * scale
    keys = np.arange(KEYS) * 3 + 1

    init = [
        numpy_helper.from_array(kernel.astype(np.float32)[:, None, :], "dft"),
        # Frame t centred on sample t*256: DFT_SIZE/2 zeros before, enough after for 172 frames.
        numpy_helper.from_array(np.array([0, 0, DFT_SIZE // 2, 0, 0, DFT_SIZE // 2 - HOP], np.int64), "pads"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array([BINS, BINS], np.int64), "split"),
        numpy_helper.from_array(np.array(40.0, np.float32), "gain"),
        numpy_helper.from_array(np.array(0.1, np.float32), "floor"),
        numpy_helper.from_array(keys.astype(np.int64), "keys"),
        numpy_helper.from_array(np.array([0, 1, 0, 0, 0, 0], np.int64), "time_pad"),
        numpy_helper.from_array(np.array([0], np.int64), "start0"),
        numpy_helper.from_array(np.array([-1], np.int64), "end_last"),
        numpy_helper.from_array(np.array(4.0, np.float32), "onset_gain"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
    ]
    nodes = [
        helper.make_node("Unsqueeze", ["audio", "axis1"], ["x1"]),
        helper.make_node("Pad", ["x1", "pads"], ["xp"]),
        helper.make_node("Conv", ["xp", "dft"], ["spec"], strides=[HOP]),
        helper.make_node("Split", ["spec", "split"], ["re", "im"], axis=1),
        helper.make_node("Mul", ["re", "re"], ["re2"]),
        helper.make_node("Mul", ["im", "im"], ["im2"]),
        helper.make_node("Add", ["re2", "im2"], ["pow"]),
        helper.make_node("Sqrt", ["pow"], ["mag"]),
        helper.make_node("Transpose", ["mag"], ["magt"], perm=[0, 2, 1]),
        helper.make_node("Sub", ["magt", "floor"], ["centred"]),
        helper.make_node("Mul", ["centred", "gain"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["contour"]),
        helper.make_node("Gather", ["contour", "keys"], ["note"], axis=2),
        # onset = clip(4 * (note[t] - note[t-1]), 0, 1), with note[-1] = 0
        helper.make_node("Pad", ["note", "time_pad"], ["note_prev_full"]),
        helper.make_node("Slice", ["note_prev_full", "start0", "end_last", "axis1"], ["note_prev"]),
        helper.make_node("Sub", ["note", "note_prev"], ["rise"]),
        helper.make_node("Mul", ["rise", "onset_gain"], ["rise4"]),
        helper.make_node("Clip", ["rise4", "zero", "one"], ["onset"]),
    ]
    graph = helper.make_graph(
        nodes, "stand_in_transcriber",
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", WINDOW])],
        [
            helper.make_tensor_value_info("onset", TensorProto.FLOAT, ["batch", WINDOW // HOP, KEYS]),
            helper.make_tensor_value_info("note", TensorProto.FLOAT, ["batch", WINDOW // HOP, KEYS]),
            helper.make_tensor_value_info("contour", TensorProto.FLOAT, ["batch", WINDOW // HOP, BINS]),
        ],
        init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = directory / "transcriber.onnx"
    onnx.save(model, path)
    import hashlib

    card = {
        "name": "transcriber", "version": version,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "files": {"model": "transcriber.onnx"},
        "io": {"sample_rate": SR, "hop": HOP, "window_samples": WINDOW, "n_keys": KEYS, "min_midi": 21,
               "bins_per_semitone": 3, "contour_bins": BINS},
        "thresholds": {"onset": 0.5, "frame": 0.5},
        "config": {"kind": "test stand-in: DFT pitch detector"}, "data": {}, "eval": {}, "parity": {},
        "training": {}, "git_commit": "",
    }
    (directory / "card.json").write_text(json.dumps(card, indent=2))
    return directory


CODEC_SR = 16000
CODEC_HOP = 320


def build_stand_in_codec(directory: Path) -> Path:
    """A tiny codec with random weights, exported by the real exporter (four graphs + card)."""
    import torch

    from export.codec import export
    from models.codec import Codec, CodecConfig

    torch.manual_seed(0)
    cfg = CodecConfig(channels=32, encoder_layers=2, decoder_channels=32, decoder_layers=2, latent_dim=16,
                      codebook_size=1024)
    checkpoint = directory.parent / "codec_stand_in.pt"
    torch.save({"model": Codec(cfg).state_dict(), "model_config": cfg.to_dict(), "step": 0, "epoch": 0},
               checkpoint)
    t = np.arange(CODEC_SR) / CODEC_SR
    speechy = (0.3 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    export(checkpoint, directory, parity_audio=speechy, register=False)
    return directory


@pytest.fixture(scope="session")
def stand_in_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """artifacts/transcriber of a temporary artifacts dir that also holds a stand-in codec and extractor."""
    from extractor_stand_in import build_stand_in_extractor

    root = tmp_path_factory.mktemp("artifacts")
    build_stand_in_codec(root / "codec")
    build_stand_in_extractor(root / "extractor")
    # The classifier's heads are small and its encoders come from wheels: the shipped one serves.
    shutil.copytree(REPO / "artifacts" / "classifier", root / "classifier")
    return build_stand_in_model(root / "transcriber")


@pytest.fixture(scope="session")
def stand_in_codec_dir(stand_in_model_dir: Path) -> Path:
    return stand_in_model_dir.parent / "codec"


@pytest.fixture(scope="session")
def stand_in_extractor_dir(stand_in_model_dir: Path) -> Path:
    return stand_in_model_dir.parent / "extractor"


# --- a real server ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, url: str, proc: subprocess.Popen, log_path: Path, env: dict[str, str]):
        self.url, self.proc, self.log_path, self.env = url, proc, log_path, env

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(target: str, tmp: Path, model_dir: Path, **env_overrides: str) -> Server:
    """`bentoml serve target` on a free loopback port with its own BENTOML_HOME; waits for /readyz."""
    import httpx

    home = tmp / "bentoml_home"
    env = {
        **os.environ,
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "True",
        "HARK_ARTIFACTS_DIR": str(model_dir.parent),
        "HARK_ORT_THREADS": "1",
        "HARK_ORT_PROVIDER": "cpu",
        "GRADIO_ANALYTICS_ENABLED": "False",
        **env_overrides,
    }
    env.pop("HARK_TRANSCRIBER_MODEL", None)
    env.pop("HARK_CODEC_MODEL", None)
    env.pop("HARK_CLASSIFIER_MODEL", None)
    env.pop("HARK_EXTRACTOR_MODEL", None)
    # Registration is part of what `make serve` does; the server then loads from the store.
    for family_dir in sorted(p for p in model_dir.parent.iterdir() if (p / "card.json").is_file()):
        subprocess.run([sys.executable, "-m", "export.register", str(family_dir)],
                       cwd=REPO, env=env, check=True, capture_output=True)
    port = free_port()
    log_path = tmp / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bentoml", "serve", target, "--host", "127.0.0.1", "--port", str(port),
             "--working-dir", str(REPO)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    server = Server(f"http://127.0.0.1:{port}", proc, log_path, env)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"bentoml serve exited with {proc.returncode}:\n{server.log()[-5000:]}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop_server(server)
    raise RuntimeError(f"bentoml serve not ready after 90 s:\n{server.log()[-5000:]}")


def stop_server(server: Server) -> None:
    if server.proc.poll() is None:
        os.killpg(server.proc.pid, signal.SIGTERM)  # our own process group (start_new_session)
        try:
            server.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait()


# Small limits so over-limit inputs stay small; two workers so metrics are checked across them.
MAX_AUDIO_SECONDS = 30
MAX_UPLOAD_MB = 2


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, stand_in_model_dir: Path) -> Iterator[Server]:
    """services.hark:Hark (every family, what `make serve` runs) with 2 workers."""
    tmp = tmp_path_factory.mktemp("hark_server")
    srv = start_server(
        "services.hark:Hark", tmp, stand_in_model_dir,
        HARK_WORKERS="2", HARK_MAX_AUDIO_SECONDS=str(MAX_AUDIO_SECONDS), HARK_MAX_UPLOAD_MB=str(MAX_UPLOAD_MB),
    )
    yield srv
    stop_server(srv)
