"""Compiled kernels of cube_build: the 3-D drizzle and the modified Shepard point cloud.

jwst 3.0 does this work in C extensions (``cube_match_sky_driz``, ``cube_match_sky_pointcloud``).
These numba kernels give the same numbers: the same clipping of a detector pixel's footprint by a
spaxel (a Sutherland-Hodgman clip against the four spaxel edges, whose edge slope is held in single
precision as jwst's is), the same wavelength overlap, the same sums in the same order.

Two things differ, neither in the result:

- jwst tests every detector pixel against every wavelength plane of the cube (and scans the
  spaxel centres for the point cloud's region of interest); here the planes and spaxels a pixel
  can reach are found by bisection on the (increasing) centres, and tested with jwst's own
  condition, so the same ones are hit;
- jwst allocates a full set of cube arrays per exposure and adds them up afterwards; here an
  exposure's sums go to one scratch set that is added to the running totals and cleared, the
  same additions in the same order, with memory that does not grow with the number of exposures.
"""

from __future__ import annotations

import math

import numba
import numpy as np

_LEFT, _RIGHT, _BOTTOM, _TOP = 0, 1, 2, 3


@numba.njit(cache=True, inline="always", error_model="numpy")
def _clip_edge(edge, bound, xp, yp, nv, xn, yn):
    """One Sutherland-Hodgman pass: the closed vertex list ``xp, yp`` (``nv`` vertices, then the
    first again) clipped by one edge of the spaxel (``bound``: its x or y) into ``xn, yn``, closed
    with its first vertex; returns the new length, closing vertex included.  When no vertex
    survives, later passes get an empty list and the area is 0, as in jwst's clip."""
    n2 = 0
    for j in range(nv):
        x1 = xp[j]
        y1 = yp[j]
        x2 = xp[j + 1]
        y2 = yp[j + 1]
        if edge == _LEFT:
            in1 = x1 > bound
            in2 = x2 > bound
        elif edge == _RIGHT:
            in1 = x1 < bound
            in2 = x2 < bound
        elif edge == _BOTTOM:
            in1 = y1 > bound
            in2 = y2 > bound
        else:
            in1 = y1 < bound
            in2 = y2 < bound
        if in2:
            if not in1:  # entering: the crossing point, then the end point
                xi, yi = _cross(edge, bound, x1, y1, x2, y2)
                xn[n2] = xi
                yn[n2] = yi
                n2 += 1
            xn[n2] = x2
            yn[n2] = y2
            n2 += 1
        elif in1:  # leaving: the crossing point only
            xi, yi = _cross(edge, bound, x1, y1, x2, y2)
            xn[n2] = xi
            yn[n2] = yi
            n2 += 1
    xn[n2] = xn[0]
    yn[n2] = yn[0]
    return n2 + 1


@numba.njit(cache=True, inline="always", error_model="numpy")
def _cross(edge, bound, x1, y1, x2, y2):
    """Where the segment crosses the edge; the slope is a single-precision number in jwst's clip,
    its inverse too."""
    m = np.float32(0.0)
    if x2 != x1:
        m = np.float32((y2 - y1) / (x2 - x1))
    if edge == _LEFT or edge == _RIGHT:
        return bound, y1 + np.float64(m) * (bound - x1)
    if x1 != x2:
        inv = np.float32(1.0) / m
        return x1 + np.float64(inv) * (bound - y1), bound
    return x1, bound


@numba.njit(cache=True, error_model="numpy")
def overlap_area(xcenter, ycenter, xlength, ylength, xcorner, ycorner, xp, yp, xn, yn):
    """Area of a quadrilateral (``xcorner``, ``ycorner``: 4 corners) inside one rectangular spaxel.

    ``xp, yp, xn, yn`` are scratch vectors (12 long).  The four clip passes (left, right, bottom,
    top edges, jwst's order), each compiled for its edge, go from one pair of vectors to the other
    and back, so the polygon ends in ``xp, yp``.
    """
    top = ycenter + 0.5 * ylength
    bottom = ycenter - 0.5 * ylength
    left = xcenter - 0.5 * xlength
    right = xcenter + 0.5 * xlength
    for i in range(4):
        xp[i] = xcorner[i]
        yp[i] = ycorner[i]
    xp[4] = xcorner[0]
    yp[4] = ycorner[0]
    n = _clip_edge(_LEFT, left, xp, yp, 4, xn, yn)
    n = _clip_edge(_RIGHT, right, xn, yn, n - 1, xp, yp)
    n = _clip_edge(_BOTTOM, bottom, xp, yp, n - 1, xn, yn)
    nv = _clip_edge(_TOP, top, xn, yn, n - 1, xp, yp)
    if nv <= 0:
        return 0.0
    xmin = xp[0]
    ymin = yp[0]
    for i in range(1, nv):
        if xp[i] < xmin:
            xmin = xp[i]
        if yp[i] < ymin:
            ymin = yp[i]
    area = 0.0
    for i in range(nv - 1):
        area = area + ((xp[i] - xmin) * (yp[i + 1] - ymin) - (xp[i + 1] - xmin) * (yp[i] - ymin))
    return abs(0.5 * area)


