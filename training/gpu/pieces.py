"""Carry a training checkpoint through the device tool, which brings back files of at most 16 MiB.

On the GPU machine: `python -m training.gpu.pieces split runs/codec/last.pt $OUT/codec` writes the
slim checkpoint (float16 weights, no optimizer moments: `training.loop.slim_checkpoint`) as
`codec.meta.pt` plus `codec.<part>.<i>.pt` pieces of at most 12 MB each. Here:
`python -m training.gpu.pieces join DIR/codec checkpoints/codec.pt` puts them back together.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from training.loop import slim_checkpoint

PIECE_BYTES = 12_000_000
WEIGHTS = ("model", "critic")


def split(src: Path, prefix: Path) -> list[Path]:
    """The slim form of checkpoint `src` as files `prefix.meta.pt` and `prefix.<weights>.<i>.pt`."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    slim = prefix.with_name(prefix.name + ".slim.tmp")
    slim_checkpoint(src, slim)
    state = torch.load(slim, map_location="cpu", weights_only=False)
    slim.unlink()
    written = []
    for key in WEIGHTS:
        pieces: list[dict] = [{}]
        size = 0
        for name, tensor in (state.pop(key, None) or {}).items():
            n = tensor.numel() * tensor.element_size()
            if size + n > PIECE_BYTES and pieces[-1]:
                pieces.append({})
                size = 0
            pieces[-1][name] = tensor
            size += n
        for i, piece in enumerate(p for p in pieces if p):
            path = prefix.with_name(f"{prefix.name}.{key}.{i}.pt")
            torch.save(piece, path)
            written.append(path)
    meta = prefix.with_name(prefix.name + ".meta.pt")
    torch.save(state, meta)
    return [meta, *written]


def join(prefix: Path, dst: Path) -> dict:
    """The checkpoint that `split` cut into pieces under `prefix`, saved to `dst`."""
    state = torch.load(prefix.with_name(prefix.name + ".meta.pt"), map_location="cpu", weights_only=False)
    for key in WEIGHTS:
        pieces = sorted(prefix.parent.glob(f"{prefix.name}.{key}.*.pt"), key=lambda p: int(p.stem.rsplit(".", 1)[1]))
        if pieces:
            state[key] = {}
            for piece in pieces:
                state[key].update(torch.load(piece, map_location="cpu", weights_only=False))
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, dst)
    return state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("split", help="checkpoint -> PREFIX.meta.pt + PREFIX.<weights>.<i>.pt")
    s.add_argument("checkpoint", type=Path)
    s.add_argument("prefix", type=Path)
    j = sub.add_parser("join", help="PREFIX pieces -> checkpoint")
    j.add_argument("prefix", type=Path)
    j.add_argument("checkpoint", type=Path)
    args = parser.parse_args(argv)
    if args.command == "split":
        for path in split(args.checkpoint, args.prefix):
            print(f"{path} {path.stat().st_size} bytes")
    else:
        state = join(args.prefix, args.checkpoint)
        print(f"{args.checkpoint}: step {state.get('step')}, {len(state.get('model', {}))} model tensors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
