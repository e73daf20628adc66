"""refpix: remove bias drifts measured in the reference pixels.

jwst's RefPixStep for traditional readouts.

Near-infrared detectors (2048x2048 with 4-pixel reference borders), worked
in detector orientation (FASTAXIS/SLOWAXIS), one group at a time:

- Full frame, and subarrays read with 4 outputs: for each amplifier (512
  columns) the sigma-clipped means of the top and bottom reference rows,
  separately for odd and even columns (``odd_even_columns``), are averaged
  and subtracted from the amplifier's columns.  Then (``use_side_ref_pixels``)
  a running median (``side_smoothing_length`` rows) of the left and right
  reference columns, averaged, times ``side_gain``, is subtracted from every
  row.  With ``refpix_algorithm="sirs"`` and a SIRSKERNEL reference, full
  frames use the SIRS convolution kernels for the side pixels instead.
- Other subarrays: the sigma-clipped mean of the good reference pixels the
  subarray holds (flagged REFERENCE_PIXEL in PIXELDQ), odd and even columns
  apart, is subtracted from the whole subarray.  NIRSpec SUB32/SUB512/SUB512S
  use their first and last 4 columns as reference pixels.

MIRI full frame: the first group is subtracted from each integration, then,
for each of the 4 interleaved amplifiers, the sigma-clipped means of its left
and right reference columns, odd and even rows apart (``odd_even_rows``),
are averaged and subtracted, and the first group is added back.  MIRI
subarrays are not corrected (SKIPPED), as in jwst.

Reference values are sigma-clipped means (``siglimit``) over pixels without
DO_NOT_USE.  The arithmetic follows jwst's, dtypes included, so results
agree to the last bit in most pixels.

NIRSpec IRS2 readouts (3200-row frames) get jwst's IRS2 algorithm
(:mod:`._irs2_refpix`) with the REFPIX reference's alpha/beta coefficients:
bad interleaved reference pixels are flagged (``ovr_corr_mitigation_ftr``)
and replaced, and the output keeps the 2048 normal rows unless
``preserve_irs2_refpix``.  ``irs2_mean_subtraction`` (off by default) is not
supported, nor are multistripe / superstripe subarrays.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
from pydantic import Field

from ..errors import UnsupportedModeError
from ..models import dqflags
from ._convert import as_ramp, stream_state
from ._subarray import is_subarray
from .base import STEPS, StepParams, step

log = logging.getLogger("webbflow.steps")

DNU = np.uint32(dqflags.DO_NOT_USE)
REFPIX = np.uint32(dqflags.REFERENCE_PIXEL)
NIR_SIZE = 2048
AMP_COLUMNS = ((0, 512), (512, 1024), (1024, 1536), (1536, 2048))
EDGE_ROWS = {"top": (2044, 2048), "bottom": (0, 4)}
SIDE_COLUMNS = ((0, 4), (2044, 2048))
NRS_EDGELESS_SUBARRAYS = ("SUB512", "SUB512S", "SUB32")
NIR_DETECTORS = {
    "GUIDER1", "GUIDER2", "NRCA1", "NRCA2", "NRCA3", "NRCA4", "NRCALONG", "NRCB1", "NRCB2", "NRCB3",
    "NRCB4", "NRCBLONG", "NIS", "NRS1", "NRS2",
}


class RefPixParams(StepParams):
    odd_even_columns: bool = Field(True, description="reference signal separately for even and odd columns (NIR)")
    use_side_ref_pixels: bool = Field(True, description="use the side reference pixels for a signal per row (NIR)")
    side_smoothing_length: int = Field(11, ge=1, description="height of the running-median window of side pixels (NIR)")
    side_gain: float = Field(1.0, description="factor applied to the side reference signal before subtracting it (NIR)")
    odd_even_rows: bool = Field(True, description="reference signal separately for even and odd rows (MIRI)")
    ovr_corr_mitigation_ftr: float = Field(3.0, description="IRS2: sigma factor flagging bad interleaved reference pixels")
    preserve_irs2_refpix: bool = Field(False, description="IRS2: keep the interleaved reference pixels in the output")
    irs2_mean_subtraction: bool = Field(False, description="IRS2: mean offset subtraction first (not supported here)")
    refpix_algorithm: Literal["median", "sirs"] = Field(
        "median", description="side-pixel algorithm for NIR full frames: running median or SIRS kernels"
    )
    sigreject: float = Field(4.0, description="SIRS: number of sigmas to reject as outliers")
    gaussmooth: float = Field(1.0, gt=0, description="SIRS: width of the Gaussian low-pass smoothing kernel")
    halfwidth: int = Field(30, ge=0, description="SIRS: half-width of the convolution kernel")
    siglimit: float = Field(3.0, gt=0, description="sigma-clipping limit for the reference pixel means")


# ---------------------------------------------------------------------------
# shared helpers


def clipped_mean(values: np.ndarray, dq: np.ndarray, siglimit: float):
    """Sigma-clipped mean of the values without DO_NOT_USE; None if there are none.

    Same computation as jwst's Dataset.sigma_clip (scipy's sigmaclip, or a
    float64 mean when all values are equal).
    """
    good = values[(dq & DNU) == 0]
    if good.size == 0:
        return None
    if np.std(good, dtype=np.float64) != 0.0:
        return sigmaclip(good, siglimit, siglimit).mean()
    return good.mean(dtype=np.float64)


def sigmaclip(a: np.ndarray, low: float, high: float) -> np.ndarray:
    """scipy.stats.sigmaclip's clipped values, the same numpy operations in the same dtype.

    Values outside mean - low*std .. mean + high*std are dropped, and again,
    until none is.  (Here so that refpix does not import scipy.stats, which
    costs half a second of start-up.)
    """
    c = np.ravel(np.asarray(a))
    delta = 1
    while delta:
        c_std = np.std(c)
        c_mean = np.mean(c)
        size = c.size
        critlower = c_mean - c_std * low
        critupper = c_mean + c_std * high
        c = c[(c >= critlower) & (c <= critupper)]
        delta = size - c.size
    return c


def _average_with_none(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return 0.5 * (a + b)


def to_detector(arr: np.ndarray, fast: int, slow: int) -> np.ndarray:
    """A view of ``arr`` (..., rows, cols) in detector orientation."""
    if abs(fast) == 1:
        return arr[..., :: int(np.sign(slow)), :: int(np.sign(fast))]
    return np.swapaxes(arr[..., :: int(np.sign(fast)), :: int(np.sign(slow))], -2, -1)


def detector_origin(r0: int, c0: int, nrows: int, ncols: int, fast: int, slow: int, size: int = NIR_SIZE):
    """Row and column (0-based) of a science block's corner in the full detector-oriented frame."""
    r1, c1 = r0 + nrows, c0 + ncols
    if abs(fast) == 1:
        row = r0 if slow > 0 else size - r1
        col = c0 if fast > 0 else size - c1
    else:
        row = c0 if slow > 0 else size - c1
        col = r0 if fast > 0 else size - r1
    return row, col


