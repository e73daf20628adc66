"""saturation: flag groups at or above the saturation level, and the A/D floor.

jwst's SaturationStep, through stcal's ``flag_saturated_pixels``: a group is
SATURATED from the first group whose value reaches the SATURATION reference
level, and in every later group of that integration; ``n_pix_grow_sat``
rings of neighbours are flagged with it (charge spilling).  Groups at or
below 0 DN get AD_FLOOR and DO_NOT_USE.  With ``use_readpatt`` and frame
averaged groups (NFRAMES > 1), groups that saturated part-way through their
frames get DO_NOT_USE, and the superbias (optional) helps find a second
group that saturated in its last frame.  Pixels the reference marks
NO_SAT_CHECK, or whose level is NaN, are never flagged.  ZEROFRAME values
that are saturated or at the floor are set to 0.

NIRSpec IRS2 readouts (3200-row frames) are not handled here.
"""

from __future__ import annotations

import logging

import numpy as np
from pydantic import Field

from ..errors import UnsupportedModeError
from ..models import dqflags
from ._convert import as_ramp
from ._subarray import ref_region
from .base import StepParams, report_qa, step

log = logging.getLogger("webbflow.steps")

ATOD_LIMIT = 65535.0  # 16-bit A-to-D converter


class SaturationParams(StepParams):
    n_pix_grow_sat: int = Field(1, ge=0, description="number of layers of adjacent pixels also flagged around a saturated pixel")
    use_readpatt: bool = Field(True, description="use the grouped read pattern (NFRAMES) to flag groups that saturated part-way")


def is_irs2(model) -> bool:
    return max(model.data.shape[-2:]) > 2048


def read_pattern(nframes: int, ngroups: int) -> list[list[int]]:
    """1-based frame numbers making up each group, for a readout with no group gap."""
    return [[x + 1 + g * nframes for x in range(nframes)] for g in range(ngroups)]


def flag_saturation(ramp, sat_ref, params: SaturationParams, bias_ref=None):
    """Flag saturation and A/D floor in GROUPDQ (in place); add the reference DQ to PIXELDQ.

    The reference models are not modified.
    """
    ngroups = ramp.meta.exposure.ngroups or ramp.data.shape[1]
    nframes = ramp.meta.exposure.nframes or 1
    thresh, sat_dq = ref_region(ramp, sat_ref, "data", "dq")
    # stcal rewrites the threshold and its DQ for NaN / NO_SAT_CHECK pixels: give it copies
    thresh = np.array(thresh, dtype=np.float32)
    sat_dq = np.array(sat_dq, dtype=np.uint32) if sat_dq is not None else np.zeros(thresh.shape, np.uint32)
    bias = None
    if bias_ref is not None:
        bias = ref_region(ramp, bias_ref, "data")
    pattern = read_pattern(nframes, ngroups) if params.use_readpatt else None
    if pattern is not None:
        log.info("Using read_pattern with nframes %d", nframes)
    zframe = ramp.zeroframe if (ramp.meta.exposure.zero_frame and ramp.has("zeroframe")) else None
    if _flag_with_kernel(ramp, thresh, sat_dq, bias, pattern, zframe, params):
        return ramp
    from stcal.saturation.saturation import flag_saturated_pixels

    gdq, pdq, zframe = flag_saturated_pixels(
        ramp.data,
        ramp.groupdq,
        ramp.pixeldq,
        thresh,
        sat_dq,
        ATOD_LIMIT,
        dqflags.PIXEL,
        n_pix_grow_sat=params.n_pix_grow_sat,
        read_pattern=pattern,
        zframe=zframe,
        bias=bias,
    )
    ramp.groupdq = gdq
    ramp.pixeldq = pdq
    if zframe is not None:
        ramp.zeroframe = zframe
    return ramp


def _flag_with_kernel(ramp, thresh, sat_dq, bias, pattern, zframe, params) -> bool:
    """stcal's flag_saturated_pixels on the compiled kernel (``_saturation_kernel``); False if it does not apply.

    ``thresh`` and ``sat_dq`` are this step's own copies (prepared here as stcal does).
    """
    data, gdq = ramp.data, ramp.groupdq
    if data.dtype != np.float32 or gdq.dtype != np.uint8 or thresh.ndim != 2:
        return False
    if bias is not None and (np.ndim(bias) != 2 or np.asarray(bias).dtype != np.float32):
        return False
    if zframe is not None and zframe.dtype != np.float32:
        return False
    try:
        from ._saturation_kernel import flag_saturated
    except ImportError:
        return False
    flags = dqflags.PIXEL
    no_check = np.uint32(flags["NO_SAT_CHECK"])
    no_check_mask = (sat_dq & no_check) == no_check
    nan = np.isnan(thresh)
    sat_dq[nan] |= no_check
    no_check_mask |= nan
    thresh[no_check_mask] = ATOD_LIMIT + 1
    n_sat, n_floor = flag_saturated(
        data, gdq, thresh, no_check_mask,
        sat=flags["SATURATED"], dnu=flags["DO_NOT_USE"], ad_floor=flags["AD_FLOOR"],
        n_pix_grow_sat=params.n_pix_grow_sat, read_pattern=pattern, zframe=zframe,
        bias=None if bias is None else np.ascontiguousarray(bias),
    )
    log.info("Detected %i saturated pixels", n_sat)
    log.info("Detected %i A/D floor pixels", n_floor)
    ramp.pixeldq = np.bitwise_or(ramp.pixeldq, sat_dq)
    return True


@step(
    "saturation",
    "SaturationStep",
    params=SaturationParams,
    reftypes=("saturation",),
    optional_reftypes=("superbias",),
    suffix="saturation",
)
def saturation(model, refs, params):
    """Flag saturated and A/D-floor groups; GROUPDQ, PIXELDQ and ZEROFRAME are updated in place."""
    ramp = as_ramp(model)
    if is_irs2(ramp):
        raise UnsupportedModeError("saturation: NIRSpec IRS2 readouts are not supported yet")
    ramp = flag_saturation(ramp, refs["saturation"], params, refs.get("superbias"))
    # a group stays flagged once saturated: the last group shows every pixel that saturated
    sat = np.bitwise_or.reduce(ramp.groupdq[:, -1], axis=0) & dqflags.PIXEL["SATURATED"]
    report_qa(**{"saturated pixels": int(np.count_nonzero(sat))})
    return ramp
