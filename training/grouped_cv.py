"""Nested cross-validation grouped by participant, with a guard against leaks.

Recordings of one participant share a voice, a microphone and a way of speaking: a model that
saw any of them in training recognises the person, not the condition. Every split here is
therefore made over participants, and `check_disjoint` verifies it at each use, so a future
change that splits by recording fails loudly instead of reporting inflated scores.

Outer folds estimate performance; inner folds (inside each outer training part only) choose the
model's hyperparameters. Probabilities are averaged per participant, the unit of decision.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import StratifiedGroupKFold


class LeakError(AssertionError):
    """A participant is on both sides of a split."""


def check_disjoint(groups: np.ndarray, train: np.ndarray, test: np.ndarray) -> None:
    shared = set(np.asarray(groups)[train]) & set(np.asarray(groups)[test])
    if shared:
        raise LeakError(f"participants in both training and test folds: {sorted(map(str, shared))[:10]}")


def participant_labels(y: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(participant ids in first-seen order, their label)."""
    ids, first = np.unique(groups, return_index=True)
    order = np.argsort(first)
    return ids[order], np.asarray(y)[first[order]]


def grouped_folds(y: np.ndarray, groups: np.ndarray, n_splits: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stratified (by label) folds over participants; at most as many folds as the rarest class
    has participants."""
    _, labels = participant_labels(y, groups)
    k = min(n_splits, int(np.bincount(labels).min()))
    if k < 2:
        raise ValueError("every class needs at least 2 participants for grouped cross-validation")
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    for train, test in splitter.split(np.zeros(len(y)), y, groups):
        check_disjoint(groups, train, test)
        yield train, test


def average_by_participant(proba: np.ndarray, groups: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """[recordings, classes] -> [participants (in `ids` order), classes]; NaN rows (a modality
    missing for a recording) are left out, and a participant with none stays NaN."""
    out = np.full((len(ids), proba.shape[1]), np.nan)
    for i, pid in enumerate(ids):
        rows = proba[groups == pid]
        rows = rows[~np.isnan(rows).any(axis=1)]
        if len(rows):
            out[i] = rows.mean(axis=0)
    return out


@dataclass
class Candidate:
    name: str
    make: Callable[[], Any]  # an unfitted sklearn estimator with predict_proba


def select(candidates: Sequence[Candidate], x: np.ndarray, y: np.ndarray, groups: np.ndarray,
           n_splits: int, seed: int, n_classes: int) -> tuple[Candidate, dict[str, float]]:
    """The candidate with the best participant-level log-likelihood over inner grouped folds.

    A proper scoring rule rather than F1: late fusion averages probabilities, so a modality
    whose probabilities are under- or overconfident would pull the fused answer off."""

    scores: dict[str, float] = {}
    if len(candidates) == 1:
        return candidates[0], scores
    for cand in candidates:
        proba = np.full((len(y), n_classes), np.nan)
        for train, test in grouped_folds(y, groups, n_splits, seed):
            proba[test] = fit_predict(cand.make(), x[train], y[train], x[test], n_classes)
        ids, labels = participant_labels(y, groups)
        p = average_by_participant(proba, groups, ids)
        scores[cand.name] = float(np.mean(np.log(np.clip(p[np.arange(len(labels)), labels], 1e-6, 1.0))))
    best = max(candidates, key=lambda c: scores[c.name])
    return best, scores


def fit_predict(model: Any, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, n_classes: int) -> np.ndarray:
    """Fit and predict probabilities for all `n_classes`, also when a training part lacks one."""
    model = clone(model).fit(x_train, y_train)
    proba = np.zeros((len(x_test), n_classes))
    proba[:, model.classes_] = model.predict_proba(x_test)
    return proba


@dataclass
class NestedResult:
    proba: np.ndarray  # out-of-fold probabilities per recording [recordings, classes]
    chosen: list[str]  # the candidate chosen in each outer fold
    inner_scores: list[dict[str, float]]


def nested_cv(candidates: Sequence[Candidate], x: np.ndarray, y: np.ndarray, groups: np.ndarray,
              n_classes: int, outer_splits: int = 5, inner_splits: int = 4, seed: int = 0,
              rows: np.ndarray | None = None) -> NestedResult:
    """Out-of-fold probabilities from nested grouped CV. `rows` (a boolean mask) restricts
    fitting and prediction to recordings where the modality exists; the others stay NaN."""
    rows = np.ones(len(y), dtype=bool) if rows is None else rows
    proba = np.full((len(y), n_classes), np.nan)
    chosen, inner = [], []
    for train, test in grouped_folds(y, groups, outer_splits, seed):
        tr, te = train[rows[train]], test[rows[test]]
        best, scores = select(candidates, x[tr], y[tr], groups[tr], inner_splits, seed + 1, n_classes)
        if len(te):
            proba[te] = fit_predict(best.make(), x[tr], y[tr], x[te], n_classes)
        chosen.append(best.name)
        inner.append(scores)
    return NestedResult(proba, chosen, inner)
