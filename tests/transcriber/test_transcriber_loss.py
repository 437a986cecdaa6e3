import pytest
import torch
from torch.nn import functional as F

from training.transcriber import LossConfig, TranscriberLoss, note_negative_weights, restrike_onset_weights

FRAME_RATE = 100.0  # 10 ms frames keep the arithmetic readable


def one_note(key: int = 40, start: int = 10, end: int = 20) -> torch.Tensor:
    note = torch.zeros(1, 60, 88)
    note[0, start:end, key] = 1.0
    return note


def test_default_weights_are_none():
    assert note_negative_weights(one_note(), LossConfig(), FRAME_RATE) is None


def test_overtones_of_a_sounding_note_weigh_more():
    w = note_negative_weights(one_note(), LossConfig(overtone_neg_weight=4.0), FRAME_RATE)[0]
    for semitones in (12, 19, 24, 28, 31):
        assert torch.all(w[10:20, 40 + semitones] == 4.0)
        assert torch.all(w[20:, 40 + semitones] == 1.0)  # only while the note sounds
    assert torch.all(w[10:20, 40] == 1.0)  # the note's own positives keep their weight
    assert w[15, 40 - 12] == 1.0 and w[15, 40 + 7] == 1.0  # below it, or not a harmonic


def test_release_frames_after_a_note_weigh_more():
    cfg = LossConfig(release_neg_weight=3.0, release_ms=50.0)
    w = note_negative_weights(one_note(), cfg, FRAME_RATE)[0]
    assert torch.all(w[20:25, 40] == 3.0)
    assert torch.all(w[25:, 40] == 1.0) and torch.all(w[:20, 40] == 1.0)
    assert torch.all(w[20:25, 41] == 1.0)


def test_overlapping_causes_do_not_stack():
    note = one_note() + one_note(key=52, start=0, end=10)  # key 52 ends just as its octave-below starts
    cfg = LossConfig(overtone_neg_weight=4.0, release_neg_weight=3.0, release_ms=50.0)
    w = note_negative_weights(note, cfg, FRAME_RATE)[0]
    assert torch.all(w[10:15, 52] == 4.0)


def test_hard_negatives_weigh_only_from_their_point_of_the_schedule():
    batch = {"audio": torch.zeros(1, 1), "onset": torch.zeros(1, 60, 88), "note": one_note(),
             "contour": torch.zeros(1, 60, 264)}
    guess = {k: torch.zeros_like(v) for k, v in batch.items() if k != "audio"}
    cfg = LossConfig(overtone_neg_weight=3.0, release_neg_weight=2.0, hard_negatives_from=0.6)
    loss = TranscriberLoss(cfg, FRAME_RATE)
    pos_weight = torch.tensor(cfg.note_pos_weight)
    plain = F.binary_cross_entropy_with_logits(guess["note"], batch["note"], pos_weight=pos_weight)
    hard = F.binary_cross_entropy_with_logits(guess["note"], batch["note"], pos_weight=pos_weight,
                                              weight=note_negative_weights(batch["note"], cfg, FRAME_RATE))
    assert hard > plain * 1.01
    loss.set_progress(0.59)
    assert loss(lambda audio: guess, batch)[1]["note"] == pytest.approx(plain.item())
    loss.set_progress(0.6)
    assert loss(lambda audio: guess, batch)[1]["note"] == pytest.approx(hard.item())


def test_masked_note_frames_are_not_learned_from():
    # A string ringing under the pedal after its key came up: whatever the note head says there is
    # neither right nor wrong.
    batch = {"audio": torch.zeros(1, 1), "onset": torch.zeros(1, 60, 88), "note": one_note(),
             "contour": torch.zeros(1, 60, 264), "note_mask": torch.ones(1, 60, 88)}
    batch["note_mask"][0, 20:40, 40] = 0.0
    loss = TranscriberLoss(LossConfig(), FRAME_RATE)
    silent_there = {"onset": torch.zeros(1, 60, 88), "note": torch.full((1, 60, 88), -5.0),
                    "contour": torch.zeros(1, 60, 264)}
    silent_there["note"][0, 10:20, 40] = 5.0
    ringing_there = {k: v.clone() for k, v in silent_there.items()}
    ringing_there["note"][0, 20:40, 40] = 5.0
    a = loss(lambda audio: silent_there, batch)[1]["note"]
    b = loss(lambda audio: ringing_there, batch)[1]["note"]
    assert a == pytest.approx(b)
    del batch["note_mask"]
    assert loss(lambda audio: ringing_there, batch)[1]["note"] > a * 2  # unmasked, ringing is an error


def test_restrike_onsets_weigh_more_than_first_strikes():
    # Key 40 struck at frame 10 and again at 30 while ringing under the pedal (mask 0 from its key-up
    # at 25); key 50 struck once at 30 from silence.
    note = torch.zeros(1, 60, 88)
    note[0, 10:25, 40] = 1.0
    note[0, 30:45, 40] = 1.0
    note[0, 30:45, 50] = 1.0
    onset = torch.zeros(1, 60, 88)
    onset[0, [10, 30], 40] = 1.0
    onset[0, 30, 50] = 1.0
    mask = torch.ones(1, 60, 88)
    mask[0, 25:30, 40] = 0.0
    batch = {"note": note, "onset": onset, "note_mask": mask}
    assert restrike_onset_weights(batch, LossConfig(), FRAME_RATE) is None
    w = restrike_onset_weights(batch, LossConfig(restrike_onset_weight=3.0), FRAME_RATE)[0]
    assert w[30, 40] == 3.0
    assert w[10, 40] == 1.0 and w[30, 50] == 1.0
    assert torch.all(w[onset[0] == 0] == 1.0)
    del batch["note_mask"]  # without the ring, the gap of 5 frames (50 ms) is still inside 100 ms
    assert restrike_onset_weights(batch, LossConfig(restrike_onset_weight=3.0), FRAME_RATE)[0][30, 40] == 3.0
