"""imprint: subtract the MSA imprint (leakcal) exposure (jwst's ImprintStep; imprint_subtract in Spec2Pipeline).

NIRSpec MSA and IFU observations can take, with the MSA configured as for the science but the
light path closed to the sky, an imprint ("leakcal") exposure: what leaks through the MSA and
the structure it imprints on the detector.  The step subtracts it from the science (and from the
background exposures): SCI minus the imprint's SCI, DQ or-ed with the imprint's DQ; ERR and the
variances are left as they are, as jwst 3.0 leaves them.

Which imprint, as jwst 3.0 chooses: with one imprint member, that one; with several, those whose
BKGDTARG equals the exposure's, and of those the one at the same observation (OBSERVTN) and dither
point (PATT_NUM), or the only one left.  With no match the step records SKIPPED.  In a flow the
members come from the association (``imprint_list``, filled by the spec2 flow as ``bkg_list`` is
for bkg_subtract: jwst's step takes them as a second input, not a parameter).  The step is named
``imprint`` as jwst's class alias is (``strun imprint``); its parameters in a spec2 run are under
that name too.
"""

from __future__ import annotations

import logging

import numpy as np

from ..errors import InputFileError
from .base import StepParams, step

log = logging.getLogger("webbflow.steps")


class ImprintParams(StepParams):
    imprint_list: list[str] | None = None  # the association's imprint members (filled by the spec2 flow)


def _open(member):
    from .. import models

    if isinstance(member, models.DataModel):
        return member
    return models.open(member)


def choose_imprint(model, imprints: list):
    """The imprint model to subtract from ``model`` (jwst 3.0's rule), or None."""
    if len(imprints) == 1:
        return _open(imprints[0])
    pos, obs, bkg = (model.meta.dither.position_number, model.meta.observation.observation_number,
                     model.meta.observation.bkgdtarg)
    same_kind = []
    for member in imprints:
        m = _open(member)
        if m.meta.observation.bkgdtarg != bkg:
            continue
        same_kind.append(m)
        if m.meta.dither.position_number == pos and m.meta.observation.observation_number == obs:
            return m
    return same_kind[0] if len(same_kind) == 1 else None


@step("imprint", "ImprintStep", params=ImprintParams, suffix="imprint", cal_step="imprint",
      input_class="ImageModel")
def imprint_subtract(model, refs, params: ImprintParams, imprints=None):
    """Subtract the matching imprint (leakcal) exposure: SCI minus its SCI, DQ or its DQ."""
    members = list(imprints) if imprints is not None else [p for p in (params.imprint_list or []) if p]
    where = model.meta.filename or "<in memory>"
    if not members:
        log.info("No imprint exposure given for %s; imprint skipped", where)
        return model, "SKIPPED"
    match = choose_imprint(model, members)
    if match is None:
        log.warning("No matching imprint image found for %s; step skipped", where)
        return model, "SKIPPED"
    name = match.meta.filename or "<in memory>"
    if match.data.shape != model.data.shape:
        raise InputFileError(name, f"imprint of shape {match.data.shape} does not match {where} "
                                   f"of shape {model.data.shape}")
    log.info("Subtracting imprint image %s from %s", name, where)
    model.data = (model.data - match.data).astype(model.data.dtype, copy=False)
    model.dq = model.dq | match.dq.astype(model.dq.dtype, copy=False)
    from .base import report_qa

    report_qa(**{"imprint": name, "median imprint": float(np.nanmedian(match.data))})
    return model
