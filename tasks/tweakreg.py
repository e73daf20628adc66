"""tweakreg: align the WCS of the exposures of a product to each other (jwst's TweakRegStep).

For each exposure a catalogue of point-like sources is made (:func:`find_sources`,
below, which ``source_catalog`` shares):

1. pixels flagged DO_NOT_USE or NON_SCIENCE are masked;
2. a 2-D background and its RMS are estimated with photutils' ``Background2D``
   (boxes of ``bkg_boxsize`` pixels, 3-sigma clipped medians, a 3x3 median
   filter; one box over the whole image when the image is smaller than a
   box), subtracted, and the detection threshold is ``snr_threshold`` times
   the RMS;
3. sources are found with the ``starfinder``: photutils' IRAFStarFinder
   (the default, ``iraf``) or DAOStarFinder (``dao``) at the median of that
   threshold, with the sharpness, roundness, separation, peak and
   ``brightest`` limits; or image segmentation (``segmentation``) of the
   data convolved with a Gaussian of ``kernel_fwhm``, deblended, measured
   with photutils' ``SourceCatalog``.

The catalogues (positions ``x``, ``y`` within the WCS bounding box) feed
tweakwcs' ``JWSTWCSCorrector`` (a correction in the V2/V3 tangent plane),
and stcal's ``relative_align`` matches them between exposure groups
(2-D histogram of offsets within ``searchrad``, then ``xyxymatch`` with
``tolerance``/``separation``) and fits each group to the growing reference
catalogue (``fitgeometry``: shift, rshift, rscale or general; ``nclip``
iterations of ``sigma`` clipping; at least ``minobj`` matches).  Exposures
of one group (the detectors of one exposure) move together.

Absolute alignment (``abs_refcat``) then fits all exposures to a reference
catalogue: a file (ECSV/FITS with RA/DEC or sky_centroid columns, such as a
catalogue source_catalog wrote) or a GAIA catalogue name fetched from the
STScI catalogue service.  jwst stops with a connection error when that
service cannot be reached; here the absolute alignment is skipped with a
warning and the relative alignment is kept.

Where a fit succeeds the exposure's ``meta.wcs`` gets the corrected WCS,
its S_REGION is recomputed and (``sip_approx``) its FITS SIP approximation
is refitted.  When alignment cannot be done (one group and no reference
catalogue, too few matches, a correction larger than the search allows),
the step is marked FAILED and the WCSs are left alone, as jwst 3.0 does.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from ..errors import InputFileError, ParameterError
from ..models import dqflags
from . import _wcs
from ._library import as_library, give_back
from .base import STEPS, StepParams, report_qa, step

log = logging.getLogger("webbflow.steps.tweakreg")

# GAIA catalogue names the STScI service knows (stcal.tweakreg's list).
GAIA_CATALOGS = ("GAIAREFCAT", "GAIADR3", "GAIADR2", "GAIADR1")


class TweakRegParams(StepParams):
    save_catalogs: bool = False  # write each exposure's source catalogue
    use_custom_catalogs: bool = False  # use catalogues the user gives (catfile, or meta.tweakreg_catalog)
    catalog_format: Literal["ecsv", "fits"] = "ecsv"  # format of the written catalogues
    catfile: str = ""  # text file: lines of '<exposure file> [<catalogue file>]'
    starfinder: Literal["dao", "iraf", "segmentation"] = "iraf"  # source finder
    # general source finding
    snr_threshold: float = 10.0  # detection threshold, in background RMS
    kernel_fwhm: float = 2.5  # FWHM (pixels) of the Gaussian kernel
    bkg_boxsize: int = Field(400, ge=1)  # background mesh box size, pixels
    # DAOStarFinder / IRAFStarFinder
    minsep_fwhm: float = 0.0  # minimum separation of detections, in kernel FWHM
    sigma_radius: float = 1.5  # truncation radius of the kernel, in sigma
    sharplo: float = 0.5  # sharpness lower bound
    sharphi: float = 2.0  # sharpness upper bound
    roundlo: float = 0.0  # roundness lower bound
    roundhi: float = 0.2  # roundness upper bound
    brightest: int | None = 200  # keep the brightest this many detections
    peakmax: float | None = None  # drop detections with a peak at or above this
    # segmentation (SourceFinder / SourceCatalog)
    npixels: int = 10  # minimum connected pixels of a source
    connectivity: Literal[4, 8] = 8  # pixel neighbourhood
    nlevels: int = 32  # multi-thresholding levels for deblending
    contrast: float = 0.001  # flux fraction a deblended component must have
    multithresh_mode: Literal["exponential", "linear", "sinh"] = "exponential"  # spacing of the deblending thresholds (segmentation finder)
    localbkg_width: int = 0  # width of the local background annulus (0: none)
    apermask_method: Literal["correct", "mask", "none"] = "correct"  # neighbours in apertures
    kron_params: list[float] | None = None  # Kron aperture parameters (2 or 3 values)
    deblend: bool = True  # deblend sources
    # relative alignment
    enforce_user_order: bool = False  # align in the input order (first is the reference)
    expand_refcat: bool = False  # add each aligned group's sources to the reference catalogue
    minobj: int = 15  # minimum matched sources for a fit
    fitgeometry: Literal["shift", "rshift", "rscale", "general"] = "rshift"  # relative fit: shift, shift+rotation, +scale, or general linear
    nclip: int = Field(3, ge=0)  # clipping iterations of the fit
    sigma: float = Field(3.0, ge=0.0)  # clipping limit, in fit RMS
    searchrad: float = 2.0  # search radius of a match, arcsec
    use2dhist: bool = True  # find the initial offset with a 2-D histogram
    separation: float = 1.0  # minimum separation of sources used for matching, arcsec
    tolerance: float = 0.7  # matching tolerance, arcsec
    xoffset: float = 0.0  # initial guess of the X offset, arcsec
    yoffset: float = 0.0  # initial guess of the Y offset, arcsec
    # absolute alignment
    abs_refcat: str | None = ""  # reference catalogue file, or GAIAREFCAT/GAIADR3/GAIADR2/GAIADR1; '' none
    save_abs_catalog: bool = False  # write the absolute reference catalogue used
    abs_minobj: int = 15  # absolute alignment: fewest matched sources for a fit
    abs_fitgeometry: Literal["shift", "rshift", "rscale", "general"] = "rshift"  # absolute alignment: geometry of the fit to the reference catalogue
    abs_nclip: int = Field(3, ge=0)  # absolute alignment: sigma-clipping iterations of the fit
    abs_sigma: float = Field(3.0, ge=0.0)  # absolute alignment: clipping limit in sigma
    abs_searchrad: float = 6.0  # absolute alignment: search radius for matches, arcsec
    abs_use2dhist: bool = True  # absolute alignment: find the initial offset with a 2-D histogram
    abs_separation: float = 1.0  # absolute alignment: minimum separation of sources in a catalogue, arcsec
    abs_tolerance: float = 0.7  # absolute alignment: matching tolerance, arcsec
    # FITS SIP approximation of the new WCS (as assign_wcs)
    sip_approx: bool = True  # add a FITS SIP approximation of the tweaked WCS to the header
    sip_max_pix_error: float = 0.01  # largest forward SIP error allowed, pixels
    sip_degree: int | None = Field(None, le=6)  # degree of the forward SIP polynomial (None: fitted up to 6)
    sip_max_inv_pix_error: float = 0.01  # largest inverse SIP error allowed, pixels
    sip_inv_degree: int | None = Field(None, le=6)  # degree of the inverse SIP polynomial (None: fitted up to 6)
    sip_npoints: int = 12  # grid points per axis used to fit the SIP approximation
    output_use_model: bool = True  # name outputs after the model's filename (jwst compatibility)
    in_memory: bool = True  # False: keep exposures in a temporary folder, not in memory

    def model_post_init(self, _ctx) -> None:
        if self.kron_params is not None and len(self.kron_params) not in (2, 3):
            raise ParameterError(f"step tweakreg: 'kron_params' must have 2 or 3 values (got {self.kron_params})")


# ---------------------------------------------------------------------------
# source finding (shared with source_catalog)


# import name -> distribution name, where they differ, for the packages photutils names in its tables
_DISTRIBUTIONS = {"skimage": "scikit-image"}


def _versions_without_importing(packages: tuple[str, ...]):
    """photutils' ``_get_version_info`` for ``packages``, without importing the ones not imported yet.

    photutils records in every table it makes the versions of its optional dependencies, importing
    them to read ``__version__``: matplotlib (0.2 s of CPU) is imported by the first source search
    of a process only to be named in a table's metadata.  A package already imported gives its
    ``__version__`` as photutils reads it; another its installed distribution's version, which is
    the same string, without the import; one not installed None, as photutils' ImportError."""
    import sys
    from importlib import metadata

    def info():
        versions = {"Python": sys.version.split()[0]}
        for name in packages:
            module = sys.modules.get(name)
            if module is not None:
                versions[name] = module.__version__
                continue
            try:
                versions[name] = metadata.version(_DISTRIBUTIONS.get(name, name))
            except metadata.PackageNotFoundError:
                versions[name] = None
        return versions

    return info


