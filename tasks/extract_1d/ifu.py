"""extract_1d on IFU cubes (s3d): aperture photometry in every wavelength plane, as jwst 3.0 does.

- **Point source**: a circle of the extract1d reference's radius (interpolated, or extrapolated,
  at each plane's wavelength; arcsec turned into spaxels by the cube's scale at the source),
  centred on ``center_xy`` if given, else (``ifu_autocen``) on the brightest source DAOStarFinder
  finds in the median of the planes below 26 um, else on the spaxel nearest the target's RA/Dec
  (TARG_RA/TARG_DEC), else on the cube's centre.  The background is the sigma-clipped annulus
  (``inner_bkg`` .. ``outer_bkg``, ``bkg_sigma_clip``), scaled by the ratio of the aperture's and
  the annulus' areas with data, and subtracted (the reference's ``subtract_background``, or the
  step's).  ``ifu_rscale`` scales the MRS radius (in units of PSF FWHMs, 2 being the reference's).
- **Extended source**: the whole field (a rectangle of the cube's size); BACKGROUND is the
  sigma-clipped sum of the same field, nothing is subtracted.

The sums use photutils' aperture masks (overlap method and subpixels from the reference); each
plane's mask is computed once and applied to the data, the variances and the weight map, as
photutils' ``aperture_photometry`` would compute it for each of them.  Spaxels with no weight
are left out, and NPIXELS is the aperture's area over spaxels with data.  After the sums:
SURF_BRIGHT = sum / NPIXELS; FLUX (Jy) = sum x spaxel solid angle x 1e6; ``ifu_covar_scale``
scales the errors; for a point source with a radial apcorr reference (MIRI MRS: MirMrsApcorrModel;
NIRSpec IFU: NrsIfuApcorrModel, the table of its grating and filter), the correction for the
aperture's radius at each wavelength multiplies the fluxes (and its square the variances): the
reference's radii (arcsec) become spaxels with the cube's scale at the source (at the shortest
wavelength for MIRI, the median one for NIRSpec, as jwst), each radius row and correction row is
interpolated linearly to the cube's wavelengths, then the correction to the aperture's radius there
(extrapolated past the ends, as jwst's interp1d).  A cube without variance arrays (every s3d) carries ERR^2 as the Poisson variance
through the sums, and the Poisson variance columns are then zero.

For a single-band MRS cube, ``ifu_rfcorr`` (on by default, as in jwst) fits the residual fringes
of the aperture sum, the surface brightness and the background (tasks/extract_1d/_rfcorr.py) and
writes the corrected spectra in RF_FLUX, RF_SURF_BRIGHT and RF_BACKGROUND; a spectrum the fit
cannot handle gets NaN there, with a warning.  Other cubes (several bands or channels) keep NaN
RF_* columns.  A NIRSpec IFU cube gives a MultiSpecModel with jwst's SpecModel columns (no RF_*).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from ...errors import InputFileError, ReferenceFileError, UnsupportedModeError
from ...models import dqflags
from ...models.spectra import MRSMultiSpecModel, MultiSpecModel, Spectrum, SPEC_COLUMNS, new_spec_table

log = logging.getLogger("webbflow.steps.extract_1d")

_BAD = 1.0e10  # larger than any distance (squared, unit sphere) between the target and a spaxel
MRS_COLUMNS = SPEC_COLUMNS + (("RF_FLUX", "f8"), ("RF_SURF_BRIGHT", "f8"), ("RF_BACKGROUND", "f8"))
_UNITS = {
    "WAVELENGTH": "um", "FLUX": "Jy", "FLUX_ERROR": "Jy", "FLUX_VAR_POISSON": "Jy^2", "FLUX_VAR_RNOISE": "Jy^2",
    "FLUX_VAR_FLAT": "Jy^2", "SURF_BRIGHT": "MJy/sr", "SB_ERROR": "MJy/sr", "SB_VAR_POISSON": "(MJy/sr)^2",
    "SB_VAR_RNOISE": "(MJy/sr)^2", "SB_VAR_FLAT": "(MJy/sr)^2", "BACKGROUND": "MJy/sr", "BKGD_ERROR": "MJy/sr",
    "BKGD_VAR_POISSON": "(MJy/sr)^2", "BKGD_VAR_RNOISE": "(MJy/sr)^2", "BKGD_VAR_FLAT": "(MJy/sr)^2",
    "RF_FLUX": "Jy", "RF_SURF_BRIGHT": "MJy/sr", "RF_BACKGROUND": "MJy/sr",
}


def is_band_cube(model) -> bool:
    """A MIRI cube of one channel and one band (jwst's condition for its residual fringe fit)."""
    return (model.meta.instrument.channel in ("1", "2", "3", "4")
            and str(model.meta.instrument.band).lower() in ("short", "medium", "long"))


def reference_parameters(ref, where: str) -> dict:
    """The IFU extraction parameters of an Extract1dIFUModel (ASDF) reference."""
    from ...models import Extract1dIFUModel

    name = getattr(getattr(ref, "meta", None), "filename", None) or "(extract1d)"
    if not isinstance(ref, Extract1dIFUModel):
        what = "a JSON parameter file" if isinstance(ref, dict) else type(ref).__name__
        raise ReferenceFileError("extract1d", name, f"is {what}; an IFU cube ({where}) needs the ASDF "
                                 "Extract1dIFUModel form")
    extra = ref.meta.model_extra or {}
    data = ref._asdf_extra.get("data") or {}
    missing = [k for k in ("wavelength", "radius", "inner_bkg", "outer_bkg") if k not in data]
    if missing:
        raise ReferenceFileError("extract1d", name, f"has no {', '.join(missing)} in its data")
    return {
        "subtract_background": bool(extra.get("subtract_background")),
        "method": extra.get("method"),
        "subpixels": extra.get("subpixels"),
        "wavelength": np.asarray(data["wavelength"]).ravel(),
        "radius": np.asarray(data["radius"]).ravel(),
        "inner_bkg": np.asarray(data["inner_bkg"]).ravel(),
        "outer_bkg": np.asarray(data["outer_bkg"]).ravel(),
    }


def _interp(x, xp, fp):
    """Linear interpolation that extrapolates past both ends (scipy's interp1d 'extrapolate')."""
    from scipy.interpolate import interp1d

    return interp1d(xp, fp, bounds_error=False, fill_value="extrapolate")(x)


def cube_coordinates(model, x0: float, y0: float):
    """RA, Dec (at the middle plane) and the wavelength of every plane, at spaxel (x0, y0)."""
    n = model.data.shape[0]
    wcs = getattr(model.meta, "wcs", None)
    if wcs is None:
        log.warning("WCS not found in input.")
        return 0.0, 0.0, np.arange(1, n + 1, dtype=np.float64)
    ra, dec, wave = wcs(np.full(n, x0, dtype=np.float64), np.full(n, y0, dtype=np.float64),
                        np.arange(n, dtype=np.float64))
    return ra[n // 2], dec[n // 2], np.asarray(wave, dtype=np.float64)


def _unit_vectors(ra, dec):
    r, d = np.deg2rad(ra), np.deg2rad(dec)
    return np.stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)], axis=-1)


