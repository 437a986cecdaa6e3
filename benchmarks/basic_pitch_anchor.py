"""Basic Pitch 0.4.0 (Spotify, ICASSP 2022) as the anchor, on the ONNX model its wheel ships.

Installed with `pip install --no-deps basic-pitch==0.4.0` (its declared requirements pull
TensorFlow). Its ONNX `predict()` path only needs librosa, mir_eval, pretty_midi, resampy,
scikit-learn, scipy and onnxruntime. We always hand `predict()` a model we loaded from the
`.onnx` file so that an installed TensorFlow could never be picked instead.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import logging
from importlib import metadata
from pathlib import Path

from core.scoring import NoteArray

NAME = "basic-pitch"


def _import_basic_pitch():
    # Its package __init__ logs a warning for each optional backend that is missing.
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        import basic_pitch
        from basic_pitch import inference
    finally:
        logger.setLevel(level)
    return basic_pitch, inference


def available() -> tuple[bool, str]:
    try:
        _import_basic_pitch()
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        return False, f"basic-pitch not importable ({exc}); pip install --no-deps basic-pitch==0.4.0"
    return True, ""


class BasicPitchAnchor:
    """`predict()` with default parameters on an audio file; `threads` None keeps ORT defaults."""

    def __init__(self, threads: int | None = None):
        import onnxruntime as ort

        basic_pitch, inference = _import_basic_pitch()
        self._inference = inference
        self.model_path = Path(basic_pitch.__file__).parent / "saved_models" / "icassp_2022" / "nmp.onnx"
        opts = ort.SessionOptions()
        if threads is not None:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = threads
        opts.log_severity_level = 3
        model = inference.Model.__new__(inference.Model)  # skip its backend probing
        model.model_type = inference.Model.MODEL_TYPES.ONNX
        model.model = ort.InferenceSession(str(self.model_path), sess_options=opts, providers=["CPUExecutionProvider"])
        self._model = model

    def transcribe(self, audio_path: Path) -> NoteArray:
        # predict() prints a line per file; keep the progress bar readable.
        with contextlib.redirect_stdout(io.StringIO()):
            _, _, events = self._inference.predict(str(audio_path), self._model)
        return NoteArray.from_rows((s, e, p) for s, e, p, *_ in events)

    def info(self) -> dict[str, str]:
        return {
            "version": metadata.version("basic-pitch"),
            "model": "icassp_2022/nmp.onnx",
            "sha256": hashlib.sha256(self.model_path.read_bytes()).hexdigest(),
            "parameters": "predict() defaults: onset 0.5, frame 0.3, min note 127.7 ms, melodia trick",
        }
