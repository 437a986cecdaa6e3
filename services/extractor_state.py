"""This worker's extractor state, shared by the HTTP API, its stream and its demo page, so none
of them imports another: why no model is served (an optional family without artifacts), the
enrollment store, and the check of a client's embedding."""
from __future__ import annotations

from typing import Any

import numpy as np

from core import config
from core.extractor_model import EMBED_DIM
from services.extractor_store import EnrollmentStore

_store: list[EnrollmentStore] = []
_missing: list[str] = []


def missing_reason() -> str | None:
    return _missing[0] if _missing else None


def set_missing(reason: str) -> None:
    _missing[:] = [reason]


def enrollment_store() -> EnrollmentStore:
    """This process's store, made on first use with the configured TTL and capacity."""
    if not _store:
        _store.append(EnrollmentStore(config.enroll_ttl_s(), config.enroll_max()))
    return _store[0]


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
