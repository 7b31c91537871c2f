"""Tests of model.training.sampler: training samples on the grid and the corrective click policies."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import large_block

from model.config import ModelConfig
from model.roi import Roi
from model.synthetic import synth_case
from model.training.data import Volume
from model.training.sampler import (
    augment_intensity,
    local_sample,
    make_sample,
    next_click,
    pick_label,
    regrid,
    viewer_box,
)

CFG = ModelConfig(features=(4, 8, 16), blocks_per_stage=(1, 1, 1), grid=(16, 16, 16))
G = CFG.grid


@pytest.fixture(scope="module")
def volumes() -> list[Volume]:
    out = []
    for seed in range(3):
        imgs, labels, sp = synth_case(np.random.default_rng(seed), (24, 32, 32), 3)
        out.append(Volume(f"v{seed}", imgs, labels, tuple(float(v) for v in sp[::-1])))  # type: ignore[arg-type]
    return out


def _samples(volumes, p_box, n, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(20 * n):
        s = make_sample(volumes[i % len(volumes)], rng, CFG, p_box=p_box)
        if s is not None:
            out.append(s)
        if len(out) == n:
            break
    assert len(out) == n
    return out


def test_box_sample_on_the_grid(volumes) -> None:
    for s in _samples(volumes, p_box=1.0, n=12):
        assert isinstance(s.image, torch.Tensor) and tuple(s.image.shape) == G
        assert s.image.min().item() >= 0.0 and s.image.max().item() <= 255.0  # raw intensities
        assert s.target.shape == G and s.target.dtype == bool and s.target.any()
        assert s.others.shape == G and s.others.dtype == bool
        assert not (s.others & s.target).any()
        assert s.prompts.label == 1 and s.prompts.fg == [] and s.prompts.bg == []
        b = s.prompts.box
        assert b is not None
        assert b.exact_z and 0 <= b.z_min <= b.z_mid <= b.z_max <= G[0] - 1
        assert 0 <= b.y_min <= b.y_max <= G[1] - 1
        assert 0 <= b.x_min <= b.x_max <= G[2] - 1
        # the box's z range is the object's exact z range: the grid target lies within it (+-1 rounding)
        zs = np.flatnonzero(s.target.any(axis=(1, 2)))
        assert b.z_min - 1 <= zs[0] and zs[-1] <= b.z_max + 1
        assert len(s.spacing) == 3 and all(v > 0 for v in s.spacing)


def test_grid_dice_of_a_prediction_against_the_target(volumes) -> None:
    s = _samples(volumes, p_box=1.0, n=1)[0]
    assert s.grid_dice(s.target) == pytest.approx(1.0)
    assert s.grid_dice(np.zeros_like(s.target)) == 0.0
    half = s.target.copy()
    half[tuple(np.argwhere(half)[: half.sum() // 2].T)] = False  # the first half of its voxels
    assert s.grid_dice(half) == pytest.approx(2 * half.sum() / (half.sum() + s.target.sum()))
    assert s.grid_dice(s.target | ~s.target) == pytest.approx(
        2 * s.target.sum() / (s.target.size + s.target.sum())
    )


def test_click_only_sample_has_one_fg_click_on_target(volumes) -> None:
    for s in _samples(volumes, p_box=0.0, n=40, seed=1):
        assert s.prompts.box is None
        assert s.prompts.bg == []
        assert len(s.prompts.fg) == 1
        p = s.prompts.fg[0]
        assert all(0 <= v < g for v, g in zip(p, G, strict=True))
        assert s.target[p], p


def test_no_objects_gives_none() -> None:
    vol = Volume("empty", np.zeros((8, 8, 8), np.uint8), np.zeros((8, 8, 8), np.uint8), (1.0, 1.0, 1.0))
    assert make_sample(vol, np.random.default_rng(0), CFG) is None


# ------------------------------------------------------------------------------------ next_click


def _blocks():
    target = np.zeros(G, bool)
    target[2:14, 2:14, 2:14] = True
    missed = np.zeros(G, bool)
    missed[2:9, 2:9, 2:9] = True  # 7^3 missed corner, deepest voxel (5, 5, 5)
    fp = np.zeros(G, bool)
    fp[14:16, 0:16, 0:16] = True  # a false-positive slab outside the target, depth 1 everywhere
    return target, missed, fp


@pytest.mark.parametrize("p_official", [1.0, 0.0])
def test_next_click_none_for_perfect_prediction(p_official) -> None:
    target, _, _ = _blocks()
    for seed in range(5):
        assert next_click(target.copy(), target, np.random.default_rng(seed), p_official) is None
    empty = np.zeros(G, bool)
    assert next_click(empty, empty, np.random.default_rng(0), p_official) is None


def test_next_click_official_missed_region() -> None:
    target, missed, _ = _blocks()
    pred = target & ~missed
    assert next_click(pred, target, np.random.default_rng(0), 1.0) == ("fg", (5, 5, 5))


def test_next_click_official_false_positive() -> None:
    target = np.zeros(G, bool)
    target[2:6, 2:6, 2:6] = True
    fp = np.zeros(G, bool)
    fp[9:14, 9:14, 9:14] = True  # 5^3, deepest voxel (11, 11, 11)
    assert next_click(target | fp, target, np.random.default_rng(0), 1.0) == ("bg", (11, 11, 11))


def test_next_click_official_takes_largest_error_component() -> None:
    target, missed, _ = _blocks()
    fp = np.zeros(G, bool)
    fp[14:16, 0:2, 0:2] = True  # 8 voxels, far smaller than the 343 missed ones
    kind, p = next_click((target & ~missed) | fp, target, np.random.default_rng(0), 1.0)
    assert kind == "fg" and missed[p]


@pytest.mark.parametrize("seed", range(8))
def test_next_click_random_policies(seed) -> None:
    target, missed, fp = _blocks()
    rng = np.random.default_rng(seed)
    for _ in range(4):
        kind, p = next_click(target & ~missed, target, rng, 0.0)  # only missed voxels
        assert kind == "fg" and missed[p]
        kind, p = next_click(target | fp, target, rng, 0.0)  # only false positives
        assert kind == "bg" and fp[p]
        kind, p = next_click((target & ~missed) | fp, target, rng, 0.0)  # both: kind matches the region
        assert (kind == "fg" and missed[p]) or (kind == "bg" and fp[p])


def test_next_click_random_policies_vary() -> None:
    target, missed, _ = _blocks()
    pred = target & ~missed
    clicks = {next_click(pred, target, np.random.default_rng(s), 0.0)[1] for s in range(20)}
    assert len(clicks) > 5  # not always the deepest voxel
    official = {next_click(pred, target, np.random.default_rng(s), 1.0)[1] for s in range(5)}
    assert official == {(5, 5, 5)}  # deterministic, whatever the rng


# ------------------------------------------------------------------- starts, small objects, local views
def test_viewer_box_is_one_slice_rectangle_of_the_object() -> None:
    mask = np.zeros((20, 30, 30), bool)
    mask[4:16, 10:20, 5:25] = True
    for seed in range(10):
        b = viewer_box(mask, np.random.default_rng(seed))
        assert not b.exact_z and b.z_min == b.z_max == b.z_mid and 4 <= b.z_mid < 16
        assert 7 <= b.y_min <= 10 and 19 <= b.y_max <= 22
        assert 2 <= b.x_min <= 5 and 24 <= b.x_max <= 27


def test_box2d_samples_target_leaves_the_slice(volumes) -> None:
    rng = np.random.default_rng(4)
    got = [s for s in (make_sample(volumes[i % 3], rng, CFG, p_box=0.0, p_box2d=1.0) for i in range(30)) if s]
    assert got and all(s.start == "box2d" for s in got)
    for s in got:
        b = s.prompts.box
        assert not b.exact_z and b.z_min == b.z_max == b.z_mid  # stays one slice on the grid
        # the whole object is the target, not the one slice the box is drawn on
        assert s.target.any(axis=(1, 2)).sum() > 1 or s.target.sum() == s.target[b.z_mid].sum()
    assert any(s.target.any(axis=(1, 2)).sum() > 1 for s in got)


def test_small_bias_draws_small_objects_more_often() -> None:
    gts = np.zeros((20, 40, 40), np.uint8)
    gts[:, :, :30] = 1  # a big object
    gts[2:4, 2:4, 35:37] = 2  # a small one
    vol = Volume("v", np.zeros_like(gts), gts, (1.0, 1.0, 1.0))
    rng = np.random.default_rng(0)
    uniform = np.mean([pick_label(vol, rng, 0.0) == 2 for _ in range(400)])
    biased = np.mean([pick_label(vol, rng, 1.0) == 2 for _ in range(400)])
    assert 0.4 < uniform < 0.6 and biased > 0.9


def test_a_partial_click_step_starts_from_a_part_of_the_object_and_its_roi_follows_the_part() -> None:
    """p_partial: a click start's click step keeps a part of the object around the first click as
    its previous mask, and its ROI is sized by that part (so the object reaches past it), as
    inference sizes it after a first click that found too little."""
    vol = large_block()

    def draw(p_partial: float) -> list:
        rng = np.random.default_rng(0)
        kw = {"p_box": 0.0, "first_step": False, "p_partial": p_partial}
        return [s for s in (make_sample(vol, rng, CFG, **kw) for _ in range(30)) if s is not None]

    whole, partial = draw(0.0), draw(1.0)
    assert all(s.part is None for s in whole)
    assert len(partial) >= 25 and all(s.part is not None for s in partial)
    for s in partial:
        assert s.part.shape == G and s.part.any()
        assert not (s.part & ~s.target).any()  # a part of the object, nothing outside it
        assert s.part.sum() < s.target.sum()  # an error left for the clicks
    # the part's ROI is smaller than the object's: the object fills more of the grid and reaches
    # its faces more often (where inference zooms out)
    assert np.mean([s.target.mean() for s in partial]) > np.mean([s.target.mean() for s in whole])
    assert np.mean([_reaches_a_face(s.target) for s in partial]) > np.mean(
        [_reaches_a_face(s.target) for s in whole]
    )


def _reaches_a_face(mask: np.ndarray) -> bool:
    return any(np.take(mask, i, axis=ax).any() for ax in range(3) for i in (0, -1))


def test_the_first_step_and_box_starts_ignore_p_partial() -> None:
    vol = large_block()
    rng = np.random.default_rng(1)
    for kw in ({"p_box": 0.0, "first_step": True}, {"p_box": 1.0, "first_step": False}):
        drawn = [make_sample(vol, rng, CFG, p_partial=1.0, **kw) for _ in range(10)]
        assert all(s is None or s.part is None for s in drawn)


def _organ_tumour_object() -> Volume:
    gts = np.zeros((20, 30, 40), np.uint8)
    gts[2:14, 2:20, 2:20] = 1  # an organ
    gts[5:8, 6:10, 6:9] = 2  # a tumour inside it
    gts[4:10, 4:12, 26:36] = 3  # a separate object
    return Volume("v", np.zeros_like(gts), gts, (1.0, 1.0, 1.0))


def test_nested_bias_draws_the_tumour_in_its_organ() -> None:
    vol = _organ_tumour_object()
    rng = np.random.default_rng(0)
    assert {pick_label(vol, rng, 0.5, p_nested=1.0) for _ in range(100)} == {2}
    shared = np.mean([pick_label(vol, rng, 0.0, p_nested=0.5) == 2 for _ in range(600)])
    assert 0.55 < shared < 0.78  # 1/2 + 1/2 * 1/3
    s = make_sample(vol, rng, CFG, p_nested=1.0)
    assert s is not None and s.others.any()  # the organ comes along as context


def test_nested_bias_falls_back_without_nested_labels() -> None:
    gts = np.zeros((20, 40, 40), np.uint8)
    gts[2:10, 2:10, 2:10] = 1
    gts[12:18, 20:30, 20:30] = 2
    vol = Volume("v", np.zeros_like(gts), gts, (1.0, 1.0, 1.0))
    assert vol.nested_labels() == ()
    got = [pick_label(vol, np.random.default_rng(seed), 0.0, p_nested=1.0) for seed in range(200)]
    assert 0.4 < np.mean(np.array(got) == 2) < 0.6


def test_regrid_identity_and_shift() -> None:
    roi = Roi((0, 0, 0), (32, 32, 32), (40, 40, 40))
    vals = np.random.default_rng(0).random((16, 16, 16)).astype(np.float32)
    assert np.allclose(regrid(vals, roi, roi, (16, 16, 16)), vals, atol=1e-5)
    half = Roi((0, 0, 0), (16, 16, 16), (40, 40, 40))  # the first octant at twice the resolution
    up = regrid(vals, roi, half, (16, 16, 16))
    assert np.allclose(up[1::2, 1::2, 1::2][:-1, :-1, :-1].mean(), vals[:7, :7, :7].mean(), atol=0.05)


def test_local_sample_is_a_finer_view_around_the_click(volumes) -> None:
    rng = np.random.default_rng(2)
    done = 0
    for i in range(40):
        s = make_sample(volumes[i % 3], rng, CFG, p_box=1.0, keep_native=True)
        if s is None or s.target.sum() < 20:
            continue
        prev = s.target.copy()
        on = np.argwhere(s.target)
        click = tuple(int(v) for v in on[len(on) // 2])
        prev[click] = False
        s.prompts.fg.append(click)
        out = local_sample(s, prev, click, rng, CFG, 0.4)
        if out is None:
            continue
        local, prev_local = out
        assert local.target.shape == prev_local.shape == G and local.native is None
        assert all(a <= b + 1e-9 for a, b in zip(local.spacing, s.spacing, strict=True))  # finer
        assert local.prompts.fg, "the newest click lies in its own view"
        fz = local.prompts.fg[-1]
        assert all(0 <= v < g for v, g in zip(fz, G, strict=True))
        assert prev_local.any() and local.target.any()
        done += 1
    assert done >= 3


# ------------------------------------------------------------------------------ augment_intensity


def _image() -> torch.Tensor:
    z, y, x = np.meshgrid(*(np.arange(g) for g in G), indexing="ij")
    return torch.from_numpy((z + y + x) * 255.0 / sum(G)).float()


def test_augment_intensity_is_reproducible_from_the_seed() -> None:
    img = _image()
    a = augment_intensity(img, np.random.default_rng(7))
    b = augment_intensity(img, np.random.default_rng(7))
    c = augment_intensity(img, np.random.default_rng(8))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_augment_intensity_keeps_shape_and_dtype_and_changes_the_image() -> None:
    img = _image()
    rng = np.random.default_rng(0)
    for _ in range(5):
        out = augment_intensity(img, rng)
        assert type(out) is torch.Tensor and out.dtype == torch.float32 and tuple(out.shape) == G
        assert not torch.allclose(out, img, atol=1.0)
        assert out.abs().max().item() < 2 * 255  # an intensity augmentation, not a new scale
    assert torch.equal(img, _image())  # the sample's own image is left as it was


def _one_object(lo: tuple[int, int, int], hi: tuple[int, int, int]) -> Volume:
    """A (64, 128, 128) 1 mm volume holding one box-shaped object of a distinct intensity."""
    imgs = np.full((64, 128, 128), 40, np.uint8)
    labels = np.zeros(imgs.shape, np.uint8)
    sl = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    imgs[sl], labels[sl] = 200, 1
    return Volume("one", imgs, labels, (1.0, 1.0, 1.0))


def _click_start_roi_sizes(vol: Volume, first_step: bool, n: int) -> set[tuple[int, ...]]:
    rng = np.random.default_rng(0)
    samples = [
        make_sample(vol, rng, CFG, p_box=0.0, keep_native=True, first_step=first_step) for _ in range(n)
    ]
    return {tuple(s.native.roi.size) for s in samples if s is not None and s.native is not None}


def test_a_first_click_sees_the_default_roi_whatever_the_objects_size() -> None:
    """Inference has only the click: a 6 mm lesion gets the same 96 mm cube (z clipped to the
    volume's 64 slices) as anything else, so the network cannot read the size off the ROI.
    At a click step the ROI follows the object (here the 24 mm minimum)."""
    small = _one_object((29, 61, 61), (35, 67, 67))
    assert _click_start_roi_sizes(small, first_step=True, n=10) == {(64, 96, 96)}
    assert _click_start_roi_sizes(small, first_step=False, n=10) == {(24, 24, 24)}


def test_a_first_click_on_a_large_object_is_zoomed_out_as_inference_does() -> None:
    """The object spans x 4..123: the default cube reaches it on its faces along that axis only,
    so some samples are zoomed out along it (1.6 times, clipped to the volume's 128) and none
    along the other in-plane axis (the sampler's views may swap y and x)."""
    wide = _one_object((28, 54, 4), (36, 74, 124))
    sizes = _click_start_roi_sizes(wide, first_step=True, n=30)
    assert {tuple(sorted(s[1:])) for s in sizes} == {(96, 96), (96, 128)}
