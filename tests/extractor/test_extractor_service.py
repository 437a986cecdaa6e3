"""The extractor over HTTP and WebSocket against the real server (stand-in extractor, 2 workers),
plus the enrollment store, the served-without-artifacts path and the demo tab, in process."""
from __future__ import annotations

import io
import itertools
import json
import threading

import httpx
import numpy as np
import pytest
import soundfile as sf
from conftest import Server
from extractor_stand_in import binaural_voice
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from services.extractor_store import EnrollmentMissing, EnrollmentStore

SR = 16000
HOP, LOOKAHEAD = 128, 64


def wav(x: np.ndarray, sr: int = SR, subtype: str = "FLOAT") -> bytes:
    """(channels, N) or (N,) -> WAV bytes."""
    buf = io.BytesIO()
    sf.write(buf, x.T if x.ndim == 2 else x, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def upload(x: np.ndarray, name: str = "clip.wav", sr: int = SR) -> tuple[str, bytes, str]:
    return name, wav(x, sr), "audio/wav"


@pytest.fixture(scope="module")
def clips() -> dict[str, np.ndarray]:
    target = binaural_voice(2.0, f0=140.0, seed=3)
    other = 0.8 * binaural_voice(2.0, f0=220.0, seed=4)
    other[1] = 0.5 * np.roll(other[1], 10)  # from the left
    mixture = target + other
    return {"enrollment": binaural_voice(2.5, f0=140.0, seed=5),
            "mixture": mixture[:, :HOP * 120]}  # a whole number of hops, for the stream


def wav_of(response: httpx.Response) -> np.ndarray:
    audio, sr = sf.read(io.BytesIO(response.content), dtype="float32", always_2d=True)
    assert sr == SR
    return audio.T


def test_enroll_then_extract_by_id_and_by_clip(server: Server, clips: dict) -> None:
    # One connection: with two workers an id lives in the worker that made it (see the README).
    with httpx.Client(base_url=server.url, timeout=60) as client:
        r = client.post("/enroll", files={"audio": upload(clips["enrollment"])})
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["embedding"]) == 256 and np.linalg.norm(body["embedding"]) == pytest.approx(1, abs=1e-4)
        assert body["seconds"] == pytest.approx(2.5) and 3500 < body["expires_in_s"] <= 3600
        by_id = client.post("/extract", files={"audio": upload(clips["mixture"], "party.wav")},
                            data={"enrollment_id": body["enrollment_id"]})
    assert by_id.status_code == 200, by_id.text
    assert by_id.headers["content-type"] == "audio/wav"
    assert by_id.headers["x-hark-enrollment"] == "id" and by_id.headers["x-hark-model-version"]
    assert float(by_id.headers["x-hark-seconds"]) == pytest.approx(clips["mixture"].shape[1] / SR)
    assert 'party_extracted.wav"' in by_id.headers["content-disposition"]
    out = wav_of(by_id)
    assert out.shape == clips["mixture"].shape and np.abs(out).max() > 1e-3

    by_clip = httpx.post(f"{server.url}/extract", timeout=60, files={
        "audio": upload(clips["mixture"]), "enrollment": upload(clips["enrollment"], "me.wav")})
    assert by_clip.status_code == 200, by_clip.text
    assert by_clip.headers["x-hark-enrollment"] == "clip"
    assert np.array_equal(wav_of(by_clip), out)


def test_the_service_says_what_the_model_achieves(server: Server, clips: dict, stand_in_extractor_dir) -> None:
    from core.extractor_model import card_quality

    quality = card_quality(stand_in_extractor_dir)
    value = json.loads((stand_in_extractor_dir / "card.json").read_text())["evaluation"]["heldout_si_snri_db"]
    assert f"{value:+.2f} dB" in quality["summary"] and "7.01 dB" in quality["summary"]
    assert "does not reach the goal" in quality["summary"]
    enrolled = httpx.post(f"{server.url}/enroll", timeout=60, files={"audio": upload(clips["enrollment"])})
    assert enrolled.json()["quality"] == quality["summary"]
    extracted = httpx.post(f"{server.url}/extract", timeout=60, files={
        "audio": upload(clips["mixture"]), "enrollment": upload(clips["enrollment"], "me.wav")})
    assert extracted.headers["x-hark-quality"] == quality["summary"]
    docs = httpx.get(f"{server.url}/docs.json", timeout=30).json()
    assert "7.01 dB SI-SNRi" in docs["paths"]["/extract"]["post"]["description"]


