"""The extractor demo's example scenes, made by this project: TTS voices heard through a real head.

Each scene is a directory `<name>/` with
- `mixture.wav`: 2 channels (left, right), 16 kHz, 16-bit, ~4.5 s: the target talker at some
  azimuth, one interfering talker elsewhere, and coloured noise, all in one shoebox room;
- `enrollment.wav`: 2 channels, ~4 s: a *different* sentence of the target talker near 0 degrees
  (facing the listener), with another interfering talker and noise: a noisy enrollment, as in
  "Look Once to Hear" (CHI 2024);
- `example.json`: what is where (voices, sentences, azimuths, levels, room), for the demo's label.

Speech comes from flite voices (espeak-ng when flite is missing), rooms and HRIRs from
training.data.rooms / training.data.hrtf (MIT KEMAR: pass the directory holding its SOFA file).
Everything is deterministic given the TTS version. The shipped examples live in
artifacts/extractor/examples/ (`hark export extractor` writes them):

    python -m training.data.extractor_examples artifacts/extractor/examples --hrtf-dir ../shared/data/real/hrtf
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import fftconvolve

from training.data.hrtf import DEFAULT_HRTF_DIR, load_hrirs
from training.data.rooms import RoomSpec, binaural_rir, source_at
from training.data.scenes import coloured_noise

SAMPLE_RATE = 16000
MIXTURE_SECONDS = 4.5
ENROLL_SECONDS = 4.0
HEAD = "mit_kemar_normal_pinna"
# flite voice -> espeak-ng voice of a similar kind, used when flite is not installed
VOICES = {"slt": "a woman (slt)", "awb": "a Scottish man (awb)", "rms": "a man (rms)", "kal16": "a man (kal16)"}
ESPEAK_FALLBACK = {"slt": "en-us+f3", "awb": "en-gb-scotland+m3", "rms": "en-us+m1", "kal16": "en-us+m5"}

# Azimuths are counter-clockwise from the front (+90 = left), as in SOFA files.
SCENES = [
    dict(name="woman_left_man_right", target="slt", interferer="awb", enroll_interferer="rms",
         target_az=50.0, interferer_az=-40.0, enroll_az=0.0, enroll_interferer_az=-70.0,
         room=([6.0, 5.0, 3.0], [2.8, 2.4, 1.5], 10.0, 0.3), interferer_db=0.0, snr_db=12.0,
         text="The museum opens at nine, but the garden stays closed until spring.",
         interferer_text="I left my keys on the kitchen table again this morning.",
         enroll_text="Please bring the blue folder when you come to the meeting.",
         enroll_interferer_text="Nobody expected the train to arrive so early today."),
    dict(name="man_right_woman_front", target="awb", interferer="slt", enroll_interferer="kal16",
         target_az=-60.0, interferer_az=15.0, enroll_az=5.0, enroll_interferer_az=80.0,
         room=([8.0, 6.0, 3.2], [3.5, 3.0, 1.6], 200.0, 0.5), interferer_db=2.0, snr_db=8.0,
         text="We should paint the fence before the rain comes back next week.",
         interferer_text="Turn left at the bakery and walk past the old church.",
         enroll_text="My brother plays the violin in a small orchestra downtown.",
         enroll_interferer_text="The weather report says it will be windy tomorrow."),
    dict(name="two_men_behind", target="rms", interferer="kal16", enroll_interferer="slt",
         target_az=150.0, interferer_az=-120.0, enroll_az=-5.0, enroll_interferer_az=-60.0,
         room=([5.0, 4.0, 2.7], [2.0, 2.2, 1.4], 300.0, 0.2), interferer_db=-2.0, snr_db=15.0,
         text="Could you send me the photos from the trip to the mountains?",
         interferer_text="The soup needs more salt and a little bit of pepper.",
         enroll_text="I think the library has a quiet room on the second floor.",
         enroll_interferer_text="Our neighbours bought a new car with a red roof rack."),
]


def speak(voice: str, text: str, workdir: Path) -> tuple[np.ndarray, str]:
    """(16 kHz mono speech with its edge silence cut, the engine used)."""
    from training.data.cohort import trim

    wav = workdir / "tts.wav"
    if shutil.which("flite"):
        cmd, engine = ["flite", "-voice", voice, "-t", text, "-o", str(wav)], "flite"
    elif shutil.which("espeak-ng"):
        cmd, engine = ["espeak-ng", "-v", ESPEAK_FALLBACK[voice], "-w", str(wav), text], "espeak-ng"
    else:
        raise RuntimeError("the extractor examples need flite or espeak-ng (apt-get install flite)")
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    audio, sr = sf.read(wav, dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if sr != SAMPLE_RATE:
        import soxr

        audio = soxr.resample(audio, sr, SAMPLE_RATE).astype(np.float32)
    return trim(audio), engine


def _fit(speech: np.ndarray, n: int, start_s: float) -> np.ndarray:
    """`speech` starting at start_s inside n samples (cut at the end)."""
    out = np.zeros(n, dtype=np.float32)
    a = int(start_s * SAMPLE_RATE)
    part = speech[:max(0, n - a)]
    out[a:a + part.size] = part
    return out


def side(azimuth: float) -> str:
    return "in front" if abs(azimuth) < 10 else f"{abs(azimuth):g}° {'left' if azimuth > 0 else 'right'}"


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) + 1e-12


def _scene(hrirs, room: RoomSpec, rng: np.random.Generator, target: np.ndarray, target_az: float,
           interferer: np.ndarray, interferer_az: float, interferer_db: float, snr_db: float) -> np.ndarray:
    """(2, n): target + interferer (at interferer_db re the target at the ears) + coloured noise."""
    def at_ears(dry: np.ndarray, azimuth: float) -> np.ndarray:
        position = source_at(room, azimuth, 1.2, 0.0)
        if position is None:
            raise ValueError(f"a source at {azimuth} degrees does not fit the room {room.dims}")
        ir = binaural_rir(hrirs, room, position, rng)
        return fftconvolve(dry[None], ir, axes=1)[:, :dry.size]

    t = at_ears(target, target_az)
    i = at_ears(interferer, interferer_az)
    noise = at_ears(coloured_noise(rng, target.size), float(rng.uniform(-180, 180)))
    mix = (t + i * (_rms(t) / _rms(i) * 10 ** (interferer_db / 20))
           + noise * (_rms(t) / _rms(noise) * 10 ** (-snr_db / 20)))
    return (mix * (10 ** (-24 / 20) / _rms(mix))).astype(np.float32)  # -24 dBFS RMS: loud, no clipping


def write_examples(out_dir: Path, hrtf_dir: str | Path = DEFAULT_HRTF_DIR,
                   names: list[str] | None = None) -> list[dict]:
    """Render the scenes of SCENES (all, or those in `names`) into out_dir/<name>/; returns their
    example.json contents."""
    out_dir = Path(out_dir)
    hrirs = load_hrirs(Path(hrtf_dir) / f"{HEAD}.sofa", SAMPLE_RATE)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, s in enumerate(SCENES):
            if names is not None and s["name"] not in names:
                continue
            rng = np.random.default_rng(1000 + k)
            dims, head, yaw, rt60 = s["room"]
            room = RoomSpec(np.array(dims), np.array(head), yaw, rt60)
            n, ne = int(MIXTURE_SECONDS * SAMPLE_RATE), int(ENROLL_SECONDS * SAMPLE_RATE)
            said = {key: speak(s[voice], s[key], Path(tmp)) for key, voice in (
                ("text", "target"), ("interferer_text", "interferer"), ("enroll_text", "target"),
                ("enroll_interferer_text", "enroll_interferer"))}
            engine = said["text"][1]
            mixture = _scene(hrirs, room, rng, _fit(said["text"][0], n, 0.3), s["target_az"],
                             _fit(said["interferer_text"][0], n, 0.05), s["interferer_az"], s["interferer_db"],
                             s["snr_db"])
            enrollment = _scene(hrirs, room, rng, _fit(said["enroll_text"][0], ne, 0.1), s["enroll_az"],
                                _fit(said["enroll_interferer_text"][0], ne, 0.4), s["enroll_interferer_az"],
                                s["interferer_db"] - 3.0, s["snr_db"] - 2.0)
            scene_dir = out_dir / s["name"]
            scene_dir.mkdir(parents=True, exist_ok=True)
            sf.write(scene_dir / "mixture.wav", mixture.T, SAMPLE_RATE, subtype="PCM_16")
            sf.write(scene_dir / "enrollment.wav", enrollment.T, SAMPLE_RATE, subtype="PCM_16")
            info = {
                "name": s["name"],
                "title": (f"hear {VOICES[s['target']]} at {side(s['target_az'])}, "
                          f"not {VOICES[s['interferer']]} at {side(s['interferer_az'])}"),
                "description": (f"Target: the {engine} voice '{s['target']}' ({side(s['target_az'])}) saying "
                                f"\"{s['text']}\" while '{s['interferer']}' ({side(s['interferer_az'])}) says "
                                f"\"{s['interferer_text']}\", with coloured noise, in a {rt60:g} s RT60 room. "
                                f"The enrollment is another sentence of '{s['target']}' from the front, with "
                                f"'{s['enroll_interferer']}' talking over it."),
                "synthetic": True, "tts_engine": engine, "hrtf": HEAD, "sample_rate": SAMPLE_RATE,
                **{k: s[k] for k in ("target", "interferer", "enroll_interferer", "target_az", "interferer_az",
                                     "enroll_az", "enroll_interferer_az", "interferer_db", "snr_db", "text",
                                     "interferer_text", "enroll_text", "enroll_interferer_text")},
                "room": {"dims_m": dims, "head_m": head, "yaw_deg": yaw, "rt60_s": rt60},
                "azimuth_convention": "degrees counter-clockwise from the front: +90 is left",
                "files": {"mixture": "mixture.wav", "enrollment": "enrollment.wav"},
            }
            (scene_dir / "example.json").write_text(json.dumps(info, indent=2) + "\n")
            written.append(info)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="directory for <scene>/{mixture,enrollment}.wav + example.json")
    parser.add_argument("--hrtf-dir", default=DEFAULT_HRTF_DIR, help=f"holds {HEAD}.sofa (default {DEFAULT_HRTF_DIR})")
    args = parser.parse_args(argv)
    for info in write_examples(args.out, args.hrtf_dir):
        print(f"{args.out / info['name']}: {info['title']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
