"""The network's upsampled probability re-shaped by the image at native resolution (guided filter).

Why: the network answers on a 64^3 grid spanning 1.6 times the object, and its probability,
upsampled trilinearly, puts the object's edge somewhere inside a grid voxel (several native
voxels for a large organ; NSD forgives 2 mm). With every voxel within one voxel of each
predicted edge right, the shipped run's NSD_Final would rise from 0.69 to 0.85
(docs/validation.md, "Edge snap"). The edge snap (model/edge_snap.py) judges the binary mask's
band by the two sides' local means; this step works on the probability before the threshold, so
the network's own confidence at the edge takes part.

How: He et al.'s guided filter, with the image as guide, keeping the probability's own detail.
In every window the probability is fitted as a linear function of intensity, p ~ a I + b,
a = cov(I, p) / (var(I) + eps); the guided filter's output at a voxel is the windows' mean a
times its intensity plus their mean b. Where a is ~0 (the image does not vary with the
probability: var(I) << eps, or the probability is flat, inside and outside the object) that
output is only the probability blurred twice over the window, which would erode every convex
object at the threshold. So the output here is p plus the image's part alone: p + (guided -
twice-blurred p). Where the image cannot tell, the network's answer stands exactly; where the
object and its surroundings differ in intensity, a voxel on the object's side of the image's
edge gains probability and one on the other side loses it, so the threshold's contour moves
towards the image's edge. The window is one grid voxel wide, the scale below which the
upsampled probability cannot place an edge.

Which axes: as the snap, only those along which the answered region spans more native voxels
than the grid (where the answer was upsampled); along the others the window is one voxel.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def guide_radius(size: Sequence[int], grid: Sequence[int], scale: float = 1.0) -> tuple[int, ...]:
    """Window half-width per axis, in native voxels: half a grid voxel of the answer (`scale`
    times the region's native voxels per grid voxel, as a boundary view sees it at
    `tile_fraction`), 0 where the grid is as fine as the image."""
    out = []
    for s, g in zip(size, grid, strict=True):
        per = s * scale / g
        out.append(max(1, int(per // 2)) if per > 1.0 else 0)
    return tuple(out)


def _box_mean(x: torch.Tensor, radius: Sequence[int]) -> torch.Tensor:
    """Mean over a (2r+1) window per axis of a (z, y, x) tensor; at the faces over the part of
    the window inside (no padding values counted). Separable: one 1D pass per axis."""
    out = x[None, None]
    for axis, r in enumerate(radius):
        if r <= 0:
            continue
        kernel = [1, 1, 1]
        kernel[axis] = 2 * r + 1
        pad = [0, 0, 0]
        pad[axis] = r
        out = F.avg_pool3d(out, tuple(kernel), stride=1, padding=tuple(pad), count_include_pad=False)
    return out[0, 0]


def guided_prob(prob: torch.Tensor, img: torch.Tensor, radius: Sequence[int], eps: float) -> torch.Tensor:
    """`prob` (z, y, x, in [0, 1]) plus the image's part of its guided filter by `img` (same
    shape, intensity units, e.g. 0-255; see the module's docstring); eps in intensity units
    squared. Float32, on prob's device, clipped to [0, 1]. All-zero radius: prob unchanged."""
    p = prob.float()
    if not any(r > 0 for r in radius):
        return p
    g = img.to(p.device, torch.float32)
    mean_g = _box_mean(g, radius)
    mean_p = _box_mean(p, radius)
    cov = _box_mean(g * p, radius) - mean_g * mean_p
    var = (_box_mean(g * g, radius) - mean_g * mean_g).clamp_min(0.0)
    a = cov / (var + eps)
    b = mean_p - a * mean_g
    guided = _box_mean(a, radius) * g + _box_mean(b, radius)
    return (p + guided - _box_mean(mean_p, radius)).clamp_(0.0, 1.0)
