"""Previous masks made from the ground truth by cheap corruptions, and the clicks that fix them.

Teaching the network to answer a click needs many (previous mask, click) pairs whose click sits
on a real error. Running the network to make each previous mask costs a forward pass; corrupting
the ground truth costs almost nothing and covers the errors a segmenter makes: too big or too
small by a few mm, shifted, a part missing, a spurious blob, a leak into a neighbour (the nested
collapse: a tumour class that took its organ), or the box prism itself (the box step's trap).
Everything works on the network grid with its millimetre spacing.
"""

from __future__ import annotations

from collections.abc import Callable

import cc3d
import numpy as np
from scipy.ndimage import distance_transform_edt

from model.click_sim import simulate_click

Mask = np.ndarray
Point = tuple[int, int, int]


def _dist_outside(mask: Mask, spacing: np.ndarray) -> np.ndarray:
    """Distance in mm from each voxel outside `mask` to the mask (0 inside)."""
    if not mask.any():
        return np.full(mask.shape, np.inf)
    return distance_transform_edt(~mask, sampling=spacing)


def dilate(mask: Mask, spacing: np.ndarray, mm: float) -> Mask:
    """Grown by `mm` (at least one voxel of the finest axis)."""
    mm = max(mm, float(spacing.min()))
    return _dist_outside(mask, spacing) <= mm


def erode(mask: Mask, spacing: np.ndarray, mm: float) -> Mask:
    """Shrunk by `mm`; never to nothing (the deepest voxels survive)."""
    mm = max(mm, float(spacing.min()))
    depth = distance_transform_edt(mask, sampling=spacing)
    out = depth > mm
    return out if out.any() else depth >= depth.max()


def shift(mask: Mask, delta: np.ndarray) -> Mask:
    """Moved by `delta` voxels (z,y,x), zero-filled, no wrap-around."""
    out = np.zeros_like(mask)
    src, dst = [], []
    for d, n in zip(delta.astype(int), mask.shape, strict=True):
        src.append(slice(max(-d, 0), n - max(d, 0)))
        dst.append(slice(max(d, 0), n - max(-d, 0)))
    out[tuple(dst)] = mask[tuple(src)]
    return out


def cut(mask: Mask, rng: np.random.Generator) -> Mask:
    """A part dropped: the voxels beyond a random plane through the object's inner half."""
    pts = np.argwhere(mask)
    normal = rng.normal(size=3)
    normal /= np.linalg.norm(normal) + 1e-9
    proj = pts @ normal
    thresh = np.quantile(proj, rng.uniform(0.55, 0.9))
    out = mask.copy()
    drop = pts[proj > thresh]
    out[tuple(drop.T)] = False
    return out


def add_blob(mask: Mask, spacing: np.ndarray, rng: np.random.Generator) -> Mask:
    """A spurious ellipsoid beside the object, touching it or a few mm away."""
    pts = np.argwhere(mask)
    anchor = pts[int(rng.integers(len(pts)))].astype(float)
    extent_mm = (pts.max(0) - pts.min(0) + 1) * spacing
    radius_mm = max(float(extent_mm.mean()) * rng.uniform(0.1, 0.35), 1.5 * float(spacing.max()))
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction) + 1e-9
    centre = anchor + direction * radius_mm * rng.uniform(0.5, 1.5) / spacing
    grids = np.ogrid[tuple(slice(0, n) for n in mask.shape)]
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, spacing, strict=True))
    return mask | (d2 <= radius_mm**2)


def leak(mask: Mask, others: Mask, spacing: np.ndarray, rng: np.random.Generator) -> Mask | None:
    """The object plus the neighbouring objects near it, as when a class takes its organ."""
    if not others.any():
        return None
    near = others & dilate(mask, spacing, rng.uniform(2.0, 30.0))
    return (mask | near) if near.any() else None


