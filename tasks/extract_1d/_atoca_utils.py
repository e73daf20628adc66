"""Numerical pieces of NIRISS SOSS ATOCA (see :mod:`._atoca`): grids, kernels, regularisation.

Everything here follows the algorithm jwst 3.0 runs for ``soss_atoca=true`` (Darveau-Bernier et
al. 2022, PASP 134, 094502), written for webbflow:

- pixel edges in wavelength along the dispersion (half the step to each neighbour);
- oversampled grids (``n_os`` sub-steps per interval, linear in index) and the adaptive grid that
  halves the intervals whose Romberg estimate of the integral of the flux estimate misses ``rtol``;
- the throughput (a clamped cubic spline of the reference's table, zero at both ends);
- the spectral kernels of the ``speckernel`` reference as a function of (wavelength, centre) and
  the sparse convolution matrix built from them (trapezoid weights, wings down to a threshold);
- the first-derivative Tikhonov matrix and the search of its factor: chi2 under a Cauchy loss
  for a grid of factors, its derivative in log(factor) (modified Akima), and the smallest factor
  where that derivative exceeds 1e-3.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
from scipy import sparse

log = logging.getLogger("webbflow.steps.extract_1d")


# ---------------------------------------------------------------------------
# grids


def pixel_edges(wave_map):
    """(upper, lower) wavelength edges of each pixel along the rows of ``wave_map`` (0 where invalid)."""
    wm = np.asarray(wave_map, dtype=np.float64)
    top = np.zeros_like(wm)
    bottom = np.zeros_like(wm)
    for r in range(wm.shape[0]):
        row = wm[r]
        ok = np.isfinite(row) & (row >= 0)
        w = row[ok]
        if w.size == 0:
            continue
        half = np.diff(w) / 2
        if half.size == 0:  # a single valid pixel: no neighbour to take a step from
            continue
        top[r, ok] = w - np.concatenate(([half[0]], half))
        bottom[r, ok] = w + np.concatenate((half, [half[-1]]))
    invalid = wm == 0
    if ((bottom >= top) | invalid).all():
        return bottom, top
    if ((bottom <= top) | invalid).all():
        return top, bottom
    raise ValueError("some pixels do not follow the dispersion axis")


def oversample(grid, n_os):
    """``grid`` with each interval cut into ``n_os`` (scalar or per interval) equal steps."""
    grid = np.asarray(grid, dtype=np.float64)
    n = np.asarray(n_os)
    if n.ndim == 0:
        n = np.repeat(n, len(grid) - 1)
    steps = np.concatenate(([0.0], np.repeat(1.0 / n, n)))
    return np.unique(np.interp(np.cumsum(steps), np.arange(grid.size), grid))


def grid_from_map(wave_map, profile):
    """Profile-weighted central wavelength of each column (sorted; columns without light dropped).

    As jwst does, the profile array is modified in place (negative values and pixels of no
    wavelength set to 0, columns of no light set to 1).
    """
    profile[profile < 0] = 0
    profile[wave_map <= 0] = 0
    empty = np.sum(profile, axis=0) == 0
    profile[:, empty] = 1
    centre = np.average(wave_map, weights=profile, axis=0)
    centre[empty] = np.nan
    return np.sort(centre[~np.isnan(centre)])


def _trim(grids, lo_hi):
    out = []
    for g in grids:
        a = max(np.searchsorted(g, lo_hi[0], side="right") - 1, 0)
        b = min(np.searchsorted(g, lo_hi[1], side="left"), len(g) - 1)
        g = g[a:b + 1]
        if out:
            done = np.concatenate(out)
            below, above = g < done.min(), g > done.max()
            if below.any():
                g = g[:min(np.max(np.nonzero(below)) + 1, len(g) - 1) + 1]
            if above.any():
                g = g[max(np.min(np.nonzero(above)) - 1, 0):]
            if not below.any() and not above.any():
                g = np.array([])
        out.append(g)
    return out


def _romberg_error(grid, fct):
    """Absolute and relative error of the trapezoid on each interval against one Romberg step."""
    a, b = grid[:-1], grid[1:]
    width = b - a
    s1 = 0.5 * (fct(a) + fct(b))
    trap = width * s1
    s2 = s1 + fct(0.5 * (a + b))
    trap2 = width * s2 / 2
    romb = (4.0 * trap2 - trap) / 3.0
    err = np.abs(romb - trap)
    rel = np.full_like(err, np.inf)
    nz = romb != 0
    rel[nz] = np.abs(err[nz] / romb[nz])
    return err, rel


def _adapt(grid, fct, max_size, max_iter, rtol, atol=1e-6, min_step=1e-5):
    full = grid.size > max_size
    if full:
        raise ValueError("max_grid_size is too small for the input grid")
    converged_all = False
    for _ in range(max_iter):
        err, rel = _romberg_error(grid, fct)
        conv = (rel < rtol) | (err < atol)
        converged_all = bool(conv.all())
        if full or converged_all:
            break
        n = np.where(conv, 1, 2)
        if n.sum() > max_size:
            full = True
            n = np.ones(rel.shape, dtype=int)
            n[np.argsort(rel)[-(max_size - grid.size):]] = 2
        grid = oversample(grid, n)
        keep = [grid[0]]
        for v in grid[1:]:  # drop nodes closer than min_step to the last one kept
            if v - keep[-1] > min_step:
                keep.append(v)
        grid = np.array(keep)
    return grid, converged_all


def adaptive_grid(grids, estimates, lo_hi, max_iter=10, rtol=1e-5, max_total_size=1000000):
    """The union of ``grids`` (in order of priority), each refined against its flux estimate."""
    grids = _trim(grids, lo_hi)
    sizes = [len(g) for g in grids]
    combined = np.array([])
    for i, g in enumerate(grids):
        room = max_total_size - combined.size - sum(s for j, s in enumerate(sizes) if j > i)
        room = max(room, sizes[i])
        g, ok = _adapt(g, estimates[i], room, max_iter, rtol)
        sizes[i] = g.size
        if not ok:
            log.warning("ATOCA grid %d: the precision rtol=%g is not reached (%d points)", i, rtol, g.size)
        combined = np.concatenate([combined, g])
    return np.unique(combined)


# ---------------------------------------------------------------------------
# throughput and kernels


class Throughput:
    """The order's throughput: a clamped cubic spline through the table, zero at both ends."""

    def __init__(self, wavelength, throughput):
        from scipy.interpolate import make_interp_spline

        w = np.sort(np.asarray(wavelength, dtype=np.float64))
        t = np.array(throughput, dtype=np.float64)  # as jwst: the values keep the table's order
        t[0] = t[-1] = 0.0
        self.lo, self.hi = w.min(), w.max()
        self._spl = make_interp_spline(w, t, k=3, bc_type=("clamped", "clamped"))

    def __call__(self, wave):
        return self._spl(np.clip(wave, self.lo, self.hi))


