"""Composing BentoML services out of model families.

A family is a subclass of `FamilyAPI` (services/family_api.py) whose `@bentoml.api` methods are
its endpoints and whose `__init__` starts its model (calling `super().__init__()` so several
families compose), plus a `Family` record (services/<family>_api.py). BentoML collects API methods with `dir()` on the
service class, so inherited ones are served. One family alone and all families together are
then just two `@bentoml.service` classes:

    @bentoml.service(**config.service_config())       # services/transcriber.py
    class Transcriber(TranscriberAPI): ...
    finish(Transcriber, [TRANSCRIBER])

    @bentoml.service(**config.service_config())       # services/hark.py
    class Hark(TranscriberAPI, CodecAPI): ...
    finish(Hark, [TRANSCRIBER, CODEC])

API method names and routes must be unique across families (prefix them with the family's verb).

`finish` adds what every service has beyond its APIs: the request guard on the family routes,
the families' WebSocket endpoints under /stream and the Gradio demo at /ui. (/metrics, /readyz, /livez, /docs.json and Swagger at / come with
BentoML.) It must run on the final service: BentoML keeps mounted apps on the class it decorates.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from core import config
from services import metrics_setup
from services.access import AccessGuard
from services.upload import RequestGuard, RouteSpec

log = logging.getLogger("hark.serving")

UI_PATH = "/ui"
STREAM_PATH = "/stream"  # ws://HOST:PORT/stream/<name>
STATIC_PATH = "/static_content"  # BentoML's Swagger page assets


@dataclass(frozen=True)
class Family:
    name: str  # the same name in every layer: models/NAME.py, artifacts/NAME/, the demo tab
    routes: tuple[str, ...]  # its POST endpoints
    # The model loaded by this process's service instance, or None before it exists. The demo
    # Blocks must be built at import, before the worker creates the service instance.
    model_getter: Callable[[], Any]
    # request field -> what it accepts, added to the 400s of BentoML's own form validation
    field_help: dict[str, str] = field(default_factory=dict)
    # WebSocket endpoints under STREAM_PATH: name -> async handler(websocket, model), handed the
    # model_getter's model (None while it loads) so that a stream module needs no API module
    streams: dict[str, Callable[[Any], Any]] = field(default_factory=dict)


def _build_demo(families: Sequence[Family]) -> Any | None:
    if not config.ui_enabled():
        log.info("HARK_UI is off: no %s", UI_PATH)
        return None
    try:
        from services.demo import build_demo
    except ModuleNotFoundError as exc:
        if exc.name not in ("services.demo", "gradio"):
            raise
        log.warning("no %s: module %s is not available", UI_PATH, exc.name)
        return None
    try:
        blocks = build_demo(**{f.name: f.model_getter for f in families})
    except Exception:  # the API matters more than its demo page: serve, but say so loudly
        log.exception("building the demo failed; serving without %s", UI_PATH)
        return None
    # Gradio 6 only fills theme/css in launch(); a mounted, never-launched Blocks needs them
    # set up front or its page is a 500. The demo package does this; make sure of it here.
    if getattr(blocks, "theme", None) is None or getattr(blocks, "css", None) is None:
        from services.demo import apply_page_style

        apply_page_style(blocks)
    return blocks


def _handing_model(handler: Callable[[Any, Any], Any], model_getter: Callable[[], Any]) -> Callable[[Any], Any]:
    async def endpoint(websocket: Any) -> None:
        await handler(websocket, model_getter())

    return endpoint


def _stream_app(families: Sequence[Family]) -> Any | None:
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute

    routes = [WebSocketRoute(f"/{name}", _handing_model(handler, f.model_getter))
              for f in families for name, handler in f.streams.items()]
    return Starlette(routes=routes) if routes else None


def finish(service: Any, families: Sequence[Family]) -> Any:
    """Add the request guard and the /ui demo to a `@bentoml.service` made of `families`."""
    apis = {method.route: method for method in service.apis.values()}
    routes: dict[str, RouteSpec] = {}
    field_help: dict[str, str] = {}
    for family in families:
        field_help.update(family.field_help)
        for route in family.routes:
            if route in routes:
                raise ValueError(f"route {route} claimed by both {routes[route].family} and {family.name}")
            if route not in apis:
                raise ValueError(f"{family.name} lists {route}, but the service has no API there")
            spec = apis[route].input_spec
            files = frozenset(spec.multipart_fields)
            routes[route] = RouteSpec(family.name, files, frozenset(spec.model_fields) - files)
    blocks = _build_demo(families)
    demo_config = getattr(blocks, "config", None) or {}
    pages = frozenset(demo_config.get("page", {"": None}))
    # First added is outermost: who may come in is settled before any body is looked at.
    service.add_asgi_middleware(AccessGuard, work_routes=frozenset(routes), stream_path=STREAM_PATH, ui_path=UI_PATH,
                                ui_pages=pages)
    service.add_asgi_middleware(RequestGuard, routes=routes, field_help=field_help)
    metrics_setup.claim_prometheus_dir()
    stream_routes = [f"{STREAM_PATH}/{name}" for f in families for name in f.streams]
    metrics_setup.bound_endpoint_labels([*apis, *stream_routes], [UI_PATH, STATIC_PATH])
    streams = _stream_app(families)
    if streams is not None:
        service.mount_asgi_app(streams, path=STREAM_PATH)
    if blocks is not None:
        from bentoml.gradio import mount_gradio_app  # imports gradio: only when there is a UI

        mount_gradio_app(blocks, path=UI_PATH)(service)
    return service
