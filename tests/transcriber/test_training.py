"""Training smoke runs: the loss goes down, resume continues from the checkpoint, DDP runs."""
import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from synth_data import write_set
from training.loop import LoopConfig, add_loop_arguments, apply_loop_arguments, earlier_stages, schedule_progress
from training.transcriber import TranscriberRecipe, add_arguments_train, apply_arguments, train

ROOT = Path(__file__).resolve().parents[2]


def tiny_recipe(data: Path, run_dir: Path, steps: int) -> TranscriberRecipe:
    return TranscriberRecipe.model_validate({
        "run_dir": str(run_dir), "data": [str(data)], "validation_every": 1000, "windows_per_epoch": 32,
        "model": {"window_samples": 11264, "channels": 8, "head_channels": 8},
        "augment": {"eq_prob": 0.0, "reverb_prob": 0.0, "noise_prob": 0.0, "gain_db": [-6.0, 0.0]},
        "loop": {"steps": steps, "batch_size": 4, "lr": 0.01, "warmup_steps": 2, "log_every": 1,
                 "num_workers": 0, "threads": 2, "checkpoint_minutes": 60},
    })


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def tone_set(tmp_path_factory):
    return write_set(tmp_path_factory.mktemp("tones"), n_clips=4, seconds=4.0)


def test_loss_goes_down_and_resume_continues(tone_set, tmp_path):
    run = tmp_path / "run"
    first = train(tiny_recipe(tone_set, run, steps=40))
    assert first["steps"] == 40
    log = read_metrics(run)
    assert log[-1]["loss"] < 0.7 * log[0]["loss"], (log[0]["loss"], log[-1]["loss"])

    saved = torch.load(run / "last.pt", weights_only=False)
    assert saved["step"] == 40
    assert [(r["until_step"], r["device"], r["batch_size"]) for r in saved["stages"]] == [(40, "cpu", 4)]
    recipe = tiny_recipe(tone_set, run, steps=45)
    recipe.loop.batch_size = 2  # a fine-tune with another budget is a second stage of the history
    second = train(recipe, resume=True)
    assert second["steps"] == 45
    steps = [m["step"] for m in read_metrics(run)]
    assert steps == list(range(1, 46)), "resume must continue at step 41, not start over"
    resumed = torch.load(run / "last.pt", weights_only=False)
    key = next(k for k in saved["model"] if k.endswith("weight"))
    assert not torch.equal(saved["model"][key], resumed["model"][key])
    assert [(r["until_step"], r["batch_size"]) for r in resumed["stages"]] == [(40, 4), (45, 2)]
    assert resumed["stages"][1]["wall_s"] >= resumed["stages"][0]["wall_s"]

    recipe = tiny_recipe(tone_set, run, steps=50)
    recipe.loop.restart_schedule = True  # a warm restart: warmup and cosine again over steps 46-50
    train(recipe, resume=True)
    lrs = {m["step"]: m["lr"] for m in read_metrics(run)}
    assert lrs[45] < 0.1 * recipe.loop.lr, "the first schedule had annealed"
    assert lrs[46] == pytest.approx(recipe.loop.lr / 2) and lrs[47] == pytest.approx(recipe.loop.lr)
    assert lrs[50] < lrs[49] < lrs[48]


