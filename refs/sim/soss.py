"""Simulated NIRISS SOSS time series (NIS_SOSS): orders 1, 2 and 3 of a transited star on SUBSTRIP256.

As real SOSS time series are taken: one exposure of many integrations, GR700XD in the pupil wheel
(PWCPOS a little off its commanded 245.76 deg, so the traces are rotated as jwst's pastasoss
model rotates them), CLEAR in the filter wheel, SUBSTRIP256 (full-frame rows 1793-2048, 5.494 s
frames), NISRAPID, TSOVISIT=T, and an INT_TIMES table.

The scene is the star's spectrum (a smooth stellar continuum) dispersed along the three orders
of the references' traces (refs/synthetic_soss.py, on the real spectrace 0023), each order
scaled by its real throughput, with a Gaussian profile across the trace; a transit dims the
star integration by integration (a trapezoid over the middle half of the series, its depth
rising slightly with wavelength), on a faint sky.  The brightest pixel reaches about 40 % of the
full well at the end of an integration.

What goes into the folder, besides the uncal exposure: the references and a CRDS cache (the
detector references, and for SOSS ``specwcs``, ``pastasoss``, ``specprofile``, ``speckernel``, the
real SOSS ``photom`` and a SUBSTRIP256 ``flat``, which the ramps are drawn through), the pool and
the associations jwst's rules make (``tso-spec2`` and ``tso3``), and ``truth/``: the spectrum per
order (count rate out of transit against wavelength and column) and the light curve.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ...errors import ParameterError
from .. import simulator as S
from . import _common as C

EXP_TYPE = "NIS_SOSS"
DEFAULTS = dict(ngroups=3, nints=10, readpatt="NISRAPID")
PWCPOS = 245.79  # deg: 0.03 deg from the commanded position
TRANSIT_DEPTH = 0.01
PEAK_FILL = 0.4  # fraction of the full well the brightest pixel reaches in one integration
SKY = 0.5  # DN/s per pixel
# SUBSTRIP256 in the full frame (1-based starts), as the real exposures record it
SUBARRAYS = {"SUBSTRIP256": (1, 1793, 2048, 256)}


def star_spectrum(wave) -> np.ndarray:
    """Relative photon rate of the star against wavelength (micron): a smooth continuum with broad bands."""
    w = np.asarray(wave, dtype=float)
    return (w / 1.2) ** -1.5 * (1.0 + 0.15 * np.sin(4.0 * w)) * np.exp(-0.5 * ((w - 1.2) / 1.6) ** 2)


def transit_depth(wave, depth=TRANSIT_DEPTH) -> np.ndarray:
    """The planet's depth against wavelength: ``depth`` with a 10 % rise towards the red."""
    return depth * (1.0 + 0.1 * (np.asarray(wave, float) - 1.5))


def order_rates(tree, pwcpos=PWCPOS, subarray="SUBSTRIP256"):
    """Per order: (columns, trace row, wavelength, count rate per column in relative units)."""
    from ..synthetic_soss import TraceModel

    tm = TraceModel(tree, pwcpos, subarray)
    thr = {int(t["spectral_order"]): (np.asarray(t["wavelength"]), np.asarray(t["throughput"]))
           for t in tree["throughputs"]}
    out = {}
    for order in (1, 2, 3):
        cols, y, wave = tm.order(order)
        tw, tt = thr[order]
        srt = np.argsort(tw)
        # photons per column: the spectrum times the order's throughput times the wavelength span of a column
        rel = star_spectrum(wave) * np.interp(wave, tw[srt], tt[srt], left=0.0, right=0.0) * np.abs(np.gradient(wave))
        rel = np.where(np.isfinite(rel) & (rel > 0), rel, 0.0)
        out[order] = (cols, y, wave, rel)
    return out


def scene(shape, orders, scale, depth_frac=None, sigma=None):
    """The count-rate image (DN/s): each order's column rates spread across its trace."""
    from ..synthetic_soss import PROFILE_SIGMA

    sigma = sigma or PROFILE_SIGMA
    ny, nx = shape
    rows = np.arange(ny, dtype=float)[:, None]
    img = np.zeros(shape, dtype=np.float64)
    for order, (cols, y, wave, rel) in orders.items():
        g = np.exp(-0.5 * ((rows - y[None, :]) / sigma) ** 2)
        g /= np.sqrt(2 * np.pi) * sigma
        r = rel * scale
        if depth_frac is not None:
            r = r * (1.0 - depth_frac(wave))
        img[:, cols] += g * r[None, :]
    return img


