"""Issue #26: a key struck again, softly, while it (or the pedal) still sounds must come out as a
new note each time, with the shipped model, on pianos training never renders with."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from core.transcriber_model import TranscriberModel
from training.data import piano_pedal
from training.data.music import SAMPLE_RATE, render

MODEL_DIR = Path(__file__).resolve().parents[2] / "artifacts" / "transcriber"
ONSET_TOLERANCE_S = 0.05

pytestmark = [
    pytest.mark.skipif(
        shutil.which("fluidsynth") is None or not all(Path(s).exists() for s in piano_pedal.EVAL_SOUNDFONTS),
        reason="fluidsynth and the held-out piano soundfonts are installed by `make test`"),
    # Strict: the day a shipped model finds every strike, these pass and the mark must go.
    pytest.mark.xfail(strict=True, raises=AssertionError,
                      reason="issue #26 is open: the shipped 0.1.6662 merges soft re-strikes of a sounding key "
                             "(the unshipped candidate 0.1.7042 passes 5 of these 8; docs/transcriber.md)"),
]


@pytest.fixture(scope="module")
def model() -> TranscriberModel:
    return TranscriberModel(MODEL_DIR, threads=1)


def repeated_key_clip(strikes: int, pedal: bool, key: int, seed: int) -> tuple[pretty_midi.PrettyMIDI, list[float]]:
    """`key` struck `strikes` times, softly, over a held soft chord and a louder melody above.
    With the pedal the key comes up right after each strike (the pedal holds it); without, the
    key stays down until just before the next strike. Returns the MIDI and the strike times."""
    rng = np.random.default_rng(seed)
    inst = pretty_midi.Instrument(program=0)
    step = float(rng.uniform(0.3, 0.5))
    t0 = 0.4
    times = [t0 + i * step for i in range(strikes)]
    for t in times:
        end = t + (0.12 if pedal else step - 0.02)
        inst.notes.append(pretty_midi.Note(int(rng.integers(25, 50)), key, t, end))
    end_all = times[-1] + 0.8
    # Other keys sounding all the while: a soft fifth below and a melody an octave and more above.
    for k in (key - 7, key - 12):
        inst.notes.append(pretty_midi.Note(int(rng.integers(30, 50)), k, 0.2, end_all))
    for i, k in enumerate((key + 16, key + 19, key + 17)):
        inst.notes.append(pretty_midi.Note(80, k, 0.25 + i * 0.9, 0.25 + (i + 1) * 0.9 - 0.05))
    if pedal:
        inst.control_changes += [pretty_midi.ControlChange(64, 127, 0.1), pretty_midi.ControlChange(64, 0, end_all)]
    pm = pretty_midi.PrettyMIDI()
    pm.instruments.append(inst)
    return pm, times


CASES = [(n, pedal) for n in (2, 3, 5, 8) for pedal in (True, False)]


@pytest.mark.parametrize(("strikes", "pedal"), CASES, ids=[f"{n}x-{'pedal' if p else 'no-pedal'}" for n, p in CASES])
def test_every_soft_strike_of_a_sounding_key_is_its_own_note(model: TranscriberModel, strikes: int, pedal: bool) -> None:
    key = 48 + (strikes * 5 + pedal * 3) % 12  # MIDI 48-59, where the soft chords of issue #26 sit
    soundfont = piano_pedal.EVAL_SOUNDFONTS[(strikes + pedal) % len(piano_pedal.EVAL_SOUNDFONTS)]
    pm, times = repeated_key_clip(strikes, pedal, key, seed=strikes * 2 + pedal)
    audio = render(pm, soundfont, np.random.default_rng(0))[: int((times[-1] + 1.2) * SAMPLE_RATE)]
    notes = [n for n in model.transcribe(audio) if n.pitch_midi == key]
    starts = sorted(n.start_s for n in notes)
    # One note per strike: each strike claims a note of its own that starts within 50 ms of it.
    # (The label of a strike is its audible onset, a few ms after the note-on.)
    unclaimed = list(starts)
    missed = []
    for t in times:
        near = [s for s in unclaimed if abs(s - t) <= ONSET_TOLERANCE_S + 0.02]
        if near:
            unclaimed.remove(min(near, key=lambda s: abs(s - t)))
        else:
            missed.append(round(t, 3))
    assert not missed, f"{Path(soundfont).name}: strikes at {missed} s not found; notes of key {key} start at {starts}"
