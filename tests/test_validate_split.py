"""Tests of evaluation.validate_split: which cases are held out, and the comparison table."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from evaluation.validate_split import COLUMNS, compare, link_cases, main, read_metrics


def _root(tmp: Path, name: str, cases: list[str]) -> Path:
    root = tmp / name
    for sub in ("imgs", "gts"):
        (root / sub).mkdir(parents=True)
        for c in cases:
            (root / sub / f"{c}.npz").write_bytes(sub.encode())
    return root


def test_link_cases_takes_split_names_and_whole_heldout_roots(tmp_path) -> None:
    extra = _root(tmp_path, "extra", ["CT_A_001", "CT_A_002", "MR_B_007"])
    cases = _root(tmp_path, "cases", ["PET_C_1"])
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"val_substrings": ["A_002", "B_00"]}))
    out = tmp_path / "out"
    assert link_cases(out, [extra], split, [cases]) == 3
    names = sorted(p.name for p in (out / "imgs").iterdir())
    assert names == ["CT_A_002.npz", "MR_B_007.npz", "PET_C_1.npz"]
    assert (out / "gts" / "CT_A_002.npz").read_bytes() == b"gts"  # linked, not copied
    assert (out / "imgs" / "CT_A_002.npz").is_symlink()
    assert link_cases(out, [extra], split, [cases]) == 3  # idempotent


def _metrics(path: Path, rows: dict[str, float]) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["CaseName", *COLUMNS, "Other"])
        w.writeheader()
        for name, v in rows.items():
            w.writerow({"CaseName": name, **{c: v for c in COLUMNS}, "Other": "x"})


def test_compare_means_and_table(tmp_path) -> None:
    _metrics(tmp_path / "m.csv", {"a.npz": 0.5, "b.npz": 1.0})
    _metrics(tmp_path / "b.csv", {"a.npz": 0.1, "b.npz": 0.3})
    table, data = compare(read_metrics(tmp_path / "m.csv"), read_metrics(tmp_path / "b.csv"))
    assert data["n_cases"] == 2
    assert data["model_mean"]["DSC_Final"] == pytest.approx(0.75)
    assert data["box_prism_mean"]["NSD_AUC"] == pytest.approx(0.2)
    assert "| a | 0.500" in table and "| **mean (2)** | 0.750" in table
    table, data = compare(read_metrics(tmp_path / "m.csv"), None)
    assert "box_prism_mean" not in data and "prism" not in table


def test_missing_roots_exit_with_one_line_naming_them(tmp_path, capsys) -> None:
    """A clone without ../shared/data: one line naming each empty root, no traceback, no run."""
    extra = _root(tmp_path, "extra", ["CT_A_001"])
    (tmp_path / "hollow" / "imgs").mkdir(parents=True)
    missing = tmp_path / "shared" / "data" / "cases"
    out = tmp_path / "out"
    argv = ["--out", str(out), "--split-root", str(extra), "--heldout-root", str(missing)]
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--heldout-root", str(tmp_path / "hollow")])
    message = str(exc.value.code)
    assert "\n" not in message and message.startswith("validate_split: no cases in ")
    assert f"--heldout-root {missing} (missing)" in message
    assert f"--heldout-root {tmp_path / 'hollow'} (imgs/ no .npz, gts/ missing)" in message
    assert str(extra) not in message and "imgs/<case>.npz" in message
    assert not out.exists()
    with pytest.raises(SystemExit, match="no case of the roots matches the split file"):
        main(["--out", str(out), "--split-root", str(extra)])
    with pytest.raises(SystemExit, match="at least one"):
        main(["--out", str(out)])
    assert capsys.readouterr().out == ""
