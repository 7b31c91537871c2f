"""Training throughput on this machine: samples per second of the real loop, split into sampling,
interaction passes and the optimizer step.

Run: ``python -m bench.bench_train [--roots data_cache/train] [--samples 96] [--batch 4]``.

Each variant runs `model.training.train.train` itself for `--samples` samples in a temporary run
folder, from the shipped weights, and reads the loop's own timers (`time_split_s` in its metrics
log): `data` is the time the loop waited for items, `rounds` the rounds on the network's own
predictions (and the stacking of ready items), `optim` forward + backward + step. Variants:

- `serial, own rounds`: items made in the loop's process and every batch playing 1-2 rounds on
  the network's own predictions, as the loop did before the corrupted-mask items existed;
- `workers, corrupted`: the current recipe (items from DataLoader workers, own rounds on a share
  of batches only), with 1 torch thread and with 2;
- `..., bf16`: the same on 2 threads with the network passes in bfloat16 (`bf16_cpu`), which
  pays on CPUs with AMX or AVX512-BF16; on a CPU without them the loop runs fp32
  (`resolve_bf16_cpu`) and the row says so.

`--only TEXT` runs the variants whose name contains TEXT.

A script, not a test: it prints a markdown table for docs/training.md and never fails on speed.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from model.training.train import TrainConfig, cpu_has_native_bf16, train

VARIANTS = {
    "serial, own rounds every batch": {"workers": 0, "p_own_rounds": 1.0, "max_rounds": 2, "threads": 1},
    "workers 1, corrupted + 15 % own rounds, 1 thread": {"workers": 1, "p_own_rounds": 0.15, "threads": 1},
    "workers 1, corrupted + 15 % own rounds, 2 threads": {"workers": 1, "p_own_rounds": 0.15, "threads": 2},
    "workers 1, corrupted + 15 % own rounds, 2 threads, bf16": {
        "workers": 1,
        "p_own_rounds": 0.15,
        "threads": 2,
        "bf16_cpu": True,
    },
}


def run_variant(base: TrainConfig, overrides: dict, samples: int) -> dict:
    """One short training run; returns samples/s and the loop's time split."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = replace(base, **overrides, out_dir=tmp, samples=samples, val_every=10**9, ckpt_every=10**9)
        t0 = time.time()
        train(cfg, resume=False)
        wall = time.time() - t0
        rows = [json.loads(line) for line in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
    split = next(r["time_split_s"] for r in reversed(rows) if "time_split_s" in r)
    loop = sum(split.values())
    return {"samples_per_s": samples / loop, "split": split, "loop_s": loop, "wall_s": wall}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--roots", nargs="+", default=["../shared/data/extra/train"])
    ap.add_argument("--samples", type=int, default=96)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--only", default="", help="run only the variants whose name contains this")
    args = ap.parse_args(argv)
    base = TrainConfig(
        roots=args.roots,
        val_roots=[],
        batch_size=args.batch,
        n_synthetic=16,
        n_val_samples=4,
        max_minutes=1e9,
    )
    head = f"| variant (batch {args.batch}, {args.samples} samples) | samples/s | data | rounds | optim |"
    print(head)
    print("|---|---:|---:|---:|---:|")
    for name, overrides in VARIANTS.items():
        if args.only not in name:
            continue
        r = run_variant(base, overrides, args.samples)
        s = r["split"]
        figures = f"{r['samples_per_s']:.2f} | {s['data']:.1f} | {s['rounds']:.1f} | {s['optim']:.1f}"
        if overrides.get("bf16_cpu") and not cpu_has_native_bf16():
            name += " (ran fp32: this CPU has no bf16)"
        print(f"| {name} | {figures} |")


if __name__ == "__main__":
    main()
