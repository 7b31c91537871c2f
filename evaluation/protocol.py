"""One case through the organisers' interaction protocol (challenge_spec.md §3.2), step by step.

Per case, exactly as CVPR25_iter_eval.py runs it:

* the case file is copied verbatim into ``inputs/`` (the only file there);
* step 1, the box step, runs only when the case has ``boxes``; otherwise it is recorded as
  0 s / DSC 0 / NSD 0 and not run;
* steps 2..6 (click1..click5): read ``outputs/<case>`` (``segs`` cast to uint8; zeros when absent),
  add one simulated click per class (:func:`model.click_sim.simulate_clicks`), rewrite
  ``inputs/<case>`` with ``imgs, spacing, clicks, clicks_order, prev_pred`` (+ ``boxes``) by
  ``np.savez_compressed`` of the same Python objects as the official code;
* every step is a fresh ``sh predict.sh`` process (cwd = the submission folder, ``INPUT_DIR`` and
  ``OUTPUT_DIR`` set: the container start of the official run), timed by wall clock; another
  step runner may be passed (``evaluation.in_process``: the model's session in this process);
* after each step ``outputs/<case>`` is scored (DSC, and NSD when DSC > 0.2) on the raw ``segs``;
* ``outputs/`` persists across steps and cases, as in the official run.

What we add, without changing any score:

* a step whose output file is absent, or not rewritten by that step (same mtime/size/inode as
  before the step), is flagged ``stale``/``missing`` in ``StepResult.status`` and in the report's
  ``Failed_Steps`` column. It is scored the way the official script scores it: the file left
  there by an earlier step is re-scored (and used for the next clicks), zeros if there is none;
* an output with the wrong shape or no ``segs`` key is scored as zeros and flagged ``bad_output``
  (the official script stops evaluating the whole submission there);
* a case that never produced an output keeps its zeros and stays in the table (the official CSV
  drops it), flagged ``No_Output``;
* the ground truth is read from the gts folder only; an input holding ``gts`` is refused.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from evaluation.metrics import auc, gt_classes, score_step
from model.budget import case_allowance_s
from model.click_sim import simulate_clicks

N_CLICKS = 5
N_STEPS = N_CLICKS + 1
# One name per step in logs, plots and the progress bar; step k (1-based) is also the index of the
# official CSV columns (RunningTime_k, DSC_k, NSD_k): _1 = box, _2.._6 = click1..click5.
STEP_NAMES = ("box", *(f"click{i}" for i in range(1, N_CLICKS + 1)))
SECONDS_PER_CLASS = 90

#: One step: (submission, inputs, outputs, log file, timeout) -> (seconds, exit status, timed out).
StepRunner = Callable[[Path, Path, Path, Path | None, float | None], tuple[float, int | None, bool]]

OK, SKIPPED, STALE, MISSING = "ok", "skipped", "stale", "missing"
BAD_OUTPUT, TIMEOUT = "bad_output", "timeout"
FAILED_STATUSES = (STALE, MISSING, BAD_OUTPUT, TIMEOUT)


@dataclass
class StepResult:
    """One of the 6 steps (1 = box step, 2..6 = click1..click5)."""

    step: int
    status: str = SKIPPED
    runtime: float = 0.0
    dsc: float = 0.0
    nsd: float = 0.0
    returncode: int | None = None
    message: str = ""

    @property
    def name(self) -> str:
        """``box`` or ``click1``..``click5`` (see STEP_NAMES)."""
        return STEP_NAMES[self.step - 1]

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES


@dataclass
class CaseResult:
    """Everything the report needs about one case."""

    name: str
    num_class: int
    has_boxes: bool
    spacing: np.ndarray
    steps: list[StepResult] = field(default_factory=list)
    clicks: list[dict] = field(default_factory=list)
    clicks_order: list[list] = field(default_factory=list)
    hd95_final: float = float("nan")
    asd_final: float = float("nan")
    empty_final_classes: int = 0
    first_segs: np.ndarray | None = None  # prediction of the first step run (box step if any)
    final_segs: np.ndarray | None = None
    ever_output: bool = False
    error: str = ""

    @property
    def dscs(self) -> list[float]:
        return [s.dsc for s in self.steps]

    @property
    def nsds(self) -> list[float]:
        return [s.nsd for s in self.steps]

    @property
    def dsc_auc(self) -> float:
        return auc(self.dscs)

    @property
    def nsd_auc(self) -> float:
        return auc(self.nsds)

    @property
    def dsc_final(self) -> float:
        return self.dscs[-1] if self.steps else 0.0

    @property
    def nsd_final(self) -> float:
        return self.nsds[-1] if self.steps else 0.0

    @property
    def total_runtime(self) -> float:
        return float(sum(s.runtime for s in self.steps))

    @property
    def runtime_upperbound(self) -> int:
        return int(case_allowance_s(self.num_class))  # the official CSV writes an integer

    @property
    def budget_share(self) -> float:
        return self.total_runtime / self.runtime_upperbound if self.num_class else float("nan")

    @property
    def failed_steps(self) -> list[int]:
        return [s.step for s in self.steps if s.failed]


def load_npz(path: Path) -> dict:
    """All arrays of an npz (object arrays allowed), file closed."""
    with np.load(path, allow_pickle=True) as f:
        return {k: f[k] for k in f.files}


def prepare_run_dirs(run_dir: Path) -> tuple[Path, Path]:
    """Fresh ``inputs/`` and ``outputs/`` under run_dir (the official script clears both once)."""
    inputs, outputs = Path(run_dir) / "inputs", Path(run_dir) / "outputs"
    for d in (inputs, outputs):
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
    return inputs, outputs


def write_click_input(
    path: Path,
    imgs: np.ndarray,
    spacing: np.ndarray,
    clicks: list[dict],
    clicks_order: list[list],
    prev_pred: np.ndarray,
    boxes: np.ndarray | None,
) -> None:
    """The evaluator's rewrite of the input, from the same Python objects, so dtypes match:
    ``clicks`` an object array of dicts, ``clicks_order`` ``<U2`` (N, t) or object when a
    ``None`` is present, ``prev_pred`` uint8."""
    arrays = {
        "imgs": imgs,
        "spacing": spacing,
        "clicks": clicks,
        "clicks_order": clicks_order,
        "prev_pred": prev_pred,
    }
    if boxes is not None:
        arrays["boxes"] = boxes
    np.savez_compressed(path, **arrays)


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def read_output(path: Path, shape: tuple[int, ...]) -> tuple[np.ndarray | None, str]:
    """``segs`` of an output file as written (raw dtype), or (None, reason)."""
    if not path.is_file():
        return None, "no output file"
    try:
        with np.load(path, allow_pickle=True) as f:
            if "segs" not in f.files:
                return None, f"no 'segs' key (keys: {list(f.files)})"
            segs = f["segs"]
    except Exception as exc:  # a truncated or foreign file
        return None, f"unreadable output: {exc}"
    if segs.shape != tuple(shape):
        return None, f"segs shape {segs.shape} != image shape {tuple(shape)}"
    return segs, ""


def run_predict(
    submission: Path,
    inputs: Path,
    outputs: Path,
    log_path: Path | None,
    timeout: float | None,
    extra_env: dict[str, str] | None = None,
) -> tuple[float, int | None, bool]:
    """One container start: ``sh predict.sh`` in the submission folder, with this environment plus
    `extra_env`. Returns (seconds, rc, timed_out)."""
    env = {**os.environ, **(extra_env or {})}
    env["INPUT_DIR"] = str(Path(inputs).resolve())
    env["OUTPUT_DIR"] = str(Path(outputs).resolve())
    log = open(log_path, "wb") if log_path is not None else subprocess.DEVNULL  # noqa: SIM115
    start = time.perf_counter()
    try:
        proc = subprocess.Popen(
            ["sh", "predict.sh"],
            cwd=str(submission),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            rc = proc.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the process group of the step we started
            rc = proc.wait()
            timed_out = True
    finally:
        elapsed = time.perf_counter() - start
        if log_path is not None:
            log.close()
    return elapsed, rc, timed_out


def run_case(
    case_file: Path,
    gts_file: Path,
    run_dir: Path,
    submission: Path,
    log_dir: Path | None = None,
    step_timeout: float | None = None,
    on_step: Callable[[StepResult], None] | None = None,
    keep_all_segs: bool = False,
    step_runner: StepRunner | None = None,
    drop_boxes: bool = False,
) -> tuple[CaseResult, list[np.ndarray]]:
    """Run one case through the 6 steps. ``run_dir/outputs`` must exist and persists.

    Returns the result and, when ``keep_all_segs``, the uint8 prediction after every step run
    (the official ``all_segs``). step_runner runs one step (default: :func:`run_predict`).
    drop_boxes: play the case as the organisers play one without boxes (no box step, a first
    click on the empty prediction), whatever its file holds: how the model starts from clicks.
    """
    step_runner = step_runner or run_predict
    case_file, gts_file, run_dir = Path(case_file), Path(gts_file), Path(run_dir)
    name = case_file.name
    inputs, outputs = run_dir / "inputs", run_dir / "outputs"
    inputs.mkdir(parents=True, exist_ok=True)
    outputs.mkdir(parents=True, exist_ok=True)
    for stale_input in inputs.iterdir():  # inputs/ holds only the current case
        if stale_input.is_file():
            stale_input.unlink()
        else:
            shutil.rmtree(stale_input)

    src = load_npz(case_file)
    if "gts" in src:
        raise ValueError(f"{case_file} holds 'gts': split it first (never pass gts to predict.sh)")
    gts = load_npz(gts_file)["gts"]
    imgs, spacing = src["imgs"], src["spacing"]
    if gts.shape != imgs.shape:
        raise ValueError(f"{name}: gts shape {gts.shape} != imgs shape {imgs.shape}")
    boxes = None if drop_boxes else src.get("boxes")
    classes = gt_classes(gts)
    result = CaseResult(name=name, num_class=len(classes), has_boxes=boxes is not None, spacing=spacing)
    in_path, out_path = inputs / name, outputs / name
    shutil.copy(case_file, in_path)  # the box step sees the organisers' file verbatim
    clicks: list[dict] | None = None
    order: list[list] | None = None
    all_segs: list[np.ndarray] = []

    for it in range(N_STEPS):
        step = StepResult(step=it + 1)
        if it == 0 and boxes is None:
            result.steps.append(step)  # skipped: 0 s, DSC 0, NSD 0
            if on_step is not None:
                on_step(step)
            continue
        if it > 0:
            prev, _ = read_output(out_path, gts.shape)
            prev_u8 = np.zeros(gts.shape, np.uint8) if prev is None else prev.astype(np.uint8)
            clicks, order = simulate_clicks(prev_u8, gts, clicks, order)
            write_click_input(in_path, imgs, spacing, clicks, order, prev_u8, boxes)
        before = _stat(out_path)
        log_path = None if log_dir is None else Path(log_dir) / f"{Path(name).stem}_{step.name}.log"
        step.runtime, step.returncode, timed_out = step_runner(
            submission, inputs, outputs, log_path, step_timeout
        )
        after = _stat(out_path)
        segs, problem = read_output(out_path, gts.shape)
        if timed_out:
            step.status, step.message = TIMEOUT, f"killed after {step_timeout} s"
        elif after is None:
            step.status, step.message = MISSING, "no output file"
        elif after == before:
            step.status, step.message = STALE, "output not rewritten by this step: earlier output re-scored"
        elif segs is None:
            step.status, step.message = BAD_OUTPUT, problem
        else:
            step.status = OK
            result.ever_output = True
        if segs is None:
            if step.status == OK or (step.status == STALE and problem):
                step.status, step.message = BAD_OUTPUT, problem
            segs = np.zeros(gts.shape, np.uint8)
        if step.returncode not in (0, None) and step.status == OK:
            step.message = f"predict.sh exited with {step.returncode}"
        last = it == N_STEPS - 1
        sc = score_step(gts, segs, spacing, extras=last)
        step.dsc, step.nsd = sc.dsc, sc.nsd
        if last:
            result.hd95_final, result.asd_final = sc.hd95, sc.asd
            result.empty_final_classes = sc.n_empty_pred
            result.final_segs = segs.astype(np.uint8)
        if result.first_segs is None:
            result.first_segs = segs.astype(np.uint8)
        if keep_all_segs:
            all_segs.append(segs.astype(np.uint8))
        result.steps.append(step)
        if on_step is not None:
            on_step(step)

    result.clicks = clicks or [{"fg": [], "bg": []} for _ in classes]
    result.clicks_order = order or [[] for _ in classes]
    in_path.unlink(missing_ok=True)  # the official script deletes the case input afterwards
    return result, all_segs
