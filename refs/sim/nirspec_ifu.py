"""Simulated NIRSpec IFU spectroscopy (NRS_IFU): a dithered point source on extended emission.

``webbflow simulate --instrument nirspec --exp-type NRS_IFU [--grating PRISM --filter CLEAR] [--nexp N]
[--ngroups N]``: ``--nexp`` (default 4, at most 4) FULL-frame NRS1 exposures, NRSRAPID, 3 groups and one
integration by default, in a ``CYCLING`` dither (PATTTYPE; the points of DITHER, arcsec in the
NRS_FULL_IFU ideal frame, XOFFSET/YOFFSET), SRCTYAPT POINT.  PRISM/CLEAR only: the real optical chain has
the PRISM disperser and the CLEAR fore optics alone (as refs/sim/nirspec.py); all 30 slices fall on NRS1.

**Light goes where the optical model sends it.**  webbflow's assign_wcs (identical to jwst's at every
pixel of every slice, tests/test_nirspec_ifu.py) builds the exposure's slice-keyed WCS from the real
optical chain (ote, fore, fpa, camera, collimator, PRISM disperser, in-flight wavelengthrange), the real
``ifupost`` and the synthetic ``ifuslicer``, ``ifufore`` and ``chromcorr`` (refs/synthetic_nirspec_ifu.py).
For every pixel of a slice with a wavelength, detector -> slit_frame gives (y along the slice, lambda)
and slit_frame -> v2v3 gives the pixel's centre on the sky (at x = 0), the slice's two edges (x = -+0.5)
and the slice's ends (y = -+0.5).  The pixel's footprint is the slice's width across times the
along-slice extent of one row (|d y / d row| x the slice's length); pixels beyond the slice's ends
(|y| > 0.5, in the WCS's margins) get no light.  The V2/V3 reference of the exposures is the
model's IFU centre (the slicer's (0, 0) through the chain at 2 micron), as refs/sim/nirspec.py does for
its slits: XOFFSET = YOFFSET = 0 puts the target there.  The velocity aberration (scale 1.00003
about that centre) is below 0.1 mas over the field and is not put in.

The scene, per pixel (MJy, then over the photom conversion PHOTMJ x RELRESPONSE(lambda) to DN/s):
- the point source: F_nu (refs/sim/nirspec.py's hot star with a CO2-like band) times the fraction of a
  circular Gaussian PSF (refs/synthetic_nirspec_spec2's width at lambda) inside the footprint
  (a product of error functions across and along the slice);
- the extended emission: a circular Gaussian blob (EXT_SIGMA arcsec, EXT_OFFSET arcsec east/north of the
  target) holding EXT_FRACTION of the point source's F_nu, with an emission line at EXT_LINE, its surface
  brightness times the footprint's solid angle;
- the zodiacal + thermal sky (the imaging simulator's) times the solid angle.
The area reference holds each slice's median footprint solid angle, so photom's per-slice pixel
area turns the rate back into the scene's surface brightness.  Brightness: the brightest pixel reaches
PEAK_FILL of the full well in an integration.  The flats (~1 with a few per cent of structure) are not
in the scene.  The detector is refs/sim/nirspec_detector.py's.

What goes into DIR besides the uncal files: a CRDS cache (CRDS_PATH=DIR) with the detector references,
the optical chain and the real ifupost (copied), the synthetic ifuslicer, ifufore and chromcorr, the IFU
fflat, sflat and the detectors' dflat, photom, area, cubepar, extract1d and apcorr
(refs/synthetic_nirspec_ifu.py); N/A for msa, msaoper (no failed-open shutter is simulated), pathloss,
wavecorr and barshadow;
the pool and the associations jwst's rules make (spec2 per exposure, one spec3); ``truth/``:
``<stem>_spectrum.ecsv`` (the point source's F_nu in Jy above the telescope, the blob's peak surface
brightness and the sky's in MJy/sr, the blob's and the source's place) and the cosmic rays.
"""

from __future__ import annotations

import datetime as _dt
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import ParameterError
from .. import simulator as S
from . import _common as C
from . import nirspec as N
from . import nirspec_detector as D

