"""Reference files opened and parsed once per run.

An association run brings every exposure through the same steps with, mostly, the same
reference files: without a cache, each step of each exposure opened its references again
(for 4 NIRCam exposures from uncal to Stage 3: the gain file 16 times, read noise and
superbias 8 times, every other reference 4 times, each a FITS parse, a schema check and,
for ASDF references, a tree with its transforms).

Within ``with reference_cache():`` :func:`~webbflow.refs.select.open_reference` keeps the
model it parsed, keyed by the reference type, the file (path, size, modification time) and
the arrays asked for, and hands each caller its own copy (``DataModel.copy``: arrays, meta
and headers copied), so that a step changing a reference model in place cannot change what
the next step gets.  Models are kept while their arrays together take at most
``WEBBFLOW_REFERENCE_CACHE_MB`` (default: a sixteenth of ``WEBBFLOW_MEMORY_BUDGET``, 128 MiB);
the least recently used go first, and a larger reference (a full-frame dark) is opened each
time as before.  Outside the context nothing is kept.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

_lock = threading.Lock()
_state: dict = {"depth": 0, "models": OrderedDict(), "bytes": 0, "limit": 0, "opened": 0, "reused": 0}


def _limit() -> int:
    mb = os.environ.get("WEBBFLOW_REFERENCE_CACHE_MB")
    if mb not in (None, ""):
        try:
            return max(0, int(float(mb) * 2**20))
        except ValueError:
            pass
    from ..flows._streaming import memory_budget

    return memory_budget() // 16


@contextmanager
def reference_cache():
    """Keep references opened within this block (nested blocks share the outer one's)."""
    with _lock:
        if _state["depth"] == 0:
            _state.update(models=OrderedDict(), bytes=0, limit=_limit(), opened=0, reused=0)
        _state["depth"] += 1
    try:
        yield _state
    finally:
        with _lock:
            _state["depth"] -= 1
            if _state["depth"] == 0:
                _state.update(models=OrderedDict(), bytes=0)


def drop_kept() -> None:
    """Let go of every model kept so far, staying within the block: later opens fill the cache
    again.  An association run calls it when its members are done, as Stage 3 reads other
    references than detector1's full-frame ones."""
    with _lock:
        if _state["depth"] > 0:
            _state.update(models=OrderedDict(), bytes=0)


def _nbytes(model) -> int:
    arrays = getattr(model, "_arrays", None) or {}
    return sum(int(getattr(a, "nbytes", 0)) for a in arrays.values())


def cached_open(reftype: str, path, arrays, opener, rows=None):
    """``opener()``'s model, parsed once per file (and ``arrays`` and ``rows`` read) within
    :func:`reference_cache`; a copy for each caller."""
    if _state["depth"] == 0:
        return opener()
    p = Path(path)
    try:
        st = p.stat()
        key = (reftype, str(p.resolve()), st.st_size, st.st_mtime_ns, tuple(arrays) if arrays is not None else None,
               tuple(rows) if rows is not None else None)
    except OSError:
        return opener()
    with _lock:
        hit = _state["models"].get(key)
        if hit is not None:
            _state["models"].move_to_end(key)
            _state["reused"] += 1
    if hit is not None:
        return _handout(hit)
    model = opener()
    copy = getattr(model, "copy", None)
    size = _nbytes(model)
    if copy is None or size > _state["limit"]:
        return model  # not a datamodel (a JSON tree), or too large to keep
    with _lock:
        _state["opened"] += 1
        if key not in _state["models"] and _state["depth"] > 0:
            _state["models"][key] = model
            _state["bytes"] += size
            while _state["bytes"] > _state["limit"] and len(_state["models"]) > 1:
                _, old = _state["models"].popitem(last=False)
                _state["bytes"] -= _nbytes(old)
    return _handout(model)


def _handout(model):
    """A copy of a kept model for one caller: ``DataModel.copy`` and any other attribute its reading set."""
    new = model.copy()
    for k, v in vars(model).items():
        if k not in vars(new):
            object.__setattr__(new, k, v)
    return new
