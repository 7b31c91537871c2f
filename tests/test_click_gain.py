"""Tests of evaluation.click_gain: the click gain, the drops and the volume ratio of a run folder."""

from __future__ import annotations

import csv

import numpy as np

from evaluation.click_gain import main, volume_ratios


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
    assert "worst change: b.npz -0.100" in out
    assert "more than 0.02 worse after 5 clicks: 1 ['b.npz']" in out
    assert "no-box cases: 1; mean DSC gain click1 -> click5: +0.300" in out
    assert "median 1.20" in out
