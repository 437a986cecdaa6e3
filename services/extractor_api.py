"""The extractor family's HTTP endpoints, as a mixin for any @bentoml.service (see
services/serving.py): target speech hearing. Enroll a voice once from a short, noisy binaural
clip, then hear only that voice in binaural mixtures.

    curl -F audio=@enrollment.wav http://127.0.0.1:3000/enroll             # -> {"enrollment_id", ...}
    curl -F audio=@mixture.wav -F enrollment_id=ID -o target.wav http://127.0.0.1:3000/extract
    curl -F audio=@mixture.wav -F enrollment=@enrollment.wav -o target.wav http://127.0.0.1:3000/extract

Enrollments are kept per worker process for HARK_ENROLL_TTL_S (services/extractor_store.py);
sending the enrollment clip itself always works, whichever worker answers.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Optional

import bentoml
import numpy as np
from bentoml.validators import ContentType
from pydantic import BaseModel, Field

from core import audio as audio_io
from core import config
from services import metrics
from core.audio import wav_bytes
from core.extractor_enrollment import (ENROLL_MAX_SECONDS, ENROLL_MIN_SECONDS, check_enrollment,
                                           enrollment_limits)
from core.extractor_model import EMBED_DIM, SAMPLE_RATE, ExtractorModel
from services.extractor_state import enrollment_store, missing_reason, set_missing
from services.extractor_store import EnrollmentMissing
from services.extractor_stream import extractor_stream
from services.family_api import FamilyAPI, file_stem, model_getter
from services.serving import Family
from services.upload import AudioUpload, reject


NAME = "extractor"

_AUDIO_HELP = ("binaural audio (2 channels: left ear, right ear), a multipart file: WAV, FLAC, OGG, MP3, AIFF; "
               "any rate, resampled to 16 kHz")
_PARAM_HELP = {
    "enrollment": (f"the enrollment clip itself ({ENROLL_MIN_SECONDS:g}-{ENROLL_MAX_SECONDS:g} s of binaural audio "
                   "of the target talker facing the listener, noise allowed): instead of enrollment_id"),
    "enrollment_id": "an id returned by /enroll (valid in the worker that made it, for HARK_ENROLL_TTL_S seconds)",
}
AudioField = Annotated[Optional[AudioUpload], Field(description=_AUDIO_HELP)]
EnrollmentField = Annotated[Optional[AudioUpload], Field(description=_PARAM_HELP["enrollment"])]
EnrollmentIdField = Annotated[Optional[str], Field(description=_PARAM_HELP["enrollment_id"], max_length=64)]


class EnrollResult(BaseModel):
    enrollment_id: str = Field(description="pass it to /extract or the stream; valid in this worker process")
    embedding: list[float] = Field(description=f"the voice's unit-length {EMBED_DIM}-d embedding (works in any worker)")
    seconds: float = Field(description="length of the enrollment clip")
    expires_in_s: float = Field(description="seconds until the id is forgotten")
    model_version: str
    quality: str = Field(description="what the model achieves on held-out scenes (from its card), beside the "
                                     "7.01 dB SI-SNRi of 'Look Once to Hear' it aims at")


class ExtractorAPI(FamilyAPI):
    """Extractor endpoints; mix into a @bentoml.service class (see services/serving.py)."""

    # True in services/hark.py: with no extractor model anywhere, the other families still serve
    # and these routes answer 503 (the extractor joined later than the others; see README).
    extractor_optional = False

    def __init__(self) -> None:
        super().__init__()
        noise = np.random.default_rng(0).normal(0, 0.01, (2, SAMPLE_RATE)).astype(np.float32)
        self.extractor: ExtractorModel | None = self.start_family(
            NAME, lambda d: ExtractorModel(d, threads=config.ort_threads()),
            lambda m: m.extract(noise[:, :2048], m.enroll(noise)),
            on_missing=set_missing if self.extractor_optional else None)
        if self.extractor is not None:
            enrollment_store()

    def _unavailable(self) -> Any:
        return reject("unavailable", f"This server has no extractor model ({missing_reason()}).", status=503)

    def _decode(self, upload: AudioUpload, field: str, limits: audio_io.Limits) -> tuple[Any, np.ndarray | None]:
        """(error or None, (2, samples) float32 at 16 kHz)."""
        error, decoded = self.decode_upload(upload, SAMPLE_RATE, limits, field=field)
        return error, None if decoded is None else decoded.samples

    def _enroll_clip(self, upload: AudioUpload, field: str) -> tuple[Any, np.ndarray | None, float]:
        """(error or None, the clip's embedding, its seconds)."""
        limits = enrollment_limits()
        error, x = self._decode(upload, field, limits)
        if error is not None:
            return error, None, 0.0
        try:
            seconds = check_enrollment(x, SAMPLE_RATE, limits)
        except audio_io.AudioError as exc:
            return reject(exc.reason, f"{field}: {exc.message}"), None, 0.0
        t0 = time.perf_counter()
        embedding = self.extractor.enroll(x)
        metrics.observe_inference(NAME, seconds, time.perf_counter() - t0)
        return None, embedding, seconds

    @bentoml.api(route="/enroll")
    def enroll(self, audio: AudioField = None) -> EnrollResult:
        """Enroll a voice from a short binaural clip of the target talker facing the listener
        (noise and other talkers allowed). Returns an id for /extract and the embedding itself.
        The model is below its goal (7.01 dB SI-SNRi, "Look Once to Hear"): `quality` in the
        answer says what it measures today."""
        if self.extractor is None:
            return self._unavailable()
        if audio is None:
            return reject("missing_file", "No audio: send the enrollment clip as the multipart file field 'audio' "
                                          f"(curl -F audio=@enrollment.wav). {_PARAM_HELP['enrollment']}")
        error, embedding, seconds = self._enroll_clip(audio, "audio")
        if error is not None:
            return error
        store = enrollment_store()
        enrollment_id = store.add(embedding)
        return EnrollResult(enrollment_id=enrollment_id, embedding=[float(v) for v in embedding],
                            seconds=round(seconds, 4), expires_in_s=round(store.expires_in(enrollment_id), 1),
                            model_version=self.extractor.version, quality=self.extractor.quality["summary"])

    def _embedding(self, enrollment: AudioUpload | None,
                   enrollment_id: str | None) -> tuple[Any, np.ndarray | None, str]:
        """(error or None, the embedding, how it was given) from exactly one of the two fields."""
        accepted = (f"Send exactly one of: enrollment_id ({_PARAM_HELP['enrollment_id']}), or "
                    f"enrollment ({_PARAM_HELP['enrollment']}).")
        enrollment_id = enrollment_id.strip() if enrollment_id else None
        if enrollment is not None and enrollment_id:
            return reject("params", f"Both enrollment_id and an enrollment clip were sent. {accepted}"), None, ""
        if enrollment is None and not enrollment_id:
            return reject("missing_enrollment", f"No enrollment: whose voice should be extracted? {accepted}"), None, ""
        if enrollment is not None:
            error, embedding, _ = self._enroll_clip(enrollment, "enrollment")
            return error, embedding, "clip"
        try:
            return None, enrollment_store().get(enrollment_id), "id"
        except EnrollmentMissing as exc:
            store = enrollment_store()
            why = ("expired" if exc.reason == "expired" else
                   "is not known to this worker process (never made, expired and dropped, or made by another worker)")
            return reject(f"{exc.reason}_enrollment",
                          f"enrollment_id {enrollment_id!r} {why}. Ids live {store.ttl_s:g} s (HARK_ENROLL_TTL_S) "
                          f"and the newest {store.capacity} are kept (HARK_ENROLL_MAX), per worker. Enroll again "
                          f"with /enroll, or send the enrollment clip itself. {accepted}", status=404), None, ""

    @bentoml.api(route="/extract")
    def extract(self, audio: AudioField = None, enrollment: EnrollmentField = None,
                enrollment_id: EnrollmentIdField = None) -> Annotated[Path, ContentType("audio/wav")]:
        """The enrolled voice alone, out of a binaural mixture: a binaural 16 kHz 16-bit WAV of the
        mixture's length, the target kept at its place (each ear's own level and phase). The
        model is below its goal (7.01 dB SI-SNRi, "Look Once to Hear"): the X-Hark-Quality header
        says what it measures today."""
        from starlette.responses import Response

        if self.extractor is None:
            return self._unavailable()
        limits = audio_io.Limits.from_env(binaural=True)
        if audio is None:
            return reject("missing_file", "No mixture: send the binaural recording as the multipart file field "
                                          f"'audio' (curl -F audio=@mixture.wav). {limits.accepted()}")
        error, embedding, given = self._embedding(enrollment, enrollment_id)
        if error is not None:
            return error
        error, x = self._decode(audio, "audio", limits)
        if error is not None:
            return error
        seconds = x.shape[1] / SAMPLE_RATE
        t0 = time.perf_counter()
        y = self.extractor.extract(x, embedding)
        metrics.observe_inference(NAME, seconds, time.perf_counter() - t0)
        return Response(wav_bytes(y.T, SAMPLE_RATE), media_type="audio/wav", headers={
            "Content-Disposition": f'attachment; filename="{file_stem(audio, "mixture")}_extracted.wav"',
            "X-Hark-Model-Version": self.extractor.version, "X-Hark-Seconds": f"{seconds:.4f}",
            "X-Hark-Enrollment": given, "X-Hark-Quality": self.extractor.quality["summary"]})


FAMILY = Family(
    name=NAME,
    routes=("/enroll", "/extract"),
    model_getter=model_getter(NAME),
    # Not "audio": services/hark.py merges every family's help, and this one's binaural audio
    # would then be what the other families' 400s say they accept.
    field_help=dict(_PARAM_HELP),
    streams={"extractor": extractor_stream},
)
