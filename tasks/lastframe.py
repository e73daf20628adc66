"""lastframe: flag the last group of MIRI ramps as DO_NOT_USE (jwst's LastFrameStep).

With more than 2 groups, the final group of every integration gets DO_NOT_USE
in GROUPDQ.  jwst 3.0 uses no reference file for this and runs it by default.
"""

from __future__ import annotations

import logging

import numpy as np

from ..models import dqflags
from .base import StepParams, step
from .firstframe import is_miri

log = logging.getLogger("webbflow.steps.lastframe")


class LastFrameParams(StepParams):
    pass


@step("lastframe", "LastFrameStep", params=LastFrameParams, suffix="lastframe")
def lastframe(model, refs, params: LastFrameParams):
    """Flag the last group of each MIRI integration as DO_NOT_USE."""
    if not is_miri(model):
        log.warning("lastframe applies to MIRI only; skipped for detector %s", model.meta.instrument.detector)
        return model, "SKIPPED"
    ngroups = model.data.shape[1]
    if ngroups <= 2:
        log.warning("lastframe: %d groups is too few (needs more than 2); skipped", ngroups)
        return model, "SKIPPED"
    model.groupdq[:, -1] |= np.uint8(dqflags.DO_NOT_USE)
    return model
