"""Regions of interest in physical space: choose, resample to the network grid, paste back.

An ROI is a voxel box inside the volume. Its size is set in millimetres (spacing z,y,x) from the
object's extent as the prompts reveal it, so the network sees objects at a similar relative
scale whatever the scanner's voxel size; each axis is then resampled independently to the
fixed grid. The ROI always lies inside the volume (shifted, or clipped to the whole axis), so
no padding ever enters the network.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from model.config import ModelConfig
from model.prompts import ClassPrompts


@dataclass(frozen=True)
class Roi:
    """Voxel box [lo, hi) per axis, inside a volume of `shape`."""

    lo: tuple[int, int, int]
    hi: tuple[int, int, int]
    shape: tuple[int, int, int]

    @property
    def size(self) -> tuple[int, int, int]:
        return tuple(h - lo for lo, h in zip(self.lo, self.hi, strict=True))  # type: ignore[return-value]

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(lo, h) for lo, h in zip(self.lo, self.hi, strict=True))  # type: ignore[return-value]

    def to_grid(self, points: np.ndarray, grid: tuple[int, int, int]) -> np.ndarray:
        """Volume voxel coordinates (n,3) -> continuous grid coordinates (voxel centres aligned)."""
        scale = np.asarray(grid, float) / np.asarray(self.size, float)
        return (np.asarray(points, float) - np.asarray(self.lo) + 0.5) * scale - 0.5

    def grid_centres(self, grid: tuple[int, int, int]) -> list[np.ndarray]:
        """Volume coordinate (continuous) of each grid voxel centre, per axis."""
        return [self.lo[ax] + (np.arange(grid[ax]) + 0.5) * self.size[ax] / grid[ax] - 0.5 for ax in range(3)]

    def to_volume(self, points: np.ndarray, grid: tuple[int, int, int]) -> np.ndarray:
        """Continuous grid coordinates (n,3) -> volume voxel coordinates (inverse of to_grid)."""
        scale = np.asarray(self.size, float) / np.asarray(grid, float)
        return (np.asarray(points, float) + 0.5) * scale - 0.5 + np.asarray(self.lo)

    def grid_spacing(self, spacing: tuple[float, float, float], grid: tuple[int, int, int]) -> np.ndarray:
        """Millimetres per grid voxel along z, y, x."""
        return np.asarray(self.size, float) * np.asarray(spacing, float) / np.asarray(grid, float)

    def touches_border(self, mask: np.ndarray) -> list[int]:
        """Axes on which a grid mask reaches an ROI face that is not also the volume's face."""
        axes = []
        for ax in range(3):
            first = np.take(mask, 0, axis=ax).any() and self.lo[ax] > 0
            last = np.take(mask, -1, axis=ax).any() and self.hi[ax] < self.shape[ax]
            if first or last:
                axes.append(ax)
        return axes

    def zoomed_out(self, mask: np.ndarray, factor: float) -> Roi | None:
        """This ROI grown by `factor` along the axes where `mask` reaches an inner face (see
        touches_border), or None where it reaches none: the predictor's zoom-out step, which
        training samples copy so that the network sees the ROIs inference gives it."""
        axes = self.touches_border(mask)
        return zoom_out(self, axes, factor) if axes else None


def _place(centre: float, size: float, dim: int) -> tuple[int, int]:
    """An interval of `size` voxels centred at `centre`, shifted inside [0, dim)."""
    n = int(min(dim, max(1, round(size))))
    lo = int(round(centre - n / 2.0))
    lo = min(max(lo, 0), dim - n)
    return lo, lo + n


def object_extent(
    prompts: ClassPrompts,
    prev_mask_bbox: tuple[np.ndarray, np.ndarray] | None,
    spacing: tuple[float, float, float],
) -> tuple[np.ndarray, np.ndarray] | None:
    """Inclusive voxel bounds (lo, hi) of what the prompts say about the object, or None.

    A one-slice box (a viewer's) says nothing about z, yet the ROI must hold the whole object:
    it is assumed to reach as far in z, in mm, as its rectangle's longer side, centred on the
    rectangle's slice. Where the object reaches further, the prediction touches the ROI's z
    faces and the zoom-out grows it.
    """
    los, his = [], []
    if prompts.box is not None:
        b = prompts.box
        lo, hi = np.asarray(b.lo, float), np.asarray(b.hi, float)
        if not b.exact_z:
            sp = np.asarray(spacing, float)
            side_mm = max((hi[1] - lo[1] + 1.0) * sp[1], (hi[2] - lo[2] + 1.0) * sp[2])
            half = 0.5 * (side_mm / sp[0] - 1.0)  # slices on either side of the drawn one
            lo[0], hi[0] = lo[0] - half, hi[0] + half
        los.append(lo)
        his.append(hi)
    for p in prompts.fg:
        los.append(p)
        his.append(p)
    if prev_mask_bbox is not None:
        los.append(prev_mask_bbox[0])
        his.append(prev_mask_bbox[1])
    if not los:
        return None
    return np.min(np.asarray(los, float), axis=0), np.max(np.asarray(his, float), axis=0)


def label_extents(labels: np.ndarray, n: int) -> list[tuple[np.ndarray, np.ndarray] | None]:
    """Inclusive bounding boxes (lo, hi) of labels 1..n of a label map, in one pass over the
    volume; None for a label that is absent. What `choose_roi` takes as an object's extent."""
    out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * n
    for k, sl in enumerate(ndimage.find_objects(labels, max_label=n)):
        if sl is not None:
            out[k] = (np.array([s.start for s in sl]), np.array([s.stop - 1 for s in sl]))
    return out


