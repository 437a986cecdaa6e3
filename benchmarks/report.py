"""Results file handling: merge JSON, render markdown, refresh the family page's block (docs/FAMILY.md).

`hark eval` writes `sets`, `hark bench` writes `speed`; each merges into the existing JSON so
either can be rerun alone. Numbers only ever reach the docs through this module.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

NOTE_METRICS = [
    ("note_f1", "note F1 (onset, 50 ms)"),
    ("note_precision", "note precision"),
    ("note_recall", "note recall"),
    ("note_f1_offset", "note F1 (with offsets)"),
    ("frame_f1", "frame F1 (10 ms)"),
]
OPTIONAL_NOTE_METRICS = [("repeated_recall", "recall of repeated strikes")]
ANCHOR = "basic-pitch"


def load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {"sets": {}, "speed": {}, "meta": {}}
    for key in ("sets", "speed", "meta"):
        data.setdefault(key, {})
    return data


def merge(
    old: dict[str, Any],
    sets: dict[str, dict[str, dict]] | None = None,
    speed: dict[str, dict] | None = None,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """New results replace old ones per (set, system) and per speed system; others stay.
    `meta` keys replace old ones at the top level (eval and bench keep theirs under
    `meta.eval` / `meta.bench`)."""
    out = {"sets": {k: dict(v) for k, v in old.get("sets", {}).items()},
           "speed": dict(old.get("speed", {})), "meta": dict(old.get("meta", {}))}
    for set_name, systems in (sets or {}).items():
        out["sets"].setdefault(set_name, {}).update(systems)
    # A system's speed entry is replaced whole: its ratio belongs to the run that measured it.
    out["speed"].update(speed or {})
    out["meta"].update(meta or {})
    return out


def _fmt(v: Any, digits: int = 3) -> str:
    if isinstance(v, (int, float)):
        return f"{v:.{digits}f}"
    return "—"


def _systems(results: dict[str, Any]) -> list[str]:
    seen: list[str] = []
    for systems in results.get("sets", {}).values():
        seen += [s for s in systems if s not in seen]
    seen += [s for s in results.get("speed", {}) if s not in seen]
    # Ours first, the anchor last: the table reads "hark vs basic-pitch".
    return sorted(seen, key=lambda s: (s == ANCHOR, not s.startswith("hark"), s))


def render_markdown(results: dict[str, Any]) -> str:
    systems = _systems(results)
    lines: list[str] = []
    if results.get("sets"):
        quality_systems = [s for s in systems if any(s in v for v in results["sets"].values())]
        lines += ["| set | metric | " + " | ".join(quality_systems) + " |",
                  "|---|---|" + "---:|" * len(quality_systems)]
        sizes = results.get("meta", {}).get("eval", {}).get("set_sizes", {})
        for set_name, by_system in results["sets"].items():
            size = sizes.get(set_name)
            label = f"{set_name} ({size['clips']} clips, {size['audio_s'] / 60:.1f} min)" if size else set_name
            # Rows only some sets have (piano-repeated's recall of repeated strikes) appear only there.
            rows = NOTE_METRICS + [m for m in OPTIONAL_NOTE_METRICS if any(m[0] in v for v in by_system.values())]
            for key, title in rows:
                cells = [_fmt(by_system.get(s, {}).get(key)) for s in quality_systems]
                lines.append(f"| {label} | {title} | " + " | ".join(cells) + " |")
                label = ""
        lines.append("")
    speed = results.get("speed", {})
    if speed:
        lines += ["| system | CPU-s per audio-s (1 thread) | CPU-s per audio-s (default threads) "
                  "| ratio vs basic-pitch (1 thread) | peak RSS serving (MiB) |",
                  "|---|---:|---:|---:|---:|"]
        for s in [s for s in systems if s in speed]:
            v = speed[s]
            if "skipped" in v:
                lines.append(f"| {s} | skipped: {v['skipped']} | | | |")
                continue
            lines.append(
                f"| {s} | {_fmt(v.get('cpu_s_per_audio_s'), 4)} | {_fmt(v.get('cpu_s_per_audio_s_default_threads'), 4)}"
                f" | {_fmt(v.get('ratio_vs_basic_pitch'), 2)} | {_fmt(v.get('peak_rss_mb'), 0)} |"
            )
        latency = {s: v for s, v in speed.items() if "note_on_latency_s_median" in v}
        for s, v in latency.items():
            lines.append(f"{s}: a note_on leaves after {_fmt(v['note_on_latency_s_median'], 2)} s of audio past the "
                         f"note's onset (median; 95th percentile {_fmt(v.get('note_on_latency_s_p95'), 2)} s, "
                         f"max {_fmt(v.get('note_on_latency_s_max'), 2)} s), plus compute time.")
        lines.append("")
    meta = results.get("meta", {})
    ev, bench = meta.get("eval", {}), meta.get("bench", {})
    if results.get("sets") and ev:
        lines.append(f"Quality: `hark eval transcriber` ({ev.get('date', '?')}, commit {ev.get('git_commit', '?')}); "
                     f"{ev.get('pooling', '')}.")
    if speed and bench:
        lines.append(f"Speed: `hark bench transcriber` ({bench.get('date', '?')}, commit {bench.get('git_commit', '?')}); "
                     f"median of {bench.get('repeats', '?')} repeats on {bench.get('audio_s', '?')} s of audio, "
                     f"{bench.get('cores', '?')} cores; compare ratios, not absolute CPU time, across runs.")
    return "\n".join(lines).rstrip() + "\n"


# --- the codec's and the extractor's tables: systems as columns, mean (median) per cell --------

# (key, title, digits, higher is better): one row of a quality table
Metric = tuple[str, str, int, bool]
# (key, title, digits): one column of a speed table
SpeedColumn = tuple[str, str, int]
# A family's own rows under each set's metrics: (that set's results by system, the columns) -> rows
ExtraRows = Callable[[dict[str, dict[str, Any]], list[str]], list[str]]


@dataclass(frozen=True)
class FamilyTables:
    """What differs between the markdown of two families that share the layout: the texts, the
    columns and the order of the systems."""
    tag: str                              # `hark eval TAG`, `hark bench TAG`
    systems: Sequence[str]                # the family's systems in table order; unknown ones go last, sorted
    metrics: Sequence[Metric]             # the quality rows of each set
    unit: str                             # what a set counts, in meta.eval.set_sizes and the label: "clips"
    speed_columns: Sequence[SpeedColumn]
    quality_note: str                     # after "Quality: `hark eval TAG` (date, commit); "
    speed_note: Callable[[dict[str, Any]], str]  # meta.bench -> what follows "Speed: ... ; "
    extra_rows: ExtraRows | None = None


def ordered(names: Iterable[str], known: Sequence[str]) -> list[str]:
    """`names` with the known systems first, in the family's order, then any others sorted
    (a system given from Python, or one a later version dropped)."""
    names = list(names)
    return [n for n in known if n in names] + sorted(n for n in names if n not in known)


def mean_median_cell(entry: dict[str, Any], key: str, digits: int) -> str:
    """`mean (median)` of one metric of one system; "skipped" or "—" when there is none."""
    if "skipped" in entry:
        return "skipped"
    mean, median = entry.get(key), entry.get(f"{key}_median")
    if not isinstance(mean, (int, float)):
        return "—"
    return f"{mean:.{digits}f} ({median:.{digits}f})" if isinstance(median, (int, float)) else f"{mean:.{digits}f}"


def _set_label(set_name: str, size: dict[str, Any] | None, unit: str) -> str:
    return f"{set_name} ({size[unit]} {unit}, {size['audio_s'] / 60:.1f} min)" if size else set_name


def quality_table(sets: dict[str, dict[str, dict]], sizes: dict[str, dict], tables: FamilyTables
                  ) -> tuple[list[str], list[str]]:
    """(table rows, notes): one row per set and metric, one column per system; the notes say why
    a system was skipped, since its cells only say that it was."""
    systems = ordered({s for by_system in sets.values() for s in by_system}, tables.systems)
    lines = ["| set | metric | " + " | ".join(systems) + " |", "|---|---|" + "---:|" * len(systems)]
    notes: list[str] = []
    for set_name, by_system in sets.items():
        label = _set_label(set_name, sizes.get(set_name), tables.unit)
        for key, title, digits, higher in tables.metrics:
            cells = [mean_median_cell(by_system.get(s, {}), key, digits) for s in systems]
            lines.append(f"| {label} | {title} {'↑' if higher else '↓'} | " + " | ".join(cells) + " |")
            label = ""  # the set is named on its first row only
        if tables.extra_rows:
            lines += tables.extra_rows(by_system, systems)
        notes += [f"{s} in {set_name}: skipped: {v['skipped']}" for s, v in by_system.items() if "skipped" in v]
    return lines, notes


def speed_table(speed: dict[str, dict[str, Any]], tables: FamilyTables) -> list[str]:
    """One row per system, one column per measure; a skipped system says why in its first cell."""
    columns = tables.speed_columns
    lines = ["| system | " + " | ".join(title for _, title, _ in columns) + " |", "|---|" + "---:|" * len(columns)]
    for s in ordered(speed, tables.systems):
        v = speed[s]
        if "skipped" in v:
            lines.append(f"| {s} | skipped: {v['skipped']} |" + " |" * (len(columns) - 1))
        else:
            lines.append(f"| {s} | " + " | ".join(_fmt(v.get(key), digits) for key, _, digits in columns) + " |")
    return lines


def _provenance(what: str, command: str, section: dict[str, Any]) -> str:
    return f"{what}: `{command}` ({section.get('date', '?')}, commit {section.get('git_commit', '?')}); "


def render_family(results: dict[str, Any], tables: FamilyTables) -> str:
    """Quality table, speed table, skip notes and where the numbers came from, for FAMILY.md and
    the block in docs/FAMILY.md."""
    meta, sets, speed = results.get("meta", {}), results.get("sets", {}), results.get("speed", {})
    lines: list[str] = []
    notes: list[str] = []
    if sets:
        table, notes = quality_table(sets, meta.get("eval", {}).get("set_sizes", {}), tables)
        lines += [*table, ""]
    if speed:
        lines += [*speed_table(speed, tables), ""]
    lines += notes
    ev, bench = meta.get("eval", {}), meta.get("bench", {})
    if sets and ev:
        lines.append(_provenance("Quality", f"hark eval {tables.tag}", ev) + tables.quality_note)
    if speed and bench:
        lines.append(_provenance("Speed", f"hark bench {tables.tag}", bench) + tables.speed_note(bench))
    return "\n".join(lines).rstrip() + "\n"


def replace_block(text: str, block: str, tag: str) -> str | None:
    """Text with the content between `<!-- bench:TAG -->` and `<!-- /bench:TAG -->` replaced,
    or None when the markers are absent."""
    pattern = re.compile(rf"(<!--\s*bench:{re.escape(tag)}\s*-->)(.*?)(<!--\s*/bench:{re.escape(tag)}\s*-->)", re.DOTALL)
    if not pattern.search(text):
        return None
    return pattern.sub(lambda m: f"{m.group(1)}\n{block.strip()}\n{m.group(3)}", text, count=1)


def update_readme(readme: Path, block: str, tag: str) -> bool:
    try:
        text = Path(readme).read_text()
    except OSError:
        return False
    new = replace_block(text, block, tag)
    if new is None or new == text:
        return False
    Path(readme).write_text(new)
    return True


def write_all(results: dict[str, Any], json_path: Path, md_path: Path, readme: Path | None, tag: str,
              render: Callable[[dict[str, Any]], str] = render_markdown) -> bool:
    """Write JSON and markdown; return whether the docs block changed. `render` makes the
    markdown table of one family's results (the transcriber's by default)."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, json_path)  # never leave a half-written file for the other command to merge
    table = render(results)
    md_path.write_text(f"# {tag} benchmark\n\n{table}")
    return update_readme(readme, table, tag) if readme else False


