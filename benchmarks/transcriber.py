"""`hark eval transcriber` and `hark bench transcriber`: hark against Basic Pitch on the same audio.

eval: note F1 onset-only / with offsets and frame F1 (mir_eval), counts pooled per set.
bench: CPU seconds per audio second, single-threaded and with default threads, medians.
Both merge their part into benchmarks/results/transcriber.json and re-render the markdown.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import soundfile as sf

from benchmarks import report, speed
from benchmarks.basic_pitch_anchor import NAME as BP_NAME, BasicPitchAnchor
from core.scoring import ONSET_TOLERANCE_S, FRAME_HOP_S, ClipScore, NoteArray, score_clip
from benchmarks.sets import AUDIO_EXTS, EvalSet, default_set_names, read_set, truncated_copy

log = logging.getLogger("hark.bench")
HARK, HARK_TORCH, HARK_STREAM = "hark", "hark-torch", "hark-stream"
REPO = Path(__file__).resolve().parent.parent
TAG = "transcriber"
POOLING = ("pooled counts: TP/FP/FN summed over the clips of a set; a clip with k annotations "
           "(e.g. vocadito's two annotators) adds each annotation's counts with weight 1/k")
POOLING_FIRST = "pooled counts: TP/FP/FN summed over the clips of a set; only the first annotation (by CSV name) of a clip"


def _decode(path: Path, sample_rate: int):
    """Decode exactly as the HTTP API does, minus its upload limits (evaluation files may be long)."""
    from core import audio

    limits = audio.Limits(max_seconds=1e9, max_bytes=1 << 40)
    return audio.load(Path(path), sample_rate, limits=limits)


def _to_notes(notes) -> NoteArray:
    return NoteArray.from_rows((n.start_s, n.end_s, n.pitch_midi) for n in notes)


class HarkSystem:
    """What ships: the service's decoding, the ONNX model, the service's numpy note decoding."""

    def __init__(self, model_dir: Path, threads: int | None, cpu_only: bool = False):
        from core.transcriber_model import TranscriberModel

        # threads None: the service's own default (HARK_ORT_THREADS, else cores / workers).
        self.model = TranscriberModel(model_dir, threads=threads, provider="cpu" if cpu_only else None)

    def transcribe(self, path: Path) -> NoteArray:
        return _to_notes(self.model.transcribe(_decode(path, self.model.sample_rate)))

    def info(self) -> dict[str, Any]:
        card = self.model.card
        return {**self.model.info(), "model_dir": str(self.model.model_dir), "thresholds": card.get("thresholds"),
                "decode": self.model.decode_defaults(), "git_commit": card.get("git_commit")}


def _checkpoint_path(model_dir: Path) -> Path:
    """The checkpoint the card names (training.checkpoint), else the training loop's last one."""
    card_path = Path(model_dir) / "card.json"
    if card_path.is_file():
        training = json.loads(card_path.read_text()).get("training", {})
        named = training.get("checkpoint") if isinstance(training, dict) else None
        if named and (REPO / named).is_file():
            return REPO / named
    fallback = REPO / "runs" / "transcriber" / "last.pt"
    if not fallback.is_file():
        raise FileNotFoundError(f"no checkpoint: the card names none that exists and {fallback} is missing")
    return fallback


class HarkTorchSystem(HarkSystem):
    """The same pipeline with the torch model run eagerly in place of onnxruntime: what the
    export buys. Needs the shipped card for decoding parameters and a training checkpoint."""

    def __init__(self, model_dir: Path, threads: int | None, cpu_only: bool = True, checkpoint: Path | None = None):
        import torch

        from models.transcriber import Transcriber, TranscriberConfig

        super().__init__(model_dir, threads, cpu_only=True)
        self.checkpoint = checkpoint or _checkpoint_path(model_dir)
        state = torch.load(self.checkpoint, map_location="cpu", weights_only=False)
        self.net = Transcriber(TranscriberConfig(**state.get("model_config", {}))).eval()
        self.net.load_state_dict(state["model"])
        self.step = state.get("step")
        self.model._run_batch = self._run_batch  # windowing and note decoding stay the service's

    def _run_batch(self, batch):
        import torch

        with torch.inference_mode():
            grams = self.net.posteriorgrams(torch.from_numpy(batch))
        return {name: g.numpy() for name, g in zip(("onset", "note", "contour"), grams)}

    def info(self) -> dict[str, Any]:
        return {**super().info(), "checkpoint": str(self.checkpoint), "step": self.step}


