"""Reading and writing challenge case files (challenge_spec.md §1-2, §8).

A case file is an ``.npz`` with ``imgs`` (z,y,x), ``spacing`` (stored x,y,z), optional ``boxes``,
and at click steps ``clicks``, ``clicks_order`` and ``prev_pred``. ``gts`` is never read.

Everything that can vary between the organisers' files is accepted:

* ``imgs`` of any numeric dtype and byte order (kept as stored when native: no copy, no float
  conversion, so a 1456x590x556 volume costs its stored size and no more; a big-endian volume
  is converted to native order, which torch needs);
* ``spacing`` as any numeric array of length 3 (x,y,z); values that are not positive numbers
  become 1.0, the others are clamped to :data:`SPACING_RANGE_MM`;
* ``boxes`` / ``clicks`` as object arrays (or lists) of dicts with ``np.int64``, int or float values
  (boxes come out as :class:`model.boxes.Box`);
* ``clicks_order`` as a ``<U2`` array (N, t), an object array with ``None`` entries, or ragged lists;
* ``prev_pred`` of any integer dtype (uint8, uint16 ...), returned as uint8.

Bad input never costs more than it must (issue 10):

* ``imgs`` that cannot be used raise :class:`CaseError` (message naming the file and the key);
* an optional key that cannot be used (unreadable member, wrong shape, bad entry, inconsistent
  with the other keys) is ignored with a warning naming the case and the key, and listed in
  :attr:`Case.ignored`; the rest of the case is still used;
* single prompts that cannot be used are dropped with a warning: a box wholly outside the volume
  (its class keeps its place, ``boxes[k]`` becomes ``None``), a click outside the volume or with
  coordinates that are not whole voxel indices (within :data:`CLICK_ROUND_TOL`);
* when no box and no click is left, :class:`CaseError` is raised with the image shape, so the
  caller can still write a fallback (:func:`read_prev_pred`, else zeros).
"""

from __future__ import annotations

import logging
import math
import os
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from model.atomic import replacing
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
_BOX_RANGES = (("z_min", "z_max"), ("z_mid_y_min", "z_mid_y_max"), ("z_mid_x_min", "z_mid_x_max"))
#: Voxel spacings (mm) outside this range are clamped into it: no scanner is that coarse or that
#: fine, and a value like 1e308 would overflow the ROI arithmetic (millimetres x voxels).
SPACING_RANGE_MM = (1e-3, 1e3)
#: A float click coordinate this close to a whole number is that voxel index (rounded); farther
#: off it is not a voxel index at all, and the click is dropped.
CLICK_ROUND_TOL = 0.01
_ZIP_MAGIC = b"PK\x03\x04"
_FINITE_CHUNK = 1 << 24  # elements per slab when checking float volumes for NaN/inf

Point = tuple[int, int, int]
_T = TypeVar("_T")


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
    """One validated case. Arrays are (z,y,x); coordinates are voxel indices in that order.

    ``boxes[k]`` is ``None`` for a class whose box lay wholly outside the volume (or, in a case
    built by a session, for an object without a box). ``ignored``
    names the keys that were present but could not be used (each was warned about).
    """

    name: str
    imgs: np.ndarray
    spacing: tuple[float, float, float]
    boxes: Sequence[Box | None] | None
    clicks: list[dict[str, list[Point]]] | None
    clicks_order: list[list[str | None]] | None
    prev_pred: np.ndarray | None
    ignored: tuple[str, ...] = ()

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
        """``"box"`` at the box step, else ``"click<t>"`` (t = clicks so far per class, ``None`` included):
        the step names of the local evaluation's logs and plots."""
        if not self.clicks:
            return "box"
        if self.clicks_order:
            t = len(self.clicks_order[0])
        else:
            t = max(len(c["fg"]) + len(c["bg"]) for c in self.clicks)
        return f"click{t}"


# --------------------------------------------------------------------------------------------- read


