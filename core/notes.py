"""Note events from the transcriber's posteriorgrams, in numpy.

Inputs are the stitched model outputs for one recording: `onset` and `note` ([frames, keys],
probabilities that a key starts / sounds in a frame) and `contour` ([frames, keys * 3], pitch in
third-of-a-semitone bins, used for pitch bends). Frame t is centred at t / frame_rate seconds.

The decoder works per key:

1. Where the key sounds: frames with note >= frame_threshold, where short dips (<= max_gap_ms)
   are bridged, form *segments*.
2. Where a key starts: local maxima over time of the onset activation above onset_threshold.
   With `infer_onsets`, a steep rise of the note activation also counts as an onset, which keeps
   attacks the onset head under-rates.
3. Each segment starts a note at its attack (an onset peak near the segment start). Later onset
   peaks inside the segment start a new note only when they are a clear new attack: far enough
   from the previous one, a separate peak, and either a dip of the note activation before them
   or an onset well above threshold (`retrigger_threshold`). This is what keeps one long held note
   from being chopped into several (the most common error of Basic-Pitch-style decoders).
4. A segment, or its head, with no onset at all is still a note when the key sounds strongly
   enough (`recover_sustained`): bowed, blown and sung notes often have no sharp attack. With
   `evidence_window_ms`, that onset or level must come within so long of the note's start, so
   a stream can decide the note that soon.
5. Notes shorter than min_note_ms are dropped; velocity comes from the mean note activation;
   pitch bends follow the contour's peak within +-2 semitones of the key (`_pitch_bends`).
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

MIN_MIDI = 21
N_KEYS = 88
BINS_PER_SEMITONE = 3
# The transcriber contract's rates: a model card may say otherwise, these are what it says by default.
SAMPLE_RATE = 22050
HOP = 256
FRAME_RATE = SAMPLE_RATE / HOP
# Decoding defaults when neither the card nor the caller sets them; 58 ms is what the stream waits
# for before it announces a note (core/streaming.py).
ONSET_THRESHOLD = 0.5
FRAME_THRESHOLD = 0.3
MIN_NOTE_MS = 58.0


class NoteLike(Protocol):
    """What the MIDI writer, the demo's synth and its plots read from a note (Note, or a stand-in)."""

    start_s: float
    end_s: float
    pitch_midi: int
    velocity: float
    pitch_bends: Sequence[float] | None


@dataclass
class Note:
    start_s: float
    end_s: float
    pitch_midi: int
    velocity: int  # 1..127
    # One value per frame from the start frame, in semitones relative to pitch_midi.
    pitch_bends: list[float] | None = None


def midi_to_hz(pitch: float) -> float:
    return 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)


def _segments(active: np.ndarray, max_gap: int) -> list[tuple[int, int]]:
    """[start, end) runs of True, merging runs separated by at most max_gap False frames."""
    padded = np.concatenate(([False], active, [False]))
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    starts, ends = edges[0::2], edges[1::2]
    if starts.size == 0:
        return []
    keep = np.ones(starts.size, dtype=bool)
    keep[1:] = (starts[1:] - ends[:-1]) > max_gap  # a new segment only after a long enough gap
    seg_starts = starts[keep]
    seg_ends = np.append(ends[np.flatnonzero(keep)[1:] - 1], ends[-1])
    return list(zip(seg_starts.tolist(), seg_ends.tolist(), strict=True))


def _onset_strength(onset: np.ndarray, note: np.ndarray, infer_onsets: bool) -> np.ndarray:
    if not infer_onsets:
        return onset
    # Rise over up to two frames: a note that jumps from silence is an attack even when the
    # onset head stays quiet. Frames before the start count as silence.
    prev1 = np.vstack([np.zeros_like(note[:1]), note[:-1]])
    prev2 = np.vstack([np.zeros_like(note[:2]), note[:-2]])[: note.shape[0]]
    rise = np.clip(note - np.minimum(prev1, prev2), 0.0, None)
    return np.maximum(onset, rise)


