"""The transcriber as it ships: model card + ONNX, windows batched through onnxruntime, numpy
note decoding. The HTTP service, the Gradio demo and the benchmarks all call this class, so what
is measured is what is served.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from core import config, runtime, windows
from core.cards import file_sha256, read_card
from core.notes import FRAME_THRESHOLD, MIN_NOTE_MS, ONSET_THRESHOLD, Note, decode_notes

log = logging.getLogger("hark.transcriber")

OUTPUTS = ("onset", "note", "contour")
# Frames dropped at each inner window edge when the card does not say. The lowest band of the
# model's front end sees +-32 frames through a Hann window whose outer few frames weigh ~nothing,
# so 30 frames make stitched output match a single pass to within rounding.
DEFAULT_MARGIN_FRAMES = 30
# A model that takes any input length runs offline audio in windows this long: the margins
# every window recomputes then cost ~9 % instead of ~54 % of 2-s windows.
LONG_WINDOW_FRAMES = 688
# Decoding parameters a card may override under "decode", besides its "thresholds".
DECODE_KEYS = (
    "min_note_ms", "min_freq_hz", "max_freq_hz", "include_pitch_bends", "infer_onsets",
    "recover_sustained", "retrigger_threshold", "retrigger_margin", "sustain_threshold", "max_gap_ms",
    "attack_window_ms", "dip_ratio", "overtone_ratio", "evidence_window_ms", "ring_gap_ms",
)


class TranscriberModel:
    """Loads `model_dir` (card.json + the ONNX file it names) and transcribes mono audio."""

    def __init__(
        self,
        model_dir: Path | str,
        *,
        batch_size: int | None = None,
        provider: str | None = None,
        threads: int | None = None,
        margin_frames: int | None = None,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.card: dict[str, Any] = read_card(self.model_dir)
        io = self.card["io"]
        self.name: str = self.card.get("name", "transcriber")
        self.version: str = str(self.card.get("version", "unknown"))
        self.sample_rate: int = int(io["sample_rate"])
        self.hop: int = int(io["hop"])
        self.window_samples: int = int(io["window_samples"])
        self.min_midi: int = int(io.get("min_midi", 21))
        self.n_keys: int = int(io.get("n_keys", 88))
        self.bins_per_semitone: int = int(io.get("bins_per_semitone", 3))
        self.frame_rate: float = self.sample_rate / self.hop
        if margin_frames is None:
            margin_frames = int(io.get("margin_frames", DEFAULT_MARGIN_FRAMES))
        self.margin_frames = margin_frames
        self.batch_size = batch_size or config.batch_size()

        model_path = self.model_dir / self.card.get("files", {}).get("model", "transcriber.onnx")
        self.sha256 = file_sha256(model_path)
        if self.card.get("sha256") and self.card["sha256"] != self.sha256:
            # Serve anyway, but report the hash of what actually runs (metrics, /transcribe meta).
            log.warning("%s: card sha256 %s does not match the ONNX file (%s)",
                        model_path, self.card["sha256"][:12], self.sha256[:12])
        # arena=False: a 600 s file's windows come in batches whose buffers the arena would keep.
        self.session = runtime.create_session(model_path, provider=provider, intra_op_threads=threads, arena=False)
        self.provider = runtime.active_provider(self.session)
        # Offline windows: long ones when the graph allows, with the same frames per batch.
        self.offline_window_samples = self.window_samples
        self.offline_batch_size = self.batch_size
        if self.fixed_window_frames is None:
            self.offline_window_samples = max(self.window_samples, LONG_WINDOW_FRAMES * self.hop)
            self.offline_batch_size = max(1, self.batch_size * self.window_samples // self.offline_window_samples)
        self._input = self.session.get_inputs()[0].name
        names = [o.name for o in self.session.get_outputs()]
        missing = [n for n in OUTPUTS if n not in names]
        if missing:
            raise ValueError(f"{model_path} lacks outputs {missing}; it has {names}")
        # One run at a time per session on GPU; ORT's CPU run() is thread-safe but the demo and
        # the API sharing a session would oversubscribe the intra-op pool anyway.
        self._lock = threading.Lock()

    # --- inference ------------------------------------------------------------------------------

    def _run_batch(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        with self._lock:
            values = self.session.run(list(OUTPUTS), {self._input: batch})
        return dict(zip(OUTPUTS, values, strict=True))

    def posteriorgrams(self, audio: np.ndarray) -> dict[str, np.ndarray]:
        """onset/note [frames, keys] and contour [frames, keys*3] for mono float32 audio at
        `sample_rate`; frame t is centred on sample t * hop."""
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        window = self.offline_window_samples
        if window > self.window_samples:  # no padding a short clip up to a long window
            window = min(window, max(self.window_samples, -(-audio.size // self.hop) * self.hop))
        return windows.run(
            self._run_batch, audio,
            window_samples=window, hop=self.hop,
            margin=self.margin_frames, batch_size=self.offline_batch_size,
        )

    @property
    def fixed_window_frames(self) -> int | None:
        """The window length in frames if the ONNX input has a fixed length, else None."""
        length = self.session.get_inputs()[0].shape[-1]
        return int(length) // self.hop if isinstance(length, int) else None

    def run_window(self, window: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs for one window of audio (a whole number of hops): name -> [frames, ...]."""
        out = self._run_batch(np.ascontiguousarray(window, dtype=np.float32)[None, :])
        return {k: v[0] for k, v in out.items()}

    def decode_defaults(self) -> dict[str, Any]:
        """Decoding parameters from the card: its thresholds plus any "decode" overrides."""
        thresholds = self.card.get("thresholds", {})
        params: dict[str, Any] = {
            "onset_threshold": float(thresholds.get("onset", ONSET_THRESHOLD)),
            "frame_threshold": float(thresholds.get("frame", FRAME_THRESHOLD)),
            "min_note_ms": MIN_NOTE_MS,
            "min_freq_hz": None,
            "max_freq_hz": None,
            "include_pitch_bends": True,
        }
        params.update({k: v for k, v in self.card.get("decode", {}).items() if k in DECODE_KEYS})
        return params

    def decode(self, grams: dict[str, np.ndarray], **decode_params: Any) -> list[Note]:
        params = {**self.decode_defaults(), **{k: v for k, v in decode_params.items() if v is not None}}
        return decode_notes(
            grams["onset"], grams["note"], grams.get("contour"),
            frame_rate=self.frame_rate, min_midi=self.min_midi,
            bins_per_semitone=self.bins_per_semitone, **params,
        )

    def transcribe(self, audio: np.ndarray, **decode_params: Any) -> list[Note]:
        """Notes for mono float32 audio at `sample_rate`; unset parameters come from the card."""
        return self.decode(self.posteriorgrams(audio), **decode_params)

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name, "version": self.version, "sha256": self.sha256,
            "provider": self.provider, "sample_rate": self.sample_rate,
        }
