"""Bad input over HTTP: always a 4xx that says what was wrong and what is accepted, never a 500,
and the server keeps serving. Runs against the shared server (HARK_MAX_AUDIO_SECONDS=30,
HARK_MAX_UPLOAD_MB=2, 2 workers)."""
from __future__ import annotations

import struct

import httpx
import numpy as np
import pytest
from conftest import MAX_AUDIO_SECONDS, MAX_UPLOAD_MB, Server, tone, wav_bytes

GOOD = wav_bytes(tone(440.0, 0.5, total_s=0.6))


def post(server: Server, data: bytes | None, content_type: str = "audio/wav", **fields: str) -> httpx.Response:
    files = {"audio": ("clip.wav", data, content_type)} if data is not None else None
    return httpx.post(f"{server.url}/transcribe", files=files, data=fields or None, timeout=60)


def expect_refusal(response: httpx.Response, status: int, reason: str, *phrases: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["reason"] == reason
    message = body["error"]
    for phrase in phrases:
        assert phrase in message, message
    return message


@pytest.fixture(autouse=True)
def still_serving(server: Server):
    """After every refusal the same server still transcribes a good file."""
    yield
    response = post(server, GOOD)
    assert response.status_code == 200, response.text
    assert [n["pitch_midi"] for n in response.json()["notes"]] == [69]


def with_rate(data: bytes, rate: int) -> bytes:
    out = bytearray(data)
    struct.pack_into("<I", out, 24, rate)  # sample rate field of the fmt chunk
    struct.pack_into("<I", out, 28, rate * 2)  # byte rate, kept consistent
    return bytes(out)


def test_random_bytes_with_an_audio_content_type(server: Server):
    for seed in range(3):
        noise = np.random.default_rng(seed).integers(0, 256, 20_000, dtype=np.uint8).tobytes()
        expect_refusal(post(server, noise), 400, "undecodable", "Accepted:", "WAV, FLAC")
    expect_refusal(post(server, b"\xff\xfb\x90\x00" + noise), 400, "undecodable", "MP3", "corrupt")


def test_truncated_wav(server: Server):
    data = wav_bytes(tone(440.0, 2.0))
    expect_refusal(post(server, data[: len(data) // 3]), 400, "truncated", "cut off", "Accepted:")
    expect_refusal(post(server, data[:30]), 400, "undecodable", "Accepted:")


def test_zero_length_audio(server: Server):
    expect_refusal(post(server, b""), 422, "empty", "empty", "Accepted:")
    expect_refusal(post(server, wav_bytes(np.zeros(0, np.float32))), 422, "empty", "no samples")


def test_float_wav_of_nan_and_inf(server: Server):
    bad = np.where(np.arange(4000) % 2, np.nan, np.inf).astype(np.float32)
    expect_refusal(post(server, wav_bytes(bad, subtype="FLOAT")), 422, "non_finite", "NaN", "finite")


def test_eight_channels(server: Server):
    data = wav_bytes(np.zeros((4000, 8), np.float32))
    expect_refusal(post(server, data), 422, "channels", "8 channels", "mono or stereo")


@pytest.mark.parametrize("rate", [1, 10_000_000])
def test_absurd_declared_sample_rate(server: Server, rate: int):
    data = with_rate(wav_bytes(np.zeros(4000, np.int16)), rate)
    expect_refusal(post(server, data), 422, "sample_rate", f"{rate} Hz", "4000-192000 Hz")


def test_audio_over_the_max_duration(server: Server):
    data = wav_bytes(np.zeros((MAX_AUDIO_SECONDS + 1) * 4000, np.float32), 4000, subtype="PCM_U8")
    expect_refusal(post(server, data), 422, "too_long",
                   f"{MAX_AUDIO_SECONDS + 1}.0 s", f"{MAX_AUDIO_SECONDS:g} s limit")


def test_upload_over_the_max_size(server: Server):
    big = b"\0" * int((MAX_UPLOAD_MB + 0.5) * 1e6)
    expect_refusal(post(server, big), 413, "too_large", f"{MAX_UPLOAD_MB:g} MB")


def test_upload_over_the_max_size_without_content_length(server: Server):
    def chunks():
        for _ in range(int(MAX_UPLOAD_MB * 4) + 4):
            yield b"\0" * 300_000

    boundary = "hark-test-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"a.wav\"\r\n"
            "Content-Type: audio/wav\r\n\r\n").encode()

    def body():
        yield head
        yield from chunks()
        yield f"\r\n--{boundary}--\r\n".encode()

    response = httpx.post(f"{server.url}/transcribe", content=body(), timeout=60,
                          headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    expect_refusal(response, 413, "too_large", "MB limit")


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"onset_threshold": "1.5"}, "onset_threshold"),
        ({"onset_threshold": "0"}, "onset_threshold"),
        ({"frame_threshold": "-0.1"}, "frame_threshold"),
        ({"min_note_ms": "5000"}, "min_note_ms"),
        ({"min_freq_hz": "5"}, "min_freq_hz"),
        ({"max_freq_hz": "20000"}, "max_freq_hz"),
        ({"onset_threshold": "loud"}, "onset_threshold"),
    ],
)
def test_out_of_range_parameters(server: Server, fields: dict[str, str], field: str):
    message = expect_refusal(post(server, GOOD, **fields), 400, "invalid_request", field, "accepted:")
    assert "Invalid request" in message


