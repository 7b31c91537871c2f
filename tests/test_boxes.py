"""Tests of model.boxes: sequential relabelling and the organisers' box rule (challenge_spec.md §4)."""

from __future__ import annotations

import numpy as np
import pytest

from model.boxes import BOX_KEYS, box_from_mask, box_prism, boxes_from_labels, relabel_sequential


def test_relabel_sequential_non_sequential_keeps_order() -> None:
    labels = np.array([[[0, 3, 7], [200, 3, 0]], [[7, 7, 200], [0, 0, 3]]], dtype=np.int32)
    out = relabel_sequential(labels)
    expected = np.array([[[0, 1, 2], [3, 1, 0]], [[2, 2, 3], [0, 0, 1]]])
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.uint8
    assert labels[0, 0, 1] == 3  # input untouched


def test_relabel_sequential_already_sequential_and_empty() -> None:
    labels = np.array([[[0, 1, 2, 2]]], dtype=np.int64)
    out = relabel_sequential(labels)
    np.testing.assert_array_equal(out, labels)
    assert out.dtype == np.uint8
    empty = relabel_sequential(np.zeros((2, 2, 2), np.int16))
    assert empty.shape == (2, 2, 2) and not empty.any()


def test_relabel_sequential_many_labels_uses_uint16() -> None:
    labels = (np.arange(300, dtype=np.int32) * 2 + 5).reshape(3, 10, 10)  # 300 labels, none is 0
    out = relabel_sequential(labels)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out.ravel(), np.arange(1, 301))


def _staircase(shape: tuple[int, int, int] = (10, 40, 50)) -> np.ndarray:
    """An object on slices 2, 3, 5, 7, 8 (slices 4 and 6 empty), a different rectangle on each."""
    m = np.zeros(shape, bool)
    m[2, 10:12, 10:12] = True
    m[3, 5:30, 8:20] = True
    m[5, 12:18, 20:33] = True  # unique_z = [2,3,5,7,8] -> z_mid = 5
    m[7, 1:39, 1:49] = True
    m[8, 20:21, 30:31] = True
    return m


def test_box_from_mask_exact_z_and_middle_slice_rectangle() -> None:
    m = _staircase()
    box = box_from_mask(m)  # rng None: no shift
    assert tuple(box) == (
        "z_min",
        "z_max",
        "z_mid",
        "z_mid_x_min",
        "z_mid_y_min",
        "z_mid_x_max",
        "z_mid_y_max",
    )
    assert set(box) == set(BOX_KEYS)
    assert box == {
        "z_min": 2,
        "z_max": 8,
        "z_mid": 5,  # unique_z[len // 2], not the voxel median (slice 7 holds most voxels)
        "z_mid_x_min": 20,
        "z_mid_y_min": 12,
        "z_mid_x_max": 32,  # inclusive
        "z_mid_y_max": 17,
    }
    assert all(type(v) is int for v in box.values())


def test_box_from_mask_even_number_of_slices_takes_upper_median() -> None:
    m = np.zeros((8, 8, 8), bool)
    m[1, 1, 1] = m[2, 2:4, 2] = m[4, 3, 3:6] = m[6, 0, 0] = True  # unique_z = [1,2,4,6] -> index 2 -> 4
    box = box_from_mask(m)
    assert (box["z_min"], box["z_mid"], box["z_max"]) == (1, 4, 6)
    assert (box["z_mid_y_min"], box["z_mid_y_max"], box["z_mid_x_min"], box["z_mid_x_max"]) == (3, 3, 3, 5)


