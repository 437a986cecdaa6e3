"""Playing that a score does not write down: tuning, vibrato, scoops and falls, swells.

Real strings, winds and voices are rarely at the score's pitch: ensembles tune a little off
A440, held notes carry vibrato, singers and saxophones scoop into notes and fall off them, and
the level swells within a note. All of it goes into the MIDI as pitch-wheel and expression
(CC11) events before rendering; the labels keep the written key, and the per-track bend curve
is saved so the contour target can follow the sounding pitch.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pretty_midi

CURVE_RATE = 100.0  # Hz, bend curve samples
BEND_RANGE = 2.0  # semitones: the GM default pitch-wheel range
# Programs whose players shape the pitch of a held note: strings, ensembles, voices, brass,
# reeds, pipes, synth leads and pads.
SUSTAINED = set(range(40, 96)) - {45, 46, 47, 55}


def _monophonic(inst: pretty_midi.Instrument) -> bool:
    notes = sorted(inst.notes, key=lambda n: n.start)
    return all(b.start >= a.end - 0.01 for a, b in zip(notes, notes[1:]))


def _glides(inst: pretty_midi.Instrument, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Scoops into and falls off some notes of a monophonic part."""
    curve = np.zeros_like(t)
    for n in inst.notes:
        if n.end - n.start < 0.25 or rng.random() > 0.3:
            continue
        depth = float(rng.uniform(0.3, 1.0)) * rng.choice([-1.0, 1.0])
        length = float(rng.uniform(0.06, min(0.3, (n.end - n.start) / 2)))
        if rng.random() < 0.5:  # scoop: start off pitch, glide onto it
            sel = (t >= n.start) & (t < n.start + length)
            curve[sel] += depth * (1 - (t[sel] - n.start) / length)
        else:  # fall: leave the pitch at the end
            sel = (t >= n.end - length) & (t < n.end)
            curve[sel] += depth * (t[sel] - (n.end - length)) / length
    return curve


def add_expression(pm: pretty_midi.PrettyMIDI, rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Write pitch-wheel and CC11 events into `pm`; return the bend curves [tracks, samples]
    in semitones at CURVE_RATE (row i belongs to pm.instruments[i])."""
    t = np.arange(int(np.ceil(seconds * CURVE_RATE)) + 1) / CURVE_RATE
    tuning = float(rng.uniform(-0.25, 0.25)) if rng.random() < 0.5 else 0.0
    curves = np.full((len(pm.instruments), len(t)), tuning, dtype=np.float32)
    for i, inst in enumerate(pm.instruments):
        if inst.program in SUSTAINED:
            if rng.random() < 0.5:
                depth, rate = float(rng.uniform(0.05, 0.4)), float(rng.uniform(4.0, 7.0))
                # Vibrato grows in over a few seconds and wanders in depth, as players do.
                wander = 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * t + rng.uniform(0, 6.3))
                curves[i] += depth * wander * np.sin(2 * np.pi * rate * t + rng.uniform(0, 6.3))
            if _monophonic(inst) and rng.random() < 0.5:
                curves[i] += _glides(inst, t, rng)
            if rng.random() < 0.4:
                knots = rng.uniform(70, 127, size=int(seconds * 2) + 2)
                level = np.interp(t, np.linspace(0, seconds, len(knots)), knots)
                inst.control_changes += [pretty_midi.ControlChange(11, int(v), float(x))
                                         for x, v in zip(t[::5], level[::5])]
        if np.any(curves[i] != 0):
            wheel = np.clip(np.round(curves[i] / BEND_RANGE * 8192), -8192, 8191).astype(int)
            keep = np.concatenate(([True], wheel[1:] != wheel[:-1]))
            inst.pitch_bends += [pretty_midi.PitchBend(int(w), float(x)) for w, x in zip(wheel[keep], t[keep])]
            curves[i] = wheel / 8192 * BEND_RANGE  # what the synthesizer actually plays
    return curves


def write_curves(path: Path, curves: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, curves.astype(np.float16))


def read_curves(path: Path) -> np.ndarray | None:
    return np.load(path).astype(np.float32) if path.exists() else None
