"""The .hark token file: round trips exactly, and refuses every malformed variant."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from core.codec_tokens import (HEADER_BYTES, TokenFileError, Tokens, dumps, loads, pack_bits, read_header,
                                   too_long, unpack_bits)


def tokens(frames: int = 50, groups: int = 2, stages: int = 2, codebook: int = 1024, seed: int = 0) -> Tokens:
    codes = np.random.default_rng(seed).integers(0, codebook, size=(frames, groups, stages))
    return Tokens(codes, 16000, 50.0, codebook, max(0, frames * 320 - 17))


@pytest.mark.parametrize("bits", [1, 3, 10, 16])
def test_bit_packing_round_trips(bits: int) -> None:
    v = np.random.default_rng(bits).integers(0, 1 << bits, size=37)
    packed = pack_bits(v, bits)
    assert len(packed) == -(-37 * bits // 8)
    assert np.array_equal(unpack_bits(packed, bits, 37), v)


def test_ten_bit_codes_are_packed_msb_first() -> None:
    assert pack_bits(np.array([1023, 0, 1]), 10) == bytes([0xFF, 0xC0, 0x00, 0x04])


@pytest.mark.parametrize("frames, groups, stages, codebook", [(50, 2, 2, 1024), (7, 2, 1, 1024), (0, 2, 2, 1024),
                                                             (33, 3, 4, 300)])
def test_round_trip_is_exact(frames: int, groups: int, stages: int, codebook: int) -> None:
    t = tokens(frames, groups, stages, codebook)
    data = dumps(t)
    assert len(data) == HEADER_BYTES + -(-frames * groups * stages * t.bits_per_code // 8) + 4
    back = loads(data)
    assert np.array_equal(back.codes, t.codes) and back.codes.shape == (frames, groups, stages)
    assert (back.sample_rate, back.frame_rate, back.codebook_size, back.samples) == (16000, 50.0, codebook, t.samples)


def test_bitrates_of_the_two_layers() -> None:
    assert tokens(stages=2).bitrate == 2000.0 and tokens(stages=1).bitrate == 1000.0


def _refresh_crc(data: bytes) -> bytes:
    return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))


def _edit(data: bytes, offset: int, fmt: str, value) -> bytes:
    b = bytearray(data)
    struct.pack_into(fmt, b, offset, value)
    return _refresh_crc(bytes(b))


GOOD = dumps(tokens())
MALFORMED = {
    "empty": b"",
    "short": GOOD[:20],
    "magic": _edit(GOOD, 0, "<4s", b"RIFF"),
    "version": _edit(GOOD, 4, "<B", 3),
    "gain_too_large": _edit(GOOD, 26, "<h", 2500),
    "flags": _edit(GOOD, 5, "<B", 1),
    "groups0": _edit(GOOD, 14, "<B", 0),
    "codebook1": _edit(GOOD, 16, "<H", 1),
    "rate": _edit(GOOD, 6, "<I", 100),
    "frame_rate_nan": _edit(GOOD, 10, "<f", float("nan")),
    "samples_too_many": _edit(GOOD, 22, "<I", 10 ** 9),
    "truncated": _refresh_crc(GOOD[:-10] + GOOD[-4:]),
    "trailing": _refresh_crc(GOOD[:-4] + b"\x00" + GOOD[-4:]),
    "frames_lie": _edit(GOOD, 18, "<I", 51),
    "crc": GOOD[:-1] + bytes([GOOD[-1] ^ 1]),
    "bitflip": GOOD[:40] + bytes([GOOD[40] ^ 0x10]) + GOOD[41:],
    # A header that shrinks the codebook (same 10 bits per code) below codes already written.
    "code_outside_codebook": _edit(dumps(Tokens(np.full((4, 2, 2), 999), 16000, 50.0, 1000, 1000)), 16, "<H", 600),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_files_are_refused(name: str) -> None:
    with pytest.raises(TokenFileError):
        loads(MALFORMED[name])


def test_header_gives_the_duration_without_unpacking() -> None:
    data = dumps(tokens(frames=100))
    header = read_header(data[:HEADER_BYTES + 4])  # the codes are not needed
    assert header.frames == 100 and header.duration_s == pytest.approx(100 / 50)
    assert too_long(header.duration_s, 2.0) is None
    message = too_long(header.duration_s, 1.5)
    assert message is not None and "1.5 s" in message and "HARK_MAX_AUDIO_SECONDS" in message


def test_gain_round_trips_and_version_1_files_still_decode() -> None:
    t = Tokens(np.arange(24).reshape(4, 3, 2) % 7, 16000, 50.0, 1024, 1280, gain_db=1.73)
    back = loads(dumps(t))
    assert back.gain_db == pytest.approx(1.73) and np.array_equal(back.codes, t.codes)
    # a version 1 file: the same layout without the two gain bytes, read with no correction
    v2 = dumps(t)
    v1 = _refresh_crc(v2[:4] + b"\x01" + v2[5:26] + v2[28:])
    old = loads(v1)
    assert old.gain_db == 0.0 and np.array_equal(old.codes, t.codes) and old.samples == 1280
    with pytest.raises(ValueError):
        dumps(Tokens(t.codes, 16000, 50.0, 1024, 1280, gain_db=40.0))
