"""The transcriber tab: audio in; piano roll, MIDI, a listenable rendering and a note table out."""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import gradio as gr
import numpy as np

from core import midi
from services.demo import live, plots, synth
from services.demo.common import load_audio, scratch_dir, to_int16
from core.notes import FRAME_RATE, FRAME_THRESHOLD, MIN_NOTE_MS, ONSET_THRESHOLD, SAMPLE_RATE, NoteLike

log = logging.getLogger(__name__)

TITLE = "Transcriber"
FAMILY = "transcriber"
# Slider start values when the model is not at hand; a loaded model's card overrides them.
# The order is the order of the tab's parameter controls.
FALLBACK_DEFAULTS: dict[str, Any] = {
    "onset_threshold": ONSET_THRESHOLD,
    "frame_threshold": FRAME_THRESHOLD,
    "min_note_ms": MIN_NOTE_MS,
    "include_pitch_bends": True,
}
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
TABLE_HEADERS = ["start (s)", "end (s)", "pitch", "note", "velocity", "max bend (st)"]


class Transcribes(Protocol):
    def transcribe(self, audio: np.ndarray, **decode_params: Any) -> list[NoteLike]: ...


# The service passes its loaded model, or a getter when the Blocks must exist before the model does
# (BentoML mounts the UI at import time, the model loads in the worker).
ModelSource = Transcribes | Callable[[], Transcribes | None]


def resolve_model(source: ModelSource | None) -> Transcribes:
    """The model object behind `source`; a gr.Error when it is not available (yet)."""
    model = source
    if model is not None and not hasattr(model, "transcribe") and callable(model):
        try:
            model = model()
        except Exception as exc:  # e.g. no shipped model: say so on the page
            log.exception("demo could not load the transcriber model")
            raise gr.Error(f"The transcriber model could not be loaded: {exc}") from exc
    if model is None:
        raise gr.Error("The transcriber model is not loaded yet; try again in a moment.")
    return model  # type: ignore[return-value]


def sample_rate_of(model: Transcribes) -> int:
    return int(getattr(model, "sample_rate", SAMPLE_RATE))


def frame_rate_of(model: Transcribes) -> float:
    return float(getattr(model, "frame_rate", FRAME_RATE))


class _ShippedModel:
    """Getter that loads the shipped model on first use, once per process, for a demo built
    without one (e.g. run on its own). The service passes its own model instead."""

    def __init__(self) -> None:
        self.model: Transcribes | None = None
        self._lock = threading.Lock()

    def __call__(self) -> Transcribes:
        with self._lock:
            if self.model is None:
                from services.model_store import resolve
                from core.transcriber_model import TranscriberModel

                self.model = TranscriberModel(resolve(FAMILY))
            return self.model


def _peek(source: ModelSource | None) -> Transcribes | None:
    """The model if it is already loaded, without loading it (page building must stay cheap)."""
    if source is None:
        return None
    if hasattr(source, "transcribe"):
        return source  # type: ignore[return-value]
    if isinstance(source, _ShippedModel):
        return source.model
    try:
        return source()  # type: ignore[operator]
    except Exception:  # a getter that cannot answer yet is the same as no model
        return None


def decode_defaults(source: ModelSource | None) -> dict[str, Any]:
    """The loaded model card's decoding defaults, else the fallbacks."""
    model = _peek(source)
    card_defaults = getattr(model, "decode_defaults", None)
    card = card_defaults() if callable(card_defaults) else {}
    return {key: card.get(key, value) for key, value in FALLBACK_DEFAULTS.items()}


def examples_dir() -> Path:
    from core.cards import artifacts_dir

    return artifacts_dir() / FAMILY / "examples"


def example_files(directory: Path | None = None) -> list[str]:
    directory = directory if directory is not None else examples_dir()
    return sorted(str(p) for p in directory.glob("*.wav")) if directory.is_dir() else []


def note_name(pitch: int) -> str:
    return f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


