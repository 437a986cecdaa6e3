"""`hark data transcriber`: render a training or held-out set of music (training.data.music),
or the piano pieces with soft repeated chords under the pedal (training.data.piano_pedal)."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from training.data import music, piano_pedal


def add_arguments_data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="set directory to create or extend")
    parser.add_argument("--split", choices=["train", "heldout", "piano"], default="train",
                        help="train: training pieces, soundfonts and programs; heldout: only the held-out ones; "
                             "piano: generated piano pieces with soft repeated chords under the sustain pedal, on "
                             "the training soundfonts (training/data/piano_pedal.py)")
    parser.add_argument("--minutes", type=float, default=240, help="approximate amount of audio to render")
    parser.add_argument("--seed", type=int, default=0, help="set seed; each clip depends only on (seed, index)")
    parser.add_argument("--clip-seconds", type=float, default=30.0, help="length of each rendered clip")
    parser.add_argument("--workers", type=int, default=2, help="rendering processes")
    parser.add_argument("--soundfont", action="append", help="override the split's soundfonts (repeatable)")
    parser.add_argument("--examples", action="store_true",
                        help="instead of a set, render the demo's two example clips into --out")


def run_data(args: argparse.Namespace) -> int:
    if args.examples:
        for path in music.render_examples(args.out):
            print(f"wrote {path}")
        return 0
    if args.split == "piano":
        # Dry renders: the recipe's augmentation adds the room, as it does to every other set.
        made = piano_pedal.build_set(args.out, int(np.ceil(args.minutes * 60 / args.clip_seconds)), args.seed,
                                     args.clip_seconds, args.soundfont or music.TRAIN_SOUNDFONTS,
                                     piano_pedal.TRAIN_PROGRAMS, room=False, prefix="piano")
        print(f"wrote {len(made)} clips into {args.out}")
        return 0
    out = music.build_set(args.out, args.split, args.minutes, args.seed, args.clip_seconds, args.workers, args.soundfont)
    print(f"wrote {out}")
    return 0
