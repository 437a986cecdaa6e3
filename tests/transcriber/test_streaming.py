"""Streaming transcription against offline transcription of the same audio, with the shipped model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.streaming import StreamingTranscriber
from core.transcriber_model import TranscriberModel
from synth_data import random_notes, render_notes

MODEL_DIR = Path(__file__).resolve().parents[2] / "artifacts" / "transcriber"
CHUNK_S = 0.1  # what a browser or a phone typically sends


@pytest.fixture(scope="module")
def model() -> TranscriberModel:
    return TranscriberModel(MODEL_DIR, threads=1)


def stream(model: TranscriberModel, audio: np.ndarray, chunk: int, **params) -> tuple[list[dict], list[dict]]:
    """All events, and for each note_on the audio time it was emitted at."""
    st = StreamingTranscriber(model, {**model.decode_defaults(), **params})
    events, emitted_at = [], []
    for i in range(0, audio.size, chunk):
        for e in st.push(audio[i:i + chunk]):
            events.append(e)
            emitted_at.append(st.seconds_received)
    events += st.finish()
    emitted_at += [np.inf] * (len(events) - len(emitted_at))
    return events, emitted_at


def _matches(reference: list[tuple[int, float]], ons: list[tuple[dict, float]]) -> int:
    """How many (pitch, start) of the reference have a streamed note_on of the same pitch within
    50 ms (one each)."""
    unmatched, hits = list(ons), 0
    for pitch, start in reference:
        hit = next((x for x in unmatched if x[0]["pitch_midi"] == pitch
                    and abs(x[0]["start_s"] - start) <= 0.05), None)
        if hit is not None:
            unmatched.remove(hit)
            hits += 1
    return hits


def test_streamed_notes_match_offline_within_half_a_second(model: TranscriberModel) -> None:
    """The stream sees 0.26 s past a frame (the latency bound), the offline pass at least 0.35 s,
    and the lowest band's analysis window reaches 0.37 s ahead: an activation close to a threshold
    can fall the other way, so a few notes in a hundred may differ. Everything else must match,
    and every note_on must leave within 0.5 s of its onset."""
    offline_total = streamed_total = matched = 0
    latencies = []
    for seed in (7, 11, 19):
        audio = render_notes(random_notes(np.random.default_rng(seed), 12.0), 12.0, sr=model.sample_rate)
        offline = model.transcribe(audio)
        assert len(offline) >= 10
        events, emitted_at = stream(model, audio, int(CHUNK_S * model.sample_rate))
        ons = [(e, t) for e, t in zip(events, emitted_at) if e["type"] == "note_on"]
        assert len(ons) == len([e for e in events if e["type"] == "note_off"])
        offline_total, streamed_total = offline_total + len(offline), streamed_total + len(ons)
        matched += _matches([(n.pitch_midi, n.start_s) for n in offline], ons)
        # Audio received when the note_on left, after its onset (all but the final flush).
        latencies += [t - e["start_s"] for e, t in ons if np.isfinite(t)]
        assert sum(np.isfinite(t) for _, t in ons) >= len(ons) - 2
    assert matched >= 0.95 * offline_total and matched >= 0.95 * streamed_total, (matched, offline_total, streamed_total)
    assert max(latencies) <= 0.5, sorted(latencies)[-5:]


def test_chunk_size_changes_only_notes_near_a_threshold(model: TranscriberModel) -> None:
    """A window ends where the audio received ends, and the lowest band's analysis reaches past
    the look-ahead, so 1000-sample and 7919-sample chunks settle frames from slightly different
    windows (low keys' activations differ by up to ~0.2). A note near a threshold may fall the
    other way or move a frame; at least 95 % must be the same either way."""
    matched = total_a = total_b = 0
    for seed in (3, 4, 5, 6):
        audio = render_notes(random_notes(np.random.default_rng(seed), 6.0), 6.0, sr=model.sample_rate)
        a, b = (stream(model, audio, chunk)[0] for chunk in (1000, 7919))
        for events in (a, b):
            assert sum(e["type"] == "note_on" for e in events) == sum(e["type"] == "note_off" for e in events)
        ons_a = [(e["pitch_midi"], e["start_s"]) for e in a if e["type"] == "note_on"]
        ons_b = [(e, 0.0) for e in b if e["type"] == "note_on"]
        matched, total_a, total_b = matched + _matches(ons_a, ons_b), total_a + len(ons_a), total_b + len(ons_b)
    assert total_a >= 40
    assert matched >= 0.95 * total_a and matched >= 0.95 * total_b, (matched, total_a, total_b)


def test_no_note_is_announced_from_old_frames_the_history_edge_cut_into(model: TranscriberModel) -> None:
    """Once the kept history starts inside a segment of bridged notes, the decoder re-reads what is
    left of it and may split it anew. With these settings this clip used to get a note_on 2.2 s
    after its start from such a re-reading; every note_on must still leave within the bound."""
    audio = render_notes(random_notes(np.random.default_rng(11), 12.0), 12.0, sr=model.sample_rate)
    events, emitted_at = stream(model, audio, int(CHUNK_S * model.sample_rate), min_note_ms=69.0)
    late = [(round(t - e["start_s"], 3), e) for e, t in zip(events, emitted_at)
            if e["type"] == "note_on" and np.isfinite(t) and t - e["start_s"] > 0.5]
    assert not late, late
