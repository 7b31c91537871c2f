"""Tests of model.training.corrupt: each corruption makes the error it names, and the clicks land on it."""

from __future__ import annotations

import numpy as np
import pytest

from model.training.corrupt import (
    add_blob,
    click_rounds,
    corrupt,
    cut,
    dilate,
    erode,
    error_component,
    held_by_neighbour,
    leak,
    shift,
)

SP = np.array([2.0, 1.0, 1.0])


def _ball(shape=(24, 32, 32), centre=(12, 16, 16), r=6.0) -> np.ndarray:
    zz, yy, xx = np.ogrid[tuple(slice(0, n) for n in shape)]
    return ((zz - centre[0]) * 2.0) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= r**2 * 4


def test_dilate_and_blob_only_add() -> None:
    m = _ball()
    for out in (dilate(m, SP, 3.0), add_blob(m, SP, np.random.default_rng(0))):
        assert (out & m).sum() == m.sum() and out.sum() > m.sum()  # a superset: false positives only


def test_dilate_by_mm_respects_spacing() -> None:
    m = np.zeros((20, 20, 20), bool)
    m[10, 10, 10] = True
    out = dilate(m, SP, 2.0)
    assert out[10, 10, 12] and not out[10, 10, 13]  # 2 mm = 2 voxels along x
    assert out[11, 10, 10] and not out[12, 10, 10]  # 2 mm = 1 voxel along z


def test_erode_and_cut_only_remove_and_never_empty() -> None:
    m = _ball()
    for out in (erode(m, SP, 2.0), cut(m, np.random.default_rng(1))):
        assert not (out & ~m).any() and 0 < out.sum() < m.sum()  # a subset: misses only
    tiny = np.zeros_like(m)
    tiny[5, 5, 5] = True
    assert erode(tiny, SP, 10.0).any()


def test_shift_moves_without_wrapping() -> None:
    m = np.zeros((10, 10, 10), bool)
    m[2:4, 4:6, 3:5] = True
    out = shift(m, np.array([1, 0, 2]))
    assert out.sum() == m.sum() and out[3:5, 4:6, 5:7].all()
    off = shift(m, np.array([0, 0, 6]))  # pushed past the far x face: the part beyond is gone
    assert off.sum() == 4 and off[2:4, 4:6, 9].all() and not off[:, :, :9].any()


def test_leak_takes_the_neighbour_near_the_object() -> None:
    m = _ball(r=4.0)
    organ = _ball(r=9.0) & ~m  # the object lies inside another labelled object
    far = np.zeros_like(m)
    far[0, 0, 0] = True
    out = leak(m, organ | far, SP, np.random.default_rng(2))
    assert out is not None and (out & m).sum() == m.sum()
    assert (out & organ).any() and not out[0, 0, 0]
    assert leak(m, np.zeros_like(m), SP, np.random.default_rng(2)) is None


def test_held_by_neighbour_is_the_object_edge_next_to_the_neighbour() -> None:
    """The held voxels are the object's, all near the neighbour (at most 10 mm), the object's far
    side is never held, and no neighbour near means nothing held."""
    m = np.zeros((24, 32, 32), bool)
    m[6:18, 8:24, 4:16] = True  # the object
    nb = np.zeros_like(m)
    nb[6:18, 8:24, 16:28] = True  # a neighbour touching its x = 16 face
    for seed in range(8):
        held = held_by_neighbour(m, nb, SP, np.random.default_rng(seed))
        assert held is not None and held.any()
        assert not (held & ~m).any()  # only the object's voxels
        assert not held[:, :, :6].any()  # more than 10 mm from the neighbour: never held
        assert (m & ~held).sum() >= 0.3 * m.sum()
    far = np.zeros_like(m)
    far[0, 0, 31] = True
    assert held_by_neighbour(m, far, SP, np.random.default_rng(0)) is None
    assert held_by_neighbour(m, np.zeros_like(m), SP, np.random.default_rng(0)) is None


@pytest.mark.parametrize("seed", range(12))
def test_corrupt_always_differs(seed: int) -> None:
    m = _ball()
    prism = np.zeros_like(m)
    prism[6:19, 10:23, 10:23] = True
    out, name = corrupt(m, np.zeros_like(m), SP, np.random.default_rng(seed), prism)
    assert out.shape == m.shape and out.dtype == bool and name
    assert not np.array_equal(out, m)


def test_corrupt_prism_is_the_box_prism() -> None:
    m = _ball()
    prism = np.zeros_like(m)
    prism[6:19, 10:23, 10:23] = True
    seen = set()
    for seed in range(60):
        out, name = corrupt(m, np.zeros_like(m), SP, np.random.default_rng(seed), prism)
        if name == "prism":
            assert np.array_equal(out, prism)
        seen.add(name.split("+")[0])
    assert {"dilate", "erode", "shift", "cut", "blob", "prism"} <= seen


def test_error_component_holds_the_click() -> None:
    m = _ball()
    pred = m.copy()
    pred[12, 16, 16:] = False  # a missed strip
    comp = error_component(pred, m, (12, 16, 20))
    assert comp[12, 16, 20] and not (comp & ~(pred != m)).any()
    assert not error_component(pred, m, (0, 0, 0)).any()  # not an error: empty


@pytest.mark.parametrize("seed", range(8))
def test_click_rounds_click_lands_in_the_error(seed: int) -> None:
    rng = np.random.default_rng(seed)
    m = _ball()
    prev0, _ = corrupt(m, np.zeros_like(m), SP, rng)
    prev, clicks, region = click_rounds(prev0, m, 3, rng)
    assert 1 <= len(clicks) <= 3
    kind, point = clicks[-1]
    assert prev[point] != m[point]  # the newest click is on an error of the mask the network sees
    assert kind == ("fg" if m[point] else "bg")
    assert region[point] and not (region & (prev == m)).any()  # its region is that error
    # earlier clicks were placed on the error at their time: only fixed regions became correct
    assert not (prev & ~prev0 & ~m).any() and not (~prev & prev0 & m).any()
