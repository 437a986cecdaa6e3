"""This worker's extractor state, shared by the HTTP API, its stream and its demo page, so none
of them imports another: why no model is served (an optional family without artifacts), the
enrollment store (a client's embedding is checked by core.extractor_enrollment)."""
from __future__ import annotations

from core import config
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
