"""One step of one case: prompts -> ROI -> batched network -> fusion, within an optional time budget.

Every class is predicted from its whole prompt history (box, all clicks, its prev_pred mask), unless
`refine_locally` makes a click step an edit of its mask (below). All classes of a case go through
the network together, in batches of up to `max_batch` ROIs. A class whose prediction touches its ROI
border (where the ROI is not the volume's edge) is zoomed out and predicted again, a bounded number
of times. With `tile_fraction` > 0 the boundary of each object's answer is looked at again in views
a fraction of its ROI (`_tile_pass`), and with `local_fraction` > 0 the newest click of each class
gets a finer second look (`_local_pass`), which reads the object's answer after the boundary views.
With `refine_locally` as well, a boxed class that already has a mask skips the object's pass: the
local view edits its prev_pred mask around the newest click and the mask stands elsewhere (a click
fixes the error it points at and leaves the rest alone; half the network time of a click step). A
class started from clicks alone is still predicted again from all its clicks: nothing else tells its
extent, and an edit confined to the view around each click grew a large object started from one
click too slowly (docs/validation.md, clicks-only sweep). A class marked done (None last in its
clicks_order: the evaluator found it perfect) keeps its prev_pred mask, locked in fusion: nothing to
fix, no risk. A class whose ROI or forward pass fails, or that the time budget cuts, falls back to
its prev_pred mask; the result says which (:class:`Prediction`). After fusion, with `snap_band` > 0,
each class the network answered has its edge moved onto the image's where the image shows one,
inside the region it answered (model/edge_snap.py). Then, with `grow_radius_mm` > 0, every click
gets the classical correction of model/click_grow.py at native resolution (unlocked classes only).
With `tta_mirrors` > 1 every forward pass averages that many flipped views of its input.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.boxes import Box
from model.budget import Budget, Level
from model.case_io import Case
from model.click_grow import grow_at_clicks
from model.config import CARD_FILE, ModelCard, ModelConfig
from model.edge_snap import snap_edges
from model.encoding import encode
from model.ensemble import ProbabilityMean
from model.fusion import ClassProb, fuse
from model.network import ResEncUNet
from model.prompts import ClassPrompts, class_prompts
from model.roi import Roi, choose_roi, grid_to_roi, label_extents, local_roi, object_extent, tiles

log = logging.getLogger(__name__)

# flip axes of a (batch, channel, z, y, x) input, in the order mirror views are added
MIRRORS: tuple[tuple[int, ...], ...] = ((), (4,), (3,), (2,), (3, 4), (2, 4), (2, 3), (2, 3, 4))

WEIGHTS_FILE = "model.pt"


class WeightsMissingError(FileNotFoundError):
    """No trained checkpoint: the predictor never runs random weights."""


@dataclass(frozen=True)
class Prediction:
    """One step's answer, and what happened on the way (for logs, the CLI's status, a viewer).

    segs: uint8 label map of the case's shape; label k+1 is the object of boxes[k] / clicks[k].
    timings: seconds per phase: "network" (prompts, ROIs, forward passes), "fusion", "snap" (the
    edges moved onto the image's, model/edge_snap.py) and "grow" (the classical correction at the
    clicks, model/click_grow.py); ~0 for a phase that is off.
    failed: label -> reason, for the classes whose ROI or forward pass raised.
    cut: the classes the time budget left unpredicted.
    level: the budget's degradation level (FULL without a budget).
    Failed and cut classes keep their prev_pred mask (or stay empty at the box step).
    """

    segs: np.ndarray
    timings: dict[str, float]
    failed: dict[int, str]
    cut: tuple[int, ...]
    level: Level

    @property
    def fallbacks(self) -> tuple[int, ...]:
        """Every class that did not get a fresh prediction from the network, in label order."""
        return tuple(sorted(set(self.failed) | set(self.cut)))


@dataclass
class _Job:
    """One class on its way through the network."""

    prompts: ClassPrompts
    roi: Roi
    prob: torch.Tensor | None = None  # on the grid
    zooms: int = 0
    newest: tuple[int, int, int] | None = None  # this step's click (volume voxel), if any
    local_roi: Roi | None = None  # the finer view around `newest`
    local_prob: torch.Tensor | None = None  # on the grid of local_roi
    edit: bool = False  # refine_locally: the local view edits prev_pred; no object's pass
    native: torch.Tensor | None = None  # prob pasted back over roi, once its passes are done

    @property
    def answered(self) -> bool:
        """Whether the network gave this job its answer (the local view's, for an edit)."""
        return (self.local_prob if self.edit else self.prob) is not None

    def native_prob(self) -> torch.Tensor:
        """`prob` at native resolution over `roi`, computed once: the local pass reads it for its
        previous mask and the paste-back starts from it. Valid only after the last zoom-out."""
        assert self.prob is not None
        if self.native is None:
            self.native = grid_to_roi(self.prob.float(), self.roi)
        return self.native


@dataclass
class _Kept:
    """The classes of one step whose mask comes from prev_pred instead of the network, and why."""

    case: Case
    prev_boxes: list[tuple[np.ndarray, np.ndarray] | None]
    probs: list[ClassProb] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    cut: list[int] = field(default_factory=list)

    def keep_prev(self, p: ClassPrompts, locked: bool = False) -> None:
        """The class's prev_pred mask as a certain probability inside its bounding box (if any)."""
        pbox = self.prev_boxes[p.label - 1]
        if pbox is None:
            return
        assert self.case.prev_pred is not None
        (z0, y0, x0), (z1, y1, x1) = (int(v) for v in pbox[0]), (int(v) for v in pbox[1])
        sl = (slice(z0, z1 + 1), slice(y0, y1 + 1), slice(x0, x1 + 1))
        prob = (self.case.prev_pred[sl] == p.label).astype(np.float16)
        self.probs.append(ClassProb(p.label, sl, prob, fg_clicks=list(p.fg), box=p.box, locked=locked))

    def fail(self, p: ClassPrompts, what: str, exc: BaseException) -> None:
        log.warning("%s: class %d %s (%s); keeping prev_pred", self.case.name, p.label, what, exc)
        self.failed[p.label] = f"{what}: {type(exc).__name__}: {exc}"
        self.keep_prev(p)

    def cut_off(self, p: ClassPrompts) -> None:
        self.cut.append(p.label)
        self.keep_prev(p)


def _answered_region(job: _Job) -> tuple[slice, slice, slice]:
    """Where the network's answer replaced the class's previous mask this step: an edit's local
    view, else the object's ROI."""
    if job.edit and job.local_roi is not None:
        return job.local_roi.slices
    return job.roi.slices


def _newest(case: Case, label: int, order: list) -> tuple[int, int, int] | None:
    """The click this step added for `label` (the last of its kind), None at a box step or when
    the class was marked perfect."""
    kind = order[-1] if order else None
    if kind not in ("fg", "bg") or not case.clicks or label - 1 >= len(case.clicks):
        return None
    points = (case.clicks[label - 1] or {}).get(kind) or []
    return tuple(int(v) for v in points[-1]) if len(points) else None  # type: ignore[return-value]


def _presample(crop: np.ndarray, grid: tuple[int, int, int]) -> np.ndarray:
    """Stride down axes far larger than the grid before any float copy (huge ROIs stay cheap)."""
    steps = [max(1, s // (4 * g)) for s, g in zip(crop.shape, grid, strict=True)]
    return crop[:: steps[0], :: steps[1], :: steps[2]] if max(steps) > 1 else crop


def apply_box_facts(prob: torch.Tensor, roi: Roi, box: Box) -> None:
    """Zero what the box rules out, in place (ROI-shaped native probabilities).

    On slice z_mid the object lies inside the rectangle (the challenge's rectangle is its tight
    extent there, widened; a viewer's is drawn around it). The challenge's box also gives the
    exact z range: the object lies only on slices z_min..z_max. A viewer's one-slice box says
    nothing about z, so nothing is zeroed off its slice. Nothing else about a box is certain.
    """
    zs, ys, xs = box.prism(roi.shape)  # volume slices, clipped to the volume
    z_lo, y_lo, x_lo = roi.lo
    if box.exact_z:
        prob[: max(zs.start - z_lo, 0)] = 0
        prob[max(zs.stop - z_lo, 0) :] = 0
    zm = box.z_mid - z_lo
    if 0 <= zm < prob.shape[0]:
        keep = torch.zeros_like(prob[zm], dtype=torch.bool)
        keep[
            max(ys.start - y_lo, 0) : max(ys.stop - y_lo, 0), max(xs.start - x_lo, 0) : max(xs.stop - x_lo, 0)
        ] = True
        prob[zm][~keep] = 0


def first_batch_s(sec_per_class: float, batch: int, device: str) -> float:
    """Projected seconds of the first batch of `batch` boundary views, before any was timed: on a
    CPU a pass costs in proportion to its batch, on a GPU a batch this small costs about one pass
    (projected by the CPU's rule, a 1-class step's views would never start there, since its
    object's pass, the first of the process, is timed cold). Later batches are timed."""
    return sec_per_class if device.startswith("cuda") else sec_per_class * batch


def _clip(roi: Roi, outer: Roi) -> Roi:
    """`roi` intersected with `outer` (the local view never leaves the object's ROI)."""
    lo = tuple(max(a, b) for a, b in zip(roi.lo, outer.lo, strict=True))
    hi = tuple(max(min(a, b), lo_ + 1) for a, b, lo_ in zip(roi.hi, outer.hi, lo, strict=True))
    return Roi(lo, hi, roi.shape)  # type: ignore[arg-type]


def _within(inner: Roi, outer: Roi) -> tuple[slice, slice, slice]:
    """Slices of `inner` in the coordinates of `outer`'s crop."""
    return tuple(slice(a - o, b - o) for a, b, o in zip(inner.lo, inner.hi, outer.lo, strict=True))  # type: ignore[return-value]


def read_weights(weights_dir: Path) -> tuple[ModelCard, dict[str, torch.Tensor]]:
    """The card and the fp32 state dict of a weights folder (model.json + fp16 model.pt), the one
    reader that inference, training's start and the slim seed share. In an ensemble folder this is
    the first network's (training continues from it; :func:`member_files` names the others)."""
    weights_dir = Path(weights_dir)
    ckpt, card_path = weights_dir / WEIGHTS_FILE, weights_dir / CARD_FILE
    if not ckpt.is_file() or not card_path.is_file():
        raise WeightsMissingError(
            f"no trained weights in {weights_dir} (need {WEIGHTS_FILE} and {CARD_FILE}); "
            "train with `python -m model.training.train`, then `python -m model.training.export`"
        )
    card = ModelCard.load(card_path)
    return card, _load_state(ckpt)


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    """An fp16 state dict file as float32 tensors (weights_only, mmap)."""
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def network_from_state(config: ModelConfig, state: dict[str, torch.Tensor]) -> ResEncUNet:
    """The network of `config` holding `state` (one member of a weights folder)."""
    net = ResEncUNet(config)
    net.load_state_dict(state)
    return net


def member_files(card: ModelCard, weights_dir: Path) -> list[Path]:
    """The further networks of an ensemble folder (the card's ``members``, each a state dict of the
    same architecture beside model.pt); empty for a single network. A listed file that is missing
    is an error, not a silent single-network fallback."""
    files = [Path(weights_dir) / m["file"] for m in card.card.get("members", [])]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise WeightsMissingError(f"ensemble members listed in {CARD_FILE} are missing: {missing}")
    return files


class Predictor:
    """Loads the network once per process and predicts every class of a case."""

    def __init__(
        self, net: torch.nn.Module, config: ModelConfig, device: str, card: dict | None = None
    ) -> None:
        self.net = net.eval()
        self.config = config
        self.device = device
        self.card = card or {}
        self.dtype = torch.float16 if device.startswith("cuda") else torch.float32

    @classmethod
    def from_weights(cls, weights_dir: Path, device: str | None = None) -> Predictor:
        """Network and config from weights_dir/model.pt + model.json (weights_only, mmap); with
        ``members`` in the card, those networks and model.pt's as one (model/ensemble.py)."""
        card, state = read_weights(weights_dir)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        states = [state, *(_load_state(f) for f in member_files(card, weights_dir))]
        nets = [network_from_state(card.config, s) for s in states]
        net = (nets[0] if len(nets) == 1 else ProbabilityMean(nets)).to(device)
        if device.startswith("cuda"):
            net = net.half()
        return cls(net, card.config, device, card.card)

    def with_config(self, **changes: Any) -> Predictor:
        """The same network under a changed config (e.g. a viewer turning zoom-out off); the
        weights are shared, not copied."""
        return Predictor(self.net, replace(self.config, **changes), self.device, self.card)

    # ------------------------------------------------------------------ network passes
    def _probs(self, x: torch.Tensor) -> torch.Tensor:
        """Sigmoid of the network on a (batch, channel, z, y, x) input, averaged over the
        config's `tta_mirrors` flipped views (each flipped back): (batch, z, y, x), float32."""
        x = x.to(self.device, self.dtype)
        views = MIRRORS[: max(1, min(self.config.tta_mirrors, len(MIRRORS)))]
        total = None
        with torch.inference_mode():
            for axes in views:
                out = self.net(x.flip(axes) if axes else x)[:, 0:1].float()
                p = torch.sigmoid(out.flip(axes) if axes else out)[:, 0]
                total = p if total is None else total + p
        assert total is not None
        return total / len(views)

    def _forward(self, jobs: list[_Job], case: Case, grid: tuple[int, int, int]) -> None:
        """Predict `jobs` in batches: the object's pass sets job.prob, an edit (the local view
        alone) job.local_prob; grid probabilities, on the device."""
        cfg = replace(self.config, grid=grid)
        for a in range(0, len(jobs), cfg.max_batch):
            batch = jobs[a : a + cfg.max_batch]
            xs = []
            for job in batch:
                if job.edit:
                    xs.append(self._local_input(job, case, grid))
                    continue
                sl = job.roi.slices
                img = torch.from_numpy(np.ascontiguousarray(_presample(case.imgs[sl], grid)))
                prev = None
                if case.prev_pred is not None:
                    prev = torch.from_numpy(np.ascontiguousarray(_presample(case.prev_pred[sl], grid)))
                xs.append(encode(img, prev, job.prompts, job.roi, case.spacing, cfg))
            probs = self._probs(torch.stack(xs))
            for job, p in zip(batch, probs, strict=True):
                if job.edit:
                    job.local_prob = p
                else:
                    job.prob = p
                    if log.isEnabledFor(logging.DEBUG):
                        self._log_pass(job, case)

    def _log_pass(self, job: _Job, case: Case) -> None:
        """One debug line per object pass: its ROI in mm, the share of it the answer fills and the
        faces it reaches. An object that stops growing over the clicks shows here: an answer far
        from every face of an ROI sized by a mask that found too little is never zoomed out."""
        assert job.prob is not None
        mask = (job.prob > self.config.threshold).cpu().numpy()
        size_mm = np.asarray(job.roi.size) * np.asarray(case.spacing)
        log.debug(
            "%s: class %d, %s: ROI %s mm (z,y,x), answer %.1f %% of it, reaching inner faces on axes %s",
            case.name,
            job.prompts.label,
            f"zoom-out {job.zooms}" if job.zooms else "object pass",
            "x".join(str(round(v)) for v in size_mm),
            100.0 * float(mask.mean()),
            job.roi.touches_border(mask) or "none",
        )

    def _local_input(self, job: _Job, case: Case, grid: tuple[int, int, int]) -> torch.Tensor:
        """Encoded local view around the job's newest click (sets job.local_roi)."""
        assert job.newest is not None
        cfg = replace(self.config, grid=grid)
        roi = local_roi(np.asarray(job.newest, float), job.roi, case.spacing, cfg, cfg.local_fraction)
        roi = _clip(roi, job.roi)
        job.local_roi = roi
        return self._view_input(job, roi, case, grid)

    def _view_input(self, job: _Job, roi: Roi, case: Case, grid: tuple[int, int, int]) -> torch.Tensor:
        """Encoded view `roi` (inside the job's ROI) of one class: its previous mask there is the
        object's pass's answer, or for an edit its prev_pred mask; the other classes come from
        prev_pred."""
        cfg = replace(self.config, grid=grid)
        prev = np.zeros(roi.size, np.uint8)
        if case.prev_pred is not None:
            prev = case.prev_pred[roi.slices].astype(np.uint8, copy=True)
        if not job.edit:  # the object's pass decides this class's mask here
            prev[prev == job.prompts.label] = 0
            prev[(job.native_prob()[_within(roi, job.roi)] > cfg.threshold).cpu().numpy()] = job.prompts.label
        img = torch.from_numpy(np.ascontiguousarray(case.imgs[roi.slices]))
        return encode(img, torch.from_numpy(prev), job.prompts, roi, case.spacing, cfg)

    def _zoom_candidates(self, jobs: list[_Job]) -> list[_Job]:
        """Jobs whose mask touches an inner ROI face; their ROI is grown along those axes."""
        out = []
        for job in jobs:
            if job.zooms >= self.config.max_zoom_out or job.prob is None:
                continue
            mask = (job.prob > self.config.threshold).cpu().numpy()
            grown = job.roi.zoomed_out(mask, self.config.zoom_factor)
            if grown is not None:
                job.roi = grown
                job.zooms += 1
                out.append(job)
        return out

    # ------------------------------------------------------------------ one case
    def predict_case(self, case: Case, budget: Budget | None = None) -> Prediction:
        """One step of `case`; label k+1 of the result is the object of boxes[k] / clicks[k].

        budget: the step's time budget, which the CLI owns (model/budget.py); without one (a
        viewer's session, a test) nothing is ever degraded.
        """
        t_start = time.monotonic()
        n = case.n_classes
        prompts = class_prompts(n, case.boxes, case.clicks)
        kept = _Kept(case, [None] * n if case.prev_pred is None else label_extents(case.prev_pred, n))
        jobs: list[_Job] = []
        for p, pbox in zip(prompts, kept.prev_boxes, strict=True):
            order = (
                case.clicks_order[p.label - 1]
                if case.clicks_order and p.label - 1 < len(case.clicks_order)
                else []
            )
            if order and order[-1] is None and pbox is not None:
                kept.keep_prev(p, locked=True)  # done (perfect at the last step): its mask is final
                continue
            extent = object_extent(p, pbox, case.spacing)
            if extent is None:
                continue  # no box, no click, no previous mask: nothing to segment
            try:
                roi = choose_roi(case.shape, case.spacing, extent, self.config)
                newest = _newest(case, p.label, order)
                edit = self.config.refine_locally and self.config.local_fraction > 0
                edit = edit and newest is not None and pbox is not None  # a mask to edit
                edit = edit and p.box is not None  # a clicks-only class: its clicks are its extent
                jobs.append(_Job(p, roi, newest=newest, edit=edit))
            except Exception as exc:  # noqa: BLE001 - one bad class must not sink the case
                kept.fail(p, "ROI failed", exc)

        done = self._run_jobs(jobs, kept, budget)
        t_net = time.monotonic()
        probs = kept.probs + [self._to_native(j, case.prev_pred) for j in done]
        segs = fuse(case.shape, probs, threshold=self.config.threshold)
        t_fused = time.monotonic()
        cfg = self.config
        answered = [(j.prompts.label, _answered_region(j)) for j in done]
        segs = snap_edges(
            segs,
            case.imgs,
            case.spacing,
            answered,
            cfg.snap_band,
            cfg.snap_window_mm,
            cfg.snap_separation,
            cfg.grid,
        )
        t_snapped = time.monotonic()
        locked = {p.label for p in kept.probs if p.locked}
        segs = grow_at_clicks(
            segs,
            case.imgs,
            case.spacing,
            case.clicks,
            case.clicks_order,
            case.boxes,
            locked,
            radius_mm=cfg.grow_radius_mm,
            tolerance=cfg.grow_tolerance,
            leak_limit=cfg.grow_leak_limit,
            shell_mm=cfg.grow_shell_mm,
            prior=case.prev_pred,
            depth_guard=cfg.grow_depth_guard,
            add_limit=cfg.grow_add_limit,
        )
        t_end = time.monotonic()
        return Prediction(
            segs=segs,
            timings={
                "network": t_net - t_start,
                "fusion": t_fused - t_net,
                "snap": t_snapped - t_fused,
                "grow": t_end - t_snapped,
            },
            failed=dict(kept.failed),
            cut=tuple(sorted(kept.cut)),
            level=budget.level if budget is not None else Level.FULL,
        )

    def _run_jobs(self, jobs: list[_Job], kept: _Kept, budget: Budget | None) -> list[_Job]:
        """Main passes batch by batch, then zoom-outs, degrading as the budget (if any) dictates."""
        case = kept.case
        grid = self.config.grid
        coarse = tuple(max(16, (g * 3 // 4) // 8 * 8) for g in grid)
        tail_s = 0.1 * case.n_classes + 1.0  # fusion + write, generously
        queue, done = list(jobs), []
        sec_per_class, on_coarse = 0.0, False
        while queue:
            n_run = len(queue)
            if budget is not None and sec_per_class:
                plan = budget.plan(sec_per_class, len(queue), tail_s=tail_s, measured_on_coarse=on_coarse)
                on_coarse, n_run = plan.coarse_grid, plan.classes_to_run
            for job in queue[n_run:]:  # out of time: these keep their prev_pred mask
                kept.cut_off(job.prompts)
            queue = queue[:n_run]
            chunk, queue = queue[: self.config.max_batch], queue[self.config.max_batch :]
            if not chunk:
                break
            t0 = time.monotonic()
            self._safe_forward(chunk, kept, coarse if on_coarse else grid)
            sec_per_class = (time.monotonic() - t0) / len(chunk)
            done += [j for j in chunk if j.answered]
        zoom = [] if on_coarse else self._zoom_candidates(done)
        while zoom:
            if budget is not None:
                plan = budget.plan(sec_per_class, 0, zoom_outs_left=len(zoom), tail_s=tail_s)
                if not plan.allow_zoom_out:
                    break
            self._safe_forward(zoom, kept, grid)
            zoom = self._zoom_candidates([j for j in zoom if j.prob is not None])
        done = [j for j in done if j.answered]
        second_look = self.config.local_fraction > 0
        local = [j for j in done if j.newest is not None and not j.edit] if second_look else []
        views = not on_coarse and (budget is None or budget.level == Level.FULL)
        work = self._boundary_tiles([j for j in done if not j.edit]) if views else []
        if work and budget is not None:
            local_s = sec_per_class * len(local)  # the click's view comes after and matters more

            def fits(batch_s: float) -> bool:
                return budget.fits(batch_s + local_s, tail_s)

            first = first_batch_s(sec_per_class, min(len(work), self.config.max_batch), self.device)
            self._tile_pass(work, case, fits, budget.clock, first)
        elif work:
            self._tile_pass(work, case)
        if local and not on_coarse:
            plan = (
                None
                if budget is None
                else budget.plan(sec_per_class, 0, zoom_outs_left=len(local), tail_s=tail_s)
            )
            if plan is None or plan.allow_zoom_out:
                self._local_pass(local, case)
        return done

    def _boundary_tiles(self, jobs: list[_Job]) -> list[tuple[_Job, Roi]]:
        """The views (model.roi.tiles) of each job's ROI that hold part of its mask's boundary:
        a view all inside or all outside the mask has no edge to place. An ROI no larger than the
        grid is skipped: its grid is already as fine as the image."""
        cfg = self.config
        if cfg.tile_fraction <= 0:
            return []
        out = []
        for job in jobs:
            if all(s <= g for s, g in zip(job.roi.size, cfg.grid, strict=True)):
                continue
            mask = (job.native_prob() > cfg.threshold).cpu().numpy()
            for view in tiles(job.roi, cfg.tile_fraction, cfg.tile_positions):
                part = mask[_within(view, job.roi)]
                if part.any() and not part.all():
                    out.append((job, view))
        return out

    def _tile_pass(
        self,
        work: list[tuple[_Job, Roi]],
        case: Case,
        fits: Callable[[float], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
        first_s: float = 0.0,
    ) -> None:
        """Each object's boundary looked at again, view by view (see `_boundary_tiles`).

        A voxel of the object's grid spans its ROI / 64 per axis: 7 mm for a 300 mm organ, while
        NSD forgives 2 mm. Each view sees its part at 1 / tile_fraction the resolution, with the
        object's answer as previous mask (every view reads the same answer); where views overlap
        their probabilities are averaged, and the answer stands where none looked. If a pass
        fails, the object's answer stands whole. fits(seconds): whether a batch that long still
        fits the step's time (None: no budget); checked with the last batch's time before each
        batch, so a GPU, where a batch of views costs about what one pass does, runs them all and
        a slow CPU stops where its time ends, keeping the views already seen. clock: the
        budget's; first_s: the first batch's projected time (`first_batch_s`).
        """
        cfg = self.config
        sums: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        batch_s, done = first_s, 0
        try:
            for a in range(0, len(work), cfg.max_batch):
                if fits is not None and not fits(batch_s):
                    log.info("%s: boundary views stopped at %d of %d (time budget)", case.name, a, len(work))
                    break
                t0 = clock()
                batch = work[a : a + cfg.max_batch]
                xs = [self._view_input(job, view, case, cfg.grid) for job, view in batch]
                probs = self._probs(torch.stack(xs))
                for (job, view), p in zip(batch, probs, strict=True):
                    native = job.native_prob()
                    if id(job) not in sums:  # 5 bytes a voxel (an ROI can be a whole scan)
                        sums[id(job)] = (
                            torch.zeros(native.shape, dtype=torch.float32, device=native.device),
                            torch.zeros(native.shape, dtype=torch.uint8, device=native.device),
                        )
                    total, count = sums[id(job)]
                    inside = _within(view, job.roi)
                    total[inside] += grid_to_roi(p.float(), view).float()
                    count[inside] += 1
                done = a + len(batch)
                batch_s = clock() - t0
        except Exception as exc:  # noqa: BLE001 - the object's pass stands on its own
            log.warning("%s: boundary views failed (%s); keeping the object's pass", case.name, exc)
            return
        for job in {id(j): j for j, _ in work[:done]}.values():
            total, count = sums[id(job)]
            seen = count > 0
            native = job.native_prob()
            native[seen] = (total[seen].float() / count[seen]).to(native.dtype)
        log.debug("%s: %d of %d boundary views", case.name, done, len(work))

    def _local_pass(self, jobs: list[_Job], case: Case) -> None:
        """The finer second look around each class's newest click (sets job.local_prob).

        On the object's grid a click is a ball of about one voxel on an error band one or two
        voxels thick; in an ROI `local_fraction` of the size, centred on the click, the same
        error spans several voxels. The first pass's mask is the previous mask of this view, so
        the network decides the clicked error with everything else already in place.
        """
        cfg = self.config
        try:
            for a in range(0, len(jobs), cfg.max_batch):
                batch = jobs[a : a + cfg.max_batch]
                xs = [self._local_input(job, case, cfg.grid) for job in batch]
                probs = self._probs(torch.stack(xs))
                for job, p in zip(batch, probs, strict=True):
                    job.local_prob = p
        except Exception as exc:  # noqa: BLE001 - the first pass stands on its own
            log.warning("%s: local pass failed (%s); keeping the first pass", case.name, exc)
            for job in jobs:
                job.local_prob = None

    def _safe_forward(self, chunk: list[_Job], kept: _Kept, grid: tuple[int, int, int]) -> None:
        """Forward a batch; if it fails, retry class by class and fall back to prev_pred."""
        try:
            self._forward(chunk, kept.case, grid)
            return
        except Exception as exc:  # noqa: BLE001
            log.warning("%s: batched pass failed (%s); retrying class by class", kept.case.name, exc)
        for job in chunk:
            try:
                self._forward([job], kept.case, grid)
            except Exception as exc:  # noqa: BLE001 - one bad class must not sink the case
                job.prob = job.local_prob = None
                kept.fail(job.prompts, "failed", exc)

    def _to_native(self, job: _Job, prev_pred: np.ndarray | None) -> ClassProb:
        if job.edit:  # prev_pred's mask of the class, edited inside the local view below
            assert prev_pred is not None and job.local_prob is not None
            prob = torch.from_numpy(prev_pred[job.roi.slices] == job.prompts.label)
            prob = prob.to(job.local_prob.device, torch.float32)
        else:
            prob = job.native_prob()
        if job.local_prob is not None and job.local_roi is not None:
            prob[_within(job.local_roi, job.roi)] = grid_to_roi(job.local_prob.float(), job.local_roi)
        if job.prompts.box is not None:
            apply_box_facts(prob, job.roi, job.prompts.box)
        return ClassProb(
            label=job.prompts.label,
            roi=job.roi.slices,
            prob=prob,
            fg_clicks=list(job.prompts.fg),
            box=job.prompts.box,
        )
