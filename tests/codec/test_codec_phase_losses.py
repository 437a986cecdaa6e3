"""Phase training (issue #25): the anti-wrapping losses, the consistency loss, the "atan2" phase
head (loading a "direct" checkpoint, exporting to ONNX) and the default head left as it was."""
from __future__ import annotations

import math

import numpy as np
import torch

from models.codec import Codec, CodecConfig, safe_atan2
from training.codec import CodecLoss, LossConfig
from training.losses import anti_wrap, consistency_loss, phase_losses

SMALL = CodecConfig(channels=32, decoder_channels=32, decoder_layers=2, latent_dim=16, codebook_size=64)
TWO_PI = 2 * math.pi


def _phases(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A phase [2, 161, 12] and a target magnitude, both random."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(2, 161, 12, generator=g) - 0.5) * 4 * math.pi, torch.rand(2, 161, 12, generator=g) + 0.1


def test_anti_wrap_ignores_whole_turns_and_is_symmetric() -> None:
    k = torch.arange(-4, 5, dtype=torch.float64)
    assert torch.allclose(anti_wrap(TWO_PI * k), torch.zeros_like(k), atol=1e-12)
    x = torch.linspace(-20, 20, 401, dtype=torch.float64)
    assert torch.allclose(anti_wrap(x), anti_wrap(-x))
    assert torch.allclose(anti_wrap(x + TWO_PI * 3), anti_wrap(x), atol=1e-9)
    assert float(anti_wrap(x).max()) <= math.pi + 1e-9 and float(anti_wrap(torch.tensor(0.5))) == 0.5


def test_phase_losses_are_zero_for_the_same_phase_and_whole_turns_away() -> None:
    phase, mag = _phases()
    turns = torch.randint(-3, 4, phase.shape, generator=torch.Generator().manual_seed(1)).float()
    for other in (phase.clone(), phase + TWO_PI, phase + TWO_PI * turns):
        losses = phase_losses(other, phase, mag)
        assert set(losses) == {"ip", "gd", "iaf"}
        assert all(float(v) < 1e-4 for v in losses.values()), losses
    losses = phase_losses(phase + 0.3 * torch.randn(phase.shape, generator=torch.Generator().manual_seed(2)),
                          phase, mag)
    assert all(float(v) > 0.05 for v in losses.values()), losses


def test_phase_losses_ignore_bins_the_target_leaves_silent() -> None:
    phase, mag = _phases()
    mag[:, 80:] = 0.0  # an upper band with no energy: its phase is noise
    wrong = phase.clone()
    wrong[:, 81:] += 1.0
    assert all(float(v) < 1e-4 for v in phase_losses(wrong, phase, mag).values())


def test_consistency_is_zero_for_a_real_signal_and_not_for_a_random_spectrum() -> None:
    decoder = Codec(SMALL).decoder
    audio = torch.randn(2, 3200, generator=torch.Generator().manual_seed(0)) * 0.1
    re, im = decoder.analyse(audio)
    assert re.shape == (2, 161, 20)
    again = decoder.analyse(decoder.synthesise(re, im))
    assert float(consistency_loss(re, im, *again)) < 1e-6
    g = torch.Generator().manual_seed(1)
    re, im = torch.randn(re.shape, generator=g), torch.randn(im.shape, generator=g)
    assert float(consistency_loss(re, im, *decoder.analyse(decoder.synthesise(re, im)))) > 0.1


def test_safe_atan2_has_a_finite_gradient_at_the_origin() -> None:
    y, x = torch.tensor([0.0, 1.0], requires_grad=True), torch.tensor([0.0, -1.0], requires_grad=True)
    out = safe_atan2(y, x)
    out.sum().backward()
    assert torch.allclose(out.detach(), torch.atan2(y.detach(), x.detach()))
    assert torch.isfinite(y.grad).all() and torch.isfinite(x.grad).all()
    assert torch.allclose(y.grad[1], torch.tensor(-0.5)) and torch.allclose(x.grad[1], torch.tensor(-0.5))


def test_default_head_is_the_old_expression_and_output() -> None:
    torch.manual_seed(0)
    model = Codec(SMALL).eval()
    x = torch.randn(1, 3200, generator=torch.Generator().manual_seed(1)) * 0.1
    with torch.no_grad():
        out = model(x)
        h = model.decoder.trunk(model.quantizer(model.encoder(x))[0])
        re, im = model.decoder.spectrum_head(h)
        # The head as it was before the phase_head option, written out.
        raw = model.decoder.head(model.decoder.norm(h.transpose(1, 2))).reshape(1, 20, 2, 161)
        mag, phase = torch.exp(raw[:, :, 0].clamp(max=6.0)), raw[:, :, 1]
    assert model.decoder.head.out_features == 2 * 161 * 2  # per_code x bins x (log-magnitude, phase)
    assert torch.equal(re, (mag * torch.cos(phase)).transpose(1, 2))
    assert torch.equal(im, (mag * torch.sin(phase)).transpose(1, 2))
    assert torch.equal(out["audio"], model.decoder(model.quantizer(model.encoder(x))[0]))
    # Computed with the code before this change (same seeds, same tiny config).
    want = [-0.04922017827630043, -0.03178245201706886, -0.00021622386702802032, -0.0704643726348877,
            0.027825376018881798, 0.015911580994725227, 0.06296923756599426, -0.041647762060165405]
    assert np.allclose(out["audio"][0, ::400].numpy(), want, atol=1e-6)


def _atan2_from_direct(seed: int = 0) -> tuple[Codec, Codec]:
    torch.manual_seed(seed)
    direct = Codec(SMALL).eval()
    wide = Codec(CodecConfig(**{**SMALL.to_dict(), "phase_head": "atan2"})).eval()
    wide.load_state_dict(direct.state_dict())
    return direct, wide


def test_atan2_head_loads_a_direct_checkpoint_and_starts_where_it_was() -> None:
    direct, wide = _atan2_from_direct()
    old = direct.decoder.head.weight.reshape(2, 2, 161, -1)
    new = wide.decoder.head.weight.reshape(2, 4, 161, -1)
    assert torch.equal(new[:, :2], old)  # magnitude and raw phase rows carried over
    assert torch.equal(wide.decoder.head.bias.reshape(2, 4, 161)[:, 2], torch.ones(2, 161))  # R = 1
    x = torch.randn(2, 3200, generator=torch.Generator().manual_seed(3)) * 0.1
    with torch.no_grad():
        assert torch.allclose(wide(x)["audio"], direct(x)["audio"], atol=1e-6)


def test_atan2_head_exports_to_onnx_with_parity(tmp_path) -> None:
    from export.codec import export

    _, wide = _atan2_from_direct()
    with torch.no_grad():  # move R and I off their start, so the graph's atan2 matters
        wide.decoder.head.weight.add_(0.05 * torch.randn(wide.decoder.head.weight.shape))
    checkpoint = tmp_path / "atan2.pt"
    torch.save({"model": wide.state_dict(), "model_config": wide.cfg.to_dict(), "step": 0, "epoch": 0}, checkpoint)
    t = np.arange(16000) / 16000
    speechy = (0.3 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    card = export(checkpoint, tmp_path / "codec", parity_audio=speechy, register=False)
    assert card["parity"]["passed"] and card["config"]["model"]["phase_head"] == "atan2"


def test_codec_loss_adds_and_logs_the_phase_terms() -> None:
    torch.manual_seed(0)
    model = Codec(SMALL)
    cfg = LossConfig(adversarial_start=10 ** 9, quantizer_dropout=0.0,
                     phase_ip=1.0, phase_gd=1.0, phase_iaf=1.0, consistency=1.0)
    audio = torch.randn(2, 3200, generator=torch.Generator().manual_seed(4)) * 0.1
    total, parts = CodecLoss(cfg, 16000)(model, {"audio": audio}, None, 0)
    assert {"phase_ip", "phase_gd", "phase_iaf", "consistency"} <= set(parts)
    total.backward()
    assert torch.isfinite(model.decoder.head.weight.grad).all()
    _, off = CodecLoss(LossConfig(adversarial_start=10 ** 9, quantizer_dropout=0.0), 16000)(model, {"audio": audio},
                                                                                             None, 0)
    assert not {"phase_ip", "consistency"} & set(off)  # weights 0: not computed
