"""Shipped models in the BentoML model store, without torch.

`register` copies an artifact directory (ONNX + card.json + whatever else it holds) into the
store under the card's name, once per (ONNX, card.json) pair of hashes: a re-export that only
changes the card (decoder settings, say) is a new entry too. `resolve` finds the directory a service
loads. Both the export step and `hark serve` call `register`, so `bentoml models list` shows
every model that was served.

    python -m services.model_store register artifacts/transcriber
    python -m services.model_store resolve transcriber
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("hark.model_store")

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
    return json.loads(card_path.read_text())


def _model_file(artifact_dir: Path, card: dict[str, Any]) -> Path:
    name = card.get("files", {}).get("model") or f"{card['name']}.onnx"
    path = Path(artifact_dir) / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is named by the card but does not exist")
    return path


def _identity(artifact_dir: Path, card: dict[str, Any]) -> tuple[str, str]:
    """(ONNX sha256, card.json sha256): the hashes of the files themselves, not the card's claim,
    so that neither a stale card nor a stale store entry can hide a new export."""
    return file_sha256(_model_file(artifact_dir, card)), file_sha256(Path(artifact_dir) / "card.json")


def _stored_with(name: str, identity: tuple[str, str]) -> Any | None:
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        stored = bentoml.models.list(name)
    except NotFound:
        return None
    for model in stored:
        if (model.info.metadata.get("sha256"), model.info.metadata.get("card_file_sha256")) == identity:
            return model
    return None


def register(artifact_dir: Path | str) -> str:
    """Put `artifact_dir` in the BentoML store (skipped if that ONNX and card are there); returns the tag."""
    import bentoml

    artifact_dir = Path(artifact_dir)
    card = read_card(artifact_dir)
    name = card["name"]
    sha256, card_file_sha256 = identity = _identity(artifact_dir, card)
    existing = _stored_with(name, identity)
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


def artifacts_dir() -> Path:
    path = Path(os.environ.get("HARK_ARTIFACTS_DIR", "artifacts"))
    return path if path.is_absolute() else REPO_ROOT / path


def resolve(name: str) -> Path:
    """The model directory a service loads for family `name`.

    Order: HARK_<NAME>_MODEL (a directory, or a store tag like transcriber:abc123); then, when
    `artifacts/<name>/` exists, the store entry holding that same ONNX and card (else the directory itself,
    unregistered); then the newest `name` in the store (images that ship only the store).
    The shipped artifact wins over a newer store entry so that serving follows the checkout.
    """
    override = os.environ.get(f"HARK_{name.upper()}_MODEL")
    if override:
        if Path(override).is_dir():
            return Path(override)
        import bentoml

        return Path(bentoml.models.get(override).path)
    shipped = artifacts_dir() / name
    try:
        import bentoml
        from bentoml.exceptions import NotFound
    except ImportError:  # numpy-only use (benchmarks without the serve extra)
        bentoml = None
    if (shipped / "card.json").is_file():
        if bentoml is not None:
            stored = _stored_with(name, _identity(shipped, read_card(shipped)))
            if stored is not None:
                return Path(stored.path)
            log.warning("%s is not in the BentoML model store; serving it from the checkout "
                        "(run `python -m services.model_store register %s`)", shipped, shipped)
        return shipped
    if bentoml is not None:
        try:
            return Path(bentoml.models.get(f"{name}:latest").path)
        except NotFound:
            pass
    raise FileNotFoundError(
        f"no '{name}' model: no {shipped}/card.json and none in the BentoML store; "
        f"run `hark export {name}` or set HARK_{name.upper()}_MODEL"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.model_store", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    reg = sub.add_parser("register", help="put artifact directories in the BentoML store")
    reg.add_argument("dirs", nargs="+", type=Path)
    res = sub.add_parser("resolve", help="print the directory a service would load")
    res.add_argument("name")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "register":
        for d in args.dirs:
            print(register(d))
    else:
        print(resolve(args.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
