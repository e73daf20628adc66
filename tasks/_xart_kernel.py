"""The MIRI MRS cross-artifact model as a compiled kernel (numba).

Light landing on an MRS detector pixel is partly scattered along its row: a Lorentzian core and
two pairs of Gaussians offset by +-dx and +-2 dx (the outer pair twice as wide).  The model of one
row is the sum, over the source columns [imin, imax), of each column's flux times that profile
centred on it, with the row's own parameters.

jwst 3.0 evaluates the profile afresh for every (row, output column, source column) triple in its
C extension: about 2 x 10^9 exponentials for a half detector.  The profile depends only on the
column offset, so here it is tabulated once per row (2 ncols - 1 offsets) and the row's model is
the sum over source columns of flux times the tabulated profile: the same sums, in the same order
of source columns, with each term's factors grouped differently (agreement to ~1e-15 relative).
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def _profile(d, lor_amp, gam2, g1_amp, g2_amp, s2, dxg):  # pragma: no cover - compiled
    a = d - dxg
    b = d + dxg
    c = d - 2 * dxg
    e = d + 2 * dxg
    return (lor_amp * gam2 / (gam2 + d * d)
            + g1_amp * math.exp(-(a * a) / (2 * s2)) + g1_amp * math.exp(-(b * b) / (2 * s2))
            + g2_amp * math.exp(-(c * c) / (8 * s2)) + g2_amp * math.exp(-(e * e) / (8 * s2)))


@numba.njit(cache=True, parallel=True)
def _xart_rows(flux, xcol, imin, imax, gamma, lor_amp, g_std, g_dx, g1_amp, g2_amp):  # pragma: no cover - compiled
    """Output columns at the whole-number positions ``xcol``: the profile tabulated per row."""
    nrows, ncols = flux.shape
    nout = xcol.size
    out = np.zeros((nrows, nout), dtype=np.float64)
    lo = xcol.min() - (imax - 1)
    hi = xcol.max() - imin
    for r in numba.prange(nrows):
        gam2 = gamma[r] * gamma[r]
        s2 = g_std[r] * g_std[r]
        prof = np.empty(hi - lo + 1, dtype=np.float64)
        for k in range(hi - lo + 1):
            prof[k] = _profile(float(lo + k), lor_amp[r], gam2, g1_amp[r], g2_amp[r], s2, g_dx[r])
        row = out[r]
        for ii in range(imin, imax):
            f = flux[r, ii]
            if f == 0.0:
                continue
            base = -ii - lo
            for x in range(nout):
                row[x] += f * prof[xcol[x] + base]
    return out


@numba.njit(cache=True, parallel=True)
def _xart_rows_any(flux, xvec, imin, imax, gamma, lor_amp, g_std, g_dx, g1_amp, g2_amp):  # pragma: no cover - compiled
    """Output columns at any positions ``xvec``: the profile evaluated for every term."""
    nrows, ncols = flux.shape
    nout = xvec.size
    out = np.zeros((nrows, nout), dtype=np.float64)
    for r in numba.prange(nrows):
        gam2 = gamma[r] * gamma[r]
        s2 = g_std[r] * g_std[r]
        for ii in range(imin, imax):
            f = flux[r, ii]
            if f == 0.0:
                continue
            for x in range(nout):
                out[r, x] += f * _profile(xvec[x] - ii, lor_amp[r], gam2, g1_amp[r], g2_amp[r], s2, g_dx[r])
    return out


def xartifact_model(image, xvec, imin: int, imax: int, lor_fwhm, lor_amp, g_fwhm, g_dx, g1_amp, g2_amp) -> np.ndarray:
    """The cross-artifact model (float64, the image's shape) of the source columns [imin, imax);
    negative fluxes count as 0.  Per-row parameters are arrays of the image's row count."""
    flux = np.asarray(image, dtype=np.float64).copy()
    flux[flux < 0.0] = 0.0
    nrows = flux.shape[0]

    def per_row(v):
        return np.ascontiguousarray(np.broadcast_to(np.asarray(v, dtype=np.float64), (nrows,)))

    gamma = per_row(lor_fwhm) / 2.0
    g_std = per_row(g_fwhm) / (2 * np.sqrt(2.0 * np.log(2)))
    xvec = np.ascontiguousarray(xvec, dtype=np.float64)
    args = (int(imin), int(imax), gamma, per_row(lor_amp), g_std, per_row(g_dx), per_row(g1_amp), per_row(g2_amp))
    if np.array_equal(xvec, np.round(xvec)):
        return _xart_rows(flux, xvec.astype(np.int64), *args)
    return _xart_rows_any(flux, xvec, *args)
