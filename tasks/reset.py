"""reset: subtract the MIRI reset-anomaly reference from the first groups (jwst's ResetStep).

The RESET reference holds a 4-D correction (nints_ref, ngroups_ref, ny, nx),
with NINTS and NGROUPS in its header.  The first ``min(ngroups, NGROUPS_ref)``
groups of each integration get the matching integration's correction
subtracted; integrations beyond the reference's last one use its last one.
For segmented exposures INTSTART/INTEND give the integrations in the file.
NaNs in the reference count as 0.  The reference DQ (mapped through DQ_DEF) is
OR'ed into PIXELDQ.  ERR is left as it is (jwst does not propagate it either).
"""

from __future__ import annotations

import logging

import numpy as np

from ..errors import ReferenceFileError
from ._convert import integration_offset
from ._subarray import ref_region
from .base import StepParams, step
from .firstframe import is_miri

log = logging.getLogger("webbflow.steps.reset")


class ResetParams(StepParams):
    pass


@step("reset", "ResetStep", params=ResetParams, reftypes=("reset",), suffix="reset")
def reset(model, refs, params: ResetParams):
    """Subtract the reset correction from the first groups of MIRI ramps."""
    if not is_miri(model):
        log.warning("reset applies to MIRI only; skipped for detector %s", model.meta.instrument.detector)
        return model, "SKIPPED"
    ref = refs["reset"]
    if ref.data.ndim != 4:
        raise ReferenceFileError("reset", ref.meta.filename or "<in memory>", f"SCI must be 4-D, found {ref.data.shape}")
    try:
        rdata, rdq = ref_region(model, ref, "data", "dq")
    except ValueError as exc:
        raise ReferenceFileError("reset", ref.meta.filename or "<in memory>", str(exc)) from None

    exp = model.meta.exposure
    sci_nints = exp.nints if exp.nints is not None else model.data.shape[0]
    sci_ngroups = exp.ngroups if exp.ngroups is not None else model.data.shape[1]
    istart = exp.integration_start - 1 if exp.integration_start is not None else 0
    iend = exp.integration_end if exp.integration_end is not None else sci_nints
    ref_nints = ref.meta.exposure.nints if ref.meta.exposure.nints is not None else rdata.shape[0]
    ref_ngroups = ref.meta.exposure.ngroups if ref.meta.exposure.ngroups is not None else rdata.shape[1]
    ngroups = min(sci_ngroups, ref_ngroups, rdata.shape[1], model.data.shape[1])
    ref_nints = min(ref_nints, rdata.shape[0])
    log.info("reset: correcting the first %d groups of integrations %d..%d", ngroups, istart + 1, iend)

    if iend > istart and rdq is not None:
        model.pixeldq |= np.asarray(rdq, dtype=np.uint32)
    offset = integration_offset(model)  # a piece of the exposure starts further in
    for j in range(model.data.shape[0]):
        i = istart + offset + j
        if i >= iend:
            break
        corr = rdata[min(i, ref_nints - 1)]
        for g in range(ngroups):  # group by group: no copy of the whole correction
            plane = corr[g]
            nan = np.isnan(plane)
            if nan.any():
                plane = np.where(nan, np.float32(0), plane)
            model.data[j, g] -= plane
    return model


# the reference's ERR array is never read: the flows open the reference without it
from .base import STEPS as _STEPS  # noqa: E402

_STEPS["reset"].extra["reference_arrays"] = {"reset": ("data", "dq", "dq_def")}
