"""What the codec's and the extractor's eval/bench harnesses share beside their tables (those are
in benchmarks.report): how a system that cannot run is reported, which systems run, the summary of
per-item scores, the paths written in results, the results-file arguments and the writing.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from benchmarks import report

log = logging.getLogger("hark.bench")
REPO = Path(__file__).resolve().parent.parent

System = TypeVar("System")


class Unavailable(Exception):
    """A system that cannot run here; the message says why and what to do."""


def reason(exc: BaseException) -> str:
    """Why a system was skipped or dropped, as written in results: an Unavailable's own words,
    a failed subprocess's last stderr, else the exception's type and message."""
    if isinstance(exc, Unavailable):
        return str(exc)
    if isinstance(exc, subprocess.CalledProcessError) and exc.stderr:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        return f"{exc.cmd[0]} failed: {stderr.strip()[-300:]}"
    return f"{type(exc).__name__}: {exc}"


def summarise(per_item: list[dict[str, float]], keys: Iterable[str], unit: str, seconds: float) -> dict[str, float]:
    """Per metric: mean (under the metric's own name) and median over the items (clips, scenes),
    NaNs left out; where some were, KEY_UNIT counts the items the metric covers. Then the number of
    items under `unit` and the audio minutes."""
    out: dict[str, float] = {}
    for key in keys:
        values = [item[key] for item in per_item if np.isfinite(item[key])]
        if not values:
            continue
        out[key] = round(float(np.mean(values)), 4)
        out[f"{key}_median"] = round(float(statistics.median(values)), 4)
        if len(values) < len(per_item):
            out[f"{key}_{unit}"] = len(values)
    out[unit] = len(per_item)
    out["minutes"] = round(seconds / 60, 2)
    return out


def display(path: Path) -> str:
    """A path as written in results: relative to the repository, so results travel between checkouts."""
    try:
        return os.path.relpath(Path(path).resolve(), REPO)
    except ValueError:  # another drive (Windows)
        return str(path)


def add_group(names: list[str], build: Callable[[list[str]], tuple[dict[str, System], dict[str, Any]]],
              systems: dict[str, System], skipped: dict[str, str], info: dict[str, Any]) -> None:
    """Add the systems that one model makes: `build(names)` -> (systems, info), of which those in
    `names` are kept. When it fails (no model here, a module missing) every one of `names` is
    skipped for that reason, and the other systems still run."""
    if not names:
        return
    try:
        built, built_info = build(names)
    except Exception as exc:  # a missing model or checkpoint is recorded, not fatal
        skipped.update({n: reason(exc) for n in names})
        return
    systems.update({n: built[n] for n in names})
    info.update({n: built_info[n] for n in names})


def chosen(wanted: list[str], given: dict[str, System], built: dict[str, System], skipped: dict[str, str],
           info: dict[str, Any]) -> dict[str, System]:
    """The systems to run, in the order asked for: one given from Python (tests, a new system)
    wins over the built one of that name, and `info` says so. The skipped ones are logged here,
    and so is an empty choice, which the caller ends with exit status 1."""
    for name in given:
        info[name] = {"runtime": "given in-process"}
    for name, why in skipped.items():
        log.warning("skipping %s: %s", name, why)
    running = {n: given.get(n) or built[n] for n in wanted if n in given or n in built}
    if not running:
        log.error("no system could run: %s", skipped)
    return running


def with_skipped(summary: dict[str, dict[str, Any]], skipped: dict[str, str]) -> dict[str, dict[str, Any]]:
    """One set's results: every system asked for is there, a skipped one with why."""
    return {**summary, **{name: {"skipped": why} for name, why in skipped.items()}}


def add_results_arguments(parser: argparse.ArgumentParser, default_out: Path, tag: str, systems: list[str]) -> None:
    """--out, --ship, --readme (benchmarks/report.py) and --systems, as every family's eval and bench
    take them; `default_out` is where --ship publishes."""
    report.add_destination_arguments(parser, tag, REPO)
    parser.set_defaults(published=default_out)
    parser.add_argument("--systems", nargs="+", default=systems, choices=systems, metavar="SYSTEM",
                        help=f"systems to run (default: all of {', '.join(systems)})")


def write(args: argparse.Namespace, tag: str, render: Callable[[dict[str, Any]], str], meta_key: str,
          meta_section: dict[str, Any], sets: dict[str, Any] | None = None, speed: dict[str, Any] | None = None,
          packages: Sequence[str] = (), readme: bool = True) -> int:
    """Stamp `meta_section` (meta.eval or meta.bench), merge one command's results into its
    destination (report.destination: a folder of its own, or with --ship the published file), write
    it and its markdown and refresh the docs block if asked; returns 0, the command's exit status.
    `packages`: versions to record beyond report.stamp()'s (a family's scorers)."""
    out_path, readme_path = report.destination(args, tag, REPO, getattr(args, "published", None), readme)
    stamp = report.stamp(REPO)
    stamp["versions"].update(report.versions(list(packages)))
    meta_section.update(date=stamp["date"], git_commit=stamp["git_commit"])
    merged = report.merge(report.load(out_path), sets=sets, speed=speed, meta={**stamp, meta_key: meta_section})
    changed = report.write_all(merged, out_path, out_path.with_suffix(".md"), readme_path, tag, render=render)
    log.info("wrote %s and %s%s", out_path, out_path.with_suffix(".md"), " and the docs page" if changed else "")
    return 0


def record_in_card(model_dir: Path, sha256: str | None, section: dict) -> None:
    """The model card carries what its model scored, beside the anchors on the same inputs (under
    `eval`); only when the card describes the model that was measured (--ship)."""
    card_path = model_dir / "card.json"
    if sha256 is None or not card_path.is_file():
        return
    card = json.loads(card_path.read_text())
    if card.get("sha256") != sha256:
        log.warning("not writing results into %s: its sha256 does not match the measured model", card_path)
        return
    card["eval"] = {**card.get("eval", {}), **section}
    card_path.write_text(json.dumps(card, indent=2) + "\n")
