"""`hark eval codec` and `hark bench codec`: the hark codec beside Opus and Codec2 on the same speech.

eval: the clips of the held-out speakers (training.data.speech.HELDOUT_SPEAKERS, never trained on),
each level-normalised to -25 dBFS, go through every system; the output is scored against the
normalised input with PESQ-WB, STOI, a log-mel distance and SI-SDR. Means and medians over clips.
`--split train` scores training speakers' clips instead (under its own set name), which tells a
model that has not yet fitted its training speech from one that does not carry to new voices.
bench: CPU seconds per audio second of encode + decode, single-threaded, median over repeats, on
held-out speech concatenated to --seconds. The ffmpeg anchors run in subprocesses, so their CPU
time is read from the finished children's rusage.

A system is a callable from 16 kHz mono float32 to 16 kHz mono float32 (or to a pair of that and
the coded size in bytes, which the anchors report): new systems plug into the dict of systems.
Both commands merge their part into benchmarks/results/codec.json and re-render codec.md.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import logging
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import codec_anchors, harness, report, speed
from benchmarks.harness import Unavailable, display, reason
from core.cards import read_card
from core.codec_model import card_bitrates_kbps
from core import audio as audio_io

log = logging.getLogger("hark.bench")
REPO = Path(__file__).resolve().parent.parent
TAG = "codec"
SAMPLE_RATE = 16000
LEVEL_DB = -25.0
DEFAULT_DATA = REPO.parent / "shared" / "data" / "real" / "speech"
DEFAULT_MODEL_DIR = REPO / "artifacts" / "codec"
DEFAULT_CHECKPOINT = REPO / "runs" / "codec" / "last.pt"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "codec.json"
# The training speakers' scores go to their own file, never into the shipped held-out table.
DEFAULT_TRAIN_OUT = REPO / "benchmarks" / "results" / "codec-train.json"
SET_NAME = "real-heldout"
SET_NAMES = {"heldout": SET_NAME, "train": "real-train"}

# The shipped codec's bitrates, from its card (core.codec_model.card_bitrates_kbps): one system each.
_SHIPPED_KBPS = card_bitrates_kbps(read_card(DEFAULT_MODEL_DIR))
HARK_KBPS = {f"hark-{k:g}kbps": k for k in _SHIPPED_KBPS}
HARK_TORCH_KBPS = {f"hark-torch-{k:g}kbps": k for k in _SHIPPED_KBPS}
OPUS_KBPS = {"opus-6kbps": 6, "opus-12kbps": 12}
CODEC2_MODES = {"codec2-3200": 3200, "codec2-1300": 1300}
EVAL_SYSTEMS = [*HARK_KBPS, *OPUS_KBPS, *CODEC2_MODES]
BENCH_SYSTEMS = [*HARK_KBPS, *HARK_TORCH_KBPS, *OPUS_KBPS, *CODEC2_MODES]
ANCHOR_ENCODER = {**{n: "libopus" for n in OPUS_KBPS}, **{n: "libcodec2" for n in CODEC2_MODES}}

# (key, title, digits, higher is better)
METRICS = [
    ("pesq_wb", "PESQ-WB (MOS-LQO)", 2, True),
    ("stoi", "STOI", 3, True),
    ("mel_distance", "log-mel distance", 3, False),
    ("si_sdr", "SI-SDR (dB)", 1, True),
]
N_FFT, HOP, N_MELS = 1024, 256, 80

SystemOutput = np.ndarray | tuple[np.ndarray, int]
SystemFn = Callable[[np.ndarray], SystemOutput]


# --- metrics ------------------------------------------------------------------------------------


def align(ref: np.ndarray, est: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both signals cut to the shorter one, as float64 (a codec may pad to whole frames)."""
    n = min(ref.size, est.size)
    return ref[:n].astype(np.float64), est[:n].astype(np.float64)


