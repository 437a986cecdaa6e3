"""The extractor tab: enroll a voice, pick a binaural mixture, hear only that voice.

Example scenes ship in artifacts/extractor/examples/<name>/{mixture.wav, enrollment.wav,
example.json} (made by training/data/extractor_examples.py, copied there by the export).
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import soundfile as sf

from core import audio
from services.demo.common import ShippedModel, resolve_model, scratch_dir, to_int16
from services.demo.spectrograms import side_by_side_image
from core.voice import find_voice
from services.extractor_state import missing_reason

log = logging.getLogger(__name__)

TITLE = "Extractor"
FAMILY = "extractor"
SAMPLE_RATE = 16000
ENROLL_MAX_SECONDS = 10.0

ModelSource = Any | Callable[[], Any]


def _load(model_dir: Path) -> Any:
    from core.extractor_model import ExtractorModel

    return ExtractorModel(model_dir)


def examples_dir() -> Path:
    from core.cards import artifacts_dir

    return artifacts_dir() / FAMILY / "examples"


def examples(directory: Path | None = None) -> list[dict[str, Any]]:
    """The shipped scenes: example.json plus the paths of their two clips, sorted by name."""
    directory = directory if directory is not None else examples_dir()
    found = []
    for meta in sorted(directory.glob("*/example.json")) if directory.is_dir() else []:
        scene = meta.parent
        if (scene / "mixture.wav").is_file() and (scene / "enrollment.wav").is_file():
            try:
                info = json.loads(meta.read_text())
            except ValueError:
                info = {}
            found.append({**info, "title": info.get("title", scene.name), "mixture": str(scene / "mixture.wav"),
                          "enrollment": str(scene / "enrollment.wav")})
    return found


def load_binaural(path: str, what: str, allow_mono: bool = False, max_seconds: float | None = None) -> np.ndarray:
    """(2, samples) at 16 kHz, validated as the HTTP API does; bad input becomes a gr.Error.

    A mono recording (a browser microphone) is taken as an enrollment when `allow_mono`: both ears
    the same is a talker straight ahead, which is where an enrollment's talker should be."""
    limits = audio.Limits.from_env(binaural=True)
    if max_seconds is not None:
        limits = audio.Limits(min(max_seconds, limits.max_seconds), limits.max_bytes, binaural=True)
    try:
        if allow_mono and sf.info(path).channels == 1:
            x = audio.load(path, SAMPLE_RATE, limits=audio.Limits(limits.max_seconds, limits.max_bytes))
            return np.stack([x, x])
        return audio.load(path, SAMPLE_RATE, limits=limits)
    except (audio.AudioError, RuntimeError) as exc:  # RuntimeError: sf.info on bytes it cannot read
        message = exc.message if isinstance(exc, audio.AudioError) else f"unreadable audio. {limits.accepted()}"
        raise gr.Error(f"{what}: {message}", title="Audio not accepted", print_exception=False) from exc


def _model(source: ModelSource | None) -> Any:
    if callable(source) and not hasattr(source, "extract"):
        reason = missing_reason()
        if reason:
            raise gr.Error(f"This server has no extractor model: {reason}", print_exception=False)
    return resolve_model(source, FAMILY, "extract")


def _player(x: np.ndarray) -> tuple[int, np.ndarray]:
    return SAMPLE_RATE, to_int16(x.T)  # Gradio wants (samples, channels)


