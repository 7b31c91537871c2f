"""Labelled volumes (NIfTI, NRRD, MHA, anything SimpleITK reads) to cases in the challenge format.

``python -m evaluation.make_cases --images IMG [IMG ...] --labels LAB [LAB ...] --out DIR
--modality CT|MR|PET|US|Microscopy [--name-prefix NAME] [--ct-window 40 400] [--no-boxes]``

Images and labels are paired in the order given (or pass one folder each: files are paired by
sorted name). For each pair:

* intensities to uint8 0-255 as the organisers do: CT with a window (level 40, width 400 by
  default, ``--ct-window LEVEL WIDTH``), the other modalities between the 0.5th and 99.5th
  percentiles;
* labels relabelled sequentially 1..N (``model.boxes.relabel_sequential``);
* boxes by the organisers' rule (``model.boxes.boxes_from_labels``; seeded), skipped for
  Microscopy and with ``--no-boxes``, as get_boxes.py skips them;
* arrays in SimpleITK's (z, y, x) order and ``spacing`` stored as ``GetSpacing()`` (x, y, z).

Output: ``DIR/imgs/<Modality>_<name>.npz`` (imgs, spacing, boxes) and ``DIR/gts/...`` (gts,
spacing, boxes), ready for ``bash evaluation/run_local.sh DIR/imgs DIR/gts OUT``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from evaluation.demo_cases import challenge_boxes, write_case
from model.boxes import relabel_sequential

SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def case_stem(path: Path) -> str:
    name = Path(path).name
    for suf in SUFFIXES:
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return Path(path).stem


def to_uint8(img: np.ndarray, modality: str, ct_window: tuple[float, float] = (40.0, 400.0)) -> np.ndarray:
    """Intensities to 0-255: a CT window, else the 0.5-99.5 percentile range."""
    img = img.astype(np.float64)
    if modality.upper() == "CT":
        level, width = ct_window
        lo, hi = level - width / 2.0, level + width / 2.0
    else:
        lo, hi = np.percentile(img, [0.5, 99.5])
    if hi <= lo:
        return np.zeros(img.shape, np.uint8)
    out = (np.clip(img, lo, hi) - lo) / (hi - lo) * 255.0
    return np.round(out).astype(np.uint8)


def convert_pair(
    image_path: Path,
    label_path: Path,
    out_dir: Path,
    modality: str,
    rng: np.random.Generator,
    ct_window: tuple[float, float] = (40.0, 400.0),
    boxes: bool = True,
    name: str | None = None,
) -> str:
    """Convert one image/label pair; returns the case file name."""
    import SimpleITK as sitk

    image = sitk.ReadImage(str(image_path))
    label = sitk.ReadImage(str(label_path))
    imgs = sitk.GetArrayFromImage(image)  # (z, y, x)
    labels = sitk.GetArrayFromImage(label)
    if imgs.ndim != 3:
        raise ValueError(f"{image_path}: expected a 3-D image, got shape {imgs.shape}")
    if labels.shape != imgs.shape:
        raise ValueError(f"{label_path}: label shape {labels.shape} != image shape {imgs.shape}")
    spacing = np.asarray(image.GetSpacing(), dtype=np.float64)  # (x, y, z), as the organisers store it
    labels = relabel_sequential(np.asarray(labels).astype(np.int64))
    if int(labels.max()) == 0:
        raise ValueError(f"{label_path}: no labelled voxel")
    with_boxes = boxes and modality.lower() != "microscopy"
    case_boxes = challenge_boxes(labels, rng) if with_boxes else None
    case_name = f"{modality}_{name or case_stem(image_path)}"
    write_case(out_dir, case_name, to_uint8(imgs, modality, ct_window), labels, spacing, case_boxes)
    return f"{case_name}.npz"


def _expand(paths: list[Path]) -> list[Path]:
    if len(paths) == 1 and paths[0].is_dir():
        return sorted(p for p in paths[0].iterdir() if p.name.lower().endswith(SUFFIXES))
    return list(paths)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Labelled volumes to challenge-format cases (imgs/ + gts/).")
    ap.add_argument("--images", nargs="+", type=Path, required=True, help="image files, or one folder")
    ap.add_argument("--labels", nargs="+", type=Path, required=True, help="label files, or one folder")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--modality", required=True, help="CT, MR, PET, US, Microscopy, ... (case-name prefix)")
    ap.add_argument("--ct-window", type=float, nargs=2, default=(40.0, 400.0), metavar=("LEVEL", "WIDTH"))
    ap.add_argument("--no-boxes", action="store_true", help="write cases without boxes (click-only)")
    ap.add_argument("--seed", type=int, default=2025, help="seed of the random box margins")
    args = ap.parse_args(argv)
    images, labels = _expand(args.images), _expand(args.labels)
    if len(images) != len(labels):
        ap.error(f"{len(images)} images but {len(labels)} labels")
    rng = np.random.default_rng(args.seed)
    for img, lab in zip(images, labels, strict=True):
        name = convert_pair(img, lab, args.out, args.modality, rng, tuple(args.ct_window), not args.no_boxes)
        print(f"{img} + {lab} -> {args.out}/imgs/{name}")
    print(f"wrote {len(images)} cases to {args.out}/imgs and {args.out}/gts")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
