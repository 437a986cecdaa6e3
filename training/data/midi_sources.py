"""Where training MIDI comes from: music21's shipped corpus, and generated textures.

The corpus is split by piece (a stable hash of its path), so no piece is ever rendered into
both the training and the held-out sets.
"""
from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path

import numpy as np
import pretty_midi

log = logging.getLogger(__name__)

CORPUS_SUFFIXES = (".krn", ".mxl", ".xml", ".musicxml", ".abc")
HELDOUT_PERCENT = 10  # pieces whose hash falls in the first 10 % are never trained on


def piece_split(path: str | Path) -> str:
    """'heldout' or 'train', stable across machines (depends only on the corpus-relative path)."""
    rel = str(path).split("/corpus/")[-1]
    h = int(hashlib.sha1(rel.encode()).hexdigest()[:8], 16) % 100
    return "heldout" if h < HELDOUT_PERCENT else "train"


def corpus_pieces(split: str) -> list[Path]:
    from music21 import corpus

    paths = sorted(Path(p) for p in corpus.getPaths() if str(p).endswith(CORPUS_SUFFIXES))
    return [p for p in paths if piece_split(p) == split]


def piece_midi(path: Path, cache_dir: Path) -> pretty_midi.PrettyMIDI | None:
    """Parse a corpus score into MIDI once; later calls read the cached .mid."""
    rel = str(path).split("/corpus/")[-1]
    cached = cache_dir / (hashlib.sha1(rel.encode()).hexdigest()[:16] + ".mid")
    bad = cached.with_suffix(".bad")
    if bad.exists():
        return None
    if not cached.exists():
        try:
            from music21 import converter

            score = converter.parse(str(path))
            if hasattr(score, "scores"):  # an Opus of several tunes: take the first
                score = score.scores[0]
            cached.parent.mkdir(parents=True, exist_ok=True)
            score.write("midi", fp=str(cached))
        except Exception as exc:  # noqa: BLE001 - a few corpus files are broken; skip them
            log.debug("skipping %s: %s", rel, exc)
            bad.parent.mkdir(parents=True, exist_ok=True)
            bad.touch()
            return None
    try:
        pm = pretty_midi.PrettyMIDI(str(cached))
    except Exception:  # noqa: BLE001
        bad.touch()
        return None
    if pm.get_end_time() > 3600 or not any(i.notes for i in pm.instruments):
        bad.touch()
        return None
    return pm


def random_texture(rng: np.random.Generator, seconds: float) -> pretty_midi.PrettyMIDI:
    """Chords, strums, arpeggios and lines over the whole keyboard, with repeated notes.

    Chorales and madrigals live in vocal ranges and rarely repeat a pitch quickly; these fill
    the rest of the 88 keys and teach re-triggers and dense chords.
    """
    pm = pretty_midi.PrettyMIDI()
    for _ in range(int(rng.integers(1, 4))):
        inst = pretty_midi.Instrument(program=0)
        centre = int(rng.integers(33, 97))
        kind = rng.choice(["chords", "line", "arpeggio"])
        t = float(rng.uniform(0, 0.5))
        while t < seconds:
            if kind == "chords":
                n = int(rng.integers(2, 6))
                pitches = np.unique(centre + rng.integers(-12, 13, size=n))
                dur = float(rng.uniform(0.15, 2.0))
                strum = float(rng.uniform(0, 0.04)) * (rng.random() < 0.5)
                for j, p in enumerate(pitches):
                    start = t + j * strum
                    _add(inst, p, start, start + dur * rng.uniform(0.6, 1.0), rng)
                t += dur + float(rng.uniform(0, 0.3))
            elif kind == "line":
                dur = float(rng.choice([0.08, 0.12, 0.2, 0.3, 0.5, 0.8, 1.2]))
                repeats = int(rng.integers(1, 4)) if rng.random() < 0.3 else 1
                for _ in range(repeats):
                    _add(inst, centre, t, t + dur * rng.uniform(0.5, 0.95), rng)
                    t += dur
                centre = int(np.clip(centre + rng.integers(-5, 6), 24, 105))
            else:
                base = np.sort(centre + rng.choice([0, 3, 4, 7, 10, 12, 16], size=4, replace=False))
                step = float(rng.uniform(0.07, 0.3))
                for p in base:
                    _add(inst, p, t, t + step * rng.uniform(1.0, 4.0), rng)
                    t += step
        pm.instruments.append(inst)
    return pm


def _add(inst: pretty_midi.Instrument, pitch: int, start: float, end: float, rng: np.random.Generator) -> None:
    pitch = int(np.clip(pitch, 21, 108))
    inst.notes.append(pretty_midi.Note(int(rng.integers(30, 127)), pitch, start, max(end, start + 0.03)))


def midi_bytes(pm: pretty_midi.PrettyMIDI) -> bytes:
    buf = io.BytesIO()
    pm.write(buf)
    return buf.getvalue()