def _photutils_function(module_name: str, name: str):
    """``(module, function)`` of photutils not yet replaced here, or None (not there, or replaced)."""
    import importlib

    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    function = getattr(module, name, None)
    if function is None or getattr(function, "_webbflow", False):
        return None
    return module, function


def _light_photutils_versions() -> None:
    """photutils' tables name its dependencies' versions without importing them (see
    :func:`_versions_without_importing`); left as it is when its function is not the one expected
    (one tuple of package names, the version read from ``__version__``)."""
    found = _photutils_function("photutils.utils._misc", "_get_version_info")
    if found is None:
        return
    _misc, original = found
    code = getattr(original, "__code__", None)
    names = [c for c in (code.co_consts if code else ()) if isinstance(c, tuple) and "photutils" in c
             and all(isinstance(n, str) for n in c)]
    if len(names) != 1 or "__version__" not in code.co_names or "__import__" not in code.co_names:
        return
    light = _versions_without_importing(names[0])
    light._webbflow = True
    _misc._get_version_info = light


def _verify_ring_candidates_at_once(data, peak_mask, needs_verify, footprint_bool, half, footprint_size):
    """photutils' ``_verify_ring_candidates`` for all candidates at once, with the same answer.

    photutils checks each candidate of its circular local-maximum search in a Python loop (some
    50,000 candidates in a 1024x1024 exposure: 0.4 s of CPU).  Here, for each footprint offset the
    candidates' neighbours are read at once from the data padded with -inf: the maximum over the
    footprint pixels inside the image, then 0.0 (scipy's ``cval``) joined in where the footprint's
    box reaches beyond the image, as photutils does; a candidate stays a peak where it equals that
    maximum.  ``peak_mask`` is updated in place."""
    ys, xs = needs_verify.nonzero()
    if len(ys) == 0:
        return
    ny, nx = data.shape
    pad = footprint_size
    padded = np.full((ny + 2 * pad, nx + 2 * pad), -np.inf, dtype=np.result_type(data.dtype, np.float64))
    padded[pad:pad + ny, pad:pad + nx] = data
    local_max = np.full(len(ys), -np.inf, dtype=padded.dtype)
    for fy, fx in zip(*np.nonzero(footprint_bool), strict=True):
        np.maximum(local_max, padded[ys - half + fy + pad, xs - half + fx + pad], out=local_max)
    y0, x0 = ys - half, xs - half
    clipped = (y0 < 0) | (y0 + footprint_size > ny) | (x0 < 0) | (x0 + footprint_size > nx)
    local_max[clipped] = np.where(local_max[clipped] < 0.0, 0.0, local_max[clipped])
    keep = data[ys, xs] == local_max
    peak_mask[ys[keep], xs[keep]] = True


