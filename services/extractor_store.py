"""Enrollments kept between requests: /enroll stores an embedding, /extract and the stream look
it up by id.

The store lives in the worker process's memory. It is bounded twice, so it never grows without
limit: entries expire `ttl_s` after they were made (HARK_ENROLL_TTL_S), and past `capacity`
entries (HARK_ENROLL_MAX) the oldest is dropped. With several workers each process has its own
store, and a request that reaches another worker does not find the id: clients that cannot
pin a worker send the enrollment clip itself, which always works.

Ids are random (not counters): an embedding identifies a voice, so ids must not be guessable.
"""
from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import numpy as np


class EnrollmentMissing(KeyError):
    """An id the store does not hold: `reason` is "expired" (seen, but too old) or "unknown"."""

    def __init__(self, enrollment_id: str, reason: str):
        super().__init__(enrollment_id)
        self.enrollment_id, self.reason = enrollment_id, reason


class EnrollmentStore:
    """Thread-safe id -> embedding map with a time-to-live and a capacity."""

    def __init__(self, ttl_s: float, capacity: int, clock: Callable[[], float] = time.monotonic):
        if ttl_s <= 0 or capacity < 1:
            raise ValueError(f"need ttl_s > 0 and capacity >= 1, got {ttl_s}, {capacity}")
        self.ttl_s, self.capacity, self.clock = ttl_s, capacity, clock
        self._entries: OrderedDict[str, tuple[float, np.ndarray]] = OrderedDict()  # oldest first
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            self._expire(self.clock())
            return len(self._entries)

    def add(self, embedding: np.ndarray) -> str:
        """Store a copy of `embedding`; returns its new id."""
        enrollment_id = secrets.token_urlsafe(12)
        now = self.clock()
        with self._lock:
            self._expire(now)
            self._entries[enrollment_id] = (now, np.array(embedding, dtype=np.float32, copy=True))
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return enrollment_id

    def get(self, enrollment_id: str) -> np.ndarray:
        """The embedding stored under `enrollment_id`, or EnrollmentMissing."""
        now = self.clock()
        with self._lock:
            entry = self._entries.get(enrollment_id)
            if entry is not None and now - entry[0] > self.ttl_s:
                reason = "expired"
            elif entry is None:
                reason = "unknown"
            else:
                return entry[1]
            self._expire(now)
        raise EnrollmentMissing(enrollment_id, reason)

    def expires_in(self, enrollment_id: str) -> float:
        """Seconds until `enrollment_id` expires (0 if it is gone)."""
        with self._lock:
            entry = self._entries.get(enrollment_id)
        return 0.0 if entry is None else max(0.0, entry[0] + self.ttl_s - self.clock())

    def _expire(self, now: float) -> None:
        # Insertion order is age order (entries are never refreshed), so expired ones are in front.
        while self._entries:
            made, _ = next(iter(self._entries.values()))
            if now - made <= self.ttl_s:
                break
            self._entries.popitem(last=False)
