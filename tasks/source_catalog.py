"""source_catalog: photometry and shapes of the sources in a resampled image (jwst's SourceCatalogStep).

On the i2d image (MJy/sr, converted to Jy per pixel with PIXAR_SR):

1. **Detection** (tweakreg's :func:`~.tweakreg.find_sources`): pixels with
   NaN error or zero weight are masked, a 2-D background (``bkg_boxsize``
   meshes) is subtracted, and sources ``snr_threshold`` times the
   background RMS above it are found; by default by segmentation of the
   image convolved with a Gaussian of ``kernel_fwhm`` pixels, ``npixels``
   connected pixels at least, deblended (``nlevels``, ``contrast``), and
   measured with photutils' ``SourceCatalog`` (isophotal flux and area,
   centroid, second-moment shape, bounding box).
2. **Aperture photometry** in three circular apertures that hold
   ``aperture_ee1/2/3`` per cent of a point source's energy (radii from
   the apcorr reference for the filter/pupil, scaled by the i2d's pixel
   scale ratio), less the local background: the 3-sigma clipped median of
   an annulus (the reference's skyin..skyout), whose error is the standard
   error of a median.  The total flux of a point source is the largest
   aperture's flux times its aperture correction.
3. **Magnitudes**: AB (``-2.5 log10(flux / 3631 Jy)``) and Vega (AB less the
   abvegaoffset reference's offset for the filter/pupil).
4. **Classification and extras**: concentration indices (flux ratios of
   the apertures), ``is_extended`` when both CI exceed
   ``ci1_star_threshold``/``ci2_star_threshold``, DAOFind's sharpness and
   roundness, and the nearest neighbour's label and distance.

The catalogue columns, their order, units, formats and descriptions are
jwst's.  With ``save_results`` the catalogue is written as
``<product>_cat.ecsv`` and the segmentation map as ``<product>_segm.fits``
(``output_file`` names the product, else the i2d's name less ``_i2d``).

The step returns ``(catalog, segmentation ImageModel)``, or ``(None, None)``
when no source is found or the references lack the filter (with a
warning, as jwst).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from .. import __version__
from ..errors import InputFileError, ParameterError
from .base import STEPS, StepParams, report_qa, step
from .tweakreg import find_sources, finder_options

log = logging.getLogger("webbflow.steps.source_catalog")


class SourceCatalogParams(StepParams):
    aperture_ee1: int = 30  # encircled energy (%) of the first aperture
    aperture_ee2: int = 50  # ... of the second
    aperture_ee3: int = 70  # ... of the third
    ci1_star_threshold: float = 2.0  # CI 1 above which a source may be extended
    ci2_star_threshold: float = 1.8  # CI 2 above which a source may be extended
    suffix: str | None = "cat"
    starfinder: Literal["dao", "iraf", "segmentation"] = "segmentation"  # source finder
    snr_threshold: float = 3.0  # detection threshold, in background RMS
    bkg_boxsize: int = Field(1000, ge=1)  # background mesh box size, pixels
    kernel_fwhm: float = 2.0  # FWHM (pixels) of the Gaussian kernel
    # DAOStarFinder / IRAFStarFinder
    minsep_fwhm: float = 0.0  # DAO/IRAF finder: minimum separation of sources, in FWHM
    sigma_radius: float = 1.5  # DAO/IRAF finder: kernel truncation radius, in sigma
    sharplo: float = 0.5  # DAO/IRAF finder: lowest sharpness accepted
    sharphi: float = 2.0  # DAO/IRAF finder: highest sharpness accepted
    roundlo: float = 0.0  # DAO/IRAF finder: lowest roundness accepted
    roundhi: float = 0.2  # DAO/IRAF finder: highest roundness accepted
    brightest: int | None = 200  # keep only this many brightest sources (None: all)
    peakmax: float | None = None  # reject sources whose peak exceeds this value (None: no limit)
    # segmentation
    npixels: int = 25  # minimum connected pixels of a source
    connectivity: Literal[4, 8] = 8  # segmentation: 4- or 8-connected pixels
    nlevels: int = 32  # segmentation: number of deblending thresholds
    contrast: float = 0.001  # segmentation: flux fraction a deblended component needs
    multithresh_mode: Literal["exponential", "linear", "sinh"] = "exponential"  # segmentation: spacing of the deblending thresholds
    localbkg_width: int = 0  # width of the local background annulus, pixels (0: none)
    apermask_method: Literal["correct", "mask", "none"] = "correct"  # how neighbouring sources are masked in aperture photometry
    kron_params: list[float] | None = None  # Kron aperture parameters (scale, minimum radius[, minimum circular radius])
    deblend: bool = True  # deblend overlapping sources in the segmentation image

    def model_post_init(self, _ctx) -> None:
        ee = [self.aperture_ee1, self.aperture_ee2, self.aperture_ee3]
        if not (ee[0] < ee[1] < ee[2]):
            raise ParameterError(f"step source_catalog: aperture_ee1 < aperture_ee2 < aperture_ee3 is required (got {ee})")
        if min(ee) <= 0 or max(ee) >= 100:
            raise ParameterError(f"step source_catalog: aperture encircled energies must be between 0 and 100 (got {ee})")
        if self.kron_params is not None and len(self.kron_params) not in (2, 3):
            raise ParameterError(f"step source_catalog: 'kron_params' must have 2 or 3 values (got {self.kron_params})")


class ReferenceDataError(Exception):
    """The apcorr/abvegaoffset references have no (single) row for this image."""


# ---------------------------------------------------------------------------
# reference data


def _rows(table, selector: dict):
    mask = np.ones(len(table), dtype=bool)
    for key, value in selector.items():
        if key not in table.dtype.names:
            raise ReferenceDataError(f"column {key!r} is missing")
        col = np.char.strip(np.asarray(table[key]).astype(str))
        mask &= col == str(value)
    return table[mask]


def aperture_parameters(model, apcorr_ref, aperture_ee) -> dict:
    """Radii (pixels of this image), aperture corrections and background annulus from the apcorr reference."""
    inst = (model.meta.instrument.name or "").upper()
    if apcorr_ref is None:
        log.warning("No apcorr reference: apertures of 1, 2 and 3 pixels without aperture correction")
        return {"aperture_radii": np.array((1.0, 2.0, 3.0)), "aperture_corrections": np.array((1.0, 1.0, 1.0)),
                "aperture_ee": np.array((1, 2, 3)), "bkg_aperture_inner_radius": 5.0, "bkg_aperture_outer_radius": 10.0}
    table = apcorr_ref.apcorr_table
    if inst in ("NIRCAM", "NIRISS"):
        selector = {"filter": model.meta.instrument.filter, "pupil": model.meta.instrument.pupil}
    elif inst == "MIRI":
        selector = {"filter": model.meta.instrument.filter, "subarray": model.meta.subarray.name}
    elif inst == "FGS":
        selector = {}
    else:
        raise ReferenceDataError(f"{inst or '(no instrument)'} is not an imaging instrument")
    rows = _rows(table, selector) if selector else table
    if len(rows) == 0:
        raise ReferenceDataError(f"the apcorr reference has no rows for {selector}")
    radii, corrections, skyin, skyout = [], [], [], []
    percent = np.round(np.asarray(rows["eefraction"], dtype=float) * 100)
    for ee in aperture_ee:
        hit = rows[percent == ee]
        if len(hit) != 1:
            raise ReferenceDataError(f"the apcorr reference has {len(hit)} rows for {ee}% encircled energy (needs one)")
        radii.append(float(hit["radius"][0]))
        corrections.append(float(hit["apcorr"][0]))
        skyin.append(float(hit["skyin"][0]))
        skyout.append(float(hit["skyout"][0]))
    ratio = model.meta.resample.pixel_scale_ratio
    if ratio is None:
        log.warning("The image has no pixel scale ratio (PXSCLRT); assuming the detector's pixels")
        ratio = 1.0
    if len(set(skyin)) != 1 or len(set(skyout)) != 1:
        raise ReferenceDataError("the apcorr reference gives several background annuli for this filter")
    return {
        "aperture_ee": np.asarray(aperture_ee, dtype=int),
        "aperture_radii": np.array(radii) / ratio,
        "aperture_corrections": np.array(corrections),
        "bkg_aperture_inner_radius": skyin[0] / ratio,
        "bkg_aperture_outer_radius": skyout[0] / ratio,
    }


def abvega_offset(model, abvega_ref) -> float:
    """m_AB - m_Vega for the image's filter (0 with a warning when no reference is given)."""
    if abvega_ref is None:
        log.warning("No abvegaoffset reference: Vega magnitudes equal AB magnitudes")
        return 0.0
    inst = (model.meta.instrument.name or "").upper()
    if inst in ("NIRCAM", "NIRISS"):
        selector = {"filter": model.meta.instrument.filter, "pupil": model.meta.instrument.pupil}
    elif inst == "MIRI":
        selector = {"filter": model.meta.instrument.filter}
    elif inst == "FGS":
        selector = {"detector": model.meta.instrument.detector}
    else:
        raise ReferenceDataError(f"{inst or '(no instrument)'} is not an imaging instrument")
    rows = _rows(abvega_ref.abvega_offset, selector)
    if len(rows) != 1:
        raise ReferenceDataError(f"the abvegaoffset reference has {len(rows)} rows for {selector} (needs one)")
    value = float(rows["abvega_offset"][0])
    log.info("AB to Vega magnitude offset %.5f", value)
    return value


