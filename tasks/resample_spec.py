"""resample_spec: drizzle 2-D slit spectra onto one rectified grid (jwst's ResampleSpecStep).

Inputs are SlitModels (one slit, several exposures: a list or an
association) or MultiSlitModels (their slits are grouped by slit name and
each group is resampled alone, giving a MultiSlitModel of one slit per name).

The output grid (NIRSpec, celestial WCS) is built from the inputs' WCS:

- the reference exposure is the first with more than 100 usable pixels;
  the source position along the slit is the mean slit coordinate of its
  pixels weighted by its (clipped, offset to zero) signal, and the mean
  wavelength is that of its pixels; that point, at the slit centre, is the
  fiducial of a TAN projection;
- the spatial sampling is a straight-line fit of the projected offsets of
  the central column against pixel index (times ``pixel_scale_ratio``),
  along whichever of the two tangent axes varies most;
- the wavelengths of the output columns are the per-column median
  wavelengths of every input, merged in order of overlap, with points
  closer than a tenth of the finest step dropped; a lookup table maps
  columns to wavelengths, extended by half a pixel at each end;
- the number of rows covers every input's footprint in the tangent plane;
- the output WCS has the frames detector, slit_frame (slit x = 0, slit y
  of the centre column, wavelength) and world.

Drizzling is stcal's :class:`stcal.resample.Resample` as in image resample
(``good_bits`` ``~DO_NOT_USE+NON_SCIENCE``, ivm or exptime weights,
variances drizzled and ERR computed from them).  The s2d product is a
SlitModel with SCI, ERR, WHT, CON, the variances and WAVELENGTH (the output
WCS evaluated on its pixels), the first input's metadata, PIXAR_SR/PIXAR_A2
of the nominal pixel area divided by ``pixel_scale_ratio``, and an S_REGION
from the footprint of the output WCS.

Other slits with a celestial WCS (MIRI LRS fixed slit) get jwst's interpolated
output WCS (:func:`interpolated_output_wcs`: detector -> world, no slit frame).
NIRSpec lamp (non-celestial) data raise an unsupported-mode error.
"""

from __future__ import annotations

import logging
import warnings
from typing import Literal

import numpy as np
from pydantic import Field

from ..errors import ParameterError, UnsupportedModeError
from .base import StepParams, step
from .resample import GOOD_BITS, ResampleParams, _drizzle, _nan_flag_consistent, load_custom_wcs, windowed_drizzles

log = logging.getLogger("webbflow.steps.resample_spec")


class ResampleSpecParams(StepParams):
    pixfrac: float = Field(1.0, ge=0.0, le=1.0)  # pixel shrinkage factor
    kernel: Literal["square", "point"] = "square"  # flux distribution kernel
    fillval: str = "NAN"  # output value for pixels with no weight or flux
    weight_type: Literal["ivm", "exptime"] | None = "ivm"  # input image weighting
    output_shape: list[int] | None = None  # [x, y] size of the output
    pixel_scale_ratio: float = 1.0  # ratio of input to output spatial pixel scale
    pixel_scale: float | None = None  # spatial pixel scale in arcsec
    output_wcs: str = ""  # ASDF file with a custom output WCS
    single: bool = False  # resample each input to its own output on the common grid
    blendheaders: bool = True  # blend metadata from the inputs into the output
    in_memory: bool = True  # keep images in memory
    propagate_dq: bool = False  # propagate DQ during resampling

    def model_post_init(self, _ctx) -> None:
        if self.output_shape is not None and (len(self.output_shape) != 2 or min(self.output_shape) < 1):
            raise ParameterError(f"step resample_spec: 'output_shape' must be two positive sizes (got {self.output_shape})")


# ---------------------------------------------------------------------------
# the output grid


def spectral_pixel_scale(wcs, disp_axis: int = 1) -> float:
    """Approximate spatial pixel scale (degrees) of a spectral WCS at the centre of its bounding box."""
    from stcal.alignment.util import compute_scale

    cx, cy = np.mean(wcs.bounding_box, axis=1)
    return float(compute_scale(wcs, wcs(cx, cy), disp_axis=disp_axis))


