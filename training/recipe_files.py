"""Where recipes and runs live, whatever folder `hark train` is started from.

The shipped recipes sit beside this file (training/configs/FAMILY.yaml): `--config` accepts a
path from the current folder, from the repository root (so `training/configs/x.yaml` works
anywhere) or a bare recipe name. Each run writes to a folder of its own, so that a user's run
never lands in, or overwrites, another run.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

CONFIGS = Path(__file__).resolve().parent / "configs"
REPO = Path(__file__).resolve().parents[1]


def default_config(family: str) -> Path:
    return CONFIGS / f"{family}.yaml"


def resolve_config(path: Path | str) -> Path:
    """`path` as given, else under the repository root, else a shipped recipe of that name;
    FileNotFoundError listing the shipped recipes."""
    path = Path(path).expanduser()
    candidates = [path] if path.is_absolute() else [path, REPO / path, CONFIGS / path.name]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    shipped = ", ".join(sorted(p.name for p in CONFIGS.glob("*.yaml")))
    raise FileNotFoundError(f"no recipe at {path} (looked in the current folder and {REPO}); "
                            f"the shipped recipes are {shipped} in {CONFIGS}")


def resolve_data(path: Path | str) -> Path:
    """A data path from a shipped recipe: from the current folder if it exists there, else from
    the repository root (where the recipes' relative defaults point)."""
    path = Path(path).expanduser()
    if path.is_absolute() or path.exists() or not (REPO / path).exists():
        return path
    return REPO / path


def new_run_dir(root: Path | str) -> Path:
    """A fresh folder under `root` named by the UTC time (not created here)."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    candidate, n = Path(root) / stamp, 1
    while candidate.exists():
        n += 1
        candidate = Path(root) / f"{stamp}-{n}"
    return candidate


def newest_run(root: Path | str, marker: str) -> Path | None:
    """The most recently written folder under `root` that holds `marker` (e.g. model.joblib)."""
    runs = [p.parent for p in Path(root).glob(f"*/{marker}")]
    return max(runs, key=lambda p: (p / marker).stat().st_mtime) if runs else None
