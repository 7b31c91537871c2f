"""Tests of model.synthetic: the domain-randomised training/demo volumes."""

from __future__ import annotations

import numpy as np

from model.synthetic import random_spacing_zyx, synth_case

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
