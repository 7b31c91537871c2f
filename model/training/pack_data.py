"""Pack the training cases small, for a machine the data does not travel to (the lent GPU).

`python -m model.training.pack_data --roots ../shared/data/extra/train ../shared/data/cases/train
--split configs/split.json --out data_cache/train --max-mb 48`

Each TRAINING case becomes a training-layout npz (`imgs` uint8, `gts` relabelled 1..N as uint8 or
uint16, `spacing` stored x,y,z exactly as read), cropped to the bounding box of all its labels plus
a margin in mm per side (clipped to the volume), written with np.savez_compressed. Left out, as
train.py leaves them out of training: the split file's validation cases, and every case under a
validation root (`--val-roots`, by default TrainConfig's `../shared/data/cases/train`, the
hold-out that evaluation/run_local.sh scores). If the packed total exceeds --max-mb (10^6 bytes),
the margin shrinks (40 -> 25 -> 15 mm); if it is still too big, the largest packed cases are
skipped, and named. `pack_manifest.json` in the output folder records each crop.

The summary also counts the objects whose ROI, as the sampler chooses it from the object's
extent (at the inference margin, and at the widest training margin with its jitter), would be cut
by the crop where the full volume would not have cut it.
"""

from __future__ import annotations

import argparse
import io
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from model.config import ModelConfig
from model.roi import Roi, choose_roi
from model.training.data import Volume, find_cases, load_volume, split_cases

DEFAULT_VAL_ROOTS = ["../shared/data/cases/train"]  # = TrainConfig.val_roots: held out whole
FALLBACK_MARGINS_MM = (25.0, 15.0)
MANIFEST = "pack_manifest.json"
TRAIN_MARGIN_MAX = 1.5  # sampler: margin = box_margin x U(0.75, 1.5)
TRAIN_JITTER = 0.12  # sampler: centre jitter up to 12 % of the ROI side


@dataclass
class Case:
    """One source case, kept in memory cropped at the widest margin tried."""

    name: str
    source: Path
    shape: tuple[int, int, int]  # full volume (z,y,x)
    spacing_raw: np.ndarray | None  # as stored (x,y,z); None when the file has none
    spacing: tuple[float, float, float]  # z,y,x as load_volume reads it
    labels_lo: np.ndarray  # bounding box of all labels, full-volume voxels, hi exclusive
    labels_hi: np.ndarray
    offset: np.ndarray  # where `imgs`/`gts` start in the full volume
    imgs: np.ndarray
    gts: np.ndarray
    mb_in: float


@dataclass
class Packed:
    case: Case
    lo: np.ndarray  # crop in full-volume voxels (z,y,x), hi exclusive
    hi: np.ndarray
    payload: bytes

    @property
    def mb(self) -> float:
        return len(self.payload) / 1e6


@dataclass
class PackResult:
    packed: list[Packed]
    margin_mm: float
    held_out: list[Path] = field(default_factory=list)
    no_labels: list[Path] = field(default_factory=list)
    skipped: list[Packed] = field(default_factory=list)  # over --max-mb at the smallest margin


def crop_bounds(
    shape: tuple[int, ...], lo: np.ndarray, hi: np.ndarray, spacing_zyx: tuple[float, ...], margin_mm: float
) -> tuple[np.ndarray, np.ndarray]:
    """[lo, hi) grown by margin_mm on each side (whole voxels, rounded up), clipped to the volume."""
    pad = np.ceil(margin_mm / np.asarray(spacing_zyx, float) - 1e-9).astype(int)
    return np.maximum(np.asarray(lo) - pad, 0), np.minimum(np.asarray(hi) + pad, np.asarray(shape))


def _npz_bytes(imgs: np.ndarray, gts: np.ndarray, spacing_raw: np.ndarray | None) -> bytes:
    arrays = {"imgs": np.ascontiguousarray(imgs), "gts": np.ascontiguousarray(gts)}
    if spacing_raw is not None:
        arrays["spacing"] = spacing_raw
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def read_case(path: Path, widest_margin_mm: float) -> Case | None:
    """The case as train.py reads it, cropped at the widest margin; None if it has no labels."""
    vol: Volume = load_volume(path)
    with np.load(path, allow_pickle=False) as data:
        spacing_raw = np.asarray(data["spacing"]) if "spacing" in data else None
    if vol.n_classes == 0:
        return None
    idx = [np.flatnonzero(vol.gts.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)]
    lo = np.array([i[0] for i in idx])
    hi = np.array([i[-1] + 1 for i in idx])
    clo, chi = crop_bounds(vol.imgs.shape, lo, hi, vol.spacing, widest_margin_mm)
    sl = tuple(slice(a, b) for a, b in zip(clo, chi, strict=True))
    return Case(
        name=path.name,
        source=path,
        shape=vol.imgs.shape,  # type: ignore[arg-type]
        spacing_raw=spacing_raw,
        spacing=vol.spacing,
        labels_lo=lo,
        labels_hi=hi,
        offset=clo,
        imgs=vol.imgs[sl].copy(),
        gts=vol.gts[sl].copy(),
        mb_in=path.stat().st_size / 1e6,
    )


