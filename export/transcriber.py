"""Transcriber checkpoint -> `artifacts/transcriber/` (ONNX, card.json), registered in BentoML.

`hark export transcriber [--checkpoint runs/transcriber/last.pt] [--out artifacts/transcriber]`

Decoding thresholds are chosen here, on validation clips the training never saw (rendered
training-split audio), through the same numpy decoder the service runs; never on evaluation sets.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from export.onnx_export import export_onnx, git_commit, parity, write_card
from models.transcriber import Transcriber, TranscriberConfig, TranscriberExport
from services.model_store import file_sha256

OUTPUTS = ("onset", "note", "contour")
PARITY_LIMIT = 1e-4
ONSET_GRID = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
FRAME_GRID = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def load_checkpoint(path: Path) -> tuple[Transcriber, dict]:
    state = torch.load(path, map_location="cpu", weights_only=False)
    model = Transcriber(TranscriberConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    return model.eval(), state


def parity_report(model: Transcriber, onnx_path: Path, real_audio: np.ndarray | None) -> dict:
    n = model.cfg.window_samples
    rng = np.random.default_rng(0)
    cases = {"random": (rng.normal(size=(2, n)) * 0.1).astype(np.float32)}
    if real_audio is not None and len(real_audio) >= n:
        cases["real"] = np.stack([real_audio[:n], real_audio[-n:]]).astype(np.float32)
    wrapped = TranscriberExport(model).eval()
    report = {name: parity(wrapped, onnx_path, {"audio": x}, OUTPUTS) for name, x in cases.items()}
    worst = max(v for case in report.values() for v in case.values())
    return {"max_abs_error": worst, "limit": PARITY_LIMIT, "passed": worst <= PARITY_LIMIT, "cases": report}


def choose_thresholds(model_dir: Path, clips: list, max_clips: int = 40) -> dict:
    """Grid-search onset/frame thresholds for pooled note F1 on validation clips."""
    from benchmarks.scoring import NoteArray, score_clip
    from services.transcriber_model import TranscriberModel

    shipped = TranscriberModel(model_dir)
    grams, refs = [], []
    for clip in tqdm(clips[:max_clips], desc="validation posteriorgrams", unit="clip"):
        audio = sf.read(str(clip.wav), dtype="float32")[0]
        grams.append(shipped.posteriorgrams(audio))
        refs.append(NoteArray.from_rows(clip.notes))
    best, table = None, []
    for on in ONSET_GRID:
        for fr in FRAME_GRID:
            total = None
            for g, ref in zip(grams, refs):
                est = shipped.decode(g, onset_threshold=on, frame_threshold=fr)
                s = score_clip([ref], NoteArray.from_rows([(n.start_s, n.end_s, n.pitch_midi) for n in est]))
                total = s if total is None else total + s
            m = total.metrics()
            table.append({"onset": on, "frame": fr, **{k: round(v, 4) for k, v in m.items()}})
            if best is None or m["note_f1"] > best[2]["note_f1"]:
                best = (on, fr, m)
    return {"onset": best[0], "frame": best[1], "chosen_on": f"{len(grams)} validation clips",
            "validation": {k: round(v, 4) for k, v in best[2].items()}, "grid": table}


def export(checkpoint: Path, out: Path, tune: bool = True, register: bool = True) -> dict:
    from training.data.music_windows import load_clips

    model, state = load_checkpoint(checkpoint)
    cfg = model.cfg
    recipe = state.get("recipe", {})
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / "transcriber.onnx"
    example = (torch.zeros(1, cfg.window_samples),)
    # Any length works (a whole number of hops): offline serving runs fixed windows, streaming
    # runs short ones.
    export_onnx(TranscriberExport(model), example, onnx_path, ["audio"], OUTPUTS,
                {"audio": {0: "batch", 1: "samples"}, **{o: {0: "batch", 1: "frames"} for o in OUTPUTS}})

    clips = load_clips(recipe.get("data", []), "validation", recipe.get("validation_every", 50)) if recipe else []
    real = sf.read(str(clips[0].wav), dtype="float32")[0] if clips else None
    par = parity_report(model, onnx_path, real)
    if not par["passed"]:
        raise RuntimeError(f"ONNX parity {par['max_abs_error']:.2e} exceeds {PARITY_LIMIT}")
    digest = file_sha256(onnx_path)
    card = {
        "name": "transcriber",
        "version": f"0.1.{state['step']}",
        "sha256": digest,
        "files": {"model": onnx_path.name},
        "io": {"sample_rate": cfg.sample_rate, "hop": cfg.hop, "window_samples": cfg.window_samples,
               "n_keys": cfg.n_keys, "min_midi": cfg.min_midi, "bins_per_semitone": cfg.bins_per_semitone,
               "contour_bins": cfg.contour_bins},
        "thresholds": {"onset": 0.5, "frame": 0.3},
        "config": {"model": cfg.to_dict(), "recipe": recipe},
        "data": _data_description(recipe.get("data", []), recipe.get("validation_every", 50)),
        "training": {"steps": state["step"], "epochs": state.get("epoch"), "wall_s": round(state.get("wall_s", 0.0), 1),
                     "parameters": sum(p.numel() for p in model.parameters()),
                     "checkpoint": str(checkpoint)},
        "parity": par,
        "git_commit": git_commit(),
    }
    write_card(out, card)
    if tune and clips:
        th = choose_thresholds(out, clips)
        card["thresholds"] = {"onset": th["onset"], "frame": th["frame"]}
        card["threshold_selection"] = th
        write_card(out, card)
    if register:
        from services.model_store import register as store_register

        card["bentoml_tag"] = store_register(out)
    return card


def _data_description(dirs: list[str], validation_every: int) -> dict:
    """What the model was trained on: the clips on disk now (a set may have grown while training
    ran) and the settings `hark data` recorded in the set's manifest."""
    from training.data import music
    from training.data.music_windows import load_clips

    sets = []
    for d in dirs:
        clips = load_clips([d], "train", validation_every)
        man = Path(d) / "manifest.json"
        spec = json.loads(man.read_text()).get("spec", {}) if man.exists() else {}
        sets.append({"dir": d, "clips": len(clips),
                     "hours": round(sum(c.frames for c in clips) / music.SAMPLE_RATE / 3600, 2),
                     "soundfonts": [Path(s).name for s in spec.get("soundfonts", music.TRAIN_SOUNDFONTS)],
                     "seed": spec.get("seed"), "texture_share": spec.get("texture_share")})
    return {"train_sets": sets, "source": "music21 corpus (training split of pieces) and generated textures, "
            "rendered with FluidSynth on random GM programs; augmented with EQ, reverb, noise and gain",
            "held_out": {"soundfonts": [Path(s).name for s in music.HELDOUT_SOUNDFONTS],
                         "programs": music.HELDOUT_PROGRAMS, "pieces": "10 % of corpus pieces by path hash",
                         "validation": f"1 clip in {validation_every} of the training sets, never trained on"}}


def add_arguments_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, default=Path("runs/transcriber/last.pt"),
                        help="training checkpoint to export")
    parser.add_argument("--out", type=Path, default=Path("artifacts/transcriber"),
                        help="artifact directory (transcriber.onnx + card.json)")
    parser.add_argument("--no-tune", action="store_true", help="keep default thresholds instead of tuning them "
                        "on the training set's validation clips")
    parser.add_argument("--no-register", action="store_true", help="don't put the result in the BentoML model store")


def run_export(args: argparse.Namespace) -> int:
    if not args.checkpoint.exists():
        print(f"no checkpoint at {args.checkpoint}: run `hark train transcriber` first")
        return 2
    card = export(args.checkpoint, args.out, tune=not args.no_tune, register=not args.no_register)
    print(f"exported {args.out}/transcriber.onnx (parity {card['parity']['max_abs_error']:.2e}, "
          f"thresholds {card['thresholds']})")
    return 0
