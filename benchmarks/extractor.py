"""`hark eval extractor` and `hark bench extractor`: target speech hearing on held-out binaural scenes.

eval: every scene of the set that `hark data extractor` writes (held-out speakers, head and noise;
mixture, target image, noisy and clean enrollment, all (left, right) at 16 kHz) goes through every
system, and each output is scored against the target's image at the ears:
- si_snri_db: SI-SNR of the output minus SI-SNR of the mixture, per ear, then the mean of the ears;
  si_snr_db is the output's own SI-SNR (for `mixture`, the input SI-SNR of the scene).
- itd_error_us / ild_error_db: |ITD(output) - ITD(target)| and |ILD(output) - ILD(target)|. A
  hearing aid must keep the talker where it is: masking each ear's own spectrum should.
Means (under the metric's name) and medians (NAME_median) over scenes, as `hark eval codec` does.

Systems:
- hark-noisy-enroll: the shipped model (or a checkpoint) enrolled on the noisy enrollment: the use.
- hark-clean-enroll: the same, enrolled on the clean enrollment: what a perfect enrollment is worth.
- mixture: the unprocessed input (SI-SNRi 0 by definition).
- beamformer: a fixed delay-and-sum beamformer steered to 0 degrees. The two ears of a (nearly)
  symmetric head hear a source straight ahead at the same time, so its steering delays are zero
  and delay-and-sum is (L+R)/2, copied to both ears (a diotic output: ITD 0, ILD 0). It is the
  classic non-learned way to favour the talker one faces, which is how the enrollment is taken;
  the task's targets can be anywhere around the head, where it helps little or not at all.

bench: milliseconds of CPU per 8 ms chunk through the streaming step on one thread: the ONNX step
through `ExtractorModel.stream` (numpy overhead included) and the torch `ExtractorStep`; median over
repeats of the mean per chunk, plus the 95th percentile and maximum of single chunks; and the
offline `extract()` cost in CPU-s per audio-s. The target: <= 4 ms per 8 ms chunk (ONNX).
Both commands merge their part into benchmarks/results/extractor.json and re-render extractor.md.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import harness, report, speed
from benchmarks.harness import Unavailable, display, reason

log = logging.getLogger("hark.bench")
REPO = Path(__file__).resolve().parent.parent
TAG = "extractor"
SAMPLE_RATE = 16000
CHUNK = 128  # 8 ms
MAX_ITD_S = 1e-3  # a human head's ITD stays within about +-0.7 ms
ITD_UPSAMPLE = 8  # GCC-PHAT peak found on a 1/128 kHz grid (7.8 us)
TARGET_MS = 4.0
DEFAULT_DATA = REPO / "data" / "extractor" / "heldout"
DEFAULT_MODEL_DIR = REPO / "artifacts" / "extractor"
DEFAULT_CHECKPOINT = REPO / "runs" / "extractor" / "last.pt"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "extractor.json"
SET_NAME = "heldout-scenes"

HARK_SYSTEMS = {"hark-noisy-enroll": "enrollment", "hark-clean-enroll": "enrollment_clean"}
EVAL_SYSTEMS = [*HARK_SYSTEMS, "mixture", "beamformer"]
BENCH_SYSTEMS = ["hark", "hark-torch"]

# (key, title, digits, higher is better)
METRICS = [
    ("si_snri_db", "SI-SNRi (dB)", 2, True),
    ("si_snr_db", "SI-SNR (dB)", 2, True),
    ("itd_error_us", "ITD error (us)", 1, False),
    ("ild_error_db", "ILD error (dB)", 2, False),
]


# --- metrics ------------------------------------------------------------------------------------


def si_snr(ref: np.ndarray, est: np.ndarray, eps: float = 1e-12) -> float:
    """Scale-invariant SNR in dB of one channel (zero-mean; cut to the shorter signal). A perfect
    estimate scores about 10*log10(energy / eps), i.e. large, not infinite."""
    n = min(ref.size, est.size)
    ref, est = ref[:n].astype(np.float64), est[:n].astype(np.float64)
    ref, est = ref - ref.mean(), est - est.mean()
    target = (np.dot(est, ref) / (np.dot(ref, ref) + eps)) * ref
    noise = est - target
    return float(10 * np.log10((np.dot(target, target) + eps) / (np.dot(noise, noise) + eps)))


def si_snr_ears(ref: np.ndarray, est: np.ndarray) -> float:
    """Mean over the two ears of the per-ear SI-SNR; (2, N) arrays."""
    return float(np.mean([si_snr(ref[ear], est[ear]) for ear in range(2)]))


def si_snri(ref: np.ndarray, est: np.ndarray, mixture: np.ndarray) -> float:
    """SI-SNR improvement in dB over the mixture, per ear, then the mean of the ears."""
    return float(np.mean([si_snr(ref[e], est[e]) - si_snr(ref[e], mixture[e]) for e in range(2)]))


def itd_s(binaural: np.ndarray, sample_rate: int = SAMPLE_RATE, max_itd_s: float = MAX_ITD_S) -> float:
    """Interaural time difference in seconds by GCC-PHAT: how much the right ear lags the left,
    so positive for a source on the left (as the scenes' azimuths: + = left). The peak of the
    phase-transform-weighted cross-correlation within +-max_itd_s, upsampled for sub-sample lags."""
    from scipy.fft import irfft, next_fast_len, rfft

    left, right = (np.asarray(c, dtype=np.float64) for c in binaural[:2])
    max_lag = int(np.ceil(max_itd_s * sample_rate))
    n = next_fast_len(left.size + max_lag)  # zero padding: a linear, not circular, correlation
    cross = np.conj(rfft(left, n)) * rfft(right, n)
    # PHAT: only the phase counts, so loud low frequencies and reverberant tails do not dominate.
    cross /= np.abs(cross) + 1e-12 * (np.abs(cross).max() + 1e-30)
    corr = irfft(cross, n * ITD_UPSAMPLE)
    span = max_lag * ITD_UPSAMPLE
    window = np.concatenate([corr[-span:], corr[:span + 1]])  # lags -span..+span
    return float((int(np.argmax(window)) - span) / (sample_rate * ITD_UPSAMPLE))


def ild_db(binaural: np.ndarray, eps: float = 1e-12) -> float:
    """Interaural level difference in dB, broadband: left energy over right (+ = left louder)."""
    left, right = (np.asarray(c, dtype=np.float64) for c in binaural[:2])
    return float(10 * np.log10((np.dot(left, left) + eps) / (np.dot(right, right) + eps)))


def beamformer(mixture: np.ndarray) -> np.ndarray:
    """Delay-and-sum steered to 0 degrees: zero delays on a symmetric head, so (L+R)/2 at both ears."""
    mid = 0.5 * (mixture[0] + mixture[1])
    return np.stack([mid, mid]).astype(np.float32)


def score(target: np.ndarray, output: np.ndarray, mixture: np.ndarray) -> dict[str, float]:
    """Every metric of one scene for one system's output; (2, N) arrays."""
    n = min(target.shape[1], output.shape[1])
    target, output, mixture = target[:, :n], output[:, :n], mixture[:, :n]
    return {"si_snri_db": si_snri(target, output, mixture),
            "si_snr_db": si_snr_ears(target, output),
            "itd_error_us": abs(itd_s(output) - itd_s(target)) * 1e6,
            "ild_error_db": abs(ild_db(output) - ild_db(target))}


def summarise(per_scene: list[dict[str, float]], seconds: float) -> dict[str, float]:
    """Per metric: mean (under the metric's own name) and median over scenes, NaNs left out."""
    return harness.summarise(per_scene, [key for key, *_ in METRICS], "scenes", seconds)


# --- data ---------------------------------------------------------------------------------------


@dataclass
class Scene:
    name: str
    mixture: np.ndarray           # (2, N) float32, (left, right)
    target: np.ndarray            # the target's image at the ears
    enrollment: np.ndarray        # (2, M): the target near 0 degrees, with interferers and noise
    enrollment_clean: np.ndarray  # the same without them
    meta: dict[str, Any]


def read_index(data: Path) -> dict[str, Any]:
    """scenes.json of a held-out set, checked: the metrics and the model are at 16 kHz."""
    index_path = Path(data) / "scenes.json"
    if not index_path.is_file():
        raise FileNotFoundError(f"no scenes.json in {data}: write the held-out scenes with `hark data extractor` "
                                "(they go to data/extractor/heldout) or pass --data DIR")
    index = json.loads(index_path.read_text())
    if index.get("sample_rate", SAMPLE_RATE) != SAMPLE_RATE:
        raise ValueError(f"{index_path} is at {index['sample_rate']} Hz; the extractor runs at {SAMPLE_RATE}")
    if not index.get("scenes"):
        raise FileNotFoundError(f"{index_path} lists no scenes")
    return index


def read_scene(data: Path, row: dict[str, Any]) -> Scene:
    import soundfile as sf

    def wav(key: str) -> np.ndarray:
        audio, rate = sf.read(str(Path(data) / f"{row['name']}_{key}.wav"), dtype="float32", always_2d=True)
        if rate != SAMPLE_RATE or audio.shape[1] != 2:
            raise ValueError(f"{row['name']}_{key}.wav: expected 2 channels at {SAMPLE_RATE} Hz, "
                             f"got {audio.shape[1]} at {rate}")
        return np.ascontiguousarray(audio.T)

    return Scene(row["name"], wav("mixture"), wav("target"), wav("enrollment"), wav("enrollment_clean"),
                 {k: v for k, v in row.items() if k != "name"})


# --- systems ------------------------------------------------------------------------------------

SystemFn = Callable[[Scene], np.ndarray]


class TorchExtractor:
    """A training checkpoint behind ExtractorModel's enroll / extract / stream, in torch eager mode."""

    def __init__(self, checkpoint: Path):
        from export.extractor import load_checkpoint
        from models.extractor import ExtractorStep

        model, state = load_checkpoint(checkpoint)  # float32 whatever the checkpoint holds
        self.model, self.step_module = model, ExtractorStep(model).eval()
        self.step = state.get("step")

    def enroll(self, binaural: np.ndarray) -> np.ndarray:
        import torch

        from core.extractor_enroll import enrollment_mels

        with torch.inference_mode():
            windows = self.model.enroll(torch.from_numpy(enrollment_mels(binaural)))
        mean = windows.mean(0).numpy()  # the normalised mean of the windows, as resemblyzer does
        return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)

    def extract(self, mixture: np.ndarray, embedding: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.model(torch.from_numpy(np.ascontiguousarray(mixture, np.float32))[None],
                             torch.from_numpy(np.asarray(embedding, np.float32))[None])
        return out[0].numpy()

    def stream(self, embedding: np.ndarray) -> TorchStream:
        return TorchStream(self, embedding)


class TorchStream:
    """ExtractorStep with its state carried between chunks of k * 128 samples."""

    def __init__(self, owner: TorchExtractor, embedding: np.ndarray):
        import torch

        cfg = owner.model.cfg
        self.step, self.hop = owner.step_module, cfg.hop
        self.embedding = torch.from_numpy(np.asarray(embedding, np.float32))[None]
        self.input_tail, self.output_tail, self.hidden = owner.model.zero_state(1).values()

    def process(self, chunk: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(chunk, np.float32))[None]
        outs = []
        with torch.inference_mode():
            for i in range(0, x.shape[-1], self.hop):
                out, self.input_tail, self.output_tail, self.hidden = self.step(
                    x[..., i:i + self.hop], self.embedding, self.input_tail, self.output_tail, self.hidden)
                outs.append(out)
        return torch.cat(outs, -1)[0].numpy()


def load_model(model_dir: Path | None, checkpoint: Path | None, threads: int | None = None) -> tuple[Any, dict]:
    """(model with enroll / extract / stream, info): the checkpoint's torch model when one is
    given, else the shipped ONNX model in `model_dir`."""
    if checkpoint is not None:
        if not Path(checkpoint).is_file():
            raise Unavailable(f"no checkpoint at {display(checkpoint)}: train one with `hark train extractor` "
                              "or pass --checkpoint PATH")
        try:
            import torch

            model = TorchExtractor(Path(checkpoint))
        except ModuleNotFoundError as exc:
            raise Unavailable(f"the torch extractor cannot run here: module {exc.name} is missing") from exc
        return model, {"runtime": "torch eager", "checkpoint": display(checkpoint), "step": model.step,
                       "torch": torch.__version__}
    if model_dir is None or not Path(model_dir).is_dir():
        raise Unavailable(f"no extractor model in {display(model_dir or DEFAULT_MODEL_DIR)}: export one with "
                          "`hark export extractor` (after `hark train extractor`), or pass --model-dir DIR "
                          "or --checkpoint PATH")
    try:
        from core.extractor_model import ExtractorModel
    except ModuleNotFoundError as exc:
        raise Unavailable(f"the hark extractor cannot run in this checkout: module {exc.name} is missing") from exc
    # threads None: the model's own default; the speed bench pins 1.
    model = ExtractorModel(Path(model_dir)) if threads is None else ExtractorModel(Path(model_dir), threads=threads)
    info = model.info() if callable(getattr(model, "info", None)) else {"version": getattr(model, "version", None)}
    return model, {**info, "runtime": "onnxruntime", "model_dir": display(model_dir)}


def _hark_systems(model_dir: Path | None, checkpoint: Path | None, names: list[str]
                  ) -> tuple[dict[str, SystemFn], dict[str, Any]]:
    """One model, enrolled on each scene's noisy or clean enrollment: (systems, info)."""
    model, model_info = load_model(model_dir, checkpoint)
    systems: dict[str, SystemFn] = {}
    info: dict[str, Any] = {}
    for name in names:
        key = HARK_SYSTEMS[name]
        systems[name] = (lambda s, key=key: model.extract(s.mixture, model.enroll(getattr(s, key))))
        info[name] = {**model_info, "enrollment": key}
    return systems, info


def build_systems(names: list[str], model_dir: Path | None, checkpoint: Path | None
                  ) -> tuple[dict[str, SystemFn], dict[str, str], dict[str, Any]]:
    """(systems that can run, {name: why skipped}, {name: info}) for `names` of EVAL_SYSTEMS."""
    systems: dict[str, SystemFn] = {}
    skipped: dict[str, str] = {}
    info: dict[str, Any] = {}
    # a missing model must not stop the baselines
    harness.add_group([n for n in names if n in HARK_SYSTEMS], lambda group: _hark_systems(model_dir, checkpoint, group),
                      systems, skipped, info)
    if "mixture" in names:
        systems["mixture"], info["mixture"] = (lambda s: s.mixture), {"runtime": "the unprocessed mixture"}
    if "beamformer" in names:
        systems["beamformer"] = lambda s: beamformer(s.mixture)
        info["beamformer"] = {"runtime": "numpy: delay-and-sum steered to 0 degrees, (L+R)/2 to both ears"}
    return systems, skipped, info


def _output(fn: SystemFn, scene: Scene) -> np.ndarray:
    out = np.asarray(fn(scene), dtype=np.float32)
    if out.ndim != 2 or out.shape[0] != 2:
        raise ValueError(f"a system must return (2, samples), got shape {out.shape}")
    return out


# --- eval ---------------------------------------------------------------------------------------


def _common_args(parser: argparse.ArgumentParser, systems: list[str]) -> None:
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="held-out scene set (scenes.json + WAVs) from `hark data extractor` "
                             "(default: data/extractor/heldout)")
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR,
                        help="the shipped extractor (ONNX + card.json), from `hark export extractor` "
                             "(default: artifacts/extractor)")
    harness.add_results_arguments(parser, DEFAULT_OUT, TAG, systems)


