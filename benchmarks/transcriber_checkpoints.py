"""Score training checkpoints on validation sets, to choose which one to export.

Each checkpoint's torch model runs with an exported model's decoder settings (its card), through
the service's windowing and note decoding, on sets never trained on (for the piano stage: the
generated `piano-validation` clips and the real pianos, which choose models but never train them):

    python -m benchmarks.transcriber_checkpoints --card artifacts/transcriber \\
        --checkpoints runs/transcriber-piano2/step-*.pt \\
        --data ../shared/data/real/music data/music/piano-validation ../shared/data/real/music \\
        --names real-piano piano-validation real --select 'piano_*' '*' '!piano_*'

Prints one JSON line per checkpoint and set (note F1, with offsets, frame F1, repeated recall).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks.sets import read_set
from benchmarks.transcriber import HarkTorchSystem
from core.scoring import ClipScore, score_clip


def score(card_dir: Path, checkpoint: Path, sets: list) -> dict[str, dict[str, float]]:
    """{set name: pooled metrics} of `checkpoint`'s weights decoded with `card_dir`'s settings."""
    system = HarkTorchSystem(card_dir, threads=1, checkpoint=checkpoint)
    out = {}
    for eval_set in sets:
        pooled = ClipScore()
        for clip in eval_set.clips:
            pooled = pooled + score_clip([a.notes for a in clip.annotations], system.transcribe(clip.audio))
        out[eval_set.name] = {k: round(v, 4) for k, v in pooled.metrics().items()}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.transcriber_checkpoints", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--card", type=Path, required=True, help="an exported model folder whose decoder settings to use")
    parser.add_argument("--checkpoints", type=Path, nargs="+", required=True)
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="set folders (audio/ and notes/)")
    parser.add_argument("--names", nargs="+", required=True, help="one name per --data")
    parser.add_argument("--select", nargs="+", help="one clip filter per --data (see hark eval transcriber --select)")
    args = parser.parse_args(argv)
    selects = args.select or ["*"] * len(args.data)
    if not len(args.data) == len(args.names) == len(selects):
        parser.error("--data, --names and --select need one entry each per set")
    sets = [read_set(d, n, select=s) for d, n, s in zip(args.data, args.names, selects)]
    for checkpoint in args.checkpoints:
        for name, metrics in score(args.card, checkpoint, sets).items():
            print(json.dumps({"checkpoint": str(checkpoint), "set": name, **metrics}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
