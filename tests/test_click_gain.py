"""Tests of evaluation.click_gain: the click gain, the drops and the volume ratio of a run folder."""

from __future__ import annotations

import csv

import numpy as np

from evaluation.click_gain import (
    first_click_lines,
    first_click_ratios,
    main,
    object_gains,
    report_lines,
    size_lines,
    volume_ratios,
)


def _run(tmp_path):
    run, gts = tmp_path / "model", tmp_path / "cases" / "gts"
    (run / "segs").mkdir(parents=True)
    gts.mkdir(parents=True)
    rows = [("a.npz", 1, [0.5, 0.6, 0.6, 0.6, 0.7, 0.7]), ("b.npz", 1, [0.8, 0.8, 0.7, 0.7, 0.7, 0.7]),
            ("c.npz", 0, [0.0, 0.2, 0.3, 0.3, 0.4, 0.5])]  # fmt: skip
    with (run / "metrics.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["CaseName", "Has_Boxes", *(f"DSC_{i}" for i in range(1, 7))])
        for name, boxed, dsc in rows:
            w.writerow([name, boxed, *dsc])
    gt = np.zeros((4, 10, 10), np.uint8)
    gt[:, :5] = 1  # 200 voxels
    seg = np.zeros_like(gt)
    seg[:, :6] = 1  # 240
    np.savez(gts / "a.npz", gts=gt)
    np.savez(run / "segs" / "a.npz", segs=seg)
    return run


def test_click_gain_figures(tmp_path, capsys) -> None:
    run = _run(tmp_path)
    assert volume_ratios(run / "segs", tmp_path / "cases" / "gts") == [1.2]
    main([str(run)])
    out = capsys.readouterr().out
    assert "boxed cases: 2; mean DSC gain box -> click5: +0.050" in out
    assert "mean DSC per step (box, clicks 1-5): 0.650 0.700 0.650 0.650 0.700 0.700" in out
    assert "worst change: b.npz -0.100" in out
    assert "more than 0.02 worse after 5 clicks: 1 ['b.npz']" in out
    assert "no-box cases: 1; mean DSC gain click1 -> click5: +0.300" in out
    assert "median 1.20" in out


def test_object_gains_by_size(tmp_path) -> None:
    """Two objects: the small one goes from DSC 0 to 1 over the clicks, the large one stays
    perfect; a case saved without a box step (five steps) is left out."""
    segs, gts = tmp_path / "segs", tmp_path / "gts"
    segs.mkdir()
    gts.mkdir()
    gt = np.zeros((4, 40, 40), np.uint8)
    gt[:, :2, :2] = 3  # 16 voxels, relabelled 1 (sorted first)
    gt[:, 10:40, :] = 7  # 4 800 voxels, relabelled 2
    steps = np.zeros((6, *gt.shape), np.uint8)
    steps[:, 10:40, :] = 2
    steps[5][gt == 3] = 1
    np.savez(gts / "a.npz", gts=gt)
    np.savez(segs / "a.npz", segs=steps[5], all_segs=steps)
    np.savez(gts / "b.npz", gts=gt)
    np.savez(segs / "b.npz", segs=steps[4], all_segs=steps[1:])
    gains = object_gains(segs, gts)
    assert gains == [(16, 1.0), (4800, 0.0)]
    lines = size_lines(gains + [(50, -0.5)])
    assert lines[0].startswith("per object of the boxed cases (3)")
    assert "0-1000:    2 objects, mean +0.250, 1 worse by > 0.02" in lines[1]
    assert "1000-10000:    1 objects, mean +0.000, 0 worse by > 0.02" in lines[2]
    assert len(lines) == 3  # no line for the empty bands
    assert size_lines([]) == []


def test_first_click_volume_by_size(tmp_path) -> None:
    """A clicks-only case (five saved steps): the small object is found twice too big at the first
    click, the large one a tenth; a case with a box step (six steps) is left out."""
    segs, gts = tmp_path / "segs", tmp_path / "gts"
    segs.mkdir()
    gts.mkdir()
    gt = np.zeros((4, 40, 40), np.uint8)
    gt[:, :2, :2] = 3  # 16 voxels, relabelled 1
    gt[:, 10:40, :] = 7  # 4 800 voxels, relabelled 2
    steps = np.zeros((5, *gt.shape), np.uint8)
    steps[0, :, :4, :2] = 1  # 32 voxels: ratio 2
    steps[0, :, 10:13, :] = 2  # 480 voxels: ratio 0.1
    np.savez(gts / "a.npz", gts=gt)
    np.savez(segs / "a.npz", segs=steps[4], all_segs=steps)
    np.savez(gts / "b.npz", gts=gt)
    np.savez(segs / "b.npz", segs=steps[4], all_segs=np.concatenate([steps[:1], steps]))
    ratios = first_click_ratios(segs, gts)
    assert ratios == [(16, 2.0), (4800, 0.1)]
    lines = first_click_lines(ratios + [(20, 1.0)])
    assert lines[0].startswith("per object of the no-box cases (3)")
    assert "0-1000:    2 objects, median 1.50 (min 1.00, max 2.00)" in lines[1]
    assert "1000-10000:    1 objects, median 0.10 (min 0.10, max 0.10)" in lines[2]
    assert len(lines) == 3
    assert first_click_lines([]) == []


def test_a_clicks_only_run_prints_no_boxed_figures(tmp_path) -> None:
    """A run of no-box cases only (a clicks-only sweep) reports its click gain and no boxed means."""
    run = tmp_path / "model"
    run.mkdir()
    with (run / "metrics.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["CaseName", "Has_Boxes", *(f"DSC_{i}" for i in range(1, 7))])
        w.writerow(["c.npz", 0, 0.0, 0.2, 0.3, 0.3, 0.4, 0.5])
    lines = report_lines(run)
    assert lines == ["boxed cases: 0", "no-box cases: 1; mean DSC gain click1 -> click5: +0.300"]
