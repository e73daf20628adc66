"""flat_field for NIRSpec spectroscopy: the fore-optics, spectrograph and detector flats (jwst 3.0).

The flat applied to each pixel of a slit cutout is the product of three references, each evaluated
at that pixel's wavelength:

- **f-flat** (fore optics): its FAST_VARIATION table (the row of the slit for fixed slits and
  BOTS, else the single row); for the MSA, the quadrant's per-shutter spectrum (SCI planes at the
  WAVELENGTH table's wavelengths, at the slitlet's shutter xcen/ycen) multiplies the table first,
  and its error, interpolated at the pixel, is the f-flat's error;
- **s-flat** (spectrograph) and **d-flat** (detector): an image part cut at the slit's detector
  position (full-frame pixels: the slit's xstart/ystart in the subarray's), 2-D or one plane per
  wavelength interpolated linearly at each pixel's wavelength, times their FAST_VARIATION table.

A table is averaged over each pixel's wavelength interval (3-point Gauss-Legendre over the
wavelength step to the next pixel along the dispersion); pixels outside a table's range or
with no wavelength get NO_FLAT_FIELD + DO_NOT_USE there.  The combined flat's relative error is
the three relative errors in quadrature; a DO_NOT_USE flat pixel is 1 (not corrected), a flat
<= 0 is NaN with NO_FLAT_FIELD, DO_NOT_USE and UNRELIABLE_FLAT.  Then, per slit:
``data /= flat``, the Poisson and read-noise variances ``/= flat**2``,
``var_flat = (data * flat_err / flat)**2`` (on the flat-fielded data) and
``err = sqrt(var_poisson + var_rnoise + var_flat)``; ``inverse`` multiplies (var_flat = 0).

Fixed-slit point sources get two flats, at the wavelengths before wavecorr (FLATFIELD_UN, the
uniform source's) and after it (FLATFIELD_PS, applied).  BOTS applies one flat to every
integration.  The flats that were applied are returned as jwst's ``interpolatedflat`` product
(a MultiSlitModel of slits, or an ImageModel for BOTS).
"""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np

from ..errors import InputFileError, ReferenceFileError, UnsupportedModeError
from ..models import dqflags
from ..models.nirspec_flat_refs import NirspecQuadFlatModel, fast_variation

log = logging.getLogger("webbflow.steps.flat_field")

FIXED_SLIT_TYPES = {"NRS_LAMP", "NRS_AUTOWAVE", "NRS_BRIGHTOBJ", "NRS_FIXEDSLIT"}
MICRONS_100 = 1.0e-4
HORIZONTAL, VERTICAL = 1, 2
DNU = np.uint32(dqflags.DO_NOT_USE)
NOFLAT = np.uint32(dqflags.NO_FLAT_FIELD)
BADFLAT = np.uint32(dqflags.NO_FLAT_FIELD | dqflags.DO_NOT_USE | dqflags.UNRELIABLE_FLAT)
# 3-point Gauss-Legendre abscissas (on an interval of width 1) and weights: the mean over the interval
_GAUSS_X = np.array([-math.sqrt(0.6) / 2.0, 0.0, math.sqrt(0.6) / 2.0])
_GAUSS_W = np.array([5.0, 8.0, 5.0]) / 18.0


# ---------------------------------------------------------------------------
# reading the references


def _name(model) -> str:
    return getattr(model, "_path", None) or getattr(model.meta, "filename", None) or "<in memory>"


