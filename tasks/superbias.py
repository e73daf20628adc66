"""superbias: subtract the superbias image from every group.

jwst's SuperBiasStep: the SUPERBIAS reference (cut to the subarray) is
subtracted from each group of each integration, NaNs in the bias counting
as 0; the bias DQ is ORed into PIXELDQ; ERR is unchanged.  ZEROFRAME, when
present, has the bias subtracted too, except where it is 0 (unusable).
"""

from __future__ import annotations

import logging

import numpy as np

from ._convert import as_ramp
from ._subarray import ref_region
from .base import StepParams, step

log = logging.getLogger("webbflow.steps")


class SuperBiasParams(StepParams):
    """SuperBiasStep has no parameters of its own."""


def subtract_bias(ramp, bias_ref):
    """Subtract the bias from ``data`` (and ZEROFRAME) and add its DQ to PIXELDQ, in place."""
    bias, bias_dq = ref_region(ramp, bias_ref, "data", "dq")
    bias = np.asarray(bias, dtype=np.float32)
    nans = np.isnan(bias)
    if nans.any():
        bias = np.where(nans, np.float32(0.0), bias)
    if bias_dq is not None:
        ramp.pixeldq |= np.asarray(bias_dq, dtype=np.uint32)
    ramp.data -= bias
    if ramp.meta.exposure.zero_frame and ramp.has("zeroframe"):
        z = ramp.zeroframe
        unusable = z == 0.0
        z -= bias
        z[unusable] = 0.0
    return ramp


@step("superbias", "SuperBiasStep", params=SuperBiasParams, reftypes=("superbias",), suffix="superbias")
def superbias(model, refs, params):
    """Subtract the superbias; ``data``, ``pixeldq`` and ``zeroframe`` are updated in place."""
    ramp = as_ramp(model)
    return subtract_bias(ramp, refs["superbias"])
