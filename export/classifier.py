"""Classifier run -> `artifacts/classifier/` (feature encoders, per-modality heads, card.json).

`hark export classifier [--run-dir runs/classifier] [--out artifacts/classifier]`

The whole inference path ships as ONNX: `dvector.onnx` and `minilm.onnx` (+ `tokenizer.json`)
compute the learned features, eGeMAPS comes from opensmile, and `voice_head.onnx` /
`text_head.onnx` (scikit-learn pipelines through skl2onnx) map features to probabilities.
Parity of the heads against scikit-learn on the training features is recorded in the card.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from export.onnx_export import git_commit, write_card
from core.cards import file_sha256

PARITY_LIMIT = 1e-4
ENCODER_FILES = ("dvector.onnx", "minilm.onnx", "tokenizer.json")
INTENDED_USE = (
    "Research tool: it reproduces a published speech- and text-based classification pipeline so that "
    "researchers can run it on their own, consented data. It is not a diagnostic device and must not "
    "be used to diagnose, screen or make decisions about any person. The shipped model is trained on a "
    "SYNTHETIC cohort (TTS voices, template transcripts, labels with planted effects): its scores say "
    "nothing about any real condition."
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
    for name in ENCODER_FILES:
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
    files = {"model": "voice_head.onnx", "voice_head": "voice_head.onnx", "text_head": "text_head.onnx",
             "dvector": "dvector.onnx", "minilm": "minilm.onnx", "tokenizer": "tokenizer.json"}
    card = {
        "name": "classifier",
        "version": f"0.1.{file_sha256(out / 'voice_head.onnx')[:8]}",
        "sha256": file_sha256(out / "voice_head.onnx"),
        "files": files,
        "file_sha256": {k: file_sha256(out / f) for k, f in files.items() if k != "model"},
        "task": saved["task"],
        "classes": saved["classes"],
        "io": {"sample_rate": 16000, "dims": saved["dims"]},
        "fusion": "mean of the voice and text probabilities; voice alone when there is no transcript",
        "chosen": saved["chosen"],
        "evaluation": {"method": "nested cross-validation grouped by participant (participant-level scores)",
                       **saved["evaluation"]},
        "data": {"manifest": saved["manifest"], "recordings": saved["recordings"],
                 "participants": saved["participants"], "with_transcript": saved["with_transcript"]},
        "recipe": saved["recipe"],
        "parity": {"heads_max_abs": parity, "limit": PARITY_LIMIT, "passed": True,
                   "encoders": json.loads((encoders / "export.json").read_text())
                   if (encoders / "export.json").exists() else "not recorded"},
        "intended_use": INTENDED_USE,
        "git_commit": git_commit(),
    }
    write_card(out, card)
    if register:
        from export.register import register as store_register

        card["bentoml_tag"] = store_register(out)
    return card


def add_arguments_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", type=Path, default=Path("runs/classifier"),
                        help="training run (model.joblib, features.npz, encoders/)")
    parser.add_argument("--out", type=Path, default=Path("artifacts/classifier"), help="artifact directory")
    parser.add_argument("--no-register", action="store_true", help="don't put the result in the BentoML model store")


def run_export(args: argparse.Namespace) -> int:
    if not (args.run_dir / "model.joblib").exists():
        print(f"no trained classifier in {args.run_dir}: run `hark train classifier` first")
        return 2
    card = export(args.run_dir, args.out, register=not args.no_register)
    print(f"exported {args.out} ({card['task']}: {', '.join(card['classes'])}; head parity "
          f"{max(card['parity']['heads_max_abs'].values()):.1e})")
    print(json.dumps({k: round(v["macro_f1"], 3) for k, v in card["evaluation"].items() if isinstance(v, dict)}))
    return 0
