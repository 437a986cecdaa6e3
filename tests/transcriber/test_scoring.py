"""The mir_eval wrapper on hand-built notes: counts, tolerances, pooling, error labels."""
from __future__ import annotations

import pytest

from core.scoring import (
    ClipScore,
    Counts,
    NoteArray,
    error_breakdown,
    frame_counts,
    note_counts,
    score_clip,
)

REF = NoteArray.from_rows([(0.5, 1.0, 60), (1.0, 1.5, 64), (1.5, 2.5, 67), (1.5, 2.5, 48)])


def shifted(notes: NoteArray, onset_dt: float = 0.0, pitch_dt: float = 0.0, index: int | None = None) -> NoteArray:
    rows = [[a, b, p] for a, b, p in zip(notes.onsets, notes.offsets, notes.pitches)]
    for i, row in enumerate(rows):
        if index is None or i == index:
            row[0] += onset_dt
            row[2] += pitch_dt
    return NoteArray.from_rows(rows)


def test_perfect_match_scores_one() -> None:
    score = score_clip([REF], REF)
    assert score.metrics() == pytest.approx(
        {"note_f1": 1.0, "note_precision": 1.0, "note_recall": 1.0, "note_f1_offset": 1.0, "frame_f1": 1.0})


def test_onset_tolerance_is_50_ms() -> None:
    late_80 = shifted(REF, onset_dt=0.08, index=0)
    c = note_counts(REF, late_80)
    assert (c.tp, c.fp, c.fn) == (3, 1, 1)
    late_40 = shifted(REF, onset_dt=0.04, index=0)
    assert note_counts(REF, late_40).tp == 4


def test_octave_error_is_one_fp_and_one_fn() -> None:
    est = shifted(REF, pitch_dt=12, index=2)
    c = note_counts(REF, est)
    assert (c.tp, c.fp, c.fn) == (3, 1, 1)
    errors = error_breakdown(REF, est)
    assert errors["fp_harmonic"] == 1
    assert errors["fn_octave"] == 1


def test_offsets_count_only_in_the_offset_metric() -> None:
    # Offset 1.5 s late on a 0.5 s note: outside max(20 % of 0.5 s, 50 ms).
    rows = [[a, b, p] for a, b, p in zip(REF.onsets, REF.offsets, REF.pitches)]
    rows[0][1] += 1.5
    est = NoteArray.from_rows(rows)
    assert note_counts(REF, est).tp == 4
    assert note_counts(REF, est, with_offsets=True).tp == 3


def test_frame_counts_on_10ms_grid() -> None:
    ref = NoteArray.from_rows([(0.0, 1.0, 69)])
    half = NoteArray.from_rows([(0.0, 0.5, 69)])
    c = frame_counts(ref, half)
    assert c.precision == pytest.approx(1.0)
    assert c.recall == pytest.approx(0.5, abs=0.02)
    # A note one semitone off shares no frame.
    assert frame_counts(ref, NoteArray.from_rows([(0.0, 1.0, 70)])).tp == 0
    assert frame_counts(ref, NoteArray.empty()).f1 == 0.0


def test_fractional_reference_pitch_is_rounded_for_notes() -> None:
    # vocadito annotates fractional MIDI: 49.6 is key 50, 49.4 is key 49.
    est = NoteArray.from_rows([(1.0, 2.0, 50)])
    assert note_counts(NoteArray.from_rows([(1.0, 2.0, 49.6)]), est).tp == 1
    assert note_counts(NoteArray.from_rows([(1.0, 2.0, 49.4)]), est).tp == 0


def test_empty_sides() -> None:
    c = note_counts(REF, NoteArray.empty())
    assert (c.tp, c.fp, c.fn) == (0, 0, 4)
    c = note_counts(NoteArray.empty(), REF)
    assert (c.tp, c.fp, c.fn) == (0, 4, 0)
    assert c.f1 == 0.0


def test_retrigger_inside_a_held_note() -> None:
    est = NoteArray.from_rows([(1.5, 2.0, 67), (2.0, 2.5, 67), (1.5, 2.5, 48), (0.5, 1.0, 60), (1.0, 1.5, 64)])
    errors = error_breakdown(REF, est)
    assert errors == {"fp_retrigger": 1}


def test_two_annotators_average_their_counts() -> None:
    other = NoteArray.from_rows([(0.5, 1.0, 60), (1.0, 1.5, 64)])
    score = score_clip([REF, other], REF)
    # Against REF: tp 4; against `other`: tp 2, fp 2. Averaged: tp 3, fp 1, fn 0.
    assert (score.onset.tp, score.onset.fp, score.onset.fn) == (3, 1, 0)


def test_pooling_sums_counts_not_ratios() -> None:
    a = ClipScore(onset=Counts(tp=9, fp=1, fn=0))
    b = ClipScore(onset=Counts(tp=0, fp=0, fn=1))
    pooled = a + b
    assert pooled.onset.precision == pytest.approx(0.9)
    assert pooled.onset.recall == pytest.approx(0.9)


def test_unisons_merge_into_the_longest() -> None:
    notes = NoteArray.from_rows([(1.0, 2.0, 64), (1.0, 2.2, 64), (1.0, 2.0, 60), (3.0, 4.0, 64)])
    merged = notes.without_unisons()
    assert len(merged) == 3
    assert sorted(zip(merged.onsets, merged.offsets, merged.pitches)) == [
        (1.0, 2.0, 60), (1.0, 2.2, 64), (3.0, 4.0, 64)]


def test_clipped_keeps_notes_starting_before_the_limit() -> None:
    clipped = REF.clipped(1.6)
    assert len(clipped) == 4
    assert clipped.offsets.max() == pytest.approx(1.6)
    assert len(REF.clipped(1.0)) == 1


def test_repeated_recall_counts_only_marked_strikes() -> None:
    import numpy as np

    ref = NoteArray(np.array([0.5, 1.0, 1.5, 0.5]), np.array([0.9, 1.4, 1.9, 2.0]), np.array([50.0, 50, 50, 62]),
                    np.array([False, True, True, False]))
    # The second strike is merged into the first (one long note): one of two repeated strikes found.
    est = NoteArray.from_rows([(0.5, 1.4, 50), (1.5, 1.9, 50), (0.5, 2.0, 62)])
    m = score_clip([ref], est).metrics()
    assert m["repeated_recall"] == pytest.approx(0.5)
    assert m["note_recall"] == pytest.approx(0.75)
    assert "repeated_recall" not in score_clip([REF], REF).metrics()  # sets without the column
