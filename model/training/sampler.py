"""Training samples on the network grid, built with the same ROI and encoding code as inference.

A sample is one object of one volume, started as the container or a viewer starts it: the
organisers' box, a viewer's one-slice rectangle (no z range), or a first click only (no-box
cases). It holds the ROI that inference would choose from those prompts (with jittered margin
and centre), and the image, target and other objects resampled to the grid. Small objects are
drawn more often than their share, because they are where a segmenter fails most.

A local sample is the second, finer view the predictor takes around the newest click: an ROI a
fraction of the object's, centred on the click, with the previous mask resampled into it.
Interaction rounds then run on the grid: clicks are placed from the errors, mostly as the
official evaluator places them and otherwise as people do.
"""

from __future__ import annotations

from dataclasses import dataclass

import cc3d
import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import (
    Compose,
    RandAdjustContrast,
    RandGaussianNoise,
    RandLambda,
    RandScaleIntensity,
    RandShiftIntensity,
    ToTensor,
)

from model.boxes import Box, box_from_mask
from model.click_sim import simulate_click
from model.config import ModelConfig
from model.prompts import ClassPrompts
from model.roi import Roi, choose_roi, local_roi, object_extent, resample_to_grid
from model.training.data import Volume


@dataclass
class Sample:
    """One object on the grid; prompts are in grid voxel coordinates."""

    image: torch.Tensor  # (z,y,x) float, raw 0-255 intensities resampled
    target: np.ndarray  # (z,y,x) bool
    others: np.ndarray  # (z,y,x) bool: the other objects of the volume
    prompts: ClassPrompts
    spacing: tuple[float, float, float]  # mm per grid voxel
    start: str = "box"  # "box" (the challenge's), "box2d" (a viewer's one slice) or "click"
    native: Native | None = None  # where the sample came from, for a local view; never batched
    part: np.ndarray | None = None  # (z,y,x) bool: a previous mask that is a part of the object

    def grid_dice(self, pred: np.ndarray) -> float:
        """Dice of a (z,y,x) bool prediction against this sample's target on the grid: the proxy
        that training's validation and the hardness table both read."""
        return float(2.0 * (pred & self.target).sum() / (pred.sum() + self.target.sum() + 1e-9))


@dataclass
class Native:
    """The volume view a sample was cut from (numpy views, nothing copied)."""

    imgs: np.ndarray
    gts: np.ndarray
    label: int
    spacing: tuple[float, float, float]  # mm per volume voxel, z,y,x
    roi: Roi
    box: Box | None


