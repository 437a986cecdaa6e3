"""onnxruntime session factory: CUDA when it actually works, else CPU, with bounded threads.

onnxruntime-gpu does not fail when CUDA libraries are missing: it logs an error and quietly runs
on CPU. So we never trust the providers we asked for, only those the session reports.
"""
from __future__ import annotations

import logging
from pathlib import Path

import onnxruntime as ort

from core import config

log = logging.getLogger("hark.runtime")

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
_dlls_preloaded = False


def _preload_cuda_dlls() -> None:
    """Let onnxruntime-gpu find CUDA/cuDNN shipped as pip wheels (nvidia-*-cu1x) on a plain image."""
    global _dlls_preloaded
    if _dlls_preloaded or not hasattr(ort, "preload_dlls"):
        return
    _dlls_preloaded = True
    try:
        ort.preload_dlls()
    except Exception as exc:  # missing wheels are fine: the system CUDA may still work
        log.debug("onnxruntime.preload_dlls failed: %s", exc)


def wanted_providers(choice: str | None = None) -> list[str]:
    """Providers to ask for: `choice` is auto, cuda or cpu (default: HARK_ORT_PROVIDER)."""
    choice = (choice or config.get_str("HARK_ORT_PROVIDER")).lower()
    if choice not in ("auto", "cuda", "cpu"):
        raise config.ConfigError(f"HARK_ORT_PROVIDER={choice!r}; use auto, cuda or cpu")
    if choice == "cpu" or CUDA not in ort.get_available_providers():
        if choice == "cuda":
            log.warning("CUDA requested but this onnxruntime build has no CUDA provider; using CPU")
        return [CPU]
    return [CUDA, CPU]


def create_session(
    model_path: Path | str,
    *,
    provider: str | None = None,
    intra_op_threads: int | None = None,
    inter_op_threads: int = 1,
    arena: bool = True,
) -> ort.InferenceSession:
    """An InferenceSession on the best working provider; logs the providers really in use.

    `arena=False` for graphs that take a whole input of any length (up to HARK_MAX_AUDIO_SECONDS):
    onnxruntime's CPU arena keeps the largest run's buffers for the life of the session, which
    malloc_trim cannot give back (measured: a worker stayed 1.3 GB above its 0.1 GB baseline
    after one 600 s /extract, 0.3 GB after one 600 s /transcribe). Without it a run's buffers are
    freed when it ends, for some 20 % more time per run; fixed-size streaming steps keep it.
    """
    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = arena
    options.intra_op_num_threads = intra_op_threads if intra_op_threads is not None else config.ort_threads()
    # Our graphs are a single chain of ops: a second inter-op pool only adds idle threads.
    options.inter_op_num_threads = inter_op_threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle intra-op threads otherwise spin-wait between runs, burning CPU the other workers
    # and requests need; windows are batched, so the wake-up latency is negligible.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = wanted_providers(provider)
    if CUDA in providers:
        _preload_cuda_dlls()
    try:
        session = ort.InferenceSession(str(model_path), sess_options=options, providers=providers)
    except Exception as exc:
        if providers == [CPU]:
            raise
        # A broken CUDA install can also fail loudly; CPU still serves.
        log.error("CUDA session failed (%s); falling back to CPU", exc)
        session = ort.InferenceSession(str(model_path), sess_options=options, providers=[CPU])
    used = session.get_providers()
    if CUDA in providers and CUDA not in used:
        log.warning("asked for %s but onnxruntime runs %s (CUDA libraries missing?)", providers, used)
    log.info(
        "onnxruntime %s session for %s: providers %s, %d intra-op threads",
        ort.__version__, Path(model_path).name, used, options.intra_op_num_threads,
    )
    return session


def active_provider(session: ort.InferenceSession) -> str:
    """Short name of the provider doing the work: 'cuda' or 'cpu'."""
    return "cuda" if session.get_providers()[0] == CUDA else "cpu"
