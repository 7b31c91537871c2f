"""The challenge CLI: every ``*.npz`` in the input folder in, ``<same name>.npz`` with ``segs`` out.

    python infer.py [--input-dir D] [--output-dir D] [--weights-dir D] [--device cpu|cuda]

Defaults come from the environment (INPUT_DIR, OUTPUT_DIR, WEIGHTS_DIR), else /workspace/inputs,
/workspace/outputs and <this folder>/weights. This is what ``predict.sh`` runs inside the
container (once per interaction step) and outside it.

Each case is replayed through the model's interactive session (model/session.py), the core the
local evaluation and the viewers' server share: its image, prev_pred, boxes and clicks become the
session's verbs, and one prediction runs under the step's time budget, which belongs to this CLI
(model/budget.py: 90 s x classes over the case's starts, counted from the process start for the
first case).

Behaviour (challenge_spec.md §2, §3.5, §8; every failure mode in docs/container.md):
* an output folder that is the input folder (by path, link or mount) is refused before anything
  is touched (exit 2): each output would replace its input;
* the predictor is loaded once per process; with no trained weights it stops with a clear
  message (exit 2): random weights never run;
* before a case is processed its earlier output is removed, so a failure never leaves a stale
  file from an earlier step for the evaluator to re-score;
* a ``*.npz`` that is not a regular file (dangling link, folder, FIFO) is a failed case: its
  earlier output is removed and it is never opened (a FIFO would block);
* a case that cannot be used is logged (file name + reason) and the others still run; when the
  shape of its image is known a fallback output is still written: its ``prev_pred`` when that
  can be read, else zeros;
* if prediction of a readable case fails, or every one of its classes fails inside the
  predictor, its ``prev_pred`` (or zeros) is written instead;
* classes that fell back (an error, or the time budget) are named in the case's line, with the
  budget's degradation level;
* after all cases, the exit status is 1 if any case failed;
* one INFO line per case: name, classes, step, seconds, device (then the keys ignored, and the
  status when not ok).

Imports stay light at the top: torch is imported by the predictor only when it is loaded.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

_PROCESS_START = time.monotonic()

import numpy as np  # noqa: E402

from model.budget import PER_CLASS_S, Budget, Level  # noqa: E402
from model.case_io import Case, CaseError, read_case, read_prev_pred, write_segs  # noqa: E402
from model.prompts import ordered_clicks  # noqa: E402
from model.session import Session  # noqa: E402

if TYPE_CHECKING:
    from model.predictor import Prediction

log = logging.getLogger("infer")

REPO = Path(__file__).resolve().parent

EXIT_OK, EXIT_CASE_FAILED, EXIT_SETUP = 0, 1, 2


class PredictorLike(Protocol):
    """What the session needs of a predictor (model.predictor.Predictor)."""

    device: str

    def predict_case(self, case: Case, budget: Budget | None = None) -> Prediction: ...


PredictorFactory = Callable[[Path, str | None], PredictorLike]


class SetupError(RuntimeError):
    """The predictor cannot be loaded (no weights, broken install): nothing can run."""


def load_predictor(weights_dir: Path, device: str | None) -> PredictorLike:
    """The real predictor (model/predictor.py). Imported here so torch loads only when needed."""
    try:
        from model.predictor import Predictor, WeightsMissingError
    except ImportError as exc:
        raise SetupError(f"cannot import the model (model/predictor.py): {exc}") from exc
    try:
        return Predictor.from_weights(weights_dir, device=device)
    except WeightsMissingError as exc:
        raise SetupError(
            f"no trained weights in {weights_dir}: {exc}. Train or copy a checkpoint there "
            "(random weights are never used)."
        ) from exc


def time_scale_arg(text: str) -> float:
    """A positive, finite factor on the time allowance (--time-scale / SEGFM_TIME_SCALE; also
    evaluation.run_local's --time-scale, which hands it on to each step)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"time scale must be a positive number, not {text!r}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    env = os.environ
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--input-dir", type=Path, default=Path(env.get("INPUT_DIR") or "/workspace/inputs"))
    p.add_argument("--output-dir", type=Path, default=Path(env.get("OUTPUT_DIR") or "/workspace/outputs"))
    p.add_argument("--weights-dir", type=Path, default=Path(env.get("WEIGHTS_DIR") or REPO / "weights"))
    p.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default=env.get("DEVICE") or None,
        help="default: CUDA when available, else CPU (env DEVICE)",
    )
    p.add_argument(
        "--time-scale",
        type=time_scale_arg,
        default=env.get("SEGFM_TIME_SCALE") or "1",  # a string default goes through `type` too
        help="multiply the organisers' 90 s per class by this (env SEGFM_TIME_SCALE; default 1): "
        "to score on a machine this many times slower than the container's GPU what the model does "
        "there, where no pass is dropped for time. Never set in the container",
    )
    p.add_argument(
        "--check", action="store_true", help="only load the predictor and exit (0 when the weights load)"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p.parse_args(argv)


def fallback_segs(case: Case) -> np.ndarray:
    """prev_pred when the case has one (labels beyond its classes removed), else zeros."""
    if case.prev_pred is not None:
        segs = case.prev_pred
        if segs.size and int(segs.max()) > case.n_classes:
            segs = np.where(segs > case.n_classes, 0, segs).astype(np.uint8)
        return segs
    return np.zeros(case.shape, dtype=np.uint8)


def check_segs(segs: Any, case: Case) -> np.ndarray:
    """The predictor's output as uint8 of the case's shape with labels 0..N, or ValueError."""
    segs = np.asarray(segs)
    if segs.shape != case.shape:
        raise ValueError(f"prediction has shape {segs.shape}, expected {case.shape}")
    if segs.dtype != np.uint8:
        if segs.dtype == np.bool_:
            segs = segs.view(np.uint8)
        elif np.issubdtype(segs.dtype, np.integer) or np.issubdtype(segs.dtype, np.floating):
            lo, hi = segs.min(), segs.max()
            if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0 or hi > 255:
                raise ValueError(f"prediction values in [{lo}, {hi}] are not uint8 labels")
            segs = segs.astype(np.uint8)
        else:
            raise ValueError(f"prediction dtype {segs.dtype} is not a label map")
    hi = int(segs.max()) if segs.size else 0
    if hi > case.n_classes:
        log.warning("%s: prediction has label %d > %d classes: set to 0", case.name, hi, case.n_classes)
        segs = np.where(segs > case.n_classes, 0, segs).astype(np.uint8)
    return segs


def _not_regular(path: Path) -> str | None:
    """Why a ``*.npz`` entry is no file to read, or None; told from stat alone (never opened: a
    FIFO would block the run)."""
    if path.is_file():
        return None
    if path.is_symlink() and not path.exists():
        return "a dangling symbolic link"
    if path.is_dir():
        return "a folder"
    if path.is_fifo():
        return "a FIFO"
    return "not a regular file"


def _remove_stale(path: Path, out: Path) -> None:
    """Never leave an earlier step's output for a case that fails now: the evaluator re-scores it."""
    try:
        out.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("%s: cannot remove the earlier output %s: %s", path.name, out, exc)


def _write_unusable_fallback(path: Path, out: Path, exc: CaseError) -> str:
    """Fallback for a case that cannot be used, when its image shape is known: its prev_pred if
    still readable (the previous answer is better than none), else zeros. Returns the status."""
    if exc.shape is None:
        return "unusable, nothing written"
    segs, what = read_prev_pred(path, exc.shape), "prev_pred"
    if segs is None:
        segs, what = np.zeros(exc.shape, dtype=np.uint8), "zeros"
    try:
        write_segs(out, segs)
    except Exception as wexc:
        log.error("%s: cannot write the fallback output: %s", path.name, wexc)
        return "unusable, nothing written"
    return f"unusable, {what} written"


def replay(case: Case, session: Session) -> None:
    """The case file as session verbs: the image, prev_pred (labels beyond the case's classes
    removed), every box, and every class's clicks in the order clicks_order gives them, a None
    there marking the class done. Clicks the order does not account for (no clicks_order, or a
    shorter one) follow, foreground first; a class whose order ends in None stays done."""
    session.set_image(case.imgs, case.spacing, name=case.name)
    if case.prev_pred is not None:
        session.set_label_map(fallback_segs(case))
    for k, box in enumerate(case.boxes or (), start=1):
        if box is not None:
            session.add_box(k, box)
    for k, entry in enumerate(case.clicks or (), start=1):
        order = case.clicks_order[k - 1] if case.clicks_order else []
        kind = None
        for kind, point in ordered_clicks(entry, order):
            if kind is None:
                session.mark_done(k)
            else:
                session.add_click(k, point, foreground=kind == "fg")
        if order and order[-1] is None and kind is not None:  # clicks followed its last None
            session.mark_done(k)


def _predict(case: Case, session: Session, budget: Budget) -> tuple[np.ndarray, str]:
    """The checked label map and a note on what fell back; raises when the prediction failed,
    including when every class failed."""
    replay(case, session)
    prediction = session.predict(budget)
    segs = check_segs(prediction.segs, case)
    failed = sorted(prediction.failed)
    if case.n_classes and len(failed) >= case.n_classes:
        raise RuntimeError(f"every class failed ({', '.join(map(str, failed))})")
    note = ""
    if prediction.fallbacks:
        note += f" fell_back={','.join(map(str, prediction.fallbacks))}"
    if prediction.level != Level.FULL:
        note += f" degraded={prediction.level.name}"
    return segs, note


def _predict_or_fallback(
    path: Path, case: Case, session: Session, budget: Budget
) -> tuple[np.ndarray, bool, str]:
    """(label map, ok, note): the prediction, or the case's fallback when the prediction failed."""
    try:
        segs, note = _predict(case, session, budget)
        return segs, True, note
    except Exception as exc:
        log.warning(
            "%s: prediction failed (%s: %s): writing %s instead",
            path.name,
            type(exc).__name__,
            exc,
            "prev_pred" if case.prev_pred is not None else "zeros",
            exc_info=log.isEnabledFor(logging.DEBUG),
        )
        return fallback_segs(case), False, ""


def run_case(
    path: Path, out_dir: Path, session: Session, start: float, extra: str = "", time_scale: float = 1.0
) -> tuple[bool, str]:
    """Process one case file through `session`. Returns (ok, one-line summary). Never raises for a
    bad case. start: when the case's time began (the process start for the first case).
    time_scale: multiplies the organisers' allowance (--time-scale)."""
    out = out_dir / path.name
    device = getattr(session.predictor, "device", "?")

    def unusable(status: str) -> tuple[bool, str]:
        secs = time.monotonic() - start
        return False, f"{path.stem} classes=? step=? seconds={secs:.2f} device={device} status={status}"

    why = _not_regular(path)
    if why is not None:
        log.error("%s: %s, not a case file: skipped", path.name, why)
        _remove_stale(path, out)
        return unusable("not a regular file")
    if out.exists() and os.path.samefile(path, out):
        log.error(
            "%s: is the output file %s itself (a link): not processed, it would be overwritten",
            path.name,
            out,
        )
        return unusable("input is the output")
    _remove_stale(path, out)

    try:
        case = read_case(path)
    except CaseError as exc:
        log.error("%s: cannot use the case: %s", path.name, exc)
        return unusable(_write_unusable_fallback(path, out, exc))

    n = case.n_classes
    budget = Budget.for_step(
        n, has_boxes=case.boxes is not None, start=start, per_class_s=PER_CLASS_S * time_scale
    )
    segs, ok, note = _predict_or_fallback(path, case, session, budget)
    status = "ok" if ok else "fallback"
    try:
        write_segs(out, segs)
    except Exception as exc:
        log.error("%s: cannot write %s: %s", path.name, out, exc)
        ok, status = False, "write failed"
    secs = time.monotonic() - start
    if secs > budget.step_s:
        log.warning("%s: over its time budget (%.1f s for %d classes)", path.name, budget.step_s, n)
    line = f"{case.name} classes={n} step={case.step} seconds={secs:.2f} device={device}{extra}{note}"
    if case.ignored:
        line += f" ignored={','.join(case.ignored)}"
    return ok, line if ok else f"{line} status={status}"


def _same_folder(a: Path, b: Path) -> bool:
    """True when a and b are one folder, however named (symlink, bind mount: same device and inode)."""
    return a.exists() and b.exists() and os.path.samefile(a, b)


def main(argv: Sequence[str] | None = None, predictor_factory: PredictorFactory | None = None) -> int:
    args = parse_args(argv)
    if args.verbose:  # the model's own debug lines too (one per network pass)
        log.setLevel(logging.DEBUG)
        logging.getLogger("model").setLevel(logging.DEBUG)
    factory = predictor_factory or load_predictor

    files: list[Path] = []
    if not args.check:
        if not args.input_dir.is_dir():
            log.error("input folder %s does not exist", args.input_dir)
            return EXIT_SETUP
        if _same_folder(args.input_dir, args.output_dir):
            log.error(
                "the output folder %s is the input folder %s: refusing to run (each output would "
                "replace its input); give a separate output folder",
                args.output_dir,
                args.input_dir,
            )
            return EXIT_SETUP
        files = sorted(args.input_dir.glob("*.npz"))  # irregular entries too: each is a failed case
        if not files:
            log.warning("no *.npz case files in %s", args.input_dir)
            return EXIT_OK
        try:
            args.output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.error("cannot create the output folder %s: %s", args.output_dir, exc)
            return EXIT_SETUP

    t_load = time.monotonic()
    try:
        predictor = factory(args.weights_dir, args.device)
    except (SetupError, FileNotFoundError) as exc:
        log.error("%s", exc)
        return EXIT_SETUP
    except Exception as exc:  # a broken checkpoint or install: nothing can run, say why
        log.error("cannot load the predictor from %s: %s: %s", args.weights_dir, type(exc).__name__, exc)
        log.debug("traceback", exc_info=True)
        return EXIT_SETUP
    load_s = time.monotonic() - t_load
    if args.check:
        log.info("predictor loaded from %s in %.2f s on %s", args.weights_dir, load_s, predictor.device)
        return EXIT_OK

    if args.time_scale != 1.0:
        log.warning("time allowance x %g (SEGFM_TIME_SCALE): not the organisers' budget", args.time_scale)
    session = Session(predictor)  # type: ignore[arg-type]
    failed: list[str] = []
    for i, path in enumerate(files):
        # the first case also pays the start-up (imports, model load), as the official timing does
        start = _PROCESS_START if i == 0 else time.monotonic()
        extra = f" startup={t_load - _PROCESS_START + load_s:.2f}" if i == 0 else ""
        ok, line = run_case(path, args.output_dir, session, start, extra, args.time_scale)
        log.info("%s", line)
        if not ok:
            failed.append(path.name)
    if failed:
        log.warning("%d of %d case(s) failed: %s", len(failed), len(files), ", ".join(failed))
        return EXIT_CASE_FAILED
    return EXIT_OK


def cli() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    sys.exit(main())


if __name__ == "__main__":
    cli()
