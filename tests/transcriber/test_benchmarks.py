"""Set reading, results merging, README block rewriting and the eval command end to end
(with a stand-in system, so no model and no basic-pitch are needed)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from benchmarks import report, speed, transcriber
from core.scoring import NoteArray
from benchmarks.sets import default_set_names, read_notes_csv, read_set, truncated_copy

HEADER = "onset_s,offset_s,midi_pitch\n"


def write_wav(path: Path, seconds: float = 1.0, sr: int = 8000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.zeros(int(seconds * sr), dtype=np.float32), sr)
    return path


@pytest.fixture()
def eval_set(tmp_path: Path) -> Path:
    """song.wav with two annotators (comment lines), solo.wav matched by stem, one orphan CSV."""
    root = tmp_path / "real" / "music"
    write_wav(root / "audio" / "song.wav", 3.0)
    write_wav(root / "audio" / "solo.wav", 2.0)
    notes = root / "notes"
    notes.mkdir(parents=True)
    (notes / "song_A1.csv").write_text(
        "# audio: ../audio/song.wav (source: a test; annotator A1)\n# pitch in fractional MIDI\n"
        + HEADER + "0.5,1.0,49.6\n1.0,2.0,52\n")
    (notes / "song_A2.csv").write_text("# audio: ../audio/song.wav\n" + HEADER + "0.5,1.0,50\n")
    (notes / "solo.csv").write_text(HEADER + "0.1,0.6,60\n0.1,0.5,60\n1.0,1.5,62\n")
    (notes / "orphan.csv").write_text(HEADER + "0.1,0.2,60\n")
    return root


def test_read_notes_csv_comment_line(eval_set: Path) -> None:
    audio_ref, notes = read_notes_csv(eval_set / "notes" / "song_A1.csv")
    assert audio_ref == "../audio/song.wav"
    assert notes.pitches.tolist() == [49.6, 52.0]


def test_read_set_pairs_annotators_and_stems(eval_set: Path) -> None:
    s = read_set(eval_set, "real")
    by_name = {c.name: c for c in s.clips}
    assert set(by_name) == {"song", "solo"}
    assert [a.name for a in by_name["song"].annotations] == ["song_A1", "song_A2"]
    assert len(by_name["solo"].annotations) == 1
    assert len(by_name["solo"].annotations[0].notes) == 2  # the unison pair merged
    assert s.unmatched_csv == ["orphan.csv"]
    sizes = s.sizes()
    assert sizes["clips"] == 2 and sizes["annotations"] == 3
    assert sizes["audio_s"] == pytest.approx(5.0)
    assert sizes["notes"] == pytest.approx(1.5 + 2)
    first = read_set(eval_set, "real", annotators="first")
    assert [len(c.annotations) for c in first.clips] == [1, 1]


def test_default_set_names(tmp_path: Path) -> None:
    dirs = [tmp_path / "shared" / "real" / "music", tmp_path / "data" / "synth-heldout", tmp_path / "other"]
    assert default_set_names(dirs) == ["real", "synth-heldout", "other"]
    assert default_set_names([tmp_path / "a" / "x", tmp_path / "b" / "x"]) == ["x", "x-2"]


def test_merge_keeps_other_sets_systems_and_speed() -> None:
    old = {"sets": {"real": {"basic-pitch": {"note_f1": 0.68}}}, "speed": {"basic-pitch": {"cpu_s_per_audio_s": 0.02}},
           "meta": {"bench": {"repeats": 5}, "date": "old"}}
    new = report.merge(old, sets={"real": {"hark": {"note_f1": 0.7}}, "synth-heldout": {"hark": {"note_f1": 0.9}}},
                       meta={"eval": {"pooling": "x"}, "date": "new"})
    assert new["sets"]["real"] == {"basic-pitch": {"note_f1": 0.68}, "hark": {"note_f1": 0.7}}
    assert new["sets"]["synth-heldout"] == {"hark": {"note_f1": 0.9}}
    assert new["speed"] == old["speed"]
    assert new["meta"] == {"bench": {"repeats": 5}, "eval": {"pooling": "x"}, "date": "new"}
    newer = report.merge(new, speed={"hark": {"cpu_s_per_audio_s": 0.01}})
    assert set(newer["speed"]) == {"basic-pitch", "hark"}
    assert newer["sets"] == new["sets"]
    assert old["sets"]["real"] == {"basic-pitch": {"note_f1": 0.68}}  # inputs untouched


def test_readme_block_replaced_only_between_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    before, after = "# hark\n\nintro\n\n", "\n\n## Next\nmore text\n"
    readme.write_text(before + "<!-- bench:transcriber -->\nold table\n<!-- /bench:transcriber -->" + after)
    assert report.update_readme(readme, "| new | table |\n", "transcriber")
    text = readme.read_text()
    assert text == before + "<!-- bench:transcriber -->\n| new | table |\n<!-- /bench:transcriber -->" + after
    assert not report.update_readme(readme, "| new | table |\n", "transcriber")  # idempotent

    plain = tmp_path / "PLAIN.md"
    plain.write_text("no markers here\n")
    assert not report.update_readme(plain, "table", "transcriber")
    assert plain.read_text() == "no markers here\n"
    assert not report.update_readme(tmp_path / "missing.md", "table", "transcriber")


def test_markdown_puts_systems_side_by_side() -> None:
    results = {
        "sets": {"real": {"basic-pitch": {"note_f1": 0.679}, "hark": {"note_f1": 0.7}}},
        "speed": {"hark": {"cpu_s_per_audio_s": 0.01, "ratio_vs_basic_pitch": 0.5},
                  "hark-torch": {"skipped": "no checkpoint"},
                  "basic-pitch": {"cpu_s_per_audio_s": 0.02}},
        "meta": {"eval": {"set_sizes": {"real": {"clips": 12, "audio_s": 249.0}}}},
    }
    md = report.render_markdown(results)
    assert "| set | metric | hark | basic-pitch |" in md
    assert "| real (12 clips, 4.2 min) | note F1 (onset, 50 ms) | 0.700 | 0.679 |" in md
    assert "| hark | 0.0100 |" in md and "0.50" in md
    assert "skipped: no checkpoint" in md


class ReferenceSystem:
    """Answers with the first annotation of the clip: a perfect transcriber for the wiring test."""

    def __init__(self, root: Path):
        self.root = root

    def transcribe(self, audio: Path) -> NoteArray:
        s = read_set(self.root, "x")
        clip = next(c for c in s.clips if c.audio.name == Path(audio).name or Path(audio).name.startswith(c.name))
        return clip.annotations[0].notes

    def info(self) -> dict:
        return {"version": "test"}


def test_run_eval_writes_json_markdown_and_readme(eval_set: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(transcriber, "build_system", lambda name, model_dir, threads: ReferenceSystem(eval_set))
    readme = tmp_path / "README.md"
    readme.write_text("x\n<!-- bench:transcriber -->\n<!-- /bench:transcriber -->\ny\n")
    out = tmp_path / "results" / "transcriber.json"
    out.parent.mkdir()
    out.write_text(json.dumps({"sets": {}, "speed": {"basic-pitch": {"cpu_s_per_audio_s": 0.02}}, "meta": {}}))
    parser = argparse.ArgumentParser()
    transcriber.add_arguments_eval(parser)
    args = parser.parse_args(["--data", str(eval_set), "--out", str(out), "--readme", str(readme),
                              "--systems", "hark", "--limit-seconds", "2.5"])
    assert transcriber.run_eval(args) == 0
    data = json.loads(out.read_text())
    hark = data["sets"]["real"]["hark"]
    # solo: perfect; song: A1 perfect, A2 matches 1 of 2 estimates -> pooled tp 3.5 of 4.0 est.
    assert hark["note_recall"] == pytest.approx(1.0)
    assert hark["note_precision"] == pytest.approx(3.5 / 4.0, abs=1e-4)
    assert data["speed"]["basic-pitch"]["cpu_s_per_audio_s"] == 0.02  # bench results kept
    meta = data["meta"]["eval"]
    assert meta["set_sizes"]["real"]["clips"] == 2
    assert meta["set_sizes"]["real"]["audio_s"] == pytest.approx(4.5)
    assert "pooled counts" in meta["pooling"]
    assert set(data["meta"]) >= {"date", "git_commit", "machine", "versions", "eval"}
    assert "| real" in out.with_suffix(".md").read_text()
    assert "| real" in readme.read_text() and readme.read_text().startswith("x\n")


def test_truncated_copy_and_tone_clip(tmp_path: Path) -> None:
    clip = speed.tone_clip(tmp_path / "tones.wav", 2.0, sample_rate=16000)
    info = sf.info(str(clip))
    assert info.samplerate == 16000 and info.duration == pytest.approx(2.0)
    short = truncated_copy(clip, 0.5, tmp_path)
    assert sf.info(str(short)).duration == pytest.approx(0.5)
    assert truncated_copy(clip, 5.0, tmp_path) == clip


def test_measure_interleaves_systems() -> None:
    calls: list[str] = []
    timings = speed.measure({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then rotated order
    assert len(timings["a"].cpu_s) == 3 and timings["b"].cpu_median >= 0.0


def test_tree_rss_reads_this_process() -> None:
    import os

    now, peak = speed.tree_rss_mb(os.getpid())
    assert 0 < now <= peak


def test_select_splits_one_folder_into_two_sets(eval_set: Path) -> None:
    assert [c.name for c in read_set(eval_set, "a", select="solo").clips] == ["solo"]
    assert [c.name for c in read_set(eval_set, "b", select="!solo").clips] == ["song"]
    assert {c.name for c in read_set(eval_set, "c", select="so*").clips} == {"song", "solo"}
    assert {c.name for c in read_set(eval_set, "d", select="x*,solo").clips} == {"solo"}


def test_repeated_column_is_read_and_reported(tmp_path: Path) -> None:
    root = tmp_path / "pr"
    write_wav(root / "audio" / "p.wav", 3.0)
    (root / "notes").mkdir()
    (root / "notes" / "p.csv").write_text("onset_s,offset_s,midi_pitch,velocity,track,repeated\n"
                                          "0.5,0.7,50,30,1,0\n1.0,1.2,50,30,1,1\n1.5,1.7,50,30,1,1\n")
    (clip,) = read_set(root, "piano-repeated").clips
    notes = clip.annotations[0].notes
    assert notes.repeated.tolist() == [False, True, True]
    assert notes.clipped(1.2).repeated.tolist() == [False, True]
    md = report.render_markdown({"sets": {"piano-repeated": {"hark": {"note_f1": 0.9, "repeated_recall": 0.95}},
                                          "real": {"hark": {"note_f1": 0.8}}}})
    assert "| recall of repeated strikes | 0.950 |" in md
    assert md.count("recall of repeated strikes") == 1  # only the set that has it
