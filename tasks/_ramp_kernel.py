"""A compiled ordinary-least-squares ramp fitter giving stcal's OLS_C answers.

stcal 1.20's ``OLS_C`` (its C extension, jwst 3.0's default ramp fitter)
fits one pixel at a time on one core.  This module follows the same per-pixel
algorithm in numba, rows in parallel:

- saturated groups become NaN; ZEROFRAME replaces a ramp with no good group,
  and a ramp whose only good group is the first uses the first-group timing
  (unless one-group ramps are suppressed);
- the pixel's median rate (for the Poisson variance) is the mean over
  integrations of the median first difference, jumps and DO_NOT_USE left out;
- each integration is cut into segments of good groups (a segment may start
  with the group carrying JUMP_DET; PERSISTENCE is ignored); one-group
  segments are dropped when a longer one exists;
- each segment gets an optimally weighted straight-line fit (weights
  ``|x - mid| / mid`` to a power set by the segment's signal-to-noise, in
  single precision as in C), or the special one- and two-group formulas,
  and Poisson and read-noise variances;
- integration slopes are the segment slopes weighted by inverse read-noise
  variance, and the exposure rate the same over all segments of all
  integrations; variances combine as inverse sums, with jwst's
  LARGE_VARIANCE_THRESHOLD (1e6) and DQ rules.

All arithmetic is double precision with stcal's casts (frame and group times,
and the float32 products).  The optional-results product (``save_opt``) and
CHARGELOSS read-noise recomputation are left to stcal by the caller.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ._threads import run_rows

from ._jump_kernel import _median_of, pixel_major_row

LARGE_VARIANCE_THRESHOLD = 1.0e6
NAN = np.nan


@numba.njit(cache=True, error_model="numpy")
def _nan_median(arr, n, buf):
    """stcal's median of first differences: the median of the values of arr[:n] that are not NaN.

    (C sorts with NaNs last and takes the middle of the leading non-NaN
    values; selecting the middle gives the same values without the sort.)
    """
    k = 0
    for i in range(n):
        v = arr[i]
        if not math.isnan(v):
            buf[k] = v
            k += 1
    if k == 0:
        return NAN
    if k == 1:
        return buf[0]
    if k == 2:
        return (buf[0] + buf[1]) / 2.0
    return _median_of(buf, k)


POWERS = np.array([0.0, 0.4, 1.0, 3.0, 6.0, 10.0])


@numba.njit(cache=True, error_model="numpy")
def _snr_power_index(snr):
    """Index into POWERS of the weighting power for a segment's signal-to-noise ratio (NaN: the last)."""
    if snr < 5.0:
        return 0
    elif snr < 10.0:
        return 1
    elif snr < 20.0:
        return 2
    elif snr < 50.0:
        return 3
    elif snr < 100.0:
        return 4
    return 5


@numba.njit(cache=True, error_model="numpy")
def weight_table(ngroups, powers):
    """w[length, power, g] = powf(|g - mid| / mid, power) for segments of 3..ngroups groups.

    The optimal weights depend only on the segment length, the position in it
    and the power, so they are computed once, in single precision as stcal's
    C code does (``powf``).
    """
    w = np.zeros((ngroups + 1, powers.size, ngroups), np.float64)
    for ln in range(3, ngroups + 1):
        mid = np.float64(ln - 1) / 2.0
        invmid = 1.0 / mid
        for p in range(powers.size):
            pw = np.float32(powers[p])
            for g in range(ln):
                v = abs((np.float64(g) - mid) * invmid)
                w[ln, p, g] = np.float64(np.float32(v) ** pw)
    return w


def one_good_group(gdq, pers):
    """(nints, ny, nx) mask of ramps with exactly one group free of flags other than PERSISTENCE."""
    nints, ngroups, ny, nx = gdq.shape
    out = np.zeros((nints, ny, nx), np.bool_)
    run_rows(_one_good_rows, ny, gdq, pers, out)
    return out


