"""Note decoding on hand-built posteriorgrams, serialisation and MIDI output."""
from __future__ import annotations

import io

import numpy as np
import pretty_midi
import pytest

from core import notes as N
from core.midi import notes_to_midi

FR = 22050 / 256
KEYS, BINS = 88, 264


def grams(frames: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Silent posteriorgrams with a little noise floor, like a real model's."""
    return (np.full((frames, KEYS), 0.01, np.float32), np.full((frames, KEYS), 0.02, np.float32),
            np.full((frames, BINS), 0.01, np.float32))


def add_note(onset, note, contour, pitch: int, start: int, end: int, *, level: float = 0.8,
             onset_peak: float | None = 0.9) -> None:
    """A note of `pitch` sounding on frames [start, end) with an onset peak at `start`."""
    k = pitch - 21
    note[start:end, k] = level
    contour[start:end, 3 * k + 1] = level
    contour[start:end, 3 * k] = contour[start:end, 3 * k + 2] = level / 3
    if onset_peak is not None:
        onset[start, k] = onset_peak
        onset[start + 1, k] = onset_peak / 3  # onsets are a few frames wide
        if start > 0:
            onset[start - 1, k] = onset_peak / 3


def decode(onset, note, contour, **kw) -> list[N.Note]:
    params = dict(frame_rate=FR, onset_threshold=0.5, frame_threshold=0.3, min_note_ms=50.0)
    params.update(kw)
    return N.decode_notes(onset, note, contour, **params)


def test_single_note_timing_pitch_velocity():
    o, n, c = grams()
    add_note(o, n, c, 69, 20, 80, level=0.8)
    (note,) = decode(o, n, c)
    assert note.pitch_midi == 69
    assert note.start_s == pytest.approx(20 / FR)
    assert note.end_s == pytest.approx(80 / FR)
    assert note.velocity == round(127 * 0.8)
    assert len(note.pitch_bends) == 60 and max(abs(b) for b in note.pitch_bends) < 1e-6


def test_silence_gives_no_notes_and_empty_input_is_fine():
    assert decode(*grams()) == []
    assert decode(*grams(0)) == []


def test_two_overlapping_notes_of_different_pitch():
    o, n, c = grams()
    add_note(o, n, c, 60, 10, 100)
    add_note(o, n, c, 64, 50, 150)
    found = [(x.pitch_midi, round(x.start_s * FR), round(x.end_s * FR)) for x in decode(o, n, c)]
    assert found == [(60, 10, 100), (64, 50, 150)]


def test_repeated_note_with_a_dip_is_two_notes():
    o, n, c = grams()
    add_note(o, n, c, 62, 10, 60)
    n[60:63, 62 - 21] = 0.1  # released for 3 frames (shorter than the gap bridge)...
    add_note(o, n, c, 62, 63, 120)  # ...and struck again
    found = [(x.pitch_midi, round(x.start_s * FR), round(x.end_s * FR)) for x in decode(o, n, c)]
    assert found == [(62, 10, 60), (62, 63, 120)]  # the first ends where it stopped sounding


def test_weak_onset_inside_a_held_note_does_not_retrigger():
    o, n, c = grams()
    add_note(o, n, c, 62, 10, 150, level=0.9)
    o[80, 62 - 21] = 0.6  # above onset_threshold but the note never dips: bow change, vibrato
    (note,) = decode(o, n, c)
    assert (round(note.start_s * FR), round(note.end_s * FR)) == (10, 150)


def test_strong_onset_inside_a_held_note_is_a_new_attack():
    o, n, c = grams()
    add_note(o, n, c, 62, 10, 150, level=0.9)
    o[80, 62 - 21] = 0.97  # clearly a new attack even without a dip (fast repeated note)
    found = [round(x.start_s * FR) for x in decode(o, n, c)]
    assert found == [10, 80]


def test_retrigger_threshold_is_a_parameter():
    o, n, c = grams()
    add_note(o, n, c, 62, 10, 150, level=0.9)
    o[80, 62 - 21] = 0.6
    assert len(decode(o, n, c, retrigger_threshold=0.55)) == 2


def test_retrigger_margin_ends_a_sounding_note_at_a_separate_onset_of_its_key():
    # A piano key struck again under the pedal: the note never dips, only its onset comes back.
    o, n, c = grams()
    add_note(o, n, c, 50, 10, 150, level=0.9)
    o[80, 50 - 21] = 0.6
    o[81, 50 - 21] = 0.2
    assert len(decode(o, n, c)) == 1  # default margin 0.5: 0.6 < 0.75 is a bow change, not a strike
    first, second = decode(o, n, c, retrigger_margin=0.0)
    assert (round(first.start_s * FR), round(second.start_s * FR)) == (10, 80)
    assert first.end_s <= second.start_s  # the held note ends where the key is struck again
    # A shoulder of the first onset is no new strike, however low the margin.
    o2, n2, c2 = grams()
    add_note(o2, n2, c2, 50, 10, 150, level=0.9)
    o2[12, 50 - 21] = 0.55
    assert len(decode(o2, n2, c2, retrigger_margin=0.0)) == 1


def test_ring_gap_drops_a_stretch_without_attack_right_after_a_note_of_its_key():
    # The key came up at frame 60 but the pedal holds its string: its activation comes back at
    # 70 with no new strike.
    o, n, c = grams()
    add_note(o, n, c, 50, 10, 60, level=0.9)
    add_note(o, n, c, 50, 75, 140, level=0.9, onset_peak=None)
    n[75:85, 50 - 21] = np.linspace(0.1, 0.9, 10)  # swells back, no attack
    assert len(decode(o, n, c)) == 2  # off by default: a sustained sound without attack is a note
    assert len(decode(o, n, c, ring_gap_ms=300.0)) == 1
    assert len(decode(o, n, c, ring_gap_ms=100.0)) == 2  # it starts ~200 ms after: too late to be its ring


def test_frame_threshold_decides_whether_a_note_sounds():
    o, n, c = grams()
    add_note(o, n, c, 72, 20, 80, level=0.4)
    assert len(decode(o, n, c, frame_threshold=0.3)) == 1
    assert decode(o, n, c, frame_threshold=0.5) == []


def test_onset_threshold_and_notes_without_onsets():
    o, n, c = grams()
    add_note(o, n, c, 72, 20, 80, level=0.7, onset_peak=None)
    n[18:20, 72 - 21] = [0.3, 0.5]  # a slow swell (bowed, blown): no onset, no sharp rise
    # Sustained recovery needs the key to sound at least as strongly as sustain_threshold.
    assert len(decode(o, n, c, onset_threshold=0.8)) == 0
    (note,) = decode(o, n, c, onset_threshold=0.8, sustain_threshold=0.6)
    assert round(note.start_s * FR) == 18
    assert decode(o, n, c, onset_threshold=0.8, sustain_threshold=0.6, recover_sustained=False) == []


def test_evidence_window_bounds_how_late_a_note_without_onset_may_prove_itself():
    o, n, c = grams()
    add_note(o, n, c, 60, 20, 90, level=0.5, onset_peak=None)
    n[18:20, 60 - 21] = [0.3, 0.4]  # a slow swell ...
    n[50:90, 60 - 21] = 0.9  # ... that is only loud enough for sustained recovery 0.35 s in
    (note,) = decode(o, n, c, sustain_threshold=0.8)
    assert round(note.start_s * FR) == 18
    assert decode(o, n, c, sustain_threshold=0.8, evidence_window_ms=200.0) == []
    assert len(decode(o, n, c, sustain_threshold=0.8, evidence_window_ms=400.0)) == 1


def test_inferred_onsets_follow_a_sharp_rise_of_the_note():
    o, n, c = grams()
    add_note(o, n, c, 50, 30, 90, level=0.9, onset_peak=0.2)  # the onset head under-rates it
    (note,) = decode(o, n, c)
    assert round(note.start_s * FR) == 30
    assert decode(o, n, c, infer_onsets=False, recover_sustained=False) == []


def test_min_note_length():
    o, n, c = grams()
    add_note(o, n, c, 69, 20, 24)  # 4 frames = 46 ms
    assert decode(o, n, c, min_note_ms=40) != []
    assert decode(o, n, c, min_note_ms=60) == []


def test_frequency_range():
    o, n, c = grams()
    add_note(o, n, c, 45, 10, 60)  # 110 Hz
    add_note(o, n, c, 81, 10, 60)  # 880 Hz
    assert [x.pitch_midi for x in decode(o, n, c, min_freq_hz=200)] == [81]
    assert [x.pitch_midi for x in decode(o, n, c, max_freq_hz=200)] == [45]


def test_pitch_bend_follows_the_contour():
    o, n, c = grams()
    add_note(o, n, c, 69, 10, 70)
    k = 69 - 21
    bend = np.linspace(0.0, 0.6, 60)  # a slow glide up by 0.6 semitone
    centre = 3 * k + 1 + 3 * bend
    bins = np.arange(BINS)
    c[10:70] = np.exp(-0.5 * ((bins[None, :] - centre[:, None]) / 0.6) ** 2)
    (note,) = decode(o, n, c)
    got = np.array(note.pitch_bends)
    assert got.shape == (60,)
    assert np.all(np.diff(got) >= -1e-6)
    assert np.abs(got - bend).max() < 0.1
    assert decode(o, n, c, include_pitch_bends=False)[0].pitch_bends is None


def test_overtone_suppression_is_optional():
    o, n, c = grams()
    add_note(o, n, c, 48, 10, 80, level=0.9)
    add_note(o, n, c, 60, 10, 80, level=0.35)  # a weak octave starting with it
    assert len(decode(o, n, c)) == 2
    assert [x.pitch_midi for x in decode(o, n, c, overtone_ratio=0.5)] == [48]


def test_shape_errors_are_reported():
    o, n, c = grams()
    with pytest.raises(ValueError):
        N.decode_notes(o, n[:, :10], c, frame_rate=FR)
    with pytest.raises(ValueError):
        N.decode_notes(o, n, c[:, :100], frame_rate=FR)


def test_json_csv_and_rows():
    notes = [N.Note(0.1, 0.5, 60, 90, [0.0, 0.12345]), N.Note(0.2, 0.9, 64, 70, None)]
    data = N.notes_to_json(notes)
    assert data[0]["pitch_bends"] == [0.0, 0.123]
    back = N.notes_from_json(data)
    assert [(x.pitch_midi, x.velocity, x.pitch_bends is None) for x in back] == [(60, 90, False), (64, 70, True)]
    assert N.notes_to_rows(notes)[1] == (0.2, 0.9, 64, 70)
    assert N.notes_to_csv(notes).splitlines() == ["onset_s,offset_s,midi_pitch", "0.1000,0.5000,60", "0.2000,0.9000,64"]


def test_midi_has_notes_and_pitch_bends_on_separate_channels():
    notes = [N.Note(0.0, 1.0, 60, 100, [0.0, 0.5, 1.0] + [1.0] * 80), N.Note(0.5, 1.5, 64, 80, [0.0] * 86)]
    pm = pretty_midi.PrettyMIDI(io.BytesIO(notes_to_midi(notes)))
    all_notes = sorted((n.pitch, n.velocity) for inst in pm.instruments for n in inst.notes)
    assert all_notes == [(60, 100), (64, 80)]
    bent = [inst for inst in pm.instruments if inst.pitch_bends]
    assert len(bent) == 1 and [n.pitch for n in bent[0].notes] == [60]  # the overlapping 64 is elsewhere
    assert max(b.pitch for b in bent[0].pitch_bends) == 4096  # +1 semitone of a +-2 range
    assert bent[0].pitch_bends[-1].pitch == 0  # reset when the note ends
