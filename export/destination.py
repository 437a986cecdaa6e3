"""Where `hark export FAMILY` writes: a folder of its own unless `--ship` says to replace the
shipped model (artifacts/FAMILY, what `make serve` serves) and register it in the BentoML store.

A user exporting their own model must not overwrite the shipped one or change what a shared
model store serves by accident; the project's own release flow passes --ship.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.cards import artifacts_dir
from training.recipe_files import new_run_dir

EXPORTS = Path("exports")


def add_destination_arguments(parser: argparse.ArgumentParser, family: str, contents: str) -> None:
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help=f"folder for the export ({contents}); default: a new folder "
                             f"{EXPORTS}/{family}/<UTC time>")
    parser.add_argument("--ship", action="store_true",
                        help=f"replace the shipped model ({artifacts_dir() / family}) and register it in the "
                             "BentoML model store: the release step, not for trying a model")
    parser.add_argument("--register", action="store_true",
                        help="also register a non-shipped export in the BentoML model store")
    parser.add_argument("--no-register", action="store_true", help="with --ship: don't register it")


def destination(args: argparse.Namespace, family: str) -> tuple[Path, bool]:
    """(the folder to write, whether to register it); exits with 2, as argparse does for usage
    errors, for --ship with --out."""
    if args.ship and args.out is not None:
        print(f"error: --ship writes {artifacts_dir() / family}; leave out --out (or drop --ship)", file=sys.stderr)
        raise SystemExit(2)
    if args.ship:
        return artifacts_dir() / family, not args.no_register
    return args.out or new_run_dir(EXPORTS / family), bool(args.register)
