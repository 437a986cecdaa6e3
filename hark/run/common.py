"""What every `hark transcribe|encode|decode|reconstruct|enroll|extract|classify` shares: finding
the input files, loading the model, the per-file loop with its progress bar, writing outputs,
and one exit code per kind of failure.

The commands run the services' own model classes and audio validation (services/*_model.py,
core/audio.py): a file refused here is refused by the server with the same words.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

OK = 0
FAILED = 1  # an unexpected error in one file (a bug: please report it)
USAGE = 2  # bad arguments (argparse uses 2 as well)
NO_INPUT = 3  # no input file matched
MODEL = 4  # the model directory is missing or unreadable
REFUSED = 5  # an input was refused: undecodable, empty, NaN, wrong channels or rate, too long or large
NO_VOICE = 6  # an input holds no voice (silence, a tone, noise, under 0.5 s of speech): classify, enroll
WRITE = 7  # an output could not be written (it exists without --overwrite, or the disk refused)

EXIT_CODES_HELP = f"""exit codes (when files fail for different reasons, the highest code):
  {OK}  every file done
  {FAILED}  an unexpected error (a bug; the message says in which file)
  {USAGE}  bad arguments
  {NO_INPUT}  no input file matched
  {MODEL}  the model could not be loaded (--model DIR: card.json and its ONNX files)
  {REFUSED}  an input was refused: not audio, empty, NaN/Inf, wrong channels or sample rate,
     over HARK_MAX_AUDIO_SECONDS or HARK_MAX_UPLOAD_MB (the server's limits)
  {NO_VOICE}  an input has no voice in it: silence, a tone, noise, under 0.5 s of speech
  {WRITE}  an output could not be written (it exists: pass --overwrite)"""

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".oga", ".mp3", ".aif", ".aiff", ".aifc", ".au", ".snd",
                  ".caf", ".w64", ".rf64")

T = TypeVar("T")


class CommandError(Exception):
    """A failure of one file or of the whole command, with its exit code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def add_io_arguments(parser: argparse.ArgumentParser, family: str, inputs_help: str) -> None:
    """INPUTS, --out, --model and --overwrite, as every run command takes them."""
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help=f"{inputs_help}: files, glob patterns (quote them) or folders (searched recursively)")
    parser.add_argument("--out", type=Path, default=Path("."), metavar="DIR",
                        help="folder for the outputs, created if needed (default: the current folder)")
    parser.add_argument("--model", type=Path, default=None, metavar="DIR",
                        help=f"the {family} model to run: a directory with card.json and its ONNX files, "
                             f"e.g. from `hark export {family}` (default: $HARK_{family.upper()}_MODEL, else the shipped artifacts/{family})")
    parser.add_argument("--overwrite", action="store_true", help="replace outputs that already exist")


def expand_inputs(patterns: Sequence[str], suffixes: Iterable[str] = AUDIO_SUFFIXES) -> list[Path]:
    """Files named, matched by a glob, or found (by suffix) under a folder; in order, once each."""
    wanted = tuple(s.lower() for s in suffixes)
    found: list[Path] = []
    for pattern in patterns:
        path = Path(pattern).expanduser()
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in wanted)
        elif path.is_file():
            found.append(path)  # named explicitly: taken whatever its suffix
        else:
            found += sorted(Path(p) for p in glob.glob(os.path.expanduser(pattern), recursive=True)
                            if Path(p).is_file())
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise CommandError(NO_INPUT, f"no input files matched {' '.join(patterns)} "
                                     f"(folders are searched for {', '.join(wanted)})")
    return unique


def model_dir(given: Path | None, family: str) -> Path:
    """--model, else $HARK_<FAMILY>_MODEL (a directory), else the shipped artifacts/<family>."""
    from core.cards import artifacts_dir

    env = os.environ.get(f"HARK_{family.upper()}_MODEL")
    path = given or (Path(env) if env and Path(env).is_dir() else artifacts_dir() / family)
    if not (path / "card.json").is_file():
        raise CommandError(MODEL, f"{path} is not a {family} model directory (no card.json); pass --model DIR "
                                  f"with the output of `hark export {family}`")
    return path


def load_model(factory: Callable[[Path], T], given: Path | None, family: str) -> T:
    """The model built by `factory` from its directory; CommandError(MODEL) saying why not."""
    path = model_dir(given, family)
    try:
        return factory(path)
    except Exception as exc:  # a missing ONNX file, a card from another version, a corrupt graph
        raise CommandError(MODEL, f"cannot load the {family} model in {path}: {exc}") from None


def output_path(out: Path, name: str, overwrite: bool) -> Path:
    path = out / name
    if path.exists() and not overwrite:
        raise CommandError(WRITE, f"{path} exists; pass --overwrite to replace it")
    return path


def write_bytes(path: Path, data: bytes | str) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            path.write_text(data, encoding="utf-8")
        else:
            path.write_bytes(data)
    except OSError as exc:
        raise CommandError(WRITE, f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def refusal(exc: Exception) -> CommandError:
    """An AudioError (or a model's ValueError about its input) as the matching CommandError."""
    reason = getattr(exc, "reason", None)
    message = getattr(exc, "message", None) or str(exc)
    return CommandError(NO_VOICE if reason == "no_voice" else REFUSED, message)


def for_each(paths: Sequence[Path], handle: Callable[[Path], Sequence[Path]], what: str) -> int:
    """Run `handle` on every file (a progress bar when there are several), report what it wrote or
    why it failed, and return the exit code: OK, or the highest code of the failures."""
    from tqdm import tqdm

    from core.audio import AudioError

    code = OK
    failures = 0
    bar = tqdm(paths, desc=what, unit="file", disable=len(paths) < 2, file=sys.stderr)
    for path in bar:
        try:
            for written in handle(path):
                tqdm.write(str(written), file=sys.stdout)
        except CommandError as exc:
            failures += 1
            code = max(code, exc.code)
            tqdm.write(f"hark: {path}: {exc.message}", file=sys.stderr)
        except AudioError as exc:
            failures += 1
            failure = refusal(exc)
            code = max(code, failure.code)
            tqdm.write(f"hark: {path}: {failure.message}", file=sys.stderr)
        except Exception as exc:  # one bad file must not stop a batch of hundreds
            failures += 1
            code = max(code, FAILED)
            tqdm.write(f"hark: {path}: unexpected error {type(exc).__name__}: {exc}", file=sys.stderr)
    if failures and len(paths) > 1:
        print(f"hark: {failures} of {len(paths)} files failed", file=sys.stderr)
    return code


def describe(parser: argparse.ArgumentParser) -> None:
    """The exit codes under every run command's --help."""
    parser.epilog = EXIT_CODES_HELP
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
