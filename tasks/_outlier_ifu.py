"""outlier_detection, jwst's ``ifu`` mode (MIR_MRS, NRS_IFU): outliers found by their neighbours.

IFU exposures of one detector are not resampled and compared with a median sky, as images are:
each pixel is compared with its two neighbours across the dispersion (left and right on MIRI,
whose dispersion runs along y; above and below on NIRSpec).  For every exposure the smaller of the
two absolute differences is kept; over all the exposures of a detector the smallest of those.  A
cosmic ray or a bad pixel that hit one exposure leaves that minimum small (the others are clean);
a pixel that differs from its neighbours in every exposure (a real, sharp source) is the same in
all, and so is its minimum.  The minimum is normalised by its local median (a ``kernel_size``
median filter, NaN-aware, zero-padded at the edges, as stcal's ``medfilt``; never below a third of
the image's median) and the pixels above the ``threshold_percent`` percentile of the normalised
minimum (taken inside a 4-pixel border) are flagged DO_NOT_USE + OUTLIER and set to NaN in every
exposure of that detector.  ``ifu_second_check`` also flags the pixels whose minimum is NaN.

Memory: one running minimum per detector (``np.fmin`` over exposures gives the same values as a
NaN-ignoring minimum over the stack) instead of a stack of every exposure's differences, and the
median filter gathers its windows a block of rows at a time (:func:`median_filter`).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from ..errors import ParameterError
from ..models import dqflags

log = logging.getLogger("webbflow.steps.outlier_detection")

IFU_TYPES = {"MIR_MRS", "NRS_IFU"}


def kernel_shape(kernel_size: str) -> tuple[int, int]:
    """The median filter's (y, x) size from ``"7 7"``; even sizes grow by one, as jwst does."""
    try:
        sizes = [int(v) for v in str(kernel_size).split()]
    except ValueError:
        sizes = []
    if len(sizes) != 2 or min(sizes) < 1:
        raise ParameterError(f"step outlier_detection: 'kernel_size' must be two positive integers, e.g. '7 7' "
                             f"(got {kernel_size!r})")
    out = []
    for s in sizes:
        if s % 2 == 0:
            log.warning("outlier_detection: kernel size %d is even; using %d", s, s + 1)
            s += 1
        out.append(s)
    return out[0], out[1]


def neighbour_difference(sci: np.ndarray, axis: int) -> np.ndarray:
    """Per pixel, the smaller absolute difference with its two neighbours along ``axis`` (float64).

    The first pixel's 'previous' neighbour is 0 (and so the last's 'next'), as in jwst."""
    left = np.abs(np.diff(sci, axis=axis, prepend=0))
    right = np.abs(np.flip(np.diff(np.flip(sci, axis=axis), axis=axis, prepend=0), axis=axis))
    out = np.fmin(left, right).astype(np.float64)
    # nanmin of the pair: NaN only where both are NaN (fmin gives that)
    return out


def difference_axis(instrument: str) -> int:
    name = (instrument or "").upper()
    if name == "MIRI":
        return 1
    if name == "NIRSPEC":
        return 0
    raise ParameterError(f"outlier_detection: ifu mode is for MIRI and NIRSpec (got {instrument or 'no instrument'})")


BLOCK_ROWS = 32  # rows of the median filter's output computed at a time