def note_rows(notes: Sequence[NoteLike]) -> list[list[Any]]:
    rows = []
    for n in notes:
        bends = n.pitch_bends
        bend = float(np.max(np.abs(bends))) if bends is not None and len(bends) else 0.0
        rows.append(
            [round(n.start_s, 3), round(n.end_s, 3), int(n.pitch_midi), note_name(n.pitch_midi),
             int(round(float(n.velocity))), round(bend, 2)]
        )
    return rows


def transcribe(
    source: ModelSource | None,
    audio_path: str | None,
    onset_threshold: float,
    frame_threshold: float,
    min_note_ms: float,
    include_pitch_bends: bool,
) -> tuple[np.ndarray, str, tuple[int, np.ndarray], list[list[Any]], str]:
    """The Transcribe button: picture, MIDI path, rendering, note table and a one-line summary."""
    if not audio_path:
        raise gr.Error("Upload or record some audio first.", print_exception=False)
    model = resolve_model(source)
    sr = sample_rate_of(model)
    samples = load_audio(audio_path, sr)
    frame_rate = frame_rate_of(model)
    params = dict(
        onset_threshold=float(onset_threshold),
        frame_threshold=float(frame_threshold),
        min_note_ms=float(min_note_ms),
        include_pitch_bends=bool(include_pitch_bends),
    )
    t0 = time.perf_counter()
    try:
        notes = list(model.transcribe(samples, **params))
    except Exception as exc:  # the page should report it, not hang or show a traceback
        log.exception("demo transcription failed")
        raise gr.Error(f"Transcription failed: {exc}") from exc
    elapsed = time.perf_counter() - t0

    duration = len(samples) / sr
    picture = plots.piano_roll_image(samples, sr, notes, frame_rate=frame_rate)
    midi_path = scratch_dir() / "transcription.mid"
    midi_path.write_bytes(midi.notes_to_midi(notes, frame_rate=frame_rate))
    rendering = to_int16(synth.render(notes, sr, duration_s=duration, frame_rate=frame_rate))
    summary = (
        f"**{len(notes)} notes** in {duration:.1f} s of audio; "
        f"model time {elapsed:.2f} s ({elapsed / max(duration, 1e-9):.3f} x real time)."
    )
    return picture, str(midi_path), (sr, rendering), note_rows(notes), summary


def live_step(source: ModelSource | None, chunk: tuple[int, np.ndarray] | None, session: live.LiveSession | None,
              params: dict[str, Any], last: bool = False):
    """One microphone chunk (or the end of the recording): picture, notes so far, summary, MIDI."""
    if chunk is None and session is None:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), None
    if session is None:
        model = resolve_model(source)
        if not hasattr(model, "run_window"):
            raise gr.Error("Live transcription needs the ONNX transcriber model.", print_exception=False)
        session = live.LiveSession.start(model, {**model.decode_defaults(), **params}, int(chunk[0]))
    if session.seconds > live.MAX_SECONDS:
        raise gr.Error(f"Live sessions stop after {live.MAX_SECONDS:g} s; record again.", print_exception=False)
    session.feed(chunk[1] if chunk is not None else np.zeros(0, np.float32), last=last)
    model = session.stream.model
    audio_shown, t0, shown = session.visible()
    picture = plots.piano_roll_image(audio_shown, model.sample_rate, shown, width=1000, height=360,
                                     frame_rate=model.frame_rate)
    rows = note_rows(session.notes[-12:])
    state = "finished" if last else "listening"
    summary = (f"**{state}**: {session.seconds:.1f} s heard, {len(session.notes)} notes finished, "
               f"{len(session.sounding)} sounding (the roll shows from {t0:.1f} s).")
    midi_path = gr.skip()
    if last:
        midi_path = scratch_dir() / "live.mid"
        midi_path.write_bytes(midi.notes_to_midi(session.notes, frame_rate=model.frame_rate))
        midi_path = str(midi_path)
    return picture, rows, summary, midi_path, (None if last else session)


