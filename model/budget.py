"""The per-case time budget of one container start, and how to degrade before running over.

Why: the organisers allow 90 s x n_classes of host wall-clock for *all* container starts of a
case together (one box step + 5 click steps, start-up and weight loading included each time),
and a case that runs over scores 0 on the final test. A step has no memory of the others (each
start is a fresh process), so each step takes an equal share: ``per_class_s * n_classes / steps``.
Part of that share is spent where this process cannot measure it (``docker run`` start-up, and
the interpreter before the budget exists), so a reserve is taken off the deadline.

When the work still queued will not fit, the step degrades in this order, mildest first, and
says so with ``logging.warning``:

1. ``NO_ZOOM_OUT``: no more zoom-out passes (predictions touching the ROI border stay as they are);
2. ``COARSE_GRID``: the remaining classes are predicted on a coarser network grid;
3. ``PREV_PRED``: only as many classes as still fit are predicted (coarse); the rest keep their
   ``prev_pred`` mask (or nothing on the box step), which is always a valid answer.

Optional passes that come in batches (the predictor's boundary views) ask :meth:`Budget.fits`
before each batch instead: they stop where the time ends and never change the level.

This module is the one place the rule lives. The CLI owns the budget (a viewer has none): it
makes one per case with :meth:`Budget.for_step`, counted from the process start for the first
case, and hands it to ``Predictor.predict_case``, which plans with it::

    budget = Budget.for_step(n_classes, has_boxes, start=time.monotonic() - process_age_s())
    ...
    t0 = budget.clock(); run_one_pass(batch); pass_s = budget.clock() - t0
    plan = budget.plan(seconds_per_class=pass_s / len(batch), classes_left=n_left,
                       zoom_outs_left=n_zoom, tail_s=fusion_and_write_estimate)
    if not plan.allow_zoom_out: ...
    if plan.coarse_grid: ...
    run only plan.classes_to_run of the queued classes; prev_pred for the rest

``plan`` never relaxes a level once taken within a step, so a lucky fast pass cannot flip the
step back to zoom-outs after other classes were already cut.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

log = logging.getLogger(__name__)

#: Seconds per class for all container starts of a case together (challenge rule).
PER_CLASS_S = 90.0
#: Container starts per case: the box step + 5 clicks (5 when the case has no boxes).
STEPS = 6
#: Container starts of a case without boxes: the organisers skip its box step.
STEPS_WITHOUT_BOXES = STEPS - 1
#: Default reserve for what this process cannot time: ``docker run`` start-up and tear-down,
#: the interpreter before ``start`` and a little scheduling noise.
RESERVE_S = 4.0


class Level(IntEnum):
    """How much a step gave up to stay inside its budget; higher is more degraded."""

    FULL = 0
    NO_ZOOM_OUT = 1
    COARSE_GRID = 2
    PREV_PRED = 3


@dataclass(frozen=True)
class Plan:
    """What the caller may still run.

    level: the degradation level in force (never lower than an earlier plan's in this step).
    allow_zoom_out: zoom-out passes may still run.
    coarse_grid: predict the remaining classes on the coarser grid.
    classes_to_run: how many of the queued classes to predict; the rest use ``prev_pred``.
    projected_s: projected seconds for the planned work, slack included.
    remaining_s: seconds left to the deadline when planned, after the tail estimate.
    """

    level: Level
    allow_zoom_out: bool
    coarse_grid: bool
    classes_to_run: int
    projected_s: float
    remaining_s: float


def case_allowance_s(n_classes: int) -> float:
    """Seconds all container starts of a case may take together."""
    return PER_CLASS_S * n_classes


def process_age_s() -> float:
    """Seconds since this process started (Linux /proc), 0.0 where unknown.

    Passing ``start=time.monotonic() - process_age_s()`` makes the budget count the interpreter
    start and the imports, which run before the predictor can create a Budget.
    """
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 (starttime), counted after "pid (comm)"
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


class Budget:
    """One step's time budget: ``per_class_s * n_classes / steps - reserve_s`` from ``start``.

    n_classes: classes of the case (len(boxes) or len(clicks)).
    clock: seconds, monotonic; injectable so tests can simulate time.
    start: when the step began on ``clock``'s scale (default: now). See ``process_age_s``.
    per_class_s, steps: the challenge rule; pass ``steps=5`` for a case without boxes (the
        organisers skip its box step), keep 6 when unsure.
    reserve_s: taken off the deadline for time the process cannot see (default ``RESERVE_S``).
    coarse_factor: cost of one class on the coarse grid relative to the full grid (the caller
        knows its grids: e.g. (coarse voxels / full voxels)); used to project level 2 and 3.
    slack: projections are multiplied by this, because pass times vary (first-pass warm-up,
        other processes on the machine).
    """

    def __init__(
        self,
        n_classes: int,
        clock: Callable[[], float] = time.monotonic,
        start: float | None = None,
        per_class_s: float = PER_CLASS_S,
        steps: int = STEPS,
        reserve_s: float = RESERVE_S,
        coarse_factor: float = 0.4,
        slack: float = 1.2,
    ) -> None:
        if n_classes < 1 or steps < 1:
            raise ValueError(f"Budget: n_classes ({n_classes}) and steps ({steps}) must be >= 1")
        if not 0.0 < coarse_factor <= 1.0 or slack < 1.0:
            raise ValueError("Budget: coarse_factor must be in (0, 1] and slack >= 1")
        self.clock = clock
        self.n_classes = int(n_classes)
        self.start = clock() if start is None else float(start)
        self.step_s = per_class_s * n_classes / steps
        self.reserve_s = float(reserve_s)
        self.coarse_factor = float(coarse_factor)
        self.slack = float(slack)
        self.level = Level.FULL

    @classmethod
    def for_step(cls, n_classes: int, has_boxes: bool, start: float | None = None, **kwargs: Any) -> Budget:
        """The budget of one container start of a case: its share of the case's allowance (6 starts
        share it, 5 when the case has no boxes). Other keyword arguments go to the constructor."""
        return cls(n_classes, start=start, steps=STEPS if has_boxes else STEPS_WITHOUT_BOXES, **kwargs)

    @property
    def deadline(self) -> float:
        """The time on ``clock``'s scale by which the step must have written its output."""
        return self.start + self.step_s - self.reserve_s

    def elapsed(self) -> float:
        """Seconds since ``start``."""
        return self.clock() - self.start

    def remaining(self) -> float:
        """Seconds left to the deadline (negative once past it)."""
        return self.deadline - self.clock()

    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def fits(self, seconds: float, tail_s: float = 0.0) -> bool:
        """Whether work projected at `seconds` (slack applied) still ends before the deadline, with
        `tail_s` left for what follows. For optional passes run batch by batch (the boundary
        views): it never changes the level, the caller just stops."""
        return seconds * self.slack <= self.remaining() - tail_s

    def plan(
        self,
        seconds_per_class: float,
        classes_left: int,
        zoom_outs_left: int = 0,
        tail_s: float = 0.0,
        measured_on_coarse: bool = False,
    ) -> Plan:
        """Pick the mildest level at which the queued work is projected to finish in time.

        seconds_per_class: measured cost of one class's forward pass at the full grid so far
            (a batched pass's time divided by its batch size), ROI crop and paste included.
        classes_left: classes whose main pass is still queued.
        zoom_outs_left: zoom-out passes (in classes) queued or expected after them.
        tail_s: what must still run after the network (fusion, writing the output).
        measured_on_coarse: ``seconds_per_class`` was measured on the coarse grid (after an
            earlier plan said ``coarse_grid``); it is scaled back to the full grid so that the
            coarse cost is not discounted twice.
        Logs a warning each time the level rises.
        """
        if classes_left < 0 or zoom_outs_left < 0 or seconds_per_class < 0:
            raise ValueError("Budget.plan: negative work or time")
        remaining = self.remaining() - tail_s
        if measured_on_coarse:
            seconds_per_class /= self.coarse_factor
        unit = seconds_per_class * self.slack
        coarse_unit = unit * self.coarse_factor
        options = [
            (Level.FULL, unit * (classes_left + zoom_outs_left)),
            (Level.NO_ZOOM_OUT, unit * classes_left),
            (Level.COARSE_GRID, coarse_unit * classes_left),
        ]
        level, projected, n_run = Level.PREV_PRED, 0.0, 0
        for lv, cost in options:
            if lv >= self.level and cost <= remaining:
                level, projected, n_run = lv, cost, classes_left
                break
        if level == Level.PREV_PRED:
            if coarse_unit > 0:
                fit = max(0.0, remaining) / coarse_unit
                n_run = min(classes_left, math.floor(fit))
            else:
                n_run = classes_left if remaining > 0 else 0
            projected = coarse_unit * n_run
        if level > self.level:
            log.warning(
                "time budget: degrading to %s (%.1f s left of a %.1f s step, %.2f s per class, "
                "%d classes + %d zoom-outs queued; %d classes will be predicted%s)",
                level.name,
                remaining,
                self.step_s - self.reserve_s,
                seconds_per_class,
                classes_left,
                zoom_outs_left,
                n_run,
                f", {classes_left - n_run} keep prev_pred" if n_run < classes_left else "",
            )
            self.level = level
        return Plan(
            level=level,
            allow_zoom_out=level == Level.FULL,
            coarse_grid=level >= Level.COARSE_GRID,
            classes_to_run=n_run,
            projected_s=projected,
            remaining_s=remaining,
        )
