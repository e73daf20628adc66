"""Simulated NIRCam wavefront-sensing pairs (WFS&C): a bright star through a weak lens, dithered twice.

As fine-phasing data are taken: NRC_IMAGE exposures through the weak-lens pupils (WLP8, or WLM8),
in a WFS&C visit (VISITYPE PRIME_WFSC_SENSING_CONTROL, the WFSC NIRCam Fine Phasing template),
a two-point dither pattern of type WFSC (PATTTYPE=WFSC, NUMDTHPT=2) whose points differ by a
whole number of pixels. The ±8-wave defocus images the pupil: a disk of about 4 arcsec at
2.1 micron (its size scales with wavelength), with the secondary's obscuration and a pattern of
segment gaps, blurred by the telescope's PSF; its brightest pixels reach about 40 % of the full well.

Each pupil is its own activity (WLP8 01, WLM8 02), so simulating both into one folder gives
both pairs, as a real visit has them. Alongside the uncal files, references and CRDS cache:
the pool and the associations jwst's rules make (level-2 ``image2`` by Asn_Lv2WFSC, one per
exposure; level-3 ``wfs-image3`` by Asn_Lv3WFSCMB, one per pair, whose product is
``<name>_wfscmb-<activity>.fits``), and ``truth/`` with the star's position in each exposure
and the dither in pixels.
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

PUPILS = {"WLP8": "01", "WLM8": "02"}  # pupil -> activity
DEFAULTS = dict(detector="NRCA3", filter="F212N", ngroups=3, nints=1, readpatt="RAPID")
DITHER_PIXELS = (24, 0)  # the second point, in pixels of the detector's x and y
PUPIL_DIAMETER_ARCSEC = 4.0  # the defocused pupil's size at 2.12 micron
PEAK_FILL = 0.4


def pupil_image(shape, x0, y0, radius_px, fwhm_px) -> np.ndarray:
    """A defocused pupil: a disk with a central obscuration and segment gaps, blurred; peak about 1."""
    from scipy.ndimage import gaussian_filter

    ny, nx = shape
    yy, xx = np.mgrid[:ny, :nx]
    dx, dy = xx - x0, yy - y0
    r = np.hypot(dx, dy)
    img = ((r <= radius_px) & (r >= 0.12 * radius_px)).astype(float)
    seg = radius_px / 3.0  # about three segments across the radius
    for ang in (0.0, 60.0, 120.0):
        u = dx * math.cos(math.radians(ang)) + dy * math.sin(math.radians(ang))
        gap = np.abs(((u / seg) % 1.0) - 0.5) > 0.47
        img[gap] *= 0.3
    img = gaussian_filter(img, fwhm_px / 2.3548)
    return img / img.max()


def simulate(output_dir, *, instrument="nircam", detector=None, size=None, subarray=None, ngroups=None, nints=None,
             nexp=2, seed=0, filter=None, pupil="WLP8", readpatt=None, exp_type="NRC_IMAGE",  # noqa: A002
             target_ra=53.1625, target_dec=-27.7914, pa_v3=30.0, program="01234", observation=1, visit=1,
             start_time="2024-01-15T03:00:00", build_refs=True, reference_seed=0,
             cosmic_ray_rate=S.COSMIC_RAY_RATE, **_ignored) -> S.SimulationResult:
    """Write one dithered weak-lens pair (see the module) into ``output_dir``; ``nexp`` 1 or 2 both mean the pair."""
    if (instrument or "nircam").lower() != "nircam":
        raise ParameterError("WFS&C pairs are NIRCam weak-lens images; use --instrument nircam")
    pup = (pupil or "WLP8").upper()
    if pup not in PUPILS:
        raise ParameterError(f"WFS&C weak lenses are {', '.join(PUPILS)} (got --pupil {pupil})")
    if nexp not in (1, 2):
        raise ParameterError(f"a WFS&C pair is two dithered exposures (got --nexp {nexp})")
    setup = S.make_setup("nircam", detector or DEFAULTS["detector"], size, subarray, ngroups or DEFAULTS["ngroups"],
                         nints or DEFAULTS["nints"], filter or DEFAULTS["filter"], None,
                         readpatt or DEFAULTS["readpatt"])
    setup = replace(setup, pupil=pup)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ids = S.ObservationIds(program=f"{int(program):05d}", observation=f"{int(observation):03d}",
                           visit=f"{int(visit):03d}", activity=PUPILS[pup])
    t0 = _dt.datetime.fromisoformat(start_time)
    if pup != "WLP8":  # the second lens comes after the first pair in the visit
        t0 = t0 + _dt.timedelta(seconds=600 * (int(PUPILS[pup]) - 1))

    # the dither: whole pixels on the detector, given to the pointing as ideal-frame offsets
    offsets = [(0.0, 0.0), (round(DITHER_PIXELS[0] * setup.xscale, 6), round(DITHER_PIXELS[1] * setup.yscale, 6))]
    models, pointings, names, _starts = C.exposures(setup, ids, t0, offsets, target_ra, target_dec, pa_v3, gap_s=30.0)
    for k, model in enumerate(models):
        m = model.meta
        m.visit.type = "PRIME_WFSC_SENSING_CONTROL"
        m.observation.template = "WFSC NIRCam Fine Phasing"
        m.observation.observation_label = "webbflow simulated fine phasing"
        m.target.proposer_name = m.target.catalog_name = "SIMWFS"
        d = m.dither
        d.primary_type, d.dither_points, d.total_points, d.position_number = "WFSC", 2, 2, k + 1
        d.pattern_size, d.subpixel_pattern = "NONE", "NONE"

    refs, context = C.references(models, setup, out, build_refs, reference_seed)
    pixmap = S.PixelMap(setup, refs)
    photmjsr, _pixar, _ = S._photometry(refs, setup)
    fwhm_px = setup.fwhm_arcsec / math.sqrt(setup.xscale * setup.yscale)
    radius_px = 0.5 * PUPIL_DIAMETER_ARCSEC * (setup.wavelength / 2.12) / math.sqrt(setup.xscale * setup.yscale)
    well = S._median_full_well(refs, setup)
    peak_rate = PEAK_FILL * well / setup.effinttm
    sky = S.sky_surface_brightness(setup.wavelength) / photmjsr

    paths, xs, ys, crs_rows = [], [], [], []
    for k, (model, pnt) in enumerate(zip(models, pointings)):
        x, y, _, _ = C.star_position(setup, pixmap, pnt, target_ra, target_dec)
        xs.append(float(x[0]))
        ys.append(float(y[0]))
        img = pupil_image((setup.ysize, setup.xsize), x[0], y[0], radius_px, fwhm_px) * peak_rate + sky
        data, crs = C.ramps(setup, lambda i, img=img: img, refs, seed, k, cosmic_ray_rate)
        model.data = data
        model.meta.wcsinfo.s_region = S.s_region(setup, pixmap, pnt)
        paths.append(out / names[k])
        model.save(paths[-1])
        crs_rows += [(names[k], c.integration + 1, c.group + 1, c.frame + 1, c.x, c.y, c.electrons) for c in crs]

    from astropy import units as u
    from astropy.table import Table

    stem = f"jw{ids.program}{ids.observation}{ids.visit}_{setup.detector.lower()}_{pup.lower()}"
    t = Table({"id": [1], "ra": [target_ra] * u.deg, "dec": [target_dec] * u.deg,
               "peak_rate": [peak_rate] * (u.DN / u.s), "x_1": [xs[0]], "y_1": [ys[0]], "x_2": [xs[1]], "y_2": [ys[1]]})
    t.meta.update({"description": "webbflow simulator truth: the weak-lens star (0-based pixel position in each "
                                  "exposure, jwst's convention); dither_pixels is exposure 2 less exposure 1",
                   "exposures": {k + 1: n for k, n in enumerate(names)}, "pupil": pup, "radius_pixels": radius_px,
                   "dither_pixels": [xs[1] - xs[0], ys[1] - ys[0]], "sky_rate_dn_per_s": sky})
    catalog = C.write_table(t, out / "truth" / f"{stem}_truth.ecsv")
    cr_path = S._write_cosmic_rays(out / "truth" / f"{stem}_cosmic_rays.ecsv", crs_rows)

    lv2, lv3 = C.associations(out, _dt.datetime.fromisoformat(start_time).strftime("%Y%m%dt%H%M%S"))
    mine = {n[: -len("_uncal.fits")] for n in names}
    lv2 = [p for p in lv2 if any(r in p.read_text() for r in mine)]
    lv3 = [p for p in lv3 if any(r in p.read_text() for r in mine)]
    result = S.SimulationResult(output_dir=out, uncal=paths, catalog=catalog, cosmic_rays=cr_path, asn_level2=lv2,
                                asn_level3=lv3[0] if lv3 else None, setup=setup)
    result.context, result.crds_path = context, (out if build_refs else None)
    return result