def _column_wavelengths(wcs) -> list[float]:
    """Median wavelength of each bounding-box column that has any, sorted."""
    from gwcs import wcstools

    lam = np.asarray(wcs(*wcstools.grid_from_bounding_box(wcs.bounding_box))[2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        cols = lam[:, np.isfinite(lam).any(axis=0)]
        return sorted(np.nanmedian(cols, axis=0).tolist())


def sampling_wavelengths(wcs_list) -> list[float]:
    """Output wavelengths: the first WCS's column wavelengths extended by the others' beyond its range."""
    merged = _column_wavelengths(wcs_list[0])
    lo, hi = merged[0], merged[-1]
    finest = float(np.abs(np.diff(merged)).min())
    others = []
    for w in wcs_list[1:]:
        lam = _column_wavelengths(w)
        others.append((lam, min(lam), max(lam)))
        # (jwst keeps the first WCS's finest step here: the others do not change it)
    while others:
        # take next the range that overlaps the merged one most
        k = max(range(len(others)), key=lambda i: (min(hi, others[i][2]) - max(lo, others[i][1]), -i))
        lam, lmin, lmax = others.pop(k)
        if lmax < lo:
            merged = lam + merged
            lo = lmin
        elif lmin > hi:
            merged = merged + lam
            hi = lmax
        else:
            arr = np.asarray(lam)
            if lmin < lo:
                merged = arr[arr < lo].tolist() + merged
                lo = merged[0]
            if lmax > hi:
                merged = merged + arr[arr > hi].tolist()
                hi = merged[-1]
    close = np.flatnonzero(np.abs(np.diff(merged)) < max(0.1 * finest, 100 * np.finfo(float).eps))
    for i in close[::-1]:
        del merged[i]
    return merged


def _reference_model(inputs, good_bits):
    from stcal.resample.utils import build_mask

    from ..models import dqflags

    for m in inputs:
        usable = np.isfinite(m.data) & (m.data != 0) & build_mask(m.dq, good_bits, dqflags.PIXEL)
        if np.count_nonzero(usable) > 100:
            return m
    return inputs[0]


def _tangent_extent(wcs_list, sky2tan):
    xs, ys = [np.inf, -np.inf], [np.inf, -np.inf]
    from gwcs import wcstools

    for w in wcs_list:
        ra, dec, _ = w(*wcstools.grid_from_bounding_box(w.bounding_box))
        ok = np.isfinite(ra) & np.isfinite(dec)
        xt, yt = sky2tan(ra[ok], dec[ok])
        xs = [min(xs[0], np.min(xt)), max(xs[1], np.max(xt))]
        ys = [min(ys[0], np.min(yt)), max(ys[1], np.max(yt))]
    return xs, ys


def nirspec_output_wcs(inputs, good_bits=GOOD_BITS, pixel_scale_ratio: float = 1.0):
    """The rectified output WCS for NIRSpec slit exposures (see the module docstring)."""
    from astropy import coordinates as coord
    from astropy import units as u
    from astropy.modeling.fitting import LinearLSQFitter
    from astropy.modeling.models import Const1D, Linear1D, Mapping, Pix2Sky_TAN, RotateNative2Celestial, Tabular1D
    from astropy.stats import sigma_clip
    from gwcs import WCS, wcstools
    from gwcs import coordinate_frames as cf
    from stcal.alignment.util import wcs_bbox_from_shape

    ref = _reference_model(inputs, good_bits)
    wcs_list = [ref.meta.wcs] + [m.meta.wcs for m in inputs if m is not ref]
    refwcs = ref.meta.wcs
    det = refwcs.available_frames[0]
    sky_frame = "moving_target" if "moving_target" in refwcs.available_frames else "world"
    det2slit = refwcs.get_transform(det, "slit_frame")
    slit2sky = refwcs.get_transform("slit_frame", sky_frame)
    sky2slit = refwcs.get_transform(sky_frame, "slit_frame")

    signal = ref.data.astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        signal -= np.nanmin(signal)
    bbox = refwcs.bounding_box
    grid = wcstools.grid_from_bounding_box(bbox)
    _, s, lam = (np.asarray(a) for a in det2slit(*grid))
    ok = np.isfinite(s) & np.isfinite(lam) & np.isfinite(signal)
    signal[~ok] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        weights = np.ma.filled(sigma_clip(signal, masked=True, sigma=100.0), fill_value=0.0)
    s_mean = np.average(s[ok], weights=weights[ok]) if np.any(weights != 0) else np.nanmean(s)
    lam_mean = np.nanmean(lam)
    ra0, dec0, _ = slit2sky(0, s_mean, lam_mean)
    if log.isEnabledFor(logging.DEBUG):  # the inverse of det2slit, built and evaluated for this message only
        at = refwcs.get_transform("slit_frame", det)(0, s_mean, lam_mean)
        log.debug("fiducial RA %s Dec %s wavelength %s; at pixel %s", ra0, dec0, lam_mean, at)

    centre_col = int(np.mean(bbox, axis=1)[0])
    ra_c, dec_c, _ = np.asarray(refwcs(grid[0][:, centre_col], grid[1][:, centre_col]))
    tan2sky = Pix2Sky_TAN() | RotateNative2Celestial(ra0, dec0, 180)
    xt, yt = tan2sky.inverse(ra_c, dec_c)
    keep = ~(np.isnan(xt) | np.isnan(yt))
    xt, yt = xt[keep], yt[keep]
    fit = LinearLSQFitter()
    idx = np.linspace(0, xt.size * pixel_scale_ratio, xt.size, endpoint=False)
    px2xt = fit(Linear1D(), idx, xt)
    px2yt = fit(Linear1D(), idx, yt)
    along_y = abs(px2xt.slope) < abs(px2yt.slope)

    lam_out = sampling_wavelengths(wcs_list)
    nlam = len(lam_out)
    if not nlam:
        raise ValueError("not enough data to construct the output WCS")

    (xmin, xmax), (ymin, ymax) = _tangent_extent(wcs_list, tan2sky.inverse)
    span_x, span_y = abs(xmax - xmin), abs(ymax - ymin)
    step_x, step_y = abs(px2xt.slope), abs(px2yt.slope)
    ny = int(np.ceil((span_y / step_y) if along_y else (span_x / step_x))) + 1
    # centre the data in the integer number of rows
    px2yt.intercept = (ymin if px2yt.slope > 0 else ymax) - np.sign(px2yt.slope) * (ny / 2 * step_y - span_y / 2)
    px2xt.intercept = (xmin if px2xt.slope > 0 else xmax) - np.sign(px2xt.slope) * (ny / 2 * step_x - span_x / 2)

    cols = list(range(nlam))
    if nlam > 1:
        lam_out.insert(0, lam_out[0] - 0.5 * (lam_out[1] - lam_out[0]) / cols[1])
        cols.insert(0, -0.5)
        slope = (lam_out[-1] - lam_out[-2]) / (cols[-1] - cols[-2])
        lam_out.append(slope * (cols[-1] + 0.5) + lam_out[-2])
        cols.append(cols[-1] + 0.5)
    else:
        lam_out, cols = 3 * lam_out, [-0.5, 0, 0.5]
    col2lam = Tabular1D(points=cols, lookup_table=lam_out, bounds_error=False, fill_value=np.nan)

    to_sky = Mapping((1, 1, 0))
    to_sky.inverse = Mapping((2, 1)) if along_y else Mapping((2, 0))
    pix2world = to_sky | (px2xt & px2yt | tan2sky) & col2lam

    # slit y of the centre column for each output row (slit x is 0: the slit is rectified)
    rows = np.arange(ny)
    slit_y = sky2slit(*pix2world(np.full(ny, nlam // 2), rows))[1]
    row2slit = Tabular1D(points=rows, lookup_table=slit_y, bounds_error=False, fill_value=None)
    fwd = Mapping((0, 1, 0))
    back = Mapping((2, 1), n_inputs=3)
    back.inverse = fwd
    fwd.inverse = back
    zero = Const1D(0)
    zero.inverse = zero
    out_det2slit = fwd | zero & row2slit & col2lam
    out_slit2world = out_det2slit.inverse | pix2world

    spectral = cf.SpectralFrame(name="spectral", axes_order=(2,), unit=(u.micron,), axes_names=("wavelength",))
    frames = (
        cf.Frame2D(name="detector", axes_order=(0, 1)),
        cf.CompositeFrame(
            [cf.Frame2D(name="slit_spatial", axes_order=(0, 1), unit=("", ""), axes_names=("x_slit", "y_slit")), spectral],
            name="slit_frame",
        ),
        cf.CompositeFrame([cf.CelestialFrame(name="sky", axes_order=(0, 1), reference_frame=coord.ICRS()), spectral],
                          name="world"),
    )
    wcs = WCS([(frames[0], out_det2slit), (frames[1], out_slit2world), (frames[2], None)])
    wcs.bounding_box = wcs_bbox_from_shape((ny, nlam))
    wcs.array_shape = (ny, nlam)
    return wcs


def interpolated_output_wcs(inputs, pixel_scale_ratio: float = 1.0):
    """The output WCS for non-NIRSpec slits (MIRI LRS fixed slit): detector -> world only.

    The spatial sampling is a straight-line fit, against pixel index, of the tangent-plane
    offsets of the first input's row (or column) at the middle of its bounding box along the
    dispersion, about the mean RA/Dec of that cut; the output tangent point is the centre of
    every input's RA/Dec range (the first input's cut centre when there is one input).  The
    wavelengths are the first input's per-cross-dispersion-line medians, extended by each
    other input's beyond their range, sorted and unique (reversed for the LRS fixed slit, so
    that the output disperses as the detector does); a lookup table maps pixels to them.
    """
    from astropy import coordinates as coord
    from astropy import units as u
    from astropy.modeling.fitting import LinearLSQFitter
    from astropy.modeling.models import Linear1D, Mapping, Pix2Sky_TAN, RotateNative2Celestial, Tabular1D
    from gwcs import WCS, wcstools
    from gwcs import coordinate_frames as cf
    from stcal.alignment.util import wcs_bbox_from_shape

    waves = np.array([])
    ra_all, dec_all = [], []
    for k, m in enumerate(inputs):
        w = m.meta.wcs
        bbox = w.bounding_box
        ra, dec, lam = (np.asarray(a) for a in w(*wcstools.grid_from_bounding_box(bbox)))
        disp = (m.meta.wcsinfo.dispersion_direction or 1) - 1  # 0: x, 1: y (MIRI LRS)
        spatial = disp ^ 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lam_line = np.nanmedian(lam, axis=disp)
        lam_line = lam_line[np.isfinite(lam_line)]
        if k == 0:
            waves = lam_line.copy()
            mid = int((bbox[disp][1] - bbox[disp][0]) / 2)
            cut_ra, cut_dec = (ra[mid, :], dec[mid, :]) if spatial == 0 else (ra[:, mid], dec[:, mid])
            ra_c0, dec_c0 = float(np.nanmean(_same_side(cut_ra))), float(np.nanmean(cut_dec))
            sky0 = Pix2Sky_TAN() | RotateNative2Celestial(ra_c0, dec_c0, 180)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                xt, yt = sky0.inverse(ra, dec)
            xt, yt = (xt.T[mid], yt.T[mid]) if disp == 0 else (xt[mid], yt[mid])
            xt, yt = xt[np.isfinite(xt)], yt[np.isfinite(yt)]
            fit = LinearLSQFitter()
            px2xt = fit(Linear1D(), np.linspace(0, xt.size * pixel_scale_ratio, xt.size, endpoint=False), xt)
            px2yt = fit(Linear1D(), np.linspace(0, yt.size * pixel_scale_ratio, yt.size, endpoint=False), yt)
            disp0, spatial0 = disp, spatial
        ra_all.append(ra[np.isfinite(ra)].ravel())
        dec_all.append(dec[np.isfinite(dec)].ravel())
        if lam_line.size:
            lo, hi = waves.min(), waves.max()
            waves = np.concatenate([waves, lam_line[lam_line < lo], lam_line[lam_line > hi]])
    waves = np.unique(waves[np.isfinite(waves)])
    if not waves.size:
        raise ValueError("not enough data to construct the output WCS")
    if inputs[0].meta.exposure.type == "MIR_LRS-FIXEDSLIT":
        waves = waves[::-1]
    idx = np.arange(waves.size)
    px2lam = Tabular1D(points=idx, lookup_table=waves, bounds_error=False, fill_value=None, name="pix2wavelength")
    inv_pts, inv_tab = (waves, idx) if np.all(np.diff(waves) > 0) else (waves[::-1], idx[::-1])
    px2lam.inverse = Tabular1D(points=inv_pts, lookup_table=inv_tab, bounds_error=False, fill_value=None,
                               name="wavelength2pix")

    mapping = Mapping((spatial0, spatial0, disp0))
    along_y = abs(px2xt.slope) < abs(px2yt.slope)
    if along_y:
        mapping.inverse = Mapping((2, 1) if spatial0 else (1, 2))

    ra_flat = _same_side(np.concatenate(ra_all))
    dec_flat = np.concatenate(dec_all)
    if len(inputs) == 1:
        ra_c, dec_c = ra_c0, dec_c0
    else:
        ra_c = (ra_flat.max() + ra_flat.min()) / 2.0
        dec_c = (dec_flat.max() + dec_flat.min()) / 2.0
    tan2sky = Pix2Sky_TAN() | RotateNative2Celestial(ra_c, dec_c, 180)
    (xmin, xmax), (ymin, ymax) = _tangent_extent([m.meta.wcs for m in inputs], tan2sky.inverse)
    step_x, step_y = abs(px2xt.slope), abs(px2yt.slope)
    ny = int(np.ceil(abs(ymax - ymin) / step_y)) if along_y else int(np.ceil(abs(xmax - xmin) / step_x))
    px2yt.intercept = -np.sign(px2yt.slope) * 0.5 * (ny - 1) * step_y
    px2xt.intercept = -np.sign(px2xt.slope) * 0.5 * (ny - 1) * step_x

    transform = mapping | (px2xt & px2yt | tan2sky) & px2lam
    spectral = cf.SpectralFrame(name="spectral", axes_order=(2,), unit=(u.micron,), axes_names=("wavelength",))
    world = cf.CompositeFrame(
        [cf.CelestialFrame(name="sky", axes_order=(0, 1), reference_frame=coord.ICRS()), spectral], name="world")
    wcs = WCS([(cf.Frame2D(name="detector", axes_order=(0, 1)), transform), (world, None)])
    size = [0, 0]
    size[disp0] = int(waves.size)
    size[spatial0] = ny
    wcs.array_shape = tuple(size[::-1])
    wcs.pixel_shape = tuple(size)
    wcs.bounding_box = wcs_bbox_from_shape(tuple(size[::-1]))
    return wcs


def spectral_output_grid(inputs, good_bits=GOOD_BITS) -> dict:
    """The default rectified grid for these slits (as outlier detection's spec mode uses it)."""
    grid, _area = output_grid(inputs, ResampleSpecParams(), good_bits=good_bits)
    return grid


def output_grid(inputs, params: ResampleSpecParams, good_bits=GOOD_BITS) -> dict:
    """``{"wcs", "pixel_scale" (arcsec), "pixel_scale_ratio"}`` and the output pixel area (sr) for these slits."""
    from ._wcs import is_sky_like

    first = inputs[0]
    disp_axis = first.meta.wcsinfo.dispersion_direction or 1
    nominal = first.meta.photometry.pixelarea_steradians
    ratio = params.pixel_scale_ratio
    pixel_scale = params.pixel_scale
    custom = load_custom_wcs(params.output_wcs, params.output_shape)
    # The input pixel scale serves a given pixel_scale and a custom WCS without a pixel area only.  It
    # inverts the first input's WCS, whose backward transform nothing else of spec3 builds (a NIRSpec
    # slit's: some 40 ms), so it is computed only then.
    in_scale = np.nan
    if nominal is not None and (pixel_scale is not None or (custom is not None and custom.get("pixel_area") is None)):
        in_scale = 3600.0 * spectral_pixel_scale(first.meta.wcs, disp_axis)
    if pixel_scale is not None and (np.isnan(in_scale) or nominal is None):
        log.warning("The input pixel scale or nominal pixel area is unknown: pixel_scale is ignored")
        pixel_scale = None
    if custom is not None:
        wcs = custom["wcs"]
        area = custom.get("pixel_area")
        if area is None and nominal is not None:
            out_scale = 3600.0 * spectral_pixel_scale(wcs, disp_axis)
            area = None if np.isnan(out_scale) or np.isnan(in_scale) else out_scale * nominal / in_scale
        ratio = 1.0 if area is None else nominal / area
    else:
        if pixel_scale is not None:
            ratio = in_scale / pixel_scale
            log.info("Output pixel scale %s arcsec: pixel scale ratio %.5g", pixel_scale, ratio)
        if not is_sky_like(first.meta.wcs.output_frame):
            raise UnsupportedModeError("resample_spec: data whose WCS is not celestial (NIRSpec lamp) is not supported here")
        if (first.meta.instrument.name or "").upper() != "NIRSPEC":
            wcs = interpolated_output_wcs(inputs, ratio)
        else:
            wcs = nirspec_output_wcs(inputs, good_bits, ratio)
        if params.output_shape is not None:
            wcs.array_shape = tuple(params.output_shape[::-1])
        area = None if nominal is None else nominal / ratio
    if pixel_scale is None:
        pixel_scale = 3600.0 * spectral_pixel_scale(wcs, disp_axis)
    return {"wcs": wcs, "pixel_scale": pixel_scale, "pixel_scale_ratio": ratio}, area


# ---------------------------------------------------------------------------
# the s2d product

def _s2d(inputs, grid: dict, area, params: ResampleSpecParams, *, single: bool, blend: bool = False):
    from ..models import SlitModel
    from stcal.alignment.util import compute_s_region_keyword

    rparams = ResampleParams(
        pixfrac=params.pixfrac, kernel=params.kernel, fillval=params.fillval, weight_type=params.weight_type,
        propagate_dq=params.propagate_dq, enable_ctx=True, pixmap_stepsize=1.0, pixmap_order=1,
    )
    with windowed_drizzles():  # each input's pixel map and arrays only over the pixels drizzled
        if single:
            image = _drizzle(inputs, dict(grid), rparams, enable_var=False, report_var=False, compute_err="driz_err")
        else:
            image = _drizzle(inputs, dict(grid), rparams, enable_var=True, report_var=True, compute_err="from_var")
    out = SlitModel(image)
    out._hdu_order = []  # jwst's SlitModel order (declaration order)
    ref = inputs[0]
    out._headers = {k: h.copy() for k, h in ref._headers.items() if k in ("PRIMARY", "SCI")}
    # cards of the input's SCI header that the output does not carry over (slit keywords are set below)
    sci = out._headers.get("SCI")
    if sci is not None:
        for _a, key, _t in _slit_keys():
            sci.remove(key, ignore_missing=True, remove_all=True)
    if area is None:
        out.meta.photometry.pixelarea_steradians = None
        out.meta.photometry.pixelarea_arcsecsq = None
    else:
        out.meta.photometry.pixelarea_steradians = float(area)
        out.meta.photometry.pixelarea_arcsecsq = float(area * np.rad2deg(3600.0) ** 2)
    out.meta.resample.pixel_scale_ratio = params.pixel_scale_ratio if params.pixel_scale is None else grid["pixel_scale_ratio"]
    out.meta.resample.pixfrac = params.pixfrac
    out.meta.cal_step.resample = "COMPLETE"
    # like stdatamodels' update(): the first input's keyword-mapped slit attributes
    for attr, _key, _typ in _slit_keys():
        v = getattr(ref, attr, None)
        if v is not None:
            setattr(out, attr, v)
    if params.blendheaders and blend:
        _blend_metadata(out, inputs)
    # S_REGION and spectral region from the output WCS's footprint
    from gwcs import wcstools

    w = out.meta.wcs
    ra, dec, lam = w(*wcstools.grid_from_bounding_box(w.bounding_box))
    ra = _same_side(ra)
    lo, hi = np.nanmin(ra) % 360.0, np.nanmax(ra) % 360.0
    footprint = np.array([[lo, np.nanmin(dec)], [hi, np.nanmin(dec)], [hi, np.nanmax(dec)], [lo, np.nanmax(dec)]])
    if (out.meta.exposure.type or "").upper() == "MIR_LRS-FIXEDSLIT":
        footprint = _lrs_slit_footprint(ref.meta.wcsinfo.s_region, ra, dec)
        _lrs_source_position(out, ref.meta.wcs)
    s_region = compute_s_region_keyword(footprint)
    if s_region is not None:
        out.meta.wcsinfo.s_region = s_region
    out.meta.wcsinfo.spectral_region = [float(np.nanmin(lam)), float(np.nanmax(lam))]
    yy, xx = np.indices(out.data.shape, dtype=np.float64)
    out.wavelength = np.asarray(w(xx, yy)[2], dtype=np.float32)
    return out


def _lrs_slit_footprint(first_s_region: str, ra, dec):
    """The LRS s2d's footprint, as jwst draws it: a band as wide as the narrowest side of the first
    input's S_REGION, centred on the line from the output grid's first to its last pixel."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    corners = np.array(first_s_region.split()[2:10], dtype=float).reshape(4, 2)
    pts = SkyCoord(corners[:, 0], corners[:, 1], unit="deg")
    width = min(pts[i].separation(pts[(i + 1) % 4]).deg for i in range(4)) * u.deg
    ra, dec = np.ravel(ra), np.ravel(dec)
    start = SkyCoord(ra[0] * u.deg, dec[0] * u.deg, frame="icrs")
    end = SkyCoord(ra[-1] * u.deg, dec[-1] * u.deg, frame="icrs")
    across = start.position_angle(end).to(u.deg) - 90.0 * u.deg
    c = [start.directional_offset_by(across, width / 2), end.directional_offset_by(across, width / 2),
         end.directional_offset_by(across, -width / 2), start.directional_offset_by(across, -width / 2)]
    return np.array([[p.ra.deg, p.dec.deg] for p in c])


def _lrs_source_position(out, input_wcs) -> None:
    """SRCXPOS/SRCYPOS (full-frame pixels for the LRS fixed slit) moved onto the s2d's grid."""
    if out.source_xpos is None or out.source_ypos is None:
        return
    sky = input_wcs.pixel_to_world(out.source_xpos, out.source_ypos)
    x, y = out.meta.wcs.world_to_pixel(*sky)
    out.source_xpos, out.source_ypos = float(x), float(y)


# the resampling's own values, which take precedence over the blended ones (as in jwst)
_DRIZZLE_KEYWORDS = (("EFFEXPTM", "PRIMARY"), ("XPOSURE", "SCI"), ("TMEASURE", "PRIMARY"), ("DURATION", "PRIMARY"),
                     ("TELAPSE", "SCI"), ("EXPSTART", "PRIMARY"), ("EXPEND", "PRIMARY"))


def _blend_metadata(out, inputs) -> None:
    """Blend the inputs' metadata into ``out`` as jwst's model blender does for an association's
    slits: the blended keywords, and the HDRTAB table of every input's keywords (one row each)."""
    from ..models.blend import MetaBlender
    from ..models.meta import get_path

    paths = {(key, hdu): path for path, key, hdu, _ann in type(out).keyword_fields()}
    kept = {k: get_path(out.meta, paths[k]) for k in _DRIZZLE_KEYWORDS if k in paths}
    blender = MetaBlender()
    for m in inputs:
        blender.accumulate(m)
    blender.finalize(out)
    for k, v in kept.items():
        obj = out.meta
        for p in paths[k][:-1]:
            obj = getattr(obj, p)
        setattr(obj, paths[k][-1], v)


def _slit_keys():
    from ..models.spectral import SLIT_ATTRIBUTES

    return [(a, k, t) for a, k, t in SLIT_ATTRIBUTES if k is not None]


def _same_side(ra):
    """RA values put on one side of 0/360 (around their median)."""
    ra = np.array(ra, dtype=float)
    ok = np.isfinite(ra)
    med = np.nanmedian(ra[ok])
    far = ok & (np.abs(ra - med) > 180.0)
    ra[far] += -360.0 if med < 180 else 360.0
    return ra


def resample_slits(inputs, params: ResampleSpecParams | None = None):
    """Resample slit spectra: a list of SlitModels -> one s2d SlitModel; MultiSlitModels -> a MultiSlitModel.

    A list (an association's slits, even of one) gets its inputs' metadata blended, with an HDRTAB
    table; one model given alone does not, as in jwst.
    """
    from ..models import MultiSlitModel, SlitModel

    params = params or ResampleSpecParams()
    container = isinstance(inputs, (list, tuple))
    if not container:
        inputs = [inputs]
    if not inputs:
        raise ValueError("resample_spec needs at least one input")
    if params.weight_type is None:
        raise ParameterError("step resample_spec: weight_type None is not supported; use 'ivm' or 'exptime'")
    if all(isinstance(m, MultiSlitModel) for m in inputs):
        by_name: dict = {}
        for m in inputs:
            for s in m.slits:
                by_name.setdefault(s.name, []).append(_with_exposure_meta(s, m))
        result = MultiSlitModel()
        result.meta = inputs[0].meta.model_copy(deep=True)
        result.meta.model_type = "MultiSlitModel"
        result._headers = {"PRIMARY": inputs[0]._headers.get("PRIMARY").copy()} if "PRIMARY" in inputs[0]._headers else {}
        for name, slits in by_name.items():
            if slits[0].data.ndim != 2:
                log.warning("resample_spec skipped: slit %s holds per-integration (3-D) data", name)
                result.meta.cal_step.resample = "SKIPPED"
                return inputs[0] if len(inputs) == 1 else result
            result.slits.append(_resample_one_slit(slits, params))
        result.meta.resample.pixel_scale_ratio = params.pixel_scale_ratio
        result.meta.resample.pixfrac = params.pixfrac
        result.meta.cal_step.resample = "COMPLETE"
        return result
    for m in inputs:
        if not isinstance(m, SlitModel):
            raise UnsupportedModeError(f"resample_spec takes SlitModel or MultiSlitModel inputs, not {type(m).__name__}")
        if m.data.ndim != 2:
            raise UnsupportedModeError(f"resample_spec takes 2-D slit images, not {m.data.ndim}-D data ({m.meta.filename})")
        if m.meta.wcs is None:
            raise UnsupportedModeError(f"{m.meta.filename or 'input'} has no WCS: run assign_wcs first")
    # jwst blends the metadata of an association's slits (even of one), not of a single model given alone
    out = _resample_one_slit(list(inputs), params, blend=container)
    if not params.single:
        out.meta.asn.table_name = inputs[0].meta.asn.table_name
        out.meta.asn.pool_name = inputs[0].meta.asn.pool_name
    return out


def _with_exposure_meta(slit, exposure):
    """A slit of a MultiSlitModel with its exposure's metadata (times, photometry) where the slit has none.

    The slit's WCS is shared, not copied: resampling only evaluates it, and a deep copy of a NIRSpec slit's
    gwcs took most of resample_spec's time on an MSA exposure."""
    wcs = slit.meta.wcs
    slit.meta.wcs = None
    try:
        s = slit.copy()
    finally:
        slit.meta.wcs = wcs
    merged = exposure.meta.model_copy(deep=True)
    own = s.meta.model_dump(exclude_none=True)
    for k, v in own.items():
        if k in ("wcsinfo", "photometry"):
            for kk, vv in v.items():
                setattr(getattr(merged, k), kk, vv)
        elif k in ("bunit_data", "bunit_err"):  # a NIRSpec slit's own unit (MJy for a point source)
            setattr(merged, k, v)
    if wcs is not None:
        merged.wcs = wcs
    s.meta = merged
    s._headers = dict(exposure._headers, **s._headers)
    return s


def _resample_one_slit(slits, params, blend: bool = False):
    """One slit's s2d.  Its WCSs' compound transforms are built once for the output grid's tens of
    evaluations and the pixel maps (tasks/_wcs_cache.py), in a scope of this slit alone in spec2 (so
    that what it keeps goes with the slit), inside the source's scope in spec3."""
    from ._wcs_cache import reuse_wcs_transforms
    from .resample import group_id

    with reuse_wcs_transforms():
        slits = [_nan_flag_consistent(m) for m in slits]
        grid, area = output_grid(slits, params)
        if params.single:
            # jwst drizzles each exposure group alone onto the common grid and returns the first group's
            first = group_id(slits[0])
            slits = [m for m in slits if group_id(m) == first]
        return _s2d(slits, grid, area, params, single=params.single, blend=blend)


@step("resample_spec", "ResampleSpecStep", params=ResampleSpecParams, suffix="s2d", input_class="ModelLibrary")
def resample_spec(models_in, refs, params: ResampleSpecParams):
    """Drizzle 2-D slit spectra onto one rectified spatial/spectral grid: the s2d product."""
    from ._library import ModelLibrary

    if isinstance(models_in, ModelLibrary):
        models_in = models_in.to_list()
    return resample_slits(models_in, params)
