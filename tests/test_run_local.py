"""Tests of evaluation.run_local: the box-prism floor beside the submission, and the progress bar's
per-case line. The protocol itself is tested in test_protocol.py."""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import pytest

from evaluation import run_local
from evaluation.demo_cases import make_demo_cases
from evaluation.report import FLOOR_COLUMNS

# A submission that predicts nothing: every score is 0, so the floor's scores are the whole gain.
EMPTY = """
import glob, os
import numpy as np
for f in glob.glob(os.path.join(os.environ["INPUT_DIR"], "*.npz")):
    shape = np.load(f, allow_pickle=True)["imgs"].shape
    out = os.path.join(os.environ["OUTPUT_DIR"], os.path.basename(f))
    np.savez_compressed(out, segs=np.zeros(shape, np.uint8))
"""


def _rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cases")
    make_demo_cases(root, n=2, seed=0, shape=(10, 28, 28))  # SynA_demo00 (boxes), SynB_demo01_noboxes
    return root


@pytest.fixture
def empty_submission(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("PYTHON", sys.executable)  # the floor's predict.sh runs this interpreter
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "empty.py").write_text(EMPTY)
    (sub / "predict.sh").write_text(f'"{sys.executable}" empty.py\n')
    return sub


def test_floor_is_scored_beside_the_submission(tmp_path, cases, empty_submission, capsys) -> None:
    out = tmp_path / "out"
    argv = [str(cases / "imgs"), str(cases / "gts"), str(out), "--submission", str(empty_submission)]
    assert run_local.main([*argv, "--no-plots"]) == 0
    captured = capsys.readouterr()

    floor_cases = _rows(out / "floor" / "metrics.csv")
    assert [r["CaseName"] for r in floor_cases] == ["SynA_demo00.npz", "SynB_demo01_noboxes.npz"]
    assert float(floor_cases[0]["DSC_1"]) > 0.3  # the prism at the box step
    rows = _rows(out / "summary_vs_floor.csv")
    assert list(rows[0]) == FLOOR_COLUMNS
    assert [r["Modality"] for r in rows] == ["SynA", "SynB", "ALL"]
    floor_summary = {r["Modality"]: r for r in _rows(out / "floor" / "summary.csv")}
    for row in rows:
        for m in ("DSC_AUC", "NSD_AUC", "DSC_Final", "NSD_Final"):
            assert float(row[f"{m}_model"]) == 0.0
            assert float(row[f"{m}_floor"]) == pytest.approx(float(floor_summary[row["Modality"]][m]))
            assert float(row[f"{m}_gain"]) == pytest.approx(-float(row[f"{m}_floor"]))
    assert float(rows[-1]["DSC_AUC_floor"]) > 0

    text = captured.out
    assert "beside the box-prism floor" in text and "summary_vs_floor.csv" in text
    table = text[text.index("beside the box-prism floor") :].splitlines()
    assert table[1].split() == ["DSC_AUC", "NSD_AUC", "DSC_Final", "NSD_Final"]
    assert table[2].split() == ["Modality", "Cases", *["model", "floor", "gain"] * 4]
    assert table[6].split()[:3] == ["ALL", "2", "0.000"]

    # the progress bar (stderr) leaves one line per finished case above it, with its final DSC
    assert "submission:" in captured.err and "box-prism floor:" in captured.err
    assert "[submission] SynA_demo00.npz: DSC box 0.000 -> click5 0.000, NSD click5 0.000" in text
    assert "[box-prism floor] SynB_demo01_noboxes.npz: DSC click1 " in text


def test_no_floor_flag_and_the_floor_as_submission_skip_the_floor(tmp_path, cases, empty_submission) -> None:
    out = tmp_path / "out"
    argv = [str(cases / "imgs"), str(cases / "gts"), str(out), "--no-progress", "--no-plots", "--limit", "1"]
    assert run_local.main([*argv, "--submission", str(empty_submission), "--no-floor"]) == 0
    assert not (out / "floor").exists() and not (out / "summary_vs_floor.csv").exists()
    assert run_local.main([*argv, "--submission", str(run_local.FLOOR)]) == 0
    assert not (out / "floor").exists() and not (out / "summary_vs_floor.csv").exists()
    assert float(_rows(out / "metrics.csv")[0]["DSC_1"]) > 0.3  # the floor scored as the submission


