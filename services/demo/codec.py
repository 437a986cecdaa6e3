"""The codec tab: speech in; the coded speech, both spectrograms and the token file out."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable

import gradio as gr
import numpy as np

from core import codec_tokens
from core.cards import artifacts_dir, read_card
from core.codec_model import card_bitrates_kbps
from services.demo.common import ShippedModel, load_audio, resolve_model, scratch_dir, to_int16
from services.demo.spectrograms import side_by_side_image

log = logging.getLogger(__name__)

TITLE = "Codec"
FAMILY = "codec"

# The service passes its loaded model's getter (the model loads after the page is built).
ModelSource = Any | Callable[[], Any]


def _load(model_dir: Path) -> Any:
    from core.codec_model import CodecModel

    return CodecModel(model_dir)


def code(source: ModelSource | None, audio_path: str | None, bitrate: str
         ) -> tuple[tuple[int, np.ndarray], tuple[int, np.ndarray], np.ndarray, str, str]:
    """The button: original and coded players, spectrograms, the token file and a summary."""
    if not audio_path:
        raise gr.Error("Upload or record some speech first.", print_exception=False)
    model = resolve_model(source, FAMILY, "reconstruct")
    sr = model.sample_rate
    samples = load_audio(audio_path, sr)
    kbps = float(bitrate.split()[0])
    t0 = time.perf_counter()
    try:
        tokens, coded = model.code(samples, kbps)
    except Exception as exc:  # the page should report it, not hang or show a traceback
        log.exception("demo coding failed")
        raise gr.Error(f"Coding failed: {exc}") from exc
    elapsed = time.perf_counter() - t0
    data = codec_tokens.dumps(tokens)
    path = scratch_dir() / "speech.hark"
    path.write_bytes(data)
    duration = samples.size / sr
    picture = side_by_side_image([samples, coded], ["original", f"hark codec, {kbps:g} kbps"], sr)
    summary = (
        f"**{len(data):,} bytes** of tokens for {duration:.2f} s of speech: "
        f"{8 * len(data) / max(duration, 1e-9) / 1000:.2f} kbps with the header "
        f"({tokens.bitrate / 1000:g} kbps of codes, {tokens.frames} frames x {tokens.codes.shape[1]} groups x "
        f"{tokens.codes.shape[2]} stages). 16-bit PCM would be {2 * samples.size:,} bytes. "
        f"Model time {elapsed:.2f} s ({elapsed / max(duration, 1e-9):.3f} x real time)."
    )
    return (sr, to_int16(samples)), (sr, to_int16(coded)), picture, str(path), summary


def _bitrates() -> list[str]:
    """The shipped card's bitrates: the tab is laid out before the service loads its model."""
    try:
        return [f"{k:g} kbps" for k in card_bitrates_kbps(read_card(artifacts_dir() / FAMILY))]
    except (FileNotFoundError, KeyError, ValueError):  # no shipped codec: the tab says so when used
        return []


def build_tab(source: ModelSource | None = None) -> None:
    """Lay out the tab inside the caller's open gr.Tab and wire the button."""
    source = source if source is not None else ShippedModel(FAMILY, _load)
    gr.Markdown(
        "A neural speech codec: 16 kHz speech into four 1024-entry codebooks at 50 frames/s "
        "(2 kbps), or the first stage of each group alone (1 kbps), and back. Upload or record "
        "speech, choose the bitrate, press **Encode and decode**."
    )
    with gr.Row():
        with gr.Column(scale=1):
            audio_in = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Speech in")
            bitrates = _bitrates()
            bitrate = gr.Radio(bitrates, value=bitrates[-1] if bitrates else None, label="Bitrate")
            button = gr.Button("Encode and decode", variant="primary")
        with gr.Column(scale=2):
            summary = gr.Markdown()
            with gr.Row():
                original = gr.Audio(label="Original (16 kHz)", type="numpy", interactive=False)
                coded = gr.Audio(label="Decoded from the tokens", type="numpy", interactive=False)
            picture = gr.Image(label="Spectrograms", type="numpy", interactive=False, format="png")
            token_file = gr.File(label="Token file (.hark)", interactive=False)
    button.click(lambda p, b: code(source, p, b), inputs=[audio_in, bitrate],
                 outputs=[original, coded, picture, token_file, summary], api_name="codec")
