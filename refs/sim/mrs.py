"""Simulated MIRI MRS (MIR_MRS): a 4-point dither of a point source on faint extended emission.

``webbflow simulate --instrument miri --exp-type MIR_MRS [--detector MIRIFUSHORT|MIRIFULONG]
[--band SHORT|MEDIUM|LONG] [--nexp N] [--ngroups N]``: one detector and one band (grating
setting) of the MRS, so one exposure holds two channels side by side (MIRIFUSHORT: 1 and 2,
MIRIFULONG: 3 and 4), read in FULL frame (the MRS has no subarrays: 1032 x 1024), FASTR1, 5
groups and one integration by default.  ``--nexp`` exposures (default 4) follow the MRS 4-point
point-source dither (the pattern optimised for channel 1, in alpha/beta of the detector's first
channel, turned into V2/V3 offsets by that channel's alpha/beta -> V2/V3 model; a fifth and later
point repeat the pattern), DITHOPFR=POINT-SOURCE so that jwst's srctype calls the target a point source.

The geometry is the real in-flight one (../shared/data/real-refs/miri/mrs_flt9: the band's
distortion and specwcs, and the wavelength ranges); the slice map is traced through it
(refs/synthetic_mrs.py).  The scene is placed through that chain inverted: for each detector pixel
of a slice, its alpha, beta and lambda from the slice's forward models; the target's position in
the channel's alpha/beta frame from its V2/V3 (the exposure's attitude) through the inverse of the
channel's alpha/beta -> V2/V3 model; then the scene's surface brightness averaged over the pixel's
footprint (its alpha extent across the pixel, the slice's width in beta), divided by the photom
conversion (MJy/sr per DN/s) and multiplied by the flat and fringe flat that jwst divides out.
The scene (MJy/sr): the point source (F_nu a warm-dust continuum with two emission lines, its
PSF a Gaussian core and exponential wings whose encircled energy is the one the synthetic MRS
apcorr corrects for), a faint extended Gaussian blob with its own line, and the zodiacal and
thermal sky.  Then the Stage 1 detector effects the imaging simulator makes for MIRI
(refs/simulator.py: pedestal, reset anomaly, RSCD, first/last-frame effects, non-linearity, dark,
IPC, read noise, cosmic rays), from the MRS detector's references.

What goes into DIR besides the uncal files: a CRDS cache whose rules select, for MIR_MRS, the
detector references (refs/synthetic.py, MIRIFUSHORT/MIRIFULONG) and the MRS ones by detector and
band: the real distortion, specwcs and wavelengthrange, the traced regions, a flat, fringe, photom,
mrsxartcorr (straylight), fringefreq (residual_fringe), cubepar, extract1d, apcorr and mrsptcorr; the pool and the associations
jwst's rules make (spec2 per exposure, spec3 for the target); and ``truth/``: the point source's
spectrum (``<stem>_spectrum.ecsv``: wavelength, F_nu in Jy), the extended emission's and sky's
surface brightness (``<stem>_extended.ecsv``) and the cosmic rays.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import replace
from pathlib import Path

import numpy as np

from ...errors import ParameterError
from .. import simulator as S
from .. import synthetic_mrs as M
from . import _common as C

EXP_TYPE = "MIR_MRS"
DETECTORS = {"MIRIFUSHORT": ("12", 495), "MIRIFULONG": ("34", 494)}  # CHANNEL, SCA_NUM
BAND_LETTER = {"SHORT": "A", "MEDIUM": "B", "LONG": "C"}
DEFAULTS = dict(ngroups=5, nints=1, nexp=4)
# the MRS 4-point point-source dither optimised for channel 1 (alpha, beta arcsec, channel 1A frame)
DITHER_AB = [(-1.078, 0.528), (0.980, -0.440), (1.078, -0.528), (-0.980, 0.440)]
PEAK_FILL = 0.3  # fraction of the full well the brightest pixel reaches in an integration
CONVERSION = 2.0  # photom: MJy/sr per DN/s (smooth in wavelength about this): the sky a few DN/s
# the point source's emission lines (um, peak over continuum): H2 S(7), [Ar II], H2 S(3), [Ne II], H2 S(1), [O IV]
LINES = ((5.511, 0.4), (6.985, 0.5), (9.665, 0.5), (12.814, 0.6), (17.035, 0.5), (25.89, 0.6))
BLOB_LINES = ((12.814, 1.0), (9.665, 0.5))  # the extended blob's: [Ne II] and H2 S(3)
EXT_SIGMA = 1.5  # arcsec, the extended blob's Gaussian width
EXT_OFFSET = (0.8, -0.6)  # arcsec (RA*cos(dec), Dec) of the blob from the target
EXT_FRACTION = 0.015  # the blob's peak surface brightness over the point source's peak
WING_FRACTION, CORE_FRACTION = 0.15, 0.85


def _real(name: str) -> Path:
    from ..synthetic_miri_lrs import real_refs_dir

    d = real_refs_dir() / "mrs_flt9"
    p = d / name
    if not p.exists():
        raise ParameterError(f"MIR_MRS needs the real MRS references in {d} (missing {name}); "
                             "set WEBBFLOW_SHARED_DATA to the shared data folder")
    return p


def ref_files(detector: str, band: str) -> dict[str, Path]:
    """The real flt9 distortion, specwcs and wavelengthrange of a detector and band."""
    tag = f"mrs{DETECTORS[detector][0]}{BAND_LETTER[band]}"
    return {"distortion": _real(f"jwst_miri_{tag}_distortion_flt9.asdf"),
            "specwcs": _real(f"jwst_miri_{tag}_specwcs_flt9.asdf"),
            "wavelengthrange": _real("jwst_miri_mrs_wavelengthrange_flt9.asdf")}


# ---------------------------------------------------------------------------
# the scene's spectra


def point_spectrum(lam, scale_mjy: float = 1.0) -> np.ndarray:
    """The target's F_nu (mJy): warm dust rising to the red (``scale`` at 5 um) with emission lines
    as wide as the resolution (R ~ 3000)."""
    lam = np.asarray(lam, float)
    cont = scale_mjy * (lam / 5.0) ** 1.2
    lines = sum(a * np.exp(-0.5 * ((lam - c) / (c / 3000.0 / 2.355 * 1.5)) ** 2) for c, a in LINES)
    return cont * (1.0 + lines)


def extended_spectrum(lam, peak_mjysr: float) -> np.ndarray:
    """The extended blob's central surface brightness (MJy/sr): a flat continuum with its two lines."""
    lam = np.asarray(lam, float)
    return peak_mjysr * (1.0 + sum(a * np.exp(-0.5 * ((lam - c) / (c / 3000.0)) ** 2) for c, a in BLOB_LINES))


