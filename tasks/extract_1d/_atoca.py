"""NIRISS SOSS ATOCA decontamination (extract_1d ``soss_atoca=true``, jwst 3.0's default).

ATOCA models the detector image as the sum of the orders' traces, each a linear function of the
star's spectrum on a common wavelength grid (:mod:`._atoca_engine`), fits the spectrum with a
Tikhonov (first-derivative) regularisation, and subtracts the model of the other orders from
each order's box before the box sums of :mod:`.soss`.  The run, as jwst's:

1. **A typical integration** (the mean of the filled integrations plus Gaussian noise of the
   median error scaled by sqrt((n-1)/n), seed 42) fixes everything that does not change from one
   integration to the next: a first flux estimate from order 1's uncontaminated pixels (a
   least-squares fit with no kernel, as a cubic spline), the adaptive wavelength grid (order 1
   and order 2's shared range refined to ``soss_rtol`` on that estimate, up to
   ``soss_max_grid_size`` points), the Tikhonov factor of the joint order 1+2 fit (10 factors
   over 8 decades around the estimate's guess, refined three times, jwst's ``d_chi2``
   criterion), and those of order 2's blue end (below 0.95 um) and order 3, each fitted alone
   on its own pixel grid oversampled 3 times (10 factors over 10 decades around order 1's).
2. **Each integration**: the joint spectrum f = (B'B + t^2 T'T)^-1 B' y/sigma with the median
   error, the orders' models rebuilt from it (order 2 below 0.95 um and order 3 from their own
   fits, with the integration's errors), each order decontaminated of the others' models and
   box-extracted as with ``soss_atoca=false``.

What differs from jwst is only how it is computed: every matrix that does not change between
integrations is built once (jwst rebuilds the order 2/3 models and the pixel-grid spectra for
each integration), the joint solution of all integrations is one sparse factorisation instead
of the dense inverse of the design matrix, and the models of orders 1 and 2 are rebuilt for all
integrations in one sparse product.

The optional inputs and outputs are jwst's: ``soss_wave_grid_in`` replaces the adaptive grid,
``soss_estimate`` the first flux estimate (the estimate is then made only when the grid or the
factor still needs it); :func:`.soss.write_model_products` writes ``soss_modelname``'s trace
models and each integration's ATOCA spectra binned to the orders' pixel grids (:class:`_Binners`),
and ``soss_wave_grid_out`` the grid.
"""

from __future__ import annotations

import hashlib
import logging
import warnings

import numpy as np

from . import _atoca_utils as U
from ._atoca_engine import Engine, MaskOverlapError

log = logging.getLogger("webbflow.steps.extract_1d")

ORDER2_CUTOFF = (0.77, 0.95)  # jwst's default when the pastasoss reference does not give one


class OrderModel:
    """One order's detector model: 2-D wavelength map, profile, throughput, kernel and trace."""

    def __init__(self, order, wavemap, profile, throughput, kernel, cols, wave):
        self.order, self.wavemap, self.profile = order, wavemap, profile
        self.throughput, self.kernel = throughput, kernel
        self.cols, self.wave = cols, wave

    def native_grid(self):
        """(wavelength, column) of the trace's columns, sorted by wavelength."""
        ok = np.isfinite(self.wave)
        w, c = self.wave[ok], self.cols[ok]
        s = np.argsort(w)
        return w[s], c[s]

    def grid_from_trace(self, n_os):
        w, _ = self.native_grid()
        up, low = U.pixel_edges(w[None, :])
        up, low = np.sort(up[0]), np.sort(low[0])
        return U.oversample(np.append(low, up[-1]), n_os)


