"""Extractor checkpoint -> `artifacts/extractor/` (three ONNX graphs and card.json), registered in BentoML.

`hark export extractor [--checkpoint runs/extractor/last.pt] [--out artifacts/extractor]`

Graphs: `enroll.onnx` (enrollment mel windows -> unit embeddings), `extract.onnx` (a whole binaural
file and an embedding -> the target's image at both ears) and `extract_step.onnx` (one 8 ms chunk
with explicit state: what streams). Parity with torch, and of the step graph run chunk by chunk
against the whole-file graph, is measured here and recorded in the card; the export refuses a
model that misses either by more than 1e-4.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from export import onnx_export
from export.destination import destination
from export.onnx_export import git_commit, store_half, write_card
from training.onnx_graph import export_onnx
from models.extractor import Extractor, ExtractorConfig, ExtractorStep
from core.extractor_enroll import enrollment_mels

PARITY_LIMIT = 1e-4
FILES = {"enroll": "enroll.onnx", "extract": "extract.onnx", "extract_step": "extract_step.onnx"}


def load_checkpoint(path: Path) -> tuple[Extractor, dict]:
    """The model of a training checkpoint, in float32 eval mode."""
    return onnx_export.load_float32(path, lambda config: Extractor(ExtractorConfig(**config)))


def step_state(cfg: ExtractorConfig, batch: int = 1) -> dict[str, np.ndarray]:
    """The step graph's zero state, by input name."""
    return {k: v.numpy() for k, v in Extractor(cfg).zero_state(batch).items()}


