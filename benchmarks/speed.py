"""CPU-time and memory measurement helpers.

CPU time (`time.process_time`, all threads of this process) rather than wall time: the machines
here have 2 noisy cores, and CPU seconds per audio second is what a server pays. Medians over
repeats, after a warm-up call that pays for lazy initialisation; systems are interleaved so that
their ratio survives load from other processes, which inflates absolute CPU time.
"""
from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator


@dataclass
class Timing:
    cpu_s: list[float]
    wall_s: list[float]

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu_s)

    @property
    def wall_median(self) -> float:
        return statistics.median(self.wall_s)


def measure(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, Timing]:
    """Time several systems interleaved (round-robin, order rotated each repeat), so that load
    from other processes on a shared machine hits every system alike and their ratio holds."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    names = list(fns)
    out = {name: Timing([], []) for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            c0, w0 = time.process_time(), time.perf_counter()
            fns[name]()
            out[name].cpu_s.append(time.process_time() - c0)
            out[name].wall_s.append(time.perf_counter() - w0)
    return out


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Set torch's intra-op threads for a block (None leaves the default)."""
    import torch

    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _vm_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (psutil if present, else /proc)."""
    try:
        import psutil

        proc = psutil.Process(pid)
        return [pid] + [c.pid for c in proc.children(recursive=True)]
    except ImportError:
        pass
    except Exception:  # the process may be gone
        return [pid]
    parents: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            parents.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parents.get(p, []))
    return out


def _cmd(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [a.decode(errors="replace") for a in argv if a]
    # "python -m _bentoml_impl.worker.service ..." -> the module or script that identifies it.
    for i, w in enumerate(words):
        if w == "-m" and i + 1 < len(words):
            return words[i + 1]
    return " ".join(Path(w).name for w in words[:3])


def tree_rss_detail(pid: int) -> list[dict[str, Any]]:
    """Per process of the tree: pid, command, current and peak (VmHWM) RSS in MiB."""
    return [{"pid": p, "cmd": _cmd(p), "rss_mb": round(_vm_kb(p, "VmRSS") / 1024, 1),
             "peak_rss_mb": round(_vm_kb(p, "VmHWM") / 1024, 1)} for p in process_tree(pid)]


def tree_rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS summed over the tree, peak RSS (VmHWM) summed over the tree) in MiB.

    The summed peaks are an upper bound: each process's peak need not coincide in time.
    """
    detail = tree_rss_detail(pid)
    return sum(d["rss_mb"] for d in detail), sum(d["peak_rss_mb"] for d in detail)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_http(url: str, timeout_s: float, alive: Callable[[], bool]) -> bool:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and alive():
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def tone_clip(path: Path, seconds: float, sample_rate: int = 44100, seed: int = 0) -> Path:
    """A deterministic polyphonic test clip: up to three voices of harmonic tones with decays.

    Speed does not depend on what is played, but the note decoder's cost grows with the number
    of notes, so the clip has a realistic density (about 6 notes per second).
    """
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    out = np.zeros(n, dtype=np.float64)
    for voice, (lo, hi) in enumerate([(40, 55), (52, 67), (64, 84)]):
        t = 0.05 * voice
        while t < seconds:
            dur = float(rng.choice([0.125, 0.25, 0.5, 1.0]))
            start, m = int(t * sample_rate), int(min(dur, seconds - t) * sample_rate)
            f0 = 440.0 * 2 ** ((int(rng.integers(lo, hi)) - 69) / 12)
            tt = np.arange(m) / sample_rate
            env = np.exp(-3.0 * tt) * np.minimum(1.0, tt / 0.005)
            tone = sum(np.sin(2 * np.pi * f0 * k * tt) / k**1.5 for k in range(1, 6) if f0 * k < sample_rate / 2)
            out[start:start + m] += 0.2 * env * tone
            t += dur
    sf.write(str(path), (out / max(1.0, np.abs(out).max())).astype(np.float32), sample_rate, subtype="PCM_16")
    return path


def _upload_endpoint(openapi: dict) -> tuple[str, str]:
    """(path, form field) of the first POST route that takes a file; transcribe routes first."""
    candidates = []
    for path, ops in openapi.get("paths", {}).items():
        body = ops.get("post", {}).get("requestBody", {}).get("content", {})
        schema = body.get("multipart/form-data", {}).get("schema", {})
        if "$ref" in schema:
            schema = openapi.get("components", {}).get("schemas", {}).get(schema["$ref"].rsplit("/", 1)[-1], {})
        for field_name, prop in schema.get("properties", {}).items():
            if prop.get("format") == "binary":
                candidates.append((0 if "transcribe" in path else 1, path, field_name))
                break
    if not candidates:
        raise RuntimeError("the service's OpenAPI lists no POST route taking a file")
    _, path, field_name = min(candidates)
    return path, field_name


def serve_peak_rss(target: str, audio: Path, repo: Path, env: dict[str, str] | None = None, requests: int = 5,
                   start_timeout_s: float = 180.0) -> dict[str, float]:
    """Start `bentoml serve TARGET` on a free loopback port, send `requests` uploads of `audio`,
    and read the serving process tree's memory: peak_rss_mb (VmHWM summed over the tree, an
    upper bound), rss_after_mb (current RSS summed after the requests) and the per-process
    figures (the `bentoml serve` supervisor is part of what a deployment pays for)."""
    import httpx

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bentoml", "serve", target, "--host", "127.0.0.1", "--port", str(port),
         "--working-dir", str(repo)],
        cwd=repo, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        if not wait_for_http(f"{base}/readyz", start_timeout_s, lambda: proc.poll() is None):
            raise RuntimeError(f"`bentoml serve {target}` was not ready within {start_timeout_s:g} s "
                               f"(exit code {proc.poll()})")
        with httpx.Client(base_url=base, timeout=300) as client:
            path, field_name = _upload_endpoint(client.get("/docs.json").json())
            data = Path(audio).read_bytes()
            for _ in range(requests):
                r = client.post(path, files={field_name: (Path(audio).name, data, "audio/wav")})
                r.raise_for_status()
        detail = tree_rss_detail(proc.pid)
        return {"peak_rss_mb": round(sum(d["peak_rss_mb"] for d in detail), 1),
                "rss_after_mb": round(sum(d["rss_mb"] for d in detail), 1),
                "server_requests": requests, "server_processes": detail}
    finally:
        # Only the group we started (start_new_session), so the workers go too.
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
