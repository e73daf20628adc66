"""NIRISS aperture masking interferometry (NIS_AMI): a target with a faint companion and a
calibrator star behind the non-redundant mask.

Two observations of the same program, one exposure each: the target (observation 1) and the
point-source calibrator (observation 2, IS_PSF = T), SUB80, NISRAPID, in F380M, F430M or
F480M with PUPIL = NRM.  The scene is the mask's polychromatic interferometric image
(:func:`webbflow.refs.synthetic_ami.scene`: the holes' Fourier transforms summed over the
filter), put where the subarray's reference point is, with a sky background; the ramps get the
detector signatures of the synthetic references as every simulated exposure does.

Written: the uncal exposures, the pool and the associations jwst's rules make from it (an image2
association per exposure and the level-3 ami3 association with science and psf members), the
references and a CRDS cache (the detector references, and nrm and throughput), and
``truth/`` with the companion and the binary's squared visibilities and closure phases.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
from pathlib import Path

import numpy as np
from astropy.io import fits

from ...errors import ParameterError

AMI_FILTERS = ("F380M", "F430M", "F480M")
# the target (with its companion: rows, columns in pixels, contrast) and the calibrator
TARGET = dict(name="AB-DOR", ra=82.1869, dec=-65.4476, companion=(2.0, 1.5, 0.05), seed=1)
CALIBRATOR = dict(name="HD-37093", ra=82.9890, dec=-65.2950, companion=None, seed=2)
PEAK_FILL = 0.35  # the PSF's peak reaches this fraction of the full well at the last group


def simulate_ami(output_dir, *, filter=None, ngroups=None, nints=None, seed=0,  # noqa: A002
                 program="01093", pa_v3=253.0, start_time="2024-01-15T03:00:00", build_refs=True,
                 reference_seed=0, subarray=None, readpatt=None, nexp=1):
    """Simulate the AMI target and calibrator (see the module's description); returns the
    simulator's :class:`SimulationResult`."""
    from .. import simulator as sim
    from ..synthetic_ami import scene, write_ami_references
    from ...models import Level1bModel

    filt = (filter or "F480M").upper()
    if filt not in AMI_FILTERS:
        raise ParameterError(f"NIS_AMI is simulated in {', '.join(AMI_FILTERS)} (got {filter!r})")
    if subarray not in (None, "SUB80") or (readpatt or "NISRAPID").upper() != "NISRAPID" or nexp != 1:
        raise ParameterError("NIS_AMI is simulated as one SUB80 NISRAPID exposure per star (no --subarray, --readpatt or --nexp)")
    # the SIAF's AMI1 aperture is the SUB80 subarray the AMI exposures read
    base = sim.make_setup("niriss", "NIS", None, "AMI1", ngroups or 5, nints or 3, filt, None, "NISRAPID", None)
    setup = dataclasses.replace(base, exp_type="NIS_AMI", pupil="NRM", subarray="SUB80")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    t = _dt.datetime.fromisoformat(start_time)
    stars = (TARGET, CALIBRATOR)
    models, names, ids_all = [], [], []
    for k, star in enumerate(stars, start=1):
        ids = sim.ObservationIds(program=f"{int(program):05d}", observation=f"{k:03d}", visit="001")
        pnt = sim.make_pointing(setup, star["ra"], star["dec"], pa_v3, 0.0, 0.0)
        model = Level1bModel()
        sim.fill_metadata(model, setup, ids, pnt, 1, 1, t, star["ra"], star["dec"])
        model.meta.target.proposer_name = model.meta.target.catalog_name = star["name"]
        h = model._headers.setdefault("PRIMARY", fits.Header())
        model.meta.exposure.psf_reference = star is CALIBRATOR  # IS_PSF
        h["MU_RA"], h["MU_DEC"] = 0.0, 0.0
        h["TARGURA"], h["TARGUDEC"] = 0.01, 0.01
        names.append(sim.exposure_filename(setup, ids, 1, t))
        model.meta.filename = names[-1]
        models.append(model)
        ids_all.append(ids)
        t = t + _dt.timedelta(seconds=setup.duration + 600.0)

    context = None
    if build_refs:
        refs, context = sim._build_and_open_references(models, setup, out, reference_seed)
        write_ami_references(out, (filt,))
        from ..context import current_context

        context = current_context(out)
    else:
        refs = sim._reference_models(models[0], setup, seed=reference_seed)
    well = sim._median_full_well(refs, setup)
    peak_rate = PEAK_FILL * well / setup.effinttm
    sky = 2.0  # DN/s per pixel
    # the star sits on the subarray's reference point (as the AMI aperture places it)
    x_off = float(setup.xref_sci) - 1 - (setup.xsize / 2 - 0.5)
    y_off = float(setup.yref_sci) - 1 - (setup.ysize / 2 - 0.5)
    uncal = []
    truth_rows = []
    rng = np.random.default_rng(seed)
    for k, (model, star) in enumerate(zip(models, stars)):
        jitter = rng.uniform(-0.3, 0.3, 2)
        offset = (x_off + jitter[0], y_off + jitter[1])
        img = scene(filt, setup.xsize, offset, star["companion"])
        rate = (img * peak_rate + sky).astype(np.float32)
        exp = sim.simulate_ramps(setup, rate, refs, seed + star["seed"], k, min_cosmic_rays=0, cosmic_ray_rate=0.0,
                                 reference_seed=reference_seed)
        model.data = exp.data
        path = out / names[k]
        model.save(path)
        uncal.append(path)
        truth_rows.append(dict(exposure=names[k], star=star["name"], x=setup.xsize / 2 - 0.5 + offset[0],
                               y=setup.ysize / 2 - 0.5 + offset[1], peak_rate=peak_rate, companion=star["companion"]))

    truth = _write_truth(out / "truth", filt, truth_rows)
    asn2, asn3 = _associations(out, uncal)
    result = sim.SimulationResult(output_dir=out, uncal=uncal, catalog=truth, cosmic_rays=truth,
                                  asn_level2=asn2, asn_level3=asn3, setup=setup)
    if build_refs:
        result.context, result.crds_path = context, out
    return result


def _associations(out: Path, uncal: list[Path]):
    """The pool of the exposures and the associations jwst's rules make from it."""
    from ...flows.asn.engine import generate, write_associations
    from ...flows.asn.mkpool import make_pool, write_pool
    from ...flows.asn.pool import read_pool

    program = uncal[0].name[2:7]
    pool_path = out / f"jw{program}_pool.csv"
    write_pool(make_pool(uncal), pool_path)
    # the pool names members by file name, relative to the association's folder
    text = pool_path.read_text()
    for p in uncal:
        text = text.replace(str(p), p.name)
    pool_path.write_text(text)
    asns = generate(read_pool(pool_path))
    written = write_associations(asns, out)
    lv2 = [Path(p) for p in written if "_image2_" in Path(p).name]
    lv3 = [Path(p) for p in written if "_ami3_" in Path(p).name]
    return lv2, (lv3[0] if lv3 else None)


def _write_truth(folder: Path, filt: str, rows) -> Path:
    from ...tasks._ami_lg import hole_centres
    from ..synthetic_ami import HOLES_AS_DESIGNED, binary_observables

    folder.mkdir(parents=True, exist_ok=True)

    class _Nrm:
        pass

    nrm = _Nrm()
    for i, (x, y) in enumerate(HOLES_AS_DESIGNED, start=1):
        setattr(nrm, f"x_a{i}", float(x))
        setattr(nrm, f"y_a{i}", float(y))
    ctrs = hole_centres(nrm)
    stars = []
    for r in rows:
        comp = r["companion"]
        entry = {k: v for k, v in r.items() if k != "companion"}
        if comp is not None:
            v2, cp = binary_observables(ctrs, filt, comp)
            entry["companion"] = {"d_row_px": comp[0], "d_col_px": comp[1], "contrast": comp[2]}
        else:
            v2, cp = np.ones(21), np.zeros(35)
        entry["vis2"] = [float(v) for v in v2]
        entry["closure_phases_deg"] = [float(c) for c in cp]
        stars.append(entry)
    path = folder / "ami_truth.json"
    path.write_text(json.dumps({
        "filter": filt,
        "note": "squared visibilities and closure phases at the filter's centre wavelength, in the order of "
                "the OI_VIS2 and OI_T3 rows (baselines and triples of holes 1..7 in increasing order); the "
                "calibrated closure phases of the target (ami3's aminorm-oi) follow closure_phases_deg",
        "stars": stars}, indent=2))
    return path
