"""The binary array frame of nnInteractive's remote protocol, written from its description.

Viewers (napari-nninteractive, SlicerNNInteractive through ``nninteractive-client``) send the
image, an initial segmentation and masks in this frame, and read the changed region of a
prediction from it. Layout, all integers little-endian::

    b"NNIA" | version u8 (1) | codec u8 (1 zstd, 2 lz4) | ndim u8 | len(dtype name) u8
    | dtype name (ascii, e.g. "float32") | shape: ndim x i64
    | number of chunks u32 | per chunk: raw bytes u64, compressed bytes u64, blosc2 chunk

A chunk holds at most 1 GiB of raw bytes: blosc2 takes at most 2 GiB - 1 per call. Each chunk
is compressed with the array's item size as blosc2's type size, which both makes the shuffle
filter useful and avoids blosc2's unreadable "all zeros" frame for lengths that are not a
multiple of the type size.
"""

from __future__ import annotations

import struct

import blosc2
import numpy as np

MAGIC = b"NNIA"
VERSION = 1
CHUNK_BYTES = 1 << 30
_CODECS = {1: blosc2.Codec.ZSTD, 2: blosc2.Codec.LZ4}
_HEAD = struct.Struct("<4sBBBB")
_SIZES = struct.Struct("<QQ")


class FrameError(ValueError):
    """A frame that cannot be decoded (or would not fit the server's limit)."""


def pack(arr: np.ndarray, shuffle: bool = False, clevel: int = 3) -> bytes:
    """One array as a frame (zstd). shuffle: byte-shuffle multi-byte data such as images;
    label maps compress best without it."""
    arr = np.ascontiguousarray(arr)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    name = arr.dtype.name.encode("ascii")
    raw = arr.reshape(-1).view(np.uint8)
    filters = [blosc2.Filter.SHUFFLE if shuffle else blosc2.Filter.NOFILTER]
    parts = [
        _HEAD.pack(MAGIC, VERSION, 1, arr.ndim, len(name)),
        name,
        struct.pack(f"<{arr.ndim}q", *arr.shape),
    ]
    chunks = range(0, raw.size, CHUNK_BYTES)
    parts.append(struct.pack("<I", len(chunks)))
    for start in chunks:
        piece = raw[start : start + CHUNK_BYTES]
        packed = blosc2.compress2(
            piece, typesize=arr.dtype.itemsize, codec=blosc2.Codec.ZSTD, clevel=clevel, filters=filters
        )
        parts += [_SIZES.pack(piece.size, len(packed)), packed]
    return b"".join(parts)


def unpack(buf: bytes, max_bytes: int | None = None) -> np.ndarray:
    """The array of a frame. Raises FrameError when the frame is malformed or its array would
    need more than max_bytes (a claimed shape is checked before anything is allocated)."""
    view = memoryview(buf)
    try:
        magic, version, codec, ndim, name_len = _HEAD.unpack_from(view, 0)
        offset = _HEAD.size
        dtype = np.dtype(bytes(view[offset : offset + name_len]).decode("ascii"))
        offset += name_len
        shape = struct.unpack_from(f"<{ndim}q", view, offset)
        offset += 8 * ndim
        (n_chunks,) = struct.unpack_from("<I", view, offset)
        offset += 4
    except (struct.error, TypeError, UnicodeDecodeError) as exc:
        raise FrameError(f"malformed array frame header: {exc}") from exc
    if magic != MAGIC or version != VERSION or codec not in _CODECS:
        raise FrameError(
            f"not an array frame of version {VERSION} (magic {magic!r}, v{version}, codec {codec})"
        )
    if dtype.hasobject or any(s < 0 for s in shape):
        raise FrameError(f"array frame: unusable dtype {dtype} or shape {shape}")
    total = int(np.prod(shape, dtype=np.uint64)) * dtype.itemsize
    if max_bytes is not None and total > max_bytes:
        raise FrameError(f"array frame of {total} bytes exceeds the limit of {max_bytes} bytes")
    out = np.empty(total // dtype.itemsize if dtype.itemsize else 0, dtype=dtype)
    dst = out.view(np.uint8)
    written = 0
    for _ in range(n_chunks):
        try:
            raw_len, packed_len = _SIZES.unpack_from(view, offset)
        except struct.error as exc:
            raise FrameError("array frame truncated") from exc
        offset += _SIZES.size
        chunk = view[offset : offset + packed_len]
        if len(chunk) != packed_len or written + raw_len > total:
            raise FrameError("array frame truncated or larger than its shape")
        if blosc2.get_cbuffer_sizes(chunk)[0] != raw_len:
            raise FrameError("array frame: a chunk's size disagrees with its header")
        blosc2.decompress2(chunk, dst=dst[written : written + raw_len])
        written += raw_len
        offset += packed_len
    if written != total:
        raise FrameError(f"array frame holds {written} bytes, its shape needs {total}")
    return out.reshape(shape)
