"""fringe: the MIRI MRS fringe flat (jwst's FringeStep).

The ``fringe`` reference is a detector-sized multiplicative flat of the MRS's etalon fringes.  The
science and ERR are divided by it and the variances (Poisson, read noise, flat) by its square; a
NaN in the reference counts as 1 (no correction there).  The reference's DQ is not used, as in
jwst.
"""

from __future__ import annotations

import logging

import numpy as np

from .base import StepParams, step

log = logging.getLogger("webbflow.steps.fringe")


def apply_fringe(model, fringe_ref):
    """Divide ``model`` in place by the fringe flat (data, ERR) and its square (variances)."""
    from ..errors import ReferenceFileError

    flat = np.array(fringe_ref.data, dtype=np.float32)
    if flat.shape != model.data.shape[-2:]:
        raise ReferenceFileError("fringe", getattr(fringe_ref.meta, "filename", None) or "<in memory>",
                                 f"is {flat.shape}; the exposure is {model.data.shape[-2:]}")
    flat[np.isnan(flat)] = 1.0
    inv_sq = 1 / (flat * flat)
    with np.errstate(divide="ignore", invalid="ignore"):
        model.data /= flat
        model.err /= flat
        for name in ("var_poisson", "var_rnoise", "var_flat"):
            if model.has(name) and getattr(model, name).size > 0:
                getattr(model, name)[...] *= inv_sq
    log.debug("DQ values in the reference file NOT used to update the output DQ.")
    return model


@step(
    "fringe",
    "FringeStep",
    params=StepParams,
    reftypes=("fringe",),
    suffix="fringe",
    input_class="IFUImageModel",
)
def fringe(model, refs, params: StepParams):
    """Divide an MRS image by the fringe flat."""
    from .. import models

    if not isinstance(model, (models.ImageModel, models.IFUImageModel)):
        log.warning("fringe takes an MRS image, not a %s; skipped", type(model).__name__)
        return model, "SKIPPED"
    apply_fringe(model, refs["fringe"])
    return model
