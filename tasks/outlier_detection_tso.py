"""outlier_detection, mode ``tso``: outliers of a time series of integrations (jwst's
OutlierDetectionStep on a TSO cube).

The integrations of one exposure share a pointing, so each pixel is compared with its own
median over time, with no resampling:

1. With ``rolling_window_width`` between 2 and the number of integrations, the median is a
   running median over that many integrations (pixels whose DQ has flags other than the
   ``good_bits`` ones, i.e. weight below ``maskpt`` times the mean weight, left out); otherwise
   it is the NaN-ignoring median of all integrations.
2. A pixel is an outlier when it differs from its median by more than ``snr1`` times its
   error (stcal's ``flag_crs``); it gets DQ ``DO_NOT_USE | OUTLIER`` and NaN in SCI, ERR and
   the variances.

The flow (tso3) saves the flagged cube as ``<root>_<asn_id>_crfints.fits``.
"""

from __future__ import annotations

import logging

import numpy as np

from ..models import dqflags

log = logging.getLogger("webbflow.steps.outlier_detection")

TSO_EXPTYPES = {"NIS_SOSS", "MIR_LRS-SLITLESS", "NRC_TSGRISM", "NRS_BRIGHTOBJ", "NRC_TSIMAGE"}


def is_tso_cube(model) -> bool:
    """Whether ``model`` is one TSO exposure's cube of integrations (outlier_detection's mode ``tso``)."""
    from ..models import CubeModel, SlitModel

    # a spectroscopic time series' calints is a SlitModel of integrations: the grism TSO cutout
    # (extract_2d) and the MIRI LRS slitless exposure (spec2 makes it so, as jwst does)
    if not (isinstance(model, CubeModel) or (isinstance(model, SlitModel) and np.ndim(model.data) == 3)):
        return False
    return bool(model.meta.visit.tsovisit) or (model.meta.exposure.type or "") in TSO_EXPTYPES


def good_pixels(dq: np.ndarray, good_bits: str) -> np.ndarray:
    """1.0 where a pixel's DQ holds only flags that ``good_bits`` allows, else 0.0."""
    return _good_mask(dq, good_bits).astype(np.float32)


def _good_mask(dq: np.ndarray, good_bits: str) -> np.ndarray:
    """1 (uint8) where a pixel's DQ holds only flags that ``good_bits`` allows, else 0: stcal's
    ``build_mask``, made with astropy's bit-flag functions as it is, without importing stcal's
    resample package (drizzle, spherical_geometry, scipy.interpolate: ~2 MiB resident) for it."""
    from astropy.nddata.bitmask import bitfield_to_boolean_mask, interpret_bit_flags

    bits = interpret_bit_flags(good_bits, flag_name_map=dqflags.PIXEL)
    return bitfield_to_boolean_mask(dq, bits, good_mask_value=1, dtype=np.uint8, flag_name_map=dqflags.PIXEL)


# the most running_median's sorting copy (and a block's float64 median) takes at once: a block's
# median and the comparison's float64 temporaries are each about this size, and they are alive
# together with the whole cube, so they set the step's peak over it
MEDIAN_BLOCK_BYTES = 256 << 10


