"""align_refs: the PSF-reference stack shifted onto a coronagraphic science exposure
(jwst's AlignRefsStep; coron3's ``<exposure>_<asn_id>_psfalign.fits``).

1. Bad pixels (DQ with any of ``bad_bits``, or NaN) of the science cube and of the PSF stack
   are replaced, one after the other in row order, by the median of the good finite pixels in
   a ``median_box_length`` box around them (0 where there are none; a box that would start
   before the first row or column holds nothing).  The inputs are changed in place, as jwst's
   pipeline changes them.
2. For each PSF integration, a least-squares fit finds the shift (x, y) and scale that make
   the first science integration, Fourier-shifted and scaled, match it, each pixel weighted
   by the ``psfmask`` reference (1 off the mask, 0 under it).
3. Each PSF integration and its error are Fourier-shifted back by its shift: the result is a
   cube shaped as the PSF stack, aligned to the science target.
"""

from __future__ import annotations

import logging

import numpy as np
from pydantic import Field

from ..errors import ParameterError
from ..models import dqflags
from .base import StepParams, step

log = logging.getLogger("webbflow.steps.align_refs")


class AlignRefsParams(StepParams):
    median_box_length: int = Field(3, ge=0)  # box size of the median filter replacing bad pixels
    bad_bits: str = "DO_NOT_USE"  # the DQ flags of bad pixels


class TargetAndPsfs:
    """The two inputs of align_refs and klip: a science cube and a PSF cube.  Its metadata, which
    selects the references, is the science exposure's."""

    def __init__(self, target, psfs):
        self.target = target
        self.psfs = psfs

    @property
    def meta(self):
        return self.target.meta


def bad_bit_value(bad_bits: str) -> int:
    from astropy.nddata.bitmask import interpret_bit_flags

    try:
        value = interpret_bit_flags(bad_bits, flag_name_map=dqflags.PIXEL)
    except (ValueError, TypeError) as exc:
        raise ParameterError(f"step align_refs: bad_bits {bad_bits!r} is not a DQ flag expression ({exc})") from None
    return 0 if value is None else int(value)


def replace_bad_pixels(cube, box: int, bad: int) -> int:
    """Replace the bad pixels of every integration of ``cube`` in place; returns how many."""
    half = int(box / 2)
    total = 0
    miri = (cube.meta.instrument.name or "").upper() == "MIRI"
    for k in range(cube.data.shape[0]):
        img = cube.data[k]
        dq = cube.dq[k]
        flagged = ((dq & bad) > 0) | np.isnan(img)
        if miri:  # pixels outside the science aperture are zeroed, not filled
            outside = flagged & ((dq & dqflags.NON_SCIENCE) > 0)
            img[outside] = 0
            flagged &= ~outside
        rows, cols = np.nonzero(flagged)
        total += rows.size
        for r, c in zip(rows.tolist(), cols.tolist()):
            # negative starts behave as Python slices do (an empty box at the first rows/columns)
            vals = img[r - half: r + half + 1, c - half: c + half + 1]
            flags = dq[r - half: r + half + 1, c - half: c + half + 1]
            good = np.isfinite(vals) & ((flags & bad) == 0)
            img[r, c] = np.median(vals[good]) if good.any() else 0.0
    return total


def _residual(p, reference_fft, psf, mask):
    """Weighted difference between a PSF image and the reference image shifted by (p0, p1), scaled by p2."""
    from scipy.ndimage import fourier_shift

    moved = np.fft.ifftn(fourier_shift(reference_fft, np.asanyarray(p[:2])[::-1])).real
    return ((psf - p[2] * moved) * mask).ravel()


def fit_shift(reference: np.ndarray, psf: np.ndarray, mask: np.ndarray, spectrum=None) -> np.ndarray:
    """``(dx, dy, scale)`` of ``psf`` relative to ``reference`` (least squares, Fourier shifts);
    ``spectrum``, ``np.fft.fftn(reference)``, when it is shared between fits."""
    from scipy.optimize import leastsq

    if spectrum is None:
        spectrum = np.fft.fftn(reference)
    best, _ = leastsq(_residual, [0.0, 0.0, 1.0], args=(spectrum, psf, mask), xtol=1e-15, ftol=1e-15)
    return best


def shift_image(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``img`` moved by (dx, dy) pixels through the Fourier shift theorem."""
    from scipy.ndimage import fourier_shift

    return np.fft.ifftn(fourier_shift(np.fft.fftn(img), np.asanyarray([dx, dy])[::-1])).real


def _map_fits(fit, n: int) -> list:
    """``[fit(0), ..., fit(n - 1)]``, the fits spread over the cores on threads.

    Each fit is independent and deterministic (the same float32 arithmetic in the same order as
    one after the other, so the same shifts bit for bit); the FFTs, which are most of a fit's
    time, run without the GIL."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    workers = min(n, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    if workers <= 1:
        return [fit(k) for k in range(n)]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="align_refs") as pool:
        return list(pool.map(fit, range(n)))


def align_psfs(target, psfs, mask):
    """The PSF cube aligned to the first integration of ``target``; returns ``(cube, shifts)``."""
    from .. import models

    ref = target.data[0]
    if mask.shape != ref.shape:
        raise ParameterError(f"align_refs: the psfmask is {mask.shape} pixels, the science image {ref.shape}")
    spectrum = np.fft.fftn(ref)  # the science image's transform, once for every PSF integration
    shifts = np.array(_map_fits(lambda k: fit_shift(ref, psfs.data[k], mask, spectrum), psfs.data.shape[0]),
                      dtype=np.float64)
    out = models.CubeModel(data=np.array([shift_image(psfs.data[k], -shifts[k, 0], -shifts[k, 1])
                                          for k in range(len(shifts))]))
    if psfs.err is not None:
        out.err = np.array([shift_image(psfs.err[k], -shifts[k, 0], -shifts[k, 1]) for k in range(len(shifts))])
    out.dq = np.zeros(out.data.shape, np.uint32)
    out.meta = psfs.meta.model_copy(deep=True)
    out.meta.wcs = None
    out.meta.model_type = "CubeModel"
    if "PRIMARY" in psfs._headers:
        out._headers["PRIMARY"] = psfs._headers["PRIMARY"].copy()
    return out, shifts


@step("align_refs", "AlignRefsStep", params=AlignRefsParams, reftypes=("psfmask",), suffix="psfalign",
      cal_step="align_psfs", input_class="CubeModel")
def align_refs(pair: TargetAndPsfs, refs, params: AlignRefsParams):
    """Replace bad pixels, then shift the PSF-reference stack onto the science target."""
    from .base import report_qa

    bad = bad_bit_value(params.bad_bits)
    n_psf = replace_bad_pixels(pair.psfs, params.median_box_length, bad)
    n_sci = replace_bad_pixels(pair.target, params.median_box_length, bad)
    mask = np.asarray(refs["psfmask"].data)
    out, shifts = align_psfs(pair.target, pair.psfs, mask)
    for k, (dx, dy, beta) in enumerate(shifts):
        log.info("PSF integration %d: shift (%.4f, %.4f) px, scale %.5f", k + 1, dx, dy, beta)
    report_qa(**{"pixels replaced": n_psf + n_sci, "max shift px": float(np.abs(shifts[:, :2]).max())})
    return out
