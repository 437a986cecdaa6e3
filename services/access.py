"""The outermost hark middleware: who may come in, and how much one worker takes on at once.

In front of every route (the family APIs, /stream WebSockets, the /ui demo and its upload route):

- API keys (services/auth.py) when HARK_API_KEYS or HARK_API_KEYS_FILE is set: 401 without one,
  except under HARK_OPEN_PATHS (health and metrics by default);
- WebSockets from a browser page of another origin are refused (403) unless HARK_ALLOWED_ORIGINS
  lists it;
- bodies posted to /ui (Gradio's upload route) are capped at HARK_UI_MAX_UPLOAD_MB (413), counted
  as they stream in, so an oversize upload never reaches Gradio's temporary files;
- at most HARK_MAX_CONCURRENCY family requests and streams run in one worker; the next one is
  answered 429 at once instead of queueing behind work it cannot overtake.

Refusals are JSON {"error", "reason"} like every other hark 4xx, and say what to change.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from core import config
from services import auth, memory, metrics
from services.upload import drain

log = logging.getLogger("hark.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

FAMILY = "server"  # the family label of refusals that come before any family's code runs


class AccessGuard:
    """ASGI middleware; `work_routes` are the POST routes that run a model, `stream_path` and
    `ui_path` the mounts of the WebSockets and the demo, `ui_pages` the demo's page names."""

    def __init__(self, app: App, work_routes: frozenset[str], stream_path: str, ui_path: str,
                 ui_pages: frozenset[str] = frozenset({""})) -> None:
        self.app = app
        self.ui_pages = ui_pages
        self.work_routes = work_routes
        self.stream_prefix = stream_path.rstrip("/") + "/"
        self.ui_path = ui_path
        self.keys = auth.ApiKeys.from_env()
        self.open_paths = config.get_list("HARK_OPEN_PATHS")
        self.origins = config.get_list("HARK_ALLOWED_ORIGINS")
        self.max_concurrency = config.max_concurrency()
        self.ui_max_bytes = config.ui_max_upload_bytes()
        self.running = 0  # one event loop per worker: a plain counter is enough
        if self.keys.required:
            log.info("API keys required (%d configured); open without a key: %s",
                     len(self.keys.keys), ", ".join(self.open_paths) or "nothing")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        refusal = self._refusal(kind, path, headers) or self._not_in_demo(kind, path, scope)
        if refusal is not None:
            await _deny(scope, receive, send, *refusal)
            return
        if kind == "http" and scope.get("method") == "POST" and auth.is_open(path, [self.ui_path]):
            await self._capped(scope, receive, send, headers)
            return
        if kind == "http" and auth.is_open(path, [self.ui_path]):
            await _demo_request(self.app, scope, receive, send)
            return
        if path in self.work_routes or (kind == "websocket" and path.startswith(self.stream_prefix)):
            if self.running >= self.max_concurrency:
                await _deny(scope, receive, send, 429, "busy",
                            f"This worker already runs {self.max_concurrency} requests "
                            "(HARK_MAX_CONCURRENCY); retry in a moment, or run more workers or replicas.",
                            [(b"retry-after", b"1")])
                return
            self.running += 1
            try:
                await self.app(scope, receive, send)
            finally:
                self.running -= 1
                if self.running == 0:  # idle: give what the request's peak took back (services/memory.py)
                    memory.release()
                    metrics.set_worker_rss(memory.rss_bytes())
            return
        await self.app(scope, receive, send)

    def _refusal(self, kind: str, path: str, headers: dict[bytes, bytes]) -> tuple[Any, ...] | None:
        if self.keys.required and not auth.is_open(path, self.open_paths):
            if not self.keys.accepts(auth.presented_key(headers)):
                # Browsers prompt for Basic credentials on the demo page; the key is the password.
                challenge = b'Basic realm="hark"' if auth.is_open(path, [self.ui_path]) else b'Bearer realm="hark"'
                return (401, "unauthorized",
                        "This server needs an API key: send the header 'Authorization: Bearer KEY' or "
                        "'X-API-Key: KEY' (in a browser, give the key as the password when asked).",
                        [(b"www-authenticate", challenge)])
        if kind == "websocket" and not auth.origin_allowed(headers, self.origins):
            origin = headers.get(b"origin", b"").decode("latin-1")[:200]
            return (403, "origin",
                    f"WebSockets from the page origin {origin!r} are not allowed; the server operator "
                    "can add it to HARK_ALLOWED_ORIGINS.", [])
        return None

    def _not_in_demo(self, kind: str, path: str, scope: Scope) -> tuple[Any, ...] | None:
        # Routes Gradio mounts that this demo never uses and that Gradio answers with a 500 on odd
        # input (found by schemathesis over /docs.json): its proxy for hosted Spaces, and the
        # icons of an installable web app (the demo is not one).
        if kind != "http" or not auth.is_open(path, [self.ui_path]):
            return None
        rest = path[len(self.ui_path):]
        if rest.startswith(("/gradio_api/proxy=", "/pwa_icon")):
            return (404, "not_found", f"{path[:80]} is not part of this demo; the demo is at {self.ui_path}/.", [])
        # Asked for a page the Blocks does not have (`/ui/?page=0`), Gradio fails too: say what exists.
        if rest.rstrip("/"):
            return None
        pages = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True).get("page", [])
        unknown = [p for p in pages if p not in self.ui_pages]
        if not unknown:
            return None
        known = ", ".join(repr(p) for p in sorted(self.ui_pages))
        return (404, "not_found", f"The demo has no page {unknown[0][:50]!r}; its pages: {known} (leave out "
                                  "'page' for the first).", [])

    async def _capped(self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes]) -> None:
        """Pass a demo upload through while it stays under the cap; past it, answer 413."""
        limit = self.ui_max_bytes
        message = (f"The upload is over the demo's {limit / 1e6:g} MB limit (HARK_UI_MAX_UPLOAD_MB); "
                   "choose a shorter or compressed file.")
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > limit:
            await _deny(scope, receive, send, 413, "too_large", message, [(b"connection", b"close")])
            return
        state = {"received": 0, "over": False, "started": False}

        async def counted_receive() -> Message:
            if state["over"]:
                return {"type": "http.disconnect"}
            msg = await receive()
            if msg["type"] == "http.request":
                state["received"] += len(msg.get("body", b""))
                if state["received"] > limit:
                    state["over"] = True
                    return {"type": "http.disconnect"}
            return msg

        async def guarded_send(msg: Message) -> None:
            if state["over"]:
                return  # whatever the app answers to the cut-off body, ours goes out instead
            state["started"] = True
            await send(msg)

        try:
            await _demo_request(self.app, scope, counted_receive, guarded_send)
        except Exception:
            if not state["over"]:
                raise
        if state["over"] and not state["started"]:
            await _send_json(send, 413, "too_large", message, [(b"connection", b"close")])


