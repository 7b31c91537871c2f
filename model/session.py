"""An interactive session: one image, objects with their prompt history, and the current label map.

Why: one model core serves three faces. The challenge CLI replays a case file, the local
evaluation replays the evaluator's steps, and a viewer (serve.py) sends one prompt at a time.
Each face maps its input onto this small vocabulary and nothing else; the session turns its state
into a :class:`~model.case_io.Case` and asks :meth:`Predictor.predict_case`, so every face gets
the same prediction for the same prompts.

The vocabulary:

* :meth:`set_image` (image and spacing; starts afresh);
* :meth:`add_box`, :meth:`add_click` (foreground or background) for an object;
* :meth:`set_initial_mask` (one object's mask), :meth:`set_label_map` (every object's at once);
* :meth:`mark_done` (the evaluator's ``None``: the object's mask is final);
* :meth:`predict`, which returns a :class:`~model.predictor.Prediction` (segmentation, timings,
  the classes that fell back, the degradation level);
* :meth:`undo`, :meth:`reset`.

Objects are numbered 1..255 and object k is label k of the label map, as boxes[k-1] is label k
in a case file. A time budget is the CLI's business: :meth:`predict` takes one, a viewer passes
none. Undo keeps, per prompt, only the prompts before it and the label regions that changed
since, so a long session on a large volume does not hold a copy of the volume per step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from model.boxes import Box
from model.budget import Budget
from model.case_io import Case
from model.prompts import Point

if TYPE_CHECKING:  # the CLI imports the session before torch: the predictor arrives loaded
    from model.predictor import Prediction, Predictor

Region = tuple[slice, slice, slice]
MAX_OBJECTS = 255  # labels of a uint8 map


class SessionError(ValueError):
    """A verb that cannot apply to the session's state (no image, a point outside it ...)."""


@dataclass
class _Object:
    """Everything said about one object, in the order it was said."""

    box: Box | None = None
    fg: list[Point] = field(default_factory=list)
    bg: list[Point] = field(default_factory=list)
    order: list[str | None] = field(default_factory=list)  # "fg" / "bg" per click, None: marked done

    def copy(self) -> _Object:
        return _Object(self.box, list(self.fg), list(self.bg), list(self.order))


@dataclass
class _Frame:
    """What undoing one verb restores: the prompts before it, and the label regions changed since."""

    objects: dict[int, _Object]
    labels_were_none: bool
    patches: list[tuple[Region, np.ndarray]] = field(default_factory=list)


def changed_region(old: np.ndarray | None, new: np.ndarray | None) -> Region | None:
    """Bounding box (half-open slices) of the voxels where two label maps differ; a missing map
    counts as all zeros. None when they agree everywhere."""
    if old is None and new is None:
        return None
    diff = (new != 0) if old is None else (old != 0) if new is None else (old != new)
    axes = []
    for ax in range(3):
        hit = np.flatnonzero(diff.any(axis=tuple(a for a in range(3) if a != ax)))
        if hit.size == 0:
            return None
        axes.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return (axes[0], axes[1], axes[2])


