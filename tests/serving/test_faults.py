"""Faults an operator meets: a worker killed in the middle of a request (OOM killer, a crash)."""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import Server, start_server, stop_server, tone, wav_bytes

BOUNDARY = "hark-fault-test"


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory: pytest.TempPathFactory, stand_in_model_dir: Path) -> Iterator[Server]:
    srv = start_server("services.hark:Hark", tmp_path_factory.mktemp("fault_server"), stand_in_model_dir,
                       HARK_WORKERS="1")
    yield srv
    stop_server(srv)


def _workers(server: Server) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(server.proc.pid)], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


def _slow_upload(audio: bytes) -> Iterator[bytes]:
    """A multipart body sent over a few seconds, so that the request is still running when its
    worker dies."""
    yield (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"a.wav\"\r\n"
           "Content-Type: audio/wav\r\n\r\n").encode()
    for i in range(0, len(audio), 32768):
        yield audio[i:i + 32768]
        time.sleep(0.25)  # 14 pieces: 3.5 s, the kill comes after 1 s
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def test_a_worker_killed_mid_request_fails_that_request_cleanly_and_the_next_one_succeeds(one_worker: Server):
    (worker,) = _workers(one_worker)
    audio = wav_bytes(tone(440.0, 10.0))
    killer = threading.Timer(1.0, os.kill, (worker, signal.SIGKILL))
    killer.start()
    t0 = time.monotonic()
    with pytest.raises(httpx.TransportError):  # the connection ends; nothing hangs, no half answer
        httpx.post(f"{one_worker.url}/transcribe", content=_slow_upload(audio), timeout=60,
                   headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"})
    killer.join()
    assert time.monotonic() - t0 < 30
    short = {"audio": ("a.wav", wav_bytes(tone(440.0, 0.5)), "audio/wav")}
    deadline = time.monotonic() + 180  # the arbiter starts a new worker, which loads the models again
    while True:
        try:
            r = httpx.post(f"{one_worker.url}/transcribe", files=short, timeout=60)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, one_worker.log()[-3000:]
            time.sleep(1.0)
    assert r.status_code == 200 and r.json()["meta"]["n_notes"] >= 0
    assert _workers(one_worker) and worker not in _workers(one_worker)
