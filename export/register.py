"""Put an exported artifact directory in the BentoML model store.

Registration copies the directory (ONNX + card.json + whatever else it holds) into the store under
the card's name, once per (ONNX, card.json) pair of hashes: a re-export that only changes the card
(decoder settings, say) is a new entry too. Every export registers what it wrote, and so does
`hark serve`, so `bentoml models list` shows every model that was served.

    python -m export.register artifacts/transcriber artifacts/codec
"""
from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

import bentoml
from bentoml.exceptions import NotFound

from core.cards import identity, matching, read_card

log = logging.getLogger("hark.model_store")


def stored_with(name: str, wanted: tuple[str, str]) -> Any | None:
    try:
        return matching(bentoml.models.list(name), wanted)
    except NotFound:
        return None


def register(artifact_dir: Path | str) -> str:
    """Put `artifact_dir` in the BentoML store (skipped if that ONNX and card are there); returns the tag."""
    artifact_dir = Path(artifact_dir)
    card = read_card(artifact_dir)
    name = card["name"]
    sha256, card_file_sha256 = wanted = identity(artifact_dir, card)
    existing = stored_with(name, wanted)
    if existing is not None:
        log.info("%s already in the model store as %s", artifact_dir, existing.tag)
        return str(existing.tag)
    labels = {"family": name, "version": str(card.get("version", "unknown")), "sha256": sha256}
    metadata = {
        "version": str(card.get("version", "unknown")),
        "sha256": sha256,
        "card_sha256": str(card.get("sha256", "")),
        "card_file_sha256": card_file_sha256,
        "git_commit": str(card.get("git_commit", "")),
        "source": str(artifact_dir.resolve()),
    }
    with bentoml.models.create(name, labels=labels, metadata=metadata) as model:
        for item in artifact_dir.iterdir():
            target = Path(model.path) / item.name
            if item.is_dir():
                shutil.copytree(item, target)
            else:
                shutil.copy2(item, target)
    log.info("registered %s as %s", artifact_dir, model.tag)
    return str(model.tag)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.register", description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="artifact directories")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for d in args.dirs:
        print(register(d))
    return 0


if __name__ == "__main__":
    sys.exit(main())
