"""Training data: the official layout, plain folders of training-layout files, and the split.

The official tree is <root>/<modality>/<dataset>/<case>.npz with `imgs`, `gts`, `spacing`;
../shared/data/*/train holds the same files flat. Any folder is searched recursively, so both
work. Labels are relabelled sequentially as the organisers do before they make boxes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.ndimage import find_objects

from model.boxes import relabel_sequential
from model.case_io import spacing_zyx


@dataclass
class Volume:
    """One labelled training volume in memory (uint8 image, sequential labels, spacing z,y,x)."""

    name: str
    imgs: np.ndarray
    gts: np.ndarray
    spacing: tuple[float, float, float]
    _counts: np.ndarray | None = field(default=None, repr=False, compare=False)
    _nested: tuple[int, ...] | None = field(default=None, repr=False, compare=False)

    @property
    def n_classes(self) -> int:
        return int(self.gts.max())

    def label_counts(self) -> np.ndarray:
        """Voxels per label (index 0 = background), counted once: the small-object bias reads it
        for every sample."""
        if self._counts is None:
            self._counts = np.bincount(self.gts.ravel(), minlength=self.n_classes + 1)
        return self._counts

    def nested_labels(self) -> tuple[int, ...]:
        """The labels nested in another (`nested_labels`), found once: the sampler reads them for
        every sample."""
        if self._nested is None:
            self._nested = nested_labels(self.gts)
        return self._nested


NEST_SLACK = 1  # voxels a nested box may stick out of its container's
NEST_IOU = 0.7  # boxes this alike count as nested in each other


def nested_labels(gts: np.ndarray) -> tuple[int, ...]:
    """Labels whose bounding box lies inside another label's (NEST_SLACK voxels of slack) or nearly
    equals it (IoU >= NEST_IOU), sorted: a tumour in its organ, brain tumour sub-regions. There a
    box also holds the other object, so the network must tell them apart by its context; the
    sampler draws such objects more often than their share."""
    found = [(label, sl) for label, sl in enumerate(find_objects(gts), start=1) if sl is not None]
    if len(found) < 2:
        return ()
    labels = np.array([label for label, _ in found])
    lo = np.array([[s.start for s in sl] for _, sl in found])  # (n, 3)
    hi = np.array([[s.stop for s in sl] for _, sl in found])  # (n, 3), exclusive
    inside = np.all((lo[:, None] >= lo[None] - NEST_SLACK) & (hi[:, None] <= hi[None] + NEST_SLACK), axis=2)
    overlap = np.clip(np.minimum(hi[:, None], hi[None]) - np.maximum(lo[:, None], lo[None]), 0, None)
    inter = overlap.prod(axis=2)
    size = (hi - lo).prod(axis=1)
    iou = inter / (size[:, None] + size[None] - inter)
    nested = inside | (iou >= NEST_IOU)  # [i, j]: label i nested in label j
    np.fill_diagonal(nested, False)
    return tuple(int(v) for v in labels[nested.any(axis=1)])


def find_cases(roots: list[Path]) -> list[Path]:
    """Every .npz below the roots, sorted by name for a reproducible order."""
    files: list[Path] = []
    for root in roots:
        files += sorted(Path(root).rglob("*.npz"))
    return sorted(files, key=lambda p: p.name)


def empty_roots(roots: Iterable[str | Path]) -> list[tuple[Path, str]]:
    """(root, "missing" | "no .npz") for each root that yields no case.

    `find_cases` quietly returns nothing for such a root, so a mistyped path or a clone without
    ../shared/data would otherwise train on synthetic data alone without a word.
    """
    out = []
    for root in map(Path, roots):
        if not root.is_dir():
            out.append((root, "missing"))
        elif next(root.rglob("*.npz"), None) is None:
            out.append((root, "no .npz"))
    return out


def roots_warning(key: str, roots: list[str] | list[Path]) -> str | None:
    """One line naming the config key's roots that hold no case and how to point it at real data,
    or None when every root holds cases."""
    empty = empty_roots(roots)
    if not empty:
        return None
    what = ", ".join(f"{root} ({why})" for root, why in empty)
    alone = " (synthetic data only)" if len(empty) == len(roots) and key == "roots" else ""
    example = ", e.g. the official 3D_train_npz_random_10percent_16G" if key == "roots" else ""
    return (
        f"warning: no cases in config key '{key}'{alone}: {what}. Set '{key}' to folders of "
        f"<modality>/<dataset>/<case>.npz files with imgs, gts, spacing{example} (README, 'Data')"
    )


def warn_empty_roots(config_roots: dict[str, list[str]]) -> None:
    """Print `roots_warning` for each config key (e.g. roots, val_roots) to stderr."""
    for key, roots in config_roots.items():
        message = roots_warning(key, roots)
        if message:
            print(message, file=sys.stderr)


def load_volume(path: Path) -> Volume:
    """Read a training-layout file; spacing is stored x,y,z and returned z,y,x."""
    with np.load(path, allow_pickle=False) as data:
        imgs = np.asarray(data["imgs"])
        gts = relabel_sequential(np.asarray(data["gts"]))
        try:
            spacing = spacing_zyx(data["spacing"]) if "spacing" in data else (1.0, 1.0, 1.0)
        except ValueError as exc:
            raise ValueError(f"{path.name}: {exc}") from exc
    if imgs.ndim != 3 or imgs.shape != gts.shape:
        raise ValueError(f"{path.name}: imgs {imgs.shape} and gts {gts.shape} must be equal 3-D shapes")
    if imgs.dtype != np.uint8:
        imgs = np.clip(imgs, 0, 255).astype(np.uint8)
    return Volume(path.stem, imgs, gts, spacing)


def split_cases(files: list[Path], split_file: Path) -> tuple[list[Path], list[Path]]:
    """(train, val) by the substrings listed in the split file."""
    keys = json.loads(split_file.read_text())["val_substrings"]
    val = [f for f in files if any(k in f.name for k in keys)]
    train = [f for f in files if f not in val]
    return train, val
