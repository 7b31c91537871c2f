"""The guided filter moves an upsampled edge onto the image's edge, and leaves alone what the
image cannot tell."""

from __future__ import annotations

import numpy as np
import torch

from model.edge_guide import guide_radius, guided_prob


def _ball(shape: tuple[int, int, int], centre: tuple[float, float, float], r: float) -> np.ndarray:
    zz, yy, xx = np.indices(shape)
    return (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= r * r


def _coarse(mask: np.ndarray, factor: int) -> torch.Tensor:
    """The mask as the network's grid would give it back: block-averaged, then upsampled
    trilinearly, so its edge is smooth over `factor` voxels."""
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    small = torch.nn.functional.avg_pool3d(t, factor)
    up = torch.nn.functional.interpolate(small, size=mask.shape, mode="trilinear", align_corners=False)
    return up[0, 0]


def test_radius_is_half_a_grid_voxel_along_upsampled_axes_only() -> None:
    assert guide_radius((256, 64, 32), (64, 64, 64)) == (2, 0, 0)
    assert guide_radius((640, 640, 128), (64, 64, 64), scale=0.5) == (2, 2, 0)
    assert guide_radius((100, 70, 64), (64, 64, 64)) == (1, 1, 0)


def test_a_shifted_edge_moves_back_onto_the_image_edge() -> None:
    shape = (48, 48, 48)
    truth = _ball(shape, (24, 24, 24), 12)
    rng = np.random.default_rng(0)
    img = np.where(truth, 160.0, 60.0) + rng.normal(0, 5, shape)
    prob = _coarse(_ball(shape, (24, 26, 24), 12), 4)  # the answer 2 voxels off along y, blurred
    before = (prob > 0.5).numpy()
    after = (guided_prob(prob, torch.from_numpy(img.astype(np.float32)), (2, 2, 2), 100.0) > 0.5).numpy()
    wrong_before = int((before ^ truth).sum())
    wrong_after = int((after ^ truth).sum())
    assert wrong_after < 0.75 * wrong_before, (wrong_before, wrong_after)
    # it moved towards the image's edge (y centre 26 -> nearer 24), not merely shrank or grew
    y_before, y_after = np.argwhere(before)[:, 1].mean(), np.argwhere(after)[:, 1].mean()
    assert abs(y_after - 24) < abs(y_before - 24) - 0.5, (y_before, y_after)


def test_no_contrast_keeps_the_answer() -> None:
    shape = (40, 40, 40)
    answer = _ball(shape, (20, 20, 20), 10)
    rng = np.random.default_rng(1)
    img = 100.0 + rng.normal(0, 2, shape)  # the object is invisible
    prob = _coarse(answer, 4)
    before = (prob > 0.5).numpy()
    after = (guided_prob(prob, torch.from_numpy(img.astype(np.float32)), (2, 2, 2), 100.0) > 0.5).numpy()
    assert int((before ^ after).sum()) <= 0.01 * before.sum()


def test_zero_radius_is_the_identity_and_output_stays_a_probability() -> None:
    prob = torch.rand(8, 9, 10)
    img = torch.rand(8, 9, 10) * 255
    assert torch.equal(guided_prob(prob, img, (0, 0, 0), 100.0), prob)
    out = guided_prob(prob, img, (1, 1, 1), 1.0)
    assert out.shape == prob.shape and float(out.min()) >= 0.0 and float(out.max()) <= 1.0