def si_sdr(ref: np.ndarray, est: np.ndarray, eps: float = 1e-12) -> float:
    """Scale-invariant SDR in dB: the estimate's part along the (zero-mean) reference over the rest."""
    ref, est = align(ref, est)
    ref, est = ref - ref.mean(), est - est.mean()
    target = (np.dot(est, ref) / (np.dot(ref, ref) + eps)) * ref
    noise = est - target
    return float(10 * np.log10((np.dot(target, target) + eps) / (np.dot(noise, noise) + eps)))


@functools.lru_cache(maxsize=1)
def _mel_basis() -> np.ndarray:
    from training.losses import mel_filterbank  # the training loss's filters, so the numbers compare

    return mel_filterbank(SAMPLE_RATE, N_FFT, N_MELS).astype(np.float64)


def log_mel(audio: np.ndarray) -> np.ndarray:
    """[frames, 80] log(mel-filtered STFT magnitude + 1e-5); centred frames, periodic Hann, as torch.stft."""
    x = np.asarray(audio, dtype=np.float64)
    # Reflection needs more samples than half a window; zeros do for very short signals.
    x = np.pad(x, N_FFT // 2, mode="reflect" if x.size > N_FFT // 2 else "constant")
    window = np.hanning(N_FFT + 1)[:-1]
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP]
    magnitude = np.abs(np.fft.rfft(frames * window, axis=-1))
    return np.log(magnitude @ _mel_basis().T + 1e-5)


def mel_distance(ref: np.ndarray, est: np.ndarray) -> float:
    """Mean absolute difference of the two log-mel spectrograms (natural log)."""
    ref, est = align(ref, est)
    return float(np.mean(np.abs(log_mel(ref) - log_mel(est))))


def pesq_wb(ref: np.ndarray, est: np.ndarray) -> float:
    """Wideband PESQ (P.862.2, MOS-LQO, about 1.0 to 4.6) at 16 kHz."""
    from pesq import pesq

    ref, est = align(ref, est)
    return float(pesq(SAMPLE_RATE, ref, est, "wb"))


def stoi(ref: np.ndarray, est: np.ndarray) -> float:
    """Short-time objective intelligibility (0 to 1)."""
    from pystoi import stoi as _stoi

    ref, est = align(ref, est)
    return float(_stoi(ref, est, SAMPLE_RATE, extended=False))


def level_diff_db(ref: np.ndarray, est: np.ndarray) -> float:
    """Active level of the output minus that of the input (core.audio.active_level_db)."""
    return (audio_io.active_level_db(audio_io.frame_powers(est, SAMPLE_RATE))
            - audio_io.active_level_db(audio_io.frame_powers(ref, SAMPLE_RATE)))


SCORERS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "pesq_wb": pesq_wb, "stoi": stoi, "mel_distance": mel_distance, "si_sdr": si_sdr,
    "level_diff_db": level_diff_db}
SCORER_PACKAGES = ["pesq", "pystoi"]  # their versions go in the results beside report.stamp()'s


def score(ref: np.ndarray, est: np.ndarray) -> dict[str, float]:
    """Every metric of one clip; NaN where PESQ finds no utterance (then every system's is NaN
    alike, since the reference decides it, and the clip drops out of that metric's mean)."""
    out = {}
    for key, fn in SCORERS.items():
        try:
            out[key] = fn(ref, est)
        except Exception as exc:  # pesq's NoUtterancesError and kin: one clip, not the run
            if key != "pesq_wb":
                raise
            log.warning("PESQ failed on a clip: %s", exc)
            out[key] = float("nan")
    return out


def summarise(per_clip: list[dict[str, float]], seconds: float) -> dict[str, float]:
    """Per metric: mean (under the metric's own name) and median over clips, NaNs left out."""
    return harness.summarise(per_clip, SCORERS, "clips", seconds)


# --- systems ------------------------------------------------------------------------------------


