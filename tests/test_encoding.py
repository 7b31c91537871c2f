"""Tests of model.encoding: the prompt channels (issue 4: box prism, click balls in mm with anisotropic
spacing, no box) and the channel stack fed to the network."""

from __future__ import annotations

import numpy as np
import torch

from model.boxes import Box
from model.config import CHANNELS, ModelConfig
from model.encoding import box_channel, click_channel, encode, normalise_image
from model.prompts import ClassPrompts
from model.roi import Roi

G = (16, 16, 16)


def _roi(lo, size, shape=(100, 100, 100)) -> Roi:
    return Roi(tuple(lo), tuple(a + s for a, s in zip(lo, size, strict=True)), tuple(shape))


def _box(z, zmid, y, x) -> Box:
    return Box(z_min=z[0], z_max=z[1], z_mid=zmid, y_min=y[0], y_max=y[1], x_min=x[0], x_max=x[1])


# ------------------------------------------------------------------------------------- box prism


def test_box_channel_identity_grid() -> None:
    roi = _roi((0, 0, 0), G)  # one grid voxel per volume voxel
    out = box_channel(roi, _box((3, 6), 4, (2, 5), (7, 10)), G)
    expected = np.zeros(G, np.float32)
    expected[3:7, 2:6, 7:11] = 0.5  # the prism on its z range only, inclusive bounds
    expected[4, 2:6, 7:11] = 1.0  # the middle slice, whose rectangle it really is
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.float32


def test_box_channel_downsampled_roi() -> None:
    # ROI of 32 voxels per axis at (10, 20, 0) on a 16 grid: grid centre k sits at lo + 2k + 0.5
    roi = _roi((10, 20, 0), (32, 32, 32))
    box = _box((14, 21), 17, (30, 37), (0, 5))
    out = box_channel(roi, box, G)
    # z in [13.5, 21.5] -> 10 + 2k + 0.5 -> k = 2..5; y in [29.5, 37.5] -> 20 + 2k + 0.5 -> k = 5..8;
    # x in [-0.5, 5.5] -> k = 0..2; z_mid 17 -> nearest centre 16.5 -> k = 3
    expected = np.zeros(G, np.float32)
    expected[2:6, 5:9, 0:3] = 0.5
    expected[3, 5:9, 0:3] = 1.0
    np.testing.assert_array_equal(out, expected)


def test_one_slice_box_is_the_prism_of_a_single_slice() -> None:
    # a viewer's rectangle: encoded as a challenge box whose z range is its one slice
    roi = _roi((0, 0, 0), G)
    out = box_channel(roi, Box.on_slice(4, 2, 5, 7, 10), G)
    np.testing.assert_array_equal(out, box_channel(roi, _box((4, 4), 4, (2, 5), (7, 10)), G))
    expected = np.zeros(G, np.float32)
    expected[4, 2:6, 7:11] = 1.0
    np.testing.assert_array_equal(out, expected)


def test_box_thinner_than_a_grid_voxel_still_marks_one() -> None:
    roi = _roi((0, 0, 0), (64, 64, 64))  # 4 volume voxels per grid voxel: centres at 4k + 1.5
    box = _box((20, 20), 20, (11, 11), (31, 31))  # a single voxel, no grid centre within 0.5 of it
    out = box_channel(roi, box, G)
    assert np.count_nonzero(out) == 1
    # nearest centres: z 20 -> 21.5 (k=5), y 11 -> 9.5 (k=2), x 31 -> 29.5 (k=7)
    assert out[5, 2, 7] == 1.0


def test_box_channel_none_or_outside_roi_is_zero() -> None:
    roi = _roi((10, 0, 0), G)
    assert not box_channel(roi, None, G).any()
    assert not box_channel(roi, _box((0, 9), 5, (0, 3), (0, 3)), G).any()  # z ends before the ROI
    assert not box_channel(roi, _box((26, 30), 28, (0, 3), (0, 3)), G).any()  # starts after it
    part = box_channel(roi, _box((5, 12), 11, (0, 3), (0, 3)), G)  # z overlaps slices 10..12
    assert np.array_equal(np.flatnonzero(part.any(axis=(1, 2))), [0, 1, 2])
    assert part[1, 0, 0] == 1.0 and part[0, 0, 0] == 0.5