REPORTS = Path("reports")  # where a report goes unless --ship (or --out) says otherwise


def add_destination_arguments(parser: argparse.ArgumentParser, tag: str, repo: Path) -> None:
    """--out, --ship and --readme: a run's report goes to a folder of its own; only --ship writes
    the project's published results (benchmarks/results/TAG.json) and the family page's block."""
    parser.add_argument("--out", type=Path, default=None, metavar="FILE",
                        help=f"results JSON, merged with what is there (a .md beside it); default: a new folder "
                             f"{REPORTS}/{tag}/<UTC time>, or with --ship the published "
                             f"benchmarks/results/{tag}.json")
    parser.add_argument("--ship", action="store_true",
                        help=f"publish: merge into benchmarks/results/ and refresh the results block of "
                             f"{family_page(repo, tag).relative_to(repo)} (the project's release step)")
    parser.add_argument("--readme", type=Path, default=None,
                        help=f"a markdown file whose <!-- bench:{tag} --> block to refresh (default: none; with "
                             f"--ship {family_page(repo, tag)})")


def family_page(repo: Path, tag: str) -> Path:
    """The family's page in docs/ where its published results live (tags: FAMILY or FAMILY-WHAT)."""
    return repo / "docs" / f"{tag.split('-')[0]}.md"


