"""photom for grism cutouts: WFSS slits (NRC_WFSS, NIS_WFSS), per slit the calibration of its
spectral order; the NRC_TSGRISM cutout (a SlitModel of integrations), its order's, on every
integration (:func:`calibrate_tso`).

A WFSS photom reference (NrcWfssPhotomModel, NisWfssPhotomModel) has one PHOTOM row per FILTER,
PUPIL and ORDER, with PHOTMJSR and a relative response tabulated against wavelength (NELEM
entries).  For every slit of extract_2d's MultiSlitModel, as jwst 3.0 does:

- the row of the exposure's filter and pupil and the slit's SPORDER (no row: the slit is left);
- the 2-D conversion PHOTMJSR (divided by the time-dependence correction when the reference
  has one) x relresponse(wavelength of each pixel) / |d wavelength / d pixel| along the dispersion
  (the slit's WAVELENGTH array; response wavelengths in metres are taken as microns x 1e-6);
- pixels beyond the response's wavelengths get 0 and DO_NOT_USE;
- data and ERR times the conversion, variances times its square, BUNIT MJy/sr on the slit (and
  none on the exposure), NaN and DO_NOT_USE made consistent;
- PHOTMJSR/PHOTUJA2 of the slit are the row's scalar; PIXAR_SR/PIXAR_A2 from the area reference
  (else the photom reference) on every slit; jwst copies the whole area map to the first slit's
  AREA, and so does this.
"""

from __future__ import annotations

import logging

import numpy as np

from .. import models
from ..models import dqflags
from .flat_field import match_nans_and_flags
from .photom import MJSR_TO_UJA2, _validate_reference, find_row, relative_response, scale, time_correction

log = logging.getLogger("webbflow.steps.photom")

WFSS_TYPES = ("NRC_WFSS", "NIS_WFSS")


def applies(model) -> bool:
    exp_type = (model.meta.exposure.type or "").upper()
    if isinstance(model, models.MultiSlitModel):
        return exp_type in WFSS_TYPES
    return isinstance(model, models.SlitModel) and exp_type == "NRC_TSGRISM"


def _dispersion(wl, dispaxis):
    """d wavelength / d pixel along the dispersion (numpy.gradient per row or per column)."""
    d = np.zeros(wl.shape)
    if dispaxis == 1:
        for r in range(wl.shape[0]):
            d[r] = np.gradient(wl[r])
    elif dispaxis == 2:
        for c in range(wl.shape[1]):
            d[:, c] = np.gradient(wl[:, c])
    else:
        log.warning("Can't process data with DISPAXIS=%s", dispaxis)
    return d


def _slit_wavelengths(slit):
    wl = slit.wavelength.copy() if slit.has("wavelength") else None
    if wl is None or wl.size == 0 or (np.nanmin(wl) == 0.0 and np.nanmax(wl) == 0.0):
        ny, nx = slit.data.shape[-2:]
        wl = np.zeros((ny, nx))
        for j in range(ny):
            for i in range(nx):
                wl[j, i] = slit.meta.wcs(i, j)[2]
    return wl


def _two_d_conversion(slit, row, names, conversion, dispaxis):
    """(conversion per pixel, pixels with no calibration) for one slit from its photom row."""
    waves, resp = relative_response(row, names)
    wl = _slit_wavelengths(slit)
    wl[np.isnan(wl)] = -1.0
    conv2d = np.interp(wl, waves, resp, left=np.nan, right=np.nan)
    if dispaxis is not None:
        conv2d /= np.abs(_dispersion(wl, dispaxis))
    conv = conversion * conv2d
    no_cal = np.isnan(conv2d)
    conv[no_cal] = 0.0
    return conv, no_cal


def _apply(slit, conv, no_cal, inverse: bool) -> None:
    scale(slit, conv, inverse)
    slit.dq[..., no_cal] |= dqflags.DO_NOT_USE


