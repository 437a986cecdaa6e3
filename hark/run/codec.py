"""`hark encode|decode|reconstruct`: speech to .hark token files, token files to WAV, and both in
one go (what a listener at the far end of a call at that bitrate hears), as /encode, /decode and
/reconstruct do."""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hark.run import common

if TYPE_CHECKING:
    import numpy as np

def _bitrate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bitrate", type=float, default=None, metavar="KBPS",
                        help="1 (the first residual stage of each group) or 2 (all four codebooks); default: "
                             "the model's highest")


def add_arguments_encode(parser: argparse.ArgumentParser) -> None:
    common.describe(parser)
    common.add_io_arguments(parser, "codec", "speech recordings")
    _bitrate(parser)
    parser.add_argument("--format", choices=("hark", "json"), default="hark",
                        help="hark: a .hark token file (default); json: the codes as [frames][groups][stages]")


def add_arguments_decode(parser: argparse.ArgumentParser) -> None:
    common.describe(parser)
    common.add_io_arguments(parser, "codec", ".hark token files made by `hark encode` or /encode")


def add_arguments_reconstruct(parser: argparse.ArgumentParser) -> None:
    common.describe(parser)
    common.add_io_arguments(parser, "codec", "speech recordings")
    _bitrate(parser)


def _model(args: argparse.Namespace) -> Any:
    from core.codec_model import CodecModel

    model = common.load_model(CodecModel, args.model, "codec")
    kbps = getattr(args, "bitrate", None)
    if kbps is not None:
        try:
            model.stages_for(kbps)
        except ValueError as exc:
            raise common.CommandError(common.USAGE, f"--bitrate: {exc}") from None
    return model


def _speech_inputs(args: argparse.Namespace) -> tuple[list[Path], Any, float, Callable[[Path], np.ndarray]]:
    """(input files, the model, the bitrate, a loader that refuses files as the server does)."""
    from core import audio as audio_io

    paths = common.expand_inputs(args.inputs)
    model = _model(args)
    kbps = model.bitrates_kbps[-1] if args.bitrate is None else args.bitrate
    limits = audio_io.Limits.from_env()
    return paths, model, kbps, lambda path: audio_io.load(path, model.sample_rate, limits=limits)


def run_encode(args: argparse.Namespace) -> int:
    from core import codec_tokens

    paths, model, kbps, load = _speech_inputs(args)

    def handle(path: Path) -> list[Path]:
        target = common.output_path(args.out, f"{path.stem}.{args.format}", args.overwrite)
        tokens = model.tokens(load(path), kbps)
        data = codec_tokens.dumps(tokens)
        if args.format == "json":
            facts = {"bitrate_kbps": kbps, "frames": tokens.frames, "samples": tokens.samples,
                     "sample_rate": tokens.sample_rate, "frame_rate": tokens.frame_rate,
                     "groups": int(tokens.codes.shape[1]), "stages": int(tokens.codes.shape[2]),
                     "codebook_size": tokens.codebook_size, "file_bytes": len(data), "source": str(path)}
            return [common.write_bytes(target, json.dumps({**facts, "codes": tokens.codes.tolist()}) + "\n")]
        return [common.write_bytes(target, data)]

    return common.for_each(paths, handle, "encode")


def run_decode(args: argparse.Namespace) -> int:
    from core import codec_tokens, config
    from core.audio import wav_bytes

    paths = common.expand_inputs(args.inputs, suffixes=(".hark",))
    model = _model(args)

    def handle(path: Path) -> list[Path]:
        target = common.output_path(args.out, f"{path.stem}.wav", args.overwrite)
        if path.stat().st_size > codec_tokens.MAX_FILE_BYTES:
            raise common.CommandError(common.REFUSED,
                                      f"a token file may have at most {codec_tokens.MAX_FILE_BYTES} bytes")
        data = path.read_bytes()
        try:
            refusal = codec_tokens.too_long(codec_tokens.read_header(data).duration_s, config.max_audio_seconds())
            if refusal is not None:  # decided by the header, before any code is decoded
                raise common.CommandError(common.REFUSED, refusal)
            tokens = codec_tokens.loads(data)
            model.check_tokens(tokens)
        except ValueError as exc:  # refused, never decoded into noise
            raise common.CommandError(common.REFUSED, f"not a token file this codec can decode: {exc}") from None
        y = model.decode(tokens.codes, samples=tokens.samples, gain_db=tokens.gain_db)
        return [common.write_bytes(target, wav_bytes(y, model.sample_rate))]

    return common.for_each(paths, handle, "decode")


def run_reconstruct(args: argparse.Namespace) -> int:
    from core.audio import wav_bytes

    paths, model, kbps, load = _speech_inputs(args)

    def handle(path: Path) -> list[Path]:
        target = common.output_path(args.out, f"{path.stem}_{kbps:g}kbps.wav", args.overwrite)
        return [common.write_bytes(target, wav_bytes(model.reconstruct(load(path), kbps), model.sample_rate))]

    return common.for_each(paths, handle, "reconstruct")
