"""infer.py, the container's CLI, with a fake predictor injected (and the real one for missing weights)."""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import unpicklable

import infer
from model.boxes import BOX_KEYS, Box
from model.budget import Budget, Level
from model.case_io import Case
from model.predictor import Prediction
from model.session import Session

REPO = Path(__file__).resolve().parents[1]
SHAPE = (5, 8, 9)


@pytest.fixture(autouse=True)
def _fresh_process_start(monkeypatch):
    """Each test's CLI run starts its clock now, as a container start does: infer's process start
    is its import, which in a test session may lie minutes back, and a budget counted from there
    would degrade the step (a flaky result that depends on how long the suite has run)."""
    monkeypatch.setattr(infer, "_PROCESS_START", time.monotonic())


class FakePredictor:
    """Labels each class's box prism (or a cube at its first fg click); can be told to fail."""

    device = "cpu"

    def __init__(self, fail_on=(), wrong_shape_on=()):
        self.fail_on = set(fail_on)
        self.wrong_shape_on = set(wrong_shape_on)
        self.calls: list[tuple[str, Budget | None]] = []

    def predict_case(self, case: Case, budget: Budget | None = None) -> Prediction:
        self.calls.append((case.name, budget))
        if case.name in self.fail_on:
            raise RuntimeError("simulated model failure")
        if case.name in self.wrong_shape_on:
            return _prediction(np.zeros((1, 1, 1), np.uint8))
        segs = np.zeros(case.imgs.shape, np.uint8)
        for k in range(case.n_classes):
            if case.boxes:
                segs[case.boxes[k].prism(segs.shape)] = k + 1
            else:
                z, y, x = case.clicks[k]["fg"][0]
                segs[z, max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2] = k + 1
        return _prediction(segs)


def _prediction(segs: np.ndarray) -> Prediction:
    return Prediction(segs, timings={}, failed={}, cut=(), level=Level.FULL)


def _factory(pred):
    def make(weights_dir, device):
        return pred

    return make


def _box(z0, z1, y0, y1, x0, x1):
    vals = dict(
        z_min=z0,
        z_max=z1,
        z_mid=(z0 + z1) // 2,
        z_mid_x_min=x0,
        z_mid_y_min=y0,
        z_mid_x_max=x1,
        z_mid_y_max=y1,
    )
    return {k: np.int64(vals[k]) for k in BOX_KEYS}


def _box_case(path: Path, n: int = 2) -> Path:
    boxes = [_box(0, 2, 0, 3, 0, 3), _box(2, 4, 4, 7, 5, 8), _box(1, 3, 1, 5, 1, 5)][:n]
    np.savez_compressed(path, imgs=np.full(SHAPE, 100, np.uint8), spacing=[1.0, 1.0, 2.0], boxes=boxes)
    return path


def _click_case(path: Path, prev_value: int = 1) -> Path:
    prev = np.zeros(SHAPE, np.uint8)
    prev[1, 1, 1] = prev_value
    np.savez_compressed(
        path,
        imgs=np.full(SHAPE, 7.5, np.float32),
        spacing=[1.0, 1.0, 1.0],
        clicks=[{"fg": [[2, 4, 4]], "bg": []}],
        clicks_order=[["fg", None]],
        prev_pred=prev,
    )
    return path


def _dirs(tmp_path):
    inp, out = tmp_path / "inputs", tmp_path / "outputs"
    inp.mkdir()
    return inp, out


def _run(inp, out, pred, caplog, *extra):
    with caplog.at_level(logging.INFO, logger="infer"):
        return infer.main(["--input-dir", str(inp), "--output-dir", str(out), *extra], _factory(pred))


def _segs(path: Path) -> np.ndarray:
    with np.load(path) as f:
        assert f.files == ["segs"]
        return f["segs"]


def _info_lines(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "infer" and r.levelno == logging.INFO]


