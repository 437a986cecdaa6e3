"""Decode and validate uploaded audio, then downmix and resample it for a model.

Binaural models (the extractor) decode with `Limits(binaural=True)`: exactly two channels are
required and kept as (2, samples), left ear first.

Everything a user can send ends here, so every refusal is an `AudioError` whose message says what
was wrong and what is accepted; nothing else escapes for bad bytes. The service, the demo and the
benchmarks all decode through `decode`/`load`, so evaluation sees exactly what users get.
"""
from __future__ import annotations

import io
import logging
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from core import config
from core.voice import MIN_SPEECH_S, VoiceFindings, find_voice

log = logging.getLogger("hark.audio")

MIN_SAMPLE_RATE = 4_000
MAX_SAMPLE_RATE = 192_000
MAX_CHANNELS = 2
# Content types we take at face value and then sniff. Browsers and curl label uploads
# inconsistently (curl without ;type= sends octet-stream), so the bytes decide, not the label.
ACCEPTED_CONTENT_TYPES = ("audio/*", "application/octet-stream", "application/ogg")
FORMATS_TEXT = "WAV, FLAC, OGG (Vorbis/Opus), MP3, AIFF, AU or CAF"
# Frames per soundfile read: bounds memory for long or high-rate input (we never hold the
# full-rate multichannel signal, only the mono signal at the model's rate).
_BLOCK_FRAMES = 1 << 18
# WAV writers that stream (ffmpeg to a pipe) leave the data size at one of these placeholders.
_UNKNOWN_WAV_SIZES = (0, 0xFFFFFFFF, 0x7FFFFFFF)