IFU = "NRS_IFU"
DEFAULTS = dict(ngroups=3, nints=1, nexp=4)
DITHER = ((0.0, 0.0), (0.225, 0.125), (-0.125, 0.225), (0.125, -0.225))  # ideal arcsec: a 4-point cycle
PATTTYPE, PATTSIZE = "CYCLING", "MEDIUM"
IFU_REFS = ("ifupost", "ifuslicer", "ifufore", "chromcorr")
REAL_IFUPOST = "jwst_nirspec_ifupost_0004.asdf"
EXT_SIGMA = 0.6  # arcsec, the extended blob's Gaussian width
EXT_OFFSET = (0.5, 0.3)  # arcsec east, north of the target
EXT_FRACTION = 0.5  # the blob's continuum flux (all of it) / the point source's, at every wavelength
EXT_LINE = (1.8751, 0.02, 4.0)  # Paschen alpha: centre (um), sigma (um), peak over continuum
NA_TYPES = ("msa", "msaoper", "pathloss", "wavecorr", "barshadow", "distortion", "filteroffset", "specwcs",
            "regions")
ARCSEC2_SR = (math.pi / 180.0 / 3600.0) ** 2


def extended_spectrum(lam_um, scale_mjy: float) -> np.ndarray:
    """The blob's surface brightness at its centre (MJy/sr): EXT_FRACTION of the point source's F_nu spread
    over the Gaussian (2 pi EXT_SIGMA^2), with one emission line."""
    lam = np.asarray(lam_um, float)
    c, w, h = EXT_LINE
    total = EXT_FRACTION * N.source_spectrum(lam, scale_mjy) * 1e-9  # MJy
    return total / (2.0 * math.pi * EXT_SIGMA**2 * ARCSEC2_SR) * (1.0 + h * np.exp(-0.5 * ((lam - c) / w) ** 2))


def sky_brightness(lam_um) -> np.ndarray:
    table = np.array(S._SKY_TABLE)  # the imaging simulator's zodiacal + thermal sky, MJy/sr
    return np.exp(np.interp(np.asarray(lam_um, float), table[:, 0], np.log(table[:, 1])))


# ---------------------------------------------------------------------------
# the slices' pixels on the sky


@dataclass
class _Slice:
    """One slice's lit pixels: detector (x, y), wavelength (um), footprint centre and axes in v2v3 (arcsec)."""

    x: np.ndarray
    y: np.ndarray
    lam: np.ndarray
    centre: np.ndarray  # (2, n)
    across: np.ndarray  # (2, n) unit vector across the slice
    along: np.ndarray  # (2, n) unit vector along the slice
    width: np.ndarray  # arcsec across
    height: np.ndarray  # arcsec along, one row

    @property
    def solid_angle(self) -> np.ndarray:
        """arcsec^2 of each pixel's footprint (the parallelogram of its two sides)."""
        cross = np.abs(self.across[0] * self.along[1] - self.across[1] * self.along[0])
        return self.width * self.height * cross


def _slice_keyed_wcs(model, refpaths: dict):
    """webbflow's assign_wcs (slice-keyed, nrs_ifu_slice_wcs) on an image of the exposure."""
    from ...tasks import load_all
    from ...tasks.base import run_step

    load_all()
    img = N._image_like(model, N.Window("FULL", 1, 2048, D.frame_time("NRSRAPID")))
    wrefs = {rt: str(refpaths[rt]) for rt in (*N.OPTICS, *IFU_REFS)}
    return run_step("assign_wcs", img, {"nrs_ifu_slice_wcs": True}, references=wrefs).model.meta.wcs


def ifu_centre_v2v3(full) -> tuple[float, float]:
    """The slicer's (0, 0) at 2 micron through the chain to v2v3 (arcsec)."""
    out = full.get_transform("slicer", "v2v3")(0.0, 0.0, 2e-6, 0)
    return float(out[0]), float(out[1])


