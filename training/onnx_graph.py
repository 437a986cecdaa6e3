"""torch module -> ONNX graph, and the check that onnxruntime computes what torch does.

Below export/ because training needs it too: the classifier's pretrained feature encoders are
converted before training computes features with them (training/classifier_encoders.py).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch


def export_onnx(module: torch.nn.Module, example: tuple[torch.Tensor, ...], path: Path,
                input_names: Sequence[str], output_names: Sequence[str], dynamic_axes: dict,
                opset: int = 17) -> Path:
    """TorchScript-based export: the graphs here are plain convs and reshapes, and this path
    gives stable, constant-folded graphs with named dynamic axes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    module.eval()
    with torch.no_grad():
        torch.onnx.export(module, example, str(path), input_names=list(input_names),
                          output_names=list(output_names), dynamic_axes=dynamic_axes,
                          opset_version=opset, do_constant_folding=True, dynamo=False)
    return path


def parity(module: torch.nn.Module, onnx_path: Path, inputs: dict[str, np.ndarray],
           output_names: Sequence[str]) -> dict[str, float]:
    """Max abs difference per output between torch and onnxruntime (CPU) on the same inputs."""
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(list(output_names), inputs)
    with torch.no_grad():
        want = module(*[torch.from_numpy(v) for v in inputs.values()])
    want = want if isinstance(want, (tuple, list)) else (want,)
    return {name: float(np.abs(g - w.numpy()).max()) for name, g, w in zip(output_names, got, want)}