def destination(args: argparse.Namespace, tag: str, repo: Path, published: Path | None = None,
                readme: bool = True) -> tuple[Path, Path | None]:
    """(results JSON to write, markdown page to refresh or None) for the arguments above. `published`:
    the JSON --ship merges into (default benchmarks/results/TAG.json); `readme=False` for results
    that have no docs block."""
    given_readme = args.readme if readme else None
    if args.ship:
        published = published or repo / "benchmarks" / "results" / f"{tag}.json"
        return args.out or published, (given_readme or family_page(repo, tag)) if readme else None
    if args.out is not None:
        return args.out, given_readme
    from training.recipe_files import new_run_dir

    return new_run_dir(REPORTS / tag) / f"{tag}.json", given_readme


def git_commit(repo: Path) -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=repo, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": cores, "platform": platform.platform(), "python": platform.python_version()}


def versions(packages: list[str]) -> dict[str, str]:
    out = {}
    for p in packages:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    return out


def stamp(repo: Path) -> dict[str, Any]:
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_commit": git_commit(repo),
        "machine": machine(),
        "versions": versions(["numpy", "onnxruntime", "onnxruntime-gpu", "mir_eval", "basic-pitch",
                              "librosa", "torch", "soundfile", "soxr", "bentoml"]),
    }
