"""hark's Prometheus metrics, on top of the request metrics BentoML already exports.

Multiple workers: `bentoml serve` starts every worker with PROMETHEUS_MULTIPROC_DIR set, each
worker's prometheus_client writes its samples to files there, and `/metrics` (whichever worker
answers it) merges all files with prometheus_client's MultiProcessCollector. So plain
prometheus_client metrics are correct across workers as long as prometheus_client is imported
and the metrics are created inside the worker, which is why they are created lazily here (BentoML
1.4 deprecates `bentoml.metrics`, a lazy alias of prometheus_client, for the same reason).
Gauges need a multiprocess mode; Info and Enum do not work in multiprocess mode at all, so model
info is a gauge set to 1 with the facts as labels.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

PREFIX = "hark"
INFERENCE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
RTF_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


@dataclass
class _Metrics:
    audio_seconds: Any
    inference_seconds: Any
    realtime_factor: Any
    rejected: Any
    model_info: Any
    worker_rss: Any


_metrics: _Metrics | None = None
_lock = threading.Lock()


def _get() -> _Metrics:
    global _metrics
    with _lock:
        if _metrics is None:
            import prometheus_client as prom  # only now: see the module docstring

            _metrics = _Metrics(
                audio_seconds=prom.Counter(
                    f"{PREFIX}_audio_seconds", "Seconds of audio processed", ["model"]),
                inference_seconds=prom.Histogram(
                    f"{PREFIX}_inference_seconds", "Wall time of model inference and decoding per request",
                    ["model"], buckets=INFERENCE_BUCKETS),
                realtime_factor=prom.Histogram(
                    f"{PREFIX}_realtime_factor", "Inference seconds per second of audio (lower is faster)",
                    ["model"], buckets=RTF_BUCKETS),
                rejected=prom.Counter(
                    f"{PREFIX}_rejected_requests", "Requests refused with a 4xx, by family and reason",
                    ["family", "reason"]),
                model_info=prom.Gauge(
                    f"{PREFIX}_model_info", "The model a family serves (value is always 1)",
                    ["family", "model", "version", "sha256", "provider"], multiprocess_mode="max"),
                worker_rss=prom.Gauge(
                    f"{PREFIX}_worker_rss_bytes", "Resident memory of each worker after its last request",
                    [], multiprocess_mode="liveall"),
            )
        return _metrics


def observe_inference(model: str, audio_s: float, inference_s: float) -> None:
    m = _get()
    m.audio_seconds.labels(model=model).inc(audio_s)
    m.inference_seconds.labels(model=model).observe(inference_s)
    if audio_s > 0:
        m.realtime_factor.labels(model=model).observe(inference_s / audio_s)


def count_rejection(family: str, reason: str) -> None:
    _get().rejected.labels(family=family, reason=reason).inc()


def set_model_info(family: str, model: str, version: str, sha256: str, provider: str) -> None:
    _get().model_info.labels(family=family, model=model, version=version, sha256=sha256, provider=provider).set(1)


def set_worker_rss(rss_bytes: int) -> None:
    _get().worker_rss.set(rss_bytes)
