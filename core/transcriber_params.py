"""The transcriber's decoding parameters and their bounds, without BentoML: the HTTP API, the
WebSocket stream and `hark transcribe` accept and refuse the same values with the same words."""
from __future__ import annotations

from typing import Annotated, Any, Optional

from pydantic import BaseModel, Field, ValidationError, WithJsonSchema, model_validator

from core.transcriber_model import TranscriberModel

# Bounds live here once and serve both the request fields (OpenAPI, early 400s) and the merged
# parameters after the card's defaults are applied.
# BentoML publishes /docs.json as OpenAPI 3.0, where an exclusive bound is a flag beside minimum or
# maximum; pydantic writes JSON Schema 2020-12's numeric form, which 3.0 tools reject.
Probability = Annotated[float, Field(gt=0.0, lt=1.0),
                        WithJsonSchema({"type": "number", "minimum": 0.0, "maximum": 1.0,
                                        "exclusiveMinimum": True, "exclusiveMaximum": True})]
NoteMs = Annotated[float, Field(ge=0.0, le=2000.0)]
FreqHz = Annotated[float, Field(ge=20.0, le=8000.0)]


class TranscribeParams(BaseModel):
    """Decoding parameters as used for one request (request values over the card's defaults)."""

    onset_threshold: Probability
    frame_threshold: Probability
    min_note_ms: NoteMs
    min_freq_hz: Optional[FreqHz] = None
    max_freq_hz: Optional[FreqHz] = None
    include_pitch_bends: bool = True

    @model_validator(mode="after")
    def _freq_order(self) -> TranscribeParams:
        if self.min_freq_hz is not None and self.max_freq_hz is not None and self.min_freq_hz >= self.max_freq_hz:
            raise ValueError(
                f"min_freq_hz ({self.min_freq_hz:g}) must be below max_freq_hz ({self.max_freq_hz:g})"
            )
        return self


PARAM_HELP = {
    "onset_threshold": "note-start probability needed to start a note, in (0, 1); default from the model card",
    "frame_threshold": "note probability needed to keep a note sounding, in (0, 1); default from the model card",
    "min_note_ms": "shortest note kept, 0-2000 ms; default from the model card",
    "min_freq_hz": "ignore notes below this frequency, 20-8000 Hz",
    "max_freq_hz": "ignore notes above this frequency, 20-8000 Hz",
    "include_pitch_bends": "add per-frame pitch bends to each note",
}


def request_params(model: TranscriberModel, given: dict[str, Any]) -> tuple[TranscribeParams, dict[str, Any]]:
    """(the request's parameters over the card's defaults, every decoder keyword for it).
    Card-level decoding options that are not request parameters still apply. Raises
    ValueError saying what is wrong."""
    defaults = model.decode_defaults()
    try:
        params = TranscribeParams(**{**defaults, **{k: v for k, v in given.items() if v is not None}})
    except ValidationError as exc:
        raise ValueError("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None
    extra = {k: v for k, v in defaults.items() if k not in TranscribeParams.model_fields}
    return params, {**extra, **params.model_dump()}
