"""The classifier as it ships: feature encoders and per-modality heads through onnxruntime.

The HTTP service, the demo and the benchmarks call this class. Without a transcript it answers
from the voice alone and says so; with one, the voice and text probabilities are averaged (the
late fusion the model was evaluated with).
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core import runtime
from core.classifier_features import TextFeatures, VoiceFeatures
from core.cards import file_sha256, read_card

log = logging.getLogger("hark.classifier")

MAX_TRANSCRIPT_CHARS = 20_000  # a transcript longer than this is refused (the server and the CLI)


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
        self.card: dict[str, Any] = read_card(self.model_dir)
        self.name: str = self.card.get("name", "classifier")
        self.version: str = str(self.card.get("version", "unknown"))
        self.classes: list[str] = list(self.card["classes"])
        self.task: str = self.card.get("task", "multiclass")
        self.sample_rate: int = int(self.card["io"]["sample_rate"])
        self.intended_use: str = self.card.get("intended_use", "")
        files = self.card["files"]
        self.sha256 = file_sha256(self.model_dir / files["model"])
        # What the training manifest held: voice, text or both (cards before this field had both).
        self.modalities: list[str] = list(self.card.get("modalities", ["voice", "text"]))
        self.voice = VoiceFeatures(self.model_dir, threads=threads) if "voice" in self.modalities else None
        self.text = TextFeatures(self.model_dir, threads=threads) if "text" in self.modalities else None
        self.heads = {m: runtime.create_session(self.model_dir / files[f"{m}_head"], provider=provider,
                                                intra_op_threads=threads) for m in self.modalities}
        self.provider = runtime.active_provider(next(iter(self.heads.values())))
        self._lock = threading.Lock()

    def _head(self, modality: str, features: np.ndarray) -> np.ndarray:
        with self._lock:
            return self.heads[modality].run(["probabilities"], {"features": features[None].astype(np.float32)})[0][0]

    @property
    def needs_voice(self) -> bool:
        return self.voice is not None

    def classify(self, audio: np.ndarray | None, transcript: str | None = None) -> Classification:
        """Mono float32 audio at `sample_rate` (and its transcript, if any) -> class probabilities.
        ValueError when the model's modalities have nothing to work on (a text-only model without
        a transcript, a voice-only one without audio)."""
        per, notes = {}, []
        if self.voice is not None and audio is not None:
            per["voice"] = self._head("voice", self.voice(audio))
        has_text = bool(transcript and transcript.strip())
        if self.text is not None and has_text:
            per["text"] = self._head("text", self.text(transcript))
        elif self.text is not None:
            notes.append("no transcript: the answer comes from the voice alone")
        elif has_text:
            notes.append("this model was trained on voice alone: the transcript is not used")
        if not per:
            wants = " or ".join("the audio" if m == "voice" else "a transcript" for m in self.modalities)
            raise ValueError(f"nothing to classify: this model ({' + '.join(self.modalities)}) needs {wants}")
        fused = np.mean(np.stack(list(per.values())), axis=0)
        as_dict = lambda p: {c: round(float(v), 6) for c, v in zip(self.classes, p)}  # noqa: E731
        return Classification(self.classes, as_dict(fused), {m: as_dict(p) for m, p in per.items()}, list(per), notes)