def table_part(flat, reftype: str, exp_type: str, slit_name: str | None, table=None):
    """The fast-variation (wavelength, flat, error) a flat gives this slit: the slit's row for
    fixed slits (or the row named ANY), else the first row; NELEM elements; NaN, non-positive
    wavelengths and zero flat values dropped."""
    cols = fast_variation(flat.flat_table if table is None else table)
    if cols is None:
        raise ReferenceFileError(reftype, _name(flat), "has no FAST_VARIATION table with wavelength and data columns")
    wl_col, data_col, err_col = cols["wavelength"], cols["data"], cols["error"]
    nelem_col = cols.get("nelem")
    row = None
    if exp_type in FIXED_SLIT_TYPES and "slit_name" in cols and slit_name is not None:
        names = [n.strip().lower() for n in cols["slit_name"]]
        row = next((i for i, n in enumerate(names) if n in ("any", slit_name.lower())), None)
        if row is None:
            raise ReferenceFileError(reftype, _name(flat), f"has no FAST_VARIATION row for slit {slit_name} (nor ANY)")
    nelem = None
    if wl_col.ndim > 1:
        r = 0 if row is None else row
        wl, val, err = wl_col[r].copy(), data_col[r].copy(), err_col[r].copy()
        if nelem_col is not None:
            nelem = int(nelem_col[r])
    else:
        wl, val, err = wl_col.copy(), data_col.copy(), err_col.copy()
        if nelem_col is not None and len(nelem_col):
            nelem = int(nelem_col[0])
    if nelem is not None and nelem <= len(wl):
        wl, val, err = wl[:nelem], val[:nelem], err[:nelem]
    keep = ~np.isnan(wl) & ~np.isnan(val)
    wl, val, err = wl[keep], val[keep], err[keep]
    keep = (wl > 0.0) & (val != 0.0)
    wl, val, err = wl[keep], val[keep], err[keep]
    if len(wl) > 1 and np.any(np.diff(wl) <= 0.0):
        log.warning("flat_field: %s %s: fast-variation wavelengths are not strictly increasing", reftype, _name(flat))
    return wl, val, err


def plane_wavelengths(wavelength_table) -> np.ndarray:
    """The wavelength of each image plane (WAVELENGTH table), NaN and non-positive values dropped."""
    if wavelength_table is None or getattr(wavelength_table, "dtype", None) is None:
        return np.zeros(0, np.float32)
    names = {n.lower(): n for n in (wavelength_table.dtype.names or ())}
    col = np.asarray(wavelength_table[names.get("wavelength", "wavelength")]) if names else np.asarray(wavelength_table)
    if col.ndim > 1:
        col = col.reshape((col.shape[-1],))
    col = col[~np.isnan(col)]
    return col[col > 0.0]


# ---------------------------------------------------------------------------
# the per-pixel arithmetic