def read_case(path: Path) -> Case:
    """Read and validate one case file.

    Raises :class:`CaseError` when ``imgs`` cannot be used or no prompt is left; an optional key
    that cannot be used is ignored (warned, listed in :attr:`Case.ignored`).
    """
    path = Path(path)
    name = path.name[:-4] if path.name.endswith(".npz") else path.name
    with _open_npz(path) as npz:
        if "imgs" not in npz.files:
            raise CaseError(f"missing (keys present: {sorted(npz.files)})", file=path, key="imgs")
        imgs = _check_imgs(_member(npz, "imgs", _failer(path)), _failer(path))
        shape: tuple[int, int, int] = tuple(int(s) for s in imgs.shape)  # type: ignore[assignment]
        keys = _OptionalKeys(npz, path, shape)
        spacing = keys.read("spacing", lambda raw: _parse_spacing(raw, path.name, keys.fail))
        boxes = keys.read("boxes", lambda raw: _parse_boxes(raw, shape, path.name, keys.fail))
        clicks = keys.read("clicks", lambda raw: _parse_clicks(raw, shape, path.name, keys.fail))
        clicks_order = keys.read("clicks_order", lambda raw: _parse_clicks_order(raw, keys.fail))
        prev_pred = keys.read("prev_pred", lambda raw: _parse_prev_pred(raw, shape, path.name, keys.fail))
    if spacing is None:
        if "spacing" not in keys.present:
            log.warning("%s: 'spacing' missing: using 1.0 mm", path.name)
        spacing = (1.0, 1.0, 1.0)
    clicks, clicks_order = _consistent_clicks(keys, boxes, clicks, clicks_order)
    if not _has_prompt(boxes, clicks):
        details = "; ".join(f"'{k}' {why}" for k, why in keys.ignored.items())
        raise keys.fail(
            "boxes",
            "no prompts: neither 'boxes' nor 'clicks' holds a usable prompt"
            + (f" (ignored: {details})" if details else ""),
        )
    return Case(
        name=name,
        imgs=imgs,
        spacing=spacing,
        boxes=boxes,
        clicks=clicks,
        clicks_order=clicks_order,
        prev_pred=prev_pred,
        ignored=tuple(keys.ignored),
    )


def read_prev_pred(path: Path, shape: tuple[int, int, int]) -> np.ndarray | None:
    """The case's ``prev_pred`` as uint8 when it can still be read and fits ``shape``, else None.

    For a case that cannot be used: the previous step's answer is a better fallback than zeros,
    which the evaluator would feed back as the next step's ``prev_pred``.
    """
    try:
        with _open_npz(path, allow_pickle=False) as npz:  # prev_pred is a plain array
            if "prev_pred" not in npz.files:
                return None
            fail = _failer(path, shape)
            return _parse_prev_pred(_member(npz, "prev_pred", fail), shape, Path(path).name, fail)
    except CaseError:
        return None


def _failer(path: Path, shape: tuple[int, int, int] | None = None) -> Callable[..., CaseError]:
    """fail(key, reason[, shape]) -> CaseError naming the file; shape given or bound here."""

    def fail(key: str, reason: str, shape_: tuple[int, int, int] | None = None) -> CaseError:
        return CaseError(reason, file=path, key=key, shape=shape_ or shape)

    return fail


def _open_npz(path: Path, allow_pickle: bool = True) -> np.lib.npyio.NpzFile:
    """The archive, after checking it is a zip at all (np.load would try to unpickle anything else)."""
    fail = _failer(path)
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise fail("<file>", f"cannot open: {exc}") from exc
    if magic != _ZIP_MAGIC:
        raise fail("<file>", "not an .npz archive (truncated, empty or corrupt file)")
    try:
        return np.load(path, allow_pickle=allow_pickle)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise fail("<file>", f"cannot open archive: {exc}") from exc


