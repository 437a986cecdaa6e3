"""API keys, WebSocket origins, the demo upload cap and the per-worker concurrency limit, on a
tiny Starlette app behind AccessGuard (no model, no server process)."""
from __future__ import annotations

import asyncio
import base64

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient, WebSocketDenialResponse

from services import auth
from services.access import AccessGuard

KEY = "s3cret-key"


async def work(request):
    await request.body()
    await asyncio.sleep(float(request.query_params.get("sleep", "0")))
    return PlainTextResponse("done")


async def ui_upload(request):
    return PlainTextResponse(f"{len(await request.body())} bytes")


async def echo(websocket):
    await websocket.accept()
    await websocket.send_text(await websocket.receive_text())
    await websocket.close()


def client(monkeypatch: pytest.MonkeyPatch, **env: str) -> TestClient:
    for name in ("HARK_API_KEYS", "HARK_API_KEYS_FILE", "HARK_ALLOWED_ORIGINS", "HARK_MAX_CONCURRENCY",
                 "HARK_UI_MAX_UPLOAD_MB", "HARK_OPEN_PATHS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    app = Starlette(routes=[Route("/work", work, methods=["POST"]), Route("/livez", lambda r: PlainTextResponse("ok")),
                            Route("/ui/gradio_api/upload", ui_upload, methods=["POST"]),
                            WebSocketRoute("/stream/echo", echo)])
    guarded = AccessGuard(app, work_routes=frozenset({"/work"}), stream_path="/stream", ui_path="/ui")
    return TestClient(guarded, base_url="http://testserver")


def test_without_keys_everything_is_open(monkeypatch: pytest.MonkeyPatch) -> None:
    c = client(monkeypatch)
    assert c.post("/work").text == "done"
    with c.websocket_connect("/stream/echo") as ws:
        ws.send_text("hi")
        assert ws.receive_text() == "hi"


def test_keys_are_required_where_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    c = client(monkeypatch, HARK_API_KEYS=f"other, {KEY}")
    refused = c.post("/work")
    assert refused.status_code == 401 and refused.json()["reason"] == "unauthorized"
    assert "Authorization: Bearer KEY" in refused.json()["error"] and KEY not in refused.text
    assert c.post("/work", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.post("/work", headers={"Authorization": f"Bearer {KEY}"}).text == "done"
    assert c.post("/work", headers={"X-API-Key": KEY}).text == "done"
    assert c.get("/livez").status_code == 200  # health stays open
    ui = c.post("/ui/gradio_api/upload", content=b"x")
    assert ui.status_code == 401 and ui.headers["www-authenticate"].startswith("Basic")
    basic = base64.b64encode(f"anyone:{KEY}".encode()).decode()
    assert c.post("/ui/gradio_api/upload", content=b"x", headers={"Authorization": f"Basic {basic}"}).status_code == 200
    with pytest.raises(WebSocketDenialResponse):
        with c.websocket_connect("/stream/echo"):
            pass
    with c.websocket_connect("/stream/echo", headers={"X-API-Key": KEY}) as ws:
        ws.send_text("hi")
        assert ws.receive_text() == "hi"


def test_keys_from_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"# operators\n{KEY}\n\n")
    c = client(monkeypatch, HARK_API_KEYS_FILE=str(keys))
    assert c.post("/work").status_code == 401
    assert c.post("/work", headers={"X-API-Key": KEY}).status_code == 200


def test_websocket_origins(monkeypatch: pytest.MonkeyPatch) -> None:
    c = client(monkeypatch, HARK_ALLOWED_ORIGINS="https://app.example")
    for origin in ("http://testserver", "https://app.example"):  # same origin, listed origin
        with c.websocket_connect("/stream/echo", headers={"Origin": origin}) as ws:
            ws.send_text("hi")
            assert ws.receive_text() == "hi"
    with pytest.raises(WebSocketDenialResponse) as denied:
        with c.websocket_connect("/stream/echo", headers={"Origin": "https://evil.example"}):
            pass
    assert denied.value.status_code == 403 and "HARK_ALLOWED_ORIGINS" in denied.value.json()["error"]


def test_demo_uploads_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    c = client(monkeypatch, HARK_UI_MAX_UPLOAD_MB="0.001")
    assert c.post("/ui/gradio_api/upload", content=b"x" * 999).text == "999 bytes"
    declared = c.post("/ui/gradio_api/upload", content=b"x" * 1001)
    assert declared.status_code == 413 and "HARK_UI_MAX_UPLOAD_MB" in declared.json()["error"]

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(5):
            yield b"x" * 400

    streamed = c.post("/ui/gradio_api/upload", content=chunks())
    assert streamed.status_code == 413


def test_overload_is_refused_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARK_MAX_CONCURRENCY", "1")
    for name in ("HARK_API_KEYS", "HARK_API_KEYS_FILE"):
        monkeypatch.delenv(name, raising=False)
    finished = asyncio.Event()

    async def slow(scope, receive, send):
        await finished.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    guard = AccessGuard(slow, work_routes=frozenset({"/work"}), stream_path="/stream", ui_path="/ui")

    async def call() -> list:
        sent: list = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)

        await guard({"type": "http", "method": "POST", "path": "/work", "headers": []}, receive, send)
        return sent

    async def scenario() -> tuple[list, list]:
        first = asyncio.create_task(call())
        await asyncio.sleep(0.01)
        second = await asyncio.wait_for(call(), 1.0)  # answered while the first still runs
        finished.set()
        return await first, second

    first, second = asyncio.run(scenario())
    assert first[0]["status"] == 200
    assert second[0]["status"] == 429 and (b"retry-after", b"1") in second[0]["headers"]
    assert b"HARK_MAX_CONCURRENCY" in second[1]["body"]
    assert guard.running == 0


def test_presented_key_and_open_paths() -> None:
    assert auth.presented_key({b"authorization": b"Basic !!!"}) is None
    assert auth.presented_key({b"authorization": b"Token abc"}) is None
    assert auth.ApiKeys((b"a",)).accepts(None) is False
    assert auth.is_open("/metrics", ["/metrics"]) and auth.is_open("/ui/x", ["/ui/"])
    assert not auth.is_open("/metricsx", ["/metrics"])
