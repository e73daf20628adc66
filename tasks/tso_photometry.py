"""tso_photometry: aperture photometry of the target in each integration of an imaging time
series (jwst's TSOPhotometryStep), the table of tso3's ``_phot.ecsv``.

1. Units: MJy/sr data become Jy per pixel (times 1e6 and the pixel solid angle); DN/s become
   electrons (times the integration time and the gain reference); others are kept.
2. The planned position is XREF_SCI/YREF_SCI (one-based).  With ``centroid_source`` the source
   is centroided in each integration (photutils' ``centroid_sources`` in a ``search_box_width``
   box on the image less its median outside ``radius_inner``, then again in a ``fit_box_width``
   box around the median centroid, where a Gaussian PRF of fixed position is fitted for its
   widths and flux); the aperture sits at the median centroid, or follows it
   (``moving_centroid``).  If every centroid fails, the planned position is used.
3. In each integration: the sum and error in a circle of ``radius``, and the annulus
   ``radius_inner``..``radius_outer`` whose mean, times the aperture's area, is the background
   (photutils' ``ApertureStats``, exact pixel overlap).  NIRCam's SUB64P WLP8 images are summed
   whole, with no background.

Columns, units and table metadata are jwst's; times are the INT_TIMES mid times (MJD UTC, BJD TDB).
"""

from __future__ import annotations

import logging
from collections import OrderedDict

import numpy as np

from ..errors import InputFileError
from .base import StepParams, step

log = logging.getLogger("webbflow.steps.tso_photometry")


class TSOPhotometryParams(StepParams):
    save_catalog: bool = False  # write the exposure's own <root>_phot.ecsv
    radius: float = 3.0  # aperture radius, pixels
    radius_inner: float = 4.0  # background annulus inner radius, pixels
    radius_outer: float = 5.0  # background annulus outer radius, pixels
    centroid_source: bool = True  # centroid the source before photometry
    search_box_width: int = 41  # box for the first centroid search (odd)
    fit_box_width: int = 11  # box for the centroid and PSF fit (odd)
    moving_centroid: bool = False  # follow each integration's centroid
    suffix: str | None = "phot"


def to_flux_units(cube, gain=None) -> None:
    """MJy/sr -> Jy per pixel, or DN/s -> electrons with the gain (in place, SCI and ERR)."""
    unit = cube.meta.bunit_data
    if unit == "MJy/sr":
        f = 1.0e6 * cube.meta.photometry.pixelarea_steradians
        cube.data *= f
        cube.err *= f
        cube.meta.bunit_data = cube.meta.bunit_err = "Jy"
    elif unit == "DN/s" and gain is not None:
        f = cube.meta.exposure.integration_time * gain
        cube.data *= f
        cube.err *= f
        cube.meta.bunit_data = cube.meta.bunit_err = "electron"
    else:
        log.warning("Unexpected data units: %s. Photometry will be produced using the input units.", unit)


def _centroids(data, bad, away, x0, y0, box, fit_psf):
    from photutils.centroids import centroid_sources

    n, ny, nx = data.shape
    cx = np.full(n, np.nan)
    cy = np.full(n, np.nan)
    psf = np.full((3, n), np.nan) if fit_psf else None
    for i in range(n):
        img = data[i] - np.nanmedian(data[i][~away])
        try:
            x, y = centroid_sources(img, x0, y0, mask=bad[i], box_size=box)
            cx[i], cy[i] = x[0], y[0]
        except ValueError as exc:
            log.debug("Centroid failure in image %d: %s", i, exc)
        if not (0 <= cx[i] < nx and 0 <= cy[i] < ny):
            cx[i] = cy[i] = np.nan
        if fit_psf and np.isfinite(cx[i]) and np.isfinite(cy[i]):
            psf[:, i] = _gaussian_fit(img, bad[i], box, cx[i], cy[i])
    return cx, cy, psf


