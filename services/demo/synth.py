"""Listenable rendering of transcribed notes, in numpy only.

The serving image has no FluidSynth and no soundfont, so notes are played as additive harmonic
tones. The point is to let a person hear what the model heard (pitches, timing, bends), not to
sound like an instrument.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np

from core.notes import NoteLike

# Harmonic amplitudes fall as 1/k**ROLLOFF: a soft, organ-like timbre in which the fundamental
# clearly dominates, so the rendering's pitch is unambiguous to the ear.
N_HARMONICS = 8
ROLLOFF = 1.5
ATTACK_S = 0.01
DECAY_S = 0.08
SUSTAIN = 0.6
RELEASE_S = 0.12
# Headroom for a few overlapping notes before the peak limiter has to act.
NOTE_GAIN = 0.2
TABLE_SIZE = 4096  # with linear interpolation its error is far below audibility


def midi_to_hz(pitch: np.ndarray | float) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(pitch, dtype=np.float64) - 69.0) / 12.0)


def velocity_gain(velocity: float) -> float:
    """Amplitude for a MIDI velocity (1..127); values <= 1 are taken as already normalised.

    A floor plus a square law keeps soft notes audible but clearly quieter than loud ones.
    """
    v = float(velocity)
    v01 = float(np.clip(v if v <= 1.0 else v / 127.0, 0.0, 1.0))
    return 0.2 + 0.8 * v01**2 if v01 > 0 else 0.0


def adsr(n_hold: int, sr: int) -> np.ndarray:
    """Envelope for a note held `n_hold` samples, followed by its release tail."""
    a = max(1, int(ATTACK_S * sr))
    d = max(1, int(DECAY_S * sr))
    r = max(1, int(RELEASE_S * sr))
    env = np.full(n_hold + r, SUSTAIN, dtype=np.float64)
    # Short notes cut the attack/decay short instead of stretching the note.
    head = np.concatenate([np.linspace(0.0, 1.0, a, endpoint=False), np.linspace(1.0, SUSTAIN, d)])
    m = min(len(head), n_hold)
    env[:m] = head[:m]
    level = env[n_hold - 1] if n_hold > 0 else 0.0
    env[n_hold:] = level * np.linspace(1.0, 0.0, r)
    return env


def f0_curve(
    note: NoteLike, n: int, sr: int, frame_rate: float | None = None
) -> np.ndarray | None:
    """Per-sample fundamental (Hz) over `n` samples, or None when the note does not bend.

    Bends hold one value per model frame from the note's start. With the model's `frame_rate`
    they are placed at those frame times; without it they are spread evenly over the note.
    Past the last value the bend holds, so a release does not jump back in pitch.
    """
    bends = note.pitch_bends
    if bends is None or len(bends) == 0 or not np.any(np.asarray(bends) != 0):
        return None
    # Converting the few frame values to Hz, then interpolating, avoids a power per sample.
    hz = midi_to_hz(note.pitch_midi + np.asarray(bends, dtype=np.float64))
    if len(hz) == 1:
        return np.full(n, hz[0])
    if frame_rate:
        per_sample = frame_rate / sr
    else:
        n_hold = max(2, int(round((note.end_s - note.start_s) * sr)))
        per_sample = (len(hz) - 1) / (n_hold - 1)
    # np.interp holds the end values, which is the hold past the last bend.
    return np.interp(np.arange(n) * per_sample, np.arange(len(hz)), hz)


@lru_cache(maxsize=N_HARMONICS)
def wavetable(n_harmonics: int) -> np.ndarray:
    """One period of the harmonic tone, plus a wrap-around sample for interpolation."""
    phase = 2.0 * np.pi * np.arange(TABLE_SIZE + 1) / TABLE_SIZE
    k = np.arange(1, n_harmonics + 1)[:, None]
    return (np.sin(k * phase) / k**ROLLOFF).sum(axis=0)


def render_note(note: NoteLike, sr: int, frame_rate: float | None = None) -> np.ndarray:
    """One note including its release tail; starts at the note's onset."""
    n_hold = max(1, int(round((note.end_s - note.start_s) * sr)))
    env = adsr(n_hold, sr)
    n = len(env)
    f0 = f0_curve(note, n, sr, frame_rate)
    # Harmonics above Nyquist would alias back as inharmonic whistles; the highest pitch the
    # note bends to decides how many are safe.
    top = float(f0.max()) if f0 is not None else float(midi_to_hz(note.pitch_midi))
    n_harm = int(min(N_HARMONICS, max(1, 0.45 * sr // top)))
    # Integrating frequency (not multiplying a fixed frequency by time) is what makes bends glide.
    if f0 is None:
        cycles = np.arange(n) * (top / sr)
    else:
        cycles = np.cumsum(f0) / sr
    # A table lookup of the summed harmonics costs far less than one sine per harmonic.
    pos = np.modf(cycles)[0] * TABLE_SIZE
    i0 = pos.astype(np.int64)
    w = pos - i0
    table = wavetable(n_harm)
    tone = table[i0] * (1.0 - w) + table[i0 + 1] * w
    return tone * env * (velocity_gain(note.velocity) * NOTE_GAIN)


def render(
    notes: Sequence[NoteLike],
    sr: int,
    duration_s: float | None = None,
    frame_rate: float | None = None,
) -> np.ndarray:
    """Mix all notes into float32 mono audio in [-1, 1].

    `frame_rate` is the rate of the notes' pitch-bend values (see f0_curve).
    With `duration_s` the result has exactly that length (so it lines up with the input clip);
    without, it ends when the last release does.
    """
    if duration_s is not None:
        length = int(round(duration_s * sr))
    else:
        length = max((int(round(n.end_s * sr)) + int(RELEASE_S * sr) + 1 for n in notes), default=0)
    out = np.zeros(length, dtype=np.float64)
    for note in notes:
        start = int(round(note.start_s * sr))
        if start >= length or note.end_s <= note.start_s:
            continue
        tone = render_note(note, sr, frame_rate)[: length - start]
        out[start : start + len(tone)] += tone
    peak = float(np.max(np.abs(out))) if length else 0.0
    if peak > 0.99:  # many simultaneous notes: scale down rather than clip
        out *= 0.99 / peak
    return out.astype(np.float32)
