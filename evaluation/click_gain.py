"""Does the model answer the clicks? Figures from a finished local evaluation folder.

    python -m evaluation.click_gain OUT_DIR/model [--gts OUT_DIR/cases/gts]

Reads OUT_DIR/metrics.csv and, for the volume ratio, the saved segmentations (OUT_DIR/segs,
written by run_local unless --no-save-segs) and the ground truth. Prints, over the cases with
boxes: the mean DSC gain from the box step to the fifth click, the mean DSC at each step (a dip
at one click hides in the gain), the worst change and the cases that end more than 0.02 below
their box step; over the no-box cases, the gain from the first to the fifth click; the median
predicted/true volume per object at the final step; and, per object of the boxed cases (from the
saved steps, `all_segs`), the DSC gain from the box step to the fifth click by object size. A
case's DSC is the mean over its objects, so a case-level gain hides which objects the clicks
help: this shows it. For the cases saved without a box step (a clicks-only start), it prints the
predicted/true volume per object after the first click, by object size: how much of an object a
single click finds, which moves the clicks-only AUCs most (a large object found too small at the
first click costs every later step).
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from numpy.lib.npyio import NpzFile

from evaluation.metrics import dice


def saved_cases(segs_dir: Path, gts_dir: Path) -> Iterator[tuple[NpzFile, np.ndarray]]:
    """(the saved segmentations, open, ground truth) of each saved case that has a ground-truth
    file. The npz stays lazy so that each reader decompresses only the keys it uses (`segs`, the
    final step; `all_segs`, every step, when saved)."""
    for _, saved, gts in named_saved_cases(segs_dir, gts_dir):
        yield saved, gts


def named_saved_cases(segs_dir: Path, gts_dir: Path) -> Iterator[tuple[str, NpzFile, np.ndarray]]:
    """`saved_cases` with each case's file name first (a reader that also opens the case file)."""
    for seg_file in sorted(segs_dir.glob("*.npz")):
        gt_file = gts_dir / seg_file.name
        if gt_file.exists():
            with np.load(seg_file) as s, np.load(gt_file, allow_pickle=True) as g:
                yield seg_file.name, s, g["gts"]


def volume_ratios(segs_dir: Path, gts_dir: Path) -> list[float]:
    """Predicted / true voxels per object of every case, at the final step."""
    out = []
    for saved, gts in saved_cases(segs_dir, gts_dir):
        seg = saved["segs"]
        for ordinal, label in enumerate(np.unique(gts)[1:], start=1):  # relabelled 1..N
            out.append(int((seg == ordinal).sum()) / int((gts == label).sum()))
    return out


SIZE_BANDS = ((0, 1_000), (1_000, 10_000), (10_000, 100_000), (100_000, None))  # true voxels


def _objects_of_saved_steps(
    segs_dir: Path, gts_dir: Path, n_steps: int
) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """(true mask, the saved steps' label maps, the object's label in them) per object of every
    case saved with `n_steps` steps (`all_segs`: six with a box step, five for a clicks-only
    start)."""
    for saved, gts in saved_cases(segs_dir, gts_dir):
        steps = saved.get("all_segs")
        if steps is None or len(steps) != n_steps:
            continue
        for ordinal, label in enumerate(np.unique(gts)[1:], start=1):  # relabelled 1..N
            yield gts == label, steps, ordinal


def object_gains(segs_dir: Path, gts_dir: Path) -> list[tuple[int, float]]:
    """(true voxels, DSC after the fifth click minus DSC after the box step) per object of every
    case whose saved steps include a box step (six steps)."""
    out = []
    for true, steps, label in _objects_of_saved_steps(segs_dir, gts_dir, 6):
        n = int(true.sum())
        pred = [steps[0] == label, steps[5] == label]
        out.append((n, dice(true, pred[1]) - dice(true, pred[0])))
    return out


def first_click_ratios(segs_dir: Path, gts_dir: Path) -> list[tuple[int, float]]:
    """(true voxels, predicted / true voxels after the first click) per object of every case
    saved without a box step (five steps: a clicks-only start)."""
    out = []
    for true, steps, label in _objects_of_saved_steps(segs_dir, gts_dir, 5):
        n = int(true.sum())
        out.append((n, int((steps[0] == label).sum()) / n))
    return out