def add_arguments_eval(parser: argparse.ArgumentParser) -> None:
    _common_args(parser, EVAL_SYSTEMS)
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="score a training checkpoint (torch) instead of the shipped ONNX model")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N scenes")
    parser.add_argument("--name", default=SET_NAME, help=f"name of the evaluation set in the results (default: {SET_NAME})")


def evaluate(data: Path, rows: list[dict[str, Any]], systems: dict[str, SystemFn]
             ) -> tuple[dict[str, dict[str, float]], dict[str, str], dict[str, Any]]:
    """Score every system on every scene: (summary per system, {name: why it failed}, details).
    A system that fails on a scene is dropped whole, so that every summary covers the same scenes."""
    from tqdm import tqdm

    per_scene: dict[str, list[dict[str, float]]] = {name: [] for name in systems}
    failed: dict[str, str] = {}
    by_scene: dict[str, dict[str, dict[str, float]]] = {}
    seconds = 0.0
    for row in tqdm(rows, desc="eval extractor", unit="scene", file=sys.stderr):
        scene = read_scene(data, row)
        seconds += scene.mixture.shape[1] / SAMPLE_RATE
        by_scene[scene.name] = {}
        for name, fn in systems.items():
            if name in failed:
                continue
            try:
                out = _output(fn, scene)
            except Exception as exc:
                failed[name] = f"failed on {scene.name}: {reason(exc)}"
                log.warning("dropping %s: %s", name, failed[name])
                continue
            scores = score(scene.target, out, scene.mixture)
            per_scene[name].append(scores)
            by_scene[scene.name][name] = {k: round(v, 4) for k, v in scores.items()}
    summary = {name: summarise(scenes, seconds) for name, scenes in per_scene.items() if name not in failed}
    for entry in by_scene.values():
        for name in failed:
            entry.pop(name, None)
    return summary, failed, {"audio_s": round(seconds, 3), "per_scene": by_scene}