def target_spaxel(model, ra_t, dec_t):
    """(x, y) of the spaxel nearest (ra_t, dec_t) in the middle plane, or None (unknown target,
    or nearest on the cube's edge)."""
    if ra_t is None or dec_t is None:
        log.warning("TARG_RA and/or TARG_DEC not found; can't compute pixel location of target.")
        return None
    shape = model.data.shape
    yy, xx = np.indices(shape[-2:])
    z = np.zeros(shape[-2:], dtype=np.float64) + shape[0] // 2
    ra, dec, wl = model.meta.wcs(xx, yy, z)
    d2 = ((_unit_vectors(ra, dec) - _unit_vectors(ra_t, dec_t)) ** 2).sum(axis=-1)
    d2 = np.where(np.isnan(wl), _BAD, d2)
    j, i = divmod(int(np.argmin(d2.ravel())), d2.shape[1])
    if i <= 0 or j <= 0 or i >= shape[-1] - 1 or j >= shape[-2] - 1:
        log.warning("WCS implies the target is beyond the edge of the image; this location will not be used")
        return None
    return i, j


def _autocentre(model, wave_all):
    from astropy.stats import sigma_clipped_stats
    from photutils.detection import DAOStarFinder

    planes = np.where(wave_all < 26)[0]
    collapse = np.ma.median(np.ma.masked_invalid(model.data[planes]), axis=0)
    _, med, rms = sigma_clipped_stats(collapse)
    sources = DAOStarFinder(fwhm=3.0, threshold=3 * rms)(collapse - med)
    if sources is None:
        log.warning("Auto source detection failed.")
        return None
    k = int(np.argmax(sources["flux"].value))
    return float(sources[k]["x_centroid"]), float(sources[k]["y_centroid"])


