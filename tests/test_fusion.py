"""Tests of model.fusion: probability competition, component clean-up, both backends."""

from __future__ import annotations

import numpy as np
import pytest

from model.boxes import Box
from model.fusion import ClassProb, fuse, resolve_backend

SHAPE = (20, 40, 40)


def _ball(shape: tuple[int, int, int], center: tuple[int, int, int], radius: float) -> np.ndarray:
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    d2 = (zz - center[0]) ** 2 + (yy - center[1]) ** 2 + (xx - center[2]) ** 2
    return d2 <= radius**2


def _full_roi(shape: tuple[int, int, int]) -> tuple[slice, slice, slice]:
    return (slice(0, shape[0]), slice(0, shape[1]), slice(0, shape[2]))


def _box_around(z_mid: int, y: tuple[int, int], x: tuple[int, int], z: tuple[int, int]) -> Box:
    return Box(z_min=z[0], z_max=z[1], z_mid=z_mid, y_min=y[0], y_max=y[1], x_min=x[0], x_max=x[1])


def test_overlapping_classes_resolved_by_probability() -> None:
    # Two slabs, each in its own ROI, overlapping on x in 15..19: they tie on x == 15 (-> the
    # lower label), class 1 is more confident on x == 16, class 2 on x in 17..19.
    p1 = np.zeros(SHAPE, np.float32)
    p2 = np.zeros(SHAPE, np.float32)
    p1[5:15, 10:30, 5:20] = 0.8
    p2[5:15, 10:30, 15:35] = 0.7
    p2[5:15, 10:30, 15] = 0.8  # tie -> 1
    p2[5:15, 10:30, 17:20] = 0.9  # class 2 wins here
    roi1 = (slice(0, 20), slice(0, 40), slice(0, 25))
    roi2 = (slice(0, 20), slice(0, 40), slice(10, 40))
    classes = [
        ClassProb(2, roi2, p2[roi2].copy(), fg_clicks=[(10, 20, 30)]),
        ClassProb(1, roi1, p1[roi1].copy(), fg_clicks=[(10, 20, 8)]),
    ]
    seg = fuse(SHAPE, classes, backend="cpu")
    assert seg.dtype == np.uint8 and seg.shape == SHAPE
    row = seg[10, 20]
    assert row.tolist() == [0] * 5 + [1] * 12 + [2] * 18 + [0] * 5
    assert int((seg == 1).sum()) == 10 * 20 * 12
    assert int((seg == 2).sum()) == 10 * 20 * 18
    assert not seg[:5].any() and not seg[15:].any()


def test_fragment_cut_off_by_a_stronger_class_is_dropped() -> None:
    # Class 2 wins a strip (x 15..16) cut off from its clicked body by class 1 (x 17..19);
    # that strip in turn cuts x 17..19 off class 1's clicked body. Both fragments are
    # unprompted components of their class and go to background.
    p1 = np.zeros(SHAPE, np.float32)
    p2 = np.zeros(SHAPE, np.float32)
    p1[5:15, 10:30, 5:20] = 0.8
    p2[5:15, 10:30, 15:35] = 0.7
    p2[5:15, 10:30, 15:17] = 0.9
    classes = [
        ClassProb(1, _full_roi(SHAPE), p1, fg_clicks=[(10, 20, 8)]),
        ClassProb(2, _full_roi(SHAPE), p2, fg_clicks=[(10, 20, 30)]),
    ]
    row = fuse(SHAPE, classes, backend="cpu")[10, 20]
    assert row.tolist() == [0] * 5 + [1] * 10 + [0] * 5 + [2] * 15 + [0] * 5


def test_threshold_is_strict_and_below_is_background() -> None:
    p = np.full((2, 2, 2), 0.5, np.float32)
    p[0, 0, 0] = 0.51
    seg = fuse((2, 2, 2), [ClassProb(1, _full_roi((2, 2, 2)), p)], backend="cpu")
    assert seg.sum() == 1 and seg[0, 0, 0] == 1