def test_time_scale_reaches_each_predict_sh_step_and_nothing_else(tmp_path, cases, monkeypatch) -> None:
    """--time-scale K: every predict.sh start sees SEGFM_TIME_SCALE (infer.py's allowance factor);
    this process's environment is left as it was."""
    monkeypatch.delenv("SEGFM_TIME_SCALE", raising=False)
    sub = tmp_path / "sub"
    sub.mkdir()
    seen = tmp_path / "seen.txt"
    record = f'open({str(seen)!r}, "a").write(os.environ.get("SEGFM_TIME_SCALE", "unset") + "\\n")\n'
    (sub / "empty.py").write_text(EMPTY + record)
    (sub / "predict.sh").write_text(f'"{sys.executable}" empty.py\n')
    out = tmp_path / "out"
    argv = [str(cases / "imgs"), str(cases / "gts"), str(out), "--no-progress", "--no-plots", "--limit", "1"]
    assert run_local.main([*argv, "--submission", str(sub), "--no-floor", "--time-scale", "20"]) == 0
    assert seen.read_text().split() == ["20.0"] * 6  # the box step and five clicks
    assert "SEGFM_TIME_SCALE" not in os.environ
    with pytest.raises(SystemExit):
        run_local.main([*argv, "--submission", str(sub), "--time-scale", "0"])


def test_jobs_share_the_cases_out_and_join_one_report(tmp_path, cases, monkeypatch) -> None:
    """--jobs 2: two workers score a case each; the joined metrics.csv, segs and floor are those of
    one process, and every predict.sh step is given the cores shared out as its threads."""
    monkeypatch.setenv("PYTHON", sys.executable)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    sub = tmp_path / "sub"
    sub.mkdir()
    seen = tmp_path / "threads.txt"
    record = f'import os; open({str(seen)!r}, "a").write(os.environ.get("OMP_NUM_THREADS", "unset") + "\\n")'
    (sub / "record.py").write_text(record)
    # then the prism, which scores above 0, so that the join can be checked
    (sub / "predict.sh").write_text(f'"{sys.executable}" record.py\nexec sh "{run_local.FLOOR}/predict.sh"\n')
    argv = [str(cases / "imgs"), str(cases / "gts"), "--submission", str(sub), "--no-progress", "--no-plots"]
    assert run_local.main([*argv, "--out", str(tmp_path / "one")]) == 0
    assert set(seen.read_text().split()) == {"unset"}
    seen.unlink()
    assert run_local.main([*argv, "--out", str(tmp_path / "two"), "--jobs", "2"]) == 0
    assert set(seen.read_text().split()) == {str(max(1, (os.cpu_count() or 1) // 2))}
    assert len(seen.read_text().split()) == 6 + 5  # a boxed case's six steps, a click start's five

    one, two = tmp_path / "one", tmp_path / "two"
    scores = [c for c in _rows(one / "metrics.csv")[0] if c.startswith(("DSC", "NSD"))]
    for folder in ("", "floor"):
        a, b = _rows(one / folder / "metrics.csv"), _rows(two / folder / "metrics.csv")
        assert [r["CaseName"] for r in b] == ["SynA_demo00.npz", "SynB_demo01_noboxes.npz"]
        assert [[r[c] for c in scores] for r in a] == [[r[c] for c in scores] for r in b]
    assert float(_rows(two / "metrics.csv")[0]["DSC_1"]) > 0.3
    assert sorted(p.name for p in (two / "segs").iterdir()) == sorted(
        p.name for p in (one / "segs").iterdir()
    )
    assert (two / "run_0").is_dir() and (two / "run_1").is_dir() and not (two / "shards").exists()
    timing = ("Runtime_s", "BudgetShare")  # the steps' own times differ from run to run
    summaries = [
        [{k: v for k, v in r.items() if k not in timing} for r in _rows(f / "summary.csv")]
        for f in (one, two)
    ]
    assert summaries[0] == summaries[1]
    with pytest.raises(SystemExit):
        run_local.main([*argv, "--out", str(tmp_path / "zero"), "--jobs", "0"])
