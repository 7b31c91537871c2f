"""The inference and serving entry points never import MONAI: it is a training-only dependency
(requirements-train.txt) whose import costs seconds at every container start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENTRY_POINTS = ("infer", "serve", "server.app", "model.predictor", "model.session")


def test_inference_path_does_not_import_monai() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {ENTRY_POINTS!r}:\n"
        "    importlib.import_module(name)\n"
        "    assert 'monai' not in sys.modules, f'importing {name} imported monai'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
