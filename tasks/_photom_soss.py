"""photom for NIRISS SOSS: the extracted spectra (x1dints), not the image.

In jwst's spec2 the SOSS exposure goes through extract_1d in DN/s and photom then calibrates the
TSOMultiSpecModel.  For each spectrum (one per order) the PHOTOM row matching FILTER, PUPIL and
the order gives PHOTMJ (flux per DN/s; the exoTEDRF/STScI file states it in Jy per DN/s although
jwst labels the result MJy) and the relative response against wavelength.  On every integration's
row the conversion is PHOTMJ times the response interpolated at the row's wavelengths (0 outside
the response's range); FLUX, FLUX_ERROR, BACKGROUND and BKGD_ERROR are multiplied by it, their
variances by its square, and the units become MJy (MJy^2 for variances).  As in jwst, the
wavelengths that were NaN are set to -1 in the table (jwst's interpolation writes through to the
column), no pixel area is attached, and PHOTMJSR/PHOTUJA2 are not recorded.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger("webbflow.steps.photom")


def applies(model) -> bool:
    from ..models.spectra import TSOMultiSpecModel

    return isinstance(model, TSOMultiSpecModel) and (model.meta.exposure.type or "").upper() == "NIS_SOSS"


def calibrate(model, ref, params):
    """Calibrate each order's spectra in place; returns (model, status)."""
    from .photom import _validate_reference, find_row, relative_response, time_correction

    if params.inverse:
        from ..errors import UnsupportedModeError

        raise UnsupportedModeError("photom: inverse=True is not implemented for NIRISS SOSS spectra")
    _validate_reference(ref)
    table = ref.phot_table
    names = {n.lower(): n for n in table.dtype.names}
    corr = time_correction(ref, model.meta.exposure.mid_time)
    filt = (model.meta.instrument.filter or "").upper()
    pupil = (model.meta.instrument.pupil or "").upper()
    for spec in model.spec:
        order = spec.meta.get("spectral_order")
        row = find_row(table, {"filter": filt, "pupil": pupil, "order": order})
        if row is None:
            return model, "COMPLETE"
        trow = table[row]
        conversion = trow[names["photmj"]] if "photmj" in names else trow[names["photmjsr"]]
        tc = None if corr is None else corr[row]
        if params.apply_time_correction and tc is not None and tc != 1.0:
            log.info("Multiplicative time dependence correction is %.6g", tc)
            conversion = conversion / tc
        log.info("PHOTMJ value (order %s): %.6g", order, conversion)
        waves, resp = relative_response(trow, names)
        t = spec.spec_table
        wl = t["WAVELENGTH"]
        for i in range(len(t)):
            w = wl[i]
            flip = np.nanargmax(w) - np.nanargmin(w) < 0
            if flip:
                w = w[::-1]
            w[np.isnan(w)] = -1.0  # a view: the table keeps it, as jwst's does
            conv = np.interp(w, waves, resp, left=np.nan, right=np.nan)
            if flip:
                conv = conv[::-1]
            factor = conversion * conv
            factor[np.isnan(conv)] = 0.0
            for c in ("FLUX", "FLUX_ERROR", "BACKGROUND", "BKGD_ERROR"):
                t[c][i] *= factor
            for c in ("FLUX_VAR_POISSON", "FLUX_VAR_RNOISE", "FLUX_VAR_FLAT", "BKGD_VAR_POISSON", "BKGD_VAR_RNOISE",
                      "BKGD_VAR_FLAT"):
                t[c][i] *= factor**2.0
        for c in ("FLUX", "FLUX_ERROR", "BACKGROUND", "BKGD_ERROR"):
            spec.units[c] = "MJy"
        for c in ("FLUX_VAR_POISSON", "FLUX_VAR_RNOISE", "FLUX_VAR_FLAT", "BKGD_VAR_POISSON", "BKGD_VAR_RNOISE",
                  "BKGD_VAR_FLAT"):
            spec.units[c] = "MJy^2"
    return model, "COMPLETE"
