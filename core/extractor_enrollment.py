"""What an enrollment must be, without BentoML: `/enroll`, `/extract`, the stream and
`hark enroll` / `hark extract` refuse the same clips and embeddings with the same words."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from core import audio as audio_io
from core.extractor_model import EMBED_DIM

ENROLL_MIN_SECONDS = 1.0  # the encoder averages 1.6 s windows: less than a second says little about a voice
ENROLL_MAX_SECONDS = 10.0  # the reference system enrolls from < 5 s; more only costs time


def enrollment_limits() -> audio_io.Limits:
    """The configured binaural limits, with the enrollment's own length cap."""
    env = audio_io.Limits.from_env(binaural=True)
    return replace(env, max_seconds=min(ENROLL_MAX_SECONDS, env.max_seconds))


def check_enrollment(binaural: np.ndarray, sample_rate: int, limits: audio_io.Limits) -> float:
    """The clip's seconds; AudioError when it is too short or holds no voice to enroll."""
    seconds = binaural.shape[-1] / sample_rate
    if seconds < ENROLL_MIN_SECONDS:
        raise audio_io.AudioError(
            "too_short",
            f"the enrollment is {seconds:.2f} s; it needs at least {ENROLL_MIN_SECONDS:g} s (3-5 s is best) "
            f"of the target talker. {limits.accepted()}",
        )
    # An embedding of silence or a hum would pass for a voice and steer extraction to nothing.
    audio_io.require_voice(binaural, sample_rate)
    return seconds


def check_embedding(values: Any) -> np.ndarray:
    """A client's embedding (EMBED_DIM finite numbers, not all zero) as a unit float32 vector."""
    try:
        e = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"the embedding must be a list of {EMBED_DIM} numbers") from None
    if e.shape != (EMBED_DIM,) or not np.isfinite(e).all() or not np.linalg.norm(e) > 0:
        raise ValueError(f"the embedding must be {EMBED_DIM} finite numbers, not all zero "
                         "(the 'embedding' that /enroll returns)")
    return (e / np.linalg.norm(e)).astype(np.float32)
