"""Validate a checkpoint on the held-out cases, against the box-prism floor, with the full protocol.

    python -m evaluation.validate_split --out eval_out/val \
        --split-root ../shared/data/extra --split configs/split.json \
        --heldout-root ../shared/data/cases [--weights weights] [--no-baseline] [--jobs N]

Each root is a validation-layout folder (`imgs/` + `gts/`). From a split root only the cases named
by the split file are used (the ones training never saw); a held-out root is used whole. The
cases are linked (never copied) into OUT/cases/{imgs,gts}, then `evaluation.run_local` scores
our `predict.sh` (OUT/model) and the box-prism baseline (OUT/box_prism) the organisers' way.
OUT/validation.md and OUT/validation.json hold the per-case comparison (DSC_1, DSC_AUC,
DSC_Final, NSD_Final) and the means, ready for the weights card. `--jobs N` is run_local's: the
cases shared out among N worker processes (docs/evaluation.md, "Jobs").
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from model.training.data import empty_roots

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ("DSC_1", "DSC_AUC", "NSD_AUC", "DSC_Final", "NSD_Final")


def check_roots(split_roots: list[Path], heldout_roots: list[Path]) -> None:
    """Exit with one line when a root holds no imgs/*.npz + gts/ (e.g. a clone without ../shared/data):
    otherwise nothing is linked and run_local fails later with a traceback that hides why."""
    roots = [("--split-root", r) for r in split_roots] + [("--heldout-root", r) for r in heldout_roots]
    if not roots:
        raise SystemExit("validate_split: give at least one --split-root or --heldout-root")
    bad = []
    for flag, root in roots:
        if not root.is_dir():
            problems = ["missing"]
        else:
            problems = [f"imgs/ {why}" for _, why in empty_roots([root / "imgs"])]
            problems += [] if (root / "gts").is_dir() else ["gts/ missing"]
        if problems:
            bad.append(f"{flag} {root} ({', '.join(problems)})")
    if bad:
        raise SystemExit(
            f"validate_split: no cases in {'; '.join(bad)}. Each root must hold imgs/<case>.npz and "
            "gts/<case>.npz (the validation layout, as evaluation.make_cases writes it); the README's "
            "command uses this project's ../shared/data/extra and ../shared/data/cases (README, 'Data')"
        )


def link_cases(out: Path, split_roots: list[Path], split_file: Path | None, heldout_roots: list[Path]) -> int:
    """Symlink the held-out cases into out/imgs and out/gts; returns how many."""
    keys = json.loads(split_file.read_text())["val_substrings"] if split_file else []
    for sub in ("imgs", "gts"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    chosen = [
        (r, f.name)
        for r in split_roots
        for f in sorted((r / "imgs").glob("*.npz"))
        if any(k in f.name for k in keys)
    ]
    chosen += [(r, f.name) for r in heldout_roots for f in sorted((r / "imgs").glob("*.npz"))]
    for root, name in chosen:
        for sub in ("imgs", "gts"):
            dst = out / sub / name
            if dst.is_symlink() or dst.exists():
                dst.unlink()
            os.symlink((root / sub / name).resolve(), dst)
    return len(chosen)


def read_metrics(path: Path) -> dict[str, dict[str, float]]:
    """CaseName -> the columns of interest from a run_local metrics.csv."""
    with path.open() as f:
        return {row["CaseName"]: {c: float(row[c]) for c in COLUMNS} for row in csv.DictReader(f)}


def compare(model: dict, baseline: dict | None) -> tuple[str, dict]:
    """Markdown table and JSON of per-case figures and means (model, then the baseline)."""
    names = sorted(model)
    head = (
        "| case | "
        + " | ".join(COLUMNS)
        + (" | prism " + " | prism ".join(COLUMNS) if baseline else "")
        + " |"
    )
    lines = [head, "|---" * (1 + len(COLUMNS) * (2 if baseline else 1)) + "|"]

    def fmt(row: dict) -> str:
        return " | ".join(f"{row[c]:.3f}" for c in COLUMNS)

    for n in names:
        lines.append(
            f"| {n.removesuffix('.npz')} | {fmt(model[n])}"
            + (f" | {fmt(baseline[n])}" if baseline else "")
            + " |"
        )
    mean = {c: sum(model[n][c] for n in names) / len(names) for c in COLUMNS}
    out = {"n_cases": len(names), "model_mean": mean, "per_case": model}
    row = f"| **mean ({len(names)})** | {fmt(mean)}"
    if baseline:
        bmean = {c: sum(baseline[n][c] for n in names) / len(names) for c in COLUMNS}
        out["box_prism_mean"] = bmean
        row += f" | {fmt(bmean)}"
    lines.append(row + " |")
    return "\n".join(lines) + "\n", out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument(
        "--split-root", type=Path, action="append", default=[], help="imgs/+gts/ root filtered by --split"
    )
    ap.add_argument("--split", type=Path, default=REPO / "configs" / "split.json")
    ap.add_argument(
        "--heldout-root", type=Path, action="append", default=[], help="imgs/+gts/ root used whole"
    )
    ap.add_argument("--weights", type=Path, default=None, help="WEIGHTS_DIR for our predict.sh")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--jobs", type=int, default=1, help="run_local's --jobs: worker processes")
    args = ap.parse_args(argv)

    check_roots(args.split_root, args.heldout_root)
    cases = args.out / "cases"
    n = link_cases(cases, args.split_root, args.split, args.heldout_root)
    if n == 0:
        raise SystemExit(f"validate_split: no case of the roots matches the split file {args.split}")
    print(f"{n} held-out cases linked into {cases}")
    env = dict(os.environ)
    if args.weights:
        env["WEIGHTS_DIR"] = str(args.weights.resolve())
    runs = [("model", REPO)] + (
        [] if args.no_baseline else [("box_prism", REPO / "evaluation/baselines/box_prism")]
    )
    for name, submission in runs:
        cmd = [
            sys.executable,
            "-m",
            "evaluation.run_local",
            str(cases / "imgs"),
            str(cases / "gts"),
            str(args.out / name),
            "--submission",
            str(submission),
            "--no-progress",
            "--no-floor",  # the box prism is scored here as a run of its own (OUT/box_prism)
            "--jobs",
            str(args.jobs),
        ]
        if name != "model":
            cmd.append("--no-plots")
        if subprocess.run(cmd, cwd=REPO, env=env).returncode != 0:
            raise SystemExit(f"validate_split: the {name} run failed (its messages are above)")
    model = read_metrics(args.out / "model" / "metrics.csv")
    baseline = None if args.no_baseline else read_metrics(args.out / "box_prism" / "metrics.csv")
    table, data = compare(model, baseline)
    (args.out / "validation.md").write_text(table)
    (args.out / "validation.json").write_text(json.dumps(data, indent=2) + "\n")
    print(table)
    print(f"written: {args.out / 'validation.md'}, {args.out / 'validation.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
