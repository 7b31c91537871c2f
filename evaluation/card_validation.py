"""Write the card extras of a new run (configs/card_extra_<run>.json) from the runs that judged it.

    python -m evaluation.card_validation --run cpu11 --val /tmp/val_cpu11 --sweep /tmp/co_cpu11 \
        --previous configs/card_extra_cpu10.json [--previous-val /tmp/val_cpu10 \
        --previous-sweep /tmp/co_cpu10] --training-command "..." --hardware "..."

Every figure on a weights card comes from a command of this repo: the full-protocol validation
(`evaluation.validate_split`, folder --val), the clicks-only sweep (`evaluation.run_local
--clicks-only`, folder --sweep), `evaluation.click_gain` and `evaluation.compare_runs` against
the previous shipped run: its scored folders where this machine still has them, else the per-case
figures its card holds (both protocols; they reproduce on other CPUs, docs/validation.md), so a
fresh machine ships without scoring the old weights again. What does not change from run to run
(training data, held-out cases, licence, protocol and inference, the box-prism floor) is carried
over from the previous run's card extras (a run shipped with a new inference setting names it
with `--inference` and `--inference-text`), and the sweep keeps every earlier run's means, so the
card reads as a history. Run this before `model.training.export --card-extra`, while `weights/`
still holds the previous run (its card gives the previous sample total).
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation.click_gain import report_lines
from evaluation.compare_runs import compare_metrics, metrics_csv, read_run
from evaluation.validate_split import COLUMNS, read_metrics
from model.config import CARD_FILE, ModelCard

TOL = 0.005  # a case counts as better/worse beyond this (compare_runs' default)
SWEEP_COLUMNS = COLUMNS[1:]  # a clicks-only run has no box step: its DSC_1 is 0 everywhere
Rows = dict[str, dict[str, float]]  # CaseName -> metric -> value, as read_metrics returns


def run_name(card_extra: Path) -> str:
    """cpu10 from configs/card_extra_cpu10.json."""
    return card_extra.stem.removeprefix("card_extra_")


def rounded(values: dict[str, float]) -> dict[str, float]:
    return {k: round(float(v), 4) for k, v in values.items()}


def sweep_means(rows: Rows) -> dict[str, float]:
    """Means of the sweep's metrics over its cases."""
    return {c: round(float(np.mean([r[c] for r in rows.values()])), 4) for c in SWEEP_COLUMNS}


def better_worse(base: Rows, new: Rows, columns: tuple[str, ...]) -> str:
    """`DSC_AUC 14 better / 11 worse (median +0.005), NSD_AUC 15/12, ...` of new against base."""
    changes = {m.metric: m for m in compare_metrics(base, new, TOL)}
    first, *rest = columns
    m = changes[first]
    parts = [f"{first} {m.better} better / {m.worse} worse (median {m.median_change:+.3f})"]
    parts += [f"{c} {changes[c].better}/{changes[c].worse}" for c in rest]
    return ", ".join(parts) + f" (better/worse by more than {TOL})"


@dataclass(frozen=True)
class Previous:
    """The shipped run the new one is judged against: its card extras, name, per-case figures
    (boxed validation and clicks-only sweep), what compare_runs names as its base, samples."""

    extras: dict
    name: str
    val: Rows
    sweep: Rows
    base: str  # its validation's model/ folder, or its weights folder (the card's figures)
    samples: int

    @classmethod
    def scored(cls, extras: dict, name: str, val: Path, sweep: Path, samples: int) -> Previous:
        """From the folders that scored it on this machine."""
        rows = (read_metrics(metrics_csv(p)) for p in (val / "model", sweep))
        return cls(extras, name, *rows, str(val / "model"), samples)

    @classmethod
    def from_card(cls, extras: dict, name: str, weights: Path, samples: int) -> Previous:
        """From the per-case figures of its weights card (a machine without its folders)."""
        return cls(
            extras, name, read_run(weights), read_run(weights, clicks_only=True), str(weights), samples
        )


@dataclass(frozen=True)
class Inference:
    """A new inference setting the run ships with: export's `--inference` JSON and its text."""

    json: str
    text: str


