"""The SYNTHETIC demo cohort of the classifier family: TTS speakers with controlled prosody and wording.

This is not clinical data. No recording is of a person and no label is a diagnosis. The cohort
exists so that `hark train classifier` and everything after it run out of the box, and so that
the pipeline can be checked against effects whose size is known because they are put in here.

`hark data classifier --out DIR [--participants 60] [--recordings 4] [--seed 0] [--workers 2]`
writes DIR/audio/*.wav (16 kHz mono), DIR/manifest.csv (see training/data/manifest.py),
DIR/cohort.json (settings, seed, tool versions, and each participant's voice and severities) and
DIR/README.md (the effects below, and the word SYNTHETIC in its first line).

Participants are split evenly over three classes:

- `control`: the reference;
- `flat` (depression-like): slower speech, narrower pitch range, longer and more pauses; more
  first-person singular pronouns, negative and absolutist words;
- `elevated` (mania-like): faster speech, wider pitch range, shorter and fewer pauses; positive
  and grandiose words, more exclamations.

Effects at severity 1 (`VOICE_EFFECTS`, `TEXT_EFFECTS`):

| effect | control | flat | elevated | applied as |
|---|---|---|---|---|
| speaking rate | 1.00 | 0.72 | 1.28 | x the participant's base rate, to the power of the voice severity |
| pitch range | 1.00 | 0.40 | 1.90 | x the participant's base range, to the power of the voice severity |
| pause between sentences (s) | 0.45 | 1.00 | 0.25 | x the participant's pause scale, geometric interpolation by voice severity |
| pause at a comma (probability) | 0.30 | 0.75 | 0.10 | linear interpolation by voice severity |
| first person singular (probability) | 0.50 | 0.75 | 0.50 | I/my/me rather than we/our/us, per sentence; linear by text severity |
| negative or absolutist word (probability) | 0.12 | 0.45 | 0.10 | per marked slot (adjective, adverb, closing clause); linear by text severity |
| positive or grandiose word (probability) | 0.12 | 0.08 | 0.45 | per marked slot; linear by text severity |
| exclamation (probability) | 0.05 | 0.03 | 0.40 | per sentence; linear by text severity |

Every `flat` and `elevated` participant draws an overall severity s, uniform in
[`SEVERITY_LOW`, `SEVERITY_HIGH`] = [0.7, 1.5], and a voice share w, uniform in [0, 1]; its voice
severity is s * min(1, 2w) and its text severity s * min(1, 2(1 - w)) (`split_severity`).
Severity 0 is the control value and 1 the value in the table. So a participant shows the class in
both modalities when w is near 0.5, and mostly in the words or mostly in the voice towards the
ends: each modality alone misses some participants that the other one catches, which is what a
fusion of the two can exploit, and neither alone is near-perfect. (With independent severities,
the two modalities' errors were less complementary and averaging them helped less.)

What does not depend on the class, and so acts as nuisance variation: the TTS engine and voice
(espeak-ng accents and variants, or flite awb, slt, kal16), base pitch, base speaking rate
(+-8 %), base pitch range (x0.85 to x1.2), pause scale (x0.8 to x1.25), recording level and
background noise (30 to 45 dB SNR), per-recording jitter of rate, range and pitch, the sentence
templates and their neutral fillers. Each participant has R recordings with different sentences.

Calibration (60 participants x 4 recordings, seeds 0-2, participant-level macro F1 from 5-fold
cross-validation grouped by participant, logistic regression, C=0.1): six eGeMAPS functionals
that carry the voice effects (F0 range and spread, loudness peaks and voiced segments per second,
unvoiced segment lengths) separate the classes at 0.82-0.92, the lexical statistics of
core/classifier_features.py at 0.74-0.80, and averaging the 88 eGeMAPS-only and the
lexical-only probabilities beats each of them on every seed (0.79, 0.82, 0.93). With all features (88 eGeMAPS + 256 d-vector dims; 384 MiniLM + lexical
dims) voice came out at 0.61-0.68 and text at 0.67-0.73: the nuisance dimensions dilute the
effects, and how much fusion adds then depends on how well each model's probabilities are
calibrated.

Everything is deterministic given the seed (and the espeak-ng and flite versions, recorded in
cohort.json): participant i draws from generators seeded by (seed, i), so changing the number of
participants does not change the ones before.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from training.data.manifest import Recording, write_manifest

SAMPLE_RATE = 16000
CLASSES = ("control", "flat", "elevated")
ID_PREFIX = "synthetic-p"

# Effects at severity 1 (see the module docstring's table; tests check the two agree).
VOICE_EFFECTS: dict[str, dict[str, float]] = {
    "rate": {"control": 1.00, "flat": 0.72, "elevated": 1.28},
    "pitch_range": {"control": 1.00, "flat": 0.40, "elevated": 1.90},
    "pause_s": {"control": 0.45, "flat": 1.00, "elevated": 0.25},
    "comma_pause": {"control": 0.30, "flat": 0.75, "elevated": 0.10},
}
TEXT_EFFECTS: dict[str, dict[str, float]] = {
    "first_person": {"control": 0.50, "flat": 0.75, "elevated": 0.50},
    "negative": {"control": 0.12, "flat": 0.45, "elevated": 0.10},
    "positive": {"control": 0.12, "flat": 0.08, "elevated": 0.45},
    "exclamation": {"control": 0.05, "flat": 0.03, "elevated": 0.40},
}
# Multiplicative effects interpolate geometrically, probabilities linearly.
MULTIPLICATIVE = {"rate", "pitch_range", "pause_s"}
EFFECT_NAMES = {
    "rate": ("speaking rate", "x the participant's base rate, to the power of the voice severity"),
    "pitch_range": ("pitch range", "x the participant's base range, to the power of the voice severity"),
    "pause_s": ("pause between sentences (s)",
                "x the participant's pause scale, geometric interpolation by voice severity"),
    "comma_pause": ("pause at a comma (probability)", "linear interpolation by voice severity"),
    "first_person": ("first person singular (probability)",
                     "I/my/me rather than we/our/us, per sentence; linear by text severity"),
    "negative": ("negative or absolutist word (probability)",
                 "per marked slot (adjective, adverb, closing clause); linear by text severity"),
    "positive": ("positive or grandiose word (probability)", "per marked slot; linear by text severity"),
    "exclamation": ("exclamation (probability)", "per sentence; linear by text severity"),
}
SEVERITY_LOW, SEVERITY_HIGH = 0.7, 1.5  # overall severity of a flat or elevated participant

# Nuisance variation, the same for every class.
BASE_RATE_SPREAD = 0.08  # base speaking rate x U(1 - s, 1 + s)
BASE_RANGE = (0.85, 1.2)
PAUSE_SCALE = (0.8, 1.25)
PAUSE_JITTER = 0.35  # log-normal sigma of each pause
COMMA_PAUSE_SHARE = 0.6  # a pause at a comma is this fraction of a sentence pause
RECORDING_JITTER = {"rate": 0.04, "pitch_range": 0.08}  # log-normal sigma per recording
SNR_DB = (30.0, 45.0)
LEVEL_DB = (-27.0, -20.0)
EDGE_SILENCE_S = (0.2, 0.5)
CODA_PROB = 0.5  # chance that a sentence gets a closing clause (neutral or marked)
OPENER_PROB = 0.15  # chance of "Well," and the like: a comma that may become a pause

ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029")
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
ESPEAK_WPM = 170  # base rate before BASE_RATE_SPREAD
ESPEAK_PITCH = (30, 70)  # espeak-ng -p, 0..99
# flite voices whose pitch range follows int_f0_target_stddev (rms ignores it), with their
# base mean F0 range in Hz and the stddev that gives about their natural range.
FLITE_VOICES = {"awb": ((105.0, 135.0), 22.0), "slt": ((160.0, 200.0), 25.0), "kal16": ((95.0, 125.0), 14.0)}
FLITE_SHARE = 0.3
APT_PACKAGES = {"espeak-ng": "espeak-ng", "flite": "flite"}

# --- transcripts ---------------------------------------------------------------------------------
# Slots: {I} {my} {me} (first person singular or plural), {eval} (an evaluative phrase),
# {adv} (a frequency or manner adverb), {day}. Marked slots draw neutral, negative or positive.
TEMPLATES = (
    "On {day} {I} {adv} went to the market, and the vegetables looked {eval}",
    "Last week {I} visited {my} sister, and the whole afternoon was {eval}",
    "{I} cooked dinner for the neighbours, and it turned out {eval}",
    "The weather on {day} was {eval}, so {I} stayed close to the house",
    "At work {I} {adv} finished the reports before lunch",
    "{I} took the early train into town, and the journey felt {eval}",
    "In the evening {I} watched a film about the sea, and it was {eval}",
    "{my} garden needs some work, but the roses are {eval} this year",
    "{I} {adv} walked along the river after breakfast",
    "The new neighbours invited {me} for coffee, and the conversation was {eval}",
    "{I} tried a new recipe with lentils, and the result was {eval}",
    "On the weekend {I} cleaned the kitchen, sorted the post, and paid the bills",
    "{my} phone rang twice during the meeting, which was {eval}",
    "{I} read a few chapters of an old novel, and the story felt {eval}",
    "The bus was late again on {day}, so {I} walked the last part",
    "{I} {adv} spent the morning at the library",
    "{my} brother called about the holidays, and the plan sounds {eval}",
    "{I} repaired the bicycle in the shed, which took most of the day",
    "The doctor said the results looked {eval}, and {I} went home",
    "{I} bought a new coat at the shop on the corner",
    "The concert in the park on {day} was {eval}",
    "{I} painted the fence, and the colour looks {eval}",
    "For lunch {I} had soup and bread at the small cafe",
    "{I} {adv} think about moving to the coast",
    "An old friend from school wrote to {me}, and the letter was {eval}",
    "The children next door played football all afternoon",
    "{I} went swimming on {day}, and the water felt {eval}",
    "Yesterday {I} sorted through old photographs, and the memories were {eval}",
    "The shop had run out of bread, so {I} baked some at home",
    "{I} {adv} visit {my} parents on Sundays",
    "The meeting at work lasted two hours, and the outcome was {eval}",
    "{I} planted tomatoes along the wall, and they are growing",
    "On {day} evening {I} met a few colleagues for dinner",
    "The train back home was crowded, and the ride felt {eval}",
    "{I} finished the puzzle that had been on the table for weeks",
    "The museum showed old maps of the city, and the exhibition was {eval}",
    "{I} {adv} go for a walk before bed",
    "The market on {day} was full of people, and the mood was {eval}",
    "{I} wrote a long email to {my} cousin about the summer",
    "The holiday plans are settled, and the hotel looks {eval}",
)
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# Index 0 neutral, 1 negative/absolutist, 2 positive/grandiose.
EVAL_WORDS = (
    ("fine", "okay", "quiet", "fairly ordinary", "busy", "alright", "normal", "calm", "simple",
     "pleasant enough"),
    ("awful", "sad", "hopeless", "completely pointless", "totally exhausting", "empty", "miserable",
     "terrible", "so lonely", "worthless"),
    ("absolutely amazing", "brilliant", "fantastic", "incredible", "perfect", "wonderful",
     "the best ever", "truly great", "spectacular", "extraordinary"),
)
ADVERBS = (
    ("usually", "often", "sometimes", "also", "once again"),
    ("always", "constantly", "never really", "endlessly", "always"),
    ("eagerly", "happily", "proudly", "boldly", "gladly"),
)
CODAS = (
    ("as usual", "and that was about it", "more or less", "before dinner", "in the end"),
    ("but nothing ever changes", "and I felt tired the whole time", "but it all seemed pointless",
     "and I could not stop worrying", "and I was alone again"),
    ("and it was the best day ever", "and I had a hundred brilliant ideas", "and everybody loved it",
     "and I could do anything", "and I felt on top of the world"),
)
OPENERS = ("Well,", "So,", "Anyway,", "Honestly,", "You know,")
PRONOUNS = {"I": ("I", "we"), "my": ("my", "our"), "me": ("me", "us")}


@dataclass(frozen=True)
class Voice:
    """A participant's voice identity: independent of the class."""

    engine: str  # "espeak-ng" or "flite"
    name: str  # espeak-ng "accent+variant" or a flite voice
    pitch: float  # espeak-ng -p, or flite mean F0 in Hz
    rate: float  # base rate factor around the engine's default
    pitch_range: float  # base range factor
    pause_scale: float
    level_db: float
    snr_db: float


