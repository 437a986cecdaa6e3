"""The classifier trains on what a manifest holds (voice, text or both) and says so; a trained
model scores new participants with `hark predict classifier`; runs, exports and reports go to
folders of their own unless --ship."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from benchmarks.speechlike import SR, speech_like

from hark import REPO_ROOT, cli
from training.classifier import ClassifierRecipe, plan_modalities, train
from training.data.manifest import ManifestError, read_manifest, task_labels

ENCODERS = REPO_ROOT / "artifacts" / "classifier"  # dvector.onnx, minilm.onnx, tokenizer.json
WORDS = {"low": "I feel tired and slow, nothing is good and everything is awful.",
         "high": "What a wonderful bright day, I am happy and full of energy!"}


def write_cohort(root: Path, audio: bool, text: bool, per_class: int = 4, seed: int = 0) -> Path:
    """Participants whose voices (pitch) and words differ by class: a model can learn either."""
    rows = []
    for label, f0 in (("low", 100.0), ("high", 210.0)):
        for p in range(per_class):
            for r in range(2):
                name = f"{label}{p}_{r}.wav"
                if audio:
                    sf.write(root / name, speech_like(2.0, f0=f0 * (1 + 0.04 * p), seed=seed + 10 * p + r), SR)
                rows.append([f"{label}{p}", name if audio else "", WORDS[label] if text else "", label])
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="") as handle:
        csv.writer(handle).writerows([["participant_id", "audio_path", "transcript", "label"], *rows])
    return manifest


def quick_recipe(manifest: Path, run_dir: Path) -> ClassifierRecipe:
    return ClassifierRecipe(run_dir=str(run_dir), manifest=str(manifest), outer_splits=2, inner_splits=2,
                            c_grid=[1.0])


def test_plan_follows_the_manifest(tmp_path: Path) -> None:
    manifest = write_cohort(tmp_path, audio=True, text=False)
    recordings, warnings = read_manifest(manifest)
    assert any("empty transcript" in w for w in warnings)
    classes, y = task_labels(recordings, "multiclass")
    groups = np.array([r.participant_id for r in recordings])
    modalities, skipped = plan_modalities(recordings, y, groups, classes)
    assert modalities == ["voice"] and "no recording has a transcript" in skipped["text"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="a row needs audio, a transcript or both"):
        read_manifest(write_cohort(tmp_path / "empty", audio=False, text=False))


@pytest.mark.parametrize(("audio", "text", "expected"), [(True, False, ["voice"]), (False, True, ["text"])],
                         ids=["voice-only", "text-only"])
def test_train_export_predict(tmp_path: Path, audio: bool, text: bool, expected: list[str],
                              capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_cohort(tmp_path, audio, text)
    run_dir = tmp_path / "run"
    summary = train(quick_recipe(manifest, tmp_path), run_dir, ENCODERS)
    assert summary["modalities"] == expected
    assert set(summary["evaluation"]) == {*expected, "fused", "dummy"}
    assert f"training {expected[0]} only" in capsys.readouterr().out

    export_dir = tmp_path / "model"
    assert cli.main(["export", "classifier", "--run-dir", str(run_dir), "--out", str(export_dir)]) == 0
    card = json.loads((export_dir / "card.json").read_text())
    assert card["modalities"] == expected and "bentoml_tag" not in card  # not registered without --ship
    assert not (export_dir / ("text_head.onnx" if audio else "voice_head.onnx")).exists()
    assert "SYNTHETIC" not in card["intended_use"]

    (tmp_path / "new").mkdir()
    new = write_cohort(tmp_path / "new", audio, text, per_class=2, seed=99)
    out = tmp_path / "predictions"
    assert cli.main(["predict", "classifier", "--model", str(export_dir), "--manifest", str(new),
                     "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["participants"] == 4 and metrics["accuracy"] >= 0.75  # the classes differ plainly
    assert metrics["majority_baseline"]["from"] == "the model's training participants"
    assert metrics["majority_baseline"]["accuracy"] == 0.5
    with open(out / "participants.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 4
    with open(out / "recordings.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8 and all(r["predicted"] in ("high", "low") for r in rows)


def test_predict_without_labels_and_with_a_silent_recording(tmp_path: Path) -> None:
    manifest = tmp_path / "new.csv"
    sf.write(tmp_path / "talk.wav", speech_like(2.5, seed=5), SR)
    sf.write(tmp_path / "quiet.wav", np.zeros(2 * SR, np.float32), SR)
    manifest.write_text("participant_id,audio_path,transcript,label\np1,talk.wav,,\np1,quiet.wav,,\n")
    out = tmp_path / "out"
    assert cli.main(["predict", "classifier", "--model", str(ENCODERS), "--manifest", str(manifest),
                     "--out", str(out)]) == 0
    assert not (out / "metrics.json").exists()  # no labels: nothing to score against
    with open(out / "recordings.csv") as handle:
        rows = {Path(r["audio_path"]).name: r for r in csv.DictReader(handle)}
    assert rows["talk.wav"]["predicted"] and "silent" in rows["quiet.wav"]["error"]


def test_train_outside_the_repository_uses_the_shipped_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    code = cli.main(["train", "classifier", "--manifest", str(tmp_path / "missing.csv")])
    out = capsys.readouterr().out
    assert code == 2 and "cannot read manifest" in out  # the recipe was found; the manifest is the problem
    code = cli.main(["train", "classifier", "--config", "no-such-recipe.yaml"])
    assert code == 2 and "classifier.yaml" in capsys.readouterr().out


def test_eval_writes_its_own_report_and_ship_refuses_user_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_cohort(tmp_path, audio=False, text=True)
    readme = tmp_path / "README.md"
    readme.write_text("untouched\n")
    code = cli.main(["eval", "classifier", "--manifest", str(manifest), "--ship", "--readme", str(readme)])
    assert code == 2 and "demo cohort only" in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)
    recipe = tmp_path / "quick.yaml"
    recipe.write_text(f"run_dir: {tmp_path}\nouter_splits: 2\ninner_splits: 2\nc_grid: [1.0]\n")
    code = cli.main(["eval", "classifier", "--manifest", str(manifest), "--config", str(recipe),
                     "--encoders", str(ENCODERS), "--task", "multiclass"])
    assert code == 0
    (report,) = (tmp_path / "reports" / "classifier").glob("*/classifier.json")
    results = json.loads(report.read_text())
    assert results["meta"]["eval"]["demo_cohort"] is False and set(results["sets"]["multiclass"]) == {
        "text", "fused", "dummy"}
    assert "SYNTHETIC" not in report.with_suffix(".md").read_text()
    assert readme.read_text() == "untouched\n"
