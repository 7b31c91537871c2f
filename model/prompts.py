"""Per-class prompt history, rebuilt from a case at every step.

Each container start is stateless, so every step recomputes each class from everything known:
its box, every click so far (None entries in clicks_order are perfect-class markers, not clicks)
and its label in prev_pred.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from model.boxes import Box

Point = tuple[int, int, int]


@dataclass
class ClassPrompts:
    """Everything the user said about one object (label = index + 1)."""

    label: int
    box: Box | None = None
    fg: list[Point] = field(default_factory=list)
    bg: list[Point] = field(default_factory=list)

    @property
    def has_prompt(self) -> bool:
        return self.box is not None or bool(self.fg)


def _unique(points: list[Point]) -> list[Point]:
    """The simulator repeats a click when an error persists; a repeat adds no information."""
    seen: dict[Point, None] = {}
    for p in points:
        seen.setdefault(tuple(int(v) for v in p), None)  # type: ignore[arg-type]
    return list(seen)


def class_prompts(
    n_classes: int,
    boxes: Sequence[Box | None] | None,
    clicks: list[dict[str, list[Point]]] | None,
) -> list[ClassPrompts]:
    """One ClassPrompts per class, in label order; repeats removed, bad entries tolerated (a None
    box: the class has no box)."""
    out = []
    for k in range(n_classes):
        box = boxes[k] if boxes is not None and k < len(boxes) else None
        entry = clicks[k] if clicks is not None and k < len(clicks) else None
        entry = entry or {}
        out.append(
            ClassPrompts(
                label=k + 1,
                box=box,
                fg=_unique(list(entry.get("fg") or [])),
                bg=_unique(list(entry.get("bg") or [])),
            )
        )
    return out


def ordered_clicks(
    entry: dict | None, order: Sequence[str | None] | None
) -> Iterator[tuple[str | None, Point | None]]:
    """A class's clicks as (kind, point) in the order they were given, with each None of its
    clicks_order as (None, None) where it stands (the evaluator marked the class done there).

    Clicks the order does not account for (no clicks_order, or a shorter one) follow, foreground
    first: every click is used once. The one reading of clicks_order that the case replay
    (infer.replay) and the click grow (model/click_grow.py) share.
    """
    entry = entry or {}
    left = {k: [tuple(int(v) for v in p) for p in (entry.get(k) or [])] for k in ("fg", "bg")}
    for kind in order or []:
        if kind is None:
            yield None, None
        elif kind in left and left[kind]:
            yield kind, left[kind].pop(0)  # type: ignore[misc]
    for kind in ("fg", "bg"):
        for p in left[kind]:
            yield kind, p  # type: ignore[misc]
