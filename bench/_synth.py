"""Synthetic benchmark inputs: big CT-like cases and per-class probabilities for the fusion bench.

Why its own generator: the bench needs volumes of 300x512x512 and 1000x600x600 made in seconds
and without full-volume float temporaries (the 1000x600x600 case must be made on a small
machine too). Objects are ellipsoids painted inside their own bounding boxes; the image is built
slab by slab. Boxes follow the organisers' rule through ``model.boxes``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model.atomic import replacing
from model.boxes import boxes_from_labels, relabel_sequential


def _ellipsoid(radii: np.ndarray) -> np.ndarray:
    """Boolean ellipsoid filling its bounding box (semi-axes ``radii`` in voxels)."""
    r = np.maximum(radii, 1.0)
    axes = [np.linspace(-1.0, 1.0, 2 * int(np.ceil(x)) + 1) for x in r]
    zz, yy, xx = np.meshgrid(*axes, indexing="ij", sparse=True)
    return zz**2 + yy**2 + xx**2 <= 1.0


def synth_labels(rng: np.random.Generator, shape: tuple[int, int, int], n_classes: int) -> np.ndarray:
    """uint8 labels 1..n (sequential) of ``n_classes`` ellipsoids in the middle of the volume.

    Radii are 5-15 % of each axis, so objects look like organs of a CT, and later objects may
    overlap earlier ones (as organs touch). Retries until every class keeps at least one voxel.
    """
    labels = np.zeros(shape, np.uint8)
    dims = np.asarray(shape, float)
    for k in range(1, n_classes + 1):
        radii = dims * rng.uniform(0.05, 0.15, 3)
        centre = dims * rng.uniform(0.2, 0.8, 3)
        ball = _ellipsoid(radii)
        lo = np.round(centre - np.asarray(ball.shape) // 2).astype(int)
        src = tuple(slice(max(0, -a), min(b, n - a)) for a, b, n in zip(lo, ball.shape, shape, strict=True))
        dst = tuple(slice(max(0, a), min(a + b, n)) for a, b, n in zip(lo, ball.shape, shape, strict=True))
        labels[dst][ball[src]] = k
    return relabel_sequential(labels)


def synth_image(rng: np.random.Generator, labels: np.ndarray, slab: int = 32) -> np.ndarray:
    """uint8 CT-like image: air outside an elliptic body, soft tissue, brighter/darker organs, noise."""
    d, h, w = labels.shape
    lut = np.zeros(256, np.float32)
    lut[0] = 110.0
    lut[1:] = rng.uniform(60, 220, 255)
    yy, xx = np.ogrid[:h, :w]
    body = ((yy - h / 2) / (0.45 * h)) ** 2 + ((xx - w / 2) / (0.48 * w)) ** 2 <= 1.0
    out = np.empty(labels.shape, np.uint8)
    for z0 in range(0, d, slab):
        lab = labels[z0 : z0 + slab]
        v = lut[lab]
        v[:, ~body] = 5.0
        v += rng.normal(0.0, 12.0, v.shape).astype(np.float32)
        np.clip(v, 0, 255, out=v)
        out[z0 : z0 + slab] = v.astype(np.uint8)
    return out


def make_case(path: Path, shape: tuple[int, int, int], n_classes: int, seed: int = 0) -> Path:
    """Write a box-step case file (imgs, spacing x,y,z, boxes) unless it already exists.

    Compressed like the organisers' files, so reading it costs what a real case costs.
    """
    path = Path(path)
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    labels = synth_labels(rng, shape, n_classes)
    imgs = synth_image(rng, labels)
    boxes = np.empty(int(labels.max()), dtype=object)
    for i, b in enumerate(boxes_from_labels(labels, rng)):
        boxes[i] = {k: np.int64(v) for k, v in b.to_challenge().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp, tmp.open("wb") as fh:
        np.savez_compressed(fh, imgs=imgs, spacing=np.array([0.8, 0.8, 1.5]), boxes=boxes)
    return path


def synth_probs(
    rng: np.random.Generator, labels: np.ndarray, margin: float = 0.25, spurious: int = 2
) -> list[tuple[int, tuple[slice, slice, slice], np.ndarray, tuple[int, int, int]]]:
    """Per class: (label, roi, float16 prob in the roi, one fg click), like a predictor's output.

    The ROI is the class's bounding box widened by ``margin`` of its size per side (so ROIs of
    touching organs overlap); the prob is a blurred mask (0.5 near the boundary) with noise and
    ``spurious`` far blobs at 0.7 that the component filter must remove.
    """
    from scipy import ndimage as ndi

    out = []
    for k in range(1, int(labels.max()) + 1):
        sl = ndi.find_objects((labels == k).view(np.uint8))[0]
        roi = tuple(
            slice(
                max(0, s.start - int(margin * (s.stop - s.start))),
                min(n, s.stop + int(margin * (s.stop - s.start))),
            )
            for s, n in zip(sl, labels.shape, strict=True)
        )
        m = (labels[roi] == k).astype(np.float32)
        p = ndi.gaussian_filter(m, 1.5)
        p += rng.normal(0.0, 0.05, p.shape).astype(np.float32)
        for _ in range(spurious):
            c = [int(rng.integers(0, n)) for n in p.shape]
            p[tuple(slice(max(0, x - 2), x + 3) for x in c)] = 0.7
        np.clip(p, 0.0, 1.0, out=p)
        inside = np.argwhere(m > 0)
        click = tuple(int(v + s.start) for v, s in zip(inside[len(inside) // 2], roi, strict=True))
        out.append((k, roi, p.astype(np.float16), click))
    return out