def wavemap_2d(trace, nrows: int, ncols: int = 2048, maxiter: int = 5, dtol: float = 1e-2):
    """The order's wavelength on every pixel: jwst's pastasoss map with no tilt (a function of column).

    ``trace`` is (x, y, wavelength grid) of :func:`.soss.spectrace`.  The column's wavelength is
    found by iterating on the inverse of the trace's x(wavelength), as jwst's map is; outside
    the trace it is NaN.
    """
    x_tr, _y, grid = trace
    x = np.arange(ncols, dtype=np.float64)
    xr, wr = x_tr[::-1], grid[::-1]
    dx = np.zeros_like(x)
    for _ in range(maxiter):
        w = np.interp(x - dx, xr, wr)
        est = np.interp(w, grid, x_tr)
        dx = dx + (est - x)
        if np.all(np.abs(est - x) < dtol):
            break
    row = np.interp(x - dx, xr, wr, left=np.nan, right=np.nan)
    return np.repeat(row[None, :], nrows, axis=0)


def _key(*arrays):
    h = hashlib.sha1()
    for a in arrays:
        h.update(np.ascontiguousarray(a).view(np.uint8))
    return h.hexdigest()


def _ones(w):
    return np.ones_like(w)


class _SingleOrder:
    """The fit of one order alone (order 2's blue end, order 3) on its own oversampled pixel grid."""

    def __init__(self, om: OrderModel, cut):
        w, c = om.native_grid()
        if cut is not None:
            keep = w < cut
            w, c = w[keep], c[keep]
        self.om, self.grid, self.cols, self.grid_os = om, w, c, U.oversample(w, 3)
        self._engines = {}

    def engine(self, mask):
        k = _key(mask)
        if k not in self._engines:
            try:
                self._engines[k] = Engine([self.om.wavemap], [self.om.profile], [_ones], [np.array([1.0])],
                                          self.grid_os, [mask])
            except MaskOverlapError:
                self._engines[k] = None
        return self._engines[k]

    def model(self, data, err, mask_fit, mask_rebuild, factor, with_spectrum=False):
        fit = self.engine(mask_fit)
        rb = self.engine(mask_rebuild)
        if fit is None or rb is None:
            log.error("ATOCA order %d: not enough unmasked pixels to model it; its model is NaN", self.om.order)
            nan = np.full(data.shape, np.nan)
            return (nan, None) if with_spectrum else nan
        f = fit.fit(data, err, factor)
        model = rb.rebuild(f, fill_value=np.nan)
        return (model, f) if with_spectrum else model

    def search(self, data, err, mask_fit, guess):
        fit = self.engine(mask_fit)
        if fit is None:
            return guess
        best, _ = U.search_factor(fit.tikhonov(data, err), guess, [-2, 8])
        return best


def _add_model(current, model):
    model = np.where(np.isfinite(current), 0.0, model)
    both = np.isnan(current) & np.isnan(model)
    out = np.nansum([current, model], axis=0)
    out[both] = np.nan
    return out


