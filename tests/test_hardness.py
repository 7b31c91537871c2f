"""Tests of model.training.hardness: per-object box-step Dice, the weights drawn by, the run's
table kept and reused, and the pool drawing the objects the network gets wrong more often."""

from __future__ import annotations

import json
from contextlib import nullcontext

import numpy as np
import pytest
import torch
from helpers import ConstNet

from model.config import ModelConfig
from model.synthetic import synth_case
from model.training import hardness
from model.training.data import Volume
from model.training.stream import Pool, _draw
from model.training.train import TrainConfig

CFG = ModelConfig(features=(4, 8, 16), blocks_per_stage=(1, 1, 1), grid=(16, 16, 16))


def _vol(name: str, seed: int) -> Volume:
    imgs, labels, sp = synth_case(np.random.default_rng(seed), (24, 32, 32), 3)
    return Volume(name, imgs, labels, tuple(float(v) for v in sp[::-1]))  # type: ignore[arg-type]


def _labels(vol: Volume) -> set[str]:
    return {str(k) for k in np.unique(vol.gts) if k > 0}


def test_measure_scores_every_object_and_restores_the_mode() -> None:
    vols = [_vol("a", 0), _vol("b", 1)]
    cpu = torch.device("cpu")
    net = ConstNet(-5.0).train()  # answers nothing: Dice 0 on every object
    table = hardness.measure(net, vols, CFG, 2, 0, nullcontext, cpu)
    assert net.training
    assert set(table) == {"a", "b"}
    for vol in vols:
        assert set(table[vol.name]) == _labels(vol)
        assert all(d == 0.0 for d in table[vol.name].values())
    # answering everything: Dice 2|t| / (N + |t|), above 0 and below 1
    full = hardness.measure(ConstNet(5.0), vols, CFG, 2, 0, nullcontext, cpu)
    assert all(0.0 < d < 1.0 for per in full.values() for d in per.values())


def test_weights_follow_one_minus_dice_with_a_floor() -> None:
    vols = [_vol("a", 0)]
    table = {"a": {"1": 0.0, "2": 0.98}, "not_in_pool": {"1": 0.5}}
    objects, p = hardness.object_weights(table, vols, floor=0.05)
    assert objects == [(0, 1), (0, 2)]
    np.testing.assert_allclose(p, [1.0 / 1.05, 0.05 / 1.05])


def test_the_table_is_measured_once_and_read_back(tmp_path) -> None:
    path = tmp_path / "hardness.json"
    table = hardness.load_or_measure(path, lambda: {"a": {"1": 0.25}}, write=True)
    assert table == {"a": {"1": 0.25}}
    assert json.loads(path.read_text())["per_object"] == table

    def must_not_run() -> dict:
        raise AssertionError("a resumed run measured again")

    assert hardness.load_or_measure(path, must_not_run, write=True) == table
    assert not (tmp_path / "other.json").exists()
    hardness.load_or_measure(tmp_path / "other.json", lambda: {}, write=False)  # ranks > 0
    assert not (tmp_path / "other.json").exists()


def test_pool_draws_hard_objects_by_their_weight() -> None:
    vols = [_vol("a", 0), _vol("b", 1)]
    pool = Pool(vols, [], 0.0)
    assert pool.draw_object(np.random.default_rng(0)) is None  # no table: no hard draws
    pool.set_hardness([(0, 1), (1, 2)], np.array([0.9, 0.1]))
    rng = np.random.default_rng(0)
    draws = [pool.draw_object(rng) for _ in range(2000)]
    first = sum(1 for v, label in draws if v.name == "a" and label == 1) / len(draws)
    assert 0.87 < first < 0.93
    assert {(v.name, label) for v, label in draws} == {("a", 1), ("b", 2)}
    with pytest.raises(ValueError, match="2 objects, 1 probabilities"):
        pool.set_hardness([(0, 1), (1, 2)], np.array([1.0]))


def test_hard_draws_prepare_the_drawn_object() -> None:
    vols = [_vol("a", 0)]
    pool = Pool(vols, [], 0.0)
    pool.set_hardness([(0, 2)], np.array([1.0]))
    mix = TrainConfig(p_hard=1.0).stream()
    rng = np.random.default_rng(0)
    samples = [_draw(pool, rng, CFG, mix, first=True) for _ in range(10)]
    assert {s.native.label for s in samples} == {2}
    # without hard draws every label comes up
    mix = TrainConfig(p_hard=0.0).stream()
    labels = {_draw(pool, rng, CFG, mix, first=True).native.label for _ in range(60)}
    assert {str(k) for k in labels} == _labels(vols[0])
