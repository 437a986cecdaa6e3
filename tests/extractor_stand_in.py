"""A tiny extractor with random weights, exported by the real exporter: for tests of everything
downstream of export (model wrapper, HTTP service, stream, demo). Builds in a few seconds.

    from extractor_stand_in import build_stand_in_extractor
    model_dir = build_stand_in_extractor(tmp_path / "extractor")
"""
from __future__ import annotations

import json

from pathlib import Path

import numpy as np

SR = 16000


def binaural_voice(seconds: float, f0: float = 140.0, seed: int = 0) -> np.ndarray:
    """(2, N) float32: a harmonic 'voice' in front (both ears) plus a little noise."""
    t = np.arange(int(seconds * SR)) / SR
    pitch = f0 * (1 + 0.1 * np.sin(2 * np.pi * 0.8 * t))
    voice = sum(np.sin(2 * np.pi * k * np.cumsum(pitch) / SR) / k for k in range(1, 12))
    voice *= 0.1 * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    noise = 0.01 * np.random.default_rng(seed).standard_normal((2, t.size))
    return (voice[None] + noise).astype(np.float32)


def stand_in_checkpoint(path: Path, seed: int = 0, **config: object) -> Path:
    """A checkpoint in the format `training.loop.fit` writes, of a tiny randomly weighted model.
    Every weight is randomised (the model zero-initialises FiLM and nearly zeroes the mask), so the
    output depends on the mixture and the embedding and parity checks compare real numbers.
    `config` overrides the tiny GRU configuration (e.g. separator="grid")."""
    import torch

    from models.extractor import Extractor, ExtractorConfig

    torch.manual_seed(seed)
    cfg = ExtractorConfig(**{"hidden": 32, "layers": 2, "enroll_hidden": 32, "enroll_layers": 1, **config})
    model = Extractor(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.1)
        bias = model.separator.out.bias.view(2, 2, -1)  # ears, (real, imag)[, bins]
        bias.zero_()
        bias[:, 0] = 0.5  # real mask part ~0.5 at both ears: a visible output
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "model_config": cfg.to_dict(), "recipe": {"stand_in": True},
                "data_summary": {"stand_in": "random weights, no training data"}, "step": 0, "epoch": 0,
                "wall_s": 0.0}, path)
    return path


def build_stand_in_extractor(directory: Path, **config: object) -> Path:
    """Export a tiny random extractor to `directory` (card.json + three graphs); returns it."""
    from export.extractor import export

    checkpoint = stand_in_checkpoint(directory.parent / f"{directory.name}_stand_in.pt", **config)
    side = 0.5 * binaural_voice(1.0, f0=230.0, seed=1)
    side[1] = 0.6 * np.roll(side[1], 8)  # a talker to the left: later and quieter at the right ear
    mixture = binaural_voice(1.0) + side
    export(checkpoint, directory, mixture=mixture, enrollment=binaural_voice(1.7, seed=2), register=False)
    # What `hark eval extractor` records, with an odd value the services must repeat from the card.
    card = json.loads((directory / "card.json").read_text())
    card["evaluation"] = {"heldout_si_snri_db": -0.4321, "scenes": 3, "set": "heldout-scenes"}
    (directory / "card.json").write_text(json.dumps(card, indent=2))
    return directory