# ---------------------------------------------------------------------------
# the catalogue


def flux_to_abmag(flux, flux_err):
    """AB magnitude and error of fluxes in Jy (NaN for negative fluxes)."""
    f = np.asarray(getattr(flux, "value", flux), dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mag = -2.5 * np.log10(f) + 8.9
        if flux_err is None or np.all(np.isnan(getattr(flux_err, "value", flux_err))):
            err = np.full_like(mag, np.nan)
        else:
            err = 2.5 * np.log10(1.0 + np.asarray(getattr(flux_err, "value", flux_err), dtype=float) / f)
    neg = f < 0
    mag[neg] = np.nan
    err[neg] = np.nan
    return mag, err


def _local_background(data, xy, r_in, r_out):
    """Sigma-clipped median of an annulus around each source and its standard error."""
    from astropy.stats import SigmaClip
    from astropy.utils.exceptions import AstropyUserWarning
    from photutils.aperture import CircularAnnulus

    masks = CircularAnnulus(xy, r_in, r_out).to_mask(method="center")
    clip = SigmaClip(sigma=3.0)
    values = np.asarray(getattr(data, "value", data))
    med, std, n = [], [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", AstropyUserWarning)
        for m in masks:
            v = clip(m.get_values(values), masked=False)
            n.append(v.size)
            med.append(np.median(v))
            std.append(np.std(v))
        n = np.asarray(n)
        err = np.sqrt(np.pi / (2.0 * n)) * np.asarray(std)
    return np.asarray(med), err


def _daofind_kernel(sigma: float):
    from astropy.convolution import Gaussian2DKernel

    radius = max(2.0, 1.5 * sigma)
    size = 2 * int(radius) + 1
    centre = (size - 1) // 2
    yy, xx = np.mgrid[0:size, 0:size]
    mask = (np.hypot(xx - centre, yy - centre) <= radius).astype(int)
    k = Gaussian2DKernel(sigma, x_size=size, y_size=size).array
    k = k / np.max(k) * mask
    npix = mask.sum()
    denom = np.sum(k**2) - np.sum(k) ** 2 / npix
    return ((k - k.sum() / npix) / denom) * mask, mask, centre


def _cutouts(image, shape, xy):
    from astropy.nddata.utils import NoOverlapError, extract_array

    out = []
    for x, y in xy:
        try:
            out.append(np.asarray(extract_array(image, shape, (y, x), fill_value=0.0)))
        except NoOverlapError:
            out.append(np.zeros(shape))
    return np.array(out)


def sharpness_roundness(data, xy, kernel_fwhm: float):
    """DAOFind's sharpness and (symmetry) roundness of each source, with its zero-sum Gaussian kernel."""
    from astropy.stats import gaussian_fwhm_to_sigma
    from scipy import ndimage

    values = np.asarray(getattr(data, "value", data))
    kernel, mask, c = _daofind_kernel(kernel_fwhm * gaussian_fwhm_to_sigma)
    conv = ndimage.convolve(values, kernel, mode="constant", cval=0.0)
    cut = _cutouts(values, kernel.shape, xy)
    cut_conv = _cutouts(conv, kernel.shape, xy)
    peak = cut[:, c, c]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = (np.sum(cut * mask, axis=(1, 2)) - peak) / (mask.sum() - 1)
        sharp = (peak - mean) / cut_conv[:, c, c]
    q = cut_conv.copy()
    q[:, c, c] = 0.0
    s2 = (-q[:, 0:c + 1, c + 1:].sum(axis=(1, 2)) + q[:, 0:c, 0:c + 1].sum(axis=(1, 2))
          - q[:, c:, 0:c].sum(axis=(1, 2)) + q[:, c + 1:, c:].sum(axis=(1, 2)))
    s2[s2 == 0] = 0.0
    s4 = np.abs(q).sum(axis=(1, 2))
    s4[s4 == 0] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        round_ = 2.0 * s2 / s4
    return sharp, round_


def _sky_orientation(model, wcs, orientation):
    """Position angle (east of north) of each source's major axis, from the WCS at the reference pixel."""
    import astropy.units as u

    w = model.meta.wcsinfo
    sky = wcs.pixel_to_world(w.crpix1 - 1, w.crpix2 - 1)
    x0, y0 = wcs.world_to_pixel(sky)
    x1, y1 = wcs.world_to_pixel(sky.directional_offset_by(0.0, 1 * u.arcsec))
    angle = (np.arctan2(y1 - y0, x1 - x0) * u.radian).to(u.deg)
    return ((180.0 * u.deg) - angle + orientation) % (360 * u.deg)


def build_catalog(model, sources, data, err, kernel_fwhm: float, aper: dict, abvega: float, ci_thresholds):
    """jwst's source catalogue table from the detections and the image in Jy."""
    import astropy.units as u
    from astropy.table import QTable
    from photutils.aperture import CircularAperture, aperture_photometry
    from scipy.spatial import KDTree

    n = len(sources)
    wcs = model.meta.wcs

    def seg(name, prop):
        return sources[prop] if prop in sources.colnames else None

    label = sources["id"]
    x = np.asarray(sources["xcentroid"], dtype=float)
    y = np.asarray(sources["ycentroid"], dtype=float)
    xy = np.transpose((x, y))
    finite = np.isfinite(xy).all(axis=1)
    xy_f = xy.copy()
    xy_f[~np.isfinite(xy_f)] = -1000.0
    sky = seg("sky_centroid", "sky_centroid")
    if sky is None:
        sky = wcs.pixel_to_world(x, y) if wcs is not None else np.array([None] * n)
    head = {
        "label": (label, "Unique source identification label number"),
        "xcentroid": (sources["xcentroid"], "X pixel value of the source centroid (0 indexed)"),
        "ycentroid": (sources["ycentroid"], "Y pixel value of the source centroid (0 indexed)"),
        "sky_centroid": (sky, "ICRS Sky coordinate of the source centroid"),
    }

    # apertures
    ee = aper["aperture_ee"]
    bkg, bkg_err = _local_background(data, xy_f, aper["bkg_aperture_inner_radius"], aper["bkg_aperture_outer_radius"])
    unit = getattr(data, "unit", u.Jy)
    bkg = bkg * unit
    bkg_err = bkg_err * unit
    apertures = [CircularAperture(xy_f, r) for r in aper["aperture_radii"]]
    phot = aperture_photometry(data, apertures, error=err)
    fluxes, flux_errs = [], []
    for i, ap in enumerate(apertures):
        f = phot[f"aperture_sum_{i}"] - bkg * ap.area
        fluxes.append(f)
        flux_errs.append(phot[f"aperture_sum_err_{i}"])
    total = aper["aperture_corrections"][-1] * fluxes[-1]
    total_err = aper["aperture_corrections"][-1] * flux_errs[-1]

    aperture_cols = {"aper_bkg_flux": (bkg, "The local background value calculated as the sigma-clipped median value in the background annulus aperture"),
                     "aper_bkg_flux_err": (bkg_err, "The standard error of the sigma-clipped median background value")}
    kinds = (("flux", "Flux", "flux"), ("abmag", "AB magnitude", "AB magnitude"), ("vegamag", "Vega magnitude", "Vega magnitude"))
    for kind, what, what2 in kinds:
        for i, e in enumerate(ee):
            f, fe = fluxes[i], flux_errs[i]
            if kind == "flux":
                v, ve = f, fe
            else:
                v, ve = flux_to_abmag(f, fe)
                if kind == "vegamag":
                    v = v - abvega
            aperture_cols[f"aper{e}_{kind}"] = (v, f"{what} within the {e}% encircled energy circular aperture")
            aperture_cols[f"aper{e}_{kind}_err"] = (ve, f"{what} error within the {e}% encircled energy circular aperture")
        if kind == "flux":
            v, ve = total, total_err
        else:
            v, ve = flux_to_abmag(total, total_err)
            if kind == "vegamag":
                v = v - abvega
        note = f"based on the {ee[-1]}% encircled energy circular aperture; should be used only for unresolved sources."
        aperture_cols[f"aper_total_{kind}"] = (v, f"Total aperture-corrected {what2} {note}")
        aperture_cols[f"aper_total_{kind}_err"] = (ve, f"Total aperture-corrected {what2} error {note}")

    # concentration, classification, DAOFind statistics, neighbours
    extras = {}
    ci = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for i, j in ((0, 1), (1, 2), (0, 2)):
            value = np.asarray(fluxes[j].value) / np.asarray(fluxes[i].value)
            ci.append(value)
            extras[f"CI_{ee[j]}_{ee[i]}"] = (value, f"Concentration index calculated as (aper{ee[j]}_flux / aper{ee[i]}_flux)")
    extras["is_extended"] = (np.logical_and(ci[0] > ci_thresholds[0], ci[1] > ci_thresholds[1]),
                             "Flag indicating whether the source is extended")
    sharp, rnd = sharpness_roundness(data, xy_f, kernel_fwhm)
    extras["sharpness"] = (sharp, "The DAOFind source sharpness statistic")
    extras["roundness"] = (rnd, "The DAOFind source roundness statistic")
    if n == 1:
        nn_label, nn_dist = -1, np.array([np.nan]) * u.pixel
    else:
        dist, idx = KDTree(xy_f).query(xy_f, k=[2])
        dist, idx = np.transpose(dist)[0], np.transpose(idx)[0]
        nn_label = np.asarray(label)[idx]
        nn_label[~finite] = -1
        dist[~finite] = np.nan
        nn_dist = dist * u.pixel
    extras["nn_label"] = (nn_label, "The label number of the nearest neighbor")
    extras["nn_dist"] = (nn_dist, "The distance in pixels to the nearest neighbor")

    # segment (isophotal) properties
    iso_flux = seg("isophotal_flux", "flux")
    iso_err = seg("isophotal_flux_err", "segment_flux_err")
    iso_mag, iso_mag_err = flux_to_abmag(iso_flux if iso_flux is not None else np.full(n, np.nan),
                                         iso_err)
    orientation = seg("orientation", "orientation")
    nan = np.full(n, np.nan)
    tail = {
        "isophotal_flux": (iso_flux if iso_flux is not None else nan, "Isophotal flux"),
        "isophotal_flux_err": (iso_err if iso_err is not None else nan, "Isophotal flux error"),
        "isophotal_abmag": (iso_mag, "Isophotal AB magnitude"),
        "isophotal_abmag_err": (iso_mag_err, "Isophotal AB magnitude error"),
        "isophotal_vegamag": (iso_mag - abvega, "Isophotal Vega magnitude"),
        "isophotal_vegamag_err": (iso_mag_err, "Isophotal Vega magnitude error"),
        "isophotal_area": (seg("isophotal_area", "area") if "area" in sources.colnames else nan, "Isophotal area"),
        "semimajor_sigma": (seg("semimajor_sigma", "semimajor_axis") if "semimajor_axis" in sources.colnames else nan,
                            "1-sigma standard deviation along the semimajor axis of the 2D Gaussian function that has "
                            "the same second-order central moments as the source"),
        "semiminor_sigma": (seg("semiminor_sigma", "semiminor_axis") if "semiminor_axis" in sources.colnames else nan,
                            "1-sigma standard deviation along the semiminor axis of the 2D Gaussian function that has "
                            "the same second-order central moments as the source"),
        "ellipticity": (seg("ellipticity", "ellipticity") if "ellipticity" in sources.colnames else nan,
                        "1 minus the ratio of the 1-sigma lengths of the semimajor and semiminor axes"),
        "orientation": (orientation if orientation is not None else nan,
                        "The angle (degrees) between the positive X axis and the major axis (increases counter-clockwise)"),
        "sky_orientation": (_sky_orientation(model, wcs, orientation if orientation is not None else nan)
                            if wcs is not None else nan,
                            "The position angle (degrees) from North of the major axis"),
    }
    for corner, where in (("ll", "lower-left"), ("ul", "upper-left"), ("lr", "lower-right"), ("ur", "upper-right")):
        name = f"sky_bbox_{corner}"
        tail[name] = (sources[name] if name in sources.colnames else nan,
                      f"Sky coordinate of the {where} vertex of the minimal bounding box of the source")

    table = QTable()
    for group in (head, aperture_cols, extras, tail):
        for name, (value, text) in group.items():
            table[name] = value
            table[name].info.description = text
    _format(table)
    meta = dict(sources.meta)
    versions = meta.get("versions", meta.get("version"))
    if isinstance(versions, dict):
        keep = {k: versions[k] for k in ("Python", "numpy", "scipy", "astropy", "photutils", "gwcs") if k in versions}
        keep["webbflow"] = __version__
        meta["versions" if "versions" in meta else "version"] = keep
    meta["aperture_params"] = aper
    meta["abvega_offset"] = abvega
    table.meta.update(meta)
    return table


def _format(table) -> None:
    for name in table.colnames:
        if name in ("xcentroid", "ycentroid") or "CI_" in name:
            table[name].info.format = ".4f"
        if "flux" in name:
            table[name].info.format = ".6e"
        if "abmag" in name or "vegamag" in name or name in ("nn_dist", "sharpness", "roundness"):
            table[name].info.format = ".6f"
        if name in ("semimajor_sigma", "semiminor_sigma", "ellipticity", "orientation", "sky_orientation"):
            table[name].info.format = ".6f"


# ---------------------------------------------------------------------------
# the step


def product_root(model, params) -> str:
    if params.output_file:
        name = Path(params.output_file).name
        for ext in (".fits", ".ecsv"):
            if name.endswith(ext):
                name = name[: -len(ext)]
        for sfx in ("_i2d", "_cat"):
            if name.endswith(sfx):
                name = name[: -len(sfx)]
        return name
    from ._library import member_root

    return member_root(model.meta.filename or "webbflow_i2d.fits")


def segmentation_model(model, segm):
    from .. import models

    from ..models.meta import KEYWORD_FIELDS, get_path

    out = models.SegmentationMapModel(data=np.asarray(segm.data, dtype=np.uint32))
    meta = model.meta.model_copy(deep=True)
    meta.model_type = "SegmentationMapModel"
    # as jwst: the image's primary-header metadata and its WCS, nothing of its SCI header
    for path, _key, hdu, _ann in KEYWORD_FIELDS:
        if hdu != "PRIMARY" and path[0] != "wcsinfo":
            parent = get_path(meta, path[:-1]) if len(path) > 1 else meta
            if parent is not None and getattr(parent, path[-1], None) is not None:
                setattr(parent, path[-1], None)
    out.meta = meta
    if "PRIMARY" in model._headers:
        out._headers["PRIMARY"] = model._headers["PRIMARY"].copy()
    return out


def write_products(catalog, segm_model, output_dir, root: str) -> list[str]:
    """``<root>_cat.ecsv`` and ``<root>_segm.fits`` in ``output_dir``."""
    out = Path(output_dir or ".")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if catalog is not None:
        path = out / f"{root}_cat.ecsv"
        from ..models.atomic import atomic_open

        with atomic_open(path, "w") as f:
            catalog.write(f, format="ascii.ecsv")
        written.append(str(path))
        log.info("Wrote source catalogue %s", path)
    if segm_model is not None:
        if catalog is not None:
            segm_model.meta.source_catalog = f"{root}_cat.ecsv"  # SCATFILE, as jwst records it
        written.append(segm_model.save(out / f"{root}_segm.fits"))
        log.info("Wrote segmentation map %s", written[-1])
    return written


def make_catalog(model, apcorr_ref, abvega_ref, params: SourceCatalogParams):
    """``(catalog, segmentation ImageModel)`` of an i2d image; ``(None, None)`` when none can be made."""
    import astropy.units as u

    if model.data.ndim != 2:
        raise InputFileError(model.meta.filename or "<in memory>", f"holds {model.data.ndim}-D data; source_catalog needs a 2-D i2d image")
    ee = (params.aperture_ee1, params.aperture_ee2, params.aperture_ee3)
    try:
        aper = aperture_parameters(model, apcorr_ref, ee)
        offset = abvega_offset(model, abvega_ref)
    except ReferenceDataError as exc:
        log.warning("%s: source catalogue not made", exc)
        return None, None
    if model.meta.bunit_data != "MJy/sr" or (model.meta.bunit_err or "MJy/sr") != "MJy/sr":
        raise InputFileError(model.meta.filename or "<in memory>",
                             f"has SCI/ERR in {model.meta.bunit_data}/{model.meta.bunit_err}; source_catalog needs MJy/sr")
    err_arr = model.err
    coverage = np.isnan(err_arr)
    if model.has("wht"):
        coverage |= model.wht == 0
    area = model.meta.photometry.pixelarea_steradians
    if area is None:
        log.warning("The image has no pixel area (PIXAR_SR): fluxes stay in MJy/sr")
        data, err = model.data << u.dimensionless_unscaled, err_arr << u.dimensionless_unscaled
    else:
        to_jy = 1.0e6 * area
        data = (model.data * to_jy) << u.Jy
        err = (err_arr * to_jy) << u.Jy
    sources, segm = find_sources(
        data, params.snr_threshold, params.kernel_fwhm, bkg_boxsize=params.bkg_boxsize, coverage_mask=coverage,
        starfinder=params.starfinder, options=finder_options(params, error=err, wcs=model.meta.wcs, relabel=True),
    )
    if len(sources) == 0:
        log.warning("No sources found in the image: no catalogue")
        return None, None
    catalog = build_catalog(model, sources, data, err, params.kernel_fwhm, aper, offset,
                            (params.ci1_star_threshold, params.ci2_star_threshold))
    log.info("%d sources in the catalogue", len(catalog))
    segm_model = segmentation_model(model, segm) if segm is not None else None
    return catalog, segm_model


@step("source_catalog", "SourceCatalogStep", params=SourceCatalogParams, reftypes=("apcorr", "abvegaoffset"),
      suffix="cat", input_class="ImageModel")
def source_catalog(model, refs, params: SourceCatalogParams):
    """Detect the sources of a resampled image and measure their photometry and shapes."""
    catalog, segm_model = make_catalog(model, refs.get("apcorr"), refs.get("abvegaoffset"), params)
    report_qa(**{"sources": 0 if catalog is None else len(catalog)})
    # the segmentation map carries the image's metadata as it was before this step, as jwst's
    # does: no S_SRCCAT, R_APCORR or R_ABVEGA (extra["records_status"] keeps run_step from adding them)
    if params.save_results and catalog is not None:
        write_products(catalog, segm_model, params.output_dir, product_root(model, params))
    return catalog, segm_model


# the catalogue and segmentation map get no S_SRCCAT / R_APCORR / R_ABVEGA, as jwst's
STEPS["source_catalog"].extra["records_status"] = True