def _fast_ring_check() -> None:
    """photutils' circular peak search verifies its ring candidates with
    :func:`_verify_ring_candidates_at_once`; left as it is when its function is not the one expected."""
    found = _photutils_function("photutils.detection.peakfinder", "_verify_ring_candidates")
    if found is None:
        return
    peakfinder, original = found
    expected = ["data", "peak_mask", "needs_verify", "footprint_bool", "half", "footprint_size"]
    if list(inspect.signature(original).parameters) != expected:
        return
    _verify_ring_candidates_at_once._webbflow = True
    _verify_ring_candidates_at_once.photutils_original = original  # photutils' own, for comparison
    peakfinder._verify_ring_candidates = _verify_ring_candidates_at_once


def background(data, box_size, coverage_mask=None):
    """photutils Background2D of ``data`` (3-sigma clipped medians, 3x3 filter); one box when boxes do not fit."""
    from astropy.stats import SigmaClip
    from astropy.utils.exceptions import AstropyUserWarning
    from photutils.background import Background2D, MedianBackground

    box = np.asarray(box_size).astype(int)
    common = dict(filter_size=(3, 3), coverage_mask=coverage_mask, sigma_clip=SigmaClip(sigma=3.0),
                  bkg_estimator=MedianBackground())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=AstropyUserWarning)
        try:
            return Background2D(data, box, **common)
        except ValueError:
            log.info("Background meshes of %s pixels do not fit; using the whole unmasked image (%s)", box, data.shape)
            return Background2D(data, data.shape, exclude_percentile=100.0, **common)


