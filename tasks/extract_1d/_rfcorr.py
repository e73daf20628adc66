"""The 1-D residual fringe fit of a MIRI MRS spectrum (jwst 3.0's ``ifu_rfcorr`` in extract_1d).

What it does, in jwst's order, on the strictly positive part of a spectrum:

1. weights = flux / its median; beyond 27.6 um (and in strong spectral features, found by sigma
   clipping the relative distance of the spectrum to the middle of its upper and lower PCHIP
   envelopes) the weights used for the fits are zero (1e-8);
2. for each fringe family of the channel (channels 1-2: the primary fringe, ~2.9 cm-1 wide scan of
   +-1.5 cm-1; channels 3-4 also the dichroic fringe, 0.4 +- 0.15 cm-1): a continuum is fitted in
   wavenumber with a least-squares spline (one knot per fringe period plus knots at the edges of
   masked runs; degree 2 with biweight-like outlier rejection for the primary fringe, degree 1
   without for the dichroic one); the residual fringes (data / continuum - 1) are then fitted by a
   growing sum of sines: each new sine's frequency is the Lomb-Scargle peak of what the previous
   sines leave, the sum is fitted first with the frequencies held at the periodogram peaks, then
   with everything free (Levenberg-Marquardt inside a biweight robust reweighting, domain 10), and
   a sine is kept only while the Bayesian evidence (flat priors on the parameters over [-2, 1000]
   and on the noise scale over [0.001, 1]) grows by more than 1 (log10) over the previous model;
3. parts of the fit whose envelope exceeds 0.4 are zeroed between the nodes of the beat they sit in,
   and the spectrum is divided by 1 + fit where the weight is not negligible.

A spectrum the fit cannot handle raises (:class:`FringeFitError` or the numerical error met); the
caller turns that into NaN columns, as jwst does.  The Levenberg-Marquardt fitter, the robust
shell and the evidence follow BayesicFitting's arithmetic (the package jwst uses), written here
on numpy arrays: same damping schedule, step (half the Gauss-Newton step), convergence tolerance
(1e-4, relative above chi^2 = 1) and iteration limits, so that the fitted sines are the same.
"""

from __future__ import annotations

import logging
import math

import numpy as np

log = logging.getLogger("webbflow.steps.extract_1d")

# (centre, half width of the scan, most sines) of the primary and the dichroic fringe, in cm-1
PRIMARY = (2.9, 1.5, 10)
DICHROIC = (0.4, 0.15, 15)
MAX_AMPLITUDE = 0.4
CLIP_SIGMA = 5.0
LONGEST_UM = 27.6
SCAN_STEP = 0.001  # cm-1
PARAM_RANGE = (-2.0, 1000.0)
NOISE_RANGE = (0.001, 1.0)
_TINY = 1e-8
_TWO_PI = 2 * math.pi


class FringeFitError(ValueError):
    """The fit has nothing to work with (too few fringe periods, no sine found)."""


class _NoConvergence(Exception):
    """An iterative fit ran out of iterations (fatal for the spectrum, as in jwst)."""


# ----------------------------------------------------------------------------------------------
# envelopes, features, knots


def _extrema(signal, wide: bool):
    """Indices strictly below (troughs) and above (peaks) their neighbours (two each side if wide)."""
    s = np.asarray(signal)
    n = s.size
    reach = 2 if wide else 1
    k = np.arange(reach, n - reach)
    lo = np.ones(k.size, bool)
    hi = np.ones(k.size, bool)
    for d in range(1, reach + 1):
        for side in (k - d, k + d):
            lo &= s[k] < s[side]
            hi &= s[k] > s[side]
    return k[lo], k[hi]


def envelopes(x, signal, wide: bool = False):
    """PCHIP through the troughs and through the peaks (both ends included): (lower, upper) at x."""
    from scipy.interpolate import PchipInterpolator

    lo, hi = _extrema(signal, wide)
    last = len(signal) - 1
    li = np.concatenate(([0], lo, [last]))
    ui = np.concatenate(([0], hi, [last]))
    x = np.asarray(x)
    s = np.asarray(signal)
    return PchipInterpolator(x[li], s[li])(x), PchipInterpolator(x[ui], s[ui])(x)