class SpectralKernel:
    """The ``speckernel`` kernels as a function of (wavelength, central wavelength) for one order.

    Each tabulated kernel centre is moved to the trace wavelength of the nearest column; a line
    fitted to the wavelengths of the ``n_pix`` columns around it maps wavelength to kernel pixel,
    and the kernel table is a bicubic spline in (pixel, centre).
    """

    def __init__(self, wave_kernels, kernels, wave_trace, n_pix):
        from numpy.polynomial import Polynomial
        from scipy.interpolate import RectBivariateSpline

        self.n_pix = n_pix
        tr = np.ma.array(wave_trace, mask=(np.asarray(wave_trace) == 0))
        if np.diff(tr).mean() < 0:
            tr = np.flip(tr)
        self.pixels = np.linspace(-(n_pix // 2), n_pix // 2, wave_kernels.shape[0])
        centres = np.asarray(wave_kernels[0, :])  # the table's own precision (float32), as jwst keeps it
        wmin, wmax = np.amin(tr[tr > 0]), np.amax(tr[tr > 0])
        i0 = np.searchsorted(centres, wmin)
        i1 = np.searchsorted(centres, wmax) - 1
        bbox = [None, None, centres[max(i0 - 1, 0)], centres[min(i1 + 1, len(centres) - 1)]]
        self.kernels = np.array(kernels[:, i0:i1 + 1])
        centre = np.array(wave_kernels[0, i0:i1 + 1])
        self.min_value = np.min(self.kernels[self.kernels > 0.0])
        around = np.arange(-(n_pix // 2), n_pix // 2 + 1)
        poly = []
        for k, wc in enumerate(centre):
            col = np.argmin(np.abs(tr - wc))
            centre[k] = tr[col]
            idx = col + around
            inside = (idx >= 0) & (idx < tr.size)
            vals = np.ma.masked_all(around.shape)
            vals[inside] = tr[idx[inside]]
            fit = Polynomial.fit(around[~vals.mask], vals[~vals.mask], 1).convert()
            poly.append(fit.coef[::-1])
        self.centre = centre
        self.poly = np.array(poly)
        self._spl = RectBivariateSpline(self.pixels, centre, self.kernels, bbox=bbox)

    def __call__(self, wave, wave_c):
        c, p = self.centre, self.poly
        i = np.searchsorted(c, wave_c) - 1
        i = np.clip(i, 0, len(c) - 2)
        d = c[i + 1] - c[i]
        a = (c[i + 1] - wave_c) / d
        b = (wave_c - c[i]) / d
        scale = 1 / (a * p[i, 0] + b * p[i + 1, 0])  # pixel = scale * wavelength + offset (jwst's rounding)
        offset = -(a * p[i, 1] + b * p[i + 1, 1])
        offset /= a * p[i, 0] + b * p[i + 1, 0]
        pix = scale * wave + offset
        val = np.clip(self._spl(pix, wave_c, grid=False), self.min_value, None)
        half = self.n_pix // 2
        val[(pix > half) | (pix < -half)] = 0
        return val


def _wings(fct, grid, h, a, b):
    n, m = len(grid), b - a
    left, right = np.zeros(m), np.zeros(m)
    g = grid[max(0, a - h):b - h]
    if len(g):
        left[-len(g):] = fct(g, grid[b - len(g):b])
    g = grid[a + h:min(n, b + h)]
    if len(g):
        right[:len(g)] = fct(g, grid[a:a + len(g)])
    return left, right


def _kernel_array(fct, grid, a, b, thresh):
    """The kernel at each grid point of [a, b) and its neighbours, times the trapezoid weights."""
    rows = [fct(grid, grid)[a:b]]
    h = 0
    lefts, rights = [], []
    while True:
        h += 1
        left, right = _wings(fct, grid, h, a, b)
        if (left < thresh).all() and (right < thresh).all():
            break
        left[left < thresh] = 0.0
        right[right < thresh] = 0.0
        lefts.append(left)
        rights.append(right)
    out = np.vstack(lefts[::-1] + rows + rights)
    length = out.shape[0]
    # trapezoid weights of the neighbours' intervals
    offs = np.arange(length)[:, None] - length // 2
    idx = np.arange(a, b)[None, :] + offs[:-1]
    bad = (idx < 0) | (idx >= len(grid) - 1)
    idx = np.where(bad, -1, idx)
    half = 0.5 * np.diff(grid)[idx]
    half[bad] = 0
    w = np.zeros(out.shape)
    w[:-1] += half
    w[1:] += half
    return out * w


def convolution_matrix(kernel, grid, bounds, thresh=1e-5):
    """Sparse (b - a, len(grid)) matrix convolving a spectrum on ``grid`` onto ``grid[a:b]``."""
    a, b = bounds
    if callable(kernel):
        ker = _kernel_array(kernel, grid, a, b, thresh)
    else:
        ker = np.asarray(kernel, dtype=np.float64)
        if ker.size == 1:
            ker = np.tile(np.atleast_1d(ker), (b - a, 1)).T
    ker = ker / np.nansum(ker, axis=0)
    n_ker, m = ker.shape
    h = (n_ker - 1) // 2
    values, offsets = [], []
    for i, off in enumerate(range(-h, h + 1)):
        k = a + off
        values.append(ker[i, -k:] if k < 0 else ker[i, :])
        offsets.append(k)
    return sparse.diags(values, offsets, shape=(m, len(grid)), format="csr")


def first_derivative(grid):
    """Sparse (n - 1, n) matrix of the first derivative on ``grid`` (Tikhonov regularisation)."""
    n = len(grid)
    d = sparse.diags([-1.0], shape=(n - 1, n)) + sparse.diags([1.0], 1, shape=(n - 1, n))
    return sparse.diags(1.0 / d.dot(grid)).dot(d)


# ---------------------------------------------------------------------------
# solving and the Tikhonov factor


def solve(matrix, rhs):
    """spsolve, falling back on least squares when the matrix is singular (as jwst does)."""
    from scipy.sparse.linalg import MatrixRankWarning, lsqr, spsolve

    with warnings.catch_warnings():
        warnings.filterwarnings("error", category=MatrixRankWarning)
        try:
            return spsolve(matrix, rhs)
        except MatrixRankWarning:
            log.warning("ATOCA: the linear system is singular; solved by least squares")
            try:
                return lsqr(matrix, rhs)[0]
            except ValueError:
                return np.full(matrix.shape[1], np.nan)


class OrderedSolver:
    """:func:`solve` for a series of matrices of one sparsity structure (the Tikhonov tests: B'B +
    t^2 T'T for several t), ordering the columns once.

    scipy's spsolve orders the columns of each matrix (COLAMD, from the structure alone) before its
    LU factorisation.  Here the first matrix is factorised as spsolve does it, and the others are
    given with their columns already in that order and factorised with no reordering: the same
    elimination, so the same solution to the last bit, without the ordering's cost.  A matrix of
    another structure, or a singular one, goes through :func:`solve`.
    """

    def __init__(self):
        self._structure = None  # (indptr, indices) of the ordered matrices
        self._inverse = None  # the columns' order

    def solve(self, matrix, rhs):
        from scipy.sparse.linalg import MatrixRankWarning, splu, spsolve

        m = sparse.csc_matrix(matrix)
        m.sort_indices()
        known = (self._structure is not None and np.array_equal(m.indptr, self._structure[0])
                 and np.array_equal(m.indices, self._structure[1]))
        with warnings.catch_warnings():
            warnings.filterwarnings("error", category=MatrixRankWarning)
            try:
                if not known:
                    lu = splu(m, permc_spec="COLAMD")
                    out = lu.solve(np.asarray(rhs, dtype=np.float64))
                    if not np.all(np.isfinite(out)):
                        raise MatrixRankWarning("not finite")
                    self._structure = (m.indptr.copy(), m.indices.copy())
                    self._inverse = np.argsort(lu.perm_c)
                    return out
                y = spsolve(m[:, self._inverse], rhs, permc_spec="NATURAL")
            except (MatrixRankWarning, RuntimeError):
                return solve(matrix, rhs)
        out = np.empty_like(y)
        out[self._inverse] = y
        return out


class Tikhonov:
    """min |A f - b|^2 + factor^2 |T f|^2 over the grid points the data constrain."""

    def __init__(self, a_mat, b_vec, t_mat):
        # b_vec: the data over the errors as a (1, n) sparse row, and the products in jwst's order
        self.a, self.b_sparse, self.t = a_mat, sparse.csr_matrix(b_vec), t_mat
        self.b = self.b_sparse.toarray().ravel()
        self.t2 = t_mat.T.dot(t_mat)
        self.a2 = a_mat.T.dot(a_mat)
        self.rhs = a_mat.T.dot(self.b_sparse.T).toarray().ravel()
        self.valid = self.rhs != 0

    def solve(self, factor=1.0):
        # the constrained rows and columns taken once: the same values as the full sum's, sliced
        out = np.full(self.a2.shape[0], np.nan)
        a2, t2 = self._constrained
        out[self.valid] = self._ordered.solve(a2 + factor**2 * t2, self.rhs[self.valid])
        return out

    @property
    def _constrained(self):
        if getattr(self, "_sliced", None) is None:
            v = self.valid
            t2 = sparse.csc_matrix(self.t2)
            self._sliced = (sparse.csc_matrix(self.a2)[v, :][:, v], t2[v, :][:, v])
        return self._sliced

    @property
    def _ordered(self):
        if getattr(self, "_solver", None) is None:
            self._solver = OrderedSolver()
        return self._solver

    def tests(self, factors):
        sol, err, reg = [], [], []
        for f in factors:
            s = self.solve(f)
            sol.append(s)
            err.append(np.asarray(self.a.dot(s) - self.b).ravel())
            reg.append(np.asarray(self.t.dot(s)).ravel())
        return TikhoTests(np.asarray(factors, dtype=np.float64), np.array(sol), np.array(err), np.array(reg))


class TikhoTests:
    """Solutions for a set of factors, and the choice of the best factor (jwst's ``d_chi2``)."""

    THRESH = 1e-3  # on d chi2_cauchy / d log10(factor)

    def __init__(self, factors, solution, error, reg):
        self.factors, self.solution, self.error, self.reg = factors, solution, error, reg

    def merge(self, other: TikhoTests):
        self.factors = np.hstack([self.factors, other.factors])
        self.solution = np.vstack([self.solution, other.solution])
        self.error = np.vstack([self.error, other.error])
        self.reg = np.vstack([self.reg, other.reg])

    @property
    def chi2_cauchy(self):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
            return np.nanmean(np.log(1 + self.error**2), axis=-1).squeeze()

    def best_factor(self):
        from scipy.interpolate import Akima1DInterpolator, UnivariateSpline

        y = np.atleast_1d(self.chi2_cauchy)
        if len(self.factors) <= 1:
            return float(np.max(self.factors))
        ok = np.isfinite(y)
        srt = np.argsort(self.factors[ok])
        logx = np.log10(self.factors[ok][srt])
        yy = y[ok][srt]
        order = min(3, int(np.sum(ok)) - 1)
        spl = (Akima1DInterpolator(logx, yy, method="makima") if order >= 3
               else UnivariateSpline(logx, yy, k=order, s=0))
        xs = np.linspace(logx[0], logx[-1], 10000)
        d = spl.derivative()(xs)
        if np.any(d > self.THRESH):
            return float(10 ** np.amin(xs[d > self.THRESH]))
        log.warning("ATOCA: dchi2/dlog(factor) never reached the threshold")
        return float(10 ** logx[-1])


def search_factor(tikho: Tikhonov, guess, log_range, n_refine=3):
    """Best factor over 10 factors spanning ``log_range`` around ``guess``, refined ``n_refine`` times."""
    lg = np.log10(guess)
    tests = tikho.tests(np.logspace(lg + log_range[0], lg + log_range[1], 10))
    best = tests.best_factor()
    for _ in range(n_refine):
        f = np.sort(tests.factors)
        dist = np.abs(np.log(f) - np.log(best))
        j = int(np.where(dist == dist.min())[0][0])
        if j == 0:
            new = np.array([f[0] ** 2 / f[1], np.sqrt(f[0] * f[1])])
        elif j == len(f) - 1:
            new = np.array([np.sqrt(f[-1] * f[-2]), f[-1] ** 2 / f[-2]])
        else:
            new = np.array([np.sqrt(f[j] * f[j - 1]), np.sqrt(f[j] * f[j + 1])])
        tests.merge(tikho.tests(new))
        best = tests.best_factor()
    return best, tests
