"""WFSS background subtraction (jwst's BackgroundStep for NRC_WFSS, NIS_WFSS): the ``bkg``
reference (the filter + grism's dispersed sky) scaled to the exposure and subtracted.

- Source mask: every catalogue source's spectral boxes (extract_2d's boxes from the source's sky
  bounding box and the wavelengthrange orders, no magnitude cut unless ``wfss_mmag_extract``,
  widened outward to whole pixels) are excluded; ``wfss_mask`` (an image with a MASK array, True
  = background) replaces it; with no catalogue every pixel is background.  The mask is kept as
  the exposure's MASK array.
- Scale: the error-weighted mean ratio sum(sci * bkg / var) / sum(bkg^2 / var) over the
  background pixels (var = ERR^2), iterated ``wfss_maxiter`` times, each time rejecting the
  ``wfss_outlier_percent`` lowest and highest residuals; with ``wfss_rms_stop`` > 0 the iterations
  stop when the RMS of the residual's cross-dispersion profile improves by less than that percent.
- Too few background pixels (5 % of the frame with a catalogue mask), or a non-finite scale: the
  step is FAILED and the data are left as they are (BKGD_SCL = 0).
- Otherwise data -= scale * bkg, DQ |= the reference's DQ, BKGD_SCL = scale.
"""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np

from ..errors import InputFileError
from ..models import dqflags

log = logging.getLogger("webbflow.steps.bkg_subtract")

WFSS_TYPES = ("NIS_WFSS", "NRC_WFSS")


def reftypes_needed(model, params) -> tuple[str, ...]:
    return ("bkg", "wavelengthrange") if (model.meta.exposure.type or "").upper() in WFSS_TYPES else ()


def source_mask(model, wr_ref, mmag_extract=None) -> np.ndarray:
    """True where no catalogue source's spectrum falls (the background pixels)."""
    from .extract_2d import grism_objects, read_catalog, resolve_catalog, wavelength_ranges

    exp_type = (model.meta.exposure.type or "").upper()
    filt = model.meta.instrument.pupil if exp_type == "NIS_WFSS" else model.meta.instrument.filter
    ranges = wavelength_ranges(wr_ref, filt)
    cat = read_catalog(resolve_catalog(model, model.meta.source_catalog))
    shape = model.data.shape
    mask = np.ones(shape, dtype=bool)
    for obj in grism_objects(model, cat, ranges, mmag_extract):
        for (ymin, ymax), (xmin, xmax) in obj.order_bounding.values():
            x0, x1 = max(int(math.floor(xmin)), 0), min(int(math.ceil(xmax)) + 1, shape[-1])
            y0, y1 = max(int(math.floor(ymin)), 0), min(int(math.ceil(ymax)) + 1, shape[-2])
            mask[..., y0:y1, x0:x1] = False
    return mask


def _enough_background(dq, mask, bkg, min_fraction=0.05) -> bool:
    good = mask & (bkg != 0)
    n = np.count_nonzero((dq[good] & dqflags.DO_NOT_USE) == 0)
    return n > int(min_fraction * dq.size)


class Rescaler:
    """The iterative error-weighted scale of the background to the science (see the module doc)."""

    def __init__(self, percent=1.0, maxiter=5, rms_stop=0.0, dispaxis=None):
        if rms_stop > 0 and dispaxis not in (1, 2):
            raise ValueError(f"Unrecognized dispersion axis {dispaxis}: the RMS stopping criterion needs it")
        self.percent, self.maxiter, self.rms_stop, self.dispaxis = percent, maxiter, rms_stop, dispaxis

    @staticmethod
    def _blank(sci, bkg, var, where):
        sci[where] = np.nan
        bkg[where] = np.nan
        var[where] = np.nan

    def weighted_mean(self, sci, bkg, var):
        self._blank(sci, bkg, var, var == 0)
        return np.nansum(sci * bkg / var, dtype="f8") / np.nansum(bkg * bkg / var, dtype="f8")

    def __call__(self, sci, bkg, var, reject):
        self._blank(sci, bkg, var, reject)
        last = np.inf
        i = 0
        while i < self.maxiter:
            resid = sci - self.weighted_mean(sci, bkg, var) * bkg
            if self.rms_stop > 0:
                profile = np.nanmedian(resid, axis=int(self.dispaxis - 1))
                rms = np.sqrt(np.nanmean(profile**2, dtype="f8"))
                with np.errstate(invalid="ignore"):
                    gain = (last - rms) / last
                if gain < self.rms_stop:
                    log.info("Stopping at iteration %d; too little improvement since the last one", i)
                    break
                last = rms
            i += 1
            lo, hi = np.nanpercentile(resid, (self.percent, 100 - self.percent))
            reject += (resid < lo) | (resid > hi)
            self._blank(sci, bkg, var, reject)
        if i >= self.maxiter:
            log.info("Stopped at maxiter (%d).", i)
        return self.weighted_mean(sci, bkg, var)


def subtract_wfss_background(model, bkg_ref, wr_ref, params):
    """Scale the bkg reference to ``model`` and subtract it in place. Returns (model, status)."""
    from ._subarray import ref_region

    bkg_data, bkg_dq = ref_region(model, bkg_ref, "data", "dq")
    if params.wfss_mask is not None:
        from .. import models

        m = models.open(params.wfss_mask)
        if not m.has("mask"):
            raise InputFileError(params.wfss_mask, "has no MASK array (wfss_mask must be an image with one)")
        mask = np.asarray(m.mask).astype(bool)
        if mask.shape != model.data.shape:
            raise InputFileError(params.wfss_mask, f"MASK shape {mask.shape} does not match the science {model.data.shape}")
        log.info("Using the user-supplied source mask for background scaling")
        if not _enough_background(model.dq, mask, np.ones_like(mask), 0.0):
            return _failed(model, mask, "no background pixels in the user-supplied mask")
    elif model.meta.source_catalog:
        if wr_ref is None:
            from ..errors import ReferenceFileError

            raise ReferenceFileError("wavelengthrange", "N/A", "is needed to mask the catalogue's sources in WFSS bkg_subtract")
        mask = source_mask(model, wr_ref, params.wfss_mmag_extract)
        if not _enough_background(model.dq, mask, bkg_data):
            return _failed(model, mask, "not enough background pixels outside the sources' spectra")
    else:
        log.warning("No source catalogue: every pixel is taken as background")
        mask = np.ones(model.data.shape, dtype=bool)
    model.mask = mask.astype(np.uint32)
    rescale = Rescaler(params.wfss_outlier_percent, params.wfss_maxiter, params.wfss_rms_stop / 100,
                       model.meta.wcsinfo.dispersion_direction)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        factor = rescale(model.data.copy(), np.array(bkg_data, dtype=np.float32), model.err.copy() ** 2, ~mask)
    if not np.isfinite(factor):
        return _failed(model, None, "no finite scale between the background reference and the data")
    scaled = factor * bkg_data
    model.data = model.data - scaled
    model.dq = np.bitwise_or(model.dq, bkg_dq)
    model.meta.background.scaling_factor = float(factor)
    log.info("Background scaling factor = %.5e; mean scaled background %.3e", factor, np.nanmean(scaled))
    return model, "COMPLETE"


def _failed(model, mask, why):
    log.warning("WFSS background: %s; step marked FAILED", why)
    if mask is not None:
        model.mask = mask.astype(np.uint32)
    model.meta.background.scaling_factor = 0.0
    return model, "FAILED"
