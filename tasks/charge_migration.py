"""charge_migration: flag groups affected by charge migration (jwst's ChargeMigrationStep).

Charge from a very bright pixel migrates to its neighbours (the
brighter-fatter effect), so once a group's signal exceeds
``signal_threshold`` that group and every later group of the integration
get CHARGELOSS and DO_NOT_USE, in the pixel and its four neighbours.  jwst
skips the step by default; it needs at least 3 groups.

jwst tests the threshold on groups whose GROUPDQ is not exactly DO_NOT_USE
(a group flagged DO_NOT_USE together with another flag still counts); we
keep that rule.  The flagging is array-wide: the first group over the
threshold, carried forward along the ramp and spread to the four
neighbours.
"""

from __future__ import annotations

import logging

import numpy as np
from pydantic import Field

from ..models import dqflags
from .base import StepParams, step

log = logging.getLogger("webbflow.steps.charge_migration")


class ChargeMigrationParams(StepParams):
    skip: bool = True  # jwst skips it by default
    signal_threshold: float = Field(25000.0, description="signal (DN) above which a group is flagged CHARGELOSS")


def flag_charge_migration(data: np.ndarray, groupdq: np.ndarray, signal_threshold: float) -> int:
    """Flag CHARGELOSS|DO_NOT_USE in ``groupdq`` (in place); returns the number of newly flagged groups."""
    dnu = np.uint8(dqflags.DO_NOT_USE)
    flag = np.uint8(dqflags.CHARGELOSS | dqflags.DO_NOT_USE)
    nints = data.shape[0]
    before = 0
    after = 0
    for i in range(nints):  # one integration at a time keeps the temporaries small
        over = (data[i] > signal_threshold) & (groupdq[i] != dnu)
        if not over.any():
            continue
        # from the first group over the threshold on
        np.logical_or.accumulate(over, axis=0, out=over)
        hit = over.copy()
        hit[:, 1:, :] |= over[:, :-1, :]
        hit[:, :-1, :] |= over[:, 1:, :]
        hit[:, :, 1:] |= over[:, :, :-1]
        hit[:, :, :-1] |= over[:, :, 1:]
        g = groupdq[i]
        before += int(np.count_nonzero((g[hit] & flag) == flag))
        g[hit] |= flag
        after += int(np.count_nonzero(hit))
    return after - before


@step("charge_migration", "ChargeMigrationStep", params=ChargeMigrationParams, suffix="charge_migration")
def charge_migration(model, refs, params: ChargeMigrationParams):
    """Flag groups above signal_threshold, and their four neighbours, CHARGELOSS and DO_NOT_USE."""
    if model.data.shape[1] < 3:
        log.info("Too few groups per integration; skipping charge_migration")
        return model, "SKIPPED"
    log.info("Using signal_threshold: %.2f", params.signal_threshold)
    n = flag_charge_migration(model.data, model.groupdq, params.signal_threshold)
    log.info("charge_migration: %d groups newly flagged CHARGELOSS", n)
    return model
