"""Simulated MIRI low-resolution spectroscopy (LRS): the fixed slit, nodded, and the slitless time series.

``webbflow simulate --instrument miri --exp-type MIR_LRS-FIXEDSLIT [--nexp N]``: a point source
nodded along the 4.7" slit (ALONG-SLIT-NOD, two positions 0.94" either side of the slit centre,
at 30 % and 70 % of its length as the LRS template puts them; ``--nexp`` exposures alternate
between them, default 2), read in FULL frame (as the fixed slit is; FASTR1, 5 groups by default).
Each nod is the other's background, as jwst's rules pair them.

``--exp-type MIR_LRS-SLITLESS --nints N``: one exposure of N integrations (default 12) on the
SLITLESSPRISM subarray (72 x 416 from row 529), TSOVISIT=T with an INT_TIMES table, the star at
the slitless aperture's reference point, dimmed by a transit (a trapezoid over the middle half
of the series, 3 % deep by default).

The scene is rendered where the real LRS puts it: the real specwcs (0005 slit, 0006 slitless)
gives each row's wavelength and the trace's column, the real flt9 distortion the target's pixel
from the pointing. Each row holds the source's spectrum, ``F_nu`` (a stellar Rayleigh-Jeans
slope with a 9.7 um silicate absorption, mJy) times the photom reference's point-source
conversion, times the slit's transmission of the PSF (fixed slit), spread across the dispersion
as a Gaussian of the diffraction FWHM (pixel-integrated). The sky is the zodiacal and thermal
background of the imaging simulator at each row's wavelength: through the slit it fills the
slit's columns (the slit's width of sky per row); slitless, every pixel sees the whole band.
Then the detector effects of Stage 1 as the imaging simulator makes them from the references
(MIRI: pedestal, reset anomaly, RSCD, first/last-frame effects, non-linearity, dark, IPC, flat,
read noise, cosmic rays).

What goes into DIR besides the uncal files: the references (refs/synthetic_miri_lrs.py) and the
detector references in a CRDS cache whose rules select them for LRS (CRDS_PATH=DIR); the pool
and the associations jwst's rules make (spec2 per nod with the other nods as backgrounds and
spec3 for the fixed slit; tso-spec2 and tso3 for the slitless series); and ``truth/``: the
source spectrum (``<stem>_spectrum.ecsv``: wavelength, F_nu in Jy) and, for the time series,
the light curve (``<stem>_lightcurve.ecsv``).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import replace
from pathlib import Path

import numpy as np

from ...errors import ParameterError
from .. import simulator as S
from .. import synthetic_miri_lrs as L
from . import _common as C

FIXEDSLIT, SLITLESS = L.FIXEDSLIT, L.SLITLESS
DEFAULTS = {FIXEDSLIT: dict(ngroups=5, nints=1, nexp=2), SLITLESS: dict(ngroups=5, nints=12, nexp=1)}
SLITLESS_WINDOW = (1, 529, 72, 416, 0.15904)  # SUBSTRT1, SUBSTRT2, SUBSIZE1, SUBSIZE2, TFRAME (s)
NOD_OFFSET_PX = 0.2 * L.SLIT_LENGTH_PX  # nods at 30 % and 70 % of the slit's length
TRANSIT_DEPTH = 0.03  # a giant planet across a small star
PEAK_FILL = 0.35  # fraction of the full well the brightest pixel reaches in one integration
SILICATE = (9.7, 0.9, 0.15)  # centre (um), width (um), depth of the absorption


def source_spectrum(wavelength_um, scale_mjy: float = 1.0) -> np.ndarray:
    """The target's F_nu in mJy: Rayleigh-Jeans (nu^2) with a silicate absorption, ``scale`` at 7.5 um."""
    lam = np.asarray(wavelength_um, float)
    c, w, d = SILICATE
    return scale_mjy * (7.5 / lam) ** 2 * (1.0 - d * np.exp(-0.5 * ((lam - c) / w) ** 2))


def transit(n: int, depth: float = TRANSIT_DEPTH) -> np.ndarray:
    """Relative flux of ``n`` integrations: a trapezoid transit over the middle half, 15 % of it ingress."""
    phase = (np.arange(n) + 0.5) / n - 0.5
    inside = np.clip((0.25 - np.abs(phase)) / 0.075, 0.0, 1.0)
    return 1.0 - depth * inside


