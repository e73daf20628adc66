"""adaptive_trace_model: a spline model of the spectral trace, optionally oversampling (jwst's AdaptiveTraceModelStep).

Skipped by default, as in jwst.  For each spectral region of a 2-D spectrum (the slit of a MIRI
LRS or NIRSpec SlitModel, each slit of a MultiSlitModel, each slice of a MIRI MRS IFU image), the
data are oriented with the dispersion along the columns of the work frame (MIRI is rotated by 90
degrees, as jwst does) and:

1. the region is collapsed along wavelength into a cross-dispersion profile binned at half the
   native spatial pixel (medians of flux, error and S/N); edges whose S/N is low and error high
   are cut; a region whose peak S/N (slits) or peak flux (MRS: per channel, mean + fit_threshold *
   rms) stays below ``fit_threshold`` is not fitted;
2. the data are normalised by the column sums, and in each dispersion column a cubic B-spline is
   fitted (least squares, iterative sigma rejection) to the spatial coordinate (alpha) of the
   pixels of a window of neighbouring columns; the spline is scaled to the column by a weighted
   mean ratio;
3. the compact-source decision: alpha values where the normalised spline's slope exceeds
   ``slope_limit`` are histogrammed; their peaks, padded by a few native pixels, are the
   compact-source locations, where the spline model is used.

``trace_model`` (extension TRACEMODEL) holds the spline model evaluated at the compact-source
pixels (NaN elsewhere).  With ``oversample`` > 1 the spatial axis is oversampled: the flux is the
linear interpolation, replaced by the spline model (plus the interpolated residual unless
``psf_optimal``) at compact sources; ERR and the variances are interpolated and inflated for
the covariance (0.23 N + 0.77); DQ, the region map and WAVELENGTH come from the nearest original
pixel and the WCS; the WCS gets a leading ``coordinates`` frame mapping the new pixels to the old;
the pixel area shrinks by the factor; arrays that no longer apply (area, pathloss, flat, photom,
barshadow) are dropped.  ``psf_optimal`` fits every region and uses the splines everywhere.

Supported as in jwst 3.0: MIRI LRS (fixed slit; slitless time series fitted on the median image,
without oversampling), MIRI MRS IFU images, NIRSpec fixed-slit / MOS / BOTS slits.  Not here: the
NIRSpec IFU (its slice WCS), ``save_intermediate_results`` and ``maximum_cores`` other than
'none' (refused with a parameter error).  Models of another kind are left as they are with
S_TRCMOD = FAILED, as jwst does.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from ..errors import ParameterError
from ..models import dqflags
from .base import StepParams, step

log = logging.getLogger("webbflow.steps.adaptive_trace_model")

_ERROR_ARRAYS = ("err", "var_rnoise", "var_poisson", "var_flat")
_DROPPED = ("area", "barshadow", "flatfield_point", "flatfield_uniform", "pathloss_point", "pathloss_uniform",
            "photom_point", "photom_uniform", "zeroframe")


class AdaptiveTraceModelParams(StepParams):
    skip: bool = True  # jwst runs this step only when asked
    fit_threshold: float = 10.0  # limiting sigma for fitting splines
    oversample: float = 1.0  # oversample the data by this factor with the trace model
    slope_limit: float = 0.1  # slope limit for using splines in oversample
    psf_optimal: bool = False  # model the target as a simple point source; ignore slope_limit and fit_threshold
    save_intermediate_results: bool = False  # save the full spline model and residuals (not implemented here)
    output_use_model: bool = True  # use the input file names in the output models
    maximum_cores: str = "none"  # cores for multiprocessing (only 'none' here)

    def model_post_init(self, _ctx) -> None:
        if self.save_intermediate_results:
            raise ParameterError("step adaptive_trace_model: save_intermediate_results is not implemented here")
        if str(self.maximum_cores).lower() not in ("none", "1"):
            raise ParameterError("step adaptive_trace_model: maximum_cores other than 'none' is not implemented here")
        if self.oversample < 1:
            raise ParameterError(f"step adaptive_trace_model: oversample must be >= 1 (got {self.oversample})")


# ---------------------------------------------------------------------------
# statistics and the 1-D spline fit


def _clipped_mean_std(values):
    """Mean and standard deviation after astropy's default sigma clipping (3 sigma about the median, 5 iterations)."""
    from astropy.stats import sigma_clipped_stats

    mean, _median, std = sigma_clipped_stats(values)
    return mean, std


