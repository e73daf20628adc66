"""stack_refs: the integrations of every PSF-reference exposure of a coronagraphic
observation, stacked into one cube (jwst's StackRefsStep; coron3's ``<product>_psfstack.fits``).

The references are stacked in the association's order, each exposure's integrations in their
order; SCI, ERR and DQ are kept, and the metadata is the first reference's (without its WCS).
All references must have the same image size.
"""

from __future__ import annotations

import logging

import numpy as np

from ..errors import InputFileError
from .base import StepParams, step

log = logging.getLogger("webbflow.steps.stack_refs")


def make_psf_stack(psfs):
    """One CubeModel holding every integration of ``psfs`` (CubeModels), in order."""
    from .. import models

    psfs = list(psfs)
    if not psfs:
        raise InputFileError("stack_refs", "no PSF-reference exposure to stack")
    shape = psfs[0].data.shape[-2:]
    for p in psfs:
        if p.data.shape[-2:] != shape:
            raise InputFileError(p.meta.filename or "psf", f"is {p.data.shape[-2:]} pixels, the first PSF reference "
                                 f"{shape}: all PSF exposures must have the same size")

    def planes(name, dtype):
        return np.concatenate([np.asarray(getattr(p, name)).reshape((-1,) + shape) for p in psfs]).astype(dtype)

    out = models.CubeModel(data=planes("data", np.float32), err=planes("err", np.float32), dq=planes("dq", np.uint32))
    first = psfs[0]
    out.meta = first.meta.model_copy(deep=True)
    out.meta.wcs = None
    out.meta.model_type = "CubeModel"
    if "PRIMARY" in first._headers:
        out._headers["PRIMARY"] = first._headers["PRIMARY"].copy()
    for i, p in enumerate(psfs):
        log.info("Added PSF member %d (%s, %d integrations) to the stack", i + 1, p.meta.filename, p.data.shape[0])
    return out


@step("stack_refs", "StackRefsStep", params=StepParams, suffix="psfstack", cal_step="stack_psfs",
      input_class="ModelContainer")
def stack_refs(psfs, refs, params: StepParams):
    """Stack the integrations of the PSF-reference exposures into one cube."""
    return make_psf_stack(psfs if isinstance(psfs, (list, tuple)) else [psfs])