@dataclass(frozen=True)
class Participant:
    participant_id: str
    label: str
    voice: Voice
    voice_severity: float
    text_severity: float


@dataclass(frozen=True)
class RenderJob:
    """Everything one recording's audio needs; rendering is a pure function of it."""

    path: str
    engine: str
    voice: str
    pitch: float
    rate: float
    pitch_range: float
    phrases: tuple[tuple[str, float], ...]  # (text, silence after in s)
    lead_s: float
    level_db: float
    snr_db: float
    noise_seed: int


def effect(name: str, label: str, severity: float) -> float:
    """The value of an effect for a class at a severity (0 = control, 1 = the table)."""
    table = VOICE_EFFECTS if name in VOICE_EFFECTS else TEXT_EFFECTS
    base, target = table[name]["control"], table[name][label]
    if name in MULTIPLICATIVE:
        return float(base * (target / base) ** severity)
    return float(np.clip(base + severity * (target - base), 0.0, 1.0))


def effects_table() -> str:
    """The markdown table of effects, as in the module docstring and the cohort's README."""
    lines = [f"| effect | {' | '.join(CLASSES)} | applied as |", "|---" * (len(CLASSES) + 2) + "|"]
    for table in (VOICE_EFFECTS, TEXT_EFFECTS):
        for key, values in table.items():
            title, how = EFFECT_NAMES[key]
            lines.append(f"| {title} | {' | '.join(f'{values[c]:.2f}' for c in CLASSES)} | {how} |")
    return "\n".join(lines)


