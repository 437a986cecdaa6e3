"""Binaural scenes for the extractor: rooms heard through a head, and what goes into a scene."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.data.hrtf import Hrirs, unit_vectors
from training.data.rooms import RoomBank, RoomSpec, binaural_rir, render_bank
from training.data.scenes import SceneConfig, SceneRenderer, Voices, noise_files

SR = 16000


def _toy_head() -> Hrirs:
    """A head whose ears differ only by a delay and a level, from 5-degree azimuth steps:
    a source on the left reaches the left ear first and louder."""
    az = np.arange(-180, 180, 5.0)
    ir = np.zeros((len(az), 2, 32), dtype=np.float32)
    for i, a in enumerate(az):
        lateral = np.sin(np.radians(a))  # +1 = left
        ir[i, 0, 8 - int(round(4 * lateral))] = 1.0 + 0.5 * lateral
        ir[i, 1, 8 + int(round(4 * lateral))] = 1.0 - 0.5 * lateral
    return Hrirs("toy", ir, unit_vectors(az, np.zeros_like(az)))


def _onset(x: np.ndarray) -> int:
    return int(np.argmax(np.abs(x) > 1e-3 * np.abs(x).max()))


@pytest.mark.parametrize("azimuth, louder", [(90.0, 0), (-90.0, 1)])
def test_a_source_to_one_side_is_earlier_and_louder_in_that_ear(azimuth: float, louder: int) -> None:
    room = RoomSpec(np.array([6.0, 5.0, 3.0]), np.array([3.0, 2.5, 1.5]), 0.0, 0.0)
    a = np.radians(azimuth)
    ir = binaural_rir(_toy_head(), room, room.head + [1.5 * np.cos(a), 1.5 * np.sin(a), 0], np.random.default_rng(0))
    energy = (ir ** 2).sum(axis=1)
    assert energy[louder] > 1.5 * energy[1 - louder]
    assert _onset(ir[louder]) < _onset(ir[1 - louder])
    assert np.count_nonzero(np.abs(ir).max(axis=0) > 0) <= 2  # anechoic: the direct path only


def test_reverberant_rooms_decay_at_about_their_rt60() -> None:
    rng = np.random.default_rng(1)
    room = RoomSpec(np.array([7.0, 6.0, 3.0]), np.array([3.0, 3.0, 1.5]), 30.0, 0.6)
    ir = binaural_rir(_toy_head(), room, room.head + [2.0, 0.5, 0], rng)
    edc = np.cumsum((ir ** 2).sum(axis=0)[::-1])[::-1]
    edc_db = 10 * np.log10(edc / edc[0] + 1e-20)
    t5, t25 = np.argmax(edc_db < -5), np.argmax(edc_db < -25)
    rt60 = 3 * (t25 - t5) / SR  # T20 extrapolated to 60 dB
    assert 0.3 < rt60 < 1.0


def test_bank_places_enrollment_positions_in_front() -> None:
    bank = render_bank([_toy_head()], rooms=3, seed=0, around=4, enroll=2)
    assert bank.rooms == 3 and len(bank.azimuth) == 18
    assert np.all(np.abs(bank.azimuth[bank.enrollment]) <= 10)
    assert all(len(bank.positions(r, True)) == 2 for r in range(3))
    ir = bank.ir(0)
    assert ir.shape[0] == 2 and np.isclose((ir.astype(np.float64) ** 2).sum() / 2, 1.0, rtol=1e-2)


def test_bank_survives_a_round_trip(tmp_path: Path) -> None:
    bank = render_bank([_toy_head()], rooms=2, seed=3, around=2, enroll=1)
    bank.save(tmp_path / "bank.npz")
    again = RoomBank.load(tmp_path / "bank.npz")
    assert np.array_equal(again.flat, bank.flat) and again.head == "toy"


def _ramp_voices(speakers: int = 4, seconds: float = 8.0) -> Voices:
    """Each speaker's 'speech' is a ramp: a sample's value tells where in the excerpt it came from."""
    n = int(seconds * SR)
    audio = [np.linspace(0.01, 1.0, n, dtype=np.float32) * (1 if i % 2 else -1) for i in range(speakers)]
    return Voices(audio, [f"spk{i}" for i in range(speakers)], np.ones((speakers, 5, 256), np.float32) / 16)


def test_target_and_enrollment_come_from_disjoint_parts_of_the_excerpt() -> None:
    bank = render_bank([_toy_head()], rooms=2, seed=0)
    renderer = SceneRenderer(_ramp_voices(), bank, [], SceneConfig(speed_prob=0.0))
    rng = np.random.default_rng(0)
    for speaker in range(4):
        cut = renderer.cuts[speaker] / len(renderer.voices.audio[speaker])
        for _ in range(5):
            target, _ = renderer._talker(rng, speaker, SR, "target")
            enrollment, _ = renderer._talker(rng, speaker, SR, "enrollment")
            assert np.abs(target).max() <= cut + 1e-3 < np.abs(enrollment).min() + 2e-3


def test_a_scene_is_its_target_plus_the_rest() -> None:
    bank = render_bank([_toy_head()], rooms=2, seed=0)
    renderer = SceneRenderer(_ramp_voices(), bank, [], SceneConfig())
    scene = renderer.render(np.random.default_rng(5), 1.0, 1.6)
    assert scene["mixture"].shape == scene["target"].shape == (2, SR)
    assert scene["enrollment"].shape == scene["enrollment_clean"].shape == (2, int(1.6 * SR))
    rest = scene["mixture"] - scene["target"]
    assert np.abs(rest).max() > 0.01 * np.abs(scene["target"]).max()  # interferers and noise are there
    assert np.abs(scene["mixture"]).max() < 1.0
    assert scene["dvector"].shape == (256,)
    assert scene["meta"]["speaker"] != "" and -180 <= scene["meta"]["azimuth_deg"] <= 180


def test_held_out_noise_is_never_training_noise(tmp_path: Path) -> None:
    import soundfile as sf

    for rel in ("misc/noise1.wav", "esc50/4-1.wav", "esc50/1-2.wav", "speech-commands/bike.wav", "rir/rir1.wav"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(tmp_path / rel), np.zeros(160, np.float32), SR)
    train = {p.relative_to(tmp_path).as_posix() for p in noise_files(tmp_path, "train")}
    held = {p.relative_to(tmp_path).as_posix() for p in noise_files(tmp_path, "heldout")}
    assert held == {"misc/noise1.wav", "esc50/4-1.wav"}
    assert train == {"esc50/1-2.wav", "speech-commands/bike.wav"}


def test_a_speaker_of_several_utterances_is_one_voice(tmp_path: Path) -> None:
    """speechocean762 keeps ~20 utterances per SPEAKER<id> folder: they join into one voice, so
    another utterance of the target can never be drawn as its interferer, and its teacher d-vector
    is the unit-length mean of its utterances' rows."""
    import soundfile as sf

    corpus = tmp_path / "speechocean762"
    for speaker, n in (("0001", 3), ("0002", 2)):
        (corpus / f"SPEAKER{speaker}").mkdir(parents=True)
        for k in range(n):
            sf.write(str(corpus / f"SPEAKER{speaker}" / f"{speaker}{k}.wav"), 0.1 * np.ones(SR // 2), SR)
    libri = tmp_path / "librispeech"
    libri.mkdir()
    sf.write(str(libri / "19-198-0001.flac"), 0.1 * np.ones(SR), SR)
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((6, 5, 256)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=-1, keepdims=True)
    names = ["librispeech-19"] + ["speechocean-0001"] * 3 + ["speechocean-0002"] * 2  # one row per file
    np.savez(tmp_path / "dv.npz", speakers=np.array(names), dvectors=rows)

    voices = Voices.load([libri, corpus], "train", tmp_path / "dv.npz")

    assert voices.speakers == ["librispeech-19", "speechocean-0001", "speechocean-0002"]
    assert [len(a) for a in voices.audio] == [SR, 3 * SR // 2, SR]
    np.testing.assert_array_equal(voices.dvectors[0], rows[0])  # one file: its row, untouched
    mean = rows[1:4].mean(axis=0)
    np.testing.assert_allclose(voices.dvectors[1], mean / np.linalg.norm(mean, axis=-1, keepdims=True), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(voices.dvectors[2], axis=-1), 1.0, atol=1e-6)


def test_teacher_dvectors_are_one_per_speaker_from_its_first_seconds(tmp_path: Path, monkeypatch) -> None:
    """A speaker's files are read in order only until `seconds` of speech: the whole 5.5 h of
    speechocean762 at five speeds would take hours. Speeds not asked for stay NaN."""
    import soundfile as sf

    from training.data import scenes

    rng = np.random.default_rng(0)
    for speaker in ("0001", "0002"):
        (tmp_path / f"SPEAKER{speaker}").mkdir()
        for k in range(3):
            sf.write(str(tmp_path / f"SPEAKER{speaker}" / f"{speaker}{k}.wav"), 0.1 * rng.standard_normal(5 * SR), SR)
    read: list[str] = []
    real_load = scenes.load
    monkeypatch.setattr(scenes, "load", lambda f: read.append(Path(f).stem) or real_load(f))

    table = scenes.teacher_dvectors([tmp_path], "train", speeds=(1.0,), seconds=8.0)

    assert table["speakers"].tolist() == ["speechocean-0001", "speechocean-0002"]
    assert read == ["00010", "00011", "00020", "00021"]  # 2 files of 5 s reach 8 s; the third is never read
    normal = scenes.SPEEDS.index(1.0)
    np.testing.assert_allclose(np.linalg.norm(table["dvectors"][:, normal], axis=-1), 1.0, atol=1e-4)
    others = [i for i in range(len(scenes.SPEEDS)) if i != normal]
    assert np.isnan(table["dvectors"][:, others]).all()
