"""Piano pieces with soft repeated chords under the sustain pedal, rendered with note truth.

This is the texture where a transcriber trained on pedal-free renders fails on real pianos: a key
struck again, softly, while it (or the pedal) still sounds, gets merged into the ringing note,
and notes are held to where the pedal lifts instead of where the key came up. music21 scores
carry no pedal and rarely repeat a chord, so the pieces are generated: a louder melody above
(MIDI 65-88) and an accompaniment of soft (velocity 20-60) repeated chords and repeated bass
notes in MIDI 36-64, most bars under CC64 with the pedal changed at each chord.

The truth follows the keys, as in annotated piano recordings: a note ends at its key's release
even where the pedal keeps the string sounding. How long the string may ring on under the pedal
is kept beside it (`ring_end_s`): training neither rewards nor punishes the note head there, so
that it learns re-strikes without learning to end every note early (bowed and blown notes end
with their sound, which is what the other training sets label). Each note also records whether it is a
*repeated strike*: its key was struck before and that earlier note still sounded at this
strike, either because the key was still down or because the pedal held it from the key's
release on.

`build_set` writes the layout of training/data/music.py (`audio/`, `notes/`, `manifest.json`;
notes CSV `onset_s,offset_s,midi_pitch,velocity,track,repeated,ring_end_s`), every clip a pure function of
(seed, index). The evaluation renders it on pianos training never uses (`EVAL_SOUNDFONTS`)
with a room; training renders it on the training soundfonts.
"""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pretty_midi
import soundfile as sf
from scipy.signal import fftconvolve

from training.data import onset_delays
from training.data.augment import random_eq, synthetic_rir
from training.data.music import SAMPLE_RATE, TRAIN_SOUNDFONTS, prepare_set_dir, render

# Sampled grand pianos that no training set renders with (Debian timgm6mb-soundfont and
# csound-soundfont); the training sets use FluidR3 and MuseScore General Lite.
EVAL_SOUNDFONTS = ["/usr/share/sounds/sf2/TimGM6mb.sf2", "/usr/share/sounds/sf2/sf_GMbank.sf2"]
EVAL_PROGRAMS = [0]  # acoustic grand
# Pianos of the training soundfonts: acoustic grand most often, then bright, electric grand, honky-tonk.
TRAIN_PROGRAMS = [0, 0, 0, 2, 3]
ACCOMP_RANGE = (36, 64)
MELODY_RANGE = (65, 88)
SOFT_VELOCITY = (20, 60)
MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
MINOR = np.array([0, 2, 3, 5, 7, 8, 10])
GENERATOR = 1  # bump when a clip of the same (seed, index) would come out differently


@dataclass(frozen=True)
class PedalPiece:
    midi: pretty_midi.PrettyMIDI
    pedal: list[tuple[float, float]]  # (down, up) seconds


def _scale_pitches(root: int, mode: np.ndarray, lo: int, hi: int) -> np.ndarray:
    pcs = set(((root + mode) % 12).tolist())
    return np.array([p for p in range(lo, hi + 1) if p % 12 in pcs])


def _chord(rng: np.random.Generator, root_pc: int, mode: np.ndarray, degree: int, lo: int, hi: int,
           size: int) -> list[int]:
    """A close-position triad (or seventh) on `degree` of the scale, `size` keys in [lo, hi]."""
    steps = [0, 2, 4, 6][: max(3, min(size, 4))]
    pcs = [int((root_pc + mode[(degree + s) % 7]) % 12) for s in steps]
    base = int(rng.integers(lo, max(lo + 1, hi - 10)))
    keys: list[int] = []
    p = base
    for pc in pcs * 2:
        while p % 12 != pc:
            p += 1
        if p > hi:
            break
        keys.append(p)
        p += 1
        if len(keys) == size:
            break
    return sorted(set(keys))


