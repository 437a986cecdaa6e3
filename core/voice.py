"""Is there a voice in this audio? A numpy-only check, run before a model that assumes one.

The classifier and the extractor's enrollment both turn any audio into a confident answer: a
label for silence, a "voice" embedding of a hum. So before either runs, `find_voice` looks for
what a voice has and most other sounds lack:

- voiced frames: periodic (the YIN cumulative-mean-normalised difference dips well below 1 at a
  pitch period of 60-500 Hz) and loud enough to count (within `ACTIVE_RANGE_DB` of the loud
  frames and above `SILENCE_DBFS`). The search sees only 70-1000 Hz, where a voice's pitch and
  first harmonics outweigh hiss and rumble;
- on pitch tracks: runs of at least 50 ms whose pitch moves smoothly. Noise is periodic now and
  then by chance, at a new pitch each frame;
- a pitch that moves: a horn, a hum or a test tone is periodic too, but its pitch holds still,
  whereas talkers glide over several semitones in any sentence;
- enough of it: the voiced frames and the sounds within `CONTEXT_S` of them (consonants) make
  up at least `MIN_SPEECH_S` seconds.

Checked on LibriSpeech, speechocean762 (adults and children, Opus), CMU ARCTIC, LJSpeech and the
noisy binaural enrollments under artifacts/extractor/examples (all pass), and on the ESC-50,
kitchen, exercise-bike, assorted-noise and room-impulse clips of ../shared/data/real/noise (all
refused but one: a machine whose whine glides in pitch like a voice). Works at any sample rate.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_SPEECH_S = 0.5
SILENCE_DBFS = -60.0  # the loudest frames below this: nothing to hear
ACTIVE_RANGE_DB = 40.0  # frames this far below the loud ones are pauses, not sound
FRAME_S = 0.025  # the YIN integration window
HOP_S = 0.010
MIN_F0, MAX_F0 = 60.0, 500.0
PERIODIC_BELOW = 0.25  # CMNDF dip that makes a frame voiced (YIN's own threshold is 0.1-0.2 for clean speech)
TONE_SPREAD_ST = 0.5  # pitch inter-quartile range, in semitones, under which the sound is a steady tone
MIN_VOICED_S = 0.25  # voiced frames needed before the pitch spread means anything
NOISE_BELOW_S = 0.1  # less voiced time than this is chance periodicity in noise, not a short utterance
CONTEXT_S = 0.15  # unvoiced sound this close to voiced frames counts as speech (consonants)
VOICE_BAND_HZ = (70.0, 1000.0)  # the pitch and first harmonics, where a voice outweighs most noise
MIN_TRACK_S = 0.05  # a voiced stretch: about the shortest vowel
TRACK_STEP_ST = 1.0  # largest pitch change between 10 ms frames of one track, in semitones
STEADY_STEP_ST = 0.05  # a track whose pitch moves less than this per frame, on average, is a tone
_CHUNK_FRAMES = 512  # frames per FFT batch: bounds memory for long recordings


@dataclass(frozen=True)
class VoiceFindings:
    """What `find_voice` measured; `problem` is None when there is a voice."""

    loudest_dbfs: float
    active_s: float
    voiced_s: float  # on moving pitch tracks
    steady_s: float  # on steady pitch tracks (tones, hums)
    speech_s: float
    pitch_spread_st: float  # inter-quartile range of the voiced frames' pitch, semitones
    problem: str | None  # "silence", "tone", "noise", "too_little_voice", or None for a voice
    message: str  # what was found, in words a user can act on


def _frames(x: np.ndarray, length: int, hop: int) -> np.ndarray:
    if x.size < length:
        x = np.pad(x, (0, length - x.size))
    return np.lib.stride_tricks.sliding_window_view(x, length)[::hop]


def _cmndf_minimum(frames: np.ndarray, window: int, tau_min: int, tau_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: the YIN CMNDF minimum over [tau_min, tau_max] and the lag where it is."""
    n = frames.shape[1]
    nfft = 1 << int(np.ceil(np.log2(n)))
    head = np.fft.rfft(frames[:, :window], nfft)
    full = np.fft.rfft(frames, nfft)
    r = np.fft.irfft(np.conj(head) * full, nfft)[:, :tau_max + 1]
    energy = np.cumsum(np.square(frames, dtype=np.float64), axis=1)
    energy = np.concatenate([np.zeros((len(frames), 1)), energy], axis=1)
    lags = np.arange(tau_max + 1)
    e_lag = energy[:, lags + window] - energy[:, lags]  # energy of frames[:, tau:tau + window]
    d = np.maximum(e_lag[:, :1] + e_lag - 2.0 * r, 0.0)
    cumulative = np.cumsum(d[:, 1:], axis=1)
    cmndf = np.ones_like(d)
    cmndf[:, 1:] = d[:, 1:] * lags[1:] / np.maximum(cumulative, 1e-20)
    part = cmndf[:, tau_min:tau_max + 1]
    # YIN's rule: the first dip under the threshold, not the deepest one, which for a steady
    # sound is any multiple of the period and would make a constant pitch look like it jumps.
    below = part < PERIODIC_BELOW
    first = np.where(below.any(axis=1), np.argmax(below, axis=1), np.argmin(part, axis=1))
    reach = np.arange(part.shape[1])[None, :]
    near = (reach >= first[:, None]) & (reach <= first[:, None] + first[:, None] // 2 + 1)
    best = np.argmin(np.where(near, part, np.inf), axis=1)
    rows = np.arange(len(part))
    # A parabola through the dip and its neighbours: whole-sample lags would quantise a gliding
    # pitch into steps and make it look steady.
    left = part[rows, np.maximum(best - 1, 0)]
    right = part[rows, np.minimum(best + 1, part.shape[1] - 1)]
    centre = part[rows, best]
    curve = left - 2.0 * centre + right
    shift = np.where(curve > 1e-12, 0.5 * (left - right) / np.where(curve > 1e-12, curve, 1.0), 0.0)
    return centre, best + tau_min + np.clip(shift, -0.5, 0.5)


def _voice_band(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """x with only VOICE_BAND_HZ kept (an FFT brick wall: numpy only, and the pitch search only
    needs the band's periodicity, not a pleasant filter)."""
    spectrum = np.fft.rfft(x)
    hz = np.fft.rfftfreq(x.size, 1.0 / sample_rate)
    spectrum[(hz < VOICE_BAND_HZ[0]) | (hz > VOICE_BAND_HZ[1])] = 0.0
    return np.fft.irfft(spectrum, x.size)


def _pitch_tracks(periodic: np.ndarray, pitch_st: np.ndarray, min_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(frames on a moving pitch track, frames on a steady one).

    A track is a run of at least `min_frames` periodic frames whose pitch moves less than
    TRACK_STEP_ST from one frame to the next: noise is periodic now and then by chance, at a new
    pitch every time, whereas a voice holds a smooth pitch through each syllable. A track whose
    pitch barely moves (mean step under STEADY_STEP_ST) is a hum, a horn or a resonance, not a voice.
    """
    steps = np.abs(np.diff(pitch_st))
    linked = periodic[1:] & periodic[:-1] & (steps < TRACK_STEP_ST)
    run_id = np.concatenate([[0], np.cumsum(~linked)])  # frames of one track share an id
    lengths = np.bincount(run_id)
    on_track = periodic & (lengths[run_id] >= min_frames)
    movement = np.bincount(run_id[1:], weights=np.where(linked, steps, 0.0), minlength=len(lengths))
    mean_step = movement / np.maximum(lengths - 1, 1)
    steady = on_track & (mean_step[run_id] < STEADY_STEP_ST)
    return on_track & ~steady, steady


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    if radius <= 0 or not mask.any():
        return mask
    return np.convolve(mask.astype(np.float64), np.ones(2 * radius + 1), mode="same") > 0.5


def find_voice(audio: np.ndarray, sample_rate: int, min_speech_s: float = MIN_SPEECH_S) -> VoiceFindings:
    """Look for a voice in mono audio (or (channels, samples): the channels are averaged)."""
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=0)
    x = x.reshape(-1)
    window = max(1, int(round(FRAME_S * sample_rate)))
    hop = max(1, int(round(HOP_S * sample_rate)))
    tau_min = max(2, int(sample_rate / MAX_F0))
    tau_max = int(np.ceil(sample_rate / MIN_F0))
    frames = _frames(x, window, hop)
    db = 10.0 * np.log10(np.mean(np.square(frames), axis=1) + 1e-20)
    loudest = float(np.percentile(db, 99)) if db.size else -200.0
    if loudest < SILENCE_DBFS:
        level = "all zeros" if loudest < -150 else f"its loudest part is {loudest:.0f} dBFS"
        return VoiceFindings(loudest, 0.0, 0.0, 0.0, 0.0, 0.0, "silence", f"the audio is silent ({level})")
    active = db > max(SILENCE_DBFS, loudest - ACTIVE_RANGE_DB)

    pitch_frames = _frames(_voice_band(x, sample_rate), window + tau_max, hop)[:len(frames)]
    dips, periods = [], []
    for start in range(0, len(pitch_frames), _CHUNK_FRAMES):
        dip, period = _cmndf_minimum(pitch_frames[start:start + _CHUNK_FRAMES], window, tau_min, tau_max)
        dips.append(dip)
        periods.append(period)
    dip, period = np.concatenate(dips), np.concatenate(periods)
    n = min(len(active), len(dip))
    active, dip, period = active[:n], dip[:n], period[:n]
    pitch = 12.0 * np.log2(sample_rate / period)
    voiced, steady = _pitch_tracks(active & (dip < PERIODIC_BELOW), pitch, int(round(MIN_TRACK_S / HOP_S)))
    speech = _dilate(voiced, int(round(CONTEXT_S / HOP_S))) & active

    seconds = lambda mask: float(mask.sum()) * hop / sample_rate  # noqa: E731
    active_s, voiced_s, steady_s, speech_s = seconds(active), seconds(voiced), seconds(steady), seconds(speech)
    pitch_st = pitch[voiced]
    spread = float(np.subtract(*np.percentile(pitch_st, [75, 25]))) if pitch_st.size else 0.0

    def found(problem: str | None, message: str) -> VoiceFindings:
        return VoiceFindings(loudest, active_s, voiced_s, steady_s, speech_s, spread, problem, message)

    if voiced_s < MIN_VOICED_S and steady_s >= max(MIN_VOICED_S, voiced_s):
        return found("tone", f"no voice found: the sound is a steady tone or hum ({steady_s:.1f} s of "
                             "a pitch that holds still, where a voice's moves)")
    if voiced_s < NOISE_BELOW_S:
        return found("noise", f"no voice found: {active_s:.1f} s of sound, but nothing voiced in it "
                              "(noise or other sounds only)")
    if spread < TONE_SPREAD_ST:
        return found("tone", f"no voice found: the sound is a steady tone or hum (its pitch stays within "
                             f"{spread:.2f} semitones; a voice moves by several)")
    if voiced_s < MIN_VOICED_S or speech_s < min_speech_s:
        return found("too_little_voice", f"only {speech_s:.2f} s of speech found ({voiced_s:.2f} s voiced); "
                                         f"at least {min_speech_s:g} s is needed")
    return found(None, f"{speech_s:.1f} s of speech")
