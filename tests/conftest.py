"""Shared test settings."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """On 2 cores, tiny networks run faster on one torch thread than on two contending ones
    (and CI shares the machine). Imported lazily: most tests never touch torch."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def real_cases_dir():
    """The real cases folder (tests/helpers.py `real_cases_dir`: SEGFM_CASES or ../shared/data/cases)."""
    from helpers import real_cases_dir as find

    return find()


@pytest.fixture
def tiny_train_config(tmp_path):
    """Factory of a tiny training run in tmp_path: one synthetic case (seed 3, `shape`, 2 objects)
    as a training-layout npz in tmp_path/train, a split that holds nothing out, and a TrainConfig of
    a 3-level network on a 16^3 grid around them. Keyword arguments override the config."""
    import json

    import numpy as np

    from model.synthetic import synth_case
    from model.training.train import TrainConfig

    def make(shape: tuple[int, int, int] = (24, 32, 32), **overrides) -> TrainConfig:
        train_dir = tmp_path / "train"
        train_dir.mkdir(exist_ok=True)
        case = train_dir / "synthetic_case_000.npz"
        if not case.exists():
            imgs, labels, spacing = synth_case(np.random.default_rng(3), shape, 2)
            assert labels.max() >= 1
            np.savez_compressed(case, imgs=imgs, gts=labels, spacing=spacing)
        split = tmp_path / "split.json"
        split.write_text(json.dumps({"val_substrings": []}))
        base = {
            "roots": [str(train_dir)],
            "val_roots": [str(train_dir)],
            "split_file": str(split),
            "out_dir": str(tmp_path / "run"),
            "p_synthetic": 0.0,
            "init_from": "",
            "workers": 0,
            "model": {"features": [4, 8, 16], "blocks_per_stage": [1, 1, 1], "grid": [16, 16, 16]},
        }
        return TrainConfig(**{**base, **overrides})

    return make


@pytest.fixture
def tiny_predictor():
    """A Predictor of a random 3-level network on a 16^3 grid (zero head bias, so it predicts a mix
    of foreground and background), seeded: the same weights in every test. CPU."""
    import torch

    from model.config import ModelConfig
    from model.network import ResEncUNet
    from model.predictor import Predictor

    config = ModelConfig(features=(4, 8, 16), blocks_per_stage=(1, 1, 1), grid=(16, 16, 16))
    torch.manual_seed(0)
    net = ResEncUNet(config)
    with torch.no_grad():
        net.head.bias.zero_()
    return Predictor(net, config, "cpu")
