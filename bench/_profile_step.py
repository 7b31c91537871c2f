"""One cold step, as a container runs it, timing each phase itself (child of bench_step).

Run: ``python -m bench._profile_step CASE.npz OUT_DIR --json RESULT.json [--weights weights]
[--device cpu|cuda] [--floor-only]``. It must be a fresh process: the point is the cold start.
Phases: interpreter (before this script ran), imports, weights, read, network (ROI + network,
from the prediction's ``timings``), fusion (likewise), write. The step runs under the CLI's time
budget, counted from this process's start. ``--floor-only`` times only what the
floor needs (import torch, read, write zeros), which works before any weights exist.
The JSON also holds the peak host RAM of this process (VmHWM / ru_maxrss) and, on CUDA, the
peak GPU memory torch allocated.
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()

import argparse  # noqa: E402  (after the first clock reading on purpose)
import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402


def _peak_rss_bytes() -> int:
    """Peak resident set of this process: VmHWM where /proc has it, else ru_maxrss (KiB on Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case", type=Path)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--weights", type=Path, default=Path("weights"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--floor-only", action="store_true")
    args = ap.parse_args(argv)

    from model.budget import Budget, process_age_s

    res: dict = {
        "case": args.case.name,
        "device": args.device,
        "interpreter_s": process_age_s() - (time.perf_counter() - _T0),
    }
    t = {}
    try:
        t0 = time.perf_counter()
        import numpy as np

        from model.case_io import read_case, write_segs

        if not args.floor_only:  # the floor's torch import is timed apart, as `python -c "import torch"`
            import torch

            from model.predictor import Predictor
        t["imports"] = time.perf_counter() - t0

        predictor = None
        if not args.floor_only:
            t0 = time.perf_counter()
            predictor = Predictor.from_weights(args.weights, args.device)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t["weights"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        case = read_case(args.case)
        t["read"] = time.perf_counter() - t0
        res["shape"] = list(case.shape)
        res["n_classes"] = case.n_classes

        if predictor is not None:
            t0 = time.perf_counter()
            budget = Budget.for_step(case.n_classes, bool(case.boxes), time.monotonic() - process_age_s())
            prediction = predictor.predict_case(case, budget)
            segs = prediction.segs
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t["predict"] = time.perf_counter() - t0
            t.update(prediction.timings)
            res["timings"] = dict(prediction.timings)
            res["level"] = prediction.level.name
        else:
            segs = np.zeros(case.shape, np.uint8)

        t0 = time.perf_counter()
        write_segs(args.out_dir / args.case.name, segs)
        t["write"] = time.perf_counter() - t0
        res["ok"] = True
    except Exception as exc:  # reported in the table, not raised: one broken case must not stop the bench
        res["ok"] = False
        res["error"] = f"{type(exc).__name__}: {exc}"
        res["traceback"] = traceback.format_exc(limit=6)
    res["times"] = t
    res["script_s"] = time.perf_counter() - _T0
    res["peak_rss_bytes"] = _peak_rss_bytes()
    if "torch" in sys.modules and args.device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            res["peak_gpu_bytes"] = int(torch.cuda.max_memory_allocated())
    args.json.write_text(json.dumps(res, indent=1))
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
