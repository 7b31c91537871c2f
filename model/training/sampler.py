"""Training samples on the network grid, built with the same ROI and encoding code as inference.

A sample is one object of one volume: the organisers' box (or, for a share of samples, a first
click only, as no-box cases start), the ROI that inference would choose from those prompts
(with jittered margin and centre), and the image, target and other objects resampled to the
grid. Interaction rounds then run on the grid: clicks are placed from the model's own errors,
mostly as the official evaluator places them and otherwise as people do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from model.boxes import Box, box_from_mask
from model.click_sim import simulate_click
from model.config import ModelConfig
from model.prompts import ClassPrompts
from model.roi import Roi, choose_roi, object_extent, resample_to_grid
from model.training.data import Volume


@dataclass
class Sample:
    """One object on the grid; prompts are in grid voxel coordinates."""

    image: torch.Tensor  # (z,y,x) float, raw 0-255 intensities resampled
    target: np.ndarray  # (z,y,x) bool
    others: np.ndarray  # (z,y,x) bool: the other objects of the volume
    prompts: ClassPrompts
    spacing: tuple[float, float, float]  # mm per grid voxel


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


def make_sample(
    vol: Volume, rng: np.random.Generator, config: ModelConfig, p_box: float = 0.8
) -> Sample | None:
    """A random object of `vol` prepared as inference would see it at its first step."""
    if vol.n_classes == 0:
        return None
    imgs, gts, spacing = _view(vol, rng)
    label = int(rng.integers(1, vol.n_classes + 1))
    mask = gts == label
    if not mask.any():
        return None
    grid = config.grid
    use_box = rng.random() < p_box
    if use_box:
        prompts = ClassPrompts(label=1, box=box_from_mask(mask, rng))
    else:
        _, first = simulate_click(np.zeros_like(mask), mask)  # the evaluator's first click
        prompts = ClassPrompts(label=1, fg=[first])
    extent = object_extent(prompts, None, spacing)  # type: ignore[arg-type]
    if not use_box and rng.random() < 0.5:  # as after a zoom-out or with a previous mask
        zs, ys, xs = np.nonzero(mask)
        extent = (np.array([zs.min(), ys.min(), xs.min()]), np.array([zs.max(), ys.max(), xs.max()]))
    margin = config.box_margin * rng.uniform(0.75, 1.5)
    roi = choose_roi(mask.shape, spacing, extent, config, margin=margin)  # type: ignore[arg-type]
    jitter = (rng.uniform(-0.12, 0.12, 3) * np.array(roi.size)).round().astype(int)
    roi = _shift(roi, jitter)
    sl = roi.slices
    image = resample_to_grid(torch.from_numpy(np.ascontiguousarray(imgs[sl]).astype(np.float32)), grid)[0]
    tgt = resample_to_grid(torch.from_numpy(np.ascontiguousarray(mask[sl]).astype(np.float32)), grid)[0]
    oth = np.ascontiguousarray((gts[sl] > 0) & ~mask[sl]).astype(np.float32)
    others = resample_to_grid(torch.from_numpy(oth), grid)[0].numpy() > 0.5
    target = tgt.numpy() > 0.5
    if not target.any():
        return None
    grid_prompts = ClassPrompts(
        label=1,
        box=_grid_box(prompts.box, roi, grid) if prompts.box else None,
        fg=[_grid_click(p, roi, grid, target) for p in prompts.fg],
    )
    gsp = tuple(float(v) for v in roi.grid_spacing(spacing, grid))  # type: ignore[arg-type]
    return Sample(image=image, target=target, others=others, prompts=grid_prompts, spacing=gsp)


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


def augment_intensity(image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Gamma, contrast, noise and an occasional inversion, on the 0-255 grid image."""
    x = image / 255.0
    x = x.clamp(0, 1) ** float(np.exp(rng.normal(0, 0.3)))
    x = x * rng.uniform(0.75, 1.25) + rng.uniform(-0.1, 0.1)
    if rng.random() < 0.1:
        x = 1.0 - x
    x = x + torch.from_numpy(rng.normal(0, rng.uniform(0, 0.05), x.shape).astype(np.float32))
    return x * 255.0


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
