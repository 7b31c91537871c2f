"""The stream of training items, made in DataLoader workers so the network never waits for them.

Each item is one object at one interaction state, encoded exactly as inference encodes it:
- a first step (the box, a viewer's one-slice box, or the first click), no previous mask;
- or a click step: a previous mask corrupted from the ground truth (model/training/corrupt.py),
  or for a share `p_partial` of the click starts a part of the object around the first click,
  one to `max_clicks` corrective clicks on its errors, and the error region the newest click
  addresses (the loss weights it); a share of these are cut as the predictor's local view
  around the newest click; for a share `p_held` of them, where another object lies near, the
  object's voxels next to it are moved from the previous mask into the other objects' channel
  (corrupt.held_by_neighbour: a neighbour's answer grown into it, as prev_pred shows at
  inference) and the clicks go on that error;
- or, for a share `p_tile`, one of the predictor's boundary views (predictor._tile_pass): the
  object's answer, as a coarse and slightly wrong copy of the ground truth, cut at a fraction of
  the ROI around a point of its boundary, with the start's prompts and no new click.
Rounds on the network's own predictions are added in the training loop, which holds the net.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from model.config import ModelConfig
from model.encoding import box_channel, encode
from model.roi import Roi
from model.training.corrupt import (
    click_rounds,
    corrupt,
    dilate,
    erode,
    error_component,
    held_by_neighbour,
    shift,
)
from model.training.data import Volume
from model.training.sampler import Sample, augment_intensity, local_sample, make_sample, next_click


@dataclass(frozen=True)
class StreamConfig:
    """The mix of starts and states; its values live in TrainConfig (TrainConfig.stream())."""

    p_synthetic: float
    p_box: float
    p_box2d: float
    p_small: float
    p_partial: float
    p_nested: float
    p_first: float
    p_local: float
    max_clicks: int
    p_official_click: float
    p_tile: float = 0.0
    p_hard: float = 0.0  # draws by the network's weakness on each object (Pool.draw_object)
    p_held: float = 0.0  # click items whose edge near a neighbour the neighbour's mask holds


class Pool:
    """Training volumes in memory: real cases (loaded once) and a fixed synthetic pool."""

    def __init__(self, real: list[Volume], synthetic: list[Volume], p_synthetic: float) -> None:
        self.real, self.synthetic = real, synthetic
        self.p_synthetic = p_synthetic if real else 1.0
        self.hard_objects: list[tuple[int, int]] = []
        self.hard_p = np.zeros(0)
        for v in real + synthetic:  # counted before workers fork, so no worker redoes it
            v.label_counts()
            v.nested_labels()

    def draw(self, rng: np.random.Generator) -> Volume:
        source = self.synthetic if (rng.random() < self.p_synthetic or not self.real) else self.real
        return source[int(rng.integers(len(source)))]

    def set_hardness(self, objects: list[tuple[int, int]], p: np.ndarray) -> None:
        """(index into `real`, label) pairs and their probabilities for `draw_object`
        (hardness.object_weights); set before the DataLoader's workers fork, so each holds them."""
        if len(objects) != len(p):
            raise ValueError(f"set_hardness: {len(objects)} objects, {len(p)} probabilities")
        self.hard_objects, self.hard_p = list(objects), np.asarray(p, float)

    def draw_object(self, rng: np.random.Generator) -> tuple[Volume, int] | None:
        """A real (volume, label) drawn by 1 - its measured Dice; None without a table."""
        if not self.hard_objects:
            return None
        i, label = self.hard_objects[int(rng.choice(len(self.hard_objects), p=self.hard_p))]
        return self.real[i], label


def grid_roi(config: ModelConfig) -> Roi:
    """The ROI that is the grid itself: training prompts live in grid coordinates."""
    return Roi((0, 0, 0), tuple(config.grid), tuple(config.grid))  # type: ignore[arg-type]


def encode_sample(
    s: Sample, image: torch.Tensor, prev: np.ndarray | None, use_others: bool, config: ModelConfig
) -> torch.Tensor:
    """(C, *grid) network input of a sample, through the same encode() inference uses."""
    prev_map = None
    if prev is not None:
        lab = np.zeros(config.grid, np.uint8)
        if use_others:
            lab[s.others] = 2
        lab[prev] = 1
        prev_map = torch.from_numpy(lab)
    return encode(image, prev_map, s.prompts, grid_roi(config), s.spacing, config)


@dataclass
class Item:
    """One training item; `x` is ready for the network, the rest lets the loop play more rounds."""

    x: torch.Tensor  # (C, *grid) float16
    sample: Sample
    image: torch.Tensor  # augmented raw intensities on the grid, float16
    prev: np.ndarray | None
    region: np.ndarray  # bool: the error the newest click addresses (empty at a first step)
    use_others: bool
    kind: str  # "first", "click", "local" or "tile"
    outside: np.ndarray  # bool: the object's voxels outside its challenge box's prism (`outside_prism`)


def outside_prism(s: Sample, config: ModelConfig) -> np.ndarray:
    """The target's voxels that lie outside the sample's challenge box prism (empty for a click
    or a viewer's start). The challenge's rectangle bounds the object on its middle slice only;
    on every other slice it may leave it, and the loss can weight those voxels up
    (TrainConfig.outside_weight): the network had learnt to treat the prism as the object's
    edge (on 88 box starts of 22 training files it found 0.7 % of the target voxels outside it,
    where 11 % lay; docs/validation.md, "The prism is not the object's edge")."""
    if s.start != "box" or s.prompts.box is None:
        return np.zeros(config.grid, bool)
    return s.target & ~(box_channel(grid_roi(config), s.prompts.box, config.grid) > 0)


