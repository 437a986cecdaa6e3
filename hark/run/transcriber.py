"""`hark transcribe FILES --out DIR`: notes as MIDI, JSON (as /transcribe answers) and/or CSV."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hark.run import common

FORMATS = ("midi", "json", "csv")
SUFFIX = {"midi": ".mid", "json": ".json", "csv": ".csv"}


def add_arguments_transcribe(parser: argparse.ArgumentParser) -> None:
    common.describe(parser)
    common.add_io_arguments(parser, "transcriber", "recordings of music")
    parser.add_argument("--format", nargs="+", choices=FORMATS, default=["midi"],
                        help="what to write per file: midi (.mid, pitch bends as MIDI bends), json (the notes "
                             "and facts as /transcribe returns them), csv (onset_s,offset_s,midi_pitch); "
                             "default: midi")
    parser.add_argument("--onset-threshold", type=float, help="note-start probability in (0, 1) (default: card)")
    parser.add_argument("--frame-threshold", type=float, help="note probability in (0, 1) (default: card)")
    parser.add_argument("--min-note-ms", type=float, help="shortest note kept, 0-2000 ms (default: card)")
    parser.add_argument("--min-freq-hz", type=float, help="ignore notes below this frequency, 20-8000 Hz")
    parser.add_argument("--max-freq-hz", type=float, help="ignore notes above this frequency, 20-8000 Hz")
    parser.add_argument("--no-pitch-bends", action="store_true", help="leave out per-frame pitch bends")


def run_transcribe(args: argparse.Namespace) -> int:
    from core import audio as audio_io
    from core.midi import notes_to_midi
    from core.notes import note_to_dict, notes_to_csv
    from core.transcriber_model import TranscriberModel
    from core.transcriber_params import request_params

    paths = common.expand_inputs(args.inputs)
    model = common.load_model(TranscriberModel, args.model, "transcriber")
    given = {"onset_threshold": args.onset_threshold, "frame_threshold": args.frame_threshold,
             "min_note_ms": args.min_note_ms, "min_freq_hz": args.min_freq_hz, "max_freq_hz": args.max_freq_hz,
             "include_pitch_bends": not args.no_pitch_bends}
    try:
        params, decode_kwargs = request_params(model, given)
    except ValueError as exc:
        raise common.CommandError(common.USAGE, f"invalid parameters: {exc}") from None
    limits = audio_io.Limits.from_env()

    def handle(path: Path) -> list[Path]:
        targets = {f: common.output_path(args.out, path.stem + SUFFIX[f], args.overwrite) for f in args.format}
        decoded = audio_io.decode(path, model.sample_rate, limits=limits)
        t0 = time.perf_counter()
        notes = model.decode(model.posteriorgrams(decoded.samples), **decode_kwargs)
        elapsed = time.perf_counter() - t0
        contents = {
            "midi": lambda: notes_to_midi(notes, frame_rate=model.frame_rate),
            "csv": lambda: notes_to_csv(notes),
            "json": lambda: json.dumps({
                "notes": [note_to_dict(n) for n in notes],
                "meta": {"model": {k: v for k, v in model.info().items() if k != "sample_rate"},
                         "audio": {"format": decoded.source_format, "sample_rate": decoded.source_rate,
                                   "channels": decoded.source_channels, "duration_s": round(decoded.duration_s, 4)},
                         "params": params.model_dump(), "frame_rate": model.frame_rate,
                         "inference_s": round(elapsed, 4), "n_notes": len(notes), "source": str(path)},
            }, indent=1) + "\n",
        }
        return [common.write_bytes(target, contents[f]()) for f, target in targets.items()]

    return common.for_each(paths, handle, "transcribe")