def lrs_setup(exp_type, ngroups, nints, readpatt, specwcs_header):
    """The imaging simulator's MIRI setup, turned into the LRS aperture and window."""
    setup = S.make_setup("miri", "MIRIMAGE", None, "FULL", ngroups, nints, None, None, readpatt, None)
    siaf = S._siaf("MIRI")
    if exp_type == FIXEDSLIT:
        aper = siaf["MIRIM_SLIT"]
        window = dict(subarray="FULL")
        xref, yref = float(specwcs_header["IMX"]), float(specwcs_header["IMY"])
    else:
        aper = siaf["MIRIM_SLITLESSPRISM"]
        x0, y0, nx, ny, tframe = SLITLESS_WINDOW
        # jwst's refpix leaves MIRI subarrays alone, so the imaging simulator's per-group amplifier
        # offsets (which it removes from full frames) would stay in the ramps: none here
        window = dict(subarray="SLITLESSPRISM", xstart=x0, ystart=y0, xsize=nx, ysize=ny, tframe=tframe,
                      col_map=None, row_map=None, drift_scale=0.0)
        xref, yref = float(aper.XSciRef), float(aper.YSciRef)
    return replace(setup, exp_type=exp_type, filter="P750L", aperture=aper.AperName, v2_ref=float(aper.V2Ref),
                   v3_ref=float(aper.V3Ref), v3yangle=float(aper.V3IdlYAngle), vparity=int(aper.VIdlParity),
                   xref_sci=xref, yref_sci=yref, **window)


def tel_to_ideal(setup, v2, v3):
    """The inverse of jwst's planar IdealToV2V3 about the aperture's reference point."""
    ang = np.deg2rad(setup.v3yangle)
    d2, d3 = v2 - setup.v2_ref, v3 - setup.v3_ref
    return setup.vparity * (d2 * np.cos(ang) - d3 * np.sin(ang)), d2 * np.sin(ang) + d3 * np.cos(ang)


# ---------------------------------------------------------------------------
# references and their CRDS rules


def _next_name(root: Path, reftype: str, ext: str) -> str:
    from .. import context as ctxmod

    prefix = f"jwst_miri_{reftype}_"
    return f"{prefix}{ctxmod._next_serial(ctxmod.references_dir(root, 'MIRI'), prefix, ext):04d}{ext}"


