"""Tests of model.training.pack_data: crops by an mm margin with anisotropic spacing, spacing and
labels kept, validation cases left out, and the --max-mb fallbacks (smaller margin, then skips)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model.training.data import load_volume
from model.training.pack_data import (
    DEFAULT_VAL_ROOTS,
    MANIFEST,
    crop_bounds,
    main,
    pack,
    summary,
    write,
)
from model.training.train import TrainConfig

SPACING_XYZ = np.array([0.5, 1.0, 4.0], np.float32)  # stored x,y,z: z is 4 mm, x 0.5 mm


def _write(path: Path, imgs: np.ndarray, gts: np.ndarray, spacing=SPACING_XYZ) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"imgs": imgs, "gts": gts}
    if spacing is not None:
        arrays["spacing"] = spacing
    np.savez_compressed(path, **arrays)


@pytest.fixture
def tree(tmp_path: Path) -> dict:
    """extra/: a corner case (labels 3 and 7), a validation case, an unlabelled case;
    cases/: a validation root; a split file naming the validation case."""
    rng = np.random.default_rng(0)
    shape = (20, 30, 40)
    gts = np.zeros(shape, np.int16)
    gts[0:2, 0:3, 36:40] = 7  # the corner: z 0-1, y 0-2, x 36-39
    gts[1, 1, 35] = 3
    extra, cases = tmp_path / "extra", tmp_path / "cases"
    _write(extra / "CT_Corner_001.npz", rng.integers(0, 256, shape, dtype=np.uint8), gts)
    _write(extra / "CT_Held_002.npz", rng.integers(0, 256, shape, dtype=np.uint8), (gts > 0).astype(np.uint8))
    _write(extra / "MR_Empty_003.npz", rng.integers(0, 256, shape, dtype=np.uint8), np.zeros(shape, np.uint8))
    _write(cases / "CT_Val_004.npz", rng.integers(0, 256, shape, dtype=np.uint8), (gts > 0).astype(np.uint8))
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"val_substrings": ["Held_002"]}))
    return {"extra": extra, "cases": cases, "split": split, "tmp": tmp_path}


def test_crop_bounds_in_mm_with_anisotropic_spacing():
    lo, hi = np.array([0, 0, 35]), np.array([2, 3, 40])
    # 10 mm: 3 slices of 4 mm (rounded up), 10 rows of 1 mm, 20 columns of 0.5 mm; clipped to the volume
    clo, chi = crop_bounds((20, 30, 40), lo, hi, (4.0, 1.0, 0.5), 10.0)
    assert clo.tolist() == [0, 0, 15] and chi.tolist() == [5, 13, 40]
    clo, chi = crop_bounds((20, 30, 40), np.array([10, 10, 10]), np.array([11, 11, 11]), (4.0, 1.0, 0.5), 8.0)
    assert clo.tolist() == [8, 2, 0] and chi.tolist() == [13, 19, 27]


def test_default_val_roots_are_train_configs():
    assert TrainConfig().val_roots == DEFAULT_VAL_ROOTS


def test_pack_crops_keeps_spacing_and_labels_and_leaves_out_validation(tree):
    out = tree["tmp"] / "packed"
    roots = [tree["extra"], tree["cases"]]
    result = pack(roots, tree["split"], max_mb=100, margin_mm=10.0, val_roots=[tree["cases"]])
    write(result, out, {"test": True})
    assert sorted(f.name for f in out.glob("*.npz")) == ["CT_Corner_001.npz"]
    assert sorted(p.name for p in result.held_out) == ["CT_Held_002.npz", "CT_Val_004.npz"]
    assert [p.name for p in result.no_labels] == ["MR_Empty_003.npz"]
    assert result.margin_mm == 10.0 and not result.skipped

    packed, source = out / "CT_Corner_001.npz", tree["extra"] / "CT_Corner_001.npz"
    with np.load(packed) as data:
        assert set(data.files) == {"imgs", "gts", "spacing"}
        assert data["imgs"].dtype == np.uint8 and data["gts"].dtype == np.uint8
        assert data["spacing"].dtype == SPACING_XYZ.dtype and np.array_equal(data["spacing"], SPACING_XYZ)
        assert data["imgs"].shape == (5, 13, 25)
    full, small = load_volume(source), load_volume(packed)
    sl = (slice(0, 5), slice(0, 13), slice(15, 40))
    assert np.array_equal(small.gts, full.gts[sl]) and np.array_equal(small.imgs, full.imgs[sl])
    assert sorted(np.unique(small.gts).tolist()) == [0, 1, 2]  # 3 and 7, relabelled
    assert (small.gts > 0).sum() == (full.gts > 0).sum()
    assert small.spacing == full.spacing == (4.0, 1.0, 0.5)

    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["cases"][0]["crop_lo_zyx"] == [0, 0, 15] and manifest["cases"][0]["crop_hi_zyx"] == [
        5,
        13,
        40,
    ]
    text = summary(result)
    assert "held out (split + validation roots): 2 cases" in text and "without labels: 1" in text


def test_validation_root_packed_when_no_val_roots(tree):
    result = pack([tree["extra"], tree["cases"]], tree["split"], max_mb=100, margin_mm=10.0, val_roots=[])
    assert sorted(p.case.name for p in result.packed) == ["CT_Corner_001.npz", "CT_Val_004.npz"]


def test_duplicate_names_across_roots_are_refused(tree):
    _write(tree["tmp"] / "other" / "CT_Corner_001.npz", *(np.ones((4, 4, 4), np.uint8),) * 2)
    with pytest.raises(ValueError, match="share the name"):
        pack([tree["extra"], tree["tmp"] / "other"], tree["split"], 100, val_roots=[])


@pytest.fixture
def noisy(tmp_path: Path) -> tuple[Path, Path]:
    """Three cases of incompressible noise (so sizes follow the crop), 2 mm voxels, one object in the
    middle, larger in each case, so the crops (and 'largest first') differ at every margin."""
    rng = np.random.default_rng(1)
    root = tmp_path / "noisy"
    for i, shape in enumerate([(30, 40, 40), (30, 50, 50), (30, 60, 60)]):
        gts = np.zeros(shape, np.uint8)
        c = [s // 2 for s in shape]
        h = 2 + 4 * i
        gts[c[0] - 1 : c[0] + 1, c[1] - h : c[1] + h, c[2] - h : c[2] + h] = 1
        _write(root / f"CT_Noise_{i}.npz", rng.integers(0, 256, shape, dtype=np.uint8), gts, [2.0, 2.0, 2.0])
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"val_substrings": []}))
    return root, split


def _total(result) -> float:
    return sum(p.mb for p in result.packed)


def test_max_mb_shrinks_the_margin_then_skips_the_largest(noisy):
    root, split = noisy
    sizes = {m: _total(pack([root], split, 1e9, margin_mm=m, val_roots=[])) for m in (40.0, 25.0, 15.0)}
    assert sizes[40.0] > sizes[25.0] > sizes[15.0]

    fits_25 = pack([root], split, (sizes[25.0] + sizes[40.0]) / 2, val_roots=[])
    assert fits_25.margin_mm == 25.0 and not fits_25.skipped and len(fits_25.packed) == 3

    fits_15 = pack([root], split, (sizes[15.0] + sizes[25.0]) / 2, val_roots=[])
    assert fits_15.margin_mm == 15.0 and not fits_15.skipped

    limit = sizes[15.0] * 0.6
    tight = pack([root], split, limit, val_roots=[])
    assert tight.margin_mm == 15.0 and tight.skipped
    assert _total(tight) <= limit
    assert min(p.mb for p in tight.skipped) >= max(p.mb for p in tight.packed)  # the largest went first
    assert tight.skipped[0].case.name == "CT_Noise_2.npz"


def test_cli_rewrites_and_removes_what_it_wrote_before(noisy, capsys):
    root, split = noisy
    out = root.parent / "packed"
    args = ["--roots", str(root), "--split", str(split), "--out", str(out), "--val-roots"]
    main([*args, "--max-mb", "1"])
    assert len(list(out.glob("*.npz"))) == 3
    (out / "stray.npz").write_bytes(b"")
    limit = 0.6 * _total(pack([root], split, 1e9, margin_mm=15.0, val_roots=[]))
    main(
        [
            "--roots",
            str(root),
            "--split",
            str(split),
            "--out",
            str(out),
            "--max-mb",
            str(limit),
            "--val-roots",
        ]
    )
    text = capsys.readouterr().out
    assert "skipped over --max-mb" in text and "CT_Noise_2.npz" in text and "stray.npz" in text
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["margin_mm_used"] == 15.0
    left = {f.name for f in out.glob("*.npz")}
    assert left == {c["name"] for c in manifest["cases"]} | {"stray.npz"}  # the stray is not ours to delete
    assert not (left & set(manifest["skipped_over_max_mb"]))
