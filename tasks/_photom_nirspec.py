"""photom for NIRSpec slits: fixed slits (NRS_FIXEDSLIT), the MSA (NRS_MSASPEC) and bright-object
time series (NRS_BRIGHTOBJ), as jwst 3.0 calibrates them.

The photom reference (NrsFsPhotomModel, NrsMosPhotomModel) has a PHOTOM row per FILTER and GRATING
(and, for the fixed slits, SLIT) with PHOTMJ, the conversion of a point source from DN/s to MJy,
and a relative response against wavelength (NELEM values, microns or metres).  The area
reference gives each slit's pixel area on the sky: by slit name (NirspecSlitAreaModel) or by
shutter (quadrant, xcen, ycen; NirspecMosAreaModel); PIXAR_A2 is that area, PIXAR_SR the same in
steradians (1.0 for both when the slit is not in the table).

Per slit (the fixed slits by name, every MSA slit with the one row, the BOTS cutout with S1600A1's):

- a POINT slit stays in MJy (the uniform-source conversion, PHOTMJ / PIXAR_SR, is kept aside);
  any other slit becomes MJy/sr: PHOTMJ / PIXAR_SR;
- PHOTMJ divided by the time-dependence correction when the reference has one (and the
  parameter allows it); PHOTMJSR/PHOTUJA2 of the slit record that scalar;
- the 2-D conversion: scalar x relresponse(wavelength of each pixel); pixels outside the response's
  wavelengths get 0 and DO_NOT_USE;
- for a POINT fixed slit also PHOTOM_PS (the conversion at the zero-point-corrected wavelengths,
  the one applied) and PHOTOM_UN (the uniform conversion at the uncorrected wavelengths, from the
  WCS without its ``wavecorr_frame``);
- data and ERR times the conversion, variances times its square (divided with ``inverse``),
  BUNIT on the slit (the exposure's cleared), NaN and DO_NOT_USE made consistent.
"""

from __future__ import annotations

import logging

import numpy as np

from .. import models
from ..errors import ReferenceFileError
from ..models import dqflags
from .flat_field import match_nans_and_flags
from .photom import MJSR_TO_UJA2, _validate_reference, find_row, relative_response, scale, time_correction

log = logging.getLogger("webbflow.steps.photom")

MODES = ("NRS_FIXEDSLIT", "NRS_MSASPEC", "NRS_BRIGHTOBJ")
A2_TO_SR = (np.pi / (180.0 * 3600.0)) ** 2


def applies(model) -> bool:
    exp_type = (model.meta.exposure.type or "").upper()
    return ((model.meta.instrument.name or "").upper() == "NIRSPEC" and exp_type in MODES
            and isinstance(model, (models.MultiSlitModel, models.SlitModel)))


# ---------------------------------------------------------------------------
# pixel areas


def attach_areas(model, area_ref) -> None:
    """PIXAR_A2/PIXAR_SR of each slit (or of the BOTS cutout) from the area reference's AREA table."""
    name = getattr(area_ref.meta, "filename", None) or "<in memory>"
    table = area_ref.area_table
    cols = {c.lower(): c for c in table.dtype.names}
    if "pixarea" not in cols:
        raise ReferenceFileError("area", name, "its AREA table has no PIXAREA column")
    pixarea = np.asarray(table[cols["pixarea"]])
    exp_type = (model.meta.exposure.type or "").upper()
    if exp_type == "NRS_MSASPEC":
        need = [c for c in ("quadrant", "shutter_x", "shutter_y") if c not in cols]
        if need:
            raise ReferenceFileError("area", name, f"is not an MSA area table (no {', '.join(need).upper()})")
        q, sx, sy = (np.asarray(table[cols[c]]) for c in ("quadrant", "shutter_x", "shutter_y"))
        failures = 0
        for slit in model.slits:
            match = (q == slit.quadrant) & (sx == slit.xcen) & (sy == slit.ycen)
            if match.sum() != 1:
                failures += 1
                slit.meta.photometry.pixelarea_arcsecsq = slit.meta.photometry.pixelarea_steradians = 1.0
            else:
                a2 = float(pixarea[match].item())
                slit.meta.photometry.pixelarea_arcsecsq = a2
                slit.meta.photometry.pixelarea_steradians = a2 * A2_TO_SR
        if failures:
            log.warning("%d failures out of %d, matching MSA data to area reference file", failures, len(model.slits))
        return
    if "slit_id" not in cols:
        raise ReferenceFileError("area", name, "is not a fixed-slit area table (no SLIT_ID)")
    ids = [str(v.decode() if isinstance(v, bytes) else v) for v in table[cols["slit_id"]]]
    targets = [model] if isinstance(model, models.SlitModel) else list(model.slits)
    for t in targets:
        if t.name in ids:
            a2 = float(pixarea[ids.index(t.name)])
            t.meta.photometry.pixelarea_arcsecsq = a2
            t.meta.photometry.pixelarea_steradians = a2 * A2_TO_SR
        else:
            log.warning("%s not found in pixel area table", t.name)
            t.meta.photometry.pixelarea_arcsecsq = t.meta.photometry.pixelarea_steradians = 1.0


# ---------------------------------------------------------------------------
# wavelengths and the 2-D conversion


def _stored_wavelengths(slit):
    wl = slit.wavelength if slit.has("wavelength") else None
    if wl is None or wl.size == 0 or (np.nanmin(wl) == 0.0 and np.nanmax(wl) == 0.0):
        y, x = np.indices(slit.data.shape[-2:], dtype=np.float64)
        return np.asarray(slit.meta.wcs(x, y)[2])
    return wl.copy()


