"""The classifier's data: manifest validation (every error names its rows) and the SYNTHETIC cohort."""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training.data import cohort
from training.data.manifest import ManifestError, Recording, read_manifest, task_labels, write_manifest

HEADER = ["participant_id", "audio_path", "transcript", "label"]


def write_csv(directory: Path, rows: list[list[str]], header: list[str] = HEADER, touch: bool = True) -> Path:
    """A manifest in `directory`; the audio files it names are created (empty) unless touch=False."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "manifest.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    if touch and "audio_path" in header:
        column = header.index("audio_path")
        for row in rows:
            if len(row) > column and row[column]:
                (directory / row[column]).parent.mkdir(parents=True, exist_ok=True)
                (directory / row[column]).touch()
    return path


def good_rows() -> list[list[str]]:
    """Two participants per class, two recordings each: lines 2-9."""
    rows = []
    for pid, label in (("a", "control"), ("b", "control"), ("c", "flat"), ("d", "flat")):
        rows += [[pid, f"audio/{pid}1.wav", f"{pid} says one thing", label],
                 [pid, f"audio/{pid}2.wav", f"{pid} says another", label]]
    return rows


def error_of(path: Path, **kwargs) -> str:
    with pytest.raises(ManifestError) as info:
        read_manifest(path, **kwargs)
    return str(info.value)


# --- manifest ------------------------------------------------------------------------------------


def test_reads_a_good_manifest(tmp_path):
    path = write_csv(tmp_path / "set", good_rows())
    recordings, warnings = read_manifest(path)
    assert warnings == []
    assert len(recordings) == 8
    first = recordings[0]
    assert first == Recording("a", (tmp_path / "set" / "audio" / "a1.wav"), "a says one thing", "control", None, 2)
    assert first.audio_path.is_absolute() and first.audio_path.exists()
    assert [r.row for r in recordings] == list(range(2, 10))


def test_missing_audio_names_rows_and_files(tmp_path):
    rows = good_rows()
    path = write_csv(tmp_path, rows)
    (tmp_path / "audio" / "b2.wav").unlink()
    (tmp_path / "audio" / "d1.wav").unlink()
    message = error_of(path)
    assert "rows 5, 8: audio file not found" in message
    assert "audio/b2.wav" in message and "audio/d1.wav" in message
    assert read_manifest(path, check_files=False)[0]  # the same file is fine without the file check


def test_unknown_label_names_rows(tmp_path):
    rows = good_rows()
    for row in rows[4:]:  # participants c and d, lines 6-9
        row[3] = "flatt"
    message = error_of(write_csv(tmp_path, rows), labels=["control", "flat"])
    assert "rows 6, 7, 8, 9: unknown label 'flatt' (expected one of: control, flat)" in message


def test_participant_with_two_labels(tmp_path):
    rows = good_rows()
    rows[1][3] = "flat"  # participant a: control on line 2, flat on line 3
    message = error_of(write_csv(tmp_path, rows))
    assert "participant 'a' has recordings with different labels: control (row 2); flat (row 3)" in message


def test_class_with_one_participant(tmp_path):
    rows = good_rows() + [["e", "audio/e1.wav", "e speaks", "elevated"], ["e", "audio/e2.wav", "e again", "elevated"]]
    message = error_of(write_csv(tmp_path, rows))
    assert ("class 'elevated' has only participant 'e' (rows 10, 11): grouped cross-validation needs "
            "at least 2 participants per class") in message


def test_missing_column_says_which_and_the_header(tmp_path):
    rows = [[pid, f"{pid}.wav", label] for pid, _, _, label in good_rows()]
    message = error_of(write_csv(tmp_path, rows, header=["participant_id", "audio_path", "label"]))
    assert "missing the required column transcript" in message
    assert "header (line 1) was: participant_id, audio_path, label" in message


def test_bad_split_and_split_leak(tmp_path):
    splits = ["train", "train", "validation", "test", "test", "test", "TRAIN", ""]
    rows = [r + [s] for r, s in zip(good_rows(), splits)]
    message = error_of(write_csv(tmp_path, rows, header=HEADER + ["split"]))
    assert "row 4: split 'validation' is not one of train, test (or empty)" in message
    rows[2][4] = "train"  # participant b: train on line 4, test on line 5
    message = error_of(write_csv(tmp_path, rows, header=HEADER + ["split"]))
    assert "participant 'b' is in both splits: train (row 4); test (row 5)" in message


def test_valid_splits_are_read(tmp_path):
    rows = [r + [s] for r, s in zip(good_rows(), ["train", "train", "test", "test", "TRAIN", "", "", ""])]
    recordings, _ = read_manifest(write_csv(tmp_path, rows, header=HEADER + ["split"]))
    assert [r.split for r in recordings] == ["train", "train", "test", "test", "train", None, None, None]


def test_every_problem_in_one_message(tmp_path):
    rows = good_rows()
    rows[0][0] = ""  # line 2: empty participant
    rows[2][3] = ""  # line 4: empty label
    path = write_csv(tmp_path, rows, touch=False)
    message = error_of(path)
    assert "row 2: empty participant_id" in message
    assert "row 4: empty label" in message
    assert "rows 2, 3, 4, 5, 6, 7, 8, 9: audio file not found" in message


def test_fewer_than_two_classes(tmp_path):
    rows = [r[:3] + ["control"] for r in good_rows()]
    assert "only one class (control)" in error_of(write_csv(tmp_path, rows))


def test_empty_transcripts_and_duplicates_warn(tmp_path):
    rows = good_rows()
    rows[2][2] = rows[6][2] = "  "  # lines 4 and 8
    rows[7][1] = rows[6][1]  # line 9 names line 8's file
    recordings, warnings = read_manifest(write_csv(tmp_path, rows))
    assert "rows 4, 8: empty transcript: text modality skipped for them" in warnings
    assert any(w.startswith("rows 8, 9: the same audio file") for w in warnings)
    assert recordings[2].transcript == ""


def test_row_numbers_follow_lines_with_quoted_newlines(tmp_path):
    path = tmp_path / "manifest.csv"
    rows = good_rows()
    rows[0][2] = "first line\nsecond line"  # record on lines 2-3
    write_csv(tmp_path, rows)
    rows[3][1] = "missing.wav"
    write_csv(tmp_path, rows, touch=False)
    assert "row 6: audio file not found" in error_of(path)


def test_no_stack_trace_for_unreadable_files(tmp_path):
    assert "cannot read manifest" in error_of(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    assert "is empty" in error_of(tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text(",".join(HEADER) + "\n")
    assert "no recordings" in error_of(tmp_path / "header.csv")


def test_task_labels(tmp_path):
    rows = good_rows() + [["e", "e.wav", "t", "elevated"], ["f", "f.wav", "t", "elevated"]]
    recordings, _ = read_manifest(write_csv(tmp_path, rows))
    classes, y = task_labels(recordings, "multiclass")
    assert classes == ["control", "elevated", "flat"]
    assert y.tolist() == [0, 0, 0, 0, 2, 2, 2, 2, 1, 1]
    classes, y = task_labels(recordings, "binary:flat")
    assert classes == ["not_flat", "flat"] and y.dtype == np.int64
    assert y.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 0, 0]
    with pytest.raises(ManifestError, match="label 'manic' is not in the manifest; labels present: control, elevated, flat"):
        task_labels(recordings, "binary:manic")
    for bad in ("binary", "binary:", "multi", "ternary:flat"):
        with pytest.raises(ManifestError, match="use 'multiclass' or 'binary:LABEL'"):
            task_labels(recordings, bad)


def test_write_manifest_round_trip(tmp_path):
    path = write_csv(tmp_path / "a", good_rows())
    recordings, _ = read_manifest(path)
    out = write_manifest(tmp_path / "a" / "copy.csv", recordings)
    assert out.read_text().splitlines()[1] == "a,audio/a1.wav,a says one thing,control"
    again, _ = read_manifest(out)
    assert [(r.participant_id, r.audio_path, r.transcript, r.label, r.split) for r in again] == \
        [(r.participant_id, r.audio_path, r.transcript, r.label, r.split) for r in recordings]
    elsewhere = write_manifest(tmp_path / "b" / "manifest.csv", recordings)
    assert str(tmp_path / "a" / "audio" / "a1.wav") in elsewhere.read_text()  # outside: absolute


# --- the SYNTHETIC cohort ------------------------------------------------------------------------


def test_effects_table_in_docstring_matches_constants():
    assert cohort.effects_table() in cohort.__doc__
    assert f"[{cohort.SEVERITY_LOW}, {cohort.SEVERITY_HIGH}]" in cohort.__doc__
    assert "SYNTHETIC" in cohort.__doc__.splitlines()[0]


def test_effects_interpolate_from_control():
    for name in (*cohort.VOICE_EFFECTS, *cohort.TEXT_EFFECTS):
        table = cohort.VOICE_EFFECTS.get(name) or cohort.TEXT_EFFECTS[name]
        for label in cohort.CLASSES:
            assert cohort.effect(name, label, 0.0) == pytest.approx(table["control"])
            assert cohort.effect(name, label, 1.0) == pytest.approx(table[label])
    assert cohort.split_severity(1.2, 0.5) == (1.2, 1.2)
    assert cohort.split_severity(1.0, 0.0) == (0.0, 1.0)


def test_transcripts_are_deterministic_and_vary():
    def transcripts(seed):
        labels = cohort.assign_labels(9, seed)
        people = [cohort.draw_participant(i, label, seed) for i, label in enumerate(labels)]
        return [cohort.make_transcripts(p, 3, 3, seed, i) for i, p in enumerate(people)], people

    (a, people), (b, _), (c, _) = transcripts(5), transcripts(5), transcripts(6)
    assert a == b and a != c
    assert sorted(p.label for p in people) == sorted(cohort.CLASSES * 3)
    for per_participant in a:
        sentences = [s for rec in per_participant for s in rec]
        assert len(sentences) == 9 and len(set(sentences)) == 9  # different sentences per recording
    # Changing the cohort size leaves the participants before unchanged.
    assert cohort.draw_participant(3, "flat", 5) == cohort.draw_participant(3, "flat", 5)


@pytest.fixture(scope="module")
def tiny_cohort(tmp_path_factory) -> Path:
    try:
        cohort.check_tts()
    except cohort.MissingTTS as exc:  # CI installs them through the Makefile's APT_PACKAGES
        pytest.fail(str(exc))
    out = tmp_path_factory.mktemp("cohort")
    args = argparse.Namespace(out=out, participants=6, recordings=1, sentences=1, seed=3, workers=1)
    assert cohort.run_data(args) == 0
    return out


def test_tiny_cohort_renders_a_valid_manifest(tiny_cohort):
    recordings, warnings = read_manifest(tiny_cohort / "manifest.csv", labels=cohort.CLASSES)
    assert warnings == []
    assert len(recordings) == 6
    assert sorted({r.label for r in recordings}) == sorted(cohort.CLASSES)
    assert all(r.participant_id.startswith("synthetic-") for r in recordings)
    for rec in recordings:
        audio, sr = sf.read(rec.audio_path, dtype="float32")
        info = sf.info(rec.audio_path)
        assert sr == 16000 and info.channels == 1 and info.subtype == "PCM_16"
        assert 1.0 < len(audio) / sr < 15.0
        assert 0.01 < np.sqrt(np.mean(audio**2)) < 0.3 and np.abs(audio).max() <= 1.0
        assert rec.transcript and rec.transcript[-1] in ".!"
    assert "SYNTHETIC" in (tiny_cohort / "README.md").read_text().splitlines()[0]
    assert cohort.effects_table() in (tiny_cohort / "README.md").read_text()
    info = json.loads((tiny_cohort / "cohort.json").read_text())
    assert info["synthetic"] is True and info["seed"] == 3 and len(info["participants_table"]) == 6


def test_tiny_cohort_is_deterministic(tiny_cohort, tmp_path):
    again = cohort.build_cohort(tmp_path, participants=6, recordings=1, seed=3, sentences=1, workers=2)
    assert again.read_text() == (tiny_cohort / "manifest.csv").read_text()
    for wav in sorted((tiny_cohort / "audio").glob("*.wav")):
        assert (tmp_path / "audio" / wav.name).read_bytes() == wav.read_bytes()


def test_too_few_participants_is_a_clear_error(tmp_path, capsys):
    args = argparse.Namespace(out=tmp_path, participants=4, recordings=1, sentences=1, seed=0, workers=1)
    assert cohort.run_data(args) == 1
    assert "at least 6 participants" in capsys.readouterr().err
