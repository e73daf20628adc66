"""NIRCam coronagraphy (NRC_CORON): a star behind a round coronagraphic mask with a companion
to recover, and PSF-reference exposures of a star without one.

What ``webbflow simulate --instrument nircam --exp-type NRC_CORON`` writes (DESIGN.md section 9):

- the uncal exposures, on the mask's real SIAF subarray (default SUB320A335R on NRCALONG, the
  SIAF aperture NRCA5_MASK335R, F335M; SUB320A430R with F430M; SUB640A210R on NRCA2 with
  F210M): one science exposure (visit 1) and ``nexp`` PSF-reference exposures (visit 2,
  IS_PSF = T), each with ``nints`` integrations, metadata as the real coronagraphic headers
  have it (PUPIL MASKRND, CORONMSK, PATTTYPE NONE);
- the associations jwst's rules make for them (webbflow's association engine on their pool):
  an image2 association per exposure and the coron3 association with science and psf members;
- the references and a CRDS cache (CRDS_PATH=DIR), with a ``psfmask`` reference in jwst's form
  (a PsfMaskModel of the subarray: 1 off the mask, 0 under it) selected by the real rmap's
  parkeys (EXP_TYPE, FILTER, CORONMSK, SUBARRAY);
- ``truth/companion.ecsv``: the companion's pixel position in the science exposure, its sky
  position and its count rate.

The star sits at the aperture's reference pixel, the mask's centre; the mask's transmission is
``1 - exp(-r^2 / (2 s^2))`` (s = 4 pixels), applied to the star, not to the companion, which
is outside the mask.  The PSF references are pointed a fraction of a pixel away, as a small-grid
dither would put them.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ...errors import ParameterError

# SUBARRAY -> (detector, SIAF aperture suffix, CORONMSK, default filter)
CORON_SUBARRAYS = {
    "SUB320A335R": ("NRCALONG", "MASK335R", "MASKA335R", "F335M"),
    "SUB320A430R": ("NRCALONG", "MASK430R", "MASKA430R", "F430M"),
    "SUB640A210R": ("NRCA2", "MASK210R", "MASKA210R", "F210M"),
}
MASK_SIGMA_PX = 4.0
COMPANION_OFFSET_PX = (14.0, -9.0)  # from the star, science frame (x, y)
PSF_OFFSETS_PX = ((0.21, -0.14), (-0.17, 0.23), (0.11, 0.19), (-0.23, -0.08))
PSFMASK_PARKEYS = ("META.EXPOSURE.TYPE", "META.INSTRUMENT.FILTER", "META.INSTRUMENT.CORONAGRAPH",
                   "META.SUBARRAY.NAME")


def coron_setup(detector, subarray, ngroups, nints, filter, readpatt):  # noqa: A002
    from ..simulator import make_setup

    sub = (subarray or "SUB320A335R").upper()
    if sub not in CORON_SUBARRAYS:
        raise ParameterError(f"NRC_CORON is simulated on the round-mask subarrays {', '.join(CORON_SUBARRAYS)} "
                             f"(got {subarray!r})")
    det, siaf_sub, mask, filt = CORON_SUBARRAYS[sub]
    if detector is not None and detector.upper().replace("NRCA5", "NRCALONG") != det:
        raise ParameterError(f"subarray {sub} is on {det}, not {detector}")
    setup = make_setup("nircam", det, None, siaf_sub, ngroups or 3, nints or 3, filter or filt, "CLEAR",
                       readpatt, None)
    setup = dataclasses.replace(setup, exp_type="NRC_CORON", subarray=sub, pupil="MASKRND")
    return setup, mask


def transmission(shape, x0, y0, sigma=MASK_SIGMA_PX):
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(float)
    return 1.0 - np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * sigma**2))


def write_psfmask(path: Path, setup, mask: str, x0: float, y0: float) -> Path:
    """The psfmask reference of the subarray (PsfMaskModel, as stdatamodels writes it)."""
    from ...models.classes import PsfMaskModel

    t = transmission((setup.ysize, setup.xsize), x0, y0)
    m = PsfMaskModel(data=(t > 0.5).astype(np.float32))
    meta = m.meta
    meta.reftype, meta.pedigree, meta.useafter = "PSFMASK", "DUMMY", "2014-01-01T00:00:00"
    meta.description, meta.author = f"Simulated {mask} PSF mask, {setup.subarray}", "webbflow simulator"
    meta.telescope, meta.instrument.name, meta.instrument.detector = "JWST", "NIRCAM", setup.detector
    meta.instrument.filter, meta.instrument.coronagraph, meta.exposure.type = setup.filter, mask, "NRC_CORON"
    s = meta.subarray
    s.name, s.xstart, s.ystart, s.xsize, s.ysize = setup.subarray, setup.xstart, setup.ystart, setup.xsize, setup.ysize
    s.fastaxis, s.slowaxis = setup.fastaxis, setup.slowaxis
    path.parent.mkdir(parents=True, exist_ok=True)
    m.save(path)
    return path


def add_psfmask_rule(root: Path, setup, mask: str, x0: float, y0: float) -> str:
    """Write the psfmask into the cache at ``root`` and a new context whose rules select it."""
    from ..context import Rmap, read_context, reference_path, write_context

    ctx = read_context(root)
    name = "jwst_nircam_psfmask_0001.fits"
    old = ctx.rmaps.get("NIRCAM", {}).get("psfmask")
    entries = dict(old.entries) if old is not None else {}
    key = ("NRC_CORON", setup.filter, mask, setup.subarray)
    if key in entries:
        name = entries[key]
    else:
        k = 1
        while reference_path(root, name).exists() or name in entries.values():
            k += 1
            name = f"jwst_nircam_psfmask_{k:04d}.fits"
        entries[key] = name
    write_psfmask(reference_path(root, name), setup, mask, x0, y0)
    rules = {ins: dict(r) for ins, r in ctx.rmaps.items()}
    rules.setdefault("NIRCAM", {})["psfmask"] = Rmap("NIRCAM", "psfmask", PSFMASK_PARKEYS, entries)
    return write_context(root, rules, "webbflow simulated coronagraphy (psfmask)").context


@dataclasses.dataclass(frozen=True)
class CoronScene:
    """What differs between the coronagraphs: the star and companion, the mask and its reference."""

    exp_type: str
    mask: str  # CORONMSK
    fwhm_px: float
    sky_wavelength_um: float
    star_factor: float  # the star's rate, in units of the rate that saturates without the mask
    companion_factor: float
    companion_offset: tuple[float, float]  # from the star, science frame (x, y)
    transmission: Callable[[tuple[int, int], float, float], np.ndarray]  # (shape, x0, y0) -> mask
    add_psfmask_rule: Callable[..., str]  # (root, setup, mask, x0, y0) -> the new context
    pupil: str | None = None


def observe(output_dir, setup, scene: CoronScene, *, nexp=2, seed=0, target_ra=53.1625, target_dec=-27.7914,
            pa_v3=30.0, program="01234", observation=1, start_time="2024-01-15T03:00:00", build_refs=True,
            reference_seed=0):
    """Simulate a coronagraphic observation: a science exposure of the star behind the mask with
    a companion, ``nexp`` PSF-reference exposures, the truth, the pool and the associations."""
    import contextlib

    from astropy.table import Table

    from ...flows.asn.engine import generate, write_associations
    from ...flows.asn.mkpool import make_pool, write_pool
    from ...flows.asn.pool import read_pool
    from ...models import Level1bModel
    from .. import simulator as sim

    out = Path(output_dir).absolute()  # the pool is written from inside the folder
    out.mkdir(parents=True, exist_ok=True)
    n_psf = max(1, int(nexp or 2))
    prog, obs = f"{int(program):05d}", f"{int(observation):03d}"
    t0 = _dt.datetime.fromisoformat(start_time)
    roles = [("science", sim.ObservationIds(program=prog, observation=obs, visit="001", visit_group="03",
                                            activity="05"), 1, (0.0, 0.0))]
    for i in range(n_psf):
        roles.append(("psf", sim.ObservationIds(program=prog, observation=obs, visit="002", visit_group="03",
                                                activity="05"), i + 1, PSF_OFFSETS_PX[i % 4]))
    pnt = sim.make_pointing(setup, target_ra, target_dec, pa_v3, 0.0, 0.0)
    models, names = [], []
    t = t0
    for role, ids, number, _off in roles:
        model = Level1bModel()
        sim.fill_metadata(model, setup, ids, pnt, number, 1 if role == "science" else n_psf, t, target_ra, target_dec)
        m = model.meta
        m.exposure.type = scene.exp_type
        m.exposure.psf_reference = role == "psf"
        if scene.pupil is not None:
            m.instrument.pupil = scene.pupil
        m.instrument.coronagraph = scene.mask
        m.subarray.name = setup.subarray
        m.dither.primary_type = "NONE"
        m.target.proposer_name = "HD-0000" if role == "science" else "HD-0001"
        m.target.catalog_name = m.target.proposer_name
        names.append(sim.exposure_filename(setup, ids, number, t))
        m.filename = names[-1]
        models.append(model)
        t = t + _dt.timedelta(seconds=setup.duration + 60.0)

    context = None
    if build_refs:
        refs, context = sim._build_and_open_references(models, setup, out, reference_seed)
    else:
        refs = sim._reference_models(models[0], setup, seed=reference_seed)
    pixmap = sim.PixelMap(setup, refs)
    photmjsr, pixar_sr, _src = sim._photometry(refs, setup)
    well = sim._median_full_well(refs, setup)
    fw = scene.fwhm_px
    rate_sat = well / (sim.peak_fraction(fw) * setup.effinttm)
    sky_rate = sim.sky_surface_brightness(scene.sky_wavelength_um) / photmjsr
    x0, y0 = setup.xref_sci - 1.0, setup.yref_sci - 1.0  # the mask's centre, 0-based subarray pixels
    shape = (setup.ysize, setup.xsize)
    trans = scene.transmission(shape, x0, y0)
    star_rate, comp_rate = scene.star_factor * rate_sat, scene.companion_factor * rate_sat
    cx, cy = x0 + scene.companion_offset[0], y0 + scene.companion_offset[1]

    uncal = []
    for k, ((role, _ids, _n, (dx, dy)), model) in enumerate(zip(roles, models)):
        scale = 1.0 if role == "science" else 0.9 + 0.05 * k
        img = sim.render_stars(shape, np.array([x0 + dx]), np.array([y0 + dy]), np.array([star_rate * scale]), fw)
        img = img * trans
        if role == "science":
            img = img + sim.render_stars(shape, np.array([cx]), np.array([cy]), np.array([comp_rate]), fw)
        model.meta.wcsinfo.s_region = sim.s_region(setup, pixmap, pnt)
        exp = sim.simulate_ramps(setup, img + sky_rate, refs, seed, k, sim.COSMIC_RAY_RATE, 1, reference_seed)
        model.data = exp.data
        path = out / names[k]
        model.save(path)
        uncal.append(path)

    # the truth: where the companion is, on the sky and in the science exposure
    v2, v3 = pixmap.to_v2v3(setup.col_map[0] + np.array([cx]), setup.row_map[0] + np.array([cy]))
    ra, dec = sim.tel_to_sky(pnt.attitude, v2, v3)
    truth_dir = out / "truth"
    truth_dir.mkdir(exist_ok=True)
    tab = Table({"exposure": [names[0]], "x": [cx], "y": [cy], "ra": [float(np.ravel(ra)[0])],
                 "dec": [float(np.ravel(dec)[0])], "rate_dn_s": [comp_rate],
                 "flux_mjy_sr_px": [comp_rate * photmjsr]})
    tab.meta.update({"star_x": x0, "star_y": y0, "star_rate_dn_s": star_rate, "mask": scene.mask,
                     "subarray": setup.subarray, "photmjsr": photmjsr, "pixar_sr": pixar_sr})
    catalog = truth_dir / "companion.ecsv"
    tab.write(catalog, format="ascii.ecsv", overwrite=True)

    # the associations jwst's rules make from the exposures' pool
    with contextlib.chdir(out):  # the pool names its members relative to its folder
        pool_table = make_pool([p.name for p in uncal])
        pool_path = write_pool(pool_table, out / f"jw{prog}_{t0.strftime('%Y%m%dt%H%M%S')}_pool.csv")
        asns = write_associations(generate(read_pool(pool_path.name)), out)
    level2 = [Path(p) for p in asns if "image2" in Path(p).name]
    level3 = [Path(p) for p in asns if "coron3" in Path(p).name]

    if build_refs:
        context = scene.add_psfmask_rule(out, setup, scene.mask, x0, y0)
    result = sim.SimulationResult(output_dir=out, uncal=uncal, catalog=catalog, cosmic_rays=pool_path,
                                  asn_level2=level2, asn_level3=level3[0] if level3 else None, setup=setup)
    if build_refs:
        result.context, result.crds_path = context, out
    return result


def simulate_coron(output_dir, detector=None, subarray=None, ngroups=None, nints=None, nexp=2, seed=0,
                   filter=None, readpatt=None, target_ra=53.1625, target_dec=-27.7914, pa_v3=30.0,  # noqa: A002
                   program="01234", observation=1, start_time="2024-01-15T03:00:00", build_refs=True,
                   reference_seed=0, **_ignored):
    """Simulate one NIRCam coronagraphic observation; returns the simulator's SimulationResult."""
    setup, mask = coron_setup(detector, subarray, ngroups, nints, filter, readpatt)
    scene = CoronScene(
        exp_type="NRC_CORON", mask=mask, pupil="MASKRND",
        fwhm_px=setup.fwhm_arcsec / math.sqrt(setup.xscale * setup.yscale), sky_wavelength_um=setup.wavelength,
        star_factor=30.0,  # a bright star: saturating without the mask, well exposed behind it
        companion_factor=0.25, companion_offset=COMPANION_OFFSET_PX, transmission=transmission,
        add_psfmask_rule=add_psfmask_rule)
    return observe(output_dir, setup, scene, nexp=nexp, seed=seed, target_ra=target_ra, target_dec=target_dec,
                   pa_v3=pa_v3, program=program, observation=observation, start_time=start_time,
                   build_refs=build_refs, reference_seed=reference_seed)
