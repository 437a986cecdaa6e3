"""Codec checkpoint -> `artifacts/codec/` (four ONNX graphs and card.json), registered in BentoML.

`hark export codec [--checkpoint runs/codec/last.pt] [--out artifacts/codec]`

Graphs: `encoder.onnx` (audio -> int64 codes), `decoder.onnx` (codes -> audio), and their
streaming forms `encoder_step.onnx` / `decoder_step.onnx` with explicit state tensors
(models/codec_stream.py). Parity with torch, and of streamed against offline output, is measured
here on speech and recorded in the card.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from export import onnx_export
from export.destination import destination
from export.onnx_export import git_commit, store_half, write_card
from training.onnx_graph import export_onnx
from models.codec import Codec, CodecConfig
from models.codec_stream import DecoderGraph, DecoderStep, EncoderGraph, EncoderStep

PARITY_LIMIT = 1e-4
FILES = {"encoder": "encoder.onnx", "decoder": "decoder.onnx",
         "encoder_step": "encoder_step.onnx", "decoder_step": "decoder_step.onnx"}


def load_checkpoint(path: Path) -> tuple[Codec, dict]:
    """The generator of a training checkpoint (full or slim), in float32 eval mode."""
    return onnx_export.load_float32(path, lambda config: Codec(CodecConfig(**config)))


def _state_names(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def export_graphs(model: Codec, out: Path) -> dict[str, list[str]]:
    """Write the four graphs; returns each step graph's state input names."""
    cfg = model.cfg
    frames = 8
    audio = torch.zeros(1, frames * cfg.frame_hop)
    codes = torch.zeros(1, frames, cfg.groups, cfg.stages, dtype=torch.long)
    export_onnx(EncoderGraph(model), (audio,), out / FILES["encoder"], ["audio"], ["codes"],
                {"audio": {0: "batch", 1: "samples"}, "codes": {0: "batch", 1: "frames"}})
    export_onnx(DecoderGraph(model), (codes,), out / FILES["decoder"], ["codes"], ["audio"],
                {"codes": {0: "batch", 1: "frames"}, "audio": {0: "batch", 1: "samples"}})
    names = {}
    for key, step, x, x_name, y_name in (("encoder_step", EncoderStep(model), audio, "audio", "codes"),
                                         ("decoder_step", DecoderStep(model), codes, "codes", "audio")):
        state = step.initial_state(1)
        ins, outs = _state_names("state_in_", len(state)), _state_names("state_out_", len(state))
        export_onnx(step, (x, *state), out / FILES[key], [x_name, *ins], [y_name, *outs],
                    {x_name: {1: "frames" if x_name == "codes" else "samples"},
                     y_name: {1: "frames" if y_name == "codes" else "samples"}})
        names[key] = ins
    for name in FILES.values():  # slim checkpoints hold fp16 weights: half the bytes, same numbers
        store_half(out / name)
    return names


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def parity_report(model: Codec, out: Path, audio: np.ndarray, chunk_frames: int = 5) -> dict:
    """torch vs ONNX (offline graphs), and ONNX streamed in chunks vs ONNX offline."""
    cfg = model.cfg
    audio = audio[:len(audio) // cfg.frame_hop * cfg.frame_hop].astype(np.float32)[None]
    enc, dec = _session(out / FILES["encoder"]), _session(out / FILES["decoder"])
    codes = enc.run(None, {"audio": audio})[0]
    with torch.no_grad():
        want_codes = model.encode(torch.from_numpy(audio)).numpy()
        want_audio = model.decode(torch.from_numpy(codes)).numpy()
    offline = dec.run(None, {"codes": codes})[0]
    low = codes.copy()
    low[..., 1:] = cfg.codebook_size  # 1 kbps: later stages not sent
    with torch.no_grad():
        want_low = model.decode(torch.from_numpy(codes[..., :1])).numpy()
    low_err = float(np.abs(dec.run(None, {"codes": low})[0] - want_low).max())

    enc_step, dec_step = _session(out / FILES["encoder_step"]), _session(out / FILES["decoder_step"])
    e_state = [s.numpy() for s in EncoderStep(model).initial_state(1)]
    d_state = [s.numpy() for s in DecoderStep(model).initial_state(1)]
    streamed_codes, streamed = [], []
    step = chunk_frames * cfg.frame_hop
    for start in range(0, audio.shape[1], step):
        c, *e_state = enc_step.run(None, {"audio": audio[:, start:start + step],
                                          **dict(zip(_state_names("state_in_", len(e_state)), e_state))})
        y, *d_state = dec_step.run(None, {"codes": c, **dict(zip(_state_names("state_in_", len(d_state)), d_state))})
        streamed_codes.append(c)
        streamed.append(y)
    overlap = cfg.n_fft - cfg.hop
    stream_audio = np.concatenate([*streamed, d_state[-1]], axis=1)[:, overlap:]
    stream_codes = np.concatenate(streamed_codes, axis=1)
    errors = {
        "encoder_code_agreement": float((codes == want_codes).mean()),
        "decoder_max_abs": float(np.abs(offline - want_audio).max()),
        "decoder_1kbps_max_abs": low_err,
        "stream_code_agreement": float((stream_codes == codes).mean()),
        "stream_max_abs": float(np.abs(stream_audio - offline).max()),
    }
    passed = (errors["encoder_code_agreement"] == 1.0 and errors["stream_code_agreement"] == 1.0
              and max(errors["decoder_max_abs"], errors["decoder_1kbps_max_abs"], errors["stream_max_abs"])
              <= PARITY_LIMIT)
    return {**errors, "limit": PARITY_LIMIT, "passed": passed, "seconds": audio.shape[1] / cfg.sample_rate,
            "stream_chunk_ms": 1000 * step / cfg.sample_rate}


def export(checkpoint: Path, out: Path, parity_audio: np.ndarray | None = None, register: bool = True) -> dict:
    model, state = load_checkpoint(checkpoint)
    cfg = model.cfg
    out.mkdir(parents=True, exist_ok=True)
    state_names = export_graphs(model, out)
    if parity_audio is None:
        parity_audio = _parity_speech(cfg.sample_rate)
    par = parity_report(model, out, parity_audio)
    if not par["passed"]:
        raise RuntimeError(f"ONNX parity failed: {par}")
    critic = sum(v.numel() for v in state.get("critic", {}).values())
    card = {
        **onnx_export.graphs_card("codec", state["step"], out, FILES, model="decoder"),
        "io": {"sample_rate": cfg.sample_rate, "frame_hop": cfg.frame_hop, "frame_rate": cfg.frame_rate,
               "groups": cfg.groups, "stages": cfg.stages, "codebook_size": cfg.codebook_size,
               "null_code": cfg.codebook_size, "stream_overlap": cfg.n_fft - cfg.hop,
               "state_inputs": state_names},
        "bitrates_kbps": {str(s): cfg.bitrate(s) / 1000 for s in range(1, cfg.stages + 1)},
        "latency_ms": cfg.latency_ms,
        "latency_note": "one 20 ms code frame plus the 10 ms overlap of the synthesis window; "
                        "every layer is causal",
        "config": {"model": cfg.to_dict(), "recipe": state.get("recipe", {})},
        "data": state.get("data_summary", {}),
        "training": onnx_export.training_card(state, checkpoint, critic_parameters=critic,
                                              parameters=sum(p.numel() for p in model.parameters())),
        "parity": par,
        "git_commit": git_commit(),
    }
    write_card(out, card)
    if register:
        from export.register import register as store_register

        card["bentoml_tag"] = store_register(out)
    return card


def _parity_speech(sample_rate: int) -> np.ndarray:
    """A held-out utterance when the shared corpus is here, else a voiced synthetic signal."""
    from training.data.speech import DEFAULT_SOURCES, load, normalise, split_files

    try:
        files = split_files(DEFAULT_SOURCES, "heldout")
    except FileNotFoundError:
        files = []
    if files:
        return normalise(load(files[0]))[:6 * sample_rate]
    t = np.arange(3 * sample_rate) / sample_rate
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    voiced = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / sample_rate) / k for k in range(1, 30))
    return normalise((voiced * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32))


def add_arguments_export(parser: argparse.ArgumentParser) -> None:
    onnx_export.add_checkpoint_arguments(parser, "codec", "four ONNX graphs + card.json",
                                         checkpoint_help="training checkpoint to export (full or slim)")


def run_export(args: argparse.Namespace) -> int:
    if onnx_export.missing_checkpoint(args, "codec"):
        return 2
    args.out, register = destination(args, "codec")
    card = export(args.checkpoint, args.out, register=register)
    p = card["parity"]
    print(f"exported {args.out} (decoder parity {p['decoder_max_abs']:.1e}, stream {p['stream_max_abs']:.1e}, "
          f"latency {card['latency_ms']:.0f} ms)")
    return 0
