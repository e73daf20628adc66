"""dq_init: start the data-quality arrays from the MASK reference file.

The first step on an uncalibrated exposure: it turns the uint16
``Level1bModel`` into a float32 ``RampModel`` (see ``_convert.as_ramp``),
ORs the mask's DQ (cut to the subarray) into PIXELDQ, and copies the
mask's DO_NOT_USE bits into every group of GROUPDQ so that no ramp is fit
to a bad pixel (jwst's DQInitStep).  FGS guider exposures have one 2-D DQ
array instead, which gets the mask.
"""

from __future__ import annotations

import logging

import numpy as np
from pydantic import Field

from ..errors import InputFileError, ParameterError
from ..models import dqflags
from ._convert import as_ramp, is_guider
from ._subarray import ref_region
from .base import StepParams, step

log = logging.getLogger("webbflow.steps")


class DQInitParams(StepParams):
    user_supplied_dq: str | None = Field(None, description="FITS file whose first image array is ORed into the mask DQ")


def _read_user_dq(path: str) -> np.ndarray:
    from astropy.io import fits

    try:
        with fits.open(path) as hdul:
            for hdu in hdul:
                if hdu.data is not None and getattr(hdu, "is_image", False):
                    return np.asarray(hdu.data)
    except (OSError, ValueError) as exc:
        raise InputFileError(path, f"cannot read user-supplied DQ ({exc})") from None
    raise InputFileError(path, "user-supplied DQ file holds no image array")


def _ensure_shapes(ramp) -> None:
    """Replace DQ arrays whose shapes do not fit the data with zeroed ones (jwst's check_dimensions)."""
    shape = ramp.data.shape
    if is_guider(ramp):
        if ramp.has("dq") and ramp.dq.shape != shape[-2:]:
            log.warning("Setting input DQ to default array")
            ramp.dq = None
        return
    if ramp.has("pixeldq") and ramp.pixeldq.shape != shape[-2:]:
        log.warning("Setting input pixel DQ to default array")
        ramp.pixeldq = None
    if ramp.has("groupdq") and ramp.groupdq.shape != shape:
        log.warning("Setting input group DQ to default array")
        ramp.groupdq = None


def apply_mask(ramp, mask_dq: np.ndarray) -> None:
    """OR ``mask_dq`` into the ramp's pixel DQ and its DO_NOT_USE bits into every group (in place)."""
    if is_guider(ramp):
        ramp.dq |= mask_dq
        return
    ramp.pixeldq |= mask_dq
    dnu = mask_dq & np.uint32(dqflags.DO_NOT_USE)
    if dnu.any():
        ramp.groupdq |= dnu.astype(ramp.groupdq.dtype)[np.newaxis, np.newaxis]


@step("dq_init", "DQInitStep", params=DQInitParams, reftypes=("mask",), suffix="dq_init", input_class="Level1bModel")
def dq_init(model, refs, params):
    """Initialise PIXELDQ/GROUPDQ (or a guider's DQ) from the mask.

    A Level1bModel input is converted to a new RampModel; a RampModel input
    is updated in place.  The mask reference is not modified.
    """
    ramp = as_ramp(model)
    _ensure_shapes(ramp)
    mask_dq = ref_region(ramp, refs["mask"], "dq")
    if mask_dq is None:
        raise ParameterError("mask reference has no DQ array")
    mask_dq = np.asarray(mask_dq, dtype=np.uint32)
    if params.user_supplied_dq is not None:
        log.info("User-supplied DQ %s given; adding it to the mask", params.user_supplied_dq)
        user = _read_user_dq(params.user_supplied_dq)
        if user.shape != mask_dq.shape:
            raise ParameterError(f"user_supplied_dq has shape {user.shape} but the mask (cut to the data) is {mask_dq.shape}")
        mask_dq = mask_dq | user.astype(np.uint32)
    apply_mask(ramp, mask_dq)
    return ramp
