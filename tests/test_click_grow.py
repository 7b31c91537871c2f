"""The classical click correction: what it adds, what it removes, and what it must never touch."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import find_objects

from model.boxes import Box
from model.click_grow import _judged_share, grow_at_clicks, grow_region, leak_share

SP = (1.0, 1.0, 1.0)


def _two_tissues() -> np.ndarray:
    """A bright cube (200) on a dark background (50): the region a click grows is the cube."""
    imgs = np.full((30, 30, 30), 50, np.uint8)
    imgs[10:20, 10:20, 10:20] = 200
    return imgs


def test_region_is_the_connected_similar_tissue_within_the_radius() -> None:
    imgs = _two_tissues()
    sl, region = grow_region(imgs, (15, 15, 15), SP, radius_mm=20.0, tolerance=20.0)
    full = np.zeros(imgs.shape, bool)
    full[sl] = region
    assert full.sum() == 1000 and full[10:20, 10:20, 10:20].all()


def test_region_stops_at_the_radius() -> None:
    imgs = _two_tissues()
    sl, region = grow_region(imgs, (15, 15, 15), SP, radius_mm=3.0, tolerance=20.0)
    full = np.zeros(imgs.shape, bool)
    full[sl] = region
    zz, yy, xx = np.nonzero(full)
    dist = np.sqrt((zz - 15) ** 2 + (yy - 15) ** 2 + (xx - 15) ** 2)
    assert dist.max() <= 3.0 and full.sum() == (dist <= 3.0).sum() == 123


def test_radius_is_in_millimetres() -> None:
    """At 3 mm slices a 6 mm radius reaches two slices up and down, six voxels in-plane."""
    imgs = np.full((20, 40, 40), 100, np.uint8)
    sl, region = grow_region(imgs, (10, 20, 20), (3.0, 1.0, 1.0), radius_mm=6.0, tolerance=5.0)
    full = np.zeros(imgs.shape, bool)
    full[sl] = region
    zz, yy, _ = np.nonzero(full)
    assert (zz.min(), zz.max()) == (8, 12) and (yy.min(), yy.max()) == (14, 26)


def test_outside_point_gives_nothing() -> None:
    assert grow_region(_two_tissues(), (40, 0, 0), SP, 10.0, 20.0) is None


def test_fg_click_adds_the_missed_part_and_bg_click_removes_a_leak() -> None:
    imgs = _two_tissues()
    segs = np.zeros(imgs.shape, np.uint8)
    segs[10:20, 10:20, 10:15] = 1  # half the cube found
    segs[0:5, 0:5, 0:5] = 1  # a leak into the dark background
    clicks = [{"fg": [[15, 15, 17]], "bg": [[2, 2, 2]]}]
    out = grow_at_clicks(segs, imgs, SP, clicks, [["fg", "bg"]], None, set(), radius_mm=30.0, tolerance=20.0)
    expected = np.zeros_like(out)
    expected[10:20, 10:20, 10:20] = 1
    np.testing.assert_array_equal(out, expected)


def test_fg_click_takes_only_background_its_own_and_the_class_under_the_click() -> None:
    imgs = np.full((20, 20, 20), 100, np.uint8)
    segs = np.zeros(imgs.shape, np.uint8)
    segs[:, :, 0:5] = 2  # the class under the click
    segs[:, :, 15:20] = 3  # a third class of the same intensity
    clicks = [{"fg": [[10, 10, 2]], "bg": []}, None, None]
    out = grow_at_clicks(segs, imgs, SP, clicks, [["fg"], [], []], None, set(), 30.0, 20.0)
    assert (out[:, :, 15:20] == 3).all()  # never a third class
    assert (out[:, :, 0:15] == 1).all()  # background and the class it was clicked on


def _ball(shape: tuple[int, ...], centre: tuple[int, int, int], radius: float) -> np.ndarray:
    zz, yy, xx = np.indices(shape)
    return (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= radius**2


def test_a_voxel_both_kinds_of_click_reach_goes_to_the_nearer_in_either_order() -> None:
    """One tissue: a bg and a fg click's balls overlap; each keeps the overlap on its side of the
    mid-plane, whichever came first (a late fg click flooded back what bg clicks had cut)."""
    imgs = np.full((20, 20, 30), 100, np.uint8)
    segs = np.zeros(imgs.shape, np.uint8)
    segs[5:15, 5:15, 5:25] = 1
    cut, grown = _ball(imgs.shape, (10, 10, 10), 5.0), _ball(imgs.shape, (10, 10, 17), 5.0)
    assert (cut & grown).sum() > 50  # the two balls overlap
    bg_side = np.zeros(imgs.shape, bool)
    bg_side[:, :, :14] = True  # nearer the bg click (x 10) than the fg click (x 17)
    clicks = [{"fg": [[10, 10, 17]], "bg": [[10, 10, 10]]}]
    for order in (["bg", "fg"], ["fg", "bg"]):
        out = grow_at_clicks(segs.copy(), imgs, SP, clicks, [order], None, set(), 5.0, 20.0)
        assert not out[cut & bg_side].any()
        assert (out[grown & ~bg_side] == 1).all()
        assert (out[~cut & ~grown] == segs[~cut & ~grown]).all()  # nothing else moves


def test_a_bg_click_beside_a_fg_click_cuts_only_its_own_side() -> None:
    """A thin object's bg click lands a few voxels from its fg click: the cut stops half-way, so
    the object at the fg click stays (replayed in order, the later cut took that side too)."""
    imgs = np.full((20, 20, 20), 100, np.uint8)
    segs = np.zeros(imgs.shape, np.uint8)
    segs[8:12, 8:12, 2:18] = 1
    clicks = [{"fg": [[10, 10, 10]], "bg": [[10, 10, 14]]}]
    out = grow_at_clicks(segs.copy(), imgs, SP, clicks, [["fg", "bg"]], None, set(), 8.0, 20.0)
    assert (out[8:12, 8:12, 2:12] == 1).all()  # the fg click's side, within its reach
    assert not out[8:12, 8:12, 13:18].any()  # the bg click's side


def test_locked_classes_are_never_touched() -> None:
    imgs = np.full((20, 20, 20), 100, np.uint8)
    segs = np.zeros(imgs.shape, np.uint8)
    segs[:, :, 0:10] = 2
    clicks = [{"fg": [[10, 10, 2]], "bg": []}, {"fg": [], "bg": [[10, 10, 5]]}]
    out = grow_at_clicks(segs.copy(), imgs, SP, clicks, [["fg"], ["bg"]], None, {2}, 30.0, 20.0)
    assert (out[:, :, 0:10] == 2).all()  # class 2 locked: not taken by class 1's click
    assert (out[:, :, 10:] == 1).all()
    # and a locked class's own clicks are not replayed
    out = grow_at_clicks(segs.copy(), imgs, SP, clicks, [["fg"], ["bg"]], None, {1, 2}, 30.0, 20.0)
    np.testing.assert_array_equal(out, segs)


def test_growth_stays_on_the_challenge_boxs_slices_but_not_a_viewers() -> None:
    imgs = np.full((20, 20, 20), 100, np.uint8)
    clicks = [{"fg": [[10, 10, 10]], "bg": []}]
    box = Box(8, 12, 10, 0, 19, 0, 19)
    out = grow_at_clicks(np.zeros(imgs.shape, np.uint8), imgs, SP, clicks, [["fg"]], [box], set(), 30.0, 20.0)
    assert np.unique(np.nonzero(out)[0]).tolist() == [8, 9, 10, 11, 12]
    viewer = Box.on_slice(10, 0, 19, 0, 19)
    empty = np.zeros(imgs.shape, np.uint8)
    out = grow_at_clicks(empty, imgs, SP, clicks, [["fg"]], [viewer], set(), 30.0, 20.0)
    assert (out == 1).all()


def test_off_by_default_changes_nothing() -> None:
    imgs = _two_tissues()
    segs = np.zeros(imgs.shape, np.uint8)
    out = grow_at_clicks(segs, imgs, SP, [{"fg": [[15, 15, 15]], "bg": []}], [["fg"]], None, set(), 0.0, 20.0)
    assert not out.any()


def test_leak_share_is_the_share_of_the_shell_the_tolerance_cannot_tell_from_the_object() -> None:
    imgs = _two_tissues()
    cube = np.zeros(imgs.shape, bool)
    cube[10:20, 10:20, 10:20] = True
    assert leak_share(imgs, cube, SP, 3.0, 20.0) == 0.0  # 200 inside, 50 all around
    half = cube.copy()
    half[:, :, 15:] = False  # its shell: 50 on five faces, the cube's other half (200) on one
    share = leak_share(imgs, half, SP, 1.0, 20.0)
    shell = np.zeros(imgs.shape, bool)
    shell[9:21, 9:21, 9:16] = True
    shell[10:20, 10:20, 10:15] = False
    edges = np.zeros(imgs.shape, bool)  # the 6-connected shell: a one-voxel ball has no corners
    edges[10:20, 10:20, 9:16] = edges[10:20, 9:21, 10:15] = edges[9:21, 10:20, 10:15] = True
    edges[10:20, 10:20, 10:15] = False
    assert share == (imgs[edges] == 200).mean() == 100 / edges.sum()
    assert leak_share(imgs, np.zeros(imgs.shape, bool), SP, 3.0, 20.0) is None
    assert leak_share(imgs, np.ones(imgs.shape, bool), SP, 3.0, 20.0) is None


def test_leak_share_shell_is_in_millimetres_and_at_least_one_voxel() -> None:
    """At 5 mm slices a 3 mm shell still takes one slice above and below (the 100 voxels over and
    under the mask, dark); in-plane it is three voxels (a ring of 4 x 10 x 3 + 4 x 4 corner voxels,
    bright like the object): 136 of 336 shell voxels pass the tolerance."""
    imgs = np.full((20, 30, 30), 50, np.uint8)
    imgs[10] = 100
    mask = np.zeros(imgs.shape, bool)
    mask[10, 10:20, 10:20] = True
    assert leak_share(imgs, mask, (5.0, 1.0, 1.0), 3.0, 20.0) == 136 / 336


def test_a_class_its_surroundings_cannot_be_told_from_is_left_to_the_network() -> None:
    """A faint cube (110 on 100, within the tolerance): with the leak limit its fg click would
    flood the background and is skipped; a bright cube (200 on 50) is grown as before."""
    faint = np.full((30, 30, 30), 100, np.uint8)
    faint[10:20, 10:20, 10:20] = 110
    segs = np.zeros(faint.shape, np.uint8)
    segs[10:20, 10:20, 10:15] = 1
    clicks = [{"fg": [[15, 15, 17]], "bg": []}]
    flooded = grow_at_clicks(segs.copy(), faint, SP, clicks, [["fg"]], None, set(), 5.0, 20.0)
    assert flooded[(faint == 100)].any()  # without the limit the grow leaves the cube
    kept = grow_at_clicks(segs.copy(), faint, SP, clicks, [["fg"]], None, set(), 5.0, 20.0, leak_limit=0.5)
    np.testing.assert_array_equal(kept, segs)
    bright = _two_tissues()
    grown = grow_at_clicks(segs.copy(), bright, SP, clicks, [["fg"]], None, set(), 30.0, 20.0, leak_limit=0.5)
    assert (grown == 1).sum() == 1000 and grown[10:20, 10:20, 10:20].all()


def test_the_gate_reads_the_previous_mask_where_the_class_has_one() -> None:
    """This step's answer spilled far into the dark background (judged on it, the class would be
    skipped); its previous mask, half the bright cube, says the grow can tell the object apart."""
    imgs = _two_tissues()
    spilled = np.zeros(imgs.shape, np.uint8)
    spilled[0:20, 0:20, 0:15] = 1
    prior = np.zeros(imgs.shape, np.uint8)
    prior[10:20, 10:20, 10:15] = 1
    clicks = [{"fg": [[15, 15, 17]], "bg": []}]
    args = (imgs, SP, clicks, [["fg"]], None, set(), 30.0, 20.0)
    alone = grow_at_clicks(spilled.copy(), *args, leak_limit=0.5)
    np.testing.assert_array_equal(alone, spilled)
    grown = grow_at_clicks(spilled.copy(), *args, leak_limit=0.5, prior=prior)
    assert grown[10:20, 10:20, 10:20].all() and (grown == 1).sum() == (spilled | (imgs == 200)).sum()
    empty = np.zeros(imgs.shape, np.uint8)  # no previous mask for the class: this step's answer decides
    np.testing.assert_array_equal(grow_at_clicks(spilled.copy(), *args, leak_limit=0.5, prior=empty), spilled)


def test_the_gate_judges_on_a_crop_what_it_would_judge_on_the_whole_image() -> None:
    """The crop around a class (its bounds plus the shell) loses nothing, at the image's borders
    too: the share equals leak_share of the class's whole mask."""
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, (20, 30, 30)).astype(np.uint8)
    labels = np.zeros(imgs.shape, np.uint8)
    labels[0:6, 10:20, 12:22] = 1  # on the first slice
    labels[12:20, 20:30, 0:9] = 2  # at three borders
    for sp in [(1.0, 1.0, 1.0), (4.0, 0.7, 0.7)]:
        maps = [(labels, find_objects(labels))]
        for lab in (1, 2):
            whole = leak_share(imgs, labels == lab, sp, 3.0, 20.0)
            assert _judged_share(imgs, lab, sp, 3.0, 20.0, maps) == whole
        assert _judged_share(imgs, 3, sp, 3.0, 20.0, maps) is None


