"""Compiled IPC convolution with the arithmetic of ``ipc.ipc_convolve`` (and jwst's IPC step).

For each group plane, each science pixel becomes the sum over the kernel of
weight times the neighbouring science pixel (zero beyond the science region),
accumulated in the data's precision (float32, or float64 products rounded to
float32 for a float64 kernel, as numpy's in-place ``+=`` does), in the given
order: the central weight last.  Group planes run in parallel and each
kernel weight is applied along a whole row at a time; each plane is written
to a scratch plane and copied back, so every output reads the input values.
"""

from __future__ import annotations

import numba
import numpy as np

from ._threads import run_rows


@numba.njit(cache=True, inline="always")
def _add(acc, x, w, v, wide):
    if wide:
        acc[x] = np.float32(np.float64(acc[x]) + np.float64(w) * np.float64(v))
    else:
        acc[x] = np.float32(acc[x] + np.float32(np.float32(w) * v))


@numba.njit(cache=True)
def _tap(acc, src, wrow, dx, nx, wide, pp, zero_row):
    """acc[x] += w * src[x + dx] (0 beyond the row) for one kernel weight, in the data's precision."""
    lo = max(0, -dx)
    hi = min(nx, nx - dx)
    if zero_row:
        lo = hi = nx
    zero = np.float32(0.0)
    for x in range(0, min(lo, nx)):
        _add(acc, x, wrow[x * pp], zero, wide)
    if pp == 0 and not wide:
        w = np.float32(wrow[0])
        a = acc[lo:hi]
        b = src[lo + dx : hi + dx]
        for k in range(hi - lo):  # the common case, kept simple so that it vectorizes
            a[k] = a[k] + w * b[k]
    elif pp == 0:
        w = wrow[0]
        for x in range(lo, hi):
            _add(acc, x, w, src[x + dx], wide)
    else:
        for x in range(lo, hi):
            _add(acc, x, wrow[x], src[x + dx], wide)
    for x in range(max(hi, lo), nx):
        _add(acc, x, wrow[x * pp], zero, wide)


def convolve_planes(planes, kernel, order, y0, x0, ny, nx, wide):
    """planes (n, rows, cols) float32, updated in place; kernel (ky, kx, 1 | ny, 1 | nx).

    Planes are spread over the process's threads (:func:`run_rows`), each
    into its own scratch plane.
    """
    run_rows(_convolve_block, planes.shape[0], planes, kernel, order, y0, x0, ny, nx, wide)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _convolve_block(lo, hi, planes, kernel, order, y0, x0, ny, nx, wide):
    ky, kx = kernel.shape[0], kernel.shape[1]
    bb, lb = ky // 2, kx // 2
    pp = 1 if kernel.shape[2] > 1 else 0  # per-pixel kernels are indexed by the pixel
    ntaps = order.shape[0]
    for p in range(lo, hi):
        out = np.empty((ny, nx), np.float32)
        acc = np.empty(nx, np.float32)
        for y in range(ny):
            acc[:] = 0.0
            for t in range(ntaps):
                j = order[t, 0]
                i = order[t, 1]
                sy = y + (ky - j - 1) - bb
                dx = (kx - i - 1) - lb
                wrow = kernel[j, i, y * pp]
                inside = sy >= 0 and sy < ny
                src = planes[p, y0 + (sy if inside else 0), x0 : x0 + nx]
                _tap(acc, src, wrow, dx, nx, wide, pp, not inside)
            # element by element: an array assigned to a slice compiles numba's shape-mismatch
            # error path (string formatting), which took most of this kernel's compile time
            for x in range(nx):
                out[y, x] = acc[x]
        for y in range(ny):
            for x in range(nx):
                planes[p, y0 + y, x0 + x] = out[y, x]
