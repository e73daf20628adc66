"""Opening only the arrays of a reference file that a step reads, or only the rows it reads.

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

Likewise ``STEPS[name].extra["reference_rows"]``, a function of the step's
input giving {reftype: (y0, y1)}: those references' images are read as
those rows alone (a NIRSpec BOTS exposure of 32 rows reads 32 of the 2048
rows of each plane of its full-frame d-flat and s-flat); the model's
``_rows`` tells the step which rows it holds (None: the whole image).
"""

from __future__ import annotations

import os
from pathlib import Path


def open_step_references(name: str, references: dict, model=None) -> dict:
    """``references`` with the step's partly-read reftypes replaced by models holding only the
    declared arrays, or the rows the step reads of ``model``'s exposure."""
    from .base import STEPS

    extra = STEPS[name].extra
    wanted = extra.get("reference_arrays") or {}
    rows_of = extra.get("reference_rows")
    rows = rows_of(model) if rows_of is not None and model is not None else {}
    if not wanted and not rows:
        return references
    out = dict(references)
    for rt in dict.fromkeys([*wanted, *rows]):
        p = out.get(rt)
        if not isinstance(p, (str, os.PathLike)) or str(p).upper() == "N/A" or not Path(p).exists():
            continue  # run_step reports missing files and N/A itself
        out[rt] = open_reference_arrays(rt, p, wanted.get(rt), rows.get(rt))
    return out


def open_reference_arrays(reftype: str, path, arrays, rows=None):
    from ..refs.select import open_reference

    m = open_reference(reftype, path, arrays, rows)
    m.meta.filename = str(path)
    return m
