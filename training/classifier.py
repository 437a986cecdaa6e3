"""Classifier recipe: a manifest of recordings -> voice and text models, fused per participant.

`hark train classifier --manifest FILE [--task binary:LABEL|multiclass] [--config ...]`

1. Features per recording (core/classifier_features.py, the code that serves): voice =
   eGeMAPSv02 functionals + a d-vector; text = MiniLM sentence embedding + lexical statistics.
   They are cached in RUN_DIR, keyed by the file and the transcript.
2. Per modality, nested cross-validation grouped by participant (training/grouped_cv.py) picks a
   model among the candidates and estimates how it does on unseen participants; the two
   modalities' probabilities are averaged per participant (late fusion). A majority-class dummy
   is always scored beside them.
3. The chosen model of each modality is refit on every participant and saved for export.
"""
from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import yaml
from pydantic import BaseModel
from tqdm import tqdm

from training.classification_scores import report
from training.grouped_cv import Candidate, average_by_participant, nested_cv, participant_labels, select

if TYPE_CHECKING:
    from training.data.manifest import Recording

class ClassifierRecipe(BaseModel):
    run_dir: str = "runs/classifier"
    manifest: str = "data/cohort/manifest.csv"
    task: str = "multiclass"
    outer_splits: int = 5
    inner_splits: int = 4
    seed: int = 0
    c_grid: list[float] = [0.001, 0.01, 0.1, 1.0]  # logistic regression strengths tried by the inner folds

    @classmethod
    def from_yaml(cls, path: Path) -> "ClassifierRecipe":
        return cls.model_validate(yaml.safe_load(Path(path).read_text()) or {})


def feature_subsets(modality: str, dims: int) -> dict[str, list[int] | None]:
    """Column subsets a candidate may use. With tens of participants, hundreds of embedding
    dimensions can drown the few hand-made features that carry the effect; the inner folds
    decide per task and data whether the embedding earns its place."""
    from core.classifier_features import EGEMAPS_DIMS, LEXICAL_NAMES

    if modality == "voice":
        return {"egemaps+dvector": None, "egemaps": list(range(EGEMAPS_DIMS))}
    return {"minilm+lexical": None, "lexical": list(range(dims - len(LEXICAL_NAMES), dims))}


def candidates(recipe: ClassifierRecipe, subsets: dict[str, list[int] | None] | None = None) -> list[Candidate]:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def make(c: float, cols: list[int] | None) -> Any:
        # A regularised linear model, its strength chosen by the inner folds: it exports to ONNX
        # exactly and its probabilities are reasonably calibrated.
        steps = [] if cols is None else [ColumnTransformer([("keep", "passthrough", cols)], remainder="drop")]
        return make_pipeline(*steps, StandardScaler(), LogisticRegression(C=c, max_iter=5000))

    return [Candidate(f"{name} logreg C={c:g}", lambda c=c, cols=cols: make(c, cols))
            for name, cols in (subsets or {"all": None}).items() for c in recipe.c_grid]


@dataclass
class FeatureTable:
    voice: np.ndarray  # [recordings, voice dims]
    text: np.ndarray  # [recordings, text dims]; NaN rows where the transcript is empty
    has_text: np.ndarray  # [recordings] bool
    named_subsets: bool = True  # False for tables not made by compute_features (tests)

    def subsets(self, modality: str) -> dict[str, list[int] | None] | None:
        x = self.voice if modality == "voice" else self.text
        return feature_subsets(modality, x.shape[1]) if self.named_subsets else None


def _key(rec: "Recording") -> str:
    st = rec.audio_path.stat()
    raw = f"{rec.audio_path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{rec.transcript}"
    return hashlib.sha1(raw.encode()).hexdigest()


def compute_features(recordings: list["Recording"], encoders: Path, cache: Path | None,
                     load_audio: Callable[[Path], np.ndarray] | None = None) -> FeatureTable:
    """Voice and text features of every recording, reusing `cache` (an .npz) where it has them."""
    from core.audio import load
    from core.classifier_features import TextFeatures, VoiceFeatures

    voice_fx, text_fx = VoiceFeatures(encoders), TextFeatures(encoders)
    load_audio = load_audio or (lambda p: load(p, 16000))
    known: dict[str, np.ndarray] = dict(np.load(cache)) if cache is not None and cache.exists() else {}
    voice, text = [], []
    for rec in tqdm(recordings, desc="features", unit="recording"):
        k = _key(rec)
        if f"v{k}" not in known:
            known[f"v{k}"] = voice_fx(load_audio(rec.audio_path)).astype(np.float32)
        if rec.transcript.strip() and f"t{k}" not in known:
            known[f"t{k}"] = text_fx(rec.transcript).astype(np.float32)
        voice.append(known[f"v{k}"])
        text.append(known.get(f"t{k}", np.full(text_fx.dims, np.nan, dtype=np.float32)))
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **known)
    text_arr = np.stack(text)
    return FeatureTable(np.stack(voice), text_arr, ~np.isnan(text_arr).any(axis=1))