def _build_live(source: ModelSource, onset: Any, frame: Any, min_ms: Any, bends: Any) -> None:
    with gr.Accordion("Live microphone", open=False):
        gr.Markdown("Play or sing into the microphone: notes appear about half a second after they "
                    "start, from the same streaming decoder as `ws://…/stream/transcriber`.")
        with gr.Row():
            with gr.Column(scale=1):
                mic = gr.Audio(sources=["microphone"], streaming=True, type="numpy", label="Microphone")
                live_midi = gr.File(label="MIDI of the take", interactive=False)
            with gr.Column(scale=2):
                live_summary = gr.Markdown()
                live_roll = gr.Image(label="Last seconds", type="numpy", interactive=False, format="png")
                live_table = gr.Dataframe(headers=TABLE_HEADERS, label="Latest notes", interactive=False)
        session = gr.State(None)

        def step(chunk, state, o, f, m, b, last=False):
            params = dict(onset_threshold=float(o), frame_threshold=float(f), min_note_ms=float(m),
                          include_pitch_bends=bool(b))
            return live_step(source, chunk, state, params, last=last)

        outputs = [live_roll, live_table, live_summary, live_midi, session]
        inputs = [mic, session, onset, frame, min_ms, bends]
        mic.stream(step, inputs=inputs, outputs=outputs, stream_every=0.25, time_limit=live.MAX_SECONDS,
                   api_visibility="private", show_progress="hidden")
        mic.stop_recording(lambda c, s, o, f, m, b: step(None, s, o, f, m, b, last=True), inputs=inputs,
                           outputs=outputs, api_visibility="private")


def build_tab(source: ModelSource | None = None) -> None:
    """Lay out the tab's components inside the caller's open gr.Tab and wire the button."""
    source = source if source is not None else _ShippedModel()
    start = decode_defaults(source)
    gr.Markdown(
        "Polyphonic note transcription: any instrument or voice in, notes with pitch bends out. "
        "Upload or record a clip, press **Transcribe**, then download the MIDI or listen to it."
    )
    with gr.Row():
        with gr.Column(scale=1):
            audio_in = gr.Audio(
                sources=["upload", "microphone"], type="filepath", label="Audio in"
            )
            onset = gr.Slider(
                0.05, 0.95, value=start["onset_threshold"], step=0.01,
                label="Onset threshold", info="Lower finds more note starts (and more false ones).",
            )
            frame = gr.Slider(
                0.05, 0.95, value=start["frame_threshold"], step=0.01,
                label="Frame threshold", info="Lower lets notes ring on longer.",
            )
            min_ms = gr.Slider(
                10, 500, value=start["min_note_ms"], step=1,
                label="Minimum note length (ms)",
            )
            bends = gr.Checkbox(
                value=start["include_pitch_bends"], label="Include pitch bends"
            )
            button = gr.Button("Transcribe", variant="primary")
            examples = example_files()
            if examples:
                gr.Examples(examples=[[p] for p in examples], inputs=[audio_in],
                            cache_examples=False, label="Example clips")
        with gr.Column(scale=2):
            summary = gr.Markdown()
            roll = gr.Image(label="Notes over the input's spectrogram", type="numpy",
                            interactive=False, format="png", elem_id="hark-piano-roll")
            with gr.Row():
                rendering = gr.Audio(label="What the notes sound like", type="numpy",
                                     interactive=False)
                midi_file = gr.File(label="MIDI", interactive=False)
            table = gr.Dataframe(headers=TABLE_HEADERS, label="Notes", interactive=False,
                                 max_height=300)
    _build_live(source, onset, frame, min_ms, bends)

    def on_click(path: str | None, o: float, f: float, m: float, b: bool):
        return transcribe(source, path, o, f, m, b)

    # Re-read on every page load: the page is built before the service has loaded its model, and
    # the card's calibrated thresholds should be what a visitor starts from.
    gr.on(
        triggers=None,
        fn=lambda: tuple(decode_defaults(source)[key] for key in FALLBACK_DEFAULTS),
        outputs=[onset, frame, min_ms, bends],
        api_visibility="private",
        show_progress="hidden",
        queue=False,
    )
    button.click(
        on_click,
        inputs=[audio_in, onset, frame, min_ms, bends],
        outputs=[roll, midi_file, rendering, table, summary],
        api_name="transcribe",
    )