def test_box_from_mask_random_shift_range_and_scaling() -> None:
    # H=128, W=512: shift_y = int(s*128/256) = s//2, shift_x = int(s*512/256) = 2s, s in 0..5.
    m = np.zeros((6, 128, 512), bool)
    m[1:5, 50:60, 200:260] = True
    seen = set()
    for seed in range(60):
        box = box_from_mask(m, np.random.default_rng(seed))
        dx = 200 - box["z_mid_x_min"]
        assert box["z_mid_x_max"] - 259 == dx
        s = dx // 2
        assert dx == 2 * s and 0 <= s <= 5
        dy = 50 - box["z_mid_y_min"]
        assert dy == int(s * 128 / 256)
        assert box["z_mid_y_max"] - 59 == dy
        assert (box["z_min"], box["z_max"], box["z_mid"]) == (1, 4, 3)  # z is never perturbed
        seen.add(s)
    assert seen == {0, 1, 2, 3, 4, 5}


def test_box_from_mask_shift_clipped_to_volume() -> None:
    m = np.zeros((3, 256, 256), bool)
    m[1, 0:3, 253:256] = True  # touches y=0 and x=W-1
    for seed in range(30):
        box = box_from_mask(m, np.random.default_rng(seed))
        assert box["z_mid_y_min"] == 0
        assert box["z_mid_x_max"] == 255
        s = 253 - box["z_mid_x_min"]
        assert 0 <= s <= 5
        assert box["z_mid_y_max"] == 2 + s  # W = H = 256: one voxel per shift unit


def test_box_from_mask_empty_raises() -> None:
    with pytest.raises(ValueError, match="empty"):
        box_from_mask(np.zeros((4, 4, 4), bool))


def test_boxes_from_labels_in_label_order() -> None:
    labels = np.zeros((10, 20, 20), np.uint8)
    labels[6:9, 2:4, 2:5] = 1
    labels[0:2, 10:15, 12:18] = 2
    labels[3, 5, 5] = 3
    boxes = boxes_from_labels(labels)
    assert len(boxes) == 3
    assert boxes[0] == {
        "z_min": 6,
        "z_max": 8,
        "z_mid": 7,
        "z_mid_x_min": 2,
        "z_mid_y_min": 2,
        "z_mid_x_max": 4,
        "z_mid_y_max": 3,
    }
    assert (boxes[1]["z_min"], boxes[1]["z_max"], boxes[1]["z_mid"]) == (0, 1, 1)
    assert (boxes[1]["z_mid_y_min"], boxes[1]["z_mid_y_max"]) == (10, 14)
    assert (boxes[1]["z_mid_x_min"], boxes[1]["z_mid_x_max"]) == (12, 17)
    assert boxes[2] == dict.fromkeys(BOX_KEYS, 5) | {"z_min": 3, "z_max": 3, "z_mid": 3}
    assert boxes_from_labels(np.zeros((3, 3, 3), np.uint8)) == []


def test_box_prism_slices_inclusive() -> None:
    box = {
        "z_min": 2,
        "z_max": 5,
        "z_mid": 3,
        "z_mid_x_min": 4,
        "z_mid_y_min": 1,
        "z_mid_x_max": 9,
        "z_mid_y_max": 7,
    }
    assert box_prism(box, (10, 20, 30)) == (slice(2, 6), slice(1, 8), slice(4, 10))
    vol = np.zeros((10, 20, 30), bool)
    vol[box_prism(box, vol.shape)] = True
    assert vol.sum() == 4 * 7 * 6


def test_box_prism_clipped_to_volume() -> None:
    box = {
        "z_min": -3,
        "z_max": 50,
        "z_mid": 3,
        "z_mid_x_min": -1,
        "z_mid_y_min": 18,
        "z_mid_x_max": 40,
        "z_mid_y_max": 25,
    }
    assert box_prism(box, (10, 20, 30)) == (slice(0, 10), slice(18, 20), slice(0, 30))
    # a box entirely outside one axis gives an empty (not negative) slice
    out = dict(box, z_mid_y_min=25, z_mid_y_max=30)
    sl = box_prism(out, (10, 20, 30))
    assert sl[1].stop >= sl[1].start
    assert np.zeros((10, 20, 30))[sl].size == 0
