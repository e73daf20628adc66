"""Helpers for parity tests against the jwst oracle (test extra only).

``jwst_offline(cache)`` sets the environment so that jwst runs with no
network, selecting from ``cache`` (a CRDS cache directory) unless each
reftype is overridden.  ``compare_arrays`` measures agreement the way the
issues state tolerances: the fraction of pixels within rtol, and reports it.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np


@contextmanager
def jwst_offline(cache, context: str | None = None):
    old = {k: os.environ.get(k) for k in ("CRDS_PATH", "CRDS_CONTEXT", "CRDS_MODE")}
    os.environ["CRDS_PATH"] = str(cache)
    if context:
        os.environ["CRDS_CONTEXT"] = context
    os.environ["CRDS_MODE"] = "local"
    try:
        from webbflow.refs.select import reset_crds_state

        reset_crds_state()
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        from webbflow.refs.select import reset_crds_state

        reset_crds_state()


@contextmanager
def quiet_jwst(level: int = 30, also: tuple[str, ...] = ()):
    """Silence the oracle's (jwst, stpipe, stcal, crds) logging, and that of the loggers named in
    ``also``, below ``level`` during a parity run."""
    import logging

    names = ("stpipe", "jwst", "stcal", "CRDS", "crds", *also)
    old = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(level)
    try:
        yield
    finally:
        for n, lv in old.items():
            logging.getLogger(n).setLevel(lv)


@dataclass
class Agreement:
    name: str
    fraction: float
    n: int
    max_rel: float

    def __str__(self):
        return f"{self.name}: {100 * self.fraction:.4f}% of {self.n} pixels agree (max rel diff {self.max_rel:.3g})"


def compare_arrays(name, ours, theirs, rtol=1e-4, atol=0.0) -> Agreement:
    a = np.asarray(ours, dtype=np.float64)
    b = np.asarray(theirs, dtype=np.float64)
    assert a.shape == b.shape, f"{name}: shape {a.shape} != {b.shape}"
    both_nan = np.isnan(a) & np.isnan(b)
    close = np.isclose(a, b, rtol=rtol, atol=atol) | both_nan
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(a - b) / np.maximum(np.abs(b), 1e-30)
    rel = np.where(both_nan | (a == b), 0, rel)
    finite = np.isfinite(rel)
    ag = Agreement(name, float(close.mean()) if close.size else 1.0, int(close.size), float(rel[finite].max()) if finite.any() else 0.0)
    print(ag)
    return ag


def compare_dq(name, ours, theirs) -> Agreement:
    a = np.asarray(ours)
    b = np.asarray(theirs)
    assert a.shape == b.shape, f"{name}: shape {a.shape} != {b.shape}"
    same = a.astype(np.uint64) == b.astype(np.uint64)
    ag = Agreement(name, float(same.mean()) if same.size else 1.0, int(same.size), 0.0)
    print(ag)
    return ag


def assert_parity(ours_model, jwst_model, arrays, rtol=1e-4, min_fraction=0.999, dq_arrays=("dq", "pixeldq", "groupdq")):
    """Compare named arrays of our model and jwst's; float arrays within rtol, DQ identical, for min_fraction of pixels."""
    report = []
    for name in arrays:
        ours = getattr(ours_model, name)
        theirs = getattr(jwst_model, name)
        if name in dq_arrays:
            ag = compare_dq(name, ours, theirs)
        else:
            ag = compare_arrays(name, ours, theirs, rtol=rtol)
        report.append(ag)
        assert ag.fraction >= min_fraction, str(ag)
    return report