# --- planning ------------------------------------------------------------------------------------


def assign_labels(n: int, seed: int) -> list[str]:
    """Classes as even as n allows, in a seeded order."""
    labels = [CLASSES[i % len(CLASSES)] for i in range(n)]
    order = np.random.default_rng([seed, 0x10ab]).permutation(n)
    return [labels[i] for i in order]


def draw_voice(rng: np.random.Generator) -> Voice:
    if rng.random() < FLITE_SHARE:
        name = str(rng.choice(sorted(FLITE_VOICES)))
        lo, hi = FLITE_VOICES[name][0]
        engine, pitch = "flite", float(rng.uniform(lo, hi))
    else:
        name = f"{rng.choice(ESPEAK_ACCENTS)}+{rng.choice(ESPEAK_VARIANTS)}"
        engine, pitch = "espeak-ng", float(rng.integers(ESPEAK_PITCH[0], ESPEAK_PITCH[1] + 1))
    return Voice(
        engine=engine, name=name, pitch=pitch,
        rate=float(rng.uniform(1 - BASE_RATE_SPREAD, 1 + BASE_RATE_SPREAD)),
        pitch_range=float(rng.uniform(*BASE_RANGE)),
        pause_scale=float(rng.uniform(*PAUSE_SCALE)),
        level_db=float(rng.uniform(*LEVEL_DB)),
        snr_db=float(rng.uniform(*SNR_DB)),
    )


