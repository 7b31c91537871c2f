"""Does the model leave the box prism where the object does? Figures from a finished boxed run.

    python -m evaluation.box_reach OUT_DIR/model --cases CASES/imgs [--gts CASES/gts]

The challenge's box bounds the object on its middle slice only: its rectangle, extruded over the
object's exact z range, is a prism that the object may leave on every other slice (a curving
vessel or cord, an organ wider above or below its middle slice). For each object of each boxed
case saved with its steps (`all_segs`, written by run_local), this reads the box from the case
file and prints, pooled over objects: the share of the true object outside its prism, the share of
those voxels the box step and the fifth click found, the share of each answer outside the prism;
then the box step's mean DSC by the share of the object outside its prism. An answer that keeps
to the prism while the object leaves it is capped below DSC 1 whatever the network sees.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation.click_gain import named_saved_cases
from evaluation.metrics import dice
from model.case_io import read_case

OUTSIDE_BANDS = ((0.0, 0.1), (0.1, 0.3), (0.3, 0.6), (0.6, 1.01))  # share of the object outside


@dataclass(frozen=True)
class Reach:
    """One object's figures: voxels, and how the box step (first) and the fifth click (last) sit
    against its prism."""

    voxels: int
    outside: int  # true voxels outside the prism
    found_first: int  # of those, in the box step's answer
    found_last: int  # of those, in the fifth click's answer
    answer_first: int  # the box step's answer, voxels
    beyond_first: int  # of them, outside the prism
    answer_last: int
    beyond_last: int
    dice_first: float


def object_reach(true: np.ndarray, first: np.ndarray, last: np.ndarray, prism: np.ndarray) -> Reach:
    """The figures of one object from its true mask, two answers and its prism (bool arrays)."""
    out = true & ~prism
    return Reach(
        int(true.sum()),
        int(out.sum()),
        int((out & first).sum()),
        int((out & last).sum()),
        int(first.sum()),
        int((first & ~prism).sum()),
        int(last.sum()),
        int((last & ~prism).sum()),
        dice(true, first),
    )


def run_reach(run: Path, cases: Path, gts: Path) -> Iterator[Reach]:
    """Every object of every boxed case of `run` saved with a box step (six steps)."""
    for name, saved, labels in named_saved_cases(run / "segs", gts):
        steps = saved.get("all_segs")
        if steps is None or len(steps) != 6:
            continue
        case = read_case(cases / name)
        if not case.boxes:
            continue
        for ordinal, label in enumerate(np.unique(labels)[1:], start=1):  # relabelled 1..N
            box = case.boxes[ordinal - 1] if ordinal - 1 < len(case.boxes) else None
            if box is None:
                continue
            prism = np.zeros(labels.shape, bool)
            prism[box.prism(labels.shape)] = True
            yield object_reach(labels == label, steps[0] == ordinal, steps[5] == ordinal, prism)


def pooled(rows: list[Reach], part: str, whole: str) -> float:
    """sum(part) / sum(whole) over `rows` (field names of Reach); NaN where the whole is 0."""
    den = sum(getattr(r, whole) for r in rows)
    return sum(getattr(r, part) for r in rows) / den if den else float("nan")


def report_lines(rows: list[Reach]) -> list[str]:
    """The pooled figures and the box step's DSC by the share outside (OUTSIDE_BANDS)."""
    if not rows:
        return ["no boxed case saved with its steps"]
    share = np.array([r.outside / r.voxels for r in rows])
    lines = [
        f"{len(rows)} boxed objects; mean share outside the box prism {share.mean():.3f} "
        f"(median {np.median(share):.3f})",
        f"  of the voxels outside, found at the box step {pooled(rows, 'found_first', 'outside'):.3f}, "
        f"after the fifth click {pooled(rows, 'found_last', 'outside'):.3f} (pooled)",
        f"  answers outside the prism: box step {pooled(rows, 'beyond_first', 'answer_first'):.3f}, "
        f"fifth click {pooled(rows, 'beyond_last', 'answer_last'):.3f} of their voxels (pooled)",
        "  box-step DSC by the share of the object outside its prism:",
    ]
    for lo, hi in OUTSIDE_BANDS:
        band = [r.dice_first for r, s in zip(rows, share, strict=True) if lo <= s < hi]
        if band:
            lines.append(f"    {lo:.1f}-{min(hi, 1.0):.1f}: {len(band):4d} objects, mean {np.mean(band):.3f}")
    return lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a run_local output folder (with segs/)")
    ap.add_argument("--cases", type=Path, required=True, help="the case files it ran (their boxes)")
    ap.add_argument("--gts", type=Path, default=None, help="ground truth (default: CASES/../gts)")
    args = ap.parse_args(argv)
    gts = args.gts if args.gts is not None else args.cases.parent / "gts"
    print("\n".join(report_lines(list(run_reach(args.run, args.cases, gts)))))


if __name__ == "__main__":
    main()
