"""How is each click answered? Per click of a finished local evaluation, what the next answer did
to the error the click pointed at, and what it changed elsewhere.

    python -m evaluation.click_answer OUT_DIR/model [--gts OUT_DIR/cases/gts]

The challenge scores the click steps, so a model is only as good as its answer to each click. A
case's DSC curve (evaluation.click_gain) mixes that answer with everything else the step
changed. This reads the saved steps (OUT_DIR/segs/<case>.npz, `all_segs`), replays the
organisers' click on each (model.click_sim: the same click the run got, since the simulator is
deterministic) and measures, per object and click:

* the error component the click addressed: the largest 26-connected component of the object's
  error, missed and false voxels together as the simulator takes them (along an edge that is a
  thin shell round the object), the one whose deepest voxel the click is;
* `fixed`: the share of that component that the next answer turned right;
* elsewhere (outside the component), the voxels the answer turned wrong and those it turned right;
* the object's Dice before and after;
* of the component's missed voxels, those another object held before the click (`held`: a
  neighbour's mask grown over the object) and how many of them the answer took (`taken`).

The lines printed: per click kind, the mean object Dice before and after, the mean and median
share fixed, how often less than half was fixed, the voxels turned wrong and right elsewhere
against those fixed in the component, the missed voxels another object held and the share of
them taken; then the share fixed by component size. A click start's first click is placed on an
empty mask, as the organisers do.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import cc3d
import numpy as np

from evaluation.click_gain import by_size, saved_cases
from evaluation.metrics import dice
from evaluation.protocol import N_STEPS
from model.click_sim import simulate_clicks

COMPONENT_BANDS = ((0, 100), (100, 1_000), (1_000, 10_000), (10_000, None))  # voxels


@dataclass(frozen=True)
class ClickAnswer:
    """One object's answer to one click."""

    kind: str  # "fg" or "bg"
    component: int  # voxels of the error component the click addressed
    fixed: int  # of them, right in the next answer
    broken_elsewhere: int  # voxels outside the component right before the click, wrong after
    mended_elsewhere: int  # and wrong before, right after
    dice_before: float
    dice_after: float
    missed: int = 0  # voxels of the component the object lacked (the rest were false)
    held: int = 0  # of those, voxels another object held before the click
    taken: int = 0  # of those, the object's after it

    @property
    def fixed_share(self) -> float:
        return self.fixed / self.component


def answers_of_case(steps: np.ndarray, gts: np.ndarray) -> list[ClickAnswer]:
    """Every click's answer in one case's saved steps (`all_segs`: the box step and five clicks,
    or five clicks of a click start, whose first click is placed on an empty mask)."""
    steps = np.asarray(steps)
    if len(steps) == N_STEPS - 1:
        steps = np.concatenate([np.zeros((1, *gts.shape), steps.dtype), steps])
    labels = [int(v) for v in np.unique(gts) if v > 0]
    clicks = order = None
    out = []
    for before, after in zip(steps[:-1], steps[1:], strict=True):
        clicks, order = simulate_clicks(before, gts, clicks, order)
        for ind, label in enumerate(labels):
            kind = order[ind][-1]
            if kind is None:  # the object was perfect: no click
                continue
            truth, prev, new = gts == label, before == label, after == label
            wrong = prev != truth
            components = cc3d.connected_components(wrong, connectivity=26)
            click = tuple(int(c) for c in clicks[ind][kind][-1])
            component = components == components[click]
            now_right = new == truth
            missed = component & truth
            held = missed & (before > 0)  # missed: not the object's, so another's where labelled
            out.append(
                ClickAnswer(
                    kind=kind,
                    component=int(component.sum()),
                    fixed=int((component & now_right).sum()),
                    broken_elsewhere=int((~wrong & ~now_right).sum()),
                    mended_elsewhere=int((wrong & now_right & ~component).sum()),
                    dice_before=dice(truth, prev),
                    dice_after=dice(truth, new),
                    missed=int(missed.sum()),
                    held=int(held.sum()),
                    taken=int((held & new).sum()),
                )
            )
    return out


def run_answers(segs_dir: Path, gts_dir: Path) -> list[ClickAnswer]:
    """The answers of every case saved with its steps in segs_dir."""
    out = []
    for saved, gts in saved_cases(segs_dir, gts_dir):
        if "all_segs" in saved.files:
            out += answers_of_case(saved["all_segs"], gts)
    return out


def report_lines(answers: list[ClickAnswer]) -> list[str]:
    """The printed figures, per click kind."""
    lines = []
    for kind, name in (("fg", "foreground"), ("bg", "background")):
        of_kind = [a for a in answers if a.kind == kind]
        if not of_kind:
            continue
        share = np.array([a.fixed_share for a in of_kind])
        fixed = sum(a.fixed for a in of_kind)
        before, after = (np.mean([a.dice_before for a in of_kind]), np.mean([a.dice_after for a in of_kind]))
        lines.append(
            f"{name} clicks: {len(of_kind)}; object DSC {before:.3f} -> {after:.3f}; share of the "
            f"clicked error fixed: mean {share.mean():.3f}, median {np.median(share):.3f}, under half "
            f"{np.mean(share < 0.5):.0%} of clicks"
        )
        lines.append(
            f"  voxels: fixed in the clicked error {fixed}, turned wrong elsewhere "
            f"{sum(a.broken_elsewhere for a in of_kind)}, turned right elsewhere "
            f"{sum(a.mended_elsewhere for a in of_kind)}"
        )
        missed, held, taken = (sum(getattr(a, f) for a in of_kind) for f in ("missed", "held", "taken"))
        if held:
            lines.append(
                f"  missed voxels in the clicked errors {missed}, held by another object {held} "
                f"({held / missed:.0%}), of those taken by the answer {taken} ({taken / held:.0%})"
            )
        for span, band in by_size([(a.component, a.fixed_share) for a in of_kind], COMPONENT_BANDS):
            mean = np.mean(band)
            lines.append(f"  error of {span:>12} voxels: {len(band):4d} clicks, mean share fixed {mean:.3f}")
    return lines or ["no saved steps with clicks (run_local saves them unless --no-save-segs)"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a run_local output folder (segs/ with all_segs)")
    ap.add_argument("--gts", type=Path, help="ground-truth folder (default: RUN/../cases/gts)")
    args = ap.parse_args(argv)
    for line in report_lines(run_answers(args.run / "segs", args.gts or args.run.parent / "cases" / "gts")):
        print(line)


if __name__ == "__main__":
    main()