def uncorrected_wavelengths(slit):
    """The wavelengths without the zero-point correction: the WCS skipping its wavecorr_frame, if it has one."""
    wcs = slit.meta.wcs
    if wcs is None or "wavecorr_frame" not in wcs.available_frames:
        return _stored_wavelengths(slit)
    y, x = np.indices(slit.data.shape[-2:], dtype=np.float64)
    to_slit = wcs.get_transform("detector", "slit_frame")
    to_world = wcs.get_transform("wavecorr_frame", "world")
    return (to_slit | to_world)(x, y)[2]


def conversion_2d(wl, waves, resp, scalar):
    wl = np.array(wl, copy=True)
    wl[np.isnan(wl)] = -1.0
    rel = np.interp(wl, waves, resp, left=np.nan, right=np.nan)
    conv = scalar * rel
    no_cal = np.isnan(rel)
    conv[no_cal] = 0.0
    return conv, no_cal


def calibrate_slit(slit, exp_type, row, names, tcorr, params, source_type, multislit: bool):
    """Calibrate one slit (or the BOTS cutout) with its PHOTOM row; returns the 2-D conversion applied."""
    conversion = row[names["photmj"]]
    point = source_type is not None and str(source_type).upper() == "POINT"
    surface = True
    uniform = None
    sr = slit.meta.photometry.pixelarea_steradians
    if not point:
        if sr is None:
            log.warning("Pixel area is None, so can't convert flux to surface brightness!")
        else:
            conversion = conversion / sr
    else:
        uniform = None if sr is None else conversion / sr
        surface = False
    if params.apply_time_correction and tcorr is not None and tcorr != 1.0:
        log.info("Multiplicative time dependence correction is %.6g", tcorr)
        conversion = conversion / tcorr
    log.info("PHOTMJSR value: %.6g", conversion)
    slit.meta.photometry.conversion_megajanskys = float(conversion)
    slit.meta.photometry.conversion_microjanskys = float(conversion * MJSR_TO_UJA2)
    waves, resp = relative_response(row, names)
    if multislit and exp_type == "NRS_FIXEDSLIT" and str(slit.source_type).upper() == "POINT":
        slit.photom_uniform, _ = conversion_2d(uncorrected_wavelengths(slit), waves, resp, uniform)
        factor, no_cal = conversion_2d(_stored_wavelengths(slit), waves, resp, conversion)
        slit.photom_point = factor
    else:
        factor, no_cal = conversion_2d(_stored_wavelengths(slit), waves, resp, conversion)
    scale(slit, factor, params.inverse)
    slit.dq[..., no_cal] |= np.uint32(dqflags.DO_NOT_USE)
    if not params.inverse:
        slit.meta.bunit_data = slit.meta.bunit_err = "MJy/sr" if surface else "MJy"
    return factor


def photom_table(photom_ref, area_ref, areas_of: str):
    """The PHOTOM table of a NIRSpec photom reference and its columns by lower-case name, once the
    checks are passed: an area reference given (for ``areas_of``), the time-dependence tables'
    lengths, and the PHOTMJ, WAVELENGTH and RELRESPONSE columns."""
    name = getattr(photom_ref.meta, "filename", None) or "<in memory>"
    if area_ref is None:
        raise ReferenceFileError("area", "N/A", f"is required by photom for {areas_of}")
    _validate_reference(photom_ref)
    table = photom_ref.phot_table
    names = {n.lower(): n for n in table.dtype.names}
    for col in ("photmj", "wavelength", "relresponse"):
        if col not in names:
            raise ReferenceFileError("photom", name, f"has no {col.upper()} column (not a NIRSpec photom file)")
    return table, names


def calibrate(model, photom_ref, area_ref, params):
    """Apply NIRSpec slit photometry to ``model`` in place; returns (model, status)."""
    table, names = photom_table(photom_ref, area_ref, "NIRSpec slits (the slits' pixel areas)")
    exp_type = (model.meta.exposure.type or "").upper()
    filt = (model.meta.instrument.filter or "").upper() or None
    grating = (model.meta.instrument.grating or "").upper() or None
    attach_areas(model, area_ref)
    corr = time_correction(photom_ref, model.meta.exposure.mid_time)
    tc = (lambda r: None if corr is None else corr[r])  # noqa: E731
    with np.errstate(invalid="ignore", divide="ignore"):
        if exp_type == "NRS_BRIGHTOBJ":
            r = find_row(table, {"filter": filt, "grating": grating, "slit": "S1600A1"})
            if r is None:
                return model, "COMPLETE"
            src = params.source_type or model.meta.target.source_type
            calibrate_slit(model, exp_type, table[r], names, tc(r), params, src, multislit=False)
            if params.inverse:
                model.meta.bunit_data = model.meta.bunit_err = "DN/s"
            match_nans_and_flags(model)
            return model, "COMPLETE"
        mos_row = find_row(table, {"filter": filt, "grating": grating}) if exp_type == "NRS_MSASPEC" else None
        for slit in model.slits:
            log.info("Working on slit %s", slit.name)
            if exp_type == "NRS_FIXEDSLIT":
                r = find_row(table, {"filter": filt, "grating": grating, "slit": slit.name})
            else:
                r = mos_row
            if r is None:
                continue
            src = params.source_type or slit.source_type
            calibrate_slit(slit, exp_type, table[r], names, tc(r), params, src, multislit=True)
            if params.inverse:
                model.meta.bunit_data = model.meta.bunit_err = "DN/s"
            else:
                model.meta.bunit_data = model.meta.bunit_err = None
            match_nans_and_flags(slit)
    return model, "COMPLETE"
