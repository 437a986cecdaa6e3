"""The `hark` console script: `hark COMMAND FAMILY [args]`.

Dispatch follows docs/CONTRACT.md: for each family and command a module exposes
`add_arguments_<command>(parser)` and `run_<command>(args) -> int`. Modules are imported only
when their command and family are on the command line, so `hark --help` is fast and
`hark serve` works in a serve-only install (no torch).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Sequence

from hark import REPO_ROOT, __version__
from hark.run.common import CommandError


@dataclass(frozen=True)
class Family:
    """Where each layer of one family lives; None where a command does not apply."""

    about: str
    data: str | None = None
    train: str | None = None
    export: str | None = None
    eval: str | None = None
    bench: str | None = None
    predict: str | None = None
    serve: str | None = None  # BentoML import path "module:Class"

    def target(self, command: str) -> str | None:
        return getattr(self, command)


# One line per family: adding a family to the CLI is adding its line here.
FAMILIES: dict[str, Family] = {
    "transcriber": Family("polyphonic note transcription: audio in, notes and MIDI out", data="training.data.transcriber_sets", train="training.transcriber", export="export.transcriber", eval="benchmarks.transcriber", bench="benchmarks.transcriber", serve="services.transcriber:Transcriber"),  # noqa: E501
    "extractor": Family("target speech hearing: binaural mixture + noisy enrollment -> only the enrolled voice, streaming in 8 ms chunks", data="training.data.scenes", train="training.extractor", export="export.extractor", eval="benchmarks.extractor", bench="benchmarks.extractor", serve="services.extractor:Extractor"),  # noqa: E501
    "codec": Family("neural speech codec: 16 kHz speech to GRVQ tokens at 1 or 2 kbps and back", data="training.data.speech", train="training.codec", export="export.codec", eval="benchmarks.codec", bench="benchmarks.codec", serve="services.codec:Codec"),  # noqa: E501
    "classifier": Family("speech- and text-based classification, voice and text models fused (research use only)", data="training.data.cohort", train="training.classifier", export="export.classifier", eval="benchmarks.classifier", bench="benchmarks.classifier", predict="benchmarks.classifier_predict", serve="services.classifier:Classifier"),  # noqa: E501
}

# Every family's service behind one port (`hark serve all`, `make serve`).
ALL_SERVICE = "services.hark:Hark"

COMMANDS: dict[str, str] = {
    "data": "generate or prepare a data set",
    "train": "train a model",
    "export": "export a checkpoint to ONNX with its model card",
    "eval": "evaluate quality on labelled data, beside the anchors",
    "bench": "measure speed and load",
    "predict": "score a trained model on new, labelled or unlabelled data",
    "serve": "register the shipped models and serve them over HTTP",
}

# Commands that run one model on the user's files, without a server: `hark COMMAND INPUT... --out DIR`.
# command -> (module with add_arguments_<command>/run_<command>, what it does)
RUN_COMMANDS: dict[str, tuple[str, str]] = {
    "transcribe": ("hark.run.transcriber", "music files -> notes (MIDI, JSON, CSV)"),
    "encode": ("hark.run.codec", "speech files -> .hark codec tokens"),
    "decode": ("hark.run.codec", ".hark token files -> speech (WAV)"),
    "reconstruct": ("hark.run.codec", "speech files -> speech through the codec at a bitrate (WAV)"),
    "enroll": ("hark.run.extractor", "binaural clips of a talker -> their voice (enrollment JSON)"),
    "extract": ("hark.run.extractor", "binaural mixtures -> only the enrolled voice (WAV)"),
    "classify": ("hark.run.classifier", "recordings (+ transcripts) -> class probabilities (JSON, CSV)"),
}

# The pip extra that brings the third-party packages each command needs.
EXTRAS: dict[str, str] = {
    "data": "train",
    "train": "train",
    "export": "train",
    "eval": "train",
    "bench": "train",
    "predict": "serve",
    "serve": "serve",
}

# Top-level packages of this project: a missing one means an unfinished checkout,
# not a missing optional dependency.
OWN_PACKAGES = {"hark", "services", "models", "training", "export", "benchmarks"}

DEFAULT_ARTIFACTS = REPO_ROOT / "artifacts"


class Unavailable(Exception):
    """A command that cannot run here; its message says why and what to do."""

    exit_code = 1


class UsageError(Unavailable):
    exit_code = 2  # as argparse exits on its own usage errors


def load_module(command: str, family: str) -> ModuleType:
    """Import the module behind `hark COMMAND FAMILY` and check it has both entry points."""
    name = FAMILIES[family].target(command)
    if name is None:
        raise Unavailable(f"'hark {command}' has no '{family}' family")
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or "?"
        if missing.split(".")[0] in OWN_PACKAGES:
            raise Unavailable(
                f"'hark {command} {family}' is not available in this checkout: "
                f"module {missing} is missing"
            ) from exc
        extra = EXTRAS[command]
        raise Unavailable(
            f"'hark {command}' needs the {extra} extra: pip install 'hark[{extra}]' "
            f"(missing module: {missing})"
        ) from exc
    for attr in (f"add_arguments_{command}", f"run_{command}"):
        if not callable(getattr(module, attr, None)):
            raise Unavailable(f"module {name} does not provide {attr}() for 'hark {command} {family}'")
    return module


def _import_run_module(command: str) -> ModuleType:
    try:
        return importlib.import_module(RUN_COMMANDS[command][0])
    except ModuleNotFoundError as exc:
        missing = exc.name or "?"
        if missing.split(".")[0] in OWN_PACKAGES:
            raise
        raise Unavailable(f"'hark {command}' needs the serve extra: pip install 'hark[serve]' "
                          f"(missing module: {missing})") from exc


def _families_epilog(command: str | None = None) -> str:
    """The families (of one command, or all of them) with what each does, for --help."""
    lines = ["families:"]
    for family, spec in FAMILIES.items():
        if command is None or spec.target(command) is not None:
            lines.append(f"  {family:<12} {spec.about}")
    return "\n".join(lines)


def _add_serve_parser(commands: argparse._SubParsersAction) -> None:
    families = [f for f, spec in FAMILIES.items() if spec.serve]
    parser = commands.add_parser(
        "serve",
        help=COMMANDS["serve"],
        description=(
            "Register the shipped models (artifacts/FAMILY: ONNX + card.json) in the BentoML "
            "model store, then run `bentoml serve` for one family or for all of them on one port. "
            "Swagger UI at /, demo at /ui, Prometheus metrics at /metrics, health at /readyz."
        ),
        epilog=_families_epilog("serve") + "\n  all          every family above behind one port",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "target", nargs="?", default="all", choices=["all", *families], metavar="FAMILY|all",
        help="what to serve (default: all)",
    )
    # Same variables as core/config.py, so `hark serve` and `bentoml serve` agree.
    host = os.environ.get("HARK_HOST", "127.0.0.1")
    port = os.environ.get("HARK_PORT", "3000")
    parser.add_argument("--host", default=host, help=f"address to bind (default: $HARK_HOST or {host})")
    parser.add_argument(
        "--port", type=int, default=int(port) if port.isdigit() else 3000,
        help=f"port to listen on (default: $HARK_PORT or {port})",
    )
    parser.add_argument(
        "--workers", type=int, default=None, metavar="N",
        help="worker processes per service; sets HARK_WORKERS (default: $HARK_WORKERS or 1)",
    )
    parser.add_argument(
        "--artifacts", type=Path, default=DEFAULT_ARTIFACTS, metavar="DIR",
        help=f"directory holding one sub-directory per family (default: {DEFAULT_ARTIFACTS})",
    )
    parser.add_argument(
        "--no-register", action="store_true",
        help="serve what is already in the model store; skip registering artifacts",
    )
    parser.add_argument(
        "--register-only", action="store_true",
        help="register the artifacts in the model store and exit (e.g. before `bentoml build`)",
    )
    parser.add_argument(
        "--dry-run", action="store_true",
        help="print what would be registered and the bentoml command, then exit",
    )


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """Build the parser; only the family module named in argv (if any) is imported."""
    parser = argparse.ArgumentParser(
        prog="hark",
        description="Train small audio models, export them to ONNX and serve them with BentoML.",
        epilog=(
            "Run `hark COMMAND --help` for the families of a command and "
            "`hark COMMAND FAMILY --help` for its arguments; the commands that run a model on "
            "files (transcribe, encode, decode, reconstruct, enroll, extract, classify) take "
            "no family: `hark transcribe --help`.\n\n"
            + _families_epilog()
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hark {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = tuple(argv[:2])
    for command, (module_name, about) in RUN_COMMANDS.items():
        run_parser = commands.add_parser(
            command, help=about,
            description=f"hark {command}: {about}, with the shipped model or --model DIR, no server needed. "
                        f"Implemented by {module_name}.",
        )
        if argv[:1] == [command]:
            getattr(_import_run_module(command), f"add_arguments_{command}")(run_parser)
    for command, about in COMMANDS.items():
        if command == "serve":
            _add_serve_parser(commands)
            continue
        command_parser = commands.add_parser(
            command,
            help=about,
            description=f"hark {command} FAMILY: {about}. "
            f"Run `hark {command} FAMILY --help` for the arguments of one family.",
        )
        families = command_parser.add_subparsers(dest="family", metavar="FAMILY", required=True)
        for family, spec in FAMILIES.items():
            module_name = spec.target(command)
            if module_name is None:
                continue
            family_parser = families.add_parser(
                family,
                help=spec.about,
                description=f"hark {command} {family}: {about} ({spec.about}). Implemented by {module_name}.",
            )
            if wanted == (command, family):
                getattr(load_module(command, family), f"add_arguments_{command}")(family_parser)
    return parser


def _check_family(argv: Sequence[str]) -> None:
    """Say plainly when a family is unknown, rather than argparse's terse 'invalid choice'."""
    if len(argv) < 2 or argv[0] not in COMMANDS or argv[1].startswith("-"):
        return
    command, family = argv[0], argv[1]
    known = [f for f, spec in FAMILIES.items() if spec.target(command)]
    if command == "serve":
        known.append("all")
    if family not in known:
        raise UsageError(
            f"unknown family '{family}' for 'hark {command}'; known: {', '.join(known)}"
        )


