"""Tests of evaluation.box_reach: how much of an object outside its box prism a run's answers find."""

from __future__ import annotations

import numpy as np

from evaluation.box_reach import main, object_reach, report_lines, run_reach
from model.boxes import Box


def test_object_reach_counts_the_voxels_outside_the_prism() -> None:
    true = np.zeros((4, 10, 10), bool)
    true[:, 2:6, 2:6] = True  # 64 voxels
    prism = np.zeros_like(true)
    prism[:, 2:6, 2:4] = True  # holds half of the object
    first = prism.copy()  # the box step keeps to the prism
    last = true.copy()
    last[:, 2:4, 4:6] = False  # the fifth click finds half of what lies outside
    r = object_reach(true, first, last, prism)
    assert (r.voxels, r.outside, r.found_first, r.found_last) == (64, 32, 0, 16)
    assert (r.answer_first, r.beyond_first, r.answer_last, r.beyond_last) == (32, 0, 48, 16)
    assert abs(r.dice_first - 2 * 32 / (64 + 32)) < 1e-9


def _write_run(tmp_path):
    """One boxed case of two objects saved with six steps, and one saved without a box step."""
    cases, gts, segs = tmp_path / "imgs", tmp_path / "gts", tmp_path / "model" / "segs"
    for d in (cases, gts, segs):
        d.mkdir(parents=True)
    labels = np.zeros((6, 12, 12), np.uint8)
    for z in range(6):
        labels[z, 1:3, z : z + 3] = 1  # a bar drifting in x: its middle slice's box misses the rest
    labels[:, 8:11, 8:11] = 2  # a straight column: wholly inside its box
    boxes = [Box(0, 5, 3, 1, 2, 3, 5).to_challenge(), Box(0, 5, 3, 8, 10, 8, 10).to_challenge()]
    imgs = np.zeros_like(labels)
    np.savez(cases / "a.npz", imgs=imgs, spacing=np.ones(3), boxes=np.array(boxes, dtype=object))
    np.savez(gts / "a.npz", gts=labels)
    box_step = labels.copy()
    box_step[(labels == 1) & ~np.isin(np.arange(12), [3, 4, 5])[None, None, :]] = 0  # kept to the prism
    np.savez(segs / "a.npz", segs=labels, all_segs=np.stack([box_step] + [labels] * 5))
    np.savez(cases / "b.npz", imgs=imgs, spacing=np.ones(3))
    np.savez(gts / "b.npz", gts=labels)
    np.savez(segs / "b.npz", segs=labels, all_segs=np.stack([labels] * 5))
    return cases, gts


def test_run_reach_reads_the_boxes_of_the_saved_case(tmp_path, capsys) -> None:
    cases, gts = _write_run(tmp_path)
    rows = list(run_reach(tmp_path / "model", cases, gts))
    assert len(rows) == 2  # b.npz has no box step
    bar, column = rows
    assert bar.voxels == 36 and bar.outside == 36 - 18 and bar.found_first == 0 and bar.found_last == 18
    assert column.outside == 0 and column.dice_first == 1.0
    lines = report_lines(rows)
    assert lines[0].startswith("2 boxed objects; mean share outside the box prism 0.250")
    assert "found at the box step 0.000, after the fifth click 1.000" in lines[1]
    main([str(tmp_path / "model"), "--cases", str(cases)])
    assert "0.0-0.1:    1 objects, mean 1.000" in capsys.readouterr().out


def test_report_without_boxed_cases() -> None:
    assert report_lines([]) == ["no boxed case saved with its steps"]
