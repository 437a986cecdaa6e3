"""The transcriber family's HTTP endpoints, as a mixin for any @bentoml.service (see
services/serving.py): audio in, notes (JSON) or a MIDI file out.

    curl -F audio=@song.wav -F onset_threshold=0.4 http://127.0.0.1:3000/transcribe
    curl -F audio=@song.wav -o song.mid http://127.0.0.1:3000/transcribe_midi
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Optional

import bentoml
import numpy as np
from bentoml.validators import ContentType
from pydantic import BaseModel, Field

from core import audio as audio_io
from services import metrics
from core.midi import notes_to_midi
from core.notes import Note, note_to_dict
from services.family_api import FamilyAPI, file_stem, model_getter
from services.serving import Family
from core.transcriber_model import TranscriberModel
from core.transcriber_params import PARAM_HELP as _PARAM_HELP
from core.transcriber_params import FreqHz, NoteMs, Probability, TranscribeParams, request_params
from services.transcriber_stream import transcribe_stream
from services.upload import AudioUpload, reject


NAME = "transcriber"


class NoteEvent(BaseModel):
    start_s: float
    end_s: float
    pitch_midi: int = Field(description="MIDI pitch, 21 (A0) to 108 (C8)")
    velocity: int = Field(description="1-127, from the note activation")
    pitch_bends: Optional[list[float]] = Field(
        None, description="per frame (86.13 Hz) from start_s: semitones relative to pitch_midi")


class ModelFacts(BaseModel):
    name: str
    version: str
    sha256: str
    provider: str


class AudioFacts(BaseModel):
    format: str
    sample_rate: int
    channels: int
    duration_s: float


class TranscriptionMeta(BaseModel):
    model: ModelFacts
    audio: AudioFacts
    params: TranscribeParams
    frame_rate: float
    inference_s: float
    n_notes: int


class Transcription(BaseModel):
    notes: list[NoteEvent]
    meta: TranscriptionMeta


_AUDIO_HELP = "the recording, a multipart file: WAV, FLAC, OGG, MP3, AIFF; mono or stereo"

# Request fields (unset parameters are None and take the card's default).
AudioField = Annotated[Optional[AudioUpload], Field(description=_AUDIO_HELP)]
OnsetField = Annotated[Optional[Probability], Field(description=_PARAM_HELP["onset_threshold"])]
FrameField = Annotated[Optional[Probability], Field(description=_PARAM_HELP["frame_threshold"])]
NoteMsField = Annotated[Optional[NoteMs], Field(description=_PARAM_HELP["min_note_ms"])]
MinHzField = Annotated[Optional[FreqHz], Field(description=_PARAM_HELP["min_freq_hz"])]
MaxHzField = Annotated[Optional[FreqHz], Field(description=_PARAM_HELP["max_freq_hz"])]
BendsField = Annotated[bool, Field(description=_PARAM_HELP["include_pitch_bends"])]


@dataclass
class _Outcome:
    """One request's result: a 4xx response, or the notes and the meta block."""

    error: Any = None
    notes: list[Note] = field(default_factory=list)
    meta: TranscriptionMeta | None = None


class TranscriberAPI(FamilyAPI):
    """Transcriber endpoints; mix into a @bentoml.service class (see services/serving.py)."""

    def __init__(self) -> None:
        super().__init__()
        self.transcriber: TranscriberModel = self.start_family(
            NAME, TranscriberModel, lambda m: m.posteriorgrams(np.zeros(m.window_samples, dtype=np.float32)))

    # --- shared by both endpoints ---------------------------------------------------------------

    def _run(self, upload: AudioUpload | None, given: dict[str, Any]) -> _Outcome:
        m = self.transcriber
        params, decode_kwargs = None, {}
        if upload is not None:  # a missing file is the first thing to say
            try:
                params, decode_kwargs = request_params(m, given)
            except ValueError as exc:
                accepted = "; ".join(f"{k}: {v}" for k, v in _PARAM_HELP.items())
                return _Outcome(error=reject("params", f"Invalid parameters: {exc}. Accepted: {accepted}"))
        error, decoded = self.decode_upload(
            upload, m.sample_rate, audio_io.Limits.from_env(),
            missing="No audio: send the recording as the multipart file field 'audio' (curl -F audio=@song.wav).")
        if decoded is None:
            return _Outcome(error=error)

        t0 = time.perf_counter()
        grams = m.posteriorgrams(decoded.samples)
        notes = m.decode(grams, **decode_kwargs)
        elapsed = time.perf_counter() - t0
        metrics.observe_inference(m.name, decoded.duration_s, elapsed)
        meta = TranscriptionMeta(
            model=ModelFacts(name=m.name, version=m.version, sha256=m.sha256, provider=m.provider),
            audio=AudioFacts(format=decoded.source_format, sample_rate=decoded.source_rate,
                             channels=decoded.source_channels, duration_s=round(decoded.duration_s, 4)),
            params=params, frame_rate=m.frame_rate, inference_s=round(elapsed, 4), n_notes=len(notes),
        )
        return _Outcome(notes=notes, meta=meta)

    # --- endpoints ------------------------------------------------------------------------------

    @bentoml.api(route="/transcribe")
    def transcribe(
        self,
        audio: AudioField = None,
        onset_threshold: OnsetField = None,
        frame_threshold: FrameField = None,
        min_note_ms: NoteMsField = None,
        min_freq_hz: MinHzField = None,
        max_freq_hz: MaxHzField = None,
        include_pitch_bends: BendsField = True,
    ) -> Transcription:
        """Transcribe a recording into notes: start/end in seconds, MIDI pitch, velocity, pitch bends."""
        out = self._run(audio, dict(
            onset_threshold=onset_threshold, frame_threshold=frame_threshold, min_note_ms=min_note_ms,
            min_freq_hz=min_freq_hz, max_freq_hz=max_freq_hz, include_pitch_bends=include_pitch_bends))
        if out.error is not None:
            return out.error
        return Transcription(notes=[NoteEvent(**note_to_dict(n)) for n in out.notes], meta=out.meta)

    @bentoml.api(route="/transcribe_midi")
    def transcribe_midi(
        self,
        audio: AudioField = None,
        onset_threshold: OnsetField = None,
        frame_threshold: FrameField = None,
        min_note_ms: NoteMsField = None,
        min_freq_hz: MinHzField = None,
        max_freq_hz: MaxHzField = None,
        include_pitch_bends: BendsField = True,
    ) -> Annotated[Path, ContentType("audio/midi")]:
        """Transcribe a recording into a Standard MIDI File (pitch bends as MIDI pitch-bend events)."""
        from starlette.responses import Response

        out = self._run(audio, dict(
            onset_threshold=onset_threshold, frame_threshold=frame_threshold, min_note_ms=min_note_ms,
            min_freq_hz=min_freq_hz, max_freq_hz=max_freq_hz, include_pitch_bends=include_pitch_bends))
        if out.error is not None:
            return out.error
        data = notes_to_midi(out.notes, frame_rate=self.transcriber.frame_rate)
        # The upload's own name, made safe for a header.
        return Response(data, media_type="audio/midi", headers={
            "Content-Disposition": f'attachment; filename="{file_stem(audio, "transcription")}.mid"'})


FAMILY = Family(
    name=NAME,
    routes=("/transcribe", "/transcribe_midi"),
    model_getter=model_getter(NAME),
    field_help={"audio": _AUDIO_HELP, **_PARAM_HELP},
    streams={"transcriber": transcribe_stream},
)
