"""Load + soak benchmark of the served API, on loopback: every family at once.

    python -m benchmarks.serving                    # starts `bentoml serve services.hark:Hark`, 20 s
    python -m benchmarks.serving --duration 600     # the 10-minute soak
    python -m benchmarks.serving --url http://127.0.0.1:3000 --pid PID   # an already running server
    python -m benchmarks.serving --max-size 600     # worker RSS after one 600 s /extract and /transcribe

One client thread per family sends its request back to back (generated audio, a few seconds
long) for --duration seconds; the worker processes' resident memory is sampled meanwhile. Writes
benchmarks/results/serving.json: per family requests, errors (non-2xx or failed), p50/p99 latency,
requests per second and the RSS of the server's workers (summed) at start, peak and end. All
families share the same workers, so their RSS columns are the same numbers.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from benchmarks.speechlike import speech_like

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "benchmarks" / "results" / "serving.json"
RESULT_MAX_SIZE = REPO / "benchmarks" / "results" / "serving-max-size.json"


def _wav(x: np.ndarray, sr: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _voice(seconds: float, sr: int, f0: float, seed: int) -> np.ndarray:
    """A synthetic talker the services' voice check accepts (benchmarks.speechlike)."""
    return speech_like(seconds, f0=f0, seed=seed, sr=sr)


def requests() -> dict[str, tuple[str, dict[str, Any], dict[str, str]]]:
    """family -> (route, files, form values): one request each family repeats."""
    mix = np.stack([_voice(3, 16000, 140, 0) + _voice(3, 16000, 210, 1)] * 2, axis=1)
    enrollment = np.stack([_voice(2, 16000, 140, 2)] * 2, axis=1)
    tones = np.concatenate([np.sin(2 * np.pi * hz * np.arange(22050) / 22050) * 0.3 for hz in (262, 330, 392, 523, 440)])
    return {
        "transcriber": ("/transcribe", {"audio": ("music.wav", _wav(tones.astype(np.float32), 22050), "audio/wav")}, {}),
        "codec": ("/reconstruct", {"audio": ("speech.wav", _wav(_voice(3, 16000, 120, 3), 16000), "audio/wav")}, {}),
        "extractor": ("/extract", {"audio": ("mix.wav", _wav(mix, 16000), "audio/wav"),
                                   "enrollment": ("enroll.wav", _wav(enrollment, 16000), "audio/wav")}, {}),
        "classifier": ("/classify", {"audio": ("speech.wav", _wav(_voice(3, 16000, 180, 4), 16000), "audio/wav")},
                       {"transcript": "I went to the market this morning and bought some bread."}),
    }


def _client(url: str, route: str, files: dict[str, Any], data: dict[str, str], headers: dict[str, str],
            until: float, out: list[tuple[float, bool]]) -> None:
    import httpx

    with httpx.Client(timeout=120, headers=headers) as http:
        while time.monotonic() < until:
            t0 = time.perf_counter()
            try:
                ok = http.post(f"{url}{route}", files=files, data=data).is_success
            except httpx.HTTPError:
                ok = False
            out.append((time.perf_counter() - t0, ok))


def _worker_rss_mb(pid: int) -> float:
    import psutil

    try:
        procs = psutil.Process(pid).children(recursive=True) or [psutil.Process(pid)]
        return sum(p.memory_info().rss for p in procs) / 1e6
    except psutil.Error:
        return 0.0


def run(url: str, pid: int | None, duration_s: float, api_key: str | None = None,
        families: list[str] | None = None) -> dict[str, Any]:
    """Drive every family at `url` at once for `duration_s`; the result dict written to JSON."""
    todo = {k: v for k, v in requests().items() if families is None or k in families}
    headers = {"X-API-Key": api_key} if api_key else {}
    until = time.monotonic() + duration_s
    samples: dict[str, list[tuple[float, bool]]] = {k: [] for k in todo}
    threads = [threading.Thread(target=_client, args=(url, route, files, data, headers, until, samples[k]))
               for k, (route, files, data) in todo.items()]
    rss: list[tuple[float, float]] = []
    measure: Callable[[], float] = (lambda: _worker_rss_mb(pid)) if pid else (lambda: 0.0)
    started = time.monotonic()
    rss.append((0.0, measure()))
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        time.sleep(0.5)
        rss.append((time.monotonic() - started, measure()))
    time.sleep(1.0)  # the idle worker gives its peak back (services/memory.py)
    rss.append((time.monotonic() - started, measure()))
    wall = time.monotonic() - started
    load = {}
    for family, got in samples.items():
        latencies = np.array([s for s, _ in got]) if got else np.zeros(1)
        load[family] = {
            "requests": len(got), "errors": sum(not ok for _, ok in got),
            "p50_s": round(float(np.percentile(latencies, 50)), 4),
            "p99_s": round(float(np.percentile(latencies, 99)), 4),
            "rps": round(len(got) / wall, 3),
            "rss_mb_start": round(rss[0][1], 1), "rss_mb_max": round(max(r for _, r in rss), 1),
            "rss_mb_end": round(rss[-1][1], 1),
        }
    return {"load": load, "meta": {
        "duration_s": duration_s, "wall_s": round(wall, 2), "url": url, "cpu_count": os.cpu_count(),
        "clients_per_family": 1, "rss_mb_over_time": [(round(t, 1), round(r, 1)) for t, r in rss],
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }}