def _core_and_fin() -> tuple[np.ndarray, np.ndarray]:
    """One intensity (200 on 50) holds a thick core (a 12-voxel cube) and a thin fin (3 voxels)
    joined to its side; the mask is both, as a network that followed the intensity would give."""
    imgs = np.full((30, 40, 30), 50, np.uint8)
    imgs[9:21, 5:17, 9:21] = 200  # the core
    imgs[13:18, 17:30, 13:16] = 200  # the fin, 3 voxels thin along x
    return imgs, (imgs == 200).astype(np.uint8)


def test_a_guarded_background_click_cuts_the_fin_it_sits_in_not_the_deeper_core() -> None:
    """The click at the fin's middle is two voxels deep in the mask; unguarded, its region cuts
    deep into the core too; guarded, the fin goes and the core loses no voxel deeper than the click
    plus one voxel (its outer skin may go: the same depth as the fin's)."""
    imgs, mask = _core_and_fin()
    clicks = [{"fg": [], "bg": [[15, 25, 14]]}]
    args = (imgs, SP, clicks, [["bg"]], None, set(), 15.0, 20.0)
    inner = np.zeros(mask.shape, bool)
    inner[12:18, 8:14, 12:18] = True  # the core's voxels more than 3 voxels deep
    free = grow_at_clicks(mask.copy(), *args)
    assert (free[inner] == 0).sum() > 50  # the unguarded cut reaches deep into the core
    guarded = grow_at_clicks(mask.copy(), *args, prior=mask, depth_guard=True)
    assert (guarded[13:18, 18:30, 13:16] == 0).all()  # the fin is cut
    assert (guarded[inner] == 1).all()  # the core's deep part stays