def test_spurious_far_component_dropped() -> None:
    main = _ball(SHAPE, (10, 12, 12), 5)
    far = _ball(SHAPE, (10, 32, 32), 3)
    prob = np.where(main | far, 0.9, 0.1).astype(np.float32)
    box = _box_around(10, (7, 17), (7, 17), (5, 15))
    seg = fuse(SHAPE, [ClassProb(1, _full_roi(SHAPE), prob, box=box)], backend="cpu")
    assert np.array_equal(seg == 1, main)
    assert int(seg.sum()) == int(main.sum())


def test_clicked_component_kept_even_if_small_and_outside_box() -> None:
    main = _ball(SHAPE, (10, 12, 12), 5)
    clicked = _ball(SHAPE, (10, 32, 32), 2)  # smaller than `main`, outside the box
    spurious = _ball(SHAPE, (3, 33, 8), 2)
    prob = np.where(main | clicked | spurious, 0.9, 0.0).astype(np.float32)
    box = _box_around(10, (7, 17), (7, 17), (5, 15))
    cls = ClassProb(1, _full_roi(SHAPE), prob, fg_clicks=[(10, 32, 32)], box=box)
    seg = fuse(SHAPE, [cls], backend="cpu")
    assert np.array_equal(seg == 1, main | clicked)

    # Clicks alone, no box: the clicked small one is kept and the larger unclicked one dropped.
    cls = ClassProb(1, _full_roi(SHAPE), prob, fg_clicks=[(10, 32, 32)], box=None)
    seg = fuse(SHAPE, [cls], backend="cpu")
    assert np.array_equal(seg == 1, clicked)


def test_box_rectangle_on_middle_slice_only() -> None:
    # Component A meets the box prism but not its middle-slice rectangle; B meets the rectangle.
    a = np.zeros(SHAPE, bool)
    a[2:5, 5:25, 5:25] = True  # the largest, slices 2..4 only
    b = np.zeros(SHAPE, bool)
    b[8:12, 30:34, 30:34] = True
    prob = np.where(a | b, 0.9, 0.0).astype(np.float32)
    box = _box_around(10, (31, 31), (32, 33), (2, 12))
    seg = fuse(SHAPE, [ClassProb(1, _full_roi(SHAPE), prob, box=box)], backend="cpu")
    assert np.array_equal(seg == 1, b)


def test_no_box_no_click_keeps_largest() -> None:
    big = _ball(SHAPE, (10, 12, 12), 5)
    small = _ball(SHAPE, (10, 32, 32), 3)
    prob = np.where(big | small, 0.9, 0.0).astype(np.float32)
    seg = fuse(SHAPE, [ClassProb(3, _full_roi(SHAPE), prob)], backend="cpu")
    assert set(np.unique(seg).tolist()) == {0, 3}
    assert np.array_equal(seg == 3, big)


def test_largest_tie_goes_to_first_in_raster_order() -> None:
    a = np.zeros(SHAPE, bool)
    a[15:17, 2:4, 2:4] = True
    b = np.zeros(SHAPE, bool)
    b[2:4, 30:32, 30:32] = True  # same size, earlier in raster order (lower z)
    prob = np.where(a | b, 1.0, 0.0).astype(np.float16)
    seg = fuse(SHAPE, [ClassProb(1, _full_roi(SHAPE), prob)], backend="cpu")
    assert np.array_equal(seg == 1, b)


def test_all_classes_empty_gives_zeros() -> None:
    classes = [
        ClassProb(k, (slice(2, 10), slice(3, 13), slice(4, 14)), np.full((8, 10, 10), 0.3, np.float32))
        for k in (1, 2, 3)
    ]
    seg = fuse(SHAPE, classes, backend="cpu")
    assert seg.shape == SHAPE and seg.dtype == np.uint8 and not seg.any()
    assert not fuse(SHAPE, [], backend="cpu").any()


def test_rois_paste_at_their_place_and_clicks_outside_roi_ignored() -> None:
    prob = np.zeros((4, 6, 8), np.float32)
    prob[1:3, 2:4, 3:6] = 0.9
    roi = (slice(10, 14), slice(20, 26), slice(30, 38))
    seg = fuse(SHAPE, [ClassProb(7, roi, prob, fg_clicks=[(0, 0, 0)])], backend="cpu")
    expect = np.zeros(SHAPE, np.uint8)
    expect[11:13, 22:24, 33:36] = 7
    assert np.array_equal(seg, expect)


