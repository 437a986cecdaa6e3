"""Property-based fuzzing (hypothesis, time-bounded) of what parses user bytes: audio decoding,
.hark token files and classifier manifests raise only their documented errors, and the HTTP
routes answer arbitrary uploads with a 4xx or a 200, never a 5xx."""
from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import Server, tone, wav_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import audio, codec_tokens
from training.data.manifest import ManifestError, read_manifest

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LIMITS = audio.Limits(max_seconds=5.0, max_bytes=200_000)
GOOD_WAV = wav_bytes(tone(440.0, 0.2, sr=8000), sr=8000)
GOOD_TOKENS = codec_tokens.dumps(codec_tokens.Tokens(np.zeros((10, 2, 2), np.int64), 16000, 50.0, 1024, 3200))


def mutated(seed: bytes) -> st.SearchStrategy[bytes]:
    """A valid file with a few bytes overwritten, cut or extended: near misses reach deeper
    into a parser than random bytes do."""
    edits = st.lists(st.tuples(st.integers(0, len(seed) - 1), st.integers(0, 255)), max_size=8)
    return st.tuples(edits, st.integers(0, len(seed)), st.binary(max_size=64)).map(
        lambda t: _apply(seed, *t))


def _apply(seed: bytes, edits: list[tuple[int, int]], cut: int, tail: bytes) -> bytes:
    data = bytearray(seed)
    for offset, value in edits:
        data[offset] = value
    return bytes(data[:cut]) + tail


@FAST
@given(st.one_of(st.binary(max_size=2048), mutated(GOOD_WAV)))
def test_audio_decoding_raises_only_audio_errors(data: bytes) -> None:
    try:
        decoded = audio.decode(data, 16000, limits=LIMITS)
    except audio.AudioError as exc:
        assert exc.reason and exc.message
        return
    assert decoded.samples.dtype == np.float32 and np.isfinite(decoded.samples).all()
    assert 0 < decoded.duration_s <= LIMITS.max_seconds


@FAST
@given(st.one_of(st.binary(max_size=512), mutated(GOOD_TOKENS),
                 st.integers(0, 2**32 - 1).map(lambda frames: _with_frames(GOOD_TOKENS, frames))))
def test_token_parsing_raises_only_token_errors(data: bytes) -> None:
    try:
        header = codec_tokens.read_header(data)
        tokens = codec_tokens.loads(data)
    except codec_tokens.TokenFileError as exc:
        assert str(exc)
        return
    assert header.duration_s >= 0 and tokens.codes.shape == (header.frames, header.groups, header.stages)
    assert tokens.codes.size == 0 or int(tokens.codes.max()) < tokens.codebook_size


def _with_frames(data: bytes, frames: int) -> bytes:
    out = bytearray(data)
    struct.pack_into("<I", out, 18, frames)
    return bytes(out)


CSV_TEXT = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=400)
HEADER = "participant_id,audio_path,transcript,label,split\n"


@settings(max_examples=150, deadline=None)
@given(st.one_of(CSV_TEXT, CSV_TEXT.map(lambda body: HEADER + body), st.binary(max_size=300)))
def test_manifest_parsing_raises_only_manifest_errors(content: str | bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "manifest.csv"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        try:
            recordings, warnings = read_manifest(path, check_files=False)
        except ManifestError as exc:
            assert str(exc)
            return
        assert recordings and all(r.participant_id and r.label for r in recordings)
        assert isinstance(warnings, list)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(["/transcribe", "/encode", "/decode", "/reconstruct"]),
       data=st.one_of(st.binary(max_size=4096), mutated(GOOD_WAV), mutated(GOOD_TOKENS)),
       content_type=st.sampled_from(["audio/wav", "application/octet-stream", "text/plain", "audio/ogg"]))
def test_http_routes_never_answer_5xx(server: Server, route: str, data: bytes, content_type: str) -> None:
    field = "tokens" if route == "/decode" else "audio"
    r = httpx.post(f"{server.url}{route}", files={field: ("f", data, content_type)}, timeout=60)
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert r.json()["error"]


@pytest.mark.parametrize("route", ["/transcribe", "/decode"])
def test_http_fuzz_leaves_the_server_serving(server: Server, route: str) -> None:
    field = "tokens" if route == "/decode" else "audio"
    body = GOOD_TOKENS if route == "/decode" else GOOD_WAV
    assert httpx.post(f"{server.url}{route}", files={field: ("f", body, "audio/wav")}, timeout=60).status_code == 200


# The demo's server-sent-event routes hold a request open until their session ends: not fuzzed.
LONG_POLLS = ("heartbeat", "queue/data", "/stream/", "upload_progress", "startup-events", "dev/reload", "{event_id}")


def _schema_operations(server: Server) -> list:
    import schemathesis

    schema = schemathesis.openapi.from_url(f"{server.url}/docs.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    return [op for op in operations if not any(part in op.path for part in LONG_POLLS)]


def test_schemathesis_finds_no_5xx_on_any_documented_operation(server: Server) -> None:
    """Every operation of the OpenAPI document BentoML serves (hark's routes and the demo's, which
    Gradio adds), fed requests that follow its schema and requests that break it (schemathesis),
    answers below 500; every refusal of a hark route says why."""
    from schemathesis import GenerationMode

    operations = _schema_operations(server)
    labels = {op.label for op in operations}
    for route in ("/transcribe", "/transcribe_midi", "/encode", "/decode", "/reconstruct", "/enroll", "/extract",
                  "/classify"):
        assert f"POST {route}" in labels, sorted(labels)
    assert "GET /ui/" in labels and "POST /ui/gradio_api/queue/join" in labels
    ours = {op.label for op in operations if not op.path.startswith("/ui")}
    answered: dict[int, int] = {}
    for op in operations:
        strategy = op.as_strategy(GenerationMode.POSITIVE) | op.as_strategy(GenerationMode.NEGATIVE)

        @settings(max_examples=12 if op.label in ours else 4, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def check(case) -> None:
            response = case.call(base_url=server.url, timeout=60)
            answered[response.status_code] = answered.get(response.status_code, 0) + 1
            assert response.status_code < 500, f"{case.as_curl_command()}: {response.status_code} {response.text[:300]}"
            if response.status_code >= 400 and op.label in ours:  # the demo's own routes answer Gradio's way
                try:
                    body = response.json()
                except ValueError:
                    body = None
                assert isinstance(body, dict) and body.get("error"), \
                    f"{op.label}: {response.status_code} without a reason: {response.text[:300]}"

        check()
    assert sum(answered.values()) >= 3 * len(operations) and any(code >= 400 for code in answered), answered


@pytest.mark.parametrize(("path", "body"), [
    ("/ui/gradio_api/queue/join", {"data": [], "fn_index": -1785, "session_hash": "x"}),
    ("/ui/gradio_api/run/no_such_endpoint", {"data": []}),
])
def test_the_demo_answers_malformed_requests_with_a_4xx_that_says_so(server: Server, path: str, body: dict) -> None:
    # Gradio alone answers both with a 500 (found by the schemathesis run above).
    r = httpx.post(f"{server.url}{path}", json=body, timeout=30)
    assert 400 <= r.status_code < 500 and r.json()["error"], r.text
    assert httpx.get(f"{server.url}/ui/", timeout=30).status_code == 200
