"""The voice-presence check: real and synthetic speech pass; silence, tones, hums, noise and too
little speech are refused, each with its reason."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from benchmarks.speechlike import SR, speech_like

from core import audio as audio_io
from core.voice import find_voice

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "artifacts" / "extractor" / "examples").glob("*/*.wav"))
# Real recordings, where this workplace has them; the synthetic cases below always run.
REAL = REPO.parent / "shared" / "data" / "real"


def seconds(s: float) -> np.ndarray:
    return np.arange(int(s * SR)) / SR


def test_synthetic_speech_passes() -> None:
    found = find_voice(speech_like(3.0), SR)
    assert found.problem is None, found.message
    assert found.speech_s > 1.5 and found.pitch_spread_st > 1.0


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_examples_pass(path: Path) -> None:
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    found = find_voice(x.T, sr)  # binaural: the ears are averaged
    assert found.problem is None, found.message


@pytest.mark.parametrize(("signal", "problem"), [
    (np.zeros(3 * SR), "silence"),
    (1e-5 * np.random.default_rng(0).standard_normal(3 * SR), "silence"),
    (0.3 * np.sin(2 * np.pi * 440 * seconds(3)), "tone"),
    (0.3 * np.sin(2 * np.pi * 120 * seconds(3)), "tone"),
    # a hum: a low tone with harmonics, as mains or a fan
    (sum(0.1 / k * np.sin(2 * np.pi * 100 * k * seconds(3)) for k in range(1, 8)), "tone"),
    (0.1 * np.random.default_rng(1).standard_normal(3 * SR), "noise"),
    (np.cumsum(np.random.default_rng(2).standard_normal(3 * SR)) * 1e-3, "noise"),  # brown noise
], ids=["zeros", "near-silence", "tone-440", "tone-120", "hum", "white-noise", "brown-noise"])
def test_no_voice_is_named(signal: np.ndarray, problem: str) -> None:
    found = find_voice(signal.astype(np.float32), SR)
    assert found.problem == problem, found


def test_a_short_word_is_too_little() -> None:
    clip = np.concatenate([np.zeros(SR), speech_like(0.35, seed=3), np.zeros(SR)])
    found = find_voice(clip, SR)
    assert found.problem in ("too_little_voice", "noise")
    assert found.speech_s < 0.5


def test_require_voice_raises_an_audio_error() -> None:
    with pytest.raises(audio_io.AudioError) as err:
        audio_io.require_voice(np.zeros(2 * SR, dtype=np.float32), SR)
    assert err.value.reason == "no_voice"
    assert "silent" in err.value.message and "0.5 s of speech" in err.value.message
    assert audio_io.require_voice(speech_like(2.0), SR).problem is None


@pytest.mark.skipif(not REAL.is_dir(), reason="no ../shared/data/real here")
def test_real_recordings() -> None:
    speech = (sorted((REAL / "speech" / "librispeech-train-clean-100").glob("*.flac"))[:5]
              + sorted((REAL / "speech" / "speechocean762").glob("*/*.opus"))[:5])
    noise = sorted((REAL / "noise" / "speech-commands").glob("*.wav")) + sorted((REAL / "noise" / "esc50").glob("*.wav"))
    limits = audio_io.Limits(max_seconds=600, max_bytes=1 << 28)
    for path in speech:
        found = find_voice(audio_io.load(path, SR, limits=limits), SR)
        assert found.problem is None, (path, found.message)
    for path in noise:
        found = find_voice(audio_io.load(path, SR, limits=limits), SR)
        assert found.problem is not None, (path, found)