def median_filter(arr: np.ndarray, kernel: tuple[int, int], block_rows: int = BLOCK_ROWS) -> np.ndarray:
    """stcal's ``medfilt`` (NaN-ignoring median over a zero-padded ``kernel`` window), a block of rows
    at a time: each pixel's median is taken over the same window values, so the result is the same,
    but the windows of only ``block_rows`` rows are gathered at once (stcal gathers all of them: a
    1024 x 1032 image with a 7 x 7 kernel took some 1.5 GiB)."""
    from numpy.lib.stride_tricks import sliding_window_view

    ky, kx = kernel
    padded = np.pad(arr, [[ky // 2], [kx // 2]])
    out = np.empty(arr.shape, dtype=np.result_type(arr.dtype, np.float64) if arr.dtype.kind != "f" else arr.dtype)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "All-NaN", RuntimeWarning)
        for r0 in range(0, arr.shape[0], block_rows):
            r1 = min(r0 + block_rows, arr.shape[0])
            windows = sliding_window_view(padded[r0:r1 + ky - 1], (ky, kx))
            out[r0:r1] = np.nanmedian(windows, axis=(-2, -1))
    return out


def outlier_mask(minimum: np.ndarray, kernel: tuple[int, int], threshold_percent: float) -> np.ndarray:
    """The pixels whose normalised minimum difference is above the percentile cut."""
    ny, nx = minimum.shape
    norm = median_filter(minimum, kernel)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        floor = np.nanmedian(minimum) / 3
        norm[norm < floor] = floor
        scaled = minimum / norm
        cut = np.nanpercentile(scaled[4:ny - 4, 4:nx - 4], threshold_percent)
    log.debug("outlier_detection ifu: flag above the %g percentile, %g", threshold_percent, cut)
    return scaled > cut


def _member_keys(library, i) -> tuple:
    """INSTRUME, DETECTOR and EXP_TYPE of a member: its metadata when it is in memory, else its
    primary header alone (no metadata tree, no WCS read)."""
    if library.in_memory(i):
        m = library.read_metadata(i)
        return m.instrument.name, m.instrument.detector, m.exposure.type
    h = library.primary_header(i)
    return h.get("INSTRUME"), h.get("DETECTOR"), h.get("EXP_TYPE")


def flag_outliers_ifu(library, params):
    """jwst's ``ifu`` mode on a library of IFU cal exposures (IFUImageModel): flags in place."""
    from .flat_field import match_nans_and_flags

    kernel = kernel_shape(params.kernel_size)
    # what is needed of every member: three primary keywords, read without the metadata tree and WCS
    keys = [_member_keys(library, i) for i in range(len(library))]
    axis = difference_axis(str(keys[0][0] or ""))
    detectors = [str(k[1] or "").lower() for k in keys]
    bad_bit = np.uint32(dqflags.DO_NOT_USE)
    flag_bits = np.uint32(dqflags.DO_NOT_USE | dqflags.OUTLIER)
    log.info("outlier_detection: ifu mode on %d %s exposures", len(library), keys[0][2])
    for det in sorted(set(detectors)):  # jwst goes through np.unique's (sorted) detectors
        indices = [i for i, d in enumerate(detectors) if d == det]
        minimum = None
        for i in indices:
            # the first pass reads only SCI and DQ: nothing is changed yet, nothing is written
            data, dq = library.read_arrays(i, ("data", "dq"))
            if data.ndim != 2:
                raise ParameterError(f"outlier_detection: {library.filenames[i]}: ifu mode needs 2-D exposures "
                                     f"(got {data.shape})")
            if minimum is not None and data.shape != minimum.shape:
                raise ParameterError(f"outlier_detection: {library.filenames[i]} is {data.shape}; the other "
                                     f"{det} exposures are {minimum.shape}")
            sci = np.where((dq & bad_bit) != 0, np.float32(np.nan), data)
            del data, dq
            diff = neighbour_difference(sci, axis)
            del sci
            minimum = diff if minimum is None else np.fmin(minimum, diff)
        mask = outlier_mask(minimum, kernel, params.threshold_percent)
        nan_min = np.isnan(minimum) if params.ifu_second_check else None
        del minimum
        for i in indices:
            model = library.borrow(i)
            try:
                sci, dq = model.data, model.dq
                sci[(dq & bad_bit) != 0] = np.nan
                sci[mask] = np.nan
                dq[mask] |= flag_bits
                extra = 0
                if nan_min is not None:
                    extra = int(np.count_nonzero(~np.isnan(sci[nan_min])))
                    sci[nan_min] = np.nan
                    dq[nan_min] |= flag_bits
                total = int(np.count_nonzero(mask)) + extra
                log.info("%s: %d pixels flagged as outliers (%.2f%%)", model.meta.filename, total,
                         100.0 * total / sci.size)
                match_nans_and_flags(model)
                model.meta.cal_step.outlier_detection = "COMPLETE"
            finally:
                library.shelve(i, model, modify=True)
    return library
