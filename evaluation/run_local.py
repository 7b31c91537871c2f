"""Local evaluation of a submission folder, the organisers' way (see docs/evaluation.md).

Usage (``bash evaluation/run_local.sh`` passes its arguments here)::

    python -m evaluation.run_local                         # demo cases -> ./eval_out
    python -m evaluation.run_local IMGS_DIR GTS_DIR [OUT_DIR]   # validation layout
    python -m evaluation.run_local DIR [OUT_DIR]           # DIR/imgs + DIR/gts
    python -m evaluation.run_local TRAIN_DIR [- OUT_DIR]   # training files (gts inside)
    ... [--submission DIR] [--step-timeout S] [--cases GLOB] [--limit N] [--no-plots] [--no-floor]
    ... [--in-process [--weights DIR] [--device cpu|cuda]] [--time-scale K] [--jobs N]

Each step is a fresh ``sh predict.sh`` process, as the organisers run it. ``--in-process`` runs
every step through this repository's model in one process instead (weights loaded once, see
evaluation/in_process.py): the same scores, faster, but not the organisers' timing.
``--jobs N`` shares the cases out among N worker processes (round-robin in name order), each step
given the machine's cores divided by N as threads (``OMP_NUM_THREADS`` where it is set): on a
multi-core CPU the run takes about 1/N of the time, and the joined report is the one a single
process writes. Each case still runs its steps in order, one at a time.

The box-prism floor (evaluation/baselines/box_prism: the box painted, a ball per click) is scored
on the same cases into OUT_DIR/floor and printed beside the submission (OUT_DIR/summary_vs_floor.csv),
so the run shows what the model adds; ``--no-floor`` skips it.

Training-layout files (``gts`` inside the image file) are split first into OUT_DIR/split/imgs
and OUT_DIR/split/gts (labels relabelled sequentially, boxes by the organisers' rule unless
``--no-boxes`` or Microscopy), so ``gts`` never reaches predict.sh.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import functools
import multiprocessing
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation import report
from evaluation.protocol import (
    N_STEPS,
    CaseResult,
    StepResult,
    StepRunner,
    load_npz,
    prepare_run_dirs,
    run_case,
    run_predict,
)
from infer import time_scale_arg

REPO_ROOT = Path(__file__).resolve().parents[1]
FLOOR = REPO_ROOT / "evaluation" / "baselines" / "box_prism"
DEFAULT_OUT = Path("eval_out")


def split_training_files(files: list[Path], out_dir: Path, make_boxes: bool = True, seed: int = 2025) -> Path:
    """Training-layout files -> out_dir/imgs (no gts) + out_dir/gts; returns out_dir."""
    from evaluation.demo_cases import challenge_boxes
    from model.boxes import relabel_sequential

    rng = np.random.default_rng(seed)
    (out_dir / "imgs").mkdir(parents=True, exist_ok=True)
    (out_dir / "gts").mkdir(parents=True, exist_ok=True)
    for path in files:
        data = load_npz(path)
        gts = relabel_sequential(data["gts"])
        img = {"imgs": data["imgs"], "spacing": data["spacing"]}
        boxes = data.get("boxes")
        if boxes is None and make_boxes and "microscopy" not in path.name.lower() and gts.max() > 0:
            boxes = challenge_boxes(gts, rng)
        if boxes is not None:
            img["boxes"] = boxes
        np.savez_compressed(out_dir / "imgs" / path.name, **img)
        gt = {"gts": gts, "spacing": data["spacing"]}
        if boxes is not None:
            gt["boxes"] = boxes
        np.savez_compressed(out_dir / "gts" / path.name, **gt)
    return out_dir


def _has_key(path: Path, key: str) -> bool:
    with np.load(path, allow_pickle=True) as f:
        return key in f.files


def resolve_inputs(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    """(imgs_dir, gts_dir, out_dir) from the positional arguments; demo cases when none."""
    pos = list(args.paths)
    if len(pos) > 3:
        raise SystemExit("at most 3 positional arguments: IMGS_DIR GTS_DIR OUT_DIR")
    out_dir = Path(pos[2]) if len(pos) == 3 else (args.out or DEFAULT_OUT)
    if not pos:
        from evaluation.demo_cases import make_demo_cases

        demo = out_dir / "demo"
        names = make_demo_cases(demo, n=args.demo_n, seed=args.seed)
        print(f"generated {len(names)} demo cases in {demo}/imgs and {demo}/gts")
        return demo / "imgs", demo / "gts", out_dir
    imgs_dir = Path(pos[0])
    gts_arg = pos[1] if len(pos) >= 2 else None
    if len(pos) <= 2 and (imgs_dir / "imgs").is_dir() and (imgs_dir / "gts").is_dir():
        # DIR holding imgs/ and gts/; a second argument is then the OUT_DIR
        return imgs_dir / "imgs", imgs_dir / "gts", Path(gts_arg) if gts_arg not in (None, "-") else out_dir
    if not imgs_dir.is_dir():
        raise SystemExit(f"no such folder: {imgs_dir}")
    gts_dir = None if gts_arg in (None, "-") else Path(gts_arg)
    files = sorted(p for p in imgs_dir.iterdir() if p.suffix == ".npz")
    if not files:
        raise SystemExit(f"no .npz files in {imgs_dir}")
    with_gts = [p for p in files if _has_key(p, "gts")]
    if with_gts:
        # training layout (or images that carry gts): split so that gts never reaches predict.sh
        split = split_training_files(files, out_dir / "split", make_boxes=not args.no_boxes, seed=args.seed)
        print(f"split {len(files)} files with gts inside into {split}/imgs and {split}/gts")
        if gts_dir is None or not gts_dir.is_dir():
            return split / "imgs", split / "gts", out_dir
        return split / "imgs", gts_dir, out_dir
    if gts_dir is None or not gts_dir.is_dir():
        raise SystemExit(f"{imgs_dir} holds no gts: give the GTS_DIR as the second argument")
    return imgs_dir, gts_dir, out_dir


@dataclass(frozen=True)
class Runner:
    """How a case's steps run: a fresh ``predict.sh`` per step (the default) or this repository's
    model in this process. Data, not a runner, so that each worker of ``--jobs`` builds its own
    (a loaded model does not cross processes)."""

    in_process: bool = False
    weights: Path | None = None
    device: str | None = None
    time_scale: float | None = None  # infer.py's factor on the time allowance
    threads: int | None = None  # threads a step may use (--jobs shares the cores out)

    def build(self) -> StepRunner | None:
        """The step runner for evaluate(); None is protocol.run_predict with this environment."""
        if self.in_process:
            from evaluation.in_process import InProcessStep

            if self.threads:
                import torch

                torch.set_num_threads(self.threads)
            return InProcessStep(self.weights, self.device, self.time_scale or 1.0)
        env = {}
        if self.time_scale is not None:  # predict.sh's steps get it through infer.py's variable
            env["SEGFM_TIME_SCALE"] = repr(self.time_scale)
        if self.threads:
            env["OMP_NUM_THREADS"] = str(self.threads)
        return functools.partial(run_predict, extra_env=env) if env else None


def case_names(imgs_dir: Path, cases: str | None = None, limit: int | None = None) -> list[str]:
    """The case files of imgs_dir that a run scores, in name order."""
    names = sorted(p.name for p in Path(imgs_dir).iterdir() if p.suffix == ".npz")
    if cases:
        names = [n for n in names if fnmatch.fnmatch(n, cases)]
    return names[:limit] if limit else names


def _failed_case(name: str, gts_file: Path, spacing, error: str) -> CaseResult:
    num_class = 0
    try:
        gts = load_npz(gts_file)["gts"]
        num_class = int((np.unique(gts) != 0).sum())
    except Exception:  # missing or unreadable gts: the error says so
        pass
    r = CaseResult(name=name, num_class=num_class, has_boxes=False, spacing=np.asarray(spacing), error=error)
    r.steps = [StepResult(step=i + 1) for i in range(N_STEPS)]
    return r


def evaluate(
    imgs_dir: Path,
    gts_dir: Path,
    out_dir: Path,
    submission: Path,
    step_timeout: float | None = None,
    cases: str | None = None,
    limit: int | None = None,
    plots: bool = True,
    save_segs: bool = True,
    progress: bool = True,
    desc: str = "evaluating",
    step_runner: StepRunner | None = None,
    drop_boxes: bool = False,
    shard: tuple[int, int] | None = None,
) -> list[CaseResult]:
    """Run every case of imgs_dir through the protocol and write the report into out_dir
    (drop_boxes: every case starts from clicks, see protocol.run_case). shard (k, n): only every
    n-th case from the k-th, in a run folder of its own, its metrics.csv in out_dir/shards/k
    (a worker of evaluate_jobs)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = case_names(imgs_dir, cases, limit)
    if not names:
        raise SystemExit(f"no cases to evaluate in {imgs_dir}")
    run_dir, metrics_dir = out_dir / "run", out_dir
    if shard is not None:
        names = names[shard[0] :: shard[1]]
        run_dir, metrics_dir = out_dir / f"run_{shard[0]}", out_dir / "shards" / str(shard[0])
        metrics_dir.mkdir(parents=True, exist_ok=True)
    prepare_run_dirs(run_dir)  # inputs/ and outputs/, cleared once like the official run
    log_dir = out_dir / "logs"
    log_dir.mkdir(exist_ok=True)
    boxed = [not drop_boxes and _has_key(Path(imgs_dir) / n, "boxes") for n in names]
    total_steps = sum(N_STEPS if b else N_STEPS - 1 for b in boxed)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total_steps, unit="step", desc=desc, file=sys.stderr)
    results: list[CaseResult] = []
    for name in names:
        case_file, gts_file = Path(imgs_dir) / name, Path(gts_dir) / name
        if bar is not None:
            bar.set_postfix_str(name, refresh=False)

        def on_step(step: StepResult, _name=name) -> None:
            if bar is not None and step.status != "skipped":
                bar.update(1)
                bar.set_postfix_str(f"{_name} {step.name} {step.status} DSC {step.dsc:.3f}", refresh=False)

        try:
            result, all_segs = run_case(
                case_file,
                gts_file,
                run_dir,
                submission,
                log_dir=log_dir,
                step_timeout=step_timeout,
                on_step=on_step,
                keep_all_segs=save_segs,
                step_runner=step_runner,
                drop_boxes=drop_boxes,
            )
        except Exception as exc:
            spacing = np.ones(3)
            with contextlib.suppress(Exception):
                spacing = load_npz(case_file).get("spacing", spacing)
            result, all_segs = _failed_case(name, gts_file, spacing, f"{type(exc).__name__}: {exc}"), []
        outcome = f"ERROR {name}: {result.error}" if result.error else report.case_line(result)
        if bar is not None:  # the postfix is overwritten by the next case: the outcome stays above the bar
            bar.write(f"[{desc}] {outcome}")
        elif shard is not None:  # a worker of --jobs: no bar, one line a case
            print(f"[{desc} {shard[0] + 1}/{shard[1]}] {outcome}", flush=True)
        results.append(result)
        if save_segs and result.final_segs is not None:
            seg_dir = out_dir / "segs"
            seg_dir.mkdir(exist_ok=True)
            np.savez_compressed(seg_dir / name, segs=result.final_segs, all_segs=np.stack(all_segs))
        if plots and result.final_segs is not None:
            try:
                src, gts = load_npz(case_file), load_npz(gts_file)["gts"]
                report.plot_case(result, src["imgs"], gts, out_dir, boxes=src.get("boxes"))
            except Exception as exc:  # a plot must never cost the scores
                print(f"[warning] plot of {name} failed: {exc}", file=sys.stderr)
        report.write_metrics_csv(results, metrics_dir)  # rewritten after every case, as the official
    if bar is not None:
        bar.close()
    return results


