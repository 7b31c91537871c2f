"""Tests of model.budget on a simulated clock: degrade in order, never overrun, log it."""

from __future__ import annotations

import logging

import pytest

from model.budget import Budget, Level, process_age_s


class FakeClock:
    """A clock the test advances by hand."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_deadline_and_remaining() -> None:
    clock = FakeClock()
    b = Budget(4, clock=clock, reserve_s=5.0)  # 90 * 4 / 6 = 60 s per step
    assert b.step_s == pytest.approx(60.0)
    assert b.deadline == pytest.approx(1055.0)
    assert b.remaining() == pytest.approx(55.0)
    clock.t += 50.0
    assert b.elapsed() == pytest.approx(50.0)
    assert b.remaining() == pytest.approx(5.0)
    assert not b.expired()
    clock.t += 6.0
    assert b.expired()
    # no-box cases have 5 starts; an explicit earlier start counts the time before the Budget
    assert Budget(1, clock=clock, start=clock.t - 2.0, steps=5, reserve_s=0.0).remaining() == pytest.approx(
        16.0
    )


def test_full_when_everything_fits(caplog: pytest.LogCaptureFixture) -> None:
    b = Budget(10, clock=FakeClock(), reserve_s=0.0, slack=1.0)  # 150 s
    with caplog.at_level(logging.WARNING, logger="model.budget"):
        p = b.plan(seconds_per_class=2.0, classes_left=10, zoom_outs_left=5, tail_s=10.0)
    assert p.level == Level.FULL and p.allow_zoom_out and not p.coarse_grid
    assert p.classes_to_run == 10 and p.projected_s == pytest.approx(30.0)
    assert p.remaining_s == pytest.approx(140.0)
    assert caplog.records == []


def test_degrades_in_order_instead_of_overrunning(caplog: pytest.LogCaptureFixture) -> None:
    """A slow machine: each plan is followed, time advances by what was planned, and the step
    ends before its deadline where running everything at full quality would overrun it."""
    clock = FakeClock()
    # 1 class-equivalent budget: 3 classes -> 45 s per step, minus 5 s reserve = 40 s
    b = Budget(3, clock=clock, reserve_s=5.0, coarse_factor=0.5, slack=1.0)
    levels = []
    with caplog.at_level(logging.WARNING, logger="model.budget"):
        clock.t += 10.0  # imports + weights + first pass of class 1 (10 s / class)
        p = b.plan(seconds_per_class=10.0, classes_left=2, zoom_outs_left=2, tail_s=2.0)
        # 28 s left: 2 classes + 2 zoom-outs = 40 s do not fit, 2 classes = 20 s do
        levels.append(p.level)
        assert p.level == Level.NO_ZOOM_OUT and not p.allow_zoom_out and not p.coarse_grid
        assert p.classes_to_run == 2 and p.remaining_s == pytest.approx(28.0)
        clock.t += 13.0  # class 2 ran slower than measured
        p = b.plan(seconds_per_class=11.5, classes_left=1, zoom_outs_left=1, tail_s=2.0)
        # 15 s left: a full pass (11.5 s) fits, but zoom-outs stay off once given up
        levels.append(p.level)
        assert p.level == Level.NO_ZOOM_OUT and p.classes_to_run == 1
        clock.t += 11.5
        assert b.remaining() == pytest.approx(5.5)

    # The same step on a slower machine: coarse grid, then prev_pred for what is left.
    clock2 = FakeClock()
    b2 = Budget(3, clock=clock2, reserve_s=5.0, coarse_factor=0.5, slack=1.0)
    with caplog.at_level(logging.WARNING, logger="model.budget"):
        clock2.t += 20.0
        p = b2.plan(seconds_per_class=16.0, classes_left=2, zoom_outs_left=0, tail_s=2.0)
        # 18 s left: 2 x 16 = 32 no, coarse 2 x 8 = 16 yes
        levels.append(p.level)
        assert p.level == Level.COARSE_GRID and p.coarse_grid and p.classes_to_run == 2
        assert p.projected_s == pytest.approx(16.0)
        clock2.t += 12.0  # the first coarse class took 12 s, not 8
        p = b2.plan(seconds_per_class=24.0, classes_left=1, zoom_outs_left=0, tail_s=2.0)
        # 6 s left, one coarse class now costs 12 s: prev_pred for it
        levels.append(p.level)
        assert p.level == Level.PREV_PRED and p.classes_to_run == 0 and p.coarse_grid
        assert p.remaining_s == pytest.approx(6.0)
    assert b2.remaining() > 0  # nothing else runs: the step ends inside its budget

    assert levels == sorted(levels)  # never back to a milder level
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(messages) == 3  # one per rise: NO_ZOOM_OUT, COARSE_GRID, PREV_PRED
    assert "NO_ZOOM_OUT" in messages[0]
    assert "COARSE_GRID" in messages[1]
    assert "PREV_PRED" in messages[2] and "1 keep prev_pred" in messages[2]


def test_prev_pred_runs_as_many_classes_as_fit() -> None:
    clock = FakeClock()
    b = Budget(30, clock=clock, reserve_s=0.0, coarse_factor=0.25, slack=1.2)  # 450 s
    clock.t += 400.0
    p = b.plan(seconds_per_class=10.0, classes_left=20)  # coarse class: 10 * 1.2 * 0.25 = 3 s
    assert p.level == Level.PREV_PRED
    assert p.classes_to_run == 16  # floor(50 / 3)
    assert p.projected_s == pytest.approx(48.0)
    clock.t += 100.0  # past the deadline: nothing more runs
    p = b.plan(seconds_per_class=10.0, classes_left=4)
    assert p.level == Level.PREV_PRED and p.classes_to_run == 0


def test_time_measured_on_the_coarse_grid_is_not_discounted_twice() -> None:
    clock = FakeClock()
    b = Budget(6, clock=clock, reserve_s=0.0, coarse_factor=0.5, slack=1.0)  # 90 s
    clock.t += 60.0
    assert b.plan(seconds_per_class=20.0, classes_left=2).level == Level.COARSE_GRID  # 2 x 10 <= 30
    # the next pass ran coarse at 10 s per class: that is 20 s at the full grid, 10 s coarse
    p = b.plan(seconds_per_class=10.0, classes_left=3, measured_on_coarse=True)
    assert p.level == Level.COARSE_GRID and p.classes_to_run == 3 and p.projected_s == pytest.approx(30.0)
    p = b.plan(seconds_per_class=10.0, classes_left=4, measured_on_coarse=True)
    assert p.level == Level.PREV_PRED and p.classes_to_run == 3


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        Budget(0)
    with pytest.raises(ValueError):
        Budget(1, coarse_factor=0.0)
    with pytest.raises(ValueError):
        Budget(1).plan(seconds_per_class=-1.0, classes_left=1)


def test_process_age_is_plausible() -> None:
    age = process_age_s()
    assert 0.0 <= age < 24 * 3600


def test_fits_projects_with_slack_and_never_changes_the_level() -> None:
    now = [0.0]
    b = Budget(1, clock=lambda: now[0], start=0.0, steps=6, reserve_s=4.0)  # deadline 11 s
    assert b.fits(5.0, tail_s=1.0)  # 6.0 <= 10
    assert not b.fits(9.0, tail_s=1.0)  # 10.8 > 10
    now[0] = 10.5
    assert not b.fits(0.0, tail_s=1.0) and b.fits(0.0)
    assert b.level == Level.FULL
