"""Rendered music with exact note truth: music21 scores and generated textures -> FluidSynth.

A set is a directory of `audio/NAME.wav` (22.05 kHz mono), `notes/NAME.csv`
(`onset_s,offset_s,midi_pitch,velocity,track`), `bends/NAME.npy` (each track's pitch-wheel curve
in semitones at 100 Hz, see expression.py) and `manifest.json`; the evaluation reads the same
layout. Onsets are where a note becomes audible (onset_delays.py), not the MIDI note-on.
Every clip is a pure function of (set seed, clip index), so a set can be extended or rebuilt
and comes out the same.

Held out from training: 10 % of the corpus pieces, one soundfont, and a set of GM programs
(one per instrument family the evaluation reports on).
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pretty_midi
import soundfile as sf
from tqdm import tqdm

from training.data import expression, midi_sources, onset_delays

SAMPLE_RATE = 22050
TRAIN_SOUNDFONTS = ["/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf3/MuseScore_General_Lite.sf3"]
HELDOUT_SOUNDFONTS = ["/usr/share/sounds/sf2/TimGM6mb.sf2"]
# One or two per family: keys, plucked, bowed, voice-like, winds, pads.
HELDOUT_PROGRAMS = [1, 5, 25, 41, 53, 66, 69, 89]
_NOT_PITCHED = {47, 55, 109} | set(range(96, 104)) | set(range(112, 128))
RENDER_TIMEOUT_S = 120  # a 30 s clip renders in about a second
GENERATOR = 2  # bump when a clip of the same (seed, index) would come out differently
TRAIN_PROGRAMS = [p for p in range(128) if p not in _NOT_PITCHED and p not in HELDOUT_PROGRAMS]


def crop(pm: pretty_midi.PrettyMIDI, start: float, seconds: float) -> pretty_midi.PrettyMIDI:
    """Notes sounding in [start, start + seconds), shifted to 0 and cut at the edges."""
    out = pretty_midi.PrettyMIDI()
    end = start + seconds
    for inst in pm.instruments:
        if inst.is_drum:
            continue
        new = pretty_midi.Instrument(program=inst.program)
        for n in inst.notes:
            if n.end > start and n.start < end and n.end - n.start > 0.02:
                new.notes.append(pretty_midi.Note(n.velocity, n.pitch, max(n.start, start) - start, min(n.end, end) - start))
        if new.notes:
            out.instruments.append(new)
    return out


def randomize(pm: pretty_midi.PrettyMIDI, rng: np.random.Generator, programs: list[int]) -> pretty_midi.PrettyMIDI:
    """New timbres, dynamics, tempo and key for every rendering of the same score."""
    stretch = float(rng.uniform(0.7, 1.4))
    shift = int(rng.integers(-6, 7))
    for inst in pm.instruments:
        inst.program = int(rng.choice(programs))
        inst.is_drum = False
        base = rng.uniform(40, 120)
        for n in inst.notes:
            n.start *= stretch
            n.end *= stretch
            n.pitch = int(np.clip(n.pitch + shift, 21, 108))
            n.velocity = int(np.clip(base + rng.normal(0, 10), 15, 127))
        inst.control_changes = []  # sustain pedals would move note ends away from the truth
        inst.pitch_bends = []
    # MIDI has 15 melodic channels; parts beyond that would fight over programs.
    pm.instruments = sorted(pm.instruments, key=lambda i: -len(i.notes))[:15]
    return pm


def render(pm: pretty_midi.PrettyMIDI, soundfont: str, rng: np.random.Generator) -> np.ndarray:
    """FluidSynth's own reverb and chorus stay on for some clips, off for others."""
    with tempfile.TemporaryDirectory() as tmp:
        mid, wav = Path(tmp) / "in.mid", Path(tmp) / "out.wav"
        pm.write(str(mid))
        fx = ["-R", "1", "-C", "1"] if rng.random() < 0.4 else ["-R", "0", "-C", "0"]
        cmd = ["fluidsynth", "-ni", "-q", *fx, "-g", "0.5", "-r", str(SAMPLE_RATE), "-F", str(wav), soundfont, str(mid)]
        subprocess.run(cmd, check=True, capture_output=True, timeout=RENDER_TIMEOUT_S)
        audio, sr = sf.read(str(wav), dtype="float32", always_2d=True)
    assert sr == SAMPLE_RATE
    audio = audio.mean(axis=1)
    peak = float(np.abs(audio).max())
    return audio / peak * 0.9 if peak > 0 else audio


