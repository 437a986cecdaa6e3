"""How long each soundfont program takes to become audible after its MIDI note-on.

A bowed or blown sample can need 50-150 ms to grow out of silence, while people who annotate
recordings mark a note where it is heard. Labels at the MIDI note-on teach the model to fire
before the sound, which reads as an early onset on real recordings. So every (soundfont,
program) is measured once: a few notes are rendered alone, and the delay is the time the
envelope needs to reach AUDIBLE_DB below the note's early peak. The table is cached as JSON.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pretty_midi
import soundfile as sf

SAMPLE_RATE = 22050
AUDIBLE_DB = -15.0
MAX_DELAY_S = 0.12  # beyond this a slow pad has no clear onset; keep labels near the note-on
_PROBES = [(48, 64), (60, 100), (72, 80)]  # (pitch, velocity)
_NOTE_S, _GAP_S, _PEAK_WINDOW_S = 0.8, 0.7, 0.5


def _probe_midi(program: int) -> pretty_midi.PrettyMIDI:
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=program)
    for i, (pitch, velocity) in enumerate(_PROBES):
        start = _GAP_S + i * (_NOTE_S + _GAP_S)
        inst.notes.append(pretty_midi.Note(velocity, pitch, start, start + _NOTE_S))
    pm.instruments.append(inst)
    return pm


def _envelope(audio: np.ndarray, hop: int) -> np.ndarray:
    frames = len(audio) // hop
    return np.sqrt((audio[: frames * hop].reshape(frames, hop) ** 2).mean(axis=1) + 1e-12)


def measure_delays(soundfont: str, programs: list[int]) -> dict[int, float]:
    """Median delay (s) from note-on to audible, per program, for one soundfont."""
    hop = SAMPLE_RATE // 400  # 2.5 ms resolution
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for program in programs:
            mid, wav = Path(tmp) / "p.mid", Path(tmp) / "p.wav"
            _probe_midi(program).write(str(mid))
            subprocess.run(["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.5", "-r", str(SAMPLE_RATE),
                            "-F", str(wav), soundfont, str(mid)], check=True, capture_output=True, timeout=120)
            audio, _ = sf.read(str(wav), dtype="float32", always_2d=True)
            env = _envelope(audio.mean(axis=1), hop)
            delays = []
            for i in range(len(_PROBES)):
                on = int((_GAP_S + i * (_NOTE_S + _GAP_S)) * SAMPLE_RATE / hop)
                seg = env[on: on + int(_PEAK_WINDOW_S * SAMPLE_RATE / hop)]
                if seg.size == 0 or seg.max() < 1e-5:
                    continue
                audible = np.flatnonzero(seg >= seg.max() * 10 ** (AUDIBLE_DB / 20))[0]
                delays.append(audible * hop / SAMPLE_RATE)
            out[program] = float(min(np.median(delays), MAX_DELAY_S)) if delays else 0.0
    return out


def delays_for(soundfont: str, programs: list[int], cache_dir: Path) -> dict[int, float]:
    """Delays of `programs` on `soundfont`, measured on first use and cached as JSON.

    Rendering workers may measure the same program at once; the write is atomic, so the worst
    case is measuring a program twice."""
    path = Path(cache_dir) / "onset_delays" / f"{Path(soundfont).stem}.json"
    table = json.loads(path.read_text()) if path.exists() else {}
    if table.get("audible_db") != AUDIBLE_DB or table.get("max_delay_s") != MAX_DELAY_S:
        table = {"soundfont": Path(soundfont).name, "audible_db": AUDIBLE_DB, "max_delay_s": MAX_DELAY_S, "delays": {}}
    known = {int(k): v for k, v in table["delays"].items()}
    missing = sorted({p for p in programs if p not in known})
    if missing:
        latest = json.loads(path.read_text())["delays"] if path.exists() else {}
        known.update({int(k): v for k, v in latest.items()})
        known.update(measure_delays(soundfont, missing))
        table["delays"] = {str(k): v for k, v in sorted(known.items())}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(table, indent=1))
        tmp.replace(path)
    return {p: known[p] for p in programs}
