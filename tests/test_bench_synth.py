"""bench/_synth.py: the benchmarks' big synthetic cases must be cases our reader accepts."""

from __future__ import annotations

import numpy as np

from bench._synth import make_case
from model.case_io import read_case


def test_make_case_writes_a_box_step_case_with_one_challenge_box_per_object(tmp_path) -> None:
    path = make_case(tmp_path / "synth.npz", (24, 48, 48), 3, seed=1)
    case = read_case(path)
    assert case.imgs.shape == (24, 48, 48) and case.imgs.dtype == np.uint8
    assert case.boxes is not None and len(case.boxes) == 3
    assert all(box is not None and box.exact_z for box in case.boxes)
    raw = np.load(path, allow_pickle=True)["boxes"]
    keys = ["z_min", "z_max", "z_mid", "z_mid_x_min", "z_mid_y_min", "z_mid_x_max", "z_mid_y_max"]
    assert list(raw[0]) == keys
    assert make_case(path, (24, 48, 48), 3, seed=2) == path  # kept, not made again