def split_severity(severity: float, voice_share: float) -> tuple[float, float]:
    """Voice and text severities: the class shows fully in both modalities at voice_share 0.5,
    only in the words at 0 and only in the voice at 1."""
    return severity * min(1.0, 2 * voice_share), severity * min(1.0, 2 * (1 - voice_share))


def draw_participant(index: int, label: str, seed: int) -> Participant:
    rng = np.random.default_rng([seed, index, 1])
    voice = draw_voice(rng)
    severity, share = float(rng.uniform(SEVERITY_LOW, SEVERITY_HIGH)), float(rng.random())
    voice_severity, text_severity = split_severity(severity, share) if label != "control" else (0.0, 0.0)
    return Participant(f"{ID_PREFIX}{index + 1:03d}", label, voice, voice_severity, text_severity)


def _category(rng: np.random.Generator, p_negative: float, p_positive: float) -> int:
    u = rng.random()
    return 1 if u < p_negative else 2 if u < p_negative + p_positive else 0


def make_sentence(template: str, label: str, severity: float, rng: np.random.Generator) -> str:
    """One sentence from a template, its marked slots drawn with the class's probabilities."""
    p_first = effect("first_person", label, severity)
    p_neg, p_pos = effect("negative", label, severity), effect("positive", label, severity)
    person = 0 if rng.random() < p_first else 1
    fill = {key: forms[person] for key, forms in PRONOUNS.items()}
    fill["day"] = str(rng.choice(DAYS))
    fill["eval"] = str(rng.choice(EVAL_WORDS[_category(rng, p_neg, p_pos)]))
    fill["adv"] = str(rng.choice(ADVERBS[_category(rng, p_neg, p_pos)]))
    text = template.format(**fill)
    if rng.random() < CODA_PROB:
        text += ", " + str(rng.choice(CODAS[_category(rng, p_neg, p_pos)]))
    if rng.random() < OPENER_PROB:
        lowered = text if text.startswith("I ") else text[0].lower() + text[1:]
        text = f"{rng.choice(OPENERS)} {lowered}"
    end = "!" if rng.random() < effect("exclamation", label, severity) else "."
    return text[0].upper() + text[1:] + end


