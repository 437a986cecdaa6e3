"""The classifier over HTTP against the real server (the shipped model), and the served path
in-process: probabilities per class, per modality, voice alone without a transcript."""
from __future__ import annotations


import httpx
import numpy as np
import pytest
from conftest import REPO, Server, wav_bytes

from core.classifier_model import ClassifierModel

SHIPPED = REPO / "artifacts" / "classifier"


def voiced(seconds: float = 3.0, sr: int = 16000, f0: float = 130.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    tone = sum(np.sin(2 * np.pi * k * f0 * (1 + 0.05 * np.sin(2 * np.pi * 0.5 * t)) * t) / k for k in range(1, 15))
    return (0.05 * tone * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


@pytest.fixture(scope="module")
def model() -> ClassifierModel:
    return ClassifierModel(SHIPPED, threads=1)


def test_served_path_fuses_when_there_is_a_transcript(model: ClassifierModel) -> None:
    with_text = model.classify(voiced(), "I never sleep anymore and everything is always awful.")
    assert with_text.modalities == ["voice", "text"] and not with_text.notes
    assert sum(with_text.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    fused = np.mean([[p[c] for c in model.classes] for p in with_text.per_modality.values()], axis=0)
    assert np.allclose(fused, [with_text.probabilities[c] for c in model.classes], atol=1e-5)
    voice_only = model.classify(voiced(), "  ")
    assert voice_only.modalities == ["voice"] and "voice alone" in voice_only.notes[0]
    assert voice_only.probabilities == voice_only.per_modality["voice"]


def test_card_states_intended_use_and_grouped_evaluation(model: ClassifierModel) -> None:
    assert "not a diagnostic device" in model.intended_use and "SYNTHETIC" in model.intended_use
    ev = model.card["evaluation"]
    assert "grouped by participant" in ev["method"]
    assert ev["fused"]["macro_f1"] > max(ev["voice"]["macro_f1"], ev["text"]["macro_f1"]) > ev["dummy"]["macro_f1"]


def test_classify_over_http(server: Server) -> None:
    upload = {"audio": ("answer.wav", wav_bytes(voiced(), 16000), "audio/wav")}
    r = httpx.post(f"{server.url}/classify", files=upload, data={"transcript": "We had a wonderful day!"}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["modalities"] == ["voice", "text"] and set(body["probabilities"]) == set(body["per_modality"]["voice"])
    assert body["label"] == max(body["probabilities"], key=body["probabilities"].get)
    assert "not a diagnostic device" in body["intended_use"]
    r = httpx.post(f"{server.url}/classify", files=upload, timeout=60)
    assert r.status_code == 200 and r.json()["modalities"] == ["voice"] and r.json()["notes"]


def test_classify_refuses_bad_input(server: Server) -> None:
    r = httpx.post(f"{server.url}/classify", data={"transcript": "hello"}, files={}, timeout=30)
    assert r.status_code in (400, 415)
    r = httpx.post(f"{server.url}/classify", files={"audio": ("a.wav", b"RIFF....not audio", "audio/wav")}, timeout=30)
    assert r.status_code == 400
    upload = {"audio": ("answer.wav", wav_bytes(voiced(1.0), 16000), "audio/wav")}
    r = httpx.post(f"{server.url}/classify", files=upload, data={"transcript": "word " * 5000}, timeout=30)
    assert r.status_code == 400 and r.json()["reason"] == "params"


@pytest.mark.parametrize(("signal", "found"), [
    (np.zeros(3 * 16000, np.float32), "silent"),
    ((0.3 * np.sin(2 * np.pi * 220 * np.arange(3 * 16000) / 16000)).astype(np.float32), "tone"),
    (voiced(0.3), "0.5 s"),
], ids=["silence", "tone", "too-short"])
def test_classify_refuses_audio_without_a_voice(server: Server, signal: np.ndarray, found: str) -> None:
    upload = {"audio": ("answer.wav", wav_bytes(signal, 16000), "audio/wav")}
    r = httpx.post(f"{server.url}/classify", files=upload, data={"transcript": "I am fine."}, timeout=60)
    assert r.status_code == 422, r.text
    assert r.json()["reason"] == "no_voice" and found in r.json()["error"], r.json()
