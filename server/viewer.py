"""A viewer's session on the server: nnInteractive's calls mapped onto the model's session verbs.

The viewers segment one object at a time into a target buffer they own; the server mirrors that
buffer so that each answer carries only the region that changed (``Change``). Their inputs map
onto :class:`model.session.Session` like this:

* image ``[1, z, y, x]`` (one channel) and ``{"spacing": [z, y, x]}`` -> ``set_image``;
* a point with include = foreground / background -> ``add_click`` on object 1;
* a half-open box ``[[z0, z1], [y0, y1], [x0, x1]]`` -> ``add_box``: one slice thick on z is a
  viewer's 2D box (``Box.on_slice``: the rectangle only, nothing about z); thicker on every axis
  is a 3D box, taken as the challenge's prism (a tight 3D box has an exact z range and holds the
  object on its middle slice). A rectangle on a slice of the y or x axis, and a box that
  excludes (include = False), have no encoding in this model and are refused;
* an initial segmentation -> ``reset`` + ``set_initial_mask`` (nnInteractive starts afresh too);
* undo, reset, predict and the auto-zoom switch map one to one.

A viewer has no time budget: predictions are never degraded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from model.boxes import Box
from model.predictor import Predictor
from model.session import Region, Session, changed_region

OBJECT = 1  # the viewers segment one object at a time
BUFFER_DTYPES = tuple(np.dtype(t) for t in ("bool", "uint8", "uint16", "int16", "int32", "float32"))
# image dtypes the network's input path (torch.from_numpy) takes as they are; others become float32
_IMAGE_DTYPES = tuple(np.dtype(t) for t in ("uint8", "int8", "int16", "int32", "int64", "float32", "float64"))


@dataclass(frozen=True)
class Change:
    """What a call did to the target buffer: whether a prediction (or undo) ran, and the region
    it changed with that region's new content (None when nothing changed)."""

    ran: bool
    region: Region | None = None
    values: np.ndarray | None = None

    @property
    def bbox(self) -> list[list[int]] | None:
        """The region as the protocol's half-open [[lo, hi], ...]."""
        return None if self.region is None else [[s.start, s.stop] for s in self.region]


