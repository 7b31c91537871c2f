"""Tests of model.prompts: per-class prompt history rebuilt from a case."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from model.boxes import Box
from model.prompts import ClassPrompts, class_prompts, ordered_clicks

BOX = Box(z_min=1, z_max=3, z_mid=2, y_min=0, y_max=4, x_min=0, x_max=4)


def test_boxes_only_no_clicks() -> None:
    boxes = [BOX, replace(BOX, z_min=0)]
    out = class_prompts(2, boxes, None)
    assert [p.label for p in out] == [1, 2]
    assert out[0].box is boxes[0] and out[1].box is boxes[1]
    assert all(p.fg == [] and p.bg == [] for p in out)
    assert all(p.has_prompt for p in out)


def test_none_boxes_clicks_only() -> None:
    clicks = [{"fg": [[1, 2, 3]], "bg": []}, {"fg": [], "bg": [[4, 5, 6]]}]
    out = class_prompts(2, None, clicks)
    assert [p.box for p in out] == [None, None]
    assert out[0].fg == [(1, 2, 3)] and out[0].bg == []
    assert out[1].fg == [] and out[1].bg == [(4, 5, 6)]
    assert out[0].has_prompt
    assert not out[1].has_prompt  # only a background click: nothing says where the object is


def test_repeated_clicks_deduplicated_order_kept_and_int() -> None:
    fg = [
        [np.int64(28), np.int64(233), np.int64(365)],
        [np.int64(5), np.int64(6), np.int64(7)],
        [np.int64(28), np.int64(233), np.int64(365)],
        (1, 1, 1),
        [28, 233, 365],
        [5, 6, 7],
    ]
    bg = [[9, 9, 9], [9, 9, 9], [0, 0, 0]]
    out = class_prompts(1, [BOX], [{"fg": fg, "bg": bg}])
    assert out[0].fg == [(28, 233, 365), (5, 6, 7), (1, 1, 1)]
    assert out[0].bg == [(9, 9, 9), (0, 0, 0)]
    assert all(type(v) is int for p in out[0].fg for v in p)


def test_missing_entries_tolerated() -> None:
    clicks = [{"fg": [[1, 1, 1]]}, {}, None, {"fg": None, "bg": None}]
    out = class_prompts(4, None, clicks)
    assert out[0].fg == [(1, 1, 1)] and out[0].bg == []
    for p in out[1:]:
        assert p.fg == [] and p.bg == [] and p.box is None
    assert [p.label for p in out] == [1, 2, 3, 4]


def test_more_classes_than_clicks_and_boxes() -> None:
    out = class_prompts(4, [BOX, BOX], [{"fg": [[2, 2, 2]], "bg": []}])
    assert len(out) == 4
    assert [p.box is not None for p in out] == [True, True, False, False]
    assert out[0].fg == [(2, 2, 2)]
    assert [p.fg for p in out[1:]] == [[], [], []]
    assert [p.has_prompt for p in out] == [True, True, False, False]


def test_input_lists_not_mutated_and_independent() -> None:
    fg = [[1, 2, 3], [1, 2, 3]]
    clicks = [{"fg": fg, "bg": []}]
    out = class_prompts(1, None, clicks)
    out[0].fg.append((9, 9, 9))
    assert fg == [[1, 2, 3], [1, 2, 3]]
    a, b = ClassPrompts(label=1), ClassPrompts(label=2)
    a.fg.append((0, 0, 0))
    assert b.fg == []


def test_ordered_clicks_follow_clicks_order_and_tolerate_a_mismatch() -> None:
    entry = {"fg": [[1, 1, 1], [2, 2, 2]], "bg": [[3, 3, 3]]}
    assert list(ordered_clicks(entry, ["fg", "bg", "fg", None])) == [
        ("fg", (1, 1, 1)),
        ("bg", (3, 3, 3)),
        ("fg", (2, 2, 2)),
        (None, None),  # the done marker, where it stands
    ]
    # no order (or a short one): every click still used once, fg first
    assert [k for k, _ in ordered_clicks(entry, None)] == ["fg", "fg", "bg"]
    assert [k for k, _ in ordered_clicks(entry, ["bg", "bg"])] == ["bg", "fg", "fg"]
    assert list(ordered_clicks(None, [None])) == [(None, None)]