def slice_pixels(full) -> list[_Slice]:
    """Every slice's lit pixels and their footprints (see the module)."""
    import warnings

    from gwcs.wcstools import grid_from_bounding_box

    det2slit = full.get_transform("detector", "slit_frame")
    slit2v23 = full.get_transform("slit_frame", "v2v3")
    out = []
    for n in range(30):
        box = full.bounding_box[n]
        x, y = grid_from_bounding_box(box)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            _, _xs, ys, lam = det2slit(x, y, n)
            ys, lam = np.asarray(ys, float), np.asarray(lam, float)
            dy = np.abs(np.gradient(ys, axis=0))
        (x0, x1), (y0, y1) = (tuple(box[k]) for k in ("x", "y"))
        ok = (np.isfinite(lam) & np.isfinite(ys) & (np.abs(ys) <= 0.5) & (x >= max(x0, -0.5)) & (x <= min(x1, 2047.5))
              & (y >= max(y0, -0.5)) & (y <= min(y1, 2047.5)))
        dy = np.where(np.isfinite(dy) & (dy < 0.2), dy, np.nanmedian(np.where(ok & (dy < 0.2), dy, np.nan)))
        xi, yi, ys, lam, dy = x[ok].astype(int), y[ok].astype(int), ys[ok], lam[ok], dy[ok]

        def v23(xs, yv):
            r = slit2v23(n, np.full(yv.shape, xs), yv, lam)
            return np.array([np.asarray(r[0], float), np.asarray(r[1], float)])

        centre, left, right = v23(0.0, ys), v23(-0.5, ys), v23(0.5, ys)
        bottom, top = v23(0.0, np.full(ys.shape, -0.5)), v23(0.0, np.full(ys.shape, 0.5))
        width = np.hypot(*(right - left))
        length = np.hypot(*(top - bottom))
        out.append(_Slice(xi, yi, lam * 1e6, centre, (right - left) / width, (top - bottom) / length, width,
                          dy * length))
    return out


def render(slices, target_v23, blob_v23, conversion, scale_mjy: float, blob: bool = True):
    """(source DN/s, extended + sky DN/s) full frames for a target and blob at those v2v3 (arcsec)."""
    from .. import synthetic_nirspec_spec2 as P

    source = np.zeros((2048, 2048), np.float64)
    diffuse = np.zeros((2048, 2048), np.float64)
    for s in slices:
        conv = conversion(s.lam)
        ok = np.isfinite(conv) & (conv > 0)
        conv = np.where(ok, conv, 1.0)
        sigma = P.psf_sigma_arcsec(s.lam * 1e-6)
        d = np.asarray(target_v23, float)[:, None] - s.centre
        du, dv = (d * s.across).sum(0), (d * s.along).sum(0)
        frac = P._box(s.width / 2.0, du, sigma) * P._box(s.height / 2.0, dv, sigma)
        flux = N.source_spectrum(s.lam, scale_mjy) * 1e-9 * frac  # MJy
        b = np.asarray(blob_v23, float)[:, None] - s.centre
        shape = np.exp(-0.5 * (b**2).sum(0) / EXT_SIGMA**2) if blob else 0.0
        sb = extended_spectrum(s.lam, scale_mjy) * shape + sky_brightness(s.lam)  # MJy/sr
        omega = s.solid_angle * ARCSEC2_SR
        source[s.y, s.x] = np.where(ok, flux / conv, 0.0)
        diffuse[s.y, s.x] = np.where(ok, sb * omega / conv, 0.0)
    for a in (source, diffuse):
        a[:4], a[-4:], a[:, :4], a[:, -4:] = 0, 0, 0, 0  # reference pixels see no light
    return source, diffuse


# ---------------------------------------------------------------------------
# references


