"""Simulated NIRISS wide-field slitless spectroscopy (NIS_WFSS): direct image plus dispersed exposures.

One observation of one field, as a NIRISS WFSS visit takes it: a full-frame direct image
(NIS_IMAGE: FILTER=CLEAR, the blocking filter in the pupil wheel, 3 groups) and ``--nexp``
dispersed exposures (NIS_WFSS: the grism in the filter wheel, FILTER=GR150R or GR150C, the same
blocking filter, PUPIL=F150W by default, ``--ngroups``, 4 by default), all at one attitude of
the NIS_CEN aperture.  Both are full frame by default, as real NIRISS WFSS is; ``--subarray
SUB256`` reads both on the NIS_SUB256 window instead (its reference point on the target), small
enough for CI: jwst's NIRISS spec2 rule (Asn_Lv2WFSSNIS) pairs a dispersed exposure only with
direct images of the same subarray and pupil, and names the catalogue, segmentation map and i2d
with the subarray as image3 names them (``..._clear-f150w-sub256``), so the chain runs as on a
full frame.

The dispersion is a synthetic specwcs in jwst's NIRISSGrismModel form (refs.synthetic_grism.
niriss_specwcs: per-order polynomials with the inverse of the wavelength one, and ``fwcpos_ref``):
order 1 at the real grisms' 47.8 A per pixel (about 72 pixels for F150W), along the columns for
GR150R and along the rows for GR150C; the exposures' filter wheel position FWCPOS differs from
``fwcpos_ref`` by ``FWCPOS_OFFSET`` degrees, so the traces are rotated as jwst's WCS rotates them.
The flux calibration is a synthetic WFSS photom in NisWfssPhotomModel form
(refs.synthetic_grism.niriss_wfss_photom), per grism, filter and order: the real NIRISS WFSS photom
at hand is in a pre-2019 form jwst 3.0 cannot read.

The field: a handful of compact sources (point sources and small Gaussian galaxies) on the
window, apart across the dispersion so that their traces do not overlap, each order-1 trace
wholly on the window.  Each
has a power law F_nu = F_pivot (lambda / pivot)^beta; in a dispersed exposure its order-1 light
lands where jwst's WCS (webbflow's assign_wcs, identical to it) puts it, each wavelength step
carrying F_nu d(lambda) / (1e6 PIXAR_SR x PHOTMJSR x relresponse(lambda)) DN/s, the inverse of
photom and extract_1d, scaled so that the brightest trace pixel reaches 30 % of the full well.  As
in the NIRCam simulator, the direct image is scaled on its own (its brightest peak at half the
full well); the truth records both calibrations.  Other orders are not simulated (extract_2d cuts
order 1 only, as the wavelengthrange's extract_orders say).  Sky, detector effects and the pool
and associations (image2, image3, spec2 with the catalogue, segmentation map and i2d, spec3) are
those of refs/sim/wfss.py.

References (``CRDS_PATH=DIR``): the builder's Stage 1 and imaging set for the direct image
(CLEAR + filter) and for the grism (flat per FILTER/PUPIL), distortion and filteroffset, apcorr
and abvegaoffset for source_catalog, plus the synthetic specwcs (by FILTER, PUPIL, EXP_TYPE),
wavelengthrange (by EXP_TYPE), bkg (by DETECTOR, EXP_TYPE, FILTER, PUPIL) and WFSS photom; photom
and apcorr by DETECTOR and EXP_TYPE (the imaging ones for NIS_IMAGE, the WFSS photom and no apcorr
for NIS_WFSS).
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from ...errors import ParameterError
from .. import simulator as S
from . import _common as C
from . import wfss as W
from .grism import photom_conversion, pixel_area_sr

EXP_TYPE = "NIS_WFSS"
GRISMS = ("GR150R", "GR150C")
DEFAULTS = dict(subarray="FULL", filter="GR150R", pupil="F150W", ngroups=4, nints=1, readpatt="NISRAPID",
                direct_ngroups=3)
SUBARRAYS = ("FULL", "SUB256")
FWCPOS_REF = {"GR150R": 354.2111, "GR150C": 198.2570}  # degrees: the filter wheel where the specwcs was measured
FWCPOS_OFFSET = 0.05  # degrees: the exposures' FWCPOS - fwcpos_ref (the traces turn by this)
SPECWCS_PARKEYS = ("META.INSTRUMENT.FILTER", "META.INSTRUMENT.PUPIL", "META.EXPOSURE.TYPE")
ORDER = 1
N_SOURCES = 5  # the first three point sources, the rest compact galaxies
N_POINT = 3
GALAXY_SIGMA_PX = (1.2, 1.8)
FWHM_PX_AT_1P5 = 1.2  # NIRISS PSF FWHM (pixels, with the pixel response) at 1.5 um, growing with wavelength
EDGE = 12  # pixels kept clear of the window's edges by a trace
LAM_STEP = 1.2e-3  # um: the wavelength grid the spectra are dispersed on (a quarter pixel)


def psf_sigma(lam) -> np.ndarray:
    return FWHM_PX_AT_1P5 * np.clip(np.asarray(lam, float), 0.7, 2.5) / 1.5 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def _setups(detector, subarray, ngroups, nints, filt, pupil, readpatt):
    """(direct image setup, dispersed setup), refusing what the references cannot simulate."""
    from ..synthetic_grism import NIRISS_WFSS_BANDS

    if (detector or "NIS").upper() != "NIS":
        raise ParameterError(f"{EXP_TYPE}: NIRISS has one detector, NIS (got --detector {detector})")
    grism = (filt or DEFAULTS["filter"]).upper()
    if grism not in GRISMS:
        raise ParameterError(f"{EXP_TYPE} disperses with the grism in the filter wheel: --filter GR150R or GR150C "
                             f"(got --filter {filt})")
    block = (pupil or DEFAULTS["pupil"]).upper()
    if block not in NIRISS_WFSS_BANDS:
        raise ParameterError(f"{EXP_TYPE} takes a blocking filter in the pupil wheel: --pupil "
                             f"{'|'.join(NIRISS_WFSS_BANDS)} (got --pupil {pupil})")
    sub = (subarray or DEFAULTS["subarray"]).upper()
    if sub not in SUBARRAYS:
        raise ParameterError(f"{EXP_TYPE} is simulated on {', '.join(SUBARRAYS)}, not {subarray}")
    rp = (readpatt or DEFAULTS["readpatt"]).upper()
    direct = S.make_setup("niriss", "NIS", None, sub, DEFAULTS["direct_ngroups"], 1, "CLEAR", block, rp)
    disp = S.make_setup("niriss", "NIS", None, sub, ngroups or DEFAULTS["ngroups"], nints or DEFAULTS["nints"],
                        "CLEAR", block, rp)
    return direct, replace(disp, exp_type=EXP_TYPE, filter=grism)


def _reference_config(setup):
    """The exposure as the reference builder sees it (imaging types; the grism ones are added here)."""
    from ..synthetic import ExposureConfig

    return ExposureConfig(
        instrument="NIRISS", detector="NIS", exp_type="NIS_IMAGE", subarray=setup.subarray,
        xstart=setup.xstart, ystart=setup.ystart, xsize=setup.xsize, ysize=setup.ysize, readpatt=setup.readpatt,
        nframes=setup.nframes, groupgap=setup.groupgap, ngroups=setup.ngroups, nints=setup.nints,
        frame_time=setup.tframe, filter=setup.filter, pupil=setup.pupil)


def names(grism_setup) -> dict:
    """The synthetic grism references' file names for this grism and blocking filter."""
    g, p = grism_setup.filter.lower(), grism_setup.pupil.lower()
    return {"specwcs": f"jwst_niriss_specwcs_{g}_{p}_0001.asdf", "photom": "jwst_niriss_photom_wfss_0001.fits",
            "wavelengthrange": "jwst_niriss_wavelengthrange_0001.asdf", "bkg": f"jwst_niriss_bkg_{g}_{p}_0001.fits"}


