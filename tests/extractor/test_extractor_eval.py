"""`hark eval extractor` / `hark bench extractor`: the metrics, the scene set, the results file.

No trained extractor is needed: a stand-in ExtractorModel (identity extraction, a fixed embedding,
a stream that lags 64 samples like the real one) takes its place, and a tiny random checkpoint of
models.extractor checks the torch path.
"""
from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import soundfile as sf

from benchmarks import extractor as ex

SR = ex.SAMPLE_RATE


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def delayed(x: np.ndarray, k: int) -> np.ndarray:
    """x delayed by k samples (linear, not circular), same length."""
    return np.concatenate([np.zeros(k, x.dtype), x[:x.size - k]])


def at_ears(x: np.ndarray, delay_right: int = 0, left_gain_db: float = 0.0) -> np.ndarray:
    """A crude binaural image: the right ear delayed, the left ear louder (a source on the left)."""
    return np.stack([x * 10 ** (left_gain_db / 20), delayed(x, delay_right)]).astype(np.float32)


# --- metrics ------------------------------------------------------------------------------------


def test_si_snr_is_large_for_a_scaled_copy_and_si_snri_of_identity_is_zero() -> None:
    x = noise(0.5)
    assert ex.si_snr(x, 0.3 * x) > 80
    n = noise(0.5, seed=1) / np.sqrt(10)  # 10 dB below
    assert ex.si_snr(x, x + n) == pytest.approx(10.0, abs=0.5)
    target, mixture = at_ears(x), at_ears(x + n)
    assert ex.si_snri(target, mixture, mixture) == pytest.approx(0.0, abs=1e-9)
    assert ex.si_snri(target, target, mixture) > 60


@pytest.mark.parametrize("k", [3, -7, 11])
def test_itd_of_a_delay_in_one_ear_has_its_size_and_sign(k: int) -> None:
    x = noise(0.5)
    # k > 0: the right ear lags, the source is on the left, the ITD is positive; k < 0: the left lags.
    binaural = at_ears(x, delay_right=k) if k > 0 else np.stack([delayed(x, -k), x])
    assert ex.itd_s(binaural) == pytest.approx(k / SR, abs=1e-6)


def test_ild_of_a_gain_is_that_gain() -> None:
    x = noise(0.5)
    assert ex.ild_db(at_ears(x, left_gain_db=6.0)) == pytest.approx(6.0, abs=1e-6)
    assert ex.ild_db(at_ears(x, left_gain_db=-3.0)) == pytest.approx(-3.0, abs=1e-6)


def test_beamformer_keeps_a_source_in_front_and_is_diotic() -> None:
    x = noise(0.5)
    front = at_ears(x)
    assert np.allclose(ex.beamformer(front), front)
    side = ex.beamformer(at_ears(x, delay_right=8, left_gain_db=6))
    assert np.array_equal(side[0], side[1]) and ex.itd_s(side) == 0.0 and ex.ild_db(side) == 0.0


def test_score_of_an_identity_system() -> None:
    x, n = noise(0.5), noise(0.5, seed=1)
    target, mixture = at_ears(x, 4, 3.0), at_ears(x + n, 4, 3.0)
    s = ex.score(target, mixture, mixture)
    assert s["si_snri_db"] == pytest.approx(0.0, abs=1e-9)
    assert s["itd_error_us"] == pytest.approx(0.0, abs=1e-6) and s["ild_error_db"] < 0.5


def test_training_logs_the_si_snri_that_eval_scores() -> None:
    torch = pytest.importorskip("torch")
    from training.extractor import si_snri_db

    x = noise(1.0)
    target, mixture = at_ears(x, 3), at_ears(x + noise(1.0, seed=2), 3)
    estimate = 0.5 * target + 0.1 * mixture
    logged = si_snri_db(*(torch.from_numpy(a)[None] for a in (estimate, target, mixture)))
    assert logged.shape == (1, 2)
    assert float(logged.mean()) == pytest.approx(ex.si_snri(target, estimate, mixture), abs=1e-3)


# --- eval end to end ----------------------------------------------------------------------------