def lrs_references(out: Path, setup, exp_type: str, reference_seed: int):
    """Write the detector and LRS references into the cache ``out`` and rules that select them.

    Returns (the opened references the scene uses, the context name, the wavetable).
    """
    from .. import build
    from .. import context as ctxmod
    from ..select import open_reference
    from ..synthetic import ExposureConfig

    # the detector references of this window and readout, as for imaging (the flat of F770W's
    # pixel response becomes the P750L flat below)
    cfg = ExposureConfig(instrument="MIRI", detector="MIRIMAGE", exp_type="MIR_IMAGE", subarray=setup.subarray,
                         xstart=setup.xstart, ystart=setup.ystart, xsize=setup.xsize, ysize=setup.ysize,
                         readpatt=setup.readpatt, nframes=setup.nframes, groupgap=setup.groupgap,
                         ngroups=setup.ngroups, nints=setup.nints, frame_time=setup.tframe, filter="F770W")
    res = build.build_reference_cache([cfg], out, seed=reference_seed)
    selected = next(iter(res.selections.values()))

    def path(name):
        return ctxmod.reference_path(out, name)

    with ctxmod.cache_lock(out):
        from ...models import open as open_model

        flat = open_model(path(selected["flat"]))
        flat.meta.instrument.filter = "P750L"
        flat.meta.exposure.type = exp_type
        flat.meta.description = f"MIRI LRS pixel flat, {setup.subarray} (webbflow synthetic)"
        names = {"flat": _next_name(out, "flat", ".fits")}
        flat.save(path(names["flat"]))
        names["specwcs"] = _next_name(out, "specwcs", ".fits")
        L.write_specwcs(path(names["specwcs"]), exp_type)
        names["distortion"] = _next_name(out, "distortion", ".asdf")
        L.copy_real(path(names["distortion"]), L.DISTORTION_FILE)
        names["extract1d"] = _next_name(out, "extract1d", ".json")
        L.copy_real(path(names["extract1d"]), L.EXTRACT1D_FILE)
        wavetables = {m: L.Wavetable(L.real_refs_dir() / L.SPECWCS_FILES[m]) for m in (FIXEDSLIT, SLITLESS)}
        names["photom"] = _next_name(out, "photom", ".fits")
        L.write_photom(path(names["photom"]), wavetables)
        names["apcorr"] = _next_name(out, "apcorr", ".fits")
        L.write_apcorr(path(names["apcorr"]))
        if exp_type == FIXEDSLIT:
            names["pathloss"] = _next_name(out, "pathloss", ".fits")
            L.write_pathloss(path(names["pathloss"]))

        ctx = ctxmod.read_context(out)
        rules = {ins: dict(r) for ins, r in ctx.rmaps.items()}
        miri = rules.setdefault("MIRI", {})
        old = miri["flat"]
        entries = dict(old.entries)
        entries[("MIRIMAGE", setup.subarray, "P750L")] = names["flat"]
        miri["flat"] = ctxmod.Rmap("MIRI", "flat", old.parkeys, entries)
        # the LRS references are selected by exposure type, as in the real rules; LRS has no pixel-area map
        parkeys = ("META.INSTRUMENT.DETECTOR", "META.EXPOSURE.TYPE")
        key = ("MIRIMAGE", exp_type)
        for rt in ("specwcs", "distortion", "extract1d", "photom", "apcorr", "pathloss", "area"):
            old = miri.get(rt)
            entries = dict(old.entries) if old is not None and old.parkeys == parkeys else {}
            entries[key] = names.get(rt, "N/A")
            miri[rt] = ctxmod.Rmap("MIRI", rt, parkeys, entries)
        context = ctxmod.write_context(out, rules, f"webbflow simulated MIRI LRS ({exp_type})").context

    refs = {}
    for rt, name in selected.items():
        if rt in S.SIGNATURE_REFTYPES and rt not in ("flat", "photom", "distortion", "filteroffset") \
                and name and name != "N/A":
            refs[rt] = open_reference(rt, path(name))
    refs["flat"] = open_reference("flat", path(names["flat"]))
    return refs, context, wavetables[exp_type]


# ---------------------------------------------------------------------------
# the scene


def _profile(x_edges, centre, sigma):
    """Pixel-integrated Gaussian: fraction of the light in each pixel (rows of centres x pixel edges)."""
    from scipy.special import erf

    z = (x_edges[None, :] - centre[:, None]) / (np.sqrt(2.0) * sigma[:, None])
    cdf = 0.5 * (1.0 + erf(z))
    return np.diff(cdf, axis=1)


def render(setup, wavetable, ref_x, ref_y, src_x, scale_mjy, along_px=None):
    """(source DN/s image, sky DN/s image, per-row table) of the exposure's window.

    ``ref_x``/``ref_y``: the aperture's reference pixel (0-based full frame) that the WAVETABLE's
    offsets are measured from; ``src_x``: the source's column there (0-based full frame);
    ``along_px``: the source's offset along the slit (fixed slit) or None (slitless).
    """
    rows_full = setup.row_map.astype(float)
    lam, xc, dl = wavetable.at_rows(rows_full - ref_y)
    ok = np.isfinite(lam)
    conv = np.full(lam.shape, np.nan)
    conv[ok] = L.conversion(lam[ok], dl[ok])
    flux = np.zeros(lam.shape)
    flux[ok] = source_spectrum(lam[ok], scale_mjy)  # mJy
    rate_row = np.zeros(lam.shape)
    rate_row[ok] = flux[ok] * 1e-9 / L.PIXAR_SR / conv[ok]  # DN/s summed across the dispersion
    if along_px is not None:
        rate_row[ok] *= L.slit_transmission(lam[ok], along_px, 0.0)
    cols = setup.col_map.astype(float)
    edges = np.concatenate([cols - 0.5, [cols[-1] + 0.5]])
    image = np.zeros((setup.ysize, setup.xsize))
    centre = src_x + xc
    image[ok] = rate_row[ok, None] * _profile(edges, centre[ok], L.sigma_px(lam[ok]))

    sb = np.array([S.sky_surface_brightness(v) for v in np.where(ok, lam, 7.5)])  # MJy/sr
    sky = np.zeros_like(image)
    if along_px is not None:
        # through the slit: its columns, a slit width of sky dispersed onto each row
        per_px = np.where(ok, L.SLIT_WIDTH_PX * sb / np.where(ok, conv, 1.0), 0.0)
        inside = np.abs(cols[None, :] - (ref_x + np.where(ok, xc, 0.0))[:, None]) <= L.SLIT_LENGTH_PX / 2
        sky = np.where(inside & ok[:, None], per_px[:, None], 0.0)
        # the imager field beside the slit: the prism-dispersed sky, a uniform level
        field = float(np.nanmean(per_px[ok])) if ok.any() else 0.0
        sky = np.where(inside, sky, field)
    else:
        full_lam, _x, full_dl = wavetable.at_rows(wavetable.y)
        band = np.isfinite(full_lam) & (full_lam >= 4.5)
        per_px = float(np.sum(np.array([S.sky_surface_brightness(v) for v in full_lam[band]])
                              / L.conversion(full_lam[band], full_dl[band])))
        sky[:] = per_px
    return image, sky, dict(wavelength=lam, rate=rate_row, flux_mjy=flux, conversion=conv, trace_x=centre)


