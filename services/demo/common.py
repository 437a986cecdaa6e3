"""What every demo tab shares: decoding uploads like the API does, scratch files, int16 players."""
from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import gradio as gr
import numpy as np

from core import audio

log = logging.getLogger(__name__)

# Outputs older than this are removed when a new request comes in, so the scratch dir stays small
# without a background thread.
SCRATCH_MAX_AGE_S = 3600.0


def load_audio(path: str, sample_rate: int) -> np.ndarray:
    """Decode, validate and resample exactly as the HTTP API does; bad input becomes a gr.Error."""
    try:
        return audio.load(path, sample_rate)
    except audio.AudioError as exc:
        # A user's bad file is not a server fault: no traceback in the log.
        raise gr.Error(exc.message, title="Audio not accepted", print_exception=False) from exc


def scratch_dir() -> Path:
    """A fresh directory for one request's files, after pruning old ones.

    It lies under the system temp dir because Gradio only serves returned files from there, the
    working directory or its own cache.
    """
    root = Path(tempfile.gettempdir()) / "hark-demo"
    root.mkdir(exist_ok=True)
    cutoff = time.time() - SCRATCH_MAX_AGE_S
    for old in root.iterdir():
        try:
            if old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass  # another worker removed it first
    return Path(tempfile.mkdtemp(dir=root))


def to_int16(audio: np.ndarray) -> np.ndarray:
    # Handing Gradio int16 avoids its float conversion warning and its peak normalisation.
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)


class ShippedModel:
    """A getter that loads a family's shipped model on first use, once per process, for a demo
    built without a service (the service passes its own loaded model instead)."""

    def __init__(self, family: str, load: Callable[[Path], Any]):
        self.family, self.load = family, load
        self.model: Any = None
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        with self._lock:
            if self.model is None:
                from services.model_store import resolve

                self.model = self.load(resolve(self.family))
            return self.model


def resolve_model(source: Any, family: str, method: str) -> Any:
    """The model behind `source` (a model with `method`, or a getter); a gr.Error when it is
    not available (yet)."""
    model = source
    if model is not None and not hasattr(model, method) and callable(model):
        try:
            model = model()
        except Exception as exc:  # e.g. no shipped model: say so on the page
            log.exception("demo could not load the %s model", family)
            raise gr.Error(f"The {family} model could not be loaded: {exc}") from exc
    if model is None:
        raise gr.Error(f"The {family} model is not loaded yet; try again in a moment.")
    return model
