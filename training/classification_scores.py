"""Participant-level classification scores: macro and per-class F1, confusion matrix, calibration.

Expected calibration error (ECE) bins the top-class probability into equal-width bins and
averages |accuracy - confidence| weighted by the bins' sizes: a model that says 0.9 should be
right nine times in ten.
"""
from __future__ import annotations

import numpy as np


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """[true class, predicted class] counts."""
    m = np.zeros((n_classes, n_classes), dtype=int)
    np.add.at(m, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return m


def per_class_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    m = confusion(y_true, y_pred, n_classes)
    tp = np.diag(m).astype(float)
    denom = m.sum(axis=0) + m.sum(axis=1)  # predicted + actual = 2 tp + fp + fn
    return np.divide(2 * tp, denom, out=np.zeros(n_classes), where=denom > 0)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    return float(per_class_f1(y_true, y_pred, n_classes).mean())


def ece(y_true: np.ndarray, proba: np.ndarray, bins: int = 10) -> float:
    conf = proba.max(axis=1)
    correct = proba.argmax(axis=1) == np.asarray(y_true)
    idx = np.minimum((conf * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            total += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(total)


def report(y_true: np.ndarray, proba: np.ndarray, classes: list[str]) -> dict:
    """Every score for participant-level probabilities [participants, classes]."""
    y_pred = proba.argmax(axis=1)
    n = len(classes)
    return {"macro_f1": macro_f1(y_true, y_pred, n), "ece": ece(y_true, proba),
            "per_class_f1": dict(zip(classes, map(float, per_class_f1(y_true, y_pred, n)))),
            "confusion": confusion(y_true, y_pred, n).tolist(), "participants": int(len(y_true))}