def _gaussian_fit(img, bad, box, x, y):
    """(sigma_x, sigma_y, flux) of a Gaussian PRF fixed at (x, y), fitted in a box of ``box`` pixels."""
    from astropy.stats import gaussian_fwhm_to_sigma
    from astropy.table import QTable
    from photutils.psf import GaussianPRF, PSFPhotometry
    from photutils.utils import CutoutImage

    shape = (box, box)
    cut = CutoutImage(img, [y, x], shape)
    cut_bad = CutoutImage(bad, [y, x], shape)
    flux = np.sum(cut.data[~cut_bad.data])
    model = GaussianPRF(flux=flux, x_0=x, y_0=y, x_fwhm=box / 2, y_fwhm=box / 2)
    model.flux.fixed = False
    model.flux.min, model.flux.max = 0.0, np.inf
    model.x_0.fixed = model.y_0.fixed = True
    for p in (model.x_fwhm, model.y_fwhm):
        p.fixed = False
        p.min, p.max = 0.0, box
    init = QTable({"x": [x], "y": [y], "flux": [flux], "x_fwhm": [box / 2], "y_fwhm": [box / 2]})
    try:
        res = PSFPhotometry(model, shape)(img, mask=bad, init_params=init)
    except ValueError as exc:
        log.debug("PSF fit failure: %s", exc)
        return np.nan, np.nan, np.nan
    return (gaussian_fwhm_to_sigma * res["x_fwhm_fit"][0], gaussian_fwhm_to_sigma * res["y_fwhm_fit"][0],
            res["flux_fit"][0])


def locate_source(cube, x0, y0, params: TSOPhotometryParams):
    """Centroids (and PSF widths and fluxes) per integration: a coarse search, then a fit around their median."""
    n, ny, nx = cube.data.shape
    yy, xx = np.mgrid[:ny, :nx]
    bad = ((cube.dq & 1) != 0) | np.isnan(cube.data)
    away = (xx - x0) ** 2 + (yy - y0) ** 2 < params.radius_inner**2
    cx, cy, _ = _centroids(cube.data, bad, away, x0, y0, params.search_box_width, False)
    if not np.any(np.isfinite(cx)) or not np.any(np.isfinite(cy)):
        log.warning("Source could not be centroided.")
        return cx, cy, None
    x1, y1 = np.nanmedian(cx), np.nanmedian(cy)
    away = (xx - x1) ** 2 + (yy - y1) ** 2 < params.radius_inner**2
    return _centroids(cube.data, bad, away, x1, y1, params.fit_box_width, True)


def _mid_times(cube):
    from astropy.time import Time

    it = cube.int_times if cube.has("int_times") else None
    if it is None or len(it) == 0:
        raise InputFileError(cube.meta.filename or "the input", "has no INT_TIMES table: tso_photometry needs each integration's time")
    n = cube.data.shape[0]
    start = cube.meta.exposure.integration_start or 1
    off = start - int(it["integration_number"][0])
    return (Time(np.asarray(it["int_mid_MJD_UTC"])[off:off + n], format="mjd", scale="utc"),
            Time(np.asarray(it["int_mid_BJD_TDB"])[off:off + n], format="mjd", scale="tdb"))