def _references(out: Path, detector: str, readpatt: str, ngroups: int, tframe: float, seed: int, template):
    """The detector references, the IFU set and rules selecting them for NRS_IFU.  ``template``: the first
    exposure's model, whose WCS (built here from the cache's files) gives the slices' pixel areas.
    Returns (detector references, reference paths by type, context, the slice-keyed WCS)."""
    from .. import context as ctxmod
    from .. import synthetic_nirspec_flat as F
    from .. import synthetic_nirspec_ifu as I

    real = N.require_real_refs((*N.OPTICS.values(), N.REAL_PHOTOM, REAL_IFUPOST))
    det_refs = nirspec_detector_references(detector, readpatt, ngroups, tframe, seed)
    D.write_reference_cache(out, det_refs, detector, readpatt)
    with ctxmod.cache_lock(out):
        names, new = N.cache_namer(out)
        for rt, fname in {**N.OPTICS, "ifupost": REAL_IFUPOST}.items():
            shutil.copyfile(real / fname, new(rt, Path(fname).suffix))
        for rt, make in (("ifuslicer", I.ifuslicer_reference), ("ifufore", I.ifufore_reference),
                         ("chromcorr", I.chromcorr_reference)):
            make().save(new(rt, ".asdf"))
        paths = {rt: ctxmod.reference_path(out, n) for rt, n in names.items()}
        full = _slice_keyed_wcs(template, paths)
        slices = slice_pixels(full)
        I.write_ifu_fflat(new("fflat", ".fits"))
        I.write_ifu_sflat(new("sflat", ".fits"), detector=detector)
        F.write_dflat(new("dflat", ".fits"), detector=detector)
        I.write_ifu_photom(new("photom", ".fits"), real / N.REAL_PHOTOM)
        I.write_ifu_area(new("area", ".fits"), [float(np.median(s.solid_angle)) for s in slices])
        I.write_ifu_cubepar(new("cubepar", ".fits"))
        I.write_ifu_extract1d(new("extract1d", ".asdf"))
        I.write_ifu_apcorr(new("apcorr", ".asdf"))
        ctx = ctxmod.read_context(out)
        rules = {ins: dict(r) for ins, r in ctx.rmaps.items()}
        N.select_for_mode(rules.setdefault("NIRSPEC", {}), names, detector, IFU, na=NA_TYPES)
        context = ctxmod.write_context(out, rules, f"webbflow simulated NIRSpec {IFU} ({detector})").context
    paths = {rt: ctxmod.reference_path(out, n) for rt, n in names.items()}
    return det_refs, paths, context, full, slices


def nirspec_detector_references(detector, readpatt, ngroups, tframe, seed):
    from ..synthetic_nirspec import nirspec_detector_references as make

    return make(detector, readpatt, ngroups, tframe, seed=seed)


def _photom_conversion(path: Path):
    """(PHOTMJ x RELRESPONSE)(lambda um) of the IFU photom's CLEAR/PRISM row: MJy per DN/s."""
    from .nirspec_msa import _photom_conversion as mos_conversion

    return mos_conversion(path)


# ---------------------------------------------------------------------------
# the observation


def _check(instrument, detector, grating, filter, slit, subarray, readpatt, nexp, size, build_refs):  # noqa: A002
    if (instrument or "nirspec").lower() != "nirspec":
        raise ParameterError(f"{IFU} is a NIRSpec mode; use --instrument nirspec")
    if (detector or "NRS1").upper() != "NRS1":
        raise ParameterError(f"{IFU}: the PRISM spectra of the 30 slices are simulated on NRS1 (got --detector {detector})")
    if (grating or "PRISM").upper() != "PRISM" or (filter or "CLEAR").upper() != "CLEAR":
        raise ParameterError(f"{IFU}: only PRISM/CLEAR is simulated (the real optical chain has the PRISM "
                             f"disperser and the CLEAR fore optics alone); got --grating {grating} --filter {filter}")
    if slit is not None:
        raise ParameterError(f"--slit is for NIRSpec fixed slits, not {IFU}")
    if (subarray or "FULL").upper() != "FULL" or size is not None:
        raise ParameterError(f"{IFU} exposures are read in FULL frame (got --subarray {subarray or size})")
    if (readpatt or "NRSRAPID").upper() != "NRSRAPID":
        raise ParameterError(f"{IFU} is simulated with NRSRAPID (got --readpatt {readpatt})")
    if nexp is not None and not 1 <= int(nexp) <= len(DITHER):
        raise ParameterError(f"{IFU}: the {PATTTYPE} dither has 2 to {len(DITHER)} points (got --nexp {nexp})")
    if not build_refs:
        raise ParameterError(f"{IFU}: the scene is placed through the references' optical model; drop --no-refs")


