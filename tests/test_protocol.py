"""The protocol end to end, with trivial predict.sh submissions written into tmp_path."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from evaluation import run_local
from evaluation.demo_cases import make_demo_cases
from evaluation.metrics import dice
from evaluation.protocol import STEP_NAMES, load_npz, prepare_run_dirs, run_case, write_click_input
from model.boxes import Box

PREDICTOR = r"""
import json, os, sys, glob
import numpy as np
mode, log = sys.argv[1], sys.argv[2]
inp, out = os.environ["INPUT_DIR"], os.environ["OUTPUT_DIR"]
for f in sorted(glob.glob(os.path.join(inp, "*.npz"))):
    d = np.load(f, allow_pickle=True)
    rec = {"case": os.path.basename(f), "keys": sorted(d.files)}
    if "clicks_order" in d.files:
        rec["order_dtype"] = str(d["clicks_order"].dtype)
        rec["order"] = [[None if v is None else str(v) for v in row] for row in d["clicks_order"]]
        rec["clicks"] = [{k: [[int(v) for v in c] for c in e[k]] for k in ("fg", "bg")} for e in d["clicks"]]
        rec["prev_sum"] = int(d["prev_pred"].astype(np.int64).sum())
        rec["prev_dtype"] = str(d["prev_pred"].dtype)
    with open(log, "a") as fh:
        fh.write(json.dumps(rec) + "\n")
    step = 1 + (d["clicks_order"].shape[1] if "clicks_order" in d.files else 0)
    if mode == "never" or (mode.startswith("stop") and step >= int(mode[4:])):
        continue
    shape = d["imgs"].shape
    if mode == "badshape":
        np.savez_compressed(os.path.join(out, os.path.basename(f)), segs=np.zeros((2, 2, 2), np.uint8))
        continue
    if "prev_pred" in d.files:
        segs = d["prev_pred"].astype(np.uint8).copy()
    else:
        segs = np.zeros(shape, np.uint8)
    if "boxes" in d.files and "prev_pred" not in d.files:
        for k, b in enumerate(d["boxes"]):
            segs[int(b["z_min"]):int(b["z_max"]) + 1, int(b["z_mid_y_min"]):int(b["z_mid_y_max"]) + 1,
                 int(b["z_mid_x_min"]):int(b["z_mid_x_max"]) + 1] = k + 1
    if "clicks" in d.files:
        for k, c in enumerate(d["clicks"]):
            for z, y, x in c["fg"][-1:]:
                segs[z, y, x] = k + 1
            for z, y, x in c["bg"][-1:]:
                segs[z, y, x] = 0
    np.savez_compressed(os.path.join(out, os.path.basename(f)), segs=segs)