def pack_case(case: Case, margin_mm: float) -> Packed:
    """The case cropped at margin_mm (at most the margin it was read with)."""
    lo, hi = crop_bounds(case.shape, case.labels_lo, case.labels_hi, case.spacing, margin_mm)
    sl = tuple(slice(a - o, b - o) for a, b, o in zip(lo, hi, case.offset, strict=True))
    return Packed(case, lo, hi, _npz_bytes(case.imgs[sl], case.gts[sl], case.spacing_raw))


def roi_fit(packed: Packed, config: ModelConfig) -> list[tuple[float, float]]:
    """Per object: the share of its ROI that the crop cuts off, at the inference margin and for the
    widest training ROI; 0 where the crop takes nothing away that the full volume had.

    The ROI is choose_roi() on the object's bounding box in the full volume. The widest training
    ROI has the margin x1.5 and the 12 % jitter both ways, clipped to the full volume (the
    sampler keeps ROIs inside the volume too).
    """
    case = packed.case
    shape = np.array(case.shape)
    out = []
    for sl in ndimage.find_objects(case.gts):
        if sl is None:
            continue
        lo = np.array([s.start for s in sl]) + case.offset
        hi = np.array([s.stop for s in sl]) + case.offset - 1  # inclusive, as object_extent
        lost = []
        for margin, jitter in (
            (config.box_margin, 0.0),
            (config.box_margin * TRAIN_MARGIN_MAX, TRAIN_JITTER),
        ):
            roi: Roi = choose_roi(case.shape, case.spacing, (lo, hi), config, margin=margin)
            pad = np.ceil(jitter * np.array(roi.size))
            need_lo = np.maximum(np.array(roi.lo) - pad, 0)
            need_hi = np.minimum(np.array(roi.hi) + pad, shape)
            inside = np.clip(np.minimum(need_hi, packed.hi) - np.maximum(need_lo, packed.lo), 0, None)
            lost.append(float(1.0 - np.prod(inside) / np.prod(need_hi - need_lo)))
        out.append((lost[0], lost[1]))
    return out


def _resolved(paths: list[Path]) -> set[Path]:
    return {p.resolve() for p in paths}


def pack(
    roots: list[Path],
    split_file: Path,
    max_mb: float,
    margin_mm: float = 40.0,
    val_roots: list[Path] | None = None,
    fallback_mm: tuple[float, ...] = FALLBACK_MARGINS_MM,
) -> PackResult:
    """Choose what to write (nothing is written): the widest margin whose total fits max_mb,
    else the smallest margin with the largest cases skipped until it fits."""
    val_roots = [Path(p) for p in DEFAULT_VAL_ROOTS] if val_roots is None else val_roots
    files = find_cases(roots)
    train, val = split_cases(files, split_file)
    in_val_root = _resolved(find_cases([r for r in val_roots if r.exists()]))
    held_out = val + [f for f in train if f.resolve() in in_val_root]
    train = [f for f in train if f.resolve() not in in_val_root]
    names: dict[str, Path] = {}
    for f in train:
        if f.name in names:
            raise ValueError(f"two training cases share the name {f.name}: {names[f.name]} and {f}")
        names[f.name] = f

    margins = [margin_mm] + sorted({m for m in fallback_mm if m < margin_mm}, reverse=True)
    cases, no_labels = [], []
    for f in train:
        case = read_case(f, margins[0])
        if case is None:
            no_labels.append(f)
        else:
            cases.append(case)

    limit = max_mb * 1e6
    for margin in margins:
        packed = [pack_case(c, margin) for c in cases]
        total = sum(len(p.payload) for p in packed)
        if total <= limit:
            return PackResult(packed, margin, held_out, no_labels)
    skipped = []
    for p in sorted(packed, key=lambda p: len(p.payload), reverse=True):
        if total <= limit:
            break
        skipped.append(p)
        total -= len(p.payload)
    kept = [p for p in packed if all(p is not s for s in skipped)]
    return PackResult(kept, margins[-1], held_out, no_labels, skipped)


