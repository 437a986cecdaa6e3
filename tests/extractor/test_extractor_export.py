"""The exported extractor (stand-in weights) against torch, and as the service runs it: whole
files, streams of 8 ms chunks, enrollment."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from extractor_stand_in import binaural_voice, build_stand_in_extractor

import export.extractor as extractor_export
from core.extractor_model import EMBED_DIM, HOP, LOOKAHEAD, ExtractorModel
from core.cards import file_sha256


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_stand_in_extractor(tmp_path_factory.mktemp("artifacts") / "extractor")


@pytest.fixture(scope="module")
def torch_model(model_dir: Path) -> torch.nn.Module:
    return extractor_export.load_checkpoint(model_dir.parent / "extractor_stand_in.pt")[0]


@pytest.fixture(scope="module")
def model(model_dir: Path) -> ExtractorModel:
    return ExtractorModel(model_dir, threads=1)


def mixture(samples: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((2, samples)) * 0.1).astype(np.float32)


def unit(seed: int = 0) -> np.ndarray:
    e = np.abs(np.random.default_rng(seed).standard_normal(EMBED_DIM)).astype(np.float32)
    return e / np.linalg.norm(e)


def test_card_records_files_parity_and_latency(model_dir: Path, model: ExtractorModel) -> None:
    card = json.loads((model_dir / "card.json").read_text())
    assert card["name"] == "extractor" and card["version"] == "0.1.0" == model.version
    for key, name in extractor_export.FILES.items():
        assert card["files"][key] == name and card["file_sha256"][key] == file_sha256(model_dir / name)
    assert card["sha256"] == model.sha256 == file_sha256(model_dir / "extract.onnx")
    p = card["parity"]
    assert p["passed"] and p["output_rms"] > 1e-3  # the stand-in's output is not silence
    for key in ("enroll_max_abs", "extract_max_abs", "extract_step_max_abs", "stream_max_abs"):
        assert p[key] <= 1e-4
    assert card["latency_ms"] == 12.0 and "4 ms look-ahead" in card["latency_note"]
    assert card["io"]["state_shapes"]["hidden"] == [2, 1, 32]
    assert card["training"]["steps"] == 0 and card["training"]["parameters"] > 0
    assert card["config"]["model"]["hidden"] == 32 and card["data"]


def test_grid_separator_exports_with_parity(tmp_path: Path) -> None:
    """The per-bin separator's state (one GRU per bin) streams through ONNX as the GRU's does."""
    cfg = {"separator": "grid", "hidden": 8, "layers": 3, "channels": 8}
    model_dir = build_stand_in_extractor(tmp_path / "extractor", **cfg)
    card = json.loads((model_dir / "card.json").read_text())
    assert card["parity"]["passed"] and card["parity"]["output_rms"] > 1e-3
    assert card["io"]["state_shapes"]["hidden"] == [3, 1, 97 * 8]
    model, x = ExtractorModel(model_dir, threads=1), mixture(128 * 30 + 50)
    stream = model.stream(unit())
    streamed = np.concatenate([stream.process(x[:, i:i + 384]) for i in range(0, 128 * 30, 384)], 1)
    assert np.abs(streamed[:, LOOKAHEAD:] - model.extract(x, unit())[:, :128 * 30 - LOOKAHEAD]).max() < 1e-4


def test_graphs_match_torch_for_other_batches_and_lengths(model_dir: Path, torch_model: torch.nn.Module) -> None:
    """Dynamic axes: the exporter traced one shape; these are others."""
    run = lambda name, feeds: ort.InferenceSession(str(model_dir / name)).run(None, feeds)
    rng = np.random.default_rng(3)
    mels = rng.random((3, 120, 80), dtype=np.float32)
    with torch.no_grad():
        want = torch_model.enroll(torch.from_numpy(mels)).numpy()
        assert np.abs(run("enroll.onnx", {"mels": mels})[0] - want).max() <= 1e-5
        for n in (1, 777, 2048):
            x, e = rng.standard_normal((2, 2, n), dtype=np.float32) * 0.1, np.stack([unit(1), unit(2)])
            want = torch_model(torch.from_numpy(x), torch.from_numpy(e)).numpy()
            assert np.abs(run("extract.onnx", {"mixture": x, "embedding": e})[0] - want).max() <= 1e-5
        state = {k: rng.standard_normal(v.shape, dtype=np.float32) * 0.1
                 for k, v in extractor_export.step_state(torch_model.cfg, batch=2).items()}
        chunk = rng.standard_normal((2, 2, HOP), dtype=np.float32) * 0.1
        got = run("extract_step.onnx", {"chunk": chunk, "embedding": e, **state})
        want = extractor_export.ExtractorStep(torch_model)(torch.from_numpy(chunk), torch.from_numpy(e),
                                                           *map(torch.from_numpy, state.values()))
        assert all(np.abs(g - w.numpy()).max() <= 1e-5 for g, w in zip(got, want))


def test_extract_matches_torch(model: ExtractorModel, torch_model: torch.nn.Module) -> None:
    x, e = mixture(20_000), unit()
    got = model.extract(x, e)
    with torch.no_grad():
        want = torch_model(torch.from_numpy(x[None]), torch.from_numpy(e[None])).numpy()[0]
    assert got.shape == x.shape and got.dtype == np.float32
    assert np.abs(got - want).max() <= 1e-4 and np.abs(got).max() > 1e-3
    assert model.extract(np.zeros((2, 0), np.float32), e).shape == (2, 0)


def test_stream_in_random_chunks_equals_extract(model: ExtractorModel) -> None:
    x, e = mixture(HOP * 97, seed=4), unit(5)
    stream, rng, outputs, i = model.stream(e), np.random.default_rng(6), [], 0
    while i < x.shape[1]:
        k = int(rng.integers(0, 7)) * HOP
        y = stream.process(x[:, i:i + k])
        assert y.shape == (2, min(k, x.shape[1] - i))
        outputs.append(y)
        i += k
    tail = stream.flush()
    assert tail.shape == (2, LOOKAHEAD)
    streamed = np.concatenate([*outputs, tail], axis=1)[:, LOOKAHEAD:]
    assert np.abs(streamed - model.extract(x, e)).max() <= 1e-4


def test_enroll_gives_a_unit_embedding(model: ExtractorModel) -> None:
    short, long = model.enroll(binaural_voice(1.0)), model.enroll(binaural_voice(4.0, f0=180.0))  # 1 and 4 windows
    for e in (short, long):
        assert e.shape == (EMBED_DIM,) and e.dtype == np.float32 and abs(np.linalg.norm(e) - 1) < 1e-5
    assert np.abs(short - long).max() > 1e-4
    with pytest.raises(ValueError, match="binaural"):
        model.enroll(np.zeros(16000, np.float32))


def test_bad_input_is_refused(model: ExtractorModel) -> None:
    stream = model.stream(unit())
    with pytest.raises(ValueError, match="128"):
        stream.process(np.zeros((2, 100), np.float32))
    with pytest.raises(ValueError, match="binaural"):
        stream.process(np.zeros((1, 128), np.float32))
    with pytest.raises(ValueError, match="embedding"):
        model.extract(mixture(256), np.zeros(128, np.float32))
    stream.flush()
    with pytest.raises(RuntimeError, match="flushed"):
        stream.process(np.zeros((2, 128), np.float32))


def test_export_refuses_a_model_that_misses_parity(model_dir: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused export raises and leaves the previous artifact as it was."""
    out = tmp_path / "extractor"
    out.mkdir()
    (out / "card.json").write_text('{"name": "extractor", "version": "old"}')
    monkeypatch.setattr(extractor_export, "PARITY_LIMIT", -1.0)
    with pytest.raises(RuntimeError, match="refused"):
        extractor_export.export(model_dir.parent / "extractor_stand_in.pt", out, mixture=mixture(3000),
                                enrollment=binaural_voice(1.0), register=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["extractor"]
    assert [p.name for p in out.iterdir()] == ["card.json"] and "old" in (out / "card.json").read_text()


def test_cli_without_checkpoint_says_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    parser = argparse.ArgumentParser()
    extractor_export.add_arguments_export(parser)
    args = parser.parse_args(["--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "x")])
    assert extractor_export.run_export(args) == 2 and "hark train extractor" in capsys.readouterr().out