# ------------------------------------------------------------------------------------ click balls


def _axis_counts(ch: np.ndarray, c) -> tuple[int, int, int]:
    z, y, x = c
    return int(ch[:, y, x].sum()), int(ch[z, :, x].sum()), int(ch[z, y, :].sum())


def test_click_ball_in_mm_anisotropic() -> None:
    roi = _roi((0, 0, 0), G)
    # 3 mm slices, 1 mm in-plane, radius 3 mm: 3 slices along z, 7 voxels along y and x
    ch = click_channel(roi, [(8, 8, 8)], (3.0, 1.0, 1.0), G, radius_mm=3.0)
    assert _axis_counts(ch, (8, 8, 8)) == (3, 7, 7)
    # the whole ball: a disc of radius 3 (29 lattice points) on the click's slice, one voxel above/below
    assert ch.sum() == 29 + 1 + 1
    assert set(np.unique(ch)) == {0.0, 1.0}


def test_click_ball_anisotropic_downsampled_roi() -> None:
    # ROI 16 x 32 x 32 voxels at spacing (2, 0.5, 0.5) mm on a 16 grid: 2 x 1 x 1 mm per grid voxel
    roi = _roi((0, 10, 20), (16, 32, 32))
    click = (8, 10 + 17, 20 + 17)  # grid coordinate: (8, 8.25, 8.25)
    ch = click_channel(roi, [click], (2.0, 0.5, 0.5), G, radius_mm=3.0)
    # z: |dz| * 2 <= 3 -> 7..9 (3); y, x: |k - 8.25| <= 3 -> 6..11 (6)
    assert _axis_counts(ch, (8, 8, 8)) == (3, 6, 6)
    assert np.array_equal(np.flatnonzero(ch[:, 8, 8]), [7, 8, 9])
    assert np.array_equal(np.flatnonzero(ch[8, :, 8]), [6, 7, 8, 9, 10, 11])
    # finer axis -> more voxels
    assert ch.any(axis=(0, 2)).sum() > ch.any(axis=(1, 2)).sum()


def test_click_ball_at_least_a_grid_voxel() -> None:
    roi = _roi((0, 0, 0), G)
    # grid voxels of 8 x 1 x 1 mm: radius max(3, 0.75 * 8) = 6 mm -> 1 slice, 13 voxels in-plane
    ch = click_channel(roi, [(8, 8, 8)], (8.0, 1.0, 1.0), G, radius_mm=3.0)
    assert _axis_counts(ch, (8, 8, 8)) == (1, 13, 13)
    tiny = click_channel(roi, [(8, 8, 8)], (1.0, 1.0, 1.0), G, radius_mm=0.1)
    assert tiny.sum() == 1 and tiny[8, 8, 8] == 1.0  # radius 0.75 voxel: the centre only


def test_clicks_outside_roi_ignored() -> None:
    roi = _roi((10, 10, 10), G)
    sp = (1.0, 1.0, 1.0)
    assert not click_channel(roi, [(5, 12, 12), (26, 12, 12), (12, 12, 40)], sp, G, 1.0).any()
    assert not click_channel(roi, [], sp, G, 1.0).any()
    ch = click_channel(roi, [(5, 12, 12), (25, 25, 25)], sp, G, 1.0)  # only the second is inside
    assert ch[15, 15, 15] == 1.0
    # radius 1 mm at 1 mm: the centre and its 6 neighbours, cut by the grid's corner
    assert ch.sum() == 4


