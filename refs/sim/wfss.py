"""Simulated NIRCam wide-field slitless spectroscopy (NRC_WFSS): direct image plus dispersed exposures.

One observation of one field, as a WFSS visit takes it: a direct image (NRC_IMAGE, the same
filter through the CLEAR pupil, 3 groups) and ``--nexp`` dispersed exposures (NRC_WFSS through
GRISMR or GRISMC, ``--ngroups``, 8 by default), all at one attitude of NRCALONG (module A, whose
real dispersion files we have).  Real WFSS exposures are full frame; to keep CI small the
dispersed exposures default to the SUB640 subarray (640 x 640 pixels at the NRCA5_SUB640
aperture, whose reference point is on the target), which jwst calibrates like a full frame (its
WCS, flat and WFSS background are cut to the window); ``--subarray FULL`` gives the real size.
The direct image stays full frame: jwst's rules name a subarray image's level-3 product with
its subarray (``..._clear-f444w-sub640``) while the spec2 association names the catalogue
without it, so only a full-frame direct image gives a chain jwst's users can run.

The field: a handful of compact sources (point sources at the diffraction width and small
Gaussian galaxies), each with a smooth power-law spectrum F_nu = F_4um (lambda / 4 um)^beta,
the brightest trace pixel reaching 30 % of the full well in a dispersed exposure.  In the direct
image a source's count rate is its mean F_nu over the filter's half-power band through the
imaging photom (the builder's synthetic one), on a common scale that puts the brightest peak
at half the full well: the real (ground) grism photom calibrates about a thousand times less
signal per Jansky than a physical grism would against that imaging photom, so one flux scale
for both would saturate the direct image or drown the spectra (the truth records both).  In a
dispersed exposure its light
lands where jwst's WCS puts it: the real specwcs (``jwst_nircam_specwcs_0010.asdf`` for GRISMR,
``_0011`` for GRISMC) through webbflow's assign_wcs (identical to jwst's), evaluated for each
wavelength of a fine grid, in both of the file's orders (1 and 2), with the source's profile;
each wavelength step of order m carries F_nu d(lambda) / (1e6 PIXAR_SR x PHOTMJSR_m x
relresponse_m(lambda)) DN/s, the inverse of the real WFSS photom's row of that order
(``jwst_nircam_photom_0064.fits``) and of extract_1d's conversion, so that the x1d recovers F_nu
in each order.  Light dispersed off the window is lost, as on the detector.  Most
sources lie on the window; two more lie beside it in the direct image, one close enough that
its spectrum runs onto the window (extract_2d cuts what lands there), one whose spectrum
barely does.  The real specwcs puts order 2 about 920 px and more from the source (twice
order 1's dispersion, the filter's band in both): on the window only for the short-wavelength
filters (F250M, F277W, F322W2), which get one more source beside the window whose order-2 trace
runs onto it (for F444W order 2 falls off the detector: extract_2d finds only order-1 boxes).
The dispersed sky is the synthetic WFSS ``bkg`` reference's pattern, scaled; the direct image's sky is the zodiacal level of the imaging simulator.
Detector effects (bias, dark, non-linearity, flat, IPC, noise, cosmic rays) are the imaging
simulator's, from the references in the folder's CRDS cache.

References written into the cache (``CRDS_PATH=DIR``): the builder's Stage 1 and imaging set for
both pupils (flat per pupil, distortion, filteroffset, area, imaging photom, apcorr and
abvegaoffset for source_catalog), plus the real specwcs and WFSS photom, a synthetic
``wavelengthrange`` (orders 1 and 2 over the filter's band, both extracted) and ``bkg``
(refs.synthetic_grism), with rules as CRDS has them: specwcs by
PUPIL, MODULE, EXP_TYPE; wavelengthrange by EXP_TYPE; bkg by DETECTOR, EXP_TYPE, FILTER, PUPIL;
photom and apcorr by DETECTOR and EXP_TYPE (the imaging files for NRC_IMAGE, the grism photom and
no apcorr for NRC_WFSS).

Also written: the pool and the associations jwst's rules make (image2 for the direct image,
image3 making its i2d, source catalogue and segmentation map, spec2 per dispersed exposure with
those three as members, spec3 of the dispersed exposures) and ``truth/``: the sources
(``<stem>_sources.ecsv``: sky and direct-image positions, kind, size, F_nu at 4 um, slope) and
their spectra (``<stem>_spectra.ecsv``: source, order, wavelength, F_nu, and where the trace lies).
"""

from __future__ import annotations