# ---------------------------------------------------------------------------
# the observation


def simulate(output_dir, *, instrument="miri", detector=None, size=None, subarray=None, ngroups=None, nints=None,
             nexp=None, seed=0, filter=None, readpatt=None, exp_type=FIXEDSLIT,  # noqa: A002
             target_ra=53.1625, target_dec=-27.7914, pa_v3=30.0, program="01234", observation=1, visit=1,
             start_time="2024-01-15T03:00:00", build_refs=True, reference_seed=0, depth=TRANSIT_DEPTH,
             cosmic_ray_rate=S.COSMIC_RAY_RATE, **_ignored) -> S.SimulationResult:
    """Write one MIRI LRS observation (see the module) into ``output_dir``."""
    exp_type = (exp_type or FIXEDSLIT).upper()
    if exp_type not in DEFAULTS:
        raise ParameterError(f"MIRI LRS exposure types are {FIXEDSLIT} and {SLITLESS} (got {exp_type})")
    if (instrument or "miri").lower() != "miri":
        raise ParameterError(f"{exp_type} is a MIRI mode; use --instrument miri")
    if detector is not None and detector.upper() != "MIRIMAGE":
        raise ParameterError(f"{exp_type} is read on MIRIMAGE (got --detector {detector})")
    if size is not None or subarray is not None:
        want = "FULL" if exp_type == FIXEDSLIT else "SLITLESSPRISM"
        if size is not None or str(subarray).upper() != want:
            raise ParameterError(f"{exp_type} is read on the {want} subarray; drop --size/--subarray")
    if filter is not None and filter.upper() != "P750L":
        raise ParameterError(f"{exp_type} uses the P750L prism (got --filter {filter})")
    if not build_refs:
        raise ParameterError(f"{exp_type}: the LRS scene is rendered from its references; drop --no-refs")
    d = DEFAULTS[exp_type]
    if exp_type == FIXEDSLIT:
        n_exp = d["nexp"] if nexp in (None, 1) else int(nexp)  # a nod needs two positions
        n_int = nints or d["nints"]
    else:
        if nexp not in (None, 1):
            raise ParameterError(f"{exp_type}: a time series is one exposure of many integrations; drop --nexp")
        n_exp, n_int = 1, C.integrations(exp_type, nints, d["nints"])

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    wavetable_header = L.Wavetable(L.real_refs_dir() / L.SPECWCS_FILES[exp_type]).header
    setup = lrs_setup(exp_type, ngroups or d["ngroups"], n_int, readpatt, wavetable_header)
    ids = S.ObservationIds(program=f"{int(program):05d}", observation=f"{int(observation):03d}",
                           visit=f"{int(visit):03d}")
    t0 = _dt.datetime.fromisoformat(start_time)
    dist = L.distortion_model()
    if exp_type == FIXEDSLIT:
        ref_x, ref_y = wavetable_header["IMX"] - 1.0, wavetable_header["IMY"] - 1.0
        along = [(-NOD_OFFSET_PX if k % 2 == 0 else NOD_OFFSET_PX) for k in range(n_exp)]
    else:
        ref_x, ref_y = wavetable_header["IMXSLTL"] - 1.0, wavetable_header["IMYSLTL"] - 1.0
        along = [0.0]

    # exposures: each pointed so that the target lands on its nod position
    from ...models import Level1bModel

    models, pointings, names, starts = [], [], [], []
    t = t0
    for k, a in enumerate(along):
        v2t, v3t = (float(v) for v in dist(ref_x + a, ref_y))
        pnt = S.make_pointing(replace(setup, v2_aim=v2t, v3_aim=v3t), target_ra, target_dec, pa_v3, 0.0, 0.0)
        m = Level1bModel()
        S.fill_metadata(m, setup, ids, pnt, k + 1, n_exp, t, target_ra, target_dec)
        meta = m.meta
        meta.observation.template = "MIRI Low Resolution Spectroscopy"
        meta.observation.observation_label = "webbflow simulated LRS " + ("nods" if exp_type == FIXEDSLIT else "transit")
        meta.target.proposer_name = meta.target.catalog_name = "SIMLRS" if exp_type == FIXEDSLIT else "SIMTRANSIT"
        meta.target.source_type_apt = "POINT"
        dx, dy = tel_to_ideal(setup, v2t, v3t)
        dith = meta.dither
        dith.x_offset, dith.y_offset = round(float(dx), 6), round(float(dy), 6)
        if exp_type == FIXEDSLIT:
            dith.primary_type = "ALONG-SLIT-NOD"
            dith.position_number = k % 2 + 1
            dith.total_points = dith.dither_points = 2
            dith.pattern_size = "DEFAULT"
        else:
            dith.primary_type = "NONE"
            dith.position_number = dith.total_points = dith.dither_points = 1
            dith.pattern_size = "NONE"
            meta.visit.tsovisit = True
        names.append(S.exposure_filename(setup, ids, k + 1, t))
        meta.filename = names[-1]
        models.append(m)
        pointings.append(pnt)
        starts.append(t)
        t = t + _dt.timedelta(seconds=setup.duration + 60.0)

    refs, context, wavetable = lrs_references(out, setup, exp_type, reference_seed)
    pixmap = S.PixelMap(setup, {"distortion": _Dist(dist)})

    # brightness: the brightest pixel fills PEAK_FILL of the well in an integration (1 mJy scene first)
    well = S._median_full_well(refs, setup)
    unit, _sky, _rows = render(setup, wavetable, ref_x, ref_y, ref_x + along[0], 1.0,
                               along[0] if exp_type == FIXEDSLIT else None)
    scale = PEAK_FILL * well / (float(unit.max()) * setup.effinttm)

    uncal, crs, tables = [], [], []
    flux_ts = transit(n_int, depth) if exp_type == SLITLESS else None
    for k, (m, pnt, a) in enumerate(zip(models, pointings, along)):
        source, sky, rows = render(setup, wavetable, ref_x, ref_y, ref_x + a, scale,
                                   a if exp_type == FIXEDSLIT else None)
        tables.append(rows)
        m.meta.wcsinfo.s_region = S.s_region(setup, pixmap, pnt)
        if exp_type == SLITLESS:
            m.int_times = C.int_times(setup, starts[k], target_ra, target_dec)
            data, c = C.ramps(setup, lambda i: source * flux_ts[i] + sky, refs, seed, k, cosmic_ray_rate)
        else:
            exp = S.simulate_ramps(setup, source + sky, refs, seed, k, cosmic_ray_rate, 1, reference_seed)
            data, c = exp.data, exp.cosmic_rays
        m.data = data
        p = out / names[k]
        m.save(p)
        uncal.append(p)
        crs += [(names[k], x.integration + 1, x.group + 1, x.frame + 1, x.x, x.y, x.electrons) for x in c]

    # truth ---------------------------------------------------------------------------
    from astropy import units as u
    from astropy.table import Table

    stem = f"jw{ids.program}{ids.observation}{ids.visit}_{setup.detector.lower()}"
    truth = out / "truth"
    lam = np.linspace(4.5, 14.0, 381)
    spec = Table({"wavelength": lam * u.um, "flux": source_spectrum(lam, scale) * 1e-3 * u.Jy})
    spec.meta.update({"description": "webbflow simulator truth: the target's spectral flux density (F_nu) above the "
                                     "telescope" + (", out of transit" if exp_type == SLITLESS else ""),
                      "exp_type": exp_type, "exposures": names, "scale_mjy_at_7.5um": float(scale),
                      "source_column_0based": [float(ref_x + a) for a in along], "reference_row_0based": float(ref_y),
                      "nod_offsets_along_slit_px": [float(a) for a in along] if exp_type == FIXEDSLIT else []})
    catalog = C.write_table(spec, truth / f"{stem}_spectrum.ecsv")
    if exp_type == SLITLESS:
        lc = Table()
        it = models[0].int_times
        for col in ("integration_number", "int_mid_MJD_UTC", "int_mid_BJD_TDB"):
            lc[col] = it[col]
        lc["relative_flux"] = flux_ts
        lc.meta.update({"description": "webbflow simulator truth: the target's flux in each integration relative to "
                                       "out of transit (a trapezoid transit over the middle half of the series)",
                        "exposure": names[0], "depth": float(depth),
                        "white_light_source_fraction": white_light_source_fraction(tables[0], source, sky),
                        "white_light_note": "the slitless extraction box (extract1d) holds sky too: a white light "
                                            "curve shows depth x white_light_source_fraction"})
        C.write_table(lc, truth / f"{stem}_lightcurve.ecsv")
    cr_path = S._write_cosmic_rays(truth / f"{stem}_cosmic_rays.ecsv", crs)

    lv2, lv3 = associations(out, t0.strftime("%Y%m%dt%H%M%S"))
    result = S.SimulationResult(output_dir=out, uncal=uncal, catalog=catalog, cosmic_rays=cr_path, asn_level2=lv2,
                                asn_level3=lv3[0] if lv3 else None, setup=setup)
    result.context, result.crds_path = context, out
    return result