def feature_weights(relative, sigma: float = CLIP_SIGMA) -> np.ndarray:
    """1 where the relative departure from the envelopes' middle is below median + sigma x std
    (upper-only sigma clipping), else 0."""
    from astropy.stats import sigma_clipped_stats

    _, median, std = sigma_clipped_stats(relative, sigma_lower=np.inf, sigma_upper=sigma)
    return (relative < median + sigma * std).astype(int)


def knot_indices(flux, nknots: int, weights) -> np.ndarray:
    """Evenly spaced knot indices (ends included, the first and last gaps half a step) plus one at
    each edge of a run of masked or near-zero data, sorted and unique."""
    flux = np.nan_to_num(flux, posinf=_TINY, neginf=_TINY)
    flux[flux < 0] = _TINY
    w = np.nan_to_num(weights, posinf=_TINY, neginf=_TINY)
    w[w < 0] = _TINY
    n = flux.shape[0]
    step = n / nknots
    grid = np.zeros(nknots + 1)
    for i in range(nknots):
        grid[i] = round(i * step)
    grid[-1] = n - 1
    half_last = np.ediff1d(grid)[-1] / 2
    knots = np.ones(nknots + 2)
    knots[1:nknots + 1] = np.arange(nknots) * step + half_last
    knots[0], knots[-1] = 0, n - 1
    w = w * (flux > 1e-03).astype(int)
    jumps = np.ediff1d(w)
    edges = []
    for i, d in enumerate(jumps):
        pair = (w[i], w[i + 1])
        big = max(pair)
        if big > 1e-03 and math.isclose(big, abs(d), rel_tol=1e-01):
            at = i + (1 if pair[1] > pair[0] else 0)
            if not ((at - 1) in knots or (at + 1) in knots):
                edges.append(at)
    allk = np.sort(np.concatenate((knots, np.asarray(edges, dtype=float))))
    return np.unique(allk.astype(int)).astype(int)


def robust_spline(x, y, w, knots, degree: int, reject: bool, domain: float = 10.0, tol: float = 1e-4):
    """A least-squares spline; with ``reject``, refitted with biweight weights on the residuals
    (scale: sqrt(chi^2 / dof), dof = sum(w) - len(knots) - 2(degree+1)) until chi^2 settles."""
    from scipy.interpolate import LSQUnivariateSpline

    spline = LSQUnivariateSpline(x, y, knots, w=w, k=degree)
    if not reject:
        return spline
    chi = np.nansum((y - spline(x)) ** 2 * w)
    npar = len(knots) + (degree + 1) * 2
    dof = np.sum(w) - npar
    for _ in range(1000 * npar):
        with np.errstate(all="ignore"):
            r = (y - spline(x)) / (np.sqrt(chi / dof) * domain)
            neww = (np.where(r**2 <= 1, 1 - r**2, 0.0)) ** 2 * w
        spline = LSQUnivariateSpline(x, y, knots, w=neww, k=degree)
        newchi = np.nansum((y - spline(x)) ** 2 * neww)
        if abs(chi - newchi) < (tol if newchi < 1 else tol * newchi):
            return spline
        chi = newchi
    raise RuntimeError("the continuum spline's outlier rejection did not converge")


def continuum(flux, weights, wavenum, ffreq: float) -> np.ndarray:
    """The continuum under the fringes: a spline in (scaled) wavenumber, one knot per fringe period."""
    span = np.amax(wavenum) - np.amin(wavenum)
    nknots = int(span / ffreq)
    scaled = wavenum.copy() / np.amin(wavenum)
    if span // ffreq < 5:
        raise FringeFitError("fewer than 5 fringe periods in the spectrum")
    idx = knot_indices(flux.copy(), nknots, weights.copy())
    inner = scaled[idx].astype(float)[::-1][1:-1]
    if ffreq > 1.5:
        spl = robust_spline(scaled[::-1], flux[::-1], weights[::-1], inner, 2, True)
    else:
        spl = robust_spline(scaled[::-1], flux[::-1], weights[::-1], inner, 1, False)
    fit = spl(scaled)
    fit *= np.where(weights.copy() > 1e-07, 1, 1e-08)
    low = weights < 1e-05
    if low.any() and (~low).any():
        fit[low] = np.interp(low.nonzero()[0], (~low).nonzero()[0], fit[~low])
    return fit