def test_other_rates_are_resampled(server: Server, clips: dict) -> None:
    import soxr

    mixture_48k = soxr.resample(clips["mixture"].T, SR, 48000).T
    r = httpx.post(f"{server.url}/extract", timeout=60, files={
        "audio": upload(mixture_48k, sr=48000), "enrollment": upload(clips["enrollment"])})
    assert r.status_code == 200, r.text
    assert wav_of(r).shape == clips["mixture"].shape


def _refusal(response: httpx.Response, status: int, reason: str, *phrases: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["reason"] == reason, body
    for phrase in phrases:
        assert phrase in body["error"], body["error"]


def test_refusals(server: Server, clips: dict) -> None:
    mix, enr = upload(clips["mixture"]), upload(clips["enrollment"])
    mono = upload(clips["mixture"][0])

    def extract(files: dict, data: dict | None = None) -> httpx.Response:
        return httpx.post(f"{server.url}/extract", files=files, data=data or {}, timeout=60)

    _refusal(extract({"audio": mono, "enrollment": enr}), 422, "channels", "1 channel", "binaural", "2 channels")
    _refusal(extract({"audio": mix, "enrollment": upload(clips["enrollment"][0])}), 422, "channels", "enrollment:")
    _refusal(extract({"audio": mix}, {"enrollment_id": "no-such-id"}), 404, "unknown_enrollment",
             "no-such-id", "send the enrollment clip itself")
    _refusal(extract({"audio": mix, "enrollment": enr}, {"enrollment_id": "x"}), 400, "params", "Both", "exactly one")
    _refusal(extract({"audio": mix}), 400, "missing_enrollment", "enrollment_id", "exactly one")
    _refusal(extract({"enrollment": enr}), 400, "missing_file", "'audio'")
    long = np.tile(clips["enrollment"], (1, 5))  # 12.5 s
    _refusal(extract({"audio": mix, "enrollment": upload(long)}), 422, "too_long", "10 s limit")
    _refusal(extract({"audio": mix, "enrollment": upload(clips["enrollment"][:, :SR // 2])}), 422, "too_short", "1 s")
    # the generic rules, as for every family
    _refusal(extract({"audio": ("x.wav", b"not audio at all", "audio/wav"), "enrollment": enr}), 400, "undecodable")
    nan = np.full((2, 4000), np.nan, np.float32)
    _refusal(extract({"audio": upload(nan), "enrollment": enr}), 422, "non_finite", "NaN")
    r = httpx.post(f"{server.url}/enroll", files={"audio": mono}, timeout=60)
    _refusal(r, 422, "channels", "binaural")
    r = httpx.post(f"{server.url}/enroll", files={"file": enr}, timeout=60)
    _refusal(r, 400, "unknown_field", "did you mean 'audio'")


@pytest.mark.parametrize(("name", "clip", "found"), [
    ("silence", np.zeros((2, 3 * SR), np.float32), "silent"),
    ("tone", np.tile(0.3 * np.sin(2 * np.pi * 300 * np.arange(3 * SR) / SR), (2, 1)).astype(np.float32), "tone"),
    ("noise", 0.1 * np.random.default_rng(7).standard_normal((2, 3 * SR)).astype(np.float32), "noise"),
])
def test_enroll_refuses_a_clip_without_a_voice(server: Server, name: str, clip: np.ndarray, found: str) -> None:
    r = httpx.post(f"{server.url}/enroll", files={"audio": upload(clip, f"{name}.wav")}, timeout=60)
    _refusal(r, 422, "no_voice", "No voice", found, "someone speaking")
    by_clip = httpx.post(f"{server.url}/extract", files={"audio": upload(clip), "enrollment": upload(clip)}, timeout=60)
    _refusal(by_clip, 422, "no_voice", "enrollment:")


def test_metrics(server: Server, clips: dict) -> None:
    httpx.post(f"{server.url}/extract", files={"audio": upload(clips["mixture"][0]), "enrollment": upload(
        clips["enrollment"])}, timeout=60)
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    assert 'hark_model_info{family="extractor"' in text
    assert 'hark_rejected_requests_total{family="extractor",reason="channels"}' in text
    httpx.post(f"{server.url}/enroll", files={"audio": upload(clips["enrollment"])}, timeout=60)
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    assert 'hark_audio_seconds_total{model="extractor"}' in text


# --- the stream -----------------------------------------------------------------------------------


def ws_url(server: Server) -> str:
    return server.url.replace("http://", "ws://") + "/stream/extractor"


def stream(server: Server, start: dict, messages: list[bytes]) -> tuple[dict, list[bytes], dict]:
    """(ready, one reply per message plus the flush, done)."""
    with connect(ws_url(server)) as ws:
        ws.send(json.dumps({"type": "start", **start}))
        ready = json.loads(ws.recv(timeout=30))
        assert ready["type"] == "ready", ready
        replies = []
        for m in messages:
            ws.send(m)
            replies.append(ws.recv(timeout=30))  # answered one by one: the latency is one message
        ws.send(json.dumps({"type": "end"}))
        replies.append(ws.recv(timeout=30))
        done = json.loads(ws.recv(timeout=30))
    return ready, replies, done


def test_stream_equals_offline(server: Server, clips: dict) -> None:
    enrolled = httpx.post(f"{server.url}/enroll", files={"audio": upload(clips["enrollment"])}, timeout=60).json()
    offline = wav_of(httpx.post(f"{server.url}/extract", timeout=60, files={
        "audio": upload(clips["mixture"]), "enrollment": upload(clips["enrollment"])}))
    x = clips["mixture"]
    pcm = np.ascontiguousarray(x.T).astype("<f4")  # interleaved (frames, 2)
    sizes = [1, 3, 2, 8] * 30  # chunks of 1-8 hops
    bounds = np.cumsum([0] + sizes) * HOP
    messages = [pcm[a:b].tobytes() for a, b in itertools.pairwise(bounds) if a < len(pcm)]
    ready, replies, done = stream(server, {"embedding": enrolled["embedding"]}, messages)
    assert ready["chunk_ms"] == 8 and ready["lookahead_ms"] == 4 and ready["format"] == "f32"
    assert [len(r) for r in replies[:-1]] == [len(m) for m in messages] and len(replies[-1]) == LOOKAHEAD * 8
    assert done == {"type": "done", "audio_s": pytest.approx(x.shape[1] / SR), "chunks": x.shape[1] // HOP}
    streamed = np.frombuffer(b"".join(replies), "<f4").reshape(-1, 2).T
    assert streamed.shape[1] == x.shape[1] + LOOKAHEAD
    # /extract answers 16-bit PCM: equal within its quantisation step.
    assert np.abs(streamed[:, LOOKAHEAD:] - offline).max() <= 1e-4 + 1 / 32768


def test_stream_s16(server: Server, clips: dict) -> None:
    enrolled = httpx.post(f"{server.url}/enroll", files={"audio": upload(clips["enrollment"])}, timeout=60).json()
    pcm = (np.ascontiguousarray(clips["mixture"][:, :HOP * 10].T) * 32767).astype("<i2")
    _, replies, done = stream(server, {"embedding": enrolled["embedding"], "format": "s16", "sample_rate": 16000},
                              [pcm[:HOP * 4].tobytes(), pcm[HOP * 4:].tobytes()])
    assert [len(r) for r in replies] == [HOP * 4 * 4, HOP * 6 * 4, LOOKAHEAD * 4] and done["chunks"] == 10


@pytest.mark.parametrize("start, message, reason", [
    ({"embedding": [0.1] * 256}, b"\x00" * (HOP * 8 - 8), "bad_chunk"),  # 127 frames of f32 stereo
    ({"embedding": [0.1] * 256, "format": "s16"}, b"\x00" * 100, "bad_chunk"),
    ({"embedding": [0.1] * 256, "sample_rate": 48000}, None, "params"),
    ({"embedding": [0.1] * 256, "channels": 1}, None, "params"),
    ({"embedding": [0.1] * 255}, None, "params"),
    ({"embedding": [0.0] * 256}, None, "params"),
    ({}, None, "params"),
    ({"enrollment_id": "no-such-id"}, None, "unknown_enrollment"),
    ({"embedding": [0.1] * 256, "speed": 2}, None, "params"),
    (None, b"\x00" * 1024, "bad_message"),  # audio before the start message
    ({"embedding": [0.1] * 256}, "hello", "bad_message"),
])
def test_stream_refusals(server: Server, start: dict | None, message, reason: str) -> None:
    with connect(ws_url(server)) as ws:
        if start is not None:
            ws.send(json.dumps({"type": "start", **start}))
            reply = json.loads(ws.recv(timeout=30))
            if reply["type"] == "ready":
                ws.send(message)
                reply = json.loads(ws.recv(timeout=30))
        else:
            ws.send(message)
            reply = json.loads(ws.recv(timeout=30))
        assert reply["type"] == "error" and reply["reason"] == reason and reply["error"], reply
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=30)
        assert ws.close_code == 1008


# --- in process -----------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_store_evicts_the_oldest_and_expires() -> None:
    clock = Clock()
    store = EnrollmentStore(ttl_s=10, capacity=3, clock=clock)
    ids = [store.add(np.full(256, i, np.float32)) for i in range(4)]
    assert len(set(ids)) == 4 and len(store) == 3
    with pytest.raises(EnrollmentMissing) as missing:
        store.get(ids[0])
    assert missing.value.reason == "unknown"
    assert store.get(ids[3])[0] == 3 and store.expires_in(ids[3]) == 10
    clock.now = 6
    late = store.add(np.zeros(256, np.float32))  # the fourth again: ids[1] goes
    clock.now = 10.5  # ids[2:] are 10.5 s old, `late` 4.5 s
    with pytest.raises(EnrollmentMissing) as missing:
        store.get(ids[2])
    assert missing.value.reason == "expired"
    assert len(store) == 1 and store.get(late) is not None
    for gone in ids[1], ids[3]:  # evicted, and expired then dropped
        with pytest.raises(EnrollmentMissing) as missing:
            store.get(gone)
        assert missing.value.reason == "unknown"
    with pytest.raises(ValueError):
        EnrollmentStore(ttl_s=0, capacity=3)


def test_store_is_thread_safe_and_bounded() -> None:
    store = EnrollmentStore(ttl_s=60, capacity=50)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(200):
                store.get(store.add(np.ones(256, np.float32)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(store) == 50


def test_served_without_artifacts_answers_503(monkeypatch: pytest.MonkeyPatch) -> None:
    from services import extractor_api, extractor_state, model_store

    def no_model(name: str):
        raise FileNotFoundError(f"no '{name}' model: run `hark export {name}`")

    monkeypatch.setattr(model_store, "resolve", no_model)
    monkeypatch.setattr(extractor_state, "_missing", [])

    class WithoutModel(extractor_api.ExtractorAPI):
        extractor_optional = True

    service = WithoutModel()
    assert service.extractor is None and "hark export extractor" in extractor_state.missing_reason()
    response = service.extract(audio=None)
    assert response.status_code == 503 and b"no extractor model" in response.body
    with pytest.raises(FileNotFoundError):
        extractor_api.ExtractorAPI()  # served alone, a missing model is an error at start-up


def test_demo_tab_extracts(stand_in_extractor_dir, clips: dict, tmp_path) -> None:
    from services.demo import extractor as tab
    from core.extractor_model import ExtractorModel

    model = ExtractorModel(stand_in_extractor_dir, threads=1)
    enrollment, mixture = tmp_path / "enrollment.wav", tmp_path / "mixture.wav"
    sf.write(enrollment, clips["enrollment"][0], SR)  # a mono recording: taken as a talker in front
    sf.write(mixture, clips["mixture"].T, SR)
    mix, enr, out, picture, path, summary = tab.extract(model, str(enrollment), str(mixture))
    assert mix[1].shape == out[1].shape == (clips["mixture"].shape[1], 2) and enr[1].shape[1] == 2
    assert picture.ndim == 3 and sf.info(path).channels == 2 and "real time" in summary
    import gradio as gr

    with pytest.raises(gr.Error, match="binaural"):
        tab.extract(model, str(enrollment), str(enrollment))  # a mono mixture


def test_example_scenes(tmp_path) -> None:
    from pathlib import Path

    from training.data.extractor_examples import HEAD, SCENES, write_examples
    from training.data.hrtf import DEFAULT_HRTF_DIR

    hrtf_dir = Path(__file__).resolve().parents[2] / DEFAULT_HRTF_DIR
    if not (hrtf_dir / f"{HEAD}.sofa").is_file():
        pytest.skip(f"no {HEAD}.sofa in {hrtf_dir}")
    (info,) = write_examples(tmp_path, hrtf_dir, names=[SCENES[0]["name"]])
    scene = tmp_path / info["name"]
    assert json.loads((scene / "example.json").read_text()) == info and info["title"]
    for name, seconds in (("mixture", 4.5), ("enrollment", 4.0)):
        meta = sf.info(scene / f"{name}.wav")
        assert (meta.channels, meta.samplerate, meta.subtype) == (2, SR, "PCM_16")
        assert meta.duration == pytest.approx(seconds)
        x, _ = sf.read(scene / f"{name}.wav")
        assert 0.05 < np.abs(x).max() < 1.0