def running_median(data: np.ndarray, dq: np.ndarray, length: int) -> np.ndarray:
    """Median over a sliding window of ``length`` rows (reflected at the ends) of the good pixels.

    For an even ``length`` the ends are reflected by ``(length + 1) // 2`` rows
    and the window starts there, as in jwst.

    ``data``/``dq`` are (nrows, ncols); returns float64 (nrows,), NaN where the
    window holds no good pixel or a good NaN.  Matches jwst's median_filter.
    """
    # jwst reflects by half of the next odd length but keeps the (even) window length
    if length % 2 == 0:
        log.info("Smoothing length must be odd, adding 1")
    half = (length + 1 - length % 2) // 2
    nrows = data.shape[0]
    pdata = np.pad(data, ((half, half), (0, 0)), mode="reflect")
    pgood = np.pad((dq & DNU) == 0, ((half, half), (0, 0)), mode="reflect")
    win = np.lib.stride_tricks.sliding_window_view(pdata, length, axis=0)[:nrows].reshape(nrows, -1)
    wgood = np.lib.stride_tricks.sliding_window_view(pgood, length, axis=0)[:nrows].reshape(nrows, -1)
    bad_nan = (np.isnan(win) & wgood).any(axis=1)
    vals = np.where(wgood, win, np.nan)
    vals.sort(axis=1)
    n = wgood.sum(axis=1)
    rows = np.arange(nrows)
    lo = vals[rows, np.maximum((n - 1) // 2, 0)]
    hi = vals[rows, np.maximum(n // 2, 0)]
    two = vals.dtype.type(2)
    med = np.where(n % 2 == 1, hi, (lo + hi) / two)
    out = med.astype(np.float64)
    out[(n == 0) | bad_nan] = np.nan
    return out


def combine_with_nans(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Average of a and b where both are finite, the one that is where the other is NaN, else 0."""
    out = np.zeros(len(a), dtype=a.dtype)
    an, bn = np.isnan(a), np.isnan(b)
    out[an & ~bn] = b[an & ~bn]
    out[~an & bn] = a[~an & bn]
    both = ~an & ~bn
    out[both] = 0.5 * (a[both] + b[both])
    return out


# ---------------------------------------------------------------------------
# NIR


class _NIRBlock:
    """One group (or zero frame) of NIR data placed on the full detector-oriented frame.

    ``g`` is the working copy of the data block, ``dq`` the pixel DQ of the
    block (detector orientation); (row0, col0) the block's corner on the
    2048x2048 frame.  Pixels of the full frame outside the block count as
    DO_NOT_USE reference pixels, as in jwst.
    """

    def __init__(self, dq: np.ndarray, row0: int, col0: int):
        self.dq = dq
        self.row0, self.col0 = row0, col0
        self.nrows, self.ncols = dq.shape

    def rows(self, r0, r1):
        """Local row slice of full-frame rows [r0, r1) (empty if outside)."""
        a, b = max(r0, self.row0), min(r1, self.row0 + self.nrows)
        return slice(a - self.row0, max(a, b) - self.row0)

    def cols(self, c0, c1, parity=None):
        """Local column slice of full-frame columns [c0, c1), optionally only those with index % 2 == parity."""
        a, b = max(c0, self.col0), min(c1, self.col0 + self.ncols)
        if parity is None:
            return slice(a - self.col0, max(a, b) - self.col0)
        if a % 2 != parity:
            a += 1
        if a >= b:
            return slice(0, 0)
        return slice(a - self.col0, b - self.col0, 2)


def _amp_refvalues(g, blk: _NIRBlock, p: RefPixParams):
    """Per amplifier: reference signal(s) from top and bottom rows."""
    out = []
    for c0, c1 in AMP_COLUMNS:
        vals = {}
        for edge, (r0, r1) in EDGE_ROWS.items():
            rs = blk.rows(r0, r1)
            if p.odd_even_columns:
                # "odd" columns are the 1st, 3rd, ... of the amplifier: even indices
                for name, parity in (("odd", 0), ("even", 1)):
                    cs = blk.cols(c0, c1, parity)
                    vals[(name, edge)] = clipped_mean(g[rs, cs], blk.dq[rs, cs], p.siglimit)
            else:
                cs = blk.cols(c0, c1)
                vals[edge] = clipped_mean(g[rs, cs], blk.dq[rs, cs], p.siglimit)
        out.append(vals)
    return out


def _top_bottom_correction(g, blk: _NIRBlock, p: RefPixParams) -> None:
    refs = _amp_refvalues(g, blk, p)
    for (c0, c1), vals in zip(AMP_COLUMNS, refs):
        if p.odd_even_columns:
            odd = _average_with_none(vals[("odd", "top")], vals[("odd", "bottom")])
            even = _average_with_none(vals[("even", "top")], vals[("even", "bottom")])
            if odd is None or even is None:
                continue
            cs_odd, cs_even = blk.cols(c0, c1, 0), blk.cols(c0, c1, 1)
            g[:, cs_odd] = g[:, cs_odd] - odd
            g[:, cs_even] = g[:, cs_even] - even
        else:
            ref = _average_with_none(vals["top"], vals["bottom"])
            if ref is None:
                continue
            cs = blk.cols(c0, c1)
            g[:, cs] = g[:, cs] - ref


def _side_strip(g, blk: _NIRBlock, c0: int, c1: int):
    """Full-height (2048 rows) side reference columns [c0, c1), DO_NOT_USE outside the block."""
    data = np.zeros((NIR_SIZE, c1 - c0), dtype=g.dtype)
    dq = np.full((NIR_SIZE, c1 - c0), DNU | REFPIX, dtype=np.uint32)
    a, b = max(c0, blk.col0), min(c1, blk.col0 + blk.ncols)
    if a < b:
        r = slice(blk.row0, blk.row0 + blk.nrows)
        data[r, a - c0 : b - c0] = g[:, a - blk.col0 : b - blk.col0]
        dq[r, a - c0 : b - c0] = blk.dq[:, a - blk.col0 : b - blk.col0]
    return data, dq


def _side_correction(g, blk: _NIRBlock, p: RefPixParams, kernels=None):
    """Subtract the side reference signal from every row; returns the (float64) corrected block."""
    if kernels is not None:
        return sirs_correction(g, kernels, p.sigreject)
    left = running_median(*_side_strip(g, blk, *SIDE_COLUMNS[0]), p.side_smoothing_length)
    right = running_median(*_side_strip(g, blk, *SIDE_COLUMNS[1]), p.side_smoothing_length)
    combined = combine_with_nans(left, right)[blk.row0 : blk.row0 + blk.nrows]
    return g - (p.side_gain * combined)[:, np.newaxis]


def _subarray_refvalues_index(blk: _NIRBlock, p: RefPixParams):
    good = ((blk.dq & REFPIX) == REFPIX) & ((blk.dq & DNU) != DNU)
    if not good.any():
        return None
    if not p.odd_even_columns:
        return {"all": np.nonzero(good)}
    even_local = ((np.arange(blk.ncols) + blk.col0) % 2) == 0
    return {
        "even": np.nonzero(good & even_local[np.newaxis, :]),
        "odd": np.nonzero(good & ~even_local[np.newaxis, :]),
    }


def _subarray_correction(g, blk: _NIRBlock, index, p: RefPixParams) -> None:
    if "all" in index:
        v = clipped_mean(g[index["all"]], blk.dq[index["all"]], p.siglimit)
        if v is not None:
            g -= v
        return
    even = clipped_mean(g[index["even"]], blk.dq[index["even"]], p.siglimit)
    odd = clipped_mean(g[index["odd"]], blk.dq[index["odd"]], p.siglimit)
    j_even = blk.col0 % 2  # first local column with an even full-frame index
    if even is not None:
        g[:, j_even::2] -= even
    if odd is not None:
        g[:, 1 - j_even :: 2] -= odd


class _NIRCorrector:
    """Runs jwst's NIR reference pixel correction over the groups of a ramp."""

    def __init__(self, ramp, p: RefPixParams, sirs_kernels=None):
        self.p = p
        sub = ramp.meta.subarray
        self.fast, self.slow = sub.fastaxis, sub.slowaxis
        if self.fast is None or self.slow is None:
            raise ValueError("refpix: FASTAXIS/SLOWAXIS keywords are missing")
        self.subarray = is_subarray(ramp)
        ny, nx = ramp.data.shape[-2:]
        r0, c0 = (sub.ystart - 1, sub.xstart - 1) if self.subarray else (0, 0)
        pdq = np.array(ramp.pixeldq, dtype=np.uint32)
        if self.subarray and str(sub.name or "").upper() in NRS_EDGELESS_SUBARRAYS:
            log.info("Subarray %s has no reference pixels: using its first and last 4 columns", sub.name)
            pdq[:, :4] |= REFPIX
            pdq[:, -4:] |= REFPIX
        row0, col0 = detector_origin(r0, c0, ny, nx, self.fast, self.slow)
        self.blk = _NIRBlock(to_detector(pdq, self.fast, self.slow), row0, col0)
        # 4-output subarrays are treated like full frames (amplifier sections)
        self.amp_mode = (not self.subarray) or ramp.meta.exposure.noutputs == 4
        self.index = None if self.amp_mode else _subarray_refvalues_index(self.blk, p)
        self.kernels = sirs_kernels if (self.amp_mode and not self.subarray) else None
        # jwst reuses one working buffer: float32 until a side correction makes it float64
        self.work_dtype = np.float32

    def correct(self, data: np.ndarray) -> None:
        """Correct every group of ``data`` (nints, ngroups, ny, nx), in place."""
        if not self.amp_mode and self.index is None:
            log.warning("No valid reference pixels in this subarray; refpix has no effect")
            return
        det = to_detector(data, self.fast, self.slow)
        for i in range(det.shape[0]):
            for k in range(det.shape[1]):
                g = np.array(det[i, k], dtype=self.work_dtype)
                if self.amp_mode:
                    _top_bottom_correction(g, self.blk, self.p)
                    if self.p.use_side_ref_pixels:
                        g = _side_correction(g, self.blk, self.p, self.kernels)
                        self.work_dtype = g.dtype
                else:
                    _subarray_correction(g, self.blk, self.index, self.p)
                det[i, k] = g


# ---------------------------------------------------------------------------
# SIRS (Simple Improved Reference Subtraction) kernels


def make_sirs_kernels(sirs_ref, detector: str, gaussmooth: float, halfwidth: int):
    """Left and right convolution kernels per output channel, or None if the reference lacks the detector."""
    tree = getattr(sirs_ref, "_asdf_extra", {}) or {}
    entry = None
    for key, value in tree.items():
        if isinstance(key, str) and key.lower() == detector.lower() and isinstance(value, dict):
            entry = value
            break
    if entry is None or "gamma" not in entry or "zeta" not in entry:
        log.info("SIRS kernel coefficients not found for detector %s", detector)
        return None
    gamma, zeta = np.asarray(entry["gamma"]), np.asarray(entry["zeta"])
    x = np.arange(-halfwidth, halfwidth + 1)
    window = np.exp(-(x**2) / (2 * gaussmooth**2))
    window /= np.sum(window)
    left, right = [], []
    for ch in range(gamma.shape[0]):
        n = len(gamma[ch]) - 1
        kl = np.fft.fftshift(np.fft.irfft(gamma[ch]))[n - halfwidth : n + halfwidth + 1]
        kr = np.fft.fftshift(np.fft.irfft(zeta[ch]))[n - halfwidth : n + halfwidth + 1]
        left.append(np.convolve(kl, window, mode="same"))
        right.append(np.convolve(kr, window, mode="same"))
    return left, right


def sirs_correction(group: np.ndarray, kernels, sigreject: float = 4.0) -> np.ndarray:
    """Subtract the SIRS side-pixel template from a full-frame group (detector orientation); float64 result."""
    data = group.astype(float)
    npix = data.shape[-1]
    kl_all, kr_all = kernels
    left, right = data[:, :4], data[:, -4:]
    mad = 1.48
    medl = np.median(left)
    sigl = mad * np.median(np.abs(left - medl))
    medr = np.median(right)
    sigr = mad * np.median(np.abs(right - medr))
    goodl = 1 * (np.abs(left - medl) <= sigreject * sigl)
    goodr = 1 * (np.abs(right - medr) <= sigreject * sigr)
    nl, nr = np.sum(goodl, axis=1), np.sum(goodr, axis=1)
    lmean = np.sum(left * goodl, axis=1) / 4
    rmean = np.sum(right * goodr, axis=1) / 4
    for ch in range(len(kl_all)):
        kl, kr = kl_all[ch], kr_all[ch]
        norm_l = np.convolve(np.ones(nl.shape), kl, mode="same")
        norm_l /= np.convolve(nl / 4, kl, mode="same")
        norm_r = np.convolve(np.ones(nr.shape), kr, mode="same")
        norm_r /= np.convolve(nr / 4, kr, mode="same")
        template = np.convolve(lmean, kl, mode="same") * norm_l
        template += np.convolve(rmean, kr, mode="same") * norm_r
        data[:, ch * npix // 4 : (ch + 1) * npix // 4] -= template[:, np.newaxis]
    return data


# ---------------------------------------------------------------------------
# MIRI


MIRI_LEFT_COL = (0, 1, 2, 3)
MIRI_RIGHT_COL = (1028, 1029, 1030, 1031)


def miri_correction(data: np.ndarray, pixeldq: np.ndarray, p: RefPixParams, state: dict | None = None) -> None:
    """jwst's MIRI full-frame reference pixel correction of ``data`` (nints, ngroups, 1024, 1032), in place.

    As in jwst, once a group has no good reference pixels, no later group is
    corrected, in this integration or the following ones; ``state`` carries
    that over when the integrations come one at a time (flows/_streaming.py).
    The first read is subtracted and added back in float64, one group plane
    at a time (the same values as whole-integration arrays, without them).
    """
    nints, ngroups = data.shape[:2]
    log.info("Subtracting initial read from each integration")
    first = np.zeros((nints,) + data.shape[2:])
    buf = np.empty(data.shape[2:])  # float64, as numpy computes float32 - float64
    for i in range(nints):
        first[i] = data[i, 0]
        for k in range(ngroups):
            np.subtract(data[i, k], first[i], out=buf)
            data[i, k] = buf
    bad = bool(state.get("bad", False)) if state is not None else False
    for i in range(nints):
        for k in range(1, ngroups):
            g = data[i, k].copy()
            refs = []
            for amp in range(4):
                vals = {}
                for side, col in (("left", MIRI_LEFT_COL[amp]), ("right", MIRI_RIGHT_COL[amp])):
                    if p.odd_even_rows:
                        odd = clipped_mean(g[0::2, col], pixeldq[0::2, col], p.siglimit)
                        even = clipped_mean(g[1::2, col], pixeldq[1::2, col], p.siglimit)
                        if odd is None or even is None:
                            bad = True
                        vals[("odd", side)], vals[("even", side)] = odd, even
                    else:
                        v = clipped_mean(g[:, col], pixeldq[:, col], p.siglimit)
                        if v is None:
                            bad = True
                        vals[side] = v
                refs.append(vals)
            if bad:
                log.warning("Group %d has no good reference pixels", k)
                break
            for amp, vals in enumerate(refs):
                if p.odd_even_rows:
                    odd = 0.5 * (vals[("odd", "left")] + vals[("odd", "right")])
                    even = 0.5 * (vals[("even", "left")] + vals[("even", "right")])
                    g[0::2, amp::4] = g[0::2, amp::4] - odd
                    g[1::2, amp::4] = g[1::2, amp::4] - even
                else:
                    ref = 0.5 * (vals["left"] + vals["right"])
                    g[:, amp::4] = g[:, amp::4] - ref
            data[i, k] = g
    if state is not None:
        state["bad"] = bad
    log.info("Adding initial read back in")
    for i in range(nints):
        for k in range(ngroups):
            np.add(data[i, k], first[i], out=buf)
            data[i, k] = buf


# ---------------------------------------------------------------------------


def correct_refpix(ramp, p: RefPixParams, sirs_ref=None):
    """Apply the reference pixel correction to ``data`` (and ZEROFRAME), in place.

    Returns (ramp, status) with status COMPLETE or SKIPPED.
    """
    instrument = str(ramp.meta.instrument.name or "").upper()
    detector = str(ramp.meta.instrument.detector or "").upper()
    sub = ramp.meta.subarray
    if None in (sub.xstart, sub.ystart, sub.xsize, sub.ysize):
        raise ValueError("refpix: subarray metadata (SUBSTRT/SUBSIZE) not found")
    if instrument == "MIRI" or detector.startswith("MIR"):
        if is_subarray(ramp):
            log.warning("Refpix correction skipped for MIRI subarrays")
            return ramp, "SKIPPED"
        log.info("MIRI full frame data: odd_even_rows=%s", p.odd_even_rows)
        shared = stream_state(ramp)
        miri_correction(ramp.data, ramp.pixeldq, p, None if shared is None else shared.setdefault("refpix", {}))
        return ramp, "COMPLETE"
    if is_subarray(ramp):
        c0, r0 = sub.xstart - 1, sub.ystart - 1
        if r0 + sub.ysize > NIR_SIZE or c0 + sub.xsize > NIR_SIZE:
            log.warning("Subarray doesn't fit in full-sized array")
            return ramp, "SKIPPED"
    if detector not in NIR_DETECTORS:
        log.error("Unrecognized detector %s; treating it as a near-infrared detector", detector)
    kernels = None
    if p.refpix_algorithm == "sirs" and sirs_ref is not None and not is_subarray(ramp):
        kernels = make_sirs_kernels(sirs_ref, detector, p.gaussmooth, p.halfwidth)
        if kernels is None:
            log.info("The refpix step will use the running median")
    corrector = _NIRCorrector(ramp, p, kernels)
    corrector.correct(ramp.data)
    if ramp.meta.exposure.zero_frame and ramp.has("zeroframe"):
        log.info("Processing the zero frame")
        z = ramp.zeroframe
        unusable = z == 0.0
        corrector.correct(z[:, np.newaxis])
        z[unusable] = 0.0
    return ramp, "COMPLETE"


@step(
    "refpix",
    "RefPixStep",
    params=RefPixParams,
    optional_reftypes=("sirskernel", "refpix"),
    suffix="refpix",
)
def refpix(model, refs, params):
    """Correct bias drifts with the reference pixels; ``data`` and ``zeroframe`` are updated in place."""
    ramp = as_ramp(model)
    if max(ramp.data.shape[-2:]) > NIR_SIZE:
        return _refpix_irs2(ramp, refs.get("refpix"), params)
    if getattr(ramp.meta.subarray, "multistripe_reads1", None) is not None:
        raise UnsupportedModeError("refpix: multistripe subarrays are not supported yet")
    sirs_ref = refs.get("sirskernel")
    if params.refpix_algorithm == "sirs":
        full = "FULL" in str(ramp.meta.subarray.name or "")
        if str(ramp.meta.instrument.name).upper() == "MIRI":
            log.info("SIRS is not applied to MIRI data")
            sirs_ref = None
        elif not full:
            log.info("SIRS is not applied to subarray data")
            sirs_ref = None
        elif sirs_ref is None:
            log.warning("No SIRSKERNEL reference file; the running median is used for side pixels")
    else:
        sirs_ref = None
    return correct_refpix(ramp, params, sirs_ref)


def _refpix_irs2(ramp, irs2_ref, params):
    """jwst's IRS2 branch: flag and replace bad interleaved reference pixels, then the IRS2 correction."""
    from . import _irs2_refpix as irs2
    from ._irs2 import irs2_parameters

    if params.irs2_mean_subtraction:
        raise UnsupportedModeError("refpix: irs2_mean_subtraction=True is not supported yet")
    n, r = irs2_parameters(ramp)
    irs2.flag_bad_reference_rows(ramp, params.ovr_corr_mitigation_ftr, n, r)
    irs2.replace_bad_reference_rows(ramp, n, r)
    if irs2_ref is None:
        log.warning("No refpix reference file found; RefPix step will be skipped")
        return ramp, "SKIPPED"
    return ramp, irs2.correct_irs2(ramp, irs2_ref, n, r, preserve_refpix=params.preserve_irs2_refpix)


def _sirs_needed(model, params) -> tuple[str, ...]:
    """jwst asks CRDS for a REFPIX reference for IRS2 readouts, for a SIRSKERNEL only for SIRS on NIR full frames."""
    from ._irs2 import is_irs2_readout

    if is_irs2_readout(model):
        return ("refpix",)
    if params.refpix_algorithm != "sirs":
        return ()
    if str(model.meta.instrument.name or "").upper() == "MIRI":
        return ()
    return ("sirskernel",) if "FULL" in str(model.meta.subarray.name or "") else ()


STEPS["refpix"].extra["optional_reftypes_needed"] = _sirs_needed