def limit_runaways(fit, max_amp) -> np.ndarray:
    """Zero the fit over each beat (between minima of its upper envelope) where the envelopes'
    total amplitude exceeds ``max_amp``."""
    return runaway_beats(fit, max_amp)[0]


def runaway_beats(fit, max_amp) -> tuple[np.ndarray, np.ndarray]:
    """:func:`limit_runaways` and the flags of what it zeroed (1 there, else 0)."""
    n = fit.shape[0]
    lower, upper = envelopes(np.arange(n), fit)
    k = np.arange(1, n - 1)
    nodes = np.concatenate(([0], k[(upper[k] < upper[k - 1]) & (upper[k] < upper[k + 1])], [n - 1]))
    flags = np.zeros(n)
    for i in np.flatnonzero((np.abs(lower) + np.abs(upper)) > max_amp):
        j = int(np.searchsorted(nodes, i))
        fit[nodes[j - 1]:nodes[j]] = 0
        flags[nodes[j - 1]:nodes[j]] = 1
    return fit, flags


# ----------------------------------------------------------------------------------------------
# sums of sines: Levenberg-Marquardt, robust reweighting, evidence


class _Sines:
    """f(x) = sum_k c_k cos(2 pi nu_k x) + s_k sin(2 pi nu_k x); parameters (nu, c, s) per sine."""

    def __init__(self, x, nsines: int):
        self.x = x
        self.n = nsines
        self.p = np.ones(3 * nsines)

    def __call__(self, p):
        res = None
        for k in range(self.n):
            ph = _TWO_PI * self.x * p[3 * k]
            term = p[3 * k + 1] * np.cos(ph) + p[3 * k + 2] * np.sin(ph)
            res = term if res is None else np.add(res, term)
        return res

    def design(self, p):
        cols = np.empty((self.x.size, 3 * self.n))
        tx = _TWO_PI * self.x
        for k in range(self.n):
            ph = tx * p[3 * k]
            c, s = np.cos(ph), np.sin(ph)
            cols[:, 3 * k] = tx * p[3 * k + 2] * c - tx * p[3 * k + 1] * s
            cols[:, 3 * k + 1] = c
            cols[:, 3 * k + 2] = s
        return cols


class _LM:
    """Levenberg-Marquardt on a _Sines model (BayesicFitting's schedule), some parameters held."""

    def __init__(self, model: _Sines, held: dict | None = None, tol: float = 1e-4):
        self.m = model
        self.tol = tol
        self.maxiter = 1000 * model.p.size
        self.free = np.arange(model.p.size)
        if held:
            self.free = np.setxor1d(self.free, list(held.keys()))
            model.p[list(held.keys())] = list(held.values())
        self.chisq = None

    def _chi(self, y, p, w):
        r2 = np.square(y - self.m(p))
        r2 *= w
        chisq = np.sum(r2)
        if chisq <= 0:
            raise ValueError("chisq <= 0")
        self.chisq = chisq
        return chisq

    def hessian(self, p, w, index=None):
        d = self.m.design(p)
        if index is not None:
            d = d[:, index]
        d = d.transpose()
        return np.inner(d, d * w)

    def fit(self, y, w):
        if not (np.all(np.isfinite(y)) and np.all(np.isfinite(w))):
            raise ValueError("NaNs or Infs in the data or weights")
        self.w = 1.0 * w
        self.sumw = np.sum(w)
        self.npfit = self.free.size
        fi = self.free
        params = self.m.p
        self.iter = 0
        chi = self._chi(y, params, self.w) + 1
        lam = 0.001
        while self.iter < self.maxiter:
            # one accepted step
            h = self.hessian(params, self.w, fi)
            resid = (y - self.m(params)) * self.w
            vec = np.inner(self.m.design(self.m.p)[:, fi].transpose(), resid)
            start = params[fi]
            while True:
                if self.iter >= self.maxiter:
                    raise _NoConvergence("Levenberg-Marquardt: too many iterations")
                for k in range(fi.size):
                    h[k, k] *= 1 + lam
                new = start + 0.5 * np.linalg.solve(h, vec)
                trial = np.array(params, dtype=float)
                trial[fi] = new
                trychi = self._chi(y, trial, self.w)
                self.iter += 1
                if trychi <= chi:
                    break
                if lam < 1e20:
                    lam *= 10
            params = trial
            self.m.p = trial
            self.damped = h  # BayesicFitting's fitter keeps this (damped) Hessian of the last step
            if abs(chi - trychi) < (self.tol if chi < 1 else self.tol * chi):
                return trial
            chi = trychi
            if lam > 1e-100:
                lam *= 0.1
        raise _NoConvergence("Levenberg-Marquardt: too many iterations")

    def scale(self):
        dof = self.sumw - self.npfit
        if dof <= 0:
            raise RuntimeError("More parameters than (weighted) data points")
        return math.sqrt(self.chisq / dof)


