"""Time one class's forward pass at the network grid (batch 1): CPU float32, CUDA float16.

Run: ``python -m bench.bench_forward [--weights weights] [--n 5] [--batch 1] [--random-init]``.
The network and its config come from the weights through ``Predictor.from_weights`` (attributes
``network`` and ``config``); ``--random-init``, or weights that do not load yet, build the
default ``ModelConfig`` network with random weights instead (the time of a forward pass does not
depend on the weight values, only on the architecture and the grid). Targets: < 2 s on CPU,
< 50 ms on GPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent


def load_network(weights: Path, random_init: bool) -> tuple[torch.nn.Module, Any, str]:
    """(network, config, where it came from). Falls back to a random default network."""
    if not random_init:
        try:
            from model.predictor import Predictor

            pred = Predictor.from_weights(weights, "cpu")
            net = getattr(pred, "network", None)
            if net is None:  # the predictor keeps it as .net
                net = getattr(pred, "net", None)
            cfg = getattr(pred, "config", None)
            if isinstance(net, torch.nn.Module) and cfg is not None:
                return net, cfg, f"weights {weights}"
            print("Predictor has no .network/.config: using a random default network", file=sys.stderr)
        except Exception as exc:  # weights not trained yet, predictor not written yet
            print(
                f"cannot load {weights} ({type(exc).__name__}: {exc}): random default network",
                file=sys.stderr,
            )
    from model.config import ModelConfig
    from model.network import ResEncUNet

    cfg = ModelConfig()
    return ResEncUNet(cfg), cfg, "random init, default ModelConfig"


def _time(net: torch.nn.Module, x: torch.Tensor, n: int, warmup: int) -> list[float]:
    cuda = x.is_cuda
    times = []
    with torch.inference_mode():
        for i in range(warmup + n):
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            net(x)
            if cuda:
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, default=REPO / "weights")
    ap.add_argument("--n", type=int, default=5, help="timed forwards per device (CUDA runs 4x as many)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--random-init", action="store_true")
    ap.add_argument("--no-cpu", action="store_true")
    args = ap.parse_args(argv)

    net, cfg, source = load_network(args.weights, args.random_init)
    grid = tuple(int(g) for g in cfg.grid)
    cin = int(cfg.in_channels)
    params = sum(p.numel() for p in net.parameters())
    print(
        f"network: {source}; {params / 1e6:.2f} M parameters; "
        f"input {args.batch}x{cin}x{'x'.join(map(str, grid))}"
    )
    net.eval()
    rows = []
    if not args.no_cpu:
        x = torch.randn(args.batch, cin, *grid)
        t = _time(net.float().cpu(), x, args.n, warmup=1)
        rows.append(("cpu float32", torch.get_num_threads(), t, None))
    if torch.cuda.is_available():
        gnet = net.to("cuda").half()
        x = torch.randn(args.batch, cin, *grid, device="cuda", dtype=torch.float16)
        torch.cuda.reset_peak_memory_stats()
        t = _time(gnet, x, 4 * args.n, warmup=3)
        rows.append(
            ("cuda float16", torch.cuda.get_device_name(), t, torch.cuda.max_memory_allocated() / 2**20)
        )
    print("\n| device | threads / GPU | forwards | min ms | median ms | peak GPU MiB |")
    print("|---|---|---:|---:|---:|---:|")
    for name, where, t, mem in rows:
        gpu = "-" if mem is None else f"{mem:.0f}"
        print(
            f"| {name} | {where} | {len(t)} | {min(t) * 1e3:.1f} | {statistics.median(t) * 1e3:.1f} | {gpu} |"
        )
    if not torch.cuda.is_available():
        print("\nno CUDA device: GPU row skipped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
