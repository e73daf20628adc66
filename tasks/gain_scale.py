"""gain_scale: rescale count rates taken with a non-standard gain setting.

jwst's GainScaleStep: the rate (or rateints) SCI and ERR arrays are
multiplied by GAINFACT, and VAR_POISSON and VAR_RNOISE by its square.  The
factor comes from the exposure's GAINFACT keyword, else from the GAIN
reference file's; with neither the step is SKIPPED.
"""

from __future__ import annotations

import logging

import numpy as np

from .base import STEPS, StepParams, step

log = logging.getLogger("webbflow.steps")


class GainScaleParams(StepParams):
    """GainScaleStep has no parameters of its own."""


def apply_gain_factor(model, factor: float):
    """Multiply SCI/ERR by ``factor`` and the variances by its square, in place; record GAINFACT."""
    log.info("Rescaling by %s", factor)
    model.data *= factor
    if model.has("err"):
        model.err *= factor
    for name in ("var_poisson", "var_rnoise"):
        if model.has(name) and np.size(getattr(model, name)) > 0:
            arr = getattr(model, name)
            arr *= factor**2
    model.meta.exposure.gain_factor = factor
    return model


@step(
    "gain_scale",
    "GainScaleStep",
    params=GainScaleParams,
    optional_reftypes=("gain",),
    suffix="gain_scale",
    input_class="ImageModel",
)
def gain_scale(model, refs, params):
    """Rescale a rate or rateints product by the gain factor; arrays are updated in place."""
    factor = model.meta.exposure.gain_factor
    if factor is None:
        gain_ref = refs.get("gain")
        factor = gain_ref.meta.exposure.gain_factor if gain_ref is not None else None
        if factor is None:
            log.info("GAINFACT not found in the exposure nor in the gain reference file; step skipped")
            return model, "SKIPPED"
        log.info("Using GAINFACT=%s from the gain reference file", factor)
    return apply_gain_factor(model, factor)


def _gain_needed(model, params) -> tuple[str, ...]:
    """jwst reads the GAIN reference only when the exposure has no GAINFACT."""
    return ("gain",) if model.meta.exposure.gain_factor is None else ()


STEPS["gain_scale"].extra["optional_reftypes_needed"] = _gain_needed
