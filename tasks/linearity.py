"""linearity: correct the non-linear response with the reference polynomial.

jwst's LinearityStep, through stcal's ``linearity_correction``: each group
value D becomes sum_k c_k D^k with the LINEARITY reference coefficients
(cut to the subarray).  Saturated groups are left as they are.  Pixels
flagged NO_LIN_CORR in the reference, or with a NaN coefficient or a zero
linear term, are left uncorrected and get NO_LIN_CORR in PIXELDQ; the
reference DQ is ORed into PIXELDQ.  For frame-averaged groups (NFRAMES > 1)
and a reference with inverse coefficients (INV_COEFFS), the correction is
done frame by frame, as jwst does.  ZEROFRAME is corrected too.
"""

from __future__ import annotations

import logging

import numpy as np

from ..models import dqflags
from ._convert import as_ramp
from ._subarray import ref_region
from .base import StepParams, step

log = logging.getLogger("webbflow.steps")


class LinearityParams(StepParams):
    """LinearityStep has no parameters of its own."""


def _needs_fixing(coeffs: np.ndarray, lin_dq: np.ndarray | None) -> bool:
    """Whether stcal will rewrite some coefficients (then it must get a copy)."""
    if lin_dq is not None and np.any(lin_dq & np.uint32(dqflags.NO_LIN_CORR)):
        return True
    return bool(np.isnan(coeffs).any() or (coeffs.shape[0] > 1 and np.any(coeffs[1] == 0)))


def correct_linearity(ramp, lin_ref):
    """Apply the linearity polynomial to ``data`` (and ZEROFRAME), in place; PIXELDQ gets the flags.

    The reference model is not modified: coefficients that stcal would rewrite
    are copied first.
    """
    from stcal.linearity.linearity import linearity_correction

    coeffs, lin_dq, inv = ref_region(ramp, lin_ref, "coeffs", "dq", "inv_coeffs")
    if lin_dq is None:
        lin_dq = np.zeros(coeffs.shape[-2:], dtype=np.uint32)
    if _needs_fixing(coeffs, lin_dq):
        coeffs = np.array(coeffs)
    read_times = getattr(ramp.meta.exposure, "read_times", None)
    nframes = ramp.meta.exposure.nframes or 1
    pattern = None
    if inv is not None and nframes > 1 and not read_times:
        ngroups = ramp.meta.exposure.ngroups or ramp.data.shape[1]
        pattern = [[x + 1 + g * nframes for x in range(nframes)] for g in range(ngroups)]
        if _needs_fixing(inv, lin_dq):
            inv = np.array(inv)
        log.info("Using inverse linearity coefficients and the read pattern (NFRAMES=%d)", nframes)
    else:
        inv = None
    zframe = ramp.zeroframe if (ramp.meta.exposure.zero_frame and ramp.has("zeroframe")) else None
    gdq = ramp.groupdq
    data, pdq, zdata = linearity_correction(
        ramp.data, gdq, ramp.pixeldq, coeffs, lin_dq, dqflags.PIXEL, zframe=zframe, ilin_coeffs=inv, read_pattern=pattern
    )
    ramp.data = data
    ramp.pixeldq = pdq
    if zframe is not None:
        ramp.zeroframe = zdata
    return ramp


@step("linearity", "LinearityStep", params=LinearityParams, reftypes=("linearity",), suffix="linearity")
def linearity(model, refs, params):
    """Correct each group for non-linearity; ``data``, ``pixeldq`` and ``zeroframe`` are updated in place."""
    ramp = as_ramp(model)
    return correct_linearity(ramp, refs["linearity"])
