"""The codec model's structure: bitrates, causal latency, exact STFT synthesis, GRVQ codes."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from models.codec import Codec, CodecConfig, _as_kernel, _dft, _inverse_dft, _periodic_hann
from models.grvq import GRVQ, EMACodebook

SMALL = CodecConfig(channels=32, decoder_channels=32, decoder_layers=2, latent_dim=16, codebook_size=64)


def test_bitrates_and_latency_of_the_default_codec() -> None:
    cfg = CodecConfig()
    assert cfg.bitrate() == 2000.0 and cfg.bitrate(stages=1) == 1000.0
    assert cfg.frame_rate == 50.0 and cfg.latency_ms <= 40.0


def test_shapes_and_codes_for_both_bitrates() -> None:
    torch.manual_seed(0)
    model = Codec(SMALL)
    audio = torch.randn(2, 16000 - 100) * 0.1  # padded up to whole frames
    out = model(audio)
    assert out["audio"].shape == (2, 16000) and out["codes"].shape == (2, 50, 2, 2)
    model.eval()
    codes = model.encode(audio, stages=1)
    assert codes.shape == (2, 50, 2, 1) and int(codes.max()) < 64
    assert model.decode(codes).shape == (2, 16000)


def test_output_never_depends_on_input_more_than_the_latency_ahead() -> None:
    torch.manual_seed(0)
    model = Codec(SMALL).eval()
    x = torch.randn(1, 16000) * 0.1
    y = x.clone()
    y[:, 8000:] = torch.randn(1, 8000) * 0.1
    diff = (model.decode(model.encode(x)) - model.decode(model.encode(y))).abs()[0]
    first = int(torch.nonzero(diff > 1e-6)[0])
    assert 8000 - first <= SMALL.latency_ms * 16 and first < 8000


def test_synthesis_window_reconstructs_a_spectrum_exactly() -> None:
    cfg = CodecConfig()
    w = np.sqrt(_periodic_hann(cfg.n_fft))
    a = torch.randn(1, 3200)
    spec = F.conv1d(F.pad(a[:, None], (cfg.n_fft - cfg.hop, 0)), _as_kernel(_dft(cfg.n_fft, w)), stride=cfg.hop)
    rec = F.conv_transpose1d(spec, _as_kernel(_inverse_dft(cfg.n_fft, w)), stride=cfg.hop)[:, 0]
    rec = rec[:, cfg.n_fft - cfg.hop:][:, :3200]
    assert torch.allclose(rec[:, :-cfg.hop], a[:, :-cfg.hop], atol=1e-5)


def test_grvq_codes_decode_to_the_quantized_latent() -> None:
    torch.manual_seed(0)
    q = GRVQ(dim=16, groups=2, stages=2, codebook_size=32).train()
    z = torch.randn(4, 16, 25)
    for _ in range(3):
        quantized, codes, loss = q(z)
    q.eval()
    quantized, codes, loss = q(z)
    assert codes.shape == (4, 25, 2, 2) and loss.item() > 0
    assert torch.allclose(q.decode(codes), quantized, atol=1e-5)
    assert torch.equal(q.encode(z), codes)
    # The first stage alone is a coarser version of the same latent.
    err1 = (q.decode(codes[..., :1]) - z).pow(2).mean()
    err2 = (q.decode(codes) - z).pow(2).mean()
    assert err2 < err1


def test_grvq_passes_gradients_straight_through() -> None:
    q = GRVQ(dim=8, groups=2, stages=1, codebook_size=8)
    z = torch.randn(2, 8, 5, requires_grad=True)
    quantized, _, loss = q(z)
    (quantized.sum() + loss).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_dead_codebook_entries_are_restarted_on_data() -> None:
    torch.manual_seed(0)
    book = EMACodebook(size=16, dim=4, decay=0.5)
    x = torch.randn(64, 4) + 5.0  # far from where any entry could be after init
    book.update(x, book.encode(x))  # first call initialises from the data
    book.embedding[3] = -100.0  # an entry nothing will ever pick
    for _ in range(6):
        book.update(x, book.encode(x))
    assert book.embedding[3].min() > 0  # restarted onto a data vector
