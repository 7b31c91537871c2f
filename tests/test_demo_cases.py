"""Demo cases are in the challenge format."""

from __future__ import annotations

import numpy as np

from evaluation.demo_cases import main, make_demo_cases
from model.boxes import BOX_KEYS


def test_demo_cases_format(tmp_path):
    names = make_demo_cases(tmp_path, n=3, seed=1, shape=(8, 24, 24))
    assert names == ["SynA_demo00.npz", "SynB_demo01.npz", "SynA_demo02_noboxes.npz"]
    for i, name in enumerate(names):
        img = np.load(tmp_path / "imgs" / name, allow_pickle=True)
        gt = np.load(tmp_path / "gts" / name, allow_pickle=True)
        assert "gts" not in img.files
        assert img["imgs"].dtype == np.uint8 and img["imgs"].shape == (8, 24, 24)
        assert img["spacing"].dtype == np.float64 and img["spacing"].shape == (3,)
        labels = gt["gts"]
        assert labels.shape == img["imgs"].shape
        values = np.unique(labels)
        assert values[0] == 0 and list(values[1:]) == list(range(1, len(values)))  # sequential 1..N
        if i < 2:
            boxes = img["boxes"]
            assert boxes.dtype == object and boxes.shape == (len(values) - 1,)
            for k, box in enumerate(boxes):
                assert tuple(box) == BOX_KEYS and all(isinstance(v, np.int64) for v in box.values())
                zs = np.flatnonzero((labels == k + 1).any(axis=(1, 2)))
                assert (box["z_min"], box["z_max"], box["z_mid"]) == (zs[0], zs[-1], zs[len(zs) // 2])
                ys, xs = np.nonzero(labels[box["z_mid"]] == k + 1)
                assert box["z_mid_x_min"] <= xs.min() and box["z_mid_x_max"] >= xs.max()
                assert xs.min() - box["z_mid_x_min"] <= 5 * 24 // 256 + 0  # shift 0..5 x W/256 -> 0 here
        else:
            assert "boxes" not in img.files and "boxes" not in gt.files


def test_demo_cases_cli(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--n", "2", "--shape", "8", "20", "20"]) == 0
    assert len(list((tmp_path / "imgs").glob("*.npz"))) == 2
    assert "wrote 2 demo cases" in capsys.readouterr().out
