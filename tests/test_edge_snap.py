"""model/edge_snap.py: edges move onto the image's edge, and only where the image shows one."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from evaluation.metrics import dice
from model.edge_snap import snap_edges

SPACING = (1.0, 1.0, 1.0)
SHAPE = (40, 40, 40)
FULL = (slice(0, 40), slice(0, 40), slice(0, 40))


def _ball(radius: float, centre=(20, 20, 20)) -> np.ndarray:
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    return (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius**2


def _image(truth: np.ndarray, contrast: float, seed: int = 0) -> np.ndarray:
    """Object at 60 + contrast, background at 60, noise sd 5, blurred as a scanner images it."""
    rng = np.random.default_rng(seed)
    img = 60.0 + contrast * truth + rng.normal(0, 5, SHAPE)
    return np.clip(ndimage.gaussian_filter(img, 0.7), 0, 255).astype(np.uint8)


GRID = (16, 16, 16)  # coarser than the 40-voxel volume on every axis: the answer was upsampled


def _snap(segs: np.ndarray, img: np.ndarray, regions, band: int = 1, grid=GRID) -> np.ndarray:
    return snap_edges(segs.copy(), img, SPACING, regions, band, 6.0, 1.0, grid)


def test_an_edge_one_voxel_out_moves_onto_the_object() -> None:
    truth = _ball(10)
    img = _image(truth, 100)
    for start in (_ball(11), _ball(9)):  # one voxel too large, one too small
        segs = start.astype(np.uint8)
        out = _snap(segs, img, [(1, FULL)])
        assert dice(truth, out == 1) > dice(truth, segs == 1) + 0.05
        assert dice(truth, out == 1) > 0.97


def test_no_contrast_leaves_the_answer_alone() -> None:
    truth = _ball(10)
    img = _image(truth, 0)  # the object looks like its surroundings
    segs = _ball(11).astype(np.uint8)
    out = _snap(segs, img, [(1, FULL)])
    assert (out == segs).mean() > 0.999  # at most a handful of noise voxels move


def test_another_class_is_never_taken_or_given() -> None:
    truth = _ball(10)
    img = _image(truth, 100)
    segs = _ball(9).astype(np.uint8)
    segs[20, :, 31:] = 2  # a neighbour's voxels where the object's edge truly lies
    segs[20:22, 20, 20:23] = 2  # and some inside it
    out = _snap(segs, img, [(1, FULL)])
    assert ((segs == 2) == (out == 2)).all()


def test_only_the_answered_region_moves() -> None:
    truth = _ball(10)
    img = _image(truth, 100)
    segs = _ball(11).astype(np.uint8)
    region = (slice(0, 20), slice(0, 40), slice(0, 40))  # the upper half only
    out = _snap(segs, img, [(1, region)])
    assert (out[20:] == segs[20:]).all()
    assert (out[:20] != segs[:20]).any()
    # a class not listed (kept from the previous step, or locked) is not touched
    assert (_snap(segs, img, []) == segs).all()


def test_band_zero_is_off() -> None:
    truth = _ball(10)
    segs = _ball(11).astype(np.uint8)
    assert (_snap(segs, _image(truth, 100), [(1, FULL)], band=0) == segs).all()


def test_the_edge_moves_only_along_axes_the_grid_did_not_resolve() -> None:
    """A cylinder along z, answered one slice too long at each end: with a grid as fine as the
    region along z (the network resolved z), the end slices stay; with a coarser one they go.
    A grid as fine as the region on every axis leaves the answer alone."""
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    disk = (y - 20) ** 2 + (x - 20) ** 2 <= 100

    def cylinder(z0: int, z1: int) -> np.ndarray:
        return disk & (z >= z0) & (z <= z1)

    truth, segs = cylinder(10, 29), cylinder(9, 30).astype(np.uint8)
    img = _image(truth, 100)
    resolved = _snap(segs, img, [(1, FULL)], grid=(40, 16, 16))
    assert (resolved[9] == 1).sum() > 0.9 * (segs[9] == 1).sum()
    assert (resolved[30] == 1).sum() > 0.9 * (segs[30] == 1).sum()
    upsampled = _snap(segs, img, [(1, FULL)])
    assert (upsampled[9] == 1).sum() < 0.05 * (segs[9] == 1).sum()  # all but a few rim voxels
    assert (upsampled[30] == 1).sum() < 0.05 * (segs[30] == 1).sum()
    assert (_snap(segs, img, [(1, FULL)], grid=(40, 40, 40)) == segs).all()