def sky(lam) -> np.ndarray:
    lam = np.asarray(lam, float)
    grid = np.linspace(4.5, 29.0, 200)
    return np.interp(lam, grid, [S.sky_surface_brightness(v) for v in grid])


def psf_per_arcsec2(r, lam) -> np.ndarray:
    """The point source's profile (fraction of its flux per arcsec^2) at radius ``r`` arcsec:
    85 % in a Gaussian of the MRS FWHM, 15 % in exponential wings of scale 1.5 FWHM (softened at
    the centre), so that its encircled energy is the synthetic apcorr's."""
    fwhm = M.mrs_fwhm(lam)
    sig = fwhm / 2.355
    s = 1.5 * fwhm
    rs = np.sqrt(r * r + (0.05 * fwhm) ** 2)
    core = CORE_FRACTION / (2 * np.pi * sig * sig) * np.exp(-0.5 * (r / sig) ** 2)
    wing = WING_FRACTION / (2 * np.pi * s * rs) * np.exp(-rs / s)
    return core + wing


ARCSEC2_PER_SR = (180.0 / np.pi * 3600.0) ** 2


# ---------------------------------------------------------------------------
# setup, pointing, references


def mrs_setup(detector: str, band: str, ngroups, readpatt, v2v3_ref):
    """The MIRI full-frame setup made the MRS's: detector, aperture (MIRIFU_CHANNEL<c><A|B|C>), no filter."""
    channel, sca = DETECTORS[detector]
    base = S.make_setup("miri", "MIRIMAGE", None, "FULL", ngroups, 1, None, None, readpatt, None)
    aper = S._siaf("MIRI")[f"MIRIFU_CHANNEL{channel[0]}{BAND_LETTER[band]}"]
    v2, v3 = v2v3_ref
    return replace(base, detector=detector, sca_num=sca, exp_type=EXP_TYPE, filter=None, pupil=None,
                   aperture=aper.AperName, v2_ref=float(v2), v3_ref=float(v3), v3yangle=float(aper.V3IdlYAngle),
                   vparity=int(aper.VIdlParity), xref_sci=516.5, yref_sci=512.5, v2_aim=float(v2), v3_aim=float(v3),
                   xscale=0.196, yscale=0.196)


