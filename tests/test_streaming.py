"""Streaming transcription against offline transcription of the same audio, with the shipped model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.streaming import StreamingTranscriber
from services.transcriber_model import TranscriberModel
from synth_data import random_notes, render_notes

MODEL_DIR = Path(__file__).resolve().parents[1] / "artifacts" / "transcriber"
CHUNK_S = 0.1  # what a browser or a phone typically sends


@pytest.fixture(scope="module")
def model() -> TranscriberModel:
    return TranscriberModel(MODEL_DIR, threads=1)


def stream(model: TranscriberModel, audio: np.ndarray, chunk: int) -> tuple[list[dict], list[dict]]:
    """All events, and for each note_on the audio time it was emitted at."""
    st = StreamingTranscriber(model, model.decode_defaults())
    events, emitted_at = [], []
    for i in range(0, audio.size, chunk):
        for e in st.push(audio[i:i + chunk]):
            events.append(e)
            emitted_at.append(st.seconds_received)
    events += st.finish()
    emitted_at += [np.inf] * (len(events) - len(emitted_at))
    return events, emitted_at


def test_streamed_notes_match_offline_within_half_a_second(model: TranscriberModel) -> None:
    rng = np.random.default_rng(7)
    notes = random_notes(rng, 12.0)
    audio = render_notes(notes, 12.0, sr=model.sample_rate)
    offline = model.transcribe(audio)
    assert len(offline) >= 10
    events, emitted_at = stream(model, audio, int(CHUNK_S * model.sample_rate))
    ons = [(e, t) for e, t in zip(events, emitted_at) if e["type"] == "note_on"]
    offs = [e for e in events if e["type"] == "note_off"]
    assert len(ons) == len(offs) == len(offline)
    unmatched = list(ons)
    for n in offline:
        hit = next((x for x in unmatched if x[0]["pitch_midi"] == n.pitch_midi
                    and abs(x[0]["start_s"] - n.start_s) <= 0.05), None)
        assert hit is not None, f"offline note {n} was not streamed"
        unmatched.remove(hit)
    # Latency: audio received when the note_on left, after its onset (all but the final flush).
    latencies = [t - e["start_s"] for e, t in ons if np.isfinite(t)]
    assert len(latencies) >= len(ons) - 2
    assert max(latencies) <= 0.5, sorted(latencies)[-5:]


def test_chunk_size_does_not_change_the_notes(model: TranscriberModel) -> None:
    audio = render_notes(random_notes(np.random.default_rng(3), 6.0), 6.0, sr=model.sample_rate)
    a, _ = stream(model, audio, 1000)
    b, _ = stream(model, audio, 7919)
    key = lambda e: (e["type"], e["pitch_midi"], round(e["start_s"], 3))  # noqa: E731
    assert sorted(map(key, a)) == sorted(map(key, b))
