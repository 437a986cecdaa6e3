import torch

from training.transcriber import LossConfig, note_negative_weights

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
