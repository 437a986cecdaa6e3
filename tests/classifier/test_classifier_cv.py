"""Grouped nested cross-validation: no participant on both sides, a planted leak is caught,
and late fusion of two partly informative modalities beats each of them."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import KFold

import training.grouped_cv as gcv
from training.classification_scores import ece, macro_f1, report
from training.classifier import ClassifierRecipe, FeatureTable, evaluate


def cohort(participants: int = 36, recordings: int = 4, seed: int = 0):
    """Three classes; voice features see classes 0 vs {1, 2} well, text sees 2 vs {0, 1} well,
    each with participant-level noise, so that only both together separate all three."""
    rng = np.random.default_rng(seed)
    y_part = np.arange(participants) % 3
    groups = np.repeat([f"p{i:03d}" for i in range(participants)], recordings)
    y = np.repeat(y_part, recordings)
    person = np.repeat(rng.normal(0, 0.8, (participants, 4)), recordings, axis=0)
    voice = np.column_stack([(y == 0) * 2.0, (y == 1) * 0.4]) + person[:, :2] + rng.normal(0, 0.5, (len(y), 2))
    text = np.column_stack([(y == 2) * 2.0, (y == 1) * 0.4]) + person[:, 2:] + rng.normal(0, 0.5, (len(y), 2))
    return voice, text, y, groups


def test_no_participant_on_both_sides_of_any_fold() -> None:
    _, _, y, groups = cohort()
    seen_test = []
    for train, test in gcv.grouped_folds(y, groups, 5, seed=3):
        assert not set(groups[train]) & set(groups[test])
        seen_test += list(set(groups[test]))
    assert sorted(seen_test) == sorted(set(groups))  # every participant is tested exactly once


def test_a_planted_leak_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, y, groups = cohort()

    class RecordingLevelSplit:  # the classic mistake: folds over recordings, not participants
        def __init__(self, n_splits: int, shuffle: bool, random_state: int):
            self.inner = KFold(n_splits, shuffle=True, random_state=random_state)

        def split(self, x, y, groups):
            return self.inner.split(x)

    monkeypatch.setattr(gcv, "StratifiedGroupKFold", RecordingLevelSplit)
    with pytest.raises(gcv.LeakError, match="both training and test"):
        list(gcv.grouped_folds(y, groups, 5, seed=0))


def test_check_disjoint_names_the_shared_participants() -> None:
    groups = np.array(["a", "a", "b", "c"])
    gcv.check_disjoint(groups, np.array([0, 1]), np.array([2, 3]))
    with pytest.raises(gcv.LeakError, match="'a'|a"):
        gcv.check_disjoint(groups, np.array([0, 2]), np.array([1, 3]))


def test_fusion_beats_each_modality_and_the_dummy() -> None:
    voice, text, y, groups = cohort(participants=48)
    text[::7] = np.nan  # some recordings without a transcript
    table = FeatureTable(voice, text, ~np.isnan(text).any(axis=1), named_subsets=False)
    recipe = ClassifierRecipe(outer_splits=4, inner_splits=3, c_grid=[0.1, 1.0])
    res = evaluate(table, y, groups, ["a", "b", "c"], recipe)
    f1 = {k: res[k]["macro_f1"] for k in ("voice", "text", "fused", "dummy")}
    assert f1["fused"] > max(f1["voice"], f1["text"]) and f1["dummy"] < 0.25, f1
    assert res["fused"]["participants"] == 48 and len(res["voice"]["chosen_per_fold"]) == 4


def test_scores() -> None:
    y = np.array([0, 0, 1, 1, 2, 2])
    assert macro_f1(y, y, 3) == 1.0 and macro_f1(y, np.zeros(6, int), 3) == pytest.approx((0.5 + 0 + 0) / 3)
    confident_right = np.eye(3)[y]
    assert ece(y, confident_right) == 0.0
    assert ece(y, np.full((6, 3), 1 / 3)) == pytest.approx(1 / 3 - 1 / 3, abs=1e-9)
    r = report(y, confident_right, ["a", "b", "c"])
    assert r["confusion"] == [[2, 0, 0], [0, 2, 0], [0, 0, 2]] and r["per_class_f1"]["b"] == 1.0