def _metadata(model, ids, k, nexp, pointing, setup, target_ra, target_dec, offsets):
    N._metadata(model, exp_type=IFU, slit="S200A1", window=N.Window("FULL", 1, 2048, 0.0), ids=ids, k=k, nexp=nexp,
                pointing=pointing, setup=setup, target_ra=target_ra, target_dec=target_dec, offsets=offsets)
    m = model.meta
    m.instrument.fixed_slit = None
    m.observation.template = "NIRSpec IFU Spectroscopy"
    m.observation.observation_label = "webbflow simulated IFU point source on extended emission"
    m.target.proposer_name = m.target.catalog_name = "SIMIFU"
    m.target.source_type_apt = "POINT"
    m.aperture.name = m.aperture.pps_name = "NRS_FULL_IFU"
    d = m.dither
    d.primary_type, d.pattern_size = PATTTYPE, PATTSIZE
    d.position_number, d.total_points, d.pattern_start, d.dither_points = k + 1, nexp, 1, nexp
    model.meta.filename = (f"jw{ids.program}{ids.observation}{ids.visit}_{ids.visit_group}{ids.sequence}"
                           f"{ids.activity}_{k + 1:05d}_nrs1_uncal.fits")


def _extra_keywords(path: Path, nexp: int) -> None:
    from astropy.io import fits

    with fits.open(path, mode="update") as h:
        h[0].header["PRIDTPTS"] = (nexp, "Number of points in primary dither pattern")


def _s_region(slices, pointing) -> str:
    """The RA/Dec box of every lit pixel (the footprint assign_wcs writes, within a pixel)."""
    v2 = np.concatenate([s.centre[0] for s in slices])
    v3 = np.concatenate([s.centre[1] for s in slices])
    ra, dec = S.tel_to_sky(pointing.attitude, v2, v3)
    ra = np.where(ra > 180.0, ra - 360.0, ra) if np.ptp(ra) > 180.0 else ra
    lo, hi, dlo, dhi = np.min(ra) % 360.0, np.max(ra) % 360.0, np.min(dec), np.max(dec)
    return "POLYGON ICRS  " + " ".join(f"{a:.9f} {b:.9f}" for a, b in ((lo, dlo), (hi, dlo), (hi, dhi), (lo, dhi)))


