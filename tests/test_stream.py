"""Tests of model.training.stream: items of every kind, encoded as inference encodes, from workers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import drifting_bar, large_block

from model.config import ModelConfig
from model.encoding import box_channel
from model.synthetic import synth_case
from model.training.data import Volume
from model.training.stream import ItemStream, Pool, coarse_answer, collate, grid_roi, make_item
from model.training.train import TrainConfig

CFG = ModelConfig(features=(4, 8, 16), blocks_per_stage=(1, 1, 1), grid=(16, 16, 16))


@pytest.fixture(scope="module")
def pool() -> Pool:
    vols = []
    for seed in range(3):
        imgs, labels, sp = synth_case(np.random.default_rng(seed), (24, 32, 32), 3)
        vols.append(Volume(f"v{seed}", imgs, labels, tuple(float(v) for v in sp[::-1])))  # type: ignore[arg-type]
    return Pool(vols, [], 0.0)


def test_items_of_every_kind(pool) -> None:
    rng = np.random.default_rng(0)
    mix = TrainConfig(p_first=0.3, p_local=0.5).stream()
    items = [make_item(pool, rng, CFG, mix) for _ in range(40)]
    kinds = {it.kind for it in items}
    assert kinds == {"first", "click", "local"}
    prev_ch, fg_ch, bg_ch = (CFG.channels.index(c) for c in ("prev_mask", "fg_clicks", "bg_clicks"))
    for it in items:
        assert it.x.shape == (CFG.in_channels, *CFG.grid) and it.x.dtype == torch.float16
        assert it.sample.native is None  # the volume view never travels to the loop
        if it.kind == "first":
            assert it.prev is None and not it.region.any() and not it.x[prev_ch].any()
            continue
        assert it.prev is not None and it.prev.shape == CFG.grid
        assert it.x[fg_ch].any() or it.x[bg_ch].any()
        if it.region.any():  # the newest click's error region is an error of the mask the net sees
            assert not (it.region & (it.prev == it.sample.target)).any()
    clicked = [it for it in items if it.kind == "click"]
    assert clicked and all(it.region.any() for it in clicked)


def test_outside_marks_the_object_beyond_its_box_prism() -> None:
    """A challenge box start's `outside` is the target outside the prism (a slanted object leaves
    its middle slice's rectangle on the others); a click start's is empty."""
    vol = drifting_bar()
    rng = np.random.default_rng(0)
    for p_box, start in ((1.0, "box"), (0.0, "click")):
        mix = TrainConfig(p_box=p_box, p_box2d=0.0, p_first=1.0).stream()
        items = [make_item(Pool([vol], [], 0.0), rng, CFG, mix) for _ in range(6)]
        for it in items:
            assert it.sample.start == start and it.outside.shape == CFG.grid
            if start == "click":
                assert not it.outside.any()
                continue
            prism = box_channel(grid_roi(CFG), it.sample.prompts.box, CFG.grid) > 0
            assert np.array_equal(it.outside, it.sample.target & ~prism)
        if start == "box":
            assert any(it.outside.any() for it in items)  # the drifting bar leaves the prism


def test_partial_click_steps_start_from_a_part_of_the_object() -> None:
    """With p_partial 1, every click start's click step plays its clicks from a part of the
    object: the mask the network sees never holds a voxel outside the object (a corruption
    such as a dilation, a blob or a shift would)."""
    vol = large_block()
    mix = TrainConfig(p_box=0.0, p_box2d=0.0, p_first=0.0, p_local=0.0, p_partial=1.0).stream()
    rng = np.random.default_rng(0)
    items = [make_item(Pool([vol], [], 0.0), rng, CFG, mix) for _ in range(12)]
    assert all(it.kind == "click" and it.prev is not None for it in items)
    assert all(not (it.prev & ~it.sample.target).any() for it in items)
    assert all(it.region.any() and not (it.region & it.prev).any() for it in items)  # clicks add


def test_held_items_give_the_neighbour_the_object_edge() -> None:
    """p_held 1 on two touching blocks: every click item's other_masks channel holds voxels of
    the object (a neighbour's mask grown into it), those voxels are missing from the previous
    mask, and the click lands on an error."""
    imgs = np.zeros((24, 32, 32), np.float32)
    gts = np.zeros((24, 32, 32), np.uint8)
    gts[6:18, 8:24, 4:16], gts[6:18, 8:24, 16:28] = 1, 2
    imgs[gts == 1], imgs[gts == 2] = 100.0, 180.0
    vol = Volume("touching", imgs, gts, (2.0, 1.0, 1.0))
    mix = TrainConfig(p_first=0.0, p_local=0.0, p_partial=0.0, p_held=1.0, max_clicks=1).stream()
    rng = np.random.default_rng(0)
    other_ch = CFG.channels.index("other_masks")
    items = [make_item(Pool([vol], [], 0.0), rng, CFG, mix) for _ in range(16)]
    held = [it for it in items if (it.sample.others & it.sample.target).any()]
    assert len(held) >= 12  # the blocks touch, so almost every draw can be held
    for it in held:
        grab = it.sample.others & it.sample.target
        assert it.use_others and it.prev is not None
        assert (it.x[other_ch].numpy()[grab] > 0.5).mean() > 0.9  # the network sees them as another's
        assert not (it.prev & grab).any() and it.region.any()  # one click: no round fixed them


def test_stream_workers_differ_and_collate_keeps_lists(pool) -> None:
    loader = torch.utils.data.DataLoader(
        ItemStream(pool, CFG, TrainConfig().stream(), seed=3), batch_size=3, num_workers=2, collate_fn=collate
    )
    batches = []
    for b in loader:
        batches.append(b)
        if len(batches) == 2:
            break
    assert all(isinstance(b, list) and len(b) == 3 for b in batches)
    a, b = batches[0][0].x, batches[1][0].x  # the two workers' first items
    assert not torch.equal(a, b)


def test_tile_items_are_boundary_views_without_a_new_click(pool) -> None:
    """p_tile 1: every item is a boundary view. Its previous mask (a coarse, slightly wrong copy
    of the object) has an edge in the view, no click was added to the start's prompts (a box
    start's view has no click at all), and no region is weighted."""
    rng = np.random.default_rng(1)
    mix = TrainConfig(p_tile=1.0, p_box=1.0, p_box2d=0.0).stream()
    items = [make_item(pool, rng, CFG, mix) for _ in range(16)]
    fg_ch, bg_ch = (CFG.channels.index(c) for c in ("fg_clicks", "bg_clicks"))
    for it in items:
        assert it.kind == "tile" and it.prev is not None and not it.region.any()
        assert it.prev.any() and not it.prev.all() and it.sample.target.any()
        assert not it.x[fg_ch].any() and not it.x[bg_ch].any()
    assert sum(not np.array_equal(it.prev, it.sample.target) for it in items) >= 12  # mostly wrong


def test_coarse_answer_moves_the_edge_only() -> None:
    """The coarse answer keeps the object (most of it, little outside), not an exact copy."""
    target = np.zeros((64, 64, 64), bool)  # the object spans ~1 / 1.6 of its grid, as in training
    target[12:52, 10:50, 14:48] = True
    target[30:34, 50:58, 30:34] = True  # a thin spur a coarse grid blurs
    rng = np.random.default_rng(0)
    for _ in range(10):
        out = coarse_answer(target, np.ones(3), rng)
        overlap = (out & target).sum()
        assert overlap > 0.7 * target.sum() and (out & ~target).sum() < 0.5 * target.sum()
