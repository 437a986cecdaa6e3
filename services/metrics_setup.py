"""Two fixes to how BentoML 1.4 keeps its Prometheus metrics, applied when a service is finished.

1. Its own multiprocess directory per server. `bentoml serve` points every worker at
   $BENTOML_HOME/prometheus_multiproc_dir and empties that directory when it starts, so a second
   server on the same machine (even one that then fails to bind its port) wipes the first one's
   samples for good. The serving process claims $BENTOML_HOME/hark_prometheus/<its pid> instead,
   before BentoML creates the directory; directories of servers no longer running are removed.
2. Bounded endpoint labels. BentoML labels request metrics with the raw URL path, so every
   unknown URL and every /ui asset adds label values for ever. Paths other than the served
   routes are counted under one label each: "/ui" for the demo, "unmatched" for anything else.
"""
from __future__ import annotations

import atexit
import logging
import os
import shutil
from collections.abc import Iterable, MutableMapping
from pathlib import Path
from typing import Any

log = logging.getLogger("hark.metrics")

DIR_NAME = "hark_prometheus"
UNMATCHED = "unmatched"
# BentoML's own routes besides the service's APIs.
BENTOML_ROUTES = ("/", "/docs.json", "/metrics", "/livez", "/readyz", "/healthz")
_ORIGINAL_PATH = "hark.original_path"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim_prometheus_dir() -> Path | None:
    """Give this server its own multiprocess directory; None in a worker (it inherits its
    server's through PROMETHEUS_MULTIPROC_DIR)."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    root = Path(BentoMLContainer.bentoml_home.get()) / DIR_NAME
    inherited = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if inherited and Path(inherited).parent == root:
        return None
    root.mkdir(parents=True, exist_ok=True)
    for old in root.iterdir():
        if old.name.isdigit() and int(old.name) != os.getpid() and not _alive(int(old.name)):
            shutil.rmtree(old, ignore_errors=True)
    own = root / str(os.getpid())
    own.mkdir(exist_ok=True)
    BentoMLContainer.prometheus_multiproc_dir.set(str(own))
    atexit.register(shutil.rmtree, own, True)
    return own


def endpoint_label(path: str, routes: frozenset[str], mounts: Iterable[str]) -> str:
    """The endpoint label for a request path: the path itself when it is a served route, the
    mount it lies under (e.g. /ui), else UNMATCHED."""
    if path in routes:
        return path
    for mount in mounts:
        if path == mount or path.startswith(mount.rstrip("/") + "/"):
            return mount
    return UNMATCHED


class _RestorePath:
    """Hands the inner app the real path again after the metrics middleware saw the label."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if _ORIGINAL_PATH in scope:
            scope = dict(scope)
            scope["path"] = scope.pop(_ORIGINAL_PATH)
        await self.app(scope, receive, send)


def bound_endpoint_labels(routes: Iterable[str], mounts: Iterable[str]) -> None:
    """Make BentoML's request-metrics middleware label requests by `endpoint_label`.

    BentoML offers no hook for this, so its middleware's __call__ is wrapped: it sees a copy of
    the scope whose path is the label, and the app behind it gets the real path back.
    """
    from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware as cls

    known = frozenset(routes) | frozenset(BENTOML_ROUTES)
    mounts = tuple(sorted(set(mounts), key=len, reverse=True))
    original = getattr(cls, "_hark_original_call", cls.__call__)

    async def __call__(self: Any, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        label = endpoint_label(path, known, mounts) if scope.get("type") in ("http", "websocket") else path
        if label == path:
            await original(self, scope, receive, send)
            return
        if not isinstance(self.app, _RestorePath):
            self.app = _RestorePath(self.app)
        await original(self, {**scope, "path": label, _ORIGINAL_PATH: path}, receive, send)

    cls._hark_original_call = original
    cls.__call__ = __call__
