"""Tests of server/wire.py: the array frame round trips, reads and is read by the viewers' client,
and refuses what it cannot decode."""

from __future__ import annotations

import struct

import numpy as np
import pytest

pytest.importorskip("blosc2")

from server.wire import CHUNK_BYTES, FrameError, pack, unpack  # noqa: E402

ARRAYS = [
    np.random.default_rng(0).random((3, 4, 5)).astype(np.float32),
    np.zeros((7, 9, 11), np.uint8),  # all zeros, a length no multiple of 8: blosc2's special frame
    (np.arange(60) % 3).reshape(3, 4, 5).astype(np.int16),
    np.array([True, False, True]),
    np.arange(6, dtype=">f4").reshape(1, 2, 3),  # big-endian in, little-endian on the wire
]


@pytest.mark.parametrize("arr", ARRAYS, ids=lambda a: f"{a.dtype}{a.shape}")
def test_round_trip_and_interop_with_the_client(arr) -> None:
    for shuffle in (False, True):
        out = unpack(pack(arr, shuffle=shuffle))
        assert out.shape == arr.shape and out.dtype == arr.dtype.newbyteorder("<")
        np.testing.assert_array_equal(out, arr)
    serialization = pytest.importorskip("nnInteractive.inference.remote.serialization")
    np.testing.assert_array_equal(serialization.unpack_array(pack(arr)), arr)  # the client reads ours
    np.testing.assert_array_equal(unpack(serialization.pack_array(arr)), arr)  # we read the client's


def test_header_layout() -> None:
    frame = pack(np.zeros((2, 3), np.uint16))
    assert frame[:8] == b"NNIA" + bytes([1, 1, 2, 6])  # magic, version, zstd, ndim, len("uint16")
    assert frame[8:14] == b"uint16" and struct.unpack_from("<2qI", frame, 14) == (2, 3, 1)
    assert unpack(pack(np.zeros((0, 3), np.uint8))).shape == (0, 3)
    assert CHUNK_BYTES == 1 << 30


def test_bad_frames_are_refused() -> None:
    good = pack(np.arange(100, dtype=np.int32))
    with pytest.raises(FrameError, match="header"):
        unpack(b"NN")
    with pytest.raises(FrameError, match="magic"):
        unpack(b"XXXX" + good[4:])
    with pytest.raises(FrameError, match="truncated"):
        unpack(good[:-10])
    with pytest.raises(FrameError, match="limit"):
        unpack(good, max_bytes=399)
    assert unpack(good, max_bytes=400).sum() == 4950
    huge = bytearray(good)
    struct.pack_into("<q", huge, 8 + 5, 1 << 40)  # a claimed shape far beyond the payload
    with pytest.raises(FrameError, match="limit"):
        unpack(bytes(huge), max_bytes=1 << 30)
