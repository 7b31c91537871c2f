"""Tests of model.session: the verbs, the case they amount to, undo, reset, and locked objects."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from helpers import ConstNet

from model.boxes import Box, boxes_from_labels
from model.budget import Budget, Level
from model.case_io import read_case
from model.session import Session, SessionError, changed_region
from model.synthetic import synth_case


@pytest.fixture(scope="module")
def synth():
    imgs, labels, sp_xyz = synth_case(np.random.default_rng(5), (24, 32, 32), 3)
    assert labels.max() >= 3
    return imgs, labels, tuple(float(v) for v in sp_xyz[::-1]), sp_xyz


def _first_voxel(labels: np.ndarray, k: int) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.argwhere(labels == k)[0])  # type: ignore[return-value]


def _session(predictor, imgs, spacing) -> Session:
    s = Session(predictor)
    s.set_image(imgs, spacing, name="CT_synth")
    return s


# ------------------------------------------------------------------------- one core, same answer


def test_session_predicts_what_the_case_file_says(tiny_predictor, synth, tmp_path) -> None:
    """A click step written as the evaluator writes it, read by case_io and predicted directly,
    equals the same prompts given to a session verb by verb."""
    imgs, labels, spacing, sp_xyz = synth
    boxes = boxes_from_labels(labels, np.random.default_rng(0))[:3]
    prev = np.where(labels <= 3, labels, 0).astype(np.uint8)
    prev[labels == 2] = 0
    fg2, bg1 = _first_voxel(labels, 2), (0, 0, 0)
    clicks = [{"fg": [], "bg": [bg1]}, {"fg": [fg2], "bg": []}, {"fg": [], "bg": []}]
    order = np.array([["bg"], ["fg"], [None]], dtype=object)
    path = tmp_path / "CT_synth.npz"
    challenge = np.empty(3, dtype=object)
    for i, b in enumerate(boxes):
        challenge[i] = {k: np.int64(v) for k, v in b.to_challenge().items()}
    np.savez_compressed(
        path, imgs=imgs, spacing=sp_xyz, boxes=challenge, clicks=clicks, clicks_order=order, prev_pred=prev
    )
    direct = tiny_predictor.predict_case(read_case(path)).segs

    s = _session(tiny_predictor, imgs, spacing)
    s.set_label_map(prev)
    for k, b in enumerate(boxes, start=1):
        s.add_box(k, b)
    s.add_click(1, bg1, foreground=False)
    s.add_click(2, fg2, foreground=True)
    s.mark_done(3)
    result = s.predict()
    np.testing.assert_array_equal(result.segs, direct)
    assert len(np.unique(direct)) >= 3  # a real answer, not an empty map
    np.testing.assert_array_equal(result.segs == 3, prev == 3)  # done: kept exactly
    assert s.labels is result.segs
    assert set(result.timings) == {"network", "fusion", "snap", "grow"}
    assert result.fallbacks == () and result.level == Level.FULL


def test_case_of_a_session(tiny_predictor, synth) -> None:
    imgs, labels, spacing, _ = synth
    s = _session(tiny_predictor, imgs, spacing)
    s.add_click(2, (1, 2, 3), foreground=True)
    s.add_click(2, (4, 5, 6), foreground=False)
    s.add_click(2, (1, 2, 3), foreground=True)
    case = s.case()
    assert case.n_classes == 2 and case.boxes is None and case.prev_pred is None
    assert case.clicks == [{"fg": [], "bg": []}, {"fg": [(1, 2, 3), (1, 2, 3)], "bg": [(4, 5, 6)]}]
    assert case.clicks_order == [[], ["fg", "bg", "fg"]]
    assert case.spacing == spacing and case.imgs is imgs and case.name == "CT_synth"
    s.add_box(1, Box.on_slice(3, 1, 4, 1, 4))
    case = s.case()
    assert case.boxes == [Box.on_slice(3, 1, 4, 1, 4), None]  # object 2 has no box


# ----------------------------------------------------------------------------------------- verbs


def test_verbs_need_an_image_and_sane_input(tiny_predictor, synth) -> None:
    imgs, _, spacing, _ = synth
    s = Session(tiny_predictor)
    with pytest.raises(SessionError, match="no image"):
        s.add_click(1, (0, 0, 0), True)
    with pytest.raises(SessionError, match="3-D"):
        s.set_image(imgs[0], (1, 1))
    with pytest.raises(SessionError, match="spacing"):
        s.set_image(imgs, (1.0, 0.0, 1.0))
    with pytest.raises(SessionError, match="dtype"):
        s.set_image(imgs.astype(np.complex64), spacing)
    s.set_image(imgs, spacing)
    with pytest.raises(SessionError, match="outside"):
        s.add_click(1, (24, 0, 0), True)
    with pytest.raises(SessionError, match="outside"):
        s.add_box(1, Box(0, 30, 1, 0, 3, 0, 3))
    with pytest.raises(SessionError, match="numbered"):
        s.add_click(0, (0, 0, 0), True)
    with pytest.raises(SessionError, match="numbered"):
        s.mark_done(256)
    with pytest.raises(SessionError, match="shape"):
        s.set_initial_mask(1, np.ones((2, 2, 2), bool))
    with pytest.raises(SessionError, match="uint8"):
        s.set_label_map(np.zeros(imgs.shape, np.int32))
    assert not s.has_prompts and s.case().n_classes == 0  # nothing bad was recorded


def test_initial_mask_is_refined_and_replaces_the_objects_prompts(tiny_predictor, synth) -> None:
    imgs, labels, spacing, _ = synth
    s = _session(tiny_predictor, imgs, spacing)
    s.add_click(1, _first_voxel(labels, 1), foreground=True)
    s.add_click(2, _first_voxel(labels, 2), foreground=True)
    s.set_initial_mask(1, labels == 1)
    np.testing.assert_array_equal(s.labels, (labels == 1).astype(np.uint8))
    case = s.case()
    assert case.clicks is not None and case.clicks[0] == {"fg": [], "bg": []}  # object 1 starts afresh
    assert case.clicks[1]["fg"] == [_first_voxel(labels, 2)]  # object 2 keeps its click
    tiny_predictor.net = ConstNet(20.0)
    result = s.predict()  # a mask alone is enough to predict from
    assert (result.segs == 1).sum() > (labels == 1).sum()


def test_done_object_is_kept_whole_and_a_click_reopens_it(tiny_predictor, synth) -> None:
    imgs, labels, spacing, _ = synth
    s = _session(tiny_predictor, imgs, spacing)
    start = np.where(labels <= 2, labels, 0).astype(np.uint8)
    s.set_label_map(start)
    s.mark_done(2)
    s.mark_done(2)  # marking twice is once
    assert s.case().clicks_order == [[], [None]]
    tiny_predictor.net = ConstNet(20.0)  # object 1 would take everything in its ROI
    result = s.predict()
    np.testing.assert_array_equal(result.segs == 2, start == 2)
    assert (result.segs == 1).sum() > (start == 1).sum()
    s.add_click(2, _first_voxel(labels, 2), foreground=True)
    assert s.case().clicks_order == [[], [None, "fg"]]
    assert not np.array_equal(s.predict().segs == 2, start == 2)  # reopened: predicted again


def test_undo_restores_prompts_and_labels_step_by_step(tiny_predictor, synth) -> None:
    imgs, labels, spacing, _ = synth
    s = _session(tiny_predictor, imgs, spacing)
    box = boxes_from_labels(labels)[0]
    s.add_box(1, box)
    first = s.predict().segs
    first_copy = first.copy()
    s.add_click(1, (0, 0, 0), foreground=False)
    tiny_predictor.net = ConstNet(20.0)
    second = s.predict().segs
    assert not np.array_equal(first, second)
    assert s.undo()
    np.testing.assert_array_equal(s.labels, first)
    np.testing.assert_array_equal(first, first_copy)  # arrays handed out are never changed
    assert s.case().clicks is None and s.case().boxes == [box]
    assert s.undo()
    assert s.labels is None and s.case().n_classes == 0
    assert not s.undo()


def test_undo_depth_is_bounded(tiny_predictor, synth) -> None:
    imgs, _, spacing, _ = synth
    s = Session(tiny_predictor, max_undo=2)
    s.set_image(imgs, spacing)
    for z in range(4):
        s.add_click(1, (z, 0, 0), foreground=True)
    assert s.undo() and s.undo() and not s.undo()
    assert s.case().clicks == [{"fg": [(0, 0, 0), (1, 0, 0)], "bg": []}]


def test_reset_and_new_image_forget_everything(tiny_predictor, synth) -> None:
    imgs, labels, spacing, _ = synth
    s = _session(tiny_predictor, imgs, spacing)
    s.set_label_map(np.where(labels == 1, 1, 0).astype(np.uint8))
    s.add_click(1, _first_voxel(labels, 1), foreground=True)
    assert s.has_prompts
    s.reset()
    assert not s.has_prompts and s.labels is None and not s.undo()
    s.add_click(1, (0, 0, 0), foreground=True)
    s.set_image(imgs[:10], spacing)
    assert not s.has_prompts and s.shape == (10, 32, 32)


def test_zoom_out_toggle_and_budget_pass_through(tiny_predictor) -> None:
    imgs = np.random.default_rng(0).integers(0, 255, (40, 96, 96), dtype=np.uint8)
    s = _session(tiny_predictor, imgs, (1.0, 1.0, 1.0))
    s.add_box(1, Box(18, 22, 20, 45, 50, 45, 50))
    tiny_predictor.net = ConstNet(20.0)  # touches every ROI face: zoom-out grows it
    grown = (s.predict().segs == 1).sum()
    flat = _session(tiny_predictor, imgs, (1.0, 1.0, 1.0))
    flat.set_zoom_out(False)
    flat.add_box(1, Box(18, 22, 20, 45, 50, 45, 50))
    assert 0 < (flat.predict().segs == 1).sum() < grown
    assert tiny_predictor.config.max_zoom_out == 2  # the shared predictor is untouched
    s.add_click(2, (5, 5, 5), foreground=True)
    s.add_click(3, (30, 80, 80), foreground=True)
    budget = Budget.for_step(3, has_boxes=True, clock=lambda: 1e9, start=0.0)
    tiny_predictor.config = replace(tiny_predictor.config, max_batch=1)
    result = s.predict(budget)
    assert result.level == Level.PREV_PRED and result.cut == (2, 3)


def test_changed_region() -> None:
    a = np.zeros((4, 5, 6), np.uint8)
    b = a.copy()
    assert changed_region(a, b) is None and changed_region(None, None) is None
    assert changed_region(None, a) is None
    b[1, 2, 3] = 1
    b[2, 4, 1] = 2
    assert changed_region(a, b) == (slice(1, 3), slice(2, 5), slice(1, 4))
    assert changed_region(None, b) == changed_region(b, None) == (slice(1, 3), slice(2, 5), slice(1, 4))