def _peaks(strength: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean [frames, keys]: local maxima over time at or above threshold (first of a plateau)."""
    before = np.vstack([np.zeros_like(strength[:1]), strength[:-1]])
    after = np.vstack([strength[1:], np.zeros_like(strength[:1])])
    return (strength >= threshold) & (strength > before) & (strength >= after)


@dataclass(frozen=True)
class _Rules:
    onset_threshold: float
    frame_threshold: float
    retrigger_threshold: float
    sustain_threshold: float
    min_frames: int
    max_gap: int
    attack_window: int
    dip_ratio: float
    recover_sustained: bool
    evidence_window: int  # frames; 0: anywhere in the note
    ring_gap: int  # frames; 0: off


def _is_new_attack(prev: int, p: int, ons: np.ndarray, act: np.ndarray, end: int, r: _Rules) -> bool:
    """Whether onset peak p inside a note that started at prev is a new attack of the same key."""
    if p - prev < max(2, r.min_frames):
        return False  # neither part could be a note of its own
    between_ons = ons[prev + 1:p]
    if between_ons.size and between_ons.min() > 0.5 * ons[p]:
        return False  # a shoulder of the previous onset, not a separate peak
    if ons[p] >= r.retrigger_threshold:
        return True
    # Otherwise the key must audibly restart: its activation falls after the previous attack's
    # peak and comes back at p. (Measured from that peak so the previous attack's own rise does
    # not count as a dip.)
    since = act[prev:p + 1]
    top = int(np.argmax(since))
    valley = since[top:].min()
    level_after = act[p:min(end, p + 4)].max()
    return bool(valley < r.frame_threshold or valley <= r.dip_ratio * min(since[top], level_after))


def _last_active_before(act: np.ndarray, start: int, stop: int, threshold: float) -> int:
    """End (exclusive) of the last frame in [start, stop) at or above threshold, else start."""
    idx = np.flatnonzero(act[start:stop] >= threshold)
    return start + int(idx[-1]) + 1 if idx.size else start


def _key_notes(ons: np.ndarray, act: np.ndarray, peaks: np.ndarray, r: _Rules) -> list[tuple[int, int]]:
    """[start, end) frame spans of the notes of one key."""
    spans: list[tuple[int, int]] = []
    peak_frames = np.flatnonzero(peaks)
    for a, b in _segments(act >= r.frame_threshold, r.max_gap):
        # Onsets may precede the note activation by a few frames.
        cand = peak_frames[(peak_frames >= a - r.attack_window) & (peak_frames < b)]
        head = cand[cand <= a + r.attack_window]
        # (start frame, has an onset) for each note of the segment, in time order.
        starts: list[tuple[int, bool]] = []
        if head.size:
            first = int(head[np.argmax(ons[head])])  # the strongest of the onsets at the start
            starts.append((first, True))
            rest = cand[cand > first]
        else:
            starts.append((a, False))
            rest = cand
        for p in rest.tolist():
            if _is_new_attack(starts[-1][0], p, ons, act, b, r):
                starts.append((p, True))
        for i, (s, has_onset) in enumerate(starts):
            stop = starts[i + 1][0] if i + 1 < len(starts) else b
            # Before a re-attack the note ends where the key last sounded, not at the re-attack.
            e = _last_active_before(act, s, stop, r.frame_threshold) if i + 1 < len(starts) else b
            if e - s < r.min_frames:
                continue
            if not has_onset:
                if r.ring_gap and spans and s - spans[-1][1] <= r.ring_gap:
                    continue  # the string of the key's last note ringing on (a pedal), not a new note
                look = min(e, s + r.evidence_window) if r.evidence_window else e
                onset_inside = ons[s:look].max() >= r.onset_threshold
                sustained = r.recover_sustained and act[s:look].max() >= r.sustain_threshold
                if not (onset_inside or sustained):
                    continue
            spans.append((s, e))
    return spans


def _pitch_bends(contour: np.ndarray, key: int, s: int, e: int, bins_per_semitone: int,
                 reach: int = 2) -> list[float]:
    """Per-frame sounding pitch relative to the key, in semitones, from the contour.

    Each frame takes the strongest bin within +-reach semitones (weighted towards the key, so
    a neighbouring note is not mistaken for a bend) and refines it with the centroid of that
    bin and its two neighbours. Frames with no contour at all read 0."""
    centre = bins_per_semitone * key + bins_per_semitone // 2
    lo = max(0, centre - reach * bins_per_semitone - 1)
    hi = min(contour.shape[1], centre + reach * bins_per_semitone + 2)
    window = contour[s:e, lo:hi].astype(np.float64)
    if window.size == 0:
        return [0.0] * (e - s)
    offsets = (np.arange(lo, hi) - centre) / bins_per_semitone
    prior = np.exp(-0.5 * (offsets / reach) ** 2)
    inner = np.abs(offsets) <= reach
    peak = np.argmax(np.where(inner, window * prior, -1.0), axis=1)
    rows = np.arange(window.shape[0])[:, None]
    cols = np.clip(peak[:, None] + np.array([-1, 0, 1]), 0, window.shape[1] - 1)
    w = window[rows, cols]
    total = w.sum(axis=1)
    bends = np.divide((w * offsets[cols]).sum(axis=1), total, out=np.zeros_like(total), where=total > 1e-6)
    return [float(x) for x in bends]


Span = tuple[int, int, int, float]  # start frame, end frame, key, mean note activation


def _suppress_overtones(notes: list[Span], ratio: float, tolerance: int) -> list[Span]:
    """Drop notes an octave, twelfth or two octaves above a louder note that starts with them."""
    kept = []
    for s, e, k, amp in notes:
        masked = False
        for s2, e2, k2, amp2 in notes:
            if k - k2 in (12, 19, 24) and abs(s - s2) <= tolerance and amp < ratio * amp2:
                overlap = min(e, e2) - max(s, s2)
                if overlap >= 0.8 * (e - s):
                    masked = True
                    break
        if not masked:
            kept.append((s, e, k, amp))
    return kept


def decode_notes(
    onset: np.ndarray,
    note: np.ndarray,
    contour: np.ndarray | None,
    *,
    frame_rate: float,
    onset_threshold: float = ONSET_THRESHOLD,
    frame_threshold: float = FRAME_THRESHOLD,
    min_note_ms: float = MIN_NOTE_MS,
    min_freq_hz: float | None = None,
    max_freq_hz: float | None = None,
    include_pitch_bends: bool = True,
    infer_onsets: bool = True,
    recover_sustained: bool = True,
    retrigger_threshold: float | None = None,
    retrigger_margin: float = 0.5,
    sustain_threshold: float | None = None,
    max_gap_ms: float = 100.0,
    attack_window_ms: float = 35.0,
    dip_ratio: float = 0.75,
    overtone_ratio: float = 0.0,
    evidence_window_ms: float = 0.0,
    ring_gap_ms: float = 0.0,
    min_midi: int = MIN_MIDI,
    bins_per_semitone: int = BINS_PER_SEMITONE,
) -> list[Note]:
    """Notes from posteriorgrams; see the module docstring for the algorithm.

    retrigger_threshold: onset needed to split a held note without an activation dip
        (default: onset_threshold + retrigger_margin * (1 - onset_threshold)).
    retrigger_margin: where between onset_threshold (0) and 1 (1) the default retrigger
        threshold sits. Relative, so that it stays meaningful when a caller moves the onset
        threshold. 0 ends a sounding note at every separate onset peak of its key: a piano key
        struck again under the pedal barely dips, and its new attack is all there is to see.
    sustain_threshold: peak note activation for a note with no onset (default: the larger of
        onset_threshold and frame_threshold).
    dip_ratio: a held note restarts when its activation falls to this fraction of the level after
        the new onset.
    overtone_ratio: if > 0, drop notes 12/19/24 semitones above a note that starts together with
        them and whose mean activation is larger by 1/overtone_ratio (off by default).
    evidence_window_ms: if > 0, a note with no onset at its start is kept only if its onset or
        sustain evidence comes within this long of the start (0: anywhere in the note).
    ring_gap_ms: if > 0, a stretch of a key with no onset that starts within this long after the
        key's previous note ended is not a note: under a sustain pedal the string rings on after
        the key came up, and its activation can fall and rise again without a new strike.
    """
    onset = np.asarray(onset, dtype=np.float32)
    note = np.asarray(note, dtype=np.float32)
    if onset.ndim != 2 or onset.shape != note.shape:
        raise ValueError(f"onset {onset.shape} and note {note.shape} must be the same [frames, keys]")
    frames, keys = note.shape
    if contour is not None:
        contour = np.asarray(contour, dtype=np.float32)
        if contour.shape != (frames, keys * bins_per_semitone):
            raise ValueError(f"contour {contour.shape} must be [frames, {keys * bins_per_semitone}]")
    if frames == 0:
        return []
    if retrigger_threshold is None:
        retrigger_threshold = onset_threshold + retrigger_margin * (1.0 - onset_threshold)
    rules = _Rules(
        onset_threshold=onset_threshold,
        frame_threshold=frame_threshold,
        retrigger_threshold=retrigger_threshold,
        sustain_threshold=max(onset_threshold, frame_threshold) if sustain_threshold is None else sustain_threshold,
        min_frames=max(1, math.ceil(min_note_ms * frame_rate / 1000.0 - 1e-9)),
        max_gap=max(0, int(round(max_gap_ms * frame_rate / 1000.0))),
        attack_window=max(1, int(round(attack_window_ms * frame_rate / 1000.0))),
        dip_ratio=dip_ratio,
        recover_sustained=recover_sustained,
        evidence_window=int(round(evidence_window_ms * frame_rate / 1000.0)),
        ring_gap=int(round(ring_gap_ms * frame_rate / 1000.0)),
    )
    pitches = min_midi + np.arange(keys)
    hz = 440.0 * 2.0 ** ((pitches - 69.0) / 12.0)
    in_range = np.ones(keys, dtype=bool)
    if min_freq_hz is not None:
        in_range &= hz >= min_freq_hz
    if max_freq_hz is not None:
        in_range &= hz <= max_freq_hz

    strength = _onset_strength(onset, note, infer_onsets)
    peaks = _peaks(strength, onset_threshold)
    # Keys that never reach the frame threshold cannot hold a note: skip them cheaply.
    candidates = np.flatnonzero(in_range & (note >= frame_threshold).any(axis=0))

    spans: list[Span] = []
    for k in candidates.tolist():
        for s, e in _key_notes(strength[:, k], note[:, k], peaks[:, k], rules):
            spans.append((s, e, k, float(note[s:e, k].mean())))
    if overtone_ratio > 0:
        spans = _suppress_overtones(spans, overtone_ratio, rules.attack_window)

    result = []
    for s, e, k, amp in sorted(spans, key=lambda x: (x[0], x[2])):
        bends = None
        if include_pitch_bends and contour is not None:
            bends = _pitch_bends(contour, k, s, e, bins_per_semitone)
        result.append(Note(
            start_s=s / frame_rate,
            end_s=e / frame_rate,
            pitch_midi=int(min_midi + k),
            velocity=int(np.clip(round(127 * amp), 1, 127)),
            pitch_bends=bends,
        ))
    return result


# --- serialisation ------------------------------------------------------------------------------


def note_to_dict(n: Note, digits: int = 4) -> dict[str, Any]:
    d = asdict(n)
    d["start_s"] = round(n.start_s, digits)
    d["end_s"] = round(n.end_s, digits)
    if n.pitch_bends is not None:
        d["pitch_bends"] = [round(b, 3) for b in n.pitch_bends]
    return d


def notes_to_json(notes: Iterable[Note]) -> list[dict[str, Any]]:
    return [note_to_dict(n) for n in notes]


def notes_from_json(items: Iterable[dict[str, Any]]) -> list[Note]:
    return [
        Note(
            start_s=float(d["start_s"]),
            end_s=float(d["end_s"]),
            pitch_midi=int(d["pitch_midi"]),
            velocity=int(d["velocity"]),
            pitch_bends=None if d.get("pitch_bends") is None else [float(b) for b in d["pitch_bends"]],
        )
        for d in items
    ]


def notes_to_rows(notes: Iterable[Note]) -> list[tuple[float, float, int, int]]:
    """(start_s, end_s, pitch_midi, velocity) per note: for tables, CSV and mir_eval."""
    return [(n.start_s, n.end_s, n.pitch_midi, n.velocity) for n in notes]


def notes_to_csv(notes: Sequence[Note]) -> str:
    """The contract's notes CSV (onset_s,offset_s,midi_pitch)."""
    lines = ["onset_s,offset_s,midi_pitch"]
    lines += [f"{n.start_s:.4f},{n.end_s:.4f},{n.pitch_midi}" for n in notes]
    return "\n".join(lines) + "\n"


def dumps(notes: Iterable[Note]) -> str:
    return json.dumps(notes_to_json(notes))