def _tel_to_ideal(setup, v2, v3):
    ang = np.deg2rad(setup.v3yangle)
    d2, d3 = v2 - setup.v2_ref, v3 - setup.v3_ref
    return setup.vparity * (d2 * np.cos(ang) - d3 * np.sin(ang)), d2 * np.sin(ang) + d3 * np.cos(ang)


def dither_offsets(setup, abv2v3, nexp: int) -> list[tuple[float, float]]:
    """Ideal-frame offsets (arcsec) that put the target at the pattern's points."""
    v20, v30 = abv2v3(0.0, 0.0)
    out = []
    for k in range(nexp):
        a, b = DITHER_AB[k % len(DITHER_AB)]
        v2, v3 = abv2v3(a, b)
        x, y = _tel_to_ideal(setup, setup.v2_ref + (v2 - v20), setup.v3_ref + (v3 - v30))
        out.append((round(float(x), 6), round(float(y), 6)))
    return out


def _next_name(root: Path, reftype: str, ext: str) -> str:
    from .. import context as ctxmod

    prefix = f"jwst_miri_{reftype}_"
    return f"{prefix}{ctxmod._next_serial(ctxmod.references_dir(root, 'MIRI'), prefix, ext):04d}{ext}"


def write_mrs_references(out: Path, detector: str, band: str, template) -> tuple[dict, str]:
    """The MRS references in the cache ``out`` and a new context selecting them for MIR_MRS.

    ``template``: an exposure's model (its header), given the WCS here to make the wavelength map
    that the fringe, photom and flat follow.  Returns (opened references by type, context name).
    """
    import shutil

    from .. import context as ctxmod
    from ..select import open_reference

    real = ref_files(detector, band)
    opened = {rt: open_reference(rt, p) for rt, p in real.items()}
    planes = M.regions_from_distortion(opened["distortion"], opened["specwcs"], opened["wavelengthrange"], band)
    with ctxmod.cache_lock(out):
        def path(name):
            p = ctxmod.reference_path(out, name)
            p.parent.mkdir(parents=True, exist_ok=True)
            return p

        names = {}
        for rt, src in real.items():
            names[rt] = _next_name(out, rt, ".asdf")
            shutil.copyfile(src, path(names[rt]))
        names["regions"] = _next_name(out, "regions", ".asdf")
        M.regions(planes, detector, band).save(path(names["regions"]))
        refs = {rt: open_reference(rt, path(n)) for rt, n in names.items()}
        wave = _wavelength_map(template, refs)
        for rt, make in (("flat", lambda: M.flat(wave, detector, band)),
                         ("fringe", lambda: M.fringe(wave, detector, band)),
                         ("photom", lambda: M.photom(wave, detector, band, conversion=CONVERSION))):
            names[rt] = _next_name(out, rt, ".fits")
            make().save(path(names[rt]))
        names["mrsxartcorr"] = _next_name(out, "mrsxartcorr", ".fits")
        M.mrsxartcorr().save(path(names["mrsxartcorr"]))
        names["cubepar"] = _next_name(out, "cubepar", ".fits")
        M.write_cubepar(path(names["cubepar"]))
        names["mrsptcorr"] = _next_name(out, "mrsptcorr", ".fits")
        M.mrsptcorr().save(path(names["mrsptcorr"]))
        names["fringefreq"] = _next_name(out, "fringefreq", ".fits")
        M.fringefreq().save(path(names["fringefreq"]))
        for rt, make in (("extract1d", M.extract1d_ifu), ("apcorr", M.mrs_apcorr)):
            names[rt] = _next_name(out, rt, ".asdf")
            M.save_inline(make(), path(names[rt]))

        ctx = ctxmod.read_context(out)
        rules = {ins: dict(r) for ins, r in ctx.rmaps.items()}
        miri = rules.setdefault("MIRI", {})
        by_band = ("META.INSTRUMENT.DETECTOR", "META.INSTRUMENT.BAND")
        by_type = ("META.EXPOSURE.TYPE",)
        for rt, name in names.items():
            band_rule = rt in ("distortion", "specwcs", "regions", "flat", "fringe", "photom")
            parkeys = by_band if band_rule else by_type
            key = (detector, band) if band_rule else (EXP_TYPE,)
            old = miri.get(rt)
            entries = dict(old.entries) if old is not None and old.parkeys == parkeys else {}
            entries[key] = name
            miri[rt] = ctxmod.Rmap("MIRI", rt, parkeys, entries)
        context = ctxmod.write_context(out, rules, f"webbflow simulated MIRI MRS ({detector} {band})").context
    for rt in ("flat", "fringe", "photom"):
        refs[rt] = open_reference(rt, path(names[rt]))
    return refs, context


