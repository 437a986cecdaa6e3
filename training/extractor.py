"""Extractor recipe: binaural scenes -> the target's image at both ears, conditioned on a speaker
embedding; the enrollment encoder learns, at the same time, to give from a noisy binaural
enrollment the d-vector the teacher gives from clean speech.

`hark train extractor --config training/configs/extractor.yaml [--resume] [--device cuda --batch-size 64 --mix-on-device]`

Losses: the separator's negative SNR per ear (soft-capped at `snr_cap_db`, so solved examples stop
dominating), and the encoder's cosine distance to the teacher. The separator is conditioned on the
teacher's d-vector, except on some of the examples the encoder sees, where it gets the encoder's
(detached) output: it learns the teacher's space and to tolerate the encoder's errors.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import yaml
from pydantic import BaseModel, Field
from torch.utils.data import Dataset

from models.extractor import Extractor, ExtractorConfig
from core.extractor_enroll import enrollment_mels
from training.data.rooms import RoomBank
from training.data.scenes import DEFAULT_NOISE_DIR, SceneConfig, SceneRenderer, Voices, load_noises
from training.data.spatialise import SIDES, mix_side, pack
from training.data.speech import DEFAULT_SOURCES
from training.enroll_features import first_window_mels
from training.loop import LoopConfig, add_loop_arguments, apply_loop_arguments, fit
from training.recipe_files import default_config, resolve_config

SAMPLE_RATE = 16000


class DataConfig(BaseModel):
    bank: str = "data/extractor/rooms_train.npz"      # `hark data extractor` writes these
    dvectors: str = "data/extractor/dvectors_train.npz"
    noise_dir: str | None = DEFAULT_NOISE_DIR
    seconds: float = 2.0
    enroll_seconds: float = 1.6                        # one d-vector window
    scenes_per_epoch: int = 8000
    interferers: tuple[int, int] = (1, 2)
    interferer_db: tuple[float, float] = (-5.0, 5.0)
    snr_db: tuple[float, float] = (0.0, 20.0)
    # Workers send dry crops and BRIRs; the convolutions, the mix and the enrollment mels run on
    # the training device (training/data/spatialise.py): for a GPU, whose CPU workers cannot keep up.
    mix_on_device: bool = False


class LossConfig(BaseModel):
    enroll: float = 10.0
    # The enrollment LSTM's backward costs as much per example as the separator's, so it learns
    # from the first `enroll_examples` of each batch; it embeds every example without gradient.
    enroll_examples: int = 4
    # The separator hears the teacher's d-vector only w.p. teacher_prob, else the encoder's own
    # embedding: one 1.6 s window, even of dry speech, sits at cosine ~0.8 from the teacher, and a
    # separator that mostly heard the exact teacher vectors leaned on a code it is never served.
    teacher_prob: float = 0.1
    snr_cap_db: float = 30.0


class ExtractorRecipe(BaseModel):
    run_dir: str = "runs/extractor"
    data: list[str] = Field(default_factory=lambda: list(DEFAULT_SOURCES))
    scenes: DataConfig = Field(default_factory=DataConfig)
    model: dict = Field(default_factory=dict)
    loss: LossConfig = Field(default_factory=LossConfig)
    loop: LoopConfig = Field(default_factory=LoopConfig)

    @classmethod
    def from_yaml(cls, path: Path) -> "ExtractorRecipe":
        return cls.model_validate(yaml.safe_load(Path(path).read_text()) or {})


class TrainingScenes(Dataset):
    """Random scenes; scene i of epoch e depends only on (seed, e, i). With `dry`, each item is the
    scene before the room, packed by `training.data.spatialise.pack`, for `ExtractorLoss` to mix
    on the device; the same (seed, e, i) gives the same scene either way."""

    def __init__(self, renderer: SceneRenderer, length: int, seconds: float, enroll_seconds: float, seed: int = 0,
                 dry: bool = False):
        self.renderer, self.length, self.seconds, self.enroll_seconds = renderer, length, seconds, enroll_seconds
        self.seed, self.epoch, self.dry = seed, 0, dry
        self.taps = renderer.bank.max_taps

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, i])
        if self.dry:
            drawn = self.renderer.draw(rng, self.seconds, self.enroll_seconds)
            return pack(drawn, self.renderer.bank, self.renderer.cfg.interferers[1], self.taps)
        scene = self.renderer.render(rng, self.seconds, self.enroll_seconds)
        mels = enrollment_mels(scene["enrollment"])[0]
        return {"mixture": torch.from_numpy(scene["mixture"].astype(np.float32)),
                "target": torch.from_numpy(scene["target"].astype(np.float32)),
                "enroll_mels": torch.from_numpy(mels), "dvector": torch.from_numpy(scene["dvector"])}


def snr_db(estimate: torch.Tensor, target: torch.Tensor, cap_db: float | None = None) -> torch.Tensor:
    """SNR per example and channel (..., samples) -> (...); with `cap_db`, a soft ceiling."""
    signal = target.pow(2).sum(-1)
    error = (target - estimate).pow(2).sum(-1)
    if cap_db is not None:
        error = error + signal * 10 ** (-cap_db / 10)
    return 10 * torch.log10((signal + 1e-9) / (error + 1e-9))


@torch.no_grad()
def si_snri_db(estimate: torch.Tensor, target: torch.Tensor, mixture: torch.Tensor) -> torch.Tensor:
    """SI-SNR improvement per example and channel, as `hark eval extractor` scores it. Logged beside
    the loss because the loss's SNR flatters a model that only scales the mixture: the best single
    gain per scene already lifts it from -2.7 to +2.3 dB on the training scenes."""
    t = target - target.mean(-1, keepdim=True)
    energy = t.pow(2).sum(-1, keepdim=True) + 1e-9

    def si_snr(x: torch.Tensor) -> torch.Tensor:
        x = x - x.mean(-1, keepdim=True)
        part = (x * t).sum(-1, keepdim=True) / energy * t
        return 10 * torch.log10((part.pow(2).sum(-1) + 1e-9) / ((x - part).pow(2).sum(-1) + 1e-9))
    return si_snr(estimate) - si_snr(mixture)


@torch.no_grad()
def mix_on_device(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A packed dry batch -> the batch the CPU path gives."""
    mixture, target = mix_side(batch, SIDES["scene"])
    enrollment, _ = mix_side(batch, SIDES["enrollment"])
    return {"mixture": mixture, "target": target, "enroll_mels": first_window_mels(enrollment),
            "dvector": batch["dvector"]}


