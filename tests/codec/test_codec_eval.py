"""`hark eval codec` / `hark bench codec`: the metrics, the held-out selection, the results file.

No trained codec is needed: stand-in systems (a moving-average lowpass, a mu-law quantizer) take
the hark codec's place, and a stand-in core.codec_model checks how the harness drives the
real one. The ffmpeg anchors run where ffmpeg has libopus and libcodec2 and are otherwise
expected to be recorded as skipped.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import types
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import soundfile as sf

from benchmarks import codec, codec_anchors

SR = codec.SAMPLE_RATE
METRIC_KEYS = ["pesq_wb", "stoi", "mel_distance", "si_sdr"]


def speechlike(seconds: float, f0: float = 140.0, seed: int = 0) -> np.ndarray:
    """Harmonics of a wobbling pitch, opened and closed at a syllable rate, over a little noise:
    enough like speech for PESQ's voice activity detector and STOI's frames."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    pitch = f0 * (1 + 0.08 * np.sin(2 * np.pi * 1.3 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / SR
    voiced = sum(np.cos(k * phase) / k for k in range(1, 25) if k * f0 * 1.1 < SR / 2)
    syllables = np.clip(np.sin(2 * np.pi * 3.5 * t), 0, None) ** 0.5
    x = 0.15 * voiced * syllables + 0.003 * rng.standard_normal(t.size)
    return x.astype(np.float32)


def lowpass(audio: np.ndarray) -> np.ndarray:
    return np.convolve(audio, np.ones(8) / 8, mode="same").astype(np.float32)


def mulaw(audio: np.ndarray, levels: int = 256) -> np.ndarray:
    mu = levels - 1
    y = np.sign(audio) * np.log1p(mu * np.abs(audio)) / np.log1p(mu)
    y = np.round((y + 1) / 2 * mu) / mu * 2 - 1
    return (np.sign(y) * np.expm1(np.abs(y) * np.log1p(mu)) / mu).astype(np.float32)


FAKES = {"hark-1kbps": lowpass, "hark-2kbps": mulaw}