def spline_fit(x, y, nbkpts, sig_low, sig_high, niter, space_ratio):
    """A cubic least-squares B-spline through (x, y) (x sorted), with iterative outlier rejection.

    None when the points are too unevenly spread for the knots (the tenth-largest gap exceeds
    ``space_ratio`` knot spacings) or no fit succeeds.
    """
    from scipy.interpolate import make_lsq_spline

    ok = np.isfinite(x) & np.isfinite(y)
    xu, yu = x[ok], y[ok]
    gaps = np.abs(np.diff(xu, prepend=0))
    g_mean, g_std = _clipped_mean_std(gaps)
    if np.isfinite(g_std):
        keep = gaps <= g_mean + 5 * g_std
        xu, yu = xu[keep], yu[keep]
    if np.partition(gaps, -10)[-10] > space_ratio * (np.max(xu) - np.min(xu)) / nbkpts:
        return None
    n0 = xu.size
    last = None
    for it in range(niter):
        dk = (np.max(xu) - np.min(xu)) / nbkpts
        inner = np.arange(np.min(xu) + dk / 2.0, np.max(xu) - dk / 2.0, dk)
        t = np.concatenate(([xu[0]] * 4, inner, [xu[-1]] * 4))
        try:
            spl = make_lsq_spline(xu, yu, t, k=3)
        except ValueError:
            return last
        model = spl(xu)
        if np.isnan(model).any():
            return last
        last = spl
        if it == niter - 1:
            break
        resid = yu - model
        rms = np.std(resid)
        rejected = (resid < -sig_low * rms) | (resid > sig_high * rms)
        kept = ~rejected
        if kept.sum() < 0.8 * n0:
            return last
        if not rejected.any():
            break
        xu, yu = xu[kept], yu[kept]
    return last


def _native_dalpha(alpha):
    return np.abs(np.nanmedian(np.diff(alpha, axis=0)))


def _scale_weights(ratio, fit):
    """Weights of the data/model ratios for the spline's scale: the model's flux, zero for bad or
    negative points and for ratios more than 2 sigma from the clipped mean of the 5 brightest."""
    w = fit.copy()
    w[~np.isfinite(ratio)] = 0
    w[(ratio < 0) | (fit < 0)] = 0
    top = (w >= w[np.argsort(w)[-5]]) & np.isfinite(ratio)
    mean, rms = _clipped_mean_std(ratio[top])
    w[np.abs(mean - ratio) > 2 * rms] = 0
    w /= np.nansum(w)
    return w