class ViewerSession:
    """One client's image, prompts and mirrored target buffer."""

    def __init__(self, predictor: Predictor) -> None:
        self.session = Session(predictor)
        self.buffer: np.ndarray | None = None
        self.image_shape: tuple[int, ...] | None = None

    def set_image(self, image: np.ndarray, properties: Mapping[str, object] | None = None) -> list[int]:
        """A [1, z, y, x] image; returns its shape. Prompts and the buffer are dropped."""
        if image.ndim != 4 or image.shape[0] != 1:
            raise ValueError(f"expected a one-channel image [1, z, y, x], got shape {list(image.shape)}")
        volume = image[0] if image.dtype in _IMAGE_DTYPES else image[0].astype(np.float32)
        raw = (properties or {}).get("spacing") or (1.0, 1.0, 1.0)
        spacing = [float(v) for v in raw]  # type: ignore[attr-defined]
        if len(spacing) == 2:  # a 2-D image sent as [1, 1, y, x] with its in-plane spacing
            spacing = [1.0, *spacing]
        self.session.set_image(volume, spacing, name="viewer")
        self.image_shape = tuple(int(s) for s in image.shape)
        self.buffer = None
        return list(self.image_shape)

    def set_target_buffer(self, shape: Sequence[int], dtype: str) -> None:
        """A fresh (zero) mirror of the client's buffer, which must match the image."""
        try:
            dt = np.dtype(dtype)
        except TypeError as exc:
            raise ValueError(f"invalid target buffer dtype {dtype!r}") from exc
        if dt not in BUFFER_DTYPES:
            raise ValueError(
                f"unsupported target buffer dtype {dt} (use one of {[str(d) for d in BUFFER_DTYPES]})"
            )
        if tuple(shape) != self.session.shape:
            raise ValueError(
                f"target buffer shape {list(shape)} differs from the image's {list(self.session.shape)}"
            )
        self.buffer = np.zeros(self.session.shape, dt)

    def set_do_autozoom(self, enabled: bool) -> None:
        self.session.set_zoom_out(enabled)

    def add_point(self, coordinates: Sequence[float], include: bool, run: bool) -> Change:
        if len(coordinates) != 3:
            raise ValueError(f"a point needs 3 coordinates (z, y, x), got {list(coordinates)}")
        self.session.add_click(OBJECT, [round(float(c)) for c in coordinates], foreground=bool(include))
        return self._after_prompt(run)

    def add_bbox(self, coords: Sequence[Sequence[float]], include: bool, run: bool) -> Change:
        if not include:
            raise ValueError("boxes that exclude are not supported by this model: use background points")
        self.session.add_box(OBJECT, self._box(coords))
        return self._after_prompt(run)

    def add_initial_seg(self, seg: np.ndarray, run: bool) -> Change:
        """The object's mask from the viewer; the client has already copied it into its buffer."""
        if seg.shape != self.session.shape:
            raise ValueError(f"initial segmentation shape {list(seg.shape)} differs from the image's")
        buffer = self._require_buffer()
        self.session.reset()
        self.session.set_initial_mask(OBJECT, seg > 0)
        buffer[...] = seg.astype(buffer.dtype, copy=False)
        return self._after_prompt(run)

    def reset(self) -> None:
        """Forget the prompts; the client zeroes its buffer, and so does the mirror."""
        self.session.reset()
        if self.buffer is not None:
            self.buffer.fill(0)

    def undo(self) -> Change:
        if not self.session.undo():
            return Change(ran=False)
        return self._sync()

    def predict(self) -> Change:
        if not self.session.has_prompts:
            return Change(ran=False)
        self._require_buffer()
        self.session.predict()
        return self._sync()

    # ------------------------------------------------------------------ helpers
    def _after_prompt(self, run: bool) -> Change:
        if not run:
            return Change(ran=False)
        return self.predict()

    def _box(self, coords: Sequence[Sequence[float]]) -> Box:
        """The protocol's half-open box -> Box (inclusive bounds), clipped to the image."""
        shape = self.session.shape
        if len(coords) != 3 or any(len(c) != 2 for c in coords):
            raise ValueError(f"a box needs [lo, hi) per axis (z, y, x), got {coords}")
        lo, hi = [], []
        for (a, b), size in zip(coords, shape, strict=True):
            if not (math.isfinite(a) and math.isfinite(b)) or b <= a:
                raise ValueError(f"box {coords} is empty or not finite on an axis")
            a, b = min(max(round(a), 0), size - 1), min(max(round(b), 1), size)
            lo.append(a)
            hi.append(max(b, a + 1) - 1)  # inclusive; never empty
        if lo[0] == hi[0]:
            return Box.on_slice(lo[0], lo[1], hi[1], lo[2], hi[2])
        if lo[1] == hi[1] or lo[2] == hi[2]:
            raise ValueError(
                "a 2D box must be drawn on a slice of the first image axis (z, axial in napari's and "
                "Slicer's default order); this model has no encoding for rectangles on y or x slices"
            )
        return Box(lo[0], hi[0], (lo[0] + hi[0]) // 2, lo[1], hi[1], lo[2], hi[2])

    def _require_buffer(self) -> np.ndarray:
        if self.buffer is None:
            raise ValueError("no target buffer: call set_target_buffer after set_image")
        return self.buffer

    def _sync(self) -> Change:
        """Bring the mirror up to the session's mask of the object; return what changed."""
        buffer = self._require_buffer()
        labels = self.session.labels
        mask = (
            np.zeros(buffer.shape, buffer.dtype)
            if labels is None
            else (labels == OBJECT).astype(buffer.dtype)
        )
        region = changed_region(buffer, mask)
        if region is None:
            return Change(ran=True)
        buffer[region] = mask[region]
        return Change(ran=True, region=region, values=np.ascontiguousarray(buffer[region]))
