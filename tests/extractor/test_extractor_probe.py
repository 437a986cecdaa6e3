"""benchmarks.extractor_probe: the speaker table, 0 dB pairs (a man with a woman when asked), and a
short training run scored on other voices."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import extractor_probe as probe


def _voices(n: int, seed: int = 0) -> list[probe.Voice]:
    rng = np.random.default_rng(seed)
    t = np.arange(probe.WINDOW + 8000) / 16000
    return [probe.Voice(np.sin(2 * np.pi * (100 + 20 * i) * t).astype(np.float32) + 0.01 * rng.standard_normal(t.size),
                        rng.standard_normal(256).astype(np.float32), "M" if i % 2 else "F") for i in range(n)]


def test_sexes_come_from_speakers_txt(tmp_path: Path) -> None:
    (tmp_path / "librispeech").mkdir()
    (tmp_path / "librispeech" / "SPEAKERS.TXT").write_text(
        ";ID |SEX| SUBSET |MINUTES| NAME\n19   | F | train-clean-100 | 25.19 | Kara Shallenberg\n"
        "26   | M | train-clean-100 | 25.08 | Denny Sayers\n")
    assert probe.librispeech_sexes(tmp_path) == {"librispeech-19": "F", "librispeech-26": "M"}
    with pytest.raises(FileNotFoundError, match="SPEAKERS.TXT"):
        probe.librispeech_sexes(tmp_path / "librispeech" / "nowhere")


def test_pairs_are_at_0_db_and_cross_pairs_mix_the_sexes() -> None:
    voices = _voices(6)
    mix, target, dvector = probe.pairs(voices, np.random.default_rng(0), 16, cross=True)
    assert mix.shape == target.shape == (16, 2, probe.WINDOW) and dvector.shape == (16, 256)
    other = (mix - target).numpy()
    np.testing.assert_allclose((other ** 2).sum(-1), (target.numpy() ** 2).sum(-1), rtol=1e-3)
    for k in range(16):  # the target's d-vector names a voice of one sex, the other voice is of the other
        i = next(j for j, v in enumerate(voices) if np.array_equal(v.dvector, dvector[k].numpy()))
        hz = np.argmax(np.abs(np.fft.rfft(other[k, 0]))) * 16000 / probe.WINDOW  # voice j hums at 100 + 20 j Hz
        partner = voices[round((hz - 100) / 20)]
        assert partner is not voices[i] and partner.sex != voices[i].sex


def test_a_short_run_trains_and_scores_new_voices() -> None:
    model, trained = probe.train_probe(_voices(4), steps=2, log=lambda _: None)
    score = probe.heldout_si_snri(model, _voices(4, seed=1), cross=False, batches=2)
    assert np.isfinite(trained) and np.isfinite(score)


def test_speechocean_sexes_come_from_spk2gender_and_corpora_name_their_folders(tmp_path: Path) -> None:
    (tmp_path / "speechocean762").mkdir()
    (tmp_path / "speechocean762" / "spk2gender").write_text("0001\tm\n0006\tf\n")
    assert probe.speechocean_sexes(tmp_path) == {"speechocean-0001": "M", "speechocean-0006": "F"}
    assert probe.corpus_dirs(tmp_path, ["speechocean"]) == [tmp_path / "speechocean762"]
    with pytest.raises(FileNotFoundError, match="librispeech-train-clean-100"):
        probe.corpus_dirs(tmp_path, ["librispeech"])
    with pytest.raises(ValueError, match="unknown corpora"):
        probe.corpus_dirs(tmp_path, ["timit"])


def test_table_rows_are_the_mean_of_the_seeds_json(tmp_path: Path) -> None:
    for seed, (train, held, cross) in enumerate([(2.0, 1.5, 2.5), (2.2, 1.3, 2.1)]):
        (tmp_path / f"run{seed}.json").write_text(json.dumps({
            "corpora": "librispeech+speechocean", "speakers": 458, "steps": 2000, "seed": seed,
            "training_data": {"librispeech": {"speakers": 228}, "speechocean": {"speakers": 230}},
            "training_si_snri_db": train, "heldout_si_snri_db": held, "heldout_cross_sex_si_snri_db": cross}))
    assert probe.table(tmp_path) == "| 458 (librispeech 228 + speechocean 230) | +2.10 | +1.40 (1.50, 1.30) | +2.30 |"


def test_describe_counts_speech_per_speaker_and_corpus() -> None:
    voices = [probe.Voice(np.zeros(16000 * s, np.float32), np.zeros(4, np.float32), sex, name, files)
              for s, sex, name, files in [(12, "M", "librispeech-1", 1), (60, "F", "speechocean-2", 20),
                                          (80, "M", "speechocean-3", 20)]]
    d = probe.describe(voices)
    assert d["librispeech"] == {"speakers": 1, "men": 1, "files_per_speaker": 1.0, "seconds_per_speaker_mean": 12.0,
                                "seconds_per_speaker_median": 12.0, "minutes": 0.2}
    assert d["speechocean"]["seconds_per_speaker_mean"] == 70.0 and d["speechocean"]["files_per_speaker"] == 20.0
