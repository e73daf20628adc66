"""photom for the NIRSpec IFU (NRS_IFU), as jwst 3.0 calibrates it: a per-pixel conversion to MJy/sr.

The photom reference (NrsMosPhotomModel) has one PHOTOM row per FILTER and GRATING: PHOTMJ (DN/s to
MJy) and a relative response against wavelength.  The area reference (NirspecIfuAreaModel) has each
slice's pixel area (AREA: slice_id, pixarea in arcsec^2); PIXAR_A2 of the exposure is their mean,
PIXAR_SR the same in steradians, and PHOTMJSR = PHOTMJ / PIXAR_SR (PHOTUJA2 from it).

For each slice, its WCS on the grid of its bounding box (pixel centres) gives the wavelength of each
pixel; where finite, the pixel takes that wavelength and the slice's pixel area (later slices win
where boxes overlap) and is science; every other pixel is NON_SCIENCE.  The conversion of a pixel is
relresponse(wavelength) (linear, held at the ends) x PHOTMJ / (pixel area x arcsec^2 -> sr); 1 on
NON_SCIENCE pixels.  Point sources and extended ones alike end in MJy/sr.  Data and ERR are
multiplied by it, VAR_POISSON, VAR_RNOISE and VAR_FLAT by its square (divided with ``inverse``).
No time-dependent correction is applied to the IFU (jwst 3.0 applies none there).
"""

from __future__ import annotations

import logging

import numpy as np

from .. import models
from ..errors import ReferenceFileError
from ..models import dqflags
from ._photom_nirspec import photom_table
from .photom import MJSR_TO_UJA2, find_row

log = logging.getLogger("webbflow.steps.photom")

A2_TO_SR = (np.pi / (180.0 * 3600.0)) ** 2
MICRONS_100 = 1.0e-4
NSLICES = 30


def applies(model) -> bool:
    return ((model.meta.instrument.name or "").upper() == "NIRSPEC"
            and (model.meta.exposure.type or "").upper() == "NRS_IFU" and isinstance(model, models.IFUImageModel))


def _area_column(area_ref, col):
    name = getattr(area_ref.meta, "filename", None) or "<in memory>"
    table = area_ref.area_table
    cols = {c.lower(): c for c in (table.dtype.names or ())}
    if col not in cols:
        raise ReferenceFileError("area", name, f"its AREA table has no {col.upper()} column (not an IFU area file)")
    return np.asarray(table[cols[col]])


def sensitivity_inputs(model, area_ref):
    """(wavelength, pixel area, DQ map) images from the slices' WCSs (see the module)."""
    from gwcs.wcstools import grid_from_bounding_box

    from .assign_wcs.nirspec_ifu import slice_wcs

    slice_ids = _area_column(area_ref, "slice_id")
    pixarea = _area_column(area_ref, "pixarea")
    wave2d = np.zeros_like(model.data)
    area2d = np.ones_like(model.data)
    dqmap = np.zeros_like(model.dq) + np.uint32(dqflags.NON_SCIENCE)
    for k in range(NSLICES):
        w = slice_wcs(model, k)
        x, y = grid_from_bounding_box(w.bounding_box, step=(1, 1), center=True)
        with np.errstate(invalid="ignore"):
            wl = np.asarray(w(x, y)[2])
        valid = ~np.isnan(wl)
        xi, yi = x[valid].astype(int), y[valid].astype(int)
        dqmap[yi, xi] = 0
        wave2d[yi, xi] = wl[valid]
        match = slice_ids == k
        if not match.any():
            name = getattr(area_ref.meta, "filename", None) or "<in memory>"
            raise ReferenceFileError("area", name, f"has no row for IFU slice {k}")
        area2d[yi, xi] = pixarea[match][0]
    return wave2d, area2d, dqmap


def calibrate(model, photom_ref, area_ref, params):
    """Apply NIRSpec IFU photometry to ``model`` in place; returns (model, status)."""
    table, names = photom_table(photom_ref, area_ref, "the NIRSpec IFU (the slices' pixel areas)")
    pixarea = _area_column(area_ref, "pixarea")
    # the mean area as the product's keyword holds it (a Python float), the steradians from that
    a2 = float(np.nanmean(pixarea))
    model.meta.photometry.pixelarea_arcsecsq = a2
    sr = a2 * A2_TO_SR
    model.meta.photometry.pixelarea_steradians = sr
    filt = (model.meta.instrument.filter or "").upper() or None
    grating = (model.meta.instrument.grating or "").upper() or None
    r = find_row(table, {"filter": filt, "grating": grating})
    if r is None:
        return model, "COMPLETE"
    row = table[r]
    photmj = row[names["photmj"]]
    conv = photmj / sr  # in the table's precision (float32), as the keyword gets it
    log.info("PHOTMJSR value: %.6g", conv)
    model.meta.photometry.conversion_megajanskys = float(conv)
    model.meta.photometry.conversion_microjanskys = float(conv * MJSR_TO_UJA2)
    waves = np.asarray(row[names["wavelength"]])
    resp = np.asarray(row[names["relresponse"]])
    if "nelem" in names:
        n = int(row[names["nelem"]])
        waves, resp = waves[:n], resp[:n]
    if waves.max() > 0.0 and waves.max() < MICRONS_100:
        waves = waves * 1.0e6
    wave2d, area2d, dqmap = sensitivity_inputs(model, area_ref)
    sens = np.interp(wave2d, waves, resp)
    sens *= photmj
    sens /= area2d * A2_TO_SR
    sens[(dqmap & np.uint32(dqflags.NON_SCIENCE)) != 0] = 1.0
    model.dq = model.dq | dqmap
    sq = sens * sens
    op = np.divide if params.inverse else np.multiply
    for attr, factor in (("data", sens), ("err", sens), ("var_poisson", sq), ("var_rnoise", sq)):
        arr = getattr(model, attr)
        op(arr, factor, out=arr, casting="unsafe")
    if model.var_flat is not None and np.size(model.var_flat) > 0:
        op(model.var_flat, sq, out=model.var_flat, casting="unsafe")
    unit = "DN/s" if params.inverse else "MJy/sr"
    model.meta.bunit_data = model.meta.bunit_err = unit
    return model, "COMPLETE"
