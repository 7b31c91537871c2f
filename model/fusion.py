"""Per-class probabilities -> one uint8 label map, cleaned with connected components.

Why this module exists: the challenge scores one label map per case, so classes predicted
independently must compete for each voxel, and a class's mask should not carry far-away
spurious islands (they cost DSC and, worse, NSD). Public entries let the last class overwrite
the others and never clean up; here:

1. Each voxel takes the most probable class if that probability beats background
   (``p > threshold``), else 0. Ties go to the class with the smaller ROI, then to the lower
   label: a nested object (a tumour in its organ) has the smaller ROI, and where both are
   certain (probabilities saturate at 1.0 in float16) the container loses a few voxels while
   the nested object would otherwise vanish whole. A *locked* class (one the user or
   the evaluator marked done: its mask is final) is not a competitor: it keeps every voxel of
   its mask, whatever the others predict there, and its mask is not cleaned.
2. Per unlocked class, 26-connected components are taken. A component is kept when it carries prompt
   evidence: it holds a foreground click of that class, or it meets the box's middle-slice
   rectangle (slice ``z_mid``, the x/y rectangle). When no component does, the largest is kept
   (ties: the one that comes first in raster order). A component holding a foreground click is
   never dropped. Dropped voxels become background (0).

Memory: the only full-volume arrays are the uint8 label map and one running "best probability"
array, and the latter only spans the bounding box of all ROIs. Component labelling runs per
class inside that class's ROI, since a class can only win inside its own ROI.

Backends: "cuda" (cupy + ``cupyx.scipy.ndimage.label`` with a 3x3x3 structure, data kept on the
device, CUDA torch tensors taken zero-copy through DLPack, only the final uint8 map copied to the
host) and "cpu" (numpy + cc3d). Both run the same array code (``xp`` is numpy or cupy) and differ
only in the labelling call, whose numbering never influences the result (the "largest" tie-break
is decided by raster position, not by label id), so their label maps are identical.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model.boxes import Box

log = logging.getLogger(__name__)

Roi = tuple[slice, slice, slice]


@dataclass
class ClassProb:
    """One class's prediction, as the predictor hands it over.

    label: the output value, k+1 for boxes[k] / clicks[k] (1..255, unique per call).
    roi: where ``prob`` sits in the full (z, y, x) volume (step 1, inside the volume).
    prob: float16/float32 P(object) of the ROI's shape; a numpy array, a torch tensor (CPU or
        CUDA; a CUDA tensor stays on the device with the cuda backend) or a cupy array.
    fg_clicks: foreground clicks of this class in volume (z, y, x) coordinates.
    box: the box prompt (its rectangle lies on slice z_mid), or None.
    locked: the mask ``prob > threshold`` is final (a class marked done): it wins all its voxels
        and is never cleaned.
    """

    label: int
    roi: Roi
    prob: Any
    fg_clicks: list[tuple[int, int, int]] = field(default_factory=list)
    box: Box | None = None
    locked: bool = False


# --------------------------------------------------------------------------------------------
# backend choice


@functools.lru_cache(maxsize=1)
def cuda_available() -> bool:
    """True when cupy imports and sees a CUDA device. Cached: the answer cannot change within a
    process, and a failed cupy import is slow and must not repeat (or warn) per case."""
    try:
        import cupy  # noqa: F401  (optional dependency, imported lazily on purpose)

        return int(cupy.cuda.runtime.getDeviceCount()) > 0
    except Exception:  # ImportError, CUDARuntimeError, missing driver libraries...
        return False


def resolve_backend(backend: str = "auto") -> str:
    """ "auto" -> "cuda" when cupy and a CUDA device exist, else "cpu". Explicit names pass through."""
    if backend == "auto":
        return "cuda" if cuda_available() else "cpu"
    if backend not in ("cpu", "cuda"):
        raise ValueError(f"fuse: unknown backend {backend!r} (use 'auto', 'cpu' or 'cuda')")
    return backend


# --------------------------------------------------------------------------------------------
# input normalisation


def _norm_roi(roi: Roi, shape: tuple[int, int, int], label: int) -> Roi:
    """Concrete (start, stop) slices with step 1, checked to lie inside the volume."""
    if len(roi) != 3:
        raise ValueError(f"fuse: class {label}: roi must have 3 slices, got {roi!r}")
    out = []
    for s, n in zip(roi, shape, strict=True):
        start = 0 if s.start is None else int(s.start)
        stop = n if s.stop is None else int(s.stop)
        if s.step not in (None, 1) or not 0 <= start <= stop <= n:
            raise ValueError(f"fuse: class {label}: roi {roi!r} is not a step-1 box inside volume {shape}")
        out.append(slice(start, stop))
    return (out[0], out[1], out[2])


def _is_float16(prob: Any) -> bool:
    return str(getattr(prob, "dtype", "")).endswith("float16")


def _to_numpy(prob: Any) -> np.ndarray:
    """Host array from numpy / torch (CPU or CUDA) / cupy, without copying when already on host."""
    if isinstance(prob, np.ndarray):
        return prob
    if hasattr(prob, "detach"):  # torch.Tensor, checked by duck type so torch stays optional here
        return prob.detach().cpu().numpy()
    if hasattr(prob, "get") and type(prob).__module__.startswith("cupy"):
        return prob.get()
    return np.asarray(prob)


def _to_cupy(prob: Any) -> Any:
    """Device array: CUDA torch tensors zero-copy through DLPack, host arrays uploaded."""
    import cupy as cp

    if isinstance(prob, cp.ndarray):
        return prob
    if hasattr(prob, "detach"):  # torch.Tensor
        t = prob.detach()
        if t.is_cuda:
            return cp.from_dlpack(t)
        return cp.asarray(t.numpy())
    return cp.asarray(prob)


# --------------------------------------------------------------------------------------------
# component labelling per backend


def _label_cpu(mask: np.ndarray) -> tuple[np.ndarray, int]:
    import cc3d

    cc, n = cc3d.connected_components(mask, connectivity=26, return_N=True, out_dtype=np.uint32)
    return cc, int(n)


_STRUCT26 = np.ones((3, 3, 3), dtype=bool)


def _label_cuda(mask: Any) -> tuple[Any, int]:
    from cupyx.scipy import ndimage as cndi

    cc, n = cndi.label(mask, structure=_STRUCT26)
    return cc, int(n)


# --------------------------------------------------------------------------------------------
# the fusion


def fuse(
    shape: tuple[int, int, int],
    classes: list[ClassProb],
    threshold: float = 0.5,
    backend: str = "auto",
) -> np.ndarray:
    """Fuse per-class ROI probabilities into one (z, y, x) uint8 label map (see module docstring).

    shape: the full volume shape. classes: any order (processed by ROI volume, then label, so
    ties -> the smaller ROI, then the lower label). threshold: background's probability; a
    class must strictly exceed it.
    backend: "auto", "cpu" or "cuda". Returns a host numpy uint8 array of ``shape``.
    """
    shape = (int(shape[0]), int(shape[1]), int(shape[2]))
    backend = resolve_backend(backend)
    items = sorted(classes, key=lambda c: int(c.label))
    labels_seen = [int(c.label) for c in items]
    if len(set(labels_seen)) != len(labels_seen):
        raise ValueError(f"fuse: duplicate labels {labels_seen}")
    for lab in labels_seen:
        if not 1 <= lab <= 255:
            raise ValueError(f"fuse: label {lab} does not fit a uint8 map (1..255)")
    rois = [_norm_roi(c.roi, shape, int(c.label)) for c in items]

    if backend == "cuda":
        import cupy as xp

        to_xp, label_fn = _to_cupy, _label_cuda
    else:
        xp, to_xp, label_fn = np, _to_numpy, _label_cpu

    out = xp.zeros(shape, dtype=xp.uint8)
    nonempty = [i for i, r in enumerate(rois) if all(s.stop > s.start for s in r)]
    if not nonempty:
        return out.get() if backend == "cuda" else out

    # The running best probability only needs to span the union of the ROIs. float16 when every
    # prob is float16 (exact comparisons, half the memory), float32 otherwise.
    dtype = xp.float16 if all(_is_float16(items[i].prob) for i in nonempty) else xp.float32
    lo = [min(rois[i][a].start for i in nonempty) for a in range(3)]
    hi = [max(rois[i][a].stop for i in nonempty) for a in range(3)]
    best = xp.full([h - low for low, h in zip(lo, hi, strict=True)], threshold, dtype=dtype)

    # 1. Locked classes first: their mask is final, so each voxel of it is taken at a probability
    #    no competitor can beat (2 > any p). Then argmax against background, class by class from
    #    the smallest ROI up (then by label); a strict ">" keeps the earlier class on ties.
    def roi_volume(i: int) -> int:
        return int(np.prod([s.stop - s.start for s in rois[i]]))

    unlocked = sorted((i for i in nonempty if not items[i].locked), key=lambda i: (roi_volume(i), i))
    order = [i for i in nonempty if items[i].locked] + unlocked
    for i in order:
        c, r = items[i], rois[i]
        p = to_xp(c.prob)
        want = tuple(s.stop - s.start for s in r)
        if tuple(p.shape) != want:
            raise ValueError(f"fuse: class {c.label}: prob shape {tuple(p.shape)} != roi shape {want}")
        if p.dtype != dtype:
            p = p.astype(dtype)
        best_v = best[tuple(slice(s.start - o, s.stop - o) for s, o in zip(r, lo, strict=True))]
        if c.locked:
            win = p > threshold
            xp.copyto(best_v, 2.0, where=win)
        else:
            win = p > best_v
            xp.copyto(best_v, p, where=win)
        xp.copyto(out[r], int(c.label), where=win)
        del p, win
    del best

    # 2. connected components per unlocked class, inside its ROI.
    for i in nonempty:
        if not items[i].locked:
            _clean_class(xp, out, items[i], rois[i], label_fn)

    return out.get() if backend == "cuda" else out


def _clean_class(xp: Any, out: Any, c: ClassProb, r: Roi, label_fn: Any) -> None:
    """Drop the components of class ``c`` that carry no prompt evidence (in place on ``out``)."""
    out_v = out[r]
    mask = out_v == int(c.label)
    cc, n = label_fn(mask)
    if n <= 1:  # nothing to choose between (0 = the class won nowhere)
        return

    keep = np.zeros(n + 1, dtype=bool)
    # foreground clicks inside the ROI (a class cannot own voxels outside it)
    pts = [
        tuple(int(v) - s.start for v, s in zip(pt, r, strict=True))
        for pt in c.fg_clicks
        if all(s.start <= int(v) < s.stop for v, s in zip(pt, r, strict=True))
    ]
    if pts:
        idx = tuple(xp.asarray([p[a] for p in pts]) for a in range(3))
        keep[_host(cc[idx]).astype(np.int64)] = True
    # the box's middle-slice rectangle, clipped to the ROI
    if c.box is not None:
        rect = _rect_in_roi(c.box, r)
        if rect is not None:
            ids = xp.unique(cc[rect])
            keep[_host(ids).astype(np.int64)] = True
    keep[0] = False

    if not keep.any():
        sizes = _host(xp.bincount(cc.ravel(), minlength=n + 1)).astype(np.int64)
        sizes[0] = -1
        top = np.flatnonzero(sizes == sizes.max())
        if top.size > 1:
            # ties: the component reached first in raster order, whatever the backend's numbering
            flat = cc.ravel()
            first = [int(_host(xp.argmax(flat == int(t)))) for t in top]
            top = top[[int(np.argmin(first))]]
        keep[int(top[0])] = True

    if keep[1:].all():
        return
    keep[0] = True  # background voxels of the ROI are left alone
    drop = ~xp.asarray(keep)[cc]
    xp.copyto(out_v, 0, where=drop)


def _rect_in_roi(box: Box, r: Roi) -> tuple[int, slice, slice] | None:
    """ROI-local index of the box's rectangle (on slice z_mid), or None when it misses the ROI."""
    z = box.z_mid
    if not r[0].start <= z < r[0].stop:
        return None
    y0, y1 = max(box.y_min, r[1].start), min(box.y_max + 1, r[1].stop)
    x0, x1 = max(box.x_min, r[2].start), min(box.x_max + 1, r[2].stop)
    if y0 >= y1 or x0 >= x1:
        return None
    return (
        z - r[0].start,
        slice(y0 - r[1].start, y1 - r[1].start),
        slice(x0 - r[2].start, x1 - r[2].start),
    )


def _host(a: Any) -> np.ndarray:
    """numpy view of a small result (cupy -> host copy; numpy/scalars pass through)."""
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)
