"""master_background_mos: the NIRSpec MOS master background (jwst's MasterBackgroundMosStep).

jwst 3.0 runs it in spec2 on the MOS slitlets of an NRS_MSASPEC exposure, after srctype: it
calibrates a copy of every slitlet as an extended source (flat_field, pathloss, barshadow, photom),
extracts the background slitlets' spectra (pixel_replace, resample_spec, extract_1d), combines them
into one master spectrum (combine_1d with ``sigma_clip``, then a moving median of
``median_kernel``), expands it onto every slitlet's wavelengths, takes it back through the
inverse corrections and subtracts it.

Its decisions before any of that, which this step makes as jwst does and records in S_MSBSUB:

- a background already subtracted (S_BKDSUB or S_MSBSUB COMPLETE) and no ``force_subtract``:
  SKIPPED, the data unchanged;
- no background slitlet (a slitlet is background when its source name contains "BKG" or
  "BACKGROUND"), or no source slitlet to subtract from: FAILED, the data unchanged.

The computation itself (background slitlets present, or a ``user_background``) is not in
webbflow yet: the step refuses it with a one-line error rather than leave the background in
silently.
"""

from __future__ import annotations

import logging

from ..errors import UnsupportedModeError
from .base import StepParams, step

log = logging.getLogger("webbflow.steps")


class MasterBackgroundMosParams(StepParams):
    sigma_clip: float = 3.0  # factor for clipping outliers when combining the background spectra
    median_kernel: int = 1  # moving-median boxcar width applied to the master background spectrum
    force_subtract: bool = False  # subtract even when a background was already subtracted
    save_background: bool = False  # write the master background (masterbg1d, masterbg2d, bkgx1d)
    user_background: str | None = None  # a user's master background spectrum instead of the slitlets'
    inverse: bool = False  # add the master background instead of subtracting it
    output_use_model: bool = True  # name the output after the input model's file name (jwst compatibility)


def is_background_slit(slit) -> bool:
    """jwst's rule: the slitlet's source name contains BKG or BACKGROUND (any case)."""
    name = str(slit.source_name).upper()
    return "BKG" in name or "BACKGROUND" in name


def classify_slits(model) -> tuple[int, int]:
    """(background slitlets, source slitlets) of a MultiSlitModel."""
    n_bkg = sum(1 for s in model.slits if is_background_slit(s))
    return n_bkg, len(model.slits) - n_bkg


@step("master_background_mos", "MasterBackgroundMosStep", params=MasterBackgroundMosParams,
      suffix="master_background_mos", cal_step="master_background", input_class="MultiSlitModel")
def master_background_mos(model, refs, params: MasterBackgroundMosParams):
    """Subtract the MOS master background made from the background slitlets (see the module docstring)."""
    where = model.meta.filename or "<in memory>"
    cs = model.meta.cal_step
    if not params.force_subtract and "COMPLETE" in (cs.bkg_subtract, cs.master_background):
        log.info("Background subtraction has already occurred. Skipping.")
        return model, "SKIPPED"
    if not params.user_background:
        n_bkg, n_src = classify_slits(model)
        if n_bkg == 0:
            log.warning("No background slits available for creating master background. Skipping")
            return model, "FAILED"
        if n_src == 0:
            log.warning("No source slits for applying master background. Skipping")
            return model, "FAILED"
        what = f"{n_bkg} background slitlet(s)"
    else:
        what = f"the user background {params.user_background}"
    raise UnsupportedModeError(
        f"{where}: master_background_mos from {what} is not implemented in webbflow yet; "
        "run with --steps.master_background_mos.skip=true to calibrate without it")