def _only_params_of(cls, options: dict) -> dict:
    names = set(inspect.signature(cls).parameters)
    return {k: v for k, v in options.items() if k in names}


def _segmentation_sources(data, threshold, kernel_fwhm, mask, options):
    from astropy.convolution import Gaussian2DKernel, convolve
    from astropy.stats import gaussian_fwhm_to_sigma
    from astropy.utils.exceptions import AstropyUserWarning
    from photutils import use_future_column_names
    from photutils.segmentation import SourceCatalog, SourceFinder
    from photutils.segmentation.catalog import DEFAULT_COLUMNS

    if kernel_fwhm > 0:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=AstropyUserWarning)
            conv = convolve(data, Gaussian2DKernel(kernel_fwhm * gaussian_fwhm_to_sigma), mask=mask)
    else:
        conv = data
    finder_opts = {"n_pixels": 10, "progress_bar": False, **options}
    finder = SourceFinder(**_only_params_of(SourceFinder, finder_opts))
    segm = finder(conv, threshold, mask=mask)
    if segm is None:
        return None, None
    cat_opts = _only_params_of(SourceCatalog, options)
    cat_opts.pop("progress_bar", None)
    if cat_opts.get("kron_params", 0) is None:
        cat_opts["kron_params"] = (2.5, 1.4, 0.0)
    columns = list(DEFAULT_COLUMNS) + ["ellipticity", "sky_bbox_ll", "sky_bbox_ul", "sky_bbox_lr", "sky_bbox_ur"]
    with use_future_column_names():
        table = SourceCatalog(data, segm, mask=mask, convolved_data=conv, **cat_opts).to_table(columns=columns)
    return table, segm


def _star_finder_sources(cls, data, threshold, kernel_fwhm, mask, options):
    from photutils import use_future_column_names

    finder = cls(np.median(threshold), kernel_fwhm, **_only_params_of(cls, options))
    with use_future_column_names():
        return finder(data, mask=mask), None


def _empty_catalog():
    from astropy.table import QTable

    return QTable(names=["id", "xcentroid", "ycentroid", "flux"], dtype=(int, float, float, float)).copy()