def run_eval(args: argparse.Namespace, systems: dict[str, SystemFn] | None = None) -> int:
    """`systems` replaces the named systems by callables Scene -> (2, N) output (tests, new systems)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        index = read_index(args.data)
    except (FileNotFoundError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    rows = index["scenes"][:args.limit] if args.limit else index["scenes"]
    given = dict(systems or {})
    built, skipped, info = build_systems([n for n in args.systems if n not in given], args.model_dir,
                                         getattr(args, "checkpoint", None))
    running = harness.chosen(args.systems, given, built, skipped, info)
    if not running:
        return 1
    summary, failed, details = evaluate(args.data, rows, running)
    skipped.update(failed)
    results = {args.name: harness.with_skipped(summary, skipped)}
    table = render_markdown({"sets": results, "meta": {}})
    print(table)
    meta_eval: dict[str, Any] = {
        "statistic": "per scene, then mean over scenes (metric name) and median (NAME_median)",
        "metrics": {
            "si_snri_db": "SI-SNR(output, target) - SI-SNR(mixture, target) per ear (zero-mean, scale-invariant), "
                          "mean of the two ears; target = the target talker's reverberant image at the ears",
            "si_snr_db": "SI-SNR(output, target), mean of the two ears",
            "itd_error_us": f"|ITD(output) - ITD(target)|; ITD by GCC-PHAT over the whole scene, peak within "
                            f"+-{MAX_ITD_S * 1e3:g} ms, {ITD_UPSAMPLE}x upsampled",
            "ild_error_db": "|ILD(output) - ILD(target)|; ILD = 10 log10(left energy / right energy), broadband"},
        "beamformer": "delay-and-sum steered to 0 degrees: zero delays on a symmetric head, (L+R)/2 to both ears",
        "data": display(args.data),
        "scenes_json": {k: index.get(k) for k in ("sample_rate", "seconds", "enroll_seconds")},
        "limit": args.limit,
        "set_sizes": {args.name: {"scenes": len(rows), "audio_s": details["audio_s"],
                                  "minutes": round(details["audio_s"] / 60, 2),
                                  "speakers": len({r.get("speaker") for r in rows})}},
        "systems": info,
        "skipped": skipped,
        "per_scene": {args.name: details["per_scene"]},
    }
    status = harness.write(args, TAG, render_markdown, "eval", meta_eval, sets=results)
    card_dir = Path(args.model_dir) if args.model_dir else None
    scored_onnx = CARD_SYSTEM not in given and info.get(CARD_SYSTEM, {}).get("runtime") == "onnxruntime"
    if (args.name == CARD_SET and not args.limit and CARD_SYSTEM in summary and scored_onnx
            and card_dir is not None and (card_dir / "card.json").is_file()):
        # The served model says what it achieves (services/extractor_model.quality): the full
        # held-out set, scored on the ONNX model itself, goes into its card.
        record_in_card(card_dir, {"sets": results, "meta": {"eval": meta_eval}})
    return status


CARD_SET, CARD_SYSTEM = "heldout-scenes", "hark-noisy-enroll"


def card_evaluation(result: dict[str, Any]) -> dict[str, Any]:
    """The card's `evaluation` from an eval result (benchmarks/results/extractor.json's layout)."""
    row = result["sets"][CARD_SET][CARD_SYSTEM]
    meta = result.get("meta", {}).get("eval", {})
    return {"heldout_si_snri_db": row["si_snri_db"], "heldout_si_snri_db_median": row["si_snri_db_median"],
            "scenes": row["scenes"], "set": CARD_SET, "system": CARD_SYSTEM,
            "date": meta.get("date"), "git_commit": meta.get("git_commit")}


def record_in_card(model_dir: Path, result: dict[str, Any]) -> dict[str, Any]:
    """Write card_evaluation(result) into model_dir/card.json; returns it."""
    card_path = model_dir / "card.json"
    card = json.loads(card_path.read_text())
    card["evaluation"] = card_evaluation(result)
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    log.info("recorded held-out SI-SNRi %.2f dB in %s", card["evaluation"]["heldout_si_snri_db"], card_path)
    return card["evaluation"]


# --- bench --------------------------------------------------------------------------------------


def add_arguments_bench(parser: argparse.ArgumentParser) -> None:
    _common_args(parser, BENCH_SYSTEMS)
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT,
                        help="torch checkpoint for hark-torch (default: runs/extractor/last.pt)")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio seconds streamed per repeat")
    parser.add_argument("--repeats", type=int, default=5)


def bench_audio(data: Path, seconds: float) -> tuple[np.ndarray, np.ndarray, str]:
    """(mixture (2, N), enrollment (2, M), what it is). Held-out mixtures concatenated where the
    set exists; else deterministic noise: the network's cost does not depend on what it hears."""
    n = int(seconds * SAMPLE_RATE) // CHUNK * CHUNK
    try:
        index = read_index(data)
        pieces, enrollment, used = [], None, 0
        for row in index["scenes"]:
            scene = read_scene(data, row)
            enrollment = scene.enrollment if enrollment is None else enrollment
            pieces.append(scene.mixture)
            used += 1
            if sum(p.shape[1] for p in pieces) >= n:
                break
        mixture = np.concatenate(pieces, axis=1)
        if mixture.shape[1] >= n:
            return mixture[:, :n], enrollment, f"{used} held-out mixtures from {display(data)}"
    except (FileNotFoundError, ValueError):
        pass
    log.warning("no held-out scenes in %s: benchmarking on noise", data)
    rng = np.random.default_rng(0)
    noise = (0.05 * rng.standard_normal((2, n + 4 * SAMPLE_RATE))).astype(np.float32)
    return noise[:, :n], noise[:, n:], "deterministic white noise (no held-out scenes found)"


