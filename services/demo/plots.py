"""Piano roll of transcribed notes drawn over a log-frequency spectrogram of the input.

Both layers share one axis in MIDI pitch units, so a note that was heard shows up as a rectangle
sitting on the bright harmonic line of its fundamental, and misses or octave errors are visible
at a glance.

Figures are built with matplotlib's object API on an Agg canvas, never through pyplot: pyplot
keeps global state that is not safe across the server's request threads.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection, PatchCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from services.demo.synth import midi_to_hz
from core.notes import NoteLike

PIANO_LOW, PIANO_HIGH = 21, 108
N_FFT = 2048  # 93 ms: resolves semitones down to about C3 at 22.05 kHz without smearing onsets
MAX_FRAMES = 2000  # more columns than the picture has pixels buys nothing
BINS_PER_SEMITONE = 4
DYNAMIC_RANGE_DB = 45.0  # deeper shows window sidelobes as wide bands around every harmonic
NOTE_COLOUR = (1.0, 0.55, 0.1)
BEND_COLOUR = (0.2, 0.85, 1.0)
DPI = 100


def pitch_range(notes: Sequence[NoteLike], min_span: int = 24, pad: int = 3) -> tuple[int, int]:
    """Lowest and highest MIDI pitch to show: the notes plus some context, at least two octaves."""
    if not notes:
        return PIANO_LOW, PIANO_HIGH
    lo = min(n.pitch_midi for n in notes) - pad
    hi = max(n.pitch_midi for n in notes) + pad
    if hi - lo < min_span:
        mid = (lo + hi) / 2
        lo, hi = int(np.floor(mid - min_span / 2)), int(np.ceil(mid + min_span / 2))
    # Shift rather than clip so the span stays at least `min_span` near the keyboard's ends.
    if lo < PIANO_LOW:
        lo, hi = PIANO_LOW, min(PIANO_HIGH, hi + PIANO_LOW - lo)
    if hi > PIANO_HIGH:
        lo, hi = max(PIANO_LOW, lo - (hi - PIANO_HIGH)), PIANO_HIGH
    return lo, hi


def log_spectrogram(
    audio: np.ndarray, sr: int, lo: int, hi: int
) -> tuple[np.ndarray, float]:
    """dB magnitudes on a MIDI-pitch grid from `lo`-0.5 to `hi`+0.5, shape (pitch bins, frames).

    Returns the spectrogram and its hop in seconds. The hop grows with the clip's length so that
    long uploads cost a bounded amount of work.
    """
    audio = np.asarray(audio, dtype=np.float32)
    hop = max(256, int(np.ceil(len(audio) / MAX_FRAMES)))
    padded = np.pad(audio, (N_FFT // 2, N_FFT // 2))
    if len(padded) < N_FFT:
        padded = np.pad(padded, (0, N_FFT - len(padded)))
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::hop]
    window = np.hanning(N_FFT).astype(np.float32)
    mag = np.abs(np.fft.rfft(frames * window, axis=1)).astype(np.float32)  # (frames, bins)

    # Linear interpolation of the linear-frequency bins onto log-spaced pitch centres.
    n_rows = (hi - lo + 1) * BINS_PER_SEMITONE
    edges = np.linspace(lo - 0.5, hi + 0.5, n_rows + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    pos = np.clip(midi_to_hz(centres) * N_FFT / sr, 0, mag.shape[1] - 1)
    i0 = np.floor(pos).astype(int)
    i1 = np.minimum(i0 + 1, mag.shape[1] - 1)
    w = (pos - i0).astype(np.float32)
    grid = mag[:, i0] * (1 - w) + mag[:, i1] * w

    db = 20.0 * np.log10(grid + 1e-9)
    db = np.maximum(db, db.max() - DYNAMIC_RANGE_DB)
    return db.T, hop / sr


def _pitch_label(midi: int) -> str:
    return f"C{midi // 12 - 1}"


def draw_piano_roll(
    ax: Axes,
    audio: np.ndarray,
    sr: int,
    notes: Sequence[NoteLike],
    frame_rate: float | None = None,
) -> None:
    """Spectrogram image plus note rectangles (and bend curves) on `ax`, in (seconds, MIDI) units.

    `frame_rate` places pitch-bend values at their frame times; without it they span the note.
    """
    lo, hi = pitch_range(notes)
    duration = max(len(audio) / sr, max((n.end_s for n in notes), default=0.0), 1e-3)
    db, hop_s = log_spectrogram(audio, sr, lo, hi)
    # Each spectrogram column is centred on its frame time, hence the half-hop shift.
    ax.imshow(
        db,
        origin="lower",
        aspect="auto",
        cmap="gray",
        interpolation="nearest",
        extent=(-hop_s / 2, db.shape[1] * hop_s - hop_s / 2, lo - 0.5, hi + 0.5),
    )
    rects = [Rectangle((n.start_s, n.pitch_midi - 0.5), n.end_s - n.start_s, 1.0) for n in notes]
    ax.add_collection(
        PatchCollection(
            rects, facecolor=(*NOTE_COLOUR, 0.3), edgecolor=(*NOTE_COLOUR, 1.0), linewidth=0.8
        )
    )
    curves = []
    for n in notes:
        bends = np.asarray(n.pitch_bends if n.pitch_bends is not None else [], dtype=float)
        if len(bends) > 1 and np.any(np.abs(bends) > 0.05):
            if frame_rate:
                t = n.start_s + np.arange(len(bends)) / frame_rate
            else:
                t = np.linspace(n.start_s, n.end_s, len(bends))
            inside = t <= n.end_s  # the curve belongs to the note; never draw it past the note
            curves.append(np.column_stack([t[inside], n.pitch_midi + bends[inside]]))
    if curves:
        ax.add_collection(LineCollection(curves, colors=[BEND_COLOUR], linewidths=1.2))

    ax.set_xlim(0.0, duration)
    ax.set_ylim(lo - 0.5, hi + 0.5)
    cs = [m for m in range(lo, hi + 1) if m % 12 == 0]
    ax.set_yticks(cs, [_pitch_label(m) for m in cs])
    ax.grid(axis="y", color="white", alpha=0.15, linewidth=0.5)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("pitch")
    ax.set_title(f"{len(notes)} notes over the input's log-frequency spectrogram", fontsize=10)


def piano_roll_figure(
    audio: np.ndarray,
    sr: int,
    notes: Sequence[NoteLike],
    width: int = 1200,
    height: int = 480,
    frame_rate: float | None = None,
) -> tuple[Figure, Axes]:
    """A drawn figure of exactly `width` x `height` pixels (tests map notes to pixels through it)."""
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    draw_piano_roll(ax, audio, sr, notes, frame_rate)
    fig.tight_layout()
    canvas.draw()
    return fig, ax


def piano_roll_image(
    audio: np.ndarray,
    sr: int,
    notes: Sequence[NoteLike],
    width: int = 1200,
    height: int = 480,
    frame_rate: float | None = None,
) -> np.ndarray:
    """RGB uint8 image of shape (height, width, 3)."""
    fig, _ = piano_roll_figure(audio, sr, notes, width, height, frame_rate)
    rgba = np.asarray(fig.canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[..., :3])