def card_extras(
    run: str,
    val: Path,
    sweep: Path,
    prev: Previous,
    shared_cases: set[str],
    training_command: str,
    hardware: str,
    inference: Inference | None = None,
    val_command: str | None = None,
) -> dict:
    """The card extras of `run`, as `model.training.export --card-extra` merges them; the
    previous run's inference unless `inference` is given; `val_command` is what scored `val`
    (default: the previous card's command with its --out replaced by `val`)."""
    validation = json.loads((val / "validation.json").read_text())
    old = prev.extras["validation_full_protocol"]
    per_case = {name: rounded(v) for name, v in validation["per_case"].items()}
    on_shared = [v for name, v in per_case.items() if name in shared_cases]
    shared_means = (
        {  # the bundled cases: the ones a newcomer's first run scores
            f"model_mean_on_shared_data_cases_{len(on_shared)}": {
                c: round(float(np.mean([v[c] for v in on_shared])), 4) for c in COLUMNS
            }
        }
        if on_shared
        else {}
    )
    samples = f"{prev.samples:,}".replace(",", " ")
    old_sweep = old["clicks_only_sweep"]
    earlier = {k: v for k, v in old_sweep.items() if k.startswith("previous_weights_")}
    # the same run shipped again with a new inference setting: its earlier means keep their key,
    # the card's last ones get the next free one
    key, n = f"previous_weights_{prev.name}", 2
    while key in earlier:
        key, n = f"previous_weights_{prev.name}_{n}", n + 1
    sweep_rows = read_metrics(metrics_csv(sweep))
    sweep_block = {
        "what": old_sweep["what"],
        "these_weights": sweep_means(sweep_rows),
        key: old_sweep["these_weights"],
        **earlier,
        f"cases_better_worse_vs_{prev.name}": better_worse(prev.sweep, sweep_rows, SWEEP_COLUMNS),
        "per_case": {n: rounded({c: v[c] for c in SWEEP_COLUMNS}) for n, v in sweep_rows.items()},
    }
    block = {
        "command": val_command or re.sub(r"--out \S+", lambda _: f"--out {val}", old["command"]),
        "protocol": old["protocol"],
        "inference": inference.text if inference else old["inference"],
        "n_cases": validation["n_cases"],
        "model_mean": rounded(validation["model_mean"]),
        **shared_means,
        "click_gain": f"python -m evaluation.click_gain {val}/model: "
        + "; ".join(report_lines(val / "model")),
        "previous_weights": f"run {prev.name} ({samples} samples in all), "
        + (f"its own inference ({old['inference']})" if inference else "the same inference"),
        "previous_weights_mean": old["model_mean"],
        "cases_better_worse_vs_previous": better_worse(
            prev.val, read_metrics(metrics_csv(val / "model")), COLUMNS[1:] + COLUMNS[:1]
        ),
        "compare_command": f"python -m evaluation.compare_runs {prev.base} {val}/model",
        "box_prism_mean": old["box_prism_mean"],
        "clicks_only_sweep": sweep_block,
        "per_case": per_case,
    }
    export = prev.extras["export_command"]
    export = export.replace(f"runs/{prev.name}/", f"runs/{run}/")
    export = export.replace(f"card_extra_{prev.name}.json", f"card_extra_{run}.json")
    if inference:
        export = re.sub(r"--inference '[^']*'", lambda _: f"--inference '{inference.json}'", export)
    carried = {
        k: v
        for k, v in prev.extras.items()
        if k not in ("validation_full_protocol", "training_command", "hardware", "export_command")
    }
    return {
        "training_command": training_command,
        "export_command": export,
        "hardware": hardware,
        **carried,
        "validation_full_protocol": block,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="the new run's name, e.g. cpu11 (runs/cpu11)")
    ap.add_argument("--val", type=Path, required=True, help="its validate_split folder")
    ap.add_argument("--sweep", type=Path, required=True, help="its clicks-only run_local folder")
    ap.add_argument("--previous", type=Path, required=True, help="the shipped run's card extras")
    ap.add_argument(
        "--previous-val", type=Path, help="the shipped run's validate_split folder (default: its card's)"
    )
    ap.add_argument(
        "--previous-sweep", type=Path, help="the shipped run's sweep folder (default: its card's)"
    )
    ap.add_argument("--previous-weights", type=Path, default=Path("weights"), help="the shipped weights")
    ap.add_argument("--shared-gts", type=Path, default=Path("../shared/data/cases/gts"),
                    help="the bundled cases, whose means get a line of their own")  # fmt: skip
    ap.add_argument("--training-command", required=True, help="the command and the run's story")
    ap.add_argument("--hardware", required=True, help="what trained it, and what ran beside it")
    ap.add_argument(
        "--val-command", help="the command that scored --val (default: the previous card's, with its --out)"
    )
    ap.add_argument("--inference", help="export's --inference JSON, where it differs from the previous run's")
    ap.add_argument("--inference-text", help="what that inference does, in words (with --inference)")
    ap.add_argument("--out", type=Path, help="default: configs/card_extra_<run>.json")
    args = ap.parse_args(argv)
    if (args.inference is None) != (args.inference_text is None):
        ap.error("--inference and --inference-text go together")
    if (args.previous_val is None) != (args.previous_sweep is None):
        ap.error("--previous-val and --previous-sweep go together (without both: the shipped card's figures)")
    if args.inference is not None:
        json.loads(args.inference)  # refuse a typo here, not at export
    card = ModelCard.load(args.previous_weights / CARD_FILE).card
    old = (json.loads(args.previous.read_text()), run_name(args.previous))
    samples = int(card["training_totals"]["samples"])
    prev = (
        Previous.from_card(*old, args.previous_weights, samples)
        if args.previous_val is None
        else Previous.scored(*old, args.previous_val, args.previous_sweep, samples)
    )
    extras = card_extras(
        args.run,
        args.val,
        args.sweep,
        prev,
        {p.name for p in args.shared_gts.glob("*.npz")},
        args.training_command,
        args.hardware,
        Inference(args.inference, args.inference_text) if args.inference else None,
        args.val_command,
    )
    out = args.out or Path("configs") / f"card_extra_{args.run}.json"
    out.write_text(json.dumps(extras, indent=2) + "\n")
    v = extras["validation_full_protocol"]
    print(
        f"wrote {out}: full protocol {v['model_mean']}; clicks-only {v['clicks_only_sweep']['these_weights']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
