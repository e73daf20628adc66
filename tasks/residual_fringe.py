"""residual_fringe: the MIRI MRS 2-D residual fringe correction (jwst's ResidualFringeStep, off by default).

What the fringe flat leaves of the etalon fringes is fitted column by column, slice by slice, on
the cal image, and divided out.  References: ``fringefreq`` (per slice and band the fringe
components to fit and MAX_AMP, the largest plausible amplitude by wavelength) and ``regions``
(the slice map; plane 8, the 80 % throughput footprint).

1. The image (DO_NOT_USE and non-finite pixels set to 0) is divided by the median of its positive
   pixels; the weights are each column divided by its mean (0 where not finite), and 0 inside
   ``ignore_region_min``-``ignore_region_max`` (um).
2. In each slice of the detector's two channels, each column spanned by the slice with more than
   50 in-slice pixels and a DER_SNR signal to noise of at least the slice's ``min_snr`` is fitted:
   spectral features are masked (peaks of data / lower envelope - 1 above twice MAX_AMP, only where
   SCI/ERR > 10; in channels 3 and 4 also on a 7-pixel running mean), then for each fringe
   component: a spline continuum in wavenumber (one knot per fringe period, see
   :func:`background`), and on the residual fringes (data / continuum - 1) a sum of sines whose
   frequencies come from Lomb-Scargle periodograms, a sine being kept while the Bayesian evidence
   grows by more than 1 (log10; parameters within [-3, 10], noise scale within [0.001, 10]); beats
   where the fit's envelope exceeds twice MAX_AMP are zeroed, and the column is divided by 1 + fit.
3. A column whose fit fails (no sine supported by the evidence, too few fringe periods, a
   numerical failure) is left as it was, as jwst leaves it; the fitted in-slice pixels are written
   back, the image is multiplied by the median again and the masked pixels are NaN.

The fits are those of the 1-D correction in extract_1d (:mod:`.extract_1d._rfcorr`: BayesicFitting's
Levenberg-Marquardt, robust reweighting and evidence on numpy arrays), with the 2-D step's settings:
the primary fringe (ffreq > 1.5 cm-1) fitted with robust reweighting, the dichroic one without,
and the evidence of the latter taken with the damped Hessian of the fitter's last step, as
BayesicFitting leaves it.  ``save_intermediate_results`` writes ``<root>_stat_table.ecsv``,
``<root>_out_table.ecsv`` and ``<root>_fit_results.fits`` as jwst does.
"""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np
from pydantic import field_validator, model_validator

from ..errors import InputFileError, ReferenceFileError
from ..models import dqflags
from .base import StepParams, step
from .extract_1d import _rfcorr as rf

log = logging.getLogger("webbflow.steps.residual_fringe")

TRANSMISSION_LEVEL = 80  # % throughput plane of the regions reference
MIN_PIXELS = 50  # a column needs more in-slice pixels than this
COLUMN_SNR = 10.0  # pixels with SCI/ERR above this take part in the periodograms and fits
SMOOTH_WINDOW = 7  # running mean for the feature search in channels 3 and 4
EVIDENCE_LIMITS = (-3.0, 10.0)
EVIDENCE_NOISE = (0.001, 10.0)
# DER_SNR's noise factor (Stoehr et al. 2008)
DER_SNR = 1.482602 / math.sqrt(6)
_TINY = 1e-08


class ResidualFringeParams(StepParams):
    skip: bool = True  # jwst 3.0 runs it only when asked
    suffix: str | None = "residual_fringe"  # jwst's step names its product so
    save_intermediate_results: bool = False  # also write the stat/out tables and the fit results
    search_output_file: bool = False  # as jwst's step: its product is named after the input, not output_file
    ignore_region_min: list[float] | None = None  # wavelengths (um) from which to leave data out of the fits
    ignore_region_max: list[float] | None = None  # ... up to which (as many as ignore_region_min)

    @field_validator("ignore_region_min", "ignore_region_max", mode="before")
    @classmethod
    def _as_list(cls, v):
        if isinstance(v, str):
            v = [x for x in v.replace("[", " ").replace("]", " ").replace(",", " ").split() if x]
        return None if v is None else [float(x) for x in v]

    @model_validator(mode="after")
    def _pairs(self):
        if len(self.ignore_region_min or []) != len(self.ignore_region_max or []):
            raise ValueError("ignore_region_min and ignore_region_max need as many values each")
        return self


