"""model/case_io.py: every key variant the organisers' files take, every bad input, atomic writes."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import unpicklable

from model.boxes import BOX_KEYS, Box
from model.case_io import (
    SPACING_RANGE_MM,
    Case,
    CaseError,
    read_case,
    read_prev_pred,
    spacing_zyx,
    write_segs,
)

SHAPE = (6, 10, 12)


def _box(z0, z1, zm, x0, y0, x1, y1):
    # as the organisers store them: np.int64 values
    return {k: np.int64(v) for k, v in zip(BOX_KEYS, (z0, z1, zm, x0, y0, x1, y1), strict=True)}


def _boxes():
    return [_box(1, 4, 2, 2, 3, 8, 7), _box(0, 5, 3, 0, 0, 11, 9)]


def _imgs(dtype=np.uint8):
    rng = np.random.default_rng(0)
    return (rng.random(SHAPE) * 255).astype(dtype)


def _save(path: Path, **arrays) -> Path:
    # the evaluator rewrites inputs with np.savez_compressed of Python lists: same here
    np.savez_compressed(path, **arrays)
    return path


def test_box_step_round_trip(tmp_path):
    imgs = _imgs()
    p = _save(tmp_path / "CT_case.npz", imgs=imgs, spacing=np.array([0.7, 0.8, 2.5]), boxes=_boxes())
    case = read_case(p)
    assert isinstance(case, Case)
    assert case.name == "CT_case"
    assert case.imgs.dtype == np.uint8 and np.array_equal(case.imgs, imgs)
    assert case.spacing == (2.5, 0.8, 0.7)  # stored x,y,z -> physical z,y,x
    assert case.boxes == [  # the challenge's dicts become Box (inclusive bounds, exact z range)
        Box(z_min=1, z_max=4, z_mid=2, y_min=3, y_max=7, x_min=2, x_max=8),
        Box(z_min=0, z_max=5, z_mid=3, y_min=0, y_max=9, x_min=0, x_max=11),
    ]
    assert all(b is not None and b.exact_z and type(b.x_max) is int for b in case.boxes)
    assert case.clicks is None and case.clicks_order is None and case.prev_pred is None
    assert case.n_classes == 2
    assert case.step == "box"


def test_click_step_with_boxes_u2_clicks_order(tmp_path):
    clicks = [
        {"fg": [[np.int64(2), np.int64(5), np.int64(5)]], "bg": [[np.int64(3), np.int64(1), np.int64(1)]]},
        {"fg": [[1, 2, 3], [1, 2, 3]], "bg": []},  # repeats are kept
    ]
    order = [["fg", "bg"], ["fg", "fg"]]
    prev = np.zeros(SHAPE, np.uint8)
    prev[2, 5, 5] = 1
    p = _save(
        tmp_path / "c.npz",
        imgs=_imgs(),
        spacing=[1.0, 1.0, 3.0],
        boxes=_boxes(),
        clicks=clicks,
        clicks_order=order,
        prev_pred=prev,
    )
    with np.load(p, allow_pickle=True) as raw:
        assert raw["clicks_order"].dtype == np.dtype("<U2")  # the variant under test
    case = read_case(p)
    assert case.clicks == [
        {"fg": [(2, 5, 5)], "bg": [(3, 1, 1)]},
        {"fg": [(1, 2, 3), (1, 2, 3)], "bg": []},
    ]
    assert all(type(c) is int for cl in case.clicks for pts in cl.values() for pt in pts for c in pt)
    assert case.clicks_order == order
    assert case.prev_pred.dtype == np.uint8 and np.array_equal(case.prev_pred, prev)
    assert case.n_classes == 2
    assert case.step == "click2"


def test_click_step_without_boxes_object_clicks_order_with_none(tmp_path):
    clicks = [{"fg": [[1, 1, 1]], "bg": []}, {"fg": [[4, 8, 9]], "bg": []}, {"fg": [[0, 0, 0]], "bg": []}]
    order = [["fg", None], ["fg", "fg"], ["fg", None]]
    p = _save(
        tmp_path / "MR_noBox.npz",
        imgs=_imgs(np.float32),
        spacing=np.array([1, 1, 1], np.float32),
        clicks=clicks,
        clicks_order=order,
        prev_pred=np.zeros(SHAPE, np.uint8),
    )
    with np.load(p, allow_pickle=True) as raw:
        assert raw["clicks_order"].dtype == object  # None makes it an object array
        assert "boxes" not in raw.files
    case = read_case(p)
    assert case.boxes is None
    assert case.imgs.dtype == np.float32  # kept as stored
    assert case.clicks_order == order
    assert case.n_classes == 3
    assert case.step == "click2"


def test_first_click_step_of_a_no_box_case(tmp_path):
    # the evaluator's first run for a no-box case: one click per class, prev_pred all zeros
    p = _save(
        tmp_path / "c.npz",
        imgs=_imgs(np.int16),
        spacing=[0.5, 0.5, 4.0],
        clicks=[{"fg": [[3, 3, 3]], "bg": []}],
        clicks_order=[["fg"]],
        prev_pred=np.zeros(SHAPE, np.uint8),
    )
    case = read_case(p)
    assert case.step == "click1" and case.n_classes == 1 and case.imgs.dtype == np.int16


def test_ragged_clicks_order_and_uint16_prev_pred(tmp_path):
    prev = np.zeros(SHAPE, np.uint16)
    prev[0, 0, 0] = 2
    order = np.empty(2, dtype=object)
    order[0], order[1] = ["fg", "bg", None], ["fg"]
    p = _save(
        tmp_path / "c.npz",
        imgs=_imgs(np.float64),
        spacing=[1, 1, 1],
        boxes=_boxes(),
        clicks=[{"fg": [[1, 1, 1]], "bg": [[2, 2, 2]]}, {"fg": [[3, 3, 3]], "bg": []}],
        clicks_order=order,
        prev_pred=prev,
    )
    case = read_case(p)
    assert case.clicks_order == [["fg", "bg", None], ["fg"]]
    assert case.prev_pred.dtype == np.uint8 and case.prev_pred[0, 0, 0] == 2
    assert case.step == "click3"


def test_object_array_of_dicts_and_gts_never_read(tmp_path, monkeypatch):
    boxes = np.empty(2, dtype=object)
    boxes[:] = _boxes()
    p = _save(tmp_path / "c.npz", imgs=_imgs(), spacing=[1, 1, 1], boxes=boxes, gts=np.ones(SHAPE, np.uint8))

    seen = []
    orig = np.lib.npyio.NpzFile.__getitem__

    def spy(self, key):
        seen.append(key)
        return orig(self, key)

    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", spy)
    case = read_case(p)
    assert case.n_classes == 2
    assert "gts" not in seen


def test_missing_or_bad_spacing_falls_back_with_warning(tmp_path, caplog):
    p = _save(tmp_path / "a.npz", imgs=_imgs(), boxes=_boxes())
    with caplog.at_level(logging.WARNING):
        assert read_case(p).spacing == (1.0, 1.0, 1.0)
    assert "spacing" in caplog.text
    caplog.clear()
    p = _save(tmp_path / "b.npz", imgs=_imgs(), boxes=_boxes(), spacing=[0.0, np.nan, 2.0])
    with caplog.at_level(logging.WARNING):
        assert read_case(p).spacing == (2.0, 1.0, 1.0)
    assert "spacing" in caplog.text


def test_box_outside_volume_is_clipped(tmp_path, caplog):
    p = _save(tmp_path / "c.npz", imgs=_imgs(), spacing=[1, 1, 1], boxes=[_box(-1, 9, 3, 0, 0, 50, 50)])
    with caplog.at_level(logging.WARNING):
        box = read_case(p).boxes[0]
    assert (box.z_min, box.z_max, box.x_max, box.y_max) == (0, 5, 11, 9)
    assert "partly outside" in caplog.text


def test_box_wholly_outside_volume_is_dropped_and_keeps_its_class(tmp_path, caplog):
    # x range 20..30 in a volume 12 wide: no voxel of it exists; clipping would invent a sliver
    outside = _box(1, 4, 2, 20, 3, 30, 7)
    p = _save(tmp_path / "c.npz", imgs=_imgs(), spacing=[1, 1, 1], boxes=[outside, _boxes()[1]])
    with caplog.at_level(logging.WARNING, logger="model.case_io"):
        case = read_case(p)
    assert case.boxes[0] is None  # class 1 keeps its place: boxes[1] is still label 2
    assert case.boxes[1].x_max == 11
    assert case.n_classes == 2
    assert "c.npz: box 0 lies outside the volume" in caplog.text and "dropped" in caplog.text
    assert "partly" not in caplog.text


def test_every_byte_order_is_read_as_native(tmp_path):
    for dtype in (">i2", ">u2", ">i4", ">f4", ">f8", "<i2", "|u1"):
        imgs = _imgs(np.dtype(dtype))
        case = read_case(_save(tmp_path / "be.npz", imgs=imgs, spacing=[1, 1, 1], boxes=_boxes()))
        assert case.imgs.dtype.isnative, dtype
        assert case.imgs.dtype.kind == imgs.dtype.kind and case.imgs.dtype.itemsize == imgs.dtype.itemsize
        assert np.array_equal(case.imgs, imgs), dtype


def test_absurd_spacing_is_clamped_with_one_warning(tmp_path, caplog):
    lo, hi = SPACING_RANGE_MM
    assert (lo, hi) == (1e-3, 1e3)
    p = _save(tmp_path / "s.npz", imgs=_imgs(), boxes=_boxes(), spacing=[1e308, 1e-9, 0.5])
    with caplog.at_level(logging.WARNING, logger="model.case_io"):
        assert read_case(p).spacing == (0.5, lo, hi)  # (z,y,x): the stored order reversed
    assert len(caplog.records) == 1 and "clamped" in caplog.text and "s.npz" in caplog.text


def test_zero_spacing_warns_once(tmp_path, caplog):
    p = _save(tmp_path / "z.npz", imgs=_imgs(), boxes=_boxes(), spacing=[0.0, 0.0, 0.0])
    with caplog.at_level(logging.WARNING, logger="model.case_io"):
        assert read_case(p).spacing == (1.0, 1.0, 1.0)
    assert len(caplog.records) == 1 and "spacing" in caplog.text


def test_spacing_zyx_is_the_one_reading_of_stored_spacing():
    """Training, inference and the offline tools share it: reversed, unusable -> 1.0, clamped."""
    lo, hi = SPACING_RANGE_MM
    assert spacing_zyx(np.array([0.7, 0.8, 2.5], np.float32)) == pytest.approx((2.5, 0.8, 0.7))
    assert spacing_zyx([np.nan, -1.0, 0.0]) == (1.0, 1.0, 1.0)
    assert spacing_zyx([1e308, 1e-9, 3]) == (3.0, lo, hi)
    assert all(type(v) is float for v in spacing_zyx(np.array([1, 2, 3])))
    with pytest.raises(ValueError, match="3"):
        spacing_zyx([1.0, 1.0])


def test_click_outside_volume_dropped_with_warning(tmp_path, caplog):
    clicks = [{"fg": [[1, 1, 1], [6, 0, 0]], "bg": [[-1, 2, 2]]}, {"fg": [[5, 9, 11]], "bg": []}]
    p = _save(
        tmp_path / "c.npz",
        imgs=_imgs(),
        spacing=[1, 1, 1],
        clicks=clicks,
        clicks_order=[["fg", "fg", "bg"], ["fg", None, None]],
        prev_pred=np.zeros(SHAPE, np.uint8),
    )
    with caplog.at_level(logging.WARNING, logger="model.case_io"):
        case = read_case(p)
    assert case.clicks == [{"fg": [(1, 1, 1)], "bg": []}, {"fg": [(5, 9, 11)], "bg": []}]
    assert "outside the volume" in caplog.text and "c.npz" in caplog.text


# ----------------------------------------------------------------------------------- bad inputs


def _raises(path: Path, *words: str) -> CaseError:
    with pytest.raises(CaseError) as info:
        read_case(path)
    msg = str(info.value)
    assert path.name in msg, msg
    for w in words:
        assert w in msg, msg
    return info.value


def test_missing_imgs(tmp_path):
    err = _raises(_save(tmp_path / "noimg.npz", spacing=[1, 1, 1], boxes=_boxes()), "imgs", "missing")
    assert isinstance(err, ValueError) and err.key == "imgs"


def test_truncated_file(tmp_path):
    good = _save(tmp_path / "good.npz", imgs=_imgs(), spacing=[1, 1, 1], boxes=_boxes())
    data = good.read_bytes()
    bad = tmp_path / "truncated.npz"
    bad.write_bytes(data[: len(data) // 2])
    _raises(bad)


def test_corrupt_member(tmp_path):
    # a valid zip directory but garbage where the compressed imgs member lives
    good = _save(tmp_path / "good.npz", imgs=_imgs(), spacing=[1, 1, 1], boxes=_boxes())
    data = bytearray(good.read_bytes())
    for i in range(60, 400):
        data[i] ^= 0x5A
    bad = tmp_path / "corrupt.npz"
    bad.write_bytes(bytes(data))
    _raises(bad)


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"\x93NUMPY garbage"])
def test_not_an_npz(tmp_path, content):
    bad = tmp_path / "junk.npz"
    bad.write_bytes(content)
    _raises(bad, "<file>")


@pytest.mark.parametrize("shape", [(10, 12), (2, 6, 10, 12), (0, 10, 12)])
def test_wrong_dimensions(tmp_path, shape):
    _raises(_save(tmp_path / "dims.npz", imgs=np.zeros(shape, np.uint8), boxes=_boxes()), "imgs")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf(tmp_path, bad):
    imgs = _imgs(np.float32)
    imgs[3, 4, 5] = bad
    err = _raises(_save(tmp_path / "nan.npz", imgs=imgs, spacing=[1, 1, 1], boxes=_boxes()), "imgs", "NaN")
    assert err.shape == SHAPE  # so the caller can still write a fallback output


def test_non_numeric_imgs(tmp_path):
    _raises(_save(tmp_path / "s.npz", imgs=np.full(SHAPE, "a"), boxes=_boxes()), "imgs")


def test_no_boxes_and_no_clicks(tmp_path):
    _raises(_save(tmp_path / "np.npz", imgs=_imgs(), spacing=[1, 1, 1]), "boxes", "no prompts")


def test_box_missing_key(tmp_path):
    box = dict(_boxes()[0])
    del box["z_mid"]
    _raises(_save(tmp_path / "k.npz", imgs=_imgs(), boxes=[box]), "boxes", "z_mid")


# ------------------------------------------------------------- one bad optional key keeps the rest


def _click_step(path: Path, **override) -> Path:
    """A click step with boxes: two classes, readable clicks, a prev_pred with both labels."""
    prev = np.zeros(SHAPE, np.uint8)
    prev[2, 5, 5], prev[3, 1, 1] = 1, 2
    arrays = dict(
        imgs=_imgs(),
        spacing=[1.0, 1.0, 3.0],
        boxes=_boxes(),
        clicks=[{"fg": [[2, 5, 5]], "bg": []}, {"fg": [[3, 1, 1]], "bg": [[0, 0, 0]]}],
        clicks_order=[["fg", None], ["fg", "bg"]],
        prev_pred=prev,
    )
    return _save(path, **{**arrays, **override})


def _read_warned(path: Path, caplog) -> Case:
    with caplog.at_level(logging.WARNING, logger="model.case_io"):
        return read_case(path)


def _assert_sound_parts_kept(case: Case, clicks: bool = True, prev_pred: bool = True) -> None:
    assert case.boxes is not None and len(case.boxes) == 2 and case.boxes[0].z_max == 4
    assert case.imgs.shape == SHAPE
    if clicks:
        assert case.clicks == [{"fg": [(2, 5, 5)], "bg": []}, {"fg": [(3, 1, 1)], "bg": [(0, 0, 0)]}]
    if prev_pred:
        assert case.prev_pred is not None and case.prev_pred[2, 5, 5] == 1 and case.prev_pred[3, 1, 1] == 2


def test_bad_clicks_order_entry_is_ignored_and_the_rest_kept(tmp_path, caplog):
    case = _read_warned(_click_step(tmp_path / "co.npz", clicks_order=[["fg", "xx"], ["fg", "bg"]]), caplog)
    _assert_sound_parts_kept(case)
    assert case.clicks_order is None and case.ignored == ("clicks_order",)
    assert "co.npz: key 'clicks_order'" in caplog.text and "'xx'" in caplog.text and "ignored" in caplog.text


def test_clicks_order_rows_differing_from_clicks_is_ignored(tmp_path, caplog):
    case = _read_warned(_click_step(tmp_path / "co2.npz", clicks_order=[["fg"]]), caplog)
    _assert_sound_parts_kept(case)
    assert case.clicks_order is None and case.ignored == ("clicks_order",)
    assert "co2.npz: key 'clicks_order'" in caplog.text


def test_clicks_count_differing_from_boxes_count_ignores_the_clicks(tmp_path, caplog):
    p = _click_step(tmp_path / "len.npz", clicks=[{"fg": [[1, 1, 1]], "bg": []}], clicks_order=[["fg"]])
    case = _read_warned(p, caplog)
    _assert_sound_parts_kept(case, clicks=False)
    assert case.clicks is None and case.clicks_order is None  # which entry is which class is unknown
    assert case.ignored == ("clicks", "clicks_order")
    assert "len.npz: key 'clicks' has 1 entries but there are 2 boxes" in caplog.text


def test_prev_pred_of_the_wrong_shape_is_ignored(tmp_path, caplog):
    case = _read_warned(_click_step(tmp_path / "pp.npz", prev_pred=np.ones((2, 2, 2), np.uint8)), caplog)
    _assert_sound_parts_kept(case, prev_pred=False)
    assert case.prev_pred is None and case.ignored == ("prev_pred",)
    assert "pp.npz: key 'prev_pred' shape (2, 2, 2) differs" in caplog.text


def test_float_click_coordinates_rounded_when_whole_else_dropped(tmp_path, caplog):
    clicks = [
        {"fg": [[2.0, 5.0, 5.0000001]], "bg": [[2.5, 1.0, 1.0]]},
        {
            "fg": np.array([[3.0, 1.0, 1.0], [np.nan, 1.0, 1.0]]),
            "bg": np.array([[0.0, 0.0, 0.0]], np.float32),
        },
    ]
    case = _read_warned(_click_step(tmp_path / "f.npz", clicks=clicks), caplog)
    _assert_sound_parts_kept(case)
    assert all(type(c) is int for cl in case.clicks for pts in cl.values() for pt in pts for c in pt)
    assert case.ignored == ()
    assert "f.npz: key 'clicks' entry 0 'bg'" in caplog.text and "not voxel indices" in caplog.text
    assert "entry 1 'fg'" in caplog.text


def test_clicks_entry_that_is_not_a_dict_keeps_its_class_without_clicks(tmp_path, caplog):
    clicks = [{"fg": [[2, 5, 5]], "bg": []}, "garbage"]
    case = _read_warned(_click_step(tmp_path / "e.npz", clicks=clicks), caplog)
    assert case.clicks == [{"fg": [(2, 5, 5)], "bg": []}, {"fg": [], "bg": []}]
    assert "e.npz: key 'clicks' entry 1 is str" in caplog.text


def test_nothing_usable_left_raises_with_the_shape(tmp_path, caplog):
    # no boxes, and the only click lies outside the volume: nothing to segment from
    p = _save(
        tmp_path / "none.npz",
        imgs=_imgs(),
        spacing=[1, 1, 1],
        clicks=[{"fg": [[60, 1, 1]], "bg": []}],
        clicks_order=[["fg"]],
        prev_pred=np.zeros(SHAPE, np.uint8),
    )
    with caplog.at_level(logging.WARNING, logger="model.case_io"):
        err = _raises(p, "no prompts")
    assert err.shape == SHAPE and "outside the volume" in caplog.text


def test_unpicklable_boxes_at_the_box_step_raise_with_the_shape(tmp_path):
    p = unpicklable(_save(tmp_path / "up.npz", imgs=_imgs(), spacing=[1, 1, 1], boxes=_boxes()), "boxes")
    err = _raises(p, "no prompts", "'boxes' cannot read")
    assert err.shape == SHAPE  # known: a fallback can be written


def test_unpicklable_optional_member_is_ignored(tmp_path, caplog):
    case = _read_warned(unpicklable(_click_step(tmp_path / "uo.npz"), "clicks_order"), caplog)
    _assert_sound_parts_kept(case)
    assert case.clicks_order is None and case.ignored == ("clicks_order",)
    assert "uo.npz: key 'clicks_order' cannot read" in caplog.text


def test_read_prev_pred_for_the_fallback(tmp_path):
    p = unpicklable(_click_step(tmp_path / "fb.npz"), "clicks")
    prev = read_prev_pred(p, SHAPE)
    assert prev is not None and prev.dtype == np.uint8 and prev[2, 5, 5] == 1 and prev[3, 1, 1] == 2
    assert read_prev_pred(p, (1, 2, 3)) is None  # does not fit the image: no fallback from it
    assert read_prev_pred(_save(tmp_path / "box.npz", imgs=_imgs(), boxes=_boxes()), SHAPE) is None


# --------------------------------------------------------------------------------------- write


def test_write_segs_round_trip_and_replaces_atomically(tmp_path):
    out = tmp_path / "out" / "case.npz"
    out.parent.mkdir()
    out.write_bytes(b"stale output of an earlier step")
    segs = np.zeros(SHAPE, np.uint8)
    segs[1:3, 2:5, 3:7] = 2
    write_segs(out, segs)
    with np.load(out) as f:
        assert f.files == ["segs"]
        assert f["segs"].dtype == np.uint8 and np.array_equal(f["segs"], segs)
    assert sorted(os.listdir(out.parent)) == ["case.npz"]  # no temporary file left behind
    assert out.stat().st_mode & 0o044 == 0o044  # readable by the evaluator's user


def test_write_segs_casts_integer_labels(tmp_path):
    out = tmp_path / "c.npz"
    write_segs(out, np.ones(SHAPE, np.int64))
    with np.load(out) as f:
        assert f["segs"].dtype == np.uint8


def test_write_segs_rejects_bad_input_and_keeps_old_file(tmp_path):
    out = tmp_path / "c.npz"
    write_segs(out, np.ones(SHAPE, np.uint8))
    with pytest.raises(ValueError):
        write_segs(out, np.full(SHAPE, 300, np.int32))
    with pytest.raises(ValueError):
        write_segs(out, np.zeros((3, 3), np.uint8))
    with np.load(out) as f:
        assert (f["segs"] == 1).all()
    assert sorted(os.listdir(tmp_path)) == ["c.npz"]


def test_write_segs_failure_leaves_no_temp_file(tmp_path, monkeypatch):
    out = tmp_path / "c.npz"

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError):
        write_segs(out, np.zeros(SHAPE, np.uint8))
    assert os.listdir(tmp_path) == []


def test_write_segs_long_file_name(tmp_path):
    # 251 characters + ".npz" = 255 bytes, the longest name the file system takes
    out = tmp_path / ("CT_" + "x" * 248 + ".npz")
    assert len(out.name.encode()) == 255
    write_segs(out, np.ones(SHAPE, np.uint8))
    with np.load(out) as f:
        assert (f["segs"] == 1).all()
    assert os.listdir(tmp_path) == [out.name]
