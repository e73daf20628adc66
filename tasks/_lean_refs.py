"""Opening only the arrays of a reference file that a step reads.

Dark and reset references hold an ERR array as large as their SCI array
(850 MB each for a MIRI full frame with 50 groups and 2 integrations) that
their steps never read.  A step declares what it reads in
``STEPS[name].extra["reference_arrays"]`` (reftype -> array names); the
stage flows open those references with just these arrays before calling
:func:`~webbflow.tasks.base.run_step`, which then uses the models as given.
The checks and errors are those of ``refs.select.open_reference``, and the
model keeps the file's path in ``meta.filename`` so that the recorded
reference (``crds://<name>``) and the provenance are the same as when
``run_step`` opens the file itself.
"""

from __future__ import annotations

import os
from pathlib import Path


def open_step_references(name: str, references: dict) -> dict:
    """``references`` with the step's partly-read reftypes replaced by models holding only the declared arrays."""
    from .base import STEPS

    wanted = STEPS[name].extra.get("reference_arrays") or {}
    if not wanted:
        return references
    out = dict(references)
    for rt, arrays in wanted.items():
        p = out.get(rt)
        if not isinstance(p, (str, os.PathLike)) or str(p).upper() == "N/A" or not Path(p).exists():
            continue  # run_step reports missing files and N/A itself
        out[rt] = open_reference_arrays(rt, p, arrays)
    return out


def open_reference_arrays(reftype: str, path, arrays):
    from ..refs.select import open_reference

    m = open_reference(reftype, path, arrays)
    m.meta.filename = str(path)
    return m
