"""Classifier evaluation and speed.

`hark eval classifier [--manifest data/cohort/manifest.csv] [--task multiclass --task binary:flat ...]`
estimates how the recipe does on unseen participants: per task, nested cross-validation grouped
by participant scores the voice model, the text model (each when the manifest holds it), their
fusion and a majority-class dummy (participant-level macro F1 and ECE). The report goes to a
folder of its own; `--ship` merges it into benchmarks/results/classifier.json and docs/classifier.md.
To score an already trained model on new participants, use `hark predict classifier`.

`hark bench classifier [--model-dir artifacts/classifier]`: CPU seconds per audio second of the
served path (eGeMAPS + d-vector + MiniLM + heads), one thread, on the manifest's recordings.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import report

REPO = Path(__file__).resolve().parents[1]
TAG = "classifier"
SYSTEMS = ("voice", "text", "fused", "dummy")
DEMO_FEATURES = Path("runs/classifier/demo-cohort-features.npz")  # the --ship runs' cache (demo cohort only)


def _tasks(classes: list[str], given: list[str] | None) -> list[str]:
    return given or ["multiclass", *(f"binary:{c}" for c in classes if c != "control")]


def evaluate_tasks(manifest: Path, tasks: list[str] | None, recipe_path: Path, encoders: Path | None,
                   cache: Path | None = None) -> dict:
    from training.classifier import (ClassifierRecipe, compute_features, ensure_encoders, evaluate, plan_modalities,
                                     trained_what)
    from training.data.manifest import is_demo_cohort, read_manifest, task_labels
    from training.recipe_files import resolve_config

    recipe = ClassifierRecipe.from_yaml(resolve_config(recipe_path))
    recordings, warnings = read_manifest(manifest)
    for w in warnings:
        print(f"warning: {w}")
    encoders = encoders or ensure_encoders(Path(recipe.run_dir) / "encoders")
    groups = np.array([r.participant_id for r in recordings])
    labels = sorted({r.label for r in recordings})
    classes, y = task_labels(recordings, "multiclass")
    modalities, skipped = plan_modalities(recordings, y, groups, classes)
    print(f"evaluating {trained_what(modalities, skipped)}")
    table = compute_features(recordings, encoders, cache, modalities=modalities)
    sets, details = {}, {}
    for task in _tasks(labels, tasks):
        classes, y = task_labels(recordings, task)
        res = evaluate(table, y, groups, classes, recipe, modalities)
        sets[task] = {s: {"macro_f1": res[s]["macro_f1"], "ece": res[s]["ece"]} for s in SYSTEMS if s in res}
        details[task] = res
        print(task + ": " + "  ".join(f"{s} {res[s]['macro_f1']:.3f}" for s in SYSTEMS if s in res))
    meta = {"manifest": str(manifest), "demo_cohort": is_demo_cohort(manifest), "modalities": modalities,
            "recordings": len(recordings), "participants": int(len(set(groups))),
            "folds": {"outer": recipe.outer_splits, "inner": recipe.inner_splits}, "details": details}
    return {"sets": sets, "meta": meta}


def render_markdown(results: dict[str, Any]) -> str:
    lines = ["| task | metric | " + " | ".join(SYSTEMS) + " |", "|---|---|" + "---:|" * len(SYSTEMS)]
    for task, by_system in results.get("sets", {}).items():
        for key, title in (("macro_f1", "macro F1 ↑"), ("ece", "ECE ↓")):
            cells = [report._fmt(by_system.get(s, {}).get(key), 3) for s in SYSTEMS]
            lines.append(f"| {task if key == 'macro_f1' else ''} | {title} | " + " | ".join(cells) + " |")
    speed = results.get("speed", {})
    if speed:
        lines += ["", "| system | CPU-s per audio-s (1 thread) | recordings |", "|---|---:|---:|"]
        for s, v in speed.items():
            lines.append(f"| {s} | {report._fmt(v.get('cpu_s_per_audio_s'), 4)} | {v.get('recordings', '')} |")
    ev, bench = results.get("meta", {}).get("eval", {}), results.get("meta", {}).get("bench", {})
    lines.append("")
    # Results from before the field were all of the demo cohort.
    demo = " (SYNTHETIC demo cohort)" if ev.get("demo_cohort", True) else ""
    if ev:
        lines.append(f"Quality: `hark eval classifier` ({ev.get('date', '?')}, commit {ev.get('git_commit', '?')}) "
                     f"on {ev.get('participants', '?')} participants ({ev.get('recordings', '?')} recordings) of "
                     f"`{ev.get('manifest', '?')}`{demo}; nested cross-validation grouped by participant, "
                     "participant-level scores.")
    if bench:
        lines.append(f"Speed: `hark bench classifier` ({bench.get('date', '?')}, commit {bench.get('git_commit', '?')}); "
                     f"features and heads through the served code, one thread.")
    return "\n".join(lines).rstrip() + "\n"


def add_arguments_eval(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", type=Path, default=REPO / "data/cohort/manifest.csv",
                        help="manifest CSV (default: the demo cohort of `hark data classifier --out data/cohort`)")
    parser.add_argument("--task", action="append", help="multiclass or binary:LABEL (repeatable; default: "
                                                        "multiclass and each non-control class against the rest)")
    parser.add_argument("--config", type=Path, default=REPO / "training/configs/classifier.yaml")
    parser.add_argument("--encoders", type=Path, help="directory with dvector.onnx, minilm.onnx, tokenizer.json")
    parser.add_argument("--features-cache", type=Path, metavar="FILE",
                        help="an .npz of features to reuse (default: features.npz beside the report)")
    report.add_destination_arguments(parser, TAG, REPO)


def run_eval(args: argparse.Namespace) -> int:
    from training.data.manifest import ManifestError, is_demo_cohort

    if not args.manifest.exists():
        print(f"no manifest at {args.manifest}: make the demo cohort with `hark data classifier --out data/cohort`")
        return 2
    if args.ship and not is_demo_cohort(args.manifest):
        # The published table describes the shipped model's demo cohort; a user's rows never join it.
        print(f"error: --ship publishes results of the SYNTHETIC demo cohort only; {args.manifest} is not it")
        return 2
    json_path, readme = report.destination(args, TAG, REPO)
    # Beside the report, except when it is published: benchmarks/results holds results only.
    cache = args.features_cache or (DEMO_FEATURES if args.ship else json_path.parent / "features.npz")
    try:
        res = evaluate_tasks(args.manifest, args.task, args.config, args.encoders, cache)
    except ManifestError as exc:
        print(f"error: {exc}")
        return 2
    meta = {"eval": {**report.stamp(REPO), **{k: v for k, v in res["meta"].items() if k != "details"}},
            "eval_details": res["meta"]["details"]}
    out = report.merge(report.load(json_path), sets=res["sets"], meta=meta)
    report.write_all(out, json_path, json_path.with_suffix(".md"), readme, TAG, render=render_markdown)
    print(f"wrote {json_path}" + (f" and {readme}" if readme else ""))
    return 0


def add_arguments_bench(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", type=Path, default=REPO / "data/cohort/manifest.csv")
    parser.add_argument("--model-dir", type=Path, default=REPO / "artifacts/classifier")
    parser.add_argument("--recordings", type=int, default=20, help="how many recordings to time")
    report.add_destination_arguments(parser, TAG, REPO)


def run_bench(args: argparse.Namespace) -> int:
    from core.audio import load
    from core.classifier_model import ClassifierModel
    from training.data.manifest import read_manifest

    model = ClassifierModel(args.model_dir, threads=1)
    recordings, _ = read_manifest(args.manifest)
    chosen = recordings[:: max(1, len(recordings) // args.recordings)][: args.recordings]
    clips = [(load(r.audio_path, model.sample_rate), r.transcript) for r in chosen]
    model.classify(*clips[0])  # warm-up: onnxruntime and opensmile set up lazily
    speed = {}
    for name, with_text in (("voice", False), ("fused", True)):
        t0, audio_s = time.process_time(), 0.0
        for audio, text in clips:
            model.classify(audio, text if with_text else None)
            audio_s += audio.size / model.sample_rate
        cpu = time.process_time() - t0
        speed[name] = {"cpu_s_per_audio_s": cpu / audio_s, "recordings": len(clips), "audio_s": round(audio_s, 1)}
        print(f"{name:6s} CPU {cpu / audio_s:.4f} s per audio s over {audio_s:.0f} s")
    json_path, readme = report.destination(args, TAG, REPO)
    out = report.merge(report.load(json_path), speed=speed, meta={"bench": report.stamp(REPO)})
    report.write_all(out, json_path, json_path.with_suffix(".md"), readme, TAG, render=render_markdown)
    print(f"wrote {json_path}" + (f" and {readme}" if readme else ""))
    return 0
