"""The `.hark` token file: a codec's discrete codes with what is needed to decode them.

Layout (all integers little-endian):

    offset size  field
    0      4     magic b"HARK"
    4      1     version (2; version 1 files, without gain_db, are still read)
    5      1     flags (0; reserved)
    6      4     sample_rate (Hz) of the audio the codes describe
    10     4     frame_rate (Hz, float32), code frames per second
    14     1     groups
    15     1     stages, residual stages per group present in the file (1 = the 1 kbps layer)
    16     2     codebook_size (entries per codebook)
    18     4     frames
    22     4     samples, the audio length to cut the decoded signal to
    26     2     gain_db (int16, hundredths of a dB): the level correction the decoder applies, so
                 that the decoded speech has the input's active level (absent in version 1)
    28     ...   codes, [frames, groups, stages] in that order, each in ceil(log2(codebook_size))
                 bits, most significant bit first, packed back to back; zero bits pad the last byte
    end-4  4     CRC-32 of every byte before it

A reader refuses anything that does not match this exactly: truncation, trailing bytes, a bad
checksum, codes outside the codebook or sizes out of range are `TokenFileError`s, never noise.
"""
from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass

import numpy as np

MAGIC = b"HARK"
VERSION = 2
_HEADERS = {1: struct.Struct("<4sBBIfBBHII"), 2: struct.Struct("<4sBBIfBBHIIh")}
HEADER_BYTES = _HEADERS[VERSION].size  # 28
MAX_GAIN_DB = 20.0  # a correction beyond this is not a level mismatch but a broken encode
MAX_FILE_BYTES = 8 << 20  # a token file larger than this is refused unread (~9 h of 2 kbps tokens)
MAX_FRAMES = 1 << 24


class TokenFileError(ValueError):
    """A token file that cannot be decoded; the message says why."""


@dataclass(frozen=True)
class Tokens:
    codes: np.ndarray  # int [frames, groups, stages]
    sample_rate: int
    frame_rate: float
    codebook_size: int
    samples: int
    gain_db: float = 0.0

    @property
    def frames(self) -> int:
        return int(self.codes.shape[0])

    @property
    def bits_per_code(self) -> int:
        return max(1, math.ceil(math.log2(self.codebook_size)))

    @property
    def bitrate(self) -> float:
        """Bits per second of audio carried by the codes (the header and checksum excluded)."""
        _, groups, stages = self.codes.shape
        return groups * stages * self.bits_per_code * self.frame_rate


def pack_bits(values: np.ndarray, bits: int) -> bytes:
    """Unsigned integers, `bits` each, most significant bit first, back to back."""
    v = np.asarray(values, dtype=np.uint32).reshape(-1)
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint32)
    return np.packbits(((v[:, None] >> shifts) & 1).astype(np.uint8).reshape(-1)).tobytes()


def unpack_bits(data: bytes, bits: int, count: int) -> np.ndarray:
    flat = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[: count * bits].reshape(count, bits)
    weights = (1 << np.arange(bits - 1, -1, -1)).astype(np.uint32)
    return flat.astype(np.uint32) @ weights


def dumps(tokens: Tokens) -> bytes:
    codes = np.asarray(tokens.codes)
    if codes.ndim != 3:
        raise ValueError(f"codes must be [frames, groups, stages], not {codes.shape}")
    frames, groups, stages = codes.shape
    if codes.size and (codes.min() < 0 or codes.max() >= tokens.codebook_size):
        raise ValueError(f"codes must lie in [0, {tokens.codebook_size})")
    if not abs(tokens.gain_db) <= MAX_GAIN_DB:
        raise ValueError(f"gain_db must lie within +-{MAX_GAIN_DB:g} dB, not {tokens.gain_db}")
    header = _HEADERS[VERSION].pack(MAGIC, VERSION, 0, tokens.sample_rate, tokens.frame_rate, groups, stages,
                                    tokens.codebook_size, frames, tokens.samples, round(tokens.gain_db * 100))
    body = header + pack_bits(codes, tokens.bits_per_code)
    return body + struct.pack("<I", zlib.crc32(body))


