"""The ATOCA detector model: detector pixels as a sparse linear function of the spectrum.

For each order n, a pixel's value is

    model_i = P_i / sigma_i * sum_k w_ik * (T * lambda)_k * (C_n f)_k

with P the order's spatial profile, w the integration weights of the (convolved) wavelength grid
over the pixel's wavelength span, T the throughput, C_n the spectral convolution matrix and f the
spectrum on the wavelength grid; the orders add.  :class:`Engine` builds that matrix once (for a
wavelength map, profile, mask and grid), and from it the fit (least squares, optionally with a
Tikhonov term) and the model images.  This is the model jwst 3.0's ATOCA solves, with the same
pixel masks, grid bounds and integration weights (an oversampled trapezoid whose first node sits
one grid step below the pixel's lower edge, as jwst's weights do).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from . import _atoca_utils as U


class MaskOverlapError(ValueError):
    """Too few pixels left to model an order."""


MIN_GOOD_PIXELS = 25


class Engine:
    def __init__(self, wave_maps, profiles, throughputs, kernels, wave_grid, masks, global_mask=None,
                 threshold=1e-3):
        self.wave_map = np.array(wave_maps, dtype=np.float64)
        self.profile = np.array(profiles, dtype=np.float64)
        self.mask_profile = np.array(masks, dtype=bool)
        self.threshold = threshold
        self.shape = self.wave_map[0].shape
        grid = np.asarray(wave_grid, dtype=np.float64)
        if not (np.diff(grid) > 0).all():
            grid = np.unique(grid)
        self.grid = grid.copy()
        self.n_k = len(grid)
        edges = [U.pixel_edges(w) for w in self.wave_map]
        self.wave_p = np.array([e[0] for e in edges])
        self.wave_m = np.array([e[1] for e in edges])
        self.n_orders = len(self.wave_map)
        self.bounds = [[0, self.n_k] for _ in range(self.n_orders)]
        self.mask, self.mask_ord = self._masks(global_mask)
        if np.any(np.sum(~self.mask_ord, axis=(-2, -1)) < MIN_GOOD_PIXELS):
            raise MaskOverlapError(f"an order has fewer than {MIN_GOOD_PIXELS} pixels to model")
        self.bounds = self._bounds()
        self.throughput = np.array([t(self.grid) if callable(t) else np.asarray(t, dtype=np.float64)
                                    for t in throughputs])
        self.mask, self.mask_ord = self._masks(global_mask)
        self.kernels = [self._kernel(k, i) for i, k in enumerate(kernels)]
        self.weights = [self._weights(i) for i in range(self.n_orders)]
        self._right = [None] * self.n_orders  # w . (T lambda) . C per order, without the profile
        self._tikho = None

    # -- masks and bounds ---------------------------------------------------

    def _mask_wave(self, i):
        a, b = self.bounds[i]
        return (self.wave_m[i] < self.grid[a]) | (self.wave_p[i] > self.grid[b - 1])

    def _masks(self, global_mask):
        mask_wave = np.array([self._mask_wave(i) for i in range(self.n_orders)])
        parts = [self.mask_profile, mask_wave]
        if global_mask is not None:
            parts.append(np.broadcast_to(global_mask, mask_wave.shape))
        mask_ord = np.any(parts, axis=0)
        general = np.all(mask_ord, axis=0)
        lit = np.all(self.profile > self.threshold, axis=0)
        general |= np.any(mask_wave, axis=0) & lit
        return general, mask_wave | general[None]

    def _bounds(self):
        out = []
        for i in range(self.n_orders):
            w = self.wave_map[i][~self.mask_ord[i]]
            a = np.min(np.where(self.grid >= w.min())[0])
            b = np.max(np.where(self.grid <= w.max())[0]) + 1
            out.append([int(max(a, self.bounds[i][0])), int(min(b, self.bounds[i][1]))])
        return out

    def grid_c(self, i):
        return self.grid[slice(*self.bounds[i])]

    def _kernel(self, k, i):
        a, b = self.bounds[i]
        if k is None:
            k = np.array([1.0])
        if sparse.issparse(k):
            if k.shape != (b - a, self.n_k):
                raise ValueError("kernel shape is inconsistent with the wavelength grid")
            return k
        thresh = getattr(k, "min_value", 1e-5)
        return U.convolution_matrix(k, self.grid, (a, b), thresh=thresh)

    # -- integration weights --------------------------------------------------

    def _weights(self, i):
        a, b = self.bounds[i]
        g = self.grid[a:b]
        dg = np.diff(g)
        valid = ~self.mask
        wp = self.wave_p[i][valid].copy()
        wm = self.wave_m[i][valid].copy()
        ma = self.mask_ord[i][valid]
        n = len(wp)
        lo = np.searchsorted(g, wm, side="right") - 1
        hi = np.searchsorted(g, wp) - 1
        lo[ma], hi[ma] = -1, -2
        first = np.full(n, -1)
        last = np.full(n, -1)
        ok = ~ma
        on = (g[lo] == wm) & ok
        first[on] = lo[on]
        wm[on] = g[lo[on]]
        first[~(g[lo] == wm) & ok] = lo[~(g[lo] == wm) & ok] - 1
        on_p = (wp == g[hi]) & ok
        last[on_p] = hi[on_p]
        wp[on_p] = g[hi[on_p]]
        last[~(wp == g[hi]) & ok] = hi[~(wp == g[hi]) & ok]
        length = (last + 1 - first).astype(int)
        width = int(length.max())
        cols = np.arange(width)[None, :]
        k = np.where(cols < length[:, None], first[:, None] + cols, -1)
        nk = np.sum(k != -1, axis=-1)
        rows = np.arange(n)
        w = np.zeros(k.shape)
        w[:, 0] = g[k[:, 1]] - wm
        w[rows, nk - 1] = wp - g[k[rows, nk - 2]]
        case = (nk == 2) & ok
        if case.any():
            c = case & (k[:, 0] != lo)
            w[c, 1] += wm[c] - g[k[c, 0]]
            c = case & (k[:, 1] != hi)
            w[c, 0] += g[k[c, 1]] - wp[c]
            w[case, :] *= ((wp[case] - wm[case]) / dg[k[case, 0]])[:, None]
        case = (nk >= 3) & ok
        if case.any():
            m = nk[case]
            w[case, 1] = g[k[case, 1]] - wm[case]
            w[case, m - 2] += wp[case] - g[k[case, m - 2]]
            c = case & (k[:, 0] != lo)
            n1 = g[k[c, 1]] - wm[c]
            n2 = wm[c] - g[k[c, 0]]
            d = dg[k[c, 0]]
            w[c, 0] *= n1 / d
            w[c, 1] += n1 * n2 / d
            c = case & (k[rows, nk - 1] != hi)
            m = nk[c]
            n1 = wp[c] - g[k[c, m - 2]]
            n2 = g[k[c, m - 1]] - wp[c]
            d = dg[k[c, m - 2]]
            w[c, m - 1] *= n1 / d
            w[c, m - 2] += n1 * n2 / d
        case = (nk >= 4) & ok
        if case.any():
            m = nk[case]
            w[case, 1] += g[k[case, 2]] - g[k[case, 1]]
            w[case, m - 2] += g[k[case, m - 2]] - g[k[case, m - 3]]
        case = (nk > 4) & ok
        if case.any():
            ik = np.indices(k.shape)[-1]
            c = case[:, None] & (2 <= ik) & (ik < nk[:, None] - 2)
            r, cc = np.where(c)
            w[r, cc] = dg[k[r, cc] - 1] + dg[k[r, cc]]
        w /= 2.0
        keep = k >= 0
        rr = np.indices(k.shape)[0][keep]
        return sparse.csr_matrix((w[keep], (rr, k[keep])), shape=(n, b - a))

    # -- the linear model -----------------------------------------------------

    def right(self, i):
        """w . diag(T lambda) . C for order ``i`` (cached)."""
        if self._right[i] is None:
            a, b = self.bounds[i]
            prod = (self.throughput[i] * self.grid)[a:b]
            prod = sparse.diags(prod).dot(self.kernels[i])
            self._right[i] = self.weights[i].dot(prod)
        return self._right[i]

    def mapping(self, i, error=None):
        p = self.profile[i][~self.mask]
        if error is not None:
            p = p / error[~self.mask]
        return sparse.diags(p).dot(self.right(i))

    def design(self, error):
        """B with rows (valid pixels) divided by ``error``: the sum of the orders' mappings."""
        b = sparse.csr_matrix((int((~self.mask).sum()), self.n_k))
        for i in range(self.n_orders):
            b = b + self.mapping(i, error)
        return b

    @property
    def tikho_mat(self):
        if self._tikho is None:
            self._tikho = U.first_derivative(self.grid)
        return self._tikho

    def tikhonov(self, data, error):
        b = self.design(error)
        y = sparse.csr_matrix(data[~self.mask] / error[~self.mask])
        return U.Tikhonov(b, y, self.tikho_mat)

    def fit(self, data, error, factor=None):
        """The spectrum on the grid: least squares, with the Tikhonov term if ``factor`` is given."""
        if factor is not None:
            return self.tikhonov(data, error).solve(factor)
        # the same sequence of sparse products as jwst's, so that the rounding (and the adaptive
        # grid built on this solution) is the same
        b = self.design(error)
        y = sparse.csr_matrix(data[~self.mask] / error[~self.mask])
        m = b.T.dot(b)
        rhs = y.dot(b).toarray().squeeze()
        idx = np.nonzero(rhs)[0]
        out = np.full(self.n_k, np.nan)
        out[idx] = U.solve(m[idx, :][:, idx], rhs[idx])
        return out

    def rebuild(self, spectrum, fill_value=0.0):
        model = np.zeros(self.shape)
        for i in range(self.n_orders):
            model[~self.mask] += self.mapping(i).dot(spectrum)
        model[self.mask] = fill_value
        return model

    def rebuild_operator(self):
        """Sparse (valid pixels, n_k) matrix whose product with a spectrum is ``rebuild``'s valid pixels."""
        op = self.mapping(0)
        for i in range(1, self.n_orders):
            op = op + self.mapping(i)
        return op.tocsr()

    def estimate_factor(self, estimate):
        reg = self.tikho_mat.dot(estimate(self.grid))
        return float((int((~self.mask).sum()) / np.nansum(np.asarray(reg) ** 2)) ** 0.5)
