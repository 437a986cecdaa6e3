"""A server as an operator runs it in production, against a real `bentoml serve`: API keys,
closed idle sockets, the demo's upload cap, metrics that survive a second server and bounded
endpoint labels."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import REPO, Server, start_server, stop_server, tone, wav_bytes
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from services.metrics_setup import DIR_NAME, endpoint_label

KEY = "prod-test-key"
AUTH = {"X-API-Key": KEY}
IDLE_S = 2


@pytest.fixture(scope="module")
def prod(tmp_path_factory: pytest.TempPathFactory, stand_in_model_dir: Path) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("prod_server")
    srv = start_server("services.hark:Hark", tmp, stand_in_model_dir, HARK_WORKERS="1", HARK_API_KEYS=KEY,
                       HARK_WS_IDLE_S=str(IDLE_S), HARK_UI_MAX_UPLOAD_MB="0.5", HARK_MAX_UPLOAD_MB="2")
    yield srv
    stop_server(srv)


def transcribe(server: Server, headers: dict[str, str]) -> httpx.Response:
    files = {"audio": ("a.wav", wav_bytes(tone(440.0, 0.5)), "audio/wav")}
    return httpx.post(f"{server.url}/transcribe", files=files, headers=headers, timeout=60)


def test_keys_guard_the_api_the_streams_and_the_demo(prod: Server) -> None:
    refused = transcribe(prod, {})
    assert refused.status_code == 401 and "X-API-Key" in refused.json()["error"]
    assert transcribe(prod, {"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert httpx.get(f"{prod.url}/ui/", timeout=30).status_code == 401
    assert httpx.get(f"{prod.url}/ui/", headers=AUTH, timeout=30).status_code == 200
    upload = httpx.post(f"{prod.url}/ui/gradio_api/upload", files={"files": ("a.wav", b"x" * 10)}, timeout=30)
    assert upload.status_code == 401
    for path in ("/metrics", "/readyz", "/livez"):
        assert httpx.get(f"{prod.url}{path}", timeout=30).status_code == 200, path
    with pytest.raises(InvalidStatus) as denied:
        connect(prod.url.replace("http", "ws") + "/stream/transcriber")
    assert denied.value.response.status_code == 401
    assert KEY not in prod.log()


def test_demo_upload_is_capped(prod: Server) -> None:
    big = httpx.post(f"{prod.url}/ui/gradio_api/upload", files={"files": ("a.wav", b"x" * 600_000)},
                     headers=AUTH, timeout=30)
    assert big.status_code == 413 and "HARK_UI_MAX_UPLOAD_MB" in big.json()["error"]


def test_idle_sockets_are_closed(prod: Server) -> None:
    url = prod.url.replace("http", "ws")
    with connect(f"{url}/stream/codec", additional_headers=AUTH) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "ready"
        started = time.monotonic()
        reply = json.loads(ws.recv(timeout=30))
        assert reply["reason"] == "idle" and "HARK_WS_IDLE_S" in reply["error"]
        assert time.monotonic() - started < IDLE_S + 5
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=30)
    with pytest.raises(InvalidStatus) as denied:
        connect(f"{url}/stream/codec", additional_headers={**AUTH, "Origin": "https://elsewhere.example"})
    assert denied.value.response.status_code == 403


def _metrics(server: Server) -> str:
    return httpx.get(f"{server.url}/metrics", timeout=30).text


def test_metrics_survive_a_second_server(prod: Server) -> None:
    assert transcribe(prod, AUTH).status_code == 200
    before = _metrics(prod)
    assert "hark_model_info" in before and "hark_audio_seconds_total" in before
    # A second server with the same BENTOML_HOME, on the port the first one holds: it fails to
    # bind, after BentoML has prepared its metrics directory.
    port = prod.url.rsplit(":", 1)[1]
    second = subprocess.run(
        [sys.executable, "-m", "bentoml", "serve", "services.hark:Hark", "--host", "127.0.0.1", "--port", port,
         "--working-dir", str(REPO)],
        cwd=REPO, env={**prod.env, "HARK_UI": "0"}, capture_output=True, timeout=180)
    assert second.returncode != 0
    after = _metrics(prod)
    assert "hark_model_info" in after and "hark_audio_seconds_total" in after
    own = Path(prod.env["BENTOML_HOME"]) / DIR_NAME / str(prod.proc.pid)
    assert own.is_dir() and any(own.iterdir())


def test_unknown_paths_share_one_label(prod: Server) -> None:
    for i in range(20):
        assert httpx.get(f"{prod.url}/no/such/path/{i}", timeout=30).status_code in (401, 404)
        httpx.get(f"{prod.url}/ui/asset-{i}.js", headers=AUTH, timeout=30)
    endpoints = set(re.findall(r'endpoint="([^"]*)"', _metrics(prod)))
    assert not any(e.startswith("/no/") or e.startswith("/ui/") for e in endpoints), endpoints
    assert {"unmatched", "/ui"} <= endpoints


def test_endpoint_label() -> None:
    routes = frozenset({"/transcribe"})
    assert endpoint_label("/transcribe", routes, ["/ui"]) == "/transcribe"
    assert endpoint_label("/ui/assets/x.js", routes, ["/ui"]) == "/ui"
    assert endpoint_label("/wp-admin", routes, ["/ui"]) == "unmatched"