def build_references(direct, grism, out: Path, seed: int):
    """The CRDS cache: ({"direct"|"grism": opened signature references}, {"direct"|"grism": paths by type}, context)."""
    from astropy.io import fits

    from .. import build
    from .. import context as ctxmod
    from ..select import open_reference
    from ..synthetic_grism import niriss_specwcs, niriss_wfss_photom, wavelengthrange, wfss_background

    res = build.build_reference_cache([_reference_config(direct), _reference_config(grism)], out, seed=seed)
    sel_direct, sel_grism = list(res.selections.values())[:2]
    paths, opened = {}, {}
    for key, sel in (("direct", sel_direct), ("grism", sel_grism)):
        paths[key] = {rt: ctxmod.reference_path(out, n) for rt, n in sel.items() if n and n != "N/A"}
        opened[key] = {rt: open_reference(rt, p) for rt, p in paths[key].items()
                       if rt in S.SIGNATURE_REFTYPES and (rt != "photom" or key == "direct")}

    ctx = ctxmod.read_context(out)
    rules = {ins: dict(r) for ins, r in ctx.rmaps.items()}
    nis = rules.setdefault("NIRISS", {})
    g = paths["grism"]
    files = names(grism)
    for rt in ("specwcs", "photom", "wavelengthrange", "bkg"):
        g[rt] = ctxmod.reference_path(out, files[rt])
        g[rt].parent.mkdir(parents=True, exist_ok=True)
    niriss_specwcs(grism.filter, grism.pupil, fwcpos_ref=FWCPOS_REF[grism.filter]).save(g["specwcs"])
    area = fits.getheader(paths["direct"]["area"])
    niriss_wfss_photom(g["photom"], area["PIXAR_SR"], area["PIXAR_A2"])
    wavelengthrange("NIRISS", EXP_TYPE).save(g["wavelengthrange"])
    wfss_background("NIRISS", EXP_TYPE, "NIS", grism.filter, grism.pupil, seed=seed).save(g["bkg"])
    g.pop("apcorr", None)
    g.pop("abvegaoffset", None)

    def rule(rt, parkeys, entries):
        nis[rt] = ctxmod.Rmap("NIRISS", rt, parkeys, entries)

    # the grism types answer N/A for the direct image
    rule("specwcs", SPECWCS_PARKEYS, {(grism.filter, grism.pupil, EXP_TYPE): files["specwcs"],
                                      (direct.filter, direct.pupil, "NIS_IMAGE"): "N/A"})
    rule("wavelengthrange", ("META.EXPOSURE.TYPE",), {(EXP_TYPE,): files["wavelengthrange"], ("NIS_IMAGE",): "N/A"})
    rule("bkg", W.BKG_PARKEYS, {("NIS", EXP_TYPE, grism.filter, grism.pupil): files["bkg"],
                                ("NIS", "NIS_IMAGE", direct.filter, direct.pupil): "N/A"})
    # the imaging photom and apcorr for the direct image, the WFSS photom (and no apcorr) for the spectra
    rule("photom", W.BY_EXP_TYPE, {("NIS", "NIS_IMAGE"): paths["direct"]["photom"].name,
                                   ("NIS", EXP_TYPE): files["photom"]})
    rule("apcorr", W.BY_EXP_TYPE, {("NIS", "NIS_IMAGE"): paths["direct"]["apcorr"].name, ("NIS", EXP_TYPE): "N/A"})
    context = ctxmod.write_context(out, rules, f"webbflow simulated NIRISS WFSS ({grism.filter} {grism.pupil} "
                                               f"{grism.subarray})").context
    return opened, paths, context


