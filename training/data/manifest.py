"""The classifier's dataset manifest: a CSV with one row per recording.

Columns: `participant_id`, `audio_path`, `transcript`, `label`, and optionally `split`
(`train`, `test` or empty). Relative audio paths are resolved against the manifest's own directory,
so a cohort directory can be moved as a whole. Column names are matched case-insensitively.

`read_manifest` checks everything a training run would otherwise trip over much later (or,
worse, silently learn from) and reports all problems at once, each naming the CSV line numbers
(the header is line 1), so that a user can fix their file in one go rather than one stack trace
at a time:

- errors (`ManifestError`): missing columns, empty participant ids or labels, a row with neither
  audio nor a transcript, missing audio files, labels outside a given label set, a participant whose recordings carry different labels,
  split values other than train/test, a participant in both splits, a class held by fewer than
  two participants (grouped cross-validation cannot test a class on an unseen participant
  otherwise), fewer than two classes;
- warnings (returned): empty transcripts (the text modality skips those recordings), empty
  audio paths (the voice modality skips those), the same audio file on several rows, labels of
  the given set that no row uses.

A manifest of new data to score (`require_labels=False`) may leave every label empty.

`task_labels` turns a task string (`multiclass` or `binary:LABEL`) into class names and targets.
"""
from __future__ import annotations

import csv
import json
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REQUIRED_COLUMNS = ("participant_id", "audio_path", "transcript", "label")
OPTIONAL_COLUMNS = ("split",)
SPLITS = ("train", "test")
# Long lists of rows or files are cut in messages: the first few locate the problem.
MAX_LISTED = 10


@dataclass(frozen=True)
class Recording:
    participant_id: str
    audio_path: Path | None  # absolute (relative paths in the CSV are taken from the manifest's
    # directory); None for a transcript without audio
    transcript: str
    label: str
    split: str | None
    row: int  # line of the CSV file where this record starts; the header is line 1


class ManifestError(ValueError):
    """A manifest that cannot be used; the message lists every problem with its rows."""


def _listing(items: Sequence[object], limit: int = MAX_LISTED) -> str:
    shown = ", ".join(str(i) for i in items[:limit])
    return shown if len(items) <= limit else f"{shown}, ... ({len(items) - limit} more)"


def rows_text(rows: Sequence[int]) -> str:
    """'row 4' or 'rows 4, 9' (cut after MAX_LISTED)."""
    rows = sorted(set(rows))
    return f"row {rows[0]}" if len(rows) == 1 else f"rows {_listing(rows)}"


def _records(handle: Iterable[str]) -> tuple[list[str] | None, list[tuple[int, list[str]]]]:
    reader = csv.reader(handle)
    header: list[str] | None = None
    records: list[tuple[int, list[str]]] = []
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return header, records
        except csv.Error as exc:
            raise ManifestError(f"line {reader.line_num}: not a readable CSV record: {exc}") from exc
        if not any(f.strip() for f in fields):
            continue
        if header is None:
            header = [f.strip().lower() for f in fields]
        else:
            records.append((start, fields))