def run_serve(args: argparse.Namespace) -> int:
    """Register the shipped models, then replace this process with `bentoml serve`."""
    if args.target == "all":
        target = ALL_SERVICE
        families = [f for f, spec in FAMILIES.items() if spec.serve]
    else:
        target = FAMILIES[args.target].serve or ""
        families = [args.target]
    artifacts: Path = args.artifacts
    to_register = [artifacts / f for f in families if (artifacts / f / "card.json").is_file()]
    if not args.no_register and not to_register:
        raise Unavailable(
            f"no shipped models (FAMILY/card.json) under {artifacts}/ for {', '.join(families)}; "
            "run `hark export FAMILY` first or pass --artifacts DIR"
        )

    command = [sys.executable, "-m", "bentoml", "serve", target,
               "--host", args.host, "--port", str(args.port)]
    if (REPO_ROOT / "services").is_dir():
        command += ["--working-dir", str(REPO_ROOT)]
    env = dict(os.environ)
    # The services look up the same shipped models that were just registered.
    env["HARK_ARTIFACTS_DIR"] = str(artifacts.resolve())
    if args.workers is not None:
        if args.workers < 1:
            raise UsageError("--workers must be at least 1")
        # `bentoml serve` has no workers flag in 1.4: the services read HARK_WORKERS for their
        # @bentoml.service config and to share the CPU cores between worker sessions.
        env["HARK_WORKERS"] = str(args.workers)

    if args.dry_run:
        for path in [] if args.no_register else to_register:
            print(f"register {path}")
        if args.register_only:
            return 0
        if args.workers is not None:
            print(f"HARK_WORKERS={env['HARK_WORKERS']}")
        print(" ".join(command))
        return 0

    if importlib.util.find_spec("bentoml") is None:
        raise Unavailable("'hark serve' needs the serve extra: pip install 'hark[serve]' (missing module: bentoml)")
    if not args.no_register:
        try:
            from export.register import register
        except ModuleNotFoundError as exc:
            raise Unavailable(f"'hark serve' cannot register models: module {exc.name} is missing") from exc
        for path in to_register:
            tag = register(path)
            print(f"hark: {path} is {tag} in the BentoML model store", file=sys.stderr)
    if args.register_only:
        return 0
    sys.stdout.flush()
    sys.stderr.flush()
    # exec, so Ctrl-C and container signals reach the BentoML server directly.
    os.execve(sys.executable, command, env)
    return 0  # not reached


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        _check_family(argv)
        args = build_parser(argv).parse_args(argv)
        if args.command == "serve":
            return run_serve(args)
        if args.command in RUN_COMMANDS:
            return int(getattr(_import_run_module(args.command), f"run_{args.command}")(args) or 0)
        module = load_module(args.command, args.family)
        return int(getattr(module, f"run_{args.command}")(args) or 0)
    except Unavailable as exc:
        print(f"hark: {exc}", file=sys.stderr)
        return exc.exit_code
    except CommandError as exc:
        print(f"hark: {exc.message}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