def evaluate(table: FeatureTable, y: np.ndarray, groups: np.ndarray, classes: list[str],
             recipe: ClassifierRecipe) -> dict[str, Any]:
    """Nested grouped CV of each modality, their fusion and the dummy, per participant."""
    n = len(classes)
    ids, labels = participant_labels(y, groups)
    per: dict[str, np.ndarray] = {}
    chosen: dict[str, list[str]] = {}
    for name, x, rows in (("voice", table.voice, None), ("text", np.nan_to_num(table.text), table.has_text)):
        cands = candidates(recipe, table.subsets(name))
        res = nested_cv(cands, x, y, groups, n, recipe.outer_splits, recipe.inner_splits, recipe.seed, rows)
        per[name] = average_by_participant(res.proba, groups, ids)
        chosen[name] = res.chosen
    fused = np.nanmean(np.stack([per["voice"], per["text"]]), axis=0)  # text missing: voice alone
    prior = np.bincount(labels, minlength=n) / len(labels)
    dummy = np.tile(prior, (len(ids), 1))
    systems = {"voice": per["voice"], "text": per["text"], "fused": fused, "dummy": dummy}
    out = {}
    for name, p in systems.items():
        have = ~np.isnan(p).any(axis=1)
        out[name] = report(labels[have], p[have], classes)
    out["voice"]["chosen_per_fold"], out["text"]["chosen_per_fold"] = chosen["voice"], chosen["text"]
    return out


def fit_final(table: FeatureTable, y: np.ndarray, groups: np.ndarray, n_classes: int,
              recipe: ClassifierRecipe) -> dict[str, Any]:
    """Per modality: choose by grouped CV on every participant, then refit on all of them."""
    from sklearn.base import clone

    heads = {}
    for name, x, rows in (("voice", table.voice, np.ones(len(y), bool)), ("text", table.text, table.has_text)):
        best, scores = select(candidates(recipe, table.subsets(name)), x[rows], y[rows], groups[rows], recipe.inner_splits,
                              recipe.seed, n_classes)
        heads[name] = {"model": clone(best.make()).fit(x[rows], y[rows]), "chosen": best.name, "scores": scores}
    return heads


def train(recipe: ClassifierRecipe, encoders: Path | None = None) -> dict[str, Any]:
    import joblib

    from training.data.manifest import read_manifest, task_labels

    run_dir = Path(recipe.run_dir)
    recordings, warnings = read_manifest(Path(recipe.manifest))
    for w in warnings:
        print(f"warning: {w}")
    classes, y = task_labels(recordings, recipe.task)
    groups = np.array([r.participant_id for r in recordings])
    encoders = encoders or ensure_encoders(run_dir / "encoders")
    table = compute_features(recordings, encoders, run_dir / "features.npz")
    evaluation = evaluate(table, y, groups, classes, recipe)
    heads = fit_final(table, y, groups, len(classes), recipe)
    summary = {"task": recipe.task, "classes": classes, "recordings": len(recordings),
               "participants": int(len(np.unique(groups))), "with_transcript": int(table.has_text.sum()),
               "dims": {"voice": int(table.voice.shape[1]), "text": int(table.text.shape[1])},
               "evaluation": evaluation, "chosen": {k: v["chosen"] for k, v in heads.items()},
               "recipe": recipe.model_dump(), "manifest": str(recipe.manifest), "encoders": str(encoders)}
    run_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump({"heads": {k: v["model"] for k, v in heads.items()}, **summary}, run_dir / "model.joblib")
    (run_dir / "report.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def ensure_encoders(directory: Path) -> Path:
    """The feature encoders (d-vector, MiniLM) as ONNX, exported once from their wheels; what the
    export checked (parity with torch, fidelity, sizes) is kept beside them in export.json."""
    if not all((directory / f).exists() for f in ("dvector.onnx", "minilm.onnx", "export.json")):
        from training.classifier_encoders import export_encoders

        checks = export_encoders(directory)
        (directory / "export.json").write_text(json.dumps(checks, indent=2, default=str) + "\n")
    return directory


def add_arguments_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=Path("training/configs/classifier.yaml"),
                        help="recipe YAML (manifest, task, folds, candidate models)")
    parser.add_argument("--manifest", help="override the manifest CSV (participant_id, audio_path, transcript, "
                                           "label[, split])")
    parser.add_argument("--task", help="multiclass, or binary:LABEL (LABEL against the rest)")
    parser.add_argument("--run-dir", help="override run_dir (features cache, model.joblib, report.json)")


def run_train(args: argparse.Namespace) -> int:
    from training.data.manifest import ManifestError

    recipe = ClassifierRecipe.from_yaml(args.config)
    for key in ("manifest", "task", "run_dir"):
        if getattr(args, key, None):
            setattr(recipe, key, getattr(args, key))
    try:
        summary = train(recipe)
    except ManifestError as exc:
        print(f"error: {exc}")
        return 2
    ev = summary["evaluation"]
    print(f"{summary['task']}: {summary['participants']} participants, {summary['recordings']} recordings")
    for name in ("voice", "text", "fused", "dummy"):
        print(f"  {name:6s} macro F1 {ev[name]['macro_f1']:.3f}  ECE {ev[name]['ece']:.3f}")
    print(f"saved {recipe.run_dir}/model.joblib and report.json")
    return 0