def calibrate_tso(model, photom_ref, area_ref=None, params=None):
    """The NRC_TSGRISM cutout (a SlitModel of integrations): its order's row, applied to every integration.

    As jwst: the area map cut to the exposure's subarray (SUBSTRT/SUBSIZE, not the cutout) becomes
    AREA, PHOTMJSR/PHOTUJA2 and PIXAR_* go to the model's metadata, BUNIT becomes MJy/sr.
    """
    from .assign_wcs.grism import dispersion_direction

    _validate_reference(photom_ref)
    table = photom_ref.phot_table
    names = {n.lower(): n for n in table.dtype.names}
    sr = a2 = None
    if area_ref is not None:
        s = model.meta.subarray
        y0, x0 = s.ystart - 1, s.xstart - 1
        model.area = np.array(area_ref.data[y0 : y0 + s.ysize, x0 : x0 + s.xsize], dtype=np.float32)
        sr, a2 = area_ref.meta.photometry.pixelarea_steradians, area_ref.meta.photometry.pixelarea_arcsecsq
    if sr is None or a2 is None:
        sr, a2 = photom_ref.meta.photometry.pixelarea_steradians, photom_ref.meta.photometry.pixelarea_arcsecsq
    model.meta.photometry.pixelarea_steradians = None if sr is None else float(sr)
    model.meta.photometry.pixelarea_arcsecsq = None if a2 is None else float(a2)
    up = lambda v: None if v is None else str(v).upper()  # noqa: E731
    order = model.meta.wcsinfo.spectral_order
    row = find_row(table, {"filter": up(model.meta.instrument.filter), "pupil": up(model.meta.instrument.pupil),
                           "order": order})
    if row is None:
        log.warning("No photom row for filter %s pupil %s order %s: not calibrated", model.meta.instrument.filter,
                    model.meta.instrument.pupil, order)
        return model, "COMPLETE"
    corr = time_correction(photom_ref, model.meta.exposure.mid_time)
    conversion = table[row][names["photmjsr"]]
    tc = None if corr is None else corr[row]
    if (params is None or params.apply_time_correction) and tc is not None and tc != 1.0:
        conversion = conversion / tc
    model.meta.photometry.conversion_megajanskys = float(conversion)
    model.meta.photometry.conversion_microjanskys = float(conversion * MJSR_TO_UJA2)
    conv, no_cal = _two_d_conversion(model, table[row], names, conversion, dispersion_direction(model))
    inverse = bool(params is not None and params.inverse)
    _apply(model, conv, no_cal, inverse)
    model.meta.bunit_data = model.meta.bunit_err = "DN/s" if inverse else "MJy/sr"
    match_nans_and_flags(model)
    return model, "COMPLETE"


def calibrate_wfss(model, photom_ref, area_ref=None, params=None):
    """Flux-calibrate each WFSS slit in place (see the module doc). Returns (model, status)."""
    from .assign_wcs.grism import dispersion_direction

    _validate_reference(photom_ref)
    table = photom_ref.phot_table
    names = {n.lower(): n for n in table.dtype.names}
    sr = a2 = None
    if area_ref is not None:
        model.slits[0].area = np.array(area_ref.data, dtype=np.float32)
        sr, a2 = area_ref.meta.photometry.pixelarea_steradians, area_ref.meta.photometry.pixelarea_arcsecsq
    if sr is None or a2 is None:
        sr, a2 = photom_ref.meta.photometry.pixelarea_steradians, photom_ref.meta.photometry.pixelarea_arcsecsq
    for slit in model.slits:
        slit.meta.photometry.pixelarea_arcsecsq = None if a2 is None else float(a2)
        slit.meta.photometry.pixelarea_steradians = None if sr is None else float(sr)
    corr = time_correction(photom_ref, model.meta.exposure.mid_time)
    up = lambda v: None if v is None else str(v).upper()  # noqa: E731
    filt, pupil = up(model.meta.instrument.filter), up(model.meta.instrument.pupil)
    dispaxis = dispersion_direction(model)
    inverse = bool(params is not None and params.inverse)
    for slit in model.slits:
        order = slit.meta.wcsinfo.spectral_order
        row = find_row(table, {"filter": filt, "pupil": pupil, "order": order})
        if row is None:
            log.warning("No photom row for filter %s pupil %s order %s: slit %s left uncalibrated", filt, pupil, order,
                        slit.name)
            continue
        trow = table[row]
        conversion = trow[names["photmjsr"]]
        tc = None if corr is None else corr[row]
        if (params is None or params.apply_time_correction) and tc is not None and tc != 1.0:
            conversion = conversion / tc
        slit.meta.photometry.conversion_megajanskys = float(conversion)
        slit.meta.photometry.conversion_microjanskys = float(conversion * MJSR_TO_UJA2)
        conv, no_cal = _two_d_conversion(slit, trow, names, conversion, dispaxis)
        _apply(slit, conv, no_cal, inverse)
        if not inverse:
            slit.meta.bunit_data = slit.meta.bunit_err = "MJy/sr"
            model.meta.bunit_data = model.meta.bunit_err = None
        else:
            model.meta.bunit_data = model.meta.bunit_err = "DN/s"
        match_nans_and_flags(slit)
    return model, "COMPLETE"