def held_by_neighbour(
    target: Mask, others: Mask, spacing: np.ndarray, rng: np.random.Generator
) -> Mask | None:
    """The object's voxels within a few mm of a neighbour, as when the neighbour's mask has
    grown into the object (the reverse of `leak`): at inference such voxels come in the
    previous mask's other_masks channel, and a foreground click on them must take them back.
    The reach (1.5 to 10 mm) is halved until at least 30 % of the object stays its own. None when
    no neighbour is that near."""
    if not others.any() or not target.any():
        return None
    near = _dist_outside(others, spacing)
    reach = rng.uniform(1.5, 10.0)
    for _ in range(3):
        held = target & (near <= max(reach, float(spacing.min())))
        if (target & ~held).sum() >= 0.3 * target.sum():
            return held if held.any() else None
        reach /= 2
    return None


def corrupt(
    target: Mask,
    others: Mask,
    spacing: np.ndarray,
    rng: np.random.Generator,
    prism: Mask | None = None,
) -> tuple[Mask, str]:
    """A plausible wrong previous mask for `target` and the name of the corruption made.

    One or two corruptions are chained; the result always differs from the target.
    """
    kinds: dict[str, Callable[[Mask], Mask | None]] = {
        "dilate": lambda m: dilate(m, spacing, rng.uniform(1.0, 6.0)),
        "erode": lambda m: erode(m, spacing, rng.uniform(1.0, 5.0)),
        "shift": lambda m: shift(m, rng.integers(-4, 5, 3)),
        "cut": lambda m: cut(m, rng) if m.any() else None,
        "blob": lambda m: add_blob(m, spacing, rng) if m.any() else None,
        "leak": lambda m: leak(m, others, spacing, rng),
        "prism": lambda m: prism,
    }
    names = list(kinds)
    out, done = target, []
    for _ in range(1 + int(rng.random() < 0.35)):
        for _try in range(4):
            name = names[int(rng.integers(len(names)))]
            res = kinds[name](out)
            if res is not None and res.shape == target.shape:
                out, done = res.astype(bool), [*done, name]
                break
    if np.array_equal(out, target):  # every draw came back unchanged: a sure error
        out, done = erode(target, spacing, 2.0 * float(spacing.max())), [*done, "erode"]
        if np.array_equal(out, target):
            out, done = dilate(target, spacing, float(spacing.max())), [*done, "dilate"]
    return out, "+".join(done)


def error_component(pred: Mask, target: Mask, point: Point) -> Mask:
    """The 26-connected error component that holds `point` (empty if the point is no error)."""
    error = pred != target
    if not error[point]:
        return np.zeros_like(error)
    labels = cc3d.connected_components(error.astype(np.uint8), connectivity=26)
    return labels == labels[point]


def click_rounds(
    prev: Mask,
    target: Mask,
    n_clicks: int,
    rng: np.random.Generator,
    click_fn: Callable[[Mask, Mask], tuple[str, Point] | None] = simulate_click,
    p_fixed: float = 0.5,
) -> tuple[Mask, list[tuple[str, Point]], Mask]:
    """Up to `n_clicks` corrective clicks on `prev`, as a user and a partly obedient model play.

    After each click but the last, the clicked error component is fixed with probability
    `p_fixed` (the model answered), else left (the click is repeated or the next error comes);
    the last error is never fixed, so the newest click always stands on the mask returned.
    Returns the previous mask the network sees, the clicks in order, and the error region the
    last click addresses (the region the loss weights).
    """
    cur = prev.copy()
    clicks: list[tuple[str, Point]] = []
    region = np.zeros_like(prev)
    for i in range(n_clicks):
        click = click_fn(cur, target)
        if click is None:
            break
        clicks.append(click)
        region = error_component(cur, target, click[1])
        others_left = ((cur != target) & ~region).any()  # fixing the last error would end the play
        if i < n_clicks - 1 and others_left and rng.random() < p_fixed:
            cur = np.where(region, target, cur)
    return cur, clicks, region
