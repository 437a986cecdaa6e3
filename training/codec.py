"""Codec recipe: speech -> GRVQ codes -> speech, with spectral, adversarial and commitment losses.

`hark train codec --config training/configs/codec.yaml [--resume] [--device cuda --batch-size 64]`

The first `adversarial_start` steps train on the spectral losses alone (a GAN cannot teach a
decoder that does not yet produce speech); the critics then join. With probability
`quantizer_dropout` a batch uses only the first residual stage of each group, so the same model
serves 1 kbps and 2 kbps.

The phase weights (`phase_ip`, `phase_gd`, `phase_iaf`, `consistency`; 0 in the shipped recipe)
add regression losses on the decoder's own phase (training/losses.py), which converge without a
critic: training/configs/codec-phase.yaml fine-tunes the shipped model with them.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import yaml
from pydantic import BaseModel, Field

from models.codec import Codec, CodecConfig
from models.discriminators import Critics
from training.data.speech import DEFAULT_SOURCES, SpeechWindows
from training.loop import CriticStep, LoopConfig, add_loop_arguments, apply_loop_arguments, fit
from training.losses import SpectralLoss, consistency_loss, critic_loss, generator_losses, phase_losses
from training.recipe_files import default_config, resolve_config


class LossConfig(BaseModel):
    mel: float = 15.0
    stft: float = 5.0
    convergence: float = 1.0
    adversarial: float = 1.0
    feature_matching: float = 2.0
    commitment: float = 1.0
    adversarial_start: int = 2000
    critic_seconds: float = 0.32  # critics judge a random crop: a third of the cost, same verdicts
    quantizer_dropout: float = 0.3
    # Phase (training/losses.py phase_losses, consistency_loss), on the decoder's own STFT grid.
    # 0 (the shipped recipe): not computed at all.
    phase_ip: float = 0.0
    phase_gd: float = 0.0
    phase_iaf: float = 0.0
    consistency: float = 0.0


class DataConfig(BaseModel):
    window_seconds: float = 0.96
    windows_per_epoch: int = 4000
    level_db: tuple[float, float] = (-35.0, -15.0)
    speed_prob: float = 0.5
    speed_range: float = 0.1


class CodecRecipe(BaseModel):
    run_dir: str = "runs/codec"
    data: list[str] = Field(default_factory=lambda: list(DEFAULT_SOURCES))
    windows: DataConfig = Field(default_factory=DataConfig)
    model: dict = Field(default_factory=dict)
    loss: LossConfig = Field(default_factory=LossConfig)
    loop: LoopConfig = Field(default_factory=LoopConfig)

    @classmethod
    def from_yaml(cls, path: Path) -> "CodecRecipe":
        return cls.model_validate(yaml.safe_load(Path(path).read_text()) or {})


def _split(outputs: list, n: int) -> tuple[list, list]:
    """Critic outputs on cat([real, fake]) -> (real part, fake part)."""
    real = [(logits[:n], [f[:n] for f in feats]) for logits, feats in outputs]
    fake = [(logits[n:], [f[n:] for f in feats]) for logits, feats in outputs]
    return real, fake


def phase_terms(net: torch.nn.Module, audio: torch.Tensor, out: dict) -> dict[str, torch.Tensor]:
    """The phase and consistency losses of a Codec forward pass `out` on `audio` [B, T], the
    target analysed on the decoder's own grid (its synthesis window, hop and causal framing)."""
    codec = getattr(net, "module", net)  # under DDP the Codec is net.module
    with torch.no_grad():
        tre, tim = codec.decoder.analyse(codec.pad(audio))  # padded as Codec.forward pads it
    n = min(tre.shape[-1], out["phase"].shape[-1])
    p = phase_losses(out["phase"][..., :n], torch.atan2(tim, tre)[..., :n], torch.hypot(tre, tim)[..., :n])
    re_again, im_again = codec.decoder.analyse(out["audio"])
    return {"phase_ip": p["ip"], "phase_gd": p["gd"], "phase_iaf": p["iaf"],
            "consistency": consistency_loss(out["re"], out["im"], re_again, im_again)}


class CodecLoss:
    def __init__(self, cfg: LossConfig, sample_rate: int):
        self.cfg, self.sample_rate = cfg, sample_rate
        self.spectral = SpectralLoss(sample_rate)

    def __call__(self, net: torch.nn.Module, batch: dict, critic: CriticStep, step: int) -> tuple[torch.Tensor, dict]:
        cfg, audio = self.cfg, batch["audio"]
        self.spectral.to(audio.device)
        stages = 1 if torch.rand(()) < cfg.quantizer_dropout else None
        out = net(audio, stages)
        fake = out["audio"]
        spec = self.spectral(fake, audio)
        total = (cfg.mel * spec["mel"] + cfg.stft * spec["stft"] + cfg.convergence * spec["convergence"]
                 + cfg.commitment * out["commitment"])
        parts = {k: v.item() for k, v in spec.items()} | {"commitment": out["commitment"].item()}
        weights = {k: getattr(cfg, k) for k in ("phase_ip", "phase_gd", "phase_iaf", "consistency")}
        if any(weights.values()):
            phase = phase_terms(net, audio, out)
            total = total + sum(w * phase[k] for k, w in weights.items())
            parts |= {k: v.item() for k, v in phase.items()}
        if step >= cfg.adversarial_start:
            n, crop = audio.shape[0], min(int(cfg.critic_seconds * self.sample_rate), audio.shape[-1])
            at = int(torch.randint(0, audio.shape[-1] - crop + 1, ()))
            audio, fake = audio[:, at:at + crop], fake[:, at:at + crop]
            d_loss = critic_loss(*_split(critic.net(torch.cat([audio, fake.detach()])), n))
            critic.update(d_loss)
            real, generated = _split(critic.net(torch.cat([audio, fake])), n)
            g = generator_losses(real, generated)
            total = total + cfg.adversarial * g["adversarial"] + cfg.feature_matching * g["feature_matching"]
            parts |= {"critic": d_loss.item()} | {k: v.item() for k, v in g.items()}
        return total, parts


def train(recipe: CodecRecipe, resume: bool = False) -> dict:
    mcfg = CodecConfig(**recipe.model)
    model, critics = Codec(mcfg), Critics()
    w = recipe.windows
    window = round(w.window_seconds * mcfg.sample_rate / mcfg.frame_hop) * mcfg.frame_hop
    dataset = SpeechWindows(recipe.data, window, w.windows_per_epoch, seed=recipe.loop.seed,
                            level_db=w.level_db, speed_prob=w.speed_prob, speed_range=w.speed_range)
    extra = {"recipe": recipe.model_dump(), "model_config": mcfg.to_dict(),
             "data_summary": {"dirs": recipe.data, "files": len(dataset.files),
                              "minutes": round(dataset.seconds / 60, 1)}}
    summary = fit(model, CodecLoss(recipe.loss, mcfg.sample_rate), dataset, recipe.loop, Path(recipe.run_dir),
                  resume=resume, extra_state=extra, critic=critics)
    return {**summary, "data": extra["data_summary"]}


def add_arguments_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=default_config("codec"),
                        help="recipe YAML (speech dirs, model size, losses, loop settings)")
    add_loop_arguments(parser)


def run_train(args: argparse.Namespace) -> int:
    recipe = CodecRecipe.from_yaml(resolve_config(args.config))
    apply_loop_arguments(recipe, args)
    summary = train(recipe, resume=args.resume)
    print(f"trained {summary['steps']} steps in {summary['wall_s']} s on {summary['data']['minutes']} min "
          f"of speech; checkpoint {recipe.run_dir}/last.pt")
    return 0