def pedal_piece(rng: np.random.Generator, seconds: float, program: int = 0) -> PedalPiece:
    """One generated piece of `seconds`: melody above soft repeated accompaniment (module docstring)."""
    pm = pretty_midi.PrettyMIDI()
    melody = pretty_midi.Instrument(program=program, name="melody")
    accomp = pretty_midi.Instrument(program=program, name="accompaniment")
    beat = float(rng.uniform(0.45, 1.0))  # a slow piece: 60-133 beats per minute
    bar_beats = int(rng.choice([3, 4]))
    subdivision = int(rng.choice([1, 2, 2, 3]))  # strikes per beat of the repeated chords
    pattern = str(rng.choice(["chords", "chords", "bass+chords", "pulsing-bass", "broken"]))
    root_pc = int(rng.integers(12))
    mode = MAJOR if rng.random() < 0.6 else MINOR
    base_velocity = float(rng.uniform(SOFT_VELOCITY[0] + 5, SOFT_VELOCITY[1] - 5))
    pedal_share = float(rng.uniform(0.7, 1.0))
    lo, hi = ACCOMP_RANGE
    chord_lo = int(rng.integers(45, 53))  # where the repeated chords sit: mostly MIDI 48-59
    pedal: list[tuple[float, float]] = []
    t0 = float(rng.uniform(0.1, 0.5))
    bar = bar_beats * beat
    n_bars = int(np.ceil((seconds - t0) / bar))
    degrees = [0] + [int(rng.choice([0, 1, 3, 4, 5, 3, 4])) for _ in range(n_bars - 1)]

    def soft() -> int:
        return int(np.clip(round(base_velocity + rng.normal(0, 6)), *SOFT_VELOCITY))

    for b, degree in enumerate(degrees):
        start = t0 + b * bar
        under_pedal = rng.random() < pedal_share
        if under_pedal:
            # Legato pedalling: lift at the chord change, press again just after the new strike.
            pedal.append((start + float(rng.uniform(0.03, 0.15)), start + bar - float(rng.uniform(0.0, 0.05))))
        chord = _chord(rng, root_pc, mode, degree, chord_lo, min(hi, chord_lo + 14), int(rng.integers(2, 5)))
        bass = int(np.clip(root_pc + mode[degree] + 12 * int(rng.integers(3, 4)), lo, lo + 14))
        strikes = bar_beats * subdivision
        step = beat / subdivision
        # Under the pedal the keys may come up early (the pedal holds them); without it they are held
        # nearly to the next strike.
        hold = float(rng.uniform(0.3, 0.9)) if under_pedal else float(rng.uniform(0.75, 0.95))
        for s in range(strikes):
            at = start + s * step + float(rng.normal(0, 0.008))
            if pattern == "broken":
                keys = [chord[s % len(chord)]] if s % 2 else [bass]
            elif pattern == "pulsing-bass":
                keys = [bass, bass + 12] if bass + 12 <= hi else [bass]
                if s % subdivision == 0 and s > 0:
                    keys = keys + chord
            elif pattern == "bass+chords":
                keys = ([bass] if s == 0 or (s == strikes // 2 and rng.random() < 0.5) else []) + chord
            else:
                keys = chord
            for k in keys:
                if rng.random() < 0.05:
                    continue  # a dropped chord tone keeps the texture from being perfectly regular
                end = at + step * hold * float(rng.uniform(0.85, 1.0))
                if k == bass and pattern == "bass+chords":
                    end = at + step * max(1, strikes // 2) * hold
                accomp.notes.append(pretty_midi.Note(soft(), int(k), max(at, 0.0), max(end, at + 0.05)))
    # Melody: a stepwise line above, louder, with rests and some repeated notes of its own.
    scale = _scale_pitches(root_pc, mode, *MELODY_RANGE)
    idx = int(rng.integers(len(scale) // 4, 3 * len(scale) // 4))
    t = t0 + float(rng.choice([0.0, beat]))
    mel_velocity = float(rng.uniform(65, 100))
    while t < seconds:
        dur = beat * float(rng.choice([0.5, 1, 1, 1.5, 2, 3]))
        if rng.random() < 0.12:
            t += dur  # a rest
            continue
        if rng.random() > 0.2:  # else the same key again
            idx = int(np.clip(idx + rng.choice([-2, -1, -1, 1, 1, 2, 3, -3]), 0, len(scale) - 1))
        vel = int(np.clip(round(mel_velocity + rng.normal(0, 8)), 45, 120))
        melody.notes.append(pretty_midi.Note(vel, int(scale[idx]), t, t + dur * float(rng.uniform(0.7, 0.98))))
        t += dur
    for inst in (melody, accomp):
        inst.notes = [n for n in inst.notes if n.start < seconds]
        for n in inst.notes:
            n.end = min(n.end, seconds)
        inst.notes = _no_overlaps(inst.notes)
        for down, up in pedal:
            inst.control_changes.append(pretty_midi.ControlChange(64, 127, down))
            inst.control_changes.append(pretty_midi.ControlChange(64, 0, min(up, seconds)))
        pm.instruments.append(inst)
    return PedalPiece(pm, [(d, min(u, seconds)) for d, u in pedal])


def _no_overlaps(notes: list[pretty_midi.Note], gap_s: float = 0.01) -> list[pretty_midi.Note]:
    """One key cannot be down twice: a note ends just before the next strike of its key."""
    notes = sorted(notes, key=lambda n: (n.pitch, n.start))
    out: list[pretty_midi.Note] = []
    for n in notes:
        if out and out[-1].pitch == n.pitch:
            prev = out[-1]
            if n.start - prev.start < 0.06:
                continue  # two strikes of one key this close are one strike
            prev.end = min(prev.end, n.start - gap_s)
        out.append(n)
    return sorted(out, key=lambda n: (n.start, n.pitch))


def repeated_strikes(onsets: np.ndarray, offsets: np.ndarray, pitches: np.ndarray,
                     pedal: list[tuple[float, float]]) -> np.ndarray:
    """Boolean per note: an earlier note of the same key still sounded at this strike (its key
    still down, or the pedal down from that key's release until this strike)."""
    out = np.zeros(len(onsets), dtype=bool)
    order = np.lexsort((onsets, pitches))
    for a, b in zip(order[:-1], order[1:]):
        if pitches[a] != pitches[b]:
            continue
        release, strike = offsets[a], onsets[b]
        held = release >= strike - 0.02
        pedalled = any(down <= release + 0.02 and up >= strike for down, up in pedal)
        out[b] = held or pedalled
    return out


def ring_ends(onsets: np.ndarray, offsets: np.ndarray, pitches: np.ndarray,
              pedal: list[tuple[float, float]]) -> np.ndarray:
    """Per note, until when its string may still ring undamped: past the key's release while
    the pedal is down (to the pedal's lift or the key's next strike, whichever comes first),
    else the release itself."""
    out = offsets.copy()
    for i in range(len(onsets)):
        held = [up for down, up in pedal if down <= offsets[i] < up]
        if not held:
            continue
        later = onsets[(pitches == pitches[i]) & (onsets > onsets[i])]
        out[i] = max(offsets[i], min([held[0], *later.tolist()]))
    return out


def notes_table(piece: PedalPiece, delay_s: float) -> np.ndarray:
    """[n, 7] rows (onset_s, offset_s, pitch, velocity, track, repeated, ring_end_s), moved by the
    piano's audible delay like training/data/music.notes_of."""
    rows = [(n.start + delay_s, n.end + delay_s, n.pitch, n.velocity, i)
            for i, inst in enumerate(piece.midi.instruments) for n in inst.notes]
    arr = np.array(sorted(rows), dtype=np.float64).reshape(-1, 5)
    rep = repeated_strikes(arr[:, 0] - delay_s, arr[:, 1] - delay_s, arr[:, 2], piece.pedal)
    ring = ring_ends(arr[:, 0] - delay_s, arr[:, 1] - delay_s, arr[:, 2], piece.pedal) + delay_s
    return np.concatenate([arr, rep[:, None].astype(np.float64), ring[:, None]], axis=1)


def in_room(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A room and a microphone: synthetic reverb (RT60 0.3-1.2 s), a mild EQ and a little noise."""
    rir = synthetic_rir(rng, SAMPLE_RATE, float(rng.uniform(0.3, 1.2)))
    x = fftconvolve(audio, rir)[: len(audio)]
    x = random_eq(rng, x.astype(np.float32), 4.0, int(rng.integers(0, 3)))
    x = x + rng.normal(0, 1, len(x)).astype(np.float32) * float(np.abs(x).max()) * 10 ** (-float(rng.uniform(45, 65)) / 20)
    return (x / (np.abs(x).max() + 1e-9) * 0.9).astype(np.float32)


def write_csv(path: Path, notes: np.ndarray, source: str) -> None:
    lines = [f"# audio: ../audio/{path.stem}.wav ({source})",
             "onset_s,offset_s,midi_pitch,velocity,track,repeated,ring_end_s"]
    lines += [f"{s:.4f},{e:.4f},{int(p)},{int(v)},{int(k)},{int(r)},{g:.4f}" for s, e, p, v, k, r, g in notes]
    path.write_text("\n".join(lines) + "\n")


def make_clip(out: Path, index: int, seed: int, seconds: float, soundfonts: list[str], programs: list[int],
              room: bool, prefix: str) -> dict | None:
    """Clip `index` of a set, deterministic in (seed, index); None if it already exists."""
    name = f"{prefix}_{index:05d}"
    wav, csv = out / "audio" / f"{name}.wav", out / "notes" / f"{name}.csv"
    if wav.exists() and csv.exists():
        return None
    rng = np.random.default_rng([seed, index, GENERATOR])
    # Soundfonts take turns so that each piano gets its share even in a small set.
    soundfont = soundfonts[index % len(soundfonts)]
    program = int(rng.choice(programs))
    piece = pedal_piece(rng, seconds, program)
    audio = render(piece.midi, soundfont, rng)[: int(seconds * SAMPLE_RATE)]
    if room:
        audio = in_room(audio, rng)
    cache = Path(os.environ.get("HARK_CACHE", "data/cache"))
    delay = onset_delays.delays_for(soundfont, [program], cache).get(program, 0.0)
    notes = notes_table(piece, delay)
    sf.write(str(wav), audio, SAMPLE_RATE, subtype="PCM_16")
    write_csv(csv, notes, f"generated piano with pedal; {Path(soundfont).name}; program {program}")
    return {"name": name, "soundfont": Path(soundfont).name, "program": program, "notes": len(notes),
            "repeated": int(notes[:, 5].sum()), "pedal_s": round(sum(u - d for d, u in piece.pedal), 2)}


def build_set(out: Path, clips: int, seed: int, seconds: float = 30.0, soundfonts: list[str] | None = None,
              programs: list[int] | None = None, room: bool = True, prefix: str = "piano") -> list[dict]:
    """Render `clips` pedal pieces into `out` (existing clips are kept)."""
    soundfonts = soundfonts or EVAL_SOUNDFONTS
    prepare_set_dir(out, soundfonts)
    made = []
    for i in range(clips):
        try:
            info = make_clip(out, i, seed, seconds, soundfonts, programs or EVAL_PROGRAMS, room, prefix)
        except subprocess.TimeoutExpired:
            continue
        if info:
            made.append(info)
    return made


__all__ = ["EVAL_SOUNDFONTS", "TRAIN_SOUNDFONTS", "TRAIN_PROGRAMS", "PedalPiece", "pedal_piece",
           "repeated_strikes", "notes_table", "build_set"]
