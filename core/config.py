"""Serving settings read from the environment, in one place so the README can list them.

Every value is read when asked for, not at import: tests and `hark serve` set variables after
this module may already have been imported.
"""
from __future__ import annotations

import os
from typing import Any

# name -> (default, meaning): the single list of serving variables, for the README and tooling.
ENV_VARS: dict[str, tuple[str, str]] = {
    "HARK_HOST": ("127.0.0.1", "address `bentoml serve` binds when --host is not given"),
    "HARK_PORT": ("3000", "port `bentoml serve` binds when --port is not given"),
    "HARK_WORKERS": ("1", "worker processes per service (Gradio's queue wants 1 for /ui)"),
    "HARK_TIMEOUT_S": ("300", "request timeout in seconds"),
    "HARK_UI": ("1", "mount the Gradio demo at /ui (0: API only, and workers start faster)"),
    "HARK_MAX_AUDIO_SECONDS": ("600", "longest accepted audio, in seconds"),
    "HARK_MAX_UPLOAD_MB": ("50", "largest accepted request body, in MB (10^6 bytes)"),
    "HARK_ORT_PROVIDER": ("auto", "onnxruntime provider: auto (CUDA if it works, else CPU), cuda or cpu"),
    "HARK_ORT_THREADS": ("0", "intra-op threads per session; 0 = CPU cores divided by HARK_WORKERS"),
    "HARK_BATCH_SIZE": ("16", "windows per onnxruntime call"),
    "HARK_ARTIFACTS_DIR": ("artifacts", "shipped models, used when the BentoML store lacks one"),
    "HARK_ENROLL_TTL_S": ("3600", "extractor: seconds an /enroll enrollment_id stays valid"),
    "HARK_ENROLL_MAX": ("1000", "extractor: enrollments kept per worker process (the oldest go first)"),
    "HARK_API_KEYS": ("", "comma-separated API keys; when set (or HARK_API_KEYS_FILE), every route but "
                          "HARK_OPEN_PATHS needs one (Authorization: Bearer KEY or X-API-Key: KEY)"),
    "HARK_API_KEYS_FILE": ("", "a file of API keys, one per line (# starts a comment), added to HARK_API_KEYS"),
    "HARK_OPEN_PATHS": ("/livez,/readyz,/healthz,/metrics", "paths (and what lies under them) served without a key"),
    "HARK_ALLOWED_ORIGINS": ("", "comma-separated Origins a browser WebSocket may come from besides the "
                                 "server's own; * allows any"),
    "HARK_WS_IDLE_S": ("60", "seconds a WebSocket may stay silent before the server closes it"),
    "HARK_MAX_CONCURRENCY": ("16", "requests and streams one worker runs at once; more get a 429 at once"),
    "HARK_UI_MAX_UPLOAD_MB": ("50", "largest file the demo page (/ui) accepts, in MB"),
}


class ConfigError(ValueError):
    """An environment variable holds a value we cannot use."""


def _raw(name: str) -> str:
    return os.environ.get(name, ENV_VARS[name][0]).strip()


def get_int(name: str, *, minimum: int = 0) -> int:
    raw = _raw(name)
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be >= {minimum}")
    return value


def get_float(name: str, *, minimum: float = 0.0) -> float:
    raw = _raw(name)
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not value > minimum:
        raise ConfigError(f"{name}={value} must be > {minimum}")
    return value


def get_str(name: str) -> str:
    return _raw(name)


def workers() -> int:
    return get_int("HARK_WORKERS", minimum=1)


def ui_enabled() -> bool:
    return get_str("HARK_UI").lower() not in ("0", "false", "no", "off")


def max_audio_seconds() -> float:
    return get_float("HARK_MAX_AUDIO_SECONDS")


def max_upload_bytes() -> int:
    return int(get_float("HARK_MAX_UPLOAD_MB") * 1_000_000)


def get_list(name: str) -> list[str]:
    """A comma-separated variable as its non-empty items."""
    return [item.strip() for item in _raw(name).split(",") if item.strip()]


def ws_idle_s() -> float:
    return get_float("HARK_WS_IDLE_S")


def max_concurrency() -> int:
    return get_int("HARK_MAX_CONCURRENCY", minimum=1)


def ui_max_upload_bytes() -> int:
    return int(get_float("HARK_UI_MAX_UPLOAD_MB") * 1_000_000)


def ort_threads() -> int:
    """Intra-op threads for one session: share the cores between the workers of this host."""
    threads = get_int("HARK_ORT_THREADS")
    if threads > 0:
        return threads
    return max(1, (os.cpu_count() or 1) // workers())


def batch_size() -> int:
    return get_int("HARK_BATCH_SIZE", minimum=1)


def enroll_ttl_s() -> float:
    return get_float("HARK_ENROLL_TTL_S")


def enroll_max() -> int:
    return get_int("HARK_ENROLL_MAX", minimum=1)


def service_config() -> dict[str, Any]:
    """Keyword arguments for @bentoml.service shared by every hark service."""
    return {
        "workers": workers(),
        "traffic": {"timeout": get_float("HARK_TIMEOUT_S")},
        # Loopback by default: exposing the port is a deliberate `--host 0.0.0.0` (the container does it).
        "http": {"host": get_str("HARK_HOST"), "port": get_int("HARK_PORT", minimum=1)},
    }
