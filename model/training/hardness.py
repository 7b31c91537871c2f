"""Which training objects the network still gets wrong, as weights to draw them by.

Uniform and small-biased draws spend most samples on objects the network already answers (PET
tumours at box-step grid Dice 0.83), while objects it has not learnt stay unlearnt on the
training cases themselves: with the shipped cpu27w weights the OpenKBP mandible scores 0.14 and
the spinal cord 0.17 on average at the box step (docs/training.md, "Hard objects";
evaluation.fit_check prints the same per object, with the box prism's Dice beside it).
A run with `p_hard` > 0 measures, once, each real training object's grid Dice at the box step
with the weights it starts from (`measure`), keeps the table in its folder (`hardness.json`, so a
resumed run draws from the same table) and draws that share of its objects with weight
1 - Dice, floored (`object_weights`, `Pool.draw_object`). Run cpu43h (`p_hard` 0.5, 3 600 samples
on a CPU) did not lift those objects and fell on the full protocol (docs/validation.md): off by
default, for a long GPU run, where each hard object can get hundreds of samples.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
import torch

from model.atomic import write_bytes_atomic
from model.config import ModelConfig
from model.training.data import Volume
from model.training.sampler import Sample, make_sample
from model.training.stream import encode_sample

Table = dict[str, dict[str, float]]  # volume name -> label (as a string, JSON's keys) -> Dice


def _labels(vol: Volume) -> list[int]:
    counts = vol.label_counts()
    return [k for k in range(1, vol.n_classes + 1) if counts[k] > 0]


def _box_sample(vol: Volume, label: int, rng: np.random.Generator, config: ModelConfig) -> Sample | None:
    for _ in range(4):  # a jittered ROI can miss a thin object: draw again
        s = make_sample(vol, rng, config, p_box=1.0, label=label)
        if s is not None:
            return s
    return None


def measure(
    net: torch.nn.Module,
    vols: list[Volume],
    config: ModelConfig,
    per_object: int,
    seed: int,
    autocast: Callable[[], AbstractContextManager],
    device: torch.device,
    batch: int = 8,
) -> Table:
    """Mean grid Dice of each object of `vols` over `per_object` box starts (random flips, ROI
    margin and jitter, as training draws them), with `net` in eval mode; restores its mode."""
    rng = np.random.default_rng(seed)
    jobs: list[tuple[str, int, Sample]] = []
    for vol in vols:
        for label in _labels(vol):
            for _ in range(per_object):
                s = _box_sample(vol, label, rng, config)
                if s is not None:
                    jobs.append((vol.name, label, s))
    scores: dict[str, dict[str, list[float]]] = {}
    was_training = net.training
    net.eval()
    try:
        for i in range(0, len(jobs), batch):
            chunk = jobs[i : i + batch]
            x = torch.stack([encode_sample(s, s.image, None, False, config) for _, _, s in chunk]).to(device)
            with torch.no_grad(), autocast():
                pred = (net(x)[:, 0] > 0).cpu().numpy()
            for (name, label, s), p in zip(chunk, pred, strict=True):
                scores.setdefault(name, {}).setdefault(str(label), []).append(s.grid_dice(p))
    finally:
        net.train(was_training)
    return {name: {k: float(np.mean(v)) for k, v in per.items()} for name, per in scores.items()}


def object_weights(
    table: Table, vols: list[Volume], floor: float
) -> tuple[list[tuple[int, int]], np.ndarray]:
    """(volume index, label) of each measured object of `vols`, and its draw probability, in
    proportion to max(1 - Dice, floor): the floor keeps every object in the hard draws, objects
    the network already answers included (the other draws are unchanged)."""
    objects: list[tuple[int, int]] = []
    weights: list[float] = []
    for i, vol in enumerate(vols):
        for label, dice in table.get(vol.name, {}).items():
            objects.append((i, int(label)))
            weights.append(max(1.0 - dice, floor))
    w = np.asarray(weights, float)
    return objects, (w / w.sum() if w.size else w)


def load_or_measure(path: Path, measure_fn: Callable[[], Table], write: bool) -> Table:
    """The run's table: read from `path` where it exists (a resumed run), else measured and (by
    rank 0, `write`) saved there."""
    if path.exists():
        return json.loads(path.read_text())["per_object"]
    table = measure_fn()
    if write:
        write_bytes_atomic(path, json.dumps({"per_object": table}, indent=1, sort_keys=True).encode())
    return table


def summary(table: Table) -> str:
    """One line for the run's log: how many objects, their median Dice, the five hardest."""
    flat = sorted((d, f"{name}:{label}") for name, per in table.items() for label, d in per.items())
    if not flat:
        return "hardness: no objects measured"
    hardest = ", ".join(f"{what} {d:.2f}" for d, what in flat[:5])
    median = float(np.median([d for d, _ in flat]))
    return f"hardness: {len(flat)} objects, median box-step grid Dice {median:.2f}; hardest {hardest}"