class _Sums:
    """One aperture's overlap with the plane (photutils' mask, computed once): sums of any array
    over the unmasked spaxels the aperture touches, as ``aperture_photometry`` gives them."""

    def __init__(self, aperture, shape, mask, method, subpixels, am=None):
        if am is None:
            am = aperture.to_mask(method=method, subpixels=subpixels)
        self.am = am
        self.slc, small = am.get_overlap_slices(shape)
        if self.slc is None:
            return
        self.w = am.data[small]
        self.good = self.w > 0
        if mask is not None:
            self.good = self.good & ~mask[self.slc]

    def __call__(self, arr) -> float:
        if self.slc is None:
            return np.nan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return float((arr[self.slc] * self.w)[self.good].sum())


def _clip_mask(plane, wmap, bmask, sigma):
    """jwst's background clipping: spaxels outside mean +- sigma x stddev (sigma-clipped stats of
    the spaxels of full weight), or without data; None when no spaxel has full weight."""
    from astropy.stats import sigma_clipped_stats

    stat = plane[wmap == 1]
    if len(stat) == 0:
        return None
    mean, _, std = sigma_clipped_stats(stat, sigma=sigma, maxiters=5)
    return (plane < mean - sigma * std) | (plane > mean + sigma * std) | bmask


def extract_cube(model, ep: dict, source_type: str):
    """The sums of every plane (jwst's ``extract_ifu``): a dict of 1-D arrays and the centre."""
    from photutils.aperture import CircularAnnulus, CircularAperture, RectangularAperture

    data = model.data
    if data.ndim != 3:
        raise InputFileError(model.meta.filename or "the input", f"is {data.ndim}-D; an IFU cube is 3-D")
    if model.err is None:
        raise InputFileError(model.meta.filename or "the input", "has no ERR array")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "overflow encountered", RuntimeWarning)
        var_p = model.err * model.err  # an s3d has no variance arrays: ERR^2 is carried as Poisson
    var_r = np.zeros_like(data)
    var_f = np.zeros_like(data)
    weightmap = model.weightmap
    if weightmap is None:
        raise InputFileError(model.meta.filename or "the input", "has no WMAP (weight map) array")
    weightmap = np.array(weightmap)
    nz, ny, nx = data.shape
    out = {k: np.zeros(nz) for k in ("flux", "fvp", "fvr", "fvf", "bkg", "bvp", "bvr", "bvf")}
    npix = np.ones(nz)
    npix_bkg = np.ones(nz)
    dq = np.zeros(nz, dtype=np.uint32)
    xc = yc = None
    ra_t = dec_t = None
    locn = None
    if ep["x_center"] is not None:
        xc, yc = ep["x_center"], ep["y_center"]
    elif source_type != "EXTENDED":
        if ep["ifu_autocen"]:
            log.info("Using auto source detection.")
            found = _autocentre(model, cube_coordinates(model, 1, 1)[2])
            if found is not None:
                xc, yc = found
                log.info("Using x_center = %g, y_center = %g", xc, yc)
        if xc is None:
            ra_t, dec_t = model.meta.target.ra, model.meta.target.dec
            locn = target_spaxel(model, ra_t, dec_t)
            if locn is None or np.isnan(locn[0]):
                log.warning("Couldn't determine source location from WCS, so extraction region will be centered.")
                xc, yc = float(nx) / 2.0, float(ny) / 2.0
            else:
                xc, yc = locn
                log.info("Using x_center = %g, y_center = %g, based on TARG_RA and TARG_DEC", xc, yc)
    method, subpixels = ep["method"], ep["subpixels"]
    subtract = ep["subtract_background"]
    ra, dec, wave = cube_coordinates(model, float(nx) / 2.0, float(ny) / 2.0)
    radius_pix = None
    if source_type == "POINT":
        from stcal.alignment.util import compute_scale

        radius = ep["radius"]
        if (model.meta.instrument.name or "").upper() == "MIRI" and ep["ifu_rscale"] is not None:
            radius = radius * ep["ifu_rscale"] / 2.0
            log.info("Scaling radius by factor =  %g", ep["ifu_rscale"] / 2.0)
        where = ((model.meta.wcsinfo.crval1, model.meta.wcsinfo.crval2, wave[0]) if locn is None
                 else (ra_t, dec_t, wave[0]))
        scale = compute_scale(model.meta.wcs, where, disp_axis=model.meta.wcsinfo.dispersion_direction) * 3600.0
        radius_pix = _interp(wave, ep["wavelength"], radius) / scale
        inner = _interp(wave, ep["wavelength"], ep["inner_bkg"]) / scale
        outer = _interp(wave, ep["wavelength"], ep["outer_bkg"]) / scale
    else:  # extended: the whole field, no background subtracted
        width, height = float(nx), float(ny)
        xc, yc = width / 2.0 - 0.5, height / 2.0 - 0.5
        subtract = False
        field = RectangularAperture((xc, yc), width, height, theta=0.0)
        field_mask = field.to_mask(method=ep["method"], subpixels=ep["subpixels"])  # the same in every plane
    sigma = ep["bkg_sigma_clip"]
    position = (xc, yc)
    bmask = np.zeros((ny, nx), dtype=bool)
    for k in range(nz):
        annulus = None
        if source_type == "POINT":
            aperture = CircularAperture(position, r=radius_pix[k])
            if inner[k] <= 0.0 or outer[k] <= 0.0 or inner[k] >= outer[k]:
                subtract = False  # as jwst: off for this and every later plane
            if subtract:
                annulus = CircularAnnulus(position, r_in=inner[k], r_out=outer[k])
        else:
            aperture = field
        am = None if source_type == "POINT" else field_mask
        wmap = weightmap[k]
        wmap[wmap > 1] = 1
        bmask[:] = wmap == 0
        ap = _Sums(aperture, (ny, nx), bmask, method, subpixels, am)
        area = ap(wmap)
        if area == 0:
            dq[k] = dqflags.PIXEL["DO_NOT_USE"]
            if aperture.area > 0:
                area = aperture.area
        norm = 1.0
        plane_subtract = subtract
        an = None
        if subtract and annulus is not None:
            an = _Sums(annulus, (ny, nx), bmask, method, subpixels)
            an_area = an(wmap)
            if an_area == 0 and annulus.area > 0:
                an_area = annulus.area
            if an_area > 0.0:
                norm = area / an_area
            else:
                log.warning("Background annulus has no area, so background subtraction will be turned off. %d", k)
                plane_subtract = False
        npix[k] = area
        npix_bkg[k] = an_area if annulus is not None else 0.0
        out["flux"][k] = ap(data[k])
        out["fvp"][k], out["fvr"][k], out["fvf"][k] = ap(var_p[k]), ap(var_r[k]), ap(var_f[k])
        if plane_subtract:
            clip = _clip_mask(data[k], wmap, bmask, sigma)
            on = an if clip is None else _Sums(annulus, (ny, nx), clip, method, subpixels, an.am)
            out["bkg"][k] = on(data[k])
            out["flux"][k] -= out["bkg"][k] * norm
            out["bvp"][k], out["bvr"][k], out["bvf"][k] = an(var_p[k]), an(var_r[k]), an(var_f[k])
            out["fvp"][k] += out["bvp"][k] * norm * norm
            out["fvr"][k] += out["bvr"][k] * norm * norm
            out["fvf"][k] += out["bvf"][k] * norm * norm
        if source_type == "EXTENDED":
            clip = _clip_mask(data[k], wmap, bmask, sigma)
            if clip is not None:
                cl = _Sums(aperture, (ny, nx), clip, method, subpixels, am)
                out["bkg"][k] = cl(data[k])
                npix_bkg[k] = cl(wmap)
                out["bvp"][k], out["bvr"][k], out["bvf"][k] = cl(var_p[k]), cl(var_r[k]), cl(var_f[k])
    keep = _trim_nan_wavelengths(wave, dq)
    res = {k: v[keep] for k, v in out.items()}
    res.update(wave=wave[keep], dq=dq[keep], npix=npix[keep], npix_bkg=npix_bkg[keep],
               radius=None if radius_pix is None else radius_pix, ra=ra, dec=dec, xc=xc, yc=yc)
    return res