def _normalise_columns(table) -> None:
    """Column names shared by the three finders (id, xcentroid, ycentroid, flux, area, orientation)."""
    import astropy.units as u

    renames = {"pa": "orientation", "npix": "area", "segment_flux": "flux", "label": "id",
               "x_centroid": "xcentroid", "y_centroid": "ycentroid"}
    for old, new in renames.items():
        if old in table.colnames:
            table.rename_column(old, new)
    if "orientation" in table.colnames:
        table["orientation"] = u.Quantity(table["orientation"], unit=u.deg)


def find_sources(data, snr_threshold: float, kernel_fwhm: float, *, bkg_boxsize=400, coverage_mask=None,
                 starfinder: str = "iraf", options: dict | None = None):
    """Detect sources in a background-subtracted copy of ``data``: ``(table, segmentation or None)``.

    ``options`` holds the finder's keywords (photutils names: sigma_radius,
    min_separation, sharpness_range, roundness_range, peak_max, n_brightest,
    n_pixels, connectivity, n_levels, contrast, mode, deblend, relabel,
    error, wcs, local_bkg_width, aperture_mask_method, kron_params); each
    finder takes the ones it knows.
    """
    from astropy.utils.exceptions import AstropyUserWarning
    from photutils.detection import DAOStarFinder, IRAFStarFinder
    from photutils.utils import NoDetectionsWarning

    options = dict(options or {})
    _light_photutils_versions()
    _fast_ring_check()
    name = starfinder.lower()
    if name in ("dao", "daostarfinder"):
        def finder(d, t, k, m):
            return _star_finder_sources(DAOStarFinder, d, t, k, m, options)
    elif name in ("iraf", "irafstarfinder"):
        def finder(d, t, k, m):
            return _star_finder_sources(IRAFStarFinder, d, t, k, m, options)
    elif name in ("segmentation", "sourcefinder"):
        def finder(d, t, k, m):
            return _segmentation_sources(d, t, k, m, options)
    else:
        raise ParameterError(f"unknown starfinder {starfinder!r}; choose dao, iraf or segmentation")
    try:
        bkg = background(data, bkg_boxsize, coverage_mask)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyUserWarning)
            threshold = snr_threshold * bkg.background_rms
        work = data - bkg.background
    except ValueError as exc:
        log.warning("Cannot estimate the sky background: %s", exc.args[0])
        table = _empty_catalog()
        _normalise_columns(table)
        return table, None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=NoDetectionsWarning, message="No sources were found")
        table, segm = finder(work, threshold, kernel_fwhm, coverage_mask)
    if table is None or len(table) == 0:
        log.warning("No sources found in the image.")
        table = _empty_catalog()
    _normalise_columns(table)
    return table, segm


def finder_options(params, error=None, wcs=None, relabel=None) -> dict:
    """The finder keywords from a step's parameters (tweakreg's and source_catalog's names)."""
    opts = {
        "sigma_radius": params.sigma_radius,
        "min_separation": max(2, int(params.minsep_fwhm * params.kernel_fwhm + 0.5)),
        "sharpness_range": (params.sharplo, params.sharphi),
        "roundness_range": (params.roundlo, params.roundhi),
        "peak_max": params.peakmax,
        "n_brightest": params.brightest,
        "n_pixels": params.npixels,
        "connectivity": int(params.connectivity),
        "n_levels": params.nlevels,
        "contrast": params.contrast,
        "mode": params.multithresh_mode,
        "local_bkg_width": params.localbkg_width,
        "aperture_mask_method": params.apermask_method,
        "kron_params": params.kron_params,
        "deblend": params.deblend,
    }
    if error is not None:
        opts["error"] = error
    if wcs is not None:
        opts["wcs"] = wcs
    if relabel is not None:
        opts["relabel"] = relabel
    return opts