def coarse_answer(target: np.ndarray, spacing: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The object's answer as the object's grid gives it: the target at 1/2 to 1/3 the grid's
    resolution (its edge placed to a coarse voxel), then moved by up to a few mm (dilated,
    eroded or shifted by a voxel or two), as a network's answer is wrong at its edge."""
    factor = int(rng.integers(2, 4))
    t = torch.from_numpy(target.astype(np.float32))[None, None]
    low = torch.nn.functional.avg_pool3d(t, factor, ceil_mode=True)
    up = torch.nn.functional.interpolate(low, size=target.shape, mode="trilinear", align_corners=False)
    out = up[0, 0].numpy() > 0.5
    move = rng.integers(4)
    if move == 1:
        out = dilate(out, spacing, float(rng.uniform(0.5, 2.0)) * float(spacing.min()))
    elif move == 2:
        out = erode(out, spacing, float(rng.uniform(0.5, 2.0)) * float(spacing.min()))
    elif move == 3:
        out = shift(out, rng.integers(-1, 2, 3))
    return out if out.any() else target.copy()


def _tile_item(s: Sample, rng: np.random.Generator, config: ModelConfig) -> tuple[Sample, np.ndarray] | None:
    """A boundary view of `s` (see the module docstring), or None when it misses the object."""
    prev = coarse_answer(s.target, np.asarray(s.spacing), rng)
    edge = np.argwhere(prev & ~erode(prev, np.asarray(s.spacing), float(np.min(s.spacing))))
    if not len(edge):
        return None
    centre = tuple(int(v) for v in edge[int(rng.integers(len(edge)))])
    return local_sample(s, prev, centre, rng, config, float(rng.uniform(0.35, 0.65)))  # type: ignore[arg-type]


def _draw(
    pool: Pool, rng: np.random.Generator, config: ModelConfig, mix: StreamConfig, first: bool
) -> Sample:
    """A random object of the pool as `make_sample` prepares it, drawn again until one comes: a
    share `p_hard` of the draws by the network's weakness on each object (Pool.draw_object)."""
    while True:
        hard = pool.draw_object(rng) if mix.p_hard > 0 and rng.random() < mix.p_hard else None
        vol, label = hard if hard is not None else (pool.draw(rng), None)
        s = make_sample(
            vol,
            rng,
            config,
            mix.p_box,
            mix.p_box2d,
            mix.p_small,
            mix.p_nested,
            keep_native=True,
            first_step=first,
            p_partial=mix.p_partial,
            label=label,
        )
        if s is not None:
            return s


def make_item(pool: Pool, rng: np.random.Generator, config: ModelConfig, mix: StreamConfig) -> Item:
    """One training item drawn from the pool (see the module docstring for the mix)."""
    prev: np.ndarray | None = None
    held: np.ndarray | None = None
    region = np.zeros(config.grid, bool)
    if mix.p_tile > 0 and rng.random() < mix.p_tile:
        kind = "tile"
        while True:
            view = _tile_item(_draw(pool, rng, config, mix, first=True), rng, config)
            if view is not None:
                break
        s, prev = view
    else:
        first = bool(rng.random() < mix.p_first)
        s = _draw(pool, rng, config, mix, first)
        kind = "first"
        if not first:
            kind = "click"
            prism = None
            if s.prompts.box is not None and s.start == "box":
                prism = box_channel(grid_roi(config), s.prompts.box, config.grid) > 0
            if s.part is not None:  # a part of the object around the first click (make_sample)
                start = s.part
            else:
                start, _ = corrupt(s.target, s.others, np.asarray(s.spacing), rng, prism)
            if mix.p_held > 0 and rng.random() < mix.p_held:
                held = held_by_neighbour(s.target, s.others, np.asarray(s.spacing), rng)
                if held is not None:  # the neighbour's mask, not this one, holds those voxels
                    start, s.others = start & ~held, s.others | held
            n = int(rng.integers(1, mix.max_clicks + 1))
            prev, clicks, region = click_rounds(
                start, s.target, n, rng, lambda p, t: next_click(p, t, rng, mix.p_official_click)
            )
            for k, point in clicks:
                getattr(s.prompts, k).append(point)
            if clicks and rng.random() < mix.p_local:
                local = local_sample(s, prev, clicks[-1][1], rng, config, float(rng.uniform(0.25, 0.6)), held)
                if local is not None:
                    s, prev = local
                    newest = getattr(s.prompts, clicks[-1][0])
                    region = error_component(prev, s.target, newest[-1]) if newest else np.zeros_like(prev)
                    kind = "local"
    s.native = None
    image = augment_intensity(s.image, rng)
    # the other objects' masks as context, or not; always where a neighbour holds part of the object
    use_others = held is not None or bool(rng.random() < 0.5)
    x = encode_sample(s, image, prev, use_others, config)
    return Item(x.half(), s, image.half(), prev, region, use_others, kind, outside_prism(s, config))


class ItemStream(IterableDataset):
    """Endless items; each worker draws from its own seed, so resumed runs see new samples."""

    def __init__(self, pool: Pool, config: ModelConfig, mix: StreamConfig, seed: int) -> None:
        self.pool, self.config, self.mix, self.seed = pool, config, mix, seed

    def __iter__(self):
        info = get_worker_info()
        wid = info.id if info is not None else 0
        if info is not None:  # many workers: one thread each
            torch.set_num_threads(1)
        rng = np.random.default_rng([self.seed, wid])
        while True:
            yield make_item(self.pool, rng, self.config, self.mix)


def collate(items: list[Item]) -> list[Item]:
    """Items stay a list: the loop stacks what it needs."""
    return items