def _trim_nan_wavelengths(wave, dq) -> slice:
    """Flag NaN wavelengths DO_NOT_USE (in place) and the slice without NaNs at either end."""
    n = wave.size
    if n == 0:
        log.warning("Output arrays are empty!")
        return slice(0)
    nan = np.isnan(wave)
    if nan.all():
        log.warning("Wavelength array is all NaN!")
        dq |= dqflags.PIXEL["DO_NOT_USE"]
        return slice(0)
    if nan.any():
        log.warning("%d NaNs in wavelength array.", int(nan.sum()))
        dq[nan] |= dqflags.PIXEL["DO_NOT_USE"]
        ok = np.where(~nan)[0]
        return slice(int(ok[0]), int(ok[-1]) + 1)
    return slice(n)


def _apcorr_factors(model, apref, ra, dec, wave, radius_pix, scale_wave) -> np.ndarray:
    """The radial aperture correction of each plane, for the aperture's radius there (jwst's radial
    apcorr); ``scale_wave``: the wavelength at which the cube's scale turns arcsec into spaxels."""
    from stcal.alignment.util import compute_scale

    name = apref.meta.filename or "(apcorr)"
    tab = getattr(apref, "_asdf_extra", {}).get("apcorr_table")
    if not isinstance(tab, dict) or not all(k in tab for k in ("wavelength", "radius", "apcorr")):
        raise ReferenceFileError("apcorr", name, "is not an IFU apcorr reference (apcorr_table with "
                                 "wavelength, radius and apcorr)")
    radius = np.array(tab["radius"], dtype=np.float64 if np.asarray(tab["radius"]).dtype.kind != "f"
                      else np.asarray(tab["radius"]).dtype)
    if str(tab.get("radius_units", "")).startswith("arcsec"):
        scale = compute_scale(model.meta.wcs, (ra, dec, scale_wave),
                              disp_axis=model.meta.wcsinfo.dispersion_direction) * 3600.0
        radius /= scale
    rwave = np.asarray(tab["wavelength"]).ravel()
    corr = np.asarray(tab["apcorr"])
    size = np.array([_interp(wave, rwave, radius[i]) for i in range(corr.shape[0])])
    app = np.array([_interp(wave, rwave, corr[i]) for i in range(corr.shape[0])])
    return np.array([_interp(radius_pix[i], size[:, i], app[:, i]) for i in range(wave.size)], dtype=np.float64)