def drizzle_exposure(xc, yc, zc, cdelt3, cdelt1, cdelt2, wave, dwave, flux, err,
                     xi1, eta1, xi2, eta2, xi3, eta3, xi4, eta4,
                     fluxv, weightv, varv, ifluxv):
    """One exposure's detector pixels drizzled onto the cube: the sums of flux*w, w, (err*w)^2 and
    the count of overlapping pixels, added into ``fluxv``, ``weightv``, ``varv``, ``ifluxv`` (flat,
    plane-major, zeroed by the caller), as jwst's ``match_driz`` computes them.

    The wavelength planes are shared out between threads in blocks (:func:`drizzle_planes`): a
    spaxel belongs to one plane, so it receives its pixels in the same order whatever the split."""
    from .._threads import run_rows

    first, last = plane_spans(zc, cdelt3, wave, dwave)
    run_rows(drizzle_planes, zc.size, xc, yc, zc, cdelt3, cdelt1, cdelt2, wave, dwave, flux, err,
             xi1, eta1, xi2, eta2, xi3, eta3, xi4, eta4, fluxv, weightv, varv, ifluxv, first, last)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def plane_spans(zc, cdelt3, wave, dwave):
    """For each pixel, the planes ``first[k]..last[k]`` (end excluded) that may pass jwst's
    wavelength test ``|zc - w| < |dw + cdelt3|`` (a superset, found by bisection on the increasing
    centres), once for all the blocks of planes; ``first[k] = -1``: the pixel reaches no plane."""
    n = wave.size
    nwave = zc.size
    first = np.empty(n, np.int64)
    last = np.empty(n, np.int64)
    max_cdelt3 = cdelt3[0]
    for iw in range(1, nwave):
        if cdelt3[iw] > max_cdelt3:
            max_cdelt3 = cdelt3[iw]
    for k in range(n):
        w = wave[k]
        dw = dwave[k]
        reach = abs(dw) + abs(max_cdelt3)
        iw1 = np.searchsorted(zc, w - reach, side="left") - 1
        iw2 = np.searchsorted(zc, w + reach, side="right") + 1
        if iw1 < 0:
            iw1 = 0
        if iw2 > nwave:
            iw2 = nwave
        hit = False
        for iw in range(iw1, iw2):
            if abs(zc[iw] - w) < abs(dw + cdelt3[iw]):
                hit = True
                break
        first[k] = iw1 if hit else -1
        last[k] = iw2
    return first, last


