"""Helpers shared by several test files (not a test module: pytest collects only test_*.py)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from model.training.data import Volume


def real_cases_dir() -> Path:
    """The real cases (imgs/, gts/): `SEGFM_CASES` where set, else ../shared/data/cases. A lent GPU
    machine gets no ../shared, so its tests read a copy carried with the tree through the
    variable."""
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "cases"
    return Path(os.environ.get("SEGFM_CASES", default))


class ConstNet(nn.Module):
    """A network whose output is one constant logit everywhere."""

    def __init__(self, logit: float) -> None:
        super().__init__()
        self.logit = logit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 1, *x.shape[2:]), self.logit, dtype=x.dtype)


def unpicklable(path: Path, key: str) -> Path:
    """Replace the pickled payload of `key` with bytes no unpickler reads (the header stays valid)."""
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    data = members[f"{key}.npy"]
    members[f"{key}.npy"] = data[: data.index(b"\n") + 1] + b"\x80\x04not a pickle"
    with zipfile.ZipFile(path, "w") as z:
        for n, d in members.items():
            z.writestr(n, d)
    return path


def large_block() -> Volume:
    """One object far larger than its first click's neighbourhood, in a volume with room around
    it for any ROI: a 20 x 40 x 40 mm block (the partial starts of model/training/sampler.py)."""
    gts = np.zeros((64, 128, 128), np.uint8)
    gts[22:42, 44:84, 44:84] = 1
    imgs = np.where(gts > 0, 180, 60).astype(np.uint8)
    return Volume("block", imgs, gts, (1.0, 1.0, 1.0))


def drifting_bar() -> Volume:
    """A bar that drifts one voxel in x per slice, so that its middle slice's rectangle (the
    challenge box's) misses most of it on the other slices: the object leaves its box prism."""
    imgs = np.full((24, 32, 32), 40, np.uint8)
    gts = np.zeros_like(imgs)
    for z in range(4, 20):
        gts[z, 12:18, z : z + 6] = 1
    imgs[gts > 0] = 200
    return Volume("bar", imgs, gts, (1.0, 1.0, 1.0))
