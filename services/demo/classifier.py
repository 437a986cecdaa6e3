"""The classifier tab: a recording and its transcript in; class probabilities, per modality, out.

Every answer is shown beside the model's intended use: a research tool trained on a synthetic
cohort, not a diagnostic device.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import gradio as gr
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from services.demo.common import ShippedModel, load_audio, resolve_model
from core.voice import find_voice

log = logging.getLogger(__name__)

TITLE = "Classifier"
FAMILY = "classifier"
NOTICE = ("**Research use only.** This is not a diagnostic device. The shipped model was trained on a "
          "SYNTHETIC cohort (TTS voices, template transcripts): its output says nothing about any real person.")

ModelSource = Any | Callable[[], Any]


def _load(model_dir: Path) -> Any:
    from core.classifier_model import ClassifierModel

    return ClassifierModel(model_dir)


def bar_chart(per_modality: dict[str, dict[str, float]], fused: dict[str, float],
              width: int = 900, height: int = 320) -> np.ndarray:
    """Grouped bars: one group per class, one bar per modality and the fused answer."""
    fig = Figure(figsize=(width / 100, height / 100), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    series = {**per_modality, "fused": fused}
    classes = list(fused)
    w = 0.8 / len(series)
    for i, (name, probs) in enumerate(series.items()):
        ax.bar(np.arange(len(classes)) + (i - (len(series) - 1) / 2) * w, [probs[c] for c in classes], w, label=name)
    ax.set_xticks(np.arange(len(classes)), classes)
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability")
    ax.legend(loc="upper right", fontsize=9)
    fig.tight_layout()
    canvas.draw()
    return np.ascontiguousarray(np.asarray(canvas.buffer_rgba())[..., :3])


def classify(source: ModelSource | None, audio_path: str | None, transcript: str) -> tuple[np.ndarray, str]:
    if not audio_path:
        raise gr.Error("Upload or record a recording first.", print_exception=False)
    model = resolve_model(source, FAMILY, "classify")
    samples = load_audio(audio_path, model.sample_rate)
    if model.needs_voice:
        found = find_voice(samples, model.sample_rate)
        if found.problem is not None:  # as /classify: no confident label for silence or a hum
            raise gr.Error(f"No voice to classify: {found.message}.", print_exception=False)
    try:
        result = model.classify(samples, transcript or None)
    except Exception as exc:
        log.exception("demo classification failed")
        raise gr.Error(f"Classification failed: {exc}") from exc
    rows = " | ".join(f"{c}: {p:.2f}" for c, p in result.probabilities.items())
    used = " + ".join(result.modalities)
    notes = "".join(f"\n\n_{n}_" for n in result.notes)
    summary = f"**{result.label}** (fused over {used}): {rows}{notes}\n\n{NOTICE}"
    return bar_chart(result.per_modality, result.probabilities), summary


def build_tab(source: ModelSource | None = None) -> None:
    source = source if source is not None else ShippedModel(FAMILY, _load)
    gr.Markdown("Speech- and text-based classification: a voice model (eGeMAPS + d-vector) and a text model "
                "(MiniLM + lexical statistics), their probabilities averaged. " + NOTICE)
    with gr.Row():
        with gr.Column(scale=1):
            audio_in = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Recording")
            transcript = gr.Textbox(label="Transcript (optional)", lines=4,
                                    placeholder="What was said; leave empty to classify from the voice alone")
            button = gr.Button("Classify", variant="primary")
        with gr.Column(scale=2):
            summary = gr.Markdown()
            chart = gr.Image(label="Probabilities per modality", type="numpy", interactive=False, format="png")
    button.click(lambda a, t: classify(source, a, t), inputs=[audio_in, transcript], outputs=[chart, summary],
                 api_name="classify")
