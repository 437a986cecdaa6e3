"""The exported codec (stand-in weights) as the service runs it: ONNX graphs, bitrates, streams."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import CODEC_HOP

from core.codec_model import CodecModel, DecoderStream, EncoderStream
from core.codec_tokens import Tokens


@pytest.fixture(scope="module")
def codec(stand_in_codec_dir: Path) -> CodecModel:
    return CodecModel(stand_in_codec_dir, threads=1)


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * 16000)) * 0.1).astype(np.float32)


def test_card_records_parity_latency_and_files(stand_in_codec_dir: Path) -> None:
    card = json.loads((stand_in_codec_dir / "card.json").read_text())
    assert card["parity"]["passed"] and card["parity"]["stream_max_abs"] <= 1e-4
    assert card["parity"]["encoder_code_agreement"] == 1.0 and card["parity"]["stream_code_agreement"] == 1.0
    assert card["latency_ms"] <= 40
    assert card["bitrates_kbps"] == {"1": 1.0, "2": 2.0}
    for name in ("encoder.onnx", "decoder.onnx", "encoder_step.onnx", "decoder_step.onnx"):
        assert (stand_in_codec_dir / name).is_file()


def test_bitrates_are_prefixes_of_one_stream(codec: CodecModel) -> None:
    x = noise(0.7)
    full, low = codec.encode(x, 2.0), codec.encode(x, 1.0)
    assert full.shape == (-(-x.size // CODEC_HOP), 2, 2) and np.array_equal(full[..., :1], low)
    assert codec.reconstruct(x, 1.0).shape == x.shape
    with pytest.raises(ValueError, match="not offered"):
        codec.stages_for(1.5)


def test_decoder_refuses_codes_outside_the_codebook(codec: CodecModel) -> None:
    with pytest.raises(ValueError, match="lie in"):
        codec.decode(np.full((3, 2, 2), 1024))
    with pytest.raises(ValueError, match="must be"):
        codec.decode(np.zeros((3, 3, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="groups"):
        codec.check_tokens(Tokens(np.zeros((4, 2, 2), dtype=np.int64), 16000, 50.0, 512, 1280))


@pytest.mark.parametrize("kbps", [1.0, 2.0])
def test_streams_equal_offline(codec: CodecModel, kbps: float) -> None:
    x = noise(1.1, seed=1)[:17_333]
    enc, dec = EncoderStream(codec, kbps), DecoderStream(codec)
    rng = np.random.default_rng(2)
    codes, audio, i = [], [], 0
    while i < x.size:
        n = int(rng.integers(1, 900))
        c = enc.push(x[i:i + n])
        codes.append(c)
        audio.append(dec.push(c))
        i += n
    c = enc.finish()
    codes.append(c)
    audio += [dec.push(c), dec.finish()]
    offline = codec.encode(x, kbps)
    assert np.array_equal(np.concatenate(codes), offline) and enc.samples == x.size
    streamed = np.concatenate(audio)
    reference = codec.decode(offline)
    assert streamed.size == reference.size and np.abs(streamed - reference).max() <= 1e-4


@pytest.mark.parametrize("level_db", [-40.0, -25.0, -12.0])
def test_output_keeps_the_input_level(codec: CodecModel, level_db: float) -> None:
    from core.audio import active_level_db, frame_powers

    t = np.arange(int(1.3 * 16000)) / 16000
    x = noise(1.3) * np.maximum(0.0, np.sin(2 * np.pi * 1.5 * t)) ** 2  # bursts and pauses, as speech
    x = (x * 10 ** ((level_db - active_level_db(frame_powers(x, 16000))) / 20)).astype(np.float32)
    raw = codec.decode(codec.encode(x, 2.0), samples=x.size)
    tokens = codec.tokens(x, 2.0)
    for y in (codec.reconstruct(x, 2.0), codec.decode(tokens.codes, tokens.samples, tokens.gain_db)):
        assert abs(active_level_db(frame_powers(y, 16000)) - level_db) <= 0.05
    # the correction is the encoder's measurement of its own decoder, not a constant
    assert tokens.gain_db == pytest.approx(level_db - active_level_db(frame_powers(raw, 16000)), abs=0.01)
