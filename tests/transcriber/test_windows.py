"""Window planning and stitching, and the shipped inference path (TranscriberModel)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import HOP, SR, WINDOW, tone

from core import windows
from core.transcriber_model import TranscriberModel

FRAMES = WINDOW // HOP  # 172
MARGIN = 30
REACH = 6 * HOP  # the fake model looks this many samples either side of a frame centre


def fake_frames(audio: np.ndarray, n_frames: int) -> dict[str, np.ndarray]:
    """A deterministic frame model with a finite reach: per frame, the mean and max |x| and the
    signed mean of the audio within +-REACH samples of the frame centre (zeros outside)."""
    padded = np.concatenate([np.zeros(REACH, np.float32), audio, np.zeros(REACH + n_frames * HOP, np.float32)])
    centres = np.arange(n_frames) * HOP + REACH
    idx = centres[:, None] + np.arange(-REACH, REACH)[None, :]
    seg = padded[idx]
    feats = np.stack([np.abs(seg).mean(1), np.abs(seg).max(1), seg.mean(1)], axis=1)
    return {"a": feats.astype(np.float32), "b": feats[:, :1] * 2}


def fake_model(batch: np.ndarray) -> dict[str, np.ndarray]:
    outs = [fake_frames(w, FRAMES) for w in batch]
    return {k: np.stack([o[k] for o in outs]) for k in outs[0]}


@pytest.mark.parametrize("n", [1, 255, 256, 5000, WINDOW - 1, WINDOW, WINDOW + 1, 3 * WINDOW + 777, 20 * SR])
def test_stitched_equals_single_pass(n: int):
    audio = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    stitched = windows.run(fake_model, audio, window_samples=WINDOW, hop=HOP, margin=MARGIN, batch_size=3)
    n_frames = -(-n // HOP)
    single = fake_frames(audio, n_frames)
    assert stitched.keys() == single.keys()
    for k in single:
        assert stitched[k].shape == single[k].shape
        np.testing.assert_allclose(stitched[k], single[k], rtol=0, atol=1e-6)


def test_plan_covers_every_frame_exactly_once():
    for n in [1, WINDOW, 10 * WINDOW + 3]:
        p = windows.plan(n, window_samples=WINDOW, hop=HOP, margin=MARGIN)
        covered = np.zeros(p.n_frames, int)
        for i in range(p.n_windows):
            first, last, at = p.kept(i)
            covered[at:at + last - first] += 1
        assert (covered == 1).all()
    with pytest.raises(ValueError):
        windows.plan(100, window_samples=WINDOW, hop=HOP, margin=FRAMES // 2)


def test_batch_size_does_not_change_the_result():
    audio = np.random.default_rng(0).standard_normal(5 * WINDOW).astype(np.float32)
    a = windows.run(fake_model, audio, window_samples=WINDOW, hop=HOP, margin=MARGIN, batch_size=1)
    b = windows.run(fake_model, audio, window_samples=WINDOW, hop=HOP, margin=MARGIN, batch_size=64)
    np.testing.assert_array_equal(a["a"], b["a"])


def test_note_crossing_window_borders_survives(stand_in_model_dir: Path):
    model = TranscriberModel(stand_in_model_dir, threads=1, batch_size=4)
    step_s = (FRAMES - 2 * model.margin_frames) * HOP / SR
    first_border_s = (FRAMES - model.margin_frames) * HOP / SR
    # A 440 Hz tone over the first two window borders.
    start, end = first_border_s - 0.7, first_border_s + step_s + 0.5
    audio = tone(440.0, end - start, start_s=start, total_s=end + 1.0)
    grams = model.posteriorgrams(audio)
    assert grams["note"].shape == (-(-audio.size // HOP), 88) and grams["contour"].shape[1] == 264
    notes = model.transcribe(audio)
    assert [n.pitch_midi for n in notes] == [69]
    assert notes[0].start_s == pytest.approx(start, abs=0.05)
    assert notes[0].end_s == pytest.approx(end, abs=0.05)


def test_card_decides_defaults(stand_in_model_dir: Path, tmp_path: Path):
    card = json.loads((stand_in_model_dir / "card.json").read_text())
    card["thresholds"] = {"onset": 0.42, "frame": 0.21}
    card["decode"] = {"min_note_ms": 77.0, "unknown_key": 1}
    (tmp_path / "transcriber.onnx").write_bytes((stand_in_model_dir / "transcriber.onnx").read_bytes())
    (tmp_path / "card.json").write_text(json.dumps(card))
    model = TranscriberModel(tmp_path, threads=1)
    d = model.decode_defaults()
    assert (d["onset_threshold"], d["frame_threshold"], d["min_note_ms"]) == (0.42, 0.21, 77.0)
    assert "unknown_key" not in d
    assert model.sha256 == card["sha256"] and model.provider == "cpu"


SHIPPED = Path(__file__).resolve().parents[2] / "artifacts" / "transcriber"


@pytest.mark.skipif(not (SHIPPED / "card.json").is_file(), reason="no shipped transcriber yet")
def test_shipped_model_runs_through_the_same_path():
    model = TranscriberModel(SHIPPED, threads=1)
    audio = tone(440.0, 1.0, total_s=2.0)
    grams = model.posteriorgrams(audio)
    assert grams["onset"].shape == grams["note"].shape == (-(-audio.size // HOP), 88)
    for g in grams.values():
        assert np.isfinite(g).all() and g.min() >= 0 and g.max() <= 1
    assert isinstance(model.transcribe(audio), list)