def clean_wavelengths(wl: np.ndarray, dispaxis: int) -> np.ndarray:
    """A copy of ``wl`` with non-positive and NaN values replaced: by the mean of their
    cross-dispersion line where it has valid values, else by the nearest such line."""
    out = wl.copy()
    out[out <= 0.0] = np.nan
    if dispaxis not in (HORIZONTAL, VERTICAL):
        return wl.copy()
    lines = np.ascontiguousarray(out.T if dispaxis == HORIZONTAL else out)  # a cross-dispersion line per row
    nan = np.isnan(lines)
    valid = np.isfinite(lines).any(axis=1)
    if valid.any():
        # each line's nanmean, summed along the line as numpy sums one line
        total = np.sum(np.where(nan, lines.dtype.type(0), lines), axis=1)
        count = np.sum(~nan, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = (total / count).astype(lines.dtype)
        fill = nan & valid[:, None]
        lines[fill] = np.broadcast_to(mean[:, None], lines.shape)[fill]
        first, last = np.flatnonzero(valid)[[0, -1]]
        lines[:first] = lines[first]
        lines[last:] = lines[last]
    return lines.T if dispaxis == HORIZONTAL else lines


def with_fast_variation(wl, image, dq, err, tab_wl, tab_flat, tab_err, dispaxis):
    """Multiply an image part (array or scalar) by the table averaged over each pixel's
    wavelength interval; errors in quadrature.  Returns (flat, dq, err)."""
    wl_c = clean_wavelengths(wl, dispaxis)
    step = np.zeros_like(wl_c)
    if dispaxis == HORIZONTAL:
        step[:, :-1] = wl_c[:, 1:] - wl_c[:, :-1]
        step[:, -1] = step[:, -2]
    elif dispaxis == VERTICAL:
        step[:-1, :] = wl_c[1:, :] - wl_c[:-1, :]
        step[-1, :] = step[-2, :]
    out_dq = np.zeros(wl.shape, np.uint32) if dq is None else dq.copy()
    out_err = np.zeros(wl.shape, np.float64) if err is None else err.copy()
    mean = np.zeros_like(wl_c)
    for x, w in zip(_GAUSS_X, _GAUSS_W):
        mean += w * np.interp(wl_c + step * x, tab_wl, tab_flat, left=np.nan, right=np.nan)
    tab_e = np.interp(wl_c, tab_wl, tab_err, left=np.nan, right=np.nan)
    nowave = wl <= 0
    mean[nowave] = 1.0
    tab_e[nowave] = 0.0
    missing = np.isnan(mean)
    mean[missing] = 1.0
    tab_e[missing] = 0.0
    out_dq[missing] |= NOFLAT | DNU
    out_err = np.sqrt(np.nansum([np.square(tab_e * image), np.square(out_err * mean)], axis=0))
    return image * mean, out_dq, out_err


def interpolate_planes(planes, pdq, perr, plane_wl, wl):
    """The image part at each pixel's wavelength, linear between the two planes around it
    (planes: (nz, ny, nx); DQ and ERR 2-D or 3-D).  Outside the planes' range DO_NOT_USE;
    a DO_NOT_USE pixel is 1."""
    if planes.ndim < 3:
        return planes, pdq, perr
    nz, ny, nx = planes.shape
    if nz == 1:
        if pdq.ndim == 2:
            return planes.reshape((ny, nx)), pdq, perr
        return planes.reshape((ny, nx)), pdq.reshape((ny, nx)), perr.reshape((ny, nx))
    k = np.clip(np.searchsorted(plane_wl, wl, side="right") - 1, 0, nz - 2)
    iy, ix = np.indices((ny, nx), dtype=np.intp)
    denom = plane_wl[k + 1] - plane_wl[k]
    flat_denom = denom == 0.0
    denom = np.where(flat_denom, 1.0, denom)
    p = np.where(flat_denom, 0.0, (wl - plane_wl[k]) / denom)
    q = 1.0 - p
    flat = q * planes[k, iy, ix] + p * planes[k + 1, iy, ix]
    err = perr.copy() if perr.ndim == 2 else q * perr[k, iy, ix] + p * perr[k + 1, iy, ix]
    if pdq.ndim == 2:
        dq = pdq.copy()
    else:
        dq = np.where(p == 0.0, pdq[k, iy, ix], pdq[k, iy, ix] | pdq[k + 1, iy, ix])
        flat[(dq & DNU) != 0] = 1.0
    outside = (wl < plane_wl[0]) | (wl > plane_wl[-1])
    dq[outside] |= DNU
    flat[(dq & DNU) != 0] = 1.0
    return flat.astype(planes.dtype), dq, err


def _flag_unusable(flat, dq, bad_value):
    """NaN or zero flat values: NO_FLAT_FIELD + DO_NOT_USE; DO_NOT_USE pixels take ``bad_value``."""
    dq[np.isnan(flat)] |= DNU | NOFLAT
    dq[flat == 0.0] |= DNU | NOFLAT
    flat[(dq & DNU) != 0] = bad_value


def fore_flat(wl, fflat, exp_type, dispaxis, slit_name, shutter):
    """The f-flat at each pixel: (flat, dq, err) or (ones, None, None) without an f-flat.
    ``shutter`` = (quadrant, xcen, ycen) for MSA slitlets."""
    if fflat is None:
        return np.ones(wl.shape, np.float32), None, None
    table = None
    if shutter is not None:
        quad = fflat.quadrants[shutter[0] - 1]
        table = quad.flat_table
    tab_wl, tab_flat, tab_err = table_part(fflat, "fflat", exp_type, slit_name, table)
    if tab_wl.size and tab_wl.max() < MICRONS_100:
        log.warning("flat_field: the f-flat's table wavelengths look like metres")
    err = None
    if shutter is not None:
        q, xcen, ycen = shutter
        quad = fflat.quadrants[q - 1]
        pwl = plane_wavelengths(quad.wavelength)
        spec = quad.data[:, ycen - 1, xcen - 1]
        spec_err = quad.err[:, ycen - 1, xcen - 1]
        tab_flat *= np.interp(tab_wl, pwl, spec, 1.0, 1.0)
        err = np.interp(wl, pwl, spec_err, 0.0, 0.0)
    flat, dq, err = with_fast_variation(wl, 1.0, None, err, tab_wl, tab_flat, tab_err, dispaxis)
    # the f-flat carries the flux scale: an unusable pixel has no safe value
    _flag_unusable(flat, dq, np.nan)
    return flat, dq, err


def _image_flat(wl, ref, reftype, box, exp_type, dispaxis, slit_name, planes_always):
    """The s-flat or d-flat at each pixel: the image part at the slit's box times the table."""
    if ref is None:
        return np.ones(wl.shape, np.float32), None, None
    x0, x1, y0, y1 = box
    tab_wl, tab_flat, tab_err = table_part(ref, reftype, exp_type, slit_name)
    data = ref.data
    if data is None:
        raise ReferenceFileError(reftype, _name(ref), "has no SCI image")
    dq = ref.dq if ref.dq is not None else np.zeros(data.shape[-2:] if planes_always else data.shape, np.uint32)
    err = ref.err if ref.err is not None else np.zeros(dq.shape, np.float32)
    # a reference read as a band of rows (reference_rows below) holds full-frame rows r0 and on
    r0 = ref._rows[0] if getattr(ref, "_rows", None) else 0
    rows = slice(y0 - r0, y1 - r0)
    if data.ndim == 3 or planes_always:
        image = np.array(data[:, rows, x0:x1])
        idq = np.array(dq[..., rows, x0:x1])
        ierr = np.array(err[..., rows, x0:x1])
        flat, fdq, ferr = interpolate_planes(image, idq, ierr, plane_wavelengths(ref.wavelength), wl)
    else:
        flat = np.array(data[rows, x0:x1])
        fdq = np.array(dq[rows, x0:x1])
        ferr = np.array(err[rows, x0:x1])
    if flat.shape != wl.shape:
        raise ReferenceFileError(reftype, _name(ref), f"does not cover the slit {slit_name} at x {x0}:{x1}, y {y0}:{y1}")
    _flag_unusable(flat, fdq, 1.0)
    return with_fast_variation(wl, flat, fdq, ferr, tab_wl, tab_flat, tab_err, dispaxis)


def combine_dq(parts, shape):
    """OR of the flats' DQ; none at all means no flat (BADFLAT); NO_FLAT_FIELD implies DO_NOT_USE,
    DO_NOT_USE implies NO_FLAT_FIELD and UNRELIABLE_FLAT."""
    parts = [p for p in parts if p is not None]
    dq = np.zeros(shape, np.uint32)
    if not parts:
        dq |= BADFLAT
    for p in parts:
        dq |= p
    dq[(dq & NOFLAT) != 0] |= DNU
    dq[(dq & DNU) != 0] |= BADFLAT
    return dq


def flat_at(wl, fflat, sflat, dflat, box, exp_type, dispaxis, slit_name=None, shutter=None):
    """The combined flat (flat, dq, err) for a cutout with wavelengths ``wl`` at detector ``box``
    (x0, x1, y0, y1: full-frame slices)."""
    f, fdq, ferr = fore_flat(wl, fflat, exp_type, dispaxis, slit_name, shutter)
    s, sdq, serr = _image_flat(wl, sflat, "sflat", box, exp_type, dispaxis, slit_name, False)
    d, ddq, derr = _image_flat(wl, dflat, "dflat", box, exp_type, dispaxis, slit_name, True)
    flat = f * s * d
    dq = combine_dq((fdq, sdq, ddq), flat.shape)
    rel = np.zeros_like(flat)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for part, perr in ((f, ferr), (s, serr), (d, derr)):
            if perr is not None:
                part = np.where(part == 0, 1.0, part)
                rel += (perr / part) ** 2
        err = flat * np.sqrt(rel)
    flat[(dq & DNU) != 0] = 1.0
    bad = flat <= 0.0
    if bad.any():
        flat[bad] = np.nan
        dq[bad] |= BADFLAT
    return flat, dq, err


# ---------------------------------------------------------------------------
# wavelengths of a cutout


def cutout_wavelengths(slit, use_wavecorr=None):
    """The cutout's wavelength per pixel: its WAVELENGTH array when populated, else its WCS;
    ``use_wavecorr=False`` evaluates the WCS without wavecorr's shift when the WCS has one.
    None when there is neither."""
    shape = slit.data.shape[-2:]
    wcs = getattr(slit.meta, "wcs", None)
    if use_wavecorr is False and wcs is not None and "wavecorr_frame" in wcs.available_frames:
        y, x = np.indices(shape, dtype=np.float64)
        to_slit = wcs.get_transform("detector", "slit_frame")
        to_world = wcs.get_transform("wavecorr_frame", "world")
        return (to_slit | to_world)(x, y)[2]
    wl = slit.wavelength if slit.has("wavelength") else None
    if wl is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            empty = wl.size == 0 or (np.nanmin(wl) == 0.0 and np.nanmax(wl) == 0.0)
        if not empty:
            return wl.copy()
    if wcs is None:
        return None
    y, x = np.indices(shape, dtype=np.float64)
    return wcs(x, y)[2]


def _prepared(wl):
    wl[np.isnan(wl)] = 0.0
    top = np.nanmax(wl) if wl.size else 0.0
    if 0.0 < top < MICRONS_100:
        log.warning("flat_field: the science wavelengths look like metres")
    return wl


# ---------------------------------------------------------------------------
# applying a flat


def divide(target, flat, fdq, ferr, inverse=False) -> None:
    """Flat-field ``target`` (a slit, or a BOTS cube) in place and make NaN and DO_NOT_USE agree."""
    from .flat_field import match_nans_and_flags

    flat = np.asarray(flat, np.float32)
    ferr = np.asarray(ferr, np.float32)
    fsq = flat * flat
    if not inverse:
        target.data = target.data / flat
        target.var_poisson = target.var_poisson / fsq
        target.var_rnoise = target.var_rnoise / fsq
        with np.errstate(over="ignore"):
            target.var_flat = (target.data / flat * ferr) ** 2
        target.err = np.sqrt(target.var_poisson + target.var_rnoise + target.var_flat)
    else:
        target.data = target.data * flat
        target.var_poisson = target.var_poisson * fsq
        target.var_rnoise = target.var_rnoise * fsq
        target.var_flat = np.zeros_like(target.data)
        target.err = np.sqrt(target.var_poisson + target.var_rnoise)
    target.dq = target.dq | fdq.astype(np.uint32)
    match_nans_and_flags(target)


def _box(slit, subarray, shape):
    ny, nx = shape[-2:]
    x0 = int(slit.xstart) - 1 + int(subarray.xstart or 1) - 1
    y0 = int(slit.ystart) - 1 + int(subarray.ystart or 1) - 1
    return x0, x0 + nx, y0, y0 + ny


def reference_rows(model) -> dict:
    """The full-frame rows (y0, y1) of the s-flat and d-flat the slits of ``model`` (a BOTS
    SlitModel or a MultiSlitModel of cutouts) cover together: all the step reads of them.
    Nothing (the images read whole) when they cannot be told from the model yet."""
    from ..models import MultiSlitModel, SlitModel

    if isinstance(model, MultiSlitModel):
        slits = list(model.slits)
    elif isinstance(model, SlitModel):
        slits = [model]
    else:
        return {}
    try:
        boxes = [_box(s, model.meta.subarray, s.data.shape) for s in slits]
    except (TypeError, ValueError, AttributeError):  # a cutout without its place: the step says so
        return {}
    if not boxes:
        return {}
    span = (min(b[2] for b in boxes), max(b[3] for b in boxes))
    return {"sflat": span, "dflat": span}


def _flat_slit(slit, flat, dq, err, wl):
    from ..models import SlitModel

    out = SlitModel(data=np.asarray(flat, np.float32))
    out.dq = dq.astype(np.uint32)
    out.err = np.asarray(err, np.float32)
    for a in ("name", "xstart", "xsize", "ystart", "ysize"):
        setattr(out, a, getattr(slit, a))
    out.wavelength = np.asarray(wl, np.float32)
    if getattr(slit.meta, "wcs", None) is not None:
        out.meta.wcs = slit.meta.wcs
    return out


def _meta_sharing_wcs(model):
    """A copy of the exposure's metadata for the interpolated flat, its WCS shared, not copied."""
    wcs = model.meta.wcs
    model.meta.wcs = None
    try:
        meta = model.meta.model_copy(deep=True)
    finally:
        model.meta.wcs = wcs
    meta.wcs = wcs
    return meta


def _dispaxis(model) -> int:
    d = getattr(model.meta.wcsinfo, "dispersion_direction", None)
    if d is None and getattr(model, "slits", None):
        d = model.slits[0].meta.wcsinfo.dispersion_direction
    if d is None:
        log.warning("flat_field: DISPAXIS unknown; assuming horizontal dispersion")
        d = HORIZONTAL
    return int(d)


def flat_slits(model, fflat, sflat, dflat, inverse=False):
    """Fixed slits and MSA slitlets (a MultiSlitModel), in place; returns the interpolated flats."""
    from ..models import MultiSlitModel

    exp_type = (model.meta.exposure.type or "").upper()
    dispaxis = _dispaxis(model)
    msa = exp_type == "NRS_MSASPEC"
    made = MultiSlitModel()
    made.meta = _meta_sharing_wcs(model)
    made.meta.wcs = None
    for slit in model.slits:
        shutter = None
        if msa:
            if slit.quadrant is None or slit.xcen is None or slit.ycen is None:
                raise InputFileError(_name(model), f"MSA slitlet {slit.name} has no quadrant/xcen/ycen (run assign_wcs and extract_2d)")
            shutter = (int(slit.quadrant), int(slit.xcen), int(slit.ycen))
        point_fs = exp_type == "NRS_FIXEDSLIT" and (slit.source_type or "").upper() == "POINT"
        passes = (False, True) if point_fs else (None,)
        for use_wavecorr in passes:
            wl = cutout_wavelengths(slit, use_wavecorr)
            if wl is None:
                flat = np.ones(slit.data.shape, np.float32)
                dq = np.zeros(slit.data.shape, np.uint32)
                err = np.zeros(slit.data.shape, np.float32)
                wl = np.zeros(slit.data.shape, np.float32)
            else:
                wl = _prepared(wl)
                box = _box(slit, model.meta.subarray, slit.data.shape)
                flat, dq, err = flat_at(wl, fflat, sflat, dflat, box, exp_type, dispaxis, slit.name, shutter)
            if use_wavecorr is False:
                slit.flatfield_uniform = flat
            elif use_wavecorr is True:
                slit.flatfield_point = flat
        made.slits.append(_flat_slit(slit, flat, dq, err, wl))
        divide(slit, flat, dq, err, inverse)
    return made


def flat_brightobj(model, fflat, sflat, dflat, inverse=False):
    """BOTS (a SlitModel of one or more integrations), in place; returns the interpolated flat
    (an ImageModel), or None when there are no wavelengths (the step is then skipped)."""
    from ..models import ImageModel

    wl = model.wavelength.copy() if model.has("wavelength") else None
    if wl is None or wl.size == 0 or (np.nanmin(wl) == 0.0 and np.nanmax(wl) == 0.0):
        wcs = getattr(model.meta, "wcs", None)
        if wcs is None:
            log.warning("flat_field: no wavelengths and no WCS (has assign_wcs run?); skipped")
            return None
        y, x = np.indices(model.data.shape[-2:], dtype=np.float64)
        wl = wcs(x, y)[2]
    wl = _prepared(wl)
    box = _box(model, model.meta.subarray, model.data.shape)
    flat, dq, err = flat_at(wl, fflat, sflat, dflat, box, "NRS_BRIGHTOBJ", _dispaxis(model), model.name, None)
    divide(model, flat, dq, err, inverse)
    made = ImageModel(data=np.asarray(flat, np.float32))
    made.meta = _meta_sharing_wcs(model)
    made.dq = dq.astype(np.uint32)
    made.err = np.asarray(err, np.float32)
    return made


def nirspec_flat_field(model, refs: dict, inverse=False):
    """Flat-field a NIRSpec spectroscopic exposure in place with its fflat/sflat/dflat; returns
    (interpolated flat or None, status)."""
    from ..models import IFUImageModel, MultiSlitModel, SlitModel

    exp_type = (model.meta.exposure.type or "").upper()
    fflat, sflat, dflat = refs.get("fflat"), refs.get("sflat"), refs.get("dflat")
    if exp_type == "NRS_MSASPEC" and fflat is not None and not isinstance(fflat, NirspecQuadFlatModel):
        fflat = _as_quad(fflat)
    if exp_type == "NRS_BRIGHTOBJ":
        if not isinstance(model, SlitModel):
            raise UnsupportedModeError(
                f"flat_field for NRS_BRIGHTOBJ takes the SlitModel extract_2d makes, not {type(model).__name__}")
        made = flat_brightobj(model, fflat, sflat, dflat, inverse)
        return made, ("COMPLETE" if made is not None else "SKIPPED")
    if isinstance(model, MultiSlitModel):
        made = flat_slits(model, fflat, sflat, dflat, inverse)
        return made, ("COMPLETE" if model.slits else "SKIPPED")
    if isinstance(model, IFUImageModel) or exp_type == "NRS_IFU":  # the whole image, slice by slice
        from ._flat_nirspec_ifu import flat_ifu

        return flat_ifu(model, fflat, sflat, dflat, inverse), "COMPLETE"
    raise UnsupportedModeError(
        f"flat_field for {exp_type} takes the MultiSlitModel extract_2d makes, not {type(model).__name__}")


def _as_quad(fflat):
    """An MSA f-flat opened as the single-table model: reopen it per quadrant, as jwst does for MOS."""
    path = getattr(fflat, "_path", None)
    if not path:
        raise ReferenceFileError("fflat", _name(fflat), "is not a per-quadrant (MOS) f-flat")
    try:
        return NirspecQuadFlatModel(path)
    except Exception as exc:  # noqa: BLE001 - an unreadable reference is the user's
        raise ReferenceFileError("fflat", path, str(exc)) from None
