"""Tests of model.training.slim_ckpt: slim then restore gives a checkpoint that loads into the network
and AdamW (weights to fp16 precision, moments to bf16 precision, step counters kept) and that
train.py resumes; the slim file is under half the full one; parts; starting from shipped weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from model.config import ModelCard, ModelConfig
from model.network import ResEncUNet
from model.predictor import CARD_FILE, WEIGHTS_FILE
from model.training.slim_ckpt import from_weights, load_slim, main, save_slim, slim, unslim
from model.training.train import train

TINY = {"features": [4, 8, 16], "blocks_per_stage": [1, 1, 1], "grid": [16, 16, 16]}


def _checkpoint(config: ModelConfig, steps: int = 1) -> tuple[dict, ResEncUNet, torch.optim.AdamW]:
    """A checkpoint as train.py saves it: the network and an AdamW state after `steps` steps."""
    torch.manual_seed(0)
    net = ResEncUNet(config)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    for _ in range(steps):
        opt.zero_grad()
        net(torch.randn(1, config.in_channels, 32, 32, 32)).mean().backward()
        for g in opt.param_groups:
            g["lr"] = np.float64(2e-3)  # train.py sets a numpy float
        opt.step()
    ckpt = {
        "model": net.state_dict(),
        "optim": opt.state_dict(),
        "step": steps,
        "best": 0.4321,
        "wall_s": 12.5,
        "model_config": config.to_dict(),
        "train_config": {"steps": 10},
    }
    return ckpt, net, opt


def test_round_trip_of_the_shipped_architecture(tmp_path: Path):
    ckpt, net, opt = _checkpoint(ModelConfig())
    full = tmp_path / "last.pt"
    torch.save(ckpt, full)
    main(["--ckpt", str(full), "--out", str(tmp_path / "last_slim.pt")])
    slim_size, full_size = (tmp_path / "last_slim.pt").stat().st_size, full.stat().st_size
    assert slim_size < full_size / 2
    assert slim_size < 16 * 2**20  # what comes back from the lent GPU, in one file
    main(["--restore", "--ckpt", str(tmp_path / "last_slim.pt"), "--out", str(tmp_path / "restored.pt")])
    back = torch.load(tmp_path / "restored.pt", map_location="cpu", weights_only=False)

    net2 = ResEncUNet(ModelConfig.from_dict(back["model_config"]))
    net2.load_state_dict(back["model"])
    opt2 = torch.optim.AdamW(net2.parameters(), lr=2e-3)
    opt2.load_state_dict(back["optim"])
    for k, v in net.state_dict().items():
        assert back["model"][k].dtype == v.dtype
        assert torch.equal(back["model"][k], v.half().float())
    for pid, st in opt.state_dict()["state"].items():
        st2 = back["optim"]["state"][pid]
        assert torch.equal(st2["step"], st["step"])
        for key in ("exp_avg", "exp_avg_sq"):
            a, b = st[key], st2[key]
            assert b.dtype == a.dtype == torch.float32
            on = a != 0
            assert torch.all(b[on] != 0)  # fp16 would flush most of exp_avg_sq to 0
            assert torch.all((a[on] - b[on]).abs() <= a[on].abs() * 2**-8)
    assert back["optim"]["param_groups"][0]["weight_decay"] == 1e-4
    assert {k: back[k] for k in ("step", "best", "wall_s", "train_config")} == {
        "step": 1,
        "best": 0.4321,
        "wall_s": 12.5,
        "train_config": {"steps": 10},
    }


def test_reset_best_and_parts(tmp_path: Path):
    ckpt, _, _ = _checkpoint(ModelConfig.from_dict(TINY))
    out = tmp_path / "s.pt"
    parts = save_slim(slim(ckpt, reset_best=True), out, max_mib=0.01)
    assert len(parts) > 1 and not out.exists()
    assert all(p.stat().st_size <= 0.01 * 2**20 for p in parts)
    payload = load_slim(out)
    assert payload["ckpt"]["best"] == -1.0
    assert unslim(payload)["step"] == 1
    assert save_slim(payload, out) == [out]  # one file again: the parts go
    assert not list(tmp_path.glob("s.pt.part*"))
    assert unslim(load_slim(out), reset_best=False)["best"] == -1.0
    with pytest.raises(FileNotFoundError):
        load_slim(tmp_path / "missing.pt")
    (tmp_path / "plain.pt").write_bytes(b"not a slim file")
    with pytest.raises(ValueError, match="not a slim checkpoint"):
        load_slim(tmp_path / "plain.pt")


def _weights_dir(tmp_path: Path) -> Path:
    config = ModelConfig.from_dict(TINY)
    net = ResEncUNet(config)
    d = tmp_path / "weights"
    d.mkdir()
    torch.save({k: v.half() for k, v in net.state_dict().items()}, d / WEIGHTS_FILE)
    ModelCard(config=config, card={"training": {"steps": 7}}).save(d / CARD_FILE)
    return d


def test_restored_checkpoint_resumes_in_train(tmp_path: Path, tiny_train_config):
    """Start a run from shipped weights through a slim file; train.py resumes at step 0, then at 2."""
    cfg = tiny_train_config(
        shape=(16, 24, 24),
        val_roots=[],
        samples=2,
        batch_size=1,
        warmup_samples=1,
        n_synthetic=1,
        synthetic_shape=[16, 16, 16],
        max_rounds=0,
        val_every=100,
        n_val_samples=4,
        ckpt_every=1,
    )
    weights = _weights_dir(tmp_path)
    slim_file = tmp_path / "run" / "last_slim.pt"
    main(["--from-weights", str(weights), "--out", str(slim_file)])
    main(["--restore", "--ckpt", str(slim_file), "--out", str(tmp_path / "run" / "last.pt")])
    start = torch.load(tmp_path / "run" / "last.pt", map_location="cpu", weights_only=False)
    assert start["step"] == 0 and start["best"] == -1.0 and start["optim"]["state"] == {}
    shipped = torch.load(weights / WEIGHTS_FILE, weights_only=True)
    assert all(torch.equal(start["model"][k], v.float()) for k, v in shipped.items())

    train(cfg)
    after = torch.load(tmp_path / "run" / "last.pt", map_location="cpu", weights_only=False)
    assert after["step"] == 2 and after["optim"]["state"]
    main(["--ckpt", str(tmp_path / "run" / "last.pt"), "--out", str(slim_file)])
    main(["--restore", "--ckpt", str(slim_file), "--out", str(tmp_path / "run" / "last.pt")])
    cfg.samples = 3
    train(cfg)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "loss" in r] == [1, 2, 3]


def test_from_weights_full_and_cli_checks(tmp_path: Path):
    weights = _weights_dir(tmp_path)
    ckpt = from_weights(weights, lr=1e-3, weight_decay=0.05)
    assert ckpt["optim"]["param_groups"][0]["weight_decay"] == 0.05
    assert ckpt["train_config"]["card"] == {"steps": 7}
    main(["--from-weights", str(weights), "--full", "--out", str(tmp_path / "full.pt")])
    full = torch.load(tmp_path / "full.pt", weights_only=False)
    assert full["step"] == 0 and all(v.dtype == torch.float32 for v in full["model"].values())
    with pytest.raises(SystemExit):
        main(["--ckpt", str(tmp_path / "full.pt"), "--full", "--out", str(tmp_path / "x.pt")])
    main(["--ckpt", str(tmp_path / "full.pt"), "--out", str(tmp_path / "s.pt")])
    with pytest.raises(SystemExit):  # already slim: --restore was meant
        main(["--ckpt", str(tmp_path / "s.pt"), "--out", str(tmp_path / "t.pt")])
