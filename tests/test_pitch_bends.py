"""The shipped model's pitch bends follow a bend rendered by FluidSynth (pretty_midi pitch-bend events)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import soundfile as sf

from services.transcriber_model import TranscriberModel

MODEL_DIR = Path(__file__).resolve().parents[1] / "artifacts" / "transcriber"
SOUNDFONT = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")  # held out from training
SR = 22050
QUARTER_TONE = 0.5  # semitones

pytestmark = pytest.mark.skipif(shutil.which("fluidsynth") is None or not SOUNDFONT.exists(),
                                reason="needs fluidsynth and the TimGM6mb soundfont (make system-deps)")


def bend_curve(t: np.ndarray) -> np.ndarray:
    """Semitones: flat, a rise of one semitone, held, a fall back, flat."""
    return np.interp(t, [0.0, 0.6, 1.0, 1.6, 2.0, 3.0], [0.0, 0.0, 1.0, 1.0, 0.0, 0.0])


def render_bent_note(tmp: Path, program: int, pitch: int) -> np.ndarray:
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=program)
    inst.notes.append(pretty_midi.Note(100, pitch, 0.2, 2.6))
    for t in np.arange(0.0, 3.0, 0.01):
        # FluidSynth's default wheel range is +-2 semitones.
        inst.pitch_bends.append(pretty_midi.PitchBend(int(round(bend_curve(t) / 2 * 8191)), float(t)))
    pm.instruments.append(inst)
    pm.write(str(tmp / "bend.mid"))
    subprocess.run(["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.5", "-r", str(SR),
                    "-F", str(tmp / "bend.wav"), str(SOUNDFONT), str(tmp / "bend.mid")], check=True, capture_output=True)
    audio, sr = sf.read(str(tmp / "bend.wav"), dtype="float32", always_2d=True)
    assert sr == SR
    return audio.mean(axis=1)


@pytest.mark.parametrize("program, pitch", [(41, 67), (65, 62)])  # viola and alto sax, two ranges
def test_returned_bend_follows_the_rendered_bend(tmp_path: Path, program: int, pitch: int) -> None:
    model = TranscriberModel(MODEL_DIR, threads=1)
    notes = model.transcribe(render_bent_note(tmp_path, program, pitch), include_pitch_bends=True)
    main = max((n for n in notes if n.pitch_midi == pitch), key=lambda n: n.end_s - n.start_s)
    assert main.start_s < 0.35 and main.end_s > 2.2, [(n.start_s, n.end_s, n.pitch_midi) for n in notes]
    t = main.start_s + np.arange(len(main.pitch_bends)) / model.frame_rate
    inside = (t > 0.35) & (t < 2.45)  # away from the attack and the release
    error = np.abs(np.asarray(main.pitch_bends)[inside] - bend_curve(t[inside]))
    assert error.max() <= QUARTER_TONE, f"worst {error.max():.2f} st at {t[inside][error.argmax()]:.2f} s"
    # The bend is followed, not ignored: the held top reads as about +1 semitone.
    top = (t > 1.1) & (t < 1.5)
    assert np.median(np.asarray(main.pitch_bends)[top]) > 0.75
