"""Does the model answer the clicks? Figures from a finished local evaluation folder.

    python -m evaluation.click_gain OUT_DIR/model [--gts OUT_DIR/cases/gts]

Reads OUT_DIR/metrics.csv and, for the volume ratio, the saved segmentations (OUT_DIR/segs,
written by run_local unless --no-save-segs) and the ground truth. Prints, over the cases with
boxes: the mean DSC gain from the box step to the fifth click, the worst change and the cases
that end more than 0.02 below their box step; over the no-box cases, the gain from the first to
the fifth click; and the median predicted/true volume per object at the final step.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np


def volume_ratios(segs_dir: Path, gts_dir: Path) -> list[float]:
    """Predicted / true voxels per object of every case, at the final step."""
    out = []
    for seg_file in sorted(segs_dir.glob("*.npz")):
        gt_file = gts_dir / seg_file.name
        if not gt_file.exists():
            continue
        with np.load(seg_file) as s, np.load(gt_file, allow_pickle=True) as g:
            seg, gts = s["segs"], g["gts"]
        for label in np.unique(gts)[1:]:
            true = int((gts == label).sum())
            ordinal = int(np.searchsorted(np.unique(gts)[1:], label)) + 1  # relabelled 1..N
            out.append(int((seg == ordinal).sum()) / true)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a run_local output folder (metrics.csv, segs/)")
    ap.add_argument("--gts", type=Path, help="ground-truth folder (default: RUN/../cases/gts)")
    args = ap.parse_args(argv)
    with (args.run / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    boxed = [r for r in rows if r.get("Has_Boxes", "True") in ("True", "1", "true")]
    nobox = [r for r in rows if r not in boxed]
    gains = {r["CaseName"]: float(r["DSC_6"]) - float(r["DSC_1"]) for r in boxed}
    print(f"boxed cases: {len(boxed)}; mean DSC gain box -> click5: {np.mean(list(gains.values())):+.3f}")
    worst = min(gains, key=gains.get) if gains else None
    if worst:
        print(f"worst change: {worst} {gains[worst]:+.3f}")
    drops = {n: g for n, g in gains.items() if g < -0.02}
    print(f"boxed cases more than 0.02 worse after 5 clicks: {len(drops)} {sorted(drops)}")
    if nobox:
        g = [float(r["DSC_6"]) - float(r["DSC_2"]) for r in nobox]
        print(f"no-box cases: {len(nobox)}; mean DSC gain click1 -> click5: {np.mean(g):+.3f}")
    gts = args.gts or args.run.parent / "cases" / "gts"
    if (args.run / "segs").is_dir() and gts.is_dir():
        ratios = volume_ratios(args.run / "segs", gts)
        if ratios:
            q = np.percentile(ratios, [25, 50, 75])
            n = len(ratios)
            print(f"predicted/true volume per object ({n}): median {q[1]:.2f} (IQR {q[0]:.2f}-{q[2]:.2f})")


if __name__ == "__main__":
    main()
