"""Tests of evaluation.compare_runs: means, better/worse counts and the largest changes."""

from __future__ import annotations

import csv
import json

import pytest

from evaluation.compare_runs import compare_metrics, largest_changes, main
from evaluation.validate_split import COLUMNS


def _write(path, rows: dict[str, float], clicks_only: bool = False) -> None:
    """A metrics.csv where every metric of a case has the same value (DSC_1 0 in a clicks-only
    sweep's, which has no box step)."""
    path.mkdir(parents=True, exist_ok=True)
    with (path / "metrics.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["CaseName", *COLUMNS])
        for name, v in rows.items():
            w.writerow([name, 0.0 if clicks_only else v, *([v] * (len(COLUMNS) - 1))])


BASE = {"a.npz": 0.5, "b.npz": 0.5, "c.npz": 0.5, "d.npz": 0.5}
NEW = {"a.npz": 0.9, "b.npz": 0.498, "c.npz": 0.4, "d.npz": 0.45, "e.npz": 1.0}  # e: new only


def test_counts_and_means_use_the_shared_cases_only() -> None:
    base = {n: dict.fromkeys(COLUMNS, v) for n, v in BASE.items()}
    new = {n: dict.fromkeys(COLUMNS, v) for n, v in NEW.items()}
    changes = compare_metrics(base, new, tol=0.005)
    assert [m.metric for m in changes] == list(COLUMNS)
    m = changes[0]
    assert m.base_mean == pytest.approx(0.5)
    assert m.new_mean == pytest.approx((0.9 + 0.498 + 0.4 + 0.45) / 4)  # e.npz left out
    assert (m.better, m.worse) == (1, 2)  # b's -0.002 is within the tolerance
    assert m.median_change == pytest.approx((-0.002 - 0.05) / 2)
    d = [0.4, -0.002, -0.1, -0.05]  # the paired differences: their sd over the root of their count
    mean = sum(d) / 4
    assert m.se == pytest.approx((sum((x - mean) ** 2 for x in d) / 3) ** 0.5 / 2)
    assert largest_changes(base, new, "DSC_AUC", 1) == [
        ("a.npz", pytest.approx(0.4)),
        ("c.npz", pytest.approx(-0.1)),
    ]


def test_no_shared_case_is_an_error() -> None:
    with pytest.raises(ValueError, match="share no case"):
        compare_metrics({"a": dict.fromkeys(COLUMNS, 0.0)}, {"b": dict.fromkeys(COLUMNS, 0.0)}, 0.005)


def test_main_reads_folders_or_files(tmp_path, capsys) -> None:
    _write(tmp_path / "base", BASE)
    _write(tmp_path / "new", NEW)
    assert main([str(tmp_path / "base"), str(tmp_path / "new" / "metrics.csv"), "--top", "1"]) == 0
    out = capsys.readouterr().out
    assert "4 cases in both runs; left out (in one run only): ['e.npz']" in out
    assert "DSC_AUC      0.500   0.562   +0.062  0.114      1      2   -0.026" in out
    assert "a.npz" in out and "c.npz" in out


def test_a_weights_card_is_a_base(tmp_path, capsys) -> None:
    """The shipped card's per-case figures stand in for its validation folder (a fresh machine)."""
    weights = tmp_path / "weights"
    weights.mkdir()
    per_case = {n: dict.fromkeys(COLUMNS, v) for n, v in BASE.items()}
    (weights / "model.json").write_text(json.dumps({"validation_full_protocol": {"per_case": per_case}}))
    _write(tmp_path / "new", NEW)
    for base in (weights, weights / "model.json"):
        assert main([str(base), str(tmp_path / "new"), "--top", "1"]) == 0
        assert "DSC_AUC      0.500   0.562   +0.062  0.114      1      2   -0.026" in capsys.readouterr().out
    (weights / "model.json").write_text(json.dumps({"config": {}}))
    with pytest.raises(SystemExit, match="no validation_full_protocol.per_case"):
        main([str(weights), str(tmp_path / "new")])


def test_a_weights_card_is_a_clicks_only_base(tmp_path, capsys) -> None:
    """With --clicks-only the card's clicks-only sweep is the base; its DSC_1 is 0, as in a sweep."""
    weights = tmp_path / "weights"
    weights.mkdir()
    boxed = {n: dict.fromkeys(COLUMNS, 0.9) for n in BASE}
    sweep = {n: dict.fromkeys(COLUMNS[1:], v) for n, v in BASE.items()}
    card = {"validation_full_protocol": {"per_case": boxed, "clicks_only_sweep": {"per_case": sweep}}}
    (weights / "model.json").write_text(json.dumps(card))
    _write(tmp_path / "new", NEW, clicks_only=True)
    assert main([str(weights), str(tmp_path / "new"), "--top", "1", "--clicks-only"]) == 0
    out = capsys.readouterr().out
    assert "DSC_AUC      0.500   0.562   +0.062  0.114      1      2   -0.026" in out
    assert "DSC_1        0.000   0.000" in out
    # without it the card's boxed figures would be the base: refused, not compared
    with pytest.raises(SystemExit, match="base is a boxed run and the new one clicks-only.*--clicks-only"):
        main([str(weights), str(tmp_path / "new")])
    del card["validation_full_protocol"]["clicks_only_sweep"]
    (weights / "model.json").write_text(json.dumps(card))
    with pytest.raises(SystemExit, match="no validation_full_protocol.clicks_only_sweep.per_case"):
        main([str(weights), str(tmp_path / "new"), "--clicks-only"])


def test_a_boxed_run_is_not_compared_with_a_clicks_only_one(tmp_path) -> None:
    """Two folders of different protocols: every area would differ by the protocol."""
    _write(tmp_path / "boxed", BASE)
    _write(tmp_path / "sweep", NEW, clicks_only=True)
    with pytest.raises(SystemExit, match="base is a clicks-only run and the new one boxed"):
        main([str(tmp_path / "sweep"), str(tmp_path / "boxed")])
    assert main([str(tmp_path / "sweep"), str(tmp_path / "sweep")]) == 0
