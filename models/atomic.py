"""Atomic file writing, used for every product, report and cache file webbflow writes.

A file is written under ``.<name>.<pid>.<random>.part`` in its target folder, flushed to
disk and renamed into place, so a reader never sees a half-written file and a failure
never truncates an existing one.  The writer's PID in the name lets a later run tell a
dead writer's leftovers (safe to delete) from a live writer's file (see
``webbflow.flows.stage.remove_stale_parts``).
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_open(path, mode: str = "wb"):
    """Open a temporary file beside ``path``; on leaving the block it replaces ``path``.

    ``mode`` is ``"wb"`` or ``"w"``.  If the block raises, the temporary file is removed and
    ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)