def test_two_clicks_two_balls() -> None:
    roi = _roi((0, 0, 0), G)
    ch = click_channel(roi, [(3, 3, 3), (12, 12, 12)], (1.0, 1.0, 1.0), G, radius_mm=1.0)
    assert ch.sum() == 14 and ch[3, 3, 3] == ch[12, 12, 12] == 1.0


# ---------------------------------------------------------------------------------------- encode


def test_encode_channels_and_order() -> None:
    cfg = ModelConfig(grid=G, click_radius_mm=1.0)
    roi = _roi((0, 0, 0), G, shape=G)
    gen = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, G, generator=gen, dtype=torch.uint8)
    prev = torch.zeros(G, dtype=torch.uint8)
    prev[2:5, 2:5, 2:5] = 2  # this class
    prev[10:12, 10:12, 10:12] = 1  # other classes
    prev[0, 15, 15] = 3
    box = _box((4, 8), 6, (1, 3), (2, 9))
    prompts = ClassPrompts(label=2, box=box, fg=[(5, 5, 5)], bg=[(12, 3, 3)])
    x = encode(image, prev, prompts, roi, (1.0, 1.0, 1.0), cfg)
    assert x.shape == (6, *G) and x.dtype == torch.float32
    assert cfg.channels == CHANNELS == ("image", "prev_mask", "box", "fg_clicks", "bg_clicks", "other_masks")
    img = image.float()
    torch.testing.assert_close(x[0], (img - img.mean()) / img.std())
    assert abs(x[0].mean().item()) < 1e-5 and abs(x[0].std().item() - 1.0) < 1e-5
    torch.testing.assert_close(x[1], (prev == 2).float())
    np.testing.assert_array_equal(x[2].numpy(), box_channel(roi, box, G))
    assert x[3][5, 5, 5] == 1.0 and x[3].sum() == 7
    assert x[4][12, 3, 3] == 1.0 and x[4].sum() == 7
    expected_other = ((prev == 1) | (prev == 3)).float()
    torch.testing.assert_close(x[5], expected_other)

    # a permuted channel list permutes the stack
    perm = ("box", "other_masks", "image", "bg_clicks", "fg_clicks", "prev_mask")
    y = encode(
        image, prev, prompts, roi, (1.0, 1.0, 1.0), ModelConfig(grid=G, click_radius_mm=1.0, channels=perm)
    )
    for i, name in enumerate(perm):
        torch.testing.assert_close(y[i], x[CHANNELS.index(name)])


def test_encode_no_prev_and_no_box() -> None:
    cfg = ModelConfig(grid=G)
    roi = _roi((0, 0, 0), (32, 32, 32), shape=(32, 32, 32))
    image = torch.arange(32**3, dtype=torch.float32).reshape(32, 32, 32)
    x = encode(image, None, ClassPrompts(label=1, fg=[(16, 16, 16)]), roi, (1.0, 1.0, 1.0), cfg)
    assert x.shape == (6, *G)
    assert not x[1].any() and not x[5].any()  # no prev_pred at the box step
    assert not x[2].any()  # no box
    assert not x[4].any()  # no bg click
    assert x[3].sum() > 0
    # image: z-scored over the crop, then block-averaged (32 -> 16): the grid mean stays 0
    assert abs(x[0].mean().item()) < 1e-4


def test_normalise_image_flat_stays_flat() -> None:
    flat = normalise_image(torch.full((4, 4, 4), 100, dtype=torch.uint8))
    assert flat.dtype == torch.float32 and torch.all(flat == 0)
    # std below 1 is clamped to 1 (no blow-up of near-flat regions)
    near = torch.zeros(4, 4, 4)
    near[0, 0, 0] = 0.5
    out = normalise_image(near)
    torch.testing.assert_close(out, near - near.mean())


def test_normalise_image_single_voxel_is_finite() -> None:
    # a 1x1x1 volume: the sample std of one voxel is NaN, which would blank the whole input
    out = normalise_image(torch.full((1, 1, 1), 42, dtype=torch.uint8))
    assert torch.equal(out, torch.zeros(1, 1, 1))
