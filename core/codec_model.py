"""The codec as it ships: model card + four ONNX graphs, run through onnxruntime, no torch.

The HTTP service, the WebSocket stream, the demo and the benchmarks all call this class, so what
is measured is what is served. Bitrates are prefixes of one code stream: the first residual
stage of every group is the lowest bitrate; a decoder given fewer stages fills the rest with the
card's null code, which decodes to nothing.

Level: the decoder alone comes out quieter than its input (by 1-3 dB at 2 kbps on held-out
speakers, more at 1 kbps, varying by voice). The encoder therefore decodes its own codes, measures
the active level of both (core.audio.active_level_db), and the token file carries the
difference (`gain_db`), which every decode applies: analysis by synthesis, 16 bits per file.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from core import audio as audio_io
from core import runtime
from core.codec_tokens import MAX_GAIN_DB, Tokens
from core.cards import file_sha256, read_card

log = logging.getLogger("hark.codec")


class CodecModel:
    """Loads `model_dir` (card.json + encoder/decoder graphs and their streaming steps)."""

    def __init__(self, model_dir: Path | str, *, provider: str | None = None, threads: int | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.card: dict[str, Any] = read_card(self.model_dir)
        io = self.card["io"]
        self.name: str = self.card.get("name", "codec")
        self.version: str = str(self.card.get("version", "unknown"))
        self.sample_rate: int = int(io["sample_rate"])
        self.frame_hop: int = int(io["frame_hop"])
        self.frame_rate: float = float(io["frame_rate"])
        self.groups, self.stages = int(io["groups"]), int(io["stages"])
        self.codebook_size, self.null_code = int(io["codebook_size"]), int(io["null_code"])
        self.overlap: int = int(io["stream_overlap"])
        self.latency_ms: float = float(self.card["latency_ms"])
        files = self.card["files"]
        self.sha256 = file_sha256(self.model_dir / files["decoder"])
        if self.card.get("sha256") and self.card["sha256"] != self.sha256:
            log.warning("%s: card sha256 does not match decoder.onnx; serving it anyway", self.model_dir)
        # Whole-input graphs without the arena (core/runtime.py); the streaming steps keep it.
        self.sessions = {key: runtime.create_session(self.model_dir / files[key], provider=provider,
                                                     intra_op_threads=threads, arena=key.endswith("_step"))
                         for key in ("encoder", "decoder", "encoder_step", "decoder_step")}
        self.provider = runtime.active_provider(self.sessions["decoder"])
        self.state_inputs: dict[str, list[str]] = io["state_inputs"]
        self._lock = threading.Lock()
        bits = max(1, int(np.ceil(np.log2(self.codebook_size))))
        layout = [self.groups * s * bits * self.frame_rate / 1000 for s in range(1, self.stages + 1)]
        if not np.allclose(self.bitrates_kbps, layout):
            raise ValueError(f"{self.model_dir}/card.json offers {self.bitrates_kbps} kbps, but its codes "
                             f"carry {layout} kbps: a card from another export")

    # --- bitrates -------------------------------------------------------------------------------

    @property
    def bitrates_kbps(self) -> list[float]:
        return card_bitrates_kbps(self.card)

    def stages_for(self, kbps: float) -> int:
        """Residual stages per group for a bitrate the model offers; ValueError otherwise."""
        for stages, rate in enumerate(self.bitrates_kbps, start=1):
            if abs(rate - kbps) < 1e-6:
                return stages
        offered = ", ".join(f"{r:g}" for r in self.bitrates_kbps)
        raise ValueError(f"bitrate {kbps:g} kbps is not offered; choose one of {offered}")

    # --- offline --------------------------------------------------------------------------------

    def _run(self, key: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self._lock:
            return self.sessions[key].run(None, feeds)

    def encode(self, audio: np.ndarray, kbps: float | None = None) -> np.ndarray:
        """Mono float32 audio at `sample_rate` -> codes [frames, groups, stages for kbps] (int64).
        The end is zero-padded to whole frames."""
        stages = self.stages if kbps is None else self.stages_for(kbps)
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        padded = np.pad(audio, (0, (-audio.size) % self.frame_hop))
        if padded.size == 0:
            return np.zeros((0, self.groups, stages), dtype=np.int64)
        return self._run("encoder", {"audio": padded[None]})[0][0, :, :, :stages]

    def full_codes(self, codes: np.ndarray) -> np.ndarray:
        """Codes with fewer stages -> all stages, the missing ones null (decode to nothing)."""
        codes = np.asarray(codes, dtype=np.int64)
        if codes.ndim != 3 or codes.shape[1] != self.groups or not 1 <= codes.shape[2] <= self.stages:
            raise ValueError(f"codes must be [frames, {self.groups}, 1..{self.stages}], not {list(codes.shape)}")
        if codes.size and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(f"codes must lie in [0, {self.codebook_size})")
        fill = np.full(codes.shape[:2] + (self.stages - codes.shape[2],), self.null_code, dtype=np.int64)
        return np.concatenate([codes, fill], axis=2)

    def decode(self, codes: np.ndarray, samples: int | None = None, gain_db: float = 0.0) -> np.ndarray:
        """codes [frames, groups, stages (any prefix)] -> float32 audio, cut to `samples`, with the
        token file's level correction `gain_db` applied."""
        full = self.full_codes(codes)
        if full.shape[0] == 0:
            return np.zeros(0, dtype=np.float32)
        audio = self._run("decoder", {"codes": full[None]})[0][0]
        return apply_gain(audio if samples is None else audio[:samples], gain_db)

    def level_correction_db(self, audio: np.ndarray, decoded: np.ndarray) -> float:
        """The gain that gives `decoded` the active level of `audio` (0 for silence), as stored."""
        return correction_db(audio_io.frame_powers(audio, self.sample_rate),
                             audio_io.frame_powers(decoded, self.sample_rate))

    def code(self, audio: np.ndarray, kbps: float) -> tuple[Tokens, np.ndarray]:
        """(the token file of `audio` at `kbps`, what decoding it gives): the encoder's own decode,
        which measures the level correction, is the decoded audio, so it runs once."""
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        codes = self.encode(audio, kbps)
        raw = self.decode(codes, samples=audio.size)
        gain = self.level_correction_db(audio, raw)
        tokens = Tokens(codes, self.sample_rate, self.frame_rate, self.codebook_size, audio.size, gain)
        return tokens, apply_gain(raw, gain)

    def tokens(self, audio: np.ndarray, kbps: float) -> Tokens:
        return self.code(audio, kbps)[0]

    def reconstruct(self, audio: np.ndarray, kbps: float) -> np.ndarray:
        """Encode at `kbps` and decode: what a listener at the far end hears (same length)."""
        return self.code(audio, kbps)[1]

    def check_tokens(self, tokens: Tokens) -> None:
        """ValueError unless `tokens` were made by a codec with this model's layout."""
        want = (self.sample_rate, self.frame_rate, self.groups, self.codebook_size)
        got = (tokens.sample_rate, tokens.frame_rate, tokens.codes.shape[1], tokens.codebook_size)
        if got != want or tokens.codes.shape[2] > self.stages:
            raise ValueError(
                f"the token file is for {got[2]} groups x {tokens.codes.shape[2]} stages x {got[3]} codes at "
                f"{got[1]:g} frames/s and {got[0]} Hz; this model decodes {self.groups} groups x up to "
                f"{self.stages} stages x {self.codebook_size} codes at {self.frame_rate:g} frames/s and "
                f"{self.sample_rate} Hz")

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "sha256": self.sha256, "provider": self.provider,
                "bitrates_kbps": self.bitrates_kbps, "latency_ms": self.latency_ms}

    # --- streaming ------------------------------------------------------------------------------

    def initial_state(self, key: str) -> list[np.ndarray]:
        session = self.sessions[key]
        shapes = {i.name: i.shape for i in session.get_inputs()}
        return [np.zeros(shapes[name], dtype=np.float32) for name in self.state_inputs[key]]

    def step(self, key: str, x: np.ndarray, state: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """One streaming step (`encoder_step` or `decoder_step`) on a batch of one."""
        name = "audio" if key == "encoder_step" else "codes"
        out = self._run(key, {name: x[None], **dict(zip(self.state_inputs[key], state))})
        return out[0][0], out[1:]


def card_bitrates_kbps(card: dict[str, Any]) -> list[float]:
    """The bitrates a codec's card offers, lowest first: export writes them from the model's
    configuration, and the service, demo, CLI and eval all read them here."""
    return sorted(float(v) for v in card["bitrates_kbps"].values())


def correction_db(source_powers: np.ndarray, decoded_powers: np.ndarray) -> float:
    """Active level of the source minus that of its decoding, in the token file's 0.01 dB steps."""
    src, out = audio_io.active_level_db(source_powers), audio_io.active_level_db(decoded_powers)
    if not (np.isfinite(src) and np.isfinite(out)):
        return 0.0
    return round(float(np.clip(src - out, -MAX_GAIN_DB, MAX_GAIN_DB)), 2)


def apply_gain(audio: np.ndarray, gain_db: float) -> np.ndarray:
    if gain_db == 0.0:
        return audio
    return np.clip(audio * np.float32(10 ** (gain_db / 20)), -1.0, 1.0).astype(np.float32)


class EncoderStream:
    """Audio pushed in any chunk sizes -> codes for every completed frame; `finish` zero-pads the
    last partial frame, so the codes equal `CodecModel.encode` of the whole recording."""

    def __init__(self, model: CodecModel, kbps: float):
        self.model, self.stages = model, model.stages_for(kbps)
        self.state = model.initial_state("encoder_step")
        self.pending = np.zeros(0, dtype=np.float32)
        self.samples = 0

    def push(self, audio: np.ndarray) -> np.ndarray:
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        self.samples += audio.size
        self.pending = np.concatenate([self.pending, audio])
        usable = self.pending.size // self.model.frame_hop * self.model.frame_hop
        if usable == 0:
            return np.zeros((0, self.model.groups, self.stages), dtype=np.int64)
        chunk, self.pending = self.pending[:usable], self.pending[usable:]
        codes, self.state = self.model.step("encoder_step", chunk, self.state)
        return codes[:, :, :self.stages]

    def finish(self) -> np.ndarray:
        if self.pending.size == 0:
            return np.zeros((0, self.model.groups, self.stages), dtype=np.int64)
        pad = self.model.frame_hop - self.pending.size
        codes = self.push(np.zeros(pad, dtype=np.float32))
        self.samples -= pad  # the padding is not audio the client sent
        return codes


class DecoderStream:
    """Codes pushed frame by frame -> audio; the output equals `CodecModel.decode` of all the
    codes, delayed by the synthesis overlap, which `finish` releases."""

    def __init__(self, model: CodecModel):
        self.model = model
        self.state = model.initial_state("decoder_step")
        self.skip = model.overlap  # the first samples of a step stream precede the offline signal

    def push(self, codes: np.ndarray) -> np.ndarray:
        full = self.model.full_codes(codes)
        if full.shape[0] == 0:
            return np.zeros(0, dtype=np.float32)
        audio, self.state = self.model.step("decoder_step", full, self.state)
        drop = min(self.skip, audio.size)
        self.skip -= drop
        return audio[drop:]

    def finish(self) -> np.ndarray:
        tail = self.state[-1][0]
        return tail[self.skip:] if self.skip < tail.size else np.zeros(0, dtype=np.float32)
