"""Tests of evaluation/in_process.py: the local evaluation's steps through the session, in process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import infer
from evaluation.demo_cases import make_demo_cases
from evaluation.in_process import InProcessStep
from evaluation.protocol import N_STEPS, OK, prepare_run_dirs, run_case

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runner() -> InProcessStep:
    return InProcessStep(REPO / "weights", device="cpu")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    make_demo_cases(root, n=1, seed=3, shape=(16, 40, 40))
    return root


def test_a_case_through_the_protocol_in_process(runner, demo, tmp_path) -> None:
    name = next((demo / "imgs").glob("*.npz")).name
    prepare_run_dirs(tmp_path / "run")
    result, all_segs = run_case(
        demo / "imgs" / name, demo / "gts" / name, tmp_path / "run", REPO,
        log_dir=tmp_path, keep_all_segs=True, step_runner=runner,
    )  # fmt: skip
    assert [s.status for s in result.steps] == [OK] * N_STEPS and all(s.returncode == 0 for s in result.steps)
    assert len(all_segs) == N_STEPS and result.steps[0].dsc > 0.3  # the shipped weights, not a stub
    assert result.clicks and any(row for row in result.clicks_order)  # the evaluator clicked
    log = (tmp_path / f"{Path(name).stem}_click1.log").read_text()
    assert "step=click1" in log and "classes=" in log  # infer.py's line for the step


def test_step_equals_the_cli_and_reports_a_timeout(runner, demo, tmp_path) -> None:
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    name = next((demo / "imgs").glob("*.npz")).name
    (inputs / name).write_bytes((demo / "imgs" / name).read_bytes())
    seconds, rc, timed_out = runner(REPO, inputs, outputs, None, None)
    assert rc == 0 and not timed_out and seconds > 0
    cli = tmp_path / "cli"
    assert infer.main(["--input-dir", str(inputs), "--output-dir", str(cli), "--device", "cpu"]) == 0
    with np.load(outputs / name) as a, np.load(cli / name) as b:
        np.testing.assert_array_equal(a["segs"], b["segs"])
    assert runner(REPO, inputs, outputs, None, 0.0)[2] is True  # ran past a zero timeout
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.npz").write_bytes(b"not a case")
    assert runner(REPO, bad, outputs, None, None)[1] == infer.EXIT_CASE_FAILED
