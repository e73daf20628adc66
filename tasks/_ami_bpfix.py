"""Fourier-plane repair of bad pixels in AMI images (jwst's ``run_bpfix``).

The image of a source through the mask has no power outside the mask's transfer function (the
autocorrelation of the pupil).  A bad pixel adds power everywhere, so its value can be solved for
as the one that cancels the power in the empty part of the Fourier plane.  New bad pixels are
found on the way, as outliers of the image filtered to that empty region, for up to ten rounds.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.ndimage import median_filter

from ._ami_lg import matrix_dft

# the filters' centre wavelengths and half-power points (metres), as jwst 3.0's bp_fix has them
FILTER_CENTRE = {"F277W": 2.776e-6, "F380M": 3.828e-6, "F430M": 4.286e-6, "F480M": 4.817e-6,
                 "F356W": 3.595e-6, "F444W": 4.435e-6}
FILTER_HALF_POWER = {"F277W": (2.413e-6, 3.142e-6), "F380M": (3.726e-6, 3.931e-6),
                     "F430M": (4.182e-6, 4.395e-6), "F480M": (4.669e-6, 4.971e-6),
                     "F356W": (3.141e-6, 4.068e-6), "F444W": (3.880e-6, 5.023e-6)}
PUPIL_DIAMETER = 6.603464  # metres, circumscribing the pupil the nrm array spans
GAIN = 1.61
READ_NOISE = 18.32
DO_NOT_USE, JUMP_DET = 1, 4


def support_wavelengths(filt):
    c = FILTER_CENTRE[filt]
    lo, hi = FILTER_HALF_POWER[filt]
    return c, c - (c - lo) * 1.1, c + (hi - c) * 1.1


def pupil_support(filt, npix, pxsc_rad, pupil):
    """|FT| of the mask's image summed at three wavelengths: the transfer function's support."""
    img = np.zeros((npix, npix), float)
    for wl in support_wavelengths(filt):
        field = matrix_dft(pupil, npix * pxsc_rad / (wl / PUPIL_DIAMETER), npix)
        img += (field * field.conj()).real
    return np.abs(matrix_dft(img, img.shape[0], img.shape[0]))


def _outliers(img, size=3, threshold=50.0):
    diff = np.abs(img - median_filter(img, size=size))
    return (diff > threshold * np.median(diff)).astype(bool)


def fourier_fill(data, bad, empty):
    """``data`` with the ``bad`` pixels replaced by the values that cancel the power in ``empty``
    (a half-plane mask of the real FFT)."""
    where = np.where(bad > 0.5)
    out = data.copy()
    if where[0].size == 0:
        return out
    where_ft = np.where(empty)
    n0, n1 = data.shape
    h0, h1 = n0 // 2, n1 // 2
    fx, fy = np.meshgrid(2.0 * np.pi * np.arange(h1 + 1) / n1, 2.0 * np.pi * ((np.arange(n0) + h0) % n0 - h0) / n0)
    rows = np.zeros((where[0].size, where_ft[0].size * 2))
    for k in range(where[0].size):
        e = np.exp(-1j * (where[0][k] * fy + where[1][k] * fx))[where_ft]
        rows[k] = np.append(e.real, e.imag)
    rt = np.transpose(np.conj(rows))
    pinv = np.dot(rt, np.linalg.inv(np.dot(rows, rt)))
    out[where] = 0.0
    ft = np.fft.rfft2(out)[where_ft]
    out[where] += -np.real(np.dot(np.append(ft.real, ft.imag), pinv))
    return out


def fix_bad_pixels(data, dq, filt, pxsc_mas, pupil):
    """Repair (in place) and return ``(data, flags)`` for a stack of square AMI crops.

    ``flags`` is 1 where a pixel was repaired (DO_NOT_USE or JUMP_DET in ``dq``, or found), 0
    elsewhere, on the even-sized part of the crop; the odd last row and column keep their DQ.
    """
    flagged = np.where(((dq & DO_NOT_USE) == DO_NOT_USE) | ((dq & JUMP_DET) == JUMP_DET), dq, 0)
    nans = np.argwhere(np.isnan(data))
    if len(nans) > 1:  # (a lone NaN is left as it is, as jwst 3.0 does)
        for i, y, x in nans:
            data[i, y, x] = 0
            dq[i, y, x] += 1
    pxsc_rad = pxsc_mas / 1000 * np.pi / (60 * 60 * 180)
    half = data.shape[-1] // 2
    cvis = pupil_support(filt, 2 * half, pxsc_rad, pupil)
    cvis /= np.max(cvis)
    empty = np.fft.fftshift(cvis < 0.001)[:, :2 * half // 2 + 1]
    ny = data.shape[1] - data.shape[1] % 2
    nx = data.shape[2] - data.shape[2] % 2
    for j in range(data.shape[0]):
        cut = data[j, :ny, :nx].copy()
        orig = cut.copy()
        bad = flagged[j, :ny, :nx] > 0.5
        for _ in range(10):
            cut = fourier_fill(cut, bad, empty)
            hi = np.real(np.fft.irfft2(np.fft.rfft2(cut) * empty))
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=RuntimeWarning, message="invalid value encountered")
                noise = np.sqrt(median_filter(cut, size=3) / GAIN + READ_NOISE ** 2)
            hi /= noise
            found = _outliers(hi)
            if np.sum(found[bad < 0.5]) == 0:
                break
            bad = ((bad > 0.5) | (found > 0.5)).astype(bool)
        data[j, :ny, :nx] = fourier_fill(orig, bad, empty)
        flagged[j, :ny, :nx] = bad
    return data, flagged
