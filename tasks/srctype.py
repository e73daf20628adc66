"""srctype: decide whether the target is a point or an extended source (jwst's SourceTypeStep).

The answer, POINT or EXTENDED, goes to SRCTYPE (meta.target.source_type) and, for slit
products, to each slit's SRCTYPE; later steps (pathloss, photom, resample_spec, extract_1d)
depend on it.  The rules, in order of precedence, for the single-target modes:

1. the user's ``source_type`` parameter;
2. a background target (BKGDTARG) is EXTENDED;
3. a time series is POINT;
4. what the proposer said in APT (SRCTYAPT, falling back to SRCTYPE), when POINT or EXTENDED;
5. a nodded or point-source-optimised dither pattern means POINT;
6. otherwise POINT, except for the IFUs (MIRI MRS, NIRSpec IFU), which default to EXTENDED.

NIRSpec fixed slits apply the answer to the primary slit only (the others are EXTENDED).  MSA
slitlets are typed by their stellarity (POINT when negative or above 0.75), WFSS objects by
whether the catalogue marks them extended, and other time series are POINT.
"""

from __future__ import annotations

import logging
from typing import Literal

from .base import StepParams, step

log = logging.getLogger("webbflow.steps.srctype")

# the single-target modes the rules above apply to
SINGLE_TARGET = ("MIR_LRS-FIXEDSLIT", "MIR_LRS-SLITLESS", "MIR_MRS", "NRC_TSGRISM", "NIS_SOSS", "NRS_FIXEDSLIT",
                 "NRS_BRIGHTOBJ", "NRS_IFU")
# where a user's source_type is honoured (jwst does not honour it for NIRISS SOSS)
USER_SETTABLE = tuple(t for t in SINGLE_TARGET if t != "NIS_SOSS")
IFU = ("MIR_MRS", "NRS_IFU")
WFSS = ("NIS_WFSS", "NRC_WFSS", "MIR_WFSS")
# time-series exposure types (besides TSOVISIT), as DMS lists them
TSO_TYPES = ("NRC_TSIMAGE", "NRC_TSGRISM", "NRS_BRIGHTOBJ")


class SrcTypeParams(StepParams):
    source_type: Literal["POINT", "EXTENDED"] | None = None  # user-supplied source type


def _is_tso(model) -> bool:
    return bool(model.meta.visit.tsovisit) or (model.meta.exposure.type or "").upper() in TSO_TYPES


def _single_target_type(model, user: str | None) -> str:
    exp_type = model.meta.exposure.type
    pattern = model.meta.dither.optimized_for if exp_type == "MIR_MRS" else model.meta.dither.primary_type
    apt = model.meta.target.source_type_apt
    if apt is None:
        log.warning("SRCTYAPT keyword not found in input; using SRCTYPE instead")
        apt = model.meta.target.source_type
        model.meta.target.source_type_apt = apt
    if user is not None:
        if exp_type not in USER_SETTABLE:
            raise ValueError(f"srctype: a user source_type is not supported for {exp_type}")
        log.warning("Based on user-input, setting SRCTYPE = %s", user)
        return user
    if model.meta.observation.bkgdtarg:
        log.info("Exposure is a background target; setting SRCTYPE = EXTENDED")
        return "EXTENDED"
    if _is_tso(model):
        log.info("Input is a TSO exposure; setting SRCTYPE = POINT")
        return "POINT"
    if apt in ("POINT", "EXTENDED"):
        log.info("Using input source type = %s", apt)
        return apt
    if pattern is not None and ("NOD" in pattern or "POINT-SOURCE" in pattern):
        log.info("Exposure is nodded; setting SRCTYPE = POINT")
        return "POINT"
    default = "EXTENDED" if exp_type in IFU else "POINT"
    log.info("Input source type is unknown; setting default SRCTYPE = %s", default)
    return default


def set_source_type(model, user: str | None = None):
    """Set SRCTYPE on ``model`` (and its slits) in place, by the rules in the module docstring."""
    from ..models import SlitModel

    exp_type = (model.meta.exposure.type or "").upper()
    if not exp_type:
        raise ValueError("srctype: the input has no EXP_TYPE")
    log.info("Input EXP_TYPE is %s", exp_type)
    slits = getattr(model, "slits", None)
    if exp_type in SINGLE_TARGET:
        src = _single_target_type(model, None if user is None else str(user).upper())
        model.meta.target.source_type = src
        if isinstance(model, SlitModel):
            model.source_type = src
        elif exp_type == "NRS_FIXEDSLIT" and slits is not None:
            primary = model.meta.instrument.fixed_slit
            for slit in slits:
                if slit.name == primary:
                    slit.source_type = src
                    if src == "EXTENDED":
                        slit.source_xpos = 0.0
                        slit.source_ypos = 0.0
                else:
                    slit.source_type = "EXTENDED"
        elif slits is not None:
            for slit in slits:
                slit.source_type = src
    elif exp_type == "NRS_MSASPEC":
        for slit in slits or ():
            s = slit.stellarity
            slit.source_type = "POINT" if (s < 0.0 or s > 0.75) else "EXTENDED"
            log.info("source_id=%s, stellarity=%.4f, type=%s", slit.source_id, s, slit.source_type)
        model.meta.target.source_type = None
    elif _is_tso(model):
        log.info("Input is a TSO exposure; setting default SRCTYPE = POINT")
        model.meta.target.source_type = "POINT"
    elif exp_type in WFSS:
        for slit in slits or ():
            slit.source_type = "EXTENDED" if slit.is_extended else "POINT"
            log.info("source_id=%s, type=%s", slit.source_id, slit.source_type)
    else:
        log.warning("EXP_TYPE %s not applicable to this operation", exp_type)
        log.warning("Setting SRCTYPE = UNKNOWN")
        model.meta.target.source_type = "UNKNOWN"
    return model


@step("srctype", "SourceTypeStep", params=SrcTypeParams, suffix="srctype", input_class="DataModel")
def srctype(model, refs, params: SrcTypeParams):
    """Set SRCTYPE (POINT or EXTENDED) from the user, the exposure and the proposal."""
    return set_source_type(model, params.source_type)