def extract(source: ModelSource | None, enrollment_path: str | None, mixture_path: str | None
            ) -> tuple[tuple[int, np.ndarray], tuple[int, np.ndarray], tuple[int, np.ndarray], np.ndarray, str, str]:
    """The button: mixture, enrollment and output players, spectrograms, the output WAV, a summary."""
    if not enrollment_path:
        raise gr.Error("Choose an example or upload / record an enrollment of the voice to hear.",
                       print_exception=False)
    if not mixture_path:
        raise gr.Error("Choose an example or upload a binaural mixture.", print_exception=False)
    model = _model(source)
    enrollment = load_binaural(enrollment_path, "Enrollment", allow_mono=True, max_seconds=ENROLL_MAX_SECONDS)
    mixture = load_binaural(mixture_path, "Mixture")
    found = find_voice(enrollment, SAMPLE_RATE)
    if found.problem is not None:  # as /enroll: no "voice" made of silence or a hum
        raise gr.Error(f"No voice to enroll: {found.message}.", print_exception=False)
    t0 = time.perf_counter()
    try:
        embedding = model.enroll(enrollment)
        out = model.extract(mixture, embedding)
    except Exception as exc:  # the page should report it, not hang or show a traceback
        log.exception("demo extraction failed")
        raise gr.Error(f"Extraction failed: {exc}") from exc
    elapsed = time.perf_counter() - t0
    path = scratch_dir() / f"{Path(mixture_path).stem}_extracted.wav"
    sf.write(path, np.clip(out.T, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16")
    picture = side_by_side_image([mixture.mean(axis=0), out.mean(axis=0)],
                                 ["mixture (left + right)", "extracted voice (left + right)"], SAMPLE_RATE)
    seconds = mixture.shape[1] / SAMPLE_RATE
    level = 10 * np.log10((np.mean(np.square(out, dtype=np.float64)) + 1e-12)
                          / (np.mean(np.square(mixture, dtype=np.float64)) + 1e-12))
    summary = (
        f"Enrolled from {enrollment.shape[1] / SAMPLE_RATE:.1f} s, extracted from {seconds:.1f} s of mixture in "
        f"{elapsed:.2f} s ({elapsed / max(seconds, 1e-9):.3f} x real time). The output keeps "
        f"{level:+.1f} dB of the mixture's energy, binaural (wear headphones: the voice stays where it was)."
    )
    return _player(mixture), _player(enrollment), _player(out), picture, str(path), summary


def quality_text(source: ModelSource | None = None) -> str:
    """The model's measured quality beside its goal, from the card of the model the tab serves
    (the shipped one when none is given); the tab is built before the service loads its model."""
    from core.extractor_model import card_quality

    model = source if source is not None and hasattr(source, "quality") else None
    if model is not None:
        return model.quality["summary"]
    try:
        from services import model_store

        return card_quality(model_store.resolve(FAMILY))["summary"]
    except (OSError, ValueError, KeyError) as exc:
        return f"No extractor model card could be read ({exc}), so its quality is unknown."


def build_tab(source: ModelSource | None = None) -> None:
    """Lay out the tab inside the caller's open gr.Tab and wire the button."""
    quality = quality_text(source)
    source = source if source is not None else ShippedModel(FAMILY, _load)
    gr.Markdown(
        "**Target speech hearing**: from a binaural recording (left and right ear) of several people "
        "talking, keep only the voice you enrolled. Enroll from a few seconds of that person facing "
        "you (noise and other talkers allowed), pick a mixture, press **Extract**. Streaming serves the "
        "same model in 8 ms chunks with 4 ms look-ahead at `/stream/extractor`."
    )
    gr.Markdown(f"**How well it works today.** {quality}", elem_id="extractor-quality")
    with gr.Row():
        with gr.Column(scale=1):
            enrollment_in = gr.Audio(sources=["upload", "microphone"], type="filepath",
                                     label="Enrollment: the voice to hear (2-10 s, facing you)")
            mixture_in = gr.Audio(sources=["upload"], type="filepath", label="Mixture (binaural: 2 channels)")
            button = gr.Button("Extract", variant="primary")
            shipped = examples()
            if shipped:
                gr.Examples(examples=[[e["enrollment"], e["mixture"]] for e in shipped],
                            inputs=[enrollment_in, mixture_in], example_labels=[e["title"] for e in shipped],
                            cache_examples=False, label="Example scenes (synthetic: TTS voices through a KEMAR head)")
        with gr.Column(scale=2):
            summary = gr.Markdown()
            with gr.Row():
                mixture_out = gr.Audio(label="Mixture", type="numpy", interactive=False)
                enrollment_out = gr.Audio(label="Enrollment", type="numpy", interactive=False)
                extracted = gr.Audio(label="Extracted voice", type="numpy", interactive=False)
            picture = gr.Image(label="Spectrograms, before and after", type="numpy", interactive=False, format="png")
            wav_file = gr.File(label="Extracted voice (binaural WAV)", interactive=False)
    button.click(lambda e, m: extract(source, e, m), inputs=[enrollment_in, mixture_in],
                 outputs=[mixture_out, enrollment_out, extracted, picture, wav_file, summary], api_name="extractor")