def _robust_fit(lm: _LM, y, w, domain: float = 10.0, tol: float = 1e-4):
    """Biweight reweighting around the LM fit until chi^2 settles; leaves lm.h, the full Hessian."""
    p = lm.fit(y, w)
    chi = lm.chisq
    trychi = chi
    for _ in range(1000 * lm.m.p.size):
        r = y - lm.m(p)
        r /= lm.scale() * domain
        r2 = r * r
        rw = np.where(r2 <= 1, 1 - r2, 0.0)
        rw = rw * rw
        rw *= w
        p = lm.fit(y, rw)
        trychi = lm.chisq
        if abs(chi - trychi) < (tol if trychi < 1 else tol * trychi):
            break
        chi = trychi
    lm.h = lm.hessian(lm.m.p, lm.w)
    return p


def _log10_evidence(chisq, sumw, npfit, hessian=None, param_range=PARAM_RANGE, noise_range=NOISE_RANGE) -> float:
    """log10 of the evidence, flat priors (on the parameters over ``param_range``, on the noise
    scale over ``noise_range``) as jwst asks BayesicFitting for them."""
    dof = sumw - npfit
    if dof <= 0:
        raise RuntimeError("More parameters than (weighted) data points")
    scalerange = math.log(noise_range[1]) - math.log(noise_range[0])
    s = math.sqrt(chisq / dof)
    s2 = s * s
    occam = 0.5 * math.log(math.pi * dof) - scalerange
    loglike = -0.5 * (sumw * math.log(2 * math.pi * s2) + chisq / s2)
    if npfit == 0:
        return (loglike + occam) / math.log(10.0)
    prior = math.log(param_range[1] - param_range[0])
    spr = math.log(scalerange) + prior + (npfit - 1) * prior
    occam += -spr + 0.5 * (npfit * math.log(2 * math.pi * s2) - math.log(np.linalg.det(hessian)))
    return (loglike + occam) / math.log(10.0)


def scan_grid(wavenum, ffreq: float, dffreq: float, step: float):
    """(wavenumbers / their minimum, that minimum, the periodogram's trial frequencies in those
    units: ffreq +- dffreq in steps of about ``step`` cm-1)."""
    nscan = np.around((2 * dffreq) / step).astype(int)
    factor = np.amin(wavenum)
    x = wavenum.copy() / factor
    f0, df = ffreq / factor, dffreq / factor
    return x, factor, np.linspace(f0 - df, f0 + df, nscan)


def fit_sines(resid, weights, wavenum, ffreq: float, dffreq: float, max_sines: int) -> np.ndarray:
    """The sum of sines the evidence supports (see the module's docstring); raises FringeFitError
    when not even one is."""
    from astropy.timeseries import LombScargle

    x, factor, periods = scan_grid(wavenum, ffreq, dffreq, SCAN_STEP)
    ffreq = ffreq / factor
    resid = np.nan_to_num(resid)
    left = resid.copy()
    if np.any(np.isnan(x)):
        raise ValueError("NaNs in the wavenumbers")
    use = weights > 1e-05
    # the evidence of "no fringes": the constant 1 with no free parameter, unweighted chi^2
    sumw = np.sum(weights)
    chisq0 = np.sum(np.square(resid - 1.0))
    if chisq0 <= 0:
        raise ValueError("chisq <= 0")
    best_evidence = _log10_evidence(chisq0, sumw, 0)
    held = {}
    best = None
    found = 0
    for n in range(max_sines):
        power = LombScargle(x[use][::-1], left[use][::-1]).power(1 / periods)
        held[3 * n] = 1.0 / periods[np.argmax(power)]
        model = _Sines(x, n + 1)
        try:
            lm = _LM(model, held)
            pars = _robust_fit(lm, resid, weights)
            model = _Sines(x, n + 1)
            model.p = np.array(pars, dtype=float)
            lm = _LM(model)
            _robust_fit(lm, resid, weights)
            evidence = _log10_evidence(lm.chisq, lm.sumw, lm.npfit, lm.h)
        except (ValueError, RuntimeError, np.linalg.LinAlgError) as err:
            log.debug("Fringe fit failed: %s", err)
            evidence = -1e9
        if evidence - best_evidence <= 1:
            break
        best_evidence = evidence
        best = model(model.p)
        left = resid.copy() - best
        found += 1
    if found == 0:
        raise FringeFitError(f"Failed to fit any fringes for frequency {ffreq}")
    return best


