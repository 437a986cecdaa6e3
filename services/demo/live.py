"""Live-microphone transcription for the transcriber tab.

Gradio streams the microphone in short chunks; each browser session keeps one `LiveSession`
(the same StreamingTranscriber the WebSocket endpoint runs), so notes appear while the
visitor plays, about half a second after they start.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.audio import ChunkResampler
from core.notes import Note
from core.streaming import StreamingTranscriber

SHOWN_SECONDS = 10.0  # the live piano roll shows the last few seconds
MAX_SECONDS = 600.0


@dataclass
class LiveSession:
    stream: StreamingTranscriber
    input_rate: int
    resample: ChunkResampler
    notes: list[Note] = field(default_factory=list)  # finished notes
    sounding: dict[tuple[int, float], dict] = field(default_factory=dict)  # note_on events still open
    audio: list[np.ndarray] = field(default_factory=list)  # recent model-rate audio, for the picture

    @classmethod
    def start(cls, model: Any, decode_params: dict[str, Any], input_rate: int) -> LiveSession:
        return cls(StreamingTranscriber(model, decode_params), input_rate,
                   ChunkResampler(input_rate, model.sample_rate))

    def feed(self, chunk: np.ndarray, last: bool = False) -> None:
        x = self.resample(_mono_float(chunk), last=last)
        self.audio.append(x)
        keep = int(SHOWN_SECONDS * self.stream.model.sample_rate)
        while sum(a.size for a in self.audio) - self.audio[0].size > keep:
            self.audio.pop(0)
        events = self.stream.push(x)
        if last:
            events += self.stream.finish()
        for e in events:
            key = (e["pitch_midi"], round(e["start_s"], 4))
            if e["type"] == "note_on":
                self.sounding[key] = e
            else:
                self.sounding.pop(key, None)
                self.notes.append(Note(e["start_s"], e["end_s"], e["pitch_midi"], e["velocity"], e.get("pitch_bends")))

    @property
    def seconds(self) -> float:
        return self.stream.seconds_received

    def visible(self) -> tuple[np.ndarray, float, list[Note]]:
        """(recent audio, its start time, the notes over it with open ones drawn up to now)."""
        audio = np.concatenate(self.audio) if self.audio else np.zeros(0, np.float32)
        t0 = max(0.0, self.seconds - audio.size / self.stream.model.sample_rate)
        now = self.seconds
        shown = [n for n in self.notes if n.end_s > t0]
        shown += [Note(e["start_s"], now, e["pitch_midi"], e["velocity"], None) for e in self.sounding.values()]
        shifted = [Note(max(n.start_s - t0, 0.0), n.end_s - t0, n.pitch_midi, n.velocity, None) for n in shown]
        return audio, t0, shifted


def _mono_float(chunk: np.ndarray) -> np.ndarray:
    x = np.asarray(chunk)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if x.dtype.kind == "i":
        x = x.astype(np.float32) / float(np.iinfo(x.dtype).max + 1)
    return x.astype(np.float32)
