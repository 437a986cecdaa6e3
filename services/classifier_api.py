"""The classifier family's HTTP endpoint, as a mixin for any @bentoml.service (see
services/serving.py): a recording (and its transcript, if any) in, class probabilities out.

    curl -F audio=@answer.wav -F transcript="I have not slept much..." http://127.0.0.1:3000/classify

A research tool, not a diagnostic device: every answer carries the model card's intended use.
"""
from __future__ import annotations

import time
from typing import Annotated, Optional

import bentoml
from pydantic import BaseModel, Field

from core import audio as audio_io
from services import metrics
from core.classifier_model import MAX_TRANSCRIPT_CHARS, ClassifierModel
from services.family_api import FamilyAPI, model_getter
from services.serving import Family
from services.upload import AudioUpload, reject


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


class ClassifierAPI(FamilyAPI):
    """Classifier endpoint; mix into a @bentoml.service class (see services/serving.py)."""

    def __init__(self) -> None:
        super().__init__()
        # No warm-up call: its sessions are small, and a voice check would refuse silence anyway.
        self.classifier: ClassifierModel = self.start_family(NAME, ClassifierModel, lambda m: None)

    @bentoml.api(route="/classify")
    def classify(self, audio: AudioField = None, transcript: TranscriptField = None) -> ClassifyResult:
        """Class probabilities for one recording (voice), fused with its transcript (text) when given."""
        m = self.classifier
        if audio is not None and transcript is not None and len(transcript) > MAX_TRANSCRIPT_CHARS:
            return reject("params", f"The transcript has {len(transcript)} characters; at most {MAX_TRANSCRIPT_CHARS}")
        error, decoded = self.decode_upload(
            audio, m.sample_rate, audio_io.Limits.from_env(),
            missing="No audio: send the recording as the multipart file field 'audio' (curl -F audio=@answer.wav).")
        if decoded is None:
            return error
        try:
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
    model_getter=model_getter(NAME),
    field_help={"transcript": _TRANSCRIPT_HELP},
)
