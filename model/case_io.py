"""Reading and writing challenge case files (challenge_spec.md §1-2, §8).

A case file is an ``.npz`` with ``imgs`` (z,y,x), ``spacing`` (stored x,y,z), optional ``boxes``,
and at click steps ``clicks``, ``clicks_order`` and ``prev_pred``. ``gts`` is never read.

Everything that can vary between the organisers' files is accepted:

* ``imgs`` of any numeric dtype (kept as stored: no copy, no float conversion, so a
  1456x590x556 volume costs its stored size and no more);
* ``spacing`` as any numeric array of length 3 (x,y,z); missing or bad entries fall back to 1.0;
* ``boxes`` / ``clicks`` as object arrays (or lists) of dicts with ``np.int64`` or int values
  (boxes come out as :class:`model.boxes.Box`);
* ``clicks_order`` as a ``<U2`` array (N, t), an object array with ``None`` entries, or ragged lists;
* ``prev_pred`` of any integer dtype (uint8, uint16 ...), returned as uint8.

What cannot be used raises :class:`CaseError`, whose message names the file and the key.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model.boxes import BOX_KEYS, Box

log = logging.getLogger(__name__)

# axis of the volume each box key indexes (z=0, y=1, x=2)
_BOX_AXIS = {
    "z_min": 0,
    "z_max": 0,
    "z_mid": 0,
    "z_mid_x_min": 2,
    "z_mid_x_max": 2,
    "z_mid_y_min": 1,
    "z_mid_y_max": 1,
}
_ZIP_MAGIC = b"PK\x03\x04"
_FINITE_CHUNK = 1 << 24  # elements per slab when checking float volumes for NaN/inf


class CaseError(ValueError):
    """A case file that cannot be used. The message names the case file and the offending key."""

    def __init__(
        self,
        reason: str,
        *,
        file: str | os.PathLike[str] | None = None,
        key: str | None = None,
        shape: tuple[int, int, int] | None = None,
    ) -> None:
        parts = []
        if file is not None:
            parts.append(Path(file).name)
        if key is not None:
            parts.append(f"key '{key}'")
        super().__init__(": ".join([*parts, reason]))
        self.file = None if file is None else Path(file).name
        self.key = key
        self.reason = reason
        # shape of imgs when it could be read (3-D), so a caller can still write a fallback output
        self.shape = shape


@dataclass(frozen=True, eq=False)
class Case:
    """One validated case. Arrays are (z,y,x); coordinates are voxel indices in that order."""

    name: str
    imgs: np.ndarray
    spacing: tuple[float, float, float]
    boxes: Sequence[Box | None] | None  # None entries: objects without a box (a session's)
    clicks: list[dict[str, list[tuple[int, int, int]]]] | None
    clicks_order: list[list[str | None]] | None
    prev_pred: np.ndarray | None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.imgs.shape)  # type: ignore[return-value]

    @property
    def n_classes(self) -> int:
        if self.boxes:
            return len(self.boxes)
        return len(self.clicks) if self.clicks else 0

    @property
    def step(self) -> str:
        """``"box"`` at the box step, else ``"click t"`` (t = clicks so far per class, ``None`` included)."""
        if not self.clicks:
            return "box"
        if self.clicks_order:
            t = len(self.clicks_order[0])
        else:
            t = max(len(c["fg"]) + len(c["bg"]) for c in self.clicks)
        return f"click {t}"


# --------------------------------------------------------------------------------------------- read


def read_case(path: Path) -> Case:
    """Read and validate one case file. Raises :class:`CaseError` when it cannot be used."""
    path = Path(path)
    name = path.name[:-4] if path.name.endswith(".npz") else path.name

    def fail(key: str, reason: str, shape: tuple[int, int, int] | None = None) -> CaseError:
        return CaseError(reason, file=path, key=key, shape=shape)

    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise fail("<file>", f"cannot open: {exc}") from exc
    if magic != _ZIP_MAGIC:
        raise fail("<file>", "not an .npz archive (truncated, empty or corrupt file)")

    try:
        npz = np.load(path, allow_pickle=True)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise fail("<file>", f"cannot open archive: {exc}") from exc

    with npz:
        keys = set(npz.files)

        def get(key: str) -> Any:
            if key not in keys:
                return None
            try:
                return npz[key]
            except Exception as exc:  # zlib/zip/pickle errors of a truncated or corrupt member
                raise fail(key, f"cannot read ({type(exc).__name__}: {exc})") from exc

        if "imgs" not in keys:
            raise fail("imgs", f"missing (keys present: {sorted(keys)})")
        imgs = _check_imgs(get("imgs"), fail)
        shape: tuple[int, int, int] = tuple(int(s) for s in imgs.shape)  # type: ignore[assignment]

        def fail_shaped(key: str, reason: str) -> CaseError:
            return fail(key, reason, shape)

        spacing = _parse_spacing(get("spacing"), path.name)
        boxes = _parse_boxes(get("boxes"), shape, path.name, fail_shaped)
        clicks = _parse_clicks(get("clicks"), shape, path.name, fail_shaped)
        clicks_order = _parse_clicks_order(get("clicks_order"), fail_shaped)
        prev_pred = _parse_prev_pred(get("prev_pred"), shape, path.name, fail_shaped)

    if clicks is None and clicks_order is not None:
        log.warning("%s: 'clicks_order' without 'clicks': ignored", path.name)
        clicks_order = None
    if boxes is None and clicks is None:
        raise fail_shaped("boxes", "no prompts: neither 'boxes' nor 'clicks' present")
    if boxes is not None and clicks is not None and len(boxes) != len(clicks):
        raise fail_shaped(
            "clicks", f"inconsistent lengths: {len(boxes)} boxes but {len(clicks)} click entries"
        )
    if clicks is not None and clicks_order is not None:
        if len(clicks_order) != len(clicks):
            raise fail_shaped(
                "clicks_order",
                f"inconsistent lengths: {len(clicks_order)} rows but {len(clicks)} click entries",
            )
        if len({len(row) for row in clicks_order}) > 1:
            log.warning("%s: 'clicks_order' rows have different lengths", path.name)

    return Case(
        name=name,
        imgs=imgs,
        spacing=spacing,
        boxes=boxes,
        clicks=clicks,
        clicks_order=clicks_order,
        prev_pred=prev_pred,
    )


def _check_imgs(imgs: Any, fail) -> np.ndarray:
    if not isinstance(imgs, np.ndarray):
        raise fail("imgs", f"not an array ({type(imgs).__name__})")
    if not (np.issubdtype(imgs.dtype, np.number) or imgs.dtype == np.bool_):
        raise fail("imgs", f"dtype {imgs.dtype} is not numeric")
    if imgs.ndim != 3:
        raise fail("imgs", f"expected 3 dimensions (z,y,x), got shape {imgs.shape}")
    shape = tuple(int(s) for s in imgs.shape)
    if min(shape) == 0:
        raise fail("imgs", f"empty volume, shape {shape}")
    if np.iscomplexobj(imgs):
        raise fail("imgs", "complex values", shape)
    if np.issubdtype(imgs.dtype, np.floating) and not _all_finite(imgs):
        raise fail("imgs", "contains NaN or inf", shape)
    return imgs


def _all_finite(a: np.ndarray) -> bool:
    """np.isfinite(a).all() in slabs, so a large float volume never needs a full-size bool copy."""
    flat = a.reshape(-1) if a.flags.c_contiguous else None
    if flat is None:
        return all(bool(np.isfinite(a[i]).all()) for i in range(a.shape[0]))
    return all(
        bool(np.isfinite(flat[i : i + _FINITE_CHUNK]).all()) for i in range(0, flat.size, _FINITE_CHUNK)
    )


def _parse_spacing(raw: Any, fname: str) -> tuple[float, float, float]:
    """Stored (x,y,z) -> physical (z,y,x) in mm; bad or missing values fall back to 1.0 with a warning."""
    if raw is None:
        log.warning("%s: 'spacing' missing: using 1.0 mm", fname)
        return (1.0, 1.0, 1.0)
    try:
        values = np.asarray(raw, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        log.warning("%s: 'spacing' unreadable (%r): using 1.0 mm", fname, raw)
        return (1.0, 1.0, 1.0)
    if values.size != 3:
        log.warning("%s: 'spacing' has %d values, expected 3: using 1.0 mm", fname, values.size)
        return (1.0, 1.0, 1.0)
    out = []
    for v in values[::-1]:
        if math.isfinite(v) and v > 0:
            out.append(float(v))
        else:
            log.warning("%s: 'spacing' value %r is not a positive number: using 1.0 mm", fname, v)
            out.append(1.0)
    return (out[0], out[1], out[2])


def _as_list(raw: Any, key: str, fail) -> list[Any] | None:
    """Object array / list / 0-d array holding a list -> Python list; None stays None."""
    if raw is None:
        return None
    if isinstance(raw, np.ndarray):
        if raw.dtype == object and raw.ndim == 0:
            raw = raw.item()
        elif raw.ndim == 0:
            raise fail(key, f"expected a sequence, got a scalar of dtype {raw.dtype}")
        else:
            return list(raw)
    if isinstance(raw, dict):
        return [raw]
    if isinstance(raw, (list, tuple)):
        return list(raw)
    raise fail(key, f"expected a list, got {type(raw).__name__}")


def _to_int(value: Any, key: str, fail) -> int:
    try:
        f = float(value)
    except (TypeError, ValueError) as exc:
        raise fail(key, f"not a number: {value!r}") from exc
    if not math.isfinite(f) or f != int(f):
        raise fail(key, f"not an integer: {value!r}")
    return int(f)


def _parse_boxes(raw: Any, shape: tuple[int, int, int], fname: str, fail) -> list[Box] | None:
    items = _as_list(raw, "boxes", fail)
    if items is None:
        return None
    if not items:
        log.warning("%s: 'boxes' is empty: ignored", fname)
        return None
    boxes = []
    for k, item in enumerate(items):
        if not isinstance(item, dict):
            raise fail("boxes", f"entry {k} is {type(item).__name__}, expected a dict")
        missing = [key for key in BOX_KEYS if key not in item]
        if missing:
            raise fail("boxes", f"entry {k} lacks {missing}")
        box = {key: _to_int(item[key], f"boxes[{k}].{key}", fail) for key in BOX_KEYS}
        clipped = {key: min(max(v, 0), shape[_BOX_AXIS[key]] - 1) for key, v in box.items()}
        if clipped != box:
            log.warning("%s: box %d lies partly outside the volume %s: clipped", fname, k, shape)
        for lo, hi in (("z_min", "z_max"), ("z_mid_x_min", "z_mid_x_max"), ("z_mid_y_min", "z_mid_y_max")):
            if clipped[lo] > clipped[hi]:
                log.warning("%s: box %d has %s > %s: swapped", fname, k, lo, hi)
                clipped[lo], clipped[hi] = clipped[hi], clipped[lo]
        if not clipped["z_min"] <= clipped["z_mid"] <= clipped["z_max"]:
            log.warning("%s: box %d has z_mid outside [z_min, z_max]", fname, k)
        boxes.append(Box.from_challenge(clipped))
    return boxes


def _parse_points(raw: Any, key: str, fail) -> list[tuple[int, int, int]]:
    if raw is None:
        return []
    try:
        arr = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise fail("clicks", f"{key}: not a list of (z,y,x) points") from exc
    if arr.size == 0:
        return []
    if arr.ndim == 1 and arr.size == 3:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise fail("clicks", f"{key}: expected points of 3 coordinates, got shape {arr.shape}")
    if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
        raise fail("clicks", f"{key}: coordinates must be finite integers")
    return [(int(p[0]), int(p[1]), int(p[2])) for p in arr]


def _parse_clicks(
    raw: Any, shape: tuple[int, int, int], fname: str, fail
) -> list[dict[str, list[tuple[int, int, int]]]] | None:
    items = _as_list(raw, "clicks", fail)
    if items is None:
        return None
    if not items:
        log.warning("%s: 'clicks' is empty: ignored", fname)
        return None
    clicks = []
    for k, item in enumerate(items):
        if not isinstance(item, dict):
            raise fail("clicks", f"entry {k} is {type(item).__name__}, expected a dict with 'fg'/'bg'")
        unknown = set(item) - {"fg", "bg"}
        if unknown:
            log.warning("%s: clicks[%d] has unknown keys %s: ignored", fname, k, sorted(unknown))
        entry: dict[str, list[tuple[int, int, int]]] = {}
        for kind in ("fg", "bg"):
            points = _parse_points(item.get(kind), f"entry {k} '{kind}'", fail)
            inside = [p for p in points if all(0 <= c < s for c, s in zip(p, shape, strict=True))]
            if len(inside) != len(points):
                dropped = [p for p in points if p not in inside]
                log.warning(
                    "%s: clicks[%d] '%s': %d click(s) outside the volume %s dropped: %s",
                    fname,
                    k,
                    kind,
                    len(dropped),
                    shape,
                    dropped,
                )
            entry[kind] = inside
        clicks.append(entry)
    return clicks


def _parse_clicks_order(raw: Any, fail) -> list[list[str | None]] | None:
    if raw is None:
        return None
    if isinstance(raw, np.ndarray) and raw.ndim == 2:
        rows: Iterable[Any] = list(raw)
    else:
        rows = _as_list(raw, "clicks_order", fail) or []
    out: list[list[str | None]] = []
    for k, row in enumerate(rows):
        if isinstance(row, np.ndarray):
            row = row.tolist()
        if isinstance(row, (str, bytes)) or row is None:
            row = [row]
        entries: list[str | None] = []
        for v in row:
            if isinstance(v, bytes):
                v = v.decode()
            if v is None or (isinstance(v, float) and math.isnan(v)):
                entries.append(None)
            elif isinstance(v, str) and v in ("fg", "bg"):
                entries.append(str(v))
            elif isinstance(v, str) and v in ("", "None"):
                entries.append(None)
            else:
                raise fail("clicks_order", f"row {k}: entry {v!r} is not 'fg', 'bg' or None")
        out.append(entries)
    return out


def _parse_prev_pred(raw: Any, shape: tuple[int, int, int], fname: str, fail) -> np.ndarray | None:
    if raw is None:
        return None
    if not isinstance(raw, np.ndarray):
        raise fail("prev_pred", f"not an array ({type(raw).__name__})")
    if raw.shape != shape:
        raise fail("prev_pred", f"shape {raw.shape} differs from imgs {shape}")
    if raw.dtype == np.uint8:
        return raw
    if raw.dtype == np.bool_:
        return raw.view(np.uint8)
    if np.issubdtype(raw.dtype, np.floating):
        if not _all_finite(raw):
            raise fail("prev_pred", "contains NaN or inf")
        if (raw != np.round(raw)).any():
            raise fail("prev_pred", "float values that are not integral labels")
    elif not np.issubdtype(raw.dtype, np.integer):
        raise fail("prev_pred", f"dtype {raw.dtype} is not an integer label map")
    lo, hi = raw.min(), raw.max()
    if lo < 0 or hi > 255:
        # the evaluator casts to uint8 itself; values beyond it cannot be labels of ours
        log.warning("%s: 'prev_pred' values in [%s, %s] outside 0..255: those set to 0", fname, lo, hi)
        raw = np.where((raw < 0) | (raw > 255), 0, raw)
    return raw.astype(np.uint8)


# -------------------------------------------------------------------------------------------- write


def write_segs(path: Path, segs: np.ndarray) -> None:
    """Write ``segs`` (uint8) atomically to ``path``: temporary file in the same folder, then rename.

    Uncompressed ``np.savez`` (the evaluator accepts it; much faster than compressed). The file
    always replaces an earlier one, so a later step never leaves a stale output behind.
    """
    path = Path(path)
    segs = np.asarray(segs)
    if segs.ndim != 3:
        raise ValueError(f"{path.name}: segs must be 3-D (z,y,x), got shape {segs.shape}")
    if segs.dtype != np.uint8:
        if segs.dtype == np.bool_:
            segs = segs.view(np.uint8)
        elif np.issubdtype(segs.dtype, np.integer) and segs.size and (segs.min() < 0 or segs.max() > 255):
            raise ValueError(f"{path.name}: segs labels outside 0..255")
        elif not np.issubdtype(segs.dtype, np.integer):
            raise ValueError(f"{path.name}: segs dtype {segs.dtype} is not an integer label map")
        else:
            segs = segs.astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, segs=segs)
        # mkstemp creates 0600; the evaluator may read the file as another user
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
