"""A compiled two-point-difference jump detector giving stcal's answers.

stcal's ``find_crs`` (used by jwst's JumpStep) works on whole 4-D arrays: it
makes float64 copies of every first difference, several times over, which is
where jwst's jump step spends its time and memory.  The algorithm itself is
per pixel, apart from flagging the four neighbours of large jumps.  Here it
runs pixel by pixel in numba, rows in parallel, with scratch buffers of one
ramp, and reproduces stcal 1.20's arithmetic step by step (dtypes included):

- the ramp is scaled to electrons in float32 (``data * gain``), groups
  flagged DO_NOT_USE or SATURATED are NaN, and first differences are float32
  differences widened to float64;
- the median difference of each pixel pools every integration;
- with at least ``min_diffs_single_pass`` usable differences in every
  integration, one pass flags differences more than ``rejection_threshold``
  sigma from the median; otherwise the iterative search clips the largest
  absolute difference, flags the largest ratio when it passes the threshold
  for the number of usable differences (4+, 3 or 2), masks it, and repeats,
  the medians rounded to float32 after the first pass as stcal's are;
- neighbours of jumps between ``min_jump_to_flag_neighbors`` and
  ``max_jump_to_flag_neighbors`` sigma get JUMP_DET unless SATURATED or
  DO_NOT_USE; JUMP_DET is then cleared where DO_NOT_USE or SATURATED is set.

Cases this kernel does not cover (sigma clipping over many integrations,
after-jump flagging, snowballs, showers, unevenly spaced groups) are left to
stcal by the caller.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ._threads import run_rows

NAN = np.nan


# Explicit signatures for the small helpers: typing a caller would otherwise compile them a second
# time for a literal count (``Literal[int](0)``) seen before the caller's loop types are settled.
@numba.njit("float64(float64[::1], int64, int64)", cache=True)
def _select(buf, m, k):
    """Partially order buf[:m] in place so that buf[k] is the k-th smallest; returns it."""
    lo = 0
    hi = m - 1
    while hi > lo:
        if hi - lo < 16:
            for i in range(lo + 1, hi + 1):
                v = buf[i]
                j = i - 1
                while j >= lo and buf[j] > v:
                    buf[j + 1] = buf[j]
                    j -= 1
                buf[j + 1] = v
            return buf[k]
        mid = (lo + hi) // 2
        # median of three as the pivot
        a, b, c = buf[lo], buf[mid], buf[hi]
        if a > b:
            a, b = b, a
        if b > c:
            b, c = c, b
            if a > b:
                a, b = b, a
        pivot = b
        i = lo
        j = hi
        while i <= j:
            while buf[i] < pivot:
                i += 1
            while buf[j] > pivot:
                j -= 1
            if i <= j:
                t = buf[i]
                buf[i] = buf[j]
                buf[j] = t
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            return buf[k]
    return buf[k]


@numba.njit("float64(float64[::1], int64)", cache=True)
def _median_of(buf, m):
    """Median of buf[:m] (no NaN), as numpy computes it: the mean of the two middle values for even m."""
    h = m // 2
    hi = _select(buf, m, h)
    if m % 2 == 1:
        return hi
    # the largest value below the upper middle one
    lo = buf[0]
    for i in range(1, h):
        if buf[i] > lo:
            lo = buf[i]
    return (lo + hi) / 2.0


@numba.njit(cache=True)
def _nanmedian(vals, n, buf):
    """numpy.nanmedian of vals[:n] (float64): the median of the values that are not NaN (NaN if none)."""
    m = 0
    for k in range(n):
        v = vals[k]
        if not math.isnan(v):
            buf[m] = v
            m += 1
    if m == 0:
        return NAN
    return _median_of(buf, m)


@numba.njit(cache=True)
def _clipped_median(vals, n, buf):
    """stcal's calc_med_first_diffs for one pixel: vals[:n] holds its (absolute) differences.

    4+ usable: the largest value (all its ties) is dropped, then the median;
    3 usable: the median; 2 usable: the smaller one; fewer: NaN.
    """
    usable = 0
    vmax = -np.inf
    for k in range(n):
        v = vals[k]
        if not math.isnan(v):
            usable += 1
            if v > vmax:
                vmax = v
    if usable < 2:
        return NAN
    if usable == 2:
        lo = np.inf
        for k in range(n):
            v = vals[k]
            if not math.isnan(v) and v < lo:
                lo = v
        return lo
    m = 0
    for k in range(n):
        v = vals[k]
        if not math.isnan(v) and not (usable >= 4 and v == vmax):
            buf[m] = v
            m += 1
    if m == 0:
        return NAN
    return _median_of(buf, m)


@numba.njit(cache=True)
def _iterative(fd, nints, nd, rn_term, thr4, thr3, thr2, flags, ngroups, jump, fda, ratio, buf, crint):
    """stcal's iterative_jump for one pixel; ORs JUMP_DET into flags[i * ngroups + d + 1]."""
    n = nints * nd
    for k in range(n):
        fda[k] = abs(fd[k])
    first = True
    while True:
        med = _clipped_median(fda, n, buf)
        if not first:
            # stcal stores later medians in a float32 array
            med = np.float64(np.float32(med))
        sig = math.sqrt(abs(med) + rn_term)
        if sig == 0.0:
            sig = NAN
        first = False
        usable = 0
        for k in range(n):
            v = fda[k]
            if not math.isnan(v):
                usable += 1
            # stcal keeps |diff| - median in a float32 array
            e = np.float32(v - med)
            ratio[k] = abs(np.float64(e)) / sig
        if usable >= 4:
            thr = thr4
        elif usable == 3:
            thr = thr3
        elif usable == 2:
            thr = thr2
        else:
            return
        gmax = -np.inf
        gseen = False
        anycr = False
        for i in range(nints):
            imax = -np.inf
            iseen = False
            for d in range(nd):
                r = ratio[i * nd + d]
                if not math.isnan(r):
                    iseen = True
                    if r > imax:
                        imax = r
            crint[i] = iseen and imax > thr
            if crint[i]:
                anycr = True
            if iseen:
                gseen = True
                if imax > gmax:
                    gmax = imax
        if not anycr or not gseen:
            return
        nnew = 0
        for i in range(nints):
            if not crint[i]:
                continue
            for d in range(nd):
                k = i * nd + d
                if ratio[k] == gmax:
                    flags[i * ngroups + d + 1] |= jump
                    fda[k] = NAN
                    nnew += 1
        if nnew == 0:
            return


