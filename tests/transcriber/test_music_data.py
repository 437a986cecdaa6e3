"""Rendered training data: deterministic by seed, exact truth, held-out pieces and timbres kept apart."""
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from training.data import midi_sources, music
from training.data.music_windows import read_notes_csv

needs_fluidsynth = pytest.mark.skipif(
    shutil.which("fluidsynth") is None or not Path(music.HELDOUT_SOUNDFONTS[0]).exists(),
    reason="fluidsynth and the GM soundfonts are installed by `make test`")


def test_splits_are_disjoint_and_stable():
    train = set(map(str, midi_sources.corpus_pieces("train")))
    held = set(map(str, midi_sources.corpus_pieces("heldout")))
    assert train and held and train.isdisjoint(held)
    assert 0.05 < len(held) / (len(train) + len(held)) < 0.15
    assert all(midi_sources.piece_split(p) == "heldout" for p in held)
    assert set(music.TRAIN_PROGRAMS).isdisjoint(music.HELDOUT_PROGRAMS)


def test_crop_shifts_and_cuts_notes():
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(0)
    inst.notes += [pretty_midi.Note(80, 60, 0.5, 2.5), pretty_midi.Note(80, 62, 3.0, 4.0)]
    pm.instruments.append(inst)
    out = music.crop(pm, 1.0, 2.5)
    notes = music.notes_of(out)
    assert notes[:, :3].tolist() == [[0.0, 1.5, 60], [2.0, 2.5, 62]]


@needs_fluidsynth
def test_rendered_set_is_deterministic_with_truth(tmp_path):
    kw = dict(split="heldout", minutes=0.1, seed=7, clip_seconds=3.0, workers=1, texture_share=1.0)
    a = music.build_set(tmp_path / "a", **kw)
    b = music.build_set(tmp_path / "b", **kw)
    csvs = sorted((a / "notes").glob("*.csv"))
    assert len(csvs) == 2
    for csv in csvs:
        na, nb = read_notes_csv(csv), read_notes_csv(b / "notes" / csv.name)
        assert len(na) > 0 and np.array_equal(na, nb)
        assert na[:, 2].min() >= 21 and na[:, 2].max() <= 108
        import soundfile as sf
        audio, sr = sf.read(str(a / "audio" / f"{csv.stem}.wav"))
        assert sr == 22050 and np.abs(audio).max() > 0.1
        assert "TimGM6mb" in csv.read_text().splitlines()[0]
        bends = np.load(a / "bends" / f"{csv.stem}.npy")
        assert np.array_equal(bends, np.load(b / "bends" / f"{csv.stem}.npy"))
        assert bends.shape[0] > na[:, 4].max()  # a curve for every track the notes name


@needs_fluidsynth
def test_a_clip_fluidsynth_hangs_on_is_skipped_and_the_set_still_written(tmp_path, monkeypatch):
    real_render, calls = music.render, []

    def hang_on_first(pm, soundfont, rng):  # one rendering process (workers=1): clip 0 comes first
        calls.append(1)
        if len(calls) == 1:
            raise subprocess.TimeoutExpired("fluidsynth", music.RENDER_TIMEOUT_S)
        return real_render(pm, soundfont, rng)

    monkeypatch.setattr(music, "render", hang_on_first)
    out = music.build_set(tmp_path / "s", split="heldout", minutes=0.15, seed=7, clip_seconds=3.0, workers=1,
                          texture_share=1.0)
    made = json.loads((out / "manifest.json").read_text())["clips"]
    assert [c["name"] for c in made] == ["heldout_000001", "heldout_000002"]
    assert sorted(p.stem for p in (out / "notes").glob("*.csv")) == ["heldout_000001", "heldout_000002"]


def test_expression_writes_what_it_returns():
    from training.data import expression

    pm = pretty_midi.PrettyMIDI()
    violin, piano = pretty_midi.Instrument(40), pretty_midi.Instrument(0)
    violin.notes += [pretty_midi.Note(80, 67, t, t + 0.9) for t in (0.0, 1.0, 2.0, 3.0)]
    piano.notes += [pretty_midi.Note(80, 60, 0.0, 4.0), pretty_midi.Note(80, 64, 0.0, 4.0)]
    pm.instruments += [violin, piano]
    sustained_moved = False
    for seed in range(6):
        for inst in pm.instruments:
            inst.pitch_bends, inst.control_changes = [], []
        curves = expression.add_expression(pm, np.random.default_rng(seed), 4.0)
        assert curves.shape == (2, 401) and np.abs(curves).max() < expression.BEND_RANGE
        # The piano only carries the ensemble's tuning: one constant for the whole clip.
        assert np.ptp(curves[1]) == 0 and not piano.control_changes
        for inst, curve in zip(pm.instruments, curves):
            if inst.pitch_bends:  # the wheel events reproduce the curve the targets use
                times = np.array([b.time for b in inst.pitch_bends])
                wheel = np.array([b.pitch for b in inst.pitch_bends]) / 8192 * expression.BEND_RANGE
                t = np.arange(curve.size) / expression.CURVE_RATE
                held = wheel[np.searchsorted(times, t, side="right") - 1]
                assert np.allclose(held, curve, atol=1e-6)
            else:
                assert not curve.any()
        sustained_moved |= bool(np.ptp(curves[0]) > 0.1)
    assert sustained_moved  # vibrato or glides happen on the violin for some seeds


@needs_fluidsynth
def test_slow_attacks_are_labelled_later_than_struck_notes():
    from training.data import onset_delays

    delays = onset_delays.measure_delays(music.TRAIN_SOUNDFONTS[0], [0, 49])  # piano, slow strings
    assert 0.0 <= delays[0] < 0.02
    assert delays[49] > delays[0] + 0.03
    pm = pretty_midi.PrettyMIDI()
    for program in (0, 49):
        inst = pretty_midi.Instrument(program)
        inst.notes.append(pretty_midi.Note(80, 60, 1.0, 2.0))
        pm.instruments.append(inst)
    notes = music.notes_of(pm, delays)
    assert notes[:, 0].tolist() == pytest.approx([1.0 + delays[0], 1.0 + delays[49]])
    assert notes[:, 1].tolist() == pytest.approx([2.0 + delays[0], 2.0 + delays[49]])  # the span moves whole
    assert notes[:, 4].tolist() == [0, 1]