def exposure_catalog(model, params: TweakRegParams):
    """The alignment catalogue of one exposure: id, x, y, flux (0-based pixels)."""
    mask = (model.dq & np.uint32(dqflags.NON_SCIENCE | dqflags.DO_NOT_USE)).astype(bool)
    table, _segm = find_sources(
        model.data, params.snr_threshold, params.kernel_fwhm, bkg_boxsize=params.bkg_boxsize,
        coverage_mask=mask, starfinder=params.starfinder, options=finder_options(params, error=model.err),
    )
    table = table[["id", "xcentroid", "ycentroid", "flux"]]
    return table


# ---------------------------------------------------------------------------
# catalogues


def _xy_columns(catalog):
    for axis in ("x", "y"):
        if axis in catalog.colnames:
            continue
        for long in (axis + "centroid", axis + "_centroid"):
            if long in catalog.colnames:
                catalog.rename_column(long, axis)
                break
        else:
            raise InputFileError(
                catalog.meta.get("name", "catalogue"),
                f"a tweakreg catalogue needs column {axis!r}, {axis + 'centroid'!r} or {axis + '_centroid'!r}",
            )
    return catalog


def _in_bbox(catalog, bbox):
    if bbox is None or len(catalog) == 0:
        return catalog
    (x0, x1), (y0, y1) = bbox
    x, y = np.asarray(catalog["x"]), np.asarray(catalog["y"])
    return catalog[(x > x0) & (x < x1) & (y > y0) & (y < y1)]


def parse_catfile(catfile: str) -> dict[str, str | None] | None:
    """``{exposure file name: catalogue path or None}`` from a catfile (paths relative to its folder)."""
    if not catfile or not catfile.strip():
        return None
    path = Path(catfile)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise InputFileError(path, f"cannot read the catfile ({exc.strerror})") from None
    out: dict[str, str | None] = {}
    for line in lines:
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        name, *cat = s.split()
        if len(cat) > 1:
            raise InputFileError(path, f"catfile lines have at most two columns: {s!r}")
        out[name] = str(path.parent / cat[0]) if cat else None
    return out


def _write_catalog(catalog, filename: str, params: TweakRegParams) -> str:
    name = str(filename).replace(".fits", f"_cat.{params.catalog_format}")
    fmt = "ascii.ecsv" if params.catalog_format == "ecsv" else "fits"
    target = Path(params.output_dir) / name if params.output_dir else Path(name)
    catalog.write(target, format=fmt, overwrite=True)
    log.info("Wrote source catalogue %s", target)
    return name


# ---------------------------------------------------------------------------
# the step


def _corrector(model, catalog):
    from tweakwcs.correctors import JWSTWCSCorrector

    w = model.meta.wcsinfo
    missing = [k for k in ("roll_ref", "v2_ref", "v3_ref") if getattr(w, k) is None]
    if missing:
        raise InputFileError(model.meta.filename or "<in memory>", f"has no {', '.join(k.upper() for k in missing)}: cannot align it")
    return JWSTWCSCorrector(
        wcs=model.meta.wcs,
        wcsinfo={"roll_ref": w.roll_ref, "v2_ref": w.v2_ref, "v3_ref": w.v3_ref},
        meta={"catalog": catalog, "name": catalog.meta.get("name"), "group_id": model.meta.group_id},
    )


def _skip(library, reason: str):
    """Leave the WCSs as they are: jwst 3.0 records such a run as FAILED (S_TWKREG), not SKIPPED."""
    log.warning("%s", reason)
    library.mark_step("tweakreg", "FAILED")
    return library


