"""Cold-step speed and memory of the container, per case, against its time budget and the floor.

Run: ``python -m bench.bench_step [--cases DIR] [--device cpu|cuda] [--out bench_out]``.

Cases: every ``*.npz`` of ``--cases`` (default ../shared/data/cases/imgs, read in place, never
copied), plus two synthetic box-step cases generated once into ``<out>/cases``: a CT-like
300x512x512 case with 10 classes and a 1000x600x600 case with 3 classes (``--small`` shrinks
them for a smoke run; ``--no-synthetic`` / ``--no-real`` skip a group).

Per case, one COLD step in a fresh process (bench/_profile_step.py), broken down into
interpreter, imports, weights, read, ROI + network, fusion, edge snap, write; its peak host RAM and, on
CUDA, peak GPU memory; the step's share of its budget (90 s x classes / 6); the ratio of the
step to the floor measured in the same run, floor = ``python -c "import torch"`` + reading the
case + writing its output; and the end-to-end wall time of ``sh predict.sh`` on the case alone
(INPUT_DIR / OUTPUT_DIR). A case without boxes is run at its first step, click 1 (built
from ``../gts`` with the evaluator's click rule). Prints a markdown table (paste it into
docs/speed.md) and writes ``<out>/bench_step.json``. A script, not a test: it never fails on slowness.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from model.budget import Budget

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CASES = REPO.parent / "shared" / "data" / "cases" / "imgs"
SYNTHETIC = {  # name: (shape, classes)
    "synth_ct_300x512x512_10cls": ((300, 512, 512), 10),
    "synth_1000x600x600_3cls": ((1000, 600, 600), 3),
}
SYNTHETIC_SMALL = {
    "synth_small_ct_60x128x128_10cls": ((60, 128, 128), 10),
    "synth_small_200x120x120_3cls": ((200, 120, 120), 3),
}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _wall(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """Wall seconds, return code and the tail of the output of a subprocess run from the repo root."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=REPO, env=env or _env(), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return time.perf_counter() - t0, 124, "timeout"
    return time.perf_counter() - t0, p.returncode, (p.stdout + p.stderr)[-2000:]


def torch_import_s(repeat: int = 3) -> float:
    """Median wall time of ``python -c "import torch"`` (after one unmeasured run to warm the page cache)."""
    cmd = [sys.executable, "-c", "import torch"]
    _wall(cmd, 300)
    return statistics.median(_wall(cmd, 300)[0] for _ in range(repeat))


def profile_step(
    case: Path, out_dir: Path, weights: Path, device: str, floor_only: bool, timeout: float
) -> dict:
    """Run one cold step in a fresh process; its own phase timings plus the wall time seen from here."""
    out_dir.mkdir(parents=True, exist_ok=True)
    js = out_dir / f"{case.stem}.{'floor' if floor_only else 'step'}.json"
    js.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "bench._profile_step", str(case), str(out_dir), "--json", str(js)]
    cmd += ["--weights", str(weights), "--device", device] + (["--floor-only"] if floor_only else [])
    wall, rc, tail = _wall(cmd, timeout)
    res = json.loads(js.read_text()) if js.exists() else {"ok": False, "error": f"rc={rc}: {tail[-500:]}"}
    res["wall_s"] = wall
    return res


def predict_sh(case: Path, work: Path, weights: Path, device: str, timeout: float) -> float | None:
    """Wall time of ``sh predict.sh`` on this case alone (linked, not copied, into its INPUT_DIR)."""
    if not (REPO / "predict.sh").exists():
        return None
    inp, out = work / "in", work / "out"
    for d in (inp, out):
        d.mkdir(parents=True, exist_ok=True)
        for f in d.iterdir():
            f.unlink()
    (inp / case.name).symlink_to(case.resolve())
    env = _env() | {"INPUT_DIR": str(inp), "OUTPUT_DIR": str(out), "WEIGHTS_DIR": str(weights)}
    wall, rc, tail = _wall(["sh", "predict.sh", "--device", device], timeout, env)
    if rc != 0 or not (out / case.name).exists():
        print(f"  predict.sh failed on {case.name} (rc {rc}): {tail[-300:]}", file=sys.stderr)
        return None
    return wall


def click_step_input(case: Path, out: Path) -> Path | None:
    """For a case without boxes, the input of its first run as the evaluator writes it.

    Such a case skips the box step: its first container start is click 1, with one simulated
    click per class (from the ground truth in ``../gts/<name>``) and an all-zero ``prev_pred``.
    Written once to ``<out>/cases/click1/<name>`` (same file name, as the container sees it).
    Returns None when the case has boxes or its ground truth is not found.
    """
    import numpy as np

    with np.load(case, allow_pickle=True) as z:
        if "boxes" in z.files or "clicks" in z.files:
            return None
        imgs, spacing = z["imgs"], z["spacing"]
    gt_path = case.parent.parent / "gts" / case.name
    if not gt_path.exists():
        return None
    dst = out / "cases" / "click1" / case.name
    if dst.exists():
        return dst
    from model.click_sim import simulate_clicks

    gts = np.load(gt_path, allow_pickle=True)["gts"]
    prev = np.zeros(imgs.shape, np.uint8)
    clicks, order = simulate_clicks(prev, gts, None, None)
    obj = np.empty(len(clicks), dtype=object)
    obj[:] = clicks
    dst.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(dst, imgs=imgs, spacing=spacing, clicks=obj, clicks_order=order, prev_pred=prev)
    return dst


