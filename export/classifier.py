"""Classifier run -> a model directory (feature encoders, per-modality heads, card.json).

`hark export classifier [--run-dir RUN] [--out DIR | --ship]` (default: the newest run under
runs/classifier, into exports/classifier/<UTC time>; --ship: artifacts/classifier, registered)

The whole inference path ships as ONNX: `dvector.onnx` and `minilm.onnx` (+ `tokenizer.json`)
compute the learned features, eGeMAPS comes from opensmile, and `voice_head.onnx` and/or
`text_head.onnx` (scikit-learn pipelines through skl2onnx; one per modality the run trained) map
features to probabilities.
Parity of the heads against scikit-learn on the training features is recorded in the card.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from export.destination import add_destination_arguments, destination
from export.onnx_export import git_commit, write_card
from core.cards import file_sha256
from training.data.manifest import is_demo_cohort
from training.recipe_files import newest_run

RUNS = Path("runs/classifier")  # the shipped recipe's run_dir: where `hark train classifier` puts its runs

PARITY_LIMIT = 1e-4
ENCODER_FILES = ("dvector.onnx", "minilm.onnx", "tokenizer.json")
INTENDED_USE = (
    "Research tool: it reproduces a published speech- and text-based classification pipeline so that "
    "researchers can run it on their own, consented data. It is not a diagnostic device and must not "
    "be used to diagnose, screen or make decisions about any person."
)
DEMO_COHORT_USE = (
    " This model is trained on a SYNTHETIC cohort (TTS voices, template transcripts, labels with planted "
    "effects): its scores say nothing about any real condition."
)


def head_to_onnx(model: Any, dims: int, path: Path) -> None:
    """A fitted scikit-learn classifier -> ONNX: `features` float32 [N, dims] -> `probabilities` [N, classes]."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    onx = to_onnx(model, initial_types=[("features", FloatTensorType([None, dims]))],
                  options={id(model): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    for out in onx.graph.output:
        if out.name == "probabilities":
            break
    else:
        raise RuntimeError(f"skl2onnx produced no 'probabilities' output: {[o.name for o in onx.graph.output]}")
    path.write_bytes(onx.SerializeToString())


def head_parity(model: Any, path: Path, x: np.ndarray) -> float:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(["probabilities"], {"features": x.astype(np.float32)})[0]
    return float(np.abs(got - model.predict_proba(x.astype(np.float32))).max())


def export(run_dir: Path, out: Path, register: bool = True) -> dict[str, Any]:
    import joblib

    saved = joblib.load(run_dir / "model.joblib")
    out.mkdir(parents=True, exist_ok=True)
    encoders = Path(saved["encoders"])
    modalities = list(saved.get("modalities", saved["heads"]))
    for name in ENCODER_FILES:
        if name != "dvector.onnx" or "voice" in modalities:  # a text-only model needs no voice encoder
            shutil.copy2(encoders / name, out / name)
    cache = dict(np.load(run_dir / "features.npz"))
    parity = {}
    for name, model in saved["heads"].items():
        dims = saved["dims"][name]
        head_to_onnx(model, dims, out / f"{name}_head.onnx")
        sample = np.stack([v for k, v in cache.items() if k.startswith(name[0])][:64])
        parity[name] = head_parity(model, out / f"{name}_head.onnx", sample)
    if max(parity.values()) > PARITY_LIMIT:
        raise RuntimeError(f"ONNX head parity {parity} exceeds {PARITY_LIMIT}")
    files = {"model": f"{modalities[0]}_head.onnx", **{f"{m}_head": f"{m}_head.onnx" for m in modalities},
             **({"dvector": "dvector.onnx"} if "voice" in modalities else {}),
             "minilm": "minilm.onnx", "tokenizer": "tokenizer.json"}
    main = out / files["model"]
    card = {
        "name": "classifier",
        "version": f"0.1.{file_sha256(main)[:8]}",
        "sha256": file_sha256(main),
        "files": files,
        "file_sha256": {k: file_sha256(out / f) for k, f in files.items() if k != "model"},
        "task": saved["task"],
        "classes": saved["classes"],
        "modalities": modalities,
        "io": {"sample_rate": 16000, "dims": saved["dims"]},
        "fusion": ("mean of the voice and text probabilities; voice alone when there is no transcript"
                   if len(modalities) == 2 else f"{modalities[0]} only: the training manifest had no "
                   f"{'transcripts' if modalities[0] == 'voice' else 'audio'} to train the other on"),
        "class_participants": saved.get("class_participants", {}),
        "chosen": saved["chosen"],
        "evaluation": {"method": "nested cross-validation grouped by participant (participant-level scores)",
                       **saved["evaluation"]},
        "data": {"manifest": saved["manifest"], "demo_cohort": is_demo_cohort(Path(saved["manifest"])),
                 "recordings": saved["recordings"],
                 "participants": saved["participants"], "with_transcript": saved["with_transcript"]},
        "recipe": saved["recipe"],
        "parity": {"heads_max_abs": parity, "limit": PARITY_LIMIT, "passed": True,
                   "encoders": json.loads((encoders / "export.json").read_text())
                   if (encoders / "export.json").exists() else "not recorded"},
        "intended_use": INTENDED_USE + (DEMO_COHORT_USE if is_demo_cohort(Path(saved["manifest"])) else ""),
        "git_commit": git_commit(),
    }
    write_card(out, card)
    if register:
        from export.register import register as store_register

        card["bentoml_tag"] = store_register(out)
    return card


def add_arguments_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="training run (model.joblib, features.npz); default: the newest under runs/classifier")
    add_destination_arguments(parser, "classifier", "ONNX encoders and heads + card.json")


def run_export(args: argparse.Namespace) -> int:
    run_dir = args.run_dir or newest_run(RUNS, "model.joblib")
    if run_dir is None or not (run_dir / "model.joblib").exists():
        print(f"no trained classifier in {run_dir or RUNS}: run `hark train classifier` first")
        return 2
    args.out, register = destination(args, "classifier")
    card = export(run_dir, args.out, register=register)
    print(f"exported {run_dir} to {args.out} ({card['task']}: {', '.join(card['classes'])}; "
          f"{' + '.join(card['modalities'])}; head parity {max(card['parity']['heads_max_abs'].values()):.1e})")
    print(json.dumps({k: round(v["macro_f1"], 3) for k, v in card["evaluation"].items() if isinstance(v, dict)}))
    return 0