class HarkStreamSystem(HarkSystem):
    """The WebSocket path without the socket: the file fed in 100 ms chunks, as a recorder
    would, through core.streaming. Records, per note, how much audio had arrived when its
    note_on left, after its onset (the latency a listener sees, minus compute time)."""

    CHUNK_S = 0.1

    def __init__(self, model_dir: Path, threads: int | None, cpu_only: bool = False):
        super().__init__(model_dir, threads, cpu_only)
        self.latencies: list[float] = []

    def transcribe(self, path: Path) -> NoteArray:
        from core.streaming import stream_audio

        audio = _decode(path, self.model.sample_rate)
        events, latencies = stream_audio(self.model, audio, self.model.decode_defaults(), self.CHUNK_S)
        self.latencies += latencies
        return NoteArray.from_rows((e["start_s"], e["end_s"], e["pitch_midi"]) for e in events if e["type"] == "note_off")

    def latency(self) -> dict[str, float]:
        lat = sorted(self.latencies)
        if not lat:
            return {}
        return {"note_on_latency_s_median": round(lat[len(lat) // 2], 3),
                "note_on_latency_s_p95": round(lat[int(0.95 * (len(lat) - 1))], 3),
                "note_on_latency_s_max": round(lat[-1], 3)}


def build_system(name: str, model_dir: Path, threads: int | None, cpu_only: bool = False):
    if name == BP_NAME:
        return BasicPitchAnchor(threads)
    if name == HARK:
        return HarkSystem(model_dir, threads, cpu_only)
    if name == HARK_TORCH:
        return HarkTorchSystem(model_dir, threads)
    if name == HARK_STREAM:
        return HarkStreamSystem(model_dir, threads, cpu_only)
    raise ValueError(f"unknown system {name!r}")


def _common_args(parser: argparse.ArgumentParser, systems: list[str]) -> None:
    parser.add_argument("--model-dir", type=Path, default=REPO / "artifacts" / "transcriber")
    report.add_destination_arguments(parser, TAG, REPO)
    parser.add_argument("--systems", nargs="+", default=systems, choices=[HARK, HARK_TORCH, HARK_STREAM, BP_NAME])


def add_arguments_eval(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, nargs="*", default=[],
                        help="set directories, each with audio/ and notes/")
    parser.add_argument("--names", nargs="+", help="one name per --data (default: real / synth-heldout / dir name)")
    parser.add_argument("--select", nargs="+",
                        help="one clip filter per --data: a glob on the audio file stem, '!GLOB' for all but "
                             "those, '*' for all (e.g. real and real-piano from one folder: '!piano_*' 'piano_*')")
    parser.add_argument("--piano-repeated", action="store_true",
                        help="also evaluate set piano-repeated: generated piano pieces with soft repeated chords "
                             "under the sustain pedal, on pianos training never uses, in a room (rendered on first "
                             "use into --piano-repeated-dir; scored with repeated_recall)")
    parser.add_argument("--piano-repeated-seed", type=int, default=26, help="seed of the generated set")
    parser.add_argument("--piano-repeated-clips", type=int, default=12, help="clips (30 s each) in the generated set")
    parser.add_argument("--piano-repeated-dir", type=Path,
                        help="where the generated set is kept (default data/eval/piano-repeated-s<seed>-n<clips>)")
    parser.add_argument("--limit-seconds", type=float, default=None, help="score only the first S seconds of each clip")
    parser.add_argument("--annotators", choices=["mean", "first"], default="mean",
                        help="clips with several annotations: average over them (default) or use the first CSV only")
    _common_args(parser, [HARK, BP_NAME])


def _score_set(eval_set: EvalSet, systems: dict[str, Any], limit_s: float | None, tmp: Path
               ) -> tuple[dict[str, ClipScore], dict[str, dict[str, ClipScore]], dict[str, dict[str, float]]]:
    from tqdm import tqdm

    pooled = {name: ClipScore() for name in systems}
    groups: dict[str, dict[str, ClipScore]] = {name: {} for name in systems}
    per_clip: dict[str, dict[str, float]] = {}
    for clip in tqdm(eval_set.clips, desc=f"eval {eval_set.name}", unit="clip", file=sys.stderr):
        audio = truncated_copy(clip.audio, limit_s, tmp) if limit_s else clip.audio
        refs = [a.notes.clipped(limit_s) if limit_s else a.notes for a in clip.annotations]
        per_clip[clip.name] = {}
        for name, system in systems.items():
            score = score_clip(refs, system.transcribe(audio))
            pooled[name] = pooled[name] + score
            groups[name][clip.group] = groups[name].get(clip.group, ClipScore()) + score
            per_clip[clip.name][name] = round(score.onset.f1, 4)
    return pooled, groups, per_clip


def _set_sizes(eval_set: EvalSet, limit_s: float | None) -> dict[str, Any]:
    sizes = eval_set.sizes()
    if limit_s:
        sizes["audio_s"] = round(sum(min(c.duration_s, limit_s) for c in eval_set.clips), 3)
        sizes["notes"] = round(sum(len(a.notes.clipped(limit_s)) / len(c.annotations)
                                   for c in eval_set.clips for a in c.annotations), 1)
    sizes["dir"] = str(eval_set.root)
    if eval_set.unmatched_csv:
        sizes["unmatched_csv"] = eval_set.unmatched_csv
    return sizes


def _round(d: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in d.items()}


def _build_systems(names: list[str], model_dir: Path, threads: int | None) -> tuple[dict[str, Any], dict[str, str]]:
    systems, skipped = {}, {}
    for name in names:
        try:
            systems[name] = build_system(name, model_dir, threads)
        except Exception as exc:  # a missing model or package must not stop the other system
            skipped[name] = f"{type(exc).__name__}: {exc}"
            log.warning("skipping %s: %s", name, skipped[name])
    return systems, skipped


def run_eval(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    names = args.names or default_set_names(args.data)
    selects = args.select or ["*"] * len(args.data)
    if len(names) != len(args.data) or len(selects) != len(args.data):
        log.error("--names and --select need one entry per --data directory")
        return 2
    data_dirs = list(args.data)
    if args.piano_repeated:
        data_dirs.append(piano_repeated_set(args.piano_repeated_seed, args.piano_repeated_clips,
                                            args.piano_repeated_dir))
        names, selects = [*names, PIANO_REPEATED], [*selects, "*"]
    if not data_dirs:
        log.error("nothing to evaluate: give --data and/or --piano-repeated")
        return 2
    sets = [read_set(d, n, args.annotators, sel) for d, n, sel in zip(data_dirs, names, selects)]
    systems, skipped = _build_systems(args.systems, args.model_dir, threads=None)
    if not systems:
        log.error("no system could be loaded: %s", skipped)
        return 1
    results: dict[str, dict[str, dict]] = {}
    meta_eval: dict[str, Any] = {
        "pooling": POOLING if args.annotators == "mean" else POOLING_FIRST,
        "reference_rule": "notes of the same key starting within 1 ms (unisons) merged into the longest",
        "onset_tolerance_s": ONSET_TOLERANCE_S,
        "offset_rule": "mir_eval default: offset within max(20 % of the reference duration, 50 ms)",
        "pitch_rule": "note metrics: pitches rounded to the nearest key, 50-cent tolerance; frame metrics: "
                      "exact pitch in Hz, mir_eval.multipitch half-semitone window",
        "frame_grid_s": FRAME_HOP_S,
        "frame_rule": "both systems' notes and the reference rendered on the same 10 ms grid, [onset, offset)",
        "limit_seconds": args.limit_seconds,
        "data_dirs": [str(d) for d in data_dirs],
        "select": dict(zip(names, selects)),
        "piano_repeated": {"seed": args.piano_repeated_seed, "clips": args.piano_repeated_clips,
                           "repeated_strike": "a strike of a key whose earlier note still sounded: the key still "
                                              "down, or the sustain pedal down from its release to the strike"}
                          if args.piano_repeated else None,
        "set_sizes": {}, "groups": {}, "per_clip_note_f1": {}, "error_breakdown": {},
        "systems": {name: s.info() for name, s in systems.items()},
        "skipped": skipped,
    }
    with tempfile.TemporaryDirectory() as tmp:
        for eval_set in sets:
            pooled, groups, per_clip = _score_set(eval_set, systems, args.limit_seconds, Path(tmp))
            results[eval_set.name] = {name: _round(s.metrics()) for name, s in pooled.items()}
            meta_eval["set_sizes"][eval_set.name] = _set_sizes(eval_set, args.limit_seconds)
            meta_eval["groups"][eval_set.name] = {
                name: {g: _round(s.metrics()) for g, s in by_group.items()} for name, by_group in groups.items()}
            meta_eval["per_clip_note_f1"][eval_set.name] = per_clip
            meta_eval["error_breakdown"][eval_set.name] = {
                name: {k: round(v, 1) for k, v in sorted(Counter(s.errors).items())} for name, s in pooled.items()}
            for name, m in results[eval_set.name].items():
                log.info("%s %-12s note F1 %.3f (P %.3f R %.3f)  with offsets %.3f  frame F1 %.3f%s", eval_set.name,
                         name, m["note_f1"], m["note_precision"], m["note_recall"], m["note_f1_offset"], m["frame_f1"],
                         f"  repeated recall {m['repeated_recall']:.3f}" if "repeated_recall" in m else "")
    stamp = report.stamp(REPO)
    meta_eval.update(date=stamp["date"], git_commit=stamp["git_commit"])
    _publish(args, sets=results, meta={**stamp, "eval": meta_eval})
    if HARK in systems and args.ship:  # the shipped model's card records its published scores
        harness.record_in_card(Path(args.model_dir), systems[HARK].info().get("sha256"), {
            "sets": results, "set_sizes": meta_eval["set_sizes"], "date": stamp["date"],
            "git_commit": stamp["git_commit"], "pooling": meta_eval["pooling"],
            "onset_tolerance_s": meta_eval["onset_tolerance_s"],
            "command": "hark eval transcriber " + " ".join(sys.argv[3:])})
    return 0


PIANO_REPEATED = "piano-repeated"


def piano_repeated_set(seed: int, clips: int, where: Path | None) -> Path:
    """The generated piano-repeated set (training/data/piano_pedal.py), rendered on first use;
    the same (seed, clips) always gives the same set."""
    from training.data import piano_pedal

    root = Path(where) if where else REPO / "data" / "eval" / f"piano-repeated-s{seed}-n{clips}"
    stamp = root / "manifest.json"
    spec = {"seed": seed, "clips": clips, "generator": piano_pedal.GENERATOR,
            "soundfonts": piano_pedal.EVAL_SOUNDFONTS, "programs": piano_pedal.EVAL_PROGRAMS}
    if stamp.is_file() and json.loads(stamp.read_text()).get("spec") == spec:
        return root
    log.info("rendering %s (%d clips, seed %d) into %s", PIANO_REPEATED, clips, seed, root)
    made = piano_pedal.build_set(root, clips, seed, soundfonts=piano_pedal.EVAL_SOUNDFONTS,
                                 programs=piano_pedal.EVAL_PROGRAMS, room=True, prefix="piano-repeated")
    stamp.write_text(json.dumps({"spec": spec, "clips": made}, indent=1) + "\n")
    return root


def _publish(args: argparse.Namespace, **results: Any) -> None:
    """Merge into the report's destination (its own folder, or with --ship the published file and
    the docs page's block)."""
    json_path, readme = report.destination(args, TAG, REPO)
    out = report.merge(report.load(json_path), **results)
    changed = report.write_all(out, json_path, json_path.with_suffix(".md"), readme, TAG)
    log.info("wrote %s and %s%s", json_path, json_path.with_suffix(".md"), " and the docs page" if changed else "")


def add_arguments_bench(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--audio", type=Path, nargs="+", help="audio files (default: a generated clip)")
    parser.add_argument("--data", type=Path, help="take audio from this set's audio/ folder instead")
    parser.add_argument("--seconds", type=float, default=60.0, help="audio seconds per file (trimmed or generated)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--server-rss", action="store_true",
                        help="also start `bentoml serve` and record the serving process tree's peak RSS")
    _common_args(parser, [HARK, HARK_TORCH, HARK_STREAM, BP_NAME])


def _bench_files(args: argparse.Namespace, tmp: Path) -> list[Path]:
    if args.audio:
        files = list(args.audio)
    elif args.data:
        files = sorted(p for p in (Path(args.data) / "audio").iterdir() if p.suffix.lower() in AUDIO_EXTS)[:1]
    else:
        return [speed.tone_clip(tmp / "tones.wav", args.seconds)]
    return [truncated_copy(f, args.seconds, tmp) for f in files]


def _measure(names: list[str], args: argparse.Namespace, files: list[Path], audio_s: float
             ) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """(CPU-s per audio-s per system, single-threaded then with default threads; system info).
    Systems that cannot be built get a `skipped` reason instead."""
    out: dict[str, dict[str, Any]] = {name: {} for name in names}
    info: dict[str, Any] = {}
    for label, threads in (("", 1), ("_default_threads", None)):
        systems = {}
        for name in names:
            if "skipped" in out[name]:
                continue
            try:
                systems[name] = build_system(name, args.model_dir, threads, cpu_only=True)
                info.setdefault(name, systems[name].info())
            except Exception as exc:  # a missing checkpoint or package is recorded, not fatal
                out[name] = {"skipped": f"{type(exc).__name__}: {exc}"}
                log.warning("skipping %s: %s", name, out[name]["skipped"])
        fns = {name: (lambda s=s: [s.transcribe(f) for f in files]) for name, s in systems.items()}
        # torch's thread count is process-wide; onnxruntime's was fixed when each session opened.
        with speed.torch_threads(threads) if HARK_TORCH in systems else contextlib.nullcontext():
            timings = speed.measure(fns, args.repeats) if fns else {}
        for name, timing in timings.items():
            out[name][f"cpu_s_per_audio_s{label}"] = round(timing.cpu_median / audio_s, 5)
            out[name][f"wall_s_per_audio_s{label}"] = round(timing.wall_median / audio_s, 5)
            log.info("%-12s %-16s CPU %.4f s per audio s (wall %.4f)", name,
                     "1 thread" if threads else "default threads", timing.cpu_median / audio_s,
                     timing.wall_median / audio_s)
            if isinstance(systems[name], HarkStreamSystem):
                out[name].update(systems[name].latency())
        del systems, fns
    return out, info


def run_bench(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        files = _bench_files(args, tmp)
        audio_s = sum(sf.info(str(f)).duration for f in files)
        sources = [f"generated: {f.name}" if f.is_relative_to(tmp) else str(f) for f in files]
        results, info = _measure(args.systems, args, files, audio_s)
        if args.server_rss:
            try:
                # The service resolves its model through HARK_TRANSCRIBER_MODEL first.
                env = {"HARK_TRANSCRIBER_MODEL": str(Path(args.model_dir).resolve())}
                results.setdefault(HARK, {}).update(
                    speed.serve_peak_rss("services.transcriber:Transcriber", files[0], REPO, env))
            except Exception as exc:
                results.setdefault(HARK, {})["peak_rss_skipped"] = f"{type(exc).__name__}: {exc}"
                log.warning("peak RSS not measured: %s", exc)
    anchor = results.get(BP_NAME, {})
    for name, vals in results.items():
        for label in ("", "_default_threads"):
            key = f"cpu_s_per_audio_s{label}"
            if name != BP_NAME and key in vals and anchor.get(key):
                vals[f"ratio_vs_basic_pitch{label}"] = round(vals[key] / anchor[key], 3)
    if not any("cpu_s_per_audio_s" in v for v in results.values()):
        log.error("no system could be measured: %s", {k: v.get("skipped") for k, v in results.items()})
        return 1
    meta_bench = {
        "audio": sources,
        "audio_s": round(audio_s, 3),
        "repeats": args.repeats,
        "statistic": "median over repeats of process CPU time (time.process_time, all threads) after one warm-up "
                     "call, divided by audio seconds; systems interleaved round-robin; wall time alongside",
        # Other processes inflate CPU time too (shared caches, SMT): read absolute numbers with this.
        "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "threads": "single: onnxruntime intra-op 1 (inter-op 1), torch.set_num_threads(1); default: hark as "
                   "served (HARK_ORT_THREADS, else cores / workers), basic-pitch and torch their own defaults",
        "cores": speed.cpu_count(),
        "systems": info,
        "pipeline": {HARK: "decode file (core.audio) + ONNX model + note decoding",
                     HARK_TORCH: "same decoding and note decoding, torch eager model instead of ONNX",
                     HARK_STREAM: "the file in 100 ms chunks through the streaming transcriber "
                                  "(short windows every 70 ms, incremental note decoding), as the WebSocket runs it",
                     BP_NAME: "basic_pitch.inference.predict() on the file (librosa load + ONNX + note creation)"},
    }
    stamp = report.stamp(REPO)
    meta_bench.update(date=stamp["date"], git_commit=stamp["git_commit"])
    _publish(args, speed=results, meta={**stamp, "bench": meta_bench})
    if isinstance(info.get(HARK), dict) and args.ship:
        harness.record_in_card(Path(args.model_dir), info[HARK].get("sha256"), {
            "speed": results, "speed_date": stamp["date"],
            "speed_command": "hark bench transcriber " + " ".join(sys.argv[3:])})
    return 0


__all__ = ["add_arguments_eval", "run_eval", "add_arguments_bench", "run_bench"]
