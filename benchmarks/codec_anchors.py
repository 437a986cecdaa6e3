"""The codec's anchors: Opus (libopus) and Codec2 (libcodec2), both through ffmpeg.

Each takes 16 kHz mono float32 and returns the decoded signal at 16 kHz, cut or padded to the
input's length and aligned with it: Opus's pre-skip is removed by its Ogg container; Codec2
has a delay (about 20 ms), found per clip by matching amplitude envelopes, so the scores measure
coding, not a shift.
"""
from __future__ import annotations

import shutil
import subprocess

import numpy as np

SAMPLE_RATE = 16000
MAX_LAG = 1600  # 100 ms


def available() -> tuple[bool, str]:
    if shutil.which("ffmpeg") is None:
        return False, "ffmpeg is not installed (Debian: ffmpeg)"
    encoders = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    missing = [e for e in ("libopus", "libcodec2") if e not in encoders]
    return (not missing, f"ffmpeg lacks {missing}" if missing else "")


def _run(audio: np.ndarray, encode: list[str], container: str) -> np.ndarray:
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    raw = ["-f", "s16le", "-ar", str(SAMPLE_RATE), "-ac", "1"]
    coded = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", *raw, "-i", "pipe:0", *encode,
                            "-f", container, "pipe:1"], input=pcm, capture_output=True, check=True).stdout
    decoded = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", container, "-i", "pipe:0",
                              *raw, "pipe:1"], input=coded, capture_output=True, check=True).stdout
    return np.frombuffer(decoded, dtype="<i2").astype(np.float32) / 32768.0, len(coded)


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    return np.pad(x[:n], (0, max(0, n - x.size)))


def _envelope(x: np.ndarray, width: int = 80) -> np.ndarray:
    e = np.convolve(np.abs(x), np.ones(width) / width, mode="same")
    return e - e.mean()


def best_lag(ref: np.ndarray, out: np.ndarray, max_lag: int = MAX_LAG, envelope: bool = False) -> int:
    """Delay of `out` behind `ref`, in samples, in [0, max_lag]. `envelope` matches 5 ms
    amplitude envelopes instead of waveforms: a vocoder such as Codec2 does not keep the phase."""
    n = min(ref.size, out.size - max_lag) if out.size > max_lag else 0
    if n < SAMPLE_RATE // 10:
        return 0
    a, b = (_envelope(ref), _envelope(out)) if envelope else (ref, out)
    scores = [float(np.dot(a[:n], b[lag:lag + n])) for lag in range(max_lag + 1)]
    return int(np.argmax(scores))


def opus(audio: np.ndarray, kbps: float) -> tuple[np.ndarray, int]:
    """(decoded audio, coded bytes) through libopus in VoIP mode at `kbps`."""
    out, size = _run(audio, ["-c:a", "libopus", "-b:a", f"{kbps:g}k", "-application", "voip"], "ogg")
    return _fit(out, audio.size), size


def codec2(audio: np.ndarray, mode: int) -> tuple[np.ndarray, int]:
    """(decoded audio, coded bytes) through libcodec2 at `mode` bits/s (3200, 1300, ...)."""
    out, size = _run(audio, ["-c:a", "libcodec2", "-mode", str(mode)], "codec2")
    lag = best_lag(audio, out, envelope=True)
    return _fit(out[lag:], audio.size), size