@numba.njit(cache=True, nogil=True, error_model="numpy")
def drizzle_planes(lo, hi, xc, yc, zc, cdelt3, cdelt1, cdelt2, wave, dwave, flux, err,
                   xi1, eta1, xi2, eta2, xi3, eta3, xi4, eta4,
                   fluxv, weightv, varv, ifluxv, first, last):
    """:func:`drizzle_exposure` for the cube's planes ``lo..hi`` only (``first``, ``last``: each
    pixel's candidate planes, :func:`plane_spans`).

    A pixel's overlap with a spaxel does not depend on the plane, so it is computed once per
    pixel and spaxel (jwst computes it again for every plane the pixel reaches): the same
    numbers, multiplied by each plane's wavelength overlap."""
    nx = xc.size
    ny = yc.size
    nxy = nx * ny
    xpix = np.empty(5)
    ypix = np.empty(5)
    xp = np.zeros(12)
    yp = np.zeros(12)
    xn = np.zeros(12)
    yn = np.zeros(12)
    areas = np.empty(64)  # the pixel's overlap with each spaxel of its search box (-1: no overlap test passed)
    cdelt1_half = cdelt1 / 2.0
    cdelt2_half = cdelt2 / 2.0
    for k in range(wave.size):
        # planes that can pass |zc - w| < |dw + cdelt3[iw]|: a superset, then jwst's exact test
        iw1 = first[k]
        iw2 = last[k]
        if iw1 < 0 or iw1 >= hi or iw2 <= lo:
            continue
        w = wave[k]
        dw = dwave[k]
        if iw1 < lo:
            iw1 = lo
        if iw2 > hi:
            iw2 = hi
        hit = False
        for iw in range(iw1, iw2):
            if abs(zc[iw] - w) < abs(dw + cdelt3[iw]):
                hit = True
                break
        if not hit:
            continue
        xpix[0] = xi1[k]
        xpix[1] = xi2[k]
        xpix[2] = xi3[k]
        xpix[3] = xi4[k]
        xpix[4] = xi1[k]
        ypix[0] = eta1[k]
        ypix[1] = eta2[k]
        ypix[2] = eta3[k]
        ypix[3] = eta4[k]
        ypix[4] = eta1[k]
        xmin = xpix[0]
        ymin = ypix[0]
        xmax = xmin
        ymax = ymin
        for j in range(1, 5):
            if xpix[j] > xmax:
                xmax = xpix[j]
            if ypix[j] > ymax:
                ymax = ypix[j]
            if xpix[j] < xmin:
                xmin = xpix[j]
            if ypix[j] < ymin:
                ymin = ypix[j]
        # the spaxel search box (C truncates the double toward zero into an int)
        ix1 = int(abs((xmin - cdelt1_half - xc[0]) / cdelt1)) - 1
        ix2 = int(abs((xmax + cdelt1_half - xc[0]) / cdelt1)) + 1
        iy1 = int(abs((ymin - cdelt2_half - yc[0]) / cdelt2)) - 1
        iy2 = int(abs((ymax + cdelt2_half - yc[0]) / cdelt2)) + 1
        if ix1 < 0:
            ix1 = 0
        if iy1 < 0:
            iy1 = 0
        if ix2 > nx:
            ix2 = nx
        if iy2 > ny:
            iy2 = ny
        if ix2 <= ix1 or iy2 <= iy1:
            continue
        bw = iy2 - iy1
        nbox = (ix2 - ix1) * bw
        if nbox > areas.size:
            areas = np.empty(nbox)
        for ix in range(ix1, ix2):
            xleft = xc[ix] - cdelt1 * 0.5
            xright = xc[ix] + cdelt1 * 0.5
            xin = xleft < xmax and xright > xmin
            for iy in range(iy1, iy2):
                ybot = yc[iy] - cdelt2 * 0.5
                ytop = yc[iy] + cdelt2 * 0.5
                a = -1.0
                if xin and ybot < ymax and ytop > ymin:
                    a = overlap_area(xc[ix], yc[iy], cdelt1, cdelt2, xpix, ypix, xp, yp, xn, yn)
                areas[(ix - ix1) * bw + (iy - iy1)] = a
        for iw in range(iw1, iw2):
            zreg = abs(dw + cdelt3[iw])
            wdiff = zc[iw] - w
            if abs(wdiff) < zreg:
                ptmin = w - dw / 2
                ptmax = w + dw / 2
                spxmin = zc[iw] - cdelt3[iw] / 2
                spxmax = zc[iw] + cdelt3[iw] / 2
                z1 = spxmax - ptmin
                z2 = spxmax - ptmax
                z3 = spxmin - ptmin
                if z1 < 0:
                    z1 = 0.0
                if z2 < 0:
                    z2 = 0.0
                if z3 < 0:
                    z3 = 0.0
                zoverlap = z1 - z2 - z3
                if zoverlap < 0:
                    zoverlap = 0.0
                for ix in range(ix1, ix2):
                    for iy in range(iy1, iy2):
                        area = areas[(ix - ix1) * bw + (iy - iy1)]
                        if area >= 0.0:
                            idx = iw * nxy + iy * nx + ix
                            aw = area * zoverlap
                            if aw > 0:
                                fluxv[idx] = fluxv[idx] + flux[k] * aw
                                weightv[idx] = weightv[idx] + aw
                                varv[idx] = varv[idx] + (err[k] * aw) * (err[k] * aw)
                                ifluxv[idx] = ifluxv[idx] + 1.0


@numba.njit(cache=True, error_model="numpy")
def add_and_clear(total, part):
    """``total += part`` element by element, then ``part = 0`` (one exposure's sums into the cube)."""
    for i in range(total.size):
        total[i] = total[i] + part[i]
        part[i] = 0.0


