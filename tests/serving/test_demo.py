"""The Gradio demo: page builds and renders when mounted, plot, synth and the transcribe handler."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import soundfile as sf

from services.demo import build_demo, plots, synth
from services.demo import transcriber as tab

SR = 22050


@dataclass
class FakeNote:
    start_s: float
    end_s: float
    pitch_midi: int
    velocity: float = 100
    pitch_bends: list[float] | None = None


@dataclass
class FakeModel:
    """Stands in for TranscriberModel: fixed notes, remembers what it was given."""

    notes: list[FakeNote] = field(default_factory=lambda: [FakeNote(0.1, 0.6, 69), FakeNote(0.3, 0.9, 76)])
    sample_rate: int = SR
    calls: list[tuple[np.ndarray, dict]] = field(default_factory=list)

    def decode_defaults(self) -> dict:
        return {"onset_threshold": 0.37, "frame_threshold": 0.21, "min_freq_hz": None}

    def transcribe(self, audio: np.ndarray, **params) -> list[FakeNote]:
        self.calls.append((audio, params))
        return self.notes


def peak_hz(x: np.ndarray, sr: int = SR) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spectrum)])


def tone_wav(path: Path, hz: float = 440.0, seconds: float = 1.0, sr: int = 44100) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, 0.5 * np.sin(2 * np.pi * hz * t), sr)
    return path


# --- page ---------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:The `root_path` parameter is deprecated")  # as BentoML calls it
def test_build_demo_with_stand_in_model_renders_when_mounted():
    from fastapi.testclient import TestClient

    demo = build_demo(transcriber=FakeModel())
    assert isinstance(demo, gr.Blocks)
    assert demo.theme is not None and isinstance(demo.css, str)
    # The same call bentoml.gradio.mount_gradio_app makes; without the theme fix "/" is a 500.
    app = gr.routes.App.create_app(demo, app_kwargs={"root_path": "/ui"})
    with TestClient(app) as client:
        page = client.get("/")
        assert page.status_code == 200, page.text[:500]
        assert "fonts.googleapis" not in page.text  # offline page: no CDN fonts
        assert client.get("/config").status_code == 200


def test_the_extractor_tab_says_what_the_shipped_model_achieves(monkeypatch):
    import json

    shipped = Path(__file__).resolve().parents[2] / "artifacts" / "extractor"
    monkeypatch.setenv("HARK_EXTRACTOR_MODEL", str(shipped))
    value = json.loads((shipped / "card.json").read_text())["evaluation"]["heldout_si_snri_db"]
    demo = build_demo(extractor=lambda: None)
    [note] = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "extractor-quality"]
    assert f"{value:+.2f} dB SI-SNRi" in note.value and "7.01 dB" in note.value


def test_build_demo_accepts_getter_and_rejects_unknown_family():
    assert isinstance(build_demo(transcriber=lambda: None), gr.Blocks)
    with pytest.raises(ValueError):
        build_demo(no_such_family=FakeModel())


def test_slider_defaults_come_from_the_loaded_model_card():
    state: dict[str, FakeModel] = {}
    getter = lambda: state.get("model")  # noqa: E731 - the service's kind of getter
    assert tab.decode_defaults(getter) == tab.FALLBACK_DEFAULTS  # built before the model loads
    state["model"] = FakeModel()
    d = tab.decode_defaults(getter)  # what a page load then shows
    assert d["onset_threshold"] == 0.37 and d["frame_threshold"] == 0.21
    assert d["min_note_ms"] == tab.FALLBACK_DEFAULTS["min_note_ms"]


# --- plot ---------------------------------------------------------------------------------------


def test_piano_roll_has_requested_size_and_draws_notes_where_they_belong():
    notes = [FakeNote(0.5, 1.5, 60), FakeNote(1.0, 2.0, 72, pitch_bends=[0.0, 0.5, 1.0])]
    audio = synth.render(notes, SR, duration_s=2.5)
    fig, ax = plots.piano_roll_figure(audio, SR, notes, width=800, height=400)
    img = plots.piano_roll_image(audio, SR, notes, width=800, height=400)
    assert img.shape == (400, 800, 3) and img.dtype == np.uint8

    # The spectrogram is grey, so colour (saturation) can only come from notes and bends.
    rgb = img.astype(int)
    saturation = rgb.max(axis=2) - rgb.min(axis=2)
    for n in notes:
        x, y = ax.transData.transform(((n.start_s + n.end_s) / 2, n.pitch_midi))
        row, col = int(round(400 - y)), int(round(x))
        assert saturation[row - 2 : row + 3, col - 2 : col + 3].max() > 60, n
    # ...and not at a pitch with no note.
    x, y = ax.transData.transform((1.25, 66))
    assert saturation[int(round(400 - y)), int(round(x))] < 30


def test_piano_roll_without_notes_still_draws():
    img = plots.piano_roll_image(np.zeros(SR, np.float32), SR, [], width=300, height=200)
    assert img.shape == (200, 300, 3)


# --- synth --------------------------------------------------------------------------------------


def test_synth_length_and_fundamental():
    out = synth.render([FakeNote(0.2, 1.2, 69)], SR, duration_s=1.5)
    assert out.dtype == np.float32 and len(out) == int(1.5 * SR)
    assert np.max(np.abs(out)) <= 1.0
    assert abs(peak_hz(out[int(0.3 * SR) : int(1.1 * SR)]) - 440.0) < 3.0
    assert np.max(np.abs(out[: int(0.19 * SR)])) == 0.0  # silent before the onset
    # Without a duration it ends after the last release.
    assert len(synth.render([FakeNote(0.0, 0.5, 60)], SR)) > int(0.5 * SR)


def test_synth_follows_pitch_bend():
    # Two semitones up halfway through: 440 Hz then about 493.9 Hz.
    bends = [0.0] * 50 + [2.0] * 50
    out = synth.render([FakeNote(0.0, 2.0, 69, pitch_bends=bends)], SR, duration_s=2.0)
    assert abs(peak_hz(out[int(0.1 * SR) : int(0.9 * SR)]) - 440.0) < 3.0
    assert abs(peak_hz(out[int(1.1 * SR) : int(1.9 * SR)]) - 493.88) < 3.0


def test_velocity_scales_loudness():
    loud = synth.render([FakeNote(0.0, 0.5, 60, velocity=120)], SR)
    soft = synth.render([FakeNote(0.0, 0.5, 60, velocity=30)], SR)
    assert np.max(np.abs(loud)) > 2 * np.max(np.abs(soft)) > 0


# --- handler ------------------------------------------------------------------------------------


def test_transcribe_handler_outputs(tmp_path):
    model = FakeModel()
    wav = tone_wav(tmp_path / "a440.wav")  # 44.1 kHz: the handler must resample to the model's rate
    picture, midi_path, (sr, rendering), rows, summary = tab.transcribe(
        model, str(wav), 0.4, 0.25, 80.0, True
    )
    audio, params = model.calls[0]
    assert audio.dtype == np.float32 and audio.ndim == 1 and abs(len(audio) - SR) <= 2
    assert params["onset_threshold"] == pytest.approx(0.4)
    assert isinstance(picture, np.ndarray) and picture.ndim == 3 and picture.dtype == np.uint8
    assert Path(midi_path).suffix == ".mid" and Path(midi_path).read_bytes()[:4] == b"MThd"
    assert sr == SR and rendering.dtype == np.int16 and len(rendering) == len(audio)
    assert [r[2] for r in rows] == [69, 76] and rows[0][3] == "A4"
    assert "2 notes" in summary


def test_transcribe_handler_reports_bad_input_as_gradio_error(tmp_path):
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio")
    with pytest.raises(gr.Error):
        tab.transcribe(FakeModel(), str(junk), 0.5, 0.3, 58.0, True)
    with pytest.raises(gr.Error):
        tab.transcribe(FakeModel(), None, 0.5, 0.3, 58.0, True)
    with pytest.raises(gr.Error):  # a getter whose model has not loaded yet
        tab.transcribe(lambda: None, str(tone_wav(tmp_path / "t.wav")), 0.5, 0.3, 58.0, True)


# --- live microphone ----------------------------------------------------------------------------


def test_live_microphone_streams_notes_and_gives_a_midi_at_the_end(stand_in_model_dir):
    from core.transcriber_model import TranscriberModel

    model = TranscriberModel(stand_in_model_dir, threads=1)
    sr = 44100  # what a browser records at; the session resamples
    t = np.arange(int(2.5 * sr)) / sr
    pcm = (0.5 * np.sin(2 * np.pi * 440.0 * t) * ((t > 0.5) & (t < 1.5)) * 32767).astype(np.int16)
    params = dict(onset_threshold=0.5, frame_threshold=0.3, min_note_ms=58.0, include_pitch_bends=True)
    state, seen_on_the_way = None, 0
    for i in range(0, pcm.size, sr // 4):
        picture, rows, summary, midi_path, state = tab.live_step(model, (sr, pcm[i:i + sr // 4]), state, params)
        assert picture.shape == (360, 1000, 3) and "listening" in summary
        seen_on_the_way = max(seen_on_the_way, len(state.notes) + len(state.sounding))
    assert seen_on_the_way == 1  # the note showed up before the recording stopped
    picture, rows, summary, midi_path, state = tab.live_step(model, None, state, params, last=True)
    assert state is None and "finished" in summary
    assert [r[2] for r in rows] == [69] and abs(rows[0][0] - 0.5) < 0.05
    import pretty_midi

    assert [n.pitch for n in pretty_midi.PrettyMIDI(midi_path).instruments[0].notes] == [69]