def _load_codec_model(model_dir: Path, threads: int | None) -> Any:
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise Unavailable(f"no codec model in {display(model_dir)}: export one with `hark export codec` "
                          "(after `hark train codec`) or pass --model-dir DIR")
    try:
        from core.codec_model import CodecModel
    except ModuleNotFoundError as exc:
        raise Unavailable(f"the hark codec cannot run in this checkout: module {exc.name} is missing") from exc
    # threads None: the model's own default; the speed bench pins 1.
    model = CodecModel(model_dir) if threads is None else CodecModel(model_dir, threads=threads)
    rate = getattr(model, "sample_rate", SAMPLE_RATE)
    if rate != SAMPLE_RATE:  # every metric and anchor here is at 16 kHz
        raise Unavailable(f"the codec in {display(model_dir)} runs at {rate} Hz, not {SAMPLE_RATE}")
    return model


def _model_info(model: Any, model_dir: Path) -> dict[str, Any]:
    info = model.info() if callable(getattr(model, "info", None)) else {}
    return {**info, "model_dir": display(model_dir)}


def hark_systems(model_dir: Path, threads: int | None = None) -> tuple[dict[str, SystemFn], dict[str, Any]]:
    """hark-1kbps and hark-2kbps from one shipped ONNX model: (systems, info)."""
    model = _load_codec_model(model_dir, threads)
    systems = {name: (lambda audio, kbps=kbps: model.reconstruct(audio, kbps)) for name, kbps in HARK_KBPS.items()}
    info = _model_info(model, model_dir)
    return systems, {name: {**info, "kbps": kbps} for name, kbps in HARK_KBPS.items()}


def anchor_unavailable(name: str) -> str | None:
    """Why an anchor cannot run here (ffmpeg or its encoder missing), or None."""
    ok, reason = _ffmpeg_status()
    if ok:
        return None
    # codec_anchors names the missing encoders; without ffmpeg every anchor is out.
    if ANCHOR_ENCODER[name] in reason or "lacks" not in reason:
        return f"{reason}; install an ffmpeg built with {ANCHOR_ENCODER[name]}"
    return None


@functools.lru_cache(maxsize=1)
def _ffmpeg_status() -> tuple[bool, str]:
    return codec_anchors.available()


def anchor_system(name: str) -> SystemFn:
    if name in OPUS_KBPS:
        return functools.partial(codec_anchors.opus, kbps=OPUS_KBPS[name])
    if name in CODEC2_MODES:
        return functools.partial(codec_anchors.codec2, mode=CODEC2_MODES[name])
    raise ValueError(f"unknown anchor {name!r}")


def build_systems(names: list[str], model_dir: Path, threads: int | None = None
                  ) -> tuple[dict[str, SystemFn], dict[str, str], dict[str, Any]]:
    """(systems that can run, {name: why skipped}, {name: info}) for `names` of EVAL_SYSTEMS."""
    systems: dict[str, SystemFn] = {}
    skipped: dict[str, str] = {}
    info: dict[str, Any] = {}
    # a missing model must not stop the anchors
    harness.add_group([n for n in names if n in HARK_KBPS], lambda _: hark_systems(model_dir, threads),
                      systems, skipped, info)
    for name in names:
        if name in HARK_KBPS:
            continue
        why = anchor_unavailable(name)
        if why:
            skipped[name] = why
            continue
        systems[name] = anchor_system(name)
        info[name] = {"runtime": "ffmpeg " + ANCHOR_ENCODER[name], "ffmpeg": _ffmpeg_version()}
    return systems, skipped, info


@functools.lru_cache(maxsize=1)
def _ffmpeg_version() -> str:
    try:
        first = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, timeout=10,
                               check=False).stdout.split("\n")[0]
        return first.split(" Copyright")[0]
    except (OSError, subprocess.SubprocessError):
        return "?"


def _run_system(fn: SystemFn, audio: np.ndarray) -> tuple[np.ndarray, int | None]:
    """(output audio, coded bytes or None): systems may or may not report their coded size."""
    out = fn(audio)
    coded = None
    if isinstance(out, tuple):
        out, coded = out
    out = np.asarray(out, dtype=np.float32)
    if out.ndim != 1:
        raise ValueError(f"a system must return mono audio [samples], got shape {out.shape}")
    return out, coded