@numba.njit(cache=True, inline="always", error_model="numpy")
def _roi_span(centres, value, roi):
    """The run of ``centres`` (increasing) with ``|centre - value| <= roi``: ``(start, end, found)``,
    the same run jwst's scan finds (the difference is monotonic in the centre), by bisection."""
    n = centres.size
    lo, hi = 0, n
    while lo < hi:  # first centre with centre - value >= -roi
        mid = (lo + hi) // 2
        if centres[mid] - value < -roi:
            lo = mid + 1
        else:
            hi = mid
    start = lo
    if start >= n or abs(centres[start] - value) > roi:
        return -1, -1, False
    lo, hi = start, n
    while lo < hi:  # first centre after it with centre - value > roi
        mid = (lo + hi) // 2
        if centres[mid] - value <= roi:
            lo = mid + 1
        else:
            hi = mid
    return start, lo, True


def pointcloud_exposure(xc, yc, zc, zcdelt3, cdelt1, cdelt2, coord1, coord2, wave, flux, err,
                        rois, roiw, scalerad, weight_power, softrad, emsm,
                        fluxv, weightv, varv, ifluxv):
    """One exposure's point cloud onto the cube with the modified Shepard weights, as jwst's
    ``match_point_emsm`` / ``match_point_msm``: every spaxel whose centre is within ``rois`` (a
    circle) and ``roiw`` of a detector pixel's centre gets it with weight exp(-d2 / (scalerad /
    cdelt1)) (emsm) or 1 / max(d ** power, softrad) (msm), d2 the squared distance in spaxels and
    wavelength planes.

    The wavelength planes are shared out between threads in blocks (:func:`pointcloud_planes`),
    each spaxel receiving its pixels in the same order whatever the split."""
    from .._threads import run_rows

    run_rows(pointcloud_planes, zc.size, xc, yc, zc, zcdelt3, cdelt1, cdelt2, coord1, coord2, wave, flux, err,
             rois, roiw, scalerad, weight_power, softrad, emsm, fluxv, weightv, varv, ifluxv)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def pointcloud_planes(lo, hi, xc, yc, zc, zcdelt3, cdelt1, cdelt2, coord1, coord2, wave, flux, err,
                      rois, roiw, scalerad, weight_power, softrad, emsm,
                      fluxv, weightv, varv, ifluxv):
    """:func:`pointcloud_exposure` for the cube's planes ``lo..hi`` only."""
    nx = xc.size
    ny = yc.size
    nxy = nx * ny
    for k in range(wave.size):
        iw1, iw2, okw = _roi_span(zc, wave[k], roiw[k])
        if iw1 < lo:
            iw1 = lo
        if iw2 > hi:
            iw2 = hi
        if iw2 <= iw1:
            continue
        ix1, ix2, okx = _roi_span(xc, coord1[k], rois[k])
        iy1, iy2, oky = _roi_span(yc, coord2[k], rois[k])
        if not (okw and okx and oky):
            continue
        for ix in range(ix1, ix2):
            for iy in range(iy1, iy2):
                ydist = abs(yc[iy] - coord2[k])
                xdist = abs(xc[ix] - coord1[k])
                radius = math.sqrt(xdist * xdist + ydist * ydist)
                if radius <= rois[k]:
                    index_xy = iy * nx + ix
                    for iw in range(iw1, iw2):
                        idx = iw * nxy + index_xy
                        d1 = xdist / cdelt1
                        d2 = ydist / cdelt2
                        dxy = (d1 * d1) + (d2 * d2)
                        d3 = (wave[k] - zc[iw]) / zcdelt3[iw]
                        w = d3 * d3 + dxy
                        if emsm:
                            ww = math.exp(-w / (scalerad[k] / cdelt1))
                        else:
                            wn = math.pow(math.sqrt(w), weight_power[k])
                            if wn < softrad[k]:
                                wn = softrad[k]
                            ww = 1.0 / wn
                        fluxv[idx] = fluxv[idx] + flux[k] * ww
                        weightv[idx] = weightv[idx] + ww
                        varv[idx] = varv[idx] + (err[k] * ww) * (err[k] * ww)
                        ifluxv[idx] = ifluxv[idx] + 1.0


