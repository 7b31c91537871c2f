"""Domain-randomised synthetic volumes: the project's own demo cases and a training source.

Real labelled 3-D data is scarce here, so the generator produces what the network must not
over-fit to: random smooth blobs, thin tubes, multi-component objects and (on request) organ-sized
objects with flat faces, touching each other, with random intensity, texture and contrast per
label, noise, bias field, blur and anisotropic spacing, all mapped to uint8 0-255 like the
organisers' preprocessing.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int, int], scale: float) -> np.ndarray:
    """Band-limited noise in [-1, 1]: coarse noise upsampled, cheap even for 128^3 volumes."""
    coarse = tuple(max(2, int(round(s / scale))) for s in shape)
    field = rng.standard_normal(coarse).astype(np.float32)
    field = ndimage.zoom(field, [s / c for s, c in zip(shape, coarse, strict=True)], order=1)
    field = field[: shape[0], : shape[1], : shape[2]]
    pad = [(0, s - f) for s, f in zip(shape, field.shape, strict=True)]
    field = np.pad(field, pad, mode="edge")
    return field / (np.abs(field).max() + 1e-6)


def _blob(rng: np.random.Generator, shape: tuple[int, int, int], spacing: np.ndarray) -> np.ndarray:
    """A smooth, irregular closed object: an ellipsoid with a noisy radius."""
    centre = np.array([rng.uniform(0.25, 0.75) * s for s in shape])
    extent_mm = np.array(shape) * spacing
    radii_mm = rng.uniform(0.06, 0.22, size=3) * extent_mm.min() * rng.uniform(0.8, 1.6, size=3)
    grids = np.ogrid[: shape[0], : shape[1], : shape[2]]
    dist = sum(((g - c) * sp / r) ** 2 for g, c, sp, r in zip(grids, centre, spacing, radii_mm, strict=True))
    wobble = _smooth_noise(rng, shape, scale=max(4.0, min(shape) / 4)) * rng.uniform(0.1, 0.45)
    return np.sqrt(dist) + wobble < 1.0


def _tube(
    rng: np.random.Generator, shape: tuple[int, int, int], spacing: np.ndarray, thick: bool = False
) -> np.ndarray:
    """A curved tube: a smoothed random walk, thickened by a distance threshold. Thin (1-2.5
    voxels, vessel-like) unless `thick`: then 4-10 % of the volume's shortest side in radius, as
    an aorta or a bowel loop is."""
    n = 60
    start = np.array([rng.uniform(0.2, 0.8) * s for s in shape])
    steps = ndimage.gaussian_filter1d(rng.standard_normal((n, 3)), sigma=6, axis=0)
    steps /= np.linalg.norm(steps, axis=1, keepdims=True) + 1e-6
    path = start + np.cumsum(steps * (min(shape) / 45.0), axis=0)
    path = np.clip(np.round(path), 0, np.array(shape) - 1).astype(int)
    seed = np.ones(shape, dtype=bool)
    seed[path[:, 0], path[:, 1], path[:, 2]] = False
    if thick:
        radius_mm = rng.uniform(0.04, 0.10) * float(np.min(np.array(shape) * spacing))
    else:
        radius_mm = rng.uniform(1.0, 2.5) * spacing.min()
    return ndimage.distance_transform_edt(seed, sampling=spacing) <= radius_mm


def _large(rng: np.random.Generator, shape: tuple[int, int, int], spacing: np.ndarray) -> np.ndarray:
    """An organ-sized object: half of the time a thick curved tube (an aorta), else a cut
    ellipsoid (a lung, a liver: `_cut_ellipsoid`).

    The blobs alone are rounded and smaller than the box around them off its middle slice; a
    network that saw only those learned to round a large object off inside its box (the held-out
    lungs, absent from the real training cases, came out as ellipsoids inside the lungs, the
    aorta as a blob through the heart)."""
    if rng.random() < 0.5:
        return _tube(rng, shape, spacing, thick=True)
    return _cut_ellipsoid(rng, shape, spacing)


def _cut_ellipsoid(rng: np.random.Generator, shape: tuple[int, int, int], spacing: np.ndarray) -> np.ndarray:
    """A quarter to most of the volume across, cut flat by one or two planes near its centre, as
    organs are where they meet a neighbour or a wall."""
    centre = np.array([rng.uniform(0.35, 0.65) * s for s in shape])
    radii_mm = rng.uniform(0.25, 0.45, size=3) * np.array(shape) * spacing
    grids = np.ogrid[: shape[0], : shape[1], : shape[2]]
    offsets = [(g - c) * sp for g, c, sp in zip(grids, centre, spacing, strict=True)]
    dist = sum((o / r) ** 2 for o, r in zip(offsets, radii_mm, strict=True))
    wobble = _smooth_noise(rng, shape, scale=max(4.0, min(shape) / 3)) * rng.uniform(0.05, 0.25)
    mask = np.sqrt(dist) + wobble < 1.0
    for _ in range(int(rng.integers(1, 3))):
        normal = rng.standard_normal(3)
        normal /= np.linalg.norm(normal) + 1e-6
        # the plane passes 0-60 % of the way from the centre to the surface along its normal
        reach = float(np.sqrt(np.sum((normal * radii_mm) ** 2)))
        depth = rng.uniform(0.0, 0.6) * reach
        mask &= sum(n * o for n, o in zip(normal, offsets, strict=True)) < depth
    return mask


def _multi(rng: np.random.Generator, shape: tuple[int, int, int], spacing: np.ndarray) -> np.ndarray:
    """Several small separate blobs carrying one label (lesions, nodules)."""
    out = np.zeros(shape, dtype=bool)
    for _ in range(int(rng.integers(2, 5))):
        small = _blob(rng, shape, spacing * rng.uniform(1.8, 3.0))
        out |= small
    return out


def synth_labels(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    n_objects: int,
    spacing_zyx: np.ndarray,
    p_large: float = 0.0,
) -> np.ndarray:
    """Label map 1..n (sequential) of random objects; later objects are painted over earlier ones
    only where they overlap, so neighbours touch as organs do. A share `p_large` of the objects
    is organ-sized (`_large`); at 0 no extra draw is made, so older seeds give the same cases."""
    labels = np.zeros(shape, dtype=np.uint8)
    k = 0
    for _ in range(n_objects * 3):
        if k == n_objects:
            break
        large = p_large > 0 and rng.random() < p_large
        kind = "large" if large else rng.choice(["blob", "blob", "tube", "multi"])
        mask = {"blob": _blob, "tube": _tube, "multi": _multi, "large": _large}[kind](rng, shape, spacing_zyx)
        mask &= labels == 0 if rng.random() < 0.5 else np.ones_like(mask)
        if mask.sum() < 30:
            continue
        k += 1
        labels[mask] = k
    # painting over can split or erase earlier objects: keep only those still present, sequentially
    present = [v for v in range(1, k + 1) if (labels == v).sum() >= 20]
    lut = np.zeros(k + 1, dtype=np.uint8)
    lut[present] = np.arange(1, len(present) + 1)
    return lut[labels]


def synth_image(rng: np.random.Generator, labels: np.ndarray, spacing_zyx: np.ndarray) -> np.ndarray:
    """uint8 image for a label map: per-label intensity and texture, bias field, blur and noise."""
    shape = labels.shape
    img = rng.uniform(0.2, 0.6) + 0.15 * _smooth_noise(rng, shape, scale=rng.uniform(3, 12))
    for k in range(1, int(labels.max()) + 1):
        mask = labels == k
        level = rng.uniform(0.0, 1.0)
        texture = rng.uniform(0.0, 0.15) * _smooth_noise(rng, shape, scale=rng.uniform(2, 6))
        img = np.where(mask, level + texture, img)
    img = img * (1.0 + rng.uniform(0.0, 0.4) * _smooth_noise(rng, shape, scale=max(shape) / 2))
    sigma = rng.uniform(0.0, 1.2) / (spacing_zyx / spacing_zyx.min())
    img = ndimage.gaussian_filter(img, sigma=sigma)
    img = img + rng.normal(0.0, rng.uniform(0.01, 0.08), size=shape)
    lo, hi = np.percentile(img, [0.5, 99.5])
    return np.clip((img - lo) / (hi - lo + 1e-6) * 255.0, 0, 255).astype(np.uint8)


def random_spacing_zyx(rng: np.random.Generator) -> np.ndarray:
    """In-plane 0.5-2 mm, slices 1-4x thicker half of the time (CT/MR-like anisotropy)."""
    inplane = rng.uniform(0.5, 2.0)
    z = inplane * (rng.uniform(1.0, 4.0) if rng.random() < 0.5 else 1.0)
    return np.array([z, inplane, inplane])


def synth_case(
    rng: np.random.Generator, shape: tuple[int, int, int], n_objects: int, p_large: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One synthetic case: (imgs uint8 (z,y,x), labels uint8 1..n, spacing stored as x,y,z).

    Fewer than n objects come back when random objects are too small or fully painted over.
    `p_large`: the share of organ-sized objects (`synth_labels`).
    """
    spacing_zyx = random_spacing_zyx(rng)
    labels = synth_labels(rng, shape, n_objects, spacing_zyx, p_large)
    imgs = synth_image(rng, labels, spacing_zyx)
    return imgs, labels, spacing_zyx[::-1].astype(np.float64)
