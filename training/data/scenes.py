"""Binaural scenes for target speech hearing: a target talker somewhere around the head, 1-2
interfering talkers and noise, in one room; and an enrollment of the same target, a *different*
utterance, near 0 degrees, with its own interferers and noise.

Every source is a dry recording convolved with a BRIR from a `RoomBank`. Levels are set at the
ears: interferers relative to the target, noise as an SNR against the target. The training target
is the target's reverberant image at the ears (the output keeps the room and the direction; the
task is *who*, not dereverberation).

Each LibriSpeech speaker has one ~14 s excerpt, each speechocean762 speaker ~20 utterances of 2-8 s
joined into one: a random cut splits a speaker's audio into a part for targets and a part for
enrollments, so the two never share audio. A speed change (pitch, formants and rate
together) makes another voice; the teacher d-vector of each (speaker, speed) is computed on the
clean dry audio once, by `hark data extractor`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import fftconvolve
from tqdm import tqdm

from training.data.rooms import RoomBank
from training.data.speech import AUDIO_EXTS, DEFAULT_SOURCES, SAMPLE_RATE, load, normalise, speaker_of, split_files

SPEEDS = (0.9, 0.95, 1.0, 1.05, 1.1)
MIN_TARGET_SECONDS = 6.0  # shorter excerpts serve only as interferers
TEACHER_SECONDS = 12.0    # of a speaker's speech for the teacher d-vector: one LibriSpeech excerpt
DEFAULT_NOISE_DIR = "../shared/data/real/noise"
# Noise recordings never used in training: evaluation hears other noise.
HELDOUT_NOISE = ("misc/", "esc50/4-", "esc50/5-")
NOISE_SOURCES = (1, 2)  # noise sources per side, fewest and most


@dataclass
class SceneConfig:
    interferers: tuple[int, int] = (1, 2)
    interferer_db: tuple[float, float] = (-5.0, 5.0)   # each interferer vs the target, at the ears
    snr_db: tuple[float, float] = (0.0, 20.0)          # target vs noise, at the ears
    level_db: tuple[float, float] = (-35.0, -15.0)     # target RMS at the ears, dBFS
    speed_prob: float = 0.5
    synthetic_noise_prob: float = 0.3                  # coloured noise instead of a recording


@dataclass
class Voices:
    """Dry speech of one speaker split, with the teacher d-vector of every (speaker, speed)."""
    audio: list[np.ndarray]
    speakers: list[str]
    dvectors: np.ndarray                 # (speakers, len(SPEEDS), 256)
    cut: list[int] = field(default_factory=list)

    @classmethod
    def load(cls, sources: list[str | Path], split: str, dvector_file: str | Path) -> "Voices":
        """One voice per speaker, not per file: a speaker with several utterances (speechocean762
        has ~20 short ones each) is their concatenation, so another utterance of the target is
        never drawn as its interferer, and its teacher d-vector is the normalised mean of the
        table's rows for it (one per file; resemblyzer's `embed_speaker` does the same)."""
        files = split_files(sources, split)
        table = np.load(dvector_file)
        rows: dict[str, list[int]] = {}
        for i, s in enumerate(table["speakers"].tolist()):
            rows.setdefault(s, []).append(i)
        by_speaker: dict[str, list[Path]] = {}
        for f in files:  # in file order: a corpus of one file per speaker keeps its order (and scenes)
            by_speaker.setdefault(speaker_of(f), []).append(f)
        missing = [s for s in by_speaker if s not in rows]
        if missing:
            raise ValueError(f"{dvector_file} has no d-vectors for {len(missing)} speakers (e.g. {missing[0]}); "
                             "run `hark data extractor` again on these sources")
        speakers = list(by_speaker)
        bar = tqdm(total=len(files), desc=f"loading {split} speech", unit="file", leave=False)
        audio = []
        for s in speakers:
            audio.append(np.concatenate([normalise(load(f)) for f in by_speaker[s]]))
            bar.update(len(by_speaker[s]))
        bar.close()
        return cls(audio, speakers, np.stack([speaker_dvectors(table["dvectors"][rows[s]]) for s in speakers]))

    def targets(self) -> np.ndarray:
        return np.array([i for i, a in enumerate(self.audio) if len(a) >= MIN_TARGET_SECONDS * SAMPLE_RATE])


def speaker_dvectors(rows: np.ndarray) -> np.ndarray:
    """(files, speeds, dim) d-vectors of one speaker's files -> (speeds, dim): a single row as it
    is, several averaged and scaled back to unit length."""
    if len(rows) == 1:
        return rows[0]
    mean = rows.astype(np.float64).mean(axis=0)
    return (mean / np.maximum(np.linalg.norm(mean, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def teacher_dvectors(sources: list[str | Path], split: str, speeds: tuple[float, ...] = SPEEDS,
                     seconds: float = TEACHER_SECONDS) -> dict[str, np.ndarray]:
    """resemblyzer's d-vector of each speaker's clean speech at every speed in `speeds` (a subset
    of SPEEDS; the others are left NaN, for a caller that needs only those): a speaker's files in
    order, whole, until `seconds` are reached: a LibriSpeech speaker's one excerpt, the first few
    of a speechocean762 speaker's ~20 utterances (embedding all 5.5 h of them at 5 speeds takes
    hours on 2 cores; `Voices.load` also reads tables of one row per file)."""
    from resemblyzer import VoiceEncoder, preprocess_wav

    encoder = VoiceEncoder("cpu", verbose=False)
    by_speaker: dict[str, list[Path]] = {}
    for f in split_files(sources, split):
        by_speaker.setdefault(speaker_of(f), []).append(f)
    vectors = np.full((len(by_speaker), len(SPEEDS), 256), np.nan, dtype=np.float32)
    for i, files in enumerate(tqdm(by_speaker.values(), desc=f"teacher d-vectors ({split})", unit="speaker")):
        audio: list[np.ndarray] = []
        for f in files:
            audio.append(load(f))
            if sum(len(a) for a in audio) >= seconds * SAMPLE_RATE:
                break
        joined = np.concatenate(audio)
        for s in speeds:
            vectors[i, SPEEDS.index(s)] = encoder.embed_utterance(preprocess_wav(speed(joined, s), SAMPLE_RATE))
    return {"speakers": np.array(list(by_speaker)), "dvectors": vectors}


def speed(audio: np.ndarray, factor: float) -> np.ndarray:
    """Play `factor` times faster (linear interpolation: enough for +-10 %)."""
    if factor == 1.0:
        return audio
    n = int(len(audio) / factor)
    return np.interp(np.arange(n) * factor, np.arange(len(audio)), audio).astype(np.float32)


def noise_files(noise_dir: str | Path, split: str) -> list[Path]:
    # Any audio file, not only WAV: training/gpu packs the noise as Opus to fit the device's transfer.
    files = sorted(p for p in Path(noise_dir).rglob("*") if p.suffix.lower() in AUDIO_EXTS and "rir" not in p.parts)
    held = [f for f in files if any(h in f.relative_to(noise_dir).as_posix() for h in HELDOUT_NOISE)]
    return held if split == "heldout" else [f for f in files if f not in held]


def coloured_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """White, pink or brown noise: a random spectral slope of 0 to -6 dB per octave."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.fft.rfftfreq(n), 1.0 / n)
    spectrum *= f ** (-rng.uniform(0.0, 1.0))
    return np.fft.irfft(spectrum, n).astype(np.float32)


