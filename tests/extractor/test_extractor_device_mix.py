"""Scenes mixed on the training device (`scenes.mix_on_device`) are the scenes the CPU mixes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from test_extractor_data import _ramp_voices, _toy_head
from torch.utils.data import default_collate

from models.extractor import Extractor, ExtractorConfig
from core.extractor_enroll import enrollment_mels
from training.data.rooms import render_bank
from training.data.scenes import SceneConfig, SceneRenderer
from training.data.spatialise import SIDES, mix_side, pack
from training.enroll_features import first_window_mels
from training.extractor import ExtractorLoss, LossConfig, TrainingScenes

SR = 16000


@pytest.fixture(scope="module")
def bank():
    return render_bank([_toy_head()], rooms=2, seed=0)


def _renderer(bank, **cfg) -> SceneRenderer:
    rng = np.random.default_rng(3)
    noises = [(0.1 * rng.standard_normal(SR)).astype(np.float32) for _ in range(2)]
    return SceneRenderer(_ramp_voices(5), bank, noises, SceneConfig(**cfg))


def _close(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("level_db", [(-35.0, -15.0), (-3.0, 0.0)])  # the second hits the peak limit
def test_device_mix_equals_the_numpy_mix(bank, level_db: tuple[float, float]) -> None:
    renderer = _renderer(bank, level_db=level_db)
    drawn = [renderer.draw(np.random.default_rng([1, i]), 0.5, 1.6) for i in range(6)]
    assert {len(d.scene.interferers) for d in drawn} == {1, 2}  # masks of both kinds in one batch
    batch = default_collate([pack(d, bank, 2, bank.max_taps) for d in drawn])
    on_device = {field: mix_side(batch, prefix) for field, prefix in SIDES.items()}
    for i, d in enumerate(drawn):
        for field in SIDES:
            mixture, image = renderer.mix_side(getattr(d, field))
            assert _close(on_device[field][0][i].numpy(), mixture) < 1e-4
            assert _close(on_device[field][1][i].numpy(), image) < 1e-4
            assert np.abs(mixture).max() < 0.99 + 1e-6
    if level_db[0] > -10:
        assert np.isclose(np.abs(on_device["scene"][0].numpy()).max(), 0.99, atol=1e-4)


def test_render_is_draw_then_mix(bank) -> None:
    renderer = _renderer(bank)
    scene = renderer.render(np.random.default_rng(9), 0.5, 1.6)
    again = renderer.mix(renderer.draw(np.random.default_rng(9), 0.5, 1.6))
    for key in ("mixture", "target", "enrollment", "enrollment_clean"):
        assert np.array_equal(scene[key], again[key])


@pytest.mark.parametrize("seconds, scale", [(1.6, 0.05), (1.2, 0.05), (2.0, 0.3), (1.6, 0.0)])
def test_torch_mels_equal_the_served_mels(seconds: float, scale: float) -> None:
    rng = np.random.default_rng(0)
    audio = (scale * rng.standard_normal((2, int(seconds * SR)))).astype(np.float32)
    audio[1] += 0.5 * audio[0]  # mid and side both carry something
    ours = first_window_mels(torch.from_numpy(audio)[None])[0].numpy()
    served = enrollment_mels(audio)[0]
    assert ours.shape == served.shape == (160, 80)
    assert np.abs(ours - served).max() <= 1e-4 * max(np.abs(served).max(), 1e-30)


def _batch(renderer: SceneRenderer, dry: bool) -> dict[str, torch.Tensor]:
    scenes = TrainingScenes(renderer, 4, 0.5, 1.6, seed=2, dry=dry)
    return default_collate([scenes[i] for i in range(4)])


def test_a_dry_batch_trains_like_a_mixed_one(bank) -> None:
    renderer = _renderer(bank)
    torch.manual_seed(0)
    model = Extractor(ExtractorConfig(hidden=32, layers=2, enroll_hidden=32, enroll_layers=1))
    loss_fn = ExtractorLoss(LossConfig(enroll_examples=2))
    mixed, dry = _batch(renderer, False), _batch(renderer, True)
    assert "mixture" not in dry and dry["scene/interferer_irs"].dtype == torch.float16
    losses = []
    for batch in (mixed, dry):
        torch.manual_seed(1)  # the same teacher/student coin flips for both
        loss, parts = loss_fn(model, batch)
        loss.backward()
        assert torch.isfinite(loss) and np.isfinite(parts["snr_db"])
        losses.append(parts)
    # The same scenes either way, so the same loss to float32 rounding.
    assert abs(losses[0]["snr_db"] - losses[1]["snr_db"]) < 1e-3


def test_a_dry_batch_mixes_to_the_cpu_batch(bank) -> None:
    from training.extractor import mix_on_device

    renderer = _renderer(bank)
    mixed, device = _batch(renderer, False), mix_on_device(_batch(renderer, True))
    for key in ("mixture", "target"):
        assert _close(device[key].numpy(), mixed[key].numpy()) < 1e-4
    assert device["enroll_mels"].shape == (4, 160, 80)
    assert _close(device["enroll_mels"].numpy(), mixed["enroll_mels"].numpy()) < 1e-4


@pytest.mark.parametrize("teacher_prob", [0.0, 1.0])
def test_the_separator_hears_the_encoders_embedding_of_every_example(bank, teacher_prob: float) -> None:
    renderer = _renderer(bank)
    torch.manual_seed(0)
    model = Extractor(ExtractorConfig(hidden=32, layers=2, enroll_hidden=32, enroll_layers=1))
    heard = []

    class Listening(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.module = model

        def forward(self, mixture, embedding):
            heard.append(embedding.detach())
            return model(mixture, embedding)

    batch = _batch(renderer, False)
    ExtractorLoss(LossConfig(enroll_examples=1, teacher_prob=teacher_prob))(Listening(), batch)
    with torch.no_grad():
        expected = batch["dvector"] if teacher_prob else model.enroll(batch["enroll_mels"])
    assert heard[0].shape == (4, 256) and torch.allclose(heard[0], expected, atol=1e-5)