def test_torch_cpu_tensors_accepted() -> None:
    torch = pytest.importorskip("torch")
    main = _ball(SHAPE, (10, 12, 12), 5)
    far = _ball(SHAPE, (10, 32, 32), 3)
    prob = np.where(main | far, 0.9, 0.1).astype(np.float32)
    ref = fuse(SHAPE, [ClassProb(1, _full_roi(SHAPE), prob)], backend="cpu")
    for dt in (torch.float32, torch.float16):
        t = torch.from_numpy(prob).to(dt)
        seg = fuse(SHAPE, [ClassProb(1, _full_roi(SHAPE), t)], backend="cpu")
        assert np.array_equal(seg, ref)
    assert np.array_equal(ref == 1, main)


def test_bad_inputs_rejected() -> None:
    p = np.zeros((2, 2, 2), np.float32)
    roi = (slice(0, 2), slice(0, 2), slice(0, 2))
    with pytest.raises(ValueError, match="shape"):
        fuse(SHAPE, [ClassProb(1, roi, np.zeros((3, 2, 2), np.float32))], backend="cpu")
    with pytest.raises(ValueError, match="duplicate"):
        fuse(SHAPE, [ClassProb(1, roi, p), ClassProb(1, roi, p)], backend="cpu")
    with pytest.raises(ValueError, match="uint8"):
        fuse(SHAPE, [ClassProb(256, roi, p)], backend="cpu")
    with pytest.raises(ValueError, match="inside volume"):
        fuse(SHAPE, [ClassProb(1, (slice(19, 21), slice(0, 2), slice(0, 2)), p)], backend="cpu")
    with pytest.raises(ValueError, match="backend"):
        fuse(SHAPE, [], backend="tpu")


def test_auto_backend_without_cupy_is_silent(recwarn: pytest.WarningsRecorder) -> None:
    backend = resolve_backend("auto")
    assert backend in ("cpu", "cuda")
    seg = fuse((2, 2, 2), [ClassProb(1, _full_roi((2, 2, 2)), np.ones((2, 2, 2), np.float32))])
    assert seg.all()
    assert len(recwarn) == 0


def test_locked_class_keeps_its_mask_whole_against_a_confident_lower_label() -> None:
    # class 2 is locked (done): two components, neither holds a click nor meets a box rectangle,
    # and class 1 claims the whole volume with probability 1.0 (which would win the tie)
    locked = np.zeros(SHAPE, bool)
    locked[2:6, 2:8, 2:8] = True
    locked[12:16, 25:35, 25:35] = True
    classes = [
        ClassProb(1, _full_roi(SHAPE), np.ones(SHAPE, np.float16), fg_clicks=[(10, 20, 20)]),
        ClassProb(2, _full_roi(SHAPE), locked.astype(np.float16), locked=True),
    ]
    seg = fuse(SHAPE, classes, backend="cpu")
    np.testing.assert_array_equal(seg == 2, locked)
    np.testing.assert_array_equal(seg == 1, ~locked)
    unlocked = fuse(SHAPE, [ClassProb(2, _full_roi(SHAPE), locked.astype(np.float16))], backend="cpu")
    assert (unlocked == 2).sum() < locked.sum()  # unlocked, the clean-up keeps one component only


# ------------------------------------------------------------------------------------------
# GPU: cupy backend == cc3d backend


def _cuda_or_skip() -> None:
    from model.fusion import cuda_available

    if not cuda_available():
        pytest.skip("cupy with a CUDA device is not available")