def choose_roi(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    extent: tuple[np.ndarray, np.ndarray] | None,
    config: ModelConfig,
    margin: float | None = None,
    centre: np.ndarray | None = None,
) -> Roi:
    """ROI around the object's extent: margin x extent in mm, sides at least min_aspect of the
    longest side and min_roi_mm, a default cube when the extent is a single point."""
    sp = np.asarray(spacing, float)
    margin = config.box_margin if margin is None else margin
    if extent is None:
        lo = hi = np.asarray(shape, float) / 2.0 if centre is None else np.asarray(centre, float)
    else:
        lo, hi = extent
    ext_mm = (hi - lo + 1.0) * sp
    side_mm = ext_mm * margin
    if np.all(hi - lo < 1):  # a single click: nothing tells the size yet
        side_mm = np.full(3, config.default_roi_mm)
    side_mm = np.maximum(side_mm, config.min_aspect * side_mm.max())
    side_mm = np.maximum(side_mm, config.min_roi_mm)
    side_vox = np.maximum(side_mm / sp, config.min_roi_vox)
    mid = (lo + hi + 1.0) / 2.0 if centre is None else np.asarray(centre, float) + 0.5
    bounds = [_place(c, s, d) for c, s, d in zip(mid, side_vox, shape, strict=True)]
    return Roi(tuple(b[0] for b in bounds), tuple(b[1] for b in bounds), tuple(shape))  # type: ignore[arg-type]


def local_roi(
    centre: np.ndarray,
    around: Roi,
    spacing: tuple[float, float, float],
    config: ModelConfig,
    fraction: float,
) -> Roi:
    """The finer view around a click (volume voxel `centre`): `fraction` of the object's ROI
    `around` per axis, at least min_roi_mm and min_roi_vox, at most `around`, inside the volume.
    On a 64-voxel grid spanning 1.6 times the object a click is a ball of about one voxel; here
    the same click covers several, and the error band it marks is several voxels thick."""
    sp = np.asarray(spacing, float)
    side = np.asarray(around.size, float) * fraction
    side = np.maximum(side, config.min_roi_mm / sp)
    side = np.maximum(side, config.min_roi_vox)
    side = np.minimum(side, np.asarray(around.size, float))
    bounds = [_place(c + 0.5, s, d) for c, s, d in zip(centre, side, around.shape, strict=True)]
    return Roi(tuple(b[0] for b in bounds), tuple(b[1] for b in bounds), around.shape)  # type: ignore[arg-type]


def tiles(roi: Roi, fraction: float, positions: int) -> list[Roi]:
    """Views `fraction` of `roi` per axis (at least one voxel), at `positions` evenly spaced
    places along each axis from face to face (overlapping where positions x fraction > 1), all
    inside `roi`: on the object's grid a voxel of a large object spans several mm, and each
    such view sees its part of the boundary at 1 / fraction the resolution. One position is the
    centre."""
    if not 0.0 < fraction <= 1.0 or positions < 1:
        raise ValueError(f"tiles: fraction must be in (0, 1] and positions >= 1 ({fraction}, {positions})")
    places = np.linspace(0.0, 1.0, positions) if positions > 1 else np.array([0.5])
    starts, sides = [], []
    for lo, size in zip(roi.lo, roi.size, strict=True):
        side = max(1, int(round(size * fraction)))
        sides.append(side)
        starts.append(sorted({lo + int(round((size - side) * t)) for t in places}))
    return [
        Roi((z, y, x), (z + sides[0], y + sides[1], x + sides[2]), roi.shape)
        for z in starts[0]
        for y in starts[1]
        for x in starts[2]
    ]


def zoom_out(roi: Roi, axes: list[int], factor: float) -> Roi:
    """The same ROI grown by `factor` along `axes` (kept inside the volume)."""
    lo, hi = list(roi.lo), list(roi.hi)
    for ax in axes:
        centre = (roi.lo[ax] + roi.hi[ax]) / 2.0
        lo[ax], hi[ax] = _place(centre, roi.size[ax] * factor, roi.shape[ax])
    return Roi(tuple(lo), tuple(hi), roi.shape)  # type: ignore[arg-type]


def resample_to_grid(crop: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """(z,y,x) or (c,z,y,x) float crop -> (c, *grid); area-averaging when shrinking by a lot
    avoids aliasing of thin structures, trilinear otherwise."""
    x = crop[None] if crop.dim() == 4 else crop[None, None]
    x = x.float()
    if all(s >= 2 * g for s, g in zip(x.shape[2:], grid, strict=True)):
        return F.adaptive_avg_pool3d(x, grid)[0]
    return F.interpolate(x, size=grid, mode="trilinear", align_corners=False)[0]


def grid_to_roi(values: torch.Tensor, roi: Roi, chunk: int = 32) -> torch.Tensor:
    """(*grid) grid values -> (*roi.size) float16 at the native resolution.

    Exactly trilinear (align_corners=False, separable): y/x first on the few grid slices, then z
    in chunks, so a whole-volume ROI of a 1000-slice scan never holds a full float32 copy.
    """
    gz = values.shape[0]
    zs, ys, xs = roi.size
    plane = F.interpolate(
        values[None, None].float(), size=(gz, ys, xs), mode="trilinear", align_corners=False
    )[0, 0]
    out = torch.empty((zs, ys, xs), dtype=torch.float16, device=values.device)
    src = ((torch.arange(zs, dtype=torch.float64) + 0.5) * gz / zs - 0.5).clamp(0, gz - 1)
    i0 = src.floor().long()
    i1 = (i0 + 1).clamp(max=gz - 1)
    w = (src - i0).float().to(values.device)
    for a in range(0, zs, chunk):
        b = min(a + chunk, zs)
        wa = w[a:b, None, None]
        out[a:b] = (plane[i0[a:b]] * (1 - wa) + plane[i1[a:b]] * wa).half()
    return out
