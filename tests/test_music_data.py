"""Rendered training data: deterministic by seed, exact truth, held-out pieces and timbres kept apart."""
import shutil
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