def _ifu_model(level1b):
    """An IFUImageModel with the exposure's header (for assign_wcs)."""
    from ... import models

    m = models.IFUImageModel(data=np.zeros(M.DETECTOR_SHAPE, np.float32))
    m.meta = level1b.meta.model_copy(deep=True)
    return m


def _wavelength_map(level1b, refs) -> np.ndarray:
    from ...tasks.assign_wcs.miri_mrs import detector_to_abl

    m = _ifu_model(level1b)
    abl = detector_to_abl(m, refs["distortion"], refs["specwcs"], refs["regions"], refs["wavelengthrange"])
    y, x = np.indices(M.DETECTOR_SHAPE, dtype=np.float64)
    return np.asarray(abl(x, y)[2], float)


# ---------------------------------------------------------------------------
# rendering


def render(model, refs, pointing, target, scale_mjy, ext_peak):
    """(source + extended, sky) DN/s images of one exposure, before the flat and fringe."""
    from ...tasks.assign_wcs.miri_mrs import _slice_map

    dist, spec = refs["distortion"], refs["specwcs"]
    channel = str(model.meta.instrument.channel)
    band = str(model.meta.instrument.band).upper()
    dbeta = dict(zip(dist.bdel["channel_band"], dist.bdel["delta_beta"]))
    to_v23 = dict(zip(dist.abv2v3_model["channel_band"], dist.abv2v3_model["model"]))
    smap = _slice_map(refs["regions"])
    conv = np.asarray(refs["photom"].data, float)
    ra0, dec0 = target
    cosd = np.cos(np.deg2rad(dec0))
    # the point source and the blob's centre, in each channel's alpha/beta frame
    blob = (ra0 + EXT_OFFSET[0] / 3600.0 / cosd, dec0 + EXT_OFFSET[1] / 3600.0)
    where = {}
    for c in channel:
        v2, v3 = S.sky_to_tel(pointing.attitude, np.array([ra0, blob[0]]), np.array([dec0, blob[1]]))
        a, b = to_v23[c + band].inverse(v2, v3)
        where[c] = (np.asarray(a, float), np.asarray(b, float))
    image = np.zeros(M.DETECTOR_SHAPE)
    sky_img = np.zeros(M.DETECTOR_SHAPE)
    alpha_sub = np.array([-1 / 3, 0.0, 1 / 3])  # pixel thirds across alpha
    beta_sub = np.linspace(-0.4, 0.4, 5)  # slice fifths across beta
    for i, number in enumerate(dist.slices):
        ys, xs = np.nonzero(smap == number)
        if ys.size == 0:
            continue
        c = str(number // 100)
        y, x = ys.astype(float), xs.astype(float)
        alpha = np.asarray(dist.alpha_model[i](y, x), float)
        dalpha = np.asarray(dist.alpha_model[i](y, x + 0.5), float) - np.asarray(dist.alpha_model[i](y, x - 0.5), float)
        beta = np.asarray(dist.beta_model[i](x), float) * np.ones(ys.size)
        lam = np.asarray(spec.model[i](y, x), float)
        (pa, pb), width = where[c], dbeta[c + band]
        point = np.zeros(ys.size)
        ext = np.zeros(ys.size)
        for fa in alpha_sub:
            for fb in beta_sub:
                a = alpha + fa * dalpha
                b = beta + fb * width
                point += psf_per_arcsec2(np.hypot(a - pa[0], b - pb[0]), lam)
                ext += np.exp(-0.5 * ((a - pa[1]) ** 2 + (b - pb[1]) ** 2) / EXT_SIGMA**2)
        n = alpha_sub.size * beta_sub.size
        sb = (point / n) * point_spectrum(lam, scale_mjy) * 1e-9 * ARCSEC2_PER_SR  # mJy -> MJy, per sr
        sb += (ext / n) * extended_spectrum(lam, ext_peak)
        k = conv[ys, xs]
        good = np.isfinite(k) & (k > 0) & np.isfinite(lam)
        image[ys[good], xs[good]] = sb[good] / k[good]
        sky_img[ys[good], xs[good]] = sky(lam[good]) / k[good]
    return image, sky_img


# ---------------------------------------------------------------------------
# the observation


def simulate(output_dir, *, instrument="miri", detector=None, size=None, subarray=None, ngroups=None, nints=None,
             nexp=None, seed=0, filter=None, readpatt=None, exp_type=EXP_TYPE, band=None,  # noqa: A002
             target_ra=83.8221, target_dec=-5.3911, pa_v3=250.0, program="01234", observation=1, visit=1,
             start_time="2024-01-15T03:00:00", build_refs=True, reference_seed=0,
             cosmic_ray_rate=S.COSMIC_RAY_RATE, **_ignored) -> S.SimulationResult:
    """Write one MIRI MRS observation (see the module) into ``output_dir``."""
    if (instrument or "miri").lower() != "miri":
        raise ParameterError(f"{EXP_TYPE} is a MIRI mode; use --instrument miri")
    det = (detector or "MIRIFUSHORT").upper()
    if det not in DETECTORS:
        raise ParameterError(f"{EXP_TYPE} is read on MIRIFUSHORT or MIRIFULONG (got --detector {detector})")
    bnd = (band or "SHORT").upper()
    if bnd not in BAND_LETTER:
        raise ParameterError(f"{EXP_TYPE} bands are SHORT, MEDIUM and LONG (got --band {band})")
    if size is not None or (subarray is not None and str(subarray).upper() != "FULL"):
        raise ParameterError(f"{EXP_TYPE} is read in FULL frame (the MRS has no subarrays); drop --size/--subarray")
    if filter is not None:
        raise ParameterError(f"{EXP_TYPE} has no filter; the band is chosen with --band (got --filter {filter})")
    if nints not in (None, 1):
        raise ParameterError(f"{EXP_TYPE} is simulated with one integration per exposure (got --nints {nints})")
    if not build_refs:
        raise ParameterError(f"{EXP_TYPE}: the MRS scene is rendered from its references; drop --no-refs")
    n_exp = DEFAULTS["nexp"] if nexp in (None, 1) else int(nexp)
    if n_exp < 2:
        raise ParameterError(f"{EXP_TYPE} needs at least 2 dither positions (got --nexp {nexp})")
    n_groups = ngroups or DEFAULTS["ngroups"]
    if n_groups < 3:
        raise ParameterError(f"{EXP_TYPE} needs at least 3 groups (MIRI's first and last are flagged; got {n_groups})")

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    channel = DETECTORS[det][0]
    from ..select import open_reference

    real = ref_files(det, bnd)
    abv2v3 = dict(zip(*(open_reference("distortion", real["distortion"]).abv2v3_model[k]
                        for k in ("channel_band", "model"))))[channel[0] + bnd]
    setup = mrs_setup(det, bnd, n_groups, readpatt, abv2v3(0.0, 0.0))
    ids = S.ObservationIds(program=f"{int(program):05d}", observation=f"{int(observation):03d}",
                           visit=f"{int(visit):03d}")
    t0 = _dt.datetime.fromisoformat(start_time)
    offsets = dither_offsets(setup, abv2v3, n_exp)
    models, pointings, names, _starts = C.exposures(setup, ids, t0, offsets, target_ra, target_dec, pa_v3)
    for k, m in enumerate(models):
        meta = m.meta
        meta.instrument.channel, meta.instrument.band = channel, bnd
        meta.observation.template = "MIRI Medium Resolution Spectroscopy"
        meta.observation.observation_label = "webbflow simulated MRS point source"
        meta.target.proposer_name = meta.target.catalog_name = "SIMMRS"
        d = meta.dither
        d.primary_type, d.optimized_for = "4-POINT", "POINT-SOURCE"
        d.position_number = k % 4 + 1
        d.total_points, d.dither_points = n_exp, n_exp
        d.pattern_size = "DEFAULT"

    # detector references (refs/synthetic.py, the MRS detectors), then the MRS ones
    refs, _ctx = C.references(models, setup, out, True, reference_seed)
    mrs_refs, context = write_mrs_references(out, det, bnd, models[0])
    # the flat is the MRS one: the ramps carry it and the fringe flat, which jwst divides out
    response = np.asarray(mrs_refs["flat"].data, float) * np.nan_to_num(np.asarray(mrs_refs["fringe"].data, float),
                                                                         nan=1.0)
    well = S._median_full_well(refs, setup)

    uncal, crs = [], []
    truth_scale = None
    for k, (m, pnt) in enumerate(zip(models, pointings)):
        if truth_scale is None:  # brightness: the brightest pixel at PEAK_FILL of the well (1 mJy scene first)
            unit, _sky = render(m, mrs_refs, pnt, (target_ra, target_dec), 1.0, 0.0)
            peak_unit = float(np.max(unit * response))
            truth_scale = PEAK_FILL * well / (peak_unit * setup.effinttm)
            peak_sb = point_spectrum(5.0, truth_scale) * 1e-9 * ARCSEC2_PER_SR * psf_per_arcsec2(0.0, 5.0)
            ext_peak = EXT_FRACTION * float(peak_sb)
        source, sky_img = render(m, mrs_refs, pnt, (target_ra, target_dec), truth_scale, ext_peak)
        rate = ((source + sky_img) * response).astype(np.float32)
        m.meta.wcsinfo.s_region = _s_region(m, mrs_refs, pnt)
        exp = S.simulate_ramps(setup, rate, {k2: v for k2, v in refs.items() if k2 != "flat"}, seed, k,
                               cosmic_ray_rate, 1, reference_seed)
        m.data = exp.data
        p = out / names[k]
        m.save(p)
        uncal.append(p)
        crs += [(names[k], c.integration + 1, c.group + 1, c.frame + 1, c.x, c.y, c.electrons) for c in exp.cosmic_rays]

    # truth ---------------------------------------------------------------------------
    from astropy import units as u
    from astropy.table import Table

    stem = f"jw{ids.program}{ids.observation}{ids.visit}_{det.lower()}"
    truth = out / "truth"
    lam = np.linspace(4.6, 28.8, 24201)
    spec = Table({"wavelength": lam * u.um, "flux": point_spectrum(lam, truth_scale) * 1e-3 * u.Jy})
    spec.meta.update({"description": "webbflow simulator truth: the point source's spectral flux density (F_nu) "
                                     "above the telescope", "exp_type": EXP_TYPE, "detector": det, "band": bnd,
                      "channels": channel, "exposures": names, "ra": float(target_ra), "dec": float(target_dec),
                      "psf": "85 % Gaussian of FWHM 0.033 lambda + 0.106 arcsec, 15 % exponential wings of scale "
                             "1.5 FWHM", "scale_mjy_at_5um": float(truth_scale)})
    catalog = C.write_table(spec, truth / f"{stem}_spectrum.ecsv")
    ext = Table({"wavelength": lam * u.um, "surface_brightness": extended_spectrum(lam, ext_peak) * u.MJy / u.sr,
                 "sky": sky(lam) * u.MJy / u.sr})
    ext.meta.update({"description": "webbflow simulator truth: the extended blob's central surface brightness "
                                    "(a Gaussian of sigma_arcsec) and the uniform sky",
                     "sigma_arcsec": EXT_SIGMA, "offset_arcsec_ra_dec": list(EXT_OFFSET)})
    C.write_table(ext, truth / f"{stem}_extended.ecsv")
    cr_path = S._write_cosmic_rays(truth / f"{stem}_cosmic_rays.ecsv", crs)

    from .miri_lrs import associations

    lv2, lv3 = associations(out, t0.strftime("%Y%m%dt%H%M%S"))
    result = S.SimulationResult(output_dir=out, uncal=uncal, catalog=catalog, cosmic_rays=cr_path, asn_level2=lv2,
                                asn_level3=lv3[0] if lv3 else None, setup=setup)
    result.context, result.crds_path = context, out
    return result


def _s_region(level1b, refs, pointing) -> str:
    """S_REGION as DMS writes it: the RA/Dec box of the first channel's field (every 8th row of its slices)."""
    from ...tasks.assign_wcs.miri_mrs import _slice_map

    dist = refs["distortion"]
    band = str(level1b.meta.instrument.band).upper()
    c = str(level1b.meta.instrument.channel)[0]
    to_v23 = dict(zip(dist.abv2v3_model["channel_band"], dist.abv2v3_model["model"]))[c + band]
    smap = _slice_map(refs["regions"])[::8]
    alpha, beta = [], []
    for i, number in enumerate(dist.slices):
        if str(number // 100) != c:
            continue
        ys, xs = np.nonzero(smap == number)
        alpha.append(np.asarray(dist.alpha_model[i](8.0 * ys, xs.astype(float)), float))
        beta.append(np.asarray(dist.beta_model[i](xs.astype(float)), float) * np.ones(xs.size))
    v2, v3 = to_v23(np.concatenate(alpha), np.concatenate(beta))
    ra, dec = S.tel_to_sky(pointing.attitude, np.asarray(v2), np.asarray(v3))
    r0, r1, d0, d1 = float(np.min(ra)), float(np.max(ra)), float(np.min(dec)), float(np.max(dec))
    return "POLYGON ICRS  " + " ".join(f"{a:.9f} {b:.9f}" for a, b in ((r0, d0), (r1, d0), (r1, d1), (r0, d1)))