def test_min_frequency_above_max_frequency(server: Server):
    expect_refusal(post(server, GOOD, min_freq_hz="1000", max_freq_hz="100"), 400, "params",
                   "must be below max_freq_hz", "Accepted:")


def test_missing_file_field(server: Server):
    # A form with no file at all is not even multipart...
    expect_refusal(post(server, None, onset_threshold="0.5"), 415, "not_multipart", "'audio'", "multipart/form-data")
    # ...a multipart form with only parameters lacks the file...
    response = httpx.post(f"{server.url}/transcribe", files={"onset_threshold": (None, "0.5")}, timeout=30)
    expect_refusal(response, 400, "missing_file", "'audio'", "Accepted:")
    # ...and the file under another name (the common `-F file=@song.wav`) is pointed out.
    response = httpx.post(f"{server.url}/transcribe", files={"file": ("a.wav", GOOD, "audio/wav")}, timeout=30)
    expect_refusal(response, 400, "unknown_field", "'file'", "did you mean 'audio'")


def test_misused_form_fields(server: Server):
    # A file where a number belongs: BentoML alone would answer 500 here.
    response = httpx.post(f"{server.url}/transcribe", timeout=30, files={
        "audio": ("a.wav", GOOD, "audio/wav"), "onset_threshold": ("x.bin", b"\x80\x81", "application/octet-stream")})
    expect_refusal(response, 400, "invalid_request", "'onset_threshold' takes a value")
    # A URL as the audio value: refused, never downloaded.
    response = httpx.post(f"{server.url}/transcribe", files={"audio": (None, "http://127.0.0.1:9/a.wav")}, timeout=30)
    expect_refusal(response, 400, "missing_file", "must be a file upload")


def test_malformed_multipart(server: Server):
    response = httpx.post(f"{server.url}/transcribe", content=b"--xyz\r\nnot a header\r\n\r\n" + GOOD[:100],
                          headers={"content-type": "multipart/form-data; boundary=xyz"}, timeout=30)
    assert 400 <= response.status_code < 500, response.text
    assert "multipart" in response.json()["error"]


def test_non_audio_content_type(server: Server):
    expect_refusal(post(server, GOOD, content_type="text/plain"), 415, "content_type", "text/plain",
                   "application/octet-stream")


def test_body_that_is_not_multipart(server: Server):
    response = httpx.post(f"{server.url}/transcribe", content=GOOD, headers={"content-type": "audio/wav"})
    expect_refusal(response, 415, "not_multipart", "multipart/form-data", "audio=@")


def test_midi_endpoint_refuses_the_same_way(server: Server):
    response = httpx.post(f"{server.url}/transcribe_midi", files={"audio": ("a.wav", b"junk", "audio/wav")})
    expect_refusal(response, 400, "undecodable", "Accepted:")


@pytest.mark.parametrize("query", ["page=0", "page=missing&deep_link=", "page=%00"])
def test_a_demo_page_that_does_not_exist_is_a_404_that_names_the_pages(server: Server, query: str):
    # Gradio itself answers these with a 500 (found by schemathesis over /docs.json).
    r = httpx.get(f"{server.url}/ui/?{query}", timeout=30)
    assert r.status_code == 404 and r.json()["reason"] == "not_found"
    assert "its pages: ''" in r.json()["error"]
    assert httpx.get(f"{server.url}/ui/?page=", timeout=30).status_code == 200