def max_size(url: str, pid: int, seconds: float, api_key: str | None = None) -> dict[str, Any]:
    """Worker RSS when warm, then after one `seconds`-long /extract and /transcribe each (the
    longest the server accepts by default: 600 s), once the idle worker has given memory back."""
    import httpx

    small = requests()
    mix = np.stack([_voice(seconds, 16000, 140, 0) + _voice(seconds, 16000, 210, 1)] * 2, axis=1)
    music = _voice(seconds, 22050, 262, 5)
    big = {
        "extractor": ("/extract", {"audio": ("mix.wav", _wav(mix, 16000), "audio/wav"),
                                   "enrollment": small["extractor"][1]["enrollment"]}),
        "transcriber": ("/transcribe", {"audio": ("music.wav", _wav(music, 22050), "audio/wav")}),
    }
    del mix, music
    headers = {"X-API-Key": api_key} if api_key else {}
    rows: dict[str, Any] = {}
    with httpx.Client(timeout=1800, headers=headers) as http:
        for family in big:  # warm: each model has run once on a few seconds
            route, files, data = small[family]
            http.post(f"{url}{route}", files=files, data=data).raise_for_status()
        time.sleep(1.5)
        warm = _worker_rss_mb(pid)
        for family, (route, files) in big.items():
            peak: list[float] = []
            done = threading.Event()

            def sample() -> None:
                while not done.wait(0.25):
                    peak.append(_worker_rss_mb(pid))

            sampler = threading.Thread(target=sample)
            sampler.start()
            t0 = time.perf_counter()
            response = http.post(f"{url}{route}", files=files)
            wall = time.perf_counter() - t0
            done.set()
            sampler.join()
            time.sleep(1.5)  # idle: the worker gives its peak back (services/memory.py)
            rows[family] = {"route": route, "status": response.status_code, "wall_s": round(wall, 2),
                            "rss_mb_peak": round(max(peak, default=0.0), 1),
                            "rss_mb_after": round(_worker_rss_mb(pid), 1)}
    return {"max_size": {"seconds": seconds, "rss_mb_warm": round(warm, 1), **rows},
            "meta": {"url": url, "cpu_count": os.cpu_count(),
                     "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(workers: int) -> tuple[subprocess.Popen, str]:
    import httpx

    port = _free_port()
    env = {**os.environ, "BENTOML_HOME": tempfile.mkdtemp(prefix="hark-bench-"), "BENTOML_DO_NOT_TRACK": "True",
           "HARK_UI": "0", "HARK_WORKERS": str(workers), "HARK_ORT_PROVIDER": os.environ.get("HARK_ORT_PROVIDER", "cpu"),
           "HARK_ARTIFACTS_DIR": str(REPO / "artifacts")}
    proc = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", "services.hark:Hark", "--host", "127.0.0.1",
                             "--port", str(port), "--working-dir", str(REPO)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGTERM)
    raise RuntimeError("the server did not become ready within 180 s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of load (600 for the soak)")
    ap.add_argument("--url", help="an already running server (default: start one on a free port)")
    ap.add_argument("--pid", type=int, help="with --url: the server's process id, for its workers' RSS")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--api-key", default=os.environ.get("HARK_API_KEY"))
    ap.add_argument("--max-size", type=float, metavar="SECONDS",
                    help="instead of the load: RSS after one request of SECONDS each to /extract and /transcribe")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    proc = None
    url, pid = args.url, args.pid
    if url is None:
        proc, url = _start_server(args.workers)
        pid = proc.pid
    try:
        if args.max_size:
            result = max_size(url, pid, args.max_size, args.api_key)
        else:
            result = run(url, pid, args.duration, args.api_key)
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    out = args.out or (RESULT_MAX_SIZE if args.max_size else RESULT)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if args.max_size:
        m = result["max_size"]
        for family in ("extractor", "transcriber"):
            print(f"{family:12s} {m['seconds']:g} s: HTTP {m[family]['status']} in {m[family]['wall_s']} s, RSS warm "
                  f"{m['rss_mb_warm']:.0f} -> peak {m[family]['rss_mb_peak']:.0f} -> after {m[family]['rss_mb_after']:.0f} MB")
        print(f"wrote {out}")
        return 0
    for family, row in result["load"].items():
        print(f"{family:12s} {row['requests']:5d} req {row['errors']:3d} err p50 {row['p50_s']:.3f}s "
              f"p99 {row['p99_s']:.3f}s {row['rps']:.2f} rps  RSS {row['rss_mb_start']:.0f} -> "
              f"{row['rss_mb_max']:.0f} -> {row['rss_mb_end']:.0f} MB")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