@numba.njit(cache=True, nogil=True)
def _one_good_rows(lo, hi, gdq, pers, out):
    nints, ngroups, ny, nx = gdq.shape
    npers = np.uint8(~pers & 0xFF)
    for y in range(lo, hi):
        cnt = np.zeros(nx, np.int64)
        for i in range(nints):
            cnt[:] = 0
            for g in range(ngroups):
                for x in range(nx):
                    if (gdq[i, g, y, x] & npers) == 0:
                        cnt[x] += 1
            for x in range(nx):
                out[i, y, x] = cnt[x] == 1


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _load_pixel(x, rowd, rowq, y, nints, ngroups, zframe, has_zframe, suppress1g, one_good, clear_first_jump,
                dnu, jump, sat, pers, pdq, d, q, is0, isz, cnt_sat, cnt_dnu, cnt_ds, idq):
    """One pixel's ramps (from the row's pixel-major copies) into ``d``/``q`` and its group statistics.

    Saturated groups become NaN, ZEROFRAME stands in for a ramp with no good
    group; returns the JUMP_DET and PERSISTENCE bits the exposure's rate DQ gets.
    """
    rate_bits = np.uint32(0)
    for i in range(nints):
        idq[i] = pdq
        is0[i] = False
        isz[i] = False
        cnt_good = 0
        cnt_sat[i] = 0
        cnt_dnu[i] = 0
        cnt_ds[i] = 0
        has_jump = False
        has_pers = False
        base = i * ngroups
        # stcal's suppress_one_good_group_ramps: such ramps are made DO_NOT_USE
        extra = np.uint32(dnu) if (suppress1g and one_good[i, y, x]) else np.uint32(0)
        for g in range(ngroups):
            v = np.uint32(rowq[x, base + g]) | extra
            if g == 0 and clear_first_jump:
                # stcal's discard_miri_groups: the first group kept loses JUMP_DET
                v &= np.uint32(~jump & 0xFFFFFFFF)
            q[base + g] = v
            if v & jump:
                has_jump = True
            if v & pers:
                has_pers = True
            if v == 0:
                cnt_good += 1
            elif v & dnu:
                cnt_dnu[i] += 1
            if (v & dnu) or (v & sat):
                cnt_ds[i] += 1
            if v & sat:
                d[base + g] = NAN
                cnt_sat[i] += 1
            else:
                d[base + g] = np.float64(rowd[x, base + g])
        if not suppress1g:
            if cnt_good == 1 and q[base] == 0:
                is0[i] = True
            elif cnt_good == 0 and has_zframe:
                z = np.float64(zframe[i, y, x])
                if z != 0.0:
                    d[base] = z
                    q[base] = 0
                    cnt_good = 1
                    cnt_ds[i] -= 1
                    if ngroups == cnt_sat[i]:
                        cnt_sat[i] -= 1
                    if ngroups == cnt_dnu[i]:
                        cnt_dnu[i] -= 1
                    isz[i] = True
        if has_jump:
            idq[i] |= np.uint32(jump)
            rate_bits |= np.uint32(jump)
        if has_pers:
            idq[i] |= np.uint32(pers)
            rate_bits |= np.uint32(pers)
    return rate_bits


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _median_rate_sum(d, q, is0, isz, nints, ngroups, group_time, frame_time, one_group_time, dnu, jump, loc, mbuf):
    """The sum over the pixel's integrations of their median rates (stcal's median first difference)."""
    accum = 0.0
    if ngroups == 1:
        for i in range(nints):
            accum += d[i * ngroups] / one_group_time
        return accum
    for i in range(nints):
        base = i * ngroups
        if is0[i]:
            mrate = d[base] / one_group_time
        elif isz[i]:
            mrate = d[base] / frame_time
        else:
            for k in range(ngroups):
                if q[base + k] & dnu:
                    loc[k] = NAN
                else:
                    loc[k] = d[base + k] / group_time
            loc0 = loc[0]
            all_nan = True
            for k in range(ngroups - 1):
                if jump & q[base + k + 1]:
                    loc[k] = NAN
                else:
                    loc[k] = loc[k + 1] - loc[k]
                if not math.isnan(loc[k]):
                    all_nan = False
            if all_nan and not math.isnan(loc0):
                loc[0] = loc0
            mrate = _nan_median(loc, ngroups - 1, mbuf)
        if math.isnan(mrate):
            mrate = 0.0
        accum += mrate
    return accum


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _row_scratch(data, gdq, y):
    """Row ``y``'s ramps, pixel-major (a pixel's ramps contiguous), and a pixel's work arrays:
    (rowd, rowq, d, q, loc, mbuf, is0, isz, cnt_sat, cnt_dnu, cnt_ds, idq)."""
    nints, ngroups, ny, nx = data.shape
    npl = nints * ngroups
    rowd = np.empty((nx, npl), np.float32)
    rowq = np.empty((nx, npl), np.uint8)
    pixel_major_row(data, gdq, y, rowd, rowq)
    return (rowd, rowq, np.empty(npl, np.float64), np.empty(npl, np.uint32), np.empty(ngroups, np.float64),
            np.empty(ngroups, np.float64), np.zeros(nints, np.bool_), np.zeros(nints, np.bool_),
            np.zeros(nints, np.int64), np.zeros(nints, np.int64), np.zeros(nints, np.int64), np.zeros(nints, np.uint32))


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _pixel_dq(pixeldq, gain2d, y, x, dnu, ngval):
    """(the pixel's DQ, DO_NOT_USE and NO_GAIN_VALUE added where its gain is not positive; its gain)."""
    pdq = np.uint32(pixeldq[y, x])
    gain = np.float64(gain2d[y, x])
    if gain <= 0.0 or math.isnan(gain):
        pdq |= np.uint32(dnu | ngval)
    return pdq, gain


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _median_rows(lo, hi, data, gdq, pixeldq, gain2d, zframe, has_zframe, group_time, frame_time, one_group_time,
                 suppress1g, one_good, clear_first_jump, dnu, jump, sat, pers, ngval, accum):
    """Add each pixel's median-rate sum over this block of integrations to ``accum`` (ny, nx)."""
    nints, ngroups, ny, nx = data.shape
    for y in range(lo, hi):
        rowd, rowq, d, q, loc, mbuf, is0, isz, cnt_sat, cnt_dnu, cnt_ds, idq = _row_scratch(data, gdq, y)
        for x in range(nx):
            pdq, gain = _pixel_dq(pixeldq, gain2d, y, x, dnu, ngval)
            _load_pixel(x, rowd, rowq, y, nints, ngroups, zframe, has_zframe, suppress1g, one_good,
                        clear_first_jump, dnu, jump, sat, pers, pdq, d, q, is0, isz, cnt_sat, cnt_dnu, cnt_ds, idq)
            accum[y, x] += _median_rate_sum(d, q, is0, isz, nints, ngroups, group_time, frame_time, one_group_time,
                                            dnu, jump, loc, mbuf)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _fit_rows(lo, hi, data, gdq, pixeldq, gain2d, rnoise2d, dcur2d, zframe, has_zframe,
             group_time, frame_time, one_group_time, suppress1g, one_good, clear_first_jump,
             dnu, jump, sat, pers, ngval, wtab,
             r_slope, r_dq, r_varp, r_varr, r_err,
             i_slope, i_dq, i_varp, i_varr, i_err,
             nints_all, median_in, has_median, first_block, last_block, acc_f, acc_dq, acc_n):
    """Fit every pixel; results go into the rate (2-D) and rateints (3-D) output arrays.

    Each row is first copied into pixel-major scratch arrays, so that a
    pixel's ramp is contiguous in memory.

    ``data`` may be a block of the exposure's integrations (``nints_all`` in
    all): then ``median_in`` holds each pixel's median rate over all of them
    (``has_median``), and the exposure rate's sums are carried from block to
    block in ``acc_f`` (slope, Poisson and read-noise inverse variances),
    ``acc_dq`` and ``acc_n`` (DO_NOT_USE and SATURATED integration counts, a
    saturated group seen); the rate is written with the last block.  The sums
    run over the integrations in order, so the blocks give the whole fit's
    answers bit for bit.
    """
    nints, ngroups, ny, nx = data.shape
    invalid = dnu | sat
    npers = ~pers & 0xFFFFFFFF
    for y in range(lo, hi):
        rowd, rowq, d, q, loc, mbuf, is0, isz, cnt_sat, cnt_dnu, cnt_ds, idq = _row_scratch(data, gdq, y)
        seg_s = np.empty(ngroups, np.int64)
        seg_l = np.empty(ngroups, np.int64)
        islope = np.zeros(nints, np.float64)
        ivp = np.zeros(nints, np.float64)
        ivr = np.zeros(nints, np.float64)
        ive = np.zeros(nints, np.float64)
        for x in range(nx):
            # ---- pixel metadata
            pdq, gain = _pixel_dq(pixeldq, gain2d, y, x, dnu, ngval)
            rnoise = np.float64(rnoise2d[y, x])
            dcur = np.float64(dcur2d[y, x])
            if first_block:
                rate_dq = pdq
                rate_slope = 0.0
                rate_vp = 0.0
                rate_vr = 0.0
                dnu_cnt = 0
                sat_cnt = 0
                set_rate_sat = False
            else:
                rate_dq = acc_dq[y, x]
                rate_slope = acc_f[0, y, x]
                rate_vp = acc_f[1, y, x]
                rate_vr = acc_f[2, y, x]
                dnu_cnt = acc_n[0, y, x]
                sat_cnt = acc_n[1, y, x]
                set_rate_sat = acc_n[2, y, x] != 0
            for i in range(nints):
                islope[i] = 0.0
                ivp[i] = 0.0
                ivr[i] = 0.0
                ive[i] = 0.0
            # ---- ramp data and group statistics
            rate_dq |= _load_pixel(x, rowd, rowq, y, nints, ngroups, zframe, has_zframe, suppress1g, one_good,
                                   clear_first_jump, dnu, jump, sat, pers, pdq, d, q, is0, isz, cnt_sat, cnt_dnu,
                                   cnt_ds, idq)
            # ---- median rate
            if has_median:
                median_rate = median_in[y, x]
            else:
                accum = _median_rate_sum(d, q, is0, isz, nints, ngroups, group_time, frame_time, one_group_time,
                                         dnu, jump, loc, mbuf)
                if ngroups == 1:
                    median_rate = accum / np.float64(nints)
                else:
                    median_rate = accum / np.float64(np.float32(nints))
            # ---- each integration
            for i in range(nints):
                base = i * ngroups
                nseg = 0
                if q[base] & sat:
                    idq[i] |= np.uint32(dnu)
                    idq[i] |= np.uint32(sat)
                    islope[i] = NAN
                else:
                    # segments of good groups, possibly starting with a jump
                    in_seg = False
                    start = 0
                    maxlen = 0
                    for k in range(ngroups + 1):
                        if k < ngroups:
                            gq = q[base + k] & npers
                            good = gq == 0
                        else:
                            good = False
                        if good:
                            if not in_seg:
                                if k > 0 and (q[base + k - 1] & npers) == jump:
                                    start = k - 1
                                else:
                                    start = k
                                in_seg = True
                        elif in_seg:
                            length = k - start
                            in_seg = False
                            if length == 1 and maxlen > 1:
                                continue
                            seg_s[nseg] = start
                            seg_l[nseg] = length
                            nseg += 1
                            if length > maxlen:
                                maxlen = length
                    # prune: one segment when none is longer than 1, else drop the one-group ones
                    if nseg >= 2:
                        if maxlen < 2:
                            nseg = 1
                        else:
                            m = 0
                            for s in range(nseg):
                                if seg_l[s] != 1:
                                    seg_s[m] = seg_s[s]
                                    seg_l[m] = seg_l[s]
                                    m += 1
                            nseg = m
                if ngroups == cnt_ds[i]:
                    idq[i] |= np.uint32(dnu)
                    if ngroups == cnt_sat[i]:
                        idq[i] |= np.uint32(sat)
                elif nseg > 0:
                    invvar_r = 0.0
                    invvar_p = 0.0
                    invvar_e = 0.0
                    slope_num = 0.0
                    for s in range(nseg):
                        st = seg_s[s]
                        ln = seg_l[s]
                        if ln == 1:
                            timing = group_time
                            if not suppress1g:
                                if is0[i]:
                                    timing = one_group_time
                                elif isz[i]:
                                    timing = frame_time
                            sslope = d[base + st] / timing
                            pden = timing * gain
                            if median_rate > 0.0:
                                svp = (median_rate + dcur) / pden
                            else:
                                svp = dcur / pden
                            rnum = rnoise / timing
                            rnum = 12.0 * rnum * rnum
                            rden = 6.0 * gain * gain
                            svr = rnum / rden
                        elif ln == 2:
                            sslope = (d[base + st + 1] - d[base + st]) / group_time
                            pden = group_time * gain
                            if median_rate > 0.0:
                                svp = (median_rate + dcur) / pden
                            else:
                                svp = dcur / pden
                            rnum = rnoise / group_time
                            rnum = 12.0 * rnum * rnum
                            rden = 6.0 * gain * gain
                            svr = rnum / rden
                        else:
                            # signal to noise of the segment sets the weighting power
                            dd = d[base + st + ln - 1] - d[base + st]
                            den = rnoise * rnoise + dd * gain
                            if den <= 0.0 or gain == 0.0:
                                snr = 0.0
                            else:
                                sv = (dd * gain) / math.sqrt(den)
                                snr = 0.0 if sv < 0.0 else sv
                            pidx = _snr_power_index(snr)
                            invrn2 = 1.0 / (rnoise * rnoise)
                            sumw = 0.0
                            sumx = 0.0
                            sumxx = 0.0
                            sumy = 0.0
                            sumxy = 0.0
                            for g in range(ln):
                                w = wtab[ln, pidx, g] * invrn2
                                xv = np.float64(g) + np.float64(st)
                                dv = d[base + st + g]
                                if math.isnan(dv):
                                    dv = 0.0
                                xwt = xv * w
                                sumw += w
                                sumx += xwt
                                sumxx += xv * xwt
                                sumy += dv * w
                                sumxy += dv * xwt
                            den2 = sumw * sumxx - sumx * sumx
                            num = sumw * sumxy - sumx * sumy
                            invden = 1.0 / den2
                            sslope = (num * invden) / group_time
                            seglen = np.float64(ln)
                            pden = group_time * gain * (seglen - 1.0)
                            if median_rate > 0.0:
                                svp = (median_rate + dcur) / pden
                            else:
                                svp = dcur / pden
                            if gain <= 0.0 or math.isnan(gain):
                                svr = 0.0
                            else:
                                rnum = rnoise / group_time
                                rnum = 12.0 * rnum * rnum
                                rden = seglen * seglen * seglen - seglen
                                rden = rden * gain * gain
                                svr = rnum / rden
                        sve = svp + svr
                        invvar_r += 1.0 / svr
                        if svp > 0.0:
                            invvar_p += 1.0 / svp
                        invvar_e += 1.0 / sve
                        slope_num += sslope / svr
                    if invvar_p > 0.0:
                        ivp[i] = 1.0 / invvar_p
                    if ivp[i] >= LARGE_VARIANCE_THRESHOLD:
                        ivp[i] = 0.0
                    ivr[i] = 1.0 / invvar_r
                    if ivr[i] >= LARGE_VARIANCE_THRESHOLD:
                        ivr[i] = 0.0
                    if idq[i] & invalid:
                        islope[i] = NAN
                        ivp[i] = 0.0
                        ivr[i] = 0.0
                        ive[i] = 0.0
                    else:
                        var_err = 1.0 / invvar_e
                        islope[i] = slope_num * ivr[i]
                        if var_err > LARGE_VARIANCE_THRESHOLD:
                            ive[i] = 0.0
                        else:
                            ive[i] = math.sqrt(var_err)
                    if invvar_p > 0.0:
                        rate_vp += invvar_p
                    rate_vr += invvar_r
                    rate_slope += slope_num
                if idq[i] & dnu:
                    dnu_cnt += 1
                    islope[i] = NAN
                if idq[i] & sat:
                    sat_cnt += 1
                    islope[i] = NAN
                if cnt_sat[i] > 0:
                    idq[i] |= np.uint32(sat)
                    set_rate_sat = True
            for i in range(nints):
                i_slope[i, y, x] = np.float32(islope[i])
                i_dq[i, y, x] = idq[i]
                i_varp[i, y, x] = np.float32(ivp[i])
                i_varr[i, y, x] = np.float32(ivr[i])
                i_err[i, y, x] = np.float32(ive[i])
            if not last_block:
                acc_dq[y, x] = rate_dq
                acc_f[0, y, x] = rate_slope
                acc_f[1, y, x] = rate_vp
                acc_f[2, y, x] = rate_vr
                acc_n[0, y, x] = dnu_cnt
                acc_n[1, y, x] = sat_cnt
                acc_n[2, y, x] = 1 if set_rate_sat else 0
                continue
            # ---- the exposure's rate
            if nints_all == dnu_cnt:
                rate_dq |= np.uint32(dnu)
            if sat_cnt == nints_all:
                rate_dq |= np.uint32(sat)
            if rate_vp > 0.0:
                rate_vp = 1.0 / rate_vp
            if rate_vp >= LARGE_VARIANCE_THRESHOLD or rate_vp < 0.0:
                rate_vp = 0.0
            if rate_vr > 0.0:
                rate_vr = 1.0 / rate_vr
            if rate_vr >= LARGE_VARIANCE_THRESHOLD:
                rate_vr = 0.0
            rate_err = math.sqrt(rate_vp + rate_vr)
            if rate_dq & invalid:
                rate_slope = NAN
                rate_vp = 0.0
                rate_vr = 0.0
                rate_err = 0.0
            if set_rate_sat:
                rate_dq |= np.uint32(sat)
            if not math.isnan(rate_slope):
                rate_slope = rate_slope * rate_vr
            r_slope[y, x] = np.float32(rate_slope)
            r_dq[y, x] = rate_dq
            r_varp[y, x] = np.float32(rate_vp)
            r_varr[y, x] = np.float32(rate_vr)
            r_err[y, x] = np.float32(rate_err)


