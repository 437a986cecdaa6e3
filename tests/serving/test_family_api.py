"""The shared base of the families' endpoints: start-up, its refusals, and damaged artifacts."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.codec_model import CodecModel
from services import family_api, model_store
from services.family_api import FamilyAPI

REPO = Path(__file__).parents[2]


@pytest.fixture()
def codec_copy(tmp_path, monkeypatch):
    model_dir = tmp_path / "codec"
    shutil.copytree(REPO / "artifacts" / "codec", model_dir)
    monkeypatch.setenv("HARK_CODEC_MODEL", str(model_dir))
    return model_dir


def test_start_family_loads_warms_and_hands_out_the_model(codec_copy, monkeypatch):
    monkeypatch.setattr(family_api, "_loaded", {})
    warmed = []
    model = FamilyAPI().start_family("codec", CodecModel, warmed.append)
    assert isinstance(model, CodecModel) and warmed == [model]
    assert family_api.model_getter("codec")() is model and family_api.loaded("codec") is model


def test_without_a_model_start_family_raises_or_reports_where_the_service_serves_on(monkeypatch):
    monkeypatch.setattr(model_store, "resolve", lambda name: (_ for _ in ()).throw(FileNotFoundError("no codec")))
    with pytest.raises(FileNotFoundError):
        FamilyAPI().start_family("codec", CodecModel, lambda m: None)
    reasons = []
    assert FamilyAPI().start_family("codec", CodecModel, lambda m: None, on_missing=reasons.append) is None
    assert reasons == ["no codec"]


@pytest.mark.parametrize("damage", ["card not json", "card not an object", "onnx garbage", "onnx truncated",
                                    "onnx missing"])
def test_a_damaged_artifact_stops_start_up_with_an_error_naming_the_file(codec_copy, damage):
    card, onnx = codec_copy / "card.json", codec_copy / "decoder.onnx"
    if damage == "card not json":
        card.write_text("{not json")
    elif damage == "card not an object":
        card.write_text("[1, 2]")
    elif damage == "onnx garbage":
        onnx.write_bytes(b"garbage" * 100)
    elif damage == "onnx truncated":
        onnx.write_bytes(onnx.read_bytes()[:1000])
    else:
        onnx.unlink()
    with pytest.raises(RuntimeError) as info:
        FamilyAPI().start_family("codec", CodecModel, lambda m: None)
    message = str(info.value)
    assert str(card if damage.startswith("card") else onnx) in message
    assert "hark export codec" in message and "HARK_CODEC_MODEL" in message


def test_decode_upload_names_what_to_send_and_the_limits():
    from core import audio as audio_io

    error, decoded = FamilyAPI.decode_upload(None, 16000, audio_io.Limits.from_env(), missing="No audio: send X.")
    assert decoded is None and error.status_code == 400
    assert b"No audio: send X." in error.body and b"at most 600 s" in error.body
