"""Tests of model.predictor and model.training.export: weights round trip, one step of a case, batching,
clicks-only cases, perfect classes, zoom-out (issue 4: "Zoom-out when the mask touches the border") and
the per-class fallback."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ConstNet
from scipy import ndimage
from torch import nn

from model.boxes import Box, boxes_from_labels
from model.budget import Budget, Level
from model.case_io import Case
from model.config import ModelConfig
from model.network import ResEncUNet
from model.predictor import CARD_FILE, WEIGHTS_FILE, Predictor, WeightsMissingError, first_batch_s
from model.prompts import ClassPrompts
from model.roi import choose_roi, object_extent, zoom_out
from model.synthetic import synth_case
from model.training.export import export, main

CFG = ModelConfig(features=(4, 8, 16), blocks_per_stage=(1, 1, 1), grid=(16, 16, 16))


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A tiny random network saved as train.py saves it, then exported as the shipped weights."""
    tmp = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    net = ResEncUNet(CFG)
    with torch.no_grad():
        net.head.bias.zero_()  # a random net with a zero bias predicts a mix of fg and bg
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    ckpt = tmp / "run" / "last.pt"
    ckpt.parent.mkdir()
    torch.save(
        {
            "model": net.state_dict(),
            "optim": opt.state_dict(),
            "step": 7,
            "best": 0.25,
            "wall_s": 12.3,
            "model_config": CFG.to_dict(),
            "train_config": {"steps": 7, "lr": 1e-3},
        },
        ckpt,
    )
    (ckpt.parent / "metrics.jsonl").write_text(
        json.dumps({"step": 5, "loss": 1.0}) + "\n" + json.dumps({"step": 7, "val_score": 0.25}) + "\n"
    )
    out = tmp / "weights"
    path = export(ckpt, out, extra={"note": "test"})
    return net, out, path


@pytest.fixture
def predictor(weights) -> Predictor:
    return Predictor.from_weights(weights[1], device="cpu")


@pytest.fixture(scope="module")
def synth():
    imgs, labels, sp_xyz = synth_case(np.random.default_rng(5), (24, 32, 32), 3)
    assert labels.max() >= 2
    return imgs, labels, tuple(float(v) for v in sp_xyz[::-1])


def _case(imgs, spacing, boxes=None, clicks=None, order=None, prev=None, name="CT_test") -> Case:
    return Case(name, imgs, spacing, boxes, clicks, order, prev)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------- weights


def test_export_and_load_round_trip(weights, predictor) -> None:
    net, out, path = weights
    assert path == out / WEIGHTS_FILE
    state = torch.load(path, weights_only=True)
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    card = json.loads((out / CARD_FILE).read_text())
    assert card["config"]["features"] == [4, 8, 16] and card["config"]["grid"] == [16, 16, 16]
    assert card["channel_order"] == list(CFG.channels)
    assert card["training"]["steps"] == 7 and card["training"]["wall_time_s"] == 12.3
    assert card["training"]["config"] == {"steps": 7, "lr": 1e-3}
    assert card["validation_grid_dice_during_training"] == [{"step": 7, "val_score": 0.25}]
    assert card["note"] == "test"
    assert card["parameters"] == sum(p.numel() for p in net.state_dict().values())

    assert predictor.config == CFG
    assert predictor.card["note"] == "test"
    assert not predictor.net.training
    for k, v in net.state_dict().items():  # the shipped weights are the fp16-rounded trained ones
        want = v.half().float() if v.is_floating_point() else v
        assert torch.equal(predictor.net.state_dict()[k], want), k


def test_recard_rewrites_the_card_alone(weights, tmp_path) -> None:
    """A new inference setting on shipped weights: the config key and the named card keys change,
    the training record stays, and the weights file is byte for byte the same."""
    out = tmp_path / "w"
    export(weights[1].parent / "run" / "last.pt", out)
    before = (out / WEIGHTS_FILE).read_bytes()
    old = json.loads((out / CARD_FILE).read_text())
    main(["--recard", str(out), "--inference", '{"snap_band": 1}', "--card-extra", str(_extra(tmp_path))])
    new = json.loads((out / CARD_FILE).read_text())
    assert (out / WEIGHTS_FILE).read_bytes() == before
    assert new["config"] == {**old["config"], "snap_band": 1}
    assert new["validation_full_protocol"] == {"n_cases": 29} and new["training"] == old["training"]
    with pytest.raises(SystemExit):
        main(["--recard", str(out), "--ckpt", str(weights[1].parent / "run" / "last.pt")])


def _extra(tmp_path: Path) -> Path:
    path = tmp_path / "extra.json"
    path.write_text(json.dumps({"validation_full_protocol": {"n_cases": 29}}))
    return path


def test_export_sets_inference_keys(weights, tmp_path) -> None:
    ckpt = weights[1].parent / "run" / "last.pt"
    export(ckpt, tmp_path / "w", inference={"local_fraction": 0.4})
    assert Predictor.from_weights(tmp_path / "w", device="cpu").config == replace(CFG, local_fraction=0.4)
    with pytest.raises(ValueError, match="unknown model config keys"):
        export(ckpt, tmp_path / "x", inference={"local_fractoin": 0.4})