def notes_of(pm: pretty_midi.PrettyMIDI, delays: dict[int, float] | None = None) -> np.ndarray:
    """[n, 5] rows (onset_s, offset_s, pitch, velocity, track): the MIDI span moved by the
    program's audible delay (the onset never past the last 20 ms of the note). Both ends move: in
    a legato line the next note takes over when it becomes audible, and annotators of recordings
    end a note there; an offset left at the note-off taught a silent gap between legato notes."""
    delays = delays or {}
    rows = []
    for i, inst in enumerate(pm.instruments):
        d = delays.get(inst.program, 0.0)
        rows += [(min(n.start + d, max(n.end - 0.02, n.start)), n.end + d, n.pitch, n.velocity, i) for n in inst.notes]
    return np.array(sorted(rows), dtype=np.float64).reshape(-1, 5)


def write_notes_csv(path: Path, notes: np.ndarray, source: str) -> None:
    lines = [f"# audio: ../audio/{path.stem}.wav ({source})", "onset_s,offset_s,midi_pitch,velocity,track"]
    lines += [f"{s:.4f},{e:.4f},{int(p)},{int(v)},{int(k)}" for s, e, p, v, k in notes]
    path.write_text("\n".join(lines) + "\n")


def make_clip(args: tuple[str, int, dict]) -> dict | None:
    """Clip `index` of a set; deterministic in (seed, index)."""
    out, index, spec = args
    out = Path(out)
    name = f"{spec['split']}_{index:06d}"
    wav, csv = out / "audio" / f"{name}.wav", out / "notes" / f"{name}.csv"
    if wav.exists() and csv.exists():
        return None
    rng = np.random.default_rng([spec["seed"], index])
    seconds = spec["clip_seconds"]
    pieces = spec["pieces"]
    if pieces and rng.random() >= spec["texture_share"]:
        piece = Path(pieces[int(rng.integers(len(pieces)))])
        pm = midi_sources.piece_midi(piece, Path(spec["cache"]) / "midi")
        if pm is None:
            return None
        source = "music21:" + str(piece).split("/corpus/")[-1]
        pm = randomize(pm, rng, spec["programs"])
        start = float(rng.uniform(0, max(pm.get_end_time() - seconds, 0)))
    else:
        pm = randomize(midi_sources.random_texture(rng, seconds), rng, spec["programs"])
        source, start = "generated-texture", 0.0
    pm = crop(pm, start, seconds)
    if not pm.instruments:
        return None
    soundfont = spec["soundfonts"][int(rng.integers(len(spec["soundfonts"])))]
    curves = expression.add_expression(pm, rng, seconds)
    try:
        audio = render(pm, soundfont, rng)[: int(seconds * SAMPLE_RATE)]
    except subprocess.TimeoutExpired:
        # A few score/soundfont pairs make FluidSynth hang (seen: MuseScore's string ensemble on a
        # fast reel); one such clip must not sink the whole set.
        tqdm.write(f"{name}: FluidSynth did not finish within {RENDER_TIMEOUT_S} s; clip skipped ({source})")
        return None
    delays = onset_delays.delays_for(soundfont, [i.program for i in pm.instruments], Path(spec["cache"]))
    notes = notes_of(pm, delays)
    expression.write_curves(out / "bends" / f"{name}.npy", curves)
    sf.write(str(wav), audio, SAMPLE_RATE, subtype="PCM_16")
    write_notes_csv(csv, notes, f"{source}; {Path(soundfont).name}; programs {sorted({i.program for i in pm.instruments})}")
    return {"name": name, "source": source, "soundfont": Path(soundfont).name, "seconds": len(audio) / SAMPLE_RATE,
            "notes": len(notes), "programs": sorted({i.program for i in pm.instruments})}