def _sources(rng, setup, n: int, along: int, toward: float, reach: float):
    """Window positions (0-based) whose order-1 traces (``reach`` pixels ``toward`` +-1 along axis
    ``along``) lie on the window, apart across the dispersion and on the sky."""
    size = (setup.xsize, setup.ysize)
    lo_a, hi_a = (EDGE, size[along] - EDGE - reach) if toward > 0 else (EDGE + reach, size[along] - EDGE)
    lo_c, hi_c = W.MARGIN, size[1 - along] - W.MARGIN
    if hi_a <= lo_a:
        raise ParameterError(f"{EXP_TYPE}: the {setup.subarray} window is too small for a {reach:.0f}-pixel trace")
    pts, tries = [], 0
    while len(pts) < n:
        tries += 1
        if tries > 20000:
            raise ParameterError(f"{EXP_TYPE}: cannot place {n} sources apart on the {setup.subarray} window")
        p = [0.0, 0.0]
        p[along], p[1 - along] = rng.uniform(lo_a, hi_a), rng.uniform(lo_c, hi_c)
        if all(math.hypot(p[0] - a, p[1] - b) > 24.0 and abs(p[1 - along] - (a, b)[1 - along]) > W.ACROSS_GAP
               for a, b in pts):
            pts.append(tuple(p))
    kinds = ["point"] * min(N_POINT, n) + ["galaxy"] * max(0, n - N_POINT)
    size_px = [0.0 if k == "point" else float(GALAXY_SIGMA_PX[i % 2]) for i, k in enumerate(kinds)]
    rel = np.geomspace(1.0, 0.3, n)
    beta = rng.uniform(-2.0, 1.0, n)
    return np.array(pts), kinds, np.array(size_px), rel, beta