def _sibling_ckpt(tmp_path, seed: int, config: ModelConfig, history: list[dict]) -> tuple[nn.Module, Path]:
    """A second run's checkpoint as train.py saves it, with the lineage it continued."""
    torch.manual_seed(seed)
    net = ResEncUNet(config)
    ckpt = tmp_path / f"run{seed}" / "last.pt"
    ckpt.parent.mkdir()
    state = {
        "model": net.state_dict(),
        "step": 3,
        "wall_s": 7200.0,
        "samples": 40,
        "model_config": config.to_dict(),
    }
    torch.save({**state, "train_config": {"out_dir": f"runs/s{seed}"}, "history": history}, ckpt)
    return net, ckpt


def test_export_members_load_as_one_ensemble(weights, tmp_path) -> None:
    net, out, _ = weights
    ckpt = out.parent / "run" / "last.pt"
    base = json.loads((out / CARD_FILE).read_text())["training_history"]
    sibling, member = _sibling_ckpt(tmp_path, 1, CFG, history=base)  # continued from the first
    export(ckpt, tmp_path / "ens", members=[member])
    card = json.loads((tmp_path / "ens" / CARD_FILE).read_text())
    assert [m["file"] for m in card["members"]] == ["member_1.pt"] and card["members"][0]["run"] == "runs/s1"
    # the shared lineage counts once: the first run's 12.3 s and the sibling's own 2 h
    assert card["training_totals"]["hours"] == round(12.3 / 3600 + 2.0, 3)
    assert card["training_totals"]["samples"] == base[-1]["samples"] + 40

    ens = Predictor.from_weights(tmp_path / "ens", device="cpu")
    x = torch.randn(2, CFG.in_channels, *CFG.grid)
    want = (torch.sigmoid(net(x)[:, 0]) + torch.sigmoid(sibling(x)[:, 0])) / 2
    assert torch.allclose(ens._probs(x), want, atol=2e-3)  # fp16 weights: within their rounding

    export(ckpt, tmp_path / "ens")  # re-exported without members: a single network again
    assert not list((tmp_path / "ens").glob("member_*.pt"))
    assert isinstance(Predictor.from_weights(tmp_path / "ens", device="cpu").net, ResEncUNet)


def test_export_refuses_a_member_of_another_architecture(weights, tmp_path) -> None:
    _, member = _sibling_ckpt(tmp_path, 2, replace(CFG, grid=(8, 16, 16)), history=[])
    with pytest.raises(ValueError, match="grid"):
        export(weights[1].parent / "run" / "last.pt", tmp_path / "bad", members=[member])


def test_missing_member_file_is_named(weights, tmp_path) -> None:
    _, member = _sibling_ckpt(tmp_path, 3, CFG, history=[])
    export(weights[1].parent / "run" / "last.pt", tmp_path / "ens", members=[member])
    (tmp_path / "ens" / "member_1.pt").unlink()
    with pytest.raises(WeightsMissingError, match="member_1.pt"):
        Predictor.from_weights(tmp_path / "ens", device="cpu")


def test_from_weights_missing(tmp_path) -> None:
    with pytest.raises(WeightsMissingError, match="no trained weights") as err:
        Predictor.from_weights(tmp_path, device="cpu")
    assert str(tmp_path) in str(err.value) and WEIGHTS_FILE in str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    (tmp_path / WEIGHTS_FILE).write_bytes(b"")  # a checkpoint without its card is not enough
    with pytest.raises(WeightsMissingError, match=CARD_FILE):
        Predictor.from_weights(tmp_path, device="cpu")


# --------------------------------------------------------------------------------------- cases


def test_predict_case_box_step(predictor, synth) -> None:
    imgs, labels, spacing = synth
    n = int(labels.max())
    boxes = boxes_from_labels(labels, np.random.default_rng(0))
    segs = predictor.predict_case(_case(imgs, spacing, boxes=boxes)).segs
    assert segs.dtype == np.uint8 and segs.shape == imgs.shape
    assert set(np.unique(segs)) <= set(range(n + 1))
    assert segs.any()  # the zero-bias random net predicts something
    again = predictor.predict_case(_case(imgs, spacing, boxes=boxes)).segs
    np.testing.assert_array_equal(segs, again)  # deterministic


def test_batched_equals_per_class(predictor, synth) -> None:
    imgs, labels, spacing = synth
    boxes = boxes_from_labels(labels, np.random.default_rng(1))
    prev = np.zeros_like(labels)
    prev[labels == 1] = 1
    clicks = [
        {"fg": [tuple(int(v) for v in np.argwhere(labels == k + 1)[0])], "bg": []} for k in range(len(boxes))
    ]
    order = [["fg"] for _ in boxes]
    case = _case(imgs, spacing, boxes=boxes, clicks=clicks, order=order, prev=prev)
    predictor.config = replace(predictor.config, max_batch=8)
    batched = predictor.predict_case(case).segs
    predictor.config = replace(predictor.config, max_batch=1)
    single = predictor.predict_case(case).segs
    assert len(np.unique(batched)) >= 2
    np.testing.assert_array_equal(batched, single)


def test_clicks_only_case(predictor, synth) -> None:
    imgs, labels, spacing = synth
    n = int(labels.max())
    clicks = [{"fg": [tuple(int(v) for v in np.argwhere(labels == k + 1)[0])], "bg": []} for k in range(n)]
    clicks[-1] = {"fg": [], "bg": [(0, 0, 0)]}  # a class with a background click only: nothing to segment
    order = [["fg"]] * (n - 1) + [["bg"]]
    case = _case(imgs, spacing, clicks=clicks, order=order, prev=np.zeros_like(labels))
    assert case.n_classes == n
    segs = predictor.predict_case(case).segs
    assert segs.dtype == np.uint8 and segs.shape == imgs.shape
    assert set(np.unique(segs)) <= set(range(n))  # label n had no fg prompt, no prev mask
    assert segs.any()