def simulate(output_dir, *, instrument="nirspec", exp_type=IFU, detector=None, subarray=None, size=None,
             ngroups=None, nints=None, nexp=None, seed=0, filter=None, grating=None,  # noqa: A002
             readpatt=None, slit=None,
             target_ra=53.1625, target_dec=-27.7914, pa_v3=30.0, program="01234", observation=1, visit=1,
             start_time="2024-01-15T03:00:00", build_refs=True, reference_seed=0, **_ignored) -> S.SimulationResult:
    """Write one dithered NIRSpec IFU observation (see the module) into ``output_dir``."""
    import pysiaf

    _check(instrument, detector, grating, filter, slit, subarray, readpatt, nexp, size, build_refs)
    n_exp = DEFAULTS["nexp"] if nexp in (None, 1) else int(nexp)  # the generic default (1) is the mode's default
    n_int = int(nints or DEFAULTS["nints"])
    n_groups = int(ngroups or DEFAULTS["ngroups"])
    if n_groups < 2:
        raise ParameterError("NIRSpec exposures need at least 2 groups")
    if n_int < 1:
        raise ParameterError(f"{IFU}: --nints must be at least 1 (got {nints})")
    detector, readpatt = "NRS1", "NRSRAPID"
    tframe = D.frame_time(readpatt)
    window = N.Window("FULL", 1, 2048, tframe)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)

    ap = pysiaf.Siaf("NIRSpec")["NRS_FULL_IFU"]
    ids = S.ObservationIds(program=f"{int(program):05d}", observation=f"{int(observation):03d}",
                           visit=f"{int(visit):03d}")
    t0 = _dt.datetime.fromisoformat(start_time)
    setup = N._Aim(float(ap.V2Ref), float(ap.V3Ref), float(ap.V3IdlYAngle), int(ap.VIdlParity))
    # detector -> v2v3 does not depend on the pointing: one WCS serves every exposure
    model, _ = N._exposure(IFU, readpatt, n_groups, n_int, window, t0, seed)
    _metadata(model, ids, 0, n_exp, S.make_pointing(setup, target_ra, target_dec, pa_v3, 0.0, 0.0), setup,
              target_ra, target_dec, (0.0, 0.0))
    model.meta.instrument.filter, model.meta.instrument.grating = "CLEAR", "PRISM"
    det_refs, paths, context, full, slices = _references(out, detector, readpatt, n_groups, tframe, reference_seed,
                                                         model)
    setup = N._Aim(*ifu_centre_v2v3(full), setup.v3yangle, setup.vparity)

    conversion = _photom_conversion(paths["photom"])
    full_well = float(np.nanmedian(np.asarray(det_refs["saturation"].data)))
    dec0 = math.radians(target_dec)
    blob_ra = target_ra + EXT_OFFSET[0] / 3600.0 / math.cos(dec0)
    blob_dec = target_dec + EXT_OFFSET[1] / 3600.0
    uncal, crs, placed = [], [], []
    scale = None
    start = t0
    for k in range(n_exp):
        model, dur = N._exposure(IFU, readpatt, n_groups, n_int, window, start, seed + k)
        pointing = S.make_pointing(setup, target_ra, target_dec, pa_v3, *DITHER[k])
        _metadata(model, ids, k, n_exp, pointing, setup, target_ra, target_dec, DITHER[k])
        tv = S.sky_to_tel(pointing.attitude, target_ra, target_dec)
        bv = S.sky_to_tel(pointing.attitude, blob_ra, blob_dec)
        if scale is None:  # the brightest pixel reaches PEAK_FILL of the well
            unit, _ = render(slices, tv, bv, conversion, 1.0, blob=False)
            scale = N.PEAK_FILL * full_well / (float(unit.max()) * model.meta.exposure.integration_time)
        source, diffuse = render(slices, tv, bv, conversion, scale)
        rate = (source + diffuse).astype(np.float32)
        ramp, truth = D.simulate_nirspec_ramp(detector, readpatt, n_groups, n_int, det_refs, seed=seed * 101 + k,
                                              exp_type=IFU, start_time=start.isoformat(), rate=rate, tframe=tframe)
        model.data = ramp.data
        model.meta.wcsinfo.s_region = _s_region(slices, pointing)
        path = out / model.meta.filename
        model.save(path)
        _extra_keywords(path, n_exp)
        uncal.append(path)
        placed.append((model.meta.filename, [float(v) for v in tv], [float(v) for v in bv]))
        crs += [(model.meta.filename, i, g, 1, x, y, e) for i, g, x, y, e in truth["cosmic_rays"]]
        start = start + _dt.timedelta(seconds=dur + 120.0)

    from astropy import units as u
    from astropy.table import Table

    stem = f"jw{ids.program}{ids.observation}{ids.visit}_{detector.lower()}"
    lam = np.linspace(0.6, 5.3, 941)
    spec = Table({"wavelength": lam * u.um, "flux": N.source_spectrum(lam, scale) * 1e-3 * u.Jy,
                  "extended_peak": extended_spectrum(lam, scale) * u.MJy / u.sr,
                  "sky": sky_brightness(lam) * u.MJy / u.sr})
    spec.meta.update({
        "description": "webbflow simulator truth: the point source's F_nu above the telescope, the extended "
                       "blob's surface brightness at its centre and the sky's",
        "exp_type": IFU, "grating": "PRISM", "filter": "CLEAR", "target_ra_dec": [float(target_ra), float(target_dec)],
        "blob_ra_dec": [blob_ra, blob_dec], "blob_sigma_arcsec": EXT_SIGMA, "scale_mjy_at_2um": float(scale),
        "patttype": PATTTYPE, "dither_ideal_arcsec": [list(d) for d in DITHER[:n_exp]],
        "exposures": [p[0] for p in placed], "target_v2v3": [p[1] for p in placed], "blob_v2v3": [p[2] for p in placed],
        "v2_ref_v3_ref": [setup.v2_ref, setup.v3_ref],
        "note": "the flats are not in the scene (they divide the calibrated data by ~1 +- a few per cent)"})
    catalog = C.write_table(spec, out / "truth" / f"{stem}_spectrum.ecsv")
    cr_path = S._write_cosmic_rays(out / "truth" / f"{stem}_cosmic_rays.ecsv", crs)
    lv2, lv3 = N._associations(out, t0.strftime("%Y%m%dt%H%M%S"))
    result = S.SimulationResult(output_dir=out, uncal=uncal, catalog=catalog, cosmic_rays=cr_path, asn_level2=lv2,
                                asn_level3=lv3[0] if lv3 else None)
    result.context, result.crds_path = context, out
    return result