"""


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def make_submission(tmp_path: Path, mode: str) -> tuple[Path, Path]:
    sub = tmp_path / f"sub_{mode}"
    sub.mkdir()
    (sub / "predictor.py").write_text(PREDICTOR)
    log = sub / "seen.jsonl"
    (sub / "predict.sh").write_text(f'"{sys.executable}" predictor.py {mode} "{log}"\n')
    return sub, log


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cases")
    make_demo_cases(root, n=2, seed=0, shape=(10, 28, 28))  # SynA_demo00 (boxes), SynB_demo01_noboxes
    return root


def _seen(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_full_run_on_two_synthetic_cases(tmp_path, cases):
    sub, log = make_submission(tmp_path, "box")
    out = tmp_path / "out"
    rc = run_local.main(
        [
            str(cases / "imgs"),
            str(cases / "gts"),
            str(out),
            "--submission",
            str(sub),
            "--no-progress",
            "--no-floor",
        ]
    )
    assert rc == 0
    rows = _rows(out / "metrics.csv")
    assert [r["CaseName"] for r in rows] == ["SynA_demo00.npz", "SynB_demo01_noboxes.npz"]
    boxed, nobox = rows

    # box step = the box prisms painted in label order, scored against the GT
    img = load_npz(cases / "imgs" / "SynA_demo00.npz")
    gts = load_npz(cases / "gts" / "SynA_demo00.npz")["gts"]
    prism = np.zeros(gts.shape, np.uint8)
    for k, b in enumerate(img["boxes"]):
        prism[Box.from_challenge(b).prism(gts.shape)] = k + 1
    expected = np.mean([dice(gts == c, prism == c) for c in range(1, int(gts.max()) + 1)])
    assert float(boxed["DSC_1"]) == pytest.approx(expected, abs=1e-12)
    assert float(boxed["RunningTime_1"]) > 0 and boxed["num_class"] == "1"
    assert boxed["runtime_upperbound"] == "90"

    # no-box case: step 1 not run, recorded as zeros; AUC over steps 2..6
    assert float(nobox["RunningTime_1"]) == 0 and float(nobox["DSC_1"]) == 0 and float(nobox["NSD_1"]) == 0
    d = [float(nobox[f"DSC_{i}"]) for i in range(2, 7)]
    assert float(nobox["DSC_AUC"]) == pytest.approx(sum(d) - (d[0] + d[-1]) / 2)
    assert float(nobox["DSC_Final"]) == d[-1]
    for r in rows:
        total = sum(float(r[f"RunningTime_{i}"]) for i in range(1, 7))
        assert float(r["TotalRunningTime"]) == pytest.approx(total)
        assert r["Failed_Steps"] == "" and r["No_Output"] == "0"

    # what predict.sh saw: 6 + 5 runs, never gts, the official keys and dtypes
    seen = _seen(log)
    assert len(seen) == 11
    first = seen[0]
    assert first["case"] == "SynA_demo00.npz" and first["keys"] == ["boxes", "imgs", "spacing"]
    for rec in seen[1:6]:
        assert rec["keys"] == ["boxes", "clicks", "clicks_order", "imgs", "prev_pred", "spacing"]
    for rec in seen[6:]:
        assert rec["keys"] == ["clicks", "clicks_order", "imgs", "prev_pred", "spacing"]
    assert all("gts" not in r["keys"] for r in seen)
    assert seen[6]["prev_sum"] == 0  # no-box case: first click step starts from zeros
    assert [len(r["order"][0]) for r in seen[1:6]] == [1, 2, 3, 4, 5]
    for rec in seen[1:]:
        assert rec["prev_dtype"] == "uint8"
        assert rec["order_dtype"] in ("<U2", "object")
        assert rec["order_dtype"] == (
            "object" if any(v is None for row in rec["order"] for v in row) else "<U2"
        )
        for entry, order in zip(rec["clicks"], rec["order"], strict=True):
            assert len(entry["fg"]) == order.count("fg") and len(entry["bg"]) == order.count("bg")

    # outputs persist across cases, report files exist
    assert sorted(p.name for p in (out / "run" / "outputs").iterdir()) == [r["CaseName"] for r in rows]
    assert list((out / "run" / "inputs").iterdir()) == []
    assert (out / "summary.csv").is_file() and (out / "plots" / "curves_all.png").stat().st_size > 0
    assert (out / "plots" / "cases" / "SynA_demo00.png").is_file()
    segs = load_npz(out / "segs" / "SynA_demo00.npz")
    assert segs["all_segs"].shape == (6, *gts.shape)


def test_clicks_only_plays_a_boxed_case_as_a_no_box_case(tmp_path, cases):
    """--clicks-only: the boxed case gets no box step and never sees its boxes; its first
    click lands on the empty prediction, as for a case without boxes."""
    sub, log = make_submission(tmp_path, "box")
    out = tmp_path / "out"
    argv = [str(cases / "imgs"), str(cases / "gts"), str(out), "--submission", str(sub)]
    assert run_local.main([*argv, "--no-progress", "--no-floor", "--clicks-only"]) == 0
    rows = _rows(out / "metrics.csv")
    assert [r["Has_Boxes"] for r in rows] == ["0", "0"]
    boxed = rows[0]
    assert float(boxed["RunningTime_1"]) == 0 and float(boxed["DSC_1"]) == 0
    seen = _seen(log)
    assert len(seen) == 10  # 5 click steps per case
    assert all("boxes" not in rec["keys"] for rec in seen)
    first = seen[0]
    assert first["case"] == "SynA_demo00.npz" and first["prev_sum"] == 0
    assert [len(e["fg"]) for e in first["clicks"]] == [1] * len(first["clicks"])


def test_stale_output_is_flagged_and_rescored_as_the_official(tmp_path, cases):
    sub, _ = make_submission(tmp_path, "stop4")  # writes for steps 1..3 only
    run_dir = tmp_path / "run"
    prepare_run_dirs(run_dir)
    name = "SynA_demo00.npz"
    res, _ = run_case(cases / "imgs" / name, cases / "gts" / name, run_dir, sub, log_dir=tmp_path)
    assert [s.status for s in res.steps] == ["ok", "ok", "ok", "stale", "stale", "stale"]
    assert [s.name for s in res.steps] == list(STEP_NAMES) == ["box"] + [f"click{i}" for i in range(1, 6)]
    assert sorted(p.name for p in tmp_path.glob("*.log")) == sorted(
        f"SynA_demo00_{n}.log" for n in STEP_NAMES
    )
    assert res.failed_steps == [4, 5, 6]
    # the step-3 file stays in outputs/ and is scored again, as the official script does
    assert res.steps[3].dsc == res.steps[2].dsc == res.steps[5].dsc
    assert res.ever_output


def test_case_without_any_output_scores_zero_and_stays(tmp_path, cases):
    sub, _ = make_submission(tmp_path, "never")
    out = tmp_path / "out"
    run_local.main(
        [str(cases / "imgs"), str(cases / "gts"), str(out), "--submission", str(sub), "--no-progress",
         "--no-plots", "--no-floor", "--cases", "SynB*"]
    )  # fmt: skip
    (row,) = _rows(out / "metrics.csv")
    assert row["No_Output"] == "1" and row["Failed_Steps"] == "click1;click2;click3;click4;click5"
    assert float(row["DSC_AUC"]) == 0 and float(row["DSC_Final"]) == 0


def test_bad_output_shape_is_scored_zero_and_flagged(tmp_path, cases):
    sub, _ = make_submission(tmp_path, "badshape")
    run_dir = tmp_path / "run"
    prepare_run_dirs(run_dir)
    name = "SynB_demo01_noboxes.npz"
    res, _ = run_case(cases / "imgs" / name, cases / "gts" / name, run_dir, sub)
    assert res.steps[0].status == "skipped"
    assert res.steps[1].status == "bad_output" and "shape" in res.steps[1].message
    assert res.dsc_final == 0 and not res.ever_output


def test_input_with_gts_is_refused(tmp_path, cases):
    bad = tmp_path / "imgs"
    bad.mkdir()
    src = load_npz(cases / "gts" / "SynA_demo00.npz")
    np.savez_compressed(
        bad / "X_case.npz", imgs=np.zeros_like(src["gts"]), gts=src["gts"], spacing=src["spacing"]
    )
    prepare_run_dirs(tmp_path / "run")
    with pytest.raises(ValueError, match="gts"):
        run_case(bad / "X_case.npz", cases / "gts" / "SynA_demo00.npz", tmp_path / "run", tmp_path)


def test_training_layout_is_split_without_gts_in_the_inputs(tmp_path, cases):
    train = tmp_path / "train"
    train.mkdir()
    gts = load_npz(cases / "gts" / "SynA_demo00.npz")["gts"].astype(np.uint8) * 7  # label 7: not sequential
    imgs = load_npz(cases / "imgs" / "SynA_demo00.npz")["imgs"]
    np.savez_compressed(train / "CT_t.npz", imgs=imgs, gts=gts, spacing=np.array([1.0, 1.0, 2.0]))
    ns = run_local.argparse.Namespace(
        paths=[str(train)], out=tmp_path / "o", no_boxes=False, seed=1, demo_n=2
    )
    imgs_dir, gts_dir, out = run_local.resolve_inputs(ns)
    split_img = load_npz(imgs_dir / "CT_t.npz")
    assert sorted(split_img) == ["boxes", "imgs", "spacing"]
    split_gts = load_npz(gts_dir / "CT_t.npz")["gts"]
    assert np.array_equal(np.unique(split_gts), [0, 1])
    assert int(split_img["boxes"][0]["z_min"]) == int(np.flatnonzero(split_gts.any(axis=(1, 2)))[0])


def test_click_input_dtypes_follow_numpy_like_the_official_rewrite(tmp_path):
    imgs = np.zeros((4, 5, 6), np.uint8)
    clicks = [{"fg": [[np.int64(1), np.int64(2), np.int64(3)]], "bg": []}, {"fg": [], "bg": []}]
    p = tmp_path / "a.npz"
    write_click_input(p, imgs, np.ones(3), clicks, [["fg"], ["bg"]], imgs, None)
    d = np.load(p, allow_pickle=True)
    assert d["clicks_order"].dtype == np.dtype("<U2") and d["clicks_order"].shape == (2, 1)
    assert d["clicks"].dtype == object and d["clicks"].shape == (2,)
    assert "boxes" not in d.files and d["prev_pred"].dtype == np.uint8
    write_click_input(p, imgs, np.ones(3), clicks, [["fg"], [None]], imgs, np.array([{}, {}], dtype=object))
    d = np.load(p, allow_pickle=True)
    assert d["clicks_order"].dtype == object and d["clicks_order"][1, 0] is None
    assert "boxes" in d.files
