"""Evaluation sets on disk: `audio/*.wav` + `notes/*.csv` (layout in docs/CONTRACT.md).

A notes CSV names its audio in a leading `# audio: ../audio/NAME.wav` comment (relative to the
CSV); without one it pairs with the audio file of the same stem. Several CSVs may name the same
audio (e.g. two annotators): they become annotations of one clip, scored and averaged.
"""
from __future__ import annotations

import csv
import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from core.scoring import NoteArray

AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff")
_AUDIO_COMMENT = re.compile(r"^#\s*audio:\s*(\S+)", re.IGNORECASE)


@dataclass
class Annotation:
    name: str  # the CSV stem, e.g. vocadito_1_A1
    path: Path
    notes: NoteArray


@dataclass
class Clip:
    name: str  # the audio stem
    audio: Path
    annotations: list[Annotation] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        info = sf.info(str(self.audio))
        return info.frames / info.samplerate

    @property
    def group(self) -> str:
        """Source prefix (bach10, guitarset, vocadito...) for per-source breakdowns."""
        return self.name.split("_", 1)[0].split("-", 1)[0]


@dataclass
class EvalSet:
    name: str
    root: Path
    clips: list[Clip]
    unmatched_csv: list[str] = field(default_factory=list)
    unisons_merged: int = 0

    def sizes(self) -> dict[str, float]:
        notes = sum(len(a.notes) / len(c.annotations) for c in self.clips for a in c.annotations)
        return {
            "clips": len(self.clips),
            "annotations": sum(len(c.annotations) for c in self.clips),
            "audio_s": round(sum(c.duration_s for c in self.clips), 3),
            "notes": round(notes, 1),  # multi-annotator clips count the mean of their annotations
            "unisons_merged": self.unisons_merged,
        }


def read_notes_csv(path: Path) -> tuple[str | None, NoteArray]:
    """Return (audio reference from the comment line or None, notes)."""
    audio_ref: str | None = None
    body: list[str] = []
    with open(path, newline="") as fh:
        for line in fh:
            if line.lstrip().startswith("#"):
                m = _AUDIO_COMMENT.match(line.strip())
                if m and audio_ref is None:
                    audio_ref = m.group(1)
            elif line.strip():
                body.append(line)
    rows, repeated = [], []
    reader = csv.DictReader(body)
    # An optional `repeated` column (0/1) marks strikes of a still-sounding key (piano-repeated).
    has_repeated = "repeated" in (reader.fieldnames or [])
    for rec in reader:
        try:
            rows.append((float(rec["onset_s"]), float(rec["offset_s"]), float(rec["midi_pitch"])))
            if has_repeated:
                repeated.append(bool(int(rec["repeated"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: expected columns onset_s,offset_s,midi_pitch ({exc})") from exc
    notes = NoteArray.from_rows(rows)
    if has_repeated:
        notes = NoteArray(notes.onsets, notes.offsets, notes.pitches, np.array(repeated, dtype=bool))
    return audio_ref, notes


def _audio_by_stem(audio_dir: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(audio_dir.iterdir()) if p.suffix.lower() in AUDIO_EXTS}


def selects(stem: str, select: str | None) -> bool:
    """Whether clip `stem` belongs to a set chosen by `select`: a glob on the audio stem, `!GLOB`
    for every clip but those; comma-separated globs are alternatives. None or "*": all."""
    if not select or select == "*":
        return True
    negate = select.startswith("!")
    hit = any(fnmatch.fnmatchcase(stem, g.strip()) for g in select.lstrip("!").split(","))
    return hit != negate


def read_set(root: Path, name: str, annotators: str = "mean", select: str | None = None) -> EvalSet:
    """`annotators`: "mean" keeps every annotation of a clip (scored and averaged); "first"
    keeps only the first CSV by name (the Basic Pitch anchor on vocadito was measured against its first
    annotator, A1, alone).
    `select` keeps only some clips of the directory (see `selects`): one folder can hold two sets."""
    root = Path(root)
    notes_dir, audio_dir = root / "notes", root / "audio"
    if not notes_dir.is_dir() or not audio_dir.is_dir():
        raise FileNotFoundError(f"{root}: expected audio/ and notes/ subdirectories")
    by_stem = _audio_by_stem(audio_dir)
    clips: dict[Path, Clip] = {}
    unmatched: list[str] = []
    merged = 0
    for csv_path in sorted(notes_dir.glob("*.csv")):
        audio_ref, raw = read_notes_csv(csv_path)
        notes = raw.without_unisons()
        audio = (csv_path.parent / audio_ref).resolve() if audio_ref else by_stem.get(csv_path.stem)
        if audio is None or not audio.is_file():
            unmatched.append(csv_path.name)
            continue
        if not selects(audio.stem, select):
            continue
        clip = clips.setdefault(audio, Clip(audio.stem, audio))
        if annotators == "first" and clip.annotations:
            continue
        clip.annotations.append(Annotation(csv_path.stem, csv_path, notes))
        merged += len(raw) - len(notes)
    if not clips:
        raise ValueError(f"{root}: no notes CSV matched an audio file")
    return EvalSet(name, root, sorted(clips.values(), key=lambda c: c.name), unmatched, merged)


def default_set_names(dirs: list[Path]) -> list[str]:
    """`real` for a path under a `real` folder, `synth-heldout` for synthetic/held-out ones,
    else the folder name; duplicates get a numeric suffix."""
    names: list[str] = []
    for d in dirs:
        parts = [p.lower() for p in Path(d).resolve().parts]
        if "real" in parts:
            base = "real"
        elif any("synth" in p or "heldout" in p or "held-out" in p for p in parts[-2:]):
            base = "synth-heldout"
        else:
            base = Path(d).resolve().name
        name, i = base, 2
        while name in names:
            name, i = f"{base}-{i}", i + 1
        names.append(name)
    return names


def truncated_copy(audio: Path, seconds: float, tmp_dir: Path) -> Path:
    """The first `seconds` of `audio` as a WAV at its own rate (so every system still pays for
    its own decoding and resampling), or `audio` itself when it is not longer."""
    info = sf.info(str(audio))
    n = int(round(seconds * info.samplerate))
    if info.frames <= n:
        return audio
    data, sr = sf.read(str(audio), frames=n, dtype="float32", always_2d=True)
    out = Path(tmp_dir) / f"{audio.stem}.first{seconds:g}s.wav"
    sf.write(str(out), data, sr, subtype="FLOAT")
    return out
