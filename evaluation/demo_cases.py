"""Small synthetic cases in the challenge format, for the no-argument run of run_local.sh.

``python -m evaluation.demo_cases --out DIR [--n 4] [--seed 0] [--shape 24 64 64]`` writes
``DIR/imgs/<case>.npz`` (``imgs`` uint8 (z,y,x), ``spacing`` float64 stored (x,y,z), ``boxes``
object array of dicts with np.int64 values, made by the organisers' rule) and
``DIR/gts/<case>.npz`` (``gts``, ``spacing``, ``boxes``). The last case has no ``boxes``, to
exercise the click-only path. Case names carry a modality-like prefix (``SynA_``/``SynB_``) so
the per-modality summary has two rows.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from model.boxes import boxes_from_labels, relabel_sequential
from model.synthetic import synth_case


def challenge_boxes(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Boxes as the organisers store them: a 1-D object array of dicts of np.int64."""
    boxes = boxes_from_labels(labels, rng)
    arr = np.empty(len(boxes), dtype=object)
    for i, b in enumerate(boxes):
        arr[i] = {k: np.int64(v) for k, v in b.to_challenge().items()}
    return arr


def write_case(
    out_dir: Path,
    name: str,
    imgs: np.ndarray,
    labels: np.ndarray,
    spacing_xyz: np.ndarray,
    boxes: np.ndarray | None,
) -> tuple[Path, Path]:
    """Write DIR/imgs/<name>.npz and DIR/gts/<name>.npz in the validation layout."""
    img_dir, gt_dir = Path(out_dir) / "imgs", Path(out_dir) / "gts"
    img_dir.mkdir(parents=True, exist_ok=True)
    gt_dir.mkdir(parents=True, exist_ok=True)
    spacing = np.asarray(spacing_xyz, dtype=np.float64)
    img_arrays = {"imgs": imgs.astype(np.uint8), "spacing": spacing}
    gt_arrays = {"gts": labels, "spacing": spacing}
    if boxes is not None:
        img_arrays["boxes"] = boxes
        gt_arrays["boxes"] = boxes
    img_path, gt_path = img_dir / f"{name}.npz", gt_dir / f"{name}.npz"
    np.savez_compressed(img_path, **img_arrays)
    np.savez_compressed(gt_path, **gt_arrays)
    return img_path, gt_path


def make_demo_cases(
    out_dir: Path, n: int = 4, seed: int = 0, shape: tuple[int, int, int] = (24, 64, 64)
) -> list[str]:
    """Write n synthetic cases (the last one without boxes); returns the case file names."""
    rng = np.random.default_rng(seed)
    names = []
    for i in range(n):
        n_objects = 1 + i % 3
        imgs, labels, spacing = synth_case(rng, tuple(shape), n_objects)
        for _ in range(5):  # a case must have at least one object
            if labels.max() > 0:
                break
            imgs, labels, spacing = synth_case(rng, tuple(shape), n_objects)
        labels = relabel_sequential(labels).astype(np.uint8)
        with_boxes = i < n - 1 or n == 1
        boxes = challenge_boxes(labels, rng) if with_boxes else None
        prefix = "SynA" if i % 2 == 0 else "SynB"
        name = f"{prefix}_demo{i:02d}{'' if with_boxes else '_noboxes'}"
        write_case(out_dir, name, imgs, labels, spacing, boxes)
        names.append(f"{name}.npz")
    return names


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path, help="writes OUT/imgs and OUT/gts")
    ap.add_argument("--n", type=int, default=4, help="number of cases (the last has no boxes)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shape", type=int, nargs=3, default=(24, 64, 64), metavar=("Z", "Y", "X"))
    args = ap.parse_args(argv)
    names = make_demo_cases(args.out, args.n, args.seed, tuple(args.shape))
    print(f"wrote {len(names)} demo cases to {args.out}/imgs and {args.out}/gts")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
