"""Keeping long-lived objects out of the cyclic garbage collector's walks during a step or a run."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def older_objects_frozen():
    """The objects alive on entry (modules, classes, schemas, the caller's data: hundreds of
    thousands) moved out of the cyclic garbage collector's reach until the block ends.

    Python makes a full collection each time the surviving objects grow by a quarter, and each one
    walked them all again; inside, collections walk only what the block made.  Nothing is done when
    objects are frozen already (a whole association run freezes its start-up objects once, for the
    process); otherwise they are thawed when the block ends, so that nothing stays out of reach."""
    import gc

    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def collections_paused():
    """No automatic collection inside the block (reading a file of many WCSs: objects that stay).

    Reading a 20-slit NIRSpec exposure makes some 400,000 objects that live on (its transforms), and
    the collector's full collections, one each time they grow by a quarter, walked them all again
    some 19 times, about 2.5 s of CPU for two exposures; after the block, one pass of each
    generation finds what of them is garbage.  Collections come back when the block ends (unless
    they were off before it)."""
    import gc

    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


@contextlib.contextmanager
def rarer_collections(gen0: int = 10_000):
    """The youngest generation collected every ``gen0`` net allocations instead of every 700.

    A spec3 source makes and drops many short-lived objects in reference cycles (transforms,
    ASDF trees of its products); at 700, many were still alive at the collection, survived into
    the older generations and were walked again by their collections: about a fifth of a 20-source
    run's CPU was the collector's.  Collected later, most are gone by then.  The thresholds are
    the process's, put back when the block ends."""
    import gc

    before = gc.get_threshold()
    gc.set_threshold(max(gen0, before[0]), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
