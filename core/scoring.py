"""Note- and frame-level transcription scores on top of mir_eval, pooled over clips.

mir_eval's own functions return per-clip ratios; averaging those weights a 5 s clip like a 40 s
one. We keep the raw TP/FP/FN counts instead so that a set's score is the ratio of summed counts
(how the Basic Pitch anchor numbers this project compares against were measured).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import mir_eval
import numpy as np

ONSET_TOLERANCE_S = 0.05
FRAME_HOP_S = 0.01
# Intervals (semitones) at which a false positive over a sounding true note counts as an
# overtone: octave, octave + fifth (3rd harmonic), two octaves.
HARMONIC_INTERVALS = (12, 19, 24)


@dataclass(frozen=True)
class NoteArray:
    """Notes as parallel arrays; pitch is (possibly fractional) MIDI. `repeated`, where a set
    provides it, marks strikes of a key that was still sounding (see repeated_recall)."""

    onsets: np.ndarray
    offsets: np.ndarray
    pitches: np.ndarray
    repeated: np.ndarray | None = None

    @classmethod
    def from_rows(cls, rows: Iterable[Sequence[float]]) -> "NoteArray":
        """Rows of (onset_s, offset_s, midi_pitch, ...); extra fields are ignored."""
        arr = np.array([tuple(r[:3]) for r in rows], dtype=np.float64).reshape(-1, 3)
        return cls(arr[:, 0].copy(), arr[:, 1].copy(), arr[:, 2].copy())

    @classmethod
    def empty(cls) -> "NoteArray":
        return cls.from_rows([])

    def __len__(self) -> int:
        return int(self.onsets.shape[0])

    def intervals(self) -> np.ndarray:
        # mir_eval rejects zero-length intervals; a decoder may emit one when it clips at the end.
        off = np.maximum(self.offsets, self.onsets + 1e-3)
        return np.stack([self.onsets, off], axis=1).reshape(-1, 2)

    def without_unisons(self, tol_s: float = 1e-3) -> "NoteArray":
        """Collapse notes of the same key starting together (two instruments in unison, as in
        Bach10) into the longest one: a transcriber emits one note per key, so the doubled note
        could never be matched and would count as a miss for every system."""
        order = np.lexsort((-(self.offsets - self.onsets), self.onsets, np.round(self.pitches)))
        keep: list[int] = []
        for i in order:
            j = keep[-1] if keep else None
            if j is not None and round(self.pitches[j]) == round(self.pitches[i]) \
                    and abs(self.onsets[i] - self.onsets[j]) <= tol_s:
                continue
            keep.append(int(i))
        idx = np.sort(np.array(keep, dtype=np.int64))
        return NoteArray(self.onsets[idx], self.offsets[idx], self.pitches[idx],
                         None if self.repeated is None else self.repeated[idx])

    def clipped(self, end_s: float) -> "NoteArray":
        """Notes starting before `end_s`, cut at `end_s` (for --limit-seconds)."""
        keep = self.onsets < end_s
        return NoteArray(self.onsets[keep], np.minimum(self.offsets[keep], end_s), self.pitches[keep],
                         None if self.repeated is None else self.repeated[keep])


def midi_to_hz(midi: np.ndarray) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(midi, dtype=np.float64) - 69.0) / 12.0)


@dataclass
class Counts:
    """True/false positives and false negatives; floats because a clip with k annotators
    contributes each annotation's counts with weight 1/k."""

    tp: float = 0.0
    fp: float = 0.0
    fn: float = 0.0

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    def scaled(self, w: float) -> "Counts":
        return Counts(self.tp * w, self.fp * w, self.fn * w)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp > 0 else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn > 0 else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r > 0 else 0.0


def _match(ref: NoteArray, est: NoteArray, offset_ratio: float | None) -> list[tuple[int, int]]:
    if len(ref) == 0 or len(est) == 0:
        return []
    # Round the reference pitch: systems emit integer keys, and a sung note annotated at 49.6
    # means key 50 (vocadito is fractional MIDI converted from Hz).
    return mir_eval.transcription.match_notes(
        ref.intervals(), midi_to_hz(np.round(ref.pitches)),
        est.intervals(), midi_to_hz(np.round(est.pitches)),
        onset_tolerance=ONSET_TOLERANCE_S, pitch_tolerance=50.0, offset_ratio=offset_ratio,
    )


def note_counts(ref: NoteArray, est: NoteArray, with_offsets: bool = False) -> Counts:
    """Onset-only (50 ms, offset_ratio=None) or with mir_eval's default offset rule (20 % / 50 ms)."""
    matched = len(_match(ref, est, 0.2 if with_offsets else None))
    return Counts(matched, len(est) - matched, len(ref) - matched)


def _roll(notes: NoteArray, times: np.ndarray) -> list[np.ndarray]:
    """Frequencies (Hz) sounding at each grid time; a note sounds on [onset, offset)."""
    hz = midi_to_hz(notes.pitches)
    frames: list[list[float]] = [[] for _ in times]
    for on, off, f in zip(notes.onsets, notes.offsets, hz):
        lo, hi = np.searchsorted(times, [on, off], side="left")
        for i in range(lo, hi):
            frames[i].append(float(f))
    return [np.array(sorted(f), dtype=np.float64) for f in frames]


