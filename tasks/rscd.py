"""rscd: flag the groups affected by MIRI's reset-switch charge decay (jwst 3.0's RscdStep).

jwst 3.0 no longer subtracts a model: it flags the first groups of each
integration as DO_NOT_USE.  The RSCD reference table gives, for the exposure's
(SUBARRAY, READPATT), how many groups to flag in the first integration
(``group_skip1``) and in later ones (``group_skip``).  Rules, as jwst:

- fewer than 3 groups: nothing is flagged (SKIPPED);
- 5 groups or fewer: 1 group is flagged in every integration;
- at least 3 groups must stay: the counts are lowered to ``ngroups - 3`` when needed;
- a pixel saturated by group ``N+2`` gets fewer groups flagged, one less at a
  time until its first unflagged group is below saturation (pixels saturated in
  group 1 are left alone); such pixels get FLUX_ESTIMATED in PIXELDQ;
- an old table without ``group_skip1`` (-1) means 1 group in the first integration.

For segmented exposures INTSTART tells whether the file holds the first integration.
The counts are recorded in meta.rscd (INT1SKIP, INT2SKIP, INT1BORS, INT2BORS, INT1UGP1, INT2UGP1).
"""

from __future__ import annotations

import logging

import numpy as np

from ..models import dqflags
from ._convert import integration_offset, stream_state
from .base import StepParams, step
from .firstframe import is_miri

log = logging.getLogger("webbflow.steps.rscd")


class RscdParams(StepParams):
    pass


def _text(v) -> str:
    return (v.decode() if isinstance(v, bytes) else str(v)).strip()


def skip_counts(model, table) -> tuple[int, int] | None:
    """(groups to flag in integration 1, in integrations 2+) for this exposure, or None if not in the table."""
    readpatt = _text(model.meta.exposure.readpatt or "")
    subarray = _text(model.meta.subarray.name or "")
    if subarray.upper() == "SUBPRISM":  # the old name of MIRI's LRS slitless subarray
        subarray = "SLITLESSPRISM"
    names = {n.lower(): n for n in table.dtype.names}
    for row in table:
        if _text(row[names["subarray"]]) == subarray and _text(row[names["readpatt"]]) == readpatt:
            skip1 = int(row[names["group_skip1"]]) if "group_skip1" in names else -1
            return skip1, int(row[names["group_skip"]])
    return None


def _flag_range(model, i0: int, i1: int, nskip: int, union: dict | None = None) -> tuple[int, int]:
    """Flag the first groups of integrations i0..i1-1; returns (pixels backed off, pixels left with 1 group).

    With ``union`` (a dict kept across the pieces of an exposure processed one
    integration at a time), the counts are of the pixels backed off, or left
    with one group, in any of the integrations seen so far.
    """
    gdq = model.groupdq[i0:i1]  # a view
    sat = np.uint8(dqflags.SATURATED)
    nints, ngroups, ny, nx = gdq.shape
    skip = np.full((nints, ny, nx), nskip, dtype=np.int16)  # group counts (not int64: 4 times the ramp's GROUPDQ)
    n_lowered = 0
    n_one_group = 0
    # The first group kept is group nskip+1 (0-based nskip); the ramp needs the next one
    # below saturation too.  Back off one group at a time where it is saturated.
    g = nskip + 1  # 0-based index of the group that must be unsaturated
    sat_first = (gdq[:, 0] & sat) != 0
    problem = ((gdq[:, g] & sat) != 0) & ~sat_first if 0 <= g < ngroups else np.zeros_like(sat_first)
    if problem.any():
        while problem.any() and g > 0:
            skip[problem] = np.maximum(skip[problem] - 1, 0)
            g -= 1
            problem = ((gdq[:, g] & sat) != 0) & ~sat_first
        lowered = (skip < nskip).any(axis=0)
        n_lowered = int(lowered.sum())
        if n_lowered:
            model.pixeldq[lowered] |= np.uint32(dqflags.FLUX_ESTIMATED)
            log.info("rscd: %d pixels flagged FLUX_ESTIMATED (fewer groups flagged because of saturation)", n_lowered)
        one = (skip == 0).any(axis=0)
        n_one_group = int(one.sum())
        if union is not None:
            for key, mask in (("lowered", lowered), ("one", one)):
                union[key] = mask if key not in union else (union[key] | mask)
    if union is not None:
        n_lowered = int(union["lowered"].sum()) if "lowered" in union else 0
        n_one_group = int(union["one"].sum()) if "one" in union else 0
    # groups 0..skip-1 of each pixel get DO_NOT_USE, a group plane at a time (no mask of the whole ramp)
    dnu = np.uint8(dqflags.DO_NOT_USE)
    for k in range(min(ngroups, int(skip.max(initial=0)))):
        plane = gdq[:, k]
        plane[k < skip] |= dnu
    return n_lowered, n_one_group


@step("rscd", "RscdStep", params=RscdParams, reftypes=("rscd",), suffix="rscd")
def rscd(model, refs, params: RscdParams):
    """Flag the RSCD-affected first groups of MIRI integrations as DO_NOT_USE."""
    if not is_miri(model):
        log.warning("rscd applies to MIRI only; skipped for detector %s", model.meta.instrument.detector)
        return model, "SKIPPED"
    counts = skip_counts(model, refs["rscd"].rscd_group_skip_table)
    if counts is None:
        log.warning("rscd: READPATT %s, SUBARRAY %s not in the reference table; skipped",
                    model.meta.exposure.readpatt, model.meta.subarray.name)
        return model, "SKIPPED"
    skip1, skip2 = counts
    if skip1 < 0:
        log.warning("rscd: the reference table has no first-integration value (old format); using 1")
        skip1 = 1

    exp = model.meta.exposure
    ngroups = exp.ngroups if exp.ngroups is not None else model.data.shape[1]
    nints = exp.nints if exp.nints is not None else model.data.shape[0]
    int_start = exp.integration_start if exp.integration_start is not None else 1
    if ngroups < 3:
        log.warning("rscd: %d groups is too few; skipped", ngroups)
        return model, "SKIPPED"
    if ngroups <= 5:
        skip1 = skip2 = 1
    if ngroups < skip1 + 3:
        skip1 = max(0, ngroups - 3)
    if nints > 1 and ngroups < skip2 + 3:
        skip2 = max(0, ngroups - 3)
    log.info("rscd: flagging %d groups in integration 1 and %d in later integrations", skip1, skip2)

    nfile = model.data.shape[0]
    # a piece of an exposure processed one integration at a time (flows/_streaming.py):
    # its place in the exposure, and the counts kept over the pieces
    offset = integration_offset(model)
    state = stream_state(model)
    union = None if state is None else state.setdefault("rscd", {})
    if int_start == 1 and offset == 0:
        lowered, one = _flag_range(model, 0, 1, skip1)
        model.meta.rscd.keep_bright_firstgroup_int1 = one
        model.meta.rscd.keep_groups_saturation_int1 = lowered
        model.meta.rscd.ngroups_skip_int1 = skip1
    if nints > 1:
        first = 1 if (int_start == 1 and offset == 0) else 0
        if first < nfile:
            lowered, one = _flag_range(model, first, nfile, skip2, union)
        elif union:
            lowered, one = _flag_range(model, 0, 0, skip2, union)
        else:
            lowered, one = 0, 0
        model.meta.rscd.keep_bright_firstgroup_int2p = one
        model.meta.rscd.keep_groups_saturation_int2p = lowered
        model.meta.rscd.ngroups_skip_int2p = skip2
    return model