def make_transcripts(participant: Participant, recordings: int, sentences: int, seed: int,
                     index: int) -> list[list[str]]:
    """`recordings` lists of `sentences` sentences, no template twice while the pool lasts."""
    rng = np.random.default_rng([seed, index, 2])
    needed = recordings * sentences
    order = np.concatenate([rng.permutation(len(TEMPLATES)) for _ in range(-(-needed // len(TEMPLATES)))])
    out = []
    for r in range(recordings):
        picks = order[r * sentences:(r + 1) * sentences]
        out.append([make_sentence(TEMPLATES[i], participant.label, participant.text_severity, rng)
                    for i in picks])
    return out


def phrases_of(sentences: list[str], participant: Participant, rng: np.random.Generator) -> list[tuple[str, float]]:
    """Split sentences into spoken phrases with the silence after each (pauses carry the class)."""
    label, sev, voice = participant.label, participant.voice_severity, participant.voice
    mean_pause = effect("pause_s", label, sev) * voice.pause_scale
    p_comma = effect("comma_pause", label, sev)
    out: list[tuple[str, float]] = []
    for sentence in sentences:
        parts = sentence.split(", ")
        current = parts[0]
        for part in parts[1:]:
            if rng.random() < p_comma:
                out.append((current + ",", COMMA_PAUSE_SHARE * mean_pause * float(rng.lognormal(0, PAUSE_JITTER))))
                current = part
            else:
                current += ", " + part
        out.append((current, mean_pause * float(rng.lognormal(0, PAUSE_JITTER))))
    return out


def plan_recordings(participant: Participant, index: int, transcripts: list[list[str]], out: Path,
                    seed: int) -> list[RenderJob]:
    rng = np.random.default_rng([seed, index, 3])
    voice, label, sev = participant.voice, participant.label, participant.voice_severity
    jobs = []
    for r, sentences in enumerate(transcripts):
        rate = voice.rate * effect("rate", label, sev) * float(rng.lognormal(0, RECORDING_JITTER["rate"]))
        spread = voice.pitch_range * effect("pitch_range", label, sev)
        spread *= float(rng.lognormal(0, RECORDING_JITTER["pitch_range"]))
        pitch = voice.pitch * float(rng.uniform(0.97, 1.03))
        path = out / "audio" / f"{participant.participant_id}-r{r + 1}.wav"
        jobs.append(RenderJob(
            path=str(path), engine=voice.engine, voice=voice.name, pitch=pitch, rate=rate,
            pitch_range=spread, phrases=tuple(phrases_of(sentences, participant, rng)),
            lead_s=float(rng.uniform(*EDGE_SILENCE_S)), level_db=voice.level_db + float(rng.normal(0, 1)),
            snr_db=voice.snr_db, noise_seed=int(rng.integers(2**31)),
        ))
    return jobs


# --- rendering -----------------------------------------------------------------------------------


class MissingTTS(RuntimeError):
    """A TTS program the cohort needs is not installed."""


def check_tts() -> None:
    missing = [pkg for program, pkg in APT_PACKAGES.items() if shutil.which(program) is None]
    if missing:
        raise MissingTTS(
            f"the demo cohort is rendered with espeak-ng and flite; missing: {', '.join(missing)}. "
            f"Install the Debian package{'s' if len(missing) > 1 else ''} "
            f"(apt-get install {' '.join(missing)}, or `make system-deps`)")


def tts_versions() -> dict[str, str]:
    out = {}
    for program, flag in (("espeak-ng", "--version"), ("flite", "--version")):
        try:
            text = subprocess.run([program, flag], check=False, capture_output=True, text=True,
                                  timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            text = ""
        lines = [line for line in text.splitlines() if "version" in line.lower() or "eSpeak" in line]
        out[program] = (lines[0] if lines else text).strip()
    return out


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def tts_command(job: RenderJob, text: str, wav: str) -> list[str]:
    if job.engine == "espeak-ng":
        # SSML only for the range: rate and pitch have plain options.
        ssml = f'<speak><prosody range="{100 * job.pitch_range:.0f}%">{_xml_escape(text)}</prosody></speak>'
        return ["espeak-ng", "-m", "-v", job.voice, "-s", f"{ESPEAK_WPM * job.rate:.0f}",
                "-p", f"{job.pitch:.0f}", "-w", wav, ssml]
    stddev = FLITE_VOICES[job.voice][1] * job.pitch_range
    return ["flite", "-voice", job.voice, "--setf", f"duration_stretch={1 / job.rate:.4f}",
            "--setf", f"int_f0_target_mean={job.pitch:.1f}", "--setf", f"int_f0_target_stddev={stddev:.2f}",
            "-t", text, "-o", wav]


def synthesize(job: RenderJob, text: str, workdir: str) -> np.ndarray:
    """One phrase at SAMPLE_RATE, its leading and trailing silence cut."""
    wav = f"{workdir}/phrase.wav"
    result = subprocess.run(tts_command(job, text, wav), check=False, capture_output=True, text=True,
                            timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"{job.engine} failed on {text!r}: {result.stderr.strip()[-500:]}")
    audio, sr = sf.read(wav, dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if sr != SAMPLE_RATE:
        import soxr

        audio = soxr.resample(audio, sr, SAMPLE_RATE).astype(np.float32)
    return trim(audio)


def trim(audio: np.ndarray, floor_db: float = -40.0, margin_s: float = 0.015) -> np.ndarray:
    """Cut the synthesizer's own edge silence, so the pauses are only the ones we put in."""
    frame = SAMPLE_RATE // 100
    n = len(audio) // frame
    if n == 0:
        return audio
    rms = np.sqrt(np.mean(audio[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(rms > rms.max() * 10 ** (floor_db / 20))
    margin = int(margin_s * SAMPLE_RATE)
    start = max(0, loud[0] * frame - margin)
    end = min(len(audio), (loud[-1] + 1) * frame + margin)
    return audio[start:end]


def background_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise tilted towards low frequencies, like a room's."""
    white = rng.standard_normal(n + 1)
    tilted = white[1:] + 0.9 * white[:-1]
    return (tilted / np.sqrt(np.mean(tilted**2) + 1e-12)).astype(np.float32)


def render(job: RenderJob) -> tuple[str, float]:
    """Render one recording to its WAV file; returns the path and its duration in seconds."""
    pieces = [np.zeros(int(job.lead_s * SAMPLE_RATE), np.float32)]
    with tempfile.TemporaryDirectory(prefix="hark-cohort-") as workdir:
        for text, pause in job.phrases:
            pieces.append(synthesize(job, text, workdir))
            pieces.append(np.zeros(int(pause * SAMPLE_RATE), np.float32))
    pieces[-1] = np.zeros(int(job.lead_s * SAMPLE_RATE), np.float32)  # the end, like the start
    audio = np.concatenate(pieces)
    speech = np.concatenate(pieces[1:-1:2])
    speech_rms = float(np.sqrt(np.mean(speech.astype(np.float64) ** 2) + 1e-12))
    audio *= 10 ** (job.level_db / 20) / speech_rms
    noise_rms = 10 ** ((job.level_db - job.snr_db) / 20)
    audio += noise_rms * background_noise(len(audio), np.random.default_rng(job.noise_seed))
    Path(job.path).parent.mkdir(parents=True, exist_ok=True)
    sf.write(job.path, np.clip(audio, -1, 1), SAMPLE_RATE, subtype="PCM_16")
    return job.path, len(audio) / SAMPLE_RATE


def render_all(jobs: list[RenderJob], workers: int) -> dict[str, float]:
    """Render jobs (in a small process pool when workers > 1); durations by path."""
    durations: dict[str, float] = {}
    bar = tqdm(total=len(jobs), desc="cohort", unit="recording")
    if workers <= 1:
        for job in jobs:
            path, seconds = render(job)
            durations[path] = seconds
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for future in as_completed([pool.submit(render, job) for job in jobs]):
                path, seconds = future.result()
                durations[path] = seconds
                bar.update()
    bar.close()
    return durations


# --- the cohort ----------------------------------------------------------------------------------


def build_cohort(out: Path, participants: int = 60, recordings: int = 4, seed: int = 0,
                 sentences: int = 3, workers: int = 2) -> Path:
    """Render the cohort into `out`; returns the manifest's path."""
    if participants < 2 * len(CLASSES):
        raise ValueError(f"need at least {2 * len(CLASSES)} participants (2 per class for grouped "
                         f"cross-validation), got {participants}")
    if recordings < 1 or sentences < 1:
        raise ValueError("recordings and sentences must be at least 1")
    check_tts()
    out = Path(out)
    people = [draw_participant(i, label, seed) for i, label in enumerate(assign_labels(participants, seed))]
    rows: list[Recording] = []
    jobs: list[RenderJob] = []
    for i, person in enumerate(people):
        transcripts = make_transcripts(person, recordings, sentences, seed, i)
        planned = plan_recordings(person, i, transcripts, out, seed)
        jobs += planned
        rows += [Recording(person.participant_id, Path(job.path), " ".join(text), person.label, None, 0)
                 for job, text in zip(planned, transcripts)]
    durations = render_all(jobs, workers)
    manifest = write_manifest(out / "manifest.csv", rows)
    settings = {"participants": participants, "recordings": recordings, "sentences": sentences, "seed": seed}
    write_cohort_json(out, settings, people, durations)
    write_readme(out, settings, people, durations)
    return manifest


def write_cohort_json(out: Path, settings: dict, people: list[Participant], durations: dict[str, float]) -> None:
    info = {
        "synthetic": True,
        "note": "SYNTHETIC demo cohort: TTS voices and template sentences, not clinical data",
        "generator": "training.data.cohort",
        **settings,
        "classes": list(CLASSES),
        "voice_effects": VOICE_EFFECTS,
        "text_effects": TEXT_EFFECTS,
        "severity": {"overall": [SEVERITY_LOW, SEVERITY_HIGH], "voice_share": [0.0, 1.0],
                     "voice": "overall * min(1, 2 * share)", "text": "overall * min(1, 2 * (1 - share))"},
        "tts": tts_versions(),
        "audio_seconds": round(sum(durations.values()), 1),
        "participants_table": [{**asdict(p), "voice": asdict(p.voice)} for p in people],
    }
    (out / "cohort.json").write_text(json.dumps(info, indent=2) + "\n")


def write_readme(out: Path, settings: dict, people: list[Participant], durations: dict[str, float]) -> None:
    counts = ", ".join(f"{sum(p.label == c for p in people)} {c}" for c in CLASSES)
    seconds = list(durations.values())
    text = f"""# SYNTHETIC demo cohort (not clinical data)

Every recording here was made by a text-to-speech program (espeak-ng or flite) reading sentences
filled in from templates. No recording is of a person, and no label is a diagnosis: `flat` and
`elevated` are made-up classes whose voice and wording were shifted on purpose, by the amounts
below, so that the classifier pipeline can be run and checked end to end. Results on this
cohort say nothing about any clinical condition.

Made by `hark data classifier` (`training/data/cohort.py`) with seed {settings['seed']}:
{settings['participants']} participants ({counts}), {settings['recordings']} recordings each of
{settings['sentences']} sentences, {len(seconds)} WAV files at 16 kHz in `audio/`
({min(seconds):.1f} to {max(seconds):.1f} s, {sum(seconds) / 60:.1f} min in all).

- `manifest.csv`: participant_id, audio_path (relative to this directory), transcript, label.
- `cohort.json`: the settings, seed, TTS versions, and each participant's voice and severities.

## Effects at severity 1

Each `flat` and `elevated` participant draws an overall severity s, uniform in
[{SEVERITY_LOW}, {SEVERITY_HIGH}], and a voice share w, uniform in [0, 1]: its voice severity is
s * min(1, 2w) and its text severity s * min(1, 2(1 - w)), so some participants show their class
mostly in the voice, others mostly in the words. Severity 0 is the control value, 1 the value in
the table:

{effects_table()}

Voice identity (TTS engine and voice, base pitch, base rate, base pitch range, pause scale),
recording level, background noise and per-recording jitter do not depend on the class.

## Use

```sh
hark train classifier --manifest {out / 'manifest.csv'} --task multiclass
hark train classifier --manifest {out / 'manifest.csv'} --task binary:flat
```
"""
    (out / "README.md").write_text(text)


def add_arguments_data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="directory to write the SYNTHETIC cohort into")
    parser.add_argument("--participants", type=int, default=60, help="participants, split evenly over "
                        f"{', '.join(CLASSES)} (default 60)")
    parser.add_argument("--recordings", type=int, default=4, help="recordings per participant (default 4)")
    parser.add_argument("--sentences", type=int, default=3, help="sentences per recording (default 3, "
                        "about 8-15 s of speech)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--workers", type=int, default=2, help="rendering processes (default 2)")


def run_data(args: argparse.Namespace) -> int:
    try:
        manifest = build_cohort(args.out, args.participants, args.recordings, args.seed,
                                getattr(args, "sentences", 3), args.workers)
    except (MissingTTS, ValueError) as exc:
        print(f"hark: {exc}", file=sys.stderr)
        return 1
    print(f"wrote the SYNTHETIC demo cohort: {manifest} ({args.participants} participants x "
          f"{args.recordings} recordings); see {Path(args.out) / 'README.md'}")
    return 0
