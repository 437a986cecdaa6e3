"""Streaming transcription: audio chunks in as they are recorded, note events out.

The model is not causal: frame t is settled once it has `lookahead` frames of audio after it.
Each push runs one window ending at the newest sample over every frame that can settle (at
least `step` of them, so tiny chunks do not run the model per frame) and appends them to the
posteriorgrams; the window is `context + new + lookahead` frames, the context covering the front
end's longest analysis window. Notes come from the same decoder as offline, re-run over the
recent settled frames:

- `note_on` once a note's start can no longer move (its attack window and the shortest note
  length are settled), so the latency after an onset is lookahead + settle + up to one step,
  plus the wait for the chunk that completes them. Whether a short note is bridged to more of
  its key is read from the newest window's unsettled frames, so it does not add max_gap;
- `note_off` once the key has been quiet longer than the decoder bridges, with the pitch bends;
- nothing for a note that first appears long after its start settled: that is the decoder
  re-reading a segment whose beginning the kept history no longer holds, not a new note.

Frames every window sees with at least `lookahead` frames on each side, as offline with its
`margin`, so the streamed notes match the offline ones up to small numeric differences.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from core.notes import MIN_NOTE_MS, Note, decode_notes, note_to_dict

LOOKAHEAD_FRAMES = 22  # ~0.26 s at 86 frames/s: with settle and step, note_on stays under 0.5 s
STEP_FRAMES = 4  # ~0.05 s: the fewest new frames worth a model run
MAX_RUN_FRAMES = 172  # a long chunk settles in windows of at most this many new frames
CONTEXT_FRAMES = 44  # > half the longest front-end window (16384 samples = 64 frames)
HISTORY_FRAMES = 172  # settled frames kept for decoding besides those of open notes
_SAME_NOTE_FRAMES = 3


@dataclass
class _Open:
    key: int
    start: int
    note: Note


class StreamingTranscriber:
    """One stream's state. `push` chunks of mono float32 audio at the model's sample rate; each
    call returns the note events that became certain; `finish` flushes the rest."""

    def __init__(self, model: Any, decode_params: dict[str, Any], *,
                 lookahead_frames: int = LOOKAHEAD_FRAMES, step_frames: int = STEP_FRAMES,
                 context_frames: int = CONTEXT_FRAMES) -> None:
        self.model = model
        self.params = dict(decode_params)
        self.hop = model.hop
        self.frame_rate = model.frame_rate
        self.lookahead, self.step, self.context = lookahead_frames, step_frames, context_frames
        # A model with a fixed input length runs its own window, `step` new frames at a time;
        # the settled frames are then the ones `lookahead` before its end.
        self.fixed = model.fixed_window_frames
        self.max_run = step_frames if self.fixed else MAX_RUN_FRAMES
        # Before the stream starts there is silence, as before an offline file.
        self.audio = np.zeros((self.fixed or context_frames + step_frames + lookahead_frames) * self.hop, np.float32)
        self.audio_start = -self.audio.size  # stream sample index of self.audio[0]
        self.received = 0  # samples pushed so far
        self.finished = False
        self.settled = 0  # frames of the stream settled so far
        self.decoded_to = 0  # self.settled at the last decode
        self.base = 0  # stream frame of grams[*][0]
        self.grams: dict[str, np.ndarray] = {}
        self.tail: dict[str, np.ndarray] = {}  # the latest window's outputs past `settled`
        self.open: list[_Open] = []
        self.closed: list[tuple[int, int, int]] = []  # (key, start, end) frames of recent finished notes
        min_note_ms = float(self.params.get("min_note_ms", MIN_NOTE_MS))
        self.settle = max(int(np.ceil(min_note_ms * self.frame_rate / 1000.0)), 5) + 1
        self.max_gap = int(round(float(self.params.get("max_gap_ms", 100.0)) * self.frame_rate / 1000.0))

    # --- audio in -------------------------------------------------------------------------------

    @property
    def seconds_received(self) -> float:
        return self.received / self.model.sample_rate

    def push(self, samples: np.ndarray) -> list[dict[str, Any]]:
        if self.finished:
            raise RuntimeError("push after finish: start a new stream")
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        self.audio = np.concatenate([self.audio, samples])
        self.received += samples.size
        events: list[dict[str, Any]] = []
        available = self.received // self.hop - self.lookahead  # frames that could settle now
        while available - self.settled >= self.step:
            self._run_window(min(available, self.settled + self.max_run))
            events += self._decode(final=False)
        return events

    def finish(self) -> list[dict[str, Any]]:
        """End of stream: the rest settles against zeros, as the end of an offline file does."""
        if self.finished:
            return []
        self.finished = True
        total = max(1, -(-self.received // self.hop))
        self.audio = np.concatenate([self.audio, np.zeros((self.lookahead + 1) * self.hop, np.float32)])
        while self.settled < total:
            self._run_window(min(self.settled + self.max_run, total))
        return self._decode(final=True)

    def _run_window(self, settle_to: int) -> None:
        """Run the window whose frames up to `settle_to` (exclusive) are settled."""
        frames = self.fixed or self.context + (settle_to - self.settled) + self.lookahead
        start_frame = settle_to + self.lookahead - frames
        a = start_frame * self.hop - self.audio_start
        out = self.model.run_window(self.audio[a:a + frames * self.hop])
        first = self.settled - start_frame
        for name, value in out.items():
            new = value[first:settle_to - start_frame]
            self.grams[name] = new if name not in self.grams else np.concatenate([self.grams[name], new])
            self.tail[name] = value[settle_to - start_frame:settle_to - start_frame + self.max_gap]
        self.settled = settle_to
        # Later windows start no earlier than this one: older audio is not needed again.
        if a > 0:
            self.audio = self.audio[a:]
            self.audio_start += a

    # --- notes out ------------------------------------------------------------------------------

    def _decode(self, final: bool) -> list[dict[str, Any]]:
        if not self.grams:
            return []
        # The unsettled frames just past `settled` take part: a short note is kept when a gap
        # of up to max_gap bridges it to more of the key, and waiting for that gap to settle
        # would hold its note_on up to max_gap longer than its start needs.
        grams = self.grams if final else {k: np.concatenate([v, self.tail[k]]) for k, v in self.grams.items()}
        notes = decode_notes(grams["onset"], grams["note"], grams.get("contour"),
                             frame_rate=self.frame_rate, **self.params)
        events: list[dict[str, Any]] = []
        seen: set[int] = set()
        for n in notes:
            start = self.base + int(round(n.start_s * self.frame_rate))
            end = self.base + int(round(n.end_s * self.frame_rate))
            key = n.pitch_midi
            shifted = _shift(n, self.base / self.frame_rate)
            match = next((i for i, o in enumerate(self.open)
                          if o.key == key and abs(o.start - start) <= _SAME_NOTE_FRAMES), None)
            if match is None:
                if start <= self.base + _SAME_NOTE_FRAMES and self.base > 0:
                    continue  # cut by the history edge: its start is not known
                if any(k == key and s - _SAME_NOTE_FRAMES <= start < e for k, s, e in self.closed):
                    continue  # the tail of a note already finished (a re-attack starts at its end)
                if not final and start + self.settle > self.settled:
                    continue  # its start could still move
                if start + self.settle + self.max_gap < self.decoded_to:
                    # Certain, with any bridged gap joined, before the last decode, yet not
                    # reported then: the decoder re-reading a segment the history edge cut into.
                    continue
                self.open.append(_Open(key, start, shifted))
                events.append(_event("note_on", shifted))
                match = len(self.open) - 1
            seen.add(match)
            self.open[match].note = shifted
            if final or end + self.max_gap + 1 < self.settled:
                events.append(_event("note_off", shifted))
                self.closed.append((key, self.open[match].start, end))
                self.open[match].key = -1
        # Open notes the decoder no longer reports (a later frame re-read them) end where last seen.
        for i, o in enumerate(self.open):
            if o.key >= 0 and i not in seen and (final or o.start + self.settle < self.settled - self.lookahead):
                events.append(_event("note_off", o.note))
                self.closed.append((o.key, o.start, int(round(o.note.end_s * self.frame_rate))))
                o.key = -1
        self.open = [o for o in self.open if o.key >= 0]
        self.decoded_to = self.settled
        self._forget()
        return events

    def _forget(self) -> None:
        """Keep the settled frames the next decode needs: open notes and some history."""
        keep = self.settled - HISTORY_FRAMES
        if self.open:
            keep = min(keep, min(o.start for o in self.open) - 8)
        drop = keep - self.base
        if drop > 0:
            self.grams = {k: v[drop:] for k, v in self.grams.items()}
            self.base = keep
        self.closed = [(k, s, e) for k, s, e in self.closed if e >= self.base - _SAME_NOTE_FRAMES]


def stream_audio(model: Any, audio: np.ndarray, decode_params: dict[str, Any], chunk_s: float = 0.1,
                 flush: bool = True) -> tuple[list[dict[str, Any]], list[float]]:
    """Feed a whole recording in `chunk_s` chunks, as a recorder would. Returns the events (with
    the final flush unless `flush` is False) and, per note_on before the flush, how much audio had
    arrived when it left, after its note's start: the latency a listener sees, minus compute."""
    stream = StreamingTranscriber(model, decode_params)
    chunk = int(chunk_s * model.sample_rate)
    events: list[dict[str, Any]] = []
    latencies: list[float] = []
    for i in range(0, audio.size, chunk):
        for e in stream.push(audio[i:i + chunk]):
            events.append(e)
            if e["type"] == "note_on":
                latencies.append(stream.seconds_received - e["start_s"])
    if flush:
        events += stream.finish()
    return events, latencies


def _shift(n: Note, offset_s: float) -> Note:
    return Note(start_s=n.start_s + offset_s, end_s=n.end_s + offset_s, pitch_midi=n.pitch_midi,
                velocity=n.velocity, pitch_bends=n.pitch_bends)


def _event(kind: str, n: Note) -> dict[str, Any]:
    d = note_to_dict(n)
    if kind == "note_on":
        d.pop("end_s", None)
        d.pop("pitch_bends", None)
    return {"type": kind, **d}