# ----------------------------------------------------------------------------------------------


def residual_fringe_1d(flux, wavelength, channel) -> np.ndarray:
    """The spectrum corrected for residual fringes (same length; non-positive values unchanged).
    ``channel`` is the MRS channel (1-4) of a band cube."""
    flux = np.asarray(flux, dtype=np.float64)
    wavelength = np.asarray(wavelength, dtype=np.float64)
    pos = np.where(flux > 0)
    f = flux[pos]
    lam = wavelength[pos]
    wavenum = 10000.0 / lam
    with np.errstate(divide="ignore", invalid="ignore"):
        weights = f / np.nanmedian(f)
    weights[weights == np.inf] = 0
    weights[np.isnan(weights)] = 0
    wfit = weights.copy()
    wfit[lam > LONGEST_UM] = 0
    if np.all(wfit == 0):
        log.warning("No good data. Skipping correction.")
        return flux
    lower, upper = envelopes(np.arange(f.shape[0]), f, wide=True)
    middle = (lower + upper) / 2
    wfit = wfit * feature_weights(np.abs((f - middle) / middle))
    families = [PRIMARY] if channel in (1, 2) else [PRIMARY, DICHROIC]
    f[f <= 0] = _TINY
    wfit[wfit <= 0] = _TINY
    bad = ~np.isfinite(wavenum)
    if bad.any():
        wavenum = _fill_wavenumbers(wavenum, bad)
    corrected = f.copy()
    for ffreq, dffreq, nmax in families:
        cont = continuum(corrected, wfit, wavenum, ffreq)
        frac = np.divide(corrected, cont, out=np.full_like(corrected, _TINY), where=cont != 0)
        np.subtract(frac, 1, out=frac, where=frac != 0)
        frac *= np.where(weights > 1e-07, 1, 1e-08)
        try:
            fit = fit_sines(frac, wfit, wavenum, ffreq, dffreq, nmax)
        except ValueError as err:  # no sine found (FringeFitError) or another ValueError: as jwst, go on
            log.warning(str(err))
            continue
        fit = limit_runaways(fit, np.full(f.shape, MAX_AMPLITUDE))
        corrected *= 1 / (fit * (weights > 1e-05).astype(int) + 1)
        corrected[corrected == np.inf] = 0
        corrected = np.nan_to_num(corrected)
    out = flux.copy()
    out[pos] = corrected
    return out


def _fill_wavenumbers(wavenum, bad):
    """Off-slice wavenumbers replaced by a cubic in the index fitted to the others."""
    import numpy.polynomial.polynomial as P

    w = wavenum.copy()
    w[bad] = 0
    w[w == 0] = np.nan
    ok = np.isfinite(w)
    idx = np.arange(w.shape[0])
    filled = P.polyval(idx, P.polyfit(idx[ok], w[ok], 3))
    filled[ok] = w[ok]
    return filled


def corrected_columns(flux, surf_bright, background, wavelength, channel):
    """RF_* of an MRS band cube's spectrum: each of the three arrays corrected, or all NaN where
    the fit fails for it (a warning says which), as jwst's extract_1d does."""
    out = []
    for name, arr in (("Flux", flux), ("Surf bright", surf_bright), ("Background", background)):
        try:
            out.append(residual_fringe_1d(arr, wavelength, channel))
        except Exception as err:  # noqa: BLE001 - jwst skips the correction on any failure
            log.warning("%s residual fringe correction failed- skipping. (%s)", name, err)
            out.append(np.full(np.shape(arr), np.nan))
    return out
