"""Frame targets from notes, and the random-window dataset over a set directory."""
import numpy as np

from synth_data import write_set
from training.data.augment import AugmentConfig
from training.data.music_windows import MusicWindows, frame_targets, load_clips

FR = 22050 / 256


def test_frame_targets_place_onset_note_and_contour():
    notes = np.array([[1.0, 1.5, 60, 90]])
    t = frame_targets(notes, start_s=0.5, frames=172, frame_rate=FR)
    on = int(round(0.5 * FR))
    off = int(round(1.0 * FR))
    k = 60 - 21
    assert np.flatnonzero(t["onset"][:, k]).tolist() == [on]
    assert np.flatnonzero(t["note"][:, k]).tolist() == list(range(on, off))
    assert t["contour"][on, 3 * k + 1] == 1.0 and t["contour"][on, 3 * k] == 0.5
    assert t["onset"].sum() == 1 and t["note"][:, :k].sum() == 0


def test_contour_follows_the_track_bend_while_the_key_stays_written():
    from training.data.expression import CURVE_RATE

    # Track 1 glides up a whole semitone over the note; track 0 stays put.
    t_curve = np.arange(int(3 * CURVE_RATE)) / CURVE_RATE
    bends = np.stack([np.zeros_like(t_curve), np.clip(t_curve - 1.0, 0.0, 1.0)])
    notes = np.array([[1.0, 2.5, 60, 90, 1], [1.0, 2.5, 64, 90, 0]])
    t = frame_targets(notes, start_s=0.0, frames=258, frame_rate=FR, bends=bends)
    k = 60 - 21
    start, end = int(round(1.0 * FR)), int(round(2.5 * FR))
    assert t["note"][start:end, k].all() and not t["note"][start:end, k + 1].any()
    peak = t["contour"][start:end, 3 * k - 3: 3 * k + 7].argmax(axis=1) + 3 * k - 3
    assert peak[0] == 3 * k + 1 and peak[-1] == 3 * k + 4  # +1 semitone = +3 bins at the end
    assert np.all(np.diff(peak) >= 0)
    k0 = 64 - 21
    assert (t["contour"][start:end, 3 * k0 + 1] == 1.0).all()


def test_note_started_before_the_window_has_no_onset():
    t = frame_targets(np.array([[0.0, 2.0, 70, 80]]), start_s=1.0, frames=50, frame_rate=FR)
    assert t["onset"].sum() == 0 and t["note"][:, 70 - 21].all()


def test_dataset_is_deterministic_and_keeps_validation_out(tmp_path):
    write_set(tmp_path, n_clips=6)
    train = load_clips([tmp_path], "train", validation_every=3)
    val = load_clips([tmp_path], "validation", validation_every=3)
    assert {c.wav for c in train}.isdisjoint({c.wav for c in val})
    assert len(train) + len(val) == 6
    ds = MusicWindows([tmp_path], 11264, 256, 22050, length=4, augment=AugmentConfig(), validation_every=3)
    a, b = ds[1], ds[1]
    assert a["audio"].shape == (11264,) and a["onset"].shape == (44, 88)
    assert np.array_equal(a["audio"].numpy(), b["audio"].numpy())
    assert np.isfinite(a["audio"].numpy()).all()


def test_dir_weights_give_each_set_its_share_of_windows(tmp_path):
    big, small = tmp_path / "big", tmp_path / "small"
    write_set(big, n_clips=6)
    write_set(small, n_clips=2)
    ds = MusicWindows([big, small], 11264, 256, 22050, length=4, augment=None, validation_every=1000,
                      dir_weights=[0.7, 0.3])
    from_small = np.array([c.wav.parent.parent == small for c in ds.clips])
    assert from_small.sum() == 2
    assert abs(ds.p[from_small].sum() - 0.3) < 1e-9  # 2 of 8 clips, yet 30 % of the windows


def test_pedal_ring_is_masked_but_the_next_strike_of_the_key_is_a_target():
    notes = np.array([[0.0, 0.3, 50, 40, 0], [1.0, 1.3, 50, 40, 0]])
    t = frame_targets(notes, start_s=0.0, frames=172, frame_rate=FR, ring_ends=np.array([1.0, 1.8]))
    k = 50 - 21
    f = lambda s: int(round(s * FR))  # noqa: E731
    assert t["note_mask"][f(0.3):f(1.0), k].sum() == 0  # the string rings under the pedal: not learned from
    assert (t["note_mask"][f(1.0):f(1.3), k] == 1).all() and t["note"][f(1.0):f(1.3), k].all()
    assert t["note_mask"][f(1.3):f(1.8), k].sum() == 0 and (t["note_mask"][f(1.8):, k] == 1).all()
    assert (t["note_mask"][:, k + 1] == 1).all()  # other keys untouched
    assert (frame_targets(notes, 0.0, 172, FR)["note_mask"] == 1).all()  # no ring column: all learned