def test_the_guard_leaves_a_click_outside_its_previous_mask_and_other_kinds_alone() -> None:
    """A background click that the previous mask already obeys (it lies outside it) cuts as
    unguarded; a foreground click is never guarded; a class with no previous mask neither; and
    without `depth_guard` a previous mask the contrast gate reads guards nothing."""
    imgs, mask = _core_and_fin()
    clicks = [{"fg": [], "bg": [[15, 25, 14]]}]
    args = (imgs, SP, clicks, [["bg"]], None, set(), 15.0, 20.0)
    obeyed = mask.copy()
    obeyed[13:18, 17:30, 13:16] = 0  # the previous answer already dropped the fin
    free = grow_at_clicks(mask.copy(), *args)
    np.testing.assert_array_equal(grow_at_clicks(mask.copy(), *args, prior=obeyed, depth_guard=True), free)
    empty = np.zeros(mask.shape, np.uint8)
    np.testing.assert_array_equal(grow_at_clicks(mask.copy(), *args, prior=empty, depth_guard=True), free)
    np.testing.assert_array_equal(grow_at_clicks(mask.copy(), *args, leak_limit=0.5, prior=mask), free)
    fg = [{"fg": [[15, 25, 14]], "bg": []}]
    fg_args = (imgs, SP, fg, [["fg"]], None, set(), 15.0, 20.0)
    guarded_fg = grow_at_clicks(empty.copy(), *fg_args, prior=mask, depth_guard=True)
    np.testing.assert_array_equal(guarded_fg, grow_at_clicks(empty.copy(), *fg_args))