@dataclass(frozen=True)
class Header:
    """What a token file's header promises, read without unpacking a single code."""

    sample_rate: int
    frame_rate: float
    groups: int
    stages: int
    codebook_size: int
    frames: int
    samples: int
    gain_db: float
    header_bytes: int

    @property
    def duration_s(self) -> float:
        """Seconds of audio the file decodes to: the longer of its frames and its sample count, so
        neither field alone can understate it."""
        return max(self.frames / self.frame_rate, self.samples / self.sample_rate)


def read_header(data: bytes) -> Header:
    """The header of a token file, checked for plausibility; `TokenFileError` when it is not one.

    Servers call this before `loads` so a long file is refused by its declared length, before
    any memory goes into unpacking or decoding it."""
    if len(data) < 5 or data[:4] != MAGIC:
        raise TokenFileError(f"not a .hark token file (starts with {bytes(data[:4])!r}, not {MAGIC!r})")
    version = data[4]
    if version not in _HEADERS:
        raise TokenFileError(f"token file version {version}; this server reads versions {sorted(_HEADERS)}")
    header = _HEADERS[version]
    if len(data) < header.size + 4:
        raise TokenFileError(f"a token file has at least {header.size + 4} bytes; this one has {len(data)}")
    _, _, flags, sample_rate, frame_rate, groups, stages, codebook, frames, samples, *gain = header.unpack_from(data)
    gain_db = gain[0] / 100 if gain else 0.0
    if abs(gain_db) > MAX_GAIN_DB:
        raise TokenFileError(f"implausible gain_db {gain_db:g} (at most +-{MAX_GAIN_DB:g} dB)")
    if flags:
        raise TokenFileError(f"unknown flags {flags:#x}")
    if not (1 <= groups <= 16 and 1 <= stages <= 16 and 2 <= codebook <= 65535):
        raise TokenFileError(f"implausible layout: {groups} groups, {stages} stages, codebook {codebook}")
    if not (8000 <= sample_rate <= 192000 and math.isfinite(frame_rate) and 1.0 <= frame_rate <= sample_rate):
        raise TokenFileError(f"implausible rates: sample_rate {sample_rate}, frame_rate {frame_rate}")
    if frames > MAX_FRAMES or samples > math.ceil(frames * sample_rate / frame_rate):
        raise TokenFileError(f"{samples} samples cannot come from {frames} frames at {frame_rate:g} Hz")
    return Header(sample_rate, float(frame_rate), groups, stages, codebook, frames, samples, gain_db, header.size)


def too_long(seconds: float, limit_s: float) -> str | None:
    """The refusal for codes that decode to more than `limit_s` seconds, else None."""
    if seconds <= limit_s:
        return None
    return (f"The tokens decode to {seconds:.1f} s of audio; the limit is {limit_s:g} s "
            "(HARK_MAX_AUDIO_SECONDS). Split the recording into shorter token files.")


def loads(data: bytes) -> Tokens:
    data = bytes(data)
    h = read_header(data)
    groups, stages, codebook, frames = h.groups, h.stages, h.codebook_size, h.frames
    bits = max(1, math.ceil(math.log2(codebook)))
    count = frames * groups * stages
    payload = math.ceil(count * bits / 8)
    if len(data) != h.header_bytes + payload + 4:
        raise TokenFileError(f"the header promises {payload} bytes of codes, the file holds "
                             f"{len(data) - h.header_bytes - 4}: truncated or padded")
    (crc,) = struct.unpack_from("<I", data, len(data) - 4)
    if crc != zlib.crc32(data[:-4]):
        raise TokenFileError("checksum mismatch: the file is corrupted")
    codes = unpack_bits(data[h.header_bytes:-4], bits, count)
    if codes.size and codes.max() >= codebook:
        raise TokenFileError(f"a code is {codes.max()}, outside the codebook of {codebook}")
    return Tokens(codes.reshape(frames, groups, stages).astype(np.int64), h.sample_rate, h.frame_rate,
                  codebook, h.samples, h.gain_db)
