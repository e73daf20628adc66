"""wfs_combine: one image out of a WFS&C dither pair (jwst's WfsCombineStep, calwebb_wfs-image3).

The two calibrated weak-lens images of a pair differ by a whole number of pixels (the WFSC
dither). The second is moved onto the first and the two are averaged:

1. The offset: the centre pixel of image 1 (``int(nx / 2)``, ``int(ny / 2)``) through image 1's
   WCS to the sky and back through image 2's, less the centre; rounded to whole pixels.
2. ``flip_dithers``: when that x offset is negative, the images swap roles (so that pairs of
   different filters line up the same way), and the offset is measured again.
3. ``do_refine``: the offset is refined on the data. Image 1, its DO_NOT_USE pixels set to the
   mean of the others, is smoothed with a Gaussian kernel of half-width ``blur_size``; the pixels
   above half the smoothed maximum give the PSF's rough centre. Boxes of ``psf_size`` around it,
   their bad pixels filled by linear interpolation from neighbours within ``n_size``, are
   overlapped at the offset; the peak of the cross-correlation of the two (each less a Gaussian
   blur of itself, sigma 5) and the first moment of a 7x7 box around it give the change of the
   offset, which is added and rounded again.
4. Image 2's SCI, DQ and ERR are shifted by the whole offset (pixels moved in from outside are 0).
5. SCI and ERR: the mean where both pixels are good, the good one where only one is, 0 where
   neither is; DQ: image 1's, image 2's where only image 2's pixel is good, and DO_NOT_USE
   added where neither is. NaNs in SCI count as 0, as in jwst.

The product is an ImageModel with SCI, ERR and DQ and image 1's header metadata (no WCS).
"""

from __future__ import annotations

import logging

import numpy as np

from .. import models
from ..errors import InputFileError
from ..models.dqflags import DO_NOT_USE
from .base import StepParams, report_qa, step

log = logging.getLogger("webbflow.steps.wfs_combine")


class WfsCombineParams(StepParams):
    do_refine: bool = False  # refine the WCS offset by cross-correlating the two images
    flip_dithers: bool = True  # change the sign and switch order of images when x offset is negative
    psf_size: int = 100  # half-size (pixels) of the box around the PSF used to refine the offset
    blur_size: int = 10  # half-width of the smoothing kernel used to find the PSF's rough centre
    n_size: int = 2  # half-size of the box of neighbours that fills a bad pixel when refining
    suffix: str | None = "wfscmb"


def wcs_offset(m1, m2) -> tuple[float, float]:
    """Where image 1's centre pixel falls in image 2, less that centre (pixels, not rounded)."""
    ny, nx = m1.data.shape
    xc, yc = int(nx / 2), int(ny / 2)
    for m in (m1, m2):
        if m.meta.wcs is None:
            raise InputFileError(m.meta.filename or "an input",
                                 "has no WCS (run assign_wcs first): wfs_combine aligns by it")
    ra, dec = m1.meta.wcs.get_transform("detector", "world")(xc, yc)
    x2, y2 = m2.meta.wcs.get_transform("world", "detector")(ra, dec)
    return float(x2 - xc), float(y2 - yc)


def _whole(v: float) -> int:
    return int(round(v))


