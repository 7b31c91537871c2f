"""Training data: the official layout, plain folders of training-layout files, and the split.

The official tree is <root>/<modality>/<dataset>/<case>.npz with `imgs`, `gts`, `spacing`;
../shared/data/*/train holds the same files flat. Any folder is searched recursively, so both
work. Labels are relabelled sequentially as the organisers do before they make boxes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.boxes import relabel_sequential


@dataclass
class Volume:
    """One labelled training volume in memory (uint8 image, sequential labels, spacing z,y,x)."""

    name: str
    imgs: np.ndarray
    gts: np.ndarray
    spacing: tuple[float, float, float]
    _counts: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def n_classes(self) -> int:
        return int(self.gts.max())

    def label_counts(self) -> np.ndarray:
        """Voxels per label (index 0 = background), counted once: the small-object bias reads it
        for every sample."""
        if self._counts is None:
            self._counts = np.bincount(self.gts.ravel(), minlength=self.n_classes + 1)
        return self._counts


def find_cases(roots: list[Path]) -> list[Path]:
    """Every .npz below the roots, sorted by name for a reproducible order."""
    files: list[Path] = []
    for root in roots:
        files += sorted(Path(root).rglob("*.npz"))
    return sorted(files, key=lambda p: p.name)


def load_volume(path: Path) -> Volume:
    """Read a training-layout file; spacing is stored x,y,z and returned z,y,x."""
    with np.load(path, allow_pickle=False) as data:
        imgs = np.asarray(data["imgs"])
        gts = relabel_sequential(np.asarray(data["gts"]))
        spacing_xyz = np.asarray(data["spacing"], float) if "spacing" in data else np.ones(3)
    if imgs.ndim != 3 or imgs.shape != gts.shape:
        raise ValueError(f"{path.name}: imgs {imgs.shape} and gts {gts.shape} must be equal 3-D shapes")
    if imgs.dtype != np.uint8:
        imgs = np.clip(imgs, 0, 255).astype(np.uint8)
    spacing = tuple(float(s) if np.isfinite(s) and s > 0 else 1.0 for s in spacing_xyz[::-1])
    return Volume(path.stem, imgs, gts, spacing)  # type: ignore[arg-type]


def split_cases(files: list[Path], split_file: Path) -> tuple[list[Path], list[Path]]:
    """(train, val) by the substrings listed in the split file."""
    keys = json.loads(split_file.read_text())["val_substrings"]
    val = [f for f in files if any(k in f.name for k in keys)]
    train = [f for f in files if f not in val]
    return train, val
