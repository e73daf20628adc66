"""photom for the MIRI MRS (MIR_MRS on MIRIFUSHORT / MIRIFULONG), as jwst 3.0's photom does it.

The MRS photom reference (MirMrsPhotomModel) holds the conversion per pixel: SCI in
(MJy/sr) / (DN/s), with ERR, DQ, PIXSIZ (each pixel's solid angle) and, in newer files, the
time-dependence tables TIMECOEFF_POWERLAW_CH1..4 (per channel, against wavelength).

1. NaN conversions are flagged DO_NOT_USE in the reference's DQ;
2. data and ERR are multiplied by SCI, the variances by its square (divided with ``inverse``);
   the reference's DQ is OR-ed into the science DQ;
3. with ``apply_time_correction`` and the tables present: each detector half (columns 0-511 for
   channel 1 or 4, 512-1030 for 2 or 3) gets the power-law throughput loss at the exposure's mid
   time, per wavelength bin (``((t - t0 + tsoft) ** alpha) / ((365 + tsoft) ** alpha / year1value)``,
   at most 1), interpolated linearly (and extrapolated) to each pixel's wavelength; data and ERR
   are divided by it and the variances by its square;
4. PHOTMJSR is the reference's PHOTMJSR keyword (PHOTUJA2 the same in uJy/arcsec^2), BUNIT
   MJy/sr (DN/s with ``inverse``), and NaN and DO_NOT_USE are made to agree.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from ..models import dqflags

log = logging.getLogger("webbflow.steps.photom")

MRS_DETECTORS = ("MIRIFUSHORT", "MIRIFULONG")


def applies(model) -> bool:
    return ((model.meta.exposure.type or "").upper() == "MIR_MRS"
            and (model.meta.instrument.detector or "").upper() in MRS_DETECTORS)


def _time_correction(model, ref, mid_time) -> np.ndarray:
    from scipy.interpolate import RegularGridInterpolator

    left, right = ("ch4", "ch3") if (model.meta.instrument.detector or "").upper() == "MIRIFULONG" else ("ch1", "ch2")
    ny, nx = model.data.shape[-2:]
    y, x = np.indices((ny, nx), dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        wave = model.meta.wcs(x, y)[2]
    out = np.zeros((ny, nx))
    for ch, (x0, x1) in ((left, (0, 512)), (right, (512, 1031))):
        tab = getattr(ref, f"timecoeff_powerlaw_{ch}")
        col = {n.lower(): n for n in tab.dtype.names}
        binwave, alpha, year1, tsoft, t0 = (np.asarray(tab[col[k]]) for k in ("binwave", "alpha", "year1value", "tsoft", "t0"))
        norm = ((365.0 + tsoft) ** alpha) / year1
        grid = ((mid_time - t0 + tsoft) ** alpha) / norm
        grid[grid > 1.0] = 1.0
        func = RegularGridInterpolator([binwave], grid, bounds_error=False, fill_value=None)
        w = wave[:, x0:x1]
        part = np.reshape(func(w.ravel()), w.shape)
        part[w == 0] = 0.0
        out[:, x0:x1] = part
    out[out == 0] = 1.0
    out[np.isnan(out)] = 1.0
    return out


def calibrate(model, ref, area_ref, params):
    """Apply the MRS per-pixel conversion (and the time correction) to ``model`` in place."""
    from .photom import MJSR_TO_UJA2, attach_area, scale
    from .flat_field import match_nans_and_flags

    attach_area(model, ref, area_ref)
    sens = np.asarray(ref.data)
    ref_dq = np.array(ref.dq if ref.has("dq") else np.zeros(sens.shape, np.uint32), dtype=np.uint32)
    nan = np.isnan(sens)
    ref_dq[nan] |= np.uint32(dqflags.DO_NOT_USE)
    scale(model, sens, params.inverse)  # data and ERR by the sensitivity, the variances by its square
    has_var_flat = model.has("var_flat") and model.var_flat.size > 0
    model.dq = np.bitwise_or(model.dq, ref_dq)
    tables = all(ref.has(f"timecoeff_powerlaw_ch{c}") for c in "1234")
    if params.apply_time_correction and tables:
        log.info("Applying MRS IFU time dependent correction.")
        corr = _time_correction(model, ref, model.meta.exposure.mid_time)
        inv_sq = 1.0 / (corr * corr)
        model.data /= corr
        model.err /= corr
        for name in ("var_poisson", "var_rnoise") + (("var_flat",) if has_var_flat else ()):
            getattr(model, name)[...] *= inv_sq
    else:
        log.info("Not applying MRS IFU time dependent correction.")
    conv = ref.meta.photometry.conversion_megajanskys
    model.meta.photometry.conversion_megajanskys = conv
    model.meta.photometry.conversion_microjanskys = None if conv is None else conv * MJSR_TO_UJA2
    unit = "DN/s" if params.inverse else "MJy/sr"
    model.meta.bunit_data = model.meta.bunit_err = unit
    match_nans_and_flags(model)
    return model, "COMPLETE"
