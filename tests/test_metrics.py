"""Metrics against hand-computed cases and values of the organisers' SurfaceDice.py."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import cumulative_trapezoid

from evaluation import metrics as M


def _cube(shape=(30, 30, 30), lo=5, hi=15) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[lo:hi, lo:hi, lo:hi] = True
    return m


def _ellipsoids():
    z, y, x = np.ogrid[:20, :24, :28]
    gt = ((z - 9.5) / 7) ** 2 + ((y - 11.5) / 9) ** 2 + ((x - 13.5) / 10) ** 2 <= 1
    pred = ((z - 10.5) / 6) ** 2 + ((y - 12.0) / 9) ** 2 + ((x - 12.5) / 11) ** 2 <= 1
    return gt, pred


def test_identical_masks():
    gt = _cube()
    s = M.score_step(gt.astype(np.uint8), gt.astype(np.uint8), (1.0, 1.0, 1.0), extras=True)
    assert s.dsc == 1.0 and s.nsd == 1.0
    assert s.hd95 == 0.0 and s.asd == 0.0


def test_disjoint_masks_score_zero_and_skip_nsd():
    gt = _cube()
    pred = np.roll(gt, 15, axis=2)
    s = M.score_step(gt.astype(np.uint8), pred.astype(np.uint8), (1.0, 1.0, 1.0))
    assert s.dsc == 0.0 and s.nsd == 0.0


def test_shifted_cube_known_dice_and_distances():
    a = _cube()
    b = np.roll(a, 3, axis=0)  # 10^3 cube moved 3 voxels along axis 0
    assert M.dice(a, b) == pytest.approx(2 * 700 / 2000)
    sd = M.surface_distances(a, b, (1.0, 1.0, 1.0))
    assert M.hausdorff(sd, 100) == 3.0 and M.hausdorff(sd, 95) == 3.0
    assert sd.dist_gt_to_pred.min() == 0.0
    # the organisers' SurfaceDice.py gives these on the same masks
    assert M.surface_dice(sd, 2.0) == pytest.approx(0.7654281735477153, abs=1e-12)
    assert M.average_surface_distance(sd) == pytest.approx(1.0520321369726666, abs=1e-12)
    # within tolerance everywhere once the shift (3 voxels x 0.5 mm) is <= 2 mm
    assert M.surface_dice(M.surface_distances(a, b, (0.5, 1.0, 2.0)), 2.0) == 1.0


def test_anisotropic_spacing_nsd_uses_stored_order_and_extras_the_physical_one():
    a = _cube()
    b = np.roll(a, 3, axis=0)
    stored = (0.5, 1.0, 2.0)  # x, y, z as the npz stores it; array axis 0 is z (2.0 mm)
    s = M.score_step(a.astype(np.uint8), b.astype(np.uint8), stored, extras=True)
    # NSD applies 0.5 mm to axis 0 (official quirk): 3 voxels = 1.5 mm <= 2 mm
    assert s.nsd == 1.0
    # HD95 uses the physical spacing stored[::-1]: 3 voxels x 2.0 mm
    assert s.hd95 == pytest.approx(6.0)
    s2 = M.score_step(a.astype(np.uint8), b.astype(np.uint8), (2.0, 1.0, 0.5))
    assert s2.nsd == pytest.approx(0.8031803229081067, abs=1e-12)  # official value


@pytest.mark.parametrize(
    "spacing,nsd2,nsd1,hd95",
    [
        ((1.0, 1.0, 1.0), 0.9939299643551053, 0.8256599786235915, 2.0),
        ((0.7, 0.8, 3.0), 0.976386697709864, 0.8076577828696567, 1.6124515496597098),
        ((3.0, 0.8, 0.7), 0.9191112099481142, 0.7841282845900222, 3.1827660925679098),
    ],
)
def test_surface_metrics_match_the_official_implementation(spacing, nsd2, nsd1, hd95):
    gt, pred = _ellipsoids()
    sd = M.surface_distances(gt, pred, spacing)
    assert M.surface_dice(sd, 2.0) == pytest.approx(nsd2, abs=1e-12)
    assert M.surface_dice(sd, 1.0) == pytest.approx(nsd1, abs=1e-12)
    assert M.hausdorff(sd, 95) == pytest.approx(hd95, abs=1e-12)
    assert M.dice(gt, pred) == pytest.approx(0.8503110419906688, abs=1e-12)


def test_empty_prediction_of_one_class():
    gts = np.zeros((20, 20, 20), np.uint8)
    gts[2:8, 2:8, 2:8] = 1
    gts[10:16, 10:16, 10:16] = 2
    segs = np.where(gts == 2, 2, 0).astype(np.uint8)  # class 1 missing, class 2 perfect
    s = M.score_step(gts, segs, (1.0, 1.0, 1.0), extras=True)
    assert s.dsc_per_class == [0.0, 1.0] and s.dsc == 0.5
    assert s.nsd_per_class == [0.0, 1.0] and s.nsd == 0.5
    assert s.n_empty_pred == 1 and s.hd95 == 0.0  # the empty class is left out of HD95
    all_empty = M.score_step(gts, np.zeros_like(gts), (1.0, 1.0, 1.0), extras=True)
    assert all_empty.dsc == 0.0 and all_empty.nsd == 0.0 and np.isnan(all_empty.hd95)


def test_nsd_only_when_mean_dsc_above_0_2():
    gts = np.zeros((10, 10, 10), np.uint8)
    gts[5, 5, 0:5] = 1  # 5 voxels
    at = np.zeros_like(gts)
    at[5, 5, 4:9] = 1  # 5 voxels, 1 shared: DSC = 2/10 = 0.2 exactly
    s = M.score_step(gts, at, (1.0, 1.0, 1.0))
    assert s.dsc == pytest.approx(0.2) and s.nsd == 0.0
    above = np.zeros_like(gts)
    above[5, 5, 4:8] = 1  # 4 voxels, 1 shared: DSC = 2/9
    s = M.score_step(gts, above, (1.0, 1.0, 1.0))
    assert s.dsc == pytest.approx(2 / 9) and s.nsd > 0.5


def test_extra_predicted_labels_are_ignored_and_float_predictions_work():
    gts = np.zeros((10, 10, 10), np.uint8)
    gts[2:6, 2:6, 2:6] = 1
    segs = gts.astype(np.float32)
    segs[7:9, 7:9, 7:9] = 9.0  # a label absent from GT: no penalty
    s = M.score_step(gts, segs, (1.0, 1.0, 1.0))
    assert s.dsc == 1.0 and s.nsd == 1.0


def test_auc_is_the_trapezoid_over_the_five_click_steps():
    values = [0.9, 0.2, 0.4, 0.6, 0.8, 1.0]  # step 1 (box) does not count
    assert M.auc(values) == pytest.approx(0.2 / 2 + 0.4 + 0.6 + 0.8 + 1.0 / 2)
    assert M.auc(values) == pytest.approx(cumulative_trapezoid(np.array(values[-5:]), np.arange(5))[-1])
    assert M.auc([0, 1, 1, 1, 1, 1]) == 4.0  # a perfect model from click 1 on


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        M.score_step(np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 5), np.uint8), (1, 1, 1))