def write(result: PackResult, out: Path, settings: dict) -> None:
    """Write the packed files and the manifest; remove files an earlier manifest wrote that are
    no longer packed (other .npz files are left alone, but named: train.py would read them)."""
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / MANIFEST
    keep = {p.case.name for p in result.packed}
    if manifest.exists():
        for entry in json.loads(manifest.read_text()).get("cases", []):
            old = out / entry["name"]
            if entry["name"] not in keep and old.exists():
                old.unlink()
    for p in result.packed:
        (out / p.case.name).write_bytes(p.payload)
    strays = sorted(f.name for f in out.rglob("*.npz") if f.relative_to(out).as_posix() not in keep)
    if strays:
        print(f"warning: {len(strays)} other .npz files in {out} will be trained on too: {strays[:5]}")
    record = {
        **settings,
        "margin_mm_used": result.margin_mm,
        "cases": [
            {
                "name": p.case.name,
                "source": str(p.case.source),
                "shape": list(p.case.shape),
                "crop_lo_zyx": p.lo.tolist(),
                "crop_hi_zyx": p.hi.tolist(),
                "mb_in": round(p.case.mb_in, 4),
                "mb_out": round(p.mb, 4),
            }
            for p in result.packed
        ],
        "skipped_over_max_mb": [p.case.name for p in result.skipped],
        "held_out": [str(f) for f in result.held_out],
        "no_labels": [str(f) for f in result.no_labels],
    }
    manifest.write_text(json.dumps(record, indent=1) + "\n")


def summary(result: PackResult, config: ModelConfig | None = None) -> str:
    """A table per modality (the file-name prefix): cases, MB of the source files and packed, and
    how many objects' ROIs the crop cuts (with the mean share cut off, over those cut)."""
    config = config or ModelConfig()
    groups: dict[str, list[Packed]] = defaultdict(list)
    for p in result.packed:
        groups[p.case.name.split("_")[0]].append(p)
    groups["total"] = list(result.packed)
    head = (
        f"{'modality':<12}{'cases':>6}{'MB in':>9}{'MB out':>9}{'objects':>9}"
        f"{'ROI 1.6x cut':>14}{'(lost)':>8}{'ROI max cut':>13}{'(lost)':>8}"
    )
    lines = [head, "-" * len(head)]
    for key, ps in sorted(groups.items(), key=lambda kv: (kv[0] == "total", kv[0])):
        fits = np.array([f for p in ps for f in roi_fit(p, config)]).reshape(-1, 2)
        cols = []
        for j in range(2):
            cut = fits[:, j][fits[:, j] > 0]
            cols.append(
                f"{cut.size:>{14 if j == 0 else 13}d}{f'{100 * cut.mean():.0f}%' if cut.size else '-':>8}"
            )
        mb_in, mb_out = sum(p.case.mb_in for p in ps), sum(p.mb for p in ps)
        lines.append(f"{key:<12}{len(ps):>6d}{mb_in:>9.2f}{mb_out:>9.2f}{len(fits):>9d}" + "".join(cols))
    lines.append(
        f"margin {result.margin_mm:g} mm per side; held out (split + validation roots): "
        f"{len(result.held_out)} cases; without labels: {len(result.no_labels)}"
    )
    if result.skipped:
        lines.append(
            f"skipped over --max-mb ({len(result.skipped)}, largest first): "
            + ", ".join(f"{p.case.name} ({p.mb:.2f} MB)" for p in result.skipped)
        )
    lines.append(
        "ROI cut: objects whose ROI (bounding box x margin, sides >= min_roi_mm) the crop cuts where the "
        "full volume would not; 'max' is the widest training ROI (x1.5 margin, 12 % jitter)."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roots", type=Path, nargs="+", required=True, help="folders searched for .npz")
    parser.add_argument("--split", type=Path, default=Path("configs/split.json"), help="validation split")
    parser.add_argument(
        "--val-roots",
        type=Path,
        nargs="*",
        default=[Path(p) for p in DEFAULT_VAL_ROOTS],
        help="folders held out whole (default: %(default)s); pass none to pack them too",
    )
    parser.add_argument("--out", type=Path, default=Path("data_cache/train"))
    parser.add_argument("--max-mb", type=float, default=48.0, help="packed total, 10^6 bytes")
    parser.add_argument("--margin-mm", type=float, default=40.0, help="margin around the labels, per side")
    args = parser.parse_args(argv)
    result = pack(args.roots, args.split, args.max_mb, args.margin_mm, args.val_roots)
    settings = {
        "roots": [str(r) for r in args.roots],
        "split": str(args.split),
        "val_roots": [str(r) for r in args.val_roots],
        "max_mb": args.max_mb,
        "margin_mm": args.margin_mm,
    }
    write(result, args.out, settings)
    print(summary(result))
    print(f"wrote {len(result.packed)} files to {args.out} ({sum(p.mb for p in result.packed):.2f} MB)")


if __name__ == "__main__":
    main()
