"""Which model directory a service loads: from the BentoML model store, or the checkout.

Registration is the export step's (export/register.py); the hashes that match an artifact
directory to its store entry are core/cards.py's.

    python -m services.model_store transcriber
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from core.cards import artifacts_dir, identity, matching, read_card

log = logging.getLogger("hark.model_store")


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
            try:
                stored = matching(bentoml.models.list(name), identity(shipped, read_card(shipped)))
            except NotFound:
                stored = None
            if stored is not None:
                return Path(stored.path)
            log.warning("%s is not in the BentoML model store; serving it from the checkout "
                        "(run `python -m export.register %s`)", shipped, shipped)
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
    parser = argparse.ArgumentParser(prog="python -m services.model_store",
                                     description="print the directory a service would load")
    parser.add_argument("name")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(resolve(args.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