# --- data ---------------------------------------------------------------------------------------


def heldout_files(dirs: list[Path]) -> list[Path]:
    """The held-out speakers' files under `dirs` (file names carry the speaker)."""
    from training.data.speech import split_files

    missing = [str(d) for d in dirs if not Path(d).is_dir()]
    if missing:
        raise FileNotFoundError(f"speech directories not found: {', '.join(missing)} "
                                "(the shared speech corpus, or a `hark data codec --split heldout` copy)")
    files = split_files(list(dirs), "heldout")
    if not files:
        raise FileNotFoundError(f"no held-out speakers' audio under {', '.join(map(str, dirs))}: expected files "
                                "named like LibriSpeech's SPEAKER-CHAPTER-UTTERANCE.flac for the speakers in "
                                "training.data.speech.HELDOUT_SPEAKERS")
    return files


def split_clips(dirs: list[Path], split: str, max_clips: int | None = None) -> list[Path]:
    """The files of one speaker split under `dirs`; `max_clips` takes an evenly spaced subset."""
    from training.data.speech import split_files

    if split == "heldout":
        files = heldout_files(dirs)
    else:
        files = split_files(list(dirs), split)
        if not files:
            raise FileNotFoundError(f"no {split}-split speech under {', '.join(map(str, dirs))}")
    if max_clips and len(files) > max_clips:
        step = len(files) / max_clips
        files = [files[int(i * step)] for i in range(max_clips)]
    return files


def load_clip(path: Path, limit_s: float | None = None) -> np.ndarray:
    """16 kHz mono, optionally cut to `limit_s`, then at -25 dBFS: every system codes the same level."""
    from training.data.speech import load, normalise

    audio = load(path, SAMPLE_RATE)
    if limit_s:
        audio = audio[:int(limit_s * SAMPLE_RATE)]
    return normalise(audio, LEVEL_DB)


def _speaker(path: Path) -> str:
    from training.data.speech import speaker_of

    return speaker_of(path)


# --- eval ---------------------------------------------------------------------------------------


def _common_args(parser: argparse.ArgumentParser, systems: list[str]) -> None:
    parser.add_argument("--data", type=Path, nargs="+", default=[DEFAULT_DATA],
                        help="speech directories; only the held-out speakers' files are used "
                             "(default: ../shared/data/real/speech beside the repository)")
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR,
                        help="the shipped codec (ONNX + card.json), from `hark export codec` (default: artifacts/codec)")
    harness.add_results_arguments(parser, DEFAULT_OUT, TAG, systems)


def add_arguments_eval(parser: argparse.ArgumentParser) -> None:
    _common_args(parser, EVAL_SYSTEMS)
    parser.add_argument("--split", choices=sorted(SET_NAMES), default="heldout",
                        help="whose speech: the held-out speakers (default), or the training speakers, to see "
                             "how well the model fits what it was trained on")
    parser.add_argument("--max-clips", type=int, default=None, help="score an evenly spaced subset of N clips")
    parser.add_argument("--name", default=None,
                        help=f"name of the set in the results (default: {SET_NAME}, or {SET_NAMES['train']} "
                             "with --split train)")
    parser.add_argument("--limit-seconds", type=float, default=None, help="score only the first S seconds of each clip")