import datetime as _dt
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from ...errors import ParameterError
from .. import simulator as S
from . import _common as C
from .grism import photom_conversion, pixel_area_sr, real_reference

EXP_TYPE = "NRC_WFSS"
DEFAULTS = dict(detector="NRCALONG", subarray="SUB640", filter="F444W", pupil="GRISMR", ngroups=8, nints=1,
                readpatt="RAPID", direct_ngroups=3)
SUBARRAYS = ("SUB640", "SUB320", "FULL")
SPECWCS_FILES = {"GRISMR": "jwst_nircam_specwcs_0010.asdf", "GRISMC": "jwst_nircam_specwcs_0011.asdf"}
PHOTOM_FILE = "jwst_nircam_photom_0064.fits"
BKG_FILE = "jwst_nircam_bkg_0001.fits"
WAVELENGTHRANGE_FILE = "jwst_nircam_wavelengthrange_0001.asdf"
SPECWCS_PARKEYS = ("META.INSTRUMENT.PUPIL", "META.INSTRUMENT.MODULE", "META.EXPOSURE.TYPE")
BY_EXP_TYPE = ("META.INSTRUMENT.DETECTOR", "META.EXPOSURE.TYPE")
BKG_PARKEYS = ("META.INSTRUMENT.DETECTOR", "META.EXPOSURE.TYPE", "META.INSTRUMENT.FILTER", "META.INSTRUMENT.PUPIL")
ORDER = 1  # the order the field's layout is planned on
ORDERS = (1, 2)  # the orders simulated and extracted (the real specwcs has both)
ORDER2_MIN_PX = 64  # an order-2 source is added where at least this much of its order-2 trace reaches the window
N_SOURCES = 6  # the first four point sources, the rest compact galaxies
GALAXY_SIGMA_PX = (1.6, 2.4)
FWHM_PX_AT_3P2 = 1.68  # LW diffraction width (pixels) at 3.2 um, growing with wavelength
DIRECT_PEAK_FILL = 0.5  # the brightest source's peak pixel in the direct image: this fraction of the full well
GRISM_PEAK_FILL = 0.3  # the brightest trace pixel of a dispersed exposure: this fraction of the full well
SKY_SCALE = 0.6  # the dispersed sky: this multiple of the bkg reference
MARGIN = 40  # direct-image pixels kept clear of the window's edges
ACROSS_GAP = 16.0  # pixels between two sources across the dispersion: their traces stay apart
LAM_STEP = 2.5e-4  # um: the wavelength grid the spectra are dispersed on (about a quarter pixel)


def _setups(detector, subarray, ngroups, nints, filt, pupil, readpatt):
    """(direct image setup, dispersed setup), refusing what the references cannot simulate."""
    from ..synthetic_grism import NIRCAM_LW_BANDS

    det = (detector or DEFAULTS["detector"]).upper()
    if det not in ("NRCALONG", "NRCA5"):
        raise ParameterError(f"{EXP_TYPE} is simulated on NRCALONG (the real module A dispersion), not {detector}")
    pup = (pupil or DEFAULTS["pupil"]).upper()
    if pup not in SPECWCS_FILES:
        raise ParameterError(f"{EXP_TYPE} disperses with GRISMR or GRISMC (got --pupil {pupil})")
    filt = (filt or DEFAULTS["filter"]).upper()
    if filt not in NIRCAM_LW_BANDS:
        raise ParameterError(f"{EXP_TYPE} takes a long-wavelength filter ({', '.join(NIRCAM_LW_BANDS)}), not {filt}")
    sub = (subarray or DEFAULTS["subarray"]).upper()
    if sub not in SUBARRAYS:
        raise ParameterError(f"{EXP_TYPE} is simulated on {', '.join(SUBARRAYS)}, not {subarray}")
    n = nints or DEFAULTS["nints"]
    # the direct image is full frame, as jwst's rules need: its level-3 product is named without a
    # subarray only then, and the spec2 association names that product's catalogue
    direct = S.make_setup("nircam", "NRCALONG", None, "FULL", DEFAULTS["direct_ngroups"], 1, filt, "CLEAR",
                          readpatt or DEFAULTS["readpatt"])
    grism = S.make_setup("nircam", "NRCALONG", None, sub, ngroups or DEFAULTS["ngroups"], n, filt, "CLEAR",
                         readpatt or DEFAULTS["readpatt"])
    return direct, replace(grism, exp_type=EXP_TYPE, pupil=pup)