def _evaluate_shard(runner: Runner, shard: tuple[int, int], kwargs: dict) -> list[CaseResult]:
    """One worker of evaluate_jobs; the masks stay in out_dir/segs, not in what goes back."""
    results = evaluate(**{**kwargs, "progress": False}, step_runner=runner.build(), shard=shard)
    for r in results:
        r.first_segs = r.final_segs = None
    return results


def evaluate_jobs(jobs: int, runner: Runner, imgs_dir: Path, out_dir: Path, **kwargs) -> list[CaseResult]:
    """evaluate() with the cases shared out among `jobs` worker processes (no more than there are
    cases); the same report in out_dir as one process writes, in name order. kwargs are
    evaluate's (no step_runner: each worker builds `runner`'s)."""
    out_dir = Path(out_dir)
    jobs = min(jobs, len(case_names(imgs_dir, kwargs.get("cases"), kwargs.get("limit"))) or 1)
    if jobs <= 1:
        return evaluate(imgs_dir, out_dir=out_dir, step_runner=runner.build(), **kwargs)
    kwargs = {**kwargs, "imgs_dir": imgs_dir, "out_dir": out_dir}
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        parts = [pool.submit(_evaluate_shard, runner, (k, jobs), kwargs) for k in range(jobs)]
        results = sorted((r for part in parts for r in part.result()), key=lambda r: r.name)
    report.write_metrics_csv(results, out_dir)
    shutil.rmtree(out_dir / "shards", ignore_errors=True)  # each worker's part, now joined
    return results