# ----------------------------------------------------------------------------------------------
# per-column pieces (jwst's arithmetic, in jwst's order)


def envelope_points(signal, wide: bool = False):
    """Indices of the troughs and peaks of ``signal`` (strictly below/above one or two neighbours each side)."""
    return rf._extrema(signal, wide)


def lower_envelope(x, signal) -> np.ndarray:
    """PCHIP through the troughs of ``signal`` and its two ends, at ``x`` (``x`` may be longer than
    ``signal``: the last point is then (x[-1], signal[-1]), as jwst has it)."""
    from scipy.interpolate import PchipInterpolator

    lo, _ = envelope_points(signal)
    xs = np.concatenate(([x[0]], np.asarray(x)[lo], [x[-1]]))
    ys = np.concatenate(([signal[0]], np.asarray(signal)[lo], [signal[-1]]))
    return PchipInterpolator(xs, ys)(x)


def feature_weights(signal, max_amp) -> np.ndarray:
    """0 between the troughs around each peak of ``signal`` higher than ``max_amp`` there, and where
    ``signal`` exceeds twice ``max_amp`` once those are cleared; 1 elsewhere."""
    s = np.asarray(signal, dtype=np.float64)
    n = s.shape[0]
    k = np.arange(1, n - 1)
    near_zero = np.abs(s[k - 1]) <= 1e-8
    near_zero &= np.abs(s[k]) <= 1e-8
    near_zero &= np.abs(s[k + 1]) <= 1e-8
    left = s[k] - s[k - 1]
    right = s[k] - s[k + 1]
    peaks = k[~near_zero & (left > 0) & (right > 0)]
    troughs = k[~near_zero & (left < 0) & (right < 0)]
    check = s.copy()
    out = np.ones(n)
    for p in peaks[s[peaks] > max_amp[peaks]]:
        for xp in (p - 1, p, p + 1):
            if troughs.size == 0:
                continue
            order = np.argsort(np.abs(troughs - xp))
            x1 = troughs[order[0]]
            x2 = troughs[order[1]] if troughs.size > 1 else x1
            lo, hi = min(x1, x2), max(x1, x2)
            check[lo:hi] = 0
            out[lo:hi] = 0
    out[check > 2 * max_amp] = 0
    return out


def background(flux, weights, wavenum, ffreq: float, channel: int):
    """The continuum under the fringes: a least-squares spline in wavenumber / its minimum, one knot
    per fringe period plus knots at the edges of masked runs (degree 2 with robust reweighting for
    the primary fringe, degree 1 without for the dichroic one), 1e-8 times itself at zero-weight
    pixels and interpolated over low-weight ones.  Returns (continuum, knot indices); raises
    FringeFitError with fewer than 5 fringe periods in the column."""
    span = np.amax(wavenum) - np.amin(wavenum)
    nknots = int(span / ffreq)
    scaled = wavenum.copy() / np.amin(wavenum)
    if span // ffreq < 5:
        raise rf.FringeFitError("fewer than 5 fringe periods in the column")
    idx = rf.knot_indices(flux.copy(), nknots, weights.copy())
    knots = scaled[idx].astype(float)
    if channel in (3, 4):
        t, x, y, w = knots[1:-1], scaled, flux, weights
    else:
        t, x, y, w = knots[::-1][1:-1], scaled[::-1], flux[::-1], weights[::-1]
    spline = rf.robust_spline(x, y, w, t, 2, True) if ffreq > 1.5 else rf.robust_spline(x, y, w, t, 1, False)
    fit = spline(scaled)
    fit *= np.where(weights > 1e-07, 1, 1e-08)
    low = weights < 1e-05
    if low.any() and (~low).any():
        fit[low] = np.interp(low.nonzero()[0], (~low).nonzero()[0], fit[~low])
    return fit, idx


