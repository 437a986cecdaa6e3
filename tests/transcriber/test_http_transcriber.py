"""The transcriber over HTTP, against a real `bentoml serve services.hark:Hark` with 2 workers."""
from __future__ import annotations

import io
import os
import re
from pathlib import Path

import httpx
import pretty_midi
import pytest
from conftest import MAX_AUDIO_SECONDS, Server, tone, wav_bytes

REPO = Path(__file__).resolve().parents[2]


def post(server: Server, data: bytes, content_type: str = "audio/wav", route: str = "/transcribe",
         **fields: str) -> httpx.Response:
    return httpx.post(f"{server.url}{route}", files={"audio": ("clip.wav", data, content_type)},
                      data=fields, timeout=60)


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 if none)."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(name)}(\{{.*\}})? (\S+)$", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            total += float(m.group(2))
    return total


def scrape(server: Server) -> str:
    response = httpx.get(f"{server.url}/metrics", timeout=10)
    assert response.status_code == 200
    return response.text


def test_health_and_docs(server: Server):
    for path in ("/readyz", "/livez"):
        assert httpx.get(server.url + path).status_code == 200
    assert "swagger" in httpx.get(server.url + "/").text.lower()
    paths = httpx.get(server.url + "/docs.json").json()["paths"]
    assert {"/transcribe", "/transcribe_midi"} <= set(paths)
    form = paths["/transcribe"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["audio"]["format"] == "binary"
    assert form["properties"]["onset_threshold"]["exclusiveMaximum"] == 1.0


def test_transcribes_a_generated_wav(server: Server):
    response = post(server, wav_bytes(tone(440.0, 1.0, start_s=0.25, total_s=1.5)))
    assert response.status_code == 200, response.text
    body = response.json()
    assert [n["pitch_midi"] for n in body["notes"]] == [69]
    note = body["notes"][0]
    assert note["start_s"] == pytest.approx(0.25, abs=0.06) and note["end_s"] == pytest.approx(1.25, abs=0.06)
    assert 1 <= note["velocity"] <= 127 and len(note["pitch_bends"]) > 0
    meta = body["meta"]
    assert meta["model"]["name"] == "transcriber" and meta["model"]["version"] == "stand-in"
    assert len(meta["model"]["sha256"]) == 64
    assert meta["audio"] == {"format": "WAV", "sample_rate": 22050, "channels": 1, "duration_s": 1.5}
    assert meta["params"]["onset_threshold"] == 0.5  # the card's default
    assert meta["n_notes"] == 1


def test_parameters_are_applied_and_echoed(server: Server):
    response = post(server, wav_bytes(tone(440.0, 1.0)), onset_threshold="0.4", frame_threshold="0.6",
                    min_note_ms="100", min_freq_hz="500", include_pitch_bends="false")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["meta"]["params"] == {"onset_threshold": 0.4, "frame_threshold": 0.6, "min_note_ms": 100.0,
                                      "min_freq_hz": 500.0, "max_freq_hz": None, "include_pitch_bends": False}
    assert body["notes"] == []  # 440 Hz is below min_freq_hz


def test_octet_stream_and_stereo_44k_are_accepted(server: Server):
    import numpy as np

    stereo = np.stack([tone(440.0, 1.0, sr=44100)] * 2, axis=1)
    response = post(server, wav_bytes(stereo, 44100), content_type="application/octet-stream")
    assert response.status_code == 200, response.text
    assert [n["pitch_midi"] for n in response.json()["notes"]] == [69]


def test_long_audio_runs_through_many_windows(server: Server):
    seconds = MAX_AUDIO_SECONDS - 5
    response = post(server, wav_bytes(tone(440.0, seconds - 2.0, start_s=1.0, total_s=seconds)))
    assert response.status_code == 200, response.text
    (note,) = response.json()["notes"]
    assert note["start_s"] == pytest.approx(1.0, abs=0.06)
    assert note["end_s"] == pytest.approx(seconds - 1.0, abs=0.06)


def test_midi_endpoint(server: Server):
    response = post(server, wav_bytes(tone(440.0, 1.0, total_s=1.2)), route="/transcribe_midi")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/midi"
    assert 'filename="clip.mid"' in response.headers["content-disposition"]
    pm = pretty_midi.PrettyMIDI(io.BytesIO(response.content))
    assert [n.pitch for inst in pm.instruments for n in inst.notes] == [69]


def test_python_client(server: Server, tmp_path: Path):
    import bentoml

    path = tmp_path / "tone.wav"
    path.write_bytes(wav_bytes(tone(523.25, 0.8, total_s=1.0)))
    with bentoml.SyncHTTPClient(server.url, server_ready_timeout=30) as client:
        result = client.transcribe(audio=path, onset_threshold=0.5)
    assert [n["pitch_midi"] for n in result["notes"]] == [72]


def test_metrics_move_and_add_up_across_workers(server: Server):
    before = scrape(server)
    n, seconds = 6, 1.25  # 27562.5 samples: 1.25 s up to half a sample
    data = wav_bytes(tone(440.0, 1.0, total_s=seconds))
    for _ in range(n):
        assert post(server, data).status_code == 200
    assert post(server, b"not audio at all").status_code == 400
    # Any worker may answer /metrics; each must report the sum over both workers.
    for _ in range(4):
        after = scrape(server)

        def delta(name: str, after: str = after, **labels: str) -> float:
            return metric(after, name, **labels) - metric(before, name, **labels)

        assert delta("hark_audio_seconds_total", model="transcriber") == pytest.approx(n * seconds, abs=1e-3)
        assert delta("hark_inference_seconds_count", model="transcriber") == n
        assert delta("hark_realtime_factor_count", model="transcriber") == n
        assert delta("hark_rejected_requests_total", family="transcriber", reason="undecodable") == 1
        assert metric(after, "hark_model_info", family="transcriber", version="stand-in") == 1
    # The access log names the worker of each request: the sums above really span two processes.
    workers = set(re.findall(r"\[entry_service:Hark:(\d+)\].*path=/transcribe,", server.log()))
    assert workers == {"1", "2"}
    assert "bentoml_service_request_total" in after


@pytest.mark.skipif(not (REPO / "services" / "demo" / "__init__.py").is_file(), reason="no demo yet")
def test_ui_serves_a_page(server: Server):
    response = httpx.get(f"{server.url}/ui/", timeout=30, follow_redirects=True)
    assert response.status_code == 200
    assert "<html" in response.text.lower() and "gradio" in response.text.lower()
    assert httpx.get(f"{server.url}/ui/config", timeout=30).status_code == 200


def test_transcriber_alone_has_the_same_surface(monkeypatch: pytest.MonkeyPatch):
    """`bentoml serve services.transcriber:Transcriber` serves the family alone: same APIs and
    request guard as Hark (checked in-process; the server above is Hark, whose /ui is tested
    there and is mounted by the same code). HARK_UI=0 keeps Gradio out of this process."""
    import importlib
    import sys

    monkeypatch.setenv("HARK_UI", "0")
    for name in ("services.transcriber", "services.hark"):
        sys.modules.pop(name, None)
    Transcriber = importlib.import_module("services.transcriber").Transcriber
    Hark = importlib.import_module("services.hark").Hark
    from services.upload import RequestGuard

    for svc in (Transcriber, Hark):
        assert {m.route for m in svc.apis.values()} >= {"/transcribe", "/transcribe_midi"}
        guard = [opts for cls, opts in svc.middlewares if cls is RequestGuard]
        assert len(guard) == 1 and set(guard[0]["routes"]) >= {"/transcribe", "/transcribe_midi"}
        assert guard[0]["routes"]["/transcribe"].file_fields == {"audio"}
        assert svc.config["http"]["host"] == "127.0.0.1" and svc.config["http"]["port"] == 3000
        assert [path for _, path, _ in svc.mount_apps] == ["/stream"]  # WebSockets; no /ui with HARK_UI=0
    assert Transcriber.name == "Transcriber" and Hark.name == "Hark"


def test_model_store_register_is_idempotent_and_resolve_follows_the_checkout(stand_in_model_dir: Path, tmp_path: Path):
    """In a subprocess with its own BENTOML_HOME (bentoml reads it once per process)."""
    import json
    import shutil
    import subprocess
    import sys

    artifacts = tmp_path / "artifacts"
    shutil.copytree(stand_in_model_dir, artifacts / "transcriber")
    script = """
import json, sys
from pathlib import Path
from export.register import register
from services import model_store
a = Path(sys.argv[1]) / "transcriber"
first, second = register(a), register(a)
stored = model_store.resolve("transcriber")
(a / "transcriber.onnx").write_bytes((a / "transcriber.onnx").read_bytes() + b"\\0")  # a new export
unregistered = model_store.resolve("transcriber")
third = register(a)
latest = model_store.resolve("transcriber")
card = json.loads((a / "card.json").read_text())
(a / "card.json").write_text(json.dumps({**card, "decode": {"min_note_ms": 70.0}}))  # a card-only re-export
card_changed = model_store.resolve("transcriber")
fourth = register(a)
print(json.dumps([first, second, str(stored), str(unregistered), third, str(latest), str(card_changed), fourth,
                  str(model_store.resolve("transcriber"))]))
"""
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "home"), "BENTOML_DO_NOT_TRACK": "True",
           "HARK_ARTIFACTS_DIR": str(artifacts)}
    env.pop("HARK_TRANSCRIBER_MODEL", None)
    run = subprocess.run([sys.executable, "-c", script, str(artifacts)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    first, second, stored, unregistered, third, latest, card_changed, fourth, last = json.loads(run.stdout.splitlines()[-1])
    assert first == second and first.startswith("transcriber:")
    assert Path(stored).parent.parent == tmp_path / "home" / "models"  # served from the store
    assert Path(unregistered) == artifacts / "transcriber"  # the checkout changed: serve it, warn
    assert third != first and Path(latest).name == third.split(":")[1]
    # The same ONNX under a new card is not the stored entry: serve the checkout, then store it anew.
    assert Path(card_changed) == artifacts / "transcriber"
    assert fourth not in (first, third) and Path(last).name == fourth.split(":")[1]
    assert json.loads((Path(last) / "card.json").read_text())["decode"] == {"min_note_ms": 70.0}
