"""The click simulator against hand-made error maps and the documented rule."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import model.click_sim as cs
from model.click_sim import simulate_click, simulate_clicks


def _legacy_pick(n: int) -> int:
    """What the official sample_coord draws among n maxima: np.random.seed(42); choice(n)."""
    state = np.random.get_state()
    np.random.seed(42)
    idx = int(np.random.choice(n))
    np.random.set_state(state)
    return idx


def _largest_error(pred: np.ndarray, gt: np.ndarray):
    """The largest 26-connected error component, its bounding box and the rule's 25 % padding."""
    import cc3d

    error = pred != gt
    if not error.any():
        return None
    lab = cc3d.connected_components(error.astype(np.uint8), connectivity=26)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    comp = lab == np.argmax(sizes)
    coords = np.argwhere(comp)
    lo, hi = coords.min(0), coords.max(0) + 1
    pad = np.maximum(((hi - lo) * 0.25).astype(int), 1)
    return comp, lo, hi, pad


def _click_at_deepest(comp, lo, hi, dist_in_box, gt):
    """The click at the (legacy-drawn) maximum of the distance inside the component."""
    full = np.zeros(comp.shape)
    full[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = dist_in_box
    full *= comp
    if full.sum() == 0:
        full = comp
    maxima = np.argwhere(full == full.max())
    c = tuple(int(v) for v in maxima[_legacy_pick(len(maxima))])
    return ("fg" if gt[c] else "bg"), c


def _reference_click(pred: np.ndarray, gt: np.ndarray):
    """The rule written out plainly on the full volume (scipy EDT, 25 % padding)."""
    found = _largest_error(pred, gt)
    if found is None:
        return None
    comp, lo, hi, pad = found
    inner = tuple(slice(p, p + s) for p, s in zip(pad, hi - lo, strict=True))
    crop = np.zeros(tuple(hi - lo + 2 * pad), np.uint8)
    crop[inner] = comp[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
    dist = ndimage.distance_transform_edt(crop)
    return _click_at_deepest(comp, lo, hi, dist[inner], gt)


def test_identical_masks_give_none():
    gt = np.zeros((8, 8, 8), bool)
    gt[2:5, 2:5, 2:5] = True
    assert simulate_click(gt.copy(), gt) is None
    assert simulate_click(np.zeros_like(gt), np.zeros_like(gt)) is None


def test_deepest_voxel_of_an_undersegmented_cube_is_its_centre_fg():
    gt = np.zeros((15, 15, 15), bool)
    gt[3:10, 4:11, 5:12] = True  # 7x7x7 cube, centre (6, 7, 8)
    assert simulate_click(np.zeros_like(gt), gt) == ("fg", (6, 7, 8))


def test_oversegmentation_gives_bg_click_at_centre_of_the_extra_part():
    gt = np.zeros((20, 20, 20), bool)
    gt[2:7, 2:7, 2:7] = True
    pred = gt.copy()
    pred[10:19, 10:19, 10:19] = True  # 9^3 false positive, centre (14, 14, 14)
    assert simulate_click(pred, gt) == ("bg", (14, 14, 14))


def test_largest_component_wins_over_a_deeper_looking_smaller_one():
    gt = np.zeros((30, 30, 30), bool)
    gt[2:7, 2:7, 2:7] = True  # 125 voxels missed: a 5^3 cube, depth 3
    gt[15:17, 10:28, 10:28] = True  # 648 voxels missed: a thin slab, depth 1
    kind, (z, y, x) = simulate_click(np.zeros_like(gt), gt)
    assert kind == "fg" and z in (15, 16) and 10 <= y < 28 and 10 <= x < 28


def test_equal_size_components_tie_to_the_first_in_raster_order():
    gt = np.zeros((12, 12, 12), bool)
    gt[7:10, 7:10, 7:10] = True
    gt[1:4, 1:4, 1:4] = True  # same size, first in raster order
    assert simulate_click(np.zeros_like(gt), gt) == ("fg", (2, 2, 2))


def test_ties_in_depth_are_broken_like_the_official_seed_42_draw():
    gt = np.zeros((10, 10, 10), bool)
    gt[3:5, 3:5, 3:5] = True  # 2x2x2: all 8 voxels at depth 1
    expected = tuple(int(v) for v in np.argwhere(gt)[_legacy_pick(8)])
    assert simulate_click(np.zeros_like(gt), gt) == ("fg", expected)


def test_distance_is_to_the_component_not_to_the_image_border():
    # the whole volume is missed: depth must count the padding, not be capped by the array edge
    gt = np.ones((5, 9, 9), bool)
    kind, c = simulate_click(np.zeros_like(gt), gt)
    assert kind == "fg" and c[0] == 2 and 2 <= c[1] <= 6 and 2 <= c[2] <= 6
    assert (kind, c) == _reference_click(np.zeros_like(gt), gt)


def test_global_numpy_rng_is_left_alone():
    gt = np.zeros((6, 6, 6), bool)
    gt[1:3, 1:3, 1:3] = True
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    simulate_click(np.zeros_like(gt), gt)
    assert np.random.random() == expected


@pytest.mark.parametrize("large_path", [False, True])
def test_matches_the_plain_rule_on_random_error_maps(monkeypatch, large_path):
    if large_path:  # the >60M-voxel approximation, exercised on small crops
        monkeypatch.setattr(cs, "LARGE_ROI_VOXELS", 500)
    rng = np.random.default_rng(7)
    for trial in range(40):
        shape = tuple(int(s) for s in rng.integers(6, 24, size=3))
        gt = ndimage.gaussian_filter(rng.standard_normal(shape), rng.uniform(0.7, 2.5)) > 0.1
        kind = trial % 3
        if kind == 0:
            pred = ndimage.binary_dilation(gt, iterations=2)
        elif kind == 1:
            pred = np.roll(gt, int(rng.integers(-3, 4)), axis=int(rng.integers(0, 3)))
        else:
            pred = gt ^ (rng.random(shape) < 0.03)
        got = simulate_click(pred, gt)
        ref = _reference_click_large(pred, gt) if large_path else _reference_click(pred, gt)
        assert got == ref, trial


def _reference_click_large(pred, gt):
    """Plain rule of the >60M path: max-pool the padded crop 2x2x2 (zero-padded), EDT, repeat."""
    found = _largest_error(pred, gt)
    if found is None:
        return None
    comp, lo, hi, pad = found
    shape = hi - lo + 2 * pad
    if np.prod(shape) <= 500:
        return _reference_click(pred, gt)
    crop = np.zeros(tuple(shape + shape % 2), np.uint8)
    inner = tuple(slice(p, p + s) for p, s in zip(pad, hi - lo, strict=True))
    crop[inner] = comp[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
    pooled = np.zeros(tuple(s // 2 for s in crop.shape), np.uint8)
    for a in (0, 1):
        for b in (0, 1):
            for c in (0, 1):
                pooled = np.maximum(pooled, crop[a::2, b::2, c::2])
    dist = ndimage.distance_transform_edt(pooled).repeat(2, 0).repeat(2, 1).repeat(2, 2)
    return _click_at_deepest(comp, lo, hi, dist[inner], gt)


def test_edt_squared_distances_equal_scipy():
    rng = np.random.default_rng(3)
    for _ in range(10):
        m = np.pad(rng.random((9, 13, 11)) < 0.8, 1)
        ref = ndimage.distance_transform_edt(m) ** 2
        np.testing.assert_array_equal(np.asarray(cs._edt_sq(m), dtype=np.float64), np.round(ref))


def test_simulate_clicks_all_classes_with_a_perfect_one_and_non_sequential_labels():
    gts = np.zeros((16, 16, 16), np.uint8)
    gts[2:7, 2:7, 2:7] = 2  # class index 0 (label 2): missed entirely
    gts[9:14, 9:14, 9:14] = 5  # class index 1 (label 5): predicted perfectly
    segs = np.zeros_like(gts)
    segs[9:14, 9:14, 9:14] = 5
    segs[0, 15, 15] = 2  # a stray voxel of label 2: smaller than the missed cube
    clicks, order = simulate_clicks(segs, gts, None, None)
    assert order == [["fg"], [None]]
    assert clicks[0]["fg"] == [[4, 4, 4]] and clicks[0]["bg"] == []
    assert clicks[1] == {"fg": [], "bg": []}
    assert all(isinstance(v, np.int64) for v in clicks[0]["fg"][0])
    # second step: the inputs are copied, not modified, and clicks accumulate
    clicks2, order2 = simulate_clicks(segs, gts, clicks, order)
    assert order == [["fg"], [None]] and clicks[0]["fg"] == [[4, 4, 4]]
    assert order2 == [["fg", "fg"], [None, None]]
    assert clicks2[0]["fg"] == [[4, 4, 4], [4, 4, 4]]  # same error -> same click again


def test_simulate_clicks_casts_predictions_to_uint8_like_the_evaluator():
    gts = np.zeros((8, 8, 8), np.uint8)
    gts[2:6, 2:6, 2:6] = 1
    segs = gts.astype(np.int32) + 256 * (gts > 0)  # label 257 wraps to 1 in uint8
    _, order = simulate_clicks(segs, gts, None, None)
    assert order == [[None]]