def shift_onto_first(a: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """``out[y, x] = a[y + dy, x + dx]`` where that lies inside ``a``, else 0 (float64, as jwst)."""
    ny, nx = a.shape
    out = np.zeros(a.shape)
    src_y = slice(max(dy, 0), ny + min(dy, 0))
    src_x = slice(max(dx, 0), nx + min(dx, 0))
    dst_y = slice(max(-dy, 0), ny + min(-dy, 0))
    dst_x = slice(max(-dx, 0), nx + min(-dx, 0))
    out[dst_y, dst_x] = a[src_y, src_x]
    return out


def _kernel(size: int) -> np.ndarray:
    """A normalised (2 size + 1)-square kernel exp(-(x^2 + y^2) / size)."""
    size = int(size)
    y, x = np.mgrid[-size:size + 1, -size:size + 1]
    g = np.exp(-(x**2 / float(size) + y**2 / float(size)))
    return g / g.sum()


def fill_bad(sci: np.ndarray, dq: np.ndarray, n_size: int) -> np.ndarray:
    """Each DO_NOT_USE pixel (in row-major order, earlier fills feeding later ones) replaced by the
    linear interpolation of its neighbours within ``n_size`` (the nearest one where linear fails)."""
    from scipy.interpolate import griddata

    ny, nx = sci.shape
    bad_y, bad_x = np.nonzero(dq & DO_NOT_USE)
    for y, x in zip(bad_y, bad_x):
        x0, y0 = max(0, x - n_size), max(0, y - n_size)
        x1, y1 = min(nx - n_size, x + n_size), min(ny - n_size, y + n_size)
        pts, vals = [], []
        for xx in range(x0, x1 + 1):
            for yy in range(y0, y1 + 1):
                if (yy, xx) == (y, x) and sci[y, x] == sci[y, x]:
                    continue  # the pixel itself (kept when NaN, as jwst cannot drop it then)
                pts.append((yy, xx))
                vals.append(sci[yy, xx])
        pts_a, vals_a = np.asarray(pts, float), np.asarray(vals, float)
        v = griddata(pts_a, vals_a, [(y, x)], method="linear").item()
        if np.isnan(v):
            v = griddata(pts_a, vals_a, [(y, x)], method="nearest").item()
        sci[y, x] = v
    return sci


def _overlap(a: np.ndarray, b: np.ndarray, dx: int, dy: int):
    """The parts of ``a`` and ``b`` that coincide when ``b`` is moved by (-dx, -dy)."""
    def rng(off, n):
        return (slice(0, n - off), slice(off, n)) if off > 0 else (slice(-off, n), slice(0, n + off))

    ya, yb = rng(dy, b.shape[0])
    xa, xb = rng(dx, b.shape[1])
    return a[ya, xa], b[yb, xb]


def refine_offset(d1, q1, d2, q2, off_x: int, off_y: int, params: WfsCombineParams) -> tuple[float, float]:
    """The change of the whole-pixel offset measured on the data (step 3 of the module)."""
    from scipy.ndimage import center_of_mass, gaussian_filter
    from scipy.signal import convolve, correlate2d

    work = d1.astype(float)
    bad1 = (q1 & DO_NOT_USE).astype(bool)
    work[bad1] = work[~bad1].mean()
    smooth = convolve(work, _kernel(params.blur_size), mode="valid")
    hy, hx = np.nonzero(smooth > 0.5 * smooth.max())
    cx, cy = hx.mean() + params.blur_size, hy.mean() + params.blur_size
    log.info("Approximate centroid of image 1 PSF has x,y : %s %s", round(cx), round(cy))
    ny, nx = d1.shape
    x0, y0 = int(round(max(0, cx - params.psf_size))), int(round(max(0, cy - params.psf_size)))
    x1, y1 = int(round(min(nx, cx + params.psf_size))), int(round(min(ny, cy + params.psf_size)))
    s1 = fill_bad(d1[y0:y1, x0:x1], q1[y0:y1, x0:x1], params.n_size)
    s2 = fill_bad(d2[y0:y1, x0:x1], q2[y0:y1, x0:x1], params.n_size)
    a, b = _overlap(s1, s2, off_x, off_y)
    if a.size == 0:
        raise InputFileError("the pair", "has no overlapping pixels at the WCS offset: cannot refine it")
    ylen, xlen = a.shape
    xc, yc = xlen / 2 + 1, ylen / 2 + 1
    bx0, bx1 = int(max(0, xc - params.psf_size)), int(min(xlen - 1, xc + params.psf_size))
    by0, by1 = int(max(0, yc - params.psf_size)), int(min(ylen - 1, yc + params.psf_size))
    a, b = a[by0:by1, bx0:bx1], b[by0:by1, bx0:bx1]
    cc = correlate2d(b - gaussian_filter(b, 5), a - gaussian_filter(a, 5))
    py, px = np.unravel_index(np.argmax(cc), cc.shape)
    half = 3
    box = cc[py - half:py + half + 1, px - half:px + half + 1]
    my, mx = center_of_mass(box)
    return float(px - a.shape[1] + 1 + mx - half), float(py - a.shape[0] + 1 + my - half)


def combine_pair(m1, m2, params: WfsCombineParams):
    """The combined ImageModel of a pair (see the module), and the offsets (applied, measured)."""
    if m1.data.shape != m2.data.shape:
        log.error("Incompatible sizes for input files")
    fx, fy = wcs_offset(m1, m2)
    log.info("From the WCS the x,y pixel offsets are: %s %s", round(fx, 2), round(fy, 2))
    if _whole(fx) < 0 and params.flip_dithers:
        m1, m2 = m2, m1
    log.info("File 1 to combine: %s", m1.meta.filename)
    log.info("File 2 to combine: %s", m2.meta.filename)
    for m in (m1, m2):
        m.data[np.isnan(m.data)] = 0.0
    fx, fy = wcs_offset(m1, m2)
    ox, oy = _whole(fx), _whole(fy)
    if params.do_refine:
        dx, dy = refine_offset(m1.data, m1.dq, m2.data, m2.dq, ox, oy, params)
        log.info("Refined offsets: the x, y offsets change by %s %s", round(dx, 2), round(dy, 2))
        fx, fy = ox + dx, oy + dy
        ox, oy = ox + _whole(dx), oy + _whole(dy)
    d2 = shift_onto_first(m2.data, ox, oy)
    q2 = shift_onto_first(m2.dq, ox, oy).astype(np.uint32)
    e2 = shift_onto_first(m2.err, ox, oy)
    d1, q1, e1 = m1.data.astype(float), m1.dq, m1.err.astype(float)
    good1, good2 = (q1 & DO_NOT_USE) == 0, (q2 & DO_NOT_USE) == 0
    both, only1, only2 = good1 & good2, good1 & ~good2, good2 & ~good1
    data = np.zeros_like(d1)
    err = np.zeros_like(e1)
    for out, a, b in ((data, d1, d2), (err, e1, e2)):
        out[both] = 0.5 * (a[both] + b[both])
        out[only1] = a[only1]
        out[only2] = b[only2]
    dq = q1.copy()
    dq[only2] = q2[only2]
    dq[~good1 & ~good2] |= DO_NOT_USE
    log.info("Final x, y offset in pixels: %s %s", ox, oy)
    out = models.ImageModel(data=data.astype(np.float32))
    out.err = err.astype(np.float32)
    out.dq = dq.astype(np.uint32)
    out.meta = m1.meta.model_copy(deep=True)
    out.meta.wcs = None
    out.meta.model_type = "ImageModel"
    return out, (ox, oy), (fx, fy)


@step("wfs_combine", "WfsCombineStep", params=WfsCombineParams, suffix="wfscmb", input_class="ModelLibrary")
def wfs_combine(pair, refs, params: WfsCombineParams):
    """Combine the two dithered weak-lens images of a WFS&C pair into one."""
    members = list(pair) if isinstance(pair, (list, tuple)) else [m for _, m in pair.each()]
    if len(members) != 2:
        raise InputFileError(getattr(members[0].meta, "filename", None) if members else "the input",
                             f"wfs_combine combines a dither pair: 2 images, got {len(members)}")
    out, (ox, oy), (fx, fy) = combine_pair(members[0], members[1], params)
    report_qa(**{"x offset": ox, "y offset": oy, "x offset measured": round(fx, 2), "y offset measured": round(fy, 2)})
    return out
