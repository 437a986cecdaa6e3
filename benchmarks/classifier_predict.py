"""`hark predict classifier --model DIR --manifest new.csv [--out DIR]`: a trained classifier on new
participants, through the served code (core/classifier_model.py, the voice check included).

Writes, in a folder of its own (default predictions/classifier/<UTC time>):
- recordings.csv: per recording, the probabilities and the predicted class (refused ones with why);
- participants.csv: per participant, the mean of their recordings' probabilities and its class;
- metrics.json (when the manifest has labels): participant-level accuracy and macro F1 beside a
  majority-class baseline, the class that was most common among the model's training participants
  (or, for a card that does not record them, among the manifest's).
The manifest has the training columns; labels may be empty. Nothing else is written.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from training.recipe_files import new_run_dir

PREDICTIONS = Path("predictions/classifier")


def add_arguments_predict(parser: argparse.ArgumentParser) -> None:
    from core.cards import artifacts_dir

    parser.add_argument("--model", type=Path, default=artifacts_dir() / "classifier", metavar="DIR",
                        help="a classifier model directory from `hark export classifier` (default: the shipped one)")
    parser.add_argument("--manifest", type=Path, required=True,
                        help="CSV: participant_id, audio_path, transcript, label (labels may be empty)")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help=f"folder for the predictions (default: a new folder {PREDICTIONS}/<UTC time>)")


def target_of(label: str, task: str, classes: list[str]) -> str | None:
    """The class a manifest label stands for under the model's task; None if it has none."""
    if task.startswith("binary:"):
        positive = task.split(":", 1)[1]
        return positive if label == positive else f"not_{positive}"
    return label if label in classes else None


def predict_recordings(model: Any, recordings: list[Any]) -> list[dict[str, Any]]:
    """One row per recording: probabilities, or the reason it was refused."""
    from tqdm import tqdm

    from core import audio as audio_io

    limits = audio_io.Limits.from_env()
    rows = []
    for rec in tqdm(recordings, desc="predict", unit="recording"):
        row: dict[str, Any] = {"participant_id": rec.participant_id, "audio_path": str(rec.audio_path or ""),
                               "label": rec.label}
        try:
            audio = None
            if rec.audio_path is not None and model.needs_voice:
                audio = audio_io.load(rec.audio_path, model.sample_rate, limits=limits)
                audio_io.require_voice(audio, model.sample_rate)
            result = model.classify(audio, rec.transcript)
            row.update(probabilities=result.probabilities, predicted=result.label, modalities=result.modalities)
        except (audio_io.AudioError, ValueError) as exc:
            row["error"] = getattr(exc, "message", None) or str(exc)
        rows.append(row)
    return rows


def by_participant(rows: list[dict[str, Any]], classes: list[str]) -> list[dict[str, Any]]:
    """Mean probabilities over each participant's scored recordings (the unit of decision)."""
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = out.setdefault(row["participant_id"], {"participant_id": row["participant_id"],
                                                       "label": row["label"], "probs": [], "refused": 0})
        if "probabilities" in row:
            entry["probs"].append([row["probabilities"][c] for c in classes])
        else:
            entry["refused"] += 1
    for entry in out.values():
        probs = entry.pop("probs")
        entry["recordings"] = len(probs)
        if probs:
            mean = np.mean(probs, axis=0)
            entry["probabilities"] = {c: round(float(p), 6) for c, p in zip(classes, mean)}
            entry["predicted"] = classes[int(np.argmax(mean))]
    return list(out.values())


def score(participants: list[dict[str, Any]], model: Any) -> dict[str, Any] | None:
    """Accuracy and macro F1 against a majority baseline, over the labelled, scored participants."""
    from training.classification_scores import macro_f1

    classes = model.classes
    scored = [(target_of(p["label"], model.task, classes), p) for p in participants if p["label"] and "predicted" in p]
    unknown = sorted({p["label"] for t, p in scored if t is None})
    scored = [(t, p) for t, p in scored if t is not None]
    if not scored:
        return None
    truth = np.array([classes.index(t) for t, _ in scored])
    predicted = np.array([classes.index(p["predicted"]) for _, p in scored])
    trained = model.card.get("class_participants") or {}
    if trained:
        majority, source = max(classes, key=lambda c: trained.get(c, 0)), "the model's training participants"
    else:
        majority = classes[int(np.bincount(truth, minlength=len(classes)).argmax())]
        source = "this manifest's participants (the model card does not record its training classes)"
    baseline = np.full_like(truth, classes.index(majority))
    n = len(classes)
    return {"participants": len(scored), "classes": classes, "task": model.task,
            "accuracy": float((predicted == truth).mean()), "macro_f1": macro_f1(truth, predicted, n),
            "majority_baseline": {"class": majority, "from": source, "accuracy": float((baseline == truth).mean()),
                                  "macro_f1": macro_f1(truth, baseline, n)},
            "labels_without_a_class": unknown}


def _write_csv(path: Path, rows: list[dict[str, Any]], classes: list[str], keys: list[str]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*keys, "predicted", *[f"p_{c}" for c in classes], "error"])
        for row in rows:
            probs = row.get("probabilities", {})
            writer.writerow([*[row.get(k, "") for k in keys], row.get("predicted", ""),
                             *[probs.get(c, "") for c in classes], row.get("error", "")])


def run_predict(args: argparse.Namespace) -> int:
    from core.classifier_model import ClassifierModel
    from training.data.manifest import ManifestError, read_manifest

    if not (args.model / "card.json").is_file():
        print(f"error: {args.model} is not a classifier model directory (no card.json); "
              "pass --model DIR from `hark export classifier`")
        return 2
    try:
        recordings, warnings = read_manifest(args.manifest, require_labels=False)
    except ManifestError as exc:
        print(f"error: {exc}")
        return 2
    for w in warnings:
        print(f"warning: {w}")
    model = ClassifierModel(args.model)
    rows = predict_recordings(model, recordings)
    participants = by_participant(rows, model.classes)
    out = args.out or new_run_dir(PREDICTIONS)
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "recordings.csv", rows, model.classes, ["participant_id", "audio_path", "label"])
    _write_csv(out / "participants.csv", participants, model.classes, ["participant_id", "label", "recordings"])
    refused = sum("error" in r for r in rows)
    print(f"{len(rows) - refused} of {len(rows)} recordings scored ({refused} refused, see recordings.csv); "
          f"{len(participants)} participants; model {model.name} {model.version} ({' + '.join(model.modalities)})")
    metrics = score(participants, model)
    if metrics is not None:
        metrics.update(manifest=str(args.manifest), model=str(args.model), recordings_refused=refused)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        base = metrics["majority_baseline"]
        print(f"participants {metrics['participants']}: accuracy {metrics['accuracy']:.3f}, macro F1 "
              f"{metrics['macro_f1']:.3f}; majority baseline ({base['class']}) accuracy {base['accuracy']:.3f}, "
              f"macro F1 {base['macro_f1']:.3f}")
    print(f"wrote {out}")
    return 0