class AudioError(ValueError):
    """Input audio we refuse. `reason` is a short stable code (for metrics and clients)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Limits:
    max_seconds: float
    max_bytes: int
    min_rate: int = MIN_SAMPLE_RATE
    max_rate: int = MAX_SAMPLE_RATE
    max_channels: int = MAX_CHANNELS
    binaural: bool = False  # exactly 2 channels (left, right), kept apart instead of averaged

    @classmethod
    def from_env(cls, binaural: bool = False) -> Limits:
        return cls(max_seconds=config.max_audio_seconds(), max_bytes=config.max_upload_bytes(), binaural=binaural)

    def channels_text(self) -> str:
        return "2 channels (binaural: left ear, right ear)" if self.binaural else f"1 to {self.max_channels} channels"

    def accepted(self) -> str:
        """One sentence a client can act on; appended to every refusal."""
        return (
            f"Accepted: {FORMATS_TEXT}; {self.channels_text()}; "
            f"{self.min_rate}-{self.max_rate} Hz; finite samples; "
            f"at most {self.max_seconds:g} s and {self.max_bytes / 1e6:g} MB."
        )


@dataclass(frozen=True)
class DecodedAudio:
    samples: np.ndarray  # float32 at `sample_rate`: mono (samples,), or (2, samples) when binaural
    sample_rate: int
    source_rate: int
    source_channels: int
    source_format: str
    duration_s: float


def content_type_ok(content_type: str | None) -> bool:
    """True for the labels we accept; a missing label is fine, the bytes are sniffed anyway."""
    if not content_type:
        return True
    media = content_type.split(";")[0].strip().lower()
    return media.startswith("audio/") or media in ACCEPTED_CONTENT_TYPES


def check_content_type(content_type: str | None, limits: Limits | None = None) -> None:
    if not content_type_ok(content_type):
        limits = limits or Limits.from_env()
        raise AudioError(
            "content_type",
            f"Content type {content_type!r} is not audio. Send the file as audio/* (e.g. audio/wav) "
            f"or application/octet-stream. {limits.accepted()}",
        )


def sniff_format(data: bytes) -> str | None:
    """Container named by the first bytes, or None when they match no audio format we read."""
    head = data[:12]
    if head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE":
        return "WAV"
    if head[:4] == b"riff":  # Sony Wave64 starts with a GUID whose first bytes spell riff
        return "W64"
    if head[:4] == b"fLaC":
        return "FLAC"
    if head[:4] == b"OggS":
        return "OGG"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "AIFF"
    if head[:4] == b".snd":
        return "AU"
    if head[:4] == b"caff":
        return "CAF"
    if head[:3] == b"ID3" or _mpeg_frame_header(head):
        return "MP3"
    return None


def _mpeg_frame_header(head: bytes) -> bool:
    """An MPEG audio frame header: sync bits, a defined layer, and a usable bitrate and rate."""
    if len(head) < 4 or head[0] != 0xFF or (head[1] & 0xE0) != 0xE0:
        return False
    layer = (head[1] >> 1) & 0x3
    bitrate = head[2] >> 4
    rate = (head[2] >> 2) & 0x3
    return layer != 0 and bitrate not in (0, 0xF) and rate != 0x3


@dataclass(frozen=True)
class WavHeader:
    channels: int
    sample_rate: int
    data_declared: int | None  # bytes the data chunk claims; None when the writer left it unknown
    data_present: int


def parse_wav_header(data: bytes) -> WavHeader | None:
    """Channels, rate and data sizes from a RIFF/RIFX header; None if the chunks are unreadable.

    We read these ourselves because libsndfile either rejects absurd headers with an opaque
    message or, for a file cut short, silently decodes what is there.
    """
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RIFX", b"RF64"):
        return None
    endian = ">" if data[:4] == b"RIFX" else "<"
    pos, fmt, data_declared, data_present = 12, None, None, None
    while pos + 8 <= len(data):
        chunk_id = data[pos:pos + 4]
        (size,) = struct.unpack(endian + "I", data[pos + 4:pos + 8])
        body = pos + 8
        if chunk_id == b"fmt " and body + 16 <= len(data):
            _, channels, rate = struct.unpack(endian + "HHI", data[body:body + 8])
            fmt = (channels, rate)
        elif chunk_id == b"data":
            data_present = len(data) - body
            # RF64 keeps the real size in its ds64 chunk and puts a placeholder here.
            unknown = data[:4] == b"RF64" or size in _UNKNOWN_WAV_SIZES and data_present > 0
            data_declared = None if unknown else size
            break
        pos = body + size + (size & 1)  # chunks are padded to even sizes
    if fmt is None or data_present is None:
        return None
    return WavHeader(fmt[0], fmt[1], data_declared, data_present)


def _check_shape(channels: int, rate: int, limits: Limits) -> None:
    if limits.binaural and channels != 2:
        raise AudioError(
            "channels",
            f"The audio has {channels} channel{'s' if channels != 1 else ''}; this model needs binaural "
            f"audio: 2 channels, the left and the right ear (e.g. a stereo recording from in-ear or "
            f"head-worn microphones). {limits.accepted()}",
        )
    if not 1 <= channels <= limits.max_channels:
        raise AudioError(
            "channels",
            f"The audio has {channels} channels; only mono or stereo is accepted "
            f"(stereo is averaged to mono). {limits.accepted()}",
        )
    if not limits.min_rate <= rate <= limits.max_rate:
        raise AudioError(
            "sample_rate",
            f"The audio declares a sample rate of {rate} Hz, outside the accepted "
            f"{limits.min_rate}-{limits.max_rate} Hz. {limits.accepted()}",
        )


def _check_wav(data: bytes, limits: Limits) -> None:
    header = parse_wav_header(data)
    if header is None:
        raise AudioError(
            "undecodable",
            f"The file starts like a WAV but its fmt/data chunks are missing or cut off. {limits.accepted()}",
        )
    _check_shape(header.channels, header.sample_rate, limits)
    if header.data_present == 0:
        raise AudioError("empty", f"The WAV file holds no samples. {limits.accepted()}")
    if header.data_declared is not None and header.data_declared > header.data_present:
        raise AudioError(
            "truncated",
            f"The WAV data chunk declares {header.data_declared} bytes but only "
            f"{header.data_present} are present: the upload looks cut off. Send the complete file. "
            f"{limits.accepted()}",
        )


def _read_bytes(source: bytes | bytearray | memoryview | Path | str, limits: Limits) -> bytes:
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise AudioError("undecodable", f"Cannot read {path.name}: {exc.strerror}.") from None
        if size > limits.max_bytes:
            raise _too_large(size, limits)
        return path.read_bytes()
    data = bytes(source)
    if len(data) > limits.max_bytes:
        raise _too_large(len(data), limits)
    return data


def _too_large(size: int, limits: Limits) -> AudioError:
    return AudioError(
        "too_large",
        f"The upload is {size / 1e6:.1f} MB, over the {limits.max_bytes / 1e6:g} MB limit. "
        f"Send a shorter or compressed (FLAC, OGG, MP3) file. {limits.accepted()}",
    )


def decode(
    source: bytes | bytearray | memoryview | Path | str,
    target_rate: int,
    *,
    content_type: str | None = None,
    limits: Limits | None = None,
) -> DecodedAudio:
    """Validate and decode `source` to mono float32 at `target_rate` ((2, samples) with
    `limits.binaural`), or raise AudioError."""
    limits = limits or Limits.from_env()
    check_content_type(content_type, limits)
    data = _read_bytes(source, limits)
    if not data:
        raise AudioError("empty", f"The upload is empty (0 bytes). {limits.accepted()}")
    fmt = sniff_format(data)
    if fmt is None:
        raise AudioError(
            "undecodable",
            f"The bytes are not a recognised audio file (they start with {data[:8].hex(' ')}). "
            f"{limits.accepted()}",
        )
    if fmt == "WAV":
        _check_wav(data, limits)
    try:
        handle = sf.SoundFile(io.BytesIO(data))
    except Exception as exc:
        # libsndfile's open errors name the BytesIO object, not the problem: keep them for the log.
        log.info("libsndfile could not open %s upload: %s", fmt, exc)
        raise AudioError(
            "undecodable",
            f"The bytes start like {fmt} but could not be decoded: the file is corrupt, cut off "
            f"or not audio. {limits.accepted()}",
        ) from None
    with handle:
        _check_shape(handle.channels, handle.samplerate, limits)
        if handle.frames <= 0:
            raise AudioError("empty", f"The audio holds no samples. {limits.accepted()}")
        duration = handle.frames / handle.samplerate
        if duration > limits.max_seconds:
            raise AudioError(
                "too_long",
                f"The audio is {duration:.1f} s long, over the {limits.max_seconds:g} s limit. "
                f"Split it into shorter files. {limits.accepted()}",
            )
        samples = _read_resampled(handle, target_rate, fmt, limits)
    if samples.size == 0:
        raise AudioError("empty", f"The audio holds no samples. {limits.accepted()}")
    return DecodedAudio(
        samples=samples,
        sample_rate=target_rate,
        source_rate=handle.samplerate,
        source_channels=handle.channels,
        source_format=fmt,
        duration_s=samples.shape[-1] / target_rate,
    )


LEVEL_FRAME_S = 0.02
LEVEL_RANGE_DB = 35.0  # frames this far below the loudest count as pauses, not speech
LEVEL_FLOOR_DB = -70.0


def frame_powers(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mean power of each whole 20 ms frame of mono `x` (a trailing partial frame is left out)."""
    n = max(1, int(round(LEVEL_FRAME_S * sample_rate)))
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    frames = x[: x.size // n * n].reshape(-1, n)
    return (frames ** 2).mean(axis=1)


def active_level_db(powers: np.ndarray) -> float:
    """Active speech level in dBFS from `frame_powers`: the mean power of the frames within
    LEVEL_RANGE_DB of the loudest (and above LEVEL_FLOOR_DB), so pauses do not dilute it. In the
    spirit of ITU-T P.56, simpler; -inf for silence."""
    p = np.asarray(powers, dtype=np.float64)
    if p.size == 0 or p.max() <= 10 ** (LEVEL_FLOOR_DB / 10):
        return float("-inf")
    db = 10 * np.log10(p + 1e-30)
    active = p[db > max(db.max() - LEVEL_RANGE_DB, LEVEL_FLOOR_DB)]
    return float(10 * np.log10(active.mean()))


class LevelMeter:
    """`frame_powers` of a signal that arrives in chunks of any size, for `active_level_db`."""

    def __init__(self, sample_rate: int):
        self.sample_rate, self.frame = sample_rate, max(1, int(round(LEVEL_FRAME_S * sample_rate)))
        self.pending = np.zeros(0, dtype=np.float64)
        self.powers: list[np.ndarray] = []

    def push(self, x: np.ndarray) -> None:
        self.pending = np.concatenate([self.pending, np.asarray(x, dtype=np.float64).reshape(-1)])
        whole = self.pending.size // self.frame * self.frame
        if whole:
            self.powers.append(frame_powers(self.pending[:whole], self.sample_rate))
            self.pending = self.pending[whole:]

    def all_powers(self) -> np.ndarray:
        return np.concatenate(self.powers) if self.powers else np.zeros(0)


class ChunkResampler:
    """Resample a stream chunk by chunk to `target` Hz (soxr keeps its filter state between
    chunks); the identity when the rates match."""

    def __init__(self, rate: int, target: int):
        self.stream = None if rate == target else soxr.ResampleStream(rate, target, 1, dtype="float32", quality="HQ")

    def __call__(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        return x if self.stream is None else self.stream.resample_chunk(x, last=last)


def _read_resampled(handle: sf.SoundFile, target_rate: int, fmt: str, limits: Limits) -> np.ndarray:
    rate = handle.samplerate
    out_channels = 2 if limits.binaural else 1
    stream = None if rate == target_rate else soxr.ResampleStream(rate, target_rate, out_channels,
                                                                   dtype="float32", quality="HQ")
    parts: list[np.ndarray] = []
    done = 0
    while True:
        try:
            block = handle.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
        except Exception as exc:
            log.info("libsndfile failed inside %s data: %s", fmt, exc)
            raise AudioError(
                "undecodable",
                f"The {fmt} data is corrupt after {done / rate:.2f} s. {limits.accepted()}",
            ) from None
        last = block.shape[0] < _BLOCK_FRAMES
        if block.size and not np.isfinite(block).all():
            bad = int(np.argmax(~np.isfinite(block).all(axis=1)))
            raise AudioError(
                "non_finite",
                f"The audio contains NaN or infinite samples (first at {(done + bad) / rate:.3f} s). "
                f"Send finite samples, e.g. floats in [-1, 1] or integer PCM. {limits.accepted()}",
            )
        done += block.shape[0]
        if limits.binaural:
            kept = np.ascontiguousarray(block)  # (frames, 2): soxr takes channels last
        else:
            kept = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
        parts.append(stream.resample_chunk(kept, last=last) if stream else kept.copy())
        if last:
            break
    out = np.concatenate(parts).astype(np.float32, copy=False)
    return np.ascontiguousarray(out.T) if limits.binaural else out


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """16-bit WAV of float audio ((samples,) or (samples, channels)), clipped to [-1, 1]."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(audio, -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def load(
    source: bytes | bytearray | memoryview | Path | str,
    target_rate: int,
    *,
    content_type: str | None = None,
    limits: Limits | None = None,
) -> np.ndarray:
    """Just the samples of `decode`: float32 at `target_rate` (mono unless `limits.binaural`)."""
    return decode(source, target_rate, content_type=content_type, limits=limits).samples


def require_voice(samples: np.ndarray, sample_rate: int, min_speech_s: float = MIN_SPEECH_S) -> VoiceFindings:
    """What `find_voice` found in decoded audio (mono, or (channels, samples)); AudioError
    'no_voice' when there is no voice in it, so that a model that assumes a talker never answers
    for silence, a tone or noise."""
    findings = find_voice(samples, sample_rate, min_speech_s)
    if findings.problem is not None:
        raise AudioError(
            "no_voice",
            f"No voice to work with: {findings.message}. Send a recording of someone speaking, "
            f"with at least {min_speech_s:g} s of speech.",
        )
    return findings
