"""Compare two scored runs case by case: is a change better on most cases, or on a few?

    python -m evaluation.compare_runs BASE NEW [--tol 0.005] [--top 5] [--clicks-only]

BASE and NEW are run_local output folders (their `metrics.csv`) or the CSV files themselves,
for example the `model/` folders of two `evaluation.validate_split` runs, or a weights folder (or
its `model.json`): the card's `validation_full_protocol.per_case`, the boxed held-out figures its
run was shipped on, or with `--clicks-only` its `clicks_only_sweep.per_case`, the same cases
played without boxes. The validation reproduced the boxed ones to 1e-4 on another CPU (all 29
cases, an AMD EPYC against the Xeon that made the card) and the sweep the clicks-only means to the
digit on a third, so a fresh machine compares a candidate with the shipped weights without
scoring them again. Means move with one
large case; a new checkpoint or inference setting is shipped on the means *and* on how many
cases it helps, so this prints, on the cases both runs scored: each metric's mean in both runs,
how many cases are better and worse by more than `--tol`, the median change, and the cases that
moved most in DSC_AUC. These are the better/worse counts docs/validation.md and the weights card quote.

It also prints each mean change's standard error (the case-by-case differences' standard
deviation over the square root of their number: the two runs score the same cases, so the
comparison is paired). A change within two of them is level: on the 29 held-out cases the
per-case DSC_AUC differences between runs of one lineage spread with a standard deviation of
0.05-0.14, which makes a mean change of 0.02-0.05 noise. And the shipped weights were picked as
the best of many runs on these same cases, so their figures here are a little above what they
would score on new ones: a candidate must clear that too (docs/validation.md, "How noisy the
29-case comparison is").

A boxed run against a clicks-only one (a sweep has DSC_1 0 everywhere) is refused: every figure
would differ by the protocol, and a card as base needs `--clicks-only` to stand for its sweep.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation.validate_split import COLUMNS, read_metrics
from model.config import CARD_FILE


@dataclass(frozen=True)
class MetricChange:
    """One metric over the shared cases: both means, the cases better/worse, the median change
    and the mean change's paired standard error (0 for a single case)."""

    metric: str
    base_mean: float
    new_mean: float
    better: int
    worse: int
    median_change: float
    se: float


def metrics_csv(path: Path) -> Path:
    """The metrics.csv of a run folder, or the path itself when it names a file."""
    return path / "metrics.csv" if path.is_dir() else path


def read_run(path: Path, clicks_only: bool = False) -> dict[str, dict[str, float]]:
    """CaseName -> COLUMNS of a scored run: a run folder, a metrics.csv, or a weights card (its
    boxed validation, or with `clicks_only` its clicks-only sweep, whose DSC_1 is 0 as in a
    sweep's metrics.csv: it has no box step)."""
    card = path / CARD_FILE if path.is_dir() and not (path / "metrics.csv").exists() else path
    if card.suffix != ".json":
        return read_metrics(metrics_csv(path))
    block = json.loads(card.read_text()).get("validation_full_protocol", {})
    key = "validation_full_protocol." + ("clicks_only_sweep.per_case" if clicks_only else "per_case")
    per_case = (block.get("clicks_only_sweep", {}) if clicks_only else block).get("per_case")
    if not per_case:
        raise SystemExit(f"compare_runs: {card} has no {key}")
    return {
        name: {c: 0.0 if clicks_only and c == "DSC_1" else float(v[c]) for c in COLUMNS}
        for name, v in per_case.items()
    }


def protocol_of(run: dict[str, dict[str, float]]) -> str:
    """'clicks-only' when no case has a box step (DSC_1 0 everywhere, as a sweep writes it), else
    'boxed' (a boxed validation may hold a few click starts, cases without boxes)."""
    return "clicks-only" if all(v["DSC_1"] == 0.0 for v in run.values()) else "boxed"


def compare_metrics(
    base: dict[str, dict[str, float]], new: dict[str, dict[str, float]], tol: float
) -> list[MetricChange]:
    """Per metric of COLUMNS, over the cases present in both runs."""
    names = sorted(set(base) & set(new))
    if not names:
        raise ValueError("the two runs share no case")
    out = []
    for c in COLUMNS:
        b = np.array([base[n][c] for n in names])
        d = np.array([new[n][c] for n in names]) - b
        se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
        out.append(
            MetricChange(c, float(b.mean()), float(b.mean() + d.mean()), int((d > tol).sum()),
                         int((d < -tol).sum()), float(np.median(d)), se)
        )  # fmt: skip
    return out


def largest_changes(
    base: dict[str, dict[str, float]], new: dict[str, dict[str, float]], metric: str, top: int
) -> list[tuple[str, float]]:
    """The `top` cases with the largest gains and the `top` with the largest losses in `metric`."""
    d = sorted(((new[n][metric] - base[n][metric], n) for n in set(base) & set(new)), reverse=True)
    picked = d[:top] + [x for x in d[-top:] if x not in d[:top]]
    return [(n, v) for v, n in picked]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "base", type=Path, help="the run to compare against (folder, metrics.csv, or a weights folder/card)"
    )
    ap.add_argument("new", type=Path, help="the candidate run (folder or metrics.csv)")
    ap.add_argument("--tol", type=float, default=0.005, help="a case counts as better/worse beyond this")
    ap.add_argument("--top", type=int, default=5, help="cases listed at each end, by DSC_AUC change")
    ap.add_argument(
        "--clicks-only",
        action="store_true",
        help="a weights folder/card as base stands for its clicks-only sweep, not its boxed validation",
    )
    args = ap.parse_args(argv)
    base, new = read_run(args.base, args.clicks_only), read_run(args.new)
    kinds = protocol_of(base), protocol_of(new)
    if kinds[0] != kinds[1]:  # every area would differ by the protocol, not by the model
        hint = " (a weights card as base: add --clicks-only)" if kinds[1] == "clicks-only" else ""
        raise SystemExit(f"compare_runs: the base is a {kinds[0]} run and the new one {kinds[1]}{hint}")
    shared = set(base) & set(new)
    only = sorted((set(base) | set(new)) - shared)
    print(f"{len(shared)} cases in both runs" + (f"; left out (in one run only): {only}" if only else ""))
    print(
        f"{'metric':<10} {'base':>7} {'new':>7} {'change':>8} {'se':>6} "
        f"{'better':>6} {'worse':>6} {'median':>8}"
    )
    for m in compare_metrics(base, new, args.tol):
        print(
            f"{m.metric:<10} {m.base_mean:7.3f} {m.new_mean:7.3f} {m.new_mean - m.base_mean:+8.3f} "
            f"{m.se:6.3f} {m.better:6d} {m.worse:6d} {m.median_change:+8.3f}"
        )
    print("se: the mean change's paired standard error; a change within two of them is level")
    print("largest DSC_AUC changes:")
    for name, change in largest_changes(base, new, "DSC_AUC", args.top):
        print(f"  {name:<45} {change:+.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
