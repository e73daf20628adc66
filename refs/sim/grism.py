"""Simulated NIRCam grism time series (NRC_TSGRISM): a bright star's F322W2 spectrum on SUBGRISM64, transited.

As real grism time series are taken: one exposure of many integrations on the SUBGRISM64 stripe of
NRCALONG (aperture NRCA5_GRISM64_F322W2, 2048 x 64 pixels, the star at the aperture's reference
point XREF_SCI, YREF_SCI = 1581, 35), filter F322W2 with the GRISMR pupil, TSOVISIT=T, the NIRCam
Grism Time Series template and an INT_TIMES table.

Where the spectrum lands is what jwst's WCS says: the real module A GRISMR dispersion
(``jwst_nircam_specwcs_0010.asdf``, the file CRDS selects for NRC_TSGRISM GRISMR module A) through
webbflow's assign_wcs (identical to jwst's), so each column's wavelength and the trace row are
the real detector's (order 1 from about 2.35 um at column 0 to 4.0 um near column 1650, the
trace on row 35).  Each column holds the star's order-1 flux at that wavelength, spread across
the rows by a Gaussian of the diffraction width (FWHM 1.68 px at 3.2 um, growing with
wavelength).  Its count rate is the truth spectrum (F_nu in Jy, a Rayleigh-Jeans slope) divided
by the real WFSS photom's conversion (``jwst_nircam_photom_0064.fits``: PHOTMJSR times the
relative response at that wavelength, and its pixel area), so that the pipeline's x1dints
recovers the truth spectrum; it is scaled so that the brightest pixel reaches about 40 % of the
full well in an integration.  A faint uniform sky lies under it.  The star dims by a grey
trapezoid transit (``refs.sim.tso_image.transit``) centred in the series.

References: the Stage 1 and imaging ones the imaging simulator builds (read for this stripe and
for F322W2/GRISMR: mask, saturation, superbias, linearity, dark, gain, readnoise, ipc, flat, area,
distortion, filteroffset), plus, in the same CRDS cache, the real specwcs 0010, a synthetic
``wavelengthrange`` (refs.synthetic_grism), the real WFSS photom 0064, an ``extract1d`` (a
13-row box on the source row with a median background from rows clear of the trace) and a
``pars-whitelightstep`` (white_light's min/max wavelength: the filter's half-power band), with
rules as CRDS writes them for these types (specwcs by PUPIL, MODULE, EXP_TYPE; wavelengthrange by
EXP_TYPE).
The imaging apcorr and abvegaoffset are not used by this mode: the rules answer N/A for them.

Also written: the pool and the associations jwst's rules make (``tso-spec2``: rateints ->
calints and x1dints; ``tso3``: calints -> crfints, x1dints and ``<product>_whtlt.ecsv``) and
``truth/``: the light curve (``<stem>_lightcurve.ecsv``), the spectrum
(``<stem>_spectrum.ecsv``: wavelength, flux density, count rate and trace row per column), the
star and the cosmic rays.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from ...errors import ParameterError
from .. import simulator as S
from . import _common as C
from .tso_image import TRANSIT_DEPTH, transit

EXP_TYPE = "NRC_TSGRISM"
DEFAULTS = dict(detector="NRCALONG", subarray="SUBGRISM64", filter="F322W2", pupil="GRISMR", ngroups=3, nints=20,
                readpatt="RAPID")
PEAK_FILL = 0.4  # fraction of the full well the brightest pixel reaches in one integration
SKY_RATE = 0.2  # DN/s per pixel, uniform
FWHM_PX_AT_3P2 = 1.68  # NIRCam LW PSF FWHM (pixels) at 3.2 um; diffraction-limited, grows with wavelength
ORDER = 1

REAL_NIRCAM = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real-refs" / "nircam"
SPECWCS_FILE = "jwst_nircam_specwcs_0010.asdf"  # module A GRISMR (CRDS: NRC_WFSS and NRC_TSGRISM)
PHOTOM_FILE = "jwst_nircam_photom_0064.fits"  # NRCALONG WFSS/TSGRISM photom, GRISMR and GRISMC, orders 1 and 2
SPECWCS_PARKEYS = ("META.INSTRUMENT.PUPIL", "META.INSTRUMENT.MODULE", "META.EXPOSURE.TYPE")
WAVELENGTHRANGE_PARKEYS = ("META.EXPOSURE.TYPE",)
NOT_APPLICABLE = ("apcorr", "abvegaoffset")  # imaging references the grism time series does not read
WHITE_LIGHT_PARKEYS = ("META.EXPOSURE.TYPE", "META.INSTRUMENT.FILTER", "META.INSTRUMENT.PUPIL")
EXTRACT1D_PARKEYS = ("META.EXPOSURE.TYPE",)
SOURCE_ROW = 34  # extract_2d puts the time-series source on this row of the cutout (jwst's rule)
APERTURE_HALF = 6  # rows either side of the source row that extract_1d sums
BACKGROUND_ROWS = ((4, 20), (48, 59))  # cutout rows (inclusive) of the background fit, clear of the trace


def real_reference(name: str) -> Path:
    """A real NIRCam reference of ../shared/data/real-refs/nircam (WEBBFLOW_REAL_REFS overrides the folder)."""
    import os

    env = os.environ.get("WEBBFLOW_REAL_REFS")
    folder = Path(env) / "nircam" if env else REAL_NIRCAM
    path = (folder / name).resolve()
    if not path.exists():
        raise ParameterError(f"{path}: the real NIRCam reference the grism simulator needs is missing "
                             f"(set WEBBFLOW_REAL_REFS to the real-refs folder)")
    return path


def grism_setup(detector, subarray, ngroups, nints, filt, pupil, readpatt):
    """The detector/readout setup of a SUBGRISM stripe (its SIAF aperture NRCA5_GRISM<n>_<filter>)."""
    det = (detector or DEFAULTS["detector"]).upper()
    if det not in ("NRCALONG", "NRCA5"):
        raise ParameterError(f"{EXP_TYPE} is simulated on NRCALONG (module A, GRISMR), not {detector}")
    filt = (filt or DEFAULTS["filter"]).upper()
    pup = (pupil or DEFAULTS["pupil"]).upper()
    if pup != "GRISMR":
        raise ParameterError(f"{EXP_TYPE} disperses with GRISMR (got --pupil {pupil})")
    sub = (subarray or DEFAULTS["subarray"]).upper()
    if not sub.startswith("SUBGRISM"):
        raise ParameterError(f"{EXP_TYPE} reads a SUBGRISM stripe (SUBGRISM64, SUBGRISM128, SUBGRISM256), not {subarray}")
    rows = sub[len("SUBGRISM"):]
    setup = S.make_setup("nircam", "NRCALONG", None, f"GRISM{rows}_{filt}", ngroups or DEFAULTS["ngroups"],
                         nints or DEFAULTS["nints"], filt, "CLEAR", readpatt or DEFAULTS["readpatt"])
    return replace(setup, exp_type=EXP_TYPE, pupil=pup, subarray=sub)


def reference_config(setup):
    """The exposure as the reference builder sees it: its window, readout, filter and pupil.

    The builder knows the imaging modes' reference types; a time series of the same window,
    filter and pupil reads the same Stage 1 references, flat, area, distortion and filter
    offsets (our rules select them by detector, subarray, readout, filter and pupil, not by
    EXP_TYPE).  The grism-only types are added by :func:`add_grism_rules`.
    """
    from ..synthetic import ExposureConfig

    return ExposureConfig(
        instrument="NIRCAM", detector=setup.detector, exp_type="NRC_TSIMAGE", subarray=setup.subarray,
        xstart=setup.xstart, ystart=setup.ystart, xsize=setup.xsize, ysize=setup.ysize, readpatt=setup.readpatt,
        nframes=setup.nframes, groupgap=setup.groupgap, ngroups=setup.ngroups, nints=setup.nints,
        frame_time=setup.tframe, filter=setup.filter, pupil=setup.pupil)


def build_references(setup, out: Path, seed: int):
    """Write the CRDS cache into ``out``: (opened signature references, reference paths by type, context)."""
    from .. import build
    from .. import context as ctxmod
    from ..select import open_reference

    res = build.build_reference_cache([reference_config(setup)], out, seed=seed)
    selected = next(iter(res.selections.values()))
    paths = {rt: ctxmod.reference_path(out, n) for rt, n in selected.items() if n and n != "N/A"}
    refs = {rt: open_reference(rt, p) for rt, p in paths.items() if rt in S.SIGNATURE_REFTYPES and rt != "photom"}
    grism_paths, context = add_grism_rules(out, setup)
    paths.update(grism_paths)
    for rt in NOT_APPLICABLE:
        paths.pop(rt, None)
    return refs, paths, context


def add_grism_rules(root: Path, setup) -> tuple[dict[str, Path], str]:
    """Put the specwcs, wavelengthrange and grism photom into the cache and a context that selects them."""
    from .. import context as ctxmod
    from ..synthetic_grism import wavelengthrange

    ctx = ctxmod.read_context(root)
    rules = {ins: dict(r) for ins, r in ctx.rmaps.items()}
    nrc = rules.setdefault("NIRCAM", {})
    paths = {}
    # the real files keep their CRDS names
    for rt, name in (("specwcs", SPECWCS_FILE), ("photom", PHOTOM_FILE)):
        dest = ctxmod.reference_path(root, name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            tmp = dest.with_name(dest.name + ".part")
            shutil.copyfile(real_reference(name), tmp)
            tmp.replace(dest)
        paths[rt] = dest
    wr = wavelengthrange("NIRCAM", EXP_TYPE)
    old = nrc.get("wavelengthrange")
    wr_name = (old.entries.get((EXP_TYPE,)) if old is not None else None) or "jwst_nircam_wavelengthrange_0001.asdf"
    paths["wavelengthrange"] = ctxmod.reference_path(root, wr_name)
    paths["wavelengthrange"].parent.mkdir(parents=True, exist_ok=True)
    wr.save(paths["wavelengthrange"])

    def rule(rt, parkeys, key, value):
        old = nrc.get(rt)
        entries = dict(old.entries) if old is not None and tuple(old.parkeys) == parkeys else {}
        entries[key] = value
        nrc[rt] = ctxmod.Rmap("NIRCAM", rt, parkeys, entries)

    # extract_1d's aperture and background rows, as the extract1d JSON reference gives them
    x1_name = "jwst_nircam_extract1d_0001.json"
    paths["extract1d"] = write_extract1d(ctxmod.reference_path(root, x1_name), setup)
    rule("extract1d", EXTRACT1D_PARKEYS, (EXP_TYPE,), x1_name)
    # white_light's wavelength limits for this filter, as CRDS gives them in a pars-whitelightstep file
    wl_name = "jwst_nircam_pars-whitelightstep_0001.asdf"
    paths["pars-whitelightstep"] = write_white_light_pars(ctxmod.reference_path(root, wl_name), setup)
    rule("pars-whitelightstep", WHITE_LIGHT_PARKEYS, (EXP_TYPE, setup.filter, setup.pupil), wl_name)
    rule("specwcs", SPECWCS_PARKEYS, (setup.pupil, setup.detector[3], EXP_TYPE), SPECWCS_FILE)
    rule("wavelengthrange", WAVELENGTHRANGE_PARKEYS, (EXP_TYPE,), wr_name)
    # photom, apcorr and abvegaoffset keep the builder's parameters (the detector): this cache is the
    # observation's own, and its one detector reads the grism photom and no imaging apcorr
    rule("photom", ctxmod.RMAP_PARKEYS[("NIRCAM", "photom")], (setup.detector,), PHOTOM_FILE)
    for rt in NOT_APPLICABLE:
        rule(rt, ctxmod.RMAP_PARKEYS[("NIRCAM", rt)], (setup.detector,), "N/A")
    return paths, ctxmod.write_context(root, rules, f"webbflow simulated NIRCam grism time series ({setup.filter} "
                                                     f"{setup.pupil} {setup.subarray})").context


def write_extract1d(path: Path, setup) -> Path:
    """The ``extract1d`` reference (JSON, in the form of the real CRDS files): a box of
    2 x APERTURE_HALF + 1 rows on the source row, with a median background from rows above and
    below the trace (it takes out each integration's residual bias, which a sum over all 64 rows
    would carry into the white light)."""
    import json

    from ..synthetic import AUTHOR, PEDIGREE, USEAFTER

    bkg = []
    for lo, hi in BACKGROUND_ROWS:
        bkg += [[lo - 0.5], [hi + 0.5]]
    ref = {
        "reftype": "EXTRACT1D", "instrument": "NIRCAM", "telescope": "JWST", "exp_type": EXP_TYPE,
        "pedigree": PEDIGREE, "description": f"NIRCam grism time series extraction, {setup.subarray}",
        "author": AUTHOR, "useafter": USEAFTER,
        "apertures": [{
            "id": "ANY", "region_type": "target", "dispaxis": 1, "use_source_posn": False,
            "xstart": 4, "xstop": setup.xsize - 5,
            "ystart": SOURCE_ROW - APERTURE_HALF, "ystop": SOURCE_ROW + APERTURE_HALF,
            "bkg_coeff": bkg, "bkg_fit": "median", "bkg_order": 0,
        }],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(ref, indent=4) + "\n")
    tmp.replace(path)
    return path


def write_white_light_pars(path: Path, setup) -> Path:
    """A ``pars-whitelightstep`` reference (StepParsModel, ASDF): white_light sums the filter's
    half-power band (the wavelengthrange's order-1 limits), not the band edges, where the grism's
    response falls a hundredfold and the flux calibration multiplies the noise by as much."""
    import asdf

    from ..synthetic import AUTHOR, PEDIGREE, USEAFTER
    from ..synthetic_grism import NIRCAM_LW_BANDS

    lo, hi = NIRCAM_LW_BANDS[setup.filter]
    tree = {
        "class": "jwst.white_light.white_light_step.WhiteLightStep",
        "name": "white_light",
        "parameters": {"min_wavelength": float(lo), "max_wavelength": float(hi)},
        "meta": {
            "author": AUTHOR, "date": "2024-01-01T00:00:00", "description": f"white_light band for {setup.filter}",
            "instrument": {"name": "NIRCAM"}, "exposure": {"type": EXP_TYPE}, "origin": "webbflow",
            "pedigree": PEDIGREE, "reftype": "pars-whitelightstep", "telescope": "JWST", "useafter": USEAFTER,
            "model_type": "StepParsModel",
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    asdf.AsdfFile(tree).write_to(tmp)
    tmp.replace(path)
    return path


def grism_wcs(model, paths: dict):
    """The exposure's gwcs, as assign_wcs (jwst's) builds it from the distortion, filter offsets and specwcs."""
    from ...models import CubeModel
    from ...tasks import load_all
    from ...tasks.base import run_step

    load_all()
    cube = CubeModel(data=np.zeros((1, model.meta.subarray.ysize, model.meta.subarray.xsize), np.float32))
    cube.meta = model.meta.model_copy(deep=True)
    cube.meta.model_type = "CubeModel"
    refs = {rt: paths[rt] for rt in ("distortion", "filteroffset", "specwcs")}
    return run_step("assign_wcs", cube, {}, references=refs).model.meta.wcs


def trace(wcs, ra: float, dec: float, nx: int, order: int = ORDER, yref: float = 35.0):
    """Per column (0-based x): the order's wavelength (um) and trace row (0-based y), from the WCS."""
    x = np.arange(nx, dtype=float)
    _, _, lam, _ = wcs(x, np.full(nx, yref), np.full(nx, order))
    lam = np.asarray(lam, float)
    xb, yb, _ = wcs.backward_transform(np.full(nx, ra), np.full(nx, dec), lam, np.full(nx, order))
    return lam, np.asarray(yb, float), np.asarray(xb, float)


