"""Time ``model.fusion.fuse`` alone on a synthetic 300x512x512 case with 10 classes.

Run: ``python -m bench.bench_fusion [--shape 300,512,512] [--classes 10] [--repeat 3]``.
Prints one row per available backend (cpu = cc3d; cuda = cupy, when cupy and a GPU exist) and
checks that the backends give identical label maps. Needs no weights. Target: <= 100 ms on GPU.
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc

import numpy as np

from bench._synth import synth_labels, synth_probs
from model.fusion import ClassProb, cuda_available, fuse


def _classes(probs: list, to_device: bool) -> list[ClassProb]:
    """The predictor's hand-over: float16 probs, on the GPU as torch CUDA tensors when asked."""
    out = []
    for label, roi, p, click in probs:
        if to_device:
            import torch

            p = torch.from_numpy(p).cuda()
        out.append(ClassProb(label, roi, p, fg_clicks=[click], box=None))
    return out


def _time(
    shape: tuple[int, int, int], classes: list[ClassProb], backend: str, repeat: int
) -> tuple[list[float], np.ndarray]:
    seg = fuse(shape, classes, backend=backend)  # warm-up: imports, cupy kernel compilation
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        seg = fuse(shape, classes, backend=backend)  # returns a host array: device work is done
        times.append(time.perf_counter() - t0)
    return times, seg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="300,512,512", help="z,y,x")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split(","))
    assert len(shape) == 3

    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    labels = synth_labels(rng, shape, args.classes)
    probs = synth_probs(rng, labels)
    roi_vox = sum(int(np.prod(p.shape)) for _, _, p, _ in probs)
    print(
        f"case {shape[0]}x{shape[1]}x{shape[2]}, {len(probs)} classes, ROI voxels in all "
        f"{roi_vox / 1e6:.1f} M ({roi_vox / np.prod(shape):.2f} x volume), "
        f"made in {time.perf_counter() - t0:.1f} s"
    )

    rows = []
    results: dict[str, np.ndarray] = {}
    backends = ["cpu"] + (["cuda"] if cuda_available() else [])
    for backend in backends:
        classes = _classes(probs, to_device=backend == "cuda")
        times, seg = _time(shape, classes, backend, args.repeat)
        results[backend] = seg
        extra = ""
        if backend == "cpu":
            # host memory the fusion allocates beyond its inputs (numpy reports to tracemalloc)
            tracemalloc.start()
            fuse(shape, classes, backend="cpu")
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            extra = f"{peak / 2**20:.0f} MiB"
        else:
            import cupy

            pool = cupy.get_default_memory_pool()
            extra = f"GPU pool {pool.total_bytes() / 2**20:.0f} MiB"
        rows.append((backend, min(times), statistics.median(times), extra, int((seg > 0).sum())))

    print(f"\n| backend | min ms | median ms | peak extra memory | fg voxels |  (repeat {args.repeat})")
    print("|---|---:|---:|---:|---:|")
    for b, tmin, tmed, extra, fg in rows:
        print(f"| {b} | {tmin * 1e3:.0f} | {tmed * 1e3:.0f} | {extra} | {fg} |")
    print(f"(volume uint8 map: {np.prod(shape) / 2**20:.0f} MiB)")
    if len(results) == 2:
        same = np.array_equal(results["cpu"], results["cuda"])
        print(f"\ncpu == cuda: {same}")
        if not same:
            print(f"  differing voxels: {int((results['cpu'] != results['cuda']).sum())}")
            return 1
    else:
        print("\ncuda backend not available (no cupy / no GPU): cpu only")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
