"""`hark enroll CLIPS` and `hark extract MIXTURES --enrollment CLIP|JSON`: target speech hearing on
files, as /enroll and /extract do. An enrollment is written as JSON holding the voice's
embedding, which `hark extract` (and the /extract stream's `embedding` field) accepts."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from hark.run import common


def add_arguments_enroll(parser: argparse.ArgumentParser) -> None:
    common.describe(parser)
    common.add_io_arguments(parser, "extractor", "binaural enrollment clips (1-10 s of the target talker "
                                                 "facing the listener, noise allowed)")


def add_arguments_extract(parser: argparse.ArgumentParser) -> None:
    common.describe(parser)
    common.add_io_arguments(parser, "extractor", "binaural mixtures")
    parser.add_argument("--enrollment", type=Path, required=True, metavar="CLIP|JSON",
                        help="whose voice to keep: a binaural enrollment clip, or the .enrollment.json "
                             "that `hark enroll` wrote")


def _enroll(model: Any, path: Path) -> tuple[np.ndarray, float]:
    """(embedding, seconds) of an enrollment clip, refused as /enroll refuses it."""
    from core import audio as audio_io
    from core.extractor_enrollment import check_enrollment, enrollment_limits
    from core.extractor_model import SAMPLE_RATE

    limits = enrollment_limits()
    x = audio_io.load(path, SAMPLE_RATE, limits=limits)
    seconds = check_enrollment(x, SAMPLE_RATE, limits)
    return model.enroll(x), seconds


def run_enroll(args: argparse.Namespace) -> int:
    from core.extractor_model import ExtractorModel

    paths = common.expand_inputs(args.inputs)
    model = common.load_model(ExtractorModel, args.model, "extractor")

    def handle(path: Path) -> list[Path]:
        target = common.output_path(args.out, f"{path.stem}.enrollment.json", args.overwrite)
        embedding, seconds = _enroll(model, path)
        body = {"embedding": [round(float(v), 7) for v in embedding], "seconds": round(seconds, 4),
                "model_version": model.version, "source": str(path)}
        return [common.write_bytes(target, json.dumps(body) + "\n")]

    return common.for_each(paths, handle, "enroll")


def _given_embedding(model: Any, path: Path) -> np.ndarray:
    from core.audio import AudioError

    if not path.is_file():
        raise common.CommandError(common.NO_INPUT, f"--enrollment {path}: no such file")
    if path.suffix.lower() == ".json":
        from core.extractor_enrollment import check_embedding

        try:
            return check_embedding(json.loads(path.read_text()).get("embedding"))
        except (ValueError, AttributeError) as exc:
            raise common.CommandError(common.REFUSED, f"--enrollment {path}: {exc}") from None
    try:
        return _enroll(model, path)[0]
    except AudioError as exc:
        failure = common.refusal(exc)
        raise common.CommandError(failure.code, f"--enrollment {path}: {failure.message}") from None


def run_extract(args: argparse.Namespace) -> int:
    from core import audio as audio_io
    from core.audio import wav_bytes
    from core.extractor_model import SAMPLE_RATE, ExtractorModel

    paths = common.expand_inputs(args.inputs)
    model = common.load_model(ExtractorModel, args.model, "extractor")
    embedding = _given_embedding(model, args.enrollment)
    limits = audio_io.Limits.from_env(binaural=True)

    def handle(path: Path) -> list[Path]:
        target = common.output_path(args.out, f"{path.stem}_extracted.wav", args.overwrite)
        x = audio_io.load(path, SAMPLE_RATE, limits=limits)
        return [common.write_bytes(target, wav_bytes(model.extract(x, embedding).T, SAMPLE_RATE))]

    return common.for_each(paths, handle, "extract")
