"""Compact copies of training data for a lent GPU machine, which reaches nothing outside and
receives at most 64 MiB with the repository (training/gpu/pack.sh calls these).

`python -m training.gpu.pack_data speech SRC OUT [--per-speaker N]`: the training speakers' audio as
Ogg Opus (32 kbps, mono, 16 kHz); LibriSpeech's one excerpt per speaker whole, the first N of a
speaker's files where a corpus has many (speechocean762). The 20 held-out speakers stay behind.

`python -m training.gpu.pack_data extractor DATA OUT [--rooms N] [--noise-dir DIR]`: what
`hark train extractor` reads besides speech, from the folder of `hark data extractor`: the first N
rooms of the training room bank (the full 800-room bank is ~130 MB), the teacher d-vectors as one
row per speaker (the table has one per file: ~20 per speechocean762 speaker), and the training
noise recordings as Opus. HRTFs are not needed: the room bank holds the rendered BRIRs.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

from training.data.rooms import RoomBank
from training.data.scenes import noise_files, speaker_dvectors
from training.data.speech import speaker_of, split_files


def to_opus(src: Path, dst: Path) -> None:
    """`src` as Ogg Opus at 32 kbps, mono 16 kHz (an .opus file is copied as it is)."""
    if dst.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.suffix.lower() == ".opus":
        dst.write_bytes(src.read_bytes())
        return
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-ac", "1", "-ar", "16000",
                    "-c:a", "libopus", "-b:a", "32k", str(dst)], check=True)


def pack_speech(sources: list[Path], out: Path, per_speaker: int) -> dict[str, int]:
    """Training speakers' files as Opus under `out/<folder>/`, at most `per_speaker` files of a
    speaker with several; returns files packed per speaker. Folder names are kept: they carry
    speechocean762's speaker ids (training.data.speech.speaker_of)."""
    by_speaker: dict[str, list[Path]] = {}
    for f in split_files(sources, "train"):
        by_speaker.setdefault(speaker_of(f), []).append(f)
    packed = {}
    for speaker, files in sorted(by_speaker.items()):
        keep = files[:max(per_speaker, 1)]
        for f in keep:
            to_opus(f, out / f.parent.name / (f.stem + ".opus"))
        packed[speaker] = len(keep)
    return packed


def subset_bank(bank: RoomBank, rooms: int) -> RoomBank:
    """The first `rooms` rooms of `bank` (rooms are drawn independently, and heads alternate
    room by room, so the first N are a fair sample of all)."""
    keep = np.flatnonzero(bank.room < rooms)
    pieces = [bank.flat[bank.offsets[k]:bank.offsets[k + 1]] for k in keep]
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in pieces])]).astype(bank.offsets.dtype)
    return RoomBank(np.concatenate(pieces), offsets, bank.room[keep], bank.azimuth[keep], bank.enrollment[keep],
                    bank.rt60[:rooms], bank.head)


def speaker_table(table: dict[str, np.ndarray], speakers: set[str] | None = None) -> dict[str, np.ndarray]:
    """A d-vector table of one row per file -> one row per speaker (the mean `Voices.load` takes),
    only of `speakers` when given."""
    rows: dict[str, list[int]] = {}
    for i, s in enumerate(table["speakers"].tolist()):
        if speakers is None or s in speakers:
            rows.setdefault(s, []).append(i)
    names = sorted(rows)
    return {"speakers": np.array(names),
            "dvectors": np.stack([speaker_dvectors(table["dvectors"][rows[s]]) for s in names]).astype(np.float32)}


def pack_extractor(data: Path, out: Path, rooms: int, noise_dir: Path | None, speakers: set[str] | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    bank = RoomBank.load(data / "rooms_train.npz")
    small = subset_bank(bank, min(rooms, bank.rooms))
    np.savez_compressed(out / "rooms_train.npz", flat=small.flat, offsets=small.offsets, room=small.room,
                        azimuth=small.azimuth, enrollment=small.enrollment, rt60=small.rt60, head=np.array(small.head))
    with np.load(data / "dvectors_train.npz") as z:
        table = speaker_table({k: z[k] for k in z.files}, speakers)
    missing = sorted((speakers or set()) - set(table["speakers"].tolist()))
    if missing:  # found here, not after a device start: Voices.load refuses speech without d-vectors
        raise ValueError(f"{data / 'dvectors_train.npz'} has no d-vectors for {len(missing)} packed speakers "
                         f"(e.g. {missing[0]}): run `hark data extractor` on the same speech")
    np.savez(out / "dvectors_train.npz", **table)
    if noise_dir is not None:
        for f in noise_files(noise_dir, "train"):
            to_opus(f, out / "noise" / f.relative_to(noise_dir).with_suffix(".opus"))
    print(f"{small.rooms} of {bank.rooms} rooms, d-vectors of {len(table['speakers'])} speakers"
          f"{', noise' if noise_dir else ''} -> {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("speech", help="training speech as Opus")
    s.add_argument("source", type=Path)
    s.add_argument("out", type=Path)
    s.add_argument("--per-speaker", type=int, default=5, help="files kept of a speaker with several")
    e = sub.add_parser("extractor", help="room bank subset, per-speaker d-vectors, training noise")
    e.add_argument("data", type=Path, help="the folder of `hark data extractor`")
    e.add_argument("out", type=Path)
    e.add_argument("--rooms", type=int, default=60, help="rooms kept of the training bank")
    e.add_argument("--noise-dir", type=Path, default=None, help="noise recordings (training ones are packed)")
    e.add_argument("--speech", type=Path, default=None,
                   help="packed speech: keep only the d-vectors of its speakers (default: all)")
    args = parser.parse_args(argv)
    if args.command == "speech":
        packed = pack_speech([args.source], args.out, args.per_speaker)
        print(f"{len(packed)} training speakers, {sum(packed.values())} files under {args.out}")
    else:
        speakers = {speaker_of(f) for f in split_files([args.speech], "train")} if args.speech else None
        pack_extractor(args.data, args.out, args.rooms, args.noise_dir, speakers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