class Session:
    """One image being segmented interactively with one predictor (see the module docstring)."""

    def __init__(self, predictor: Predictor, max_undo: int = 16) -> None:
        self.predictor = predictor
        self.max_undo = max_undo
        self.zoom_out = True
        self.name = "session"
        self._image: np.ndarray | None = None
        self._spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
        self._objects: dict[int, _Object] = {}
        self._labels: np.ndarray | None = None
        self._history: list[_Frame] = []

    # ------------------------------------------------------------------ state
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self._require_image().shape)  # type: ignore[return-value]

    @property
    def labels(self) -> np.ndarray | None:
        """The current uint8 label map (None before any mask or prediction). Do not modify it."""
        return self._labels

    @property
    def has_prompts(self) -> bool:
        """True when some object has a box, a click or a mask, i.e. predict has something to do."""
        if self._labels is not None:
            return True
        return any(o.box is not None or o.order for o in self._objects.values())

    # ------------------------------------------------------------------ verbs
    def set_image(self, image: np.ndarray, spacing: Sequence[float], name: str = "session") -> None:
        """A new image (z, y, x), any numeric dtype, and its spacing in mm (z, y, x). Forgets every
        object, mask and undo step. The array is kept, not copied."""
        image = np.asarray(image)
        if image.ndim != 3 or min(image.shape) == 0:
            raise SessionError(f"the image must be a non-empty 3-D array (z, y, x), got shape {image.shape}")
        if not (np.issubdtype(image.dtype, np.number) or image.dtype == np.bool_) or np.iscomplexobj(image):
            raise SessionError(f"the image dtype {image.dtype} is not a real number type")
        sp = tuple(float(v) for v in spacing)
        if len(sp) != 3 or not all(math.isfinite(v) and v > 0 for v in sp):
            raise SessionError(f"spacing must be 3 positive numbers (z, y, x) in mm, got {list(spacing)}")
        self._image, self._spacing, self.name = image, (sp[0], sp[1], sp[2]), name
        self.reset()

    def add_box(self, obj: int, box: Box) -> None:
        """The object's box (a later box replaces an earlier one: the model takes one per object)."""
        self._check_inside(box.lo, "box corner")
        self._check_inside(box.hi, "box corner")
        self._push()
        self._object(obj).box = box

    def add_click(self, obj: int, point: Sequence[int], foreground: bool) -> None:
        """A foreground (the object is here) or background (it is not) click at voxel (z, y, x)."""
        p = tuple(int(v) for v in point)
        if len(p) != 3:
            raise SessionError(f"a click needs 3 coordinates (z, y, x), got {list(point)}")
        self._check_inside(p, "click")
        self._push()
        o = self._object(obj)
        kind = "fg" if foreground else "bg"
        (o.fg if foreground else o.bg).append(p)  # type: ignore[arg-type]
        o.order.append(kind)

    def set_initial_mask(self, obj: int, mask: np.ndarray) -> None:
        """The object's mask, e.g. from an earlier tool: a new starting point, so its own prompts
        are cleared (as nnInteractive's initial segmentation does). Other objects keep theirs;
        where they overlapped the mask they lose those voxels."""
        mask = np.asarray(mask)
        if mask.shape != self.shape:
            raise SessionError(f"the mask has shape {mask.shape}, the image {self.shape}")
        self._push()
        self._object(obj)
        self._objects[obj] = _Object()
        labels = np.zeros(self.shape, np.uint8) if self._labels is None else self._labels.copy()
        labels[labels == obj] = 0
        labels[mask.astype(bool, copy=False)] = obj
        self._set_labels(labels)

    def set_label_map(self, labels: np.ndarray) -> None:
        """Every object's mask at once (label k = object k), as a case file's prev_pred: objects
        1..max label exist from now on, and keep their prompts."""
        labels = np.asarray(labels)
        if labels.shape != self.shape:
            raise SessionError(f"the label map has shape {labels.shape}, the image {self.shape}")
        if labels.dtype != np.uint8:
            raise SessionError(f"the label map must be uint8, got {labels.dtype}")
        self._push()
        for k in range(1, int(labels.max()) + 1 if labels.size else 1):
            self._object(k)
        self._set_labels(labels)

    def mark_done(self, obj: int) -> None:
        """The object's current mask is final (the evaluator's None): the next predictions keep it
        exactly, and other objects cannot take its voxels. A later click reopens it."""
        self._push()
        o = self._object(obj)
        if not o.order or o.order[-1] is not None:
            o.order.append(None)

    def set_zoom_out(self, enabled: bool) -> None:
        """Whether a prediction touching its ROI's border may grow the ROI (a viewer's toggle)."""
        self.zoom_out = bool(enabled)

    def predict(self, budget: Budget | None = None) -> Prediction:
        """Predict every object from its whole history; the result becomes the current label map.

        budget: the CLI's time budget for this step; None (a viewer) never degrades.
        """
        predictor = self.predictor if self.zoom_out else self.predictor.with_config(max_zoom_out=0)
        prediction = predictor.predict_case(self.case(), budget)
        self._set_labels(prediction.segs)
        return prediction

    def undo(self) -> bool:
        """Revert the last verb (its prompt and the label map it led to). False when there is
        nothing to undo."""
        if not self._history:
            return False
        frame = self._history.pop()
        self._objects = frame.objects
        if frame.labels_were_none:
            self._labels = None
        elif frame.patches:
            assert self._labels is not None
            labels = self._labels.copy()  # a caller may hold the current map: never change it in place
            for region, old in reversed(frame.patches):
                labels[region] = old
            self._labels = labels
        return True

    def reset(self) -> None:
        """Forget every object, mask and undo step; the image stays."""
        self._objects, self._labels, self._history = {}, None, []

    # ------------------------------------------------------------------ the core's view
    def case(self) -> Case:
        """The session's state as the case file a step of the challenge would hold."""
        image = self._require_image()
        n = max(self._objects, default=0)
        objs = [self._objects.get(k, _Object()) for k in range(1, n + 1)]
        boxes = [o.box for o in objs] if any(o.box is not None for o in objs) else None
        # click entries whenever there are clicks, and also without boxes, so that the case still
        # counts its objects (a mask alone, to be refined)
        clicked = n > 0 and (boxes is None or any(o.order for o in objs))
        return Case(
            name=self.name,
            imgs=image,
            spacing=self._spacing,
            boxes=boxes,
            clicks=[{"fg": list(o.fg), "bg": list(o.bg)} for o in objs] if clicked else None,
            clicks_order=[list(o.order) for o in objs] if clicked else None,
            prev_pred=self._labels,
        )

    # ------------------------------------------------------------------ helpers
    def _require_image(self) -> np.ndarray:
        if self._image is None:
            raise SessionError("no image: call set_image first")
        return self._image

    def _check_inside(self, point: Sequence[int], what: str) -> None:
        shape = self.shape
        if not all(0 <= int(c) < s for c, s in zip(point, shape, strict=True)):
            raise SessionError(f"{what} {tuple(int(c) for c in point)} lies outside the image {shape}")

    def _object(self, obj: int) -> _Object:
        if isinstance(obj, bool) or not isinstance(obj, (int, np.integer)) or not 1 <= obj <= MAX_OBJECTS:
            raise SessionError(f"objects are numbered 1..{MAX_OBJECTS}, got {obj!r}")
        return self._objects.setdefault(int(obj), _Object())

    def _push(self) -> None:
        """Remember the state before a verb, for undo (the oldest step goes beyond max_undo)."""
        self._require_image()
        self._history.append(_Frame({k: o.copy() for k, o in self._objects.items()}, self._labels is None))
        del self._history[: -self.max_undo or None]

    def _set_labels(self, labels: np.ndarray) -> None:
        """Replace the label map, recording what changed so the last verb can be undone."""
        old = self._labels
        region = changed_region(old, labels)
        if region is not None and self._history and old is not None:
            self._history[-1].patches.append((region, old[region].copy()))
        self._labels = labels