async def _demo_request(app: App, scope: Scope, receive: Receive, send: Send) -> None:
    """Pass a request to the demo (Gradio). Gradio does not check all of what its internal routes
    receive and fails on some malformed requests (an unknown event index in /queue/join, for one)
    with a 500 or an exception: that client gets a 400 saying so instead, and the log the details."""
    state = {"failed": False, "started": False}

    async def tracked_send(msg: Message) -> None:
        if msg["type"] == "http.response.start" and msg.get("status", 200) >= 500:
            state["failed"] = True
        if state["failed"]:
            return
        state["started"] = True
        await send(msg)

    try:
        await app(scope, receive, tracked_send)
    except Exception:
        if state["started"]:
            raise
        state["failed"] = True
        log.warning("the demo could not process %s %s", scope.get("method"), scope.get("path", "")[:120],
                    exc_info=True)
    if state["failed"] and not state["started"]:
        metrics.count_rejection(FAMILY, "demo_request")
        await _send_json(send, 400, "demo_request",
                         "The demo could not process this request; send what the demo page or gradio_client "
                         "sends (the server log has the details).", [])


async def _deny(scope: Scope, receive: Receive, send: Send, status: int, reason: str, message: str,
                extra_headers: list[tuple[bytes, bytes]]) -> None:
    metrics.count_rejection(FAMILY, reason)
    if scope["type"] == "http":
        await drain(receive, 1 << 20)  # a little of the body, so the client reads our answer
        await _send_json(send, status, reason, message, extra_headers)
        return
    # A WebSocket is refused during its handshake: with an HTTP answer where the server supports
    # it (uvicorn does), else with close code 1008 (the client then sees a 403).
    if "websocket.http.response" in scope.get("extensions", {}):
        await _send_json(send, status, reason, message, extra_headers, prefix="websocket.")
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})


async def _send_json(send: Send, status: int, reason: str, message: str,
                     extra_headers: list[tuple[bytes, bytes]], prefix: str = "") -> None:
    body = json.dumps({"error": message, "reason": reason}).encode()
    await send({
        "type": f"{prefix}http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    *extra_headers],
    })
    await send({"type": f"{prefix}http.response.body", "body": body})