def _read_records(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the non-blank records, each with the line it starts on."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:  # utf-8-sig: spreadsheets add a BOM
            header, records = _records(handle)
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ManifestError(f"manifest {path} is not UTF-8 text: {exc}") from exc
    except ManifestError as exc:
        raise ManifestError(f"manifest {path}, {exc}") from exc
    if header is None:
        raise ManifestError(f"manifest {path} is empty; expected a header line with the columns "
                            f"{', '.join(REQUIRED_COLUMNS)}[, split]")
    return header, records


def _check_header(path: Path, header: list[str]) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ManifestError(
            f"manifest {path} is missing the required column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)}; the header (line 1) was: {', '.join(header)}; expected "
            f"{', '.join(REQUIRED_COLUMNS)}[, split]")
    duplicated = sorted({c for c in header if c and header.count(c) > 1})
    if duplicated:
        raise ManifestError(f"manifest {path}: column{'s' if len(duplicated) > 1 else ''} "
                            f"{', '.join(duplicated)} appear more than once in the header (line 1)")


def _resolve(base: Path, value: str) -> Path:
    p = Path(os.path.expanduser(value))
    return Path(os.path.normpath(p if p.is_absolute() else base / p))


class _Problems:
    """Problems keyed by message, each with the rows it concerns, in first-seen order."""

    def __init__(self) -> None:
        self.rows: dict[str, list[int]] = {}
        self.details: dict[str, list[str]] = defaultdict(list)

    def add(self, message: str, row: int, detail: str | None = None) -> None:
        self.rows.setdefault(message, []).append(row)
        if detail is not None:
            self.details[message].append(detail)

    def lines(self) -> list[str]:
        out = []
        for message, rows in self.rows.items():
            details = self.details.get(message)
            out.append(f"{rows_text(rows)}: {message}" + (f": {_listing(details)}" if details else ""))
        return out


def _parse_rows(path: Path, header: list[str], records: list[tuple[int, list[str]]],
                labels: Sequence[str] | None, check_files: bool, require_labels: bool,
                errors: _Problems, warnings: _Problems) -> list[Recording]:
    base = path.resolve().parent
    index = {name: header.index(name) for name in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if name in header}
    allowed = set(labels) if labels is not None else None
    out = []
    for row, fields in records:
        if len(fields) > len(header) and any(f.strip() for f in fields[len(header):]):
            errors.add(f"more fields than the {len(header)} columns of the header "
                       "(a transcript with commas needs double quotes)", row)
        value = {name: (fields[i].strip() if i < len(fields) else "") for name, i in index.items()}
        pid, label, audio = value["participant_id"], value["label"], value["audio_path"]
        split = value.get("split", "").lower() or None
        if not pid:
            errors.add("empty participant_id", row)
        if not label and require_labels:
            errors.add("empty label", row)
        elif allowed is not None and label not in allowed:
            errors.add(f"unknown label {label!r} (expected one of: {', '.join(labels or [])})", row)
        if not audio and not value["transcript"]:
            errors.add("empty audio_path and transcript: a row needs audio, a transcript or both", row)
        elif not audio:
            warnings.add("empty audio_path: voice modality skipped for them", row)
        resolved = _resolve(base, audio) if audio else None
        if resolved is not None and check_files and not resolved.is_file():
            errors.add(f"audio file not found (relative paths are resolved against {base})", row, audio)
        if split is not None and split not in SPLITS:
            errors.add(f"split {value['split']!r} is not one of {', '.join(SPLITS)} (or empty)", row)
        if not value["transcript"] and audio:
            warnings.add("empty transcript: text modality skipped for them", row)
        out.append(Recording(pid, resolved, value["transcript"], label, split, row))
    return out


def _check_duplicates(recordings: list[Recording], warnings: _Problems) -> None:
    by_path: dict[Path, list[int]] = defaultdict(list)
    for rec in recordings:
        if rec.audio_path is not None:
            by_path[rec.audio_path].append(rec.row)
    for audio, rows in by_path.items():
        if len(rows) > 1 and audio.is_absolute():
            for row in rows:
                warnings.add(f"the same audio file {audio} is listed more than once", row)


def _check_participants(recordings: list[Recording], errors: _Problems) -> None:
    """One label and at most one split per participant."""
    labels_of: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    splits_of: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for rec in recordings:
        if rec.participant_id and rec.label:
            labels_of[rec.participant_id][rec.label].append(rec.row)
        if rec.participant_id and rec.split in SPLITS:
            splits_of[rec.participant_id][rec.split].append(rec.row)
    for pid, by_label in labels_of.items():
        if len(by_label) == 1:
            continue
        parts = "; ".join(f"{label} ({rows_text(rows)})" for label, rows in by_label.items())
        all_rows = [r for rows in by_label.values() for r in rows]
        errors.add(f"participant {pid!r} has recordings with different labels: {parts}; "
                   "a participant needs one label", min(all_rows))
    for pid, by_split in splits_of.items():
        if len(by_split) > 1:
            parts = "; ".join(f"{s} ({rows_text(rows)})" for s, rows in by_split.items())
            all_rows = [r for rows in by_split.values() for r in rows]
            errors.add(f"participant {pid!r} is in both splits: {parts}; a participant's recordings "
                       "must all be in one split, or a model is tested on a voice it trained on", min(all_rows))


def _check_classes(recordings: list[Recording], labels: Sequence[str] | None,
                   errors: list[str], warnings: list[str]) -> None:
    participants: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for rec in recordings:
        if rec.participant_id and rec.label:
            participants[rec.label][rec.participant_id].append(rec.row)
    for label in sorted(participants):
        if len(participants[label]) < 2:
            (pid, rows), = participants[label].items()
            errors.append(f"class {label!r} has only participant {pid!r} ({rows_text(rows)}): "
                          "grouped cross-validation needs at least 2 participants per class")
    if len(participants) == 1:
        errors.append(f"only one class ({next(iter(participants))}) in the manifest: "
                      "a classifier needs at least 2 classes")
    if labels is not None:
        unused = [label for label in labels if label not in participants]
        if unused:
            warnings.append(f"no recordings for label{'s' if len(unused) > 1 else ''} {', '.join(unused)}")


def read_manifest(path: Path, labels: Sequence[str] | None = None, check_files: bool = True,
                  require_labels: bool = True) -> tuple[list[Recording], list[str]]:
    """The manifest's recordings and human-readable warnings; ManifestError lists every problem.

    `labels`, when given, is the full set of allowed labels. `check_files=False` skips the
    existence check of the audio files (e.g. to validate a manifest before copying the audio).
    `require_labels=False` reads data to score: labels may be empty, and the class checks that
    training needs (two classes, two participants each) are skipped.
    """
    path = Path(path)
    header, records = _read_records(path)
    _check_header(path, header)
    if not records:
        raise ManifestError(f"manifest {path} has a header but no recordings")
    errors, warnings = _Problems(), _Problems()
    recordings = _parse_rows(path, header, records, labels, check_files, require_labels, errors, warnings)
    _check_duplicates(recordings, warnings)
    _check_participants(recordings, errors)
    error_lines, warning_lines = errors.lines(), warnings.lines()
    if require_labels:
        _check_classes(recordings, labels, error_lines, warning_lines)
    if error_lines:
        count = f"{len(error_lines)} problem{'s' if len(error_lines) > 1 else ''}"
        raise ManifestError(f"manifest {path} has {count} (line numbers count the header as 1):\n  - "
                            + "\n  - ".join(error_lines))
    return recordings, warning_lines


def task_labels(recordings: Sequence[Recording], task: str) -> tuple[list[str], np.ndarray]:
    """Class names and the target of each recording for `task`.

    `multiclass`: the sorted labels, y = index into them. `binary:LABEL`: classes
    [`not_LABEL`, `LABEL`], y = 1 for recordings labelled LABEL.
    """
    present = sorted({r.label for r in recordings})
    spec = task.strip()
    if spec == "multiclass":
        index = {label: i for i, label in enumerate(present)}
        return present, np.array([index[r.label] for r in recordings], dtype=np.int64)
    kind, sep, positive = spec.partition(":")
    positive = positive.strip()
    if kind.strip() != "binary" or not sep or not positive:
        raise ManifestError(f"unknown task {task!r}: use 'multiclass' or 'binary:LABEL' "
                            f"with LABEL one of {', '.join(present)} (e.g. binary:{present[-1] if present else 'LABEL'})")
    if positive not in present:
        raise ManifestError(f"task {task!r}: label {positive!r} is not in the manifest; "
                            f"labels present: {', '.join(present)}")
    return [f"not_{positive}", positive], np.array([r.label == positive for r in recordings], dtype=np.int64)


def is_demo_cohort(manifest: Path) -> bool:
    """Whether `manifest` is the SYNTHETIC demo cohort that `hark data classifier` writes (its
    cohort.json says so), so that a report never labels a user's data as synthetic, or the reverse."""
    info = Path(manifest).resolve().parent / "cohort.json"
    try:
        written = json.loads(info.read_text())
        return written.get("synthetic") is True and written.get("generator") == "training.data.cohort"
    except (OSError, ValueError, AttributeError):
        return False


def write_manifest(path: Path, recordings: Iterable[Recording]) -> Path:
    """Write recordings as a manifest CSV; audio under the manifest's directory is stored relative."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.resolve().parent
    recordings = list(recordings)
    with_split = any(r.split for r in recordings)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*REQUIRED_COLUMNS, *(["split"] if with_split else [])])
        for rec in recordings:
            audio = Path(os.path.abspath(rec.audio_path)) if rec.audio_path is not None else None
            shown = ("" if audio is None else
                     audio.relative_to(base).as_posix() if audio.is_relative_to(base) else str(audio))
            writer.writerow([rec.participant_id, shown, rec.transcript, rec.label,
                             *([rec.split or ""] if with_split else [])])
    return path
