"""flat_field for the NIRSpec IFU (NRS_IFU), as jwst 3.0 flat-fields it: the whole detector image.

For each of the 30 slices, the slice's WCS (assign_wcs's coordinate-based or slice-keyed WCS, cut to
that slice) over its bounding box, truncated to the detector and rounded inwards to whole pixels,
gives the wavelength of every pixel (0 where the slice has none); the f-flat (its fast-variation
table), the s-flat and the d-flat at those pixels combine as for the slits (tasks/_flat_nirspec.py's
``flat_at``); non-positive values become NaN with NO_FLAT_FIELD + DO_NOT_USE + UNRELIABLE_FLAT.  The
pixels of the box with a wavelength take the slice's flat (later slices win where boxes overlap);
every other pixel keeps NaN.  DO_NOT_USE pixels get a NaN flat and error, NaN flats DO_NOT_USE.  The
image is then divided as the slits are (variances, VAR_FLAT from the divided data, ERR, DQ, NaN and
DO_NOT_USE made consistent); the interpolated flat is an ImageModel with the exposure's metadata.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from ..errors import InputFileError
from ._flat_nirspec import BADFLAT, DNU, _dispaxis, _meta_sharing_wcs, divide, flat_at

log = logging.getLogger("webbflow.steps.flat_field")

NSLICES = 30


def _pixel_box(w):
    """The slice's bounding box cut to the detector, as whole-pixel slice limits (x0, x1, y0, y1)."""
    (xlo, xhi), (ylo, yhi) = (tuple(float(v) for v in r) for r in w.bounding_box.bounding_box(order="F"))
    if xlo < -0.5:
        xlo = 0.0
    if ylo < -0.5:
        ylo = 0.0
    if xhi > 2047.5:
        xhi = 2047.0
    if yhi > 2047.5:
        yhi = 2047.0
    return int(math.ceil(xlo)), int(math.floor(xhi)) + 1, int(math.ceil(ylo)), int(math.floor(yhi)) + 1


def interpolated_flat(model, fflat, sflat, dflat):
    """(flat, dq, err) over the detector image for the IFU exposure ``model``."""
    from .assign_wcs.nirspec_ifu import slice_wcs

    if model.meta.wcs is None:
        raise InputFileError(model.meta.filename or "<in memory>", "has no WCS: run assign_wcs before flat_field")
    dispaxis = _dispaxis(model)
    shape = model.data.shape
    flat = np.full(shape, np.nan, np.float32)
    flat_dq = np.zeros(model.dq.shape, np.uint32)
    flat_err = np.full(shape, np.nan, np.float32)
    for n in range(NSLICES):
        w = slice_wcs(model, n)
        x0, x1, y0, y1 = _pixel_box(w)
        y, x = np.indices((y1 - y0, x1 - x0))
        with np.errstate(invalid="ignore"):
            wl = np.asarray(w(x + x0, y + y0)[2], np.float64)
        good = ~np.isnan(wl)
        wl[~good] = 0.0
        f, fdq, ferr = flat_at(wl, fflat, sflat, dflat, (x0, x1, y0, y1), "NRS_IFU", dispaxis)
        bad = f <= 0.0
        if bad.any():
            f[bad] = np.nan
            fdq[bad] |= BADFLAT
        flat[y0:y1, x0:x1][good] = f[good]
        flat_dq[y0:y1, x0:x1][good] |= fdq[good].astype(np.uint32)
        flat_err[y0:y1, x0:x1][good] = ferr[good]
    unusable = (flat_dq & DNU) != 0
    flat[unusable] = np.nan
    flat_err[unusable] = np.nan
    flat_dq[~np.isfinite(flat)] |= DNU
    return flat, flat_dq, flat_err


def flat_ifu(model, fflat, sflat, dflat, inverse=False):
    """Flat-field the IFU image in place; returns the interpolated flat (an ImageModel)."""
    from ..models import ImageModel

    flat, dq, err = interpolated_flat(model, fflat, sflat, dflat)
    divide(model, flat, dq, err, inverse)
    made = ImageModel(data=flat)
    made.meta = _meta_sharing_wcs(model)
    made.dq = dq
    made.err = err
    return made
