"""Tests of model.training.data: the training reader on a fake official tree (issue 4), including a case
with non-sequential labels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model.training.data import (
    Volume,
    empty_roots,
    find_cases,
    load_volume,
    nested_labels,
    roots_warning,
    split_cases,
    warn_empty_roots,
)


def _write(path, imgs, gts, spacing=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"imgs": imgs, "gts": gts}
    if spacing is not None:
        arrays["spacing"] = np.asarray(spacing)
    np.savez_compressed(path, **arrays)


@pytest.fixture
def tree(tmp_path):
    """<root>/CT/CT_Dataset/CT_Dataset_00{1,2}.npz, <root>/MR/MR_X/MR_X_007.npz, a flat folder."""
    root = tmp_path / "official"
    rng = np.random.default_rng(0)
    shape = (4, 6, 8)
    gts = np.zeros(shape, np.int32)
    gts[0:2, 0:3, 0:4] = 5
    gts[2:4, 3:6, 4:8] = 9
    gts[3, 0, 0] = 5
    _write(
        root / "CT" / "CT_Dataset" / "CT_Dataset_001.npz",
        rng.integers(0, 256, shape, dtype=np.uint8),
        gts,
        [0.8, 0.7, 2.5],
    )
    gts2 = np.zeros(shape, np.uint8)
    gts2[1, 1, 1] = 1
    _write(
        root / "CT" / "CT_Dataset" / "CT_Dataset_002.npz", np.zeros(shape, np.uint8), gts2, [1.0, 1.0, 1.0]
    )
    mr_img = np.linspace(-50, 400, np.prod(shape)).reshape(shape).astype(np.float32)
    gts3 = np.zeros(shape, np.uint16)
    gts3[:, :2] = 300
    _write(root / "MR" / "MR_X" / "MR_X_007.npz", mr_img, gts3, [0.6, 0.5, 4.0])
    flat = tmp_path / "flat"
    _write(flat / "PET_Flat_003.npz", np.ones(shape, np.uint8), gts2, [2.0, 2.0, 3.0])
    (root / "CT" / "CT_Dataset" / "notes.txt").write_text("not a case")
    return root, flat


def test_find_cases_nested_and_flat(tree) -> None:
    root, flat = tree
    files = find_cases([root, flat])
    assert [f.name for f in files] == [
        "CT_Dataset_001.npz",
        "CT_Dataset_002.npz",
        "MR_X_007.npz",
        "PET_Flat_003.npz",
    ]
    assert files[2].parent.name == "MR_X" and files[2].parent.parent.name == "MR"
    assert find_cases([flat]) == [flat / "PET_Flat_003.npz"]
    assert find_cases([]) == []


def test_load_volume_relabels_and_reverses_spacing(tree) -> None:
    root, _ = tree
    vol = load_volume(root / "CT" / "CT_Dataset" / "CT_Dataset_001.npz")
    assert isinstance(vol, Volume)
    assert vol.name == "CT_Dataset_001"
    assert vol.spacing == (2.5, 0.7, 0.8)  # stored x,y,z -> z,y,x
    assert vol.gts.shape == vol.imgs.shape == (4, 6, 8)
    assert np.array_equal(np.unique(vol.gts), [0, 1, 2])  # 5 -> 1, 9 -> 2
    assert vol.n_classes == 2
    expected = np.zeros((4, 6, 8), np.uint8)
    expected[0:2, 0:3, 0:4] = 1
    expected[2:4, 3:6, 4:8] = 2
    expected[3, 0, 0] = 1
    np.testing.assert_array_equal(vol.gts, expected)
    assert vol.imgs.dtype == np.uint8


def test_load_volume_bad_spacing_names_the_file(tmp_path) -> None:
    imgs = np.zeros((2, 3, 4), np.uint8)
    gts = np.ones((2, 3, 4), np.uint8)
    _write(tmp_path / "zero.npz", imgs, gts, spacing=[0.0, np.nan, 2.0])
    assert load_volume(tmp_path / "zero.npz").spacing == (2.0, 1.0, 1.0)  # unusable -> 1.0 mm
    _write(tmp_path / "short.npz", imgs, gts, spacing=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"short\.npz: spacing has 2 values"):
        load_volume(tmp_path / "short.npz")


def test_load_volume_float_image_clipped_and_single_label(tree) -> None:
    root, _ = tree
    vol = load_volume(root / "MR" / "MR_X" / "MR_X_007.npz")
    assert vol.imgs.dtype == np.uint8
    assert vol.imgs.min() == 0 and vol.imgs.max() == 255  # -50..400 clipped to 0..255
    assert vol.spacing == (4.0, 0.5, 0.6)
    assert vol.n_classes == 1 and vol.gts[0, 0, 0] == 1 and vol.gts[0, 5, 0] == 0


def test_load_volume_missing_or_bad_spacing_and_shape_mismatch(tmp_path) -> None:
    shape = (2, 3, 4)
    _write(tmp_path / "a.npz", np.zeros(shape, np.uint8), np.ones(shape, np.uint8))
    assert load_volume(tmp_path / "a.npz").spacing == (1.0, 1.0, 1.0)
    _write(tmp_path / "b.npz", np.zeros(shape, np.uint8), np.ones(shape, np.uint8), [0.5, np.nan, -1.0])
    assert load_volume(tmp_path / "b.npz").spacing == (1.0, 1.0, 0.5)
    _write(tmp_path / "c.npz", np.zeros(shape, np.uint8), np.ones((2, 3, 5), np.uint8), [1, 1, 1])
    with pytest.raises(ValueError, match="c.npz"):
        load_volume(tmp_path / "c.npz")


def test_split_cases(tree, tmp_path) -> None:
    root, flat = tree
    files = find_cases([root, flat])
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"about": "x", "val_substrings": ["MR_X_", "Dataset_002"]}))
    train, val = split_cases(files, split)
    assert [f.name for f in train] == ["CT_Dataset_001.npz", "PET_Flat_003.npz"]
    assert [f.name for f in val] == ["CT_Dataset_002.npz", "MR_X_007.npz"]
    split.write_text(json.dumps({"val_substrings": []}))
    train, val = split_cases(files, split)
    assert train == files and val == []


def test_empty_roots_names_missing_and_caseless_folders(tree, tmp_path) -> None:
    root, flat = tree
    (tmp_path / "hollow").mkdir()
    assert empty_roots([root, flat]) == []
    assert empty_roots([root, tmp_path / "nowhere", str(tmp_path / "hollow")]) == [
        (tmp_path / "nowhere", "missing"),
        (tmp_path / "hollow", "no .npz"),
    ]


def test_roots_warning_is_one_line_naming_the_roots_and_the_key(tree, tmp_path) -> None:
    root, _ = tree
    missing = str(tmp_path / "shared" / "data" / "extra" / "train")
    assert roots_warning("roots", [str(root)]) is None
    assert roots_warning("roots", []) is None  # no roots on purpose: synthetic only, nothing to warn
    alone = roots_warning("roots", [missing])
    assert alone is not None and "\n" not in alone
    assert alone.startswith("warning: no cases in config key 'roots' (synthetic data only)")
    assert f"{missing} (missing)" in alone and "Set 'roots' to" in alone
    partial = roots_warning("roots", [str(root), missing])
    assert partial is not None and "synthetic data only" not in partial and missing in partial
    val = roots_warning("val_roots", [missing])
    assert val is not None and "'val_roots'" in val and "synthetic data only" not in val
    assert "3D_train_npz" in alone and "3D_train_npz" not in val  # the training coreset is no val root


def test_warn_empty_roots_prints_one_line_per_key(tree, tmp_path, capsys) -> None:
    root, _ = tree
    warn_empty_roots({"roots": [str(tmp_path / "a")], "val_roots": [str(tmp_path / "b")], "x": [str(root)]})
    out = capsys.readouterr()
    assert out.out == ""
    lines = out.err.splitlines()
    assert len(lines) == 2 and "'roots'" in lines[0] and "'val_roots'" in lines[1]


def _organ_tumour_object() -> np.ndarray:
    gts = np.zeros((20, 30, 40), np.uint8)
    gts[2:14, 2:20, 2:20] = 1  # an organ
    gts[5:8, 6:10, 6:9] = 2  # a tumour inside it
    gts[4:10, 4:12, 26:36] = 3  # a separate object
    return gts


def test_nested_labels_finds_the_tumour_in_its_organ() -> None:
    assert nested_labels(_organ_tumour_object()) == (2,)
    vol = Volume("v", np.zeros((20, 30, 40), np.uint8), _organ_tumour_object(), (1.0, 1.0, 1.0))
    assert vol.nested_labels() == (2,) and vol.nested_labels() is vol.nested_labels()  # found once


def test_nested_labels_slack_and_nearly_equal_boxes() -> None:
    gts = _organ_tumour_object()
    gts[5:8, 6:10, 9:21] = 2  # the tumour reaches one voxel past the organ's box: still nested
    assert nested_labels(gts) == (2,)
    gts[5:8, 6:10, 21] = 2  # two voxels past it: no longer inside
    assert nested_labels(gts) == ()
    subregions = np.zeros((20, 20, 20), np.uint8)
    subregions[2:18, 2:18, 2:10] = 1  # two halves of one tumour: boxes neither inside the other
    subregions[2:18, 2:18, 10:18] = 2
    assert nested_labels(subregions) == ()
    subregions[:] = 0  # interleaved sub-regions whose boxes (x 2:16 and 4:18) have IoU 0.75: both
    subregions[2:18, 2:18, 2:4] = subregions[2:18, 2:18, 15] = 1
    subregions[2:18, 2:18, 4:15] = subregions[2:18, 2:18, 16:18] = 2
    assert nested_labels(subregions) == (1, 2)
    assert nested_labels(np.zeros((4, 4, 4), np.uint8)) == ()
