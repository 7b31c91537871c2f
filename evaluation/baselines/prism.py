"""The box prism plus a small ball per click: the floor any trained model must beat.

Box step: each class fills its prism (exact z range, x/y rectangle of the middle slice).
Click steps: prev_pred, plus a ball of `radius` voxels at each foreground click, minus one at
each background click (the last click wins). Runs through the same case I/O as infer.py, so it
is scored exactly like our model: `bash evaluation/run_local.sh ... --submission
evaluation/baselines/box_prism`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import numpy as np

from model.case_io import CaseError, read_case, write_segs

log = logging.getLogger("prism")


def _ball(shape: tuple[int, int, int], centre: tuple[int, int, int], radius: int) -> tuple[slice, ...]:
    return tuple(
        slice(max(c - radius, 0), min(c + radius + 1, n)) for c, n in zip(centre, shape, strict=True)
    )


def predict(case) -> np.ndarray:
    """The baseline's label map for one case."""
    shape = case.shape
    segs = np.zeros(shape, np.uint8) if case.prev_pred is None else case.prev_pred.astype(np.uint8).copy()
    if case.prev_pred is None and case.boxes:
        for k, box in enumerate(case.boxes):
            if box is not None:  # None: the box lay outside the volume
                segs[box.prism(shape)] = k + 1
    for k, entry in enumerate(case.clicks or []):
        order = case.clicks_order[k] if case.clicks_order and k < len(case.clicks_order) else []
        fg, bg = list(entry.get("fg", [])), list(entry.get("bg", []))
        for kind in order:
            if kind is None:
                continue
            point = fg.pop(0) if kind == "fg" and fg else bg.pop(0) if kind == "bg" and bg else None
            if point is None:
                continue
            sl = _ball(shape, point, 2)
            if kind == "fg":
                segs[sl] = k + 1
            else:
                region = segs[sl]
                region[region == k + 1] = 0
    return segs


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--input-dir", type=Path, default=Path(os.environ.get("INPUT_DIR", "/workspace/inputs"))
    )
    parser.add_argument(
        "--output-dir", type=Path, default=Path(os.environ.get("OUTPUT_DIR", "/workspace/outputs"))
    )
    args = parser.parse_args()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    failed = 0
    for path in sorted(args.input_dir.glob("*.npz")):
        try:
            case = read_case(path)
            write_segs(args.output_dir / path.name, predict(case))
        except CaseError as exc:
            failed += 1
            log.error("%s", exc)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