def test_training_gives_back_the_signal_handlers(tone_set, tmp_path):
    # Inherited by processes forked later (export's scoring pool), the training's SIGTERM handler
    # kept them alive when the pool terminated them, and export hung.
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    train(tiny_recipe(tone_set, tmp_path / "run", steps=2))
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_ddp_smoke_under_torchrun(tone_set, tmp_path):
    run = tmp_path / "ddp"
    recipe = tiny_recipe(tone_set, run, steps=3)
    recipe.loop.threads = 1
    config = tmp_path / "recipe.json"
    config.write_text(recipe.model_dump_json())
    script = tmp_path / "run_ddp.py"
    script.write_text("import sys\nfrom training.transcriber import TranscriberRecipe, train\n"
                      "train(TranscriberRecipe.model_validate_json(open(sys.argv[1]).read()))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), str(config)],
        env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert torch.load(run / "last.pt", weights_only=False)["step"] == 3
    assert len(read_metrics(run)) == 3  # only rank 0 writes


def test_a_checkpoint_from_before_histories_counts_as_one_stage():
    old = {"step": 8557, "wall_s": 618.1, "recipe": {"loop": {"device": "cuda", "batch_size": 64, "lr": 8e-4}},
           "data_summary": {"minutes": 43.9}}
    (stage,) = earlier_stages(old)
    assert (stage["until_step"], stage["wall_s"], stage["batch_size"]) == (8557, 618.1, 64)
    assert stage["data"] == {"minutes": 43.9}
    assert earlier_stages({**old, "stages": [stage, stage]}) == [stage, stage]


def test_command_line_overrides_reach_the_recipe(tmp_path):
    parser = argparse.ArgumentParser()
    add_loop_arguments(parser)
    recipe = tiny_recipe(tmp_path, tmp_path / "run", steps=10)
    apply_loop_arguments(recipe, parser.parse_args(["--lr", "6e-4", "--batch-size", "128", "--steps", "60000",
                                                    "--run-dir", str(tmp_path / "other")]))
    assert (recipe.loop.lr, recipe.loop.batch_size, recipe.loop.steps) == (6e-4, 128, 60000)
    assert not recipe.loop.restart_schedule and not recipe.loop.anneal_by_time
    apply_loop_arguments(recipe, parser.parse_args(["--restart-schedule", "--anneal-by-time"]))
    assert recipe.loop.restart_schedule and recipe.loop.anneal_by_time and recipe.loop.lr == 6e-4
    assert recipe.loop.warmup_steps == 2 and recipe.run_dir == str(tmp_path / "other")


def test_hard_negative_weights_can_be_set_on_the_command_line():
    parser = argparse.ArgumentParser()
    add_arguments_train(parser)
    recipe = TranscriberRecipe.from_yaml(Path(__file__).resolve().parents[2] / "training/configs/transcriber.yaml")
    apply_arguments(recipe, parser.parse_args(["--steps", "18000"]))
    loss = recipe.loss
    assert (loss.overtone_neg_weight, loss.release_neg_weight, loss.hard_negatives_from) == (3.0, 2.0, 0.6)
    apply_arguments(recipe, parser.parse_args(["--overtone-neg-weight", "1", "--release-neg-weight", "1.5",
                                               "--hard-negatives-from", "0"]))
    assert (loss.overtone_neg_weight, loss.release_neg_weight, loss.hard_negatives_from) == (1.0, 1.5, 0.0)
    assert recipe.loop.steps == 18000


def test_schedule_progress_runs_from_warmup_to_the_first_budget_spent():
    cfg = LoopConfig(steps=1000, warmup_steps=100, max_minutes=60, anneal_by_time=True)
    assert schedule_progress(50, cfg) == 0.0 and schedule_progress(1000, cfg) == 1.0
    assert schedule_progress(550, cfg) == 0.5 and schedule_progress(550, cfg, minutes=45) == 0.75


def test_gpu_pieces_round_trip_a_checkpoint(tmp_path, monkeypatch) -> None:
    import torch

    from training.gpu import pieces

    state = {"model": {f"w{i}": torch.randn(64, 64) for i in range(5)}, "critic": {"c": torch.randn(8)},
             "optimizer": {"state": {}}, "step": 7}
    torch.save(state, tmp_path / "last.pt")
    monkeypatch.setattr(pieces, "PIECE_BYTES", 20_000)  # forces several model pieces
    written = pieces.split(tmp_path / "last.pt", tmp_path / "out" / "codec")
    assert len([p for p in written if ".model." in p.name]) >= 2
    back = pieces.join(tmp_path / "out" / "codec", tmp_path / "joined.pt")
    assert back["step"] == 7 and "optimizer" not in back  # slim: weights only, in float16
    for key in ("model", "critic"):
        for name, t in state[key].items():
            assert torch.equal(back[key][name], t.half())


def test_gpu_pack_keeps_the_first_rooms_and_one_dvector_per_speaker(tmp_path) -> None:
    import numpy as np

    from training.data.rooms import RoomBank
    from training.gpu.pack_data import speaker_table, subset_bank

    rng = np.random.default_rng(0)
    taps = [3, 5, 4, 6, 2, 7]  # per position, 2 positions per room, 3 rooms
    flat = rng.standard_normal(2 * sum(taps)).astype(np.float16)
    bank = RoomBank(flat, np.concatenate([[0], np.cumsum(2 * np.array(taps))]), np.repeat(np.arange(3), 2),
                    np.arange(6) * 10.0, np.tile([False, True], 3), np.array([0.2, 0.4, 0.6]), "toy")
    small = subset_bank(bank, 2)
    assert small.rooms == 2 and len(small.room) == 4 and small.head == "toy"
    for k in range(4):  # every kept position's BRIR is the original's, bit for bit
        assert np.array_equal(small.ir(k), bank.ir(k))
    assert np.array_equal(small.azimuth, bank.azimuth[:4]) and np.array_equal(small.enrollment, bank.enrollment[:4])

    rows = rng.standard_normal((4, 5, 8)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=-1, keepdims=True)
    table = speaker_table({"speakers": np.array(["b", "a", "b", "c"]), "dvectors": rows}, {"a", "b"})
    assert table["speakers"].tolist() == ["a", "b"]  # c is not in the packed speech: left out
    np.testing.assert_array_equal(table["dvectors"][0], rows[1])
    mean = rows[[0, 2]].mean(axis=0)
    np.testing.assert_allclose(table["dvectors"][1], mean / np.linalg.norm(mean, axis=-1, keepdims=True), atol=1e-6)


def test_gpu_pack_refuses_speech_without_dvectors(tmp_path) -> None:
    """Found on this machine, not after a device start: Voices.load there would refuse it."""
    import numpy as np
    import pytest

    from training.data.rooms import RoomBank
    from training.gpu.pack_data import pack_extractor

    RoomBank(np.zeros(8, np.float16), np.array([0, 4, 8]), np.array([0, 0]), np.zeros(2), np.array([False, True]),
             np.array([0.3]), "toy").save(tmp_path / "rooms_train.npz")
    np.savez(tmp_path / "dvectors_train.npz", speakers=np.array(["a"]), dvectors=np.ones((1, 5, 4), np.float32) / 2)
    with pytest.raises(ValueError, match="no d-vectors for 1 packed speakers"):
        pack_extractor(tmp_path, tmp_path / "out", rooms=1, noise_dir=None, speakers={"a", "b"})
    pack_extractor(tmp_path, tmp_path / "out", rooms=1, noise_dir=None, speakers={"a"})
    assert RoomBank.load(tmp_path / "out" / "rooms_train.npz").rooms == 1