def _view(vol: Volume, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Random flips and an in-plane transpose: numpy views, nothing is copied."""
    imgs, gts, sp = vol.imgs, vol.gts, vol.spacing
    for ax in range(3):
        if rng.random() < 0.5:
            imgs, gts = np.flip(imgs, ax), np.flip(gts, ax)
    if rng.random() < 0.5:
        imgs, gts = np.swapaxes(imgs, 1, 2), np.swapaxes(gts, 1, 2)
        sp = (sp[0], sp[2], sp[1])
    return imgs, gts, sp


def _grid_box(box: Box, roi: Roi, grid: tuple[int, int, int]) -> Box:
    """A volume box mapped to grid voxel indices (rounded, clipped); a one-slice box stays one slice."""
    top = np.array(grid) - 1
    lo = np.clip(np.round(roi.to_grid(np.array([box.lo]), grid)[0]), 0, top).astype(int)
    hi = np.clip(np.round(roi.to_grid(np.array([box.hi]), grid)[0]), 0, top).astype(int)
    mid = int(np.clip(round(roi.to_grid(np.array([[box.z_mid, 0, 0]]), grid)[0][0]), 0, top[0]))
    if not box.exact_z:
        return Box.on_slice(mid, lo[1], hi[1], lo[2], hi[2])
    return Box(lo[0], hi[0], mid, lo[1], hi[1], lo[2], hi[2])


def pick_label(vol: Volume, rng: np.random.Generator, p_small: float, p_nested: float = 0.0) -> int:
    """A label of `vol`: with probability p_nested one of its nested labels (inside or nearly
    equal to another, `Volume.nested_labels`) if it has any, so a tumour in its organ is learnt
    with the organ as context; else uniform, or (with probability p_small) weighted by
    1/sqrt(volume) so small and thin objects come up far more often than their share of the data."""
    nested = vol.nested_labels() if p_nested > 0 else ()
    if nested and rng.random() < p_nested:
        return int(nested[int(rng.integers(len(nested)))])
    n = vol.n_classes
    if rng.random() >= p_small:
        return int(rng.integers(1, n + 1))
    counts = vol.label_counts()[1 : n + 1].astype(float)
    w = np.where(counts > 0, 1.0 / np.sqrt(np.maximum(counts, 1.0)), 0.0)
    return int(rng.choice(n, p=w / w.sum())) + 1


def viewer_box(mask: np.ndarray, rng: np.random.Generator) -> Box:
    """A viewer's 2-D box: the object's rectangle on one slice (near the middle, as people draw
    it), a little loose, with no z range (z_min = z_max = z_mid)."""
    zs = np.flatnonzero(mask.any(axis=(1, 2)))
    pos = float(np.clip(rng.normal(0.5, 0.2), 0.0, 1.0))
    z = int(zs[int(round(pos * (len(zs) - 1)))])
    ys, xs = np.nonzero(mask[z])
    h, w = mask.shape[1:]
    pad = rng.integers(0, 4, 4)
    return Box.on_slice(
        z,
        max(int(ys.min()) - int(pad[0]), 0),
        min(int(ys.max()) + int(pad[1]), h - 1),
        max(int(xs.min()) - int(pad[2]), 0),
        min(int(xs.max()) + int(pad[3]), w - 1),
    )


def make_sample(
    vol: Volume,
    rng: np.random.Generator,
    config: ModelConfig,
    p_box: float = 0.8,
    p_box2d: float = 0.0,
    p_small: float = 0.0,
    p_nested: float = 0.0,
    keep_native: bool = False,
    first_step: bool = True,
    p_partial: float = 0.0,
    label: int | None = None,
) -> Sample | None:
    """A random object of `vol` prepared as inference would see it at its first step.

    Starts with the challenge box (p_box), a viewer's one-slice box (p_box2d), else a first
    click only. p_small and p_nested bias the object drawn (`pick_label`). keep_native keeps the
    volume view, so a local sample can be cut from it later.

    first_step: whether the sample is a first step (no previous mask) or will become a click
    step. It sets a click start's ROI as inference sets it: at a first step one click tells
    nothing of the size, so the ROI is the default cube around it, zoomed out (0 to
    max_zoom_out times, as the predictor does) along the axes where the object reaches its
    faces; at a click step the ROI follows the previous mask, which covers about the object.
    An object-sized ROI at a first step would teach the network to read the object's size from
    the ROI, which inference never gives it: small lesions started from a click came out many
    times too big.

    p_partial: the share of a click start's click steps whose previous mask is only a part of the
    object around the first click (`partial_mask`), as a first click on a large object leaves
    it, and whose ROI follows that part as inference's does, zoomed out 0 to max_zoom_out times
    where the object reaches its faces. With object-sized ROIs alone at click steps, the network
    learned the object's size from the ROI: at inference a too-small previous mask then sizes
    the ROI, the answer keeps to a tenth or so of it, never reaches its faces to zoom out, and a
    large object grows only as far as the next click reaches (docs/validation.md, run cpu25p).
    The part is kept on the grid (`Sample.part`), to be the previous mask instead of a corruption.

    label: the object to prepare (a hard-object draw, model/training/hardness.py); None = drawn
    by `pick_label`.
    """
    if vol.n_classes == 0:
        return None
    imgs, gts, spacing = _view(vol, rng)
    if label is None:
        label = pick_label(vol, rng, p_small, p_nested)
    mask = gts == label
    if not mask.any():
        return None
    grid = config.grid
    r = rng.random()
    start = "box" if r < p_box else "box2d" if r < p_box + p_box2d else "click"
    if start == "box":
        prompts = ClassPrompts(label=1, box=box_from_mask(mask, rng))
    elif start == "box2d":
        prompts = ClassPrompts(label=1, box=viewer_box(mask, rng))
    else:
        _, first = simulate_click(np.zeros_like(mask), mask)  # the evaluator's first click
        prompts = ClassPrompts(label=1, fg=[first])
    extent = object_extent(prompts, None, spacing)  # type: ignore[arg-type]
    part = None
    if start == "click" and not first_step:  # the ROI of a click step follows its previous mask
        zs, ys, xs = np.nonzero(mask)
        extent = (np.array([zs.min(), ys.min(), xs.min()]), np.array([zs.max(), ys.max(), xs.max()]))
        if p_partial > 0 and rng.random() < p_partial:
            part = partial_mask(mask, extent, prompts.fg[0], spacing, rng)  # type: ignore[arg-type]
            if part is not None:
                extent = part[0], part[0] + np.array(part[1].shape) - 1  # the part's own box
    margin = config.box_margin * rng.uniform(0.75, 1.5)
    roi = choose_roi(mask.shape, spacing, extent, config, margin=margin)  # type: ignore[arg-type]
    if start == "click" and (first_step or part is not None):
        for _ in range(int(rng.integers(0, config.max_zoom_out + 1))):
            grown = roi.zoomed_out(mask[roi.slices], config.zoom_factor)
            if grown is None:
                break
            roi = grown
    jitter = (rng.uniform(-0.12, 0.12, 3) * np.array(roi.size)).round().astype(int)
    roi = _shift(roi, jitter)
    image, target, others = _cut(imgs, gts, label, roi, grid)
    if not target.any():
        return None
    grid_prompts = ClassPrompts(
        label=1,
        box=_grid_box(prompts.box, roi, grid) if prompts.box else None,
        fg=[_grid_click(p, roi, grid, target) for p in prompts.fg],
    )
    gsp = tuple(float(v) for v in roi.grid_spacing(spacing, grid))  # type: ignore[arg-type]
    native = Native(imgs, gts, label, spacing, roi, prompts.box) if keep_native else None  # type: ignore[arg-type]
    grid_part = None if part is None else _part_on_grid(part[0], part[1], roi, grid)
    if grid_part is not None and (not grid_part.any() or np.array_equal(grid_part, target)):
        grid_part = None  # lost in the resampling, or no error left: a corruption instead
    return Sample(image, target, others, grid_prompts, gsp, start, native, grid_part)  # type: ignore[arg-type]


def partial_mask(
    mask: np.ndarray,
    extent: tuple[np.ndarray, np.ndarray],
    click: tuple[int, int, int],
    spacing: tuple[float, float, float],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray] | None:
    """A part of the object around its first click, as a first click on a large object leaves
    the mask: the object within a ball on the click (radius 15-60 % of the object's longest
    side, in mm), the piece connected to the click. Returns (lo, the part cropped to its own
    box), or None where the ball holds the whole object (no error to learn from).
    """
    lo, hi = extent
    crop = mask[tuple(slice(int(a), int(b) + 1) for a, b in zip(lo, hi, strict=True))]
    sp = np.asarray(spacing, float)
    radius = rng.uniform(0.15, 0.6) * float(((hi - lo + 1) * sp).max())
    c = np.asarray(click, float) - lo
    grids = np.ogrid[tuple(slice(0, n) for n in crop.shape)]
    d2 = sum(((g - ci) * s) ** 2 for g, ci, s in zip(grids, c, sp, strict=True))
    inside = crop & (d2 <= radius**2)
    labels = cc3d.connected_components(inside.astype(np.uint8), connectivity=26)
    own = labels[tuple(int(v) for v in c)]
    if own == 0:
        return None
    part = labels == own
    if part.sum() == crop.sum():
        return None
    idx = np.argwhere(part)
    plo, phi = idx.min(0), idx.max(0) + 1
    return lo + plo, part[tuple(slice(a, b) for a, b in zip(plo, phi, strict=True))]


def _part_on_grid(lo: np.ndarray, part: np.ndarray, roi: Roi, grid: tuple[int, int, int]) -> np.ndarray:
    """A part mask placed at volume voxel `lo`, cut to `roi` and resampled to the grid as the
    target is (`_cut`)."""
    canvas = np.zeros(roi.size, np.float32)
    src, dst = [], []
    for a, n, r_lo, r_n in zip(lo, part.shape, roi.lo, roi.size, strict=True):
        a0, a1 = max(int(a), r_lo), min(int(a) + n, r_lo + r_n)
        if a1 <= a0:
            return np.zeros(grid, bool)
        src.append(slice(a0 - int(a), a1 - int(a)))
        dst.append(slice(a0 - r_lo, a1 - r_lo))
    canvas[tuple(dst)] = part[tuple(src)]
    return resample_to_grid(torch.from_numpy(canvas)[None], grid)[0].numpy() > 0.5


def _cut(
    imgs: np.ndarray, gts: np.ndarray, label: int, roi: Roi, grid: tuple[int, int, int]
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Image (raw intensities), target and other objects of `roi`, resampled to the grid."""
    sl = roi.slices
    crop = np.ascontiguousarray(gts[sl])
    image = resample_to_grid(torch.from_numpy(np.ascontiguousarray(imgs[sl]).astype(np.float32)), grid)[0]
    both = np.stack([crop == label, (crop > 0) & (crop != label)]).astype(np.float32)
    tgt, oth = resample_to_grid(torch.from_numpy(both), grid).numpy() > 0.5
    return image, tgt, oth


def regrid(values: np.ndarray, src: Roi, dst: Roi, grid: tuple[int, int, int]) -> np.ndarray:
    """Values on `src`'s grid sampled (trilinear) at `dst`'s grid voxel centres; 0 outside src."""
    axes = []
    for ax, centres in enumerate(dst.grid_centres(grid)):
        g = (centres - src.lo[ax] + 0.5) * grid[ax] / src.size[ax] - 0.5  # src grid coordinate
        axes.append(torch.from_numpy((2 * g + 1) / grid[ax] - 1).float())  # align_corners=False
    zz, yy, xx = torch.meshgrid(*axes, indexing="ij")
    coords = torch.stack([xx, yy, zz], dim=-1)[None]  # grid_sample wants x,y,z order
    vals = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))[None, None]
    out = F.grid_sample(vals, coords, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[0, 0].numpy()


def local_sample(
    s: Sample,
    prev: np.ndarray,
    newest: tuple[int, int, int],
    rng: np.random.Generator,
    config: ModelConfig,
    fraction: float,
    held: np.ndarray | None = None,
) -> tuple[Sample, np.ndarray] | None:
    """The local view of `s` around its newest click (grid point `newest`), with `prev` (on s's
    grid) carried over as the predictor carries its first pass over, and `held` (on s's grid: the
    object's voxels a neighbour's mask holds, stream.make_item) carried into the view's others.

    Returns the local sample (clicks and box mapped into it) and its previous mask, or None
    when `s` has no native view or the view misses the object.
    """
    nat = s.native
    if nat is None:
        return None
    grid = config.grid
    centre = nat.roi.to_volume(np.array([newest]), grid)[0]
    jitter = rng.uniform(-0.15, 0.15, 3) * np.asarray(nat.roi.size) * fraction
    roi = local_roi(centre + jitter, nat.roi, nat.spacing, config, fraction)
    image, target, others = _cut(nat.imgs, nat.gts, nat.label, roi, grid)
    if not target.any():
        return None
    prev_local = regrid(prev.astype(np.float32), nat.roi, roi, grid) > 0.5
    if held is not None:
        others = others | ((regrid(held.astype(np.float32), nat.roi, roi, grid) > 0.5) & target)
    points = {}
    for kind in ("fg", "bg"):
        pts = getattr(s.prompts, kind)
        vol_pts = nat.roi.to_volume(np.array(pts), grid) if pts else np.zeros((0, 3))
        inside = np.all((vol_pts >= np.array(roi.lo) - 0.5) & (vol_pts < np.array(roi.hi) - 0.5), axis=1)
        g = np.clip(np.round(roi.to_grid(vol_pts[inside], grid)), 0, np.array(grid) - 1).astype(int)
        points[kind] = [tuple(int(v) for v in p) for p in g]
    box = nat.box
    if box is not None and (box.z_max < roi.lo[0] or box.z_min >= roi.hi[0]):
        box = None
    prompts = ClassPrompts(label=1, box=_grid_box(box, roi, grid) if box else None, **points)
    gsp = tuple(float(v) for v in roi.grid_spacing(nat.spacing, grid))
    return Sample(image, target, others, prompts, gsp, s.start, None), prev_local  # type: ignore[arg-type]


def _grid_click(point, roi: Roi, grid: tuple[int, int, int], target: np.ndarray) -> tuple[int, int, int]:
    """A foreground click mapped to the grid, on the grid target: rounding and the 0.5 threshold of
    the resampled target can put a thin object's click one voxel off it; take the nearest target voxel."""
    g = np.clip(np.round(roi.to_grid(np.array([point]), grid)[0]), 0, np.array(grid) - 1).astype(int)
    if not target[tuple(g)]:
        on = np.argwhere(target)
        g = on[int(np.argmin(((on - g) ** 2).sum(axis=1)))]
    return tuple(int(v) for v in g)  # type: ignore[return-value]


def _shift(roi: Roi, delta: np.ndarray) -> Roi:
    """The ROI moved by delta voxels, kept inside the volume."""
    lo = np.clip(np.array(roi.lo) + delta, 0, np.array(roi.shape) - np.array(roi.size))
    return Roi(tuple(int(v) for v in lo), tuple(int(v) for v in lo + np.array(roi.size)), roi.shape)  # type: ignore[arg-type]


def _invert(image: torch.Tensor) -> torch.Tensor:
    """The 0-255 image inverted (as a T1 looks next to a T2): MONAI has no transform for it."""
    return 255.0 - image


def intensity_transform() -> Compose:
    """Gamma, contrast, shift, an occasional inversion and Gaussian noise on the 0-255 grid image.

    The distributions are those of the augmentation the shipped weights were trained with, so a
    run resumes from them without a shock: a gamma of median about 1 (it was exp(N(0, 0.3)); here
    uniform on 0.55-1.55, with the same log mean and spread, on the crop's own intensity range),
    a scale of 0.75-1.25, a shift of +-10 % of the range, an inversion in 10 % and a noise whose
    standard deviation is drawn up to 5 % of the range. The network z-scores the ROI, so the
    scale and the shift mostly vary how much clipping and noise the image carries.
    """
    return Compose(
        [
            RandAdjustContrast(prob=1.0, gamma=(0.55, 1.55)),
            RandScaleIntensity(factors=0.25, prob=1.0),
            RandShiftIntensity(offsets=0.1 * 255, prob=1.0),
            RandLambda(_invert, prob=0.1),
            RandGaussianNoise(prob=1.0, std=0.05 * 255),
            ToTensor(dtype=torch.float32, track_meta=False),
        ]
    )


_INTENSITY = intensity_transform()  # built once: each worker process gets its own copy at the fork


def augment_intensity(image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """The MONAI intensity augmentation of a (z,y,x) 0-255 grid image, seeded from the sample's
    generator so that a sample stays reproducible from its seed."""
    _INTENSITY.set_random_state(seed=int(rng.integers(2**31)))
    return _INTENSITY(image[None])[0]


def next_click(
    pred: np.ndarray, target: np.ndarray, rng: np.random.Generator, p_official: float = 0.6
) -> tuple[str, tuple[int, int, int]] | None:
    """One corrective click: the evaluator's rule, or (so the model does not depend on one policy)
    a random error voxel, or one near the error region's edge, as a person would place it."""
    error = pred != target
    if not error.any():
        return None
    r = rng.random()
    if r < p_official:
        return simulate_click(pred, target)
    idx = np.flatnonzero(error)
    if r < p_official + 0.5 * (1 - p_official):
        choice = int(rng.choice(idx))
    else:  # near the edge: error voxels with a non-error 6-neighbour
        from scipy.ndimage import binary_erosion

        edge = np.flatnonzero(error & ~binary_erosion(error, border_value=0))
        choice = int(rng.choice(edge if edge.size else idx))
    z, y, x = np.unravel_index(choice, error.shape)
    point = (int(z), int(y), int(x))
    return ("fg" if target[point] else "bg"), point
