"""The extractor's framing, streaming and enrollment encoder (torch side)."""
from __future__ import annotations

import pytest
import torch

from models.extractor import Extractor, ExtractorConfig, ExtractorStep, frame_window

TINY = ExtractorConfig(hidden=32, layers=2, enroll_hidden=32, enroll_layers=1)
TINY_GRID = ExtractorConfig(separator="grid", hidden=8, layers=3, channels=8, enroll_hidden=32, enroll_layers=1)
SEPARATORS = pytest.mark.parametrize("cfg", [TINY, TINY_GRID], ids=["gru", "grid"])


def _random_model(cfg: ExtractorConfig = TINY) -> Extractor:
    torch.manual_seed(0)
    model = Extractor(cfg).eval()
    torch.nn.init.normal_(model.separator.out.weight, std=0.1)  # default init is near-silent
    for name, p in model.separator.named_parameters():
        if "film.weight" in name:
            torch.nn.init.normal_(p, std=0.1)
    return model


def test_window_squared_overlap_adds_to_one() -> None:
    w = frame_window(192, 128) ** 2
    total = torch.zeros(128 * 10 + 64)
    for t in range(10):
        total[128 * t:128 * t + 192] += w
    assert torch.allclose(total[64:-64], torch.ones_like(total[64:-64]), atol=1e-6)


@SEPARATORS
def test_unit_mask_returns_the_input(cfg: ExtractorConfig) -> None:
    model = _random_model(cfg)
    with torch.no_grad():
        model.separator.out.weight.zero_()
        bias = model.separator.out.bias.view(2, 2, -1)  # ears, (real, imag)[, bins]
        bias.zero_()
        bias[:, 0] = 1.0  # real part 1, imaginary 0, both ears
        x = torch.randn(1, 2, 5000)
        y = model(x, torch.nn.functional.normalize(torch.randn(1, 256), dim=1))
    assert torch.allclose(y, x, atol=1e-5)


@SEPARATORS
def test_streaming_steps_equal_the_whole_file(cfg: ExtractorConfig) -> None:
    model = _random_model(cfg)
    x = torch.randn(2, 2, 128 * 40)
    emb = torch.nn.functional.normalize(torch.randn(2, 256), dim=1)
    step = ExtractorStep(model)
    state = tuple(model.zero_state(2).values())
    out = []
    with torch.no_grad():
        offline = model(x, emb)
        padded = torch.nn.functional.pad(x, (0, cfg.hop))
        for k in range(0, padded.shape[-1], cfg.hop):
            y, *state = step(padded[..., k:k + cfg.hop], emb, *state)
            out.append(y)
    streamed = torch.cat(out, -1)[..., cfg.lookahead:cfg.lookahead + x.shape[-1]]
    assert (streamed - offline).abs().max().item() < 1e-4


@SEPARATORS
def test_a_chunk_needs_only_4_ms_of_input_after_it(cfg: ExtractorConfig) -> None:
    """Output up to a chunk boundary minus the look-ahead is final once input reaches the boundary."""
    model = _random_model(cfg)
    emb = torch.nn.functional.normalize(torch.randn(1, 256), dim=1)
    x = torch.randn(1, 2, 128 * 20)
    changed = x.clone()
    cut = 128 * 10
    changed[..., cut:] = torch.randn_like(changed[..., cut:])
    with torch.no_grad():
        a, b = model(x, emb), model(changed, emb)
    lookahead = cfg.window - cfg.hop
    assert torch.equal(a[..., :cut - lookahead], b[..., :cut - lookahead])
    assert not torch.equal(a[..., :cut], b[..., :cut])


def test_enrollment_encoder_starts_as_the_teacher() -> None:
    pytest.importorskip("resemblyzer")
    from resemblyzer import VoiceEncoder

    model = Extractor(ExtractorConfig())
    model.enroll.load_resemblyzer()
    teacher = VoiceEncoder("cpu", verbose=False)
    mid = torch.rand(3, 160, 40)
    with torch.no_grad():
        ours = model.enroll(torch.cat([mid, torch.rand(3, 160, 40)], -1))  # side bands: ignored at first
        _, (hidden, _) = teacher.lstm(mid)
        raw = torch.relu(teacher.linear(hidden[-1]))
        expected = raw / raw.norm(dim=1, keepdim=True)
    assert torch.allclose(ours, expected, atol=1e-5)


def test_an_unknown_separator_is_refused() -> None:
    with pytest.raises(ValueError, match="separator must be"):
        Extractor(ExtractorConfig(separator="transformer"))