def _fg_with_and_without_limit(bright: tuple[slice, ...], found: tuple[slice, ...], click: list[int]):
    """A bright region (200) on dark (50), the class `found` inside it, one foreground click:
    the grow at 15 mm without a limit and with `add_limit` 1, and the class's mask before."""
    imgs = np.full((40, 40, 40), 50, np.uint8)
    imgs[bright] = 200
    segs = np.zeros(imgs.shape, np.uint8)
    segs[found] = 1
    args = (imgs, SP, [{"fg": [click], "bg": []}], [["fg"]], None, set(), 15.0, 20.0)
    return grow_at_clicks(segs.copy(), *args), grow_at_clicks(segs.copy(), *args, add_limit=1.0), segs == 1


def test_a_small_class_adds_no_more_than_its_size_the_voxels_nearest_the_click() -> None:
    """A 27-voxel class whose foreground click sits in a wide bright slab: with `add_limit` 1 the
    click adds the 27 slab voxels nearest to it (a ball of about 1.9 mm), not the 15 mm of slab
    the radius allows; without the limit it adds over 10 000."""
    slab, cube = (slice(5, 35),) * 3, (slice(19, 22), slice(19, 22), slice(14, 17))
    free, limited, before = _fg_with_and_without_limit(slab, cube, [20, 20, 20])
    assert ((free == 1) & ~before).sum() > 10_000
    added = (limited == 1) & ~before
    zz, yy, xx = np.nonzero(added)
    dist = np.sqrt((zz - 20) ** 2 + (yy - 20) ** 2 + (xx - 20) ** 2)
    assert added[20, 20, 20] and 27 <= added.sum() <= 33 and dist.max() <= 2.0


