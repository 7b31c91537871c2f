"""The model configuration: data, stored as JSON next to the weights (weights/model.json).

Everything the network, the ROI logic and the prompt encoding depend on lives here, so that a
checkpoint carries its own recipe and the code holds no scattered constants.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from model.atomic import write_bytes_atomic

CHANNELS = ("image", "prev_mask", "box", "fg_clicks", "bg_clicks", "other_masks")


@dataclass(frozen=True)
class ModelConfig:
    """Network, grid, prompt encoding and ROI policy of one checkpoint."""

    channels: tuple[str, ...] = CHANNELS
    features: tuple[int, ...] = (8, 16, 32, 64, 128)
    blocks_per_stage: tuple[int, ...] = (1, 1, 2, 2, 2)
    grid: tuple[int, int, int] = (64, 64, 64)
    click_radius_mm: float = 3.0
    click_min_grid_radius: float = 0.75  # in grid voxels (coarsest axis): a click never vanishes
    box_margin: float = 1.6  # ROI side = margin x object extent (box, clicks, previous mask)
    min_aspect: float = 0.5  # each ROI side is at least this share of the longest side
    min_roi_mm: float = 24.0
    default_roi_mm: float = 96.0  # clicks-only start: nothing tells the object's size yet
    min_roi_vox: int = 8
    max_zoom_out: int = 2
    zoom_factor: float = 1.6
    local_fraction: float = 0.0  # side of the click's local view / the object's ROI; 0 = no local pass
    # on a click step, a boxed class that has a mask is edited, not predicted again: the local
    # view around its newest click, with its prev_pred as previous mask, is its only pass and
    # changes the mask inside that view alone (needs local_fraction > 0); a class started from
    # clicks alone is still predicted again, since only its clicks tell its extent
    refine_locally: bool = False
    # after fusion, at each click: grow (fg) or cut (bg) the similar-intensity region connected to
    # it within this radius (model/click_grow.py); 0 = off. Tolerance in imgs' intensity units.
    grow_radius_mm: float = 0.0
    grow_tolerance: float = 20.0
    # a class is not grown when more than this share of a grow_shell_mm shell around its mask lies
    # within grow_tolerance of the mask's median intensity: the grow cannot tell the object from its
    # surroundings there (click_grow.leak_share). 1.0 = every class is grown
    grow_leak_limit: float = 1.0
    grow_shell_mm: float = 3.0
    # a background click inside its class's previous mask cuts none of that mask deeper than the
    # click itself, plus one coarsest voxel (click_grow._deeper_than); False = no such guard
    grow_depth_guard: bool = False
    # a foreground click adds at most this many times its class's size in voxels (the larger of
    # this step's answer and its previous mask), those nearest to it: a 15 mm grow from a click on
    # a 60-voxel brain nucleus flooded ten times its volume; 0 = no limit
    grow_add_limit: float = 0.0
    # boundary views: after an object's pass (and its zoom-outs), views tile_fraction of its ROI per
    # axis, at tile_positions places along each axis, look again at each part of its boundary at
    # that much finer a scale, with the pass's mask as their previous mask; their mean replaces the
    # pass's answer where they look. Only for ROIs larger than the grid; 0 = off
    tile_fraction: float = 0.0
    tile_positions: int = 3
    # edge snap (model/edge_snap.py): after fusion, each class the network answered this step has
    # the voxels within snap_band voxels of its edge, inside the region it answered, given to the
    # side (object or background) whose mean intensity in a snap_window_mm window is nearer, where
    # the two sides differ by snap_separation pooled standard deviations there; 0 = off
    snap_band: int = 0
    snap_window_mm: float = 12.0
    snap_separation: float = 1.0
    threshold: float = 0.5
    # mirror views averaged per forward pass (1 = none, up to 8: every flip of z, y, x; the network
    # trained on random flips). 4 views: neutral with early weights, below with the shipped ones at
    # 3-4x the time (docs/validation.md): off
    tta_mirrors: int = 1
    max_batch: int = 8  # classes per forward pass

    @property
    def in_channels(self) -> int:
        return len(self.channels)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from JSON; unknown keys are rejected so a typo never silently becomes a default."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        tuples = {k: tuple(v) for k, v in data.items() if isinstance(v, list)}
        return cls(**{**data, **tuples})


CARD_FILE = "model.json"  # a weights folder's card, beside model.predictor.WEIGHTS_FILE


@dataclass
class ModelCard:
    """What ships beside the checkpoint: the config plus provenance and validation figures."""

    config: ModelConfig
    card: dict[str, Any] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        payload = {"config": self.config.to_dict(), **self.card}
        write_bytes_atomic(path, (json.dumps(payload, indent=2, default=str) + "\n").encode())

    @classmethod
    def load(cls, path: Path) -> ModelCard:
        payload = json.loads(path.read_text())
        config = ModelConfig.from_dict(payload.pop("config"))
        return cls(config=config, card=payload)
