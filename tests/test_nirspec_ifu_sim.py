"""NIRSpec IFU simulated (refs/sim/nirspec_ifu.py) and calibrated to the cal by jwst 3.0 and by webbflow.

One simulation (PRISM/CLEAR on NRS1, FULL frame, NRSRAPID, 3 groups, two points of the CYCLING dither: the
simulator's default is four, two keep the CI budget) with its CRDS cache and the associations jwst's rules
make.  Always run: the simulation's own checks (headers, the truth, light only in the slices, the target
where the WCS puts it), its associations against jwst's asn_generate, the references CRDS selects from its
cache (opened by stdatamodels as jwst's models), the NRS_IFU spec2 steps to the cal on one exposure
(jwst's AssignWcs, SrcType, FlatField and Photom steps against webbflow's, with the cache's references: the
flat per slice and photom's per-pixel conversion, the arrays compared), and on those cals jwst's
CubeBuildStep and Extract1dStep against webbflow's cube_build and extract_1d over 1.0-1.5 um (spec3's
settings: the field-of-view DQ flagging on), the s3d and x1d compared whole.

``WEBBFLOW_NRS_IFU_FULL=1`` adds jwst as its users run it, from the associations' folder with CRDS_PATH on
the simulation: ``calwebb_detector1`` on each uncal, ``calwebb_spec2`` on each association and
``calwebb_spec3`` on the spec3 association; webbflow's spec2 on jwst's rates and its spec3 on its cals;
the cal, s3d and x1d of the first exposure and spec3's cube and spectrum compared whole.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from simrun import simulate_into
from test_products_whole import _quiet, compare_fits

pytestmark = pytest.mark.real  # the simulator places light through the real optical references in ../shared/data

SIM = dict(instrument="nirspec", exp_type="NRS_IFU", nexp=2, ngroups=3, seed=3)
FULL = os.environ.get("WEBBFLOW_NRS_IFU_FULL") == "1"
CUBE_PARS = {"wavemin": 1.0, "wavemax": 1.5}  # 101 planes of the PRISM cube


@pytest.fixture(scope="session")
def ifu(tmp_path_factory):
    return simulate_into(tmp_path_factory, "nrs_ifu_sim", SIM)


def _first_asn(sim) -> Path:
    """The spec2 association of the first exposure."""
    first = sim.uncal[0].name.replace("_uncal", "_rate")
    for a in sim.asn_level2:
        if any(m["expname"] == first for p in json.loads(Path(a).read_text())["products"] for m in p["members"]):
            return Path(a)
    raise AssertionError("no spec2 association for the first exposure")


# ---------------------------------------------------------------------------
# the simulation


def test_ifu_simulation_is_a_dithered_ifu_observation(ifu):
    from astropy.io import fits
    from astropy.table import Table

    sim = ifu.sim
    assert len(sim.uncal) == 2
    for k, u in enumerate(sim.uncal):
        with fits.open(u) as h:
            p = h[0].header
            assert (p["EXP_TYPE"], p["DETECTOR"], p["GRATING"], p["FILTER"], p["SUBARRAY"], p["READPATT"]) == (
                "NRS_IFU", "NRS1", "PRISM", "CLEAR", "FULL", "NRSRAPID")
            assert (p["PATTTYPE"], p["PATT_NUM"], p["NUMDTHPT"], p["SRCTYAPT"], p["APERNAME"]) == (
                "CYCLING", k + 1, 2, "POINT", "NRS_FULL_IFU")
            assert h["SCI"].data.shape == (1, 3, 2048, 2048) and h["SCI"].data.dtype.kind == "u"
            assert h["SCI"].header["S_REGION"].startswith("POLYGON ICRS")
    truth = Table.read(sim.catalog)
    assert truth["wavelength"].unit == "um" and truth["flux"].unit == "Jy"
    assert str(truth["extended_peak"].unit) == "MJy / sr"
    assert truth["wavelength"].min() <= 0.6 and truth["wavelength"].max() >= 5.3 and np.all(truth["flux"] > 0)
    assert len(truth.meta["exposures"]) == 2 and truth.meta["patttype"] == "CYCLING"


@pytest.fixture(scope="session")
def geometry(ifu):
    """The simulated exposures' slices, as the simulator placed light through them."""
    from webbflow.models import Level1bModel
    from webbflow.refs.sim import nirspec_ifu as S

    refs = {p.name.split("_")[2]: p for p in (ifu.cache / "references" / "jwst" / "nirspec").iterdir()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = Level1bModel(str(ifu.sim.uncal[0]))
    full = S._slice_keyed_wcs(model, refs)
    return full, S.slice_pixels(full)


def test_light_falls_in_the_slices_and_the_target_where_the_wcs_puts_it(ifu, geometry):
    """The first group-to-last difference: the slices' pixels hold the light, pixels outside them read
    noise, dark and cosmic rays; the point source's brightest pixels are in the slices whose sky footprint
    holds the target."""
    from astropy.io import fits

    from webbflow.refs import simulator as S

    full, slices = geometry
    inside = np.zeros((2048, 2048), bool)
    for s in slices:
        inside[s.y, s.x] = True
    assert 300_000 < inside.sum() < 500_000
    from webbflow.refs.sim.nirspec import _Aim

    hdr0 = fits.getheader(ifu.sim.uncal[0])
    ra, dec = hdr0["TARG_RA"], hdr0["TARG_DEC"]
    for u in ifu.sim.uncal:
        sci = fits.getdata(u, "SCI").astype(np.float64)
        diff = sci[0, -1] - sci[0, 0]
        # the slices' brightest pixels (the source, the blob's line: ~1000 DN) against the brightest outside
        # them (noise, hot pixels, cosmic rays: ~60 DN)
        assert np.percentile(diff[inside], 99.9) > 10 * np.percentile(diff[~inside], 99.9)
        # the target through the exposure's attitude to v2v3: the slice whose footprint holds it, and its
        # neighbours across (the PSF is about a slice wide)
        with fits.open(u) as h:
            hdr = {**h[0].header, **h["SCI"].header}
        setup = _Aim(hdr["V2_REF"], hdr["V3_REF"], hdr["V3I_YANG"], hdr["VPARITY"])
        pointing = S.make_pointing(setup, ra, dec, hdr["PA_V3"], hdr["XOFFSET"], hdr["YOFFSET"])
        tv = np.array(S.sky_to_tel(pointing.attitude, ra, dec), float)
        hits, near = [], []
        for n, s in enumerate(slices):
            d = tv[:, None] - s.centre
            du, dv = np.abs((d * s.across).sum(0)), np.abs((d * s.along).sum(0))
            if np.any((du <= s.width / 2) & (dv <= s.height / 2)):
                hits.append(n)
            if np.any((du <= 1.5 * s.width) & (dv <= s.height / 2)):
                near.append(n)
        # (a target on the line between two slices is in both)
        assert len(hits) in (1, 2) and 2 <= len(near) <= 4 and set(hits) <= set(near)
        bright = np.unravel_index(np.argsort(np.where(inside, diff, -np.inf), axis=None)[-50:], diff.shape)
        in_target = np.zeros((2048, 2048), bool)
        for n in near:
            in_target[slices[n].y, slices[n].x] = True
        assert in_target[bright].mean() > 0.8


@pytest.mark.parity
def test_the_associations_are_those_jwsts_rules_make_from_the_pool(ifu):
    from jwst.associations import AssociationPool
    from jwst.associations.main import Main
    from parity import quiet_jwst

    def strip(asn):
        return {k: v for k, v in asn.items() if k not in ("constraints", "code_version")}

    (pool,) = ifu.sim.output_dir.glob("*_pool.csv")
    with quiet_jwst():
        gen = Main.cli(["--dry-run", "--version-id", "20240115t030000"], pool=AssociationPool.read(str(pool)))
    theirs = {a.asn_name + ".json": strip(json.loads(a.dump(format="json")[1])) for a in gen.associations}
    ours = {Path(p).name: strip(json.loads(Path(p).read_text())) for p in [*ifu.sim.asn_level2, ifu.sim.asn_level3]}
    assert ours == theirs
    rules = sorted(a["asn_rule"] for a in ours.values())
    assert rules == ["candidate_Asn_Lv2Spec", "candidate_Asn_Lv2Spec", "candidate_Asn_Lv3NRSIFU"]


IFU_REFTYPES = {"fflat": "NirspecFlatModel", "sflat": "NirspecFlatModel", "dflat": "NirspecFlatModel",
                "photom": "NrsMosPhotomModel", "area": "NirspecIfuAreaModel", "cubepar": "NirspecIFUCubeParsModel",
                "extract1d": "Extract1dIFUModel", "apcorr": "NrsIfuApcorrModel", "ifuslicer": "IFUSlicerModel", "ifufore": "IFUFOREModel",
                "ifupost": "IFUPostModel", "chromcorr": "ChromCorrModel", "camera": "CameraModel",
                "collimator": "CollimatorModel", "disperser": "DisperserModel", "fore": "FOREModel",
                "fpa": "FPAModel", "ote": "OTEModel", "wavelengthrange": "WavelengthrangeModel"}
NA_REFTYPES = ("msa", "msaoper", "pathloss", "wavecorr", "barshadow")


@pytest.mark.parity
def test_crds_selects_every_ifu_reference_from_the_cache(ifu):
    """CRDS (the cache's own rules) selects a file of the cache for every reference type jwst's NRS_IFU
    spec2 reads, N/A for those the simulation leaves out; stdatamodels opens each as jwst's model."""
    from parity import jwst_offline
    from stdatamodels.jwst import datamodels as dm

    from webbflow.refs.select import bestrefs

    with jwst_offline(ifu.cache, ifu.context):
        best = bestrefs(ifu.sim.uncal[0], reftypes=[*IFU_REFTYPES, *NA_REFTYPES])
    chosen = best.choices
    refs = ifu.cache / "references" / "jwst" / "nirspec"
    for rt in NA_REFTYPES:
        assert chosen[rt].kind == "n/a", rt
    for rt, cls in IFU_REFTYPES.items():
        assert chosen[rt].kind == "file", rt
        path = refs / Path(chosen[rt].value).name
        assert path.exists(), rt
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with dm.open(path) as m:
                assert type(m).__name__ == cls, (rt, type(m).__name__)
                if rt == "area":
                    assert list(m.area_table["slice_id"]) == list(range(30))
                    assert np.all((m.area_table["pixarea"] > 0.005) & (m.area_table["pixarea"] < 0.02))
                if rt == "apcorr":
                    t = m.apcorr_table
                    assert (t.grating, t.filter, t.radius_units) == ("PRISM", "CLEAR", "arcsec")
                    assert t.radius.shape == t.apcorr.shape == (5, t.wavelength.size)
                    assert np.all(t.apcorr >= 1.0)
                if rt == "photom":
                    assert ("CLEAR", "PRISM") in {(r["filter"], r["grating"]) for r in m.phot_table}


@pytest.mark.parametrize("argv, message", [
    (["--grating", "G395H", "--filter", "F290LP"], "only PRISM/CLEAR"),
    (["--detector", "NRS2"], "simulated on NRS1"),
    (["--subarray", "SUB512"], "FULL frame"),
    (["--nexp", "5"], "2 to 4 points"),
    (["--slit", "S200A1"], "--slit is for NIRSpec fixed slits"),
])
def test_bad_ifu_simulation_options_fail_in_one_line(tmp_path, capsys, argv, message):
    from webbflow.flows.cli import main

    out = tmp_path / "sim"
    rc = main(["simulate", "--instrument", "nirspec", "--exp-type", "NRS_IFU", "--output-dir", str(out), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and message in err[0] and "Traceback" not in err[0]
    assert not out.exists()


# ---------------------------------------------------------------------------
# the spec2 steps to the cal, against jwst's (always run)


def ifu_rate(uncal: Path, folder: Path) -> Path:
    """A count-rate image of the exposure ``uncal`` (last group minus first over their time), with
    variances, as an NRS_IFU rate file in ``folder`` (what jwst's detector1 writes, without its detector steps)."""
    from webbflow import models

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = models.open(str(uncal))
    sci = np.asarray(raw.data, np.float64)
    dt = raw.meta.exposure.group_time * (sci.shape[1] - 1)
    data = ((sci[0, -1] - sci[0, 0]) / dt).astype(np.float32)
    m = models.IFUImageModel(data=data)
    m.meta = raw.meta.model_copy(deep=True)
    m.meta.model_type = "IFUImageModel"
    m.meta.bunit_data = m.meta.bunit_err = "DN/s"
    m.dq = np.zeros(data.shape, np.uint32)
    m.var_poisson = (np.abs(data) / (dt * 1.0)).astype(np.float32)
    m.var_rnoise = np.full(data.shape, 2.0 / dt**2 * 36.0, np.float32)
    m.err = np.sqrt(m.var_poisson + m.var_rnoise).astype(np.float32)
    folder.mkdir(exist_ok=True)
    path = folder / uncal.name.replace("_uncal", "_rate")
    m.meta.filename = path.name
    m.save(path)
    return path


def jwst_cal(rate: Path, out: Path):
    """jwst's AssignWcs, SrcType, FlatField and Photom steps on ``rate`` (CRDS as set around the call);
    the cal model, saved as ``out`` when given."""
    from jwst.assign_wcs import AssignWcsStep
    from jwst.flatfield import FlatFieldStep
    from jwst.photom import PhotomStep
    from jwst.srctype import SourceTypeStep

    m = AssignWcsStep.call(str(rate))
    m = SourceTypeStep.call(m)
    m = FlatFieldStep.call(m)
    m = PhotomStep.call(m)
    if out is not None:
        m.save(out)
    return m


@pytest.fixture(scope="module")
def rate_path(ifu):
    """The first exposure's rate (:func:`ifu_rate`)."""
    return ifu_rate(ifu.sim.uncal[0], ifu.root / "steps")


@pytest.fixture(scope="module")
def steps_pair(ifu, rate_path):
    """jwst's AssignWcs, SrcType, FlatField and Photom steps, and webbflow's, on the rate (CRDS: the cache)."""
    from webbflow import models
    from webbflow.tasks import load_all
    from webbflow.tasks.base import run_step

    chain = ("assign_wcs", "srctype", "flat_field", "photom")

    def theirs():
        return jwst_cal(rate_path, None)

    def ours():
        load_all()
        m = models.open(str(rate_path))
        assert isinstance(m, models.IFUImageModel)
        for s in chain:
            m = run_step(s, m, {}).model
        return m

    return _quiet(ours, ifu.cache, ifu.context), _quiet(theirs, ifu.cache, ifu.context)


@pytest.mark.parity
def test_flat_field_and_photom_of_the_slices_match_jwst(steps_pair):
    """The cal's arrays after assign_wcs, srctype, flat_field and photom: SCI, ERR and the variances within
    rtol 1e-5 where finite (NaN at the same pixels), DQ equal; the photometry keywords equal."""
    ours, theirs = steps_pair
    worst = {}
    assert ours.meta.cal_step.flat_field == theirs.meta.cal_step.flat_field == "COMPLETE"
    assert ours.meta.cal_step.photom == theirs.meta.cal_step.photom == "COMPLETE"
    assert ours.meta.bunit_data == theirs.meta.bunit_data == "MJy/sr"
    for attr in ("data", "err", "var_poisson", "var_rnoise", "var_flat"):
        a, b = np.asarray(getattr(ours, attr)), np.asarray(getattr(theirs, attr))
        assert a.dtype.newbyteorder("=") == b.dtype.newbyteorder("="), attr
        assert np.array_equal(np.isnan(a), np.isnan(b)), attr
        ok = np.isfinite(b)
        assert ok.sum() > 300_000, attr
        np.testing.assert_allclose(a[ok], b[ok], rtol=1e-5, atol=0, err_msg=attr)
        worst[attr] = float(np.max(np.abs(a[ok] - b[ok]) / np.maximum(np.abs(b[ok]), 1e-30)))
    assert np.array_equal(ours.dq, theirs.dq)
    print("largest relative differences from jwst:", ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))
    po, pt = ours.meta.photometry, theirs.meta.photometry
    for k in ("conversion_megajanskys", "conversion_microjanskys", "pixelarea_arcsecsq", "pixelarea_steradians"):
        assert getattr(po, k) == pytest.approx(getattr(pt, k), rel=1e-7), k


# ---------------------------------------------------------------------------
# cube_build and extract_1d on the cals, against jwst's (always run)


@pytest.fixture(scope="module")
def cube_pair(ifu, steps_pair):
    """jwst's CubeBuildStep and Extract1dStep on jwst's cal, webbflow's cube_build and extract_1d on
    webbflow's (1.0-1.5 um, the field-of-view DQ flagging on), each saved under the same names."""
    from webbflow.tasks import load_all
    from webbflow.tasks.base import run_step

    ours_cal, theirs_cal = steps_pair
    folder = ifu.root / "cubes"
    paths = {}
    for side in ("ours", "jwst"):
        (folder / side).mkdir(parents=True, exist_ok=True)
        paths[side] = (folder / side / "cube_s3d.fits", folder / side / "cube_x1d.fits")

    def theirs():
        from jwst.cube_build import CubeBuildStep
        from jwst.extract_1d import Extract1dStep

        cubes = CubeBuildStep.call(theirs_cal, **CUBE_PARS)
        assert len(cubes) == 1
        names = [c.meta.filename for c in cubes]
        cubes[0].save(paths["jwst"][0])
        Extract1dStep.call(cubes[0]).save(paths["jwst"][1])
        return names

    def ours():
        load_all()
        cubes = run_step("cube_build", ours_cal, dict(CUBE_PARS)).model
        assert len(cubes) == 1
        names = [c.meta.filename for c in cubes]
        cubes[0].save(paths["ours"][0])
        run_step("extract_1d", cubes[0], {}).model.save(paths["ours"][1])
        return names

    names = (_quiet(ours, ifu.cache, ifu.context), _quiet(theirs, ifu.cache, ifu.context))
    return paths, names


def _cube_agreement(ours: Path, theirs: Path) -> dict:
    """The fraction of spaxels within rtol 1e-4 (NaN where jwst has NaN) of each cube array."""
    from test_mrs_extract import _arrays_agree

    return _arrays_agree(ours, theirs, ("SCI", "ERR", "DQ", "WMAP"))


@pytest.mark.parity
def test_nirspec_cube_and_spectrum_match_jwst(cube_pair):
    """The cube of one exposure (jwst's name, grid, WCS keywords, SCI, ERR, DQ with the field-of-view
    flagging, WMAP) and its x1d, compared whole; the spaxels within rtol 1e-4 for at least 99.9 %."""
    from astropy.io import fits

    paths, (ours_names, their_names) = cube_pair
    # jwst's step names its cube in memory without the suffix (stpipe adds it when saving)
    assert ours_names == [n + "_s3d.fits" for n in their_names], (ours_names, their_names)
    assert ours_names[0].endswith("_nrs1_prism-clear_s3d.fits"), ours_names
    agree = _cube_agreement(paths["ours"][0], paths["jwst"][0])
    print("spaxels within rtol 1e-4 of jwst's:", agree)
    assert min(agree.values()) >= 0.999, agree
    with fits.open(paths["jwst"][0]) as h:
        dq = h["DQ"].data
        assert h["SCI"].data.shape[0] == 101
        assert (dq == 0).sum() > 50_000 and (dq != 0).sum() > 10_000  # data, and the field's edges flagged
    problems: list[str] = []
    for k in (0, 1):
        compare_fits(paths["jwst"][k].name, paths["ours"][k], paths["jwst"][k], problems)
    # the steps run here on in-memory models, outside either program's pipeline: the primary keywords a
    # pipeline run sets around its steps (software and CRDS versions, assign_wcs's N/A distortion and
    # filteroffset records, the input file's FILETYPE) are compared by the whole spec2 and spec3 runs
    # (WEBBFLOW_NRS_IFU_FULL), not here
    around = {"CAL_VCS", "CAL_VER", "CRDS_CTX", "CRDS_VER", "R_DISTOR", "R_FILOFF", "FILETYPE"}

    def pipeline_keywords_only(problem: str) -> bool:
        if "[PRIMARY]: keywords" not in problem:
            return False
        listed = problem.split(": ", 2)[-1].strip("[]").replace("'", "").split(", ")
        return set(listed) <= around

    problems = [p for p in problems if not pipeline_keywords_only(p)]
    assert not problems, "\n".join(["the cube or spectrum differs from jwst's:"] + problems)


# ---------------------------------------------------------------------------
# spec2 and spec3, whole (opt-in)


@pytest.fixture(scope="session")
def full_pair(ifu):
    """jwst: detector1 on each uncal, spec2 on each association, spec3, from the associations' folder;
    webbflow: spec2 on jwst's rates, spec3 on its own cals."""
    if not FULL:
        pytest.skip("jwst's detector1, spec2 and spec3 on full NRS_IFU frames exceed CI's budget: "
                    "WEBBFLOW_NRS_IFU_FULL=1 runs them")
    from simrun import strun, webbflow_run

    sim = ifu.sim
    jw = ifu.root / "jwst"
    jw.mkdir(exist_ok=True)
    for f in (*sim.uncal, *sim.asn_level2, sim.asn_level3):
        shutil.copy2(f, jw / Path(f).name)
    calls = [("calwebb_detector1", u.name) for u in sim.uncal]
    calls += [("calwebb_spec2", Path(a).name) for a in sim.asn_level2] + [("calwebb_spec3", Path(sim.asn_level3).name)]
    _quiet(lambda: strun(jw, calls), ifu.cache, ifu.context)
    ours = ifu.root / "ours"
    ours.mkdir(exist_ok=True)
    for u in sim.uncal:
        rate = u.name.replace("_uncal", "_rate")
        shutil.copy2(jw / rate, ours / rate)
    for a in (*sim.asn_level2, sim.asn_level3):
        shutil.copy2(a, ours / Path(a).name)

    def run():
        for a in sim.asn_level2:
            webbflow_run("calwebb_spec2", ours / Path(a).name, "--output-dir", ours)
        webbflow_run("calwebb_spec3", ours / Path(sim.asn_level3).name, "--output-dir", ours)

    _quiet(run, ifu.cache, ifu.context)
    return jw, ours, sim.uncal[0].name.replace("_uncal.fits", "")


@pytest.mark.parity
def test_spec2_cal_s3d_and_x1d_match_jwst_whole(full_pair):
    jw, ours, root = full_pair
    problems: list[str] = []
    for sfx in ("cal", "s3d", "x1d"):
        compare_fits(f"{root}_{sfx}.fits", ours / f"{root}_{sfx}.fits", jw / f"{root}_{sfx}.fits", problems)
    agree = _cube_agreement(ours / f"{root}_s3d.fits", jw / f"{root}_s3d.fits")
    print("spec2 cube: spaxels within rtol 1e-4 of jwst's:", agree)
    assert min(agree.values()) >= 0.999, agree
    assert not problems, "\n".join(["spec2's products differ from jwst's:"] + problems)


@pytest.mark.parity
def test_spec3_cube_and_x1d_match_jwst_whole(full_pair):
    jw, ours, _ = full_pair
    theirs = sorted(p.name for p in jw.glob("jw*-o001_*_s3d.fits")) + sorted(p.name for p in jw.glob("jw*-o001_*_x1d.fits"))
    assert theirs == ["jw01234-o001_t001_nirspec_prism-clear_s3d.fits", "jw01234-o001_t001_nirspec_prism-clear_x1d.fits"]
    problems: list[str] = []
    for name in theirs:
        assert (ours / name).exists(), name
        compare_fits(name, ours / name, jw / name, problems)
    agree = _cube_agreement(ours / theirs[0], jw / theirs[0])
    print("spec3 cube: spaxels within rtol 1e-4 of jwst's:", agree)
    assert min(agree.values()) >= 0.999, agree
    assert not problems, "\n".join(["spec3's products differ from jwst's:"] + problems)