_CUBE_ONLY = ("FLUXEXT", "ERREXT", "MASKEXT", "ROIS", "ROIW", "WTYPE", "WPOWER")


def _output_model(model, cls=MRSMultiSpecModel):
    """The x1d of a cube: the cube's metadata and primary header, no WCS of its own (each spectrum has one)."""
    from . import output_model

    out = output_model(model, cls)
    for key in _CUBE_ONLY:  # the cube's own keywords, which a spectrum's schema does not have
        out._headers.get("PRIMARY", {}).pop(key, None)
    return out


def extract_ifu_cube(model, refs: dict, params) -> MRSMultiSpecModel:
    """extract_1d of one IFU cube: an MRSMultiSpecModel holding one spectrum (jwst's ``ifu_extract1d``)."""
    from . import spectral_wcs

    where = model.meta.filename or "the input"
    inst = (model.meta.instrument.name or "").upper()
    exp_type = (model.meta.exposure.type or "").upper()
    if inst not in ("MIRI", "NIRSPEC"):
        raise UnsupportedModeError(
            f"extract_1d: {inst or 'this instrument'}'s IFU cubes are not supported (MIRI MRS, NIRSpec IFU)")
    miri = inst == "MIRI"
    rfcorr = bool(params.ifu_rfcorr) and exp_type == "MIR_MRS" and is_band_cube(model)
    if params.ifu_rfcorr and not rfcorr:
        log.info("Turning off residual fringe correction: the input is not a single MIRI MRS band")
    source_type = model.meta.target.source_type
    if params.ifu_set_srctype is not None and exp_type == "MIR_MRS":
        source_type = params.ifu_set_srctype
        log.info("Overriding source type and setting it to %s", source_type)
    source_type = source_type.upper() if source_type is not None else None
    if source_type not in ("POINT", "EXTENDED"):
        log.warning("Source type was '%s'; setting to 'EXTENDED'.", source_type)
        source_type = "EXTENDED"
    ref = refs.get("extract1d")
    if ref is None:
        raise ReferenceFileError("extract1d", "N/A", f"an IFU cube ({where}) needs an extract1d reference")
    ep = reference_parameters(ref, where)
    ep.update(bkg_sigma_clip=params.bkg_sigma_clip, ifu_autocen=params.ifu_autocen, ifu_rscale=params.ifu_rscale,
              x_center=None, y_center=None)
    if params.center_xy is not None:
        if len(params.center_xy) == 2:
            ep["x_center"], ep["y_center"] = float(params.center_xy[0]), float(params.center_xy[1])
        else:
            log.warning("Incorrect number of values in center_xy; should be two.")
    if params.subtract_background is not None:
        ep["subtract_background"] = bool(params.subtract_background) and source_type != "EXTENDED"
    r = extract_cube(model, ep, source_type)
    n1 = np.where(r["npix"] > 0.0, r["npix"], 1.0)
    nb = np.where(r["npix_bkg"] > 0.0, r["npix_bkg"], 1.0)
    sb = r["flux"] / n1
    sbv = [r[k] / n1 / n1 for k in ("fvp", "fvr", "fvf")]
    bkg = r["bkg"] / nb
    bv = [r[k] / nb / nb for k in ("bvp", "bvr", "bvf")]
    area = model.meta.photometry.pixelarea_steradians
    if area is None:
        log.warning("Pixel area (solid angle) is not populated; the flux will not be correct.")
        area = 1.0
    flux = r["flux"] * area * 1.0e6
    fv = [r[k] * area**2 * 1.0e12 for k in ("fvp", "fvr", "fvf")]
    err = np.sqrt(fv[0] + fv[1] + fv[2])
    sb_err = np.sqrt(sbv[0] + sbv[1] + sbv[2])
    b_err = np.sqrt(bv[0] + bv[1] + bv[2])
    # only ERR^2 went through the Poisson sums (an s3d has no variance arrays): not reported as such
    fv[0], sbv[0], bv[0] = np.zeros_like(fv[0]), np.zeros_like(sbv[0]), np.zeros_like(bv[0])
    c = params.ifu_covar_scale
    if c != 1.0:
        log.info("Applying ERR covariance prefactor of %g", c)
        err, sb_err, b_err = err * c, sb_err * c, b_err * c
        fv, sbv, bv = [v * c * c for v in fv], [v * c * c for v in sbv], [v * c * c for v in bv]
    n = r["wave"].size
    table = new_spec_table(n, MRS_COLUMNS if miri else SPEC_COLUMNS)
    cols = {"WAVELENGTH": r["wave"], "FLUX": flux, "FLUX_ERROR": err, "FLUX_VAR_POISSON": fv[0],
            "FLUX_VAR_RNOISE": fv[1], "FLUX_VAR_FLAT": fv[2], "SURF_BRIGHT": sb, "SB_ERROR": sb_err,
            "SB_VAR_POISSON": sbv[0], "SB_VAR_RNOISE": sbv[1], "SB_VAR_FLAT": sbv[2], "DQ": r["dq"],
            "BACKGROUND": bkg, "BKGD_ERROR": b_err, "BKGD_VAR_POISSON": bv[0], "BKGD_VAR_RNOISE": bv[1],
            "BKGD_VAR_FLAT": bv[2], "NPIXELS": r["npix"]}
    for k, v in cols.items():
        table[k] = v
    for k in ("RF_FLUX", "RF_SURF_BRIGHT", "RF_BACKGROUND") if miri else ():
        table[k] = np.nan
    if rfcorr:
        from ._rfcorr import corrected_columns

        log.info("Applying 1d residual fringe correction.")
        rf = corrected_columns(r["flux"], sb, bkg, r["wave"], int(model.meta.instrument.channel))
        table["RF_FLUX"] = rf[0] * area * 1.0e6
        table["RF_SURF_BRIGHT"], table["RF_BACKGROUND"] = rf[1], rf[2]
    apref = refs.get("apcorr") if params.apply_apcorr else None
    if source_type == "POINT" and apref is not None:
        log.info("Applying Aperture correction.")
        scale_wave = float(np.min(r["wave"])) if miri else float(np.median(r["wave"]))
        f = _apcorr_factors(model, apref, r["ra"], r["dec"], r["wave"], r["radius"], scale_wave)
        for k in ("FLUX", "FLUX_ERROR", "SURF_BRIGHT", "SB_ERROR") + (("RF_FLUX", "RF_SURF_BRIGHT") if miri else ()):
            table[k] = table[k] * f
        for k in ("FLUX_VAR_POISSON", "FLUX_VAR_RNOISE", "FLUX_VAR_FLAT", "SB_VAR_POISSON", "SB_VAR_RNOISE",
                  "SB_VAR_FLAT"):
            table[k] = table[k] * f * f
    meta = {"meta": {"wcs": spectral_wcs(r["ra"], r["dec"], r["wave"])}, "name": exp_type or None,
            "slit_ra": float(r["ra"]), "slit_dec": float(r["dec"]), "detector": model.meta.instrument.detector,
            "source_type": source_type, "extraction_x": r["xc"], "extraction_y": r["yc"],
            "position_angle": model.meta.aperture.position_angle}
    out = _output_model(model, MRSMultiSpecModel if miri else MultiSpecModel)
    units = {k: v for k, v in _UNITS.items() if miri or not k.startswith("RF_")}
    out.spec.append(Spectrum(table, {k: v for k, v in meta.items() if v is not None}, units))
    return out
