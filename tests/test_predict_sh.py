"""predict.sh end to end, exactly as the container runs it, on the real cases in ../shared/data/cases.

Needs trained weights in weights/ (skipped with the reason otherwise). Inputs are copied into
tmp_path, never into the project. Checks shape, dtype uint8 and labels 0..N at the box step and at
a click step (clicks, clicks_order and prev_pred added as the evaluator does).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import real_cases_dir

REPO = Path(__file__).resolve().parents[1]
CASES = real_cases_dir()
WEIGHT_SUFFIXES = {".pt", ".pth", ".ckpt", ".safetensors"}


def _has_checkpoint() -> bool:
    wdir = REPO / "weights"
    return wdir.is_dir() and any(p.suffix in WEIGHT_SUFFIXES for p in wdir.rglob("*") if p.is_file())


def _run_predict_sh(inp: Path, out: Path, weights: Path | None = None, cwd: Path | None = None):
    env = {
        **os.environ,
        "INPUT_DIR": str(inp),
        "OUTPUT_DIR": str(out),
        "PYTHON": sys.executable,
    }
    if weights is not None:
        env["WEIGHTS_DIR"] = str(weights)
    else:
        env.pop("WEIGHTS_DIR", None)
    return subprocess.run(
        ["sh", str(REPO / "predict.sh")],
        cwd=cwd or inp.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )


def test_predict_sh_is_posix_sh():
    res = subprocess.run(["sh", "-n", str(REPO / "predict.sh")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    if shutil.which("shellcheck"):
        res = subprocess.run(["shellcheck", str(REPO / "predict.sh")], capture_output=True, text=True)
        assert res.returncode == 0, res.stdout


def test_predict_sh_runs_from_any_folder(tmp_path):
    """Outside the container: infer.py is found next to the script; an empty input folder is fine."""
    inp, out, elsewhere = tmp_path / "in", tmp_path / "out", tmp_path / "elsewhere"
    inp.mkdir()
    elsewhere.mkdir()
    res = _run_predict_sh(inp, out, cwd=elsewhere)
    assert res.returncode == 0, res.stderr
    assert "no *.npz" in res.stderr


def _expected_labels(case_file: Path) -> int:
    with np.load(case_file, allow_pickle=True) as f:
        if "boxes" in f.files:
            return len(f["boxes"])
    with np.load(CASES / "gts" / case_file.name) as g:
        return int(g["gts"].max())


def _check_outputs(inp: Path, out: Path) -> None:
    for case_file in sorted(inp.glob("*.npz")):
        out_file = out / case_file.name
        assert out_file.exists(), f"no output for {case_file.name}"
        with np.load(case_file, allow_pickle=True) as f:
            shape = f["imgs"].shape
        with np.load(out_file) as o:
            segs = o["segs"]
        n = _expected_labels(case_file)
        assert segs.shape == shape, case_file.name
        assert segs.dtype == np.uint8, case_file.name
        assert int(segs.max()) <= n, f"{case_file.name}: label {segs.max()} > {n} classes"


def _click_step_input(src: Path, dst: Path, prev_pred: np.ndarray | None) -> None:
    """Rewrite a case as the evaluator does for click 1: one fg click per class (inside its GT)."""
    with np.load(src, allow_pickle=True) as f:
        arrays = {k: f[k] for k in ("imgs", "spacing", "boxes") if k in f.files}
    with np.load(CASES / "gts" / src.name) as g:
        gts = g["gts"]
    n = int(gts.max())
    clicks, order = [], []
    for k in range(1, n + 1):
        pts = np.argwhere(gts == k)
        z, y, x = (int(v) for v in pts[len(pts) // 2])
        clicks.append({"fg": [[z, y, x]], "bg": []})
        order.append(["fg"])
    if prev_pred is None:
        prev_pred = np.zeros(gts.shape, np.uint8)
    np.savez_compressed(
        dst, **arrays, clicks=clicks, clicks_order=order, prev_pred=prev_pred.astype(np.uint8)
    )


@pytest.mark.slow
@pytest.mark.skipif(not (CASES / "imgs").is_dir(), reason=f"real cases not found at {CASES}")
@pytest.mark.skipif(
    not _has_checkpoint(),
    reason="no trained checkpoint in weights/ yet (*.pt/*.pth/*.ckpt/*.safetensors): real model cannot run",
)
def test_predict_sh_end_to_end_on_real_cases(tmp_path):
    box_in, box_out = tmp_path / "box" / "inputs", tmp_path / "box" / "outputs"
    box_in.mkdir(parents=True)
    sources = sorted((CASES / "imgs").glob("*.npz"))
    assert sources
    with_boxes = []
    for src in sources:
        with np.load(src, allow_pickle=True) as f:
            if "boxes" in f.files:
                with_boxes.append(src)
                shutil.copy(src, box_in / src.name)  # the evaluator runs the box step only with boxes

    # box step: the verbatim organiser files
    res = _run_predict_sh(box_in, box_out)
    assert res.returncode == 0, res.stderr[-4000:]
    _check_outputs(box_in, box_out)
    assert res.stderr.count(" step=box ") == len(with_boxes), res.stderr[-4000:]

    # click step 1: clicks, clicks_order, prev_pred (the box output, or zeros for no-box cases)
    click_in, click_out = tmp_path / "click" / "inputs", tmp_path / "click" / "outputs"
    click_in.mkdir(parents=True)
    for src in sources:
        prev = None
        if (box_out / src.name).exists():
            with np.load(box_out / src.name) as o:
                prev = o["segs"]
        _click_step_input(src, click_in / src.name, prev)
    res = _run_predict_sh(click_in, click_out)
    assert res.returncode == 0, res.stderr[-4000:]
    _check_outputs(click_in, click_out)
    assert res.stderr.count(" step=click1 ") == len(sources), res.stderr[-4000:]


def test_predict_sh_refuses_an_output_folder_that_is_the_input(tmp_path):
    """Run with OUTPUT_DIR = INPUT_DIR (through a link): exit 2 before anything is touched."""
    inp = tmp_path / "in"
    inp.mkdir()
    case = inp / "case.npz"
    np.savez_compressed(case, imgs=np.zeros((2, 3, 4), np.uint8), spacing=[1.0, 1.0, 1.0])
    original = case.read_bytes()
    (tmp_path / "out").symlink_to(inp, target_is_directory=True)
    res = _run_predict_sh(inp, tmp_path / "out", weights=tmp_path / "no_weights")
    assert res.returncode == 2, res.stderr
    assert "is the input folder" in res.stderr
    assert case.read_bytes() == original
    assert sorted(p.name for p in inp.iterdir()) == ["case.npz"]
