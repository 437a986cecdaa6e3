"""The generated pedal pieces of issue #26: what the texture is and how repeated strikes are marked."""
from __future__ import annotations

import numpy as np

from training.data import piano_pedal


def test_soft_repeated_accompaniment_under_the_pedal_and_a_louder_melody() -> None:
    for seed in range(4):
        piece = piano_pedal.pedal_piece(np.random.default_rng(seed), 20.0)
        melody, accomp = piece.midi.instruments
        lo, hi = piano_pedal.ACCOMP_RANGE
        assert all(lo <= n.pitch <= hi and 20 <= n.velocity <= 60 for n in accomp.notes)
        assert all(n.pitch >= piano_pedal.MELODY_RANGE[0] for n in melody.notes)
        assert np.mean([n.velocity for n in melody.notes]) > np.mean([n.velocity for n in accomp.notes]) + 15
        assert {c.number for c in accomp.control_changes} == {64}
        assert sum(u - d for d, u in piece.pedal) > 0.5 * 20.0  # mostly under the pedal
        notes = piano_pedal.notes_table(piece, 0.0)
        assert notes[:, 5].sum() > 0.3 * len(accomp.notes)  # most accompaniment strikes are repeats
        # One key is never down twice at once: the truth a transcriber can match one-to-one.
        for key in np.unique(notes[:, 2]):
            on, off = notes[notes[:, 2] == key, 0], notes[notes[:, 2] == key, 1]
            assert (off[:-1] <= on[1:]).all()


def test_pieces_are_a_function_of_the_seed() -> None:
    a = piano_pedal.pedal_piece(np.random.default_rng(3), 10.0)
    b = piano_pedal.pedal_piece(np.random.default_rng(3), 10.0)
    assert piano_pedal.notes_table(a, 0.01).tolist() == piano_pedal.notes_table(b, 0.01).tolist()


def test_repeated_strike_is_a_key_still_down_or_held_by_the_pedal() -> None:
    onsets = np.array([0.0, 1.0, 3.0, 5.0, 5.4])
    offsets = np.array([0.5, 1.5, 3.5, 5.39, 5.6])
    pitches = np.array([50.0, 50, 50, 50, 50])
    pedal = [(0.1, 2.0)]  # holds the first note's string from its release at 0.5 to the strike at 1.0
    marks = piano_pedal.repeated_strikes(onsets, offsets, pitches, pedal)
    # 1.0: pedal; 3.0: the pedal came up at 2.0, the string was damped; 5.4: the key was still down.
    assert marks.tolist() == [False, True, False, False, True]


def test_ring_end_follows_the_pedal_until_the_next_strike_of_the_key() -> None:
    onsets = np.array([0.0, 1.0, 3.0])
    offsets = np.array([0.3, 1.3, 3.3])
    pitches = np.array([50.0, 50, 50])
    ends = piano_pedal.ring_ends(onsets, offsets, pitches, [(0.1, 2.0)])
    # Rings to its key's next strike, then to the pedal's lift; without the pedal, the key's release.
    assert ends.tolist() == [1.0, 2.0, 3.3]
