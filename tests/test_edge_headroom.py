"""evaluation/edge_headroom.py: a perfect edge correction's NSD, and the card's snap offline."""

from __future__ import annotations

import json

import numpy as np
from scipy import ndimage

from evaluation.edge_headroom import band_fixed_nsd, main, offline_regions
from evaluation.metrics import score_step
from model.config import ModelConfig

SPACING = [1.0, 1.0, 1.0]


def _ball(shape, centre, radius) -> np.ndarray:
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius**2


def _case():
    shape = (32, 40, 40)
    gts = _ball(shape, (16, 20, 20), 8).astype(np.uint8)
    gts[_ball(shape, (16, 20, 32), 4)] = 2
    segs = np.zeros(shape, np.uint8)
    segs[ndimage.binary_dilation(gts == 1, iterations=5) & (gts != 2)] = 1  # five voxels too large
    segs[ndimage.binary_erosion(gts == 2)] = 2  # one voxel too small
    return gts, segs


def test_a_band_as_wide_as_the_error_makes_it_right() -> None:
    gts, segs = _case()
    base = score_step(gts, segs, SPACING).nsd
    one, three = (band_fixed_nsd(gts, segs, SPACING, k) for k in (1, 3))
    assert base < one < three == 1.0
    assert band_fixed_nsd(gts, gts, SPACING, 1) == 1.0


def test_offline_regions_are_the_predictors_roi_around_each_mask() -> None:
    """The ROI rule's margin about the mask's centre, and its floors: a side below
    `min_aspect` of the longest side is raised to it."""
    segs = np.zeros((40, 40, 40), np.uint8)
    segs[16:24, 10:30, 18:22] = 1  # 8 x 20 x 4 voxels
    cfg = ModelConfig(box_margin=1.5, min_aspect=0.5, min_roi_mm=0.0, min_roi_vox=1)
    ((label, region),) = offline_regions(segs, (1.0, 1.0, 1.0), cfg)
    # sides 12, 30 and 6 voxels -> 15, 30, 15 (half of 30), each about the mask's centre
    assert label == 1 and region == (slice(12, 27), slice(5, 35), slice(12, 27))


def test_the_cli_prints_every_case_and_the_snap_helps_a_blurred_object(tmp_path, capsys) -> None:
    """3 mm voxels (NSD forgives 2 mm): an answer one voxel too large all round misses the
    tolerance; a one-voxel band set right fixes it all, and the snap much of it."""
    gts = _ball((32, 40, 40), (16, 20, 20), 8).astype(np.uint8)
    segs = ndimage.binary_dilation(gts).astype(np.uint8)
    imgs = ndimage.gaussian_filter(np.where(gts > 0, 180.0, 60.0), 0.7).astype(np.uint8)
    for sub in ("imgs", "gts", "run/segs"):
        (tmp_path / sub).mkdir(parents=True)
    np.savez(tmp_path / "imgs/c.npz", imgs=imgs, spacing=np.array([3.0, 3.0, 3.0]))
    np.savez(tmp_path / "gts/c.npz", gts=gts)
    np.savez(tmp_path / "run/segs/c.npz", segs=segs, all_segs=np.stack([segs] * 6))
    cfg = ModelConfig(grid=(8, 8, 8), snap_band=1, snap_window_mm=12.0)
    (tmp_path / "w").mkdir()
    (tmp_path / "w/model.json").write_text(json.dumps({"config": cfg.to_dict()}))
    assert (
        main([str(tmp_path / "run"), "--cases", str(tmp_path), "--snap", "--weights", str(tmp_path / "w")])
        == 0
    )
    row = capsys.readouterr().out.splitlines()[2].split("|")
    dsc, nsd, band1, band2, dsc_snapped, nsd_snapped = (float(v) for v in row[2:8])
    assert nsd < band1 == band2 == 1.0
    assert dsc_snapped > dsc + 0.1 and nsd_snapped > nsd + 0.3
