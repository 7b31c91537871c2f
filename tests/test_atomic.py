"""model.atomic: a target file is either the old one or the whole new one, never a torso."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model.atomic import torch_save_atomic, write_bytes_atomic
from model.config import ModelCard, ModelConfig


def test_torch_save_atomic_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    torch_save_atomic({"w": torch.arange(4.0)}, path)
    assert torch.equal(torch.load(path)["w"], torch.arange(4.0))
    assert [p.name for p in tmp_path.iterdir()] == ["w.pt"]


def test_failed_torch_save_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    torch_save_atomic({"step": 1}, path)
    before = path.read_bytes()

    class Unpicklable:
        def __reduce__(self) -> tuple:
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError, match="cannot pickle"):  # fails part-way through the write
        torch_save_atomic({"step": 2, "bad": Unpicklable()}, path)
    assert path.read_bytes() == before
    assert torch.load(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_failed_rename_leaves_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "model.json"
    path.write_bytes(b"old")

    def refuse(src: str, dst: str) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr("model.atomic.os.replace", refuse)
    with pytest.raises(OSError, match="disk gone"):
        write_bytes_atomic(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.json"]


def test_model_card_save_is_whole(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    ModelCard(config=ModelConfig(), card={"note": "x"}).save(path)
    loaded = ModelCard.load(path)
    assert loaded.config == ModelConfig()
    assert loaded.card == {"note": "x"}
    assert [p.name for p in tmp_path.iterdir()] == ["model.json"]


def test_the_case_writer_stays_free_of_torch() -> None:
    """model.case_io writes through this module on paths that load no torch (the box-prism
    baseline's predict.sh): importing either must not import torch."""
    code = "import sys, model.case_io, model.atomic; assert 'torch' not in sys.modules"
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
