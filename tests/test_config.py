"""Tests of model.config: the JSON card that ships beside the weights."""

from __future__ import annotations

import json

import pytest

from model.config import CHANNELS, ModelCard, ModelConfig


def test_card_round_trip_restores_tuples(tmp_path) -> None:
    cfg = ModelConfig(
        features=(4, 8, 16),
        blocks_per_stage=(1, 1, 2),
        grid=(16, 24, 32),
        channels=("image", "box", "fg_clicks", "bg_clicks"),
        click_radius_mm=2.5,
        max_zoom_out=3,
    )
    card = {"training": {"steps": 60, "command": "python -m model.training.train"}, "metrics": [0.5, 0.6]}
    path = tmp_path / "model.json"
    ModelCard(config=cfg, card=card).save(path)
    payload = json.loads(path.read_text())
    assert payload["config"]["grid"] == [16, 24, 32]  # JSON has lists ...
    assert payload["training"]["steps"] == 60
    loaded = ModelCard.load(path)
    assert loaded.config == cfg  # ... the loaded config has tuples again
    assert loaded.config.grid == (16, 24, 32) and isinstance(loaded.config.grid, tuple)
    assert isinstance(loaded.config.features, tuple) and isinstance(loaded.config.channels, tuple)
    assert loaded.config.in_channels == 4
    assert loaded.card == card
    hash(loaded.config)  # frozen and hashable again (lists would not be)


def test_defaults() -> None:
    cfg = ModelConfig()
    assert cfg.channels == CHANNELS and cfg.in_channels == 6
    assert ModelConfig.from_dict({}) == cfg
    assert ModelConfig.from_dict({"grid": [32, 32, 32]}) == ModelConfig(grid=(32, 32, 32))
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_unknown_keys_rejected(tmp_path) -> None:
    with pytest.raises(ValueError, match="featuers"):
        ModelConfig.from_dict({"featuers": [4, 8]})
    path = tmp_path / "model.json"
    path.write_text(json.dumps({"config": {"grid": [8, 8, 8], "zoom": 2}, "note": "x"}))
    with pytest.raises(ValueError, match="zoom"):
        ModelCard.load(path)


def test_config_is_frozen() -> None:
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        ModelConfig().grid = (8, 8, 8)  # type: ignore[misc]
