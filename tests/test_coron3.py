"""coron3: coronagraphic Stage 3 (outlier_detection mode coron, stack_refs, align_refs, klip,
resample), against jwst 3.0's calwebb_coron3 on the same inputs and references.

One small observation (tests/coron_scene.py: a 64x64 SUB320A335R science exposure with a
companion, two PSF-reference exposures, three integrations each, a psfmask selected through a
local CRDS context) is run once by jwst, from the association's folder as its users run it,
and once by webbflow, for the whole session.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest

from webbflow import models
from webbflow.tasks import load_all
from webbflow.tasks.base import run_step

import coron_scene as scene

load_all()

PRODUCTS = {
    f"{scene.PRODUCT}_psfstack.fits", f"{scene.PRODUCT}_i2d.fits",
    f"jw01075001001_03105_00001_nrcalong_{scene.ASN_ID}_crfints.fits",
    f"jw01075002001_03105_00001_nrcalong_{scene.ASN_ID}_crfints.fits",
    f"jw01075002001_03105_00002_nrcalong_{scene.ASN_ID}_crfints.fits",
    f"jw01075001001_03105_00001_nrcalong_{scene.ASN_ID}_psfalign.fits",
    f"jw01075001001_03105_00001_nrcalong_{scene.ASN_ID}_psfsub.fits",
}


@pytest.fixture(scope="session")
def coron_obs(tmp_path_factory):
    root = tmp_path_factory.mktemp("coron3")
    cache = scene.crds_cache(root / "crds")
    return {"root": root, "cache": cache}


@pytest.fixture(scope="session")
def coron_jwst(coron_obs):
    """jwst's calwebb_coron3, run from the association's folder with CRDS_PATH set (no overrides)."""
    from jwst.pipeline import Coron3Pipeline
    from parity import jwst_offline, quiet_jwst

    folder = coron_obs["root"] / "jwst"
    obs = scene.make_observation(folder)
    with jwst_offline(coron_obs["cache"]), quiet_jwst(), contextlib.chdir(folder):
        Coron3Pipeline.call(obs["asn"].name, save_results=True)
    return folder


@pytest.fixture(scope="session")
def coron_ours(coron_obs):
    from parity import jwst_offline

    from webbflow.flows.calwebb_coron3 import run_coron3

    folder = coron_obs["root"] / "ours"
    obs = scene.make_observation(folder)
    with jwst_offline(coron_obs["cache"]):
        written = run_coron3(obs["asn"], output_dir=folder)
    return folder, written


@pytest.mark.parity
def test_coron3_products_whole_match_jwst(coron_ours, coron_jwst):
    from parity import compare_arrays
    from test_products_whole import _report, compare_products

    folder, written = coron_ours
    assert {Path(p).name for p in written} == PRODUCTS
    theirs = {p.name for p in coron_jwst.iterdir() if p.name.endswith(".fits") and not p.name.endswith("_calints.fits")}
    assert theirs == PRODUCTS
    problems = compare_products(folder, coron_jwst, PRODUCTS, suffixes=(".fits",))
    # the inputs, written by the scene, are in both folders: only the products are compared
    problems = [p for p in problems if not p.startswith("products webbflow writes")]
    assert not problems, _report(problems)
    from astropy.io import fits

    for name in sorted(PRODUCTS):  # the measured agreement, pixel by pixel
        with fits.open(folder / name) as a, fits.open(coron_jwst / name) as b:
            for ext in ("SCI", "ERR"):
                ag = compare_arrays(f"{name}[{ext}]", a[ext].data, b[ext].data, rtol=1e-4)
                assert ag.fraction >= 0.999, str(ag)
            if "DQ" in b:
                assert np.array_equal(a["DQ"].data, b["DQ"].data), name


def test_companion_recovered_in_psfsub_and_i2d(coron_ours):
    folder, _ = coron_ours
    x0, y0, peak = scene.COMPANION
    sub = models.open(folder / f"jw01075001001_03105_00001_nrcalong_{scene.ASN_ID}_psfsub.fits")
    assert sub.meta.cal_step.klip == "COMPLETE" and sub.meta.cal_step.outlier_detection == "COMPLETE"
    img = np.nanmean(sub.data, axis=0)
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
    far = np.hypot(xx - x0, yy - y0) > 6
    cut = img[int(y0) - 3: int(y0) + 4, int(x0) - 3: int(x0) + 4]
    dy, dx = np.unravel_index(np.nanargmax(cut), cut.shape)
    assert (abs(dx - 3) <= 1) and (abs(dy - 3) <= 1), (dx, dy)
    noise = np.nanstd(img[far & (np.hypot(xx - 32, yy - 32) > 10)])
    assert np.nanmax(cut) > 10 * noise and np.nanmax(cut) > 0.5 * peak, (np.nanmax(cut), noise)
    # the star itself is gone: what is left around the mask's centre is a small part of its light there
    star = models.open(folder / "jw01075001001_03105_00001_nrcalong_calints.fits")
    assert np.nanmax(np.abs(img[28:37, 28:37])) < 0.2 * np.nanmax(star.data[0, 28:37, 28:37] - 0.5)

    i2d = models.open(folder / f"{scene.PRODUCT}_i2d.fits")
    ra, dec = scene._wcs((31.5, 31.5))(x0, y0)
    xi, yi = i2d.meta.wcs.invert(ra, dec)
    cut = i2d.data[int(round(yi)) - 2: int(round(yi)) + 3, int(round(xi)) - 2: int(round(xi)) + 3]
    dy, dx = np.unravel_index(np.nanargmax(cut), cut.shape)
    assert abs(dx - 2) <= 1 and abs(dy - 2) <= 1
    assert np.nanmax(cut) > 0.5 * peak
    assert len(i2d.hdrtab) == 1 and i2d.meta.cal_step.resample == "COMPLETE"


def test_outlier_detection_coron_flags_the_cosmic_ray(coron_ours):
    folder, _ = coron_ours
    crf = models.open(folder / f"jw01075001001_03105_00001_nrcalong_{scene.ASN_ID}_crfints.fits")
    assert crf.dq[1, 40, 12] & models.dqflags.OUTLIER and np.isnan(crf.data[1, 40, 12])
    assert not crf.dq[0, 40, 12] & models.dqflags.OUTLIER
    flagged = (crf.dq & models.dqflags.OUTLIER) > 0
    assert flagged.sum() < 10  # the noise itself is not flagged


def _gauss(shape, x0, y0, sigma=1.5, amp=100.0):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return amp * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * sigma**2))


def test_align_refs_finds_and_removes_a_known_shift():
    from webbflow.tasks.align_refs import TargetAndPsfs, fit_shift, shift_image

    shape = (48, 48)
    ref, psf = _gauss(shape, 24.0, 23.0), _gauss(shape, 24.4, 22.7, amp=80.0)
    dx, dy, beta = fit_shift(ref, psf, np.ones(shape))
    np.testing.assert_allclose([dx, dy, beta], [0.4, -0.3, 0.8], atol=1e-6)
    np.testing.assert_allclose(shift_image(psf, -dx, -dy), 0.8 * ref, atol=1e-3 * 80)

    # the step, on float32 cubes as the pipeline has them: jwst's fit (scipy's leastsq with its
    # default finite-difference step on single-precision Fourier shifts) barely moves from zero
    # shift there; the step reproduces that, and replaces bad pixels first
    sci = models.CubeModel(data=np.array([ref], np.float32))
    sci.dq[0, 3, 3] = 1
    sci.data[0, 3, 3] = 1e6
    cube = models.CubeModel(data=np.array([psf], np.float32))
    mask = models.PsfMaskModel(data=np.ones(shape, np.float32))
    res = run_step("align_refs", TargetAndPsfs(sci, cube), {}, references={"psfmask": mask})
    out = res.model
    assert res.status == "COMPLETE" and out.meta.cal_step.align_psfs == "COMPLETE"
    assert sci.data[0, 3, 3] < 1.0
    assert out.data.shape == (1,) + shape and out.dq.shape == out.data.shape and not out.dq.any()
    assert abs(out.data[0].sum() - psf.sum()) < 1e-3 * psf.sum()  # a shift keeps the flux


def test_klip_subtracts_a_psf_the_references_span():
    from webbflow.tasks.align_refs import TargetAndPsfs

    shape = (32, 32)
    refs = np.array([_gauss(shape, 16, 16, amp=a) + 0.3 * _gauss(shape, 16, 16, sigma=4, amp=a) for a in (90, 100, 110)],
                    np.float32)
    target = 1.05 * refs[1] + 5 * _gauss(shape, 24, 10, sigma=1.2, amp=1.0)
    cube = models.CubeModel(data=np.array([target], np.float32))
    out = run_step("klip", TargetAndPsfs(cube, models.CubeModel(data=refs)), {"truncate": 2}).model
    assert out.meta.cal_step.klip == "COMPLETE"
    resid = out.data[0]
    assert abs(resid[16, 16]) < 0.05 * target[16, 16]
    assert np.argmax(resid) == np.ravel_multi_index((10, 24), shape)
    with pytest.raises(Exception):
        run_step("klip", TargetAndPsfs(cube, models.CubeModel(data=refs)), {"truncate": -1})


def test_stack_refs_stacks_every_integration_in_order():
    a = models.CubeModel(data=np.ones((2, 8, 8), np.float32))
    b = models.CubeModel(data=np.full((3, 8, 8), 2.0, np.float32))
    a.meta.filename, b.meta.filename = "a_calints.fits", "b_calints.fits"
    out = run_step("stack_refs", [a, b], {}).model
    assert out.data.shape == (5, 8, 8) and out.meta.cal_step.stack_psfs == "COMPLETE"
    np.testing.assert_array_equal(out.data[:, 0, 0], [1, 1, 2, 2, 2])


def test_coron3_refuses_an_association_without_psf_members(tmp_path):
    import json

    from webbflow.errors import InputFileError
    from webbflow.flows.calwebb_coron3 import run_coron3

    asn = {"asn_type": "coron3", "asn_id": "a3001", "asn_pool": "pool",
           "products": [{"name": "p", "members": [{"expname": "x_calints.fits", "exptype": "science"}]}]}
    path = tmp_path / "c_asn.json"
    path.write_text(json.dumps(asn))
    with pytest.raises(InputFileError, match="no PSF-reference"):
        run_coron3(path, output_dir=tmp_path)
    assert not any(p.name.endswith(".fits") for p in tmp_path.iterdir())


# ---------------------------------------------------------------------------
# the simulator: webbflow simulate --instrument nircam --exp-type NRC_CORON


@pytest.fixture(scope="session")
def coron_sim(tmp_path_factory):
    from webbflow.refs.simulator import simulate

    out = tmp_path_factory.mktemp("coron-sim")
    return simulate(out, instrument="nircam", exp_type="NRC_CORON", ngroups=3, nints=2, nexp=2, seed=3)


@pytest.mark.real
def test_simulated_coronagraphy_is_shaped_as_real_data(coron_sim, shared_data):
    import json

    from astropy.io import fits

    real = fits.getheader(shared_data / "real" / "nircam_coron_headers" / "jw01075001001_03105_00009_nrca2_uncal.fits")
    assert len(coron_sim.uncal) == 3
    flags = []
    for path in coron_sim.uncal:
        h = fits.getheader(path)
        for key in ("EXP_TYPE", "PUPIL", "PATTTYPE", "IS_PSF", "CORONMSK", "SUBARRAY", "TEMPLATE"):
            assert key in h and type(h[key]) is type(real[key]), key
        assert (h["EXP_TYPE"], h["PUPIL"], h["CORONMSK"], h["SUBARRAY"]) == ("NRC_CORON", "MASKRND", "MASKA335R", "SUB320A335R")
        assert (h["DETECTOR"], h["FILTER"], h["NINTS"], h["NGROUPS"]) == ("NRCALONG", "F335M", 2, 3)
        assert fits.getheader(path, "SCI")["NAXIS1"] == 320
        flags.append(h["IS_PSF"])
    assert flags == [False, True, True]
    # the associations the rules make: an image2 per exposure, one coron3 with science and psf members
    assert len(coron_sim.asn_level2) == 3
    asn = json.loads(coron_sim.asn_level3.read_text())
    assert asn["asn_type"] == "coron3"
    members = asn["products"][0]["members"]
    assert [m["exptype"] for m in members] == ["science", "psf", "psf"]
    assert [m["expname"] for m in members] == [p.name.replace("_uncal", "_calints") for p in coron_sim.uncal]


def coron_sim_truth_photmjsr(sim):
    from astropy.table import Table

    return float(Table.read(sim.output_dir / "truth" / "companion.ecsv").meta["photmjsr"])


def test_simulated_coronagraphy_selects_its_psfmask_and_shows_the_companion(coron_sim, crds_env):
    from astropy.table import Table

    from webbflow.refs import get_reference_paths, open_reference

    crds_env(coron_sim.crds_path)
    sci = models.open(coron_sim.uncal[0])
    paths = get_reference_paths(sci, ["psfmask", "area", "photom"])
    mask = open_reference("psfmask", paths["psfmask"])
    # photom has the row jwst's photom step looks up for the exposure: its filter behind MASKRND
    rows = [r for r in open_reference("photom", paths["photom"]).phot_table
            if (r["filter"].strip(), r["pupil"].strip()) == ("F335M", "MASKRND")]
    assert len(rows) == 1 and np.isclose(rows[0]["photmjsr"], coron_sim_truth_photmjsr(coron_sim), rtol=1e-6)
    # the pixel-area map is full frame, as the real ones are: jwst cuts the subarray out of it
    from astropy.io import fits

    assert fits.getheader(paths["area"], "SCI")["NAXIS1"] == 2048
    assert mask.data.shape == (320, 320) and mask.meta.instrument.coronagraph == "MASKA335R"
    truth = Table.read(coron_sim.output_dir / "truth" / "companion.ecsv")
    x, y = float(truth["x"][0]), float(truth["y"][0])
    assert mask.data[int(round(y)), int(round(x))] == 1.0  # the companion is outside the mask
    cx, cy = truth.meta["star_x"], truth.meta["star_y"]
    assert mask.data[int(round(cy)), int(round(cx))] == 0.0  # the star is behind it
    # the companion's signal in the ramp (last minus first group), where truth puts it
    ramp = sci.data[0].astype(float)
    diff = ramp[-1] - ramp[0]
    cut = diff[int(y) - 3: int(y) + 4, int(x) - 3: int(x) + 4]
    dy, dx = np.unravel_index(np.argmax(cut), cut.shape)
    assert abs(dx - 3) <= 1 and abs(dy - 3) <= 1
    assert cut.max() > 20 * np.std(diff[5:40, 5:40])


# ---------------------------------------------------------------------------
# end to end from the simulated uncal files, as users run both programs


@pytest.fixture(scope="module")
def coron_e2e(tmp_path_factory):
    """The simulated NIRCam coronagraphic observation (a target with its companion and two PSF
    references, 3 groups, 2 integrations): jwst's calwebb_detector1 on each uncal, calwebb_image2 on
    each level-2 association and calwebb_coron3 on the level-3 one, strun from the associations'
    folder; webbflow's ``run coron3 ASN`` from the uncal files alone."""
    pytest.importorskip("jwst")
    from simrun import end_to_end

    return end_to_end(tmp_path_factory, "coron_e2e", dict(instrument="nircam", exp_type="NRC_CORON", ngroups=3, nints=2, nexp=2, seed=3), "coron3")


@pytest.mark.parity
def test_coron3_end_to_end_from_the_uncal_files_writes_jwsts_products_whole(coron_e2e):
    """rate, rateints, calints and coron3's crfints, psfstack, psfalign, psfsub and i2d, compared whole."""
    from test_products_whole import compare_products

    theirs, ours = coron_e2e
    suffixes = ("_rate.fits", "_rateints.fits", "_calints.fits", "_crfints.fits", "_psfstack.fits",
                "_psfalign.fits", "_psfsub.fits", "_i2d.fits")
    names = {p.name for p in theirs.iterdir() if p.name.endswith(suffixes)}
    assert {n.rsplit("_", 1)[-1] for n in names} == {s.lstrip("_") for s in suffixes}, sorted(names)
    problems = compare_products(ours, theirs, names, suffixes=suffixes)
    assert not problems, "\n".join(["products differ from jwst's:"] + problems)