def test_perfect_class_keeps_prev_pred(predictor, synth) -> None:
    imgs, labels, spacing = synth
    n = int(labels.max())
    boxes = boxes_from_labels(labels, np.random.default_rng(2))
    prev = labels.copy()
    prev[labels == 2] = 0  # class 2 still has errors; class 1 was perfect at the last step
    clicks = [{"fg": [], "bg": []}, {"fg": [tuple(int(v) for v in np.argwhere(labels == 2)[0])], "bg": []}]
    clicks += [{"fg": [], "bg": []}] * (n - 2)
    order = [[None], ["fg"]] + [[None]] * (n - 2)
    segs = predictor.predict_case(_case(imgs, spacing, boxes, clicks, order, prev)).segs
    np.testing.assert_array_equal(segs == 1, prev == 1)
    for k in range(3, n + 1):
        np.testing.assert_array_equal(segs == k, prev == k)


def test_perfect_class_with_two_components_kept_whole(predictor) -> None:
    # a perfect multi-component class: its box rectangle (middle slice) meets one component only
    shape = (20, 32, 32)
    imgs = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    gt = np.zeros(shape, np.uint8)
    gt[4:8, 4:10, 4:10] = 1
    gt[12:16, 20:28, 20:28] = 1
    boxes = boxes_from_labels(gt)
    assert boxes[0].z_mid == 12  # unique_z [4..7, 12..15] -> the second component's slices
    case = _case(imgs, (1.0, 1.0, 1.0), boxes, [{"fg": [], "bg": []}], [[None]], gt.copy())
    segs = predictor.predict_case(case).segs
    np.testing.assert_array_equal(segs, gt)


def test_perfect_class_not_taken_by_lower_confident_label(predictor, synth) -> None:
    # class 2 was perfect; class 1 is predicted everywhere in its ROI with probability 1.0
    imgs, labels, spacing = synth
    prev = np.zeros_like(labels)
    prev[labels == 2] = 2
    boxes = boxes_from_labels(labels, np.random.default_rng(3))[:2]
    boxes[0] = Box(z_min=0, z_max=23, z_mid=12, y_min=0, y_max=31, x_min=0, x_max=31)
    case = _case(imgs, spacing, boxes, [{"fg": [], "bg": []}] * 2, [["bg"], [None]], prev)
    predictor.net = ConstNet(30.0)
    segs = predictor.predict_case(case).segs
    np.testing.assert_array_equal(segs == 2, prev == 2)
    assert (segs == 1).sum() == segs.size - (prev == 2).sum()


# -------------------------------------------------------------------------------------- zoom-out


def _zoom_case():
    shape = (40, 96, 96)
    imgs = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    box = Box(z_min=18, z_max=22, z_mid=20, y_min=45, y_max=50, x_min=45, x_max=50)
    return _case(imgs, (1.0, 1.0, 1.0), boxes=[box]), box


def _box_facts(mask: np.ndarray, box: Box) -> np.ndarray:
    """What the box rules out, by hand: slices outside z_min..z_max (only when the z range is
    exact), and on z_mid the voxels outside the x/y rectangle."""
    out = mask.copy()
    if box.exact_z:
        out[: box.z_min] = False
        out[box.z_max + 1 :] = False
    rect = np.zeros(mask.shape[1:], bool)
    rect[box.y_min : box.y_max + 1, box.x_min : box.x_max + 1] = True
    out[box.z_mid] &= rect
    return out


@pytest.mark.parametrize("max_zoom_out", [0, 1, 2])
def test_zoom_out_when_mask_touches_border(predictor, max_zoom_out) -> None:
    case, box = _zoom_case()
    cfg = replace(predictor.config, max_zoom_out=max_zoom_out)
    predictor.config = cfg
    predictor.net = ConstNet(20.0)  # all positive: the mask touches every inner ROI face
    segs = predictor.predict_case(case).segs

    extent = object_extent(ClassPrompts(1, box=box), None, case.spacing)
    roi = choose_roi(case.shape, case.spacing, extent, cfg)
    first = roi
    assert roi.size == (24, 24, 24) and roi.lo[0] > 0  # 24 mm minimum, inside a 40-slice volume
    for _ in range(max_zoom_out):
        axes = roi.touches_border(np.ones(cfg.grid, bool))
        roi = zoom_out(roi, axes, cfg.zoom_factor)
    expected = np.zeros(case.shape, bool)
    expected[roi.slices] = True
    # the prediction fills exactly the final ROI, less what the box rules out
    np.testing.assert_array_equal(segs == 1, _box_facts(expected, box))
    if max_zoom_out:
        inner = np.zeros(case.shape, bool)
        inner[first.slices] = True
        assert segs.sum() > _box_facts(inner, box).sum()
    # hand-computed: 24 -> 38 -> 61 voxels in-plane (z capped at 40 slices); never the whole plane
    assert roi.size == {0: (24, 24, 24), 1: (38, 38, 38), 2: (40, 61, 61)}[max_zoom_out]
    assert roi.size[1] < case.shape[1]


