"""firstframe: flag the first group of MIRI ramps as DO_NOT_USE (jwst's FirstFrameStep).

jwst 3.0 deprecates this step (the rscd step now flags the first groups) and
skips it by default; it still works when enabled.  With more than 3 groups the
first group of every integration gets DO_NOT_USE.  With ``bright_use_group1``,
pixels already saturated in group 3 keep their first group (the first-frame
effect is small next to their signal) and get FLUX_ESTIMATED in PIXELDQ.
"""

from __future__ import annotations

import logging

import numpy as np

from ..models import dqflags
from .base import StepParams, step

log = logging.getLogger("webbflow.steps.firstframe")


class FirstFrameParams(StepParams):
    skip: bool = True  # jwst: deprecated, skipped by default
    bright_use_group1: bool = True  # do not flag group 1 where group 3 is saturated


def is_miri(model) -> bool:
    det = model.meta.instrument.detector
    return bool(det) and str(det).upper().startswith("MIR")


@step("firstframe", "FirstFrameStep", params=FirstFrameParams, suffix="firstframe")
def firstframe(model, refs, params: FirstFrameParams):
    """Flag the first group of each MIRI integration as DO_NOT_USE."""
    if not is_miri(model):
        log.warning("firstframe applies to MIRI only; skipped for detector %s", model.meta.instrument.detector)
        return model, "SKIPPED"
    ngroups = model.data.shape[1]
    if ngroups <= 3:
        log.warning("firstframe: %d groups is too few (needs more than 3); skipped", ngroups)
        return model, "SKIPPED"
    gdq = model.groupdq
    dnu = np.uint8(dqflags.DO_NOT_USE)
    if params.bright_use_group1:
        sat3 = (gdq[:, 2] & np.uint8(dqflags.SATURATED)) != 0
        first = gdq[:, 0]
        first[~sat3] |= dnu
        kept = sat3.any(axis=0)
        model.pixeldq[kept] |= np.uint32(dqflags.FLUX_ESTIMATED)
        n_good = int(np.count_nonzero((model.pixeldq[kept] & np.uint32(dqflags.DO_NOT_USE)) == 0))
        log.info("firstframe: %d usable bright pixels keep their first group", n_good)
    else:
        gdq[:, 0] |= dnu
    return model