def job_threads(jobs: int) -> int | None:
    """Threads per step with `jobs` workers: OMP_NUM_THREADS where set, else the cores shared
    out; None (as the step chooses) for one job."""
    if jobs <= 1:
        return None
    return int(os.environ.get("OMP_NUM_THREADS") or 0) or max(1, (os.cpu_count() or 1) // jobs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m evaluation.run_local",
        description="Score a predict.sh with the organisers' interaction protocol (box + 5 clicks).",
    )
    ap.add_argument("paths", nargs="*", help="[IMGS_DIR [GTS_DIR|- [OUT_DIR]]]; none = demo cases")
    ap.add_argument(
        "--submission", type=Path, default=REPO_ROOT, help="folder with predict.sh (default: repo)"
    )
    ap.add_argument("--out", type=Path, default=None, help="OUT_DIR when not given positionally")
    ap.add_argument("--step-timeout", type=float, default=None, help="kill a step after S seconds")
    ap.add_argument("--cases", default=None, help="only case files matching this glob")
    ap.add_argument("--limit", type=int, default=None, help="only the first N cases")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument(
        "--no-floor", action="store_true", help="do not score the box-prism floor beside the submission"
    )
    ap.add_argument("--no-save-segs", action="store_true", help="do not keep OUT_DIR/segs/<case>.npz")
    ap.add_argument("--no-boxes", action="store_true", help="training layout: split without boxes")
    ap.add_argument(
        "--clicks-only",
        action="store_true",
        help="ignore the cases' boxes: every case starts from a click, as a no-box case does",
    )
    ap.add_argument("--demo-n", type=int, default=4, help="number of demo cases")
    ap.add_argument("--seed", type=int, default=2025, help="seed of demo cases / box margins")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument(
        "--in-process",
        action="store_true",
        help="run this repo's model in this process, not predict.sh per step",
    )
    ap.add_argument(
        "--weights", type=Path, default=REPO_ROOT / "weights", help="--in-process: weights folder"
    )
    ap.add_argument("--device", choices=("cpu", "cuda"), default=None, help="--in-process: device")
    ap.add_argument(
        "--time-scale",
        type=time_scale_arg,
        default=None,
        help="multiply the time allowance of each step by this (infer.py's --time-scale, "
        "SEGFM_TIME_SCALE): on a CPU, score what the model does on the container's GPU",
    )
    ap.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="cases scored by this many worker processes at once, the cores shared among them",
    )
    args = ap.parse_args(argv)
    if args.jobs < 1:
        raise SystemExit(f"--jobs must be at least 1 (got {args.jobs})")

    submission = args.submission.resolve()
    if not (submission / "predict.sh").is_file():
        raise SystemExit(f"no predict.sh in {submission} (use --submission DIR)")
    if args.in_process and submission != REPO_ROOT:
        raise SystemExit("--in-process runs this repository's model: it cannot score another --submission")
    threads = job_threads(args.jobs)
    runner = Runner(args.in_process, args.weights, args.device, args.time_scale, threads)
    imgs_dir, gts_dir, out_dir = resolve_inputs(args)
    t0 = time.perf_counter()
    results = evaluate_jobs(
        args.jobs,
        runner,
        imgs_dir,
        out_dir,
        gts_dir=gts_dir,
        submission=submission,
        step_timeout=args.step_timeout,
        cases=args.cases,
        limit=args.limit,
        plots=not args.no_plots,
        save_segs=not args.no_save_segs,
        progress=not args.no_progress,
        desc="submission",
        drop_boxes=args.clicks_only,
    )
    seconds = time.perf_counter() - t0
    csv_path = report.write_metrics_csv(results, out_dir)
    rows = report.summarize(results)
    summary_path = report.write_summary_csv(rows, out_dir)
    floor_results, comparison, floor_path = [], None, None
    if not args.no_floor and submission != FLOOR.resolve():
        floor_results = evaluate_jobs(
            args.jobs,
            Runner(threads=threads),
            imgs_dir,
            out_dir / "floor",
            gts_dir=gts_dir,
            submission=FLOOR,
            step_timeout=args.step_timeout,
            cases=args.cases,
            limit=args.limit,
            plots=False,
            save_segs=False,
            progress=not args.no_progress,
            desc="box-prism floor",
            drop_boxes=args.clicks_only,
        )
        floor_rows = report.summarize(floor_results)
        report.write_summary_csv(floor_rows, out_dir / "floor")
        comparison = report.compare_to_floor(rows, floor_rows)
        floor_path = report.write_floor_csv(comparison, out_dir)
    plot_paths = report.plot_curves(results, out_dir) if not args.no_plots else []
    print()
    print(f"submission: {submission}" + (" (in process, through model.session)" if args.in_process else ""))
    jobs = f" ({args.jobs} jobs, {threads} thread{'s' if threads > 1 else ''} a step)" if threads else ""
    print(f"{len(results)} cases from {imgs_dir} in {seconds:.1f} s{jobs}")
    print()
    print(report.format_summary(rows))
    for line in report.notes(results):
        print(f"[note] {line}")
    if comparison is not None:
        print()
        print("beside the box-prism floor (box painted, a ball per click; gain = submission - floor):")
        print(report.format_floor(comparison))
        for line in report.notes(floor_results):
            print(f"[note] floor: {line}")
    print()
    print(f"per-case metrics: {csv_path}")
    print(f"summary:          {summary_path}")
    if floor_path is not None:
        print(f"vs floor:         {floor_path} (floor run: {out_dir / 'floor'})")
    if plot_paths:
        print(f"curves:           {out_dir / 'plots'} ({', '.join(p.name for p in plot_paths)})")
        print(f"case overlays:    {out_dir / 'plots' / 'cases'}")
    print(f"step logs:        {out_dir / 'logs'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
