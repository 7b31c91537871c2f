"""Tests of model.training.widen: the wider network computes what the trained one computes, its
added weights can learn, and its folder is a start that training and inference read."""

from __future__ import annotations

import json

import pytest
import torch

from model.config import ModelConfig
from model.network import ResEncUNet
from model.predictor import CARD_FILE, Predictor
from model.training.export import export
from model.training.train import TrainConfig, initial_state
from model.training.widen import main, widen

CFG = ModelConfig(features=(4, 8, 16), blocks_per_stage=(1, 2, 1), grid=(16, 16, 16))


def _trained(seed: int = 0) -> ResEncUNet:
    """A network whose norms and biases are not at their initial values, as after training."""
    torch.manual_seed(seed)
    net = ResEncUNet(CFG)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net.eval()


def test_wider_network_computes_the_same_function() -> None:
    old = _trained()
    new = widen(old, CFG, (6, 12, 20), seed=3).eval()
    assert sum(p.numel() for p in new.parameters()) > sum(p.numel() for p in old.parameters())
    x = torch.randn(2, CFG.in_channels, 16, 16, 16)
    with torch.no_grad():
        assert torch.allclose(new(x), old(x), atol=1e-5)


def test_added_weights_get_gradients_from_the_first_step() -> None:
    old = _trained()
    new = widen(old, CFG, (6, 12, 20)).train()
    x = torch.randn(1, CFG.in_channels, 16, 16, 16)
    new(x).square().mean().backward()
    # the head's weights from the added channels start at zero and must not stay there
    assert torch.all(new.head.weight[:, 4:] == 0)
    assert new.head.weight.grad is not None and new.head.weight.grad[:, 4:].abs().sum() > 0
    # the decoder's concat: the added channels of both halves are read by nothing old yet
    first = new.decoders[-1][0].weight  # reads cat(upsampled 6, skip 6) of which 4 + 4 are old
    assert torch.all(first[:4, 4:6] == 0) and torch.all(first[:4, 10:12] == 0)


def test_narrower_or_other_depth_is_refused() -> None:
    with pytest.raises(ValueError, match="widen"):
        widen(_trained(), CFG, (4, 6, 16))
    with pytest.raises(ValueError, match="widen"):
        widen(_trained(), CFG, (4, 8, 16, 32))


def test_cli_writes_a_start_for_training_and_inference(tmp_path) -> None:
    old = _trained()
    ckpt = tmp_path / "run" / "last.pt"
    ckpt.parent.mkdir()
    torch.save(
        {
            "model": old.state_dict(),
            "step": 5,
            "wall_s": 3600.0,
            "samples": 20,
            "model_config": CFG.to_dict(),
            "train_config": {"out_dir": "runs/a"},
        },
        ckpt,
    )
    export(ckpt, tmp_path / "w")
    main(["--weights", str(tmp_path / "w"), "--features", "6", "12", "20", "--out", str(tmp_path / "wide")])
    card = json.loads((tmp_path / "wide" / CARD_FILE).read_text())
    assert card["config"]["features"] == [6, 12, 20] and card["widened_from"]["features"] == [4, 8, 16]
    assert card["training_totals"] == {"hours": 1.0, "samples": 20}

    config, weights, history = initial_state(TrainConfig(), str(tmp_path / "wide"))
    assert config.features == (6, 12, 20) and history[-1]["run"] == "runs/a"
    narrow = Predictor.from_weights(tmp_path / "w", device="cpu")
    wide = Predictor.from_weights(tmp_path / "wide", device="cpu")
    x = torch.randn(1, CFG.in_channels, 16, 16, 16)
    assert torch.allclose(
        wide._probs(x), narrow._probs(x), atol=1e-5
    )  # the old channels' fp16 weights carry over bit for bit
