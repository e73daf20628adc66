"""group_scale: rescale groups averaged on board with a divisor other than NFRAMES.

On-board frame averaging divides the sum of NFRAMES frames by FRMDIVSR, a
power of two.  When NFRAMES is not a power of two the groups are off by
FRMDIVSR/NFRAMES, and this step multiplies every group by that factor
(jwst's GroupScaleStep).
"""

from __future__ import annotations

import logging

from ._convert import as_ramp
from .base import StepParams, step

log = logging.getLogger("webbflow.steps")


class GroupScaleParams(StepParams):
    """GroupScaleStep has no parameters of its own."""


@step("group_scale", "GroupScaleStep", params=GroupScaleParams, reftypes=(), suffix="group_scale")
def group_scale(model, refs, params):
    """Rescale all groups by FRMDIVSR/NFRAMES; updates ``data`` in place.

    Skipped (status SKIPPED) when NFRAMES is unknown, when FRMDIVSR is unknown
    and NFRAMES is a power of two, or when FRMDIVSR equals NFRAMES.
    """
    ramp = as_ramp(model)
    nframes = ramp.meta.exposure.nframes
    divisor = ramp.meta.exposure.frame_divisor
    if nframes is None:
        log.warning("NFRAMES value not found; group_scale skipped")
        return ramp, "SKIPPED"
    if divisor is None:
        if nframes & (nframes - 1) == 0:
            log.info("NFRAMES=%d is a power of 2; correction not needed", nframes)
            return ramp, "SKIPPED"
        log.warning("FRMDIVSR not found; group_scale skipped")
        return ramp, "SKIPPED"
    if nframes == divisor:
        log.info("NFRAMES and FRMDIVSR are equal; correction not needed")
        return ramp, "SKIPPED"
    scale = float(divisor) / nframes
    log.info("NFRAMES=%d, FRMDIVSR=%d: rescaling all groups by %d/%d", nframes, divisor, divisor, nframes)
    ramp.data *= scale
    return ramp
