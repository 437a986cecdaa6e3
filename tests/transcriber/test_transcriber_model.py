"""The torch model: front end puts tones in the right bins; shapes follow the ONNX contract."""
import numpy as np
import pytest
import torch

from models.transcriber import Transcriber, TranscriberConfig, contour_bin_hz
from synth_data import SR


def _sine(hz: float, n: int = 44032) -> torch.Tensor:
    t = np.arange(n) / SR
    return torch.tensor(0.5 * np.sin(2 * np.pi * hz * t), dtype=torch.float32)[None]


@pytest.mark.parametrize("midi", [33, 45, 57, 64, 69, 81, 96])
def test_pure_tone_peaks_in_its_pitch_bin(midi):
    model = Transcriber().eval()
    hz = 440.0 * 2 ** ((midi - 69) / 12)
    with torch.no_grad():
        stacked = model.stack(model.front(_sine(hz)))  # [1, harmonics, T, 264]
    fundamental = stacked[0, model.cfg.harmonics.index(1), 86]  # a frame in the middle
    expected_bin = 3 * (midi - 21) + 1
    assert abs(int(fundamental.argmax()) - expected_bin) <= 1
    assert np.isclose(contour_bin_hz(expected_bin), hz, rtol=1e-6)


def test_harmonic_channel_sees_the_overtone():
    model = Transcriber().eval()
    with torch.no_grad():
        stacked = model.stack(model.front(_sine(440.0)))
    # In the "2nd harmonic" channel, 440 Hz shows up at the bin of 220 Hz (A3, key 36).
    second = stacked[0, model.cfg.harmonics.index(2), 86]
    assert abs(int(second.argmax()) - (3 * 36 + 1)) <= 1


@pytest.mark.parametrize("samples", [44032, 11264])
def test_output_shapes(samples):
    cfg = TranscriberConfig()
    model = Transcriber(cfg).eval()
    with torch.no_grad():
        onset, note, contour = model.posteriorgrams(torch.zeros(2, samples))
    frames = samples // cfg.hop
    assert onset.shape == (2, frames, 88) and note.shape == (2, frames, 88)
    assert contour.shape == (2, frames, 264)
    assert float(onset.min()) >= 0 and float(onset.max()) <= 1
