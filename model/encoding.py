"""Network input for one class in one ROI: the image plus prompt channels on the grid.

Channel order is ModelConfig.channels: image (z-scored inside the ROI, so CT, MR and PET look
alike to the network), this class's previous mask, the box prism (0.5, and 1.0 on the middle
slice whose rectangle it really is), foreground and background click balls (radius in mm, at
least one grid voxel), and the other classes' previous masks as negative context.
"""

from __future__ import annotations

import numpy as np
import torch

from model.boxes import Box
from model.config import ModelConfig
from model.prompts import ClassPrompts, Point
from model.roi import Roi, resample_to_grid


def normalise_image(crop: torch.Tensor) -> torch.Tensor:
    """Z-score inside the ROI; a flat ROI stays flat instead of blowing up.

    A single voxel (a 1x1x1 volume) has no sample std (NaN, which would blank the whole input):
    it is as flat as a flat ROI.
    """
    crop = crop.float()
    std = crop.std().clamp_min(1.0) if crop.numel() > 1 else crop.new_tensor(1.0)
    return (crop - crop.mean()) / std


def _cover(centres: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Grid voxels whose centre lies in the inclusive voxel interval [lo, hi]; the nearest one
    when the interval is thinner than a grid voxel, so a thin box never vanishes."""
    inside = (centres >= lo - 0.5) & (centres <= hi + 0.5)
    if not inside.any():
        inside[int(np.argmin(np.abs(centres - (lo + hi) / 2.0)))] = True
    return inside


def box_channel(roi: Roi, box: Box | None, grid: tuple[int, int, int]) -> np.ndarray:
    """The box prism: 0.5 over slices z_min..z_max inside the rectangle, 1.0 on slice z_mid whose
    rectangle it really is. A one-slice box (z_min = z_max = z_mid) is its rectangle alone."""
    out = np.zeros(grid, np.float32)
    if box is None:
        return out
    cz, cy, cx = roi.grid_centres(grid)
    if box.z_max < roi.lo[0] or box.z_min >= roi.hi[0]:
        return out
    z_in = _cover(cz, box.z_min, box.z_max)
    rect = _cover(cy, box.y_min, box.y_max)[:, None] & _cover(cx, box.x_min, box.x_max)[None, :]
    out[z_in] = 0.5 * rect
    out[int(np.argmin(np.abs(cz - box.z_mid)))][rect] = 1.0
    return out


def click_channel(
    roi: Roi,
    points: list[Point],
    spacing: tuple[float, float, float],
    grid: tuple[int, int, int],
    radius_mm: float,
    min_grid_radius: float = 0.75,
) -> np.ndarray:
    """Balls of radius_mm, but at least min_grid_radius voxels of the coarsest grid axis, around
    the clicks that fall inside the ROI."""
    out = np.zeros(grid, np.float32)
    if not points:
        return out
    pts = np.asarray(points, float)
    inside = np.all((pts >= roi.lo) & (pts < roi.hi), axis=1)
    if not inside.any():
        return out
    g = roi.to_grid(pts[inside], grid)
    gsp = roi.grid_spacing(spacing, grid)
    radius = max(radius_mm, float(gsp.max()) * min_grid_radius)
    zz, yy, xx = (np.arange(n, dtype=np.float32) for n in grid)
    for c in g:
        d2 = (
            ((zz - c[0]) * gsp[0])[:, None, None] ** 2
            + ((yy - c[1]) * gsp[1])[None, :, None] ** 2
            + ((xx - c[2]) * gsp[2])[None, None, :] ** 2
        )
        out[d2 <= radius**2] = 1.0
    return out


def encode(
    image_crop: torch.Tensor,
    prev_crop: torch.Tensor | None,
    prompts: ClassPrompts,
    roi: Roi,
    spacing: tuple[float, float, float],
    config: ModelConfig,
) -> torch.Tensor:
    """(C, *grid) float32 input for one class.

    image_crop: the ROI of the image (z,y,x), any dtype. prev_crop: the ROI of prev_pred (uint8
    labels) or None at the box step.
    """
    grid = config.grid
    chans: dict[str, torch.Tensor] = {"image": resample_to_grid(normalise_image(image_crop), grid)[0]}
    if prev_crop is not None:
        own = (prev_crop == prompts.label).float()
        other = ((prev_crop > 0) & (prev_crop != prompts.label)).float()
        both = resample_to_grid(torch.stack([own, other]), grid)
        chans["prev_mask"], chans["other_masks"] = both[0], both[1]
    else:
        chans["prev_mask"] = chans["other_masks"] = torch.zeros(grid)
    chans["box"] = torch.from_numpy(box_channel(roi, prompts.box, grid))
    chans["fg_clicks"] = torch.from_numpy(
        click_channel(roi, prompts.fg, spacing, grid, config.click_radius_mm, config.click_min_grid_radius)
    )
    chans["bg_clicks"] = torch.from_numpy(
        click_channel(roi, prompts.bg, spacing, grid, config.click_radius_mm, config.click_min_grid_radius)
    )
    return torch.stack([chans[name] for name in config.channels])