def test_no_zoom_out_when_mask_inside(predictor) -> None:
    case, box = _zoom_case()

    class Blob(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = torch.full((x.shape[0], 1, *x.shape[2:]), -20.0)
            out[:, :, 4:12, 4:12, 4:12] = 20.0
            return out

    predictor.net = Blob()
    calls = []
    orig = Predictor._forward

    def spy(self, jobs, case, grid):
        calls.append([j.roi for j in jobs])
        return orig(self, jobs, case, grid)

    predictor._forward = spy.__get__(predictor)  # type: ignore[method-assign]
    segs = predictor.predict_case(case).segs
    assert len(calls) == 1  # one pass, no zoom-out
    roi = calls[0][0]
    blob = np.zeros(case.shape, bool)  # the grid's middle half of a 24^3 ROI: 12^3 voxels
    blob[tuple(slice(lo + s // 4, lo + 3 * s // 4) for lo, s in zip(roi.lo, roi.size, strict=True))] = True
    np.testing.assert_array_equal(segs == 1, _box_facts(blob, box))


def test_debug_lines_say_each_pass_roi_share_and_faces(predictor, caplog) -> None:
    """With debug logging, each object pass says its ROI, the share of it the answer fills and the
    faces it reaches (why an object did or did not zoom out); nothing is logged otherwise."""
    case, _ = _zoom_case()
    predictor.config = replace(predictor.config, max_zoom_out=1)
    predictor.net = ConstNet(20.0)  # the answer fills the ROI and reaches every inner face
    with caplog.at_level(logging.INFO, logger="model.predictor"):
        predictor.predict_case(case)
    assert not [r for r in caplog.records if r.levelno == logging.DEBUG]
    with caplog.at_level(logging.DEBUG, logger="model.predictor"):
        predictor.predict_case(case)
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(lines) == 2
    assert (
        "object pass: ROI 24x24x24 mm (z,y,x), answer 100.0 % of it, reaching inner faces on axes [0, 1, 2]"
        in lines[0]
    )
    assert "zoom-out 1: ROI 38x38x38 mm" in lines[1]


# -------------------------------------------------------------------------------------- fallback


@pytest.mark.parametrize("edit", [False, True], ids=["predict", "edit"])
def test_failing_class_falls_back_to_prev_pred(predictor, synth, monkeypatch, caplog, edit) -> None:
    """A failing pass (the object's, or an edit's local view) leaves that class its prev_pred."""
    if edit:
        predictor = predictor.with_config(local_fraction=0.4, refine_locally=True)
    imgs, labels, spacing = synth
    n = int(labels.max())
    boxes = boxes_from_labels(labels, np.random.default_rng(4))
    prev = labels.copy()
    clicks = [{"fg": [tuple(int(v) for v in np.argwhere(labels == k + 1)[0])], "bg": []} for k in range(n)]
    order = [["fg"] for _ in range(n)]
    predictor.net = ConstNet(2.0)  # p = 0.88 < 1.0 of a kept prev_pred mask
    orig = Predictor._forward
    seen = []

    def failing(self, jobs, case, grid):
        seen.append(sorted(j.prompts.label for j in jobs))
        if any(j.prompts.label == 2 for j in jobs):
            raise RuntimeError("boom")
        return orig(self, jobs, case, grid)

    monkeypatch.setattr(Predictor, "_forward", failing)
    with caplog.at_level(logging.WARNING, logger="model.predictor"):
        prediction = predictor.predict_case(_case(imgs, spacing, boxes, clicks, order, prev))
    segs = prediction.segs
    assert seen[0] == list(range(1, n + 1))  # the batched pass, then class by class
    assert [2] in seen[1:]
    assert "class 2 failed" in caplog.text
    # the result says which class fell back, and why; nothing was cut by a budget
    assert list(prediction.failed) == [2] and "RuntimeError: boom" in prediction.failed[2]
    assert prediction.fallbacks == (2,) and prediction.cut == () and prediction.level == Level.FULL
    np.testing.assert_array_equal(segs == 2, prev == 2)
    assert (segs == 1).sum() > (labels == 1).sum()  # the others were predicted (the whole ROI at p 0.88)


def test_failing_roi_is_reported(predictor, synth, monkeypatch) -> None:
    imgs, labels, spacing = synth
    boxes = boxes_from_labels(labels, np.random.default_rng(4))
    calls = []

    def choose(shape, sp, extent, config):
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("no room")
        return choose_roi(shape, sp, extent, config)

    monkeypatch.setattr("model.predictor.choose_roi", choose)
    prediction = predictor.predict_case(_case(imgs, spacing, boxes=boxes))
    assert list(prediction.failed) == [1] and "ROI failed" in prediction.failed[1]
    assert not (prediction.segs == 1).any()  # box step: no prev_pred to fall back to
    assert (prediction.segs > 1).any()


def test_budget_cuts_classes_and_says_so(predictor, synth) -> None:
    """A budget already spent after the first pass: the other classes keep prev_pred, and the
    result names them and the level."""
    imgs, labels, spacing = synth
    n = int(labels.max())
    boxes = boxes_from_labels(labels, np.random.default_rng(5))
    prev = labels.copy()
    clicks = [{"fg": [tuple(int(v) for v in np.argwhere(labels == k + 1)[0])], "bg": []} for k in range(n)]
    case = _case(imgs, spacing, boxes, clicks, [["fg"]] * n, prev)
    predictor.config = replace(predictor.config, max_batch=1)
    predictor.net = ConstNet(-20.0)  # predicts nothing: a class that ran is empty
    budget = Budget.for_step(n, has_boxes=True, clock=lambda: 1e9, start=0.0)
    prediction = predictor.predict_case(case, budget)
    assert prediction.cut == tuple(range(2, n + 1)) and prediction.failed == {}
    assert prediction.fallbacks == prediction.cut and prediction.level == Level.PREV_PRED
    assert not (prediction.segs == 1).any()
    for k in range(2, n + 1):  # prev_pred, less any component fusion's clean-up drops
        kept = prediction.segs == k
        assert kept.any() and not (kept & (prev != k)).any()
    no_budget = predictor.predict_case(case)  # a viewer: never degraded
    assert no_budget.cut == () and no_budget.level == Level.FULL and not no_budget.segs.any()


def test_one_slice_box_is_not_cut_to_its_slice(predictor) -> None:
    """A viewer's rectangle says nothing about z: the prediction may leave its slice (only the
    rectangle holds on that slice), where the challenge box's exact z range would cut it."""
    case, prism = _zoom_case()
    flat = Box.on_slice(20, prism.y_min, prism.y_max, prism.x_min, prism.x_max)
    predictor.config = replace(predictor.config, max_zoom_out=0)
    predictor.net = ConstNet(20.0)
    segs = predictor.predict_case(replace(case, boxes=[flat])).segs == 1
    zs = np.flatnonzero(segs.any(axis=(1, 2)))
    assert zs[0] < 20 < zs[-1]  # beyond the drawn slice both ways
    extent = object_extent(ClassPrompts(1, box=flat), None, case.spacing)
    roi = choose_roi(case.shape, case.spacing, extent, predictor.config)
    full = np.zeros(case.shape, bool)
    full[roi.slices] = True
    np.testing.assert_array_equal(segs, _box_facts(full, flat))  # only the rectangle on slice 20
    assert not segs[20].sum() > (prism.y_max - prism.y_min + 1) * (prism.x_max - prism.x_min + 1)


def test_with_config_shares_the_network(predictor) -> None:
    other = predictor.with_config(max_zoom_out=0)
    assert other.net is predictor.net and other.config.max_zoom_out == 0
    assert predictor.config.max_zoom_out == CFG.max_zoom_out and other.config.grid == CFG.grid


# ------------------------------------------------------------------------------------- GPU


@pytest.mark.gpu
def test_cuda_half_matches_cpu_on_a_real_case(real_cases_dir) -> None:
    """CUDA fp16 inference labels the same voxels as CPU fp32, up to boundary voxels whose logit
    is within fp16 rounding of 0 (at most 1 % of the foreground)."""
    if not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    from pathlib import Path

    from model.case_io import read_case

    repo = Path(__file__).resolve().parents[1]
    case_file = real_cases_dir / "imgs/CT_TotalSegExample_spine.npz"
    if not (repo / "weights" / WEIGHTS_FILE).is_file() or not case_file.is_file():
        pytest.skip(f"needs the shipped weights and {case_file} (SEGFM_CASES)")
    case = read_case(case_file)
    cpu = Predictor.from_weights(repo / "weights", device="cpu").predict_case(case).segs
    gpu = Predictor.from_weights(repo / "weights", device="cuda").predict_case(case).segs
    assert gpu.shape == cpu.shape and gpu.dtype == np.uint8
    union = np.count_nonzero((cpu > 0) | (gpu > 0))
    assert union > 0
    assert np.count_nonzero(cpu != gpu) <= 0.01 * union


def test_apply_box_facts_in_roi_coordinates() -> None:
    """The ROI starts at (2, 3, 4): the box's z range and mid-slice rectangle are shifted into it."""
    from model.predictor import apply_box_facts
    from model.roi import Roi

    roi = Roi((2, 3, 4), (12, 13, 14), (20, 20, 20))
    box = Box(z_min=4, z_max=8, z_mid=6, y_min=5, y_max=7, x_min=6, x_max=9)
    prob = torch.ones(roi.size, dtype=torch.float16)
    apply_box_facts(prob, roi, box)
    full = np.zeros((20, 20, 20), bool)
    full[roi.slices] = True
    expected = _box_facts(full, box)[roi.slices]
    np.testing.assert_array_equal(prob.numpy() > 0, expected)
    assert int((prob[4] > 0).sum()) == 3 * 4  # z_mid (6) - roi.lo (2): rows 5..7, columns 6..9


class TwoPassNet(nn.Module):
    """All foreground on its first call (the object's ROI), all background on the second (the
    click's local view); it keeps every input it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.clone())
        logit = 10.0 if len(self.inputs) == 1 else -10.0
        return torch.full((x.shape[0], 1, *x.shape[2:]), logit, dtype=x.dtype)


def _click_step_case() -> Case:
    imgs = np.random.default_rng(0).integers(0, 255, (32, 48, 48)).astype(np.uint8)
    box = Box(z_min=8, z_max=23, z_mid=15, y_min=12, y_max=35, x_min=12, x_max=35)
    prev = np.zeros(imgs.shape, np.uint8)
    prev[8:24, 12:36, 12:36] = 1
    clicks = [{"fg": [], "bg": [(16, 24, 30)]}]
    return _case(imgs, (1.0, 1.0, 1.0), boxes=[box], clicks=clicks, order=[["bg"]], prev=prev)


def test_local_pass_decides_inside_the_clicks_view_only() -> None:
    case = _click_step_case()
    cfg = replace(CFG, local_fraction=0.4, max_zoom_out=0)
    net = TwoPassNet()
    segs = Predictor(net, cfg, "cpu").predict_case(case).segs
    assert len(net.inputs) == 2  # the object's pass, then the click's local view
    local = net.inputs[1][0, cfg.channels.index("prev_mask")]
    assert torch.all(local > 0.99)  # its previous mask is the first pass's answer (all object)
    bg = net.inputs[1][0, cfg.channels.index("bg_clicks")]
    assert bg.sum() > net.inputs[0][0, cfg.channels.index("bg_clicks")].sum()  # the click is bigger there
    inside = segs[8:24, 12:36, 12:36] == 0  # the local view turned its part to background
    assert segs[16, 24, 30] == 0 and inside.any() and not inside.all()
    # the view is min_roi_mm (24 voxels) wide around the click, x 18..41: left of it the first pass stands
    assert segs[8, 12, 12] == 1 and segs[20, 30, 14] == 1


def test_no_local_pass_at_a_box_step_or_when_off() -> None:
    case = _click_step_case()
    box_step = replace(case, clicks=None, clicks_order=None, prev_pred=None)
    off, on = (
        replace(CFG, local_fraction=0.0, max_zoom_out=0),
        replace(CFG, local_fraction=0.4, max_zoom_out=0),
    )
    for cfg, c in ((off, case), (on, box_step)):
        net = TwoPassNet()
        segs = Predictor(net, cfg, "cpu").predict_case(c).segs
        assert len(net.inputs) == 1 and segs[16, 24, 30] == 1


def test_refine_locally_edits_the_previous_mask_inside_the_clicks_view_only() -> None:
    """The network calls everything object. With refine_locally the class skips the object's
    pass: one forward pass, of the click's local view (x 18..41), whose previous mask is the
    class's prev_pred (x 12..23); that view takes the network's answer, and left of it the class
    keeps its prev_pred."""
    case = _click_step_case()
    prev = np.zeros(case.shape, np.uint8)
    prev[8:24, 12:36, 12:24] = 1
    case = replace(case, prev_pred=prev)
    base = replace(CFG, local_fraction=0.4, max_zoom_out=0)
    whole = Predictor(ConstNet(20.0), base, "cpu").predict_case(case).segs
    net = TwoPassNet()
    local = Predictor(net, replace(base, refine_locally=True), "cpu").predict_case(case).segs
    assert (whole[8:24, 12:36, 12:36] == 1).all()
    assert len(net.inputs) == 1
    seen = net.inputs[0][0, CFG.channels.index("prev_mask")]
    assert seen.max() > 0.99 and seen.min() < 0.01  # part of the view is the old mask, part is not
    np.testing.assert_array_equal(local[:, :, :18], prev[:, :, :18])
    assert (local[8:24, 12:36, 18:36] == 1).all()


def test_refine_locally_predicts_a_clicks_only_class_again() -> None:
    """A class with no box is no edit: its clicks are all that tell its extent, so it gets the
    object's pass (which sees every click) and then the local view, exactly as without the option;
    a boxed class at the same step is edited (one pass)."""
    boxed = _click_step_case()
    clicks = [{"fg": [(16, 20, 20)], "bg": [(16, 24, 30)]}]
    no_box = replace(boxed, boxes=None, clicks=clicks, clicks_order=[["fg", "bg"]])
    base = replace(CFG, local_fraction=0.4, max_zoom_out=0)
    runs = {}
    for name, case in (("boxed", boxed), ("no_box", no_box)):
        for refine in (False, True):
            net = TwoPassNet()
            segs = Predictor(net, replace(base, refine_locally=refine), "cpu").predict_case(case).segs
            runs[name, refine] = (len(net.inputs), segs)
    assert runs["boxed", False][0] == 2 and runs["boxed", True][0] == 1
    assert runs["no_box", True][0] == 2
    np.testing.assert_array_equal(runs["no_box", True][1], runs["no_box", False][1])
    assert runs["no_box", True][1][16, 24, 30] == 0 and runs["no_box", True][1][16, 20, 14] == 1


def test_refine_locally_still_segments_a_class_with_no_previous_mask() -> None:
    """A clicks-only start has nothing to keep: the first pass stands, as without the option."""
    case = replace(_click_step_case(), prev_pred=np.zeros((32, 48, 48), np.uint8))
    base = replace(CFG, local_fraction=0.4, max_zoom_out=0)
    whole = Predictor(ConstNet(20.0), base, "cpu").predict_case(case).segs
    local = Predictor(ConstNet(20.0), replace(base, refine_locally=True), "cpu").predict_case(case).segs
    np.testing.assert_array_equal(local, whole)


class PlaneNet(nn.Module):
    """Object on the first call (the object's pass) left of grid column 6, background right of
    it; background everywhere on every later call (the boundary views). Keeps each input."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.clone())
        out = torch.full((x.shape[0], 1, *x.shape[2:]), -10.0, dtype=x.dtype)
        if len(self.inputs) == 1:
            out[..., :6] = 10.0
        return out


def test_boundary_tiles_look_again_where_the_mask_has_an_edge() -> None:
    """The object's pass puts an edge across x at 6/16 of the ROI. With tile_fraction 0.5 at 3
    positions per axis the views start at 0, 1/4 and 1/2 of each axis: the first two along x hold
    the edge (3 x 3 x 2 = 18 views), the last is all background and is skipped. Each view sees the
    pass's mask as its previous mask, edge included; the views' answer (background) replaces the
    pass's where they look, so nothing is left; off, the pass stands."""
    case = replace(_click_step_case(), clicks=None, clicks_order=None, prev_pred=None)
    base = replace(CFG, max_zoom_out=0, local_fraction=0.4)
    off = PlaneNet()
    kept = Predictor(off, base, "cpu").predict_case(case).segs
    assert len(off.inputs) == 1 and kept.any()
    net = PlaneNet()
    segs = Predictor(net, replace(base, tile_fraction=0.5, tile_positions=3), "cpu").predict_case(case).segs
    views = torch.cat(net.inputs[1:])
    assert views.shape[0] == 18
    prev = views[:, CFG.channels.index("prev_mask")]
    assert all(p.max() > 0.99 and p.min() < 0.01 for p in prev)
    assert not segs.any()


def test_boundary_tiles_skip_an_roi_no_larger_than_the_grid() -> None:
    """A grid of 64 is finer than the ROI of this case: no view, the pass stands."""
    case = replace(_click_step_case(), clicks=None, clicks_order=None, prev_pred=None)
    cfg = replace(CFG, grid=(64, 64, 64), max_zoom_out=0, tile_fraction=0.5)
    net = PlaneNet()
    segs = Predictor(net, cfg, "cpu").predict_case(case).segs
    assert len(net.inputs) == 1 and segs.any()


class SlowPlaneNet(PlaneNet):
    """PlaneNet whose every call costs 2 s on a fake clock."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.now += 2.0
        return super().forward(x)


def test_boundary_views_stop_where_the_budget_ends_and_keep_what_they_saw() -> None:
    """A 1-class box step has 15 s less a 4 s reserve, and 1.1 s are kept for fusion and the
    write. The object's pass takes 2 s (the fake clock); then each batch of 2 views is checked
    with the last batch's time (x 1.2 slack): three batches fit (t = 4, 6, 8), the fourth would
    not. The views never raise the degradation level: they are optional, not a cut."""
    case = replace(_click_step_case(), clicks=None, clicks_order=None, prev_pred=None)
    cfg = replace(CFG, max_zoom_out=0, tile_fraction=0.5, max_batch=2)
    net = SlowPlaneNet()
    budget = Budget.for_step(1, has_boxes=True, clock=lambda: net.now, start=0.0)
    prediction = Predictor(net, cfg, "cpu").predict_case(case, budget)
    assert len(net.inputs) == 4 and sum(x.shape[0] for x in net.inputs[1:]) == 6
    assert prediction.level == Level.FULL and prediction.fallbacks == ()
    full = Predictor(PlaneNet(), cfg, "cpu").predict_case(case).segs  # no budget: all 18 views
    kept = Predictor(PlaneNet(), replace(cfg, tile_fraction=0.0), "cpu").predict_case(case).segs
    assert 0 == full.sum() < prediction.segs.sum() < kept.sum()


def test_first_batch_of_views_is_projected_per_device() -> None:
    """A CPU pays a batch of views in proportion to its size; a GPU about one pass for it."""
    assert first_batch_s(0.25, 8, "cpu") == 2.0
    assert first_batch_s(0.25, 8, "cuda") == first_batch_s(0.25, 8, "cuda:0") == 0.25


def test_boundary_views_are_skipped_when_the_first_batch_would_not_fit() -> None:
    case = replace(_click_step_case(), clicks=None, clicks_order=None, prev_pred=None)
    budget = Budget.for_step(1, has_boxes=True, clock=lambda: 1e9, start=0.0)
    net = PlaneNet()
    cfg = replace(CFG, max_zoom_out=0, tile_fraction=0.5)
    prediction = Predictor(net, cfg, "cpu").predict_case(case, budget)
    assert len(net.inputs) == 1 and prediction.segs.any() and prediction.level == Level.FULL


def test_click_grow_runs_after_fusion_when_the_card_turns_it_on() -> None:
    """A bg click on a bright patch the network calls object: the grow step takes the patch
    (connected, similar intensity, within the radius) out of the class; off, it stays."""
    case = _click_step_case()
    imgs = np.full(case.shape, 100, np.uint8)
    imgs[12:20, 20:28, 26:34] = 200  # the patch around the bg click (16, 24, 30)
    case = replace(case, imgs=imgs)
    patch = np.zeros(case.shape, bool)
    patch[12:20, 20:28, 26:34] = True
    base = replace(CFG, max_zoom_out=0)
    off = Predictor(ConstNet(20.0), base, "cpu").predict_case(case)
    on = Predictor(ConstNet(20.0), replace(base, grow_radius_mm=10.0), "cpu").predict_case(case)
    assert (off.segs[patch] == 1).all()
    assert (on.segs[patch] == 0).all()
    np.testing.assert_array_equal(on.segs[~patch], off.segs[~patch])
    assert on.timings["grow"] >= 0.0
    # the network's answer (the whole ROI) lies in tissue of the same intensity: the card's leak
    # limit leaves that class to the network, and the patch stays
    gated = replace(base, grow_radius_mm=10.0, grow_leak_limit=0.5)
    np.testing.assert_array_equal(Predictor(ConstNet(20.0), gated, "cpu").predict_case(case).segs, off.segs)


def test_the_cards_add_limit_reaches_the_click_grow() -> None:
    """A fg click in bright tissue the network calls background, the class's previous mask a
    27-voxel cube: with `grow_add_limit` 1 the grow adds at most about as much as the class holds
    (the voxels nearest the click); without it, the whole 10 mm of bright tissue."""
    case = _click_step_case()
    imgs = np.full(case.shape, 200, np.uint8)
    prev = np.zeros(case.shape, np.uint8)
    prev[15:18, 23:26, 20:23] = 1
    clicks = [{"fg": [(16, 24, 30)], "bg": []}]
    case = replace(case, imgs=imgs, prev_pred=prev, clicks=clicks, clicks_order=[["fg"]])
    base = replace(CFG, max_zoom_out=0, grow_radius_mm=10.0)
    free = Predictor(ConstNet(-20.0), base, "cpu").predict_case(case).segs
    limited = Predictor(ConstNet(-20.0), replace(base, grow_add_limit=1.0), "cpu").predict_case(case).segs
    assert (free == 1).sum() > 1000
    assert limited[16, 24, 30] == 1 and 27 <= (limited == 1).sum() <= 40


def test_edge_snap_sees_only_what_the_network_answered(monkeypatch) -> None:
    """The snap gets each answered class with the region its answer covers: the object's ROI at a
    box step, the click's view for an edit (refine_locally), nothing for a class kept as perfect."""
    seen: list[list] = []

    def spy(segs, imgs, spacing, regions, band, window_mm, min_separation, grid):
        seen.append(list(regions))
        assert (band, window_mm, min_separation, grid) == (1, 12.0, 1.0, CFG.grid)
        return segs

    monkeypatch.setattr("model.predictor.snap_edges", spy)
    cfg = replace(CFG, max_zoom_out=0, local_fraction=0.4, refine_locally=True, snap_band=1)
    case = _click_step_case()
    box_step = replace(case, clicks=None, clicks_order=None, prev_pred=None)
    done = replace(case, clicks_order=[[None]])  # found perfect at the last step
    for c in (box_step, case, done):
        Predictor(ConstNet(20.0), cfg, "cpu").predict_case(c)
    ((label, roi),) = seen[0]
    assert label == 1 and all(s.start <= 8 and s.stop >= 24 for s in roi)  # the whole object
    ((label, view),) = seen[1]
    assert label == 1 and view[2] == slice(18, 42)  # the click's 24-voxel view, x 18..41
    assert seen[2] == []


def test_edge_snap_moves_an_answer_onto_the_objects_edge() -> None:
    """The image shows a bright object one voxel inside the network's answer all round: with the
    snap on, the answer's outer layer goes back to background and the object stays whole."""
    case = replace(_click_step_case(), clicks=None, clicks_order=None, prev_pred=None)
    base = replace(CFG, max_zoom_out=0)
    off = Predictor(ConstNet(20.0), base, "cpu").predict_case(case).segs
    inside = ndimage.binary_erosion(off == 1)
    case = replace(case, imgs=np.where(inside, 200, 60).astype(np.uint8))
    on = Predictor(ConstNet(20.0), replace(base, snap_band=1), "cpu").predict_case(case).segs
    np.testing.assert_array_equal(Predictor(ConstNet(20.0), base, "cpu").predict_case(case).segs, off)
    assert (on[inside] == 1).all()
    layer = (off == 1) & ~inside
    # all but the voxels near the answer's corners, where the inside fills under 5 % of the
    # 13-voxel window and the snap leaves a voxel alone (one side too thin to read)
    assert (on[layer] == 0).mean() > 0.8


# ------------------------------------------------------------------------------ mirror views


def test_one_mirror_view_is_the_plain_network(predictor) -> None:
    x = torch.randn(2, CFG.in_channels, 16, 16, 16)
    with torch.inference_mode():
        plain = torch.sigmoid(predictor.net(x)[:, 0])
    torch.testing.assert_close(predictor.with_config(tta_mirrors=1)._probs(x), plain)


def test_two_mirror_views_average_the_x_flip(predictor) -> None:
    x = torch.randn(1, CFG.in_channels, 16, 16, 16)
    with torch.inference_mode():
        plain = torch.sigmoid(predictor.net(x)[:, 0])
        flipped = torch.sigmoid(predictor.net(x.flip(4))[:, 0]).flip(3)
    assert not torch.allclose(plain, flipped, atol=1e-3)  # the random net is not symmetric
    torch.testing.assert_close(predictor.with_config(tta_mirrors=2)._probs(x), (plain + flipped) / 2)


@pytest.mark.parametrize("axis", [2, 3, 4])
def test_all_eight_mirror_views_make_the_answer_flip_equivariant(predictor, axis) -> None:
    """The eight flips are a group: flipping the input flips the averaged answer exactly."""
    tta = predictor.with_config(tta_mirrors=8)
    x = torch.randn(1, CFG.in_channels, 16, 16, 16)
    torch.testing.assert_close(tta._probs(x.flip(axis)), tta._probs(x).flip(axis - 1), atol=1e-5, rtol=1e-4)