def test_every_case_gets_an_output(tmp_path, caplog):
    inp, out = _dirs(tmp_path)
    _box_case(inp / "CT_a.npz", n=2)
    _box_case(inp / "CT_b.npz", n=3)
    _click_case(inp / "MR_c.npz")
    (inp / "notes.txt").write_text("not a case")
    pred = FakePredictor()
    assert _run(inp, out, pred, caplog) == 0
    assert sorted(p.name for p in out.iterdir()) == ["CT_a.npz", "CT_b.npz", "MR_c.npz"]
    for name, n in (("CT_a", 2), ("CT_b", 3), ("MR_c", 1)):
        segs = _segs(out / f"{name}.npz")
        assert segs.shape == SHAPE and segs.dtype == np.uint8
        assert set(np.unique(segs)) == set(range(n + 1))
    assert [c[0] for c in pred.calls] == ["CT_a", "CT_b", "MR_c"]  # sorted
    lines = _info_lines(caplog)
    assert len(lines) == 3  # exactly one INFO line per case
    assert lines[0].startswith("CT_a classes=2 step=box seconds=") and "device=cpu" in lines[0]
    assert lines[2].startswith("MR_c classes=1 step=click2 seconds=")


def test_budget_is_90s_per_class_over_the_cases_starts(tmp_path, caplog):
    inp, out = _dirs(tmp_path)
    _box_case(inp / "a.npz", n=3)
    _box_case(inp / "b.npz", n=2)
    pred = FakePredictor()
    t0 = time.monotonic()
    assert _run(inp, out, pred, caplog) == 0
    t1 = time.monotonic()
    (_, b_a), (_, b_b) = pred.calls
    # the CLI owns the budget: 90 s x classes over 6 starts (the case has boxes), one per case
    assert (b_a.step_s, b_b.step_s) == (45.0, 30.0)
    # first case: counted from the process start (imports + model load included)
    assert b_a.start == infer._PROCESS_START
    assert t0 <= b_b.start <= t1
    _click_case(inp / "c.npz")  # no boxes: the organisers skip its box step, 5 starts share it
    pred.calls.clear()
    assert _run(inp, out, pred, caplog) == 0
    assert pred.calls[2][1].step_s == 90.0 / 5


def test_time_scale_multiplies_the_allowance_and_says_so(tmp_path, caplog, monkeypatch):
    """SEGFM_TIME_SCALE (or --time-scale) scores on a slow machine what the GPU would run: the
    budget grows by the factor, and the run warns that it is not the organisers'."""
    inp, out = _dirs(tmp_path)
    _box_case(inp / "a.npz", n=3)
    monkeypatch.setenv("SEGFM_TIME_SCALE", "20")
    pred = FakePredictor()
    assert _run(inp, out, pred, caplog) == 0
    assert pred.calls[0][1].step_s == 20 * 45.0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("time allowance x 20" in m for m in warnings)
    pred.calls.clear()
    assert _run(inp, out, pred, caplog, "--time-scale", "0.5") == 0  # the flag wins over the variable
    assert pred.calls[0][1].step_s == 22.5
    for bad in ("0", "-1", "inf", "nan", "fast"):
        with pytest.raises(SystemExit):
            infer.parse_args(["--time-scale", bad])
    monkeypatch.setenv("SEGFM_TIME_SCALE", "fast")
    with pytest.raises(SystemExit):  # a bad variable is refused, not ignored
        infer.parse_args([])


def test_bad_case_is_logged_and_the_others_still_run(tmp_path, caplog):
    inp, out = _dirs(tmp_path)
    _box_case(inp / "a_good.npz")
    (inp / "b_truncated.npz").write_bytes(_box_case(tmp_path / "x.npz").read_bytes()[:100])
    np.savez_compressed(inp / "c_noimgs.npz", spacing=[1, 1, 1], boxes=[_box(0, 1, 0, 1, 0, 1)])
    np.savez_compressed(inp / "d_2d.npz", imgs=np.zeros((4, 4)), boxes=[_box(0, 1, 0, 1, 0, 1)])
    _click_case(inp / "e_good.npz")
    pred = FakePredictor()
    assert _run(inp, out, pred, caplog) == 1  # non-zero, after all cases ran
    assert [c[0] for c in pred.calls] == ["a_good", "e_good"]
    assert sorted(p.name for p in out.iterdir()) == ["a_good.npz", "e_good.npz"]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    for name, word in (("b_truncated.npz", "<file>"), ("c_noimgs.npz", "imgs"), ("d_2d.npz", "3 dimensions")):
        assert any(name in e and word in e for e in errors), (name, errors)
    assert len(_info_lines(caplog)) == 5
    assert "3 of 5 case(s) failed" in caplog.text


