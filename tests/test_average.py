"""model.training.average: the mean of a lineage's weights, exported like any checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

from model.config import ModelConfig
from model.network import ResEncUNet
from model.training.average import average_checkpoints
from model.training.export import export

TINY = ModelConfig(features=(4, 8), blocks_per_stage=(1, 1), grid=(16, 16, 16))


def _ckpt(path, seed: int, config: ModelConfig = TINY, history: list | None = None):
    torch.manual_seed(seed)
    net = ResEncUNet(config)
    state = {
        "model": net.state_dict(),
        "optim": {"state": {}},
        "step": 10 * seed,
        "samples": 40 * seed,
        "wall_s": 360.0 * seed,
        "hardware": f"box {seed}",
        "history": history or [],
        "model_config": config.to_dict(),
        "train_config": {"out_dir": f"runs/r{seed}"},
    }
    torch.save(state, path)
    return state


def test_average_is_the_elementwise_mean_and_keeps_the_newest_run(tmp_path) -> None:
    a = _ckpt(tmp_path / "a.pt", 1)
    b = _ckpt(tmp_path / "b.pt", 2, history=[{"run": "runs/r1", "hours": 0.1, "samples": 40}])
    out = average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt"], tmp_path / "avg" / "last.pt")
    avg = torch.load(out, map_location="cpu", weights_only=False)
    for key, value in avg["model"].items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (a["model"][key] + b["model"][key]) / 2)
    assert avg["samples"] == 80 and avg["history"] == b["history"] and "optim" not in avg
    assert avg["averaged_from"] == [str(tmp_path / "a.pt"), str(tmp_path / "b.pt")]
    # the averaged weights differ from both ends, and export records where they came from
    conv = next(k for k, v in avg["model"].items() if v.ndim == 5)
    assert not torch.equal(avg["model"][conv], a["model"][conv])
    assert not torch.equal(avg["model"][conv], b["model"][conv])
    export(out, tmp_path / "w")
    card = json.loads((tmp_path / "w" / "model.json").read_text())
    assert card["training"]["averaged_from"] == avg["averaged_from"]
    assert card["training_totals"]["samples"] == 40 + 80


def test_average_refuses_other_architectures_and_a_single_checkpoint(tmp_path) -> None:
    _ckpt(tmp_path / "a.pt", 1)
    deeper = ModelConfig(features=(4, 8, 8), blocks_per_stage=(1, 1, 1), grid=(16, 16, 16))
    _ckpt(tmp_path / "b.pt", 2, deeper)
    with pytest.raises(ValueError, match="another architecture"):
        average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt"], tmp_path / "avg.pt")
    with pytest.raises(ValueError, match="at least two"):
        average_checkpoints([tmp_path / "a.pt"], tmp_path / "avg.pt")