def fit_columns(flux, alpha, norm, *, lrange, col_index, space_ratio, sigma_low, sigma_high, fit_iter,
                require_ngood, spline_bkpt, auto_ngood_factor, auto_bkpt_factor) -> dict:
    """Per dispersion column (in ``col_index`` order): ``{col: (spline, scale, (alpha_lo, alpha_hi))}``.

    Each column's spline is fitted to the normalised data of the columns within ``lrange`` of it;
    a column whose fit fails takes the last good one.
    """
    if spline_bkpt is None or require_ngood is None:
        n_native = (np.nanmax(alpha) - np.nanmin(alpha)) / _native_dalpha(alpha)
        if spline_bkpt is None:
            spline_bkpt = int(auto_bkpt_factor * n_native)
        if require_ngood is None:
            require_ngood = int(auto_ngood_factor * n_native)
    nx = flux.shape[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        scaled = flux / norm
    finite_flux = np.isfinite(flux)
    finite_alpha = np.isfinite(alpha)
    ngood = np.sum(finite_flux & finite_alpha, axis=0)
    usable = np.isfinite(scaled) & finite_alpha
    saved = None
    out = {}
    for i in col_index:
        if ngood[i] <= require_ngood:
            continue
        lo, hi = max(i - lrange, 0), min(i + lrange, nx)
        sel = usable[:, lo:hi]
        la = alpha[:, lo:hi][sel]
        ld = scaled[:, lo:hi][sel]
        order = np.argsort(la)
        la, ld = la[order], ld[order]
        try:
            spl = spline_fit(la, ld, spline_bkpt, sigma_low, sigma_high, fit_iter, space_ratio)
            if spl is None and saved is None and spline_bkpt > 3:
                spl = spline_fit(la, ld, spline_bkpt - 3, sigma_low, sigma_high, fit_iter, space_ratio)
            if spl is None and saved is not None:
                current = saved
            else:
                current = None if spl is None else (spl, (np.nanmin(la), np.nanmax(la)))
        except (ValueError, RuntimeError) as exc:
            log.warning("Spline fit failed at column %d: %s", i, exc)
            current = saved
        if current is None:
            continue
        saved = current
        spl, (blo, bhi) = current
        ca = alpha[:, i]
        inb = np.isfinite(ca) & (ca >= blo) & (ca <= bhi)
        cfit = spl(ca[inb])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ratio = flux[inb, i] / cfit
            scale = np.nansum(ratio * _scale_weights(ratio, cfit))
        out[i] = (spl, scale, (blo, bhi))
    return out


# ---------------------------------------------------------------------------
# one region: profile, thresholds, edges, fit


def _profile(data, err, alpha):
    """The region collapsed along wavelength: (alpha bins, median flux, median error, median S/N), half-pixel bins."""
    valid = np.isfinite(data) & np.isfinite(err) & np.isfinite(alpha) & (err > 0)
    if not valid.any():
        return None, None, None, None
    step_ = _native_dalpha(alpha) / 2.0
    bins = np.arange(np.nanmin(alpha), np.nanmax(alpha), step_)
    a, d, e = alpha[valid], data[valid], err[valid]
    s = d / e
    fx, ex, sx = (np.full_like(bins, np.nan) for _ in range(3))
    order = np.argsort(a)
    a, d, e, s = a[order], d[order], e[order], s[order]
    # the pixels of bin k: bins[k] - step/2 <= alpha < bins[k] + step/2
    lo = np.searchsorted(a, bins - step_ / 2.0, side="left")
    hi = np.searchsorted(a, bins + step_ / 2.0, side="left")
    for k in np.nonzero(hi > lo)[0]:
        fx[k] = np.median(d[lo[k]:hi[k]])
        ex[k] = np.median(e[lo[k]:hi[k]])
        sx[k] = np.median(s[lo[k]:hi[k]])
    return bins, fx, ex, sx


def _cut_edges(data, alpha, ax, ex, sx) -> None:
    """NaN out the slit/slice edges where the collapsed S/N is low (< 5) and the error high (> mean + 5 rms)."""
    ok = np.isfinite(sx)
    if not ok.any():
        return
    e_mean, e_rms = _clipped_mean_std(ex[ok])
    bad = (np.abs(sx) < 5) & (ex > e_mean + 5 * e_rms)
    if not bad.any() or bad.all():
        return
    ba = ax[bad]
    if (ba < 0).any():
        data[alpha <= np.max(ba[ba < 0])] = np.nan
    if (ba > 0).any():
        data[alpha >= np.min(ba[ba > 0])] = np.nan


def _over_threshold(fx, sx, reg, peak_threshold, snr_threshold) -> bool:
    if peak_threshold is None and snr_threshold is None:
        return True
    peak = peak_threshold is not None and fx is not None and np.nanmax(fx) > peak_threshold[reg]
    snr = snr_threshold is not None and sx is not None and np.nanmax(sx) > snr_threshold
    return bool(peak or snr)


def fit_region(flux, err, alpha, region_map, reg, peak_threshold=None, snr_threshold=None, **kw) -> dict:
    """The column splines of one region (``{}`` when its signal is below the threshold)."""
    inside = region_map == reg
    data = np.full_like(flux, np.nan)
    e = np.full_like(flux, np.nan)
    a = np.full_like(flux, np.nan)
    data[inside], e[inside], a[inside] = flux[inside], err[inside], alpha[inside]
    ax, fx, ex, sx = _profile(data, e, a)
    if not _over_threshold(fx, sx, reg, peak_threshold, snr_threshold):
        return {}
    if ax is not None:
        _cut_edges(data, a, ax, ex, sx)
        ax, fx, ex, sx = _profile(data, e, a)
        if not _over_threshold(fx, sx, reg, peak_threshold, snr_threshold):
            return {}
    if sx is not None and np.nanmin(sx) < -5.0:  # negative nods present: normalise by the positive data only
        norm = np.sum(data, where=(data > 0), axis=0)
    else:
        norm = np.nansum(data, axis=0)
    return fit_columns(data, a, norm, **kw)


# ---------------------------------------------------------------------------
# compact sources, trace image, oversampling


def _peaks(values, height):
    """Indices of the local maxima of ``values`` at least ``height`` high; a flat top counts once, at
    its middle (rounded down), and the ends are never peaks (as scipy.signal.find_peaks)."""
    out = []
    n = len(values)
    i = 1
    while i < n - 1:
        if values[i - 1] < values[i]:
            j = i + 1
            while j < n - 1 and values[j] == values[i]:
                j += 1
            if values[j] < values[i]:
                mid = (i + j - 1) // 2
                if values[mid] >= height:
                    out.append(mid)
                i = j
                continue
        i += 1
    return np.array(out, dtype=int)


def _compact(alpha_region, alpha_steep, dalpha, nbkpt, pad, require_npt=50):
    """Pixels near the peaks of the histogram of steep-slope alpha values (compact sources)."""
    out = np.zeros(alpha_region.shape, dtype=bool)
    if len(alpha_steep) < require_npt or nbkpt is None:
        return out
    half = dalpha * nbkpt / 4
    centres = np.arange(nbkpt) * dalpha / 2 - half
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        hist, _ = np.histogram(alpha_steep, bins=nbkpt, range=(-half, half), density=True)
        hist = hist / np.nanmax(hist)
    for c in centres[_peaks(hist, 0.2)]:
        out |= (alpha_region > c - pad * dalpha) & (alpha_region <= c + pad * dalpha)
    return out


def _nbkpt(spl) -> int:
    return len(np.unique(spl.t)) - 1


def trace_image(shape, splines, region_map, alpha, slope_limit=0.1, pad=3):
    """(trace at compact sources, trace everywhere): the scaled splines evaluated at each pixel."""
    used = np.full(shape, np.nan, dtype=np.float32)
    full = np.full(shape, np.nan, dtype=np.float32)
    a_reg = np.full(shape, np.nan, dtype=np.float32)
    t_reg = np.full(shape, np.nan, dtype=np.float32)
    nbkpt = None
    for reg, cols in splines.items():
        a_reg[:] = np.nan
        t_reg[:] = np.nan
        inside = region_map == reg
        a_reg[inside] = alpha[inside]
        steep = []
        for i in range(shape[-1]):
            if i not in cols:
                continue
            spl, scale, (blo, bhi) = cols[i]
            ca = a_reg[:, i]
            ok = np.isfinite(ca) & (ca >= blo) & (ca <= bhi)
            fit = spl(ca[ok])
            fit[0] = np.nan
            fit[-1] = np.nan
            t_reg[:, i][ok] = scale * fit
            slope = np.abs(np.diff(fit, prepend=0))
            slope[0] = 0
            slope[-1] = 0
            steep.append(ca[ok][slope > slope_limit])
            if nbkpt is None:
                nbkpt = _nbkpt(spl)
        full[inside] = t_reg[inside]
        if slope_limit <= 0:
            used[inside] = t_reg[inside]
        else:
            steep = np.concatenate(steep) if steep else []
            where = _compact(a_reg, steep, _native_dalpha(a_reg), nbkpt, pad)
            used[where] = t_reg[where]
    return used, full


def _new_rows(lo, hi, factor):
    """Oversampled row indices for original rows lo..hi, and their positions on the original grid."""
    new = np.arange(lo * factor, (hi + 1) * factor, dtype=np.int32)
    return new, new / factor - (factor - 1) / (factor * 2)


def _interp_column(y, f, y_new, edge=0, keep_nan=True):
    ok = np.isfinite(y) & np.isfinite(f)
    out = np.interp(y_new, y[ok], f[ok])
    if edge >= 1:
        out[:edge] = np.nan
        out[-edge:] = np.nan
    if keep_nan:
        out[~np.isfinite(f[np.round(y_new).astype(int)])] = np.nan
    return out


def linear_oversample(data, region_map, factor, require_ngood, edge=0, keep_nan=True):
    """Each region's columns linearly interpolated onto the oversampled rows."""
    ny, nx = data.shape
    rows = np.broadcast_to(np.arange(ny)[:, None], (ny, nx))
    out = np.full((int(np.ceil(ny * factor)), nx), np.nan, dtype=np.float32)
    d_reg = np.full_like(data, np.nan)
    y_reg = np.full_like(data, np.nan)
    for reg in np.unique(region_map[region_map > 0]):
        d_reg[:] = np.nan
        y_reg[:] = np.nan
        inside = region_map == reg
        d_reg[inside] = data[inside]
        y_reg[inside] = rows[inside]
        counts = np.sum(np.isfinite(d_reg), axis=0)
        for i in np.nonzero(counts > require_ngood)[0]:
            cy = y_reg[:, i]
            yy = cy[np.isfinite(cy)]
            new, old = _new_rows(int(yy.min()), int(yy.max()), factor)
            out[new, i] = _interp_column(cy, d_reg[:, i], old, edge, keep_nan)
    return out


def oversample_flux(flux, alpha, region_map, splines, factor, alpha_os, require_ngood=10, slope_limit=0.1,
                    psf_optimal=False, trim_ends=False, pad=3):
    """(oversampled flux, spline used, spline everywhere, linear interpolation, interpolated residual)."""
    ny, nx = flux.shape
    rows = np.broadcast_to(np.arange(ny)[:, None], (ny, nx))
    os_shape = (int(np.ceil(ny * factor)), nx)
    linear = np.full(os_shape, np.nan)
    spline_full = np.full(os_shape, np.nan)
    spline_used = np.full(os_shape, np.nan)
    residual = np.full(os_shape, np.nan)
    d_reg = np.full_like(flux, np.nan)
    a_reg = np.full_like(flux, np.nan)
    y_reg = np.full_like(flux, np.nan)
    a_os_reg = np.full(os_shape, np.nan)
    edge = int(factor)
    nbkpt = None
    for reg in np.unique(region_map[region_map > 0]):
        for arr in (d_reg, y_reg, a_reg, a_os_reg):
            arr[:] = np.nan
        inside = region_map == reg
        d_reg[inside], a_reg[inside], y_reg[inside] = flux[inside], alpha[inside], rows[inside]
        steep = []
        counts = np.sum(np.isfinite(d_reg), axis=0)
        cols = splines.get(reg, {})
        for i in np.nonzero(counts > require_ngood)[0]:
            cy, ca, cf = y_reg[:, i], a_reg[:, i], d_reg[:, i]
            yy = cy[np.isfinite(cy)]
            new, old = _new_rows(int(yy.min()), int(yy.max()), factor)
            linear[new, i] = _interp_column(cy, cf, old, edge)
            if i not in cols:
                continue
            spl, scale, (blo, bhi) = cols[i]
            if nbkpt is None:
                nbkpt = _nbkpt(spl)
            ok = np.isfinite(ca) & (ca >= blo) & (ca <= bhi)
            fit = spl(ca[ok])
            res = (cf[ok] - fit * scale).astype(np.float32)
            yi = cy[ok]
            good = np.isfinite(yi) & np.isfinite(res)
            r = np.interp(old, yi[good], res[good])
            if edge >= 1:
                r[:edge] = np.nan
                r[-edge:] = np.nan
            residual[new, i] = r
            slope = np.abs(np.diff(fit, prepend=0))
            if edge >= 1:
                slope[:edge] = 0
                slope[-edge:] = 0
            steep.append(ca[ok][slope > slope_limit])
            a_new = alpha_os[new, i]
            inb = (a_new >= blo) & (a_new <= bhi)
            a_os_reg[new[inb], i] = a_new[inb]
            ev = spl(a_new[inb]) * scale
            if trim_ends and edge >= 1:
                ev[:edge] = np.nan
                ev[-edge:] = np.nan
            spline_full[new[inb], i] = ev
        if slope_limit <= 0:
            spline_used = spline_full
        else:
            steep = np.concatenate(steep) if steep else []
            where = _compact(a_os_reg, steep, _native_dalpha(a_reg), nbkpt, pad)
            spline_used[where] = spline_full[where]
    out = linear.copy()
    take = np.isfinite(spline_used)
    out[take] = spline_used[take]
    if not psf_optimal:
        add = take & np.isfinite(residual)
        out[add] += residual[add]
    return out, spline_used, spline_full, linear, residual


# ---------------------------------------------------------------------------
# mode settings and coordinates


def _fit_settings(mode, detector, grating, nx) -> dict:
    """jwst 3.0's empirical spline settings per mode (window, knots, clipping, column order)."""
    kw = dict(sigma_low=2.5, sigma_high=2.5, fit_iter=3, spline_bkpt=None, require_ngood=None,
              auto_bkpt_factor=None, auto_ngood_factor=None)
    if detector.startswith("NRS"):
        kw.update(lrange=50, space_ratio=1.6, auto_bkpt_factor=2.0, auto_ngood_factor=0.5)
        if str(grating).upper() == "PRISM":  # fast change with wavelength, strong PSF structure
            kw.update(lrange=10, auto_bkpt_factor=1.0, auto_ngood_factor=0.25)
        # start where the trace's tilt to the pixels is largest
        kw["col_index"] = range(0, nx) if detector == "NRS1" else range(nx - 1, -1, -1)
    elif detector.startswith("MIR"):
        kw.update(require_ngood=8, space_ratio=1.2)
        if mode == "MIR_MRS":
            kw.update(lrange=50, spline_bkpt=36,
                      col_index=np.concatenate([np.arange(0, nx // 2 + 1), np.arange(nx - 1, nx // 2, -1)]))
        else:
            kw.update(lrange=5, sigma_low=3.0, sigma_high=3.0, col_index=range(nx - 1, -1, -1),
                      **({"fit_iter": 2, "spline_bkpt": 60} if mode == "MIR_LRS_SLITLESS" else {"spline_bkpt": 40}))
    else:
        raise ValueError(f"adaptive_trace_model: detector {detector} is not supported")
    return kw


def _bbox_grid(wcs):
    from gwcs.wcstools import grid_from_bounding_box

    return grid_from_bounding_box(wcs.bounding_box)


def _alpha_of(mode, model, ny, nx):
    """(alpha on the detector pixels, region map) of a slit or MRS image."""
    wcs = model.meta.wcs
    if mode == "MIR_MRS":
        x, y = np.meshgrid(np.arange(nx), np.arange(ny))
        det2ab = wcs.get_transform("detector", "alpha_beta")
        alpha = det2ab(x, y)[0]
        return alpha, np.array(det2ab.label_mapper.mapper, copy=True)
    x, y = _bbox_grid(wcs)
    if mode.startswith("NRS"):
        alpha_bb = -wcs.transform("detector", "slit_frame", x, y)[1]  # flipped: increasing with y
    else:
        alpha_bb = wcs.transform("detector", "alpha_beta", x, y)[0]
    alpha = np.full((ny, nx), np.nan)
    alpha[y.astype(int), x.astype(int)] = alpha_bb
    region = np.zeros((ny, nx), dtype=np.int32)
    region[np.isfinite(alpha)] = 1
    return alpha, region


def _mode_of(model, exp_type, detector) -> str:
    from ..models import IFUImageModel

    if detector.startswith("NRS"):
        if isinstance(model, IFUImageModel):
            raise ValueError("the NIRSpec IFU is not supported by adaptive_trace_model here")
        return "NRS_MOS" if exp_type == "NRS_MSASPEC" else "NRS_SLIT"
    if detector.startswith("MIR"):
        if isinstance(model, IFUImageModel):
            return "MIR_MRS"
        if exp_type == "MIR_WFSS":
            raise ValueError("MIRI WFSS is not supported")
        return "MIR_LRS_SLITLESS" if exp_type == "MIR_LRS-SLITLESS" else "MIR_LRS_SLIT"
    raise ValueError(f"detector {detector} is not supported")


def _is_flux_density(bunit) -> bool:
    import astropy.units as u

    try:
        return u.Unit(bunit).is_equivalent(u.Jy)
    except (ValueError, TypeError):
        return False


def _coordinates_wcs(wcs, pixel_map):
    """The WCS with a leading ``coordinates`` frame (oversampled pixels -> original detector pixels)."""
    import gwcs
    from gwcs import coordinate_frames as cf

    pixel_map.name = "coord2det"
    pixel_map.inputs = ("x", "y")
    pixel_map.outputs = ("x", "y")
    frame = cf.Frame2D(name="coordinates", axes_order=(0, 1))
    new = gwcs.WCS([(frame, pixel_map), *wcs.pipeline])
    bbox = wcs.bounding_box
    if bbox is not None:
        bbox[0], bbox[1] = pixel_map.inverse(bbox[0], bbox[1])
        new.bounding_box = (bbox[0], bbox[1])
    return new


# ---------------------------------------------------------------------------
# one slit or image


def fit_and_oversample(model, fit_threshold=10.0, slope_limit=0.1, psf_optimal=False, oversample=1.0,
                       meta_model=None):
    """Attach the trace model to ``model`` (a SlitModel, a slit of a MultiSlitModel or an MRS
    IFUImageModel), oversampling it when ``oversample`` > 1; ``model`` is updated in place."""
    from astropy.modeling.models import Identity, Scale, Shift

    from ..models import IFUImageModel

    if psf_optimal:
        log.info("psf_optimal: fit threshold and slope limit ignored")
        fit_threshold, slope_limit = 0, 0
    meta = (meta_model or model).meta
    detector = str(meta.instrument.detector).upper()
    exp_type = str(meta.exposure.type).upper()
    grating = str(getattr(meta.instrument, "grating", None) or "NONE").upper()
    mode = _mode_of(model, exp_type, detector)
    if model.data.ndim == 3:
        nint, ny, nx = model.data.shape
    else:
        nint, (ny, nx) = 1, model.data.shape
    alpha, region = _alpha_of(mode, model, ny, nx)
    rotate = detector.startswith("MIR")
    if nint > 1:
        if oversample != 1:
            raise ValueError("oversampling is not supported for time series (multi-integration) data")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            flux, err = np.nanmedian(model.data, axis=0), np.nanmedian(model.err, axis=0)
    else:
        flux, err = model.data, model.err
    if rotate:  # the dispersion along the work frame's columns
        nx, ny = ny, nx
        flux, err, alpha, region = (np.rot90(a) for a in (flux, err, alpha, region))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mean, rms = _clipped_mean_std(flux[region > 0])
    mean = mean if np.isfinite(mean) else 0
    rms = rms if np.isfinite(rms) else 0
    offset = None
    if mean < 0:  # a negative median level upsets the fits: work above zero, restore it after
        offset = mean
        flux = flux - mean
        mean = 0
    regions = np.unique(region[region > 0])
    peak_threshold = None
    if fit_threshold <= 0:
        fit_threshold = None
    elif mode == "MIR_MRS":  # a threshold per channel (channel 4's sky is much brighter)
        peak_threshold = dict.fromkeys(regions, np.nan)
        for ch in (100, 200, 300, 400):
            in_ch = (region >= ch) & (region < ch + 100)
            if not in_ch.any():
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                c_mean, c_rms = _clipped_mean_std(flux[in_ch])
            for r in regions:
                if ch <= r < ch + 100:
                    peak_threshold[r] = c_mean + fit_threshold * c_rms
    kw = _fit_settings(mode, detector, grating, nx)
    if peak_threshold is not None:
        kw["peak_threshold"] = peak_threshold
    else:
        kw["snr_threshold"] = fit_threshold
    splines = {}
    for r in regions:
        if len(regions) > 1:
            log.info("Fitting slice %s", r)
        splines[r] = fit_region(flux, err, alpha, region, r, **kw)
    pad = 3 if detector.startswith("MIR") else 1
    if oversample == 1:
        used, _full = trace_image(flux.shape, splines, region, alpha, slope_limit=slope_limit, pad=pad)
        if rotate:
            used = np.rot90(used, k=-1)
        if offset is not None:
            used += offset
        model.trace_model = used
        return model

    # oversampling along the spatial axis (rows of the work frame)
    os_shape = (int(np.ceil(ny * oversample)), nx)
    _new, old = _new_rows(0, ny - 1, oversample)
    y_os = np.broadcast_to(old[:, None], os_shape).astype(float)
    x_os = np.broadcast_to(np.arange(nx)[None, :], os_shape).astype(float)
    wcs = model.meta.wcs
    if mode.startswith("NRS"):
        _x, a_os, w_os = wcs.transform("detector", "slit_frame", x_os, y_os)
        a_os = -a_os
        w_os = w_os * 1e6
    else:  # rotated: back to detector pixels
        det2ab = wcs.get_transform("detector", "alpha_beta")
        a_os = det2ab(ny - y_os - 1, x_os)[0]
        w_os = wcs(ny - y_os - 1, x_os)[2]
    flux_os, used, _full, linear, residual = oversample_flux(
        flux, alpha, region, splines, oversample, a_os, require_ngood=3, slope_limit=slope_limit,
        psf_optimal=psf_optimal, trim_ends=detector.startswith("NRS"), pad=pad)

    errors = {}
    for name in _ERROR_ARRAYS:
        if model.has(name):
            e = getattr(model, name)
            e = np.rot90(e) if rotate else e
            errors[name] = np.sqrt(e) if name.startswith("var") else e
    dq = np.rot90(model.dq) if rotate else model.dq
    near = (np.round(y_os).astype(int), np.round(x_os).astype(int))
    dq_os = dq[near]
    region_os = region[near]
    estimated = ~np.isnan(flux_os) & ((dq_os & dqflags.DO_NOT_USE) > 0)
    dq_os[estimated] ^= np.uint32(dqflags.DO_NOT_USE)
    dq_os[estimated] |= np.uint32(dqflags.FLUX_ESTIMATED)
    inflate = 0.23 * oversample + 0.77
    errors_os = {}
    for name, e in errors.items():
        e_os = linear_oversample(e, region, oversample, 3, edge=0, keep_nan=False)
        e_os[~np.isfinite(e[near]) & ~estimated] = np.nan
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "overflow encountered", RuntimeWarning)
            if name.startswith("var"):
                e_os = e_os**2 * inflate**2
            else:
                e_os *= inflate
        errors_os[name] = e_os

    shift = Scale(1 / oversample) | Shift(-(oversample - 1) / (oversample * 2))
    pixel_map = (Identity(1) & shift) if mode.startswith("NRS") else (shift & Identity(1))
    model.meta.wcs = _coordinates_wcs(wcs, pixel_map)

    if rotate:
        flux_os, dq_os, w_os, region_os, used = (np.rot90(a, k=-1) for a in (flux_os, dq_os, w_os, region_os, used))
        errors_os = {k: np.rot90(v, k=-1) for k, v in errors_os.items()}
    if offset is not None:
        flux_os = flux_os + offset
        used = used + offset
    if _is_flux_density(model.meta.bunit_data):  # flux conservation for flux densities
        flux_os = flux_os / oversample
        used = used / oversample
        errors_os = {k: (v / oversample if k == "err" else v / oversample**2) for k, v in errors_os.items()}
    model.data = np.ascontiguousarray(flux_os)
    model.dq = np.ascontiguousarray(dq_os)
    model.wavelength = np.ascontiguousarray(w_os)
    model.trace_model = np.ascontiguousarray(used)
    for name, e in errors_os.items():
        setattr(model, name, np.ascontiguousarray(e))
    if isinstance(model, IFUImageModel) and type(model).spec("regions") is not None:
        model.regions = np.ascontiguousarray(region_os)
    ph = model.meta.photometry
    if ph.pixelarea_steradians is not None:
        ph.pixelarea_steradians /= oversample
    if ph.pixelarea_arcsecsq is not None:
        ph.pixelarea_arcsecsq /= oversample
    for name in _DROPPED:
        if type(model).spec(name) is not None:
            setattr(model, name, None)
    from .flat_field import match_nans_and_flags

    match_nans_and_flags(model)
    return model


# ---------------------------------------------------------------------------
# the step


@step("adaptive_trace_model", "AdaptiveTraceModelStep", params=AdaptiveTraceModelParams, suffix="adaptive_trace_model",
      input_class="DataModel")
def adaptive_trace_model(model, refs, params: AdaptiveTraceModelParams):
    """Fit a spline trace model to each slit or slice (TRACEMODEL), optionally oversampling the data."""
    from ..models import IFUImageModel, MultiSlitModel, SlitModel

    kw = dict(fit_threshold=params.fit_threshold, slope_limit=params.slope_limit, psf_optimal=params.psf_optimal,
              oversample=params.oversample)
    try:
        if isinstance(model, MultiSlitModel):
            for slit in model.slits:
                log.info("Working on slit %s", slit.name)
                fit_and_oversample(slit, meta_model=model, **kw)
        elif isinstance(model, (SlitModel, IFUImageModel)):
            fit_and_oversample(model, **kw)
        else:
            log.warning("adaptive_trace_model is not implemented for %s; no trace model attempted",
                        type(model).__name__)
            return model, "FAILED"  # as jwst records it
    except ValueError as exc:
        from ..errors import UnsupportedModeError

        name = model.meta.filename or type(model).__name__
        raise UnsupportedModeError(f"adaptive_trace_model: {name}: {exc}") from None
    return model