def fit(data, gdq, pixeldq, gain, rnoise, dcurrent, zframe, *, group_time, frame_time, nframes,
        suppress1g, one_good, clear_first_jump, dnu, jump, sat, pers, ngval, int_block=None, done=None):
    """Fit (nints, ngroups, ny, nx) ramps; returns stcal-shaped ``(image, integ)`` dictionaries.

    ``gdq`` is read, never written.  ``rnoise`` is the read noise already
    scaled as stcal scales it (``readnoise * gain / sqrt(2 * nframes)``).
    With ``suppress1g`` the ramps marked in ``one_good`` (from
    :func:`one_good_group` on the untrimmed groups) count as DO_NOT_USE;
    ``clear_first_jump`` drops JUMP_DET from the first group (MIRI groups
    discarded in front).  Times are rounded to float32 first, as stcal's C
    code reads them.

    ``int_block``: fit ``int_block`` integrations at a time (after one pass
    over all of them for each pixel's median rate), calling ``done(i0, i1)``
    once integrations ``i0..i1`` are fitted and no longer read; the answers
    are the same bit for bit.  The rateints arrays are then filled a block at
    a time, so that a caller may release each block of the ramp as its
    results take their place.
    """
    nints, ngroups, ny, nx = data.shape
    gt = float(np.float32(group_time))
    ft = float(np.float32(frame_time))
    # C: ((float) nframes + 1.) * (float) frame_time / 2.
    one_group_time = (float(np.float32(nframes)) + 1.0) * ft / 2.0
    r = {
        "slope": np.empty((ny, nx), np.float32), "dq": np.empty((ny, nx), np.uint32),
        "var_poisson": np.empty((ny, nx), np.float32), "var_rnoise": np.empty((ny, nx), np.float32),
        "err": np.empty((ny, nx), np.float32),
    }
    c = {
        "slope": np.empty((nints, ny, nx), np.float32), "dq": np.empty((nints, ny, nx), np.uint32),
        "var_poisson": np.empty((nints, ny, nx), np.float32), "var_rnoise": np.empty((nints, ny, nx), np.float32),
        "err": np.empty((nints, ny, nx), np.float32),
    }
    has_z = zframe is not None
    has_og = one_good is not None
    z = zframe if has_z else np.zeros((1, 1, 1), np.float32)
    if not has_og:
        one_good = np.zeros((1, 1, 1), np.bool_)
    wtab = weight_table(ngroups, POWERS)
    flags = (int(dnu), int(jump), int(sat), int(pers), int(ngval))
    step = nints if not int_block or int_block >= nints else int(int_block)
    blocks = [(i0, min(nints, i0 + step)) for i0 in range(0, nints, step)]

    def part(a, real, i0, i1):  # a block of a per-integration array (the placeholders stay whole)
        return a[i0:i1] if real else a

    if len(blocks) == 1:
        median = np.zeros((1, 1), np.float64)
        acc_f, acc_dq, acc_n = np.zeros((1, 1, 1)), np.zeros((1, 1), np.uint32), np.zeros((1, 1, 1), np.int64)
    else:
        accum = np.zeros((ny, nx), np.float64)
        for i0, i1 in blocks:
            run_rows(_median_rows, ny, data[i0:i1], gdq[i0:i1], pixeldq, gain, part(z, has_z, i0, i1), has_z, gt, ft,
                     one_group_time, bool(suppress1g), part(one_good, has_og, i0, i1), bool(clear_first_jump), *flags, accum)
        median = accum / (np.float64(nints) if ngroups == 1 else np.float64(np.float32(nints)))
        del accum
        acc_f = np.zeros((3, ny, nx), np.float64)
        acc_dq = np.zeros((ny, nx), np.uint32)
        acc_n = np.zeros((3, ny, nx), np.int64)
    for i0, i1 in blocks:
        run_rows(
            _fit_rows, ny, data[i0:i1], gdq[i0:i1], pixeldq, gain, rnoise, dcurrent, part(z, has_z, i0, i1), has_z, gt, ft,
            one_group_time, bool(suppress1g), part(one_good, has_og, i0, i1), bool(clear_first_jump), *flags,
            wtab, r["slope"], r["dq"], r["var_poisson"], r["var_rnoise"], r["err"],
            *(c[k][i0:i1] for k in ("slope", "dq", "var_poisson", "var_rnoise", "err")),
            nints, median, len(blocks) > 1, i0 == 0, i1 == nints, acc_f, acc_dq, acc_n,
        )
        if done is not None:
            done(i0, i1)
    return r, c
