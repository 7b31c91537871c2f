"""The one box type of the project, the organisers' box rule, and label relabelling.

Two kinds of box reach the model, and both are a :class:`Box`:

* the challenge's box: its z range is the object's exact z extent, but its x/y rectangle is the
  object's extent on the middle labelled slice only (widened on every side by a random shift of
  0-5 x size/256 voxels), so the object may leave the rectangle on other slices;
* a viewer's 2D box: a rectangle drawn on one slice, with nothing known about z.

Case files carry the challenge's dict format (``z_min``, ``z_mid_x_min`` ...); it is read and
written only here (:meth:`Box.from_challenge`, :meth:`Box.to_challenge`), so that every other
module sees one convention: inclusive voxel bounds in (z, y, x). Training, demo cases and
make_cases build boxes here so that they match what the container receives.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

BOX_KEYS = ("z_min", "z_max", "z_mid", "z_mid_x_min", "z_mid_y_min", "z_mid_x_max", "z_mid_y_max")


@dataclass(frozen=True)
class Box:
    """A box prompt in voxel indices, bounds inclusive.

    z_min..z_max: the slices the box spans; z_mid: the slice its rectangle was drawn on;
    y_min..y_max, x_min..x_max: the rectangle on slice z_mid.
    exact_z: True for the challenge's box (the object lies exactly on slices z_min..z_max);
    False for a viewer's one-slice rectangle, where z_min = z_max = z_mid and nothing is
    known about the object's z extent.
    """

    z_min: int
    z_max: int
    z_mid: int
    y_min: int
    y_max: int
    x_min: int
    x_max: int
    exact_z: bool = True

    def __post_init__(self) -> None:
        for name in ("z_min", "z_max", "z_mid", "y_min", "y_max", "x_min", "x_max"):
            object.__setattr__(self, name, int(getattr(self, name)))
        if self.z_min > self.z_max or self.y_min > self.y_max or self.x_min > self.x_max:
            raise ValueError(f"Box: a lower bound exceeds its upper bound: {self}")
        if not self.exact_z and not self.z_min == self.z_max == self.z_mid:
            raise ValueError(f"Box: a one-slice box needs z_min = z_max = z_mid: {self}")

    @classmethod
    def on_slice(cls, z: int, y_min: int, y_max: int, x_min: int, x_max: int) -> Box:
        """A viewer's 2D box: the rectangle y_min..y_max x x_min..x_max on slice z."""
        return cls(z, z, z, y_min, y_max, x_min, x_max, exact_z=False)

    @classmethod
    def from_challenge(cls, entry: Mapping[str, object]) -> Box:
        """The challenge's dict (values int or np.int64); raises KeyError when a key is missing."""
        v = {k: int(entry[k]) for k in BOX_KEYS}  # type: ignore[call-overload]
        return cls(
            z_min=v["z_min"],
            z_max=v["z_max"],
            z_mid=v["z_mid"],
            y_min=v["z_mid_y_min"],
            y_max=v["z_mid_y_max"],
            x_min=v["z_mid_x_min"],
            x_max=v["z_mid_x_max"],
        )

    def to_challenge(self) -> dict[str, int]:
        """The challenge's dict, keys in the organisers' order (only for a box with an exact z range)."""
        if not self.exact_z:
            raise ValueError("a one-slice box has no challenge form (its z range is not known)")
        return {
            "z_min": self.z_min,
            "z_max": self.z_max,
            "z_mid": self.z_mid,
            "z_mid_x_min": self.x_min,
            "z_mid_y_min": self.y_min,
            "z_mid_x_max": self.x_max,
            "z_mid_y_max": self.y_max,
        }

    @property
    def lo(self) -> tuple[int, int, int]:
        """Inclusive lower corner (z, y, x) of what the box covers."""
        return (self.z_min, self.y_min, self.x_min)

    @property
    def hi(self) -> tuple[int, int, int]:
        """Inclusive upper corner (z, y, x) of what the box covers."""
        return (self.z_max, self.y_max, self.x_max)

    def prism(self, shape: tuple[int, int, int]) -> tuple[slice, slice, slice]:
        """The slices of the prism (z range x the rectangle), clipped to a volume of `shape`.

        A box outside an axis gives an empty slice there, never a negative one.
        """

        def span(lo: int, hi: int, size: int) -> slice:
            a, b = max(lo, 0), min(hi, size - 1)
            return slice(a, max(b + 1, a))

        return (
            span(self.z_min, self.z_max, shape[0]),
            span(self.y_min, self.y_max, shape[1]),
            span(self.x_min, self.x_max, shape[2]),
        )


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


def box_from_mask(mask: np.ndarray, rng: np.random.Generator | None = None) -> Box:
    """One challenge box for a boolean (z,y,x) mask.

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
    return Box(
        z_min=int(zs[0]),
        z_max=int(zs[-1]),
        z_mid=z_mid,
        y_min=max(int(ys.min()) - sy, 0),
        y_max=min(int(ys.max()) + sy, h - 1),
        x_min=max(int(xs.min()) - sx, 0),
        x_max=min(int(xs.max()) + sx, w - 1),
    )


def boxes_from_labels(labels: np.ndarray, rng: np.random.Generator | None = None) -> list[Box]:
    """Boxes for labels 1..N of a sequentially labelled map, in label order (boxes[k] <-> label k+1)."""
    n = int(labels.max()) if labels.size else 0
    return [box_from_mask(labels == k, rng) for k in range(1, n + 1) if (labels == k).any()]