def align(library, params: TweakRegParams):
    """Align the library's exposures in place; returns the library (step status set on each member)."""
    import stcal.tweakreg.tweakreg as twk

    n_groups = len(library.group_names)
    catdict = parse_catfile(params.catfile) if params.use_custom_catalogs else None
    use_custom = params.use_custom_catalogs
    if use_custom and catdict is not None and not catdict:
        log.warning("'use_custom_catalogs' is set but the catfile lists no catalogues; finding sources instead")
        use_custom = False
    catdict = catdict or {}
    abs_refcat = (params.abs_refcat or "").strip()
    expand_refcat = params.expand_refcat or bool(abs_refcat)
    if not abs_refcat and not params.save_catalogs and n_groups == 1:
        return _skip(library, "At least two exposures are needed for relative alignment and no absolute "
                              "reference catalogue is given: tweakreg skipped")

    found = None
    if not use_custom and all(library.in_memory(i) for i in range(len(library))):
        # each exposure's sources are found on its own: side by side on forked processes (members in memory)
        found = library.map_forked(lambda _i, model: exposure_catalog(model, params))
    correctors = []
    for i, model in library.each(modify=False):
        filename = model.meta.filename or f"member{i}"
        custom = None
        if use_custom:
            custom = catdict.get(filename, getattr(model.meta, "tweakreg_catalog", None) or None)
        if custom:
            from astropy.table import Table

            log.info("Using the user's catalogue %s for %s", custom, filename)
            catalog = Table.read(custom)
            save = False
        else:
            catalog = exposure_catalog(model, params) if found is None else found[i]
            save = params.save_catalogs
        catalog = _xy_columns(catalog)
        bbox = model.meta.wcs.bounding_box.bounding_box(order="F") if _has_bbox(model.meta.wcs) else None
        catalog = _in_bbox(catalog, bbox)
        if catalog.meta.get("name") is None:
            catalog.meta["name"] = Path(filename).stem.strip("_- ")
        if len(catalog) == 0:
            log.warning("No sources found in %s", filename)
        else:
            log.info("Detected %d sources in %s", len(catalog), filename)
        if save:
            _write_catalog(catalog, filename, params)
        correctors.append(_corrector(model, catalog))

    log.info("Number of exposure groups to align: %d", n_groups)
    relative_failed = True
    if n_groups > 1:
        try:
            correctors = twk.relative_align(
                correctors, enforce_user_order=params.enforce_user_order, expand_refcat=expand_refcat,
                minobj=params.minobj, fitgeometry=params.fitgeometry, nclip=params.nclip, sigma=params.sigma,
                searchrad=params.searchrad, use2dhist=params.use2dhist, separation=params.separation,
                tolerance=params.tolerance, xoffset=params.xoffset, yoffset=params.yoffset,
            )
            relative_failed = False
        except twk.TweakregError as exc:
            log.warning("Relative alignment failed: %s", exc)

    if abs_refcat:
        outcome = _absolute(library, correctors, abs_refcat, params)
        if outcome == "failed":
            return _skip(library, "Absolute alignment failed: tweakreg skipped, WCSs unchanged")
        if outcome == "offline" and relative_failed:
            return _skip(library, "Neither relative nor absolute alignment could be done: tweakreg skipped")
        aligned_abs = outcome == "done"
    else:
        aligned_abs = False
        if relative_failed:
            return _skip(library, "Relative alignment could not be done: tweakreg skipped, WCSs unchanged")

    _apply(library, correctors, params, abs_refcat if aligned_abs else None)
    return library


def _has_bbox(wcs) -> bool:
    try:
        return wcs.bounding_box is not None
    except NotImplementedError:
        return False


