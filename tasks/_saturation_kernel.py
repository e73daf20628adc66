"""Compiled saturation flagging with the answers of stcal 1.20's ``flag_saturated_pixels``.

stcal works plane by plane with whole-array numpy temporaries; here each
integration is handled in a few row-parallel passes over all its groups at
once, with the same comparisons (and dtypes) as stcal:

1. a group is SATURATED from the first group at or above the threshold on
   (NO_SAT_CHECK and NaN thresholds are set above the A/D limit), and at or
   below 0 DN it gets AD_FLOOR and DO_NOT_USE; SATURATED then grows by
   ``n_pix_grow_sat`` pixels (a square, cut at the edges), group by group;
2. with frame-averaged groups, a group that is not yet flagged, whose next
   group is saturated and which is at or above the threshold diluted by its
   frames' mean position, gets DO_NOT_USE (grown the same way);
3. with a read pattern and more than two groups, the second group gets
   DO_NOT_USE where the third saturated and the second did not but the first
   two groups' signal says the second saturated in its last frame;
4. ZEROFRAME values saturated or at the floor (grown) become 0.

Which groups of a pixel are to be grown is kept as a bit mask per pixel
(one uint64 word per 64 groups), so that growing reads the state before
any growth, as stcal's whole-plane masks do.  The caller prepares the
threshold as stcal does and ORs the reference DQ into PIXELDQ.
"""

from __future__ import annotations

import numba
import numpy as np

from ._threads import run_rows


def threshold_int(data, gdq, thresh, sat, low, bits, rowany):
    """Step 1 before growth for one integration (ngroups, ny, nx); bits[w, y, x] marks SATURATED groups.

    Rows run in parallel; within a row the loop runs along x (contiguous memory), group by group.
    """
    run_rows(_threshold_int_block, data.shape[1], data, gdq, thresh, sat, low, bits, rowany)


@numba.njit(cache=True, nogil=True)
def _threshold_int_block(lo, hi, data, gdq, thresh, sat, low, bits, rowany):
    ngroups, ny, nx = data.shape
    nwords = bits.shape[0]
    for y in range(lo, hi):
        anyrow = False
        prev = np.zeros(nx, np.bool_)
        for w in range(nwords):
            for x in range(nx):
                bits[w, y, x] = 0
        for g in range(ngroups):
            bit = np.uint64(1) << np.uint64(g & 63)
            w = g >> 6
            for x in range(nx):
                v = data[g, y, x]
                if v >= thresh[y, x]:
                    prev[x] = True
                q = gdq[g, y, x]
                if prev[x]:
                    q |= sat
                if v <= 0:
                    q |= low
                gdq[g, y, x] = q
                if q & sat:
                    bits[w, y, x] |= bit
                    anyrow = True
        rowany[y] = anyrow


def grow_bits(gdq, bits, rowany, n, flag):
    """OR ``flag`` into the groups of gdq (ngroups, ny, nx) marked in bits within n pixels (square, cut at edges)."""
    run_rows(_grow_bits_block, gdq.shape[1], gdq, bits, rowany, n, flag)


@numba.njit(cache=True, nogil=True)
def _grow_bits_block(lo, hi, gdq, bits, rowany, n, flag):
    ngroups, ny, nx = gdq.shape
    nwords = bits.shape[0]
    for y in range(lo, hi):
        y0 = max(0, y - n)
        y1 = min(ny, y + n + 1)
        near = False
        for yy in range(y0, y1):
            if rowany[yy]:
                near = True
                break
        if not near:
            continue
        for x in range(nx):
            x0 = max(0, x - n)
            x1 = min(nx, x + n + 1)
            for w in range(nwords):
                acc = np.uint64(0)
                for yy in range(y0, y1):
                    if not rowany[yy]:
                        continue
                    for xx in range(x0, x1):
                        acc |= bits[w, yy, xx]
                g = w * 64
                while acc:
                    if acc & np.uint64(1):
                        gdq[g, y, x] |= flag
                    acc >>= np.uint64(1)
                    g += 1


def partial_int(data, gdq, thresh, no_check, dilution, sat, dnu, bits, rowany):
    """Step 2 before growth: bits mark groups g (< ngroups - 1, dilution[g] != 1) found partially saturated.

    Group g: data >= thresh * dilution (float64; dilution 1 for NO_SAT_CHECK
    pixels), neither SATURATED nor DO_NOT_USE, and group g + 1 SATURATED.
    """
    run_rows(_partial_int_block, data.shape[1], data, gdq, thresh, no_check, dilution, sat, dnu, bits, rowany)


@numba.njit(cache=True, nogil=True)
def _partial_int_block(lo, hi, data, gdq, thresh, no_check, dilution, sat, dnu, bits, rowany):
    ngroups, ny, nx = data.shape
    nwords = bits.shape[0]
    both = sat | dnu
    for y in range(lo, hi):
        anyrow = False
        for w in range(nwords):
            for x in range(nx):
                bits[w, y, x] = 0
        for g in range(ngroups - 1):
            dil = dilution[g]
            if dil == 1.0:
                continue
            bit = np.uint64(1) << np.uint64(g & 63)
            w = g >> 6
            for x in range(nx):
                lim = np.float64(thresh[y, x]) * (1.0 if no_check[y, x] else dil)
                if (np.float64(data[g, y, x]) >= lim and (gdq[g, y, x] & both) == 0
                        and (gdq[g + 1, y, x] & sat) != 0):
                    bits[w, y, x] |= bit
                    anyrow = True
        rowany[y] = anyrow


