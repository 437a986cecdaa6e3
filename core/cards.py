"""Artifact directories and their model cards, without BentoML.

An artifact directory holds the ONNX graph(s) and `card.json`. What identifies one is the pair of
hashes (ONNX file, card file): both the export step, which registers artifacts in the BentoML
store (export/register.py), and the services, which look them up there (services/model_store.py),
compare stored entries by that pair.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_card(artifact_dir: Path) -> dict[str, Any]:
    card_path = Path(artifact_dir) / "card.json"
    if not card_path.is_file():
        raise FileNotFoundError(f"{artifact_dir} has no card.json: not a hark artifact directory")
    try:
        card = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{card_path} is not a valid model card ({exc})") from exc
    if not isinstance(card, dict):
        raise ValueError(f"{card_path} is not a valid model card (a JSON object is expected)")
    return card


def _model_file(artifact_dir: Path, card: dict[str, Any]) -> Path:
    name = card.get("files", {}).get("model") or f"{card['name']}.onnx"
    path = Path(artifact_dir) / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is named by the card but does not exist")
    return path


def identity(artifact_dir: Path, card: dict[str, Any]) -> tuple[str, str]:
    """(ONNX sha256, card.json sha256): the hashes of the files themselves, not the card's claim,
    so that neither a stale card nor a stale store entry can hide a new export."""
    return file_sha256(_model_file(artifact_dir, card)), file_sha256(Path(artifact_dir) / "card.json")


def matching(stored: Iterable[Any], wanted: tuple[str, str]) -> Any | None:
    """The first BentoML model entry (anything with `.info.metadata`) registered with `wanted`."""
    for model in stored:
        if (model.info.metadata.get("sha256"), model.info.metadata.get("card_file_sha256")) == wanted:
            return model
    return None


def artifacts_dir() -> Path:
    path = Path(os.environ.get("HARK_ARTIFACTS_DIR", "artifacts"))
    return path if path.is_absolute() else REPO_ROOT / path
