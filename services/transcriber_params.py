"""The transcriber's decoding parameters as a request gives them: their bounds, and their merge
with the model card's defaults. Shared by the HTTP API and the stream, so both refuse the same values."""
from __future__ import annotations

from typing import Annotated, Any, Optional

from pydantic import BaseModel, Field, ValidationError, model_validator

from core.transcriber_model import TranscriberModel

# Bounds live here once and serve both the request fields (OpenAPI, early 400s) and the merged
# parameters after the card's defaults are applied.
Probability = Annotated[float, Field(gt=0.0, lt=1.0)]
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
