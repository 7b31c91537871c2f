"""The viewers' 2D box against the challenge's box, at the box step, on the validation hold-out.

    python -m evaluation.box2d_start [--split-root ../shared/data/extra]
        [--heldout-root ../shared/data/cases] [--out eval_out/box2d] [--weights weights]

A viewer draws a rectangle on one slice; the challenge gives the same rectangle with the
object's exact z range. For every held-out case with boxes (the same selection as
evaluation.validate_split), each object is predicted once from its challenge box and once from
its rectangle alone (``Box.on_slice`` on the box's middle slice), through the model's session
without a time budget, and both are scored as the evaluator scores the box step (DSC, NSD).
Writes OUT/box2d_start.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from evaluation.metrics import score_step
from evaluation.validate_split import link_cases
from model.boxes import Box
from model.case_io import Case, read_case
from model.predictor import Predictor
from model.session import Session

REPO = Path(__file__).resolve().parents[1]


def one_slice(box: Box) -> Box:
    """The challenge box as a viewer would draw it: its rectangle on its middle slice only."""
    return Box.on_slice(box.z_mid, box.y_min, box.y_max, box.x_min, box.x_max)


def box_step(predictor: Predictor, case: Case, flat: bool) -> np.ndarray:
    """The box step's label map, from every object's challenge box or from its rectangle alone."""
    session = Session(predictor)
    session.set_image(case.imgs, case.spacing, name=case.name)
    for k, box in enumerate(case.boxes or [], start=1):
        if box is not None:
            session.add_box(k, one_slice(box) if flat else box)
    return session.predict().segs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split-root", type=Path, action="append", default=[])
    ap.add_argument("--split", type=Path, default=REPO / "configs" / "split.json")
    ap.add_argument("--heldout-root", type=Path, action="append", default=[])
    ap.add_argument("--weights", type=Path, default=REPO / "weights")
    ap.add_argument("--out", type=Path, default=Path("eval_out/box2d"))
    args = ap.parse_args(argv)
    predictor = Predictor.from_weights(args.weights)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        link_cases(Path(tmp), args.split_root, args.split, args.heldout_root)
        for path in sorted((Path(tmp) / "imgs").glob("*.npz")):
            with np.load(path, allow_pickle=True) as f:
                if "boxes" not in f.files:
                    continue  # a case without boxes starts from a click
            case = read_case(path)
            with np.load(Path(tmp) / "gts" / path.name) as f:
                gts = f["gts"]
            with np.load(path) as f:
                spacing = f["spacing"]
            row = {}
            for kind, flat in (("challenge_box", False), ("2d_box", True)):
                sc = score_step(gts, box_step(predictor, case, flat), spacing)
                row |= {f"{kind}_DSC": round(sc.dsc, 4), f"{kind}_NSD": round(sc.nsd, 4)}
            rows[path.name] = row
            print(f"{path.name}: {row}", flush=True)
    cols = ["challenge_box_DSC", "2d_box_DSC", "challenge_box_NSD", "2d_box_NSD"]
    mean = {c: round(float(np.mean([r[c] for r in rows.values()])), 4) for c in cols}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "box2d_start.json").write_text(json.dumps({"mean": mean, "per_case": rows}, indent=2) + "\n")
    print(f"\n| {len(rows)} cases | " + " | ".join(cols) + " |")
    print("| --- |" + " ---: |" * len(cols))
    print("| mean | " + " | ".join(f"{mean[c]:.3f}" for c in cols) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
