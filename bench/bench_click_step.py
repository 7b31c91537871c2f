"""What the click-step extras cost: the local pass and the click grow, per case, warm process.

Run: ``python -m bench.bench_click_step [--cases DIR] [--weights DIR] [--repeat 3]``.

bench_step measures cold box steps; the extras of a click step (the local pass around each
class's newest click, `local_fraction`; the classical grow at every click, `grow_radius_mm`,
and its contrast gate, `grow_leak_limit`) run only from click 1 on, and with `refine_locally`
the local view is a class's only pass. Per case of ``--cases`` (default
../shared/data/cases/imgs, with ground truth in ``../gts``; read in place): the box step is
predicted once (a clicks-only case starts from an empty mask, built under ``--out`` as
bench_step builds it), the evaluator's click 1 is placed on its errors, and that click step is
predicted under each variant in one process with the weights loaded once, the median of
``--repeat`` runs. Prints a markdown table of seconds per step and the extras'
cost over the plain step. A script, not a test: it never fails on slowness.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.bench_step import click_step_input
from model.case_io import read_case
from model.click_sim import simulate_clicks
from model.predictor import Predictor

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CASES = REPO.parent / "shared" / "data" / "cases" / "imgs"
OFF = {"refine_locally": False}
GROW = {"grow_radius_mm": 15.0, "grow_leak_limit": 1.0}
GATED = {"grow_radius_mm": 15.0, "grow_leak_limit": 0.5, "grow_shell_mm": 3.0}
EDIT = {"refine_locally": True, "local_fraction": 0.4}
VARIANTS = {  # name: config changes over the weights' own
    "plain": {**OFF, "local_fraction": 0.0, "grow_radius_mm": 0.0},
    "local 0.4": {**OFF, "local_fraction": 0.4, "grow_radius_mm": 0.0},
    "local 0.4 + grow 15 mm": {**OFF, "local_fraction": 0.4, **GROW},
    "local edit 0.4 + grow 15 mm": {**EDIT, **GROW},
    "local edit 0.4 + gated grow": {**EDIT, **GATED},
}


def click1_case(path: Path, predictor: Predictor, work: Path):  # noqa: ANN201 - a model.case_io.Case
    """The case at click 1: the box step's answer as prev_pred, one evaluator click per class
    (a clicks-only case: its first step, as bench_step builds it, from an empty mask)."""
    first = click_step_input(path, work)
    if first is not None:
        return read_case(first)
    case = read_case(path)
    gts = np.load(path.parent.parent / "gts" / path.name, allow_pickle=True)["gts"]
    prev = predictor.predict_case(case).segs
    clicks, order = simulate_clicks(prev, gts, None, None)
    clicks = [{k: [tuple(int(v) for v in p) for p in e.get(k, [])] for k in ("fg", "bg")} for e in clicks]
    return replace(case, clicks=clicks, clicks_order=order, prev_pred=prev)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=Path, default=DEFAULT_CASES)
    ap.add_argument("--weights", type=Path, default=REPO / "weights")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("bench_out"), help="where clicks-only inputs are built")
    args = ap.parse_args(argv)
    paths = sorted(p for p in args.cases.glob("*.npz") if (p.parent.parent / "gts" / p.name).exists())
    if not paths:
        raise SystemExit(f"bench_click_step: no case with ground truth in {args.cases} (../gts/<name>)")
    base = Predictor.from_weights(args.weights)
    print(f"device {base.device}; median of {args.repeat} warm click-1 steps per variant (seconds)\n")
    names = list(VARIANTS)
    print("| case | classes | " + " | ".join(names) + " | local pass | grow | gated grow |")
    print("|---|---|" + "---|" * (len(names) + 3))
    for path in paths:
        case = click1_case(path, base, args.out)
        row = {}
        phases = {}
        for name, changes in VARIANTS.items():
            pred = base.with_config(**changes)
            runs = []
            for _ in range(args.repeat):
                t0 = time.monotonic()
                result = pred.predict_case(case)
                runs.append(time.monotonic() - t0)
            row[name] = statistics.median(runs)
            phases[name] = result.timings
        local = row["local 0.4"] - row["plain"]
        grow = phases["local edit 0.4 + grow 15 mm"]["grow"]
        gated = phases["local edit 0.4 + gated grow"]["grow"]
        cells = " | ".join(f"{row[n]:.2f}" for n in names)
        print(f"| {path.stem} | {case.n_classes} | {cells} | {local:+.2f} | {grow:.3f} | {gated:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
