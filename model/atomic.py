"""Write a file whole or not at all: into a temporary sibling, then renamed over the target.

Why: a case's output is read by the evaluator as soon as it exists, training writes checkpoints
every few minutes and export writes `weights/`, and any of them can be cut off (a step's time
limit, a session's, a killed process, a full disk). A half-written output is scored as garbage, a
half-written `last.pt` loses the run's progress, a half-written `weights/model.pt` ships a model
that does not load. A rename within one folder is atomic, so the target is always either the old
file or the complete new one, and the temporary file never outlives a failure.

This module imports no torch: the case writer (model/case_io.py) uses it on paths that load none
(the box-prism baseline's predict.sh); `torch_save_atomic` imports it when called.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield a temporary file beside `path` to write; when the block ends without an error it is
    renamed over `path`, otherwise removed and `path` is left as it was."""
    path = Path(path)
    # a short name, whatever the target's: ".<name>.xxxx.tmp" of a 242-character name is over 255 bytes
    fd, tmp = tempfile.mkstemp(prefix=".atomic-", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp creates 0600; another user (the evaluator) may read the file
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """`path` holds `data` afterwards, or is untouched if writing failed."""
    with replacing(path) as tmp:
        tmp.write_bytes(data)


def torch_save_atomic(obj: Any, path: Path) -> None:
    """`torch.save(obj, path)`, but a failure (an unpicklable object, a full disk, a kill between
    the write and the rename) leaves the previous file in place and no temporary behind."""
    import torch  # here, not at the top: see the module's docstring

    with replacing(path) as tmp:
        torch.save(obj, tmp)
