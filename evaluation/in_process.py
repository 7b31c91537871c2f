"""The local evaluation's in-process mode: every step goes through the model's session in this
process, instead of a fresh ``sh predict.sh`` per step.

Why: iterating on the model, a step's interpreter start and weight loading are pure waiting.
Here the weights load once and each step replays its case file through the same code path as
the CLI (``infer.run_case`` -> ``model.session.Session``), so the scores are those of the
container. What it cannot reproduce is the organisers' timing and isolation (no start-up per
step, one process for every step), which is why one process per step stays the default.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

log = logging.getLogger("infer")


class InProcessStep:
    """A step runner with ``protocol.run_predict``'s signature, running this repository's model."""

    def __init__(self, weights_dir: Path, device: str | None = None, time_scale: float = 1.0) -> None:
        from model.predictor import Predictor
        from model.session import Session

        self.session = Session(Predictor.from_weights(weights_dir, device=device))
        self.time_scale = time_scale  # on the time allowance, as infer.py's --time-scale

    def __call__(
        self, submission: Path, inputs: Path, outputs: Path, log_path: Path | None, timeout: float | None
    ) -> tuple[float, int | None, bool]:
        """One step over every case file in `inputs`: (seconds, exit status as infer.py's, timed
        out). `submission` is ignored (the model is this repository's); a timeout cannot stop a
        call in this process, so a step that ran past it is reported as timed out afterwards."""
        import infer

        handler = logging.FileHandler(log_path) if log_path is not None else None
        level = log.level
        if handler is not None:  # the step's log, as predict.sh's output would be
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            log.setLevel(logging.INFO)
            for name in ("infer", "model"):
                logging.getLogger(name).addHandler(handler)
        start = time.perf_counter()
        try:
            Path(outputs).mkdir(parents=True, exist_ok=True)
            results = [
                infer.run_case(path, Path(outputs), self.session, time.monotonic(), "", self.time_scale)
                for path in sorted(Path(inputs).glob("*.npz"))
            ]
            for _, line in results:
                log.info("%s", line)
        finally:
            if handler is not None:
                for name in ("infer", "model"):
                    logging.getLogger(name).removeHandler(handler)
                handler.close()
                log.setLevel(level)
        elapsed = time.perf_counter() - start
        rc = infer.EXIT_OK if all(ok for ok, _ in results) else infer.EXIT_CASE_FAILED
        return elapsed, rc, timeout is not None and elapsed > timeout