class ExtractorLoss:
    def __init__(self, cfg: LossConfig):
        self.cfg = cfg

    def __call__(self, net: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        if "mixture" not in batch:  # dry scenes (scenes.mix_on_device): the room and the mix happen here
            batch = mix_on_device(batch)
        model = net.module if hasattr(net, "module") else net
        teacher, mels = batch["dvector"], batch["enroll_mels"]
        k = min(self.cfg.enroll_examples, teacher.shape[0])
        student = model.enroll(mels[:k])
        enroll = (1 - (student * teacher[:k]).sum(-1)).mean()
        with torch.no_grad():
            rest = model.enroll(mels[k:]) if k < len(mels) else student[:0]
        heard = torch.cat([student.detach(), rest])
        use_teacher = (torch.rand(len(heard), 1, device=teacher.device) < self.cfg.teacher_prob).float()
        embedding = use_teacher * teacher + (1 - use_teacher) * heard
        estimate = net(batch["mixture"], embedding)
        snr = snr_db(estimate, batch["target"], self.cfg.snr_cap_db)
        total = -snr.mean() + self.cfg.enroll * enroll
        return total, {"snr_db": snr.mean().item(), "enroll_cos": 1 - enroll.item(),
                       "si_snri_db": si_snri_db(estimate.detach(), batch["target"], batch["mixture"]).mean().item()}


def train(recipe: ExtractorRecipe, resume: bool = False) -> dict:
    mcfg = ExtractorConfig(**recipe.model)
    model = Extractor(mcfg)
    if not (resume and (Path(recipe.run_dir) / "last.pt").exists()):  # a resume brings its own weights
        model.enroll.load_resemblyzer()
    s = recipe.scenes
    voices = Voices.load(recipe.data, "train", s.dvectors)
    if not np.isfinite(voices.dvectors).all():  # a table of the probe's (--make-dvectors) has one speed only
        raise ValueError(f"{s.dvectors} lacks d-vectors at some speeds (NaN): use `hark data extractor`'s table")
    bank = RoomBank.load(s.bank)
    renderer = SceneRenderer(voices, bank, load_noises(s.noise_dir, "train"),
                             SceneConfig(interferers=s.interferers, interferer_db=s.interferer_db, snr_db=s.snr_db))
    dataset = TrainingScenes(renderer, s.scenes_per_epoch, s.seconds, s.enroll_seconds, seed=recipe.loop.seed,
                             dry=s.mix_on_device)
    extra = {"recipe": recipe.model_dump(), "model_config": mcfg.to_dict(),
             "data_summary": {"speech_dirs": recipe.data, "speakers": len(voices.audio),
                              "speech_minutes": round(sum(len(a) for a in voices.audio) / SAMPLE_RATE / 60, 1),
                              "rooms": bank.rooms, "head": bank.head, "noise_dir": s.noise_dir}}
    summary = fit(model, ExtractorLoss(recipe.loss), dataset, recipe.loop, Path(recipe.run_dir),
                  resume=resume, extra_state=extra)
    return {**summary, "data": extra["data_summary"]}


def add_arguments_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=default_config("extractor"),
                        help="recipe YAML (speech dirs, room bank, scene mix, model size, loop settings)")
    parser.add_argument("--mix-on-device", action="store_true",
                        help="set scenes.mix_on_device: convolve, mix and compute enrollment mels on the "
                             "training device (a GPU), not in the data workers")
    # Where the data lives on another machine (training/gpu/resume.sh points these into .gpu/).
    parser.add_argument("--bank", help="override scenes.bank (the training room bank .npz)")
    parser.add_argument("--dvectors", help="override scenes.dvectors (the teacher d-vector table .npz)")
    parser.add_argument("--noise-dir", help="override scenes.noise_dir (training noise recordings)")
    add_loop_arguments(parser)


def run_train(args: argparse.Namespace) -> int:
    recipe = ExtractorRecipe.from_yaml(resolve_config(args.config))
    apply_loop_arguments(recipe, args)
    if getattr(args, "mix_on_device", False):
        recipe.scenes.mix_on_device = True
    for key in ("bank", "dvectors", "noise_dir"):
        if getattr(args, key, None):
            setattr(recipe.scenes, key, getattr(args, key))
    summary = train(recipe, resume=args.resume)
    print(f"trained {summary['steps']} steps in {summary['wall_s']} s on {summary['data']['speakers']} speakers, "
          f"{summary['data']['rooms']} rooms; checkpoint {recipe.run_dir}/last.pt")
    return 0
