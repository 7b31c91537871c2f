"""Each freshly predicted class's edge moved onto the image's edge, at native resolution.

Why: NSD forgives 2 mm, and the network answers on a 64^3 grid spanning 1.6 times the object
(7 mm a grid voxel for a 300 mm organ; the boundary views halve that). Its edge, resampled to
native voxels, lands a voxel or two off the true one. On the shipped run's final masks of the 29
validation cases, setting only the voxels within one voxel of each predicted edge right would
lift NSD_Final from 0.69 to 0.85 (docs/validation.md, "Edge snap"): most of what NSD loses lies
in that band, below the network's resolution.

How: for each class, the band of voxels within `band` voxels (face neighbours, per iteration)
of its mask's edge is judged by the image. Inside: the mask eroded by `band` + 1; outside: a
shell two voxels thick, one voxel beyond the band, that is background in the label map (a voxel
clear of the band on both sides, so that a blurred edge's partial voxels do not pull one side's
mean towards the other). Around every band voxel, in a window `window_mm` wide, the mean
intensity of each side is taken; a band voxel goes to the side whose local mean is nearer (the
midpoint rule: a voxel half in the object and half out, as a blurred edge images it, sits
halfway between the two means). Where the two sides do not differ by `min_separation` pooled
standard deviations in that window, or one of them fills under 5 % of it, the image cannot tell
them apart and the network's answer stands (a sarcoma against muscle, a vessel against its
neighbour). A band voxel may only be taken from background and only given back to it: never
from or to another class.

Which classes: those the network answered this step, inside the region it answered (a boxed
class's click step edits only a view around the click, so only that view is snapped); a class
kept from the previous step or locked as perfect is left as it is.

Which axes: only those along which the answered region spans more native voxels than the grid
has, i.e. where the network's answer was upsampled and its edge can lie between native voxels.
Along an axis the grid resolves (a 40 mm lesion's ROI on 64 grid voxels, a thick-slice MR's z),
the edge voxel is the network's own decision, and moving it a whole voxel (6.5 mm in such an
MR) on a local mean is a guess: on the 29 validation cases, snapping along every axis cost the
thick-slice MR brain lesions and a spinal cord up to 0.22 DSC_AUC (docs/validation.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

Roi = tuple[slice, slice, slice]

_VAR_FLOOR = 4.0  # intensity units^2 (2 of 0-255): a flat region is not infinitely certain
_MIN_SUPPORT = 0.05  # share of a window a side must fill for its local mean to count


def _window(spacing: Sequence[float], window_mm: float) -> list[int]:
    """The averaging window in voxels per axis: odd, at least 3."""
    return [max(3, int(round(window_mm / max(float(s), 1e-6))) | 1) for s in spacing]


def _local_stats(img: np.ndarray, side: np.ndarray, win: list[int]) -> tuple[np.ndarray, ...]:
    """Support share, mean and variance of `img` over `side` in a moving window."""
    w = side.astype(np.float32)
    support = ndimage.uniform_filter(w, win, mode="constant")
    denom = np.maximum(support, 1e-6)
    mean = ndimage.uniform_filter(img * w, win, mode="constant") / denom
    sq = ndimage.uniform_filter(img * img * w, win, mode="constant") / denom
    return support, mean, np.maximum(sq - mean * mean, _VAR_FLOOR)


def edge_band(mask: np.ndarray, band: int, step: np.ndarray | None = None) -> np.ndarray:
    """The voxels within `band` voxels of `mask`'s edge, on either side: grown by `band` steps
    of `step` (default: face neighbours) less shrunk by as many. The volume's border is not an
    edge (erosion sees object beyond it)."""
    grown = ndimage.binary_dilation(mask, step, iterations=band)
    return grown & ~ndimage.binary_erosion(mask, step, iterations=band, border_value=1)


def _inside(region: Roi, crop: tuple[slice, ...]) -> np.ndarray:
    """Boolean array of the crop's shape: True inside `region` (both in volume coordinates)."""
    axes = [np.arange(c.start, c.stop) for c in crop]
    parts = [(a >= r.start) & (a < r.stop) for a, r in zip(axes, region, strict=True)]
    return parts[0][:, None, None] & parts[1][None, :, None] & parts[2][None, None, :]


def snap_class(
    segs: np.ndarray,
    imgs: np.ndarray,
    label: int,
    region: Roi,
    spacing: Sequence[float],
    band: int,
    window_mm: float,
    min_separation: float,
    axes: Sequence[bool] = (True, True, True),
) -> int:
    """Snap class `label`'s edge inside `region` of `segs` (in place); returns voxels changed.

    spacing: mm per array axis (z, y, x). axes: the array axes along which the edge may move
    (the band, the sides beside it and the window they are read in reach along these only).
    """
    if not any(axes):
        return 0
    step = ndimage.generate_binary_structure(3, 1)  # face neighbours, along the allowed axes only
    for axis, allowed in enumerate(axes):
        if not allowed:
            step = np.delete(step, [0, 2], axis=axis)
    win = [w if a else 1 for w, a in zip(_window(spacing, window_mm), axes, strict=True)]
    found = ndimage.find_objects((segs[region] == label).view(np.uint8))
    if not found or found[0] is None:
        return 0
    pad = [w // 2 + band + 3 for w in win]
    # the crop: the class's voxels in the region, padded for the shells and the window; the sides
    # are read in all of it, the region only bounds what may change
    sl = tuple(
        slice(max(r.start + f.start - p, 0), min(r.start + f.stop + p, n))
        for r, f, p, n in zip(region, found[0], pad, segs.shape, strict=True)
    )
    labels = segs[sl]
    mask = labels == label
    img = imgs[sl].astype(np.float32)
    edge = edge_band(mask, band, step) & _inside(region, sl)
    # the two sides are read a voxel clear of the band: a blurred edge's partial voxels would
    # pull each side's mean towards the other
    inner = ndimage.binary_erosion(mask, step, iterations=band + 1, border_value=1)
    near = ndimage.binary_dilation(mask, step, iterations=band + 1)
    outer = ndimage.binary_dilation(near, step, iterations=2) & ~near & (labels == 0)
    n_in, m_in, v_in = _local_stats(img, inner, win)
    n_out, m_out, v_out = _local_stats(img, outer, win)
    judged = edge & (n_in > _MIN_SUPPORT) & (n_out > _MIN_SUPPORT)
    judged &= (m_in - m_out) ** 2 > min_separation**2 * (v_in + v_out)
    nearer_in = np.abs(img - m_in) < np.abs(img - m_out)
    add = judged & nearer_in & (labels == 0)
    drop = judged & ~nearer_in & mask
    labels[add] = label
    labels[drop] = 0
    return int(add.sum() + drop.sum())


def snap_edges(
    segs: np.ndarray,
    imgs: np.ndarray,
    spacing: Sequence[float],
    regions: Sequence[tuple[int, Roi]],
    band: int,
    window_mm: float,
    min_separation: float,
    grid: Sequence[int],
) -> np.ndarray:
    """`segs` with each (label, region) of `regions` snapped, in place and returned; `band` 0
    leaves it untouched. spacing: mm per array axis (z, y, x), as `Case.spacing` holds it.
    grid: the network's grid; a region's edge moves only along the axes on which it spans more
    native voxels than the grid has (where the network's answer was upsampled)."""
    if band <= 0:
        return segs
    for label, region in regions:
        axes = [r.stop - r.start > g for r, g in zip(region, grid, strict=True)]
        snap_class(segs, imgs, label, region, spacing, band, window_mm, min_separation, axes)
    return segs
