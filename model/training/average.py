"""Average the network weights of several checkpoints of one lineage into one checkpoint.

`python -m model.training.average --ckpts runs/cpu10/last.pt runs/cpu11/last.pt runs/cpu12/last.pt
--out runs/avg/last.pt`, then `python -m model.training.export --ckpt runs/avg/last.pt ...`.

Why: each CPU run here is one cosine cycle that ends at a low learning rate, started from the
previous run's end. The ends of such cycles are the snapshots stochastic weight averaging takes,
and their mean sits nearer the middle of the basin than any one of them, so the run-to-run noise
in the full-protocol validation partly cancels. The network has instance norms only, so there
are no batch statistics to recompute after averaging.

The result is an export source, not a run to resume: it keeps the newest checkpoint's step,
samples, history and configs (the history already holds the older runs, since each started
from the one before) and drops the optimizer state, which belongs to one set of weights.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from model.atomic import torch_save_atomic


def average_checkpoints(ckpts: list[Path], out: Path) -> Path:
    """Write `out`: the newest of `ckpts` (the last one) with its network weights replaced by the
    element-wise mean over all of them (in fp32); returns `out`."""
    if len(ckpts) < 2:
        raise ValueError("averaging needs at least two checkpoints")
    states = [torch.load(p, map_location="cpu", weights_only=False) for p in ckpts]
    keys = set(states[-1]["model"])
    for path, state in zip(ckpts, states, strict=True):
        if set(state["model"]) != keys or state["model_config"] != states[-1]["model_config"]:
            raise ValueError(f"{path}: another architecture than {ckpts[-1]}; cannot average")
    mean = {}
    for key, newest in states[-1]["model"].items():
        if newest.is_floating_point():
            mean[key] = torch.stack([s["model"][key].float() for s in states]).mean(0)
        else:  # integer buffers (none today) are counters, not weights: the newest stands
            mean[key] = newest
    result = {k: v for k, v in states[-1].items() if k != "optim"}
    result["model"] = mean
    result["averaged_from"] = [str(p) for p in ckpts]
    out.parent.mkdir(parents=True, exist_ok=True)
    torch_save_atomic(result, out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="average the weights of checkpoints of one lineage")
    parser.add_argument("--ckpts", type=Path, nargs="+", required=True, help="oldest first, newest last")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    print(f"wrote {average_checkpoints(args.ckpts, args.out)}")


if __name__ == "__main__":
    main()
