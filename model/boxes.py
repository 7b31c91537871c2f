"""Boxes by the organisers' rule (get_boxes.py of the challenge), and label relabelling.

The challenge box is *not* a 3-D bounding box: its z range is the object's exact z extent, but
its x/y rectangle is the object's extent on the middle labelled slice only, widened on every
side by a random shift of 0-5 x size/256 voxels. Training, demo cases and make_cases all build
boxes here so that they match what the container receives.
"""

from __future__ import annotations

import numpy as np

BOX_KEYS = ("z_min", "z_max", "z_mid", "z_mid_x_min", "z_mid_y_min", "z_mid_x_max", "z_mid_y_max")


def relabel_sequential(labels: np.ndarray) -> np.ndarray:
    """Map the label values present (sorted, 0 excluded) to 1..N, as skimage's relabel_sequential."""
    values = np.unique(labels)
    values = values[values != 0]
    if values.size and values[-1] == values.size and values[0] == 1:
        return labels.astype(np.uint16 if values.size > 255 else np.uint8, copy=False)
    lut = np.zeros(int(values.max()) + 1 if values.size else 1, dtype=np.uint16)
    lut[values] = np.arange(1, values.size + 1, dtype=np.uint16)
    out = lut[labels]
    return out.astype(np.uint8) if values.size <= 255 else out


def box_from_mask(mask: np.ndarray, rng: np.random.Generator | None = None) -> dict[str, int]:
    """One challenge box for a boolean (z,y,x) mask; bounds are inclusive.

    z_mid is the median of the unique labelled slices (the rule since 2025-05-01). The same
    random shift, in 0..5, scaled by W/256 and H/256, widens each side of the mid-slice rectangle.
    """
    zs = np.flatnonzero(mask.any(axis=(1, 2)))
    if zs.size == 0:
        raise ValueError("box_from_mask: empty mask")
    z_mid = int(zs[len(zs) // 2])
    ys, xs = np.nonzero(mask[z_mid])
    h, w = mask.shape[1:]
    shift = int(rng.integers(0, 6)) if rng is not None else 0
    sx, sy = int(shift * w / 256), int(shift * h / 256)
    return {
        "z_min": int(zs[0]),
        "z_max": int(zs[-1]),
        "z_mid": z_mid,
        "z_mid_x_min": max(int(xs.min()) - sx, 0),
        "z_mid_y_min": max(int(ys.min()) - sy, 0),
        "z_mid_x_max": min(int(xs.max()) + sx, w - 1),
        "z_mid_y_max": min(int(ys.max()) + sy, h - 1),
    }


def boxes_from_labels(labels: np.ndarray, rng: np.random.Generator | None = None) -> list[dict[str, int]]:
    """Boxes for labels 1..N of a sequentially labelled map, in label order (boxes[k] <-> label k+1)."""
    n = int(labels.max()) if labels.size else 0
    return [box_from_mask(labels == k, rng) for k in range(1, n + 1) if (labels == k).any()]


def box_prism(box: dict[str, int], shape: tuple[int, int, int]) -> tuple[slice, slice, slice]:
    """The slices of the box prism (exact z range, x/y of the middle slice), clipped to the volume."""

    def span(lo: str, hi: str, size: int) -> slice:
        a, b = max(int(box[lo]), 0), min(int(box[hi]), size - 1)
        return slice(a, max(b + 1, a))

    return (
        span("z_min", "z_max", shape[0]),
        span("z_mid_y_min", "z_mid_y_max", shape[1]),
        span("z_mid_x_min", "z_mid_x_max", shape[2]),
    )