def simulate(output_dir, *, instrument="niriss", detector=None, size=None, subarray=None, ngroups=None, nints=None,
             nexp=1, seed=0, filter=None, pupil=None, readpatt=None, exp_type=EXP_TYPE,  # noqa: A002
             target_ra=80.4875, target_dec=-69.4994, pa_v3=30.0, program="01234", observation=1, visit=1,
             start_time="2024-01-15T03:00:00", build_refs=True, reference_seed=0, depth=TRANSIT_DEPTH,
             cosmic_ray_rate=S.COSMIC_RAY_RATE, **_ignored) -> S.SimulationResult:
    """Write one NIRISS SOSS time-series exposure (see the module) into ``output_dir``."""
    from ..synthetic_soss import pastasoss_tree

    if (instrument or "niriss").lower() != "niriss":
        raise ParameterError(f"{EXP_TYPE} is a NIRISS mode; use --instrument niriss")
    C.one_exposure(EXP_TYPE, nexp)
    if size is not None:
        raise ParameterError(f"{EXP_TYPE} reads SUBSTRIP256; drop --size")
    sub = (subarray or "SUBSTRIP256").upper()
    if sub not in SUBARRAYS:
        raise ParameterError(f"{EXP_TYPE} is simulated on {', '.join(SUBARRAYS)} (got --subarray {subarray})")
    if (filter or "CLEAR").upper() != "CLEAR" or (pupil or "GR700XD").upper() != "GR700XD":
        raise ParameterError(f"{EXP_TYPE} is simulated with FILTER=CLEAR and PUPIL=GR700XD")
    n = C.integrations(EXP_TYPE, nints, DEFAULTS["nints"])
    rp = (readpatt or DEFAULTS["readpatt"]).upper()
    base = S.make_setup("niriss", detector or "NIS", None, None, ngroups or DEFAULTS["ngroups"], n, "CLEAR", None, rp)
    xstart, ystart, xsize, ysize = SUBARRAYS[sub]
    setup = replace(base, subarray=sub, xstart=xstart, ystart=ystart, xsize=xsize, ysize=ysize, noutputs=1,
                    tframe=S._nir_frame_time(ysize, xsize, 1), aperture=f"NIS_{sub}", col_map=None, row_map=None)
    ts = C.time_series_exposure(setup, output_dir, program=program, observation=observation, visit=visit,
                                start_time=start_time, target_ra=target_ra, target_dec=target_dec, pa_v3=pa_v3,
                                template="NIRISS SOSS", label="webbflow simulated transit (SOSS)")
    out, t0, models, model, name = ts.out, ts.t0, ts.models, ts.model, ts.name
    # the detector references are made as for the detector's imaging (they match on detector and
    # subarray); the SOSS ones are added to the same context below
    refs, context = C.references(models, setup, out, build_refs, reference_seed)
    tree = pastasoss_tree()
    soss_refs = {}
    if build_refs:
        soss_refs = write_soss_context(out)
        from ..context import current_context
        from ..select import open_reference

        context = current_context(out)
        refs["flat"] = open_reference("flat", soss_refs["flat"])
    else:
        refs.pop("flat", None)

    m = model.meta
    m.exposure.type = EXP_TYPE
    m.instrument.filter, m.instrument.pupil = "CLEAR", "GR700XD"
    m.instrument.pupil_position = PWCPOS

    orders = order_rates(tree, PWCPOS, sub)
    well = S._median_full_well(refs, setup)
    peak_rel = scene((setup.ysize, setup.xsize), orders, 1.0).max()
    scale = PEAK_FILL * well / (peak_rel * setup.effinttm)
    flux = _transit_shape(n)
    images = [scene((setup.ysize, setup.xsize), orders, scale,
                    (lambda w, f=f: transit_depth(w, depth) * f)) + SKY for f in flux]
    data, crs = C.ramps(setup, lambda i: images[i].astype(np.float32), refs, seed, 0, cosmic_ray_rate)
    model.data = data
    path = out / name
    model.save(path)

    # truth ---------------------------------------------------------------------------
    from astropy.table import Table

    stem = ts.stem
    truth = out / "truth"
    for order, (cols, _y, wave, rel) in orders.items():
        t = Table({"column": cols, "wavelength": wave, "count_rate": rel * scale,
                   "transit_depth": transit_depth(wave, depth)})
        t["wavelength"].unit = "um"
        t["count_rate"].unit = "DN / s"
        t.meta.update({"description": "webbflow simulator truth: the star's count rate summed across the trace, per "
                                      "column, out of transit (after the flat), and the transit depth",
                       "order": order, "exposure": name, "pwcpos": PWCPOS})
        C.write_table(t, truth / f"{stem}_order{order}_spectrum.ecsv")
    lc = C.light_curve(ts, "transit_fraction", flux,
                       "webbflow simulator truth: the fraction of the full transit depth in each integration (the "
                       "flux at wavelength w is 1 - depth(w) * transit_fraction)", depth=float(depth))
    catalog = C.write_table(lc, truth / f"{stem}_lightcurve.ecsv")
    cr_path = C.cosmic_ray_truth(ts, crs)

    lv2, lv3 = associations(out, t0.strftime("%Y%m%dt%H%M%S"))
    result = S.SimulationResult(output_dir=out, uncal=[path], catalog=catalog, cosmic_rays=cr_path, asn_level2=lv2,
                                asn_level3=lv3[0] if lv3 else None, setup=setup)
    result.context, result.crds_path = context, (out if build_refs else None)
    return result