def _member(npz: np.lib.npyio.NpzFile, key: str, fail: Callable[[str, str], CaseError]) -> Any:
    try:
        return npz[key]
    except Exception as exc:  # zlib/zip/pickle errors of a truncated or corrupt member
        raise fail(key, f"cannot read ({type(exc).__name__}: {exc})") from exc


class _OptionalKeys:
    """Reads the optional keys of an open case: one that cannot be used is ignored, with a warning
    naming the case and the key, so one bad key never costs the rest of the case."""

    def __init__(self, npz: np.lib.npyio.NpzFile, path: Path, shape: tuple[int, int, int]) -> None:
        self.npz, self.path = npz, path
        self.present = set(npz.files)
        self.ignored: dict[str, str] = {}
        self.fail = _failer(path, shape)

    def read(self, key: str, parse: Callable[[Any], _T]) -> _T | None:
        """parse(member), or None when the key is absent or cannot be used."""
        if key not in self.present:
            return None
        try:
            return parse(_member(self.npz, key, self.fail))
        except CaseError as exc:
            where = "" if exc.key == key else f"{exc.key}: "
            self.ignore(key, where + exc.reason)
            return None

    def ignore(self, key: str, reason: str) -> None:
        log.warning("%s: key '%s' %s: ignored", self.path.name, key, reason)
        self.ignored[key] = reason


def _consistent_clicks(
    keys: _OptionalKeys,
    boxes: Sequence[Box | None] | None,
    clicks: list[dict[str, list[Point]]] | None,
    clicks_order: list[list[str | None]] | None,
) -> tuple[list[dict[str, list[Point]]] | None, list[list[str | None]] | None]:
    """Drop click keys that contradict the others: which entry belongs to which class is then unknown.

    The boxes win over the clicks: they come verbatim from the organisers' file, the clicks are
    rewritten at every step.
    """
    if boxes is not None and clicks is not None and len(boxes) != len(clicks):
        keys.ignore("clicks", f"has {len(clicks)} entries but there are {len(boxes)} boxes")
        clicks = None
    if clicks_order is not None and clicks is None:
        keys.ignore("clicks_order", "without usable 'clicks'")
        return None, None
    if clicks is not None and clicks_order is not None:
        if len(clicks_order) != len(clicks):
            keys.ignore(
                "clicks_order", f"has {len(clicks_order)} rows but 'clicks' has {len(clicks)} entries"
            )
            return clicks, None
        if len({len(row) for row in clicks_order}) > 1:
            log.warning("%s: 'clicks_order' rows have different lengths", keys.path.name)
    return clicks, clicks_order


def _has_prompt(boxes: Sequence[Box | None] | None, clicks: list[dict[str, list[Point]]] | None) -> bool:
    return any(b is not None for b in boxes or ()) or any(c["fg"] or c["bg"] for c in clicks or ())


def _check_imgs(imgs: Any, fail: Callable[..., CaseError]) -> np.ndarray:
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
    if not imgs.dtype.isnative:  # torch.from_numpy refuses a non-native byte order
        imgs = imgs.astype(imgs.dtype.newbyteorder("="))
    return imgs


def _all_finite(a: np.ndarray) -> bool:
    """np.isfinite(a).all() in slabs, so a large float volume never needs a full-size bool copy."""
    flat = a.reshape(-1) if a.flags.c_contiguous else None
    if flat is None:
        return all(bool(np.isfinite(a[i]).all()) for i in range(a.shape[0]))
    return all(
        bool(np.isfinite(flat[i : i + _FINITE_CHUNK]).all()) for i in range(0, flat.size, _FINITE_CHUNK)
    )