def _sines_evidence(resid, weights, x, held, robust: bool) -> tuple[float, rf._Sines]:
    """Fit a sum of len(held) sines (frequencies first held, then free) and return (log10 evidence,
    the model); -1e9 when the fit or the evidence fails, as jwst counts it."""
    n = len(held)
    try:
        lm = rf._LM(rf._Sines(x, n), dict(held))
        pars = rf._robust_fit(lm, resid, weights) if robust else lm.fit(resid, weights)
        model = rf._Sines(x, n)
        model.p = np.array(pars, dtype=float)
        lm = rf._LM(model)
        if robust:
            rf._robust_fit(lm, resid, weights)
            hessian = lm.h
        else:
            lm.fit(resid, weights)
            hessian = lm.damped
        evidence = rf._log10_evidence(lm.chisq, lm.sumw, lm.npfit, hessian, EVIDENCE_LIMITS, EVIDENCE_NOISE)
    except Exception as err:  # noqa: BLE001 - jwst scores any failed fit as no evidence
        log.debug("fringe fit failed: %s", err)
        return -1e9, None
    return evidence, model


def fit_fringes(resid, weights, wavenum, ffreq, dffreq, max_sines, pgram_res, good):
    """The sum of sines the evidence supports on one column's residual fringes.

    ``weights`` is multiplied in place by ``good`` (SCI/ERR > 10), as jwst's does.  Returns (fit,
    weighted pixels, number of sines, first, smallest and largest fitted frequency in cm-1); raises
    FringeFitError when not even one sine is supported."""
    from astropy.timeseries import LombScargle

    nweighted = int((weights > 1e-05).sum())
    x, factor, periods = rf.scan_grid(wavenum, ffreq, dffreq, pgram_res)
    resid = np.nan_to_num(resid)
    resid[resid == np.inf] = 0
    resid[resid == -np.inf] = 0
    left = resid.copy()
    # the evidence of "no fringes" (BayesicFitting's Fitter on a constant: unweighted chi^2)
    chisq0 = float(np.sum(np.square(resid - 1.0)))
    best_evidence = rf._log10_evidence(chisq0, float(np.sum(weights)), 0, None, EVIDENCE_LIMITS, EVIDENCE_NOISE)
    robust = ffreq > 1.5
    held: dict[int, float] = {}
    fit = None
    found: list[float] = []
    for n in range(int(max_sines)):
        weights *= good
        use = weights > 1e-05
        power = LombScargle(x[use][::-1], left[use][::-1]).power(1 / periods)
        freq = 1.0 / periods[np.argmax(power)]
        held[3 * n] = freq
        evidence, model = _sines_evidence(resid, weights, x, held, robust)
        if not evidence - best_evidence > 1:
            break
        best_evidence = evidence
        found.append(freq)
        fit = model(model.p)
        left = resid.copy() - fit
    if not found:
        raise rf.FringeFitError(f"no fringe found for frequency {ffreq}")
    cm = (1 / np.asarray(found)) * factor
    return fit, nweighted, len(found), cm[0], np.amin(cm), np.amax(cm)


def runaway_flags(fit, max_amp):
    """jwst's check_res_fringes: the fit zeroed over each beat where its envelopes' amplitude exceeds
    ``max_amp``; returns (fit, flags: 1 where zeroed)."""
    return rf.runaway_beats(fit, max_amp)


def der_snr(flux) -> float:
    """DER_SNR of the in-slice pixels of a column (0 when the noise estimate is 0)."""
    n = flux.shape[0]
    signal = np.nanmean(flux)
    noise = DER_SNR * np.nanmedian(np.abs(2.0 * flux[2:n - 2] - flux[0:n - 4] - flux[4:n]))
    return signal / noise if noise != 0 else 0.0


# ----------------------------------------------------------------------------------------------
# the image


def _slice_columns(plane, number):
    """Columns of slice ``number`` as jwst loops over them (from the column before the slice's
    first to its last) and its mask."""
    mask = plane == number
    per_col = mask.sum(axis=0)
    change = np.flatnonzero(per_col[:-1] != per_col[1:])
    return range(int(change.min()), int(change.max()) + 1), mask