def test_nan_case_still_gets_a_zero_output_of_the_right_shape(tmp_path, caplog):
    inp, out = _dirs(tmp_path)
    imgs = np.zeros(SHAPE, np.float32)
    imgs[0, 0, 0] = np.nan
    np.savez_compressed(inp / "nan.npz", imgs=imgs, spacing=[1, 1, 1], boxes=[_box(0, 1, 0, 1, 0, 1)])
    assert _run(inp, out, FakePredictor(), caplog) == 1
    segs = _segs(out / "nan.npz")
    assert segs.shape == SHAPE and segs.dtype == np.uint8 and not segs.any()
    assert "NaN" in caplog.text


def test_whole_case_failure_writes_prev_pred_fallback(tmp_path, caplog):
    inp, out = _dirs(tmp_path)
    _click_case(inp / "MR_c.npz")
    _box_case(inp / "CT_box.npz")
    _click_case(inp / "MR_shape.npz")
    pred = FakePredictor(fail_on={"MR_c", "CT_box"}, wrong_shape_on={"MR_shape"})
    assert _run(inp, out, pred, caplog) == 1
    expected = np.zeros(SHAPE, np.uint8)
    expected[1, 1, 1] = 1
    assert np.array_equal(_segs(out / "MR_c.npz"), expected)  # prev_pred
    assert np.array_equal(_segs(out / "MR_shape.npz"), expected)  # wrong shape is a failure too
    assert not _segs(out / "CT_box.npz").any()  # box step has no prev_pred: zeros
    assert "simulated model failure" in caplog.text
    assert sum("status=fallback" in line for line in _info_lines(caplog)) == 3


def test_stale_output_of_an_earlier_step_is_replaced(tmp_path, caplog):
    inp, out = _dirs(tmp_path)
    out.mkdir()
    _box_case(inp / "a.npz")
    (out / "a.npz").write_bytes(b"stale")
    (out / "other_case.npz").write_bytes(b"earlier case: untouched")
    (inp / "b.npz").write_bytes(b"garbage")
    (out / "b.npz").write_bytes(b"stale output of an unreadable case")
    assert _run(inp, out, FakePredictor(), caplog) == 1
    assert _segs(out / "a.npz").shape == SHAPE
    assert not (out / "b.npz").exists()  # removed: no stale file for the evaluator to re-score
    assert (out / "other_case.npz").read_bytes() == b"earlier case: untouched"


def test_labels_beyond_the_classes_are_removed(tmp_path, caplog):
    class TooMany(FakePredictor):
        def predict_case(self, case, budget=None):
            return _prediction(np.full(case.imgs.shape, 5, np.int64))

    inp, out = _dirs(tmp_path)
    _box_case(inp / "a.npz", n=2)
    assert _run(inp, out, TooMany(), caplog) == 0
    segs = _segs(out / "a.npz")
    assert segs.dtype == np.uint8 and not segs.any()


def test_environment_defaults(tmp_path, monkeypatch, caplog):
    inp, out = _dirs(tmp_path)
    _box_case(inp / "a.npz")
    monkeypatch.setenv("INPUT_DIR", str(inp))
    monkeypatch.setenv("OUTPUT_DIR", str(out))
    monkeypatch.setenv("WEIGHTS_DIR", str(tmp_path / "w"))
    seen = {}

    def make(weights_dir, device):
        seen["w"], seen["d"] = weights_dir, device
        return FakePredictor()

    assert infer.main([], make) == 0
    assert (out / "a.npz").exists()
    assert seen == {"w": tmp_path / "w", "d": None}
    args = infer.parse_args(["--device", "cpu", "--input-dir", "/x"])
    assert args.device == "cpu" and args.input_dir == Path("/x") and args.output_dir == out


def test_builtin_defaults(monkeypatch):
    for var in ("INPUT_DIR", "OUTPUT_DIR", "WEIGHTS_DIR", "DEVICE", "SEGFM_TIME_SCALE"):
        monkeypatch.delenv(var, raising=False)
    args = infer.parse_args([])
    assert args.input_dir == Path("/workspace/inputs")
    assert args.output_dir == Path("/workspace/outputs")
    assert args.weights_dir == REPO / "weights"
    assert args.device is None and args.time_scale == 1.0


def test_missing_input_dir_and_empty_input_dir(tmp_path, caplog):
    pred = FakePredictor()
    assert _run(tmp_path / "nope", tmp_path / "out", pred, caplog) == 2
    (tmp_path / "empty").mkdir()
    assert _run(tmp_path / "empty", tmp_path / "out", pred, caplog) == 0
    assert pred.calls == []


