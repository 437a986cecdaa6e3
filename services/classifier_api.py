"""The classifier family's HTTP endpoint, as a mixin for any @bentoml.service (see
services/serving.py): a recording (and its transcript, if any) in, class probabilities out.

    curl -F audio=@answer.wav -F transcript="I have not slept much..." http://127.0.0.1:3000/classify

A research tool, not a diagnostic device: every answer carries the model card's intended use.
"""
from __future__ import annotations

import logging
import time
from typing import Annotated, Optional

import bentoml
from pydantic import BaseModel, Field

from core import audio as audio_io
from services import metrics, model_store
from core.classifier_model import MAX_TRANSCRIPT_CHARS, ClassifierModel
from services.serving import Family
from services.upload import AudioUpload, reject

log = logging.getLogger("hark.classifier")

NAME = "classifier"

_AUDIO_HELP = "one speaker's recording, a multipart file: WAV, FLAC, OGG, MP3, AIFF; mono or stereo, any rate"
_TRANSCRIPT_HELP = "what was said (optional): without it the answer comes from the voice alone"
AudioField = Annotated[Optional[AudioUpload], Field(description=_AUDIO_HELP)]
TranscriptField = Annotated[Optional[str], Field(description=_TRANSCRIPT_HELP)]


class ModelFacts(BaseModel):
    name: str
    version: str
    sha256: str
    provider: str
    task: str


class ClassifyResult(BaseModel):
    label: str = Field(description="the most probable class")
    probabilities: dict[str, float] = Field(description="per class, fused over the modalities used")
    per_modality: dict[str, dict[str, float]]
    modalities: list[str] = Field(description="voice, and text when a transcript was given")
    notes: list[str]
    duration_s: float
    inference_s: float
    model: ModelFacts
    intended_use: str


_loaded: dict[str, ClassifierModel] = {}


def loaded_model() -> ClassifierModel | None:
    return _loaded.get(NAME)


class ClassifierAPI:
    """Classifier endpoint; mix into a @bentoml.service class (see services/serving.py)."""

    def __init__(self) -> None:
        super().__init__()
        model_dir = model_store.resolve(NAME)
        self.classifier = m = ClassifierModel(model_dir)
        metrics.set_model_info(NAME, m.name, m.version, m.sha256, m.provider)
        _loaded[NAME] = m
        log.info("classifier %s (%s, %s) from %s on %s", m.name, m.version, m.task, model_dir, m.provider)

    @bentoml.api(route="/classify")
    def classify(self, audio: AudioField = None, transcript: TranscriptField = None) -> ClassifyResult:
        """Class probabilities for one recording (voice), fused with its transcript (text) when given."""
        m, limits = self.classifier, audio_io.Limits.from_env()
        if audio is None:
            return reject("missing_file", "No audio: send the recording as the multipart file field 'audio' "
                                          f"(curl -F audio=@answer.wav). {limits.accepted()}")
        if transcript is not None and len(transcript) > MAX_TRANSCRIPT_CHARS:
            return reject("params", f"The transcript has {len(transcript)} characters; at most {MAX_TRANSCRIPT_CHARS}")
        try:
            decoded = audio_io.decode(audio.read_bytes(), m.sample_rate, content_type=audio.content_type,
                                      limits=limits)
            # A label for silence or a hum would look as confident as one for a voice.
            if m.needs_voice:
                audio_io.require_voice(decoded.samples, m.sample_rate)
        except audio_io.AudioError as exc:
            return reject(exc.reason, exc.message)
        t0 = time.perf_counter()
        try:
            result = m.classify(decoded.samples, transcript)
        except ValueError as exc:
            return reject("params", str(exc))
        elapsed = time.perf_counter() - t0
        metrics.observe_inference(NAME, decoded.duration_s, elapsed)
        return ClassifyResult(
            label=result.label, probabilities=result.probabilities, per_modality=result.per_modality,
            modalities=result.modalities, notes=result.notes, duration_s=round(decoded.duration_s, 4),
            inference_s=round(elapsed, 4),
            model=ModelFacts(name=m.name, version=m.version, sha256=m.sha256, provider=m.provider, task=m.task),
            intended_use=m.intended_use)


FAMILY = Family(
    name=NAME,
    routes=("/classify",),
    model_getter=loaded_model,
    field_help={"transcript": _TRANSCRIPT_HELP},
)