def photom_conversion(path: Path, filt: str, pupil: str, order: int, wavelength: np.ndarray):
    """(PHOTMJSR x relative response at ``wavelength``, PIXAR_SR) of the grism photom's row: MJy/sr per DN/s."""
    from astropy.io import fits

    with fits.open(path) as hdul:
        pixar = float(hdul[0].header["PIXAR_SR"])
        tab = hdul["PHOTOM"].data
        for row in tab:
            if (str(row["filter"]).strip().upper(), str(row["pupil"]).strip().upper(), int(row["order"])) == \
                    (filt, pupil, order):
                n = int(row["nelem"])
                wl, rr = np.asarray(row["wavelength"][:n], float), np.asarray(row["relresponse"][:n], float)
                conv = float(row["photmjsr"]) * np.interp(wavelength, wl, rr, left=np.inf, right=np.inf)
                return conv, pixar
    raise ParameterError(f"{path}: no {filt} {pupil} order {order} row")


def pixel_area_sr(area_path: Path) -> float:
    """The nominal pixel area (PIXAR_SR) of the area reference, which photom gives the spectra."""
    from astropy.io import fits

    return float(fits.getheader(area_path)["PIXAR_SR"])


def spectrum_image(shape, lam, ytrace, rate_per_column):
    """Count rates (ny, nx): each column's rate spread over the rows by a Gaussian of the diffraction width."""
    from scipy.special import erf

    ny, nx = shape
    sigma = FWHM_PX_AT_3P2 * np.clip(lam, 2.0, 5.5) / 3.2 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    edges = np.arange(ny + 1, dtype=float)[:, None] - 0.5
    cdf = 0.5 * (1.0 + erf((edges - ytrace[None, :]) / (math.sqrt(2.0) * sigma[None, :])))
    return (np.diff(cdf, axis=0) * rate_per_column[None, :]).astype(np.float32)


