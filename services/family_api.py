"""The base of every family's endpoints: load the model once per process, warm it, announce it,
and turn an upload into audio or a 4xx in one way.

A family's API class (services/<family>_api.py) subclasses `FamilyAPI` and, in its `__init__`,
calls `self.start_family(NAME, load, warm_up)`; its endpoints call `self.decode_upload(...)`.
Several families compose into one `@bentoml.service` by multiple inheritance (services/serving.py),
so `__init__` is cooperative and each family starts its own model under its own name.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from core import audio as audio_io
from services import metrics, model_store
from services.upload import AudioUpload, reject

log = logging.getLogger("hark.serving")

M = TypeVar("M")

# The model of this process's service instance per family, for the demo and the streams (built at
# import, before the worker creates the service instance and loads it).
_loaded: dict[str, Any] = {}


def loaded(name: str) -> Any | None:
    """The model family `name` loaded in this process, or None before it loads (or without one)."""
    return _loaded.get(name)


def model_getter(name: str) -> Callable[[], Any | None]:
    """What a `Family` record hands the demo and the streams: the loaded model when asked."""
    return lambda: loaded(name)


class FamilyAPI:
    """Shared behaviour of the families' endpoint mixins (module docstring)."""

    def start_family(self, name: str, load: Callable[[Path], M], warm_up: Callable[[M], object],
                     on_missing: Callable[[str], None] | None = None) -> M | None:
        """Resolve, load and warm family `name`'s model, publish its facts as metrics, and log them.

        Without a model anywhere: raise, or, where the service serves on without this family,
        tell `on_missing` why and return None.
        """
        try:
            model_dir = model_store.resolve(name)
        except FileNotFoundError as exc:
            if on_missing is None:
                raise
            on_missing(str(exc))
            log.warning("serving without the %s model (its routes answer 503): %s", name, exc)
            return None
        try:
            model = load(model_dir)
        except Exception as exc:  # a damaged artifact: say which family, where, and what to do
            raise RuntimeError(f"cannot load the {name} model from {model_dir}: {exc}. Restore the directory "
                               f"(git checkout {model_dir}) or re-export it (hark export {name}), or set "
                               f"HARK_{name.upper()}_MODEL to another model") from exc
        # One small call: the first real request should not pay for onnxruntime's lazy setup.
        warm_up(model)
        m: Any = model
        metrics.set_model_info(name, m.name, m.version, m.sha256, m.provider)
        _loaded[name] = model
        log.info("%s %s (%s, sha256 %s) from %s on %s", name, m.name, m.version, m.sha256[:12], model_dir,
                 m.provider)
        return model

    @staticmethod
    def decode_upload(upload: AudioUpload | None, sample_rate: int, limits: audio_io.Limits,
                      missing: str = "No audio: send the recording as the multipart file field 'audio'.",
                      field: str | None = None) -> tuple[Any, audio_io.DecodedAudio | None]:
        """(None, the decoded audio) or (a 4xx response, None). `missing` says what to send when the
        field is absent; `field` names the field in the other refusals where a request has several."""
        if upload is None:
            return reject("missing_file", f"{missing} {limits.accepted()}"), None
        try:
            decoded = audio_io.decode(upload.read_bytes(), sample_rate, content_type=upload.content_type,
                                      limits=limits)
        except audio_io.AudioError as exc:
            return reject(exc.reason, f"{field}: {exc.message}" if field else exc.message), None
        return None, decoded


def file_stem(upload: Any, default: str) -> str:
    """The upload's own name, made safe for a Content-Disposition header."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(str(upload)).stem)[:100] or default