def white_light_source_fraction(rows, source, sky) -> float:
    """The target's share of the calibrated flux summed in the extract1d box over the photom response's wavelengths."""
    import json

    ref = json.loads((L.real_refs_dir() / L.EXTRACT1D_FILE).read_text())
    ap = next(a for a in ref["apertures"] if a["id"] == SLITLESS)
    box = slice(int(ap["xstart"]), int(ap["xstop"]) + 1)
    lam, conv = rows["wavelength"], rows["conversion"]
    ok = np.isfinite(lam) & (lam >= L.RESPONSE_RANGE[0]) & (lam <= L.RESPONSE_RANGE[1])
    src = np.sum(source[ok, box].sum(axis=1) * conv[ok])
    bkg = np.sum(sky[ok, box].sum(axis=1) * conv[ok])
    return float(src / (src + bkg))


def associations(out: Path, version: str):
    """The pool of the folder's exposures, as DMS writes it, and the associations jwst's rules make of it.

    DMS pools spell header booleans ``t``/``f`` (TSOVISIT=T is ``t``), and jwst's rules test them
    so: an LRS slitless series is a time series (tso3) only through TSOVISIT. Returns (level 2, level 3).
    """
    from ...flows.asn.engine import generate, write_associations
    from ...flows.asn.mkpool import make_pool, write_pool
    from ...flows.asn.pool import read_pool

    uncal = sorted(p.name for p in out.glob("*_uncal.fits"))
    table = make_pool([out / n for n in uncal])
    table["filename"] = uncal  # members are named relative to the pool's folder
    for col in table.colnames:
        table[col] = [{"True": "t", "False": "f"}.get(str(v), v) for v in table[col]]
    pool = write_pool(table, out / f"jw{uncal[0][2:7]}_{version}_pool.csv")
    asns = generate(read_pool(pool), version_id=version)
    paths = write_associations(asns, out)
    return ([p for p, a in zip(paths, asns) if a.rule.level == 2],
            [p for p, a in zip(paths, asns) if a.rule.level == 3])


class _Dist:
    """The distortion in the form PixelMap reads (``.model``)."""

    def __init__(self, model):
        self.model = model
