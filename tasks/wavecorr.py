"""wavecorr: the wavelength zero point of off-centre NIRSpec point sources (jwst's WavecorrStep).

A point source that is not centred across a slit (along the dispersion) lands a little to one side
of where a uniformly filled slit would put its light: its wavelengths shift by a fraction of a
pixel.  The ``wavecorr`` reference (WaveCorrModel) tabulates, per aperture (each fixed slit by
name, ``MOS`` for the MSA), that shift in pixels against wavelength (metres) and the source's
position across the slit (-0.5 .. 0.5, SRCXPOS), extrapolating linearly beyond the table.

For each POINT slit (the slit's SRCTYPE, else the exposure's), as jwst 3.0 does:

1. the slit's wavelengths (metres) and its dispersion per pixel (the WCS at x - 0.5 and x + 0.5),
   both averaged over the rows, NaN columns dropped;
2. the corrected wavelengths ``lam + shift(lam, SRCXPOS) * dispersion``; when they increase
   monotonically, a lookup table from uncorrected to corrected wavelength (linear, extrapolating)
   becomes a new ``wavecorr_frame`` after the WCS's ``slit_frame``;
3. WAVELENGTH recomputed through the new WCS, WAVECOR = True on the slit.

Other slits get WAVECOR = False.  The step is COMPLETE when any slit was corrected, else SKIPPED.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from ..errors import InputFileError, ReferenceFileError
from .base import StepParams, step

log = logging.getLogger("webbflow.steps.wavecorr")

MODES = ("NRS_FIXEDSLIT", "NRS_MSASPEC", "NRS_BRIGHTOBJ", "NRS_AUTOFLAT")


def is_point_source(slit) -> bool:
    src = slit.source_type if slit.source_type is not None else slit.meta.target.source_type
    return src is not None and str(src).strip().upper() == "POINT"


def offset_table(ref, aperture: str):
    """The aperture's zero-point table (a copy that extrapolates beyond its grid), or None."""
    for ap in ref.apertures:
        if ap["aperture_name"] == aperture:
            log.info("Using wavelength zero-point correction for aperture %s", aperture)
            table = ap["zero_point_offset"].copy()
            table.bounds_error = False
            table.fill_value = None
            return table
    log.warning("No wavelength zero-point correction found for slit %s", aperture)
    return None


def _grid(wcs):
    from gwcs.wcstools import grid_from_bounding_box

    return grid_from_bounding_box(wcs.bounding_box, step=(1, 1))


def dispersion(wcs) -> np.ndarray:
    """Wavelength per pixel (metres) at every pixel of the slit: the WCS half a pixel each side."""
    x, y = _grid(wcs)
    return (wcs(x + 0.5, y)[2] - wcs(x - 0.5, y)[2]) * 10**-6


def correction_transform(lam, disp, table, source_xpos):
    """Tabular1D from uncorrected to corrected wavelength (metres), or None when not monotonic."""
    from astropy.modeling.tabular import Tabular1D

    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        lam_mean = np.nanmean(lam, axis=0)
        disp_mean = np.nanmean(disp, axis=0)
    bad = np.isnan(lam_mean) | np.isnan(disp_mean)
    lam_mean, disp_mean = lam_mean[~bad], disp_mean[~bad]
    corrected = lam_mean + table(lam_mean, source_xpos) * disp_mean
    if not np.all(np.diff(corrected) > 0):
        return None
    return Tabular1D(points=lam_mean, lookup_table=corrected, bounds_error=False, fill_value=None,
                     name="wave2wavecorr")


def correct_slit(slit, ref) -> bool:
    """Insert the zero-point correction into one slit's WCS and recompute WAVELENGTH; False when none applies."""
    from astropy import units as u
    from astropy.modeling.models import Identity
    from gwcs import coordinate_frames as cf

    exp_type = slit.meta.exposure.type
    aperture = slit.name if exp_type in ("NRS_FIXEDSLIT", "NRS_BRIGHTOBJ") else "MOS"
    table = offset_table(ref, aperture)
    if table is None:
        return False
    if slit.source_xpos is None:
        raise InputFileError(slit.meta.filename or "<in memory>",
                             f"slit {slit.name} has no SRCXPOS; wavecorr needs the source position (run extract_2d)")
    lam = slit.wavelength.copy() * 1e-6
    tr = correction_transform(lam, dispersion(slit.meta.wcs), table, slit.source_xpos)
    if tr is None:
        return False
    spatial = cf.Frame2D(name="slit_spatial", axes_order=(0, 1), unit=("", ""), axes_names=("x_slit", "y_slit"))
    spec = cf.SpectralFrame(name="spectral", axes_order=(2,), unit=(u.micron,), axes_names=("wavelength",))
    frame = cf.CompositeFrame([spatial, spec], name="wavecorr_frame")
    slit.meta.wcs.insert_frame("slit_frame", Identity(2) & tr, frame)
    x, y = _grid(slit.meta.wcs)
    slit.wavelength = np.asarray(slit.meta.wcs(x, y)[2], dtype=np.float32)
    return True


def do_correction(model, ref):
    """Apply the correction to every point-source slit of ``model`` (a SlitModel or MultiSlitModel)."""
    from ..models import SlitModel

    corrected = False
    if isinstance(model, SlitModel):
        if is_point_source(model):
            corrected = correct_slit(model, ref)
    else:
        for slit in model.slits:
            if is_point_source(slit):
                log.info("Detected a POINT source type in slit %s", slit.name)
                done = correct_slit(slit, ref)
                slit.wavelength_corrected = bool(done)
                corrected = corrected or done
            else:
                slit.wavelength_corrected = False
    return model, "COMPLETE" if corrected else "SKIPPED"


def _validate(ref):
    name = getattr(ref.meta, "filename", None) or "<in memory>"
    aps = getattr(ref, "apertures", None) if "apertures" in getattr(ref, "_asdf_extra", {}) else None
    if not aps:
        raise ReferenceFileError("wavecorr", name, "has no apertures (not a NIRSpec wavecorr file)")


@step("wavecorr", "WavecorrStep", params=StepParams, reftypes=("wavecorr",), suffix="wavecorr",
      input_class="MultiSlitModel")
def wavecorr(model, refs, params: StepParams):
    """Shift the wavelengths of off-centre NIRSpec point sources (FS, MOS, BOTS) to their true zero point."""
    from ..models import MultiSlitModel, SlitModel

    exp_type = (model.meta.exposure.type or "").upper()
    if exp_type not in MODES:
        log.info("Skipping wavecorr correction for EXP_TYPE %s", exp_type)
        return model, "SKIPPED"
    if model.meta.cal_step.assign_wcs == "SKIPPED":
        log.warning("assign_wcs was skipped; wavecorr will be skipped")
        return model, "SKIPPED"
    if not isinstance(model, (SlitModel, MultiSlitModel)):
        raise InputFileError(model.meta.filename or "<in memory>",
                             f"is {type(model).__name__}; wavecorr takes the slits of extract_2d (SlitModel or MultiSlitModel)")
    first = model if isinstance(model, SlitModel) else (model.slits[0] if model.slits else None)
    if first is None or first.meta.wcs is None:
        raise InputFileError(model.meta.filename or "<in memory>", "has no slit WCS: run assign_wcs and extract_2d first")
    ref = refs["wavecorr"]
    _validate(ref)
    return do_correction(model, ref)