def _crop(audio: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    if len(audio) <= n:
        return np.pad(audio, (0, n - len(audio)))
    start = int(rng.integers(0, len(audio) - n + 1))
    return audio[start:start + n]


def _spatialise(dry: np.ndarray, ir: np.ndarray) -> np.ndarray:
    return fftconvolve(dry[None], ir, axes=1)[:, :len(dry)].astype(np.float32)


def _energy(x: np.ndarray) -> float:
    return float(np.mean(x.astype(np.float64) ** 2)) + 1e-12


@dataclass
class DrySide:
    """One side of a scene (the mixture, or the enrollment) before the room: dry signals, the
    bank position of each, and the level draws. `SceneRenderer.mix` and
    `training.data.spatialise` turn it into the same audio."""
    talker: np.ndarray                  # (n,) float32
    position: int
    interferers: list[np.ndarray]       # (n,) each
    interferer_positions: list[int]
    interferer_db: list[float]          # each interferer vs the talker, at the ears
    noises: list[np.ndarray]            # (n,) each; their images add up to one noise field
    noise_positions: list[int]
    snr_db: float                       # talker vs the noise field, at the ears
    level_db: float = 0.0               # talker RMS at the ears, dBFS, before the peak limit


@dataclass
class DryScene:
    scene: DrySide
    enrollment: DrySide
    dvector: np.ndarray                 # (256,) the teacher's, of the target at its speed
    meta: dict


class SceneRenderer:
    def __init__(self, voices: Voices, bank: RoomBank, noises: list[np.ndarray], cfg: SceneConfig):
        self.voices, self.bank, self.noises, self.cfg = voices, bank, noises, cfg
        self.target_ids = voices.targets()
        if len(self.target_ids) == 0:
            raise ValueError(f"no speaker has the {MIN_TARGET_SECONDS} s needed for target + enrollment")
        if len(voices.audio) < 3:
            raise ValueError("scenes need at least 3 speakers (a target and two interferers)")
        rng = np.random.default_rng(0)
        # One fixed cut per speaker: target audio on one side, enrollment audio on the other.
        self.cuts = [int(len(a) * rng.uniform(0.4, 0.6)) for a in voices.audio]

    def _noise(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if not self.noises or rng.random() < self.cfg.synthetic_noise_prob:
            return coloured_noise(rng, n)
        return _crop(self.noises[int(rng.integers(len(self.noises)))], n, rng)

    def _talker(self, rng: np.random.Generator, speaker: int, n: int, part: str | None) -> tuple[np.ndarray, int]:
        cfg, audio = self.cfg, self.voices.audio[speaker]
        if part == "target":
            audio = audio[:self.cuts[speaker]]
        elif part == "enrollment":
            audio = audio[self.cuts[speaker]:]
        s = int(rng.integers(len(SPEEDS))) if rng.random() < cfg.speed_prob else SPEEDS.index(1.0)
        factor = SPEEDS[s]
        return speed(_crop(audio, int(np.ceil(n * factor)) + 1, rng), factor)[:n], s

    def _draw_side(self, rng: np.random.Generator, talker: np.ndarray, position: int, others: list[int],
                   n: int, sources_free: list[int]) -> DrySide:
        """One talker at `position` with interferers and noise; the draws are in the order of the
        renderer before dry and wet were split, so a seed gives the scenes it always gave."""
        cfg = self.cfg
        free = list(rng.permutation(sources_free))
        side = DrySide(talker, position, [], [], [], [], [], 0.0)
        for o in others:
            side.interferers.append(self._talker(rng, o, n, None)[0])
            side.interferer_positions.append(int(free.pop()))
            side.interferer_db.append(float(rng.uniform(*cfg.interferer_db)))
        for _ in range(int(rng.integers(NOISE_SOURCES[0], NOISE_SOURCES[1] + 1))):  # point-like or more diffuse
            side.noises.append(self._noise(rng, n))
            side.noise_positions.append(int(free.pop() if free else rng.choice(sources_free)))
        side.snr_db = float(rng.uniform(*cfg.snr_db))
        return side

    def draw(self, rng: np.random.Generator, seconds: float, enroll_seconds: float,
             target: int | None = None) -> DryScene:
        """Every random choice of a scene: who, where, which audio, at what levels."""
        cfg, bank = self.cfg, self.bank
        n, ne = int(seconds * SAMPLE_RATE), int(enroll_seconds * SAMPLE_RATE)
        speaker = int(rng.choice(self.target_ids)) if target is None else target
        others = [i for i in range(len(self.voices.audio)) if i != speaker]
        room = int(rng.integers(bank.rooms))
        around, front = bank.positions(room, False), bank.positions(room, True)
        k = int(rng.integers(cfg.interferers[0], cfg.interferers[1] + 1))
        talker, s = self._talker(rng, speaker, n, "target")
        where = int(rng.choice(around))
        scene = self._draw_side(rng, talker, where, list(rng.choice(others, k, replace=False)),
                                n, [p for p in around if p != where])
        enroll_dry, _ = self._talker(rng, speaker, ne, "enrollment")
        at = int(rng.choice(front))
        k_e = int(rng.integers(cfg.interferers[0], cfg.interferers[1] + 1))
        enrollment = self._draw_side(rng, enroll_dry, at, list(rng.choice(others, k_e, replace=False)),
                                     ne, list(around))
        scene.level_db = float(rng.uniform(*cfg.level_db))
        enrollment.level_db = float(rng.uniform(*cfg.level_db))
        meta = {"speaker": self.voices.speakers[speaker], "speed": SPEEDS[s],
                "azimuth_deg": float(bank.azimuth[where]), "enrollment_azimuth_deg": float(bank.azimuth[at]),
                "rt60_s": float(bank.rt60[room]), "interferers": k, "head": bank.head}
        return DryScene(scene, enrollment, self.voices.dvectors[speaker, s], meta)

    def mix_side(self, side: DrySide) -> tuple[np.ndarray, np.ndarray]:
        """(mixture, talker image) at the ears, scaled to the drawn level; the gain drops where
        it would take the mixture's peak to 0.99 or above (no clipping in 16-bit files)."""
        bank = self.bank
        target = _spatialise(side.talker, bank.ir(side.position))
        level = _energy(target)
        mixture = target.copy()
        for dry, p, db in zip(side.interferers, side.interferer_positions, side.interferer_db):
            image = _spatialise(dry, bank.ir(p))
            mixture += image * np.sqrt(level / _energy(image) * 10 ** (db / 10))
        noise = np.zeros_like(target)
        for dry, p in zip(side.noises, side.noise_positions):
            noise += _spatialise(dry, bank.ir(p))
        mixture += noise * np.sqrt(level / _energy(noise) * 10 ** (-side.snr_db / 10))
        gain = 10 ** (side.level_db / 20) / np.sqrt(level)
        peak = max(np.abs(mixture).max() * gain, 1e-9)
        gain = gain if peak < 0.99 else gain * 0.99 / peak
        return mixture * gain, target * gain

    def mix(self, dry: DryScene) -> dict:
        mixture, target = self.mix_side(dry.scene)
        enrollment, clean = self.mix_side(dry.enrollment)
        return {"mixture": mixture, "target": target, "enrollment": enrollment, "enrollment_clean": clean,
                "dvector": dry.dvector, "meta": dry.meta}

    def render(self, rng: np.random.Generator, seconds: float, enroll_seconds: float,
               target: int | None = None) -> dict:
        return self.mix(self.draw(rng, seconds, enroll_seconds, target))


def load_noises(noise_dir: str | Path | None, split: str) -> list[np.ndarray]:
    if noise_dir is None:
        return []
    return [normalise(load(f)) for f in noise_files(noise_dir, split)]


def write_scenes(renderer: SceneRenderer, out: Path, count: int, seconds: float, enroll_seconds: float,
                 seed: int) -> list[dict]:
    """`count` scenes as 2-channel 16-bit WAV files + scenes.json: the held-out evaluation set."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    targets = renderer.target_ids
    rows = []
    for i in tqdm(range(count), desc=f"scenes -> {out}", unit="scene"):
        scene = renderer.render(rng, seconds, enroll_seconds, target=int(targets[i % len(targets)]))
        name = f"scene{i:03d}"
        for key in ("mixture", "target", "enrollment", "enrollment_clean"):
            sf.write(str(out / f"{name}_{key}.wav"), scene[key].T, SAMPLE_RATE, subtype="PCM_16")
        rows.append({"name": name, **scene["meta"]})
    (out / "scenes.json").write_text(json.dumps({"sample_rate": SAMPLE_RATE, "seconds": seconds,
                                                 "enroll_seconds": enroll_seconds, "scenes": rows}, indent=1))
    return rows


def add_arguments_data(parser) -> None:
    from training.data.hrtf import DEFAULT_HRTF_DIR

    parser.add_argument("--out", type=Path, default=Path("data/extractor"),
                        help="directory for the room banks, teacher d-vectors and the held-out scene set")
    parser.add_argument("--source", action="append", help=f"speech directories (default {DEFAULT_SOURCES})")
    parser.add_argument("--hrtf-dir", default=DEFAULT_HRTF_DIR, help="directory with the SOFA files")
    parser.add_argument("--noise-dir", default=DEFAULT_NOISE_DIR, help="directory of noise recordings (WAV)")
    parser.add_argument("--train-rooms", type=int, default=800, help="rooms in the training bank (KEMAR)")
    parser.add_argument("--heldout-rooms", type=int, default=100, help="rooms in the held-out bank (FABIAN)")
    parser.add_argument("--heldout-scenes", type=int, default=100, help="scenes in the evaluation set")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each evaluation mixture")
    parser.add_argument("--enroll-seconds", type=float, default=4.0, help="length of each evaluation enrollment")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true",
                        help="render room banks and d-vectors again even where their files exist")


def run_data(args) -> int:
    import json

    from training.data.hrtf import HELDOUT_HEADS, TRAIN_HEADS, head_files, load_hrirs
    from training.data.rooms import render_bank

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    sources = args.source or DEFAULT_SOURCES
    for split, heads, rooms, seed in (("train", TRAIN_HEADS, args.train_rooms, args.seed),
                                      ("heldout", HELDOUT_HEADS, args.heldout_rooms, args.seed + 1)):
        bank_file, dvector_file = out / f"rooms_{split}.npz", out / f"dvectors_{split}.npz"
        if bank_file.exists() and not args.force:
            print(f"keeping {bank_file} (--force renders it again)")
        else:
            hrirs = [load_hrirs(f) for f in head_files(args.hrtf_dir, heads)]
            render_bank(hrirs, rooms, seed, desc=f"{split} rooms").save(bank_file)
        if dvector_file.exists() and not args.force:
            print(f"keeping {dvector_file} (--force computes it again)")
        else:
            np.savez(dvector_file, **teacher_dvectors(sources, split))
    voices = Voices.load(sources, "heldout", out / "dvectors_heldout.npz")
    renderer = SceneRenderer(voices, RoomBank.load(out / "rooms_heldout.npz"),
                             load_noises(args.noise_dir, "heldout"), SceneConfig())
    rows = write_scenes(renderer, out / "heldout", args.heldout_scenes, args.seconds, args.enroll_seconds,
                        args.seed + 2)
    (out / "README.md").write_text(
        "# Extractor data (generated by `hark data extractor`)\n\n"
        f"- rooms_train.npz: {args.train_rooms} rooms heard by {', '.join(TRAIN_HEADS)}\n"
        f"- rooms_heldout.npz: {args.heldout_rooms} rooms heard by {', '.join(HELDOUT_HEADS)} (evaluation only)\n"
        "- dvectors_*.npz: resemblyzer d-vectors of each speaker's clean excerpt at each speed\n"
        f"- heldout/: {len(rows)} scenes of held-out speakers, held-out head and held-out noise\n"
        f"Sources: speech {sources}, HRTFs {args.hrtf_dir}, noise {args.noise_dir}\n"
        f"Arguments: {json.dumps({k: str(v) for k, v in vars(args).items() if k not in ('func',)})}\n")
    print(f"wrote room banks, teacher d-vectors and {len(rows)} held-out scenes to {out}")
    return 0
