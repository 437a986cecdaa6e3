"""Checkpoint -> ONNX: parity with torch, a complete card, and the shipped inference path loads it."""
import json

import numpy as np
import pytest
import torch

from export.transcriber import DECODE_GRID, PARITY_LIMIT, export, field_augmenter, field_copy
from models.transcriber import Transcriber, TranscriberConfig
from core.transcriber_model import TranscriberModel
from synth_data import render_notes, write_set


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    data = write_set(root / "set", n_clips=3, seconds=3.0)
    cfg = TranscriberConfig(channels=8, head_channels=8)
    torch.manual_seed(0)
    model = Transcriber(cfg)
    state = {"model": model.state_dict(), "model_config": cfg.to_dict(), "step": 7, "epoch": 0, "wall_s": 1.0,
             "recipe": {"data": [str(data)], "validation_every": 1, "augment": {}}}
    torch.save(state, root / "last.pt")
    card = export(root / "last.pt", root / "artifact", tune=True, register=False)
    return root / "artifact", card, model


def test_parity_within_limit_on_random_and_real_audio(exported):
    _, card, _ = exported
    assert card["parity"]["passed"] and card["parity"]["max_abs_error"] <= PARITY_LIMIT
    assert set(card["parity"]["cases"]) == {"random", "real"}


def test_card_records_what_the_service_and_readers_need(exported):
    out, card, _ = exported
    on_disk = json.loads((out / "card.json").read_text())
    for key in ("name", "version", "sha256", "io", "thresholds", "config", "data", "training", "parity", "git_commit"):
        assert key in on_disk, key
    assert on_disk["io"]["window_samples"] == 44032 and on_disk["io"]["contour_bins"] == 264
    assert on_disk["decode_selection"]["chosen_on"] == \
        "3 validation clips (each dry and through the training augmentation)"
    assert set(DECODE_GRID) <= set(on_disk["decode"]) | {"onset_threshold", "frame_threshold"}


def test_field_copy_is_a_reproducible_augmented_copy():
    audio = render_notes([(0.2, 0.8, 60)], 1.0)
    always = field_augmenter({"eq_prob": 1.0, "reverb_prob": 1.0, "noise_prob": 1.0, "gain_db": (-6.0, -6.0)})
    a, b = field_copy(audio, always, seed=3), field_copy(audio, always, seed=3)
    assert a.shape == audio.shape and np.array_equal(a, b)
    assert np.abs(a).max() == pytest.approx(10 ** (-6 / 20), rel=1e-4)  # the level is the config's
    assert not np.allclose(a / np.abs(a).max(), audio / np.abs(audio).max(), atol=1e-2)
    assert not np.array_equal(a, field_copy(audio, always, seed=4))


def test_onnx_matches_torch_through_the_serving_path(exported):
    out, _, model = exported
    shipped = TranscriberModel(out)
    audio = render_notes([(0.2, 0.8, 60), (1.0, 1.6, 67)], 1.9)
    grams = shipped.posteriorgrams(audio)
    n = 44032
    padded = np.zeros(n, np.float32)
    padded[: len(audio)] = audio
    with torch.no_grad():
        onset, note, _ = model.eval().posteriorgrams(torch.from_numpy(padded)[None])
    frames = min(len(audio) // 256, grams["note"].shape[0])
    assert grams["note"].shape[1] == 88
    assert np.abs(grams["note"][:frames] - note[0, :frames].numpy()).max() < 1e-3