@numba.njit(cache=True, error_model="numpy")
def _slice_line(overlap_partial, cdelt1, cdelt2, naxis1, naxis2, xstart, ystart, xi_min, eta_min, xi_max,
                eta_max, plane):
    """The spaxels a slice's line crosses on one plane, flagged ``overlap_partial``: jwst's Bresenham
    walk from the slice's (min, min) to its (max, max) corner, with its C code's swaps as they are
    (they copy rather than exchange the end points)."""
    x1 = int((xi_min - xstart) / cdelt1)
    y1 = int((eta_min - ystart) / cdelt2)
    x2 = int((xi_max - xstart) / cdelt1)
    y2 = int((eta_max - ystart) / cdelt2)
    dx = x2 - x1
    dy = y2 - y1
    steep = abs(dy) > abs(dx)
    if steep:
        x1 = y1
        x2 = y2
    if x1 > x2:
        x1 = x2
        y1 = y2
    dx = x2 - x1
    dy = y2 - y1
    error = int(dx / 2.0)
    ystep = 1 if y1 < y2 else -1
    y = y1
    n = plane.size
    for x in range(x1, x2 + 1):
        yuse = y
        xuse = x
        if steep:
            yuse = x
            xuse = y
        index = yuse * naxis1 + xuse
        if 0 <= index < n:
            plane[index] = overlap_partial
        error -= abs(dy)
        if error < 0:
            y += ystep
            error += dx


@numba.njit(cache=True, error_model="numpy")
def dq_nirspec(overlap_partial, xc, yc, zc, cdelt1, cdelt2, roiw_ave, coord1, coord2, wave, slice_no):
    """The NIRSpec field-of-view DQ of one exposure (jwst's ``dq_nirspec``): on every plane, each
    slice's pixels within ``roiw_ave`` of the plane's wavelength give the slice's extent on the
    tangent plane, and the spaxels along that extent's diagonal are flagged ``overlap_partial``.

    jwst scans every pixel for every plane; here each pixel goes to the planes it is near (the
    same planes: the condition is tested as jwst tests it), and the extents are kept per plane."""
    nx = xc.size
    ny = yc.size
    nz = zc.size
    nxy = nx * ny
    minvalue = np.float64(np.float32(10000.0))
    maxvalue = np.float64(np.float32(-10000.0))
    c1min = np.full((nz, 30), minvalue)
    c2min = np.full((nz, 30), minvalue)
    c1max = np.full((nz, 30), maxvalue)
    c2max = np.full((nz, 30), maxvalue)
    nmatch = np.zeros(nz, np.int64)
    for k in range(wave.size):
        w = wave[k]
        i0 = np.searchsorted(zc, w - abs(roiw_ave), side="left") - 1
        i1 = np.searchsorted(zc, w + abs(roiw_ave), side="right") + 1
        if i0 < 0:
            i0 = 0
        if i1 > nz:
            i1 = nz
        islice = int(slice_no[k]) - 1
        c1 = coord1[k]
        c2 = coord2[k]
        for iw in range(i0, i1):
            if abs(zc[iw] - w) < roiw_ave:
                if c1 < c1min[iw, islice]:
                    c1min[iw, islice] = c1
                if c2 < c2min[iw, islice]:
                    c2min[iw, islice] = c2
                if c1 > c1max[iw, islice]:
                    c1max[iw, islice] = c1
                if c2 > c2max[iw, islice]:
                    c2max[iw, islice] = c2
                nmatch[iw] += 1
    dq = np.zeros(nz * nxy, np.uint32)
    plane = np.zeros(nxy, np.int64)
    xstart = np.float64(np.float32(xc[0]))
    ystart = np.float64(np.float32(yc[0]))
    for iw in range(nz):
        if nmatch[iw] == 0:
            continue
        plane[:] = 0
        found = False
        for s in range(30):
            if (c1min[iw, s] != minvalue and c2min[iw, s] != minvalue and c1max[iw, s] != maxvalue
                    and c2max[iw, s] != maxvalue and c1min[iw, s] != c1max[iw, s] and c2min[iw, s] != c2max[iw, s]):
                found = True
                _slice_line(overlap_partial, cdelt1, cdelt2, nx, ny, xstart, ystart,
                            np.float64(np.float32(c1min[iw, s])), np.float64(np.float32(c2min[iw, s])),
                            np.float64(np.float32(c1max[iw, s])), np.float64(np.float32(c2max[iw, s])), plane)
        if found:
            for j in range(nxy):
                dq[iw * nxy + j] = plane[j]
    return dq
