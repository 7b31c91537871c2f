"""Tests of model.synthetic: the domain-randomised training/demo volumes."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from model.synthetic import _cut_ellipsoid, _tube, random_spacing_zyx, synth_case

SHAPE = (24, 32, 32)


def test_synth_case_shapes_dtypes_labels_spacing() -> None:
    for seed in range(3):
        imgs, labels, spacing = synth_case(np.random.default_rng(seed), SHAPE, 3)
        assert imgs.shape == labels.shape == SHAPE
        assert imgs.dtype == np.uint8 and labels.dtype == np.uint8
        n = int(labels.max())
        assert 1 <= n <= 3
        assert np.array_equal(np.unique(labels), np.arange(n + 1))  # sequential 1..n, background present
        assert all((labels == k).sum() >= 20 for k in range(1, n + 1))
        assert int(imgs.min()) == 0 and int(imgs.max()) == 255  # the 0-255 range is used
        # spacing stored x, y, z: z (the slice thickness) is last and the largest
        assert spacing.shape == (3,) and spacing.dtype == np.float64
        x, y, z = spacing
        assert x == y and z >= x
        assert 0.5 <= x <= 2.0 and z <= 4.0 * x


def test_synth_case_reproducible() -> None:
    a = synth_case(np.random.default_rng(42), SHAPE, 2)
    b = synth_case(np.random.default_rng(42), SHAPE, 2)
    c = synth_case(np.random.default_rng(43), SHAPE, 2)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], c[0])


def test_random_spacing_zyx() -> None:
    rng = np.random.default_rng(0)
    ratios = []
    for _ in range(200):
        z, y, x = random_spacing_zyx(rng)
        assert y == x and 0.5 <= y <= 2.0
        ratios.append(z / y)
    ratios = np.array(ratios)
    assert ratios.min() == 1.0 and ratios.max() <= 4.0
    assert 0.3 < np.mean(ratios > 1.0) < 0.7  # anisotropic about half of the time


def test_no_large_share_keeps_older_seeds_cases() -> None:
    # p_large 0 makes no extra draw: the demo cases and older runs' pools stay as they were
    a = synth_case(np.random.default_rng(7), SHAPE, 3)
    b = synth_case(np.random.default_rng(7), SHAPE, 3, p_large=0.0)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)


def test_cut_ellipsoids_span_a_radius_of_every_axis() -> None:
    rng = np.random.default_rng(3)
    spacing = np.array([2.0, 1.0, 1.0])
    shape = (32, 64, 64)
    for _ in range(12):
        mask = _cut_ellipsoid(rng, shape, spacing)
        idx = np.nonzero(mask)
        spans = [(i.max() - i.min() + 1) / n for i, n in zip(idx, shape, strict=True)]
        # a cut through or beyond the centre keeps at least a radius (a quarter of the axis or
        # more, less the wobble) on every axis: organ-sized, never a lesion-sized speck
        assert min(spans) > 0.18, spans
        assert mask.mean() > 0.02


def test_thick_tubes_are_an_aorta_wide_and_thin_ones_a_vessel() -> None:
    spacing = np.array([2.0, 1.0, 1.0])
    shape = (32, 64, 64)  # shortest side 64 mm: a thick tube's radius is 2.6-6.4 mm
    for seed in range(6):
        thick = _tube(np.random.default_rng(seed), shape, spacing, thick=True)
        thin = _tube(np.random.default_rng(seed), shape, spacing)
        # the largest distance to the outside is the tube's radius (less the voxel grid's step)
        r_thick = ndimage.distance_transform_edt(thick, sampling=spacing).max()
        r_thin = ndimage.distance_transform_edt(thin, sampling=spacing).max()
        assert 2.0 <= r_thick <= 7.5, r_thick
        assert r_thin <= 3.5 and r_thick > r_thin


def test_large_share_makes_each_case_hold_a_larger_object() -> None:
    # objects painted later cut into earlier ones, so not every label stays organ-sized: compare
    # the largest object of each case
    plain = [synth_case(np.random.default_rng(s), (32, 64, 64), 3)[1] for s in range(4)]
    large = [synth_case(np.random.default_rng(s), (32, 64, 64), 3, p_large=1.0)[1] for s in range(4)]

    def largest_share(maps: list[np.ndarray]) -> float:
        return float(np.mean([np.bincount(m.ravel())[1:].max() / m.size for m in maps]))

    assert largest_share(large) > 2 * largest_share(plain)