def evaluate(files: list[Path], systems: dict[str, SystemFn], limit_s: float | None = None
             ) -> tuple[dict[str, dict[str, float]], dict[str, str], dict[str, Any]]:
    """Score every system on every clip: (summary per system, {name: why it failed}, details).
    A system that fails on a clip is dropped whole, so that every summary covers the same clips."""
    from tqdm import tqdm

    per_clip: dict[str, list[dict[str, float]]] = {name: [] for name in systems}
    coded_bytes: dict[str, int] = {}
    failed: dict[str, str] = {}
    by_clip: dict[str, dict[str, dict[str, float]]] = {}
    seconds = 0.0
    for path in tqdm(files, desc="eval codec", unit="clip", file=sys.stderr):
        ref = load_clip(path, limit_s)
        seconds += ref.size / SAMPLE_RATE
        by_clip[path.stem] = {}
        for name, fn in systems.items():
            if name in failed:
                continue
            try:
                est, coded = _run_system(fn, ref)
            except Exception as exc:
                failed[name] = f"failed on {path.name}: {reason(exc)}"
                log.warning("dropping %s: %s", name, failed[name])
                continue
            scores = score(ref, est)
            per_clip[name].append(scores)
            by_clip[path.stem][name] = {k: round(v, 4) for k, v in scores.items()}
            if coded is not None:
                coded_bytes[name] = coded_bytes.get(name, 0) + coded
    summary = {name: summarise(clips, seconds) for name, clips in per_clip.items() if name not in failed}
    for name in summary:  # loudness is judged clip by clip: the worst one, not the mean
        summary[name]["level_diff_db_max_abs"] = round(max(abs(c["level_diff_db"]) for c in per_clip[name]), 3)
    for name, total in coded_bytes.items():
        if name in summary:
            summary[name]["kbps"] = round(total * 8 / seconds / 1000, 3)
    for clip in by_clip.values():
        for name in failed:
            clip.pop(name, None)
    details = {"audio_s": round(seconds, 3), "per_clip": by_clip}
    return summary, failed, details


