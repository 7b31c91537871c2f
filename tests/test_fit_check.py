"""evaluation/fit_check.py: per-object grid Dice of first-step items drawn the training way."""

from __future__ import annotations

import csv
import math

import numpy as np
import torch
from helpers import drifting_bar, large_block

from evaluation import fit_check
from model.config import ModelConfig
from model.synthetic import synth_case

CONFIG = ModelConfig(features=(4, 8, 16), blocks_per_stage=(1, 1, 1), grid=(16, 16, 16))


def prism_net(x: torch.Tensor) -> torch.Tensor:
    """Logits of a network that answers the box prism and ignores the image."""
    box = x[:, CONFIG.channels.index("box")]
    return torch.where(box > 0, 10.0, -10.0)[:, None]


def test_a_network_answering_the_box_prism_scores_the_prism_dice() -> None:
    r = fit_check.fit_object(prism_net, large_block(), 1, CONFIG, 3, "box", np.random.default_rng(0))
    assert r.dice == r.prism_dice
    assert 0.5 < r.dice < 1.0  # the block fills its prism, up to the grid's rounding
    assert r.voxels == 20 * 40 * 40


def test_a_network_answering_nothing_scores_zero_and_a_click_start_has_no_prism() -> None:
    def empty(x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 1, *x.shape[2:]), -10.0)

    r = fit_check.fit_object(empty, large_block(), 1, CONFIG, 2, "click", np.random.default_rng(0))
    assert (r.dice, r.volume_ratio) == (0.0, 0.0)
    assert math.isnan(r.prism_dice)


def test_main_writes_one_row_per_object_of_the_chosen_labels(tmp_path, capsys) -> None:
    imgs, labels, spacing = synth_case(np.random.default_rng(3), (24, 48, 48), 3)
    n = int(labels.max())
    assert n >= 2
    np.savez_compressed(tmp_path / "case.npz", imgs=imgs, gts=labels, spacing=spacing)
    out = tmp_path / "fit.csv"
    assert fit_check.main([str(tmp_path), "--n", "1", "--csv", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [int(r["label"]) for r in rows] == list(range(1, n + 1))
    assert all(0.0 <= float(r["dice"]) <= 1.0 and 0.0 <= float(r["prism_dice"]) <= 1.0 for r in rows)
    assert f"{n} objects: mean Dice" in capsys.readouterr().out

    assert fit_check.main([str(tmp_path / "case.npz"), "--n", "1", "--labels", "2", "--csv", str(out)]) == 0
    assert [r["label"] for r in csv.DictReader(out.open())] == ["2"]


def test_the_share_outside_the_prism_and_what_was_found_of_it() -> None:
    """A bar that drifts across slices leaves its middle slice's rectangle: a network answering
    the prism finds none of what lies outside, one answering everywhere finds all of it; a
    click start and a viewer's one-slice box have no prism to leave."""
    bar = drifting_bar()

    def everything(x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 1, *x.shape[2:]), 10.0)

    boxed = fit_check.fit_object(prism_net, bar, 1, CONFIG, 3, "box", np.random.default_rng(0))
    assert 0.2 < boxed.outside < 1.0 and boxed.outside_voxels > 0
    assert boxed.found_outside == 0.0 and boxed.found_voxels == 0
    full = fit_check.fit_object(everything, bar, 1, CONFIG, 3, "box", np.random.default_rng(0))
    assert full.found_outside == 1.0 and full.outside == boxed.outside  # the same draws
    click = fit_check.fit_object(everything, bar, 1, CONFIG, 1, "click", np.random.default_rng(0))
    assert math.isnan(click.outside) and math.isnan(click.found_outside)
    flat = fit_check.fit_object(everything, bar, 1, CONFIG, 1, "box2d", np.random.default_rng(0))
    assert math.isnan(flat.outside) and math.isnan(flat.found_outside)  # a viewer's box has no prism
