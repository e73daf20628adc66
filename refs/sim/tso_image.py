"""Simulated NIRCam imaging time series (NRC_TSIMAGE): a bright star on a small TSO subarray, transited.

As real TSO imaging is taken: one exposure of many integrations on a corner subarray (SUB64P by
default, with the star at the subarray's reference point), TSOVISIT=T, the NIRCam Time Series
template, and an INT_TIMES table giving each integration's start, middle and end (MJD UTC and
BJD TDB). The star's brightness follows a transit light curve, integration by integration:
a trapezoid (linear ingress and egress) of ``depth`` centred in the series. The star fills about
40 % of the full well at the end of an integration, so it is bright without saturating.

What goes into the folder, besides the uncal exposure, the references and the CRDS cache:
the pool and the associations jwst's rules make (``tso-image2``: rateints -> calints, and
``tso3``: calints -> crfints and ``<product>_phot.ecsv``), and ``truth/``: the light curve
(``<stem>_lightcurve.ecsv``: integration, mid times, relative flux) and the star list.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from ...errors import ParameterError
from .. import simulator as S
from . import _common as C

EXP_TYPE = "NRC_TSIMAGE"
DEFAULTS = dict(detector="NRCA3", subarray="SUB64P", filter="F210M", pupil="CLEAR", ngroups=3, nints=20,
                readpatt="RAPID")
TRANSIT_DEPTH = 0.01  # fractional dimming at mid-transit
PEAK_FILL = 0.4  # fraction of the full well the star's peak pixel reaches in one integration


def transit(n: int, depth: float = TRANSIT_DEPTH) -> np.ndarray:
    """Relative flux of ``n`` integrations: a trapezoid transit over the middle half, 15 % of it ingress."""
    phase = (np.arange(n) + 0.5) / n - 0.5  # -0.5 .. 0.5 over the series
    half = 0.25  # the transit lasts half the series
    ramp = 0.15 * 2 * half
    inside = np.clip((half - np.abs(phase)) / ramp, 0.0, 1.0)
    return 1.0 - depth * inside


def simulate(output_dir, *, instrument="nircam", detector=None, size=None, subarray=None, ngroups=None, nints=None,
             nexp=1, seed=0, filter=None, pupil=None, readpatt=None, exp_type=EXP_TYPE,  # noqa: A002
             target_ra=53.1625, target_dec=-27.7914, pa_v3=30.0, program="01234", observation=1, visit=1,
             start_time="2024-01-15T03:00:00", build_refs=True, reference_seed=0, depth=TRANSIT_DEPTH,
             cosmic_ray_rate=S.COSMIC_RAY_RATE, **_ignored) -> S.SimulationResult:
    """Write one NIRCam imaging TSO exposure (see the module) into ``output_dir``."""
    if (instrument or "nircam").lower() != "nircam":
        raise ParameterError(f"{EXP_TYPE} is a NIRCam mode; use --instrument nircam")
    C.one_exposure(EXP_TYPE, nexp)
    n = C.integrations(EXP_TYPE, nints, DEFAULTS["nints"])
    if size is None and subarray is None:
        subarray = DEFAULTS["subarray"]
    # the weak lens (WLP8) is how bright TSO targets are defocused; its PSF is imaged as the
    # imaging simulator's (a compact star), and tso_photometry sums SUB64P WLP8 data whole
    pup = (pupil or DEFAULTS["pupil"]).upper()
    setup = S.make_setup("nircam", detector or DEFAULTS["detector"], size, subarray, ngroups or DEFAULTS["ngroups"], n,
                         filter or DEFAULTS["filter"], None if pup == "WLP8" else pup, readpatt or DEFAULTS["readpatt"])
    setup = replace(setup, exp_type=EXP_TYPE, pupil=pup)
    ts = C.time_series_exposure(setup, output_dir, program=program, observation=observation, visit=visit,
                                start_time=start_time, target_ra=target_ra, target_dec=target_dec, pa_v3=pa_v3,
                                template="NIRCam Time Series", label="webbflow simulated transit")
    out, t0, models, model, pnt = ts.out, ts.t0, ts.models, ts.model, ts.pointing
    m = model.meta

    refs, context = C.references(models, setup, out, build_refs, reference_seed)
    pixmap = S.PixelMap(setup, refs)
    photmjsr, pixar_sr, _ = S._photometry(refs, setup)

    # the star: bright, unsaturated, at the subarray's reference point (where the pointing puts the target)
    fwhm_px = setup.fwhm_arcsec / math.sqrt(setup.xscale * setup.yscale)
    well = S._median_full_well(refs, setup)
    rate = PEAK_FILL * well / (S.peak_fraction(fwhm_px) * setup.effinttm)
    x, y, xf, yf = C.star_position(setup, pixmap, pnt, target_ra, target_dec)
    star = S.render_stars((setup.ysize, setup.xsize), x, y, np.array([rate]), fwhm_px)
    sky = S.sky_surface_brightness(setup.wavelength) / photmjsr
    flux = transit(n, depth)
    data, crs = C.ramps(setup, lambda i: star * flux[i] + sky, refs, seed, 0, cosmic_ray_rate)
    model.data = data
    m.wcsinfo.s_region = S.s_region(setup, pixmap, pnt)
    path = out / ts.name
    model.save(path)

    # truth ---------------------------------------------------------------------------
    from astropy import units as u
    from astropy.table import Table

    stem = ts.stem
    lc = C.light_curve(ts, "relative_flux", flux,
                       "webbflow simulator truth: the target's flux in each integration relative to out of transit "
                       "(a trapezoid transit over the middle half of the series)",
                       depth=float(depth), count_rate_out_of_transit_dn_per_s=float(rate), x=float(x[0]),
                       y=float(y[0]), fwhm_pixels=fwhm_px, sky_rate_dn_per_s=sky)
    truth = out / "truth"
    C.write_table(lc, truth / f"{stem}_lightcurve.ecsv")
    stars = Table({"id": [1], "ra": [target_ra] * u.deg, "dec": [target_dec] * u.deg,
                   "count_rate": [rate] * (u.DN / u.s), "x_1": x, "y_1": y})
    stars.meta["description"] = "webbflow simulator truth: the target star (0-based pixel position, jwst's convention)"
    catalog = C.write_table(stars, truth / f"{stem}_truth.ecsv")
    cr_path = C.cosmic_ray_truth(ts, crs)

    lv2, lv3 = C.associations(out, t0.strftime("%Y%m%dt%H%M%S"))
    result = S.SimulationResult(output_dir=out, uncal=[path], catalog=catalog, cosmic_rays=cr_path, asn_level2=lv2,
                                asn_level3=lv3[0] if lv3 else None, setup=setup)
    result.context, result.crds_path = context, (out if build_refs else None)
    return result
