"""One training loop for every family.

AdamW with warm-up and cosine decay, gradient clipping, a checkpoint every few minutes that
`resume` continues from exactly (model, optimizer, schedule, step, epoch), a progress bar, metrics
as JSON lines, and DDP when started under `torchrun` (gloo on CPU, NCCL on GPU). Only rank 0
writes files.

Adversarial recipes pass a `critic` (the discriminators): it gets its own optimizer on the same
schedule, is saved in every checkpoint beside the model (so anyone can fine-tune both), and the
loss function trains it through `CriticStep.update` before computing the model's loss.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from pydantic import BaseModel
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm


class LoopConfig(BaseModel):
    steps: int = 20000
    max_minutes: float | None = None  # stop early (with a checkpoint) when the time budget is spent
    # Anneal by whichever budget runs out first, steps or max_minutes: the same config then ends
    # with a decayed learning rate on a slow CPU and on a fast GPU.
    anneal_by_time: bool = False
    # On a resume, warm up and anneal again over what is left of the budget (steps and minutes)
    # rather than carry on the old curve: a CPU-trained model fine-tuned on a GPU, say.
    restart_schedule: bool = False
    batch_size: int = 16
    lr: float = 3e-3
    critic_lr: float | None = None  # adversarial recipes only; default lr
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    grad_clip: float = 1.0
    checkpoint_minutes: float = 5.0
    log_every: int = 20
    num_workers: int = 1
    device: str = "auto"  # auto | cpu | cuda
    threads: int | None = None  # torch intra-op threads on CPU
    seed: int = 0


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> Dist:
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Dist()
    backend = "nccl" if device == "cuda" else "gloo"
    dist.init_process_group(backend)
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but torch sees no GPU")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _device_name(device: torch.device, world: int) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return name if world == 1 else f"{world} x {name}"


def schedule_progress(step: int, cfg: LoopConfig, minutes: float = 0.0) -> float:
    """How far past warm-up a run is through its budget, 0 to 1: what the learning rate anneals by."""
    progress = (step - cfg.warmup_steps) / max(cfg.steps - cfg.warmup_steps, 1)
    if cfg.anneal_by_time and cfg.max_minutes:
        progress = max(progress, minutes / cfg.max_minutes)
    return min(max(progress, 0.0), 1.0)


def lr_at(step: int, cfg: LoopConfig, minutes: float = 0.0) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * schedule_progress(step, cfg, minutes))))


def run_stage(step: int, wall_s: float, loop: dict, data: dict | None) -> dict:
    """One run in a checkpoint's history (a resume starts a new one): where it ended and with
    which budget, so a model trained in stages (a CPU run fine-tuned on a GPU, say) says so."""
    keys = ("device", "batch_size", "lr", "steps", "max_minutes", "num_workers", "restart_schedule")
    return {"until_step": step, "wall_s": round(wall_s, 1), **{k: loop.get(k) for k in keys}, "data": data or {}}


def earlier_stages(state: dict) -> list[dict]:
    """The runs that made a checkpoint being resumed; one saved before histories were kept
    counts as a single run described by its own recipe."""
    if "stages" in state:
        return list(state["stages"])
    return [run_stage(state["step"], state.get("wall_s", 0.0), state.get("recipe", {}).get("loop", {}),
                      state.get("data_summary"))]


def save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # never leave a half-written checkpoint behind an interruption


def slim_checkpoint(src: Path, dst: Path, dtype: torch.dtype = torch.float16) -> None:
    """Weights only, floats cast to `dtype`: a checkpoint small enough to commit or carry.
    Resuming from it continues the schedule with fresh optimizer moments."""
    state = torch.load(src, map_location="cpu", weights_only=False)
    for key in ("optimizer", "critic_optimizer"):
        state.pop(key, None)
    for key in ("model", "critic"):
        if key in state:
            state[key] = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state[key].items()}
    save_checkpoint(dst, state)


class CriticStep:
    """Handed to an adversarial loss function: the (DDP-wrapped) critic and one update of it."""

    def __init__(self, net: torch.nn.Module, opt: torch.optim.Optimizer, params: list, grad_clip: float):
        self.net, self.opt, self.params, self.grad_clip = net, opt, params, grad_clip

    def update(self, loss: torch.Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)  # the model's backward must not leave grads here


def _load_float(module: torch.nn.Module, weights: dict) -> None:
    own = module.state_dict()
    module.load_state_dict({k: v.to(own[k].dtype) if k in own else v for k, v in weights.items()})


def fit(model: torch.nn.Module, loss_fn: Callable[..., tuple[torch.Tensor, dict]],
        dataset: Dataset, cfg: LoopConfig, run_dir: Path, resume: bool = False,
        extra_state: dict | None = None, critic: torch.nn.Module | None = None,
        on_progress: Callable[[float], None] | None = None) -> dict:
    """Train `model` on `dataset`; returns a summary (steps, wall time, last losses).

    `loss_fn(model, batch)` returns the scalar loss and a dict of floats to log; with a `critic`
    it is called as `loss_fn(model, batch, critic_step, step)`. `on_progress`, if given, hears
    `schedule_progress` before every step (a loss whose terms change over the run).
    `extra_state` (config, data description) is stored in every checkpoint.
    """
    d = setup_distributed(cfg.device)
    device = resolve_device(cfg.device, d.local_rank)
    if cfg.threads and device.type == "cpu":
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed + d.rank)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run_dir / "last.pt"
    if device.type == "cuda":  # TF32 matmuls: ample precision for training, several times faster
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    critic_lr = cfg.critic_lr or cfg.lr
    if critic is not None:
        critic.to(device)
        critic_opt = torch.optim.AdamW(critic.parameters(), lr=critic_lr, betas=cfg.betas,
                                       weight_decay=cfg.weight_decay)
    step, epoch, wall_before, stages = 0, 0, 0.0, []
    if resume and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        _load_float(model, state["model"])
        if critic is not None and "critic" in state:
            _load_float(critic, state["critic"])
        if "optimizer" in state:
            opt.load_state_dict(state["optimizer"])
            if critic is not None and "critic_optimizer" in state:
                critic_opt.load_state_dict(state["critic_optimizer"])
        elif d.main:
            print("checkpoint has no optimizer state (a slim checkpoint): fresh optimizer moments")
        step, epoch, wall_before = state["step"], state["epoch"], state.get("wall_s", 0.0)
        stages = earlier_stages(state)
        if d.main:
            print(f"resumed from {ckpt_path} at step {step}")
    step0, wall0, schedule = 0, 0.0, cfg
    if cfg.restart_schedule and step > 0:
        step0, wall0 = step, wall_before
        schedule = cfg.model_copy(update={"steps": cfg.steps - step, "max_minutes": cfg.max_minutes and
                                          cfg.max_minutes - wall_before / 60})
    net = DistributedDataParallel(model) if d.world > 1 else model
    critic_net = critic_step = None
    if critic is not None:
        critic_net = DistributedDataParallel(critic) if d.world > 1 else critic
        critic_step = CriticStep(critic_net, critic_opt, list(critic.parameters()), cfg.grad_clip)
    if hasattr(dataset, "seed"):
        dataset.seed = cfg.seed * 1000 + d.rank  # ranks draw different windows
    loader_kw = dict(batch_size=cfg.batch_size, num_workers=cfg.num_workers, drop_last=True,
                     persistent_workers=False, pin_memory=device.type == "cuda")
    start = time.time()
    last_ckpt = start
    metrics_file = open(run_dir / "metrics.jsonl", "a") if d.main else None
    bar = tqdm(total=cfg.steps, initial=step, desc="train", unit="step", disable=not d.main, dynamic_ncols=True)
    logs: dict = {}
    samples = 0

    def checkpoint() -> None:
        if d.main:
            critic_state: dict[str, Any] = {} if critic is None else {
                "critic": critic.state_dict(), "critic_optimizer": critic_opt.state_dict()}
            wall = wall_before + time.time() - start
            run = run_stage(step, wall, {**cfg.model_dump(), "device": _device_name(device, d.world)},
                            (extra_state or {}).get("data_summary"))
            save_checkpoint(ckpt_path, {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                                        "epoch": epoch, "wall_s": wall, "stages": stages + [run],
                                        **critic_state, **(extra_state or {})})

    # SIGTERM/SIGINT (a session ending, Ctrl-C) finish the current step and write a checkpoint.
    interrupted = threading.Event()
    previous_handlers = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous_handlers[sig] = signal.signal(sig, lambda *_: interrupted.set())

    stop = False
    while step < cfg.steps and not stop:
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        for batch in DataLoader(dataset, shuffle=False, **loader_kw):
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            minutes = (wall_before - wall0 + time.time() - start) / 60
            lr = lr_at(step - step0, schedule, minutes)
            if on_progress is not None:
                on_progress(schedule_progress(step - step0, schedule, minutes))
            for g in opt.param_groups:
                g["lr"] = lr
            net.train()
            if critic_step is None:
                loss, parts = loss_fn(net, batch)
            else:
                for g in critic_opt.param_groups:
                    g["lr"] = lr * critic_lr / cfg.lr
                critic.train()
                loss, parts = loss_fn(net, batch, critic_step, step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            step += 1
            samples += cfg.batch_size * d.world
            logs = {k: logs.get(k, v) * 0.9 + v * 0.1 for k, v in {"loss": loss.item(), **parts}.items()}
            bar.update(1)
            if step % cfg.log_every == 0 and d.main:
                elapsed = time.time() - start
                bar.set_postfix(loss=f"{logs['loss']:.4f}")
                metrics_file.write(json.dumps({"step": step, "lr": lr, "grad_norm": float(gnorm),
                                               "wall_s": round(wall_before + elapsed, 1),
                                               "samples_per_s": round(samples / elapsed, 2),
                                               **{k: round(v, 5) for k, v in logs.items()}}) + "\n")
                metrics_file.flush()
            over_time = interrupted.is_set() or (
                cfg.max_minutes is not None and (wall_before + time.time() - start) > cfg.max_minutes * 60)
            if d.world > 1:  # every rank must stop on the same step or the others hang in all-reduce
                flag = torch.tensor([float(over_time)], device=device)
                dist.all_reduce(flag)
                over_time = bool(flag.item() > 0)
            if time.time() - last_ckpt > cfg.checkpoint_minutes * 60:
                checkpoint()
                last_ckpt = time.time()
            if step >= cfg.steps or over_time:
                stop = True
                break
        epoch += 1
    checkpoint()
    bar.close()
    if metrics_file:
        metrics_file.close()
    if d.world > 1:
        # Gloo's worker threads must be joined while the interpreter is alive: wait for rank 0's
        # checkpoint, drop the DDP wrappers (they hold the group, in cycles) and collect them.
        dist.barrier()
        net = critic_net = critic_step = None
        gc.collect()
        dist.destroy_process_group()
    # Processes forked later (a pool's workers) must die on SIGTERM again, not finish a step.
    for sig, handler in previous_handlers.items():
        signal.signal(sig, handler)
    return {"steps": step, "epochs": epoch, "wall_s": round(wall_before + time.time() - start, 1),
            "last": {k: round(v, 5) for k, v in logs.items()}}


def add_loop_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line overrides every recipe's `hark train` accepts."""
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt if it exists")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="override loop.device")
    parser.add_argument("--steps", type=int, help="override loop.steps")
    parser.add_argument("--max-minutes", type=float, help="override loop.max_minutes (stop with a checkpoint)")
    parser.add_argument("--batch-size", type=int, help="override loop.batch_size")
    parser.add_argument("--num-workers", type=int, help="override loop.num_workers (data loading processes)")
    parser.add_argument("--lr", type=float, help="override loop.lr, the peak learning rate (a critic keeps loop.critic_lr)")
    parser.add_argument("--restart-schedule", action="store_true",
                        help="with --resume: warm up and anneal again over the steps and minutes left")
    parser.add_argument("--anneal-by-time", action="store_true",
                        help="set loop.anneal_by_time: anneal by whichever of steps and max-minutes runs out first")
    parser.add_argument("--run-dir", help="override run_dir (checkpoints and metrics.jsonl)")
    parser.add_argument("--data", nargs="+", help="override the training set directories")


def apply_loop_arguments(recipe: Any, args: argparse.Namespace) -> None:
    """Apply `add_loop_arguments` overrides to a recipe with `loop`, `run_dir` and `data` fields."""
    for key in ("device", "steps", "max_minutes", "batch_size", "num_workers", "lr"):
        if getattr(args, key, None) is not None:
            setattr(recipe.loop, key, getattr(args, key))
    for flag in ("restart_schedule", "anneal_by_time"):
        if getattr(args, flag, False):
            setattr(recipe.loop, flag, True)
    if args.run_dir:
        recipe.run_dir = args.run_dir
    if args.data:
        recipe.data = args.data
