"""Tests of model.training.train: the tiny overfit run of issue 4 (loss falls, Dice rises) and resuming."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from model.config import ModelConfig
from model.network import ResEncUNet
from model.training.data import load_volume
from model.training.sampler import make_sample
from model.training.train import TrainConfig, train, validate


def _setup(tiny_train_config, steps: int) -> TrainConfig:
    """One synthetic case (24, 32, 32) with 2 objects, trained on and validated on."""
    return tiny_train_config(
        steps=steps,
        batch_size=2,
        lr=0.01,
        warmup_steps=5,
        n_synthetic=2,
        synthetic_shape=[16, 24, 24],
        max_rounds=1,
        val_every=10_000,
        n_val_samples=4,
        ckpt_every=10_000,
        threads=1,
    )


def _losses(run: Path) -> list[float]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if "loss" in r]


def test_tiny_overfit_loss_falls_dice_rises(tmp_path, tiny_train_config) -> None:
    cfg = _setup(tiny_train_config, steps=60)
    model_cfg = ModelConfig.from_dict(cfg.model)
    vol = load_volume(tmp_path / "train" / "synthetic_case_000.npz")
    rng = np.random.default_rng(11)
    val = [s for s in (make_sample(vol, rng, model_cfg) for _ in range(40)) if s is not None][:8]
    assert len(val) == 8

    torch.manual_seed(cfg.seed)  # the same initialisation train() starts from
    before_net = ResEncUNet(model_cfg)
    dice_before = validate(before_net, val, model_cfg, torch.device("cpu"))

    run = train(cfg, resume=False)
    losses = _losses(run)
    assert len(losses) == 60
    first, last = float(np.mean(losses[:5])), float(np.mean(losses[-5:]))
    assert last < first, (first, last)

    state = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    assert state["step"] == 60
    net = ResEncUNet(ModelConfig.from_dict(state["model_config"]))
    net.load_state_dict(state["model"])
    dice_after = validate(net, val, model_cfg, torch.device("cpu"))
    assert dice_after["dice_r0"] > dice_before["dice_r0"], (dice_before, dice_after)
    assert dice_after["val_score"] > dice_before["val_score"], (dice_before, dice_after)
    assert (run / "best.pt").exists() and (run / "train_config.json").exists()


def test_resume_continues_step_counter(tmp_path, tiny_train_config) -> None:
    cfg = _setup(tiny_train_config, steps=3)
    run = train(cfg, resume=True)  # nothing to resume yet
    s3 = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    assert s3["step"] == 3 and s3["train_config"]["steps"] == 3
    assert set(s3) >= {"model", "optim", "step", "best", "wall_s", "model_config", "train_config"}
    assert tuple(s3["model_config"]["features"]) == (4, 8, 16)

    cfg.steps = 5
    train(cfg, resume=True)
    s5 = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    assert s5["step"] == 5 and s5["train_config"]["steps"] == 5
    assert s5["wall_s"] >= s3["wall_s"]
    # the resumed run logged steps 4 and 5 only: each step once, in order
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    assert steps == [1, 2, 3, 4, 5]
    # the weights moved on from the 3-step checkpoint
    changed = any(not torch.equal(s3["model"][k], s5["model"][k]) for k in s3["model"])
    assert changed
    # the optimizer state was restored, not restarted: Adam's step count continues from 3
    adam_steps = {int(v["step"]) for v in s5["optim"]["state"].values()}
    assert adam_steps == {5}


def test_run_without_real_data_warns_and_trains_on_synthetic(tmp_path, tiny_train_config, capsys) -> None:
    """A clone without ../shared/data: one warning line per config key, then synthetic-only training."""
    missing = tmp_path / "shared" / "data" / "extra" / "train"
    cfg = _setup(tiny_train_config, steps=1)
    cfg.roots, cfg.val_roots, cfg.p_synthetic = [str(missing)], [str(missing)], 0.3
    run = train(cfg, resume=False)
    err = capsys.readouterr().err
    assert f"warning: no cases in config key 'roots' (synthetic data only): {missing} (missing)" in err
    assert "config key 'val_roots'" in err
    assert (run / "last.pt").exists()