def run_eval(args: argparse.Namespace, systems: dict[str, SystemFn] | None = None) -> int:
    """`systems` replaces the named systems by callables (tests, or trying a new system from Python)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        files = split_clips(args.data, args.split, args.max_clips)
    except FileNotFoundError as exc:
        log.error("%s", exc)
        return 2
    args.name = args.name or SET_NAMES[args.split]
    render = render_markdown
    if args.split == "train":
        # Scores on training speakers are published in their own file and never in docs/codec.md.
        render = render_train_markdown
        args.published = DEFAULT_TRAIN_OUT
    given = dict(systems or {})
    built, skipped, info = build_systems([n for n in args.systems if n not in given], args.model_dir)
    running = harness.chosen(args.systems, given, built, skipped, info)
    if not running:
        return 1
    summary, failed, details = evaluate(files, running, args.limit_seconds)
    skipped.update(failed)
    results = {args.name: harness.with_skipped(summary, skipped)}
    for name, m in summary.items():
        log.info("%-12s PESQ-WB %.2f  STOI %.3f  mel %.3f  SI-SDR %5.1f dB", name, m.get("pesq_wb", np.nan),
                 m["stoi"], m["mel_distance"], m["si_sdr"])
    speakers = sorted({_speaker(f) for f in files})
    meta_eval: dict[str, Any] = {
        "statistic": "per clip, then mean over clips (metric name) and median (NAME_median)",
        "level": f"each clip normalised to {LEVEL_DB:g} dBFS RMS before coding; scored against that",
        "alignment": "output cut to the shorter of input and output; Codec2's delay removed per clip "
                     "(benchmarks.codec_anchors); Opus's pre-skip by its Ogg container",
        "metrics": {"pesq_wb": "pesq package, ITU-T P.862.2 wideband, 16 kHz (MOS-LQO)",
                    "stoi": "pystoi, classic STOI (not extended)",
                    "mel_distance": f"mean |log(mel(|STFT|) + 1e-5)| difference; n_fft {N_FFT}, hop {HOP}, "
                                    f"{N_MELS} HTK mels (training.losses.mel_filterbank), periodic Hann, centred",
                    "si_sdr": "scale-invariant SDR in dB, zero-mean signals",
                    "level_diff_db": "active level (core.audio.active_level_db: 20 ms frames within "
                                     "35 dB of the loudest) of the output minus that of the input; "
                                     "level_diff_db_max_abs is the worst clip's"},
        "kbps": "anchors: coded bytes (container included) * 8 over the audio seconds",
        "split": args.split,
        "limit_seconds": args.limit_seconds,
        "data_dirs": [display(d) for d in args.data],
        "set_sizes": {args.name: {"clips": len(files), "audio_s": details["audio_s"],
                                  "minutes": round(details["audio_s"] / 60, 2), "speakers": len(speakers)}},
        "speakers": speakers,
        "systems": info,
        "skipped": skipped,
        "per_clip": {args.name: details["per_clip"]},
    }
    status = harness.write(args, TAG, render, "eval", meta_eval, sets=results, packages=SCORER_PACKAGES,
                           readme=args.split != "train")
    shipped = [n for n in HARK_KBPS if n in summary]
    if shipped and args.ship and args.split == "heldout":  # the card records its published scores
        harness.record_in_card(Path(args.model_dir), info[shipped[0]].get("sha256"), {
            "sets": {args.name: summary}, "set_sizes": meta_eval["set_sizes"], "date": meta_eval["date"],
            "git_commit": meta_eval["git_commit"], "command": "hark eval codec --ship"})
    return status


# --- bench --------------------------------------------------------------------------------------


def add_arguments_bench(parser: argparse.ArgumentParser) -> None:
    _common_args(parser, BENCH_SYSTEMS)
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT,
                        help="torch checkpoint for the hark-torch-* systems (default: runs/codec/last.pt)")
    parser.add_argument("--seconds", type=float, default=30.0, help="audio seconds, held-out clips concatenated")
    parser.add_argument("--repeats", type=int, default=5)


def bench_audio(dirs: list[Path], seconds: float) -> tuple[np.ndarray, list[str]]:
    """Held-out clips concatenated, then cut, to `seconds` at -25 dBFS: (audio, the files used)."""
    from training.data.speech import load, normalise

    pieces, used, n = [], [], int(seconds * SAMPLE_RATE)
    for path in heldout_files(dirs):
        pieces.append(load(path, SAMPLE_RATE))
        used.append(path.name)
        if sum(p.size for p in pieces) >= n:
            break
    audio = np.concatenate(pieces)[:n]
    if audio.size < n:
        log.warning("only %.1f s of held-out audio: benchmarking that", audio.size / SAMPLE_RATE)
    return normalise(audio, LEVEL_DB), used


def _stages(model: Any, kbps: float) -> int:
    """Quantizer stages that give `kbps`: from the model's config where it has one."""
    cfg = getattr(model, "cfg", None)
    if cfg is not None and hasattr(cfg, "bitrate"):
        for stages in range(1, cfg.stages + 1):
            if abs(cfg.bitrate(stages) - kbps * 1000) < 1e-6:
                return stages
        raise ValueError(f"the checkpoint's codec has no stage count for {kbps:g} kbps")
    return round(kbps)  # the default codec: 1 kbps per stage


def _torch_fns(checkpoint: Path, names: list[str], audio: np.ndarray) -> tuple[dict[str, Callable[[], object]], dict]:
    if not Path(checkpoint).is_file():
        raise Unavailable(f"no torch checkpoint at {display(checkpoint)}: train one with `hark train codec` or pass --checkpoint")
    try:
        import torch
        from export.codec import load_checkpoint
    except ModuleNotFoundError as exc:
        raise Unavailable(f"the torch codec cannot run in this checkout: module {exc.name} is missing") from exc
    model, state = load_checkpoint(Path(checkpoint))
    if hasattr(model, "eval"):
        model.eval()
    x = torch.from_numpy(audio)[None]

    def run(stages: int) -> object:
        with torch.inference_mode():
            return model.decode(model.encode(x, stages))

    fns = {name: functools.partial(run, _stages(model, HARK_TORCH_KBPS[name])) for name in names}
    step = state.get("step") if isinstance(state, dict) else None
    info = {"runtime": "torch eager, 1 thread", "checkpoint": display(checkpoint), "step": step,
            "torch": torch.__version__}
    return fns, {name: {**info, "kbps": HARK_TORCH_KBPS[name]} for name in names}


