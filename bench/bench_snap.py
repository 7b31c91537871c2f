"""What the edge snap (model/edge_snap.py) costs per step, per case, on this machine's CPU.

Run: ``python -m bench.bench_snap [--cases DIR] [--repeat 3] [--band 1] [--window-mm 12]``.

The snap runs after fusion, on the host, over every class the network answered. Its cost
follows the masks' size and the window, not the network, so each case's ground truth (``../gts``
next to ``--cases``, default ../shared/data/cases/imgs, read in place), dilated by one voxel to
give the snap an edge to move, stands in for a box step's answer: every class is snapped over the
whole volume (so along the axes on which the volume spans more voxels than ``--grid``), the
median of ``--repeat`` runs. Prints a markdown table of seconds per step, voxels changed, and the
mean Dice to the ground truth of the stand-in and of its snapped answer (how much of the added
layer the image took back). A script, not a test: it never fails on slowness.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from evaluation.metrics import dice
from model.case_io import spacing_zyx
from model.edge_snap import snap_edges

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CASES = REPO.parent / "shared" / "data" / "cases" / "imgs"


def stand_in(gts: np.ndarray) -> np.ndarray:
    """Each label grown by one voxel into background (a box step's answer a voxel too large)."""
    out = gts.astype(np.uint8).copy()
    for lab in np.unique(gts)[1:]:
        grown = ndimage.binary_dilation(gts == lab) & (out == 0)
        out[grown] = lab
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=Path, default=DEFAULT_CASES)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--band", type=int, default=1)
    ap.add_argument("--window-mm", type=float, default=12.0)
    ap.add_argument("--separation", type=float, default=1.0)
    ap.add_argument("--grid", type=int, nargs=3, default=[64, 64, 64], help="the network's grid")
    args = ap.parse_args(argv)
    paths = sorted(p for p in args.cases.glob("*.npz") if (p.parent.parent / "gts" / p.name).exists())
    if not paths:
        raise SystemExit(f"bench_snap: no case with ground truth in {args.cases} (../gts/<name>)")
    print(f"edge snap, band {args.band}, window {args.window_mm} mm; median of {args.repeat} runs\n")
    print("| case | shape | classes | seconds | voxels changed | Dice before | Dice after |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for path in paths:
        data = np.load(path, allow_pickle=True)  # a clicks-only case has no prompt read_case accepts
        spacing = spacing_zyx(data["spacing"])
        gts = np.load(path.parent.parent / "gts" / path.name, allow_pickle=True)["gts"]
        answer = stand_in(gts)
        full = tuple(slice(0, n) for n in answer.shape)
        regions = [(int(lab), full) for lab in np.unique(answer)[1:]]
        runs, changed = [], 0
        for _ in range(args.repeat):
            segs = answer.copy()
            t0 = time.perf_counter()
            snap_edges(
                segs, data["imgs"], spacing, regions, args.band, args.window_mm, args.separation, args.grid
            )
            runs.append(time.perf_counter() - t0)
            changed = int((segs != answer).sum())
        shape = "x".join(str(n) for n in answer.shape)
        before, after = (np.mean([dice(gts == lab, m == lab) for lab, _ in regions]) for m in (answer, segs))
        cells = f"{statistics.median(runs):.3f} | {changed} | {before:.3f} | {after:.3f}"
        print(f"| {path.stem} | {shape} | {len(regions)} | {cells} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