def _random_classes(rng: np.random.Generator, shape: tuple[int, int, int], n: int) -> list[ClassProb]:
    """Noisy overlapping ROIs: many small components, ties, clicks and boxes."""
    out = []
    for k in range(1, n + 1):
        size = [int(rng.integers(s // 3, s + 1)) for s in shape]
        start = [int(rng.integers(0, s - z + 1)) for s, z in zip(shape, size, strict=True)]
        roi = tuple(slice(a, a + z) for a, z in zip(start, size, strict=True))
        prob = (rng.integers(0, 8, size=size) / 8.0).astype(np.float16)  # coarse values: many ties
        clicks = [tuple(int(rng.integers(r.start, r.stop)) for r in roi) for _ in range(2)]
        zm = int(rng.integers(roi[0].start, roi[0].stop))
        box = _box_around(
            zm, (roi[1].start, roi[1].start + size[1] // 4), (roi[2].start, roi[2].stop - 1), (0, 0)
        )
        out.append(ClassProb(k, roi, prob, fg_clicks=clicks, box=box if k % 2 else None))
    return out


def _structured_classes(shape: tuple[int, int, int]) -> list[ClassProb]:
    rng = np.random.default_rng(3)
    out = []
    for k in range(1, 6):
        c = tuple(int(rng.integers(4, s - 4)) for s in shape)
        main = _ball(shape, c, 6)
        far = _ball(shape, tuple(int(rng.integers(2, s - 2)) for s in shape), 2)
        prob = np.where(main, 0.6 + 0.05 * k, np.where(far, 0.7, 0.05)).astype(np.float32)
        out.append(
            ClassProb(k, _full_roi(shape), prob, box=_box_around(c[0], (c[1], c[1]), (c[2], c[2]), (0, 0)))
        )
    return out


@pytest.mark.gpu
def test_cuda_backend_equals_cpu_backend_random() -> None:
    _cuda_or_skip()
    rng = np.random.default_rng(0)
    for trial in range(5):
        classes = _random_classes(rng, (24, 40, 36), n=6)
        a = fuse((24, 40, 36), classes, backend="cpu")
        b = fuse((24, 40, 36), classes, backend="cuda")
        assert np.array_equal(a, b), f"trial {trial}"
        assert a.any()


@pytest.mark.gpu
def test_cuda_backend_equals_cpu_backend_structured_and_torch_cuda() -> None:
    _cuda_or_skip()
    torch = pytest.importorskip("torch")
    shape = (32, 48, 48)
    classes = _structured_classes(shape)
    a = fuse(shape, classes, backend="cpu")
    b = fuse(shape, classes, backend="cuda")
    assert np.array_equal(a, b)
    if torch.cuda.is_available():
        gpu = [
            ClassProb(c.label, c.roi, torch.from_numpy(c.prob).cuda().half(), c.fg_clicks, c.box)
            for c in classes
        ]
        half = [ClassProb(c.label, c.roi, c.prob.astype(np.float16), c.fg_clicks, c.box) for c in classes]
        assert np.array_equal(fuse(shape, gpu, backend="cuda"), fuse(shape, half, backend="cpu"))


@pytest.mark.gpu
def test_cuda_backend_equals_cpu_backend_real_label_maps(real_cases_dir) -> None:
    """Real label maps (the demo cases' ground truth) turned into noisy probabilities."""
    _cuda_or_skip()
    files = sorted((real_cases_dir / "gts").glob("*.npz"))
    if not files:
        pytest.skip(f"no real label maps under {real_cases_dir / 'gts'} (SEGFM_CASES)")
    rng = np.random.default_rng(1)
    for f in files[:4]:
        gts = np.load(f, allow_pickle=True)["gts"]
        shape = tuple(int(s) for s in gts.shape)
        classes = []
        for k in range(1, int(gts.max()) + 1):
            m = gts == k
            if not m.any():
                continue
            prob = np.clip(m * 0.8 + rng.normal(0, 0.25, shape), 0, 1).astype(np.float16)
            z = np.flatnonzero(m.any(axis=(1, 2)))
            classes.append(
                ClassProb(
                    k,
                    _full_roi(shape),
                    prob,
                    box=_box_around(int(z[len(z) // 2]), (0, shape[1] - 1), (0, shape[2] - 1), (0, 0)),
                )
            )
        assert np.array_equal(fuse(shape, classes, backend="cpu"), fuse(shape, classes, backend="cuda")), f


# ------------------------------------------------------------------------------------------
# The device code path, run on the host through a numpy stand-in for cupy. It cannot prove the
# cupy calls themselves (the gpu tests do), but it runs every line of the "cuda" branch here,
# and its labeller numbers components in a scrambled order, so it checks that the result never
# depends on how a backend numbers its components.


def _install_fake_cupy(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    import scipy.ndimage as ndi

    class DevArray(np.ndarray):
        def get(self) -> np.ndarray:
            return np.asarray(self).copy()

    def dev(a: object) -> DevArray:
        return np.asarray(a).view(DevArray)

    cp = types.ModuleType("cupy")
    cp.ndarray = DevArray
    cp.asarray = dev
    cp.from_dlpack = lambda t: dev(np.from_dlpack(t))
    cp.zeros = lambda *a, **k: dev(np.zeros(*a, **k))
    cp.full = lambda *a, **k: dev(np.full(*a, **k))
    for name in ("uint8", "float16", "float32", "copyto", "unique", "bincount", "argmax"):
        setattr(cp, name, getattr(np, name))

    def label(mask: np.ndarray, structure: np.ndarray) -> tuple[DevArray, int]:
        assert structure.shape == (3, 3, 3) and np.asarray(structure).all()
        cc, n = ndi.label(np.asarray(mask), structure=structure)
        perm = np.concatenate([[0], np.random.default_rng(n).permutation(n) + 1]).astype(np.int32)
        return dev(perm[cc]), n

    nd = types.ModuleType("cupyx.scipy.ndimage")
    nd.label = label
    cx = types.ModuleType("cupyx")
    cs = types.ModuleType("cupyx.scipy")
    cx.scipy, cs.ndimage = cs, nd
    for name, mod in (("cupy", cp), ("cupyx", cx), ("cupyx.scipy", cs), ("cupyx.scipy.ndimage", nd)):
        monkeypatch.setitem(sys.modules, name, mod)


def test_device_code_path_matches_cpu_with_numpy_standin(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    shape = (24, 40, 36)
    cases = [_random_classes(rng, shape, n=6) for _ in range(4)] + [_structured_classes(shape)]
    # plus a tie between two largest components, which must not follow the labeller's numbering
    a = np.zeros(shape, np.float32)
    a[15:17, 2:4, 2:4] = 1
    a[2:4, 30:32, 30:32] = 1
    a[10:12, 10:12, 30:32] = 1
    cases.append([ClassProb(1, _full_roi(shape), a)])
    expected = [fuse(shape, c, backend="cpu") for c in cases]
    _install_fake_cupy(monkeypatch)
    for classes, exp in zip(cases, expected, strict=True):
        got = fuse(shape, classes, backend="cuda")
        assert type(got) is np.ndarray and got.dtype == np.uint8
        assert np.array_equal(got, exp)
    as_torch = [ClassProb(c.label, c.roi, torch.from_numpy(c.prob), c.fg_clicks, c.box) for c in cases[0]]
    assert np.array_equal(fuse(shape, as_torch, backend="cuda"), expected[0])


def test_nested_object_keeps_its_label_inside_a_certain_container() -> None:
    # An organ (label 1, the larger ROI) certain everywhere, its own tumour included, and the
    # tumour (label 2, a smaller ROI) certain inside it: float16 saturates both at 1.0. The
    # tumour wins the tie; the organ keeps the rest, both come through with their labels.
    organ = np.zeros(SHAPE, np.float16)
    organ[2:18, 5:35, 5:35] = 1.0
    tumour = _ball(SHAPE, (10, 20, 20), 4)
    t_roi = (slice(4, 17), slice(14, 27), slice(14, 27))
    classes = [
        ClassProb(1, _full_roi(SHAPE), organ, box=_box_around(10, (5, 34), (5, 34), (2, 17))),
        ClassProb(2, t_roi, tumour[t_roi].astype(np.float16), fg_clicks=[(10, 20, 20)]),
    ]
    for backend in ["cpu"] + (["cuda"] if resolve_backend("auto") == "cuda" else []):
        seg = fuse(SHAPE, classes, backend=backend)
        np.testing.assert_array_equal(seg == 2, tumour)
        np.testing.assert_array_equal(seg == 1, (organ > 0.5) & ~tumour)
    # the order they are handed over in does not matter
    np.testing.assert_array_equal(fuse(SHAPE, classes[::-1], backend="cpu"), seg)