def test_setup_error_stops_before_any_case(tmp_path, caplog):
    inp, out = _dirs(tmp_path)
    _box_case(inp / "a.npz")

    def make(weights_dir, device):
        raise infer.SetupError(f"no trained weights in {weights_dir}")

    with caplog.at_level(logging.INFO, logger="infer"):
        rc = infer.main(["--input-dir", str(inp), "--output-dir", str(out)], make)
    assert rc == 2
    assert "no trained weights" in caplog.text
    assert not (out / "a.npz").exists()


def test_import_is_light():
    code = "import sys, infer; bad = [m for m in ('torch', 'scipy', 'cupy') if m in sys.modules]; print(bad)"
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


@pytest.mark.skipif(
    importlib.util.find_spec("model.predictor") is None,
    reason="model/predictor.py (the real Predictor) is not in the tree yet",
)
def test_missing_weights_real_predictor_clear_message(tmp_path):
    inp, out = _dirs(tmp_path)
    _box_case(inp / "a.npz")
    empty = tmp_path / "no_weights"
    empty.mkdir()
    env = {**os.environ, "INPUT_DIR": str(inp), "OUTPUT_DIR": str(out), "WEIGHTS_DIR": str(empty)}
    res = subprocess.run(
        [sys.executable, str(REPO / "infer.py"), "--device", "cpu"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 2, res.stderr
    assert "weights" in res.stderr.lower() and str(empty) in res.stderr
    assert "Traceback" not in res.stderr
    assert not (out / "a.npz").exists()  # random weights never ran


def test_load_predictor_maps_weights_missing_to_a_clear_setup_error(tmp_path, monkeypatch, caplog):
    """The real code path of load_predictor, with a stand-in model.predictor module."""
    import types

    class WeightsMissingError(FileNotFoundError):
        pass

    class Predictor:
        @classmethod
        def from_weights(cls, weights_dir, device=None):
            raise WeightsMissingError(f"no checkpoint in {weights_dir}")

    fake = types.ModuleType("model.predictor")
    fake.Predictor, fake.WeightsMissingError = Predictor, WeightsMissingError
    monkeypatch.setitem(sys.modules, "model.predictor", fake)
    inp, out = _dirs(tmp_path)
    _box_case(inp / "a.npz")
    with caplog.at_level(logging.INFO, logger="infer"):
        rc = infer.main(["--input-dir", str(inp), "--output-dir", str(out), "--weights-dir", str(tmp_path)])
    assert rc == 2
    assert "no trained weights" in caplog.text and "random weights are never used" in caplog.text
    assert not (out / "a.npz").exists()


# ---------------------------------------------------------------- issue 10: bad input never costs data


def test_output_folder_that_is_the_input_folder_is_refused(tmp_path, caplog):
    inp, _ = _dirs(tmp_path)
    original = _box_case(inp / "a.npz").read_bytes()
    (tmp_path / "link").symlink_to(inp, target_is_directory=True)
    for out in (inp, tmp_path / "link", inp / ".." / "inputs"):
        pred = FakePredictor()
        caplog.clear()
        assert _run(inp, out, pred, caplog) == 2
        assert pred.calls == []
        assert (inp / "a.npz").read_bytes() == original  # the input is never touched
        assert sorted(p.name for p in inp.iterdir()) == ["a.npz"]
        assert "is the input folder" in caplog.text


def test_input_file_that_links_to_its_output_is_not_destroyed(tmp_path, caplog):
    inp, out = _dirs(tmp_path)
    out.mkdir()
    original = _box_case(out / "a.npz").read_bytes()  # the data lives where the output would go
    (inp / "a.npz").symlink_to(out / "a.npz")
    _box_case(inp / "b.npz")
    assert _run(inp, out, FakePredictor(), caplog) == 1
    assert (out / "a.npz").read_bytes() == original
    assert _segs(out / "b.npz").shape == SHAPE
    assert any(
        line.startswith("a classes=?") and "status=input is the output" in line
        for line in _info_lines(caplog)
    )


def test_entries_that_are_not_regular_files_fail_and_lose_their_stale_output(tmp_path, caplog):
    inp, out = _dirs(tmp_path)
    out.mkdir()
    (inp / "dangling.npz").symlink_to(tmp_path / "gone.npz")
    (inp / "folder.npz").mkdir()
    os.mkfifo(inp / "fifo.npz")  # never opened: reading it would block the run
    _box_case(inp / "good.npz")
    for name in ("dangling", "folder", "fifo"):
        (out / f"{name}.npz").write_bytes(b"output of an earlier step")
    pred = FakePredictor()
    assert _run(inp, out, pred, caplog) == 1
    assert [c[0] for c in pred.calls] == ["good"]
    assert sorted(p.name for p in out.iterdir()) == ["good.npz"]  # stale outputs removed
    lines = _info_lines(caplog)
    for name, why in (("dangling", "a dangling symbolic link"), ("folder", "a folder"), ("fifo", "a FIFO")):
        assert any(ln.startswith(f"{name} ") and "status=not a regular file" in ln for ln in lines), lines
        assert f"{name}.npz: {why}" in caplog.text
    assert "3 of 4 case(s) failed" in caplog.text


def test_long_file_name_gets_its_output(tmp_path, caplog):
    inp, out = _dirs(tmp_path)
    name = "CT_" + "x" * 248 + ".npz"  # 255 bytes, the file system's limit
    _box_case(inp / name)
    assert _run(inp, out, FakePredictor(), caplog) == 0
    assert _segs(out / name).shape == SHAPE
    assert sorted(p.name for p in out.iterdir()) == [name]


def _click_step_with_boxes(path: Path, **override) -> np.ndarray:
    """A click step of a 2-box case; returns its prev_pred."""
    prev = np.zeros(SHAPE, np.uint8)
    prev[0, 0, 0], prev[4, 7, 8] = 1, 2
    arrays = dict(
        imgs=np.full(SHAPE, 100, np.uint8),
        spacing=[1.0, 1.0, 2.0],
        boxes=[_box(0, 2, 0, 3, 0, 3), _box(2, 4, 4, 7, 5, 8)],
        clicks=[{"fg": [[1, 1, 1]], "bg": []}, {"fg": [[3, 5, 6]], "bg": []}],
        clicks_order=[["fg"], ["fg"]],
        prev_pred=prev,
    )
    np.savez_compressed(path, **{**arrays, **override})
    return prev


def test_one_bad_optional_key_keeps_the_click_step(tmp_path, caplog):
    inp, out = _dirs(tmp_path)
    _box_case(tmp_path / "ref.npz")
    _click_step_with_boxes(inp / "order.npz", clicks_order=[["fg"], ["?"]])
    _click_step_with_boxes(inp / "count.npz", clicks=[{"fg": [[1, 1, 1]], "bg": []}])
    _click_step_with_boxes(
        inp / "floats.npz", clicks=[{"fg": [[1.0, 1.0, 1.0]], "bg": []}, {"fg": [[3.0, 5.0, 6.0]], "bg": []}]
    )
    _click_step_with_boxes(inp / "prev.npz", prev_pred=np.zeros((1, 2, 3), np.uint8))
    assert _run(inp, out, FakePredictor(), caplog) == 0
    expected = FakePredictor().predict_case(infer.read_case(tmp_path / "ref.npz")).segs
    assert expected.any()
    for name in ("order", "count", "floats", "prev"):
        assert np.array_equal(_segs(out / f"{name}.npz"), expected), name  # not zeros
    lines = {ln.split()[0]: ln for ln in _info_lines(caplog)}
    assert lines["order"].endswith("ignored=clicks_order")
    assert lines["count"].endswith("ignored=clicks,clicks_order")
    assert lines["prev"].endswith("ignored=prev_pred")
    assert "ignored" not in lines["floats"]
    assert "order.npz: key 'clicks_order'" in caplog.text and "prev.npz: key 'prev_pred'" in caplog.text


def test_unpicklable_member_gets_the_fallback_and_fails(tmp_path, caplog):
    inp, out = _dirs(tmp_path)
    unpicklable(_box_case(inp / "box_step.npz"), "boxes")  # box step: nothing usable is left
    prev = _click_step_with_boxes(inp / "click_step.npz")
    with zipfile.ZipFile(inp / "click_step.npz") as z:
        members = {n: z.read(n) for n in z.namelist() if n != "boxes.npy"}  # a no-box case ...
    with zipfile.ZipFile(inp / "click_step.npz", "w") as z:
        for n, d in members.items():
            z.writestr(n, d)
    unpicklable(inp / "click_step.npz", "clicks")  # ... whose clicks cannot be read
    assert _run(inp, out, FakePredictor(), caplog) == 1
    zeros = _segs(out / "box_step.npz")
    assert zeros.shape == SHAPE and zeros.dtype == np.uint8 and not zeros.any()
    assert np.array_equal(_segs(out / "click_step.npz"), prev)  # the previous answer, not zeros
    lines = {ln.split()[0]: ln for ln in _info_lines(caplog)}
    assert lines["box_step"].endswith("status=unusable, zeros written")
    assert lines["click_step"].endswith("status=unusable, prev_pred written")
    assert "box_step.npz: key 'boxes' cannot read" in caplog.text


@pytest.fixture(scope="module")
def tiny_predictor():
    """The real Predictor around a tiny random network (fast on one CPU thread)."""
    import torch

    from model.config import ModelConfig
    from model.network import ResEncUNet
    from model.predictor import Predictor

    cfg = ModelConfig(features=(4, 8, 16), blocks_per_stage=(1, 1, 1), grid=(16, 16, 16))
    torch.manual_seed(0)
    net = ResEncUNet(cfg)
    with torch.no_grad():
        net.head.bias.zero_()  # a random net with a zero bias predicts a mix of fg and bg
    return Predictor(net, cfg, "cpu")


def _textured_box_case(path: Path, dtype: str = "u1", spacing=(1.0, 1.0, 2.0)) -> Path:
    imgs = (np.random.default_rng(1).random(SHAPE) * 255).astype(dtype)
    np.savez_compressed(
        path, imgs=imgs, spacing=list(spacing), boxes=[_box(0, 2, 0, 3, 0, 3), _box(2, 4, 4, 7, 5, 8)]
    )
    return path


def test_big_endian_image_and_huge_spacing_predict_as_their_sane_twins(tmp_path, caplog, tiny_predictor):
    inp, out = _dirs(tmp_path)
    _textured_box_case(inp / "a_native.npz", "<i2")
    _textured_box_case(inp / "b_big_endian.npz", ">i2")
    _textured_box_case(inp / "c_clamped.npz", spacing=(1e3, 1.0, 2.0))
    _textured_box_case(inp / "d_huge.npz", spacing=(1e308, 1.0, 2.0))
    assert _run(inp, out, tiny_predictor, caplog) == 0
    assert "status=" not in " ".join(_info_lines(caplog))
    assert np.array_equal(_segs(out / "b_big_endian.npz"), _segs(out / "a_native.npz"))
    assert np.array_equal(_segs(out / "d_huge.npz"), _segs(out / "c_clamped.npz"))
    assert "d_huge.npz: 'spacing'" in caplog.text and "clamped" in caplog.text


def test_case_in_which_every_class_failed_is_a_failed_case(tmp_path, caplog, tiny_predictor, monkeypatch):
    def broken(jobs, case, grid):
        raise RuntimeError("simulated network failure")

    inp, out = _dirs(tmp_path)
    _textured_box_case(inp / "box.npz")
    prev = _click_step_with_boxes(inp / "click.npz")
    monkeypatch.setattr(tiny_predictor, "_forward", broken)
    assert _run(inp, out, tiny_predictor, caplog) == 1
    assert not _segs(out / "box.npz").any()
    assert np.array_equal(_segs(out / "click.npz"), prev)
    lines = _info_lines(caplog)
    assert len(lines) == 2 and all(ln.endswith("status=fallback") for ln in lines), lines
    assert "every class failed (1, 2)" in caplog.text
    assert "2 of 2 case(s) failed" in caplog.text


def test_single_voxel_volume_is_predicted(tmp_path, caplog, tiny_predictor, monkeypatch):
    """A 1x1x1 image normalises to a finite input (the std of one voxel is undefined)."""
    import torch

    seen = []
    forward = tiny_predictor.net.forward

    def spy(x):
        seen.append(bool(torch.isfinite(x).all()))
        return forward(x)

    monkeypatch.setattr(tiny_predictor.net, "forward", spy)
    inp, out = _dirs(tmp_path)
    np.savez_compressed(
        inp / "one.npz",
        imgs=np.full((1, 1, 1), 7, np.uint8),
        spacing=[1, 1, 1],
        boxes=[_box(0, 0, 0, 0, 0, 0)],
    )
    assert _run(inp, out, tiny_predictor, caplog) == 0
    assert seen == [True]
    assert _segs(out / "one.npz").shape == (1, 1, 1)


# ------------------------------------------------------------- issue 9: a thin replay through the session


def test_cli_and_session_give_identical_masks(tmp_path, caplog, tiny_predictor):
    """The CLI's output for a click step equals the same prompts given to a session by hand."""
    inp, out = _dirs(tmp_path)
    imgs = (np.random.default_rng(2).random((12, 24, 24)) * 255).astype(np.uint8)
    prev = np.zeros(imgs.shape, np.uint8)
    prev[2:6, 3:9, 3:9], prev[6:10, 12:20, 12:20] = 1, 2
    boxes = [_box(2, 5, 3, 8, 3, 8), _box(6, 9, 12, 19, 12, 19)]
    clicks = [{"fg": [[4, 6, 6]], "bg": [[3, 10, 10]]}, {"fg": [], "bg": []}]
    order = np.array([["fg", "bg"], [None, None]], dtype=object)
    np.savez_compressed(
        inp / "CT_x.npz", imgs=imgs, spacing=[0.8, 0.8, 2.5], boxes=boxes, clicks=clicks, clicks_order=order,
        prev_pred=prev,
    )  # fmt: skip
    assert _run(inp, out, tiny_predictor, caplog) == 0
    cli = _segs(out / "CT_x.npz")

    session = Session(tiny_predictor)
    session.set_image(imgs, (2.5, 0.8, 0.8))
    session.set_label_map(prev)
    for k, b in enumerate(boxes, start=1):
        session.add_box(k, Box.from_challenge(b))
    session.add_click(1, (4, 6, 6), foreground=True)
    session.add_click(1, (3, 10, 10), foreground=False)
    session.mark_done(2)
    direct = session.predict().segs
    np.testing.assert_array_equal(cli, direct)
    assert (cli == 1).any() and np.array_equal(cli == 2, prev == 2)  # object 2 was done: kept


def test_replay_follows_clicks_order(tiny_predictor):
    imgs = np.zeros(SHAPE, np.uint8)
    clicks = [{"fg": [(1, 1, 1), (2, 2, 2)], "bg": [(3, 3, 3)]}, {"fg": [(4, 4, 4)], "bg": [(0, 0, 0)]}]
    session = Session(tiny_predictor)
    case = Case("c", imgs, (1.0, 1.0, 1.0), None, clicks, [["fg", "bg", None, "fg"], ["bg", "fg"]], None)
    infer.replay(case, session)
    assert session.case().clicks_order == [["fg", "bg", None, "fg"], ["bg", "fg"]]
    assert session.case().clicks == clicks
    unordered = Case("c", imgs, (1.0, 1.0, 1.0), None, clicks, None, None)  # no clicks_order
    infer.replay(unordered, session)
    assert session.case().clicks_order == [["fg", "fg", "bg"], ["fg", "bg"]]  # foreground first


def test_classes_that_fell_back_are_named(tmp_path, caplog, tiny_predictor, monkeypatch):
    forward = tiny_predictor._forward

    def second_fails(jobs, case, grid):
        if any(j.prompts.label == 2 for j in jobs):
            raise RuntimeError("class 2 cannot")
        return forward(jobs, case, grid)

    inp, out = _dirs(tmp_path)
    prev = _click_step_with_boxes(inp / "click.npz")
    monkeypatch.setattr(tiny_predictor, "_forward", second_fails)
    assert _run(inp, out, tiny_predictor, caplog) == 0  # one class failed, not all: the case stands
    (line,) = _info_lines(caplog)
    assert "fell_back=2" in line and "status=" not in line
    assert np.array_equal(_segs(out / "click.npz") == 2, prev == 2)


def test_verbose_turns_on_the_models_debug_lines(tmp_path, caplog, monkeypatch):
    """-v: the model's loggers (one line per network pass, model/predictor.py) speak too."""
    model_log = logging.getLogger("model")
    for name in ("model", "infer"):  # levels restored after the test
        monkeypatch.setattr(logging.getLogger(name), "level", logging.NOTSET)
    inp, out = _dirs(tmp_path)
    _box_case(inp / "CT_a.npz", n=1)
    assert _run(inp, out, FakePredictor(), caplog) == 0
    assert model_log.level == logging.NOTSET
    assert _run(inp, out, FakePredictor(), caplog, "-v") == 0
    assert model_log.level == logging.DEBUG