def export_graphs(model: Extractor, out: Path) -> dict[str, int]:
    """Write the three graphs; returns what fp16 storage converted (lossless by construction)."""
    cfg = model.cfg
    mels = torch.zeros(2, 160, cfg.enroll_features)
    mixture = torch.zeros(1, 2, 1000)  # not a whole number of hops: the shape arithmetic is traced
    embedding = torch.zeros(1, cfg.embed_dim)
    state = {k: torch.from_numpy(v) for k, v in step_state(cfg).items()}
    # The exporter warns that RNNs traced with zero initial states may not generalise to other
    # batch sizes; they do here (the RNN ops get no initial state, which ONNX defines as zeros),
    # and tests/extractor/test_extractor_export.py runs the graphs at other batches and lengths.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size other than 1")
        export_onnx(model.enroll, (mels,), out / FILES["enroll"], ["mels"], ["embedding"],
                    {"mels": {0: "windows", 1: "frames"}, "embedding": {0: "windows"}})
        export_onnx(model, (mixture, embedding), out / FILES["extract"], ["mixture", "embedding"],
                    ["output"], {"mixture": {0: "batch", 2: "samples"}, "embedding": {0: "batch"},
                                 "output": {0: "batch", 2: "samples"}})
        export_onnx(ExtractorStep(model), (torch.zeros(1, 2, cfg.hop), embedding, *state.values()),
                    out / FILES["extract_step"], ["chunk", "embedding", *state],
                    ["output", "next_input_tail", "next_output_tail", "next_hidden"],
                    {"chunk": {0: "batch"}, "embedding": {0: "batch"}, "input_tail": {0: "batch"},
                     "output_tail": {0: "batch"}, "hidden": {1: "batch"}, "output": {0: "batch"},
                     "next_input_tail": {0: "batch"}, "next_output_tail": {0: "batch"}, "next_hidden": {1: "batch"}})
    converted = {"converted": 0, "kept_float32": 0}
    for name in FILES.values():  # only weights that fp16 holds exactly: parity is unchanged
        for k, v in store_half(out / name).items():
            converted[k] += v
    return converted


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # one 8 ms frame per call: threads only add synchronisation
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """The parity check runs the step graph frame by frame: tiny matmuls, where torch's thread
    pool costs more than it saves (1000x on a busy machine, whose spinning threads wait for cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def stream_onnx(session: ort.InferenceSession, cfg: ExtractorConfig, mixture: np.ndarray,
                embedding: np.ndarray) -> np.ndarray:
    """(2, N) through the step graph chunk by chunk (zero-padded to whole chunks, plus one zero
    chunk to release the look-ahead), shifted back by the look-ahead: (2, N) like the offline graph."""
    n = mixture.shape[1]
    padded = np.pad(mixture, ((0, 0), (0, -(-n // cfg.hop) * cfg.hop + cfg.hop - n)))
    state, outputs = step_state(cfg), []
    for start in range(0, padded.shape[1], cfg.hop):
        y, *new = session.run(None, {"chunk": padded[None, :, start:start + cfg.hop], "embedding": embedding[None],
                                     **state})
        state = dict(zip(state, new))
        outputs.append(y[0])
    return np.concatenate(outputs, axis=1)[:, cfg.lookahead:cfg.lookahead + n]


def parity_report(model: Extractor, out: Path, mixture: np.ndarray, enrollment: np.ndarray) -> dict:
    """torch vs ONNX for each graph, and the step graph streamed vs the offline graph."""
    cfg = model.cfg
    mixture = mixture.astype(np.float32)
    sessions = {k: _session(out / f) for k, f in FILES.items()}
    mels = enrollment_mels(enrollment)
    windows = sessions["enroll"].run(None, {"mels": mels})[0]
    mean = windows.mean(0)
    embedding = (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)

    offline = sessions["extract"].run(None, {"mixture": mixture[None], "embedding": embedding[None]})[0][0]
    streamed = stream_onnx(sessions["extract_step"], cfg, mixture, embedding)
    # The torch step graph over the first second: enough to catch a state wired wrongly.
    step, state = ExtractorStep(model), {k: torch.from_numpy(v) for k, v in step_state(cfg).items()}
    step_err = 0.0
    with torch.no_grad():
        want_windows = model.enroll(torch.from_numpy(mels)).numpy()
        want = model(torch.from_numpy(mixture[None]), torch.from_numpy(embedding[None])).numpy()[0]
        e = torch.from_numpy(embedding[None])
        onnx_state = step_state(cfg)
        for start in range(0, min(mixture.shape[1], cfg.sample_rate) // cfg.hop * cfg.hop, cfg.hop):
            chunk = mixture[None, :, start:start + cfg.hop]
            got = sessions["extract_step"].run(None, {"chunk": chunk, "embedding": embedding[None], **onnx_state})
            ref = step(torch.from_numpy(chunk), e, *state.values())
            step_err = max(step_err, *(float(np.abs(g - r.numpy()).max()) for g, r in zip(got, ref)))
            onnx_state, state = dict(zip(onnx_state, got[1:])), dict(zip(state, ref[1:]))
    errors = {
        "enroll_max_abs": float(np.abs(windows - want_windows).max()),
        "extract_max_abs": float(np.abs(offline - want).max()),
        "extract_step_max_abs": step_err,
        "stream_max_abs": float(np.abs(streamed - offline).max()),
    }
    return {**errors, "limit": PARITY_LIMIT, "passed": max(errors.values()) <= PARITY_LIMIT,
            "seconds": mixture.shape[1] / cfg.sample_rate, "enroll_seconds": enrollment.shape[1] / cfg.sample_rate,
            "stream_chunk_ms": 1000 * cfg.hop / cfg.sample_rate,
            "output_rms": float(np.sqrt(np.mean(np.square(offline))))}


def export(checkpoint: Path, out: Path, mixture: np.ndarray | None = None, enrollment: np.ndarray | None = None,
           register: bool = True) -> dict:
    """Export, check and describe one checkpoint; `mixture` / `enrollment` are (2, N) 16 kHz
    parity signals (default: held-out speech placed in a simple binaural scene)."""
    model, state = load_checkpoint(checkpoint)
    cfg = model.cfg
    out.mkdir(parents=True, exist_ok=True)
    if mixture is None or enrollment is None:
        mixture, enrollment = _parity_scene(cfg.sample_rate)
    # Graphs are written beside `out` and moved in only once they pass, so a refused export
    # leaves the previous artifact (graphs and card) as it was.
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out.parent))
    try:
        with _torch_threads(1):
            storage = export_graphs(model, staging)
            par = parity_report(model, staging, mixture, enrollment)
        if not par["passed"]:
            raise RuntimeError(f"extractor export refused: ONNX differs from torch, or streaming from offline, "
                               f"by more than {PARITY_LIMIT:g}: {par}")
        for name in FILES.values():
            os.replace(staging / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    card = {
        **onnx_export.graphs_card("extractor", state["step"], out, FILES, model="extract"),
        "io": {"sample_rate": cfg.sample_rate, "channels": 2, "hop": cfg.hop, "window": cfg.window,
               "lookahead": cfg.lookahead, "embed_dim": cfg.embed_dim, "enroll_features": cfg.enroll_features,
               "state_shapes": {k: list(v.shape) for k, v in step_state(cfg).items()}},
        "latency_ms": 1000 * (cfg.hop + cfg.lookahead) / cfg.sample_rate,
        "latency_note": f"algorithmic: one {1000 * cfg.hop / cfg.sample_rate:g} ms chunk plus the "
                        f"{1000 * cfg.lookahead / cfg.sample_rate:g} ms look-ahead of the "
                        f"{1000 * cfg.window / cfg.sample_rate:g} ms synthesis window; the separator is causal",
        "config": {"model": cfg.to_dict(), "recipe": state.get("recipe", {})},
        "data": state.get("data_summary", {}),
        "training": onnx_export.training_card(
            state, checkpoint, parameters=sum(p.numel() for p in model.parameters()),
            separator_parameters=sum(p.numel() for p in model.separator.parameters()),
            enroll_parameters=sum(p.numel() for p in model.enroll.parameters())),
        "storage": {"weights": "float32", "fp16_lossless": storage},
        "parity": par,
        "git_commit": git_commit(),
    }
    write_card(out, card)
    _write_examples(out / "examples")
    if register:
        from export.register import register as store_register

        card["bentoml_tag"] = store_register(out)
    return card


def _write_examples(out: Path) -> None:
    """The demo's example scenes (TTS voices through KEMAR). They need flite or espeak-ng and the
    KEMAR SOFA file: without them the model still exports, and the demo offers uploads only."""
    from training.data.extractor_examples import write_examples

    try:
        write_examples(out)
    except (FileNotFoundError, RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"warning: demo examples not written ({exc})")


def _parity_scene(sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(mixture, enrollment), 6 s and 3 s: a talker in front (same at both ears) and a quieter one
    to the side (delayed and attenuated at one ear); held-out speech when the corpus is here,
    else voiced synthetic signals."""
    from training.data.speech import DEFAULT_SOURCES, load, normalise, split_files

    try:
        files = split_files(DEFAULT_SOURCES, "heldout")
    except FileNotFoundError:
        files = []
    n = 6 * sample_rate
    if len(files) >= 2:
        target, other = (np.resize(normalise(load(f)), n + 3 * sample_rate) for f in files[:2])
    else:
        t = np.arange(n + 3 * sample_rate) / sample_rate
        voice = lambda f0: sum(np.sin(2 * np.pi * k * np.cumsum(f0) / sample_rate) / k for k in range(1, 20))
        target = normalise(voice(120 + 30 * np.sin(2 * np.pi * 0.7 * t)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)))
        other = normalise(voice(210 + 40 * np.sin(2 * np.pi * 0.4 * t)) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t)))
    side = 0.5 * np.stack([other[8:n + 8], 0.6 * other[:n]])
    mixture = target[None, :n] + side + 0.003 * np.random.default_rng(0).standard_normal((2, n))
    noise = 0.003 * np.random.default_rng(1).standard_normal((2, 3 * sample_rate))
    enrollment = np.stack([target[n:], target[n:]]) + noise
    return mixture.astype(np.float32), enrollment.astype(np.float32)


def add_arguments_export(parser: argparse.ArgumentParser) -> None:
    onnx_export.add_checkpoint_arguments(parser, "extractor", "three ONNX graphs + card.json")


def run_export(args: argparse.Namespace) -> int:
    if onnx_export.missing_checkpoint(args, "extractor"):
        return 2
    args.out, register = destination(args, "extractor")
    card = export(args.checkpoint, args.out, register=register)
    p = card["parity"]
    torch_err = max(p["enroll_max_abs"], p["extract_max_abs"], p["extract_step_max_abs"])
    print(f"exported {args.out} (torch parity {torch_err:.1e}, "
          f"stream {p['stream_max_abs']:.1e}, latency {card['latency_ms']:g} ms)")
    return 0
