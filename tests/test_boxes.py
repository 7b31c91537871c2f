"""Tests of model.boxes: the Box type, sequential relabelling and the organisers' box rule
(challenge_spec.md §4)."""

from __future__ import annotations

import numpy as np
import pytest

from model.boxes import BOX_KEYS, Box, box_from_mask, boxes_from_labels, relabel_sequential


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
    # z_mid = unique_z[len // 2], not the voxel median (slice 7 holds most voxels); bounds inclusive
    assert box == Box(z_min=2, z_max=8, z_mid=5, y_min=12, y_max=17, x_min=20, x_max=32)
    assert box.exact_z
    assert all(type(v) is int for v in (box.z_min, box.z_max, box.z_mid, box.y_min, box.x_max))
    challenge = box.to_challenge()
    assert tuple(challenge) == BOX_KEYS  # the organisers' key order
    assert challenge == {
        "z_min": 2,
        "z_max": 8,
        "z_mid": 5,
        "z_mid_x_min": 20,
        "z_mid_y_min": 12,
        "z_mid_x_max": 32,
        "z_mid_y_max": 17,
    }


def test_box_from_mask_even_number_of_slices_takes_upper_median() -> None:
    m = np.zeros((8, 8, 8), bool)
    m[1, 1, 1] = m[2, 2:4, 2] = m[4, 3, 3:6] = m[6, 0, 0] = True  # unique_z = [1,2,4,6] -> index 2 -> 4
    box = box_from_mask(m)
    assert (box.z_min, box.z_mid, box.z_max) == (1, 4, 6)
    assert (box.y_min, box.y_max, box.x_min, box.x_max) == (3, 3, 3, 5)


def test_box_from_mask_random_shift_range_and_scaling() -> None:
    # H=128, W=512: shift_y = int(s*128/256) = s//2, shift_x = int(s*512/256) = 2s, s in 0..5.
    m = np.zeros((6, 128, 512), bool)
    m[1:5, 50:60, 200:260] = True
    seen = set()
    for seed in range(60):
        box = box_from_mask(m, np.random.default_rng(seed))
        dx = 200 - box.x_min
        assert box.x_max - 259 == dx
        s = dx // 2
        assert dx == 2 * s and 0 <= s <= 5
        dy = 50 - box.y_min
        assert dy == int(s * 128 / 256)
        assert box.y_max - 59 == dy
        assert (box.z_min, box.z_max, box.z_mid) == (1, 4, 3)  # z is never perturbed
        seen.add(s)
    assert seen == {0, 1, 2, 3, 4, 5}


def test_box_from_mask_shift_clipped_to_volume() -> None:
    m = np.zeros((3, 256, 256), bool)
    m[1, 0:3, 253:256] = True  # touches y=0 and x=W-1
    for seed in range(30):
        box = box_from_mask(m, np.random.default_rng(seed))
        assert box.y_min == 0
        assert box.x_max == 255
        s = 253 - box.x_min
        assert 0 <= s <= 5
        assert box.y_max == 2 + s  # W = H = 256: one voxel per shift unit


def test_box_from_mask_empty_raises() -> None:
    with pytest.raises(ValueError, match="empty"):
        box_from_mask(np.zeros((4, 4, 4), bool))


def test_boxes_from_labels_in_label_order() -> None:
    labels = np.zeros((10, 20, 20), np.uint8)
    labels[6:9, 2:4, 2:5] = 1
    labels[0:2, 10:15, 12:18] = 2
    labels[3, 5, 5] = 3
    boxes = boxes_from_labels(labels)
    assert boxes == [
        Box(z_min=6, z_max=8, z_mid=7, y_min=2, y_max=3, x_min=2, x_max=4),
        Box(z_min=0, z_max=1, z_mid=1, y_min=10, y_max=14, x_min=12, x_max=17),
        Box(z_min=3, z_max=3, z_mid=3, y_min=5, y_max=5, x_min=5, x_max=5),
    ]
    assert boxes_from_labels(np.zeros((3, 3, 3), np.uint8)) == []


def test_from_challenge_reads_np_int64_and_round_trips() -> None:
    raw = {k: np.int64(v) for k, v in zip(BOX_KEYS, (2, 5, 3, 4, 1, 9, 7), strict=True)}
    box = Box.from_challenge(raw)
    assert box == Box(z_min=2, z_max=5, z_mid=3, y_min=1, y_max=7, x_min=4, x_max=9)
    assert type(box.x_min) is int
    assert box.to_challenge() == {k: int(v) for k, v in raw.items()}
    assert box.lo == (2, 1, 4) and box.hi == (5, 7, 9)
    with pytest.raises(KeyError):
        Box.from_challenge({k: v for k, v in raw.items() if k != "z_mid"})


def test_one_slice_box() -> None:
    box = Box.on_slice(6, 10, 20, 30, 40)
    assert not box.exact_z
    assert (box.z_min, box.z_mid, box.z_max) == (6, 6, 6)
    assert box.prism((10, 50, 50)) == (slice(6, 7), slice(10, 21), slice(30, 41))
    with pytest.raises(ValueError, match="one-slice"):
        Box(5, 7, 6, 0, 1, 0, 1, exact_z=False)  # a viewer's box has no z range
    with pytest.raises(ValueError, match="no challenge form"):
        box.to_challenge()


def test_box_rejects_inverted_bounds() -> None:
    with pytest.raises(ValueError, match="lower bound"):
        Box(z_min=4, z_max=3, z_mid=3, y_min=0, y_max=1, x_min=0, x_max=1)
    with pytest.raises(ValueError, match="lower bound"):
        Box(z_min=0, z_max=3, z_mid=1, y_min=0, y_max=1, x_min=2, x_max=1)


def test_box_prism_slices_inclusive() -> None:
    box = Box(z_min=2, z_max=5, z_mid=3, y_min=1, y_max=7, x_min=4, x_max=9)
    assert box.prism((10, 20, 30)) == (slice(2, 6), slice(1, 8), slice(4, 10))
    vol = np.zeros((10, 20, 30), bool)
    vol[box.prism(vol.shape)] = True
    assert vol.sum() == 4 * 7 * 6


def test_box_prism_clipped_to_volume() -> None:
    box = Box(z_min=-3, z_max=50, z_mid=3, y_min=18, y_max=25, x_min=-1, x_max=40)
    assert box.prism((10, 20, 30)) == (slice(0, 10), slice(18, 20), slice(0, 30))
    # a box entirely outside one axis gives an empty (not negative) slice
    sl = Box(z_min=-3, z_max=50, z_mid=3, y_min=25, y_max=30, x_min=-1, x_max=40).prism((10, 20, 30))
    assert sl[1].stop >= sl[1].start
    assert np.zeros((10, 20, 30))[sl].size == 0
