"""Family-agnostic export steps: checkpoint -> torch module, model card, fp16 weights (the ONNX
conversion and its parity check are training/onnx_graph.py's)."""
from __future__ import annotations

import argparse
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from core.cards import file_sha256
from export.destination import add_destination_arguments

Module = TypeVar("Module", bound=torch.nn.Module)


def add_checkpoint_arguments(parser: argparse.ArgumentParser, family: str, contents: str,
                             checkpoint_help: str = "training checkpoint to export") -> None:
    """--checkpoint and the destination arguments (export/destination.py) of `hark export FAMILY`
    for a family trained from one checkpoint; `contents` says what the export holds."""
    parser.add_argument("--checkpoint", type=Path, default=Path(f"runs/{family}/last.pt"), help=checkpoint_help)
    add_destination_arguments(parser, family, contents)


def missing_checkpoint(args: argparse.Namespace, family: str) -> bool:
    """Whether args.checkpoint is absent; if so says what to run first (the export then exits 2)."""
    if args.checkpoint.exists():
        return False
    print(f"no checkpoint at {args.checkpoint}: run `hark train {family}` first")
    return True


def load_float32(path: Path, build: Callable[[dict[str, Any]], Module]) -> tuple[Module, dict[str, Any]]:
    """(model in eval mode, the checkpoint's state) of a training checkpoint; `build` makes the
    model from the checkpoint's model_config. The weights come out float32 whatever the checkpoint
    holds (a slim checkpoint is float16)."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    model = build(state["model_config"])
    own = model.state_dict()
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state["model"].items()})
    return model.eval(), state


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def graphs_card(name: str, step: int, out: Path, files: dict[str, str], model: str) -> dict[str, Any]:
    """The identity of a model of several graphs, at the head of its card: the version from the
    training step, and the hashes the model store checks (the card's `sha256` is `model`'s graph's)."""
    return {
        "name": name,
        "version": f"0.1.{step}",
        "sha256": file_sha256(out / files[model]),
        "files": {"model": files[model], **files},
        "file_sha256": {k: file_sha256(out / f) for k, f in files.items()},
    }


def training_card(state: dict, checkpoint: Path, **counts: int) -> dict[str, Any]:
    """The card's `training` section: how long the checkpoint trained, in which runs, and the
    parameter `counts` the exporter measured."""
    return {"steps": state["step"], "epochs": state.get("epoch"), "wall_s": round(state.get("wall_s", 0.0), 1),
            **counts, "stages": state.get("stages", []), "checkpoint": str(checkpoint)}


def write_card(out_dir: Path, card: dict) -> Path:
    """Merge into an existing card, so the eval section written later by `hark eval` survives
    a re-export of the same model; a different model drops it."""
    path = out_dir / "card.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    if old.get("sha256") != card.get("sha256"):
        old.pop("eval", None)
    merged = {**old, **card, "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path.write_text(json.dumps(merged, indent=2) + "\n")
    return path


def store_half(path: Path, min_elements: int = 4096) -> dict[str, int]:
    """Store the large float32 weights that fp16 represents exactly as fp16, each behind a Cast.

    Lossless by construction (a weight is converted only if it round-trips), so parity is
    unchanged; onnxruntime folds the Casts when it loads the graph, so it computes in float32 at
    the same speed. Weights trained or saved in half precision halve the file.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    converted, kept = 0, 0
    for init in list(graph.initializer):
        w = numpy_helper.to_array(init)
        if w.dtype != np.float32 or w.size < min_elements:
            continue
        half = w.astype(np.float16)
        if not np.array_equal(half.astype(np.float32), w):
            kept += 1
            continue
        graph.initializer.remove(init)
        graph.initializer.append(numpy_helper.from_array(half, f"{init.name}__f16"))
        graph.node.insert(0, helper.make_node("Cast", [f"{init.name}__f16"], [init.name], to=TensorProto.FLOAT))
        converted += 1
    onnx.save(model, str(path))
    return {"converted": converted, "kept_float32": kept}