def prepare_set_dir(out: Path, soundfonts: list[str]) -> None:
    """Fail early when a soundfont is missing (they come from Debian packages), then make the set's folders."""
    missing = [s for s in soundfonts if not Path(s).exists()]
    if missing:
        raise FileNotFoundError(f"soundfonts not found: {missing} (Debian: fluid-soundfont-gm, "
                                "musescore-general-soundfont-small, timgm6mb-soundfont, csound-soundfont)")
    (out / "audio").mkdir(parents=True, exist_ok=True)
    (out / "notes").mkdir(parents=True, exist_ok=True)


def build_set(out: Path, split: str, minutes: float, seed: int, clip_seconds: float = 30.0,
              workers: int = 2, soundfonts: list[str] | None = None, texture_share: float | None = None) -> Path:
    """Render a `train` or `heldout` set of about `minutes` of audio into `out`."""
    if split not in ("train", "heldout"):
        raise ValueError("split must be 'train' or 'heldout'")
    soundfonts = soundfonts or (TRAIN_SOUNDFONTS if split == "train" else HELDOUT_SOUNDFONTS)
    prepare_set_dir(out, soundfonts)
    spec = {
        "split": split, "seed": seed, "clip_seconds": clip_seconds, "soundfonts": soundfonts,
        "programs": TRAIN_PROGRAMS if split == "train" else HELDOUT_PROGRAMS,
        "pieces": [str(p) for p in midi_sources.corpus_pieces(split)],
        "texture_share": (0.3 if split == "train" else 0.15) if texture_share is None else texture_share,
        "cache": str(Path(os.environ.get("HARK_CACHE", "data/cache"))),
        "generator": GENERATOR,
    }
    manifest = out / "manifest.json"
    old = json.loads(manifest.read_text()) if manifest.exists() else {"clips": []}
    if old["clips"] and old.get("spec", {}).get("generator", 1) != GENERATOR:
        raise ValueError(f"{out} was rendered by an older generator; render into a new directory")
    n_clips = int(np.ceil(minutes * 60 / clip_seconds))
    jobs = [(str(out), i, spec) for i in range(n_clips)]
    made = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for info in tqdm(pool.map(make_clip, jobs, chunksize=2), total=n_clips, desc=f"render {split}", unit="clip"):
            if info:
                made.append(info)
    meta = {k: v for k, v in spec.items() if k != "pieces"}
    meta["n_pieces_available"] = len(spec["pieces"])
    manifest.write_text(json.dumps({"spec": meta, "clips": old["clips"] + made}, indent=1))
    return out


def render_examples(out: Path, seconds: float = 12.0) -> list[Path]:
    """The demo's example clips: a held-out chorale on held-out programs and a generated guitar texture,
    both on the held-out soundfont, so the demo shows the model on timbres it never trained on."""
    out.mkdir(parents=True, exist_ok=True)
    made = []
    chorale = next(p for p in midi_sources.corpus_pieces("heldout") if "/bach/" in str(p))
    for name, program_set, seed in (("chorale_keys_and_strings", [1, 41], 3), ("guitar_texture", [25], 5)):
        rng = np.random.default_rng(seed)
        if name.startswith("chorale"):
            pm = midi_sources.piece_midi(chorale, Path(os.environ.get("HARK_CACHE", "data/cache")) / "midi")
        else:
            pm = midi_sources.random_texture(rng, seconds)
        pm = crop(randomize(pm, rng, program_set), 0.0, seconds)
        audio = render(pm, HELDOUT_SOUNDFONTS[0], rng)[: int(seconds * SAMPLE_RATE)]
        wav = out / f"{name}.wav"
        sf.write(str(wav), audio, SAMPLE_RATE, subtype="PCM_16")
        write_notes_csv(out / f"{name}.csv", notes_of(pm), f"generated by hark: {name}")
        made.append(wav)
    return made