def _parse_spacing(raw: Any, fname: str, fail: Callable[[str, str], CaseError]) -> tuple[float, float, float]:
    """Stored (x,y,z) -> physical (z,y,x) in mm, each value made usable; one warning for all fixes."""
    try:
        values = np.asarray(raw, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise fail("spacing", f"unreadable ({raw!r}), using 1.0 mm") from exc
    if values.size != 3:
        raise fail("spacing", f"has {values.size} values, expected 3, using 1.0 mm")
    out = spacing_zyx(values)
    if list(out) != [float(v) for v in values[::-1]]:
        log.warning(
            "%s: 'spacing' %s (x,y,z) used as %s: values must be positive and are clamped to [%g, %g] mm",
            fname,
            values.tolist(),
            list(out[::-1]),
            *SPACING_RANGE_MM,
        )
    return out


def spacing_zyx(stored: Any) -> tuple[float, float, float]:
    """Stored (x,y,z) spacing -> millimetres along the array axes (z,y,x), each value usable.

    One definition for inference, training and the offline tools, so all of them see the same
    millimetres: a value that is not a positive number becomes 1.0 mm, the rest are clamped into
    SPACING_RANGE_MM. Raises ValueError unless there are exactly three values.
    """
    values = np.asarray(stored, dtype=np.float64).reshape(-1)
    if values.size != 3:
        raise ValueError(f"spacing has {values.size} values, expected 3")
    lo, hi = SPACING_RANGE_MM
    z, y, x = (1.0 if not (math.isfinite(v) and v > 0) else min(max(float(v), lo), hi) for v in values[::-1])
    return (z, y, x)


def _as_list(raw: Any, key: str, fail: Callable[[str, str], CaseError]) -> list[Any]:
    """Object array / list / 0-d array holding a list -> Python list."""
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


def _to_int(value: Any, key: str, fail: Callable[[str, str], CaseError]) -> int:
    try:
        f = float(value)
    except (TypeError, ValueError) as exc:
        raise fail(key, f"not a number: {value!r}") from exc
    if not math.isfinite(f) or f != int(f):
        raise fail(key, f"not an integer: {value!r}")
    return int(f)


def _parse_boxes(
    raw: Any, shape: tuple[int, int, int], fname: str, fail: Callable[[str, str], CaseError]
) -> list[Box | None]:
    items = _as_list(raw, "boxes", fail)
    if not items:
        raise fail("boxes", "is empty")
    boxes: list[Box | None] = []
    for k, item in enumerate(items):
        if not isinstance(item, dict):
            raise fail("boxes", f"entry {k} is {type(item).__name__}, expected a dict")
        missing = [key for key in BOX_KEYS if key not in item]
        if missing:
            raise fail("boxes", f"entry {k} lacks {missing}")
        box = {key: _to_int(item[key], f"boxes[{k}].{key}", fail) for key in BOX_KEYS}
        boxes.append(_fit_box(box, k, shape, fname))
    return boxes


def _fit_box(box: dict[str, int], k: int, shape: tuple[int, int, int], fname: str) -> Box | None:
    """The box with ordered bounds, clipped to the volume; None when it lies wholly outside."""
    for lo, hi in _BOX_RANGES:
        if box[lo] > box[hi]:
            log.warning("%s: box %d has %s > %s: swapped", fname, k, lo, hi)
            box[lo], box[hi] = box[hi], box[lo]
    if any(box[hi] < 0 or box[lo] >= shape[_BOX_AXIS[lo]] for lo, hi in _BOX_RANGES):
        log.warning("%s: box %d lies outside the volume %s: dropped", fname, k, shape)
        return None
    clipped = {key: min(max(v, 0), shape[_BOX_AXIS[key]] - 1) for key, v in box.items()}
    if clipped != box:
        log.warning("%s: box %d lies partly outside the volume %s: clipped", fname, k, shape)
    if not clipped["z_min"] <= clipped["z_mid"] <= clipped["z_max"]:
        log.warning("%s: box %d has z_mid outside [z_min, z_max]", fname, k)
    return Box.from_challenge(clipped)


def _parse_points(raw: Any, where: str, shape: tuple[int, int, int], fname: str) -> list[Point]:
    """(z,y,x) voxel indices; a click that is not one, or lies outside the volume, is dropped (warned)."""
    if raw is None:
        return []
    try:
        arr = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        log.warning("%s: %s: not a list of (z,y,x) points: dropped", fname, where)
        return []
    if arr.size == 0:
        return []
    if arr.ndim == 1 and arr.size == 3:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 3:
        log.warning(
            "%s: %s: expected points of 3 coordinates, got shape %s: dropped", fname, where, arr.shape
        )
        return []
    with np.errstate(invalid="ignore"):  # NaN/inf compare False: dropped below
        index = np.round(arr)
        whole = (np.abs(arr - index) <= CLICK_ROUND_TOL).all(axis=1)
    inside = whole & ((index >= 0) & (index < np.asarray(shape))).all(axis=1)
    if not whole.all():
        log.warning("%s: %s: click(s) %s are not voxel indices: dropped", fname, where, arr[~whole].tolist())
    if not (inside | ~whole).all():
        dropped = arr[whole & ~inside].tolist()
        log.warning(
            "%s: %s: %d click(s) outside the volume %s dropped: %s",
            fname,
            where,
            len(dropped),
            shape,
            dropped,
        )
    return [(int(p[0]), int(p[1]), int(p[2])) for p in index[inside]]


def _parse_clicks(
    raw: Any, shape: tuple[int, int, int], fname: str, fail: Callable[[str, str], CaseError]
) -> list[dict[str, list[Point]]]:
    items = _as_list(raw, "clicks", fail)
    if not items:
        raise fail("clicks", "is empty")
    return [_click_entry(item, k, shape, fname) for k, item in enumerate(items)]


def _click_entry(item: Any, k: int, shape: tuple[int, int, int], fname: str) -> dict[str, list[Point]]:
    """One class's clicks; an entry that is not a dict keeps its place (the class), with no clicks."""
    if not isinstance(item, dict):
        log.warning(
            "%s: key 'clicks' entry %d is %s, not a dict: no clicks for it", fname, k, type(item).__name__
        )
        return {"fg": [], "bg": []}
    unknown = set(item) - {"fg", "bg"}
    if unknown:
        log.warning("%s: clicks[%d] has unknown keys %s: ignored", fname, k, sorted(unknown))
    return {
        kind: _parse_points(item.get(kind), f"key 'clicks' entry {k} '{kind}'", shape, fname)
        for kind in ("fg", "bg")
    }


def _parse_clicks_order(raw: Any, fail: Callable[[str, str], CaseError]) -> list[list[str | None]]:
    rows = _as_list(raw, "clicks_order", fail)  # a (N, t) array gives its N rows
    out: list[list[str | None]] = []
    for k, row in enumerate(rows):
        if isinstance(row, np.ndarray):
            row = row.tolist()
        if isinstance(row, (str, bytes)) or row is None:
            row = [row]
        if not isinstance(row, (list, tuple)):
            raise fail("clicks_order", f"row {k} is {type(row).__name__}, not a list")
        out.append([_order_entry(v, k, fail) for v in row])
    return out


def _order_entry(v: Any, k: int, fail: Callable[[str, str], CaseError]) -> str | None:
    if isinstance(v, bytes):
        v = v.decode(errors="replace")
    if v is None or (isinstance(v, float) and math.isnan(v)) or v in ("", "None"):
        return None
    if isinstance(v, str) and v in ("fg", "bg"):
        return str(v)
    raise fail("clicks_order", f"row {k}: entry {v!r} is not 'fg', 'bg' or None")


def _parse_prev_pred(
    raw: Any, shape: tuple[int, int, int], fname: str, fail: Callable[[str, str], CaseError]
) -> np.ndarray:
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
    with replacing(path) as tmp, tmp.open("wb") as fh:  # a file object: savez adds no ".npz"
        np.savez(fh, segs=segs)