def test_a_long_class_keeps_the_grow_that_stays_within_its_size() -> None:
    """A bright rod 4x4 voxels across and 30 long, half of it found (240 voxels): the click on the
    missed half adds its 240 voxels, no more than the class's size, so the limit takes nothing from
    it, however far along the rod they lie."""
    rod, half = (slice(18, 22), slice(18, 22), slice(5, 35)), (slice(18, 22), slice(18, 22), slice(5, 20))
    free, limited, _ = _fg_with_and_without_limit(rod, half, [20, 20, 27])
    np.testing.assert_array_equal(limited, free)
    assert (limited[rod] == 1).all() and (limited == 1).sum() == 480


def test_the_size_is_the_larger_of_the_answer_and_the_previous_mask() -> None:
    """The network shrank the class to one voxel this step; its previous mask held 500 voxels:
    the click adds up to 500 (add_limit 1), not one."""
    imgs = np.full((40, 40, 40), 200, np.uint8)
    segs = np.zeros(imgs.shape, np.uint8)
    segs[20, 20, 5] = 1
    prior = np.zeros(imgs.shape, np.uint8)
    prior.ravel()[:500] = 1
    clicks = [{"fg": [[20, 20, 20]], "bg": []}]
    kw = {"radius_mm": 15.0, "tolerance": 20.0, "prior": prior, "add_limit": 1.0}
    out = grow_at_clicks(segs, imgs, SP, clicks, [["fg"]], None, set(), **kw)
    assert 500 <= (out == 1).sum() - 1 <= 530
