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

NIRSpec IRS2 readouts (3200-row frames) follow jwst's IRS2 branch
(``flag_saturation_irs2``): only the 2048 normal rows are compared with the
(2048-row) saturation reference, the superbias (IRS2 layout) is cut to its
normal rows, interleaved reference rows are never flagged, and with
``use_readpatt`` the second group is flagged where the third saturated and
the second rose far more than the first group predicts.
"""

from __future__ import annotations

import logging

import numpy as np
from pydantic import Field

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


def _grow(flags: np.ndarray, sat: int, n_pix: int) -> np.ndarray:
    """``flags`` with SATURATED spread to the ``n_pix`` rings of neighbours (a square dilation)."""
    if n_pix <= 0:
        return flags
    from scipy.ndimage import binary_dilation

    only = (flags & sat) != 0
    box = np.ones((2 * n_pix + 1, 2 * n_pix + 1), dtype=bool)
    grown = binary_dilation(only, structure=box)
    return flags | np.where(grown, flags.dtype.type(sat), flags.dtype.type(0))


def flag_saturation_irs2(ramp, sat_ref, params: SaturationParams, bias_ref=None):
    """jwst's IRS2 saturation flagging (GROUPDQ, PIXELDQ and ZEROFRAME updated in place)."""
    from ._irs2 import dms_row_mask

    flags = dqflags.PIXEL
    sat, floor = np.uint8(flags["SATURATED"]), np.uint8(flags["AD_FLOOR"] | flags["DO_NOT_USE"])
    no_check = np.uint32(flags["NO_SAT_CHECK"])
    rows = dms_row_mask(ramp)
    data, gdq = ramp.data, ramp.groupdq
    nints, ngroups = data.shape[:2]
    nframes = ramp.meta.exposure.nframes or 1
    thresh, sat_dq = ref_region(ramp, sat_ref, "data", "dq")
    thresh = np.array(thresh, dtype=np.float32)
    sat_dq = np.array(sat_dq, dtype=np.uint32) if sat_dq is not None else np.zeros(thresh.shape, np.uint32)
    thresh[(sat_dq & no_check) == no_check] = ATOD_LIMIT + 1
    nan = np.isnan(thresh)
    sat_dq[nan] |= no_check
    thresh[nan] = ATOD_LIMIT + 1
    bias = 0.0
    if bias_ref is not None:
        bias = np.asarray(ref_region(ramp, bias_ref, "data"))[rows, :]
    pattern = read_pattern(nframes, ngroups) if params.use_readpatt else None
    if pattern is not None:
        log.info("Using read_pattern with nframes %d", nframes)
    grow = params.n_pix_grow_sat
    for i in range(nints):
        reached = np.zeros(thresh.shape, dtype=np.uint8)  # saturated in this or an earlier group
        for g in range(ngroups):
            sci = data[i, g][rows, :]
            now = np.where(sci >= thresh, sat, np.uint8(0))
            if g == 2 and pattern is not None:
                first = data[i, 0][rows, :]
                expected_ok = ((first - bias) / np.mean(pattern[0])) * pattern[2][-1] + bias < thresh
                jump = (data[i, 1] - data[i, 0])[rows, :] > (thresh - first) / len(pattern[1])
                second = np.where(expected_ok & jump & ((now & sat) != 0), sat, np.uint8(0))
                plane = gdq[i, 1][rows, :]
                gdq[i, 1][rows, :] = plane | _grow(second, sat, grow)
            low = np.where(sci <= 0, floor, np.uint8(0))
            reached |= _grow(now, sat, grow)
            plane = gdq[i, g][rows, :]
            gdq[i, g][rows, :] = plane | reached | low
        if ramp.meta.exposure.zero_frame and ramp.has("zeroframe"):
            z = ramp.zeroframe[i][rows, :]
            bad = (_grow(np.where(z >= thresh, sat, np.uint8(0)), sat, grow) != 0) | (z <= 0)
            z[bad] = 0.0
            ramp.zeroframe[i][rows, :] = z
    n_sat = int(np.count_nonzero(np.any(gdq & sat, axis=(0, 1))))
    n_floor = int(np.count_nonzero(np.any(gdq & np.uint8(flags["AD_FLOOR"]), axis=(0, 1))))
    log.info("Detected %i saturated pixels", n_sat)
    log.info("Detected %i A/D floor pixels", n_floor)
    pdq = ramp.pixeldq
    pdq[rows, :] = pdq[rows, :] | sat_dq
    return ramp


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
        ramp = flag_saturation_irs2(ramp, refs["saturation"], params, refs.get("superbias"))
    else:
        ramp = flag_saturation(ramp, refs["saturation"], params, refs.get("superbias"))
    # a group stays flagged once saturated: the last group shows every pixel that saturated
    sat = np.bitwise_or.reduce(ramp.groupdq[:, -1], axis=0) & dqflags.PIXEL["SATURATED"]
    report_qa(**{"saturated pixels": int(np.count_nonzero(sat))})
    return ramp