def simulate(output_dir, *, instrument="niriss", detector=None, size=None, subarray=None, ngroups=None, nints=None,
             nexp=1, seed=0, filter=None, pupil=None, readpatt=None, exp_type=EXP_TYPE,  # noqa: A002
             target_ra=53.1625, target_dec=-27.7914, pa_v3=30.0, program="01234", observation=1, visit=1,
             start_time="2024-01-15T03:00:00", build_refs=True, reference_seed=0,
             cosmic_ray_rate=S.COSMIC_RAY_RATE, **_ignored) -> S.SimulationResult:
    """Write a NIRISS WFSS observation (see the module) into ``output_dir``."""
    from ..synthetic_grism import NIRISS_WFSS_BANDS

    W.check_arguments(EXP_TYPE, "niriss", SUBARRAYS, instrument, size, nexp, build_refs)
    direct, grism = _setups(detector, subarray, ngroups, nints, filter, pupil, readpatt)

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ids = S.ObservationIds(program=f"{int(program):05d}", observation=f"{int(observation):03d}",
                           visit=f"{int(visit):03d}")
    t0 = _dt.datetime.fromisoformat(start_time)
    gpnt = S.make_pointing(grism, target_ra, target_dec, pa_v3, 0.0, 0.0)
    dpnt = W.same_attitude(gpnt, direct)

    def wheels(setup, m):  # the wheels' positions: the grism's, FWCPOS_OFFSET from where the specwcs was measured
        m.meta.instrument.filter_position = (FWCPOS_REF[grism.filter] + FWCPOS_OFFSET if setup is grism
                                             else FWCPOS_REF[grism.filter] - 30.0)
        m.meta.instrument.pupil_position = 245.7

    exposures = W.plan_exposures(direct, grism, dpnt, gpnt, ids, nexp, t0, target_ra, target_dec,
                                 "NIRISS Wide Field Slitless Spectroscopy", wheels)

    refs, paths, context = build_references(direct, grism, out, reference_seed)
    photmjsr, _pixar, _src = S._photometry(refs["direct"], direct)
    pixar_sr = pixel_area_sr(paths["direct"]["area"])
    to_rate = 1e-12 / (photmjsr * pixar_sr)  # direct image: DN/s per microjansky

    lo, hi = NIRISS_WFSS_BANDS[grism.pupil]
    pivot = 0.5 * (lo + hi)
    gmeta = exposures[1][2].meta
    wcs = W.grism_wcs(gmeta, paths["grism"])
    pixmap = S.PixelMap(direct, refs["direct"])
    # which way, and how far, order 1 runs from a source (measured through the WCS at the window's centre)
    along = 1 if grism.filter == "GR150R" else 0
    c = np.array([grism.col_map[grism.xsize // 2], grism.row_map[grism.ysize // 2]], float)
    cra, cdec = S.tel_to_sky(dpnt.attitude, *pixmap.to_v2v3(c[:1], c[1:]))
    band_t = np.linspace(lo, hi, 9)
    run = np.asarray(wcs.backward_transform(np.full(9, float(np.ravel(cra)[0])), np.full(9, float(np.ravel(cdec)[0])),
                                            band_t, np.full(9, ORDER))[along], float)
    centre = (grism.xsize // 2, grism.ysize // 2)[along]
    ends = run - centre
    toward = 1.0 if np.nanmean(ends) > 0 else -1.0
    reach = float(np.nanmax(np.abs(ends))) + 4.0

    rng = np.random.default_rng([int(seed), 18, 2])
    xy_w, kinds, sizes, rel, beta = _sources(rng, grism, N_SOURCES, along, toward, reach)
    xf = grism.col_map[0] + xy_w[:, 0]  # full-frame 0-based pixels
    yf = grism.row_map[0] + xy_w[:, 1]
    n_src = len(xf)
    v2, v3 = pixmap.to_v2v3(xf, yf)
    ra, dec = S.tel_to_sky(dpnt.attitude, v2, v3)
    ra, dec = np.atleast_1d(np.asarray(ra, float)), np.atleast_1d(np.asarray(dec, float))
    xd, yd = S._full_to_output(direct, xf, yf)
    band = np.linspace(lo, hi, 200)
    shape_mean = np.array([np.mean((band / pivot) ** b) for b in beta])  # band-mean F_nu per unit F_pivot

    def spec(lam, f, b):  # F_nu (Jy) through f at the pivot
        return f * (np.asarray(lam, float) / pivot) ** b

    # the dispersed image: each source's order-1 spectrum through jwst's WCS and the WFSS photom
    lam = np.arange(lo, hi + 1e-9, LAM_STEP)
    conv, _ = photom_conversion(paths["grism"]["photom"], grism.filter, grism.pupil, ORDER, lam)
    inband = np.isfinite(conv) & (conv > 0)
    per_jy = np.where(inband, LAM_STEP / (1e6 * pixar_sr * np.where(inband, conv, 1.0)), 0.0)
    dispersed = np.zeros((grism.ysize, grism.xsize))
    traces = []
    for i in range(n_src):
        xs, ys, *_ = wcs.backward_transform(np.full(lam.size, ra[i]), np.full(lam.size, dec[i]), lam,
                                            np.full(lam.size, ORDER))
        xs, ys = np.asarray(xs, float), np.asarray(ys, float)
        traces.append((xs, ys))
        W.deposit(dispersed, xs, ys, np.hypot(psf_sigma(lam), sizes[i]), spec(lam, rel[i], beta[i]) * per_jy, half=8)
    well_g = S._median_full_well(refs["grism"], grism)
    grism_scale = W.GRISM_PEAK_FILL * well_g / (float(dispersed.max()) * grism.effinttm)
    dispersed *= grism_scale
    f_pivot = rel * grism_scale  # F_nu at the pivot (Jy), as the WFSS photom calibrates it

    # the direct image, on its own scale (see the module)
    sig_direct = np.hypot(psf_sigma(pivot), sizes)
    unit, direct_scale, direct_ujy = W.direct_image(direct, refs["direct"], xd, yd, sig_direct, rel * shape_mean,
                                                    to_rate)
    sky_direct = S.sky_surface_brightness(direct.wavelength) / photmjsr
    sky_grism = W.SKY_SCALE * W._bkg_pattern(paths["grism"]["bkg"], grism)

    uncal, cr_rows = W.write_ramps(out, exposures, direct, refs, unit + sky_direct, dispersed + sky_grism, seed,
                                   cosmic_ray_rate, reference_seed)

    from astropy import units as u
    from astropy.table import Table

    stem = f"jw{ids.program}{ids.observation}{ids.visit}_nis"
    truth = out / "truth"
    src = Table()
    src["id"] = np.arange(1, n_src + 1)
    src["ra"], src["dec"] = ra * u.deg, dec * u.deg
    src["x_direct"], src["y_direct"] = xd, yd
    src["kind"] = kinds
    src["sigma_px"] = sizes
    src["flux_pivot"] = f_pivot * u.Jy
    src["beta"] = beta
    src["direct_flux"] = direct_ujy * u.uJy
    src["direct_rate"] = direct_ujy * to_rate * (u.DN / u.s)
    src.meta["description"] = ("webbflow simulator truth: the NIRISS WFSS field's sources, F_nu = flux_pivot "
                               "(lambda/pivot)^beta; x/y_direct are 0-based pixels of the direct image; sigma_px "
                               "is a galaxy's Gaussian size (0: point source)")
    src.meta.update({"direct_image": uncal[0].name, "grism": grism.filter, "blocking_filter": grism.pupil,
                     "pivot_um": pivot, "fwcpos": FWCPOS_REF[grism.filter] + FWCPOS_OFFSET,
                     "fwcpos_ref": FWCPOS_REF[grism.filter], "specwcs": names(grism)["specwcs"],
                     "photom": names(grism)["photom"], "pixar_sr": pixar_sr, "sky_scale_of_bkg": W.SKY_SCALE,
                     "direct_flux_note": "direct_flux is the band-mean F_nu as the imaging photom calibrates the "
                                         "direct image; the WFSS photom calibrates the same source "
                                         f"{float(grism_scale / direct_scale):.4g} times brighter"})
    catalog = C.write_table(src, truth / f"{stem}_sources.ecsv")
    tab = Table()
    grid = np.arange(lo, hi + 1e-9, 0.0025)
    tab["source_id"] = np.repeat(src["id"], grid.size)
    tab["wavelength"] = np.tile(grid, n_src) * u.um
    tab["flux"] = np.concatenate([spec(grid, f_pivot[i], beta[i]) for i in range(n_src)]) * u.Jy
    tab["x_grism"] = np.concatenate([np.interp(grid, lam, traces[i][0]) for i in range(n_src)])
    tab["y_grism"] = np.concatenate([np.interp(grid, lam, traces[i][1]) for i in range(n_src)])
    tab.meta["description"] = ("webbflow simulator truth: each source's order-1 spectrum over the blocking filter's "
                               "band, and where jwst's WCS puts it in the dispersed exposures (0-based)")
    C.write_table(tab, truth / f"{stem}_spectra.ecsv")
    cr_path = S._write_cosmic_rays(truth / f"{stem}_cosmic_rays.ecsv", cr_rows)
    return W.finish(out, t0, grism, uncal, catalog, cr_path, context)
