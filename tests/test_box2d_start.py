"""Tests of evaluation/box2d_start.py: the rectangle a viewer would draw, and both box-step runs."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from evaluation.box2d_start import box_step, one_slice
from model.boxes import Box
from model.case_io import Case


class AllForeground(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 1, *x.shape[2:]), 20.0)


def test_one_slice_keeps_the_rectangle_on_the_middle_slice() -> None:
    assert one_slice(Box(2, 9, 5, 3, 10, 2, 8)) == Box.on_slice(5, 3, 10, 2, 8)


def test_box_step_from_either_box(tiny_predictor) -> None:
    imgs = np.random.default_rng(0).integers(0, 255, (40, 48, 48), dtype=np.uint8)
    box = Box(18, 22, 20, 20, 27, 20, 27)
    case = Case("CT_x", imgs, (1.0, 1.0, 1.0), [box], None, None, None)
    tiny_predictor.net = AllForeground()
    prism = box_step(tiny_predictor, case, flat=False) == 1
    flat = box_step(tiny_predictor, case, flat=True) == 1
    zs = np.flatnonzero(prism.any(axis=(1, 2)))
    assert (zs[0], zs[-1]) == (18, 22)  # the challenge box's exact z range cuts the prediction
    assert np.flatnonzero(flat.any(axis=(1, 2))).size > 5  # the rectangle alone does not