def atoca_models(filled, errs, mederr, scimask0, refmask0, oms: dict, box: dict, params, subarray,
                 order2_cutoff=ORDER2_CUTOFF, wave_grid=None, estimate=None, spectra=False, data=None,
                 background=None):
    """The trace models of every order for every integration, and the Tikhonov factor of orders 1+2.

    ``filled``/``errs``: (nints, ny, nx) data with bad pixels filled and errors (bad ones at 10x
    the median); ``mederr`` the median error (inf where never valid); ``scimask0`` pixels bad in
    every integration; ``refmask0`` the reference pixels; ``oms`` the :class:`OrderModel` per
    order; ``box`` the box weights per order; ``wave_grid`` a decontamination grid to use instead
    of the adaptive one (``soss_wave_grid_in``); ``estimate`` a flux estimate (a function of
    wavelength, ``soss_estimate``) instead of the one from order 1's uncontaminated pixels.
    Returns ({order: (nints, ny, nx)}, tikfac, masks, grid, atoca) where masks[i] is the pixel
    mask of integration i's box sums, grid the orders 1+2 wavelength grid, and atoca (when
    ``spectra``) each integration's ATOCA spectra binned to the orders' pixel grids, as
    [(order, wavelength, flux), ...] per integration.  With ``subtract_background``, ``data`` holds
    the integrations with their background subtracted (``filled`` still makes the typical
    integration) and ``background(image, mask)`` subtracts the typical integration's.
    """
    nints = filled.shape[0]
    orders = sorted(box)
    # -- the typical integration ------------------------------------------------
    typical = np.mean(filled, axis=0)
    rng = np.random.default_rng(seed=42)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        typical += rng.normal(0, mederr * np.sqrt((nints - 1) / nints))
    # jwst's scimask and refmask, changed in place by each integration (the typical one first)
    # whose invalid pixels are not all masked yet
    seen, refmask = scimask0.copy(), refmask0.copy()
    nonfinite = ~(np.isfinite(typical) & np.isfinite(mederr))
    if (nonfinite & ~seen).any():
        seen |= nonfinite
        refmask &= ~nonfinite
    mask_int = seen | ~(mederr > 0)
    if background is not None:
        typical = background(typical, mask_int)[0]
    if data is not None:
        filled = data
    mtp = {o: ~(box[o] > 0) | refmask for o in orders}
    global_mask = np.all([mtp[o] for o in orders], axis=0)
    om1, om2 = oms[1], oms[2]

    # first estimate of the flux from order 1 away from order 2, unless one is given or nothing needs it
    if estimate is None and (params.soss_tikfac is None or wave_grid is None):
        grid_est = U.oversample(U.grid_from_map(om1.wavemap, om1.profile), 1)  # (om1.profile changes, as in jwst)
        est_mask = (om2.profile >= 1e-4) | mtp[1]
        eng = Engine([om1.wavemap], [om1.profile], [om1.throughput], [None], grid_est, [est_mask],
                     global_mask=mask_int)
        first = eng.fit(typical, mederr)
        estimate = spline_estimate(grid_est, first)

    if wave_grid is None:  # the decontamination grid
        g2, g1 = om2.grid_from_trace(params.soss_n_os), om1.grid_from_trace(params.soss_n_os)
        shared = g2 >= np.min(g1)
        g1 = g1[g1 > np.min(g2[shared])]
        grid = U.adaptive_grid([g2[shared], g1, g2[~shared]], [estimate, estimate, _ones],
                               [order2_cutoff[0], np.max(g1)], max_iter=30, rtol=params.soss_rtol,
                               max_total_size=params.soss_max_grid_size)
    else:
        grid = np.asarray(wave_grid, dtype=np.float64)
    log.info("ATOCA wavelength grid: %d points from %.4f to %.4f um", grid.size, grid.min(), grid.max())

    # orders 1 and 2 together
    e12 = Engine([om1.wavemap, om2.wavemap], [om1.profile, om2.profile], [om1.throughput, om2.throughput],
                 [om1.kernel, om2.kernel], grid, [mtp[1], mtp[2]], global_mask=mask_int,
                 threshold=params.soss_threshold)
    if params.soss_tikfac is None:
        guess = e12.estimate_factor(estimate)
        tikfac, _ = U.search_factor(e12.tikhonov(typical, mederr), guess, [-4, 4])
    else:
        tikfac = float(params.soss_tikfac)
    log.info("ATOCA Tikhonov factor of orders 1+2: %.4e", tikfac)
    b = e12.design(mederr)
    t = e12.tikho_mat
    design = (b.T.dot(b) + tikfac**2 * t.T.dot(t)).tocsc()
    from scipy.sparse.linalg import splu

    lu = splu(design)
    valid = ~e12.mask
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        y = (filled / mederr[None])[:, valid].T  # (n valid pixels, nints)
    f_all = lu.solve(np.asarray(b.T.dot(y)))  # (n_k, nints)
    if f_all.ndim == 1:
        f_all = f_all[:, None]
    models = {o: np.full(filled.shape, np.nan) for o in orders}
    fluxes12 = {}
    for i, (o, om) in enumerate(((1, om1), (2, om2))):
        flux = e12.kernels[i].dot(f_all)  # on the order's convolved grid
        fluxes12[o] = (e12.grid_c(i), flux)
        oe = Engine([om.wavemap], [om.profile], [om.throughput], [np.array([1.0])], e12.grid_c(i), [global_mask])
        op = oe.rebuild_operator()
        pix = op.dot(flux)  # (valid pixels of oe, nints)
        m = np.full((nints,) + filled.shape[1:], np.nan)
        v = ~oe.mask
        m[:, v] = pix.T
        models[o] = m

    # order 2's blue end and order 3, alone
    singles = {}
    if subarray != "SUBSTRIP96":
        for o in orders[1:]:
            singles[o] = _SingleOrder(oms[o], order2_cutoff[1] if o == 2 else None)
    factors = {}
    for o, s in singles.items():
        mask_fit = mtp[o] | mask_int
        factors[o] = s.search(typical, mederr, mask_fit, tikfac)
        log.info("ATOCA Tikhonov factor of order %d alone: %.4e", o, factors[o])

    # -- each integration --------------------------------------------------------
    masks, atoca = [], []
    binners = _Binners()
    for i in range(nints):
        d, e = filled[i], errs[i]
        nf = ~(np.isfinite(d) & np.isfinite(e))
        if (nf & ~seen).any():
            seen = seen | nf
            refmask = refmask & ~nf
        mask_i = seen | ~(e > 0)
        masks.append(mask_i)
        mtp_i = {o: ~(box[o] > 0) | refmask for o in orders}
        gm_i = np.all([mtp_i[o] for o in orders], axis=0)
        listed = []
        if spectra:  # orders 1 and 2 from the joint fit, binned to their pixel grids
            for o, om in ((1, om1), (2, om2)):
                g, flux = fluxes12[o]
                f = flux[:, i]
                ok = np.isfinite(f)
                listed.append((o, *binners.joint(om, g[ok], f[ok], gm_i)))
        for o, s in singles.items():
            mdl, f = s.model(d, e, mtp_i[o] | mask_i, gm_i, factors[o], with_spectrum=True)
            models[o][i] = _add_model(models[o][i], mdl)
            if spectra:
                listed.append((o, *binners.single(s, f, gm_i)))
        atoca.append(listed)
    return models, tikfac, np.array(masks), grid, (atoca if spectra else None)