def detect_rows(data, gdq, gain, rnoise, nframes, thr4, thr3, thr2, single_pass,
                flag4, min_nb, max_nb, dnu, sat, jump, src, counts):
    """First pass over every pixel: flag jumps in gdq; mark neighbour-flagging sources in src.

    ``src`` is (nints, nwords, ny, nx) uint8: bit d % 8 of word d // 8 set when
    the jump in difference d is one whose neighbours get flagged.  ``counts``
    (ny,) gets the number of groups with JUMP_DET per row (stcal's primary CR count).
    Each row is copied into pixel-major scratch arrays first, so that a pixel's
    ramp is contiguous in memory.
    """
    run_rows(_detect_block, data.shape[2], data, gdq, gain, rnoise, nframes, thr4, thr3, thr2, single_pass, flag4, min_nb, max_nb, dnu, sat, jump, src, counts)


@numba.njit(cache=True, nogil=True)
def pixel_major_row(data, gdq, y, rowd, rowq):
    """Row ``y`` of every integration and group into (nx, nints * ngroups) copies: a pixel's ramps contiguous."""
    nints, ngroups, ny, nx = data.shape
    for i in range(nints):
        for k in range(ngroups):
            p = i * ngroups + k
            for x in range(nx):
                rowd[x, p] = data[i, k, y, x]
                rowq[x, p] = gdq[i, k, y, x]


@numba.njit(cache=True, nogil=True)
def _detect_block(lo, hi, data, gdq, gain, rnoise, nframes, thr4, thr3, thr2, single_pass,
                flag4, min_nb, max_nb, dnu, sat, jump, src, counts):
    nints, ngroups, ny, nx = data.shape
    nd = ngroups - 1
    n = nints * nd
    npl = nints * ngroups
    bad = np.uint8(dnu | sat)
    for y in range(lo, hi):
        rowd = np.empty((nx, npl), np.float32)
        rowq = np.empty((nx, npl), np.uint8)
        rows = np.zeros((nx, nints, src.shape[1]), np.uint8)
        pixel_major_row(data, gdq, y, rowd, rowq)
        e = np.empty(ngroups, np.float32)
        fd = np.empty(n, np.float64)
        fda = np.empty(n, np.float64)
        ratio = np.empty(n, np.float64)
        buf = np.empty(n, np.float64)
        crint = np.zeros(nints, np.bool_)
        rowcount = 0
        for x in range(nx):
            g = gain[y, x]
            rn = np.float32(rnoise[y, x] * g)
            rn2 = np.float32(rn * rn)
            rn_term = np.float64(rn2) / nframes
            q = rowq[x]
            dx = rowd[x]
            for i in range(nints):
                for k in range(ngroups):
                    p = i * ngroups + k
                    if q[p] & bad:
                        e[k] = np.float32(NAN)
                    else:
                        e[k] = np.float32(dx[p] * g)
                for d in range(nd):
                    fd[i * nd + d] = np.float64(np.float32(e[d + 1] - e[d]))
            med = _nanmedian(fd, n, buf)
            sig = math.sqrt(abs(med) + rn_term)
            if sig == 0.0:
                sig = NAN
            if single_pass:
                for i in range(nints):
                    for d in range(nd):
                        v = fd[i * nd + d]
                        if math.isfinite(v) and abs(v - med) / sig > thr4:
                            q[i * ngroups + d + 1] |= jump
            else:
                _iterative(fd, nints, nd, rn_term, thr4, thr3, thr2, q, ngroups, jump, fda, ratio, buf, crint)
            for p in range(npl):
                if q[p] & jump:
                    rowcount += 1
            if flag4:
                for i in range(nints):
                    for d in range(nd):
                        if q[i * ngroups + d + 1] & jump:
                            r = abs(fd[i * nd + d] - med) / sig
                            if r < max_nb and r > min_nb:
                                rows[x, i, d >> 3] |= np.uint8(1 << (d & 7))
        for i in range(nints):
            for k in range(ngroups):
                p = i * ngroups + k
                for x in range(nx):
                    gdq[i, k, y, x] = rowq[x, p]
            if flag4:
                for w in range(src.shape[1]):
                    for x in range(nx):
                        src[i, w, y, x] = rows[x, i, w]
        counts[y] = rowcount


