"""The extractor as it ships: model card + three ONNX graphs, run through onnxruntime, no torch.

The HTTP service, the WebSocket stream, the demo and the benchmarks all call this class, so what
is measured is what is served. A listener is enrolled once (`enroll`: a binaural clip of them
talking -> a 256-dim unit embedding); the embedding then conditions whole-file extraction
(`extract`) or a stream of 8 ms chunks (`stream`), whose output lags its input by the 4 ms
look-ahead and otherwise equals `extract`.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from core import runtime
from core.extractor_enroll import enrollment_mels
from core.cards import file_sha256, read_card

log = logging.getLogger("hark.extractor")

SAMPLE_RATE = 16000
HOP = 128  # 8 ms: the streaming chunk
LOOKAHEAD = 64  # 4 ms: how far the stream's output lags its input
EMBED_DIM = 256
ENROLL_BATCH = 32  # enrollment windows per encoder call: bounds memory on long clips
# The goal: "Look Once to Hear" (CHI 2024) reports 7.01 dB SI-SNRi with a noisy enrollment.
PAPER_SI_SNRI_DB = 7.01
STATE = ("input_tail", "output_tail", "hidden")  # step graph inputs; it returns them as next_*, in this order


def _binaural(audio: np.ndarray, what: str) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 2 or audio.shape[0] != 2:
        raise ValueError(f"{what} must be binaural audio shaped (2, samples), got {audio.shape}")
    return audio


def _embedding(embedding: np.ndarray) -> np.ndarray:
    embedding = np.asarray(embedding, dtype=np.float32).reshape(-1)
    if embedding.shape != (EMBED_DIM,) or not np.all(np.isfinite(embedding)):
        raise ValueError(f"the embedding must be {EMBED_DIM} finite numbers (from enroll), got {embedding.shape}")
    return embedding


def quality(card: dict[str, Any]) -> dict[str, Any]:
    """What the model achieves today, from its card's `evaluation` (written by `hark eval
    extractor`), beside the paper's figure: said wherever the model is offered, so nobody takes
    it for a working target speech hearing system before it is one."""
    ev = card.get("evaluation") or {}
    got = ev.get("heldout_si_snri_db")
    paper = f"{PAPER_SI_SNRI_DB:.2f} dB in 'Look Once to Hear' (CHI 2024), the goal"
    if not isinstance(got, (int, float)):
        summary = (f"Not yet measured: this model's card holds no held-out SI-SNRi (run `hark eval extractor`); "
                   f"{paper}.")
    else:
        where = f"on {ev['scenes']} held-out scenes" if ev.get("scenes") else "on held-out scenes"
        verdict = "It reaches the goal." if got >= PAPER_SI_SNRI_DB else "It does not reach the goal yet."
        summary = (f"Measured: {got:+.2f} dB SI-SNRi {where} with a noisy enrollment, against "
                   f"{paper}. {verdict}")
    return {"heldout_si_snri_db": got if isinstance(got, (int, float)) else None,
            "paper_si_snri_db": PAPER_SI_SNRI_DB, "summary": summary}


def card_quality(model_dir: Path | str) -> dict[str, Any]:
    """quality() of the card in `model_dir`, without loading the graphs."""
    return quality(read_card(model_dir))


class ExtractorModel:
    """Loads `model_dir` (card.json, enroll.onnx, extract.onnx, extract_step.onnx)."""

    def __init__(self, model_dir: Path | str, threads: int | None = None, *, provider: str | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.card: dict[str, Any] = read_card(self.model_dir)
        io = self.card["io"]
        want = {"sample_rate": SAMPLE_RATE, "hop": HOP, "lookahead": LOOKAHEAD, "embed_dim": EMBED_DIM}
        if any(int(io[k]) != v for k, v in want.items()):  # the constants above are the public contract
            raise ValueError(f"{self.model_dir}: card io {io} does not match this code's {want}")
        self.name: str = self.card.get("name", "extractor")
        self.version: str = str(self.card.get("version", "unknown"))
        self.latency_ms: float = float(self.card["latency_ms"])
        self.quality: dict[str, Any] = quality(self.card)
        files = self.card["files"]
        # Like the codec and the model store: the model is identified by its main graph's hash.
        self.sha256: str = file_sha256(self.model_dir / files["model"])
        if self.card.get("sha256") and self.card["sha256"] != self.sha256:
            log.warning("%s: card sha256 does not match %s; serving it anyway", self.model_dir, files["model"])
        # Whole-input graphs without the arena (core/runtime.py); the 8 ms step keeps it.
        self.sessions = {key: runtime.create_session(self.model_dir / files[key], provider=provider,
                                                     intra_op_threads=threads, arena=key == "extract_step")
                         for key in ("enroll", "extract", "extract_step")}
        self.provider = runtime.active_provider(self.sessions["extract"])
        self.state_shapes: dict[str, list[int]] = io["state_shapes"]
        self._lock = threading.Lock()

    def run(self, key: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self._lock:
            return self.sessions[key].run(None, feeds)

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "sha256": self.sha256, "provider": self.provider,
                "latency_ms": self.latency_ms, "sample_rate": SAMPLE_RATE, "chunk_samples": HOP,
                "lookahead_samples": LOOKAHEAD, "quality": self.quality}

    def enroll(self, binaural: np.ndarray) -> np.ndarray:
        """(2, N) float32 at 16 kHz of the listener's target talking -> (256,) float32 unit vector:
        the normalised mean of the encoder's embeddings of the clip's 1.6 s windows."""
        mels = enrollment_mels(_binaural(binaural, "the enrollment"))
        windows = np.concatenate([self.run("enroll", {"mels": mels[i:i + ENROLL_BATCH]})[0]
                                  for i in range(0, len(mels), ENROLL_BATCH)])
        mean = windows.mean(axis=0)
        return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)

    def extract(self, mixture: np.ndarray, embedding: np.ndarray) -> np.ndarray:
        """(2, N) float32 mixture at 16 kHz -> (2, N) float32, only the enrolled talker, aligned
        with the input. The whole file in one call: the separator is recurrent, and cutting it
        into segments would change the result."""
        mixture = _binaural(mixture, "the mixture")
        embedding = _embedding(embedding)
        if mixture.shape[1] == 0:
            return np.zeros((2, 0), dtype=np.float32)
        return self.run("extract", {"mixture": mixture[None], "embedding": embedding[None]})[0][0]

    def stream(self, embedding: np.ndarray) -> ExtractorStream:
        return ExtractorStream(self, _embedding(embedding))


class ExtractorStream:
    """Chunks of whole 8 ms hops in, as many samples out, lagging the input by LOOKAHEAD.

    All process() outputs, then flush(), less their first LOOKAHEAD samples, equal
    `ExtractorModel.extract` of all the input (within 1e-4)."""

    def __init__(self, model: ExtractorModel, embedding: np.ndarray):
        self.model = model
        self.embedding = embedding[None]
        self.state = {k: np.zeros(model.state_shapes[k], dtype=np.float32) for k in STATE}
        self.flushed = False

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """(2, k * 128) -> (2, k * 128); ValueError for any other shape."""
        chunk = _binaural(chunk, "a stream chunk")
        if chunk.shape[1] % HOP:
            raise ValueError(f"a stream chunk must be a whole number of {HOP}-sample hops "
                             f"({1000 * HOP // SAMPLE_RATE} ms), got {chunk.shape[1]} samples")
        if self.flushed:
            raise RuntimeError("this stream was flushed; start a new one")
        outputs = [self._step(chunk[:, i:i + HOP]) for i in range(0, chunk.shape[1], HOP)]
        return np.concatenate(outputs, axis=1) if outputs else np.zeros((2, 0), dtype=np.float32)

    def flush(self) -> np.ndarray:
        """The last LOOKAHEAD samples, (2, 64): what a silent next chunk would release. Ends the stream."""
        if self.flushed:
            raise RuntimeError("this stream was already flushed")
        tail = self._step(np.zeros((2, HOP), dtype=np.float32))[:, :LOOKAHEAD]
        self.flushed = True
        return tail

    def _step(self, chunk: np.ndarray) -> np.ndarray:
        output, *state = self.model.run("extract_step", {"chunk": chunk[None], "embedding": self.embedding,
                                                         **self.state})
        self.state = dict(zip(STATE, state))
        return output[0]
