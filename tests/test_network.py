"""Tests of model.network: output shape and per-sample independence (classes are batched at inference)."""

from __future__ import annotations

import pytest
import torch

from model.config import ModelConfig
from model.network import ResEncUNet

TINY = {"features": (4, 8, 16), "blocks_per_stage": (1, 1, 1)}


@pytest.mark.parametrize("grid", [(16, 16, 16), (8, 12, 16), (4, 8, 20)])
def test_output_shape(grid) -> None:
    cfg = ModelConfig(**TINY, grid=grid)
    torch.manual_seed(0)
    net = ResEncUNet(cfg).eval()
    x = torch.randn(2, cfg.in_channels, *grid)
    with torch.no_grad():
        y = net(x)
    assert y.shape == (2, 1, *grid)
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()


def test_in_channels_follow_config() -> None:
    cfg = ModelConfig(**TINY, grid=(8, 8, 8), channels=("image", "box", "fg_clicks"))
    net = ResEncUNet(cfg)
    assert net.stem[0].in_channels == 3
    with torch.no_grad():
        assert net.eval()(torch.randn(1, 3, 8, 8, 8)).shape == (1, 1, 8, 8, 8)
    with pytest.raises(RuntimeError):
        net(torch.randn(1, 6, 8, 8, 8))


def test_mismatched_stage_lists_rejected() -> None:
    with pytest.raises(ValueError, match="same length"):
        ResEncUNet(ModelConfig(features=(4, 8, 16), blocks_per_stage=(1, 1)))


def test_deeper_stage_has_more_blocks() -> None:
    net = ResEncUNet(ModelConfig(features=(4, 8, 16), blocks_per_stage=(1, 2, 3)))
    assert [len(s) for s in net.stages] == [1, 2, 3]
    assert len(net.ups) == len(net.decoders) == 2


def test_batch_independence_eval() -> None:
    cfg = ModelConfig(**TINY, grid=(16, 16, 16))
    torch.manual_seed(1)
    net = ResEncUNet(cfg).eval()
    # samples of very different scale: a shared (batch) norm would couple them
    x = torch.randn(3, cfg.in_channels, 16, 16, 16) * torch.tensor([1.0, 50.0, 0.01]).view(3, 1, 1, 1, 1)
    with torch.no_grad():
        full = net(x)
        for i in range(3):
            alone = net(x[i : i + 1])
            assert (full[i] - alone[0]).abs().max().item() < 1e-5
        # and the order of the batch does not matter
        perm = net(x[[2, 0, 1]])
    assert (perm[1] - full[0]).abs().max().item() < 1e-5