def second_group(d0, d1, dq1, dq2, thresh, bias, has_bias, mean0, last2, n1, sat, dnu):
    """Step 3: DO_NOT_USE in the second group (dq1) where the first two groups say it saturated."""
    run_rows(_second_group_block, d0.shape[0], d0, d1, dq1, dq2, thresh, bias, has_bias, mean0, last2, n1, sat, dnu)


@numba.njit(cache=True, nogil=True)
def _second_group_block(lo, hi, d0, d1, dq1, dq2, thresh, bias, has_bias, mean0, last2, n1, sat, dnu):
    ny, nx = d0.shape
    for y in range(lo, hi):
        for x in range(nx):
            b = bias[y, x] if has_bias else np.float32(0.0)
            s1 = np.float32(d0[y, x] - b)
            # float32 / numpy float64 -> float64, times the last frame, plus the bias
            pred = (np.float64(s1) / mean0) * last2 + np.float64(b)
            m = pred < np.float64(thresh[y, x])
            s2 = np.float32(d1[y, x] - d0[y, x])
            m = m and s2 > np.float32(np.float32(thresh[y, x] - d0[y, x]) / np.float32(n1))
            m = m and (dq2[y, x] & sat) != 0 and (dq1[y, x] & sat) == 0
            if m:
                dq1[y, x] |= dnu


def zero_plane(z, thresh, sat, low, zdq, bits, rowany):
    """ZEROFRAME flags of step 4 before growth; bits[0] marks SATURATED pixels."""
    run_rows(_zero_plane_block, z.shape[0], z, thresh, sat, low, zdq, bits, rowany)


@numba.njit(cache=True, nogil=True)
def _zero_plane_block(lo, hi, z, thresh, sat, low, zdq, bits, rowany):
    ny, nx = z.shape
    for y in range(lo, hi):
        anyrow = False
        for x in range(nx):
            q = np.uint32(0)
            bits[0, y, x] = 0
            if z[y, x] >= thresh[y, x]:
                q |= sat
                bits[0, y, x] = 1
                anyrow = True
            if z[y, x] <= 0:
                q |= low
            zdq[0, y, x] = q
        rowany[y] = anyrow


def count_flagged(gdq, flag):
    """Number of pixels with ``flag`` in any group of any integration."""
    rows = np.zeros(gdq.shape[2], np.int64)
    run_rows(_count_flagged_block, gdq.shape[2], gdq, flag, rows)
    return rows.sum()


@numba.njit(cache=True, nogil=True)
def _count_flagged_block(lo, hi, gdq, flag, rows):
    nints, ngroups, ny, nx = gdq.shape
    for y in range(lo, hi):
        hit = np.zeros(nx, np.bool_)
        for i in range(nints):
            for g in range(ngroups):
                for x in range(nx):
                    if gdq[i, g, y, x] & flag:
                        hit[x] = True
        rows[y] = hit.sum()


def flag_saturated(data, gdq, thresh, no_check, *, sat, dnu, ad_floor, n_pix_grow_sat, read_pattern,
                   zframe=None, bias=None):
    """Steps 1-4 for every integration; gdq and zframe are updated in place.

    ``thresh`` (float32, 2-D) is stcal's prepared threshold: NO_SAT_CHECK and
    NaN pixels already raised above the A/D limit; ``no_check`` marks them.
    Returns (pixels ever SATURATED, pixels ever AD_FLOOR).
    """
    nints, ngroups, ny, nx = data.shape
    n = int(n_pix_grow_sat)
    low = np.uint8(ad_floor | dnu)
    sat8 = np.uint8(sat)
    dnu8 = np.uint8(dnu)
    bits = np.zeros(((ngroups + 63) // 64, ny, nx), np.uint64)
    rowany = np.zeros(ny, np.bool_)
    dilution = None
    if read_pattern is not None:
        dilution = np.array([float(np.mean(read_pattern[g]) / read_pattern[g][-1]) for g in range(ngroups)])
    for i in range(nints):
        threshold_int(data[i], gdq[i], thresh, sat8, low, bits, rowany)
        if n > 0:
            grow_bits(gdq[i], bits, rowany, n, sat8)
        if dilution is not None and ngroups > 1 and np.any(dilution[:-1] != 1.0):
            partial_int(data[i], gdq[i], thresh, no_check, dilution, sat8, dnu8, bits, rowany)
            # stcal grows each group's DO_NOT_USE mask (n = 0: the mask itself)
            grow_bits(gdq[i], bits, rowany, n, dnu8)
        if read_pattern is not None and ngroups > 2:
            has_bias = bias is not None
            b = bias if has_bias else np.zeros((1, 1), np.float32)
            second_group(data[i, 0], data[i, 1], gdq[i, 1], gdq[i, 2], thresh, b, has_bias,
                         float(np.mean(read_pattern[0])), float(read_pattern[2][-1]), len(read_pattern[1]), sat8, dnu8)
        if zframe is not None:
            zdq = np.zeros((1, ny, nx), np.uint32)
            zbits = np.zeros((1, ny, nx), np.uint64)
            zero_plane(zframe[i], thresh, np.uint32(sat), np.uint32(ad_floor | dnu), zdq, zbits, rowany)
            if n > 0:
                grow_bits(zdq, zbits, rowany, n, np.uint32(sat))
            zframe[i][zdq[0] != 0] = 0.0
    return int(count_flagged(gdq, sat8)), int(count_flagged(gdq, np.uint8(ad_floor)))
