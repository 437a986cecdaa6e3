"""The classifier as it ships: feature encoders and per-modality heads through onnxruntime.

The HTTP service, the demo and the benchmarks call this class. Without a transcript it answers
from the voice alone and says so; with one, the voice and text probabilities are averaged (the
late fusion the model was evaluated with).
"""
from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core import runtime
from core.classifier_features import TextFeatures, VoiceFeatures
from core.cards import file_sha256

log = logging.getLogger("hark.classifier")


@dataclass
class Classification:
    classes: list[str]
    probabilities: dict[str, float]  # fused over the modalities used
    per_modality: dict[str, dict[str, float]]
    modalities: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return max(self.probabilities, key=self.probabilities.get)


class ClassifierModel:
    """Loads `model_dir` (card.json, the encoders and the two heads)."""

    def __init__(self, model_dir: Path | str, *, provider: str | None = None, threads: int | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.card: dict[str, Any] = json.loads((self.model_dir / "card.json").read_text())
        self.name: str = self.card.get("name", "classifier")
        self.version: str = str(self.card.get("version", "unknown"))
        self.classes: list[str] = list(self.card["classes"])
        self.task: str = self.card.get("task", "multiclass")
        self.sample_rate: int = int(self.card["io"]["sample_rate"])
        self.intended_use: str = self.card.get("intended_use", "")
        files = self.card["files"]
        self.sha256 = file_sha256(self.model_dir / files["model"])
        self.voice = VoiceFeatures(self.model_dir, threads=threads)
        self.text = TextFeatures(self.model_dir, threads=threads)
        self.heads = {m: runtime.create_session(self.model_dir / files[f"{m}_head"], provider=provider,
                                                intra_op_threads=threads) for m in ("voice", "text")}
        self.provider = runtime.active_provider(self.heads["voice"])
        self._lock = threading.Lock()

    def _head(self, modality: str, features: np.ndarray) -> np.ndarray:
        with self._lock:
            return self.heads[modality].run(["probabilities"], {"features": features[None].astype(np.float32)})[0][0]

    def classify(self, audio: np.ndarray, transcript: str | None = None) -> Classification:
        """Mono float32 audio at `sample_rate` (and its transcript, if any) -> class probabilities."""
        per = {"voice": self._head("voice", self.voice(audio))}
        notes = []
        if transcript and transcript.strip():
            per["text"] = self._head("text", self.text(transcript))
        else:
            notes.append("no transcript: the answer comes from the voice alone")
        fused = np.mean(np.stack(list(per.values())), axis=0)
        as_dict = lambda p: {c: round(float(v), 6) for c, v in zip(self.classes, p)}  # noqa: E731
        return Classification(self.classes, as_dict(fused), {m: as_dict(p) for m, p in per.items()}, list(per), notes)