def running_median(cube: np.ndarray, width: int) -> np.ndarray:
    """Median over ``width`` consecutive integrations, centred; the ends repeat the first and last full window."""
    n = cube.shape[0]
    if width <= 1:
        raise ValueError("the rolling median window must be wider than 1")
    if width > n:
        raise ValueError("the rolling median window must not exceed the number of integrations")
    from numpy.lib.stride_tricks import sliding_window_view

    out = np.full(cube.shape, np.nan)
    half, odd = divmod(width, 2)
    windows = sliding_window_view(cube, width, axis=0)  # (n - width + 1, ny, nx, width), a view
    # np.median copies what it sorts: taken over every window at once, that copy is ``width`` times
    # the cube (826 MiB for 300 integrations of 416x72 and the default width 25).  Each pixel's
    # median is its own, so the rows are taken a block at a time, each copy at most MEDIAN_BLOCK_BYTES.
    per_row = max(1, windows.shape[0] * windows[0, 0].size * cube.itemsize)
    step = max(1, MEDIAN_BLOCK_BYTES // per_row)
    for r in range(0, cube.shape[1], step):
        out[half: half + n - width + 1, r: r + step] = np.median(windows[:, r: r + step], axis=-1)
    out[:half] = out[half]
    if odd:
        out[n - half:] = out[n - half - 1]
    else:
        out[n - half + 1:] = out[n - half]
    return out


def flag_tso_outliers(cube, params) -> int:
    """Flag the outliers of a TSO cube in place; returns how many pixels were flagged.

    The rolling median (float64, as its comparison with the data is) is made and used a block of
    rows at a time, each block's at most ``MEDIAN_BLOCK_BYTES``: every pixel is compared with its
    own median only, so the flags are those of the whole cube at once."""
    snr1 = params.snr_pair[0]
    width = params.rolling_window_width
    n, ny = cube.data.shape[:2]
    count = 0
    if 1 < width < n:
        rule = _low_rule(cube.dq, params.good_bits, params.maskpt)  # the whole cube's threshold
        rows = max(1, MEDIAN_BLOCK_BYTES // max(1, n * cube.data[0, 0].size * 8))
        for r0 in range(0, ny, rows):
            block = (slice(None), slice(r0, r0 + rows))
            sci = cube.data[block].copy()
            sci[_low_weight(cube.dq[block], params.good_bits, params.maskpt, rule)] = np.nan
            median = running_median(sci, width)
            del sci
            count += _flag_rows(cube, block, median, snr1)
            del median  # not alive while the next block's is made
    else:
        from stcal.outlier_detection.median import nanmedian3D

        count = _flag_rows(cube, (Ellipsis,), nanmedian3D(cube.data, overwrite_input=False), snr1)
    return _flagged(cube, count)


def _low_weight(dq: np.ndarray, good_bits: str, maskpt: float, rule: str | None = None) -> np.ndarray:
    """Where a pixel's weight is below ``maskpt`` times the mean weight (stcal's
    ``compute_weight_threshold``: the sigma-clipped mean of the non-zero weights), as a boolean cube.

    The weights are :func:`good_pixels`' 1.0 or 0.0, so the non-zero ones are all 1.0, their
    clipped mean is exactly 1.0 and the threshold is ``maskpt`` (NaN, so nothing is low, when no
    pixel is good).  The mask is made ~1 MiB of DQ at a time, without the float32 weight cube
    and the clipping's float64 copies of it.  ``rule`` (:func:`_low_rule` of a whole cube) lets
    ``dq`` be a block of that cube's rows, the threshold still the whole cube's."""
    rule = rule or _low_rule(dq, good_bits, maskpt)
    if rule != "bad":
        return np.full(dq.shape, rule == "all")
    low = np.empty(dq.shape, dtype=bool)
    per = max(1, (1 << 20) // max(1, dq[0].nbytes))  # integrations a call: about 1 MiB of DQ
    for i in range(0, dq.shape[0], per):
        low[i: i + per] = _good_mask(dq[i: i + per], good_bits)
    return np.logical_not(low, out=low)


def _low_rule(dq: np.ndarray, good_bits: str, maskpt: float) -> str:
    """Which weights of a cube are below its threshold: "none" (no good pixel at all, or ``maskpt`` NaN or
    at most 0), "all" (``maskpt`` above 1) or "bad" (the zero weights only)."""
    if not 0.0 < maskpt or not any(_good_mask(dq[i], good_bits).any() for i in range(dq.shape[0])):
        return "none"
    return "all" if 1.0 < maskpt else "bad"


def flag_against_median(cube, median, snr: float) -> int:
    """Flag, in place, the pixels of ``cube`` more than ``snr`` errors from ``median`` (DO_NOT_USE |
    OUTLIER, NaN in the arrays, step COMPLETE); returns how many were flagged."""
    return _flagged(cube, _flag_rows(cube, (Ellipsis,), median, snr))


def _flag_rows(cube, block: tuple, median, snr: float) -> int:
    """DO_NOT_USE | OUTLIER in ``cube.dq[block]`` where the data differ from ``median`` (the block's,
    or one broadcast to it) by more than ``snr`` errors (stcal's ``flag_crs``; its module is not
    imported: it brings scipy.ndimage, skimage and drizzle, ~3 MiB resident); returns how many."""
    err = cube.err[block]
    mask = np.abs(cube.data[block] - median) > snr * np.nan_to_num(err)
    dq = cube.dq[block]
    dq |= mask.astype(np.uint32) * np.uint32(dqflags.DO_NOT_USE | dqflags.OUTLIER)
    return int(np.count_nonzero(mask))


def _flagged(cube, count: int) -> int:
    """NaN and DO_NOT_USE made to agree, the count logged, the step COMPLETE."""
    from .flat_field import match_nans_and_flags

    match_nans_and_flags(cube)
    log.info("%s: %d pixels flagged as outliers", cube.meta.filename, count)
    cube.meta.cal_step.outlier_detection = "COMPLETE"
    return count