def associations(out: Path, version: str):
    """The pool of the folder's exposure and the associations jwst's rules make from it.

    As in the archive's pools, the TSOVISIT flag is written ``t``/``f`` (a header's boolean read as
    text would be ``True``, which the rules do not take for a time series): NIS_SOSS is not one of
    the TSO exposure types, so only the visit flag makes it ``tso-spec2`` and ``tso3``.
    """
    from ...flows.asn.engine import generate, write_associations
    from ...flows.asn.mkpool import make_pool, write_pool
    from ...flows.asn.pool import read_pool

    uncal = sorted(p.name for p in out.glob("*_uncal.fits"))
    pool_path = out / f"jw{uncal[0][2:7]}_{version}_pool.csv"
    table = make_pool([out / n for n in uncal])
    table["filename"] = uncal
    for col in ("tsovisit",):
        if col in table.colnames:
            table[col] = [{"true": "t", "false": "f"}.get(str(v).lower(), str(v)) for v in table[col]]
    write_pool(table, pool_path)
    asns = generate(read_pool(pool_path), version_id=version)
    paths = write_associations(asns, out)
    return ([p for p, a in zip(paths, asns) if a.rule.level == 2], [p for p, a in zip(paths, asns) if a.rule.level == 3])


def _transit_shape(n: int) -> np.ndarray:
    """0 out of transit, 1 in full transit: a trapezoid over the middle half of ``n`` integrations."""
    from .tso_image import transit

    return (1.0 - transit(n, 1.0)).astype(float)


def write_soss_context(root) -> dict[str, Path]:
    """The SOSS references in the CRDS cache at ``root``, and a new context that selects them.

    Added rules: ``specwcs``, ``pastasoss``, ``specprofile`` and ``speckernel`` by detector; the
    SOSS ``photom`` (by detector: the folder holds one SOSS observation); the SUBSTRIP256
    CLEAR/GR700XD ``flat``.
    """
    from .. import synthetic_soss as SS
    from ..context import Rmap, read_context, reference_path, write_context

    root = Path(root)
    old = read_context(root)
    rules = {ins: dict(r) for ins, r in old.rmaps.items()}
    niriss = rules.setdefault("NIRISS", {})
    tree = SS.pastasoss_tree()
    out = {}
    makers = {
        "pastasoss": ("jwst_niriss_pastasoss_0001.asdf", lambda p: SS.write_pastasoss(p)),
        "specwcs": ("jwst_niriss_specwcs_0001.asdf", lambda p: SS.write_specwcs(p, tree)),
        "specprofile": ("jwst_niriss_specprofile_0001.fits", lambda p: SS.write_specprofile(p, tree)),
        "speckernel": ("jwst_niriss_speckernel_0001.fits", lambda p: SS.write_speckernel(p)),
        "photom": ("jwst_niriss_photom_soss_0001.fits", lambda p: SS.write_photom(p)),
        "flat": ("jwst_niriss_flat_soss_0001.fits", lambda p: SS.write_flat(p)),
    }
    det = ("META.INSTRUMENT.DETECTOR",)
    for rt, (name, make) in makers.items():
        p = reference_path(root, name)
        p.parent.mkdir(parents=True, exist_ok=True)
        out[rt] = make(p)
        if rt == "flat" and "flat" in niriss:
            rm = niriss["flat"]
            entries = dict(rm.entries)
            entries[("NIS", "SUBSTRIP256", "CLEAR", "GR700XD")] = name
            niriss["flat"] = Rmap("NIRISS", "flat", rm.parkeys, entries, None)
        else:
            niriss[rt] = Rmap("NIRISS", rt, det, {("NIS",): name})
    write_context(root, rules, "NIRISS SOSS references (webbflow synthetic, on the real spectrace 0023)")
    return out
