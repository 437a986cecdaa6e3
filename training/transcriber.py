"""Transcriber recipe: rendered music -> onset/note/contour posteriorgrams.

`hark train transcriber --config training/configs/transcriber.yaml [--resume] [--device cuda]`
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import yaml
from pydantic import BaseModel, Field
from torch.nn import functional as F

from models.transcriber import Transcriber, TranscriberConfig
from training.data.augment import AugmentConfig
from training.data.music_windows import MusicWindows
from training.loop import LoopConfig, add_loop_arguments, apply_loop_arguments, fit
from training.recipe_files import default_config, resolve_config


class LossConfig(BaseModel):
    onset_pos_weight: float = 10.0  # onsets are ~1 frame in 100: without weighting they are ignored
    note_pos_weight: float = 2.0
    contour_weight: float = 0.5
    # Hard negatives of the note head, the two ways it over-reports on real recordings: keys an
    # overtone of a sounding note lands on, and a key's first frames after its note has ended
    # (release and room tails). 1.0 leaves them weighted like any other negative.
    overtone_neg_weight: float = 1.0
    release_neg_weight: float = 1.0
    release_ms: float = 150.0
    # Schedule progress (0-1, as the learning rate anneals) from which the two weights above apply.
    # Late negatives trim what a model already finds; from the start they cost recall (README).
    hard_negatives_from: float = 0.0
    # Onsets of a key that sounded (held, or ringing under the pedal) within `restrike_ms` before:
    # soft re-strikes, which the onset head reports weakest, weigh this much more (1.0: like others).
    restrike_onset_weight: float = 1.0
    restrike_ms: float = 100.0


class TranscriberRecipe(BaseModel):
    run_dir: str = "runs/transcriber"
    data: list[str] = Field(default_factory=lambda: ["data/music/train"])
    # Share of the training windows drawn from each of `data` (default: in proportion to audio).
    data_weights: list[float] | None = None
    validation_every: int = 50
    validation_data: list[str] = Field(default_factory=list)  # whole sets never trained on (export's choices)
    windows_per_epoch: int = 4000
    model: dict = Field(default_factory=dict)
    augment: dict = Field(default_factory=dict)
    loss: LossConfig = Field(default_factory=LossConfig)
    loop: LoopConfig = Field(default_factory=LoopConfig)

    @classmethod
    def from_yaml(cls, path: Path) -> "TranscriberRecipe":
        return cls.model_validate(yaml.safe_load(Path(path).read_text()) or {})


OVERTONE_SEMITONES = (12, 19, 24, 28, 31)  # harmonics 2-6 of a note, rounded to keys


def _shifted_max(x: torch.Tensor, shifts: range | tuple[int, ...], dim: int) -> torch.Tensor:
    """max over s of x moved s steps forward along dim (zeros shifted in)."""
    out = torch.zeros_like(x)
    for s in shifts:
        moved = torch.zeros_like(x)
        n = x.shape[dim] - s
        if n > 0:
            moved.narrow(dim, s, n).copy_(x.narrow(dim, 0, n))
        out = torch.maximum(out, moved)
    return out


def note_negative_weights(note: torch.Tensor, cfg: LossConfig, frame_rate: float) -> torch.Tensor | None:
    """Per-element weights [B, T, keys] for the note loss, or None when all are 1."""
    if cfg.overtone_neg_weight == 1.0 and cfg.release_neg_weight == 1.0:
        return None
    silent = 1.0 - note
    weight = torch.ones_like(note)
    if cfg.overtone_neg_weight != 1.0:
        overtone = _shifted_max(note, OVERTONE_SEMITONES, dim=2) * silent
        weight = weight + (cfg.overtone_neg_weight - 1.0) * overtone
    if cfg.release_neg_weight != 1.0:
        frames = max(1, round(cfg.release_ms / 1000 * frame_rate))
        release = _shifted_max(note, range(1, frames + 1), dim=1) * silent
        weight = torch.maximum(weight, 1.0 + (cfg.release_neg_weight - 1.0) * release)
    return weight


def restrike_onset_weights(batch: dict, cfg: LossConfig, frame_rate: float) -> torch.Tensor | None:
    """Per-element weights [B, T, keys] for the onset loss, or None when all are 1."""
    if cfg.restrike_onset_weight == 1.0:
        return None
    sounding = batch["note"]
    if "note_mask" in batch:
        sounding = torch.maximum(sounding, 1.0 - batch["note_mask"])
    frames = max(1, round(cfg.restrike_ms / 1000 * frame_rate))
    before = _shifted_max(sounding, range(1, frames + 1), dim=1)
    return 1.0 + (cfg.restrike_onset_weight - 1.0) * batch["onset"] * before


class TranscriberLoss:
    """Onset, note and contour cross-entropies; the note head's hard negatives from
    `cfg.hard_negatives_from` of the run on (the loop reports progress through `set_progress`)."""

    def __init__(self, cfg: LossConfig, frame_rate: float):
        self.cfg, self.frame_rate, self.progress = cfg, frame_rate, 0.0

    def set_progress(self, progress: float) -> None:
        self.progress = progress

    def __call__(self, net: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        cfg = self.cfg
        out = net(batch["audio"])
        onset = F.binary_cross_entropy_with_logits(
            out["onset"], batch["onset"], weight=restrike_onset_weights(batch, cfg, self.frame_rate),
            pos_weight=torch.tensor(cfg.onset_pos_weight, device=out["onset"].device))
        hard = self.progress >= cfg.hard_negatives_from
        weight = note_negative_weights(batch["note"], cfg, self.frame_rate) if hard else None
        if "note_mask" in batch:  # frames a pedal keeps ringing after the key came up: not learned from
            weight = batch["note_mask"] if weight is None else weight * batch["note_mask"]
        note = F.binary_cross_entropy_with_logits(
            out["note"], batch["note"], weight=weight,
            pos_weight=torch.tensor(cfg.note_pos_weight, device=out["note"].device))
        contour = F.binary_cross_entropy_with_logits(out["contour"], batch["contour"])
        total = onset + note + cfg.contour_weight * contour
        return total, {"onset": onset.item(), "note": note.item(), "contour": contour.item()}


def train(recipe: TranscriberRecipe, resume: bool = False) -> dict:
    mcfg = TranscriberConfig(**recipe.model)
    model = Transcriber(mcfg)
    dataset = MusicWindows(recipe.data, mcfg.window_samples, mcfg.hop, mcfg.sample_rate, recipe.windows_per_epoch,
                           AugmentConfig(**recipe.augment), seed=recipe.loop.seed,
                           validation_every=recipe.validation_every, dir_weights=recipe.data_weights)
    extra = {"recipe": recipe.model_dump(), "model_config": mcfg.to_dict()}
    loss = TranscriberLoss(recipe.loss, mcfg.frame_rate)
    summary = fit(model, loss, dataset, recipe.loop, Path(recipe.run_dir), resume=resume, extra_state=extra,
                  on_progress=loss.set_progress)
    hours = sum(c.frames for c in dataset.clips) / mcfg.sample_rate / 3600
    return {**summary, "data": {"dirs": recipe.data, "clips": len(dataset.clips), "hours": round(hours, 2)}}


def add_arguments_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=default_config("transcriber"),
                        help="recipe YAML (data dirs, model size, augmentation, loop settings)")
    parser.add_argument("--overtone-neg-weight", type=float, help="override loss.overtone_neg_weight")
    parser.add_argument("--release-neg-weight", type=float, help="override loss.release_neg_weight")
    parser.add_argument("--hard-negatives-from", type=float, help="override loss.hard_negatives_from")
    parser.add_argument("--restrike-onset-weight", type=float, help="override loss.restrike_onset_weight")
    add_loop_arguments(parser)


def apply_arguments(recipe: TranscriberRecipe, args: argparse.Namespace) -> None:
    """The command line's overrides: the loop's, and the hard-negative weights a fine-tune adds."""
    apply_loop_arguments(recipe, args)
    for name in ("overtone_neg_weight", "release_neg_weight", "hard_negatives_from", "restrike_onset_weight"):
        if getattr(args, name, None) is not None:
            setattr(recipe.loss, name, getattr(args, name))


def run_train(args: argparse.Namespace) -> int:
    recipe = TranscriberRecipe.from_yaml(resolve_config(args.config))
    apply_arguments(recipe, args)
    summary = train(recipe, resume=args.resume)
    print(f"trained {summary['steps']} steps in {summary['wall_s']} s; checkpoint {recipe.run_dir}/last.pt")
    return 0
