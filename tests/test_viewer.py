"""Tests of server/viewer.py: the viewers' calls mapped onto the session, and the mirrored buffer
that makes every answer carry only the changed region."""

from __future__ import annotations

import numpy as np
import pytest

from model.boxes import Box
from server.viewer import ViewerSession

SHAPE = (12, 24, 24)


@pytest.fixture
def viewer(tiny_predictor) -> ViewerSession:
    """A random network's viewer session (its answers change with every prompt)."""
    v = ViewerSession(tiny_predictor)
    image = np.random.default_rng(0).integers(0, 255, (1, *SHAPE), dtype=np.uint8)
    assert v.set_image(image, {"spacing": [2.0, 1.0, 1.0]}) == [1, *SHAPE]
    v.set_target_buffer(list(SHAPE), "uint8")
    return v


def test_image_and_buffer_checks(tiny_predictor) -> None:
    v = ViewerSession(tiny_predictor)
    with pytest.raises(ValueError, match="one-channel"):
        v.set_image(np.zeros(SHAPE, np.uint8))
    with pytest.raises(ValueError, match="one-channel"):
        v.set_image(np.zeros((2, *SHAPE), np.uint8))
    v.set_image(np.zeros((1, 1, 30, 40), np.uint16), {"spacing": [0.5, 0.7]})  # a 2-D image
    assert v.session.shape == (1, 30, 40) and v.session.case().spacing == (1.0, 0.5, 0.7)
    assert v.session.case().imgs.dtype == np.float32  # uint16 is not a torch input dtype
    with pytest.raises(ValueError, match="dtype"):
        v.set_target_buffer([1, 30, 40], "complex64")
    with pytest.raises(ValueError, match="shape"):
        v.set_target_buffer([1, 30, 41], "uint8")
    with pytest.raises(ValueError, match="target buffer"):
        v.add_point((0, 3, 3), True, run=True)  # predicting needs a buffer to mirror


@pytest.mark.parametrize(
    ("coords", "expected"),
    [
        ([[5, 6], [3.4, 10.6], [2, 9]], Box.on_slice(5, 3, 10, 2, 8)),  # a 2D box: one slice thick
        ([[2, 9], [3, 11], [2, 9]], Box(2, 8, 5, 3, 10, 2, 8)),  # a 3D box: the prism, mid slice 5
        ([[-3, 1], [0, 99], [20, 30]], Box.on_slice(0, 0, 23, 20, 23)),  # clipped to the image
    ],
)
def test_boxes(viewer, coords, expected) -> None:
    viewer.add_bbox(coords, include=True, run=False)
    assert viewer.session.case().boxes == [expected]


def test_boxes_the_model_cannot_take(viewer) -> None:
    with pytest.raises(ValueError, match="exclude"):
        viewer.add_bbox([[5, 6], [3, 10], [2, 9]], include=False, run=False)
    with pytest.raises(ValueError, match="first image axis"):
        viewer.add_bbox([[2, 9], [4, 5], [2, 9]], include=True, run=False)
    with pytest.raises(ValueError, match="empty"):
        viewer.add_bbox([[2, 2], [4, 5], [2, 9]], include=True, run=False)
    assert viewer.session.case().boxes is None


def test_only_the_changed_region_is_returned(viewer) -> None:
    assert viewer.predict().ran is False  # nothing to predict yet
    change = viewer.add_point((6, 12.4, 11.6), include=True, run=True)
    assert viewer.session.case().clicks == [{"fg": [(6, 12, 12)], "bg": []}]
    assert change.ran and change.region is not None
    mask = viewer.session.labels == 1
    assert mask.any()
    np.testing.assert_array_equal(viewer.buffer, mask)
    lo, hi = np.argwhere(mask).min(0), np.argwhere(mask).max(0)
    assert change.bbox == [[int(a), int(b) + 1] for a, b in zip(lo, hi, strict=True)]
    np.testing.assert_array_equal(change.values, viewer.buffer[change.region])
    again = viewer._sync()  # the mirror is up to date: nothing more to send
    assert again.ran and again.region is None and again.values is None


def test_queued_prompts_undo_and_reset(viewer) -> None:
    assert viewer.add_point((6, 12, 12), include=True, run=False).ran is False
    assert not viewer.buffer.any()
    viewer.predict()
    first = viewer.buffer.copy()
    viewer.add_point((6, 12, 12), include=False, run=True)
    assert not np.array_equal(viewer.buffer, first)
    change = viewer.undo()
    assert change.ran
    np.testing.assert_array_equal(viewer.buffer, first)
    viewer.reset()
    assert not viewer.buffer.any() and viewer.session.labels is None
    assert viewer.undo().ran is False


def test_initial_segmentation(viewer) -> None:
    viewer.add_point((1, 1, 1), include=True, run=False)
    seed = np.zeros(SHAPE, np.uint8)
    seed[4:8, 8:16, 8:16] = 1
    assert viewer.add_initial_seg(seed, run=False).ran is False
    np.testing.assert_array_equal(viewer.buffer, seed)  # mirrors what the client wrote itself
    assert viewer.session.case().clicks == [{"fg": [], "bg": []}]  # a fresh start from the mask
    change = viewer.add_initial_seg(seed, run=True)
    assert change.ran and viewer.buffer.any()
    np.testing.assert_array_equal(viewer.buffer, viewer.session.labels == 1)
    with pytest.raises(ValueError, match="shape"):
        viewer.add_initial_seg(seed[:2], run=False)
