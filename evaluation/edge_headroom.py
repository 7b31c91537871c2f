"""How much of NSD lies within a voxel or two of the predicted edges? Figures from a finished run.

    python -m evaluation.edge_headroom OUT_DIR/model --cases CASES [--step final|box]
        [--bands 1 2] [--snap] [--weights DIR]

CASES holds ``imgs/`` and ``gts/`` (run_local's inputs); OUT_DIR/model/segs holds the saved steps
(`all_segs`). Per case, for the chosen step: NSD as the evaluator scores it; then, per band k,
the NSD if every voxel within k voxels (face neighbours) of each predicted object's edge were
set right, the rest left as predicted (the case's mean over its objects, without the evaluator's
DSC > 0.2 gate). That is what a perfect correction of that reach could win, and no more: if it
is small, NSD is lost to gross errors (a wrong object, a missed part) that no edge work fixes.
With ``--snap``, DSC and NSD after the edge snap of the weights' card (model/edge_snap.py)
applied offline to the saved masks, each object's region the ROI that the predictor's rule
(`model.roi.choose_roi`) draws around its mask's bounding box. Offline, the snap sees the final
masks only: in the protocol it also changes the next clicks, so a run with it on (its card's
``snap_band``) is the judge; this is for choosing what to run.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from evaluation.metrics import score_step, surface_dice, surface_distances
from model.case_io import spacing_zyx
from model.config import ModelCard, ModelConfig
from model.edge_snap import edge_band, snap_edges
from model.roi import choose_roi, label_extents

REPO_ROOT = Path(__file__).resolve().parents[1]


def band_fixed_nsd(gts: np.ndarray, segs: np.ndarray, spacing_stored: Sequence[float], band: int) -> float:
    """Mean NSD over the objects of `gts` with every voxel within `band` voxels of each predicted
    object's edge set to the truth (each object on its own; the snap's band, `edge_band`)."""
    values = []
    for label in np.unique(gts)[1:]:
        truth, pred = gts == label, segs == label
        found = ndimage.find_objects((truth | pred).view(np.uint8))[0]
        crop = tuple(slice(max(s.start - band - 1, 0), s.stop + band + 1) for s in found)
        truth, pred = truth[crop], pred[crop]
        fixed = np.where(edge_band(pred, band), truth, pred)
        values.append(surface_dice(surface_distances(truth, fixed, spacing_stored)) if fixed.any() else 0.0)
    return float(np.mean(values))


def offline_regions(
    segs: np.ndarray, spacing: tuple[float, float, float], cfg: ModelConfig
) -> list[tuple[int, tuple[slice, slice, slice]]]:
    """Each object's ROI as the predictor chooses it from a box (`model.roi.choose_roi` on the
    mask's bounding box): the region the network answered at the box step, as near as saved
    masks tell it."""
    extents = label_extents(segs, int(segs.max()))
    return [
        (label, choose_roi(segs.shape, spacing, extent, cfg).slices)
        for label, extent in enumerate(extents, start=1)
        if extent is not None
    ]


def snapped(
    segs: np.ndarray, imgs: np.ndarray, spacing_stored: Sequence[float], cfg: ModelConfig
) -> np.ndarray:
    """The card's edge snap on a copy of `segs`, every object in its offline region."""
    spacing = spacing_zyx(spacing_stored)
    regions = offline_regions(segs, spacing, cfg)
    return snap_edges(
        segs.copy(), imgs, spacing, regions, cfg.snap_band, cfg.snap_window_mm, cfg.snap_separation, cfg.grid
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a run_local folder (its segs/ saved with all_segs)")
    ap.add_argument("--cases", type=Path, required=True, help="the run's inputs: imgs/ and gts/")
    ap.add_argument("--step", choices=("final", "box"), default="final")
    ap.add_argument("--bands", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--snap", action="store_true", help="also the card's edge snap, offline")
    ap.add_argument("--weights", type=Path, default=REPO_ROOT / "weights", help="the card for --snap")
    args = ap.parse_args(argv)
    cfg = ModelCard.load(args.weights / "model.json").config if args.snap else None
    if cfg is not None and cfg.snap_band < 1:
        raise SystemExit(f"edge_headroom: the card in {args.weights} has the edge snap off (snap_band 0)")
    files = sorted((args.run / "segs").glob("*.npz"))
    if not files:
        raise SystemExit(f"edge_headroom: no saved segmentations in {args.run / 'segs'}")
    head = ["case", "DSC", "NSD"] + [f"NSD band {k} right" for k in args.bands]
    head += ["DSC snapped", "NSD snapped"] if cfg else []
    print("| " + " | ".join(head) + " |")
    print("|---" + "|---:" * (len(head) - 1) + "|")
    rows = []
    for path in files:
        gt_file, img_file = args.cases / "gts" / path.name, args.cases / "imgs" / path.name
        if not gt_file.exists():
            continue
        with np.load(path) as saved:
            steps = saved["all_segs"] if "all_segs" in saved else saved["segs"][None]
        if args.step == "box" and len(steps) < 6:
            continue  # a clicks-only start has no box step
        segs = steps[0] if args.step == "box" else steps[-1]
        gts = np.load(gt_file, allow_pickle=True)["gts"]
        with np.load(img_file, allow_pickle=True) as case:
            spacing, imgs = [float(v) for v in case["spacing"]], case["imgs"] if cfg else None
        base = score_step(gts, segs, spacing)
        row = [base.dsc, base.nsd] + [band_fixed_nsd(gts, segs, spacing, k) for k in args.bands]
        if cfg is not None:
            after = score_step(gts, snapped(segs, imgs, spacing, cfg), spacing)
            row += [after.dsc, after.nsd]
        rows.append(row)
        print(f"| {path.stem} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    if not rows:
        raise SystemExit("edge_headroom: no case with its ground truth and image under --cases")
    means = np.mean(rows, axis=0)
    print(f"| **mean ({len(rows)})** | " + " | ".join(f"{v:.4f}" for v in means) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