def aperture_photometry(cube, xc, yc, params: TSOPhotometryParams, centroid=None):
    """The photometry table (see the module) for aperture centres ``xc``, ``yc`` (scalars or per integration)."""
    import astropy.units as u
    from astropy.table import QTable
    from photutils.aperture import ApertureStats, CircularAnnulus, CircularAperture

    n = cube.data.shape[0]
    xc = np.full(n, xc) if np.isscalar(xc) else np.asarray(xc)
    yc = np.full(n, yc) if np.isscalar(yc) else np.asarray(yc)
    whole = cube.meta.instrument.pupil == "WLP8" and cube.meta.subarray.name == "SUB64P"
    s, se, a, bs, bse, ba = (np.full(n, np.nan) for _ in range(6))
    if whole:
        info = "Photometry measured as the sum of all values in the subarray.  No background subtraction was performed."
        s = np.nansum(cube.data, axis=(1, 2)).astype(float)
        se = np.sqrt(np.nansum(cube.err.astype(float) ** 2, axis=(1, 2)))
    else:
        info = (f"Photometry measured in a circular aperture of r={params.radius} pixels.  Background calculated as the "
                f"mean in a circular annulus with r_inner={params.radius_inner} pixels and r_outer={params.radius_outer} pixels.")
        for i in range(n):
            ap = ApertureStats(cube.data[i], CircularAperture((xc[i], yc[i]), r=params.radius), error=cube.err[i])
            an = ApertureStats(cube.data[i], CircularAnnulus((xc[i], yc[i]), r_in=params.radius_inner,
                                                             r_out=params.radius_outer), error=cube.err[i])
            s[i], se[i], a[i] = ap.sum, ap.sum_err, ap.sum_aper_area.value
            bs[i], bse[i], ba[i] = an.sum, an.sum_err, an.sum_aper_area.value
    meta = OrderedDict(instrument=cube.meta.instrument.name, detector=cube.meta.instrument.detector,
                       channel=cube.meta.instrument.channel, subarray=cube.meta.subarray.name,
                       filter=cube.meta.instrument.filter, pupil=cube.meta.instrument.pupil,
                       target_name=cube.meta.target.catalog_name, apertures=info)
    tbl = QTable(meta=meta)
    utc, bjd = _mid_times(cube)
    unit = u.Unit(cube.meta.bunit_data)
    tbl["MJD"] = utc.mjd
    tbl["BJD_TDB"] = bjd.mjd
    tbl["aperture_sum"] = s << unit
    tbl["aperture_sum_err"] = se << unit
    if not whole:
        mean, mean_err = bs / ba, bse / ba
        bkg, bkg_err = mean * a, mean_err * a
        for name, v in (("annulus_sum", bs), ("annulus_sum_err", bse), ("annulus_mean", mean),
                        ("annulus_mean_err", mean_err), ("aperture_bkg", bkg), ("aperture_bkg_err", bkg_err),
                        ("net_aperture_sum", s - bkg), ("net_aperture_sum_err", np.sqrt(se**2 + bkg_err**2))):
            tbl[name] = v << unit
    else:
        for name in ("annulus_sum", "annulus_sum_err", "annulus_mean", "annulus_mean_err", "aperture_bkg", "aperture_bkg_err"):
            tbl[name] = np.full(n, np.nan)
        tbl["net_aperture_sum"] = s << unit
        tbl["net_aperture_sum_err"] = se << unit
    pix, deg = u.Unit("pix"), u.Unit("deg")
    tbl["aperture_x"] = xc << pix
    tbl["aperture_y"] = yc << pix
    ra, dec = cube.meta.wcs(xc, yc)
    tbl["aperture_ra_icrs"] = ra << deg
    tbl["aperture_dec_icrs"] = dec << deg
    if centroid is not None:
        cx, cy, psf = centroid
        tbl["centroid_x"] = cx << pix
        tbl["centroid_y"] = cy << pix
        if psf is not None:
            tbl["psf_width_x"] = psf[0] << pix
            tbl["psf_width_y"] = psf[1] << pix
            tbl["psf_flux"] = psf[2] << unit
    return tbl


def _gain_needed(model, params):
    return ["gain"] if model.meta.bunit_data == "DN/s" else []


@step("tso_photometry", "TSOPhotometryStep", params=TSOPhotometryParams, optional_reftypes=("gain",),
      suffix="phot", input_class="CubeModel")
def tso_photometry(cube, refs, params: TSOPhotometryParams):
    """Aperture photometry of the target in every integration of an imaging TSO cube (an astropy table)."""
    where = cube.meta.filename or "the input"
    for value, what in ((cube.meta.wcsinfo.siaf_xref_sci, "XREF_SCI"), (cube.meta.wcsinfo.siaf_yref_sci, "YREF_SCI"),
                        (cube.meta.bunit_data, "BUNIT of SCI"), (cube.meta.bunit_err, "BUNIT of ERR")):
        if value is None:
            raise InputFileError(where, f"{what} is missing: tso_photometry cannot place its aperture")
    x0 = cube.meta.wcsinfo.siaf_xref_sci - 1
    y0 = cube.meta.wcsinfo.siaf_yref_sci - 1
    cube = cube.copy()  # the unit conversion is the table's, not the product's
    gain = refs.get("gain")
    if gain is not None:
        from ._subarray import subarray_model

        gain = subarray_model(cube, gain).data
    to_flux_units(cube, gain)
    centroid = None
    if params.centroid_source:
        p = params
        for box in ("search_box_width", "fit_box_width"):
            if getattr(p, box) % 2 == 0:
                log.warning("Even box widths are not supported. Rounding the %s down to %d.", box, getattr(p, box) - 1)
                p = p.model_copy(update={box: getattr(p, box) - 1})
        cx, cy, psf = locate_source(cube, x0, y0, p)
        if np.all(np.isnan(cx)) or np.all(np.isnan(cy)):
            log.warning("Centroid fit failed. Using initial estimate for source location.")
            xc, yc = x0, y0
        elif not params.moving_centroid:
            xc, yc = np.nanmedian(cx), np.nanmedian(cy)
        else:
            xc, yc = cx, cy
        centroid = (cx, cy, psf)
    else:
        xc, yc = x0, y0
    return aperture_photometry(cube, xc, yc, params, centroid)


def _register():
    from .base import STEPS

    STEPS["tso_photometry"].extra["optional_reftypes_needed"] = _gain_needed


_register()