def _fmt(v: float | None, nd: int = 2) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=Path, default=DEFAULT_CASES)
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when torch sees one)")
    ap.add_argument("--out", type=Path, default=REPO / "bench_out")
    ap.add_argument("--weights", type=Path, default=REPO / "weights")
    ap.add_argument("--small", action="store_true", help="small synthetic cases (smoke run)")
    ap.add_argument("--no-synthetic", action="store_true")
    ap.add_argument("--no-real", action="store_true")
    ap.add_argument("--no-e2e", action="store_true", help="skip the sh predict.sh runs")
    ap.add_argument("--only", default="", help="only cases whose name contains this")
    ap.add_argument("--timeout", type=float, default=1800.0)
    args = ap.parse_args(argv)
    device = args.device
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    cases: list[Path] = []
    if not args.no_real:
        if args.cases.is_dir():
            for c in sorted(args.cases.glob("*.npz")):
                cases.append(click_step_input(c, out) or c)
        else:
            print(f"no real cases at {args.cases}: skipped", file=sys.stderr)
    if not args.no_synthetic:
        from bench._synth import make_case

        for i, (name, (shape, n)) in enumerate((SYNTHETIC_SMALL if args.small else SYNTHETIC).items()):
            path = out / "cases" / f"{name}.npz"
            if not path.exists():
                print(f"generating {path.name} ...", file=sys.stderr, flush=True)
            cases.append(make_case(path, shape, n, seed=i))
    cases = [c for c in cases if args.only in c.name]

    t_torch = torch_import_s()
    print(f"device {device}; python -c 'import torch': {t_torch:.2f} s (median of 3)", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_step_") as tmp:
        tmp = Path(tmp)
        for case in cases:
            print(f"{case.name} ...", file=sys.stderr, flush=True)
            step = profile_step(case, tmp / "out", args.weights, device, False, args.timeout)
            floor_run = step
            if not step.get("ok") or "read" not in step.get("times", {}):
                print(f"  step failed: {step.get('error')}", file=sys.stderr)
                floor_run = profile_step(case, tmp / "out", args.weights, device, True, args.timeout)
            ft = floor_run.get("times", {})
            floor = t_torch + ft["read"] + ft["write"] if "read" in ft and "write" in ft else None
            e2e = (
                None
                if args.no_e2e or not step.get("ok")
                else predict_sh(case, tmp / "e2e", args.weights, device, args.timeout)
            )
            n = step.get("n_classes") or floor_run.get("n_classes")
            budget = Budget(n).step_s if n else None
            ok = bool(step.get("ok"))
            rows.append(
                {
                    "case": case.stem + (" (click 1)" if case.parent.name == "click1" else ""),
                    "shape": "x".join(map(str, step.get("shape") or floor_run.get("shape") or [])),
                    "classes": n,
                    "ok": ok,
                    "error": step.get("error") or None,
                    "floor_error": None if floor_run is step else floor_run.get("error"),
                    "times": step.get("times", {}),
                    "interpreter_s": step.get("interpreter_s"),
                    "step_s": step["wall_s"] if ok else None,
                    "e2e_s": e2e,
                    "floor_s": floor,
                    "ratio": step["wall_s"] / floor if ok and floor else None,
                    "budget_step_s": budget,
                    "budget_share": step["wall_s"] / budget if ok and budget else None,
                    "peak_rss_gib": (step.get("peak_rss_bytes") or 0) / 2**30 if ok else None,
                    "peak_gpu_gib": step["peak_gpu_bytes"] / 2**30 if "peak_gpu_bytes" in step else None,
                    "floor_read_s": ft.get("read"),
                    "floor_write_s": ft.get("write"),
                }
            )

    (out / "bench_step.json").write_text(
        json.dumps({"device": device, "torch_import_s": t_torch, "rows": rows}, indent=1)
    )
    print(
        f"\ndevice: {device}; floor = import torch ({t_torch:.2f} s) + read + write; "
        "budget = 90 s x classes / 6\n"
    )
    head = [
        "case", "shape", "cls", "interp", "imports", "weights", "read", "ROI+net", "fusion", "snap", "write",
        "step s", "e2e s", "floor s", "step/floor", "% budget", "RAM GiB", "GPU GiB",
    ]  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * 2 + "---:|" * (len(head) - 2))
    for r in rows:
        t = r["times"]
        share = None if r["budget_share"] is None else 100 * r["budget_share"]
        cells = [
            r["case"], r["shape"], str(r["classes"] or "-"), _fmt(r["interpreter_s"]),
            _fmt(t.get("imports")), _fmt(t.get("weights")),
            _fmt(t.get("read", r["floor_read_s"])), _fmt(t.get("network")), _fmt(t.get("fusion")),
            _fmt(t.get("snap")), _fmt(t.get("write", r["floor_write_s"])), _fmt(r["step_s"]),
            _fmt(r["e2e_s"]), _fmt(r["floor_s"]),
            _fmt(r["ratio"], 1), _fmt(share, 0), _fmt(r["peak_rss_gib"]), _fmt(r["peak_gpu_gib"]),
        ]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    errors: dict[str, list[str]] = {}
    for r in rows:
        for key in ("error", "floor_error"):
            if r.get(key):
                errors.setdefault(f"{key.replace('_', ' ')}: {r[key]}", []).append(r["case"])
    for msg, names in errors.items():
        print(f"\n{msg}\n  cases: {', '.join(names)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
