"""Write a file whole or not at all: into a temporary sibling, then renamed over the target.

Why: training writes checkpoints every few minutes and export writes `weights/`, and any of them
can be cut off (a session's time limit, a killed process, a full disk). A half-written
`last.pt` loses the run's progress; a half-written `weights/model.pt` ships a model that does
not load. A rename within one folder is atomic, so the target is always either the old file or
the complete new one, and the temporary file never outlives a failure.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """`path` holds `data` afterwards, or is untouched if writing failed."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def torch_save_atomic(obj: Any, path: Path) -> None:
    """`torch.save(obj, path)`, but a failure (an unpicklable object, a full disk, a kill between
    the write and the rename) leaves the previous file in place and no temporary behind."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
