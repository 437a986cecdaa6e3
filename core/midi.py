"""Notes to Standard MIDI File bytes, with pitch bends.

A MIDI pitch bend applies to a whole channel, so two overlapping notes on one channel would bend
each other. Notes that carry bends are therefore spread over instruments (pretty_midi writes one
channel per instrument, skipping the drum channel) so that no two of them overlap on a channel.
"""
from __future__ import annotations

import io
from collections.abc import Sequence

import pretty_midi

from core.notes import FRAME_RATE, NoteLike

# Receivers assume +-2 semitones unless told otherwise (RPN 0), so we stay inside that range.
BEND_RANGE_SEMITONES = 2.0
MAX_CHANNELS = 15  # 16 minus the drum channel


def _bend_value(semitones: float) -> int:
    value = int(round(semitones / BEND_RANGE_SEMITONES * 8192))
    return max(-8192, min(8191, value))


def _has_bends(n: NoteLike) -> bool:
    return bool(n.pitch_bends) and any(_bend_value(b) != 0 for b in n.pitch_bends)  # type: ignore[union-attr]


def _assign_channels(notes: Sequence[NoteLike]) -> list[int]:
    """Instrument index per note: bent notes never share an instrument with an overlapping note.

    Greedy interval colouring in start order; when all channels are busy, the note goes to
    channel 0 without its bends (better a straight note than a wrong bend on a neighbour).
    """
    order = sorted(range(len(notes)), key=lambda i: notes[i].start_s)
    busy_until = [float("-inf")] * MAX_CHANNELS
    channel = [0] * len(notes)
    for i in order:
        n = notes[i]
        free = [c for c in range(MAX_CHANNELS) if busy_until[c] <= n.start_s]
        c = free[0] if free else -1
        channel[i] = c
        if c >= 0:
            busy_until[c] = max(busy_until[c], n.end_s)
    return channel


def notes_to_midi(
    notes: Sequence[NoteLike],
    *,
    frame_rate: float = FRAME_RATE,
    program: int = 0,
    name: str = "hark transcriber",
) -> bytes:
    """A type-1 MIDI file: one piano track, or several when pitch bends need their own channels."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    bent = any(_has_bends(n) for n in notes)
    channels = _assign_channels(notes) if bent else [0] * len(notes)
    n_instruments = max([c for c in channels if c >= 0], default=0) + 1
    instruments = [pretty_midi.Instrument(program=program, name=name if i == 0 else f"{name} {i + 1}")
                   for i in range(n_instruments)]
    for n, c in zip(notes, channels, strict=True):
        inst = instruments[max(c, 0)]
        start, end = float(n.start_s), float(n.end_s)
        if end <= start:
            continue
        velocity = max(1, min(127, int(round(float(n.velocity)))))
        inst.notes.append(pretty_midi.Note(velocity=velocity, pitch=int(n.pitch_midi), start=start, end=end))
        if c < 0 or not _has_bends(n):
            continue
        last = None
        for i, bend in enumerate(n.pitch_bends or ()):
            t = start + i / frame_rate
            if t >= end:
                break
            value = _bend_value(bend)
            if value != last:
                inst.pitch_bends.append(pretty_midi.PitchBend(pitch=value, time=t))
                last = value
        if last:
            inst.pitch_bends.append(pretty_midi.PitchBend(pitch=0, time=end))
    pm.instruments.extend(inst for inst in instruments if inst.notes)
    buffer = io.BytesIO()
    pm.write(buffer)
    return buffer.getvalue()
