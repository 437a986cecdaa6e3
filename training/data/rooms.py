"""Binaural room impulse responses: shoebox rooms heard through a real head.

Early reflections come from pyroomacoustics' image-source model, each image filtered by the head's
HRIR for the direction it arrives from, so every reflection carries its own interaural cues. The
image model is cut at a low order (its cost grows with the cube of the order); the rest of the
decay is a diffuse tail: partially correlated noise decaying at the room's RT60, starting where the
image model stops, at the level Sabine's diffuse-field theory gives relative to the direct sound.

A `RoomBank` holds several source positions per room (anywhere around the head, plus enrollment
positions near 0 degrees) so that one scene draws all of its sources from one room.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import lfilter
from tqdm import tqdm

from training.data.hrtf import Hrirs

SPEED_OF_SOUND = 343.0
MAX_SECONDS = 0.6  # a BRIR is cut here (-45 dB at RT60 0.8 s): the rest is inaudible under speech
TAIL_COHERENCE = 0.3  # interaural coherence of the diffuse tail (a diffuse field at a head is mostly incoherent)


@dataclass
class RoomSpec:
    dims: np.ndarray      # (3,) metres
    head: np.ndarray      # (3,) metres
    yaw_deg: float        # where the head faces, counter-clockwise from +x
    rt60: float           # seconds; 0 = anechoic


def _absorption(rt60: float, dims: np.ndarray, max_order_cap: int) -> tuple[float, int]:
    import pyroomacoustics as pra

    if rt60 <= 0:
        return 1.0, 0
    try:
        absorption, order = pra.inverse_sabine(rt60, dims.tolist())
    except ValueError:  # a large room cannot be that dry: the driest walls there are
        absorption, order = 0.99, 1
    return float(absorption), int(min(order, max_order_cap))


def binaural_rir(hrirs: Hrirs, room: RoomSpec, source: np.ndarray, rng: np.random.Generator,
                 sample_rate: int = 16000, max_order_cap: int = 6) -> np.ndarray:
    """(2, taps) impulse response from `source` to the ears of a head at `room.head`."""
    import pyroomacoustics as pra

    absorption, order = _absorption(room.rt60, room.dims, max_order_cap)
    shoebox = pra.ShoeBox(room.dims.tolist(), fs=sample_rate, materials=pra.Material(min(absorption, 1.0)),
                          max_order=order)
    shoebox.add_source(source.tolist())
    shoebox.add_microphone(room.head.tolist())
    shoebox.image_source_model()
    src = shoebox.sources[0]
    vec = src.images.T - room.head[None]
    dist = np.maximum(np.linalg.norm(vec, axis=1), 0.1)
    gain = src.damping[0] / dist  # 1/r spreading; damping carries the wall reflections
    yaw = np.radians(room.yaw_deg)
    rot = np.array([[np.cos(yaw), np.sin(yaw), 0.0], [-np.sin(yaw), np.cos(yaw), 0.0], [0.0, 0.0, 1.0]])
    index = hrirs.nearest(vec @ rot.T)
    delay = np.round(dist / SPEED_OF_SOUND * sample_rate).astype(int)
    taps = hrirs.ir.shape[-1]
    length = int(MAX_SECONDS * sample_rate)
    out = np.zeros((2, length + taps), dtype=np.float64)
    for d, g, i in zip(delay, gain, index):
        if d < length:
            out[:, d:d + taps] += g * hrirs.ir[i]
    direct = int(np.argmin(dist))
    if order > 0 and room.rt60 > 0:
        _add_tail(out, room, absorption, order, float(dist[direct]), float(gain[direct]) ** 2
                  * float(np.sum(hrirs.ir[index[direct]] ** 2)) / 2, sample_rate, rng)
    return out[:, :length].astype(np.float32)


def _add_tail(out: np.ndarray, room: RoomSpec, absorption: float, order: int, direct_m: float,
              direct_energy: float, sample_rate: int, rng: np.random.Generator) -> None:
    lx, ly, lz = room.dims
    volume, surface = lx * ly * lz, 2 * (lx * ly + lx * lz + ly * lz)
    mean_free_path = 4 * volume / surface
    start_s = direct_m / SPEED_OF_SOUND + order * mean_free_path / SPEED_OF_SOUND
    start = int(start_s * sample_rate)
    n = out.shape[1] - start
    if n <= 0:
        return
    # Diffuse reverberant energy relative to the direct sound (Sabine), of which the part after
    # `start` is what the truncated image model leaves out.
    ratio = 16 * np.pi * direct_m ** 2 * (1 - absorption) / (surface * max(absorption, 1e-3))
    after = np.exp(-13.82 * (start_s - direct_m / SPEED_OF_SOUND) / room.rt60)
    common = rng.standard_normal(n)
    noise = np.sqrt(TAIL_COHERENCE) * common + np.sqrt(1 - TAIL_COHERENCE) * rng.standard_normal((2, n))
    noise = lfilter([0.6], [1.0, -0.4], noise, axis=1)  # walls and air absorb highs first
    t = np.arange(n) / sample_rate
    envelope = np.exp(-6.91 * t / room.rt60) * np.minimum(1.0, t / 0.005)
    tail = noise * envelope
    energy = float(np.sum(tail ** 2)) / 2
    out[:, start:] += tail * np.sqrt(direct_energy * ratio * after / max(energy, 1e-12))


def random_room(rng: np.random.Generator, rt60_range: tuple[float, float] = (0.1, 0.8),
                anechoic_prob: float = 0.1) -> RoomSpec:
    dims = np.array([rng.uniform(3.0, 10.0), rng.uniform(3.0, 8.0), rng.uniform(2.4, 4.0)])
    head = np.array([rng.uniform(1.0, dims[0] - 1.0), rng.uniform(1.0, dims[1] - 1.0),
                     min(rng.uniform(1.2, 1.8), dims[2] - 0.4)])
    rt60 = 0.0 if rng.random() < anechoic_prob else float(rng.uniform(*rt60_range))
    return RoomSpec(dims, head, float(rng.uniform(0, 360)), rt60)


def source_at(room: RoomSpec, azimuth_deg: float, distance: float, height: float) -> np.ndarray | None:
    """A point at `azimuth_deg` (relative to where the head faces) and `distance` from the head,
    or None when it would be within 0.3 m of a wall."""
    a = np.radians(room.yaw_deg + azimuth_deg)
    p = room.head + np.array([distance * np.cos(a), distance * np.sin(a), height])
    if np.all(p > 0.3) and np.all(p < room.dims - 0.3):
        return p
    return None


@dataclass
class RoomBank:
    """BRIRs of many rooms: `irs[offsets[k]:offsets[k+1]]` flattened (2, taps) of position k."""
    flat: np.ndarray          # float16, every BRIR's two ears, concatenated
    offsets: np.ndarray       # (positions + 1,) into flat, in samples of one ear x 2
    room: np.ndarray          # (positions,) room index of each position
    azimuth: np.ndarray       # (positions,) degrees relative to the head's front
    enrollment: np.ndarray    # (positions,) bool: a position near 0 degrees, for enrollments
    rt60: np.ndarray          # (rooms,)
    head: str

    def ir(self, k: int, dtype: type = np.float32) -> np.ndarray:
        return self.flat[self.offsets[k]:self.offsets[k + 1]].astype(dtype).reshape(2, -1)

    def positions(self, room: int, enrollment: bool) -> np.ndarray:
        return np.flatnonzero((self.room == room) & (self.enrollment == enrollment))

    @property
    def rooms(self) -> int:
        return len(self.rt60)

    @property
    def max_taps(self) -> int:
        """Samples per ear of the longest BRIR (at most MAX_SECONDS of them)."""
        return int(np.diff(self.offsets).max()) // 2

    def save(self, path: Path) -> None:
        np.savez(path, flat=self.flat, offsets=self.offsets, room=self.room, azimuth=self.azimuth,
                 enrollment=self.enrollment, rt60=self.rt60, head=np.array(self.head))

    @classmethod
    def load(cls, path: str | Path) -> "RoomBank":
        with np.load(path) as z:
            return cls(z["flat"], z["offsets"], z["room"], z["azimuth"], z["enrollment"], z["rt60"], str(z["head"]))


def _placements(rng: np.random.Generator, around: int, enroll: int, spread_deg: float
                ) -> tuple[RoomSpec, list[tuple[np.ndarray, float]]]:
    """A random room and source positions in it; a room where they do not fit (a head facing a
    near wall has no room for a talker in front) is drawn again."""
    while True:
        room, spots = random_room(rng), []
        for _ in range(50 * (around + enroll)):
            near_front = len(spots) >= around
            az = rng.uniform(-spread_deg, spread_deg) if near_front else rng.uniform(-180, 180)
            dist = rng.uniform(0.8, 2.0) if near_front else rng.uniform(0.7, 3.0)
            p = source_at(room, az, dist, rng.uniform(-0.3, 0.3))
            if p is not None:
                spots.append((p, az))
                if len(spots) == around + enroll:
                    return room, spots


def render_bank(heads: list[Hrirs], rooms: int, seed: int, around: int = 6, enroll: int = 2,
                enroll_spread_deg: float = 10.0, desc: str = "rooms") -> RoomBank:
    """`around` positions anywhere around the head and `enroll` within +-enroll_spread_deg of the
    front, in each of `rooms` random rooms, each room heard by one of `heads`."""
    rng = np.random.default_rng(seed)
    irs, room_of, azimuths, is_enroll, rt60s = [], [], [], [], []
    for r in tqdm(range(rooms), desc=desc, unit="room"):
        hrirs = heads[r % len(heads)]
        room, spots = _placements(rng, around, enroll, enroll_spread_deg)
        for placed, (p, az) in enumerate(spots):
            near_front = placed >= around
            ir = binaural_rir(hrirs, room, p, rng)
            energy = np.cumsum(np.sum(ir ** 2, axis=0)[::-1])[::-1]
            keep = max(int(np.searchsorted(-energy, -energy[0] * 1e-5)), 256)  # drop the last -50 dB
            irs.append((ir[:, :keep] / np.sqrt(np.sum(ir ** 2) / 2)).astype(np.float16).ravel())
            room_of.append(r)
            azimuths.append(az)
            is_enroll.append(near_front)
        rt60s.append(room.rt60)
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in irs])])
    return RoomBank(np.concatenate(irs), offsets, np.array(room_of), np.array(azimuths, dtype=np.float32),
                    np.array(is_enroll), np.array(rt60s, dtype=np.float32), "+".join(h.name for h in heads))
