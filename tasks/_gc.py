"""The cyclic garbage collector kept off the objects a long computation starts with."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def older_objects_frozen():
    """The objects alive on entry (modules, classes, schemas, the caller's data: hundreds of
    thousands) kept out of every collection made inside, which then walk only what was made
    since: Python's own full collections, and the ones a step makes to free what it dropped.
    Nothing is done when objects are frozen already (a whole association run freezes its
    start-up objects once); otherwise they are thawed on exit, to be collected as before."""
    import gc

    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