def _onnx_fns(model_dir: Path, names: list[str], audio: np.ndarray) -> tuple[dict[str, Callable[[], object]], dict]:
    model = _load_codec_model(model_dir, threads=1)
    # reconstruct = encode, the encoder's own decode for the level correction, and the decode
    fns = {name: (lambda kbps=HARK_KBPS[name]: model.reconstruct(audio, kbps)) for name in names}
    info = {**_model_info(model, model_dir), "runtime": "onnxruntime, 1 thread (intra-op)"}
    return fns, {name: {**info, "kbps": HARK_KBPS[name]} for name in names}


def cpu_seconds() -> float:
    """CPU time of this process (all threads) plus that of its waited-for children: the anchors'
    ffmpeg subprocesses are invisible to time.process_time."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def measure(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, speed.Timing]:
    """As benchmarks.speed.measure (interleaved, order rotated each repeat), counting children's CPU."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    names = list(fns)
    out = {name: speed.Timing([], []) for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            c0, w0 = cpu_seconds(), time.perf_counter()
            fns[name]()
            out[name].cpu_s.append(cpu_seconds() - c0)
            out[name].wall_s.append(time.perf_counter() - w0)
    return out


def bench_fns(names: list[str], args: argparse.Namespace, audio: np.ndarray
              ) -> tuple[dict[str, Callable[[], object]], dict[str, str], dict[str, Any]]:
    """(zero-argument encode + decode calls on `audio`, {name: why skipped}, {name: info})."""
    fns: dict[str, Callable[[], object]] = {}
    skipped: dict[str, str] = {}
    info: dict[str, Any] = {}
    harness.add_group([n for n in names if n in HARK_KBPS], lambda g: _onnx_fns(args.model_dir, g, audio),
                      fns, skipped, info)
    harness.add_group([n for n in names if n in HARK_TORCH_KBPS], lambda g: _torch_fns(args.checkpoint, g, audio),
                      fns, skipped, info)
    for name in names:
        if name in HARK_KBPS or name in HARK_TORCH_KBPS:
            continue
        why = anchor_unavailable(name)
        if why:
            skipped[name] = why
            continue
        fns[name] = functools.partial(anchor_system(name), audio)
        info[name] = {"runtime": f"ffmpeg {ANCHOR_ENCODER[name]}: encode and decode subprocesses, "
                                 "process start and piping included", "ffmpeg": _ffmpeg_version()}
    return fns, skipped, info


def run_bench(args: argparse.Namespace, systems: dict[str, SystemFn] | None = None) -> int:
    """`systems` replaces the named systems by callables audio -> audio (tests, new systems)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    load_before = os.getloadavg()[0]
    try:
        audio, used = bench_audio(args.data, args.seconds)
    except FileNotFoundError as exc:
        log.error("%s", exc)
        return 2
    audio_s = audio.size / SAMPLE_RATE
    given = dict(systems or {})
    fns, skipped, info = bench_fns([n for n in args.systems if n not in given], args, audio)
    for name, fn in given.items():
        fns[name] = functools.partial(fn, audio)
        info[name] = {"runtime": "given in-process"}
    for name, why in skipped.items():
        log.warning("skipping %s: %s", name, why)
    if not fns:
        log.error("no system could be measured: %s", skipped)
        return 1
    results: dict[str, dict[str, Any]] = {name: {"skipped": why} for name, why in skipped.items()}
    # torch's intra-op thread count is process-wide; onnxruntime's was fixed when its session opened.
    torch_used = any(n in HARK_TORCH_KBPS for n in fns)
    with speed.torch_threads(1) if torch_used else contextlib.nullcontext():
        try:
            timings = measure(fns, args.repeats)
        except Exception as exc:
            log.error("measurement failed: %s", reason(exc))
            return 1
    for name, timing in timings.items():
        results[name] = {"cpu_s_per_audio_s": round(timing.cpu_median / audio_s, 5),
                         "wall_s_per_audio_s": round(timing.wall_median / audio_s, 5)}
        log.info("%-18s CPU %.4f s per audio s (wall %.4f)", name, timing.cpu_median / audio_s,
                 timing.wall_median / audio_s)
    meta_bench = {
        "audio": {"dirs": [display(d) for d in args.data], "files": used},
        "audio_s": round(audio_s, 3),
        "repeats": args.repeats,
        "statistic": "median over repeats of encode + decode CPU time (process, all threads, plus finished child "
                     "processes for the ffmpeg anchors) after one warm-up call, divided by audio seconds; "
                     "systems interleaved round-robin; wall time alongside",
        "threads": "onnxruntime intra-op 1; torch.set_num_threads(1); ffmpeg as it runs libopus / libcodec2 "
                   "(single-threaded encoders)",
        "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "cores": speed.cpu_count(),
        "systems": info,
        "skipped": skipped,
    }
    return harness.write(args, TAG, render_markdown, "bench", meta_bench, speed=results, packages=SCORER_PACKAGES)


# --- markdown -----------------------------------------------------------------------------------


def _extra_rows(by_system: dict[str, dict[str, Any]], systems: list[str]) -> list[str]:
    """Under a set's metrics: output level against input (median, and the worst clip), and the
    measured bitrate where a system reported its coded size."""
    rows = []
    if any("level_diff_db_max_abs" in v for v in by_system.values()):
        cells = [f"{v['level_diff_db_median']:+.2f} [{v['level_diff_db_max_abs']:.2f}]"
                 if "level_diff_db_max_abs" in (v := by_system.get(s, {})) else "—" for s in systems]
        rows.append("|  | output level - input level, dB: median [worst clip, abs] | " + " | ".join(cells) + " |")
    if any("kbps" in v for v in by_system.values()):
        cells = [report.mean_median_cell(by_system.get(s, {}), "kbps", 2) if "kbps" in by_system.get(s, {})
                 else "—" for s in systems]
        rows.append("|  | coded kbps (measured) | " + " | ".join(cells) + " |")
    return rows


TABLES = report.FamilyTables(
    tag=TAG,
    # Ours first, then the anchors from the most bits to the fewest per family, then anything else.
    systems=[*HARK_KBPS, *HARK_TORCH_KBPS, *OPUS_KBPS, *CODEC2_MODES],
    metrics=METRICS,
    unit="clips",
    speed_columns=[("cpu_s_per_audio_s", "CPU-s per audio-s, encode + decode (1 thread)", 4),
                   ("wall_s_per_audio_s", "wall-s per audio-s", 4)],
    quality_note=f"held-out speakers, each clip at {LEVEL_DB:g} dBFS; mean over clips (median).",
    speed_note=lambda bench: (f"median of {bench.get('repeats', '?')} repeats on {bench.get('audio_s', '?')} s of "
                              f"held-out speech, {bench.get('cores', '?')} cores; the anchors' figures include "
                              "starting ffmpeg."),
    extra_rows=_extra_rows,
)


def render_markdown(results: dict[str, Any]) -> str:
    """Quality (mean and median over clips per system) and speed tables for codec.md and docs/codec.md."""
    return report.render_family(results, TABLES)


TRAIN_TABLES = dataclasses.replace(
    TABLES, quality_note=f"TRAINING speakers (`--split train`), each clip at {LEVEL_DB:g} dBFS; mean over clips (median).")


def render_train_markdown(results: dict[str, Any]) -> str:
    """The same tables for the training speakers' scores (codec-train.md)."""
    return report.render_family(results, TRAIN_TABLES)


__all__ = ["add_arguments_eval", "run_eval", "add_arguments_bench", "run_bench"]