def spline_estimate(wavelength, flux):
    """The flux estimate as jwst makes it: a cubic interpolating spline of the finite values."""
    from scipy.interpolate import UnivariateSpline

    ok = np.isfinite(flux)
    return UnivariateSpline(np.asarray(wavelength)[ok], np.asarray(flux)[ok], k=3, s=0, ext=0)


class _Binners:
    """The ATOCA spectra binned to an order's pixel grid (``soss_modelname``'s AtocaSpectra).

    A one-row detector whose pixels are the order's columns, sorted by wavelength, with a flat
    profile; columns whose every pixel is outside the modelled region are masked.  The engines
    are kept for as long as that mask does not change.
    """

    def __init__(self):
        self._engines = {}

    def _engine(self, key, build):
        if key not in self._engines:
            try:
                self._engines[key] = build()
            except MaskOverlapError:
                self._engines[key] = None
        return self._engines[key]

    def joint(self, om, grid, flux, global_mask):
        """(wavelength, flux) of an order of the joint fit, from its flux on the convolved grid."""
        w, c = om.native_grid()
        mask = np.all(global_mask, axis=0)[c]
        eng = self._engine(("joint", om.order, _key(mask, grid)),
                           lambda: Engine([w[None, :]], [np.ones((1, w.size))], [om.throughput], [om.kernel], grid,
                                          [mask[None, :]]))
        return _finite(w, eng.rebuild(flux, fill_value=np.nan)[0] if eng is not None else np.full(w.size, np.nan))

    def single(self, s, flux, global_mask):
        """(wavelength, flux) of an order fitted alone, from its flux on its oversampled pixel grid."""
        w, c = s.grid, s.cols
        if flux is None:  # not modelled: jwst's null spectrum, NaN at the order's wavelengths
            return w, np.full(w.size, np.nan)
        mask = np.all(global_mask, axis=0)[c]
        eng = self._engine(("single", s.om.order, _key(mask)),
                           lambda: Engine([w[None, :]], [np.ones((1, w.size))], [_ones], [np.array([1.0])],
                                          s.grid_os, [mask[None, :]]))
        return _finite(w, eng.rebuild(flux, fill_value=np.nan)[0] if eng is not None else np.full(w.size, np.nan))


def _finite(w, f):
    ok = np.isfinite(f)
    return w[ok], f[ok]
