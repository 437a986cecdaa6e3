"""Decoding and validation of uploaded audio (core/audio.py)."""
from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import soundfile as sf
from conftest import SR, tone, wav_bytes

from core import audio

LIMITS = audio.Limits(max_seconds=30, max_bytes=2_000_000)


def refused(data, reason: str, **kw) -> str:
    with pytest.raises(audio.AudioError) as info:
        audio.decode(data, SR, limits=LIMITS, **kw)
    assert info.value.reason == reason, info.value.message
    assert "Accepted:" in info.value.message  # every refusal says what would be taken
    return info.value.message


def with_rate(data: bytes, rate: int) -> bytes:
    """The same WAV with another sample rate written into its fmt chunk."""
    out = bytearray(data)
    assert out[12:16] == b"fmt "
    struct.pack_into("<I", out, 24, rate)
    return bytes(out)


def test_mono_wav_at_model_rate_is_returned_unchanged():
    x = tone(440, 1.0)
    got = audio.decode(wav_bytes(x, subtype="FLOAT"), SR, limits=LIMITS)
    assert got.samples.dtype == np.float32 and got.sample_rate == SR
    np.testing.assert_array_equal(got.samples, x)
    assert (got.source_rate, got.source_channels, got.source_format) == (SR, 1, "WAV")
    assert got.duration_s == pytest.approx(1.0)


def test_stereo_is_averaged_and_other_rates_are_resampled():
    left, right = tone(440, 1.0, sr=44100), tone(440, 1.0, sr=44100, amp=0.1)
    got = audio.decode(wav_bytes(np.stack([left, right], 1), 44100), SR, limits=LIMITS)
    assert got.samples.size == SR and got.source_channels == 2 and got.source_rate == 44100
    assert np.abs(got.samples).max() == pytest.approx(0.3, abs=0.01)
    spectrum = np.abs(np.fft.rfft(got.samples))
    assert np.fft.rfftfreq(got.samples.size, 1 / SR)[spectrum.argmax()] == pytest.approx(440, abs=2)


@pytest.mark.parametrize("fmt", ["FLAC", "OGG", "MP3"])
def test_compressed_formats(fmt: str):
    buffer = io.BytesIO()
    sf.write(buffer, tone(440, 1.0, sr=44100), 44100, format=fmt)
    got = audio.decode(buffer.getvalue(), SR, limits=LIMITS)
    assert got.source_format == fmt and abs(got.samples.size - SR) < 0.05 * SR


def test_paths_and_content_types(tmp_path):
    path = tmp_path / "a.wav"
    path.write_bytes(wav_bytes(tone(440, 0.5)))
    assert audio.load(path, SR, limits=LIMITS).size == SR // 2
    for ok in (None, "", "audio/wav", "audio/x-wav; charset=binary", "application/octet-stream", "AUDIO/FLAC"):
        assert audio.content_type_ok(ok)
    message = refused(path.read_bytes(), "content_type", content_type="text/plain")
    assert "text/plain" in message and "application/octet-stream" in message


def test_undecodable_bytes():
    noise = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    assert "not a recognised audio file" in refused(noise, "undecodable")
    assert "WAV" in refused(b"RIFF\x10\x00\x00\x00WAVEfmt ", "undecodable")
    assert "FLAC" in refused(b"fLaC" + noise, "undecodable")


def test_truncated_wav():
    data = wav_bytes(tone(440, 1.0))
    assert "cut off" in refused(data[: len(data) // 2], "truncated")
    # Streaming writers leave the size unknown: that is not truncation.
    unknown = bytearray(data)
    unknown[40:44] = b"\xff\xff\xff\xff"
    assert audio.decode(bytes(unknown), SR, limits=LIMITS).samples.size == SR


def test_empty_inputs():
    assert "0 bytes" in refused(b"", "empty")
    refused(wav_bytes(np.zeros(0, np.float32)), "empty")


def test_non_finite_samples():
    x = tone(440, 0.5)
    x[5000] = np.nan
    assert "NaN" in refused(wav_bytes(x, subtype="FLOAT"), "non_finite")
    refused(wav_bytes(np.full(100, np.inf, np.float32), subtype="FLOAT"), "non_finite")


def test_channels():
    assert "8 channels" in refused(wav_bytes(np.zeros((1000, 8), np.float32)), "channels")


@pytest.mark.parametrize("rate", [1, 3999, 192_001, 10_000_000])
def test_absurd_sample_rates(rate: int):
    message = refused(with_rate(wav_bytes(np.zeros(1000, np.float32)), rate), "sample_rate")
    assert f"{rate} Hz" in message and "4000-192000 Hz" in message


def test_duration_and_size_limits(monkeypatch):
    long = wav_bytes(np.zeros(31 * 4000, np.float32), 4000, subtype="PCM_U8")
    assert "31.0 s" in refused(long, "too_long")
    assert "MB" in refused(b"\0" * (LIMITS.max_bytes + 1), "too_large")
    monkeypatch.setenv("HARK_MAX_AUDIO_SECONDS", "40")
    monkeypatch.setenv("HARK_MAX_UPLOAD_MB", "0.5")
    limits = audio.Limits.from_env()
    assert (limits.max_seconds, limits.max_bytes) == (40.0, 500_000)
    assert audio.decode(long, SR, limits=limits).duration_s == pytest.approx(31.0, abs=0.01)


def test_sniffing():
    assert audio.sniff_format(wav_bytes(np.zeros(10))) == "WAV"
    assert audio.sniff_format(b"ID3\x04rest") == "MP3"
    assert audio.sniff_format(b"OggS\0\0") == "OGG"
    assert audio.sniff_format(b"hello world") is None


def test_active_level_ignores_pauses_and_meters_streams_as_whole() -> None:
    from core.audio import LevelMeter, active_level_db, frame_powers

    rng = np.random.default_rng(3)
    speech = rng.standard_normal(16000) * 0.1  # -20 dBFS
    x = np.concatenate([speech, np.zeros(32000), speech])  # two thirds silence
    assert active_level_db(frame_powers(x, 16000)) == pytest.approx(-20.0, abs=0.2)
    meter = LevelMeter(16000)
    for i in range(0, x.size, 777):
        meter.push(x[i:i + 777])
    assert np.allclose(meter.all_powers(), frame_powers(x, 16000))
    assert active_level_db(frame_powers(np.zeros(16000), 16000)) == float("-inf")
