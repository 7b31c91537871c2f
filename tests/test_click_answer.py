"""Tests of evaluation.click_answer: what an answer did to the error its click pointed at."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.click_answer import answers_of_case, report_lines, run_answers


def _cube() -> np.ndarray:
    gts = np.zeros((20, 20, 20), np.uint8)
    gts[5:15, 5:15, 5:15] = 1
    return gts


def test_the_share_of_the_clicked_error_fixed_and_what_changed_elsewhere() -> None:
    gts = _cube()
    before = gts.copy()
    before[5:8] = 0  # three slices of the object missed: a 300-voxel error, a foreground click
    after = gts.copy()
    after[5] = 0  # two of the three slices mended (200 voxels)
    after[17:19, 0:2, 0:2] = 1  # and 8 false voxels far from the object
    (a,) = answers_of_case(np.stack([before, after]), gts)
    assert a.kind == "fg" and a.component == 300 and a.fixed == 200
    assert a.fixed_share == pytest.approx(2 / 3)
    assert (a.broken_elsewhere, a.mended_elsewhere) == (8, 0)
    assert a.dice_before == pytest.approx(2 * 700 / 1700)
    assert a.dice_after == pytest.approx(2 * 900 / (908 + 1000))


def test_a_background_click_and_a_perfect_object_gets_no_click() -> None:
    gts = _cube()
    gts[0:3, 0:3, 0:3] = 2  # a second object, always answered perfectly
    before = gts.copy()
    before[15:18, 5:15, 5:15] = 1  # 300 false voxels beside the cube: a background click
    after = gts.copy()  # all of them removed
    answers = answers_of_case(np.stack([before, after]), gts)
    assert [(a.kind, a.component, a.fixed, a.broken_elsewhere) for a in answers] == [("bg", 300, 300, 0)]


def test_missed_voxels_a_neighbour_held_and_those_the_answer_took() -> None:
    """Object 1's first three slices are held by object 2 (grown over them): the foreground
    click's error is those 300 missed voxels, all held; the answer takes two slices back."""
    gts = _cube()
    gts[0:5, 5:15, 5:15] = 2  # the neighbour, just above the cube
    before = gts.copy()
    before[5:8, 5:15, 5:15] = 2
    after = gts.copy()
    after[5, 5:15, 5:15] = 2
    fg = [a for a in answers_of_case(np.stack([before, after]), gts) if a.kind == "fg"]
    assert [(a.component, a.missed, a.held, a.taken) for a in fg] == [(300, 300, 300, 200)]
    line = [ln for ln in report_lines(fg) if "held by another object" in ln]
    assert line == [
        "  missed voxels in the clicked errors 300, held by another object 300 (100%), "
        "of those taken by the answer 200 (67%)"
    ]


def test_a_click_start_is_clicked_on_an_empty_mask_first() -> None:
    gts = _cube()
    steps = np.stack([gts] * 5)  # five click steps, no box step: the first answer is already right
    first, *rest = answers_of_case(steps, gts)
    assert (first.kind, first.component, first.fixed, first.dice_before) == ("fg", 1000, 1000, 0.0)
    assert rest == []  # a perfect object gets no more clicks


def test_a_run_folder_is_read_and_reported(tmp_path) -> None:
    gts = _cube()
    before = gts.copy()
    before[5:8] = 0
    (tmp_path / "segs").mkdir()
    (tmp_path / "gts").mkdir()
    np.savez_compressed(tmp_path / "segs" / "a.npz", segs=gts, all_segs=np.stack([before, gts]))
    np.savez_compressed(tmp_path / "gts" / "a.npz", gts=gts)
    answers = run_answers(tmp_path / "segs", tmp_path / "gts")
    assert len(answers) == 1 and answers[0].fixed_share == 1.0
    lines = report_lines(answers)
    assert lines[0].startswith("foreground clicks: 1; object DSC 0.824 -> 1.000")
    assert "mean 1.000, median 1.000, under half 0% of clicks" in lines[0]
    assert "error of     100-1000 voxels:    1 clicks, mean share fixed 1.000" in lines[2]
    assert report_lines([]) == ["no saved steps with clicks (run_local saves them unless --no-save-segs)"]