def stream_chunk_times(model: Any, embedding: np.ndarray, mixture: np.ndarray) -> tuple[list[float], float]:
    """Stream `mixture` in 8 ms chunks through a fresh stream: (CPU seconds per chunk, wall seconds)."""
    stream = model.stream(embedding)
    chunks = [np.ascontiguousarray(mixture[:, i:i + CHUNK]) for i in range(0, mixture.shape[1], CHUNK)]
    cpu = []
    w0 = time.perf_counter()
    for chunk in chunks:
        c0 = time.process_time()
        stream.process(chunk)
        cpu.append(time.process_time() - c0)
    return cpu, time.perf_counter() - w0


def _bench_models(names: list[str], args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    models: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    info: dict[str, Any] = {}
    for name in names:  # each its own group: a missing checkpoint does not skip the ONNX model
        harness.add_group([name], lambda group: _bench_model(group[0], args), models, skipped, info)
    return models, skipped, info


def _bench_model(name: str, args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """({name: model}, {name: info}) for "hark" (the shipped ONNX model) or "hark-torch"."""
    if name == "hark":
        model, model_info = load_model(args.model_dir, None, threads=1)
        model_info["runtime"] = "onnxruntime, 1 thread (intra-op), through ExtractorModel.stream"
    else:
        model, model_info = load_model(None, args.checkpoint)
        model_info["runtime"] = "torch eager ExtractorStep, torch.set_num_threads(1)"
    return {name: model}, {name: model_info}


def measure(models: dict[str, Any], mixture: np.ndarray, enrollment: np.ndarray, repeats: int
            ) -> dict[str, dict[str, float]]:
    """Per model: streaming cost per chunk and offline extract() cost. Models interleaved, order
    rotated each repeat, after one warm-up, so load from other processes hits them alike."""
    embeddings = {name: np.asarray(m.enroll(enrollment), np.float32) for name, m in models.items()}
    warm = mixture[:, :min(mixture.shape[1], 50 * CHUNK)]
    for name, m in models.items():
        stream_chunk_times(m, embeddings[name], warm)
        m.extract(warm, embeddings[name])
    names = list(models)
    means: dict[str, list[float]] = {n: [] for n in names}
    walls: dict[str, list[float]] = {n: [] for n in names}
    singles: dict[str, list[float]] = {n: [] for n in names}
    offline: dict[str, list[float]] = {n: [] for n in names}
    enroll: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            m, emb = models[name], embeddings[name]
            cpu, wall = stream_chunk_times(m, emb, mixture)
            means[name].append(sum(cpu) / len(cpu))
            walls[name].append(wall / len(cpu))
            singles[name] += cpu
            c0 = time.process_time()
            m.extract(mixture, emb)
            offline[name].append(time.process_time() - c0)
            c0 = time.process_time()
            m.enroll(enrollment)
            enroll[name].append(time.process_time() - c0)
    audio_s = mixture.shape[1] / SAMPLE_RATE
    out = {}
    for name in names:
        ms = 1e3 * statistics.median(means[name])
        out[name] = {"ms_per_8ms_chunk": round(ms, 4),
                     "ms_per_8ms_chunk_p95": round(1e3 * float(np.percentile(singles[name], 95)), 4),
                     "ms_per_8ms_chunk_max": round(1e3 * max(singles[name]), 4),
                     "wall_ms_per_8ms_chunk": round(1e3 * statistics.median(walls[name]), 4),
                     "real_time_factor": round(ms / 8.0, 4),
                     "extract_cpu_s_per_audio_s": round(statistics.median(offline[name]) / audio_s, 5),
                     "enroll_cpu_s": round(statistics.median(enroll[name]), 4)}
    return out


def run_bench(args: argparse.Namespace, models: dict[str, Any] | None = None) -> int:
    """`models` replaces the named systems by objects with enroll / extract / stream (tests)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    load_before = os.getloadavg()[0]
    mixture, enrollment, audio_desc = bench_audio(args.data, args.seconds)
    given = dict(models or {})
    built, skipped, info = _bench_models([n for n in args.systems if n not in given], args)
    built.update(given)
    info.update({n: {"runtime": "given in-process"} for n in given})
    for name, why in skipped.items():
        log.warning("skipping %s: %s", name, why)
    if not built:
        log.error("no system could be measured: %s", skipped)
        return 1
    results: dict[str, dict[str, Any]] = {name: {"skipped": why} for name, why in skipped.items()}
    # torch's intra-op thread count is process-wide; onnxruntime's was fixed when its session opened.
    with speed.torch_threads(1) if "hark-torch" in built else contextlib.nullcontext():
        timings = measure(built, mixture, enrollment, args.repeats)
    results.update(timings)
    for name, t in timings.items():
        log.info("%-10s %.3f ms CPU per 8 ms chunk (p95 %.3f, max %.3f; wall %.3f); extract %.4f CPU-s per audio-s",
                 name, t["ms_per_8ms_chunk"], t["ms_per_8ms_chunk_p95"], t["ms_per_8ms_chunk_max"],
                 t["wall_ms_per_8ms_chunk"], t["extract_cpu_s_per_audio_s"])
    meta_bench = {
        "audio": audio_desc,
        "audio_s": round(mixture.shape[1] / SAMPLE_RATE, 3),
        "enroll_s": round(enrollment.shape[1] / SAMPLE_RATE, 3),
        "repeats": args.repeats,
        "statistic": "ms_per_8ms_chunk: median over repeats of the mean CPU time (process, all threads) per "
                     "128-sample chunk, streaming the whole audio through a fresh stream each repeat, after a "
                     "warm-up; _p95 and _max over single chunks of all repeats; wall_ms alongside; "
                     "extract_cpu_s_per_audio_s: offline extract() of the whole audio; enroll_cpu_s: one enroll()",
        "target": f"<= {TARGET_MS:g} ms per 8 ms chunk (ONNX, one thread)",
        "threads": "onnxruntime intra-op 1; torch.set_num_threads(1)",
        "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "cores": speed.cpu_count(),
        "systems": info,
        "skipped": skipped,
    }
    return harness.write(args, TAG, render_markdown, "bench", meta_bench, speed=results)


# --- markdown -----------------------------------------------------------------------------------

TABLES = report.FamilyTables(
    tag=TAG,
    systems=[*EVAL_SYSTEMS, *BENCH_SYSTEMS],
    metrics=METRICS,
    unit="scenes",
    speed_columns=[("ms_per_8ms_chunk", "ms CPU per 8 ms chunk (1 thread)", 3), ("ms_per_8ms_chunk_p95", "p95", 3),
                   ("ms_per_8ms_chunk_max", "max", 3), ("wall_ms_per_8ms_chunk", "wall ms per chunk", 3),
                   ("extract_cpu_s_per_audio_s", "offline CPU-s per audio-s", 4), ("enroll_cpu_s", "enroll CPU-s", 3)],
    quality_note="held-out speakers, head and noise; scored against the target's image at the ears; "
                 "mean over scenes (median). beamformer: delay-and-sum steered to 0°, (L+R)/2 to both ears.",
    speed_note=lambda bench: (f"median of {bench.get('repeats', '?')} repeats streaming {bench.get('audio_s', '?')} s, "
                              f"{bench.get('cores', '?')} cores; target <= {TARGET_MS:g} ms per 8 ms chunk (ONNX)."),
)


def render_markdown(results: dict[str, Any]) -> str:
    """Quality (mean and median over scenes per system) and streaming speed tables."""
    return report.render_family(results, TABLES)


__all__ = ["add_arguments_bench", "add_arguments_eval", "run_bench", "run_eval"]