def simulate(output_dir, *, instrument="nircam", detector=None, size=None, subarray=None, ngroups=None, nints=None,
             nexp=1, seed=0, filter=None, pupil=None, readpatt=None, exp_type=EXP_TYPE,  # noqa: A002
             target_ra=53.1625, target_dec=-27.7914, pa_v3=30.0, program="01234", observation=1, visit=1,
             start_time="2024-01-15T03:00:00", build_refs=True, reference_seed=0, depth=TRANSIT_DEPTH,
             cosmic_ray_rate=S.COSMIC_RAY_RATE, **_ignored) -> S.SimulationResult:
    """Write one NIRCam grism time series exposure (see the module) into ``output_dir``."""
    if (instrument or "nircam").lower() != "nircam":
        raise ParameterError(f"{EXP_TYPE} is a NIRCam mode; use --instrument nircam")
    C.one_exposure(EXP_TYPE, nexp)
    if size is not None:
        raise ParameterError(f"{EXP_TYPE} reads a SUBGRISM stripe; use --subarray, not --size")
    if not build_refs:
        raise ParameterError(f"{EXP_TYPE}: the trace is placed through the references' WCS; references are needed")
    n = C.integrations(EXP_TYPE, nints, DEFAULTS["nints"])
    for name in (SPECWCS_FILE, PHOTOM_FILE):  # before anything is written
        real_reference(name)
    setup = grism_setup(detector, subarray, ngroups, n, filter, pupil, readpatt)
    ts = C.time_series_exposure(setup, output_dir, program=program, observation=observation, visit=visit,
                                start_time=start_time, target_ra=target_ra, target_dec=target_dec, pa_v3=pa_v3,
                                template="NIRCam Grism Time Series", label="webbflow simulated transit spectroscopy")
    out, t0, model, pnt, name = ts.out, ts.t0, ts.model, ts.pointing, ts.name
    m = model.meta
    m.target.source_type = "POINT"

    refs, paths, context = build_references(setup, out, reference_seed)
    pixmap = S.PixelMap(setup, refs)

    # where the spectrum lands: the WCS jwst builds for this exposure
    wcs = grism_wcs(model, paths)
    lam, ytrace, _ = trace(wcs, target_ra, target_dec, setup.xsize, yref=setup.yref_sci)
    conv, _ = photom_conversion(paths["photom"], setup.filter, setup.pupil, ORDER, lam)
    pixar_sr = pixel_area_sr(paths["area"])
    inband = np.isfinite(conv) & (conv > 0)
    # F_nu (Jy) -> the column's summed count rate, as photom (PHOTMJSR x response / dispersion, in
    # MJy/sr per DN/s) and extract_1d (x pixel area) convert back
    shape_jy = (lam / 3.2) ** -2.0
    dispersion = np.abs(np.gradient(lam))  # um per pixel
    per_jy = np.where(inband, dispersion / (1e6 * pixar_sr * np.where(inband, conv, 1.0)), 0.0)
    unit = spectrum_image((setup.ysize, setup.xsize), lam, ytrace, shape_jy * per_jy)
    well = S._median_full_well(refs, setup)
    flux_jy = PEAK_FILL * well / (float(unit.max()) * setup.effinttm)  # the star's F_nu at 3.2 um
    star = unit * np.float32(flux_jy)
    flux = transit(n, depth)
    data, crs = C.ramps(setup, lambda i: star * np.float32(flux[i]) + np.float32(SKY_RATE), refs, seed, 0,
                        cosmic_ray_rate)
    model.data = data
    m.wcsinfo.s_region = S.s_region(setup, pixmap, pnt)
    path = out / name
    model.save(path)

    # truth ---------------------------------------------------------------------------
    from astropy import units as u
    from astropy.table import Table

    stem = ts.stem
    truth = out / "truth"
    lc = C.light_curve(ts, "relative_flux", flux,
                       "webbflow simulator truth: the star's flux in each integration relative to out of transit "
                       "(grey: every wavelength alike; a trapezoid over the middle half)", depth=float(depth))
    C.write_table(lc, truth / f"{stem}_lightcurve.ecsv")
    spec = Table()
    spec["x"] = np.arange(setup.xsize)
    spec["wavelength"] = lam * u.um
    spec["trace_y"] = ytrace
    spec["flux"] = np.where(inband, shape_jy * flux_jy, np.nan) * u.Jy
    spec["count_rate"] = (star.sum(axis=0)) * (u.DN / u.s)
    spec.meta.update({"description": "webbflow simulator truth: the star's order-1 spectrum out of transit, per "
                                     "column (0-based x, trace row y): F_nu and the count rate summed over the column",
                      "exposure": name, "order": ORDER, "specwcs": SPECWCS_FILE, "photom": PHOTOM_FILE,
                      "pixar_sr": pixar_sr, "sky_rate_dn_per_s": SKY_RATE})
    C.write_table(spec, truth / f"{stem}_spectrum.ecsv")
    xref, yref = setup.xref_sci - 1.0, setup.yref_sci - 1.0
    stars = Table({"id": [1], "ra": [target_ra] * u.deg, "dec": [target_dec] * u.deg,
                   "flux_3p2um": [flux_jy] * u.Jy, "x_1": [xref], "y_1": [yref]})
    stars.meta["description"] = ("webbflow simulator truth: the target star at the aperture's reference point "
                                 "(0-based direct-image position, jwst's convention)")
    catalog = C.write_table(stars, truth / f"{stem}_truth.ecsv")
    cr_path = C.cosmic_ray_truth(ts, crs)

    lv2, lv3 = C.associations(out, t0.strftime("%Y%m%dt%H%M%S"))
    result = S.SimulationResult(output_dir=out, uncal=[path], catalog=catalog, cosmic_rays=cr_path, asn_level2=lv2,
                                asn_level3=lv3[0] if lv3 else None, setup=setup)
    result.context, result.crds_path = context, out
    return result