def write_scenes(root: Path, count: int = 2, seconds: float = 0.5) -> Path:
    """Scenes in the format of training.data.scenes.write_scenes: a target on the left, an
    interferer on the right, the enrollment in front."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(count):
        target = at_ears(noise(seconds, 10 * i), delay_right=5, left_gain_db=4.0)
        interferer = at_ears(noise(seconds, 10 * i + 1), delay_right=6, left_gain_db=3.0)[::-1] * 0.7
        clean = at_ears(noise(seconds, 10 * i + 2))
        audio = {"mixture": target + interferer, "target": target, "enrollment_clean": clean,
                 "enrollment": clean + 0.3 * at_ears(noise(seconds, 10 * i + 3), 6)}
        name = f"scene{i:03d}"
        for key, a in audio.items():
            sf.write(str(root / f"{name}_{key}.wav"), a.T, SR, subtype="PCM_16")
        rows.append({"name": name, "speaker": f"s{i}", "speed": 1.0, "azimuth_deg": 30.0,
                     "enrollment_azimuth_deg": 0.0, "rt60_s": 0.3, "interferers": 1, "head": "test"})
    (root / "scenes.json").write_text(json.dumps({"sample_rate": SR, "seconds": seconds, "enroll_seconds": seconds,
                                                  "scenes": rows}))
    return root


class FakeStream:
    """Identity, lagging 64 samples as the real stream does."""

    def __init__(self) -> None:
        self.tail = np.zeros((2, 64), np.float32)

    def process(self, chunk: np.ndarray) -> np.ndarray:
        joined = np.concatenate([self.tail, chunk], 1)
        self.tail = joined[:, -64:]
        return joined[:, :-64]

    def flush(self) -> np.ndarray:
        return self.tail


class FakeExtractorModel:
    """What core.extractor_model.ExtractorModel is expected to offer, extracting nothing."""

    instances: ClassVar[list[FakeExtractorModel]] = []

    def __init__(self, model_dir: Path, threads: int | None = None):
        self.model_dir, self.threads, self.calls = model_dir, threads, []
        self.card, self.version = {"sha256": "abc"}, "test"
        FakeExtractorModel.instances.append(self)

    def enroll(self, binaural: np.ndarray) -> np.ndarray:
        self.calls.append(("enroll", binaural.shape))
        e = np.ones(256, np.float32)
        return e / np.linalg.norm(e)

    def extract(self, mixture: np.ndarray, embedding: np.ndarray) -> np.ndarray:
        self.calls.append(("extract", mixture.shape))
        return mixture.copy()

    def stream(self, embedding: np.ndarray) -> FakeStream:
        return FakeStream()


@pytest.fixture()
def fake_model(monkeypatch: pytest.MonkeyPatch) -> type[FakeExtractorModel]:
    monkeypatch.setitem(sys.modules, "core.extractor_model",
                        types.SimpleNamespace(ExtractorModel=FakeExtractorModel))
    FakeExtractorModel.instances.clear()
    return FakeExtractorModel


def _args(kind: str, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    getattr(ex, f"add_arguments_{kind}")(parser)
    return parser.parse_args(argv)


def test_eval_writes_every_system_and_the_identity_model_scores_zero(tmp_path: Path, fake_model: type) -> None:
    data = write_scenes(tmp_path / "heldout")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    out = tmp_path / "extractor.json"
    args = _args("eval", ["--data", str(data), "--model-dir", str(model_dir), "--out", str(out),
                          "--readme", str(tmp_path / "none.md")])
    assert ex.run_eval(args) == 0
    results = json.loads(out.read_text())
    systems = results["sets"][ex.SET_NAME]
    assert set(systems) == {"hark-noisy-enroll", "hark-clean-enroll", "mixture", "beamformer"}
    for name, entry in systems.items():
        assert entry["scenes"] == 2, name
        for key in ("si_snri_db", "si_snr_db", "itd_error_us", "ild_error_db"):
            assert np.isfinite(entry[key]) and np.isfinite(entry[f"{key}_median"]), (name, key)
    for name in ("hark-noisy-enroll", "hark-clean-enroll", "mixture"):
        assert systems[name]["si_snri_db"] == pytest.approx(0.0, abs=1e-6)
    assert systems["mixture"]["si_snr_db"] == pytest.approx(systems["hark-noisy-enroll"]["si_snr_db"])
    # The beamformer loses the target's left-side cues: about 5 samples of ITD and 4 dB of ILD.
    assert systems["beamformer"]["itd_error_us"] == pytest.approx(5 / SR * 1e6, abs=20)
    assert systems["beamformer"]["ild_error_db"] > 2
    meta = results["meta"]["eval"]
    assert set(meta["per_scene"][ex.SET_NAME]) == {"scene000", "scene001"}
    assert set(meta["per_scene"][ex.SET_NAME]["scene001"]) == set(systems)
    assert meta["set_sizes"][ex.SET_NAME]["scenes"] == 2
    model = fake_model.instances[-1]
    assert model.threads is None and model.calls[0] == ("enroll", (2, int(0.5 * SR)))
    md = out.with_suffix(".md").read_text()
    assert "SI-SNRi (dB) ↑" in md and "beamformer" in md


def test_eval_without_a_model_still_scores_the_baselines(tmp_path: Path) -> None:
    data = write_scenes(tmp_path / "heldout", count=1)
    out = tmp_path / "extractor.json"
    args = _args("eval", ["--data", str(data), "--model-dir", str(tmp_path / "none"), "--out", str(out),
                          "--readme", str(tmp_path / "none.md"), "--limit", "1"])
    assert ex.run_eval(args) == 0
    systems = json.loads(out.read_text())["sets"][ex.SET_NAME]
    assert "hark export extractor" in systems["hark-noisy-enroll"]["skipped"]
    assert systems["mixture"]["scenes"] == 1 and systems["beamformer"]["scenes"] == 1


def test_missing_scene_set_is_a_clear_error(tmp_path: Path) -> None:
    args = _args("eval", ["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.json")])
    assert ex.run_eval(args) == 2 and not (tmp_path / "x.json").exists()


# --- bench and the torch path -------------------------------------------------------------------


def tiny_checkpoint(path: Path) -> Path:
    import torch

    from models.extractor import Extractor, ExtractorConfig

    cfg = ExtractorConfig(hidden=16, layers=1, enroll_hidden=16, enroll_layers=1)
    torch.manual_seed(0)
    torch.save({"model": Extractor(cfg).state_dict(), "model_config": cfg.to_dict(), "step": 3}, path)
    return path


def test_torch_stream_matches_torch_extract(tmp_path: Path) -> None:
    model = ex.TorchExtractor(tiny_checkpoint(tmp_path / "last.pt"))
    x = np.stack([noise(0.1, 1), noise(0.1, 2)])[:, :1280]
    emb = model.enroll(np.stack([noise(1.0, 3), noise(1.0, 4)]))
    assert emb.shape == (256,) and np.linalg.norm(emb) == pytest.approx(1.0, abs=1e-5)
    whole = model.extract(x, emb)
    stream = model.stream(emb)
    streamed = np.concatenate([stream.process(x[:, i:i + 256]) for i in range(0, 1280, 256)], 1)
    assert np.allclose(streamed[:, 64:], whole[:, :-64], atol=1e-5)  # the stream lags 4 ms
    # `hark eval extractor --checkpoint` scores this torch model in place of the ONNX one.
    systems, skipped, info = ex.build_systems(["hark-clean-enroll"], None, tmp_path / "last.pt")
    scene = ex.Scene("s", x, x, x, x, {})
    assert not skipped and info["hark-clean-enroll"]["step"] == 3
    assert np.allclose(systems["hark-clean-enroll"](scene), model.extract(x, model.enroll(x)))


def test_bench_measures_both_runtimes_on_one_thread(tmp_path: Path, fake_model: type) -> None:
    import torch

    data = write_scenes(tmp_path / "heldout", count=1)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    out = tmp_path / "extractor.json"
    threads = torch.get_num_threads()
    args = _args("bench", ["--data", str(data), "--model-dir", str(model_dir), "--out", str(out),
                           "--readme", str(tmp_path / "none.md"), "--checkpoint", str(tiny_checkpoint(tmp_path / "c.pt")),
                           "--seconds", "0.2", "--repeats", "2"])
    assert ex.run_bench(args) == 0
    assert fake_model.instances[-1].threads == 1 and torch.get_num_threads() == threads
    results = json.loads(out.read_text())
    for name in ("hark", "hark-torch"):
        entry = results["speed"][name]
        assert 0 < entry["ms_per_8ms_chunk"] <= entry["ms_per_8ms_chunk_max"]
        assert entry["extract_cpu_s_per_audio_s"] >= 0
    assert results["meta"]["bench"]["systems"]["hark-torch"]["step"] == 3
    # Eval's part survives a bench run, and the other way round.
    assert ex.run_eval(_args("eval", ["--data", str(data), "--model-dir", str(model_dir), "--out", str(out),
                                      "--readme", str(tmp_path / "none.md"), "--systems", "mixture"])) == 0
    results = json.loads(out.read_text())
    assert "hark" in results["speed"] and "mixture" in results["sets"][ex.SET_NAME]
    assert "ms CPU per 8 ms chunk" in out.with_suffix(".md").read_text()


def test_cli_dispatches_extractor_eval_and_bench() -> None:
    from hark.cli import FAMILIES, build_parser

    assert FAMILIES["extractor"].eval == FAMILIES["extractor"].bench == "benchmarks.extractor"
    args = build_parser(["eval", "extractor"]).parse_args(["eval", "extractor", "--limit", "3"])
    assert args.limit == 3 and args.model_dir == ex.DEFAULT_MODEL_DIR and args.checkpoint is None
    args = build_parser(["bench", "extractor"]).parse_args(["bench", "extractor"])
    assert args.seconds == 10.0 and args.repeats == 5 and args.systems == ["hark", "hark-torch"]


def test_the_held_out_score_goes_into_the_card_the_service_reads(tmp_path: Path) -> None:
    from benchmarks.extractor import CARD_SET, CARD_SYSTEM, record_in_card
    from core.extractor_model import card_quality

    (tmp_path / "card.json").write_text(json.dumps({"name": "extractor", "version": "x"}))
    row = {"si_snri_db": 1.2345, "si_snri_db_median": 1.0, "scenes": 7}
    recorded = record_in_card(tmp_path, {"sets": {CARD_SET: {CARD_SYSTEM: row}},
                                         "meta": {"eval": {"date": "d", "git_commit": "c"}}})
    assert recorded["heldout_si_snri_db"] == 1.2345 and recorded["scenes"] == 7
    assert json.loads((tmp_path / "card.json").read_text())["evaluation"] == recorded
    assert "+1.23 dB SI-SNRi on 7 held-out scenes" in card_quality(tmp_path)["summary"]
