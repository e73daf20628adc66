"""white_light: the white-light curve of a spectroscopic time series (jwst's WhiteLightStep).

From the per-integration spectra (``_x1dints``, a TSOMultiSpecModel), the flux of each
integration summed over wavelength (NaN-ignoring, within ``min_wavelength``..``max_wavelength``
or, for NIRISS SOSS, the order's range in the wavelengthrange reference), against the
integration's mid time (MJD UTC and BJD TDB).  Integrations with no mid time, or with a mid
time another integration already has, are left out with a warning.

One column of fluxes per spectral order (``whitelight_flux``, or ``whitelight_flux_order_<n>``
when there are several) and per detector (suffix ``_<detector>`` when there are several, or for
NIRSpec's NRS1/NRS2); rows are the union of mid times, NaN where an order has none.  The result
is an astropy QTable with the exposure's instrument, exp_type, subarray, filter, pupil and target
in its ``meta``, written as ``<product>_whtlt.ecsv``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

import numpy as np

from .base import StepParams, step

log = logging.getLogger("webbflow.steps.white_light")


class WhiteLightParams(StepParams):
    min_wavelength: float | None = None  # shortest wavelength (micron) summed
    max_wavelength: float | None = None  # longest wavelength (micron) summed
    output_ext: str = ".ecsv"
    suffix: str | None = "whtlt"


def _waverange(order, filt, table, min_wave, max_wave):
    lo, hi = -1.0, 1.0e10
    if table is not None:
        rows = [r for r in table if int(r[0]) == int(order) and str(r[1]) == str(filt)]
        if len(rows) != 1:
            raise ValueError(f"{'No' if not rows else 'Multiple'} reference wavelength range(s) for order {order} and filter {filt}")
        lo, hi = float(rows[0][2]), float(rows[0][3])
    return (lo if min_wave is None else min_wave), (hi if max_wave is None else max_wave)


def white_light_curve(model, waverange=None, min_wave=None, max_wave=None):
    """The white-light table of a TSOMultiSpecModel (see the module's description)."""
    from astropy import units as u
    from astropy.table import QTable

    orders: list = []
    detectors: list = []
    order_of, detector_of, mids, tdbs, sums = [], [], [], [], []
    flux_unit = None
    for s in model.spec:
        t = s.spec_table
        n = len(t)
        if flux_unit is None:
            flux_unit = s.units.get("FLUX")
        order = s.meta.get("spectral_order")
        det = s.meta.get("detector")
        if order not in orders:
            orders.append(order)
        if det not in detectors:
            detectors.append(det)
        order_of += [order] * n
        detector_of += [det] * n
        lo, hi = _waverange(order, model.meta.instrument.filter, waverange, min_wave, max_wave)
        mid = np.array(t["MJD-AVG"], dtype=float)
        _, first = np.unique(mid, return_index=True)
        unique = np.zeros(n, dtype=bool)
        unique[first] = True
        mid[~unique] = np.nan
        good = ~np.isnan(mid)
        wave = t["WAVELENGTH"]
        flux = np.array(t["FLUX"], dtype=float)
        flux[~((wave >= lo) & (wave <= hi) & good[:, None])] = np.nan
        sums.append(np.nansum(flux, axis=1))
        mids.append(mid)
        tdbs.append(np.array(t["TDB-MID"], dtype=float))
        if (~good).sum():
            log.warning("There were %d spectra in order %s with no mid time or duplicate mid time (%s percent of spectra). ",
                        int((~good).sum()), order, 100.0 * (~good).sum() / n)
            log.warning("These spectra will be ignored in the output table.")
    meta = OrderedDict(instrument=model.meta.instrument.name, exp_type=model.meta.exposure.type,
                       subarray=model.meta.subarray.name, filter=model.meta.instrument.filter,
                       pupil=model.meta.instrument.pupil, target_name=model.meta.target.catalog_name)
    tbl = QTable(meta=meta)
    if not mids:
        return tbl
    mid = np.concatenate(mids)
    tdb = np.concatenate(tdbs)
    flux = np.concatenate(sums)
    order_of = np.array(order_of, dtype=object)
    detector_of = np.array(detector_of, dtype=object)
    keep = ~np.isnan(mid)
    mid, tdb, flux, order_of, detector_of = mid[keep], tdb[keep], flux[keep], order_of[keep], detector_of[keep]
    per_det = {}
    nrows = 0
    for det in detectors:
        sel = detector_of == det
        times, idx = np.unique(mid[sel], return_index=True)
        per_det[det] = (times, tdb[sel][idx])
        nrows = max(nrows, times.size)
    for det in detectors:
        times, bjd = per_det[det]
        mjd_col = np.full(nrows, np.nan)
        mjd_col[: times.size] = times
        bjd_col = np.full(nrows, np.nan)
        bjd_col[: bjd.size] = bjd
        sfx = f"_{det}" if len(detectors) > 1 or str(det).upper() in ("NRS1", "NRS2") else ""
        tbl[f"MJD_UTC{sfx}"] = mjd_col
        tbl[f"BJD_TDB{sfx}"] = bjd_col
        for order in orders:
            sel = (order_of == order) & (detector_of == det)
            col = np.full(nrows, np.nan)
            col[np.isin(mjd_col, mid[sel])] = flux[sel]
            name = "whitelight_flux" + (f"_order_{order}" if len(orders) > 1 else "") + sfx
            tbl[name] = col << u.Unit(flux_unit) if flux_unit is not None else col
    return tbl


def _wanted(model, params):
    return ["wavelengthrange"] if model.meta.exposure.type == "NIS_SOSS" else []


@step("white_light", "WhiteLightStep", params=WhiteLightParams, optional_reftypes=("wavelengthrange",),
      suffix="whtlt", input_class="TSOMultiSpecModel")
def white_light(model, refs, params: WhiteLightParams):
    """Sum each integration's spectrum over wavelength: the white-light curve (an astropy table)."""
    if not getattr(model, "spec", None):
        log.error("No valid input spectra found.")
        return None, "SKIPPED"
    ref = refs.get("wavelengthrange")
    table = None
    if ref is not None:
        wr = getattr(ref, "wavelengthrange", None)
        table = [tuple(r) for r in wr] if wr is not None else None
    elif model.meta.exposure.type == "NIS_SOSS":
        log.warning("No wavelength range reference file found. The entire wavelength range in the input spectral "
                    "tables will be used for all spectral orders.")
    return white_light_curve(model, table, params.min_wavelength, params.max_wavelength)


def _register():
    from .base import STEPS

    STEPS["white_light"].extra["optional_reftypes_needed"] = _wanted


_register()