@pytest.fixture(scope="module")
def speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two clips of held-out LibriSpeech speakers and one of a training speaker (19)."""
    root = tmp_path_factory.mktemp("speech") / "librispeech"
    root.mkdir()
    for i, (name, f0) in enumerate([("6147-1-0000", 120.0), ("446-2-0001", 190.0), ("19-3-0002", 150.0)]):
        sf.write(str(root / f"{name}.flac"), speechlike(1.5, f0, seed=i), SR, subtype="PCM_16")
    return root.parent


def _args(kind: str, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    getattr(codec, f"add_arguments_{kind}")(parser)
    return parser.parse_args(argv)


# --- metrics ------------------------------------------------------------------------------------


def test_si_sdr_is_high_for_the_same_signal_and_tracks_added_noise() -> None:
    x = speechlike(1.0)
    noise = np.random.default_rng(1).standard_normal(x.size).astype(np.float32)
    noise *= np.sqrt(np.mean(x ** 2) / np.mean(noise ** 2)) / np.sqrt(10)  # 10 dB below the signal
    assert codec.si_sdr(x, x) > 80
    assert codec.si_sdr(x, 0.3 * x) > 80  # scale-invariant
    assert codec.si_sdr(x, x + noise) == pytest.approx(10.0, abs=0.5)
    assert codec.si_sdr(x, x + 3 * noise) < codec.si_sdr(x, x + noise)


def test_mel_distance_is_zero_for_the_same_signal_and_grows_with_damage() -> None:
    x = speechlike(1.0)
    assert codec.mel_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    assert codec.log_mel(x).shape == (x.size // codec.HOP + 1, codec.N_MELS)
    assert 0 < codec.mel_distance(x, mulaw(x)) < codec.mel_distance(x, lowpass(x))


def test_metrics_align_lengths() -> None:
    x = speechlike(1.0)
    padded = np.concatenate([x, np.zeros(123, np.float32)])  # a codec padding to whole frames
    assert codec.si_sdr(x, padded) > 80 and codec.mel_distance(padded, x) == pytest.approx(0.0, abs=1e-9)


def test_pesq_and_stoi_give_sane_ranges() -> None:
    x = speechlike(2.0)
    noise = np.random.default_rng(1).standard_normal(x.size).astype(np.float32) * np.sqrt(np.mean(x ** 2))
    clean = codec.score(x, x)
    at_10db, at_0db = codec.score(x, x + noise / np.sqrt(10)), codec.score(x, x + noise)
    assert 4.0 < clean["pesq_wb"] <= 4.65 and clean["stoi"] > 0.99  # 4.64 is PESQ-WB's ceiling
    assert 1.0 <= at_0db["pesq_wb"] <= at_10db["pesq_wb"] < 3.0
    assert 0.0 <= at_0db["stoi"] < at_10db["stoi"] < clean["stoi"]


def test_summary_has_means_medians_and_sizes() -> None:
    clips = [{"pesq_wb": 1.0, "stoi": 0.5, "mel_distance": 1.0, "si_sdr": 0.0, "level_diff_db": 0.5},
             {"pesq_wb": float("nan"), "stoi": 0.7, "mel_distance": 2.0, "si_sdr": 3.0, "level_diff_db": -1.0},
             {"pesq_wb": 3.0, "stoi": 0.9, "mel_distance": 6.0, "si_sdr": 9.0, "level_diff_db": 0.2}]
    s = codec.summarise(clips, seconds=90.0)
    assert s["stoi"] == pytest.approx(0.7) and s["mel_distance"] == pytest.approx(3.0)
    assert s["mel_distance_median"] == pytest.approx(2.0) and s["level_diff_db_median"] == pytest.approx(0.2)
    assert s["pesq_wb"] == pytest.approx(2.0) and s["pesq_wb_clips"] == 2  # PESQ's failure left out, counted
    assert s["clips"] == 3 and s["minutes"] == pytest.approx(1.5)


# --- eval and bench end to end ------------------------------------------------------------------


def _assert_anchor(entry: dict, name: str) -> None:
    """Scored where ffmpeg has the encoder; recorded as skipped, with the reason, where not."""
    if codec_anchors.available()[0]:
        assert all(np.isfinite(entry[k]) for k in METRIC_KEYS), name
        assert entry["kbps"] > 0
    else:
        assert "ffmpeg" in entry["skipped"]


def test_eval_scores_held_out_clips_only_and_writes_results(speech_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "results" / "codec.json"
    args = _args("eval", ["--data", str(speech_dir), "--out", str(out), "--readme", str(tmp_path / "none.md")])
    assert args.systems == codec.EVAL_SYSTEMS
    assert codec.run_eval(args, systems=FAKES) == 0

    data = json.loads(out.read_text())
    systems = data["sets"]["real-heldout"]
    assert set(systems) == set(codec.EVAL_SYSTEMS)
    for name in FAKES:
        entry = systems[name]
        for key in METRIC_KEYS:
            assert isinstance(entry[key], float) and isinstance(entry[f"{key}_median"], float)
        assert entry["clips"] == 2 and entry["minutes"] == pytest.approx(3.0 / 60, abs=1e-3)
    assert systems["hark-2kbps"]["si_sdr"] > systems["hark-1kbps"]["si_sdr"]  # mu-law beats the lowpass
    assert systems["hark-2kbps"]["mel_distance"] < systems["hark-1kbps"]["mel_distance"]
    for entry in systems.values():  # loudness: the median clip, and the worst one beside it
        if "level_diff_db_max_abs" in entry:
            assert entry["level_diff_db_max_abs"] >= abs(entry["level_diff_db_median"]) - 1e-3
    assert systems["hark-1kbps"]["level_diff_db_max_abs"] > 0.1  # the lowpass changes the level
    for name in ("opus-6kbps", "opus-12kbps", "codec2-3200", "codec2-1300"):
        _assert_anchor(systems[name], name)

    meta = data["meta"]["eval"]
    assert meta["set_sizes"]["real-heldout"] == {"clips": 2, "audio_s": 3.0, "minutes": 0.05, "speakers": 2}
    assert meta["speakers"] == ["librispeech-446", "librispeech-6147"]  # speaker 19 trains, so it is not here
    assert set(meta["per_clip"]["real-heldout"]) == {"6147-1-0000", "446-2-0001"}
    assert set(data["meta"]["versions"]) >= {"pesq", "pystoi"}
    md = out.with_suffix(".md").read_text()
    assert "| real-heldout (2 clips, 0.1 min) | PESQ-WB (MOS-LQO) ↑ |" in md
    assert all(name in md for name in codec.EVAL_SYSTEMS)


def test_train_split_scores_training_speakers_in_its_own_file(speech_dir: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "DEFAULT_OUT", tmp_path / "codec.json")
    monkeypatch.setattr(codec, "DEFAULT_TRAIN_OUT", tmp_path / "codec-train.json")
    readme = codec.harness.REPO / "docs" / "codec.md"
    before = readme.read_text()
    args = _args("eval", ["--data", str(speech_dir), "--split", "train", "--ship", "--systems", *FAKES])
    assert codec.run_eval(args, systems=FAKES) == 0
    assert not (tmp_path / "codec.json").exists() and readme.read_text() == before
    data = json.loads((tmp_path / "codec-train.json").read_text())
    assert set(data["sets"]) == {"real-train"} and data["meta"]["eval"]["split"] == "train"
    assert data["meta"]["eval"]["speakers"] == ["librispeech-19"]
    assert "TRAINING speakers" in (tmp_path / "codec-train.md").read_text()


def test_max_clips_takes_an_evenly_spaced_subset(tmp_path: Path) -> None:
    for i in range(10):
        sf.write(str(tmp_path / f"19-1-{i:04d}.flac"), speechlike(0.2, seed=i), SR)
    picked = codec.split_clips([tmp_path], "train", max_clips=3)
    assert [p.stem for p in picked] == ["19-1-0000", "19-1-0003", "19-1-0006"]
    assert len(codec.split_clips([tmp_path], "train")) == 10
    with pytest.raises(FileNotFoundError, match="HELDOUT_SPEAKERS"):
        codec.split_clips([tmp_path], "heldout")


def test_bench_measures_cpu_and_keeps_the_eval_results(speech_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "codec.json"
    out.write_text(json.dumps({"sets": {"real-heldout": {"opus-6kbps": {"pesq_wb": 2.0}}}, "speed": {}, "meta": {}}))
    systems = ["hark-1kbps", "hark-2kbps", "hark-torch-1kbps", "opus-6kbps"]
    args = _args("bench", ["--data", str(speech_dir), "--out", str(out), "--readme", str(tmp_path / "none.md"),
                           "--seconds", "2", "--repeats", "2", "--checkpoint", str(tmp_path / "missing.pt"),
                           "--systems", *systems])
    assert codec.run_bench(args, systems=FAKES) == 0

    data = json.loads(out.read_text())
    speed = data["speed"]
    assert set(speed) == set(systems)
    for name in FAKES:
        assert speed[name]["cpu_s_per_audio_s"] >= 0 and speed[name]["wall_s_per_audio_s"] >= 0
    assert "hark train codec" in speed["hark-torch-1kbps"]["skipped"]
    if codec_anchors.available()[0]:
        assert speed["opus-6kbps"]["cpu_s_per_audio_s"] > 0  # ffmpeg's CPU, seen through its rusage
    else:
        assert "ffmpeg" in speed["opus-6kbps"]["skipped"]
    assert data["sets"]["real-heldout"]["opus-6kbps"] == {"pesq_wb": 2.0}  # eval's part untouched
    assert data["meta"]["bench"]["audio_s"] == pytest.approx(2.0)
    assert "| hark-torch-1kbps | skipped: no torch checkpoint" in out.with_suffix(".md").read_text()


def test_missing_encoder_and_missing_model_are_recorded_as_skipped(speech_dir: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "_ffmpeg_status", lambda: (False, "ffmpeg lacks ['libcodec2']"))
    out = tmp_path / "codec.json"
    args = _args("eval", ["--data", str(speech_dir), "--out", str(out), "--readme", str(tmp_path / "none.md"),
                          "--model-dir", str(tmp_path / "no-model"), "--limit-seconds", "1",
                          "--systems", "hark-1kbps", "hark-2kbps", "codec2-1300"])
    assert codec.run_eval(args, systems={"hark-2kbps": mulaw}) == 0
    data = json.loads(out.read_text())
    systems = data["sets"]["real-heldout"]
    assert "libcodec2" in systems["codec2-1300"]["skipped"]
    assert "hark export codec" in systems["hark-1kbps"]["skipped"]
    assert systems["hark-2kbps"]["clips"] == 2
    assert set(data["meta"]["eval"]["skipped"]) == {"codec2-1300", "hark-1kbps"}
    assert "skipped" in out.with_suffix(".md").read_text()


def test_a_system_that_fails_is_dropped_whole(speech_dir: Path) -> None:
    calls = []

    def flaky(audio: np.ndarray) -> np.ndarray:
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("boom")
        return audio

    files = codec.heldout_files([speech_dir])
    summary, failed, details = codec.evaluate(files, {"flaky": flaky, "same": lambda a: a})
    assert "boom" in failed["flaky"] and set(summary) == {"same"}
    assert all(set(clip) == {"same"} for clip in details["per_clip"].values())


def test_no_heldout_speakers_is_a_clear_error(tmp_path: Path) -> None:
    sf.write(str(tmp_path / "19-3-0002.flac"), speechlike(0.5), SR)
    with pytest.raises(FileNotFoundError, match="HELDOUT_SPEAKERS"):
        codec.heldout_files([tmp_path])
    with pytest.raises(FileNotFoundError, match="not found"):
        codec.heldout_files([tmp_path / "nowhere"])
    args = _args("eval", ["--data", str(tmp_path), "--out", str(tmp_path / "codec.json")])
    assert codec.run_eval(args, systems=FAKES) == 2 and not (tmp_path / "codec.json").exists()


# --- how the harness drives the real codec ------------------------------------------------------


class FakeCodecModel:
    """What core.codec_model.CodecModel is expected to offer."""

    instances: ClassVar[list[FakeCodecModel]] = []

    def __init__(self, model_dir: Path, threads: int | None = None):
        self.model_dir, self.threads, self.sample_rate, self.calls = model_dir, threads, SR, []
        FakeCodecModel.instances.append(self)

    def reconstruct(self, audio: np.ndarray, kbps: float) -> np.ndarray:
        self.calls.append(("reconstruct", kbps))
        return audio

    def encode(self, audio: np.ndarray, kbps: float) -> np.ndarray:
        self.calls.append(("encode", kbps))
        return np.zeros((audio.size // 320, 2, int(kbps)), dtype=np.int64)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        self.calls.append(("decode", codes.shape[-1]))
        return np.zeros(codes.shape[0] * 320, dtype=np.float32)


def test_hark_systems_use_codec_model_at_both_bitrates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "core.codec_model", types.SimpleNamespace(CodecModel=FakeCodecModel))
    FakeCodecModel.instances.clear()
    systems, skipped, info = codec.build_systems(["hark-1kbps", "hark-2kbps"], tmp_path)
    assert not skipped and info["hark-2kbps"]["kbps"] == 2.0
    x = speechlike(0.5)
    assert np.array_equal(systems["hark-1kbps"](x), x)
    systems["hark-2kbps"](x)
    model = FakeCodecModel.instances[-1]
    assert model.threads is None and model.calls == [("reconstruct", 1.0), ("reconstruct", 2.0)]

    args = _args("bench", ["--model-dir", str(tmp_path)])
    fns, skipped, _ = codec.bench_fns(["hark-1kbps"], args, x)
    fns["hark-1kbps"]()
    model = FakeCodecModel.instances[-1]
    # the bench times what /encode + /decode cost: encode, the encoder's own decode (level), decode
    assert model.threads == 1 and model.calls == [("reconstruct", 1.0)]


def test_missing_model_dir_says_how_to_get_one(tmp_path: Path) -> None:
    systems, skipped, _ = codec.build_systems(["hark-1kbps"], tmp_path / "missing")
    assert not systems and "hark export codec" in skipped["hark-1kbps"]


def test_stages_follow_the_checkpoints_bitrates() -> None:
    cfg = types.SimpleNamespace(stages=2, bitrate=lambda stages: 1000.0 * stages)
    model = types.SimpleNamespace(cfg=cfg)
    assert codec._stages(model, 1.0) == 1 and codec._stages(model, 2.0) == 2
    with pytest.raises(ValueError):
        codec._stages(model, 3.0)


def test_cpu_time_counts_finished_children() -> None:
    burn = [sys.executable, "-c", "sum(i * i for i in range(2_000_000))"]
    timing = codec.measure({"child": lambda: subprocess.run(burn, check=True)}, repeats=1, warmup=0)["child"]
    assert timing.cpu_s[0] > 0.05


def test_cli_dispatches_codec_eval_and_bench() -> None:
    from hark.cli import FAMILIES, build_parser

    assert FAMILIES["codec"].eval == FAMILIES["codec"].bench == "benchmarks.codec"
    args = build_parser(["eval", "codec"]).parse_args(["eval", "codec", "--systems", "opus-6kbps"])
    assert args.systems == ["opus-6kbps"] and args.model_dir == codec.DEFAULT_MODEL_DIR
    args = build_parser(["bench", "codec"]).parse_args(["bench", "codec"])
    assert args.seconds == 30.0 and "hark-torch-2kbps" in args.systems


def test_torch_systems_load_the_checkpoint_and_run_single_threaded(speech_dir: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    seen: list[tuple[int, int]] = []

    class FakeTorchCodec:
        cfg = types.SimpleNamespace(stages=2, bitrate=lambda stages: 1000.0 * stages)

        def encode(self, audio: torch.Tensor, stages: int) -> torch.Tensor:
            seen.append((stages, torch.get_num_threads()))
            return torch.zeros(audio.shape[0], audio.shape[1] // 320, 2, stages, dtype=torch.long)

        def decode(self, codes: torch.Tensor) -> torch.Tensor:
            return torch.zeros(codes.shape[0], codes.shape[1] * 320)

    checkpoint = tmp_path / "last.pt"
    checkpoint.write_bytes(b"")
    fake = types.SimpleNamespace(load_checkpoint=lambda path: (FakeTorchCodec(), {"step": 7}))
    monkeypatch.setitem(sys.modules, "export.codec", fake)
    out = tmp_path / "codec.json"
    args = _args("bench", ["--data", str(speech_dir), "--out", str(out), "--readme", str(tmp_path / "none.md"),
                           "--checkpoint", str(checkpoint), "--seconds", "1", "--repeats", "1",
                           "--systems", "hark-torch-1kbps", "hark-torch-2kbps"])
    assert codec.run_bench(args) == 0
    assert set(seen) == {(1, 1), (2, 1)}  # the bit rates' stage counts, torch on one thread
    data = json.loads(out.read_text())
    assert data["speed"]["hark-torch-2kbps"]["cpu_s_per_audio_s"] >= 0
    assert data["meta"]["bench"]["systems"]["hark-torch-1kbps"]["step"] == 7