def _absolute(library, correctors, abs_refcat: str, params: TweakRegParams) -> str:
    """Fit every exposure to the reference catalogue: 'done', 'failed' (no fit) or 'offline' (no GAIA service)."""
    import stcal.tweakreg.tweakreg as twk
    from astropy.time import Time

    is_gaia = abs_refcat.upper() in GAIA_CATALOGS
    if not is_gaia and not Path(abs_refcat).is_file():
        raise ParameterError(
            f"step tweakreg: abs_refcat {abs_refcat!r} is neither an existing catalogue file nor one of "
            f"{', '.join(GAIA_CATALOGS)}"
        )
    log.info("Aligning to the absolute reference catalogue %s", abs_refcat)
    ref = library.borrow(0)
    try:
        wcsinfo = {k: v for k, v in ref.meta.wcsinfo.model_dump().items() if v is not None}
        epoch = Time(ref.meta.observation.date).decimalyear
        ref_wcs = ref.meta.wcs
    finally:
        library.shelve(0, ref, modify=False)
        del ref
    try:
        twk.absolute_align(
            correctors, abs_refcat, ref_wcs=ref_wcs, ref_wcsinfo=wcsinfo, epoch=epoch,
            abs_minobj=params.abs_minobj, abs_fitgeometry=params.abs_fitgeometry, abs_nclip=params.abs_nclip,
            abs_sigma=params.abs_sigma, abs_searchrad=params.abs_searchrad, abs_use2dhist=params.abs_use2dhist,
            abs_separation=params.abs_separation, abs_tolerance=params.abs_tolerance,
            save_abs_catalog=params.save_abs_catalog, abs_catalog_output_dir=params.output_dir,
        )
    except twk.TweakregError as exc:
        log.warning("%s", exc)
        return "failed"
    except Exception as exc:  # noqa: BLE001 - the catalogue service's failures (requests) are not ours to crash on
        if is_gaia and _is_network_error(exc):
            log.warning(
                "Absolute alignment to %s skipped: the catalogue service cannot be reached (%s). "
                "Give abs_refcat a catalogue file to align offline; the relative alignment is kept.",
                abs_refcat.upper(), exc,
            )
            return "offline"
        raise
    return "done"


def _is_network_error(exc: BaseException) -> bool:
    try:
        import requests
    except ImportError:  # pragma: no cover
        return isinstance(exc, (ConnectionError, TimeoutError, OSError))
    return isinstance(exc, (requests.exceptions.RequestException, ConnectionError, TimeoutError, OSError))


def _apply(library, correctors, params: TweakRegParams, abs_refcat: str | None) -> None:
    fits = []
    for i, model in library.each(modify=True):
        corrector = correctors[i]
        info = corrector.meta.get("fit_info")
        if info is not None and "SUCCESS" in info["status"]:
            if abs_refcat:
                corrector.wcs.name = f"FIT-LVL3-{abs_refcat}"
            model.meta.wcs = corrector.wcs
            _wcs.update_s_region(model)
            if params.sip_approx:
                try:
                    _wcs.update_fits_sip(
                        model, max_pix_error=params.sip_max_pix_error, degree=params.sip_degree,
                        max_inv_pix_error=params.sip_max_inv_pix_error, inv_degree=params.sip_inv_degree,
                        npoints=params.sip_npoints, crpix=None,
                    )
                except (ValueError, RuntimeError) as exc:
                    log.warning("Could not refit the FITS SIP approximation of %s: %s", model.meta.filename, exc)
            shift = info.get("shift")
            if shift is not None:
                log.info("%s: shift (%.4f, %.4f) arcsec, rotation %s, RMSE %.4g", model.meta.filename,
                         shift[0], shift[1], info.get("proper_rot", info.get("rot")), info.get("rmse", np.nan))
                fits.append(f"{model.meta.filename}: shift ({shift[0]:.4f}, {shift[1]:.4f}), "
                            f"rms {float(info.get('rmse', np.nan)):.4g}, {int(info.get('nmatches', 0))} matches")
        model.meta.cal_step.tweakreg = "COMPLETE"
    report_qa(**{"aligned": f"{len(fits)} of {len(correctors)}", "fits": "; ".join(fits) or "none"})


@step("tweakreg", "TweakRegStep", params=TweakRegParams, suffix="tweakreg", input_class="ModelLibrary")
def tweakreg(models_in, refs, params: TweakRegParams):
    """Align the exposures' WCSs to each other (and to a reference catalogue) with sources found in them."""
    library = as_library(models_in, params.in_memory)
    if len(library) == 0:
        raise ParameterError("tweakreg needs at least one image")
    align(library, params)
    return give_back(library, models_in)


STEPS["tweakreg"].extra["records_status"] = True