def frame_counts(ref: NoteArray, est: NoteArray, hop_s: float = FRAME_HOP_S) -> Counts:
    """Multi-pitch frame counts (mir_eval.multipitch rules, half-semitone window) on one 10 ms
    grid built from the notes of both sides, so neither system's own frame rate matters."""
    end = max([0.0, *ref.offsets.tolist(), *est.offsets.tolist()])
    times = np.arange(0.0, end + hop_s, hop_s)
    # Pitches stay exact (Hz) here: the half-semitone window does the rounding.
    ref_midi = mir_eval.multipitch.frequencies_to_midi(_roll(ref, times))
    est_midi = mir_eval.multipitch.frequencies_to_midi(_roll(est, times))
    tp = float(mir_eval.multipitch.compute_num_true_positives(ref_midi, est_midi).sum())
    n_ref = float(mir_eval.multipitch.compute_num_freqs(ref_midi).sum())
    n_est = float(mir_eval.multipitch.compute_num_freqs(est_midi).sum())
    return Counts(tp, n_est - tp, n_ref - tp)


def error_breakdown(ref: NoteArray, est: NoteArray, tol: float = ONSET_TOLERANCE_S) -> Counter:
    """Label each onset-only error by its likely cause (first rule that applies wins).

    False positives: `fp_retrigger` (same key inside a true note already sounding),
    `fp_harmonic` (+12/+19/+24 over a sounding true note), `fp_subharmonic` (-12),
    `fp_semitone` (±1 at a true onset), `fp_other`. False negatives: `fn_merged` (an estimate of the same key was
    already sounding: the new onset was missed), `fn_onset_off` (same key, onset 50-200 ms off),
    `fn_octave` (only an octave-shifted estimate at the onset), `fn_absent`.
    """
    out: Counter = Counter()
    matches = _match(ref, est, None)
    ref_hit = {r for r, _ in matches}
    est_hit = {e for _, e in matches}
    rk, ek = np.round(ref.pitches), np.round(est.pitches)
    for j in range(len(est)):
        if j in est_hit:
            continue
        on, key = est.onsets[j], ek[j]
        sounding = (ref.onsets - tol <= on) & (on < ref.offsets)
        diff = key - rk[sounding]
        near_onset = np.abs(ref.onsets - on) <= tol
        # Same key already sounding wins over an interval to another voice: it is the more
        # specific explanation.
        if ((rk == key) & (ref.onsets + tol < on) & (on < ref.offsets)).any():
            out["fp_retrigger"] += 1
        elif np.isin(diff, HARMONIC_INTERVALS).any():
            out["fp_harmonic"] += 1
        elif (diff == -12).any():
            out["fp_subharmonic"] += 1
        elif (near_onset & (np.abs(rk - key) == 1)).any():
            out["fp_semitone"] += 1
        else:
            out["fp_other"] += 1
    for i in range(len(ref)):
        if i in ref_hit:
            continue
        on, key = ref.onsets[i], rk[i]
        same = ek == key
        dt = est.onsets - on
        if (same & (dt < -tol) & (est.offsets > on)).any():
            out["fn_merged"] += 1
        elif (same & (np.abs(dt) <= 0.2)).any():
            out["fn_onset_off"] += 1
        elif ((np.abs(ek - key) == 12) & (np.abs(dt) <= tol)).any():
            out["fn_octave"] += 1
        else:
            out["fn_absent"] += 1
    return out


@dataclass
class ClipScore:
    """Counts for one clip against one or more annotations (each weighted 1/k)."""

    onset: Counts = field(default_factory=Counts)
    offset: Counts = field(default_factory=Counts)
    frame: Counts = field(default_factory=Counts)
    errors: Counter = field(default_factory=Counter)
    repeated: Counts = field(default_factory=Counts)  # onset-only matches of the repeated strikes

    def __add__(self, other: "ClipScore") -> "ClipScore":
        errors = Counter(self.errors)
        errors.update(other.errors)
        return ClipScore(self.onset + other.onset, self.offset + other.offset, self.frame + other.frame, errors,
                         self.repeated + other.repeated)

    def metrics(self) -> dict[str, float]:
        out = {
            "note_f1": self.onset.f1,
            "note_precision": self.onset.precision,
            "note_recall": self.onset.recall,
            "note_f1_offset": self.offset.f1,
            "frame_f1": self.frame.f1,
        }
        if self.repeated.tp + self.repeated.fn > 0:
            out["repeated_recall"] = self.repeated.recall
        return out


def repeated_counts(ref: NoteArray, est: NoteArray) -> Counts:
    """Of the reference's repeated strikes (a key struck again while its earlier note still
    sounded, by the key or the pedal), how many an estimated note matches, onset-only (50 ms).
    Empty when the reference does not mark them."""
    if ref.repeated is None:
        return Counts()
    rep = np.asarray(ref.repeated, dtype=bool)
    hit = {r for r, _ in _match(ref, est, None)}
    tp = float(sum(1 for i in np.flatnonzero(rep) if int(i) in hit))
    return Counts(tp, 0.0, float(rep.sum()) - tp)


def score_clip(refs: Sequence[NoteArray], est: NoteArray) -> ClipScore:
    """Score `est` against every annotation of one clip and average the counts."""
    total = ClipScore()
    if not refs:
        return total
    w = 1.0 / len(refs)
    for ref in refs:
        errors = error_breakdown(ref, est)
        total = total + ClipScore(
            note_counts(ref, est).scaled(w),
            note_counts(ref, est, with_offsets=True).scaled(w),
            frame_counts(ref, est).scaled(w),
            Counter({k: v * w for k, v in errors.items()}),
            repeated_counts(ref, est).scaled(w),
        )
    return total
