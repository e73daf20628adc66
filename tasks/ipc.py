"""ipc: correct inter-pixel capacitance by convolving each group with the IPC kernel.

jwst's IPCStep.  The IPC reference holds a deconvolution kernel, either one
small 2-D kernel (ky, kx) for the whole detector or a 4-D kernel
(ky, kx, ny, nx) with one kernel per pixel.  Each group's science pixels
(reference pixels excluded) are replaced by the sum over the kernel of the
kernel weight times the neighbouring science pixel, with zeros beyond the
science region.  Reference pixels are left alone.

Here all groups of all integrations are convolved at once.  NIRSpec IRS2
readouts (3200-row frames) are convolved on their 2048 normal rows only,
the interleaved reference rows dropped and left as they are, as in jwst.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ._convert import as_ramp
from ._subarray import is_subarray
from .base import StepParams, step

log = logging.getLogger("webbflow.steps")


class IPCParams(StepParams):
    """IPCStep has no parameters of its own."""


@dataclass(frozen=True)
class RefPixels:
    bottom_rows: int
    top_rows: int
    left_columns: int
    right_columns: int


def num_ref_pixels(model) -> RefPixels:
    """How many reference rows/columns the data hold on each edge (science orientation)."""
    sub = model.meta.subarray
    x0 = sub.xstart - 1
    if str(model.meta.instrument.name).upper() == "MIRI":
        return RefPixels(0, 0, max(0, 4 - x0), max(0, x0 + sub.xsize - 1028))
    y0 = sub.ystart - 1
    return RefPixels(
        max(0, 4 - y0), max(0, y0 + sub.ysize - 2044), max(0, 4 - x0), max(0, x0 + sub.xsize - 2044)
    )


def kernel_for(model, ipc_ref) -> np.ndarray:
    """The 2-D kernel, or the 4-D kernel cut to the science subarray."""
    k = np.asarray(ipc_ref.data)
    if k.ndim == 2:
        return k
    if not is_subarray(model):
        return k
    sub = model.meta.subarray
    x0, y0 = sub.xstart - 1, sub.ystart - 1
    return k[:, :, y0 : y0 + sub.ysize, x0 : x0 + sub.xsize]


def ipc_convolve(data: np.ndarray, kernel: np.ndarray, nref: RefPixels) -> None:
    """Convolve the science region of ``data`` (..., ny, nx) with ``kernel``, in place.

    Sums are accumulated in the data's dtype, the kernel's central weight
    last, like jwst, so results agree to rounding.
    """
    ky, kx = kernel.shape[:2]
    ny_all, nx_all = data.shape[-2:]
    ny = ny_all - (nref.bottom_rows + nref.top_rows)
    nx = nx_all - (nref.left_columns + nref.right_columns)
    y0, x0 = nref.bottom_rows, nref.left_columns
    bb, lb = ky // 2, kx // 2
    tb, rb = ky - bb - 1, kx - lb - 1
    lead = data.shape[:-2]
    sci = data[..., y0 : y0 + ny, x0 : x0 + nx]
    # the science region, padded with zeros by half the kernel on each side
    pad = np.zeros(lead + (ny + bb + tb, nx + lb + rb), dtype=data.dtype)
    pad[..., bb : bb + ny, lb : lb + nx] = sci
    acc = np.zeros(lead + (ny, nx), dtype=data.dtype)
    if kernel.ndim == 4:
        kpix = np.asarray(kernel[:, :, y0 : y0 + ny, x0 : x0 + nx], dtype=kernel.dtype)
    mj, mi = ky // 2, kx // 2
    order = [(j, i) for j in range(ky) for i in range(kx) if (j, i) != (mj, mi)] + [(mj, mi)]
    for j, i in order:
        js, is_ = ky - j - 1, kx - i - 1
        shifted = pad[..., js : js + ny, is_ : is_ + nx]
        if kernel.ndim == 2:
            acc += kernel[j, i] * shifted
        else:
            acc += kpix[j, i] * shifted
    sci[...] = acc


def ipc_convolve_fast(data: np.ndarray, kernel: np.ndarray, nref: RefPixels) -> bool:
    """:func:`ipc_convolve` with the compiled kernel, same arithmetic; False when it does not apply.

    Every group is convolved in a row-parallel loop into one scratch plane
    and copied back, instead of numpy's padded copy, accumulator and one
    temporary per kernel element.
    """
    if data.dtype != np.float32 or kernel.dtype not in (np.float32, np.float64) or data.ndim < 2:
        return False
    try:
        from ._ipc_kernel import convolve_planes
    except ImportError:
        return False
    ky, kx = kernel.shape[:2]
    ny = data.shape[-2] - (nref.bottom_rows + nref.top_rows)
    nx = data.shape[-1] - (nref.left_columns + nref.right_columns)
    if ny <= 0 or nx <= 0:
        return True
    y0, x0 = nref.bottom_rows, nref.left_columns
    planes = data.reshape((-1,) + data.shape[-2:])
    k = np.ascontiguousarray(kernel)
    if k.ndim == 4:
        k = np.ascontiguousarray(k[:, :, y0 : y0 + ny, x0 : x0 + nx])
    else:
        k = k.reshape(ky, kx, 1, 1)
    mj, mi = ky // 2, kx // 2
    order = [(j, i) for j in range(ky) for i in range(kx) if (j, i) != (mj, mi)] + [(mj, mi)]
    convolve_planes(planes, k, np.array(order, dtype=np.int64), y0, x0, ny, nx, k.dtype == np.float64)
    return True


@step("ipc", "IPCStep", params=IPCParams, reftypes=("ipc",), suffix="ipc")
def ipc(model, refs, params):
    """Apply the IPC deconvolution kernel to every group; ``data`` is updated in place."""
    ramp = as_ramp(model)
    if None in (ramp.meta.subarray.xstart, ramp.meta.subarray.ystart, ramp.meta.subarray.xsize, ramp.meta.subarray.ysize):
        raise ValueError("ipc: the exposure has no SUBSTRT/SUBSIZE keywords")
    nref = num_ref_pixels(ramp)
    kernel = kernel_for(ramp, refs["ipc"])
    if max(ramp.data.shape[-2:]) > 2048:
        from ._irs2 import dms_row_mask

        rows = dms_row_mask(ramp)
        for i in range(ramp.data.shape[0]):
            normal = np.ascontiguousarray(ramp.data[i][:, rows, :])
            if not ipc_convolve_fast(normal, kernel, nref):
                ipc_convolve(normal, kernel, nref)
            ramp.data[i][:, rows, :] = normal
        return ramp
    if ipc_convolve_fast(ramp.data, kernel, nref):
        return ramp
    # one integration at a time keeps the padded copy and the accumulator small
    for i in range(ramp.data.shape[0]):
        ipc_convolve(ramp.data[i], kernel, nref)
    return ramp
