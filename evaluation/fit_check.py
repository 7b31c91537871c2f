"""Has the network learned what it was trained on? Grid Dice of first-step items per object.

    python -m evaluation.fit_check FILE_OR_DIR ... [--weights DIR] [--labels 1,8] [--n 8]
        [--start box|box2d|click] [--seed 0] [--csv OUT.csv]

Each object of each training-layout file (``imgs`` with ``gts`` inside) is drawn `n` times
through the training path (`model.training.sampler.make_sample`: a random flip, its ROI jittered,
the prompts of the chosen start, the same encoding inference uses) and predicted once, with no
previous mask. Printed per object: its voxels, the grid Dice of the network, the grid Dice of the
box prism itself (the rectangle of the middle slice extruded over z_min..z_max, or for a viewer's
one-slice box its rectangle alone: the answer of a network that ignores the image), and the
median predicted/true volume; with the challenge's box, the share of the target outside its prism
(the rectangle bounds the object on its middle slice only) and the share of those voxels
the network found (pooled over the draws).

Why: the full protocol (docs/validation.md) says how good the model is on held-out cases, but it
cannot tell an object type the network generalises badly to from one it never learned. Run on
training files, an object scoring far below its kind here is underfit: more of the same training
will not fix it, a larger network or a different recipe may. An object whose network Dice is
near its prism Dice is answered by the box alone (issue 8's "the box prism is trusted too much").
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from evaluation.metrics import dice
from model.config import ModelConfig
from model.encoding import box_channel
from model.training.data import Volume, find_cases, load_volume
from model.training.sampler import make_sample
from model.training.stream import encode_sample, grid_roi, outside_prism

REPO_ROOT = Path(__file__).resolve().parents[1]
STARTS = {"box": (1.0, 0.0), "box2d": (0.0, 1.0), "click": (0.0, 0.0)}  # (p_box, p_box2d)


@dataclass(frozen=True)
class ObjectFit:
    """One object's figures over its `n` draws (means, and the median volume ratio)."""

    case: str
    label: int
    voxels: int
    dice: float
    prism_dice: float  # NaN for a click start (no box)
    volume_ratio: float
    outside: float = float("nan")  # mean share of the target outside the prism (NaN unless a box start)
    outside_voxels: int = 0  # grid voxels outside the prism over the draws
    found_voxels: int = 0  # of them, predicted

    @property
    def found_outside(self) -> float:
        """The share of the voxels outside the prism the network found (NaN where there are none)."""
        return self.found_voxels / self.outside_voxels if self.outside_voxels else float("nan")

    def cells(self) -> list[str]:
        """The row as printed and written: case, label, voxels, dice, prism dice, volume ratio,
        share outside the prism, share of it found."""
        return [self.case, str(self.label), str(self.voxels)] + [
            f"{v:.3f}"
            for v in (self.dice, self.prism_dice, self.volume_ratio, self.outside, self.found_outside)
        ]


COLUMNS = ["case", "label", "voxels", "dice", "prism_dice", "volume_ratio", "outside", "found_outside"]
LINE = "{:40.40s} {:>5s} {:>8s} {:>6s} {:>10s} {:>12s} {:>7s} {:>13s}"


def fit_object(
    net: Callable[[torch.Tensor], torch.Tensor],
    volume: Volume,
    label: int,
    config: ModelConfig,
    n: int,
    start: str,
    rng: np.random.Generator,
) -> ObjectFit:
    """`n` first-step draws of one object of `volume` through the training path, each predicted
    by `net` (logits, channel 0 the object)."""
    one = Volume(volume.name, volume.imgs, (volume.gts == label).astype(np.uint8), volume.spacing)
    p_box, p_box2d = STARTS[start]
    dices, prisms, ratios, shares = [], [], [], []
    out_n = found_n = 0
    tries = 0
    while len(dices) < n:
        tries += 1
        if tries > 20 * n:
            raise RuntimeError(f"{volume.name} label {label}: no sample in {tries - 1} draws")
        s = make_sample(one, rng, config, p_box=p_box, p_box2d=p_box2d)
        if s is None:
            continue
        x = encode_sample(s, s.image, None, False, config)[None]
        with torch.no_grad():
            pred = (net(x)[:, 0].float() > 0)[0].numpy()
        dices.append(dice(s.target, pred))
        ratios.append(float(pred.sum()) / float(s.target.sum()))
        if s.prompts.box is not None:
            prisms.append(dice(s.target, box_channel(grid_roi(config), s.prompts.box, config.grid) > 0))
        if s.start == "box":  # the challenge's box: a viewer's one-slice box has no prism to leave
            outside = outside_prism(s, config)
            shares.append(float(outside.sum()) / float(s.target.sum()))
            out_n += int(outside.sum())
            found_n += int((outside & pred).sum())
    return ObjectFit(
        volume.name,
        label,
        int(volume.label_counts()[label]),
        float(np.mean(dices)),
        float(np.mean(prisms)) if prisms else float("nan"),
        float(np.median(ratios)),
        float(np.mean(shares)) if shares else float("nan"),
        out_n,
        found_n,
    )


def _files(paths: Sequence[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        out.extend(find_cases([p]) if p.is_dir() else [p])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", type=Path, help="training-layout .npz files or folders of them")
    ap.add_argument("--weights", type=Path, default=REPO_ROOT / "weights")
    ap.add_argument("--labels", default=None, help="comma-separated labels (default: every label)")
    ap.add_argument("--n", type=int, default=8, help="draws per object")
    ap.add_argument("--start", choices=sorted(STARTS), default="box")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--csv", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args(argv)
    if args.n < 1:
        raise SystemExit("--n must be at least 1")
    files = _files(args.paths)
    if not files:
        raise SystemExit(f"no .npz files in {', '.join(str(p) for p in args.paths)}")

    from model.predictor import Predictor

    predictor = Predictor.from_weights(args.weights, device="cpu")
    rng = np.random.default_rng(args.seed)
    wanted = None if args.labels is None else {int(v) for v in args.labels.split(",")}
    rows: list[ObjectFit] = []
    print(LINE.format(*COLUMNS))
    for path in files:
        try:
            volume = load_volume(path)
        except (OSError, KeyError, ValueError) as exc:
            print(f"{path.name}: skipped ({exc})", file=sys.stderr)
            continue
        for label in range(1, volume.n_classes + 1):
            if (wanted is not None and label not in wanted) or not volume.label_counts()[label]:
                continue
            r = fit_object(predictor.net, volume, label, predictor.config, args.n, args.start, rng)
            rows.append(r)
            print(LINE.format(*r.cells()))
    if not rows:
        raise SystemExit("no objects to check")
    dice = np.array([r.dice for r in rows])
    prism = np.array([r.prism_dice for r in rows])
    summary = f"{len(rows)} objects: mean Dice {dice.mean():.3f}"
    if args.start != "click":
        summary += f", box prism {np.nanmean(prism):.3f}"
    if args.start == "box":
        out_n = sum(r.outside_voxels for r in rows)
        found = sum(r.found_voxels for r in rows) / out_n if out_n else float("nan")
        summary += (
            f"; mean share outside the prism {np.nanmean([r.outside for r in rows]):.3f}, "
            f"found of it {found:.3f} (pooled)"
        )
    print(summary)
    if args.csv is not None:
        with args.csv.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(COLUMNS)
            w.writerows(r.cells() for r in rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