def by_size(
    values: list[tuple[int, float]], bands: tuple[tuple[int, int | None], ...] = SIZE_BANDS
) -> Iterator[tuple[str, list[float]]]:
    """(band name, the values in it) for each of `bands` (voxel counts, [lo, hi)) that has values;
    `values` are (voxels, value) pairs."""
    for lo, hi in bands:
        band = [v for n, v in values if n >= lo and (hi is None or n < hi)]
        if band:
            yield (f"{lo}-{hi}" if hi else f">= {lo}"), band


def size_lines(gains: list[tuple[int, float]]) -> list[str]:
    """The per-object gains summed up by SIZE_BANDS, one printed line per band that has objects."""
    if not gains:
        return []
    lines = [f"per object of the boxed cases ({len(gains)}), DSC gain box -> click5 by true voxels:"]
    for name, band in by_size(gains):
        worse = sum(g < -0.02 for g in band)
        lines.append(
            f"  {name:>13}: {len(band):4d} objects, mean {np.mean(band):+.3f}, {worse} worse by > 0.02"
        )
    return lines


def first_click_lines(ratios: list[tuple[int, float]]) -> list[str]:
    """The first-click volume ratios summed up by SIZE_BANDS (median and range per band)."""
    if not ratios:
        return []
    lines = [
        f"per object of the no-box cases ({len(ratios)}), predicted/true volume after click1 by true voxels:"
    ]
    for name, band in by_size(ratios):
        lines.append(
            f"  {name:>13}: {len(band):4d} objects, median {np.median(band):.2f} "
            f"(min {min(band):.2f}, max {max(band):.2f})"
        )
    return lines


def report_lines(run: Path, gts: Path | None = None) -> list[str]:
    """The figures of a finished run folder (metrics.csv, segs/), one printed line each; `gts`
    defaults to RUN/../cases/gts, where validate_split links the cases."""
    with (run / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    boxed = [r for r in rows if r.get("Has_Boxes", "True") in ("True", "1", "true")]
    nobox = [r for r in rows if r not in boxed]
    gains = {r["CaseName"]: float(r["DSC_6"]) - float(r["DSC_1"]) for r in boxed}
    lines = [f"boxed cases: {len(boxed)}"]
    if boxed:
        lines[0] += f"; mean DSC gain box -> click5: {np.mean(list(gains.values())):+.3f}"
        steps = [np.mean([float(r[f"DSC_{i}"]) for r in boxed]) for i in range(1, 7)]
        lines.append("mean DSC per step (box, clicks 1-5): " + " ".join(f"{d:.3f}" for d in steps))
        worst = min(gains, key=gains.get)
        lines.append(f"worst change: {worst} {gains[worst]:+.3f}")
        drops = {n: g for n, g in gains.items() if g < -0.02}
        lines.append(f"boxed cases more than 0.02 worse after 5 clicks: {len(drops)} {sorted(drops)}")
    if nobox:
        g = [float(r["DSC_6"]) - float(r["DSC_2"]) for r in nobox]
        lines.append(f"no-box cases: {len(nobox)}; mean DSC gain click1 -> click5: {np.mean(g):+.3f}")
    gts = gts or run.parent / "cases" / "gts"
    if (run / "segs").is_dir() and gts.is_dir():
        ratios = volume_ratios(run / "segs", gts)
        if ratios:
            q = np.percentile(ratios, [25, 50, 75])
            head = f"predicted/true volume per object ({len(ratios)})"
            lines.append(f"{head}: median {q[1]:.2f} (IQR {q[0]:.2f}-{q[2]:.2f})")
        lines += size_lines(object_gains(run / "segs", gts))
        lines += first_click_lines(first_click_ratios(run / "segs", gts))
    return lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a run_local output folder (metrics.csv, segs/)")
    ap.add_argument("--gts", type=Path, help="ground-truth folder (default: RUN/../cases/gts)")
    args = ap.parse_args(argv)
    for line in report_lines(args.run, args.gts):
        print(line)


if __name__ == "__main__":
    main()
