"""make_cases on a small NIfTI pair written here: box rule, relabelling, spacing order, intensities."""

from __future__ import annotations

import numpy as np
import pytest

sitk = pytest.importorskip("SimpleITK")

from evaluation.make_cases import main, to_uint8  # noqa: E402


def _write_pair(tmp_path, modality_values=None):
    shape_zyx = (12, 40, 50)
    labels = np.zeros(shape_zyx, np.int16)
    labels[2:9, 10:20, 5:15] = 3  # becomes label 1
    labels[5:11, 25:35, 30:45] = 7  # becomes label 2
    img = np.linspace(-300, 400, np.prod(shape_zyx)).reshape(shape_zyx).astype(np.float32)
    if modality_values is not None:
        img = modality_values
    im, lab = sitk.GetImageFromArray(img), sitk.GetImageFromArray(labels)
    for x in (im, lab):
        x.SetSpacing((0.8, 0.9, 2.5))  # x, y, z
    (tmp_path / "in").mkdir(exist_ok=True)
    ip, lp = tmp_path / "in" / "case1_img.nii.gz", tmp_path / "in" / "case1_seg.nii.gz"
    sitk.WriteImage(im, str(ip))
    sitk.WriteImage(lab, str(lp))
    return ip, lp, labels


def test_nifti_pair_to_challenge_case(tmp_path):
    ip, lp, raw = _write_pair(tmp_path)
    out = tmp_path / "out"
    assert main(["--images", str(ip), "--labels", str(lp), "--out", str(out), "--modality", "CT"]) == 0
    img = np.load(out / "imgs" / "CT_case1_img.npz", allow_pickle=True)
    gt = np.load(out / "gts" / "CT_case1_img.npz", allow_pickle=True)
    assert sorted(img.files) == ["boxes", "imgs", "spacing"]
    assert img["imgs"].dtype == np.uint8 and img["imgs"].shape == (12, 40, 50)  # (z, y, x)
    np.testing.assert_allclose(img["spacing"], [0.8, 0.9, 2.5])  # stored as GetSpacing(): x, y, z
    labels = gt["gts"]
    assert list(np.unique(labels)) == [0, 1, 2]
    assert np.array_equal(labels == 1, raw == 3) and np.array_equal(labels == 2, raw == 7)
    boxes = img["boxes"]
    assert len(boxes) == 2
    b1, b2 = boxes
    assert (b1["z_min"], b1["z_max"], b1["z_mid"]) == (2, 8, 5)  # exact z range, median of slices
    assert (b2["z_min"], b2["z_max"], b2["z_mid"]) == (5, 10, 8)
    # x/y on the middle slice, widened by the same shift s*W/256, s in 0..5 (W=50, H=40 -> 0)
    assert (b1["z_mid_y_min"], b1["z_mid_y_max"], b1["z_mid_x_min"], b1["z_mid_x_max"]) == (10, 19, 5, 14)
    assert (b2["z_mid_y_min"], b2["z_mid_y_max"], b2["z_mid_x_min"], b2["z_mid_x_max"]) == (25, 34, 30, 44)
    assert all(isinstance(v, np.int64) for v in b1.values())
    # CT window 40 +- 200: -300 HU -> 0, 400 HU -> 255
    assert img["imgs"].min() == 0 and img["imgs"].max() == 255


def test_intensity_mapping():
    ct = to_uint8(np.array([-160.0, 40.0, 240.0, 1000.0]), "CT")
    assert list(ct) == [0, 128, 255, 255]
    assert list(to_uint8(np.array([0.0, 10.0, 20.0]), "CT", (10.0, 20.0))) == [0, 128, 255]
    mr = to_uint8(np.arange(1000, dtype=float), "MR")
    assert mr.min() == 0 and mr.max() == 255 and mr[500] in (127, 128)


def test_microscopy_and_no_boxes_flag_write_no_boxes(tmp_path):
    ip, lp, _ = _write_pair(tmp_path)
    out = tmp_path / "out"
    main(["--images", str(ip), "--labels", str(lp), "--out", str(out), "--modality", "Microscopy"])
    assert "boxes" not in np.load(out / "imgs" / "Microscopy_case1_img.npz").files
    main(["--images", str(ip), "--labels", str(lp), "--out", str(out), "--modality", "MR", "--no-boxes"])
    mr = np.load(out / "imgs" / "MR_case1_img.npz")
    assert sorted(mr.files) == ["imgs", "spacing"]
    assert mr["imgs"].min() == 0 and mr["imgs"].max() == 255  # 0.5-99.5 percentile range


def test_folders_are_paired_by_sorted_name(tmp_path):
    ip, lp, _ = _write_pair(tmp_path)
    (tmp_path / "labs").mkdir()
    lp.rename(tmp_path / "labs" / "case1_img.nii.gz")
    ip.rename(tmp_path / "imgs_in.nii.gz")
    (tmp_path / "in").rmdir()
    (tmp_path / "ims").mkdir()
    (tmp_path / "imgs_in.nii.gz").rename(tmp_path / "ims" / "case1.nii.gz")
    out = tmp_path / "out"
    main(
        [
            "--images",
            str(tmp_path / "ims"),
            "--labels",
            str(tmp_path / "labs"),
            "--out",
            str(out),
            "--modality",
            "PET",
        ]
    )
    assert [p.name for p in (out / "gts").iterdir()] == ["PET_case1.npz"]