def _reference_config(setup):
    """The exposure as the reference builder sees it (imaging types; the grism ones are added here)."""
    from ..synthetic import ExposureConfig

    return ExposureConfig(
        instrument="NIRCAM", detector=setup.detector, exp_type="NRC_IMAGE", subarray=setup.subarray,
        xstart=setup.xstart, ystart=setup.ystart, xsize=setup.xsize, ysize=setup.ysize, readpatt=setup.readpatt,
        nframes=setup.nframes, groupgap=setup.groupgap, ngroups=setup.ngroups, nints=setup.nints,
        frame_time=setup.tframe, filter=setup.filter, pupil=setup.pupil)


def build_references(direct, grism, out: Path, seed: int):
    """The CRDS cache: ({"direct"|"grism": opened signature references}, {"direct"|"grism": paths by type}, context)."""
    from .. import build
    from .. import context as ctxmod
    from ..select import open_reference
    from ..synthetic_grism import wavelengthrange, wfss_background

    res = build.build_reference_cache([_reference_config(direct), _reference_config(grism)], out, seed=seed)
    sel_direct, sel_grism = list(res.selections.values())[:2]
    paths, opened = {}, {}
    for key, sel in (("direct", sel_direct), ("grism", sel_grism)):
        paths[key] = {rt: ctxmod.reference_path(out, n) for rt, n in sel.items() if n and n != "N/A"}
        opened[key] = {rt: open_reference(rt, p) for rt, p in paths[key].items()
                       if rt in S.SIGNATURE_REFTYPES and (rt != "photom" or key == "direct")}

    ctx = ctxmod.read_context(out)
    rules = {ins: dict(r) for ins, r in ctx.rmaps.items()}
    nrc = rules.setdefault("NIRCAM", {})
    g = paths["grism"]
    for rt, name in (("specwcs", SPECWCS_FILES[grism.pupil]), ("photom", PHOTOM_FILE)):
        dest = ctxmod.reference_path(out, name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            tmp = dest.with_name(dest.name + ".part")
            shutil.copyfile(real_reference(name), tmp)
            tmp.replace(dest)
        g[rt] = dest
    g["wavelengthrange"] = ctxmod.reference_path(out, WAVELENGTHRANGE_FILE)
    # both orders carry the filter's band (the light it passes), as the real WFSS photom's order-2
    # rows tabulate it; extract_2d cuts both wherever the specwcs puts them on the window
    wr = wavelengthrange("NIRCAM", EXP_TYPE, orders_share_band=True)
    wr.set_tree(extract_orders=[[f, list(ORDERS)] for f, _o in wr.extract_orders])
    wr.save(g["wavelengthrange"])
    g["bkg"] = ctxmod.reference_path(out, BKG_FILE)
    wfss_background("NIRCAM", EXP_TYPE, grism.detector, grism.filter, grism.pupil, seed=seed).save(g["bkg"])
    g.pop("apcorr", None)
    g.pop("abvegaoffset", None)

    def rule(rt, parkeys, entries):
        nrc[rt] = ctxmod.Rmap("NIRCAM", rt, parkeys, entries)

    det = grism.detector
    # the grism types answer N/A for the direct image
    rule("specwcs", SPECWCS_PARKEYS, {(grism.pupil, det[3], EXP_TYPE): SPECWCS_FILES[grism.pupil],
                                      ("CLEAR", det[3], "NRC_IMAGE"): "N/A"})
    rule("wavelengthrange", ("META.EXPOSURE.TYPE",), {(EXP_TYPE,): WAVELENGTHRANGE_FILE, ("NRC_IMAGE",): "N/A"})
    rule("bkg", BKG_PARKEYS, {(det, EXP_TYPE, grism.filter, grism.pupil): BKG_FILE,
                              (det, "NRC_IMAGE", direct.filter, "CLEAR"): "N/A"})
    # the imaging photom and apcorr for the direct image, the grism photom (and no apcorr) for the spectra
    rule("photom", BY_EXP_TYPE, {(det, "NRC_IMAGE"): paths["direct"]["photom"].name, (det, EXP_TYPE): PHOTOM_FILE})
    rule("apcorr", BY_EXP_TYPE, {(det, "NRC_IMAGE"): paths["direct"]["apcorr"].name, (det, EXP_TYPE): "N/A"})
    context = ctxmod.write_context(out, rules, f"webbflow simulated NIRCam WFSS ({grism.filter} {grism.pupil} "
                                               f"{grism.subarray})").context
    return opened, paths, context


def grism_wcs(meta, paths: dict):
    """The dispersed exposure's gwcs, as assign_wcs (jwst's) builds it from distortion, filteroffset and specwcs."""
    from ...models import ImageModel
    from ...tasks import load_all
    from ...tasks.base import run_step

    load_all()
    img = ImageModel(data=np.zeros((meta.subarray.ysize, meta.subarray.xsize), np.float32))
    img.meta = meta.model_copy(deep=True)
    img.meta.model_type = "ImageModel"
    refs = {rt: paths[rt] for rt in ("distortion", "filteroffset", "specwcs")}
    return run_step("assign_wcs", img, {"sip_approx": False}, references=refs).model.meta.wcs


def psf_sigma(lam) -> np.ndarray:
    """The diffraction-limited Gaussian sigma (pixels) at ``lam`` um."""
    return FWHM_PX_AT_3P2 * np.clip(np.asarray(lam, float), 2.0, 5.5) / 3.2 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def deposit(image: np.ndarray, x, y, sigma, weight, half: int = 10) -> None:
    """Add, in place, Gaussians of pixel-integrated profile at (x, y) (0-based) with the given total weights."""
    from scipy.special import erf

    ny, nx = image.shape
    x, y = np.asarray(x, float), np.asarray(y, float)
    sigma = np.broadcast_to(np.asarray(sigma, float), x.shape)
    weight = np.broadcast_to(np.asarray(weight, float), x.shape)
    ok = np.isfinite(x) & np.isfinite(y) & (weight != 0) & (x > -half) & (x < nx + half) & (y > -half) & (y < ny + half)
    if not ok.any():
        return
    x, y, sigma, weight = x[ok], y[ok], sigma[ok], weight[ok]
    k = np.arange(-half, half + 1)
    ix = np.round(x).astype(int)[:, None] + k[None, :]
    iy = np.round(y).astype(int)[:, None] + k[None, :]
    s = math.sqrt(2.0) * sigma[:, None]
    px = 0.5 * (erf((ix + 0.5 - x[:, None]) / s) - erf((ix - 0.5 - x[:, None]) / s))
    py = 0.5 * (erf((iy + 0.5 - y[:, None]) / s) - erf((iy - 0.5 - y[:, None]) / s))
    vals = weight[:, None, None] * py[:, :, None] * px[:, None, :]
    yy = np.broadcast_to(iy[:, :, None], vals.shape)
    xx = np.broadcast_to(ix[:, None, :], vals.shape)
    inside = (xx >= 0) & (xx < nx) & (yy >= 0) & (yy < ny)
    np.add.at(image, (yy[inside], xx[inside]), vals[inside])


def spectrum(lam, f4, beta):
    """F_nu (Jy) of a power law through F_4um at 4 um."""
    return f4 * (np.asarray(lam, float) / 4.0) ** beta


def _sources(rng, setup, n: int):
    """Direct-image positions (0-based, the window's pixels), kinds and spectral parameters (F_4um relative).

    The sources lie apart across the dispersion (rows for GRISMR, columns for GRISMC), so that
    their traces do not overlap, and apart on the sky, so that the catalogue keeps them separate.
    """
    across = 1 if setup.pupil == "GRISMR" else 0
    pts = []
    while len(pts) < n:
        p = (rng.uniform(MARGIN, setup.xsize - MARGIN), rng.uniform(MARGIN, setup.ysize - MARGIN))
        if all(math.hypot(p[0] - a, p[1] - b) > 40.0 and abs(p[across] - (a, b)[across]) > ACROSS_GAP
               for a, b in pts):
            pts.append(p)
    kinds = ["point"] * min(4, n) + ["galaxy"] * max(0, n - 4)
    size = [0.0 if k == "point" else float(GALAXY_SIGMA_PX[i % 2]) for i, k in enumerate(kinds)]
    rel = np.geomspace(1.0, 0.25, n)  # brightest first
    beta = rng.uniform(-2.0, 1.0, n)
    return np.array(pts), kinds, np.array(size), rel, beta


def simulate(output_dir, *, instrument="nircam", detector=None, size=None, subarray=None, ngroups=None, nints=None,
             nexp=1, seed=0, filter=None, pupil=None, readpatt=None, exp_type=EXP_TYPE,  # noqa: A002
             target_ra=53.1625, target_dec=-27.7914, pa_v3=30.0, program="01234", observation=1, visit=1,
             start_time="2024-01-15T03:00:00", build_refs=True, reference_seed=0,
             cosmic_ray_rate=S.COSMIC_RAY_RATE, **_ignored) -> S.SimulationResult:
    """Write a NIRCam WFSS observation (see the module) into ``output_dir``."""
    from ..synthetic_grism import NIRCAM_LW_BANDS

    check_arguments(EXP_TYPE, "nircam", SUBARRAYS, instrument, size, nexp, build_refs)
    direct, grism = _setups(detector, subarray, ngroups, nints, filter, pupil, readpatt)
    for name in (SPECWCS_FILES[grism.pupil], PHOTOM_FILE):  # before anything is written
        real_reference(name)

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ids = S.ObservationIds(program=f"{int(program):05d}", observation=f"{int(observation):03d}",
                           visit=f"{int(visit):03d}")
    t0 = _dt.datetime.fromisoformat(start_time)
    # one attitude: the target at the dispersed window's reference point; the direct image sees the same sky
    gpnt = S.make_pointing(grism, target_ra, target_dec, pa_v3, 0.0, 0.0)
    dpnt = same_attitude(gpnt, direct)
    exposures = plan_exposures(direct, grism, dpnt, gpnt, ids, nexp, t0, target_ra, target_dec,
                               "NIRCam Wide Field Slitless Spectroscopy")

    refs, paths, context = build_references(direct, grism, out, reference_seed)
    photmjsr, _pixar, _src = S._photometry(refs["direct"], direct)
    pixar_sr = pixel_area_sr(paths["direct"]["area"])
    to_rate = 1e-12 / (photmjsr * pixar_sr)  # direct image: DN/s per microjansky

    # the field: sources on the dispersed window, and two off it (one whose spectrum still runs onto it)
    rng = np.random.default_rng([int(seed), 18])
    xy_w, kinds, sizes, rel, beta = _sources(rng, grism, N_SOURCES)
    xf = grism.col_map[0] + xy_w[:, 0]  # full-frame 0-based pixels (the window is a contiguous block)
    yf = grism.row_map[0] + xy_w[:, 1]
    gmeta = exposures[1][2].meta
    wcs = grism_wcs(gmeta, paths["grism"])
    pixmap = S.PixelMap(direct, refs["direct"])
    if grism.subarray != "FULL":
        along = 0 if grism.pupil == "GRISMR" else 1
        # the side the spectra run to: the extra sources sit on the other side of the window
        lo, hi = NIRCAM_LW_BANDS[direct.filter]
        c = np.array([grism.col_map[grism.xsize // 2], grism.row_map[grism.ysize // 2]], float)
        cra, cdec = S.tel_to_sky(dpnt.attitude, *pixmap.to_v2v3(c[:1], c[1:]))
        band_t = np.linspace(lo, hi, 9)
        run = wcs.backward_transform(np.full(9, float(np.ravel(cra)[0])), np.full(9, float(np.ravel(cdec)[0])),
                                     band_t, np.full(9, ORDER))[along]
        toward = 1.0 if np.nanmean(run) > (grism.xsize, grism.ysize)[along] / 2 else -1.0
        start, size = (grism.col_map[0], grism.row_map[0])[along], (grism.xsize, grism.ysize)[along]
        for shift, b in ((120.0, -1.0), (900.0, 0.0)):
            p = np.array([xf[0], yf[0]])
            p[along] = start - shift if toward > 0 else start + size + shift
            taken = (xf, yf)[1 - along]
            while np.min(np.abs(taken - p[1 - along])) <= ACROSS_GAP:  # its trace clear of the others'
                p[1 - along] += 7.0
            xf, yf = np.append(xf, p[0]), np.append(yf, p[1])
            kinds, sizes = kinds + ["point"], np.append(sizes, 0.0)
            rel, beta = np.append(rel, 0.6), np.append(beta, b)
        # where the filter's order-2 light can reach the window (short-wavelength filters: the real
        # specwcs disperses order 2 about 900 px and more from the source), one source beside the
        # window whose order-2 trace runs onto it
        p2 = _order2_position(wcs, cra, cdec, lo, hi, grism, along)
        if p2 is not None:
            p = np.array([xf[0], yf[0]])
            p[along] = p2
            taken = (xf, yf)[1 - along]
            while np.min(np.abs(taken - p[1 - along])) <= ACROSS_GAP:
                p[1 - along] += 7.0
            xf, yf = np.append(xf, p[0]), np.append(yf, p[1])
            kinds, sizes = kinds + ["point"], np.append(sizes, 0.0)
            rel, beta = np.append(rel, 1.0), np.append(beta, -1.0)  # blue: order 2 shows the band's short end
    n_src = len(xf)
    ok = (xf > 4 + MARGIN) & (xf < 2043 - MARGIN) & (yf > 4 + MARGIN) & (yf < 2043 - MARGIN)
    xf, yf = np.where(ok, xf, np.clip(xf, 4 + MARGIN, 2043 - MARGIN)), np.where(ok, yf, np.clip(yf, 4 + MARGIN, 2043 - MARGIN))
    v2, v3 = pixmap.to_v2v3(xf, yf)
    ra, dec = S.tel_to_sky(dpnt.attitude, v2, v3)
    ra, dec = np.atleast_1d(np.asarray(ra, float)), np.atleast_1d(np.asarray(dec, float))
    xd, yd = S._full_to_output(direct, xf, yf)  # direct-image pixels (full frame: the same)
    lo, hi = NIRCAM_LW_BANDS[direct.filter]
    band = np.linspace(lo, hi, 200)
    shape_mean = np.array([np.mean(spectrum(band, 1.0, b)) for b in beta])  # band-mean F_nu per unit F_4um

    # the dispersed image: each source's spectrum through jwst's WCS and the grism photom, for
    # F_4um = rel (Jy), then scaled so that the brightest trace pixel reaches GRISM_PEAK_FILL
    lam = np.arange(lo - 0.15, hi + 0.15, LAM_STEP)
    dispersed = np.zeros((grism.ysize, grism.xsize))
    traces = {}  # (source index, order) -> (x, y) on the window at each wavelength of lam
    for order in ORDERS:
        conv, _ = photom_conversion(paths["grism"]["photom"], grism.filter, grism.pupil, order, lam)
        inband = np.isfinite(conv) & (conv > 0)
        per_jy = np.where(inband, LAM_STEP / (1e6 * pixar_sr * np.where(inband, conv, 1.0)), 0.0)
        for i in range(n_src):
            xs, ys, *_ = wcs.backward_transform(np.full(lam.size, ra[i]), np.full(lam.size, dec[i]), lam,
                                                np.full(lam.size, order))
            xs, ys = np.asarray(xs, float), np.asarray(ys, float)
            traces[i, order] = (xs, ys)
            deposit(dispersed, xs, ys, np.hypot(psf_sigma(lam), sizes[i]), spectrum(lam, rel[i], beta[i]) * per_jy)
    well_g = S._median_full_well(refs["grism"], grism)
    grism_scale = GRISM_PEAK_FILL * well_g / (float(dispersed.max()) * grism.effinttm)
    dispersed *= grism_scale
    f4 = rel * grism_scale  # F_4um (Jy), as the grism photom calibrates it

    # the direct image: the same sources, their band-mean brightness through the imaging photom,
    # scaled so that the brightest one's peak pixel reaches DIRECT_PEAK_FILL (the real ground grism
    # photom and the synthetic imaging photom do not calibrate alike; see the truth's meta)
    sig_direct = np.hypot(psf_sigma(0.5 * (lo + hi)), sizes)
    unit, direct_scale, direct_ujy = direct_image(direct, refs["direct"], xd, yd, sig_direct, rel * shape_mean, to_rate)
    sky_direct = S.sky_surface_brightness(direct.wavelength) / photmjsr
    bkg_ref = _bkg_pattern(paths["grism"]["bkg"], grism)
    sky_grism = SKY_SCALE * bkg_ref

    # ramps ----------------------------------------------------------------------------
    uncal, cr_rows = write_ramps(out, exposures, direct, refs, unit + sky_direct, dispersed + sky_grism, seed,
                                 cosmic_ray_rate, reference_seed)

    # truth ------------------------------------------------------------------------------
    from astropy import units as u
    from astropy.table import Table

    stem = f"jw{ids.program}{ids.observation}{ids.visit}_{direct.detector.lower()}"
    truth = out / "truth"
    src = Table()
    src["id"] = np.arange(1, n_src + 1)
    src["ra"], src["dec"] = ra * u.deg, dec * u.deg
    src["x_direct"], src["y_direct"] = xd, yd
    src["kind"] = kinds
    src["sigma_px"] = sizes
    src["flux_4um"] = f4 * u.Jy
    src["beta"] = beta
    src["direct_flux"] = direct_ujy * u.uJy
    src["direct_rate"] = direct_ujy * to_rate * (u.DN / u.s)
    src.meta["description"] = ("webbflow simulator truth: the WFSS field's sources, F_nu = flux_4um (lambda/4um)^beta; "
                               "x/y_direct are 0-based pixels of the direct image (and of the dispersed exposures' "
                               "imaging frame); sigma_px is a galaxy's Gaussian size (0: point source)")
    src.meta.update({"direct_image": uncal[0].name, "filter": direct.filter, "pupil": grism.pupil,
                     "specwcs": SPECWCS_FILES[grism.pupil], "photom": PHOTOM_FILE, "pixar_sr": pixar_sr,
                     "sky_scale_of_bkg": SKY_SCALE,
                     "direct_flux_note": "direct_flux is the band-mean F_nu as the imaging photom calibrates the "
                                         "direct image; the grism photom (ground) calibrates the same source "
                                         f"{float(grism_scale / direct_scale):.4g} times brighter"})
    catalog = C.write_table(src, truth / f"{stem}_sources.ecsv")
    spec = Table()
    grid = np.arange(lo, hi + 1e-9, 0.005)
    keys = [(i, o) for o in ORDERS for i in range(n_src)]
    spec["source_id"] = np.repeat([int(src["id"][i]) for i, _o in keys], grid.size)
    spec["order"] = np.repeat([o for _i, o in keys], grid.size).astype(np.int16)
    spec["wavelength"] = np.tile(grid, len(keys)) * u.um
    spec["flux"] = np.concatenate([spectrum(grid, f4[i], beta[i]) for i, _o in keys]) * u.Jy
    spec["x_grism"] = np.concatenate([np.interp(grid, lam, traces[k][0]) for k in keys])
    spec["y_grism"] = np.concatenate([np.interp(grid, lam, traces[k][1]) for k in keys])
    spec.meta["description"] = ("webbflow simulator truth: each source's spectrum over the filter's band, and where "
                                "jwst's WCS puts it in the dispersed exposures (0-based), per order (1 and 2)")
    C.write_table(spec, truth / f"{stem}_spectra.ecsv")
    cr_path = S._write_cosmic_rays(truth / f"{stem}_cosmic_rays.ecsv", cr_rows)
    return finish(out, t0, grism, uncal, catalog, cr_path, context)


def check_arguments(exp_type, instrument_name, subarrays, instrument, size, nexp, build_refs) -> None:
    """The WFSS simulators' common refusals, before anything is written."""
    if (instrument or instrument_name).lower() != instrument_name:
        raise ParameterError(f"{exp_type} is a {instrument_name.upper().replace('NIRCAM', 'NIRCam')} mode; "
                             f"use --instrument {instrument_name}")
    if size is not None:
        raise ParameterError(f"{exp_type}: use --subarray ({', '.join(subarrays)}), not --size")
    if nexp is None or nexp < 1:
        raise ParameterError(f"--nexp must be at least 1 (got {nexp})")
    if not build_refs:
        raise ParameterError(f"{exp_type}: the spectra are placed through the references' WCS; references are needed")


def plan_exposures(direct, grism, dpnt, gpnt, ids, nexp, t0, target_ra, target_dec, template, extra=None) -> list:
    """The observation's exposures, as (setup, pointing, Level1bModel with its metadata): the direct
    image (activity 01), then ``nexp`` dispersed exposures (activity 02).  ``extra(setup, model)``
    adds what an instrument needs besides."""
    from ...models import Level1bModel

    plan = [(direct, dpnt, replace(ids, activity="01"), 1, 1)] + [
        (grism, gpnt, replace(ids, activity="02"), k + 1, nexp) for k in range(nexp)]
    exposures = []
    t = t0
    for setup, pnt, eids, number, total in plan:
        m = Level1bModel()
        S.fill_metadata(m, setup, eids, pnt, number, total, t, target_ra, target_dec)
        m.meta.filename = S.exposure_filename(setup, eids, number, t)
        m.meta.observation.template = template
        m.meta.observation.observation_label = "webbflow simulated WFSS field"
        m.meta.exposure.type = setup.exp_type
        m.meta.dither.primary_type = "NONE"
        if extra is not None:
            extra(setup, m)
        exposures.append((setup, pnt, m))
        t = t + _dt.timedelta(seconds=setup.duration + 60.0)
    return exposures


def direct_image(direct, ref, xd, yd, sigma, band_mean, to_rate):
    """The direct image's sources in DN/s, scaled so that the first (brightest) source's peak pixel
    reaches DIRECT_PEAK_FILL of the full well; ``band_mean`` is each source's band-mean F_nu in the
    dispersed exposures' units.  Returns the image, the scale and the sources' band-mean F_nu (µJy)
    as the imaging photom calibrates them."""
    well = S._median_full_well(ref, direct)
    peak = np.zeros((64, 64))
    deposit(peak, [32.0], [32.0], sigma[:1], [band_mean[0] * 1e6 * to_rate])
    direct_scale = DIRECT_PEAK_FILL * well / (float(peak.max()) * direct.effinttm)
    direct_ujy = band_mean * direct_scale * 1e6
    unit = np.zeros((direct.ysize, direct.xsize))
    deposit(unit, xd, yd, sigma, direct_ujy * to_rate)
    return unit, direct_scale, direct_ujy


def write_ramps(out: Path, exposures, direct, refs, direct_rate, grism_rate, seed, cosmic_ray_rate, reference_seed):
    """Each exposure's ramps from its scene (DN/s), saved as its uncal; returns the paths and the
    cosmic rays' truth rows."""
    uncal, cr_rows = [], []
    for k, (setup, pnt, m) in enumerate(exposures):
        key = "direct" if setup is direct else "grism"
        rate = (direct_rate if setup is direct else grism_rate).astype(np.float32)
        m.meta.wcsinfo.s_region = S.s_region(setup, S.PixelMap(setup, refs[key]), pnt)
        exp = S.simulate_ramps(setup, rate, refs[key], seed, k, cosmic_ray_rate, 1, reference_seed)
        m.data = exp.data
        path = out / m.meta.filename
        m.save(path)
        uncal.append(path)
        cr_rows += [(m.meta.filename, c.integration + 1, c.group + 1, c.frame + 1, c.x, c.y, c.electrons)
                    for c in exp.cosmic_rays]
    return uncal, cr_rows


def finish(out: Path, t0, grism, uncal, catalog, cr_path, context) -> S.SimulationResult:
    """The associations jwst's rules make for the observation, and the simulation's result."""
    lv2, lv3 = C.associations(out, t0.strftime("%Y%m%dt%H%M%S"))
    spec3 = [p for p in lv3 if "_spec3_" in Path(p).name]
    result = S.SimulationResult(output_dir=out, uncal=uncal, catalog=catalog, cosmic_rays=cr_path, asn_level2=lv2,
                                asn_level3=spec3[0] if spec3 else (lv3[0] if lv3 else None), setup=grism)
    result.asn_level3_all = lv3
    result.context, result.crds_path = context, out
    return result


def _order2_position(wcs, ra, dec, lo, hi, setup, along: int):
    """Full-frame pixel (along the dispersion) of a source whose order-2 trace runs onto the window, or None.

    The order-2 trace of a source at the window's centre gives the offsets the specwcs disperses the
    band to; the source is put so that its trace starts a quarter into the window, or as near to that
    as the detector allows (MARGIN from its edge), and is kept if ORDER2_MIN_PX of its trace then lie
    on the window.
    """
    t = np.linspace(lo, hi, 33)
    pos = np.asarray(wcs.backward_transform(np.full(t.size, float(np.ravel(ra)[0])),
                                            np.full(t.size, float(np.ravel(dec)[0])), t, np.full(t.size, 2))[along],
                     float)
    size = (setup.xsize, setup.ysize)[along]
    start = (setup.col_map[0], setup.row_map[0])[along]
    d = pos - size / 2.0  # offsets from the source, in pixels
    if not np.all(np.isfinite(d)):
        return None
    want = 0.25 * size - d.min() if d.mean() > 0 else 0.75 * size - d.max()  # window pixels
    full = float(np.clip(start + want, 4 + MARGIN, 2043 - MARGIN))
    lo_px, hi_px = full - start + d.min(), full - start + d.max()
    on = min(hi_px, size - 1.0) - max(lo_px, 0.0)
    return full if on >= ORDER2_MIN_PX else None


def same_attitude(pnt, setup):
    """The pointing keywords of another aperture (``setup``) at the same telescope attitude."""
    ra_ref, dec_ref = S.tel_to_sky(pnt.attitude, setup.v2_ref, setup.v3_ref)
    return replace(pnt, ra_ref=float(ra_ref), dec_ref=float(dec_ref),
                   roll_ref=S.position_angle(pnt.attitude, setup.v2_ref, setup.v3_ref))


def _bkg_pattern(path: Path, setup) -> np.ndarray:
    """The WFSS bkg reference cut to the window, its flagged pixels filled with their row's median."""
    from astropy.io import fits

    with fits.open(path) as h:
        data = np.asarray(h["SCI"].data, float)
        dq = np.asarray(h["DQ"].data)
    data = np.where(dq == 0, data, np.nan)
    rows = np.nanmedian(data, axis=1, keepdims=True)
    data = np.where(np.isfinite(data), data, rows)
    return S._cut(data, setup)