def _column_weights(data) -> np.ndarray:
    """Each column divided by its mean (0 where that is not finite); column by column, so that each
    mean is summed in jwst's order."""
    w = np.zeros(data.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for c in range(data.shape[1]):
            w[:, c] = data[:, c] / np.nanmean(data[:, c])
    w[w == np.inf] = 0
    w[np.isnan(w)] = 0
    return w


class _Diagnostics:
    """What save_intermediate_results writes (jwst's tables and FIT_RESULTS)."""

    def __init__(self, shape):
        self.rfc_factors = np.zeros(shape)
        self.fit_mask = np.zeros(shape)
        self.weights_feat = None
        self.weighted_pix_num = np.zeros(shape)
        self.background_fit = np.zeros(shape)
        self.knot_locations = np.full(shape, np.nan)
        self.out_rows: list[tuple] = []


def _fit_column(col_data, col_wmap, col_weight, col_snr, max_amp_tab, row, channel):
    """One column: None when it is not fitted, else (corrected data, factors, feature weights,
    weighted pixels, continuum, knot indices, table rows)."""
    ffreq, dffreq, max_nfringes, min_snr, pgram_res = row
    valid = (col_wmap > 0) & ~np.isnan(col_wmap)
    if np.count_nonzero(valid) <= MIN_PIXELS:
        return None
    test_flux = col_data[valid]
    test_flux[test_flux < 0] = _TINY
    with np.errstate(divide="ignore", invalid="ignore"):
        col_wnum = 10000.0 / col_wmap
    snr2 = der_snr(test_flux)
    if snr2 < min_snr[0]:
        return None
    max_amp = np.interp(col_wmap, max_amp_tab[0], max_amp_tab[1]) * 2
    good = np.where(col_snr > COLUMN_SNR, 1, 0)
    col_data = col_data.copy()
    col_weight = col_weight.copy()
    idx = np.where(col_data > 0)
    col_data[col_data <= 0] = _TINY
    col_weight[col_weight <= 0] = _TINY
    bad = ~np.isfinite(col_wnum)
    if bad.any():
        col_wnum = rf._fill_wavenumbers(col_wnum, bad)
    npix = col_data.shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        mod = np.abs(col_data / lower_envelope(np.arange(npix), col_data)) - 1
        weights_feat = col_weight * feature_weights(mod * good, max_amp)
        if channel in (3, 4):
            csum = np.cumsum(np.insert(col_data, 0, 0))
            smooth = (csum[SMOOTH_WINDOW:] - csum[:-SMOOTH_WINDOW]) / float(SMOOTH_WINDOW)
            mod = np.abs(col_data / lower_envelope(np.arange(npix), smooth)) - 1
            weights_feat *= feature_weights(mod, max_amp)
    proc = col_data.copy()
    factors = np.ones(npix)
    bg_fit = col_data.copy()
    wpix = 1024
    nonzero = np.flatnonzero(weights_feat != 0.0)
    gaps = np.diff(nonzero)
    if weights_feat[0] != 0 and gaps[0] > 1:
        weights_feat[0] = _TINY
    if weights_feat[-1] != 0 and gaps[-1] > 1:
        weights_feat[-1] = _TINY
    weights_feat[weights_feat <= 0.003] = _TINY
    in_use = (col_weight > 1e-07)
    rows = []
    try:
        done = None
        for fn, ff in enumerate(ffreq):
            if ff <= 1e-03 or snr2 <= min_snr[fn]:
                continue
            bg_fit, knots = background(proc, weights_feat, col_wnum, ffreq[fn], channel)
            resid = np.divide(proc, bg_fit, out=np.zeros_like(proc), where=bg_fit != 0)
            np.subtract(resid, 1, out=resid, where=resid != 0)
            resid *= np.where(in_use, 1, 1e-08)
            fit, wpix, nsines, peak, fmin, fmax = fit_fringes(resid, weights_feat, col_wnum, ffreq[fn], dffreq[fn],
                                                              max_nfringes[fn], pgram_res[fn], good)
            fit, _ = runaway_flags(fit, max_amp)
            step_factors = 1 / (fit * (col_weight > 1e-05).astype(int) + 1)
            proc *= step_factors
            factors *= step_factors
            proc = np.nan_to_num(proc, posinf=_TINY, neginf=_TINY)
            proc[proc < 0] = _TINY
            done = (fn, nsines, peak, fmin, fmax)
            rows.append((fn, snr2, pgram_res[fn], nsines, peak, fmin, fmax))
        if done is None:  # jwst fails on the undefined fit results: the column is left as it was
            return None
        # jwst fits the continuum once more for its out table; a failure there drops the column too
        background(proc.copy(), weights_feat, col_wnum, ffreq[0], channel)
        rows.append((done[0], snr2, pgram_res[0], *done[1:]))
    except Exception as err:  # noqa: BLE001 - jwst leaves any column it cannot fit as it was
        log.debug("column not fitted: %s", err)
        return None
    return idx, proc, factors, weights_feat, wpix, bg_fit, knots, rows


def correct_residual_fringes(model, fringefreq, regions, ignore_regions=(), diagnostics: _Diagnostics | None = None):
    """Correct an MRS cal image in place for residual fringes; returns the number of columns corrected."""
    band = (model.meta.instrument.band or "").lower()
    table = {"short": fringefreq.rfc_freq_short_table, "medium": fringefreq.rfc_freq_medium_table}.get(
        band, fringefreq.rfc_freq_long_table)
    fname = getattr(fringefreq.meta, "filename", None) or "<in memory>"
    if table is None or fringefreq.max_amp_table is None:
        raise ReferenceFileError("fringefreq", fname, "lacks its RFC_FREQ or MAX_AMP table")
    names = {n.lower(): n for n in table.dtype.names}
    amp_names = {n.lower(): n for n in fringefreq.max_amp_table.dtype.names}
    need = ("slice", "ffreq", "dffreq", "max_nfringes", "min_snr", "pgram_res")
    if any(k not in names for k in need) or any(k not in amp_names for k in ("wavelength", "amplitude")):
        raise ReferenceFileError("fringefreq", fname, "lacks columns of its RFC_FREQ or MAX_AMP tables")
    max_amp = (np.asarray(fringefreq.max_amp_table[amp_names["wavelength"]]),
               np.asarray(fringefreq.max_amp_table[amp_names["amplitude"]]))
    planes = np.asarray(regions.regions)
    level = int(TRANSMISSION_LEVEL / 10)
    plane = planes[level - 1] if planes.ndim == 3 else planes
    if plane.shape != model.data.shape:
        raise ReferenceFileError("regions", getattr(regions.meta, "filename", None) or "<in memory>",
                                 f"is {plane.shape}; the exposure is {model.data.shape}")
    detector = (model.meta.instrument.detector or "").lower()
    channels = [1, 2] if "short" in detector else [3, 4]

    data = model.data
    masked = (np.bitwise_and(model.dq, dqflags.DO_NOT_USE).astype(bool)) | ~np.isfinite(data)
    out = data.copy()
    out[masked] = 0
    norm = np.median(data[data > 0])
    out /= norm
    weights = _column_weights(data)
    ny, nx = data.shape
    yy, xx = np.mgrid[:ny, :nx]
    wave = model.meta.wcs(xx, yy)[2]
    del yy, xx
    for lo, hi in ignore_regions:
        weights[(wave > lo) & (wave < hi)] = 0
    if diagnostics is not None:
        diagnostics.weights_feat = weights.copy()
    corrected = 0
    slice_col = table[names["slice"]]
    for ch in channels:
        numbers = [s for s in np.unique(plane) if 100 * ch <= s < 100 * (ch + 1)]
        if not numbers:  # jwst fails there too
            raise ReferenceFileError("regions", getattr(regions.meta, "filename", None) or "<in memory>",
                                     f"has no slice of channel {ch} in its {TRANSMISSION_LEVEL} % throughput plane")
        log.info("Processing channel %d (%d slices)", ch, len(numbers))
        n_ch = 0
        for number in numbers:
            cols, mask = _slice_columns(plane, number)
            hit = np.flatnonzero(slice_col == float(number))
            if hit.size == 0:
                raise ReferenceFileError("fringefreq", fname, f"has no row for slice {number}")
            r = table[hit[0]]
            row = tuple(np.atleast_1d(r[names[k]]) for k in ("ffreq", "dffreq", "max_nfringes", "min_snr", "pgram_res"))
            for col in cols:
                # 0 off the slice (the wavelength NaN where the WCS has none), as jwst's slice masks make them
                m = mask[:, col].astype(np.float64)
                col_data = m * out[:, col]
                col_wmap = m * wave[:, col]
                col_weight = m * weights[:, col]
                col_snr = data[:, col] / model.err[:, col]
                res = _fit_column(col_data, col_wmap, col_weight, col_snr, max_amp, row, ch)
                if res is None:
                    continue
                idx, proc, factors, wfeat, wpix, bg_fit, knots, rows = res
                out[idx, col] = proc[idx]
                n_ch += 1
                if diagnostics is not None:
                    d = diagnostics
                    d.rfc_factors[idx, col] = factors[idx]
                    d.fit_mask[idx, col] = 1
                    d.weights_feat[idx, col] = wfeat[idx]
                    d.weighted_pix_num[idx, col] = wpix / 1024
                    d.background_fit[idx, col] = bg_fit[idx]
                    d.knot_locations[:knots.shape[0], col] = knots
                    d.out_rows += [(int(number), int(col), *row_) for row_ in rows]
        log.info("Number of columns corrected for channel %d: %d", ch, n_ch)
        corrected += n_ch
    out *= norm
    out[masked] = np.nan
    model.data = out
    return corrected


def _save_intermediate(model, d: _Diagnostics, params):
    from pathlib import Path

    from astropy.io import fits
    from astropy.table import Table

    from ..models.io import primary_header

    root = Path(model.meta.filename or "residual_fringe").name
    for s in ("_residual_fringe", "_photom", "_cal", "_rate"):
        root = root.replace(f"{s}.fits", ".fits")
    stem = root[:-5] if root.endswith(".fits") else root
    folder = Path(params.output_dir or ".")
    folder.mkdir(parents=True, exist_ok=True)
    stat = Table(names=("Slice", "mean", "median", "stddev", "max", "pmean", "pmedian", "pstddev", "pmax"),
                 dtype=("i4", "f8", "f8", "f8", "f8", "f8", "f8", "f8", "f8"))
    out = Table(rows=d.out_rows or None,
                names=("Slice", "col", "fringe", "sn", "periodogram_res", "opt_fringes", "peak_freq", "freq_min",
                       "freq_max"), dtype=("i4", "i4", "i4", "f8", "f8", "f8", "f8", "f8", "f8"))
    stat.write(folder / f"{stem}_stat_table.ecsv", format="ascii.ecsv", overwrite=True)
    out.write(folder / f"{stem}_out_table.ecsv", format="ascii.ecsv", overwrite=True)
    hdus = [fits.PrimaryHDU(header=primary_header(model))]
    for arr, name in ((d.rfc_factors, "RFC_FACTORS"), (d.fit_mask, "FIT_MASK"), (d.weights_feat, "WEIGHTS_FEATURES"),
                      (d.weighted_pix_num, "WEIGHTED_PIXEL_FRACTION"), (d.background_fit, "BACKGROUND_FIT"),
                      (d.knot_locations, "KNOT_LOCATIONS")):
        hdus.append(fits.ImageHDU(arr, name=name))
    fits.HDUList(hdus).writeto(folder / f"{stem}_fit_results.fits", overwrite=True)


@step(
    "residual_fringe",
    "ResidualFringeStep",
    params=ResidualFringeParams,
    reftypes=("fringefreq", "regions"),
    suffix="residual_fringe",
    input_class="IFUImageModel",
)
def residual_fringe(model, refs, params: ResidualFringeParams):
    """Fit and divide out the residual fringes of a MIRI MRS cal image, column by column."""
    from .. import models

    exp_type = (model.meta.exposure.type or "").upper()
    if not isinstance(model, models.IFUImageModel):
        raise InputFileError(model.meta.filename or "<in memory>",
                             f"is {type(model).__name__}; residual_fringe takes an MRS IFUImageModel")
    if exp_type != "MIR_MRS":
        log.warning("Residual fringe correction is only for MIRI MRS data (input is %s); skipped", exp_type or "?")
        return model, "SKIPPED"
    if model.meta.cal_step.fringe != "COMPLETE":
        raise InputFileError(model.meta.filename or "<in memory>",
                             "has not been through the fringe flat (fringe step): residual_fringe needs it first")
    ignore = list(zip(params.ignore_region_min or [], params.ignore_region_max or []))
    if ignore:
        log.info("Ignoring %d wavelength regions", len(ignore))
    diag = _Diagnostics(model.data.shape) if params.save_intermediate_results else None
    n = correct_residual_fringes(model, refs["fringefreq"], refs["regions"], ignore, diag)
    log.info("Residual fringe correction: %d columns corrected", n)
    if diag is not None:
        _save_intermediate(model, diag, params)
    return model
