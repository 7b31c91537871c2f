"""Tests of model.roi: ROI choice in mm, zoom-out, border test, grid mapping and the crop/paste-back
round trip (issue 4, "ROI crop and paste-back round trip")."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model.boxes import Box
from model.config import ModelConfig
from model.prompts import ClassPrompts
from model.roi import (
    Roi,
    choose_roi,
    grid_to_roi,
    label_extents,
    local_roi,
    object_extent,
    resample_to_grid,
    tiles,
    zoom_out,
)

CFG = ModelConfig()  # box_margin 1.6, min_aspect 0.5, min_roi_mm 24, default_roi_mm 96, min_roi_vox 8


def _ext(lo, hi):
    return np.asarray(lo, float), np.asarray(hi, float)


def _inside(roi: Roi) -> bool:
    return all(0 <= a < b <= s for a, b, s in zip(roi.lo, roi.hi, roi.shape, strict=True))


# ------------------------------------------------------------------------------------ choose_roi


def test_choose_roi_margin_times_extent_centred() -> None:
    # extent 20 x 30 x 30 voxels at 1 mm: sides 1.6x = 32, 48, 48 (min_aspect 24 and 24 mm don't bind)
    roi = choose_roi((100, 100, 100), (1.0, 1.0, 1.0), _ext((10, 20, 20), (29, 49, 49)), CFG)
    assert roi.size == (32, 48, 48)
    assert roi.lo == (4, 11, 11) and roi.hi == (36, 59, 59)  # centred on (20, 35, 35)
    assert roi.shape == (100, 100, 100)


def test_choose_roi_stays_inside_the_volume() -> None:
    shape = (30, 60, 50)
    for lo, hi in [((0, 0, 0), (5, 9, 9)), ((25, 50, 40), (29, 59, 49)), ((0, 50, 0), (29, 59, 3))]:
        roi = choose_roi(shape, (2.0, 0.8, 0.8), _ext(lo, hi), CFG)
        assert _inside(roi), roi
        # the ROI still covers the whole extent after it was shifted inside
        assert all(
            r_lo <= e_lo and e_hi < r_hi
            for r_lo, r_hi, e_lo, e_hi in zip(roi.lo, roi.hi, lo, hi, strict=True)
        )
    # an ROI larger than the volume is the whole axis, never padded
    roi = choose_roi((10, 200, 200), (1.0, 1.0, 1.0), _ext((2, 50, 50), (7, 149, 149)), CFG)
    assert roi.lo[0] == 0 and roi.hi[0] == 10
    assert roi.size[1:] == (160, 160)


def test_choose_roi_scales_with_spacing_in_mm() -> None:
    # a tiny object: the 24 mm minimum binds -> 24 voxels at 1 mm, 48 voxels at 0.5 mm
    ext = _ext((50, 50, 50), (51, 51, 51))
    assert choose_roi((200, 200, 200), (1.0, 1.0, 1.0), ext, CFG).size == (24, 24, 24)
    assert choose_roi((200, 200, 200), (0.5, 0.5, 0.5), ext, CFG).size == (48, 48, 48)
    # anisotropic: 24 mm / (3, 1, 0.5) mm -> 8, 24, 48 voxels
    assert choose_roi((200, 200, 200), (3.0, 1.0, 0.5), ext, CFG).size == (8, 24, 48)


def test_choose_roi_min_aspect() -> None:
    # one slice thick, 40 x 40 in-plane at 1 mm: z side = 0.5 x 64 = 32 (not 1.6)
    ext = _ext((50, 40, 40), (50, 79, 79))
    assert choose_roi((100, 120, 120), (1.0, 1.0, 1.0), ext, CFG).size == (32, 64, 64)
    # with 4 mm slices: z side 32 mm -> 8 slices
    assert choose_roi((100, 120, 120), (4.0, 1.0, 1.0), ext, CFG).size == (8, 64, 64)
    # min_aspect 0: the thin side is max(1.6 mm, 24 mm) = 24 voxels
    cfg = ModelConfig(min_aspect=0.0)
    assert choose_roi((100, 120, 120), (1.0, 1.0, 1.0), ext, cfg).size == (24, 64, 64)


def test_choose_roi_default_cube_for_a_single_click() -> None:
    p = np.array([100.0, 90.0, 110.0])
    roi = choose_roi((200, 200, 200), (1.0, 1.0, 1.0), (p, p), CFG)
    assert roi.size == (96, 96, 96)
    centre = (np.array(roi.lo) + np.array(roi.hi)) / 2.0
    assert np.all(np.abs(centre - (p + 0.5)) <= 1.0)
    # in mm: 96 mm at (3, 1.5, 0.75) mm -> 32, 64, 128 voxels
    roi = choose_roi((300, 300, 300), (3.0, 1.5, 0.75), (p, p), CFG)
    assert roi.size == (32, 64, 128)
    # no extent at all: the default cube around the volume centre (or the given centre)
    roi = choose_roi((200, 200, 200), (1.0, 1.0, 1.0), None, CFG)
    assert roi.size == (96, 96, 96) and roi.lo == (52, 52, 52)
    roi = choose_roi((200, 200, 200), (1.0, 1.0, 1.0), None, CFG, centre=np.array([10.0, 10.0, 10.0]))
    assert roi.lo == (0, 0, 0) and roi.hi == (96, 96, 96)


def test_choose_roi_min_roi_vox() -> None:
    # 24 mm at 10 mm slices would be 2.4 slices: min_roi_vox raises it to 8
    roi = choose_roi((50, 100, 100), (10.0, 1.0, 1.0), _ext((20, 50, 50), (20, 51, 51)), CFG)
    assert roi.size[0] == 8


# ---------------------------------------------------------------------------------- object_extent


BOX = Box(z_min=3, z_max=9, z_mid=6, y_min=10, y_max=30, x_min=20, x_max=40)
SP = (1.0, 1.0, 1.0)


def test_object_extent_from_box() -> None:
    lo, hi = object_extent(ClassPrompts(label=1, box=BOX), None, SP)
    np.testing.assert_array_equal(lo, [3, 10, 20])
    np.testing.assert_array_equal(hi, [9, 30, 40])


def test_object_extent_one_slice_box_reaches_its_longer_side_in_z() -> None:
    # a viewer's rectangle on slice 20, 11 x 21 voxels of 1 mm; slices of 2 mm: the object is
    # assumed 21 mm deep (10.5 slices), centred on slice 20
    box = Box.on_slice(20, 10, 20, 30, 50)
    lo, hi = object_extent(ClassPrompts(label=1, box=box), None, (2.0, 1.0, 1.0))
    np.testing.assert_allclose(lo, [15.25, 10, 30])
    np.testing.assert_allclose(hi, [24.75, 20, 50])
    assert (hi[0] - lo[0] + 1.0) * 2.0 == pytest.approx(21.0)
    roi = choose_roi((60, 100, 100), (2.0, 1.0, 1.0), (lo, hi), CFG)
    assert roi.lo[0] < 20 < roi.hi[0] - 1 and roi.size[0] * 2.0 >= 21.0  # more than the drawn slice


def test_object_extent_from_clicks_and_prev_bbox() -> None:
    p = ClassPrompts(label=1, fg=[(5, 50, 60), (2, 70, 55)], bg=[(0, 0, 0), (99, 99, 99)])
    lo, hi = object_extent(p, None, SP)  # background clicks say nothing about the object
    np.testing.assert_array_equal(lo, [2, 50, 55])
    np.testing.assert_array_equal(hi, [5, 70, 60])
    lo, hi = object_extent(p, (np.array([4, 40, 58]), np.array([12, 60, 59])), SP)
    np.testing.assert_array_equal(lo, [2, 40, 55])
    np.testing.assert_array_equal(hi, [12, 70, 60])
    lo, hi = object_extent(ClassPrompts(label=1, box=BOX, fg=[(11, 5, 30)]), None, SP)
    np.testing.assert_array_equal(lo, [3, 5, 20])
    np.testing.assert_array_equal(hi, [11, 30, 40])


def test_object_extent_none_without_prompts() -> None:
    assert object_extent(ClassPrompts(label=1, bg=[(1, 1, 1)]), None, SP) is None
    lo, hi = object_extent(ClassPrompts(label=1), (np.array([1, 2, 3]), np.array([4, 5, 6])), SP)
    np.testing.assert_array_equal(lo, [1, 2, 3])
    np.testing.assert_array_equal(hi, [4, 5, 6])


# -------------------------------------------------------------------------------------- zoom_out


def test_zoom_out_grows_given_axes_only() -> None:
    roi = Roi((40, 40, 40), (60, 60, 60), (100, 100, 100))
    z = zoom_out(roi, [1], 1.6)
    assert z.lo == (40, 34, 40) and z.hi == (60, 66, 60)
    z = zoom_out(roi, [0, 2], 2.0)
    assert z.lo == (30, 40, 30) and z.hi == (70, 60, 70)
    assert zoom_out(roi, [], 2.0) == roi


def test_zoom_out_stays_inside() -> None:
    roi = Roi((0, 5, 80), (20, 25, 100), (100, 30, 100))
    z = zoom_out(roi, [0, 1, 2], 2.0)
    assert z.lo == (0, 0, 60) and z.hi == (40, 30, 100)  # shifted in; y capped at the axis
    assert _inside(z)
    big = zoom_out(roi, [0, 1, 2], 50.0)
    assert big.lo == (0, 0, 0) and big.hi == (100, 30, 100)


def test_zoomed_out_grows_the_axes_the_mask_touches_or_says_none() -> None:
    roi = Roi((10, 10, 10), (20, 20, 20), (100, 100, 100))
    m = np.zeros((8, 8, 8), bool)
    assert roi.zoomed_out(m, 1.6) is None
    m[3, 0, 3] = True  # reaches the y face only
    assert roi.zoomed_out(m, 2.0) == zoom_out(roi, [1], 2.0)


# -------------------------------------------------------------------------------- touches_border


def test_touches_border_ignores_volume_faces() -> None:
    roi = Roi((0, 10, 10), (20, 30, 30), (20, 50, 50))  # z spans the whole volume
    grid = (8, 8, 8)
    m = np.zeros(grid, bool)
    m[0, 4, 4] = m[-1, 4, 4] = True  # both z faces are the volume's own faces
    assert roi.touches_border(m) == []
    m[3, 0, 4] = True  # an inner y face
    assert roi.touches_border(m) == [1]
    m[3, 4, -1] = True
    assert roi.touches_border(m) == [1, 2]
    assert roi.touches_border(np.zeros(grid, bool)) == []
    inner = np.zeros(grid, bool)
    inner[2:6, 1:7, 1:7] = True
    assert roi.touches_border(inner) == []
    # the same masks in an ROI whose y side is the volume's far face: only the near face counts
    roi2 = Roi((0, 30, 10), (20, 50, 30), (20, 50, 50))
    last_y = np.zeros(grid, bool)
    last_y[3, -1, 3] = True
    assert roi2.touches_border(last_y) == []
    first_y = np.zeros(grid, bool)
    first_y[3, 0, 3] = True
    assert roi2.touches_border(first_y) == [1]


# ----------------------------------------------------------------------------- grid coordinates


def test_to_grid_maps_voxel_centres() -> None:
    roi = Roi((10, 20, 30), (30, 60, 40), (100, 100, 100))  # size 20, 40, 10
    grid = (10, 10, 10)  # scale 0.5, 0.25, 1
    g = roi.to_grid(np.array([[10, 20, 30]]), grid)[0]
    np.testing.assert_allclose(g, [0.5 * 0.5 - 0.5, 0.5 * 0.25 - 0.5, 0.0])
    g = roi.to_grid(np.array([[29, 59, 39]]), grid)[0]  # last voxel of the ROI
    np.testing.assert_allclose(g, [10 - 0.25 - 0.5, 10 - 0.125 - 0.5, 9.0])
    # a grid voxel centre, expressed in volume coordinates, maps back to its index
    k = np.arange(10)
    for ax in range(3):
        vol = roi.lo[ax] + (k + 0.5) * roi.size[ax] / grid[ax] - 0.5
        pts = np.zeros((10, 3))
        pts[:, ax] = vol
        np.testing.assert_allclose(roi.to_grid(pts, grid)[:, ax], k, atol=1e-12)


def test_grid_spacing_and_slices() -> None:
    roi = Roi((10, 20, 30), (30, 60, 40), (100, 100, 100))
    np.testing.assert_allclose(roi.grid_spacing((2.0, 0.5, 1.0), (10, 10, 10)), [4.0, 2.0, 1.0])
    assert roi.slices == (slice(10, 30), slice(20, 60), slice(30, 40))
    assert roi.size == (20, 40, 10)


# ------------------------------------------------------------------------ resample / paste back


def test_resample_to_grid_block_mean_when_shrinking() -> None:
    crop = torch.rand(32, 32, 32)
    out = resample_to_grid(crop, (16, 16, 16))
    assert out.shape == (1, 16, 16, 16)
    expected = crop.reshape(16, 2, 16, 2, 16, 2).mean(dim=(1, 3, 5))
    torch.testing.assert_close(out[0], expected, atol=1e-6, rtol=0)


def test_resample_to_grid_multichannel_and_trilinear() -> None:
    crop = torch.rand(2, 20, 12, 9, dtype=torch.float64)
    out = resample_to_grid(crop, (16, 16, 16))
    assert out.shape == (2, 16, 16, 16) and out.dtype == torch.float32
    ref = F.interpolate(crop[None].float(), size=(16, 16, 16), mode="trilinear", align_corners=False)[0]
    torch.testing.assert_close(out, ref)
    # a uint8 crop is accepted and a constant stays constant
    const = resample_to_grid(torch.full((10, 40, 7), 7, dtype=torch.uint8), (16, 16, 16))
    assert torch.all(const == 7.0)


@pytest.mark.parametrize(
    ("size", "lo", "chunk"),
    [((37, 20, 45), (3, 0, 5), 5), ((10, 16, 70), (0, 4, 0), 32), ((16, 16, 16), (1, 1, 1), 4)],
)
def test_grid_to_roi_equals_trilinear(size, lo, chunk) -> None:
    torch.manual_seed(0)
    values = torch.rand(16, 16, 16)
    hi = tuple(a + s for a, s in zip(lo, size, strict=True))
    roi = Roi(lo, hi, (80, 80, 80))
    out = grid_to_roi(values, roi, chunk=chunk)
    assert out.dtype == torch.float16
    assert tuple(out.shape) == size
    ref = F.interpolate(values[None, None], size=size, mode="trilinear", align_corners=False)[0, 0]
    assert (out.float() - ref).abs().max().item() < 1e-3


def _fields(shape):
    z, y, x = torch.meshgrid(*(torch.arange(float(s)) for s in shape), indexing="ij")
    smooth = torch.cos(np.pi * z / shape[0]) * torch.sin(np.pi * y / shape[1]) + 0.3 * torch.cos(
        np.pi * x / shape[2]
    )
    linear = 0.1 * z + 0.05 * y - 0.02 * x
    return smooth, linear


def test_crop_to_grid_and_back_round_trip() -> None:
    shape = (24, 20, 28)
    vol_shape = (40, 40, 40)
    lo = (5, 10, 3)
    roi = Roi(lo, tuple(a + s for a, s in zip(lo, shape, strict=True)), vol_shape)
    smooth, linear = _fields(shape)
    volume = torch.zeros(vol_shape)
    volume[roi.slices] = smooth
    crop = volume[roi.slices]  # crop ...
    back = grid_to_roi(resample_to_grid(crop, (16, 16, 16))[0], roi).float()  # ... grid ... paste back
    assert back.shape == smooth.shape
    assert (back - smooth).abs().max().item() < 0.03  # amplitude ~1.3: a smooth field survives
    # a linear field is reproduced exactly away from the clamped edges (trilinear both ways)
    back = grid_to_roi(resample_to_grid(linear, (16, 16, 16))[0], roi).float()
    assert (back - linear)[2:-2, 2:-2, 2:-2].abs().max().item() < 2e-3
    # pasting back into a full-size array lands where the crop came from
    pasted = torch.zeros(vol_shape)
    pasted[roi.slices] = grid_to_roi(resample_to_grid(crop, (16, 16, 16))[0], roi).float()
    assert (pasted - volume).abs().max().item() < 0.03
    assert pasted[: lo[0]].abs().max().item() == 0.0


def test_to_volume_inverts_to_grid() -> None:
    roi = Roi((3, 10, 7), (43, 30, 57), (50, 40, 60))
    pts = np.array([[3.0, 10.0, 7.0], [20.5, 17.25, 33.0], [42.0, 29.0, 56.0]])
    assert np.allclose(roi.to_volume(roi.to_grid(pts, (16, 16, 16)), (16, 16, 16)), pts)


def test_local_roi_is_a_fraction_around_the_click_inside_the_object_roi() -> None:
    cfg = ModelConfig(min_roi_mm=8.0, min_roi_vox=4)
    around = Roi((0, 20, 20), (40, 120, 120), (60, 200, 200))
    roi = local_roi(np.array([20.0, 70.0, 70.0]), around, (2.0, 1.0, 1.0), cfg, 0.3)
    assert roi.size == (12, 30, 30)
    assert all(
        abs((lo + hi) / 2 - c) <= 1 for lo, hi, c in zip(roi.lo, roi.hi, (20.5, 70.5, 70.5), strict=True)
    )
    small = local_roi(
        np.array([20.0, 70.0, 70.0]), around, (2.0, 1.0, 1.0), ModelConfig(min_roi_mm=48.0), 0.1
    )
    assert small.size == (24, 48, 48)  # never below min_roi_mm
    edge = local_roi(np.array([59.0, 199.0, 0.0]), around, (2.0, 1.0, 1.0), cfg, 0.3)
    assert edge.hi[0] == 60 and edge.hi[1] == 200 and edge.lo[2] == 0  # kept inside the volume


def test_tiles_cover_the_roi_overlapping_and_stay_inside() -> None:
    roi = Roi((10, 20, 30), (50, 60, 70), (100, 100, 100))
    views = tiles(roi, 0.5, 3)
    assert len(views) == 27 and all(v.size == (20, 20, 20) for v in views)
    covered = np.zeros(roi.shape, np.int32)
    for v in views:
        assert all(a >= b for a, b in zip(v.lo, roi.lo, strict=True))
        assert all(a <= b for a, b in zip(v.hi, roi.hi, strict=True))
        covered[v.slices] += 1
    inside = covered[roi.slices]
    assert inside.min() >= 1 and inside.max() == 8  # every voxel seen; the middle by 2 per axis
    assert covered.sum() == inside.sum()  # nothing outside the ROI


def test_tiles_one_position_is_the_centre_and_a_voxel_at_least() -> None:
    roi = Roi((0, 0, 0), (2, 41, 40), (2, 41, 40))
    (view,) = tiles(roi, 0.5, 1)
    assert view.size == (1, 20, 20) and view.lo == (0, 10, 10)  # centred, half a voxel down where odd
    with pytest.raises(ValueError):
        tiles(roi, 0.0, 3)
    with pytest.raises(ValueError):
        tiles(roi, 0.5, 0)


def test_label_extents_are_inclusive_boxes_and_none_for_an_absent_label() -> None:
    labels = np.zeros((10, 12, 14), np.uint8)
    labels[2:5, 3:9, 0:1] = 1
    labels[9, 11, 13] = 3
    one, two, three = label_extents(labels, 3)
    assert one is not None and three is not None and two is None
    assert one[0].tolist() == [2, 3, 0] and one[1].tolist() == [4, 8, 0]
    assert three[0].tolist() == three[1].tolist() == [9, 11, 13]
