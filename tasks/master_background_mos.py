"""master_background_mos: the NIRSpec MOS master background (jwst's MasterBackgroundMosStep).

jwst 3.0 runs it in spec2 on the slitlets of an NRS_MSASPEC exposure, after srctype.  Its decisions
come first, recorded in S_MSBSUB:

- a background already subtracted (S_BKDSUB or S_MSBSUB COMPLETE) and no ``force_subtract``:
  SKIPPED, the data unchanged;
- no background slitlet (a slitlet is background when its source name contains "BKG" or
  "BACKGROUND"), or no source slitlet to subtract from: FAILED, the data unchanged.

Then, as jwst computes it:

1. A copy of every slitlet is calibrated as an extended source: flat_field, pathloss, barshadow
   and photom, with the settings the spec2 flow gives those steps (``steps``: skip, reference
   overrides and parameters; ``source_type`` forced EXTENDED, ``inverse`` off).
2. The background slitlets of that copy go through pixel_replace (skipped unless asked, as in
   jwst), resample_spec and extract_1d: one x1d spectrum per background slitlet (``bkgx1d``).
3. combine_1d merges them, weighted by exposure time and clipped at ``sigma_clip`` MADs, into the
   master spectrum (``masterbg1d``); ``median_kernel`` > 1 (odd; an even width is lowered by one)
   median-filters its SURF_BRIGHT and FLUX.  A ``user_background`` (x1d or c1d) replaces steps 2-3.
4. The master's SURF_BRIGHT is interpolated at each slitlet's pixel wavelengths (0 and DO_NOT_USE
   outside its range) and taken back through photom, barshadow, pathloss and flat_field inverted:
   the 2-D background of every slitlet in DN/s (``masterbg2d``).
5. It is subtracted from every slitlet, its DQ or-ed in (``inverse`` adds it instead).

``save_background`` writes ``masterbg1d``, ``masterbg2d`` and ``bkgx1d`` beside the output, as jwst
names them.  Every sub-step is webbflow's own step, run through :func:`run_step`, so each
reads its references as in the flow (CRDS, or the overrides given under ``steps``).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

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
    # the sub-steps' settings by step name, as jwst's pipeline step takes them under "steps"; the spec2
    # flow passes its own flat_field, pathloss, barshadow and photom settings, as jwst's parent does
    steps: dict[str, dict[str, Any]] = {}  # settings of the sub-steps (flat_field, pathloss, ..., extract_1d), by step


SUBSTEPS = ("flat_field", "pathloss", "barshadow", "photom", "pixel_replace", "resample_spec", "extract_1d")
# what jwst does not take from the parent pipeline's steps (it sets or ignores these itself)
_NOT_INHERITED = {"source_type", "inverse", "save_interpolated_flat", "save_results", "suffix", "output_file",
                  "output_dir", "output_use_model"}


def is_background_slit(slit) -> bool:
    """jwst's rule: the slitlet's source name contains BKG or BACKGROUND (any case)."""
    name = str(slit.source_name).upper()
    return "BKG" in name or "BACKGROUND" in name


def classify_slits(model) -> tuple[int, int]:
    """(background slitlets, source slitlets) of a MultiSlitModel."""
    n_bkg = sum(1 for s in model.slits if is_background_slit(s))
    return n_bkg, len(model.slits) - n_bkg


def inherited_settings(name: str, params) -> dict[str, Any]:
    """A spec2 step's settings as the master background's sub-step takes them (jwst's set_pars_from_parent)."""
    values = {k: v for k, v in params.model_dump().items() if k not in _NOT_INHERITED and k != "overrides"}
    values.update({f"override_{rt}": v for rt, v in params.overrides.items()})
    return values


def _run(name: str, model, params: MasterBackgroundMosParams, **fixed):
    from .base import STEPS, run_step

    if name not in STEPS:  # a flow imports only the steps it runs
        from . import load_all

        load_all()
    values = dict(params.steps.get(name) or {})
    values.update(fixed)
    return run_step(name, model, values).model


def _calibrate_as_extended(model, params, inverse: bool = False):
    order = ("photom", "barshadow", "pathloss", "flat_field") if inverse else (
        "flat_field", "pathloss", "barshadow", "photom")
    for name in order:
        fixed = {"inverse": inverse}
        if name != "flat_field":
            fixed["source_type"] = "EXTENDED"
        model = _run(name, model, params, **fixed)
    return model


def _background_spectra(calibrated, params):
    """The x1d of the background slitlets of the calibrated copy, or None without any."""
    from .. import models

    bkg = models.MultiSlitModel()
    bkg.meta = calibrated.meta.model_copy(deep=True)
    bkg._headers = {k: h.copy() for k, h in calibrated._headers.items() if k == "PRIMARY"}
    for slit in calibrated.slits:
        if is_background_slit(slit):
            log.info("Using background slitlet %s", slit.source_name)
            bkg.slits.append(slit.copy())
    if not bkg.slits:
        log.warning("No background slitlets found; skipping master bkg correction")
        return None
    bkg = _run("pixel_replace", bkg, params)
    bkg = _run("resample_spec", bkg, params)
    return _run("extract_1d", bkg, params)


def master_spectrum(x1d, params):
    """combine_1d of the background spectra (exposure-time weights, ``sigma_clip``), median-filtered."""
    from scipy.signal import medfilt

    from .combine_1d import Combine1dParams, combine

    log.info("Combining 1D background spectra into master background")
    master = combine([x1d], Combine1dParams(exptime_key="exposure_time", sigma_clip=params.sigma_clip))
    if master is None:
        return None
    kernel = int(params.median_kernel)
    if kernel % 2 == 0:
        kernel -= 1
        log.info("Even median filter kernels are not supported. Rounding the median kernel size down to %d.", kernel)
    if kernel > 1:
        log.info("Applying moving-median boxcar of width %d.", kernel)
        t = master.spec[0].spec_table
        t["SURF_BRIGHT"] = medfilt(np.asarray(t["SURF_BRIGHT"], dtype=float), kernel_size=[kernel])
        t["FLUX"] = medfilt(np.asarray(t["FLUX"], dtype=float), kernel_size=[kernel])
    return master


def _fs_point_source_factor(slit):
    """A fixed slit's point-source correction of its background (jwst's correct_nrs_fs_bkg), or None."""
    names = ("pathloss_point", "pathloss_uniform", "flatfield_point", "flatfield_uniform", "photom_point",
             "photom_uniform")
    arrays = {n: (getattr(slit, n, None) if slit.has(n) else None) for n in names}
    missing = [n for n, a in arrays.items() if a is None]
    if missing:
        log.warning("%s array not found in input; skipping background updates", missing[0])
        return None
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((arrays["pathloss_uniform"] / arrays["pathloss_point"])
                * (arrays["flatfield_uniform"] / arrays["flatfield_point"])
                * (arrays["photom_point"] / arrays["photom_uniform"]))


def expand_to_slits(calibrated, master):
    """The master spectrum at every slitlet's pixels: a copy of ``calibrated`` whose data is the background."""
    from ..models import dqflags
    from .master_background import _expand, _table_of

    wave, sb = _table_of(master)
    background = calibrated.copy()
    for slit, out in zip(calibrated.slits, background.slits):
        stype = slit.meta.exposure.type or calibrated.meta.exposure.type
        values, outside = _expand(slit, wave, sb, stype)
        out.data[...] = values
        out.dq[outside] |= np.uint32(dqflags.DO_NOT_USE)
        if stype == "NRS_FIXEDSLIT" and str(slit.source_type or "").upper() == "POINT":
            factor = _fs_point_source_factor(out)
            if factor is not None:
                out.data *= factor
    return background


def _save(model, master, background_2d, x1d, params) -> None:
    from pathlib import Path

    from ..models.naming import root_of

    out = Path(params.output_dir or ".")
    out.mkdir(parents=True, exist_ok=True)
    root = root_of(model.meta.filename or "master_background_mos")
    for product, suffix in ((master, "masterbg1d"), (background_2d, "masterbg2d"), (x1d, "bkgx1d")):
        if product is not None:
            product.meta.filename = f"{root}_{suffix}.fits"
            product.save(out / product.meta.filename)


@step("master_background_mos", "MasterBackgroundMosStep", params=MasterBackgroundMosParams,
      suffix="master_background_mos", cal_step="master_background", input_class="MultiSlitModel")
def master_background_mos(model, refs, params: MasterBackgroundMosParams):
    """Subtract the MOS master background made from the background slitlets (see the module docstring)."""
    from .. import models

    unknown = sorted(set(params.steps) - set(SUBSTEPS))
    if unknown:
        from ..errors import ParameterError

        raise ParameterError(f"step master_background_mos: no sub-step {unknown[0]!r} (its sub-steps: "
                             f"{', '.join(SUBSTEPS)})")
    cs = model.meta.cal_step
    if not params.force_subtract and "COMPLETE" in (cs.bkg_subtract, cs.master_background):
        log.info("Background subtraction has already occurred. Skipping.")
        return model, "SKIPPED"
    if params.user_background:
        log.info("Calculating master background from user-supplied background %s", params.user_background)
        user = models.open(params.user_background)
    else:
        n_bkg, n_src = classify_slits(model)
        if n_bkg == 0:
            log.warning("No background slits available for creating master background. Skipping")
            return model, "FAILED"
        if n_src == 0:
            log.warning("No source slits for applying master background. Skipping")
            return model, "FAILED"
        log.info("Calculating master background")
    log.info("Applying flat_field, pathloss, barshadow, and photom corrections for background data")
    calibrated = _calibrate_as_extended(model.copy(), params)
    x1d = None
    if params.user_background:
        master = user
    else:
        log.info("Creating MOS master background from background slitlets")
        x1d = _background_spectra(calibrated, params)
        master = master_spectrum(x1d, params) if x1d is not None else None
    if master is None:
        log.info("No master background could be calculated. Skipping.")
        return model, "FAILED"
    log.info("Interpolating 1D master background to all MOS 2D slitlets")
    background = expand_to_slits(calibrated, master)
    log.info("Inverting photom, barshadow, pathloss, and flat_field corrections for background data")
    background = _calibrate_as_extended(background, params, inverse=True)
    sign = -1.0 if params.inverse else 1.0
    log.info("%s master background %s each MOS source slitlet", "Adding" if params.inverse else "Subtracting",
             "to" if params.inverse else "from")
    for slit, bslit in zip(model.slits, background.slits):
        slit.data -= (sign * bslit.data).astype(slit.data.dtype)
        slit.dq |= bslit.dq
    if params.save_background:
        _save(model, master, background, x1d, params)
    return model