def finish_rows(gdq, src, flag4, dnu, sat, jump):
    """Second pass: flag the four neighbours of source jumps, then drop JUMP_DET under DO_NOT_USE/SATURATED."""
    run_rows(_finish_block, gdq.shape[2], gdq, src, flag4, dnu, sat, jump)


@numba.njit(cache=True, nogil=True)
def _finish_block(lo, hi, gdq, src, flag4, dnu, sat, jump):
    nints, ngroups, ny, nx = gdq.shape
    nd = ngroups - 1
    bad = np.uint8(dnu | sat)
    jd = np.uint8(jump | dnu)
    js = np.uint8(jump | sat)
    for y in range(lo, hi):
        for i in range(nints):
            if flag4:
                for d in range(nd):
                    w = d >> 3
                    b = np.uint8(1 << (d & 7))
                    for x in range(nx):
                        hit = (src[i, w, y, x] & b) != 0
                        if not hit and y > 0:
                            hit = (src[i, w, y - 1, x] & b) != 0
                        if not hit and y < ny - 1:
                            hit = (src[i, w, y + 1, x] & b) != 0
                        if not hit and x > 0:
                            hit = (src[i, w, y, x - 1] & b) != 0
                        if not hit and x < nx - 1:
                            hit = (src[i, w, y, x + 1] & b) != 0
                        if hit and (gdq[i, d + 1, y, x] & bad) == 0:
                            gdq[i, d + 1, y, x] |= jump
            for k in range(ngroups):
                for x in range(nx):
                    v = gdq[i, k, y, x]
                    if (v & jd) == jd:
                        v ^= jump
                    if (v & js) == js:
                        v ^= jump
                    gdq[i, k, y, x] = v


def find_jumps(data, gdq, gain, rnoise, *, nframes, rejection_threshold, three_group_rejection_threshold,
               four_group_rejection_threshold, single_pass, flag_4_neighbors, min_jump_to_flag_neighbors,
               max_jump_to_flag_neighbors, dnu, sat, jump, per_row=False):
    """Run both passes on (nints, ngroups, ny, nx) arrays; gdq is updated in place.

    Returns the number of groups carrying JUMP_DET after detection and before
    neighbour flagging (stcal's count of primary cosmic rays), or with
    ``per_row`` that number for each row (an array).
    """
    nints, ngroups, ny, nx = data.shape
    nwords = max(1, (ngroups - 1 + 7) // 8)
    src = np.zeros((nints, nwords, ny, nx), np.uint8) if flag_4_neighbors else np.zeros((nints, 1, 1, 1), np.uint8)
    counts = np.zeros(ny, np.int64)
    gain = np.ascontiguousarray(gain, dtype=np.float32)
    rnoise = np.ascontiguousarray(rnoise, dtype=np.float32)
    # stcal: two_diff threshold is the "three group" one, three_diff the "four group" one
    detect_rows(
        data, gdq, gain, rnoise, float(nframes),
        float(rejection_threshold), float(four_group_rejection_threshold), float(three_group_rejection_threshold),
        bool(single_pass), bool(flag_4_neighbors), float(min_jump_to_flag_neighbors), float(max_jump_to_flag_neighbors),
        np.uint8(dnu), np.uint8(sat), np.uint8(jump), src, counts,
    )
    finish_rows(gdq, src, bool(flag_4_neighbors), np.uint8(dnu), np.uint8(sat), np.uint8(jump))
    return counts if per_row else int(counts.sum())
