"""NIRISS AMI: ami_analyze, ami_normalize and calwebb_ami3 against jwst 3.0, and the science.

One small observation is shared by the module: a target with a faint companion and a calibrator
star behind the non-redundant mask (SUB80, F480M, two integrations each, synthetic nrm and
throughput references in a local CRDS cache, a level-3 ami3 association).  jwst runs
calwebb_ami3 on it once, from the association's folder, with ami_analyze's own products saved;
webbflow runs ``ami3`` on a copy.  Every product is compared whole (extensions, columns, header
keywords); the observables agree with jwst's within rtol 1e-4 (measured: 1e-9).
"""

from __future__ import annotations

import json
import shutil
import warnings
from contextlib import chdir
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from parity import jwst_offline, quiet_jwst

FILTER = "F480M"
COMPANION = (2.0, 1.5, 0.05)  # rows, columns (pixels), contrast
TARGET = "jw01093001001_01101_00001_nis_calints.fits"
CALIBRATOR = "jw01093002001_01101_00001_nis_calints.fits"
PRODUCT = "jw01093-o001_t001_niriss_f480m-nrm"
ASN = "jw01093-o001_20240115t030000_ami3_00001_asn.json"
OBSERVABLES = {"OI_VIS": ("VISAMP", "VISPHI"), "OI_VIS2": ("VIS2DATA",), "OI_T3": ("T3AMP", "T3PHI"),
               "OI_Q4": ("Q4AMP", "Q4PHI"), "OI_ARRAY": ("PISTONS",)}


def _observation(folder: Path, crds: Path) -> Path:
    from webbflow.refs import synthetic_ami as sa

    sa.write_ami_references(crds, (FILTER,))
    sa.write_calints(folder / TARGET, FILTER, target="HD-12345", nints=2, companion=COMPANION, seed=3)
    sa.write_calints(folder / CALIBRATOR, FILTER, target="HD-999", nints=2, seed=4, offset=(-0.1, 0.25))
    asn = {"asn_type": "ami3", "asn_rule": "candidate_Asn_Lv3AMI", "version_id": "20240115t030000",
           "code_version": "3.0.0", "degraded_status": "No known degraded exposures in association.",
           "program": "01093", "constraints": "", "asn_id": "o001", "target": "t001",
           "asn_pool": "jw01093_20240115t030000_pool.csv",
           "products": [{"name": PRODUCT, "members": [{"expname": TARGET, "exptype": "science"},
                                                     {"expname": CALIBRATOR, "exptype": "psf"}]}]}
    (folder / ASN).write_text(json.dumps(asn, indent=4))
    return folder / ASN


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """calwebb_ami3 on the same association by jwst and by webbflow, each in its own folder, and
    ami_analyze alone on the target (its three products: ami-oi, amimulti-oi, amilg)."""
    root = tmp_path_factory.mktemp("ami3")
    crds = root / "crds"
    theirs, ours = root / "jwst", root / "webbflow"
    theirs.mkdir()
    _observation(theirs, crds)
    shutil.copytree(theirs, ours)
    with jwst_offline(crds):
        from jwst.ami import AmiAnalyzeStep
        from jwst.pipeline import Ami3Pipeline

        warnings.simplefilter("ignore")
        with quiet_jwst(), chdir(theirs):
            Ami3Pipeline.call(ASN)
            AmiAnalyzeStep.call(TARGET, save_results=True)
        from webbflow.flows.calwebb_ami3 import run_ami3
        from webbflow.flows.single import run_single_step

        written = run_ami3(ours / ASN, output_dir=ours)
        written += run_single_step("ami_analyze", ours / TARGET, output_dir=ours, params={})
    return theirs, ours, written


def _products(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("*.fits")} - {TARGET, CALIBRATOR}


@pytest.mark.parity
def test_ami3_writes_the_products_jwst_writes(runs):
    theirs, ours, written = runs
    t, c = TARGET[:-13], CALIBRATOR[:-13]
    want = {f"{t}_o001_ami-oi.fits", f"{c}_o001_psf-ami-oi.fits", f"{PRODUCT}_aminorm-oi.fits",
            f"{t}_ami-oi.fits", f"{t}_amimulti-oi.fits", f"{t}_amilg.fits"}
    assert _products(theirs) == want
    assert _products(ours) == want
    assert {Path(p).name for p in written} == want


@pytest.mark.parity
def test_ami3_products_whole(runs):
    from test_products_whole import compare_fits

    theirs, ours, _ = runs
    problems = []
    for name in sorted(_products(theirs)):
        compare_fits(name, ours / name, theirs / name, problems)
    assert not problems, "\n".join(problems)


@pytest.mark.parity
@pytest.mark.parametrize("suffix", ["_o001_ami-oi", "_psf-ami-oi", "_nis_ami-oi", "_amimulti-oi", "aminorm-oi"])
def test_ami_observables_agree_with_jwst(runs, suffix):
    theirs, ours, _ = runs
    names = sorted(n for n in _products(theirs) if n.endswith(suffix + ".fits"))
    assert names
    worst = 0.0
    for name in names:
        with fits.open(ours / name) as a, fits.open(theirs / name) as b:
            for ext, cols in OBSERVABLES.items():
                for col in cols:
                    if col not in b[ext].columns.names:  # aminorm's OI_ARRAY has PISTON_T/PISTON_C
                        continue
                    x, y = np.asarray(a[ext].data[col], float), np.asarray(b[ext].data[col], float)
                    assert x.shape == y.shape
                    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-9, err_msg=f"{name} {ext}.{col}")
                    worst = max(worst, float(np.max(np.abs(x - y) / np.maximum(np.abs(y), 1e-30))))
    print(f"{suffix}: largest relative difference from jwst {worst:.3g}")


def test_calibrated_closure_phases_recover_the_companion(runs):
    """The target's closure phases, calibrated by the point-source calibrator, follow those of
    the simulated binary; the calibrator's own are near zero."""
    from webbflow import models
    from webbflow.refs import synthetic_ami as sa
    from webbflow.tasks._ami_lg import hole_centres

    _, ours, _ = runs
    nrm = models.open(next((ours.parent / "crds").rglob("jwst_niriss_nrm_*.fits")))
    _, truth = sa.binary_observables(hole_centres(nrm), FILTER, COMPANION)
    norm = fits.getdata(ours / f"{PRODUCT}_aminorm-oi.fits", "OI_T3")
    cal = fits.getdata(ours / f"{CALIBRATOR[:-13]}_o001_psf-ami-oi.fits", "OI_T3")
    cp = np.asarray(norm["T3PHI"])
    assert np.std(truth) > 2.0  # the companion leaves a clear signal
    assert np.corrcoef(cp, truth)[0, 1] > 0.85
    assert np.sqrt(np.mean((cp - truth) ** 2)) < 2.0
    assert np.sqrt(np.mean(np.asarray(cal["T3PHI"]) ** 2)) < 0.35 * np.sqrt(np.mean(truth ** 2)) + 1.0


def test_ami_normalize_calibrates_by_the_reference_star(runs):
    from webbflow import models
    from webbflow.tasks.ami_normalize import normalize

    _, ours, _ = runs
    t = models.open(ours / f"{TARGET[:-13]}_o001_ami-oi.fits")
    c = models.open(ours / f"{CALIBRATOR[:-13]}_o001_psf-ami-oi.fits")
    n = normalize(t, c)
    np.testing.assert_allclose(n.t3["T3PHI"], t.t3["T3PHI"] - c.t3["T3PHI"])
    np.testing.assert_allclose(n.vis2["VIS2DATA"], t.vis2["VIS2DATA"] / c.vis2["VIS2DATA"])
    np.testing.assert_allclose(n.q4["Q4AMP"], np.log(t.q4["Q4AMP"] / c.q4["Q4AMP"]))
    assert n.keyword("CALIB") == "HD-999"
    # a star calibrated by itself has no closure phase left and unit visibilities
    same = normalize(t, t)
    assert np.all(same.t3["T3PHI"] == 0) and np.allclose(same.vis2["VIS2DATA"], 1)


def test_ami_analyze_refuses_an_even_oversample(runs):
    from webbflow import models
    from webbflow.tasks.ami_analyze import AmiAnalyzeParams, analyze

    _, ours, _ = runs
    with pytest.raises(ValueError, match="odd"):
        analyze(models.open(ours / TARGET), None, None, AmiAnalyzeParams(oversample=2))


def test_ami3_bad_association_is_one_line(tmp_path):
    import subprocess
    import sys

    asn = tmp_path / ASN
    asn.write_text(json.dumps({"asn_type": "ami3", "asn_id": "o001", "asn_pool": "p.csv",
                               "products": [{"name": PRODUCT, "members": [
                                   {"expname": TARGET, "exptype": "science"}]}]}))
    exe = str(Path(sys.executable).with_name("webbflow"))
    r = subprocess.run([exe, "run", "ami3", str(asn)], capture_output=True, text=True)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and TARGET in lines[0]


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    from webbflow.refs.simulator import simulate

    out = tmp_path_factory.mktemp("ami-sim")
    return simulate(out, instrument="niriss", exp_type="NIS_AMI", nints=2, ngroups=3, seed=5)


def test_simulate_ami_writes_exposures_associations_references_and_truth(simulated):
    from webbflow import models
    from webbflow.refs import get_reference_paths
    from webbflow.refs.select import reset_crds_state

    sim = simulated
    assert len(sim.uncal) == 2
    heads = [fits.getheader(p) for p in sim.uncal]
    for h in heads:
        assert (h["EXP_TYPE"], h["PUPIL"], h["FILTER"], h["SUBARRAY"], h["READPATT"]) == \
            ("NIS_AMI", "NRM", "F480M", "SUB80", "NISRAPID")
    assert [h["IS_PSF"] for h in heads] == [False, True]
    assert fits.getdata(sim.uncal[0], "SCI").shape == (2, 3, 80, 80)
    # the associations jwst's rules make: image2 per exposure, ami3 with the target and its PSF reference
    asn3 = json.loads(sim.asn_level3.read_text())
    assert asn3["asn_type"] == "ami3"
    members = asn3["products"][0]["members"]
    assert sorted((m["exptype"], m["expname"]) for m in members) == [
        ("psf", sim.uncal[1].name.replace("_uncal", "_calints")),
        ("science", sim.uncal[0].name.replace("_uncal", "_calints"))]
    assert len(sim.asn_level2) == 2
    # the CRDS cache selects the AMI references for the exposures
    with jwst_offline(sim.crds_path):
        got = get_reference_paths(models.open(sim.uncal[0]), ["nrm", "throughput", "flat"], {})
    reset_crds_state()
    assert Path(got["nrm"]).name.startswith("jwst_niriss_nrm_") and "throughput" in Path(got["throughput"]).name
    assert models.open(got["nrm"]).nrm.shape == (1024, 1024)
    truth = json.loads((sim.output_dir / "truth" / "ami_truth.json").read_text())
    target = truth["stars"][0]
    assert len(target["closure_phases_deg"]) == 35 and np.std(target["closure_phases_deg"]) > 1.0


def test_simulated_ami_ramp_shows_the_mask_image(simulated):
    """The target's signal (last group minus first) is the mask's interferometric image."""
    from webbflow.refs import synthetic_ami as sa

    sim = simulated
    ramp = fits.getdata(sim.uncal[0], "SCI").astype(float)
    diff = ramp[0, -1] - ramp[0, 0]
    star = json.loads((sim.output_dir / "truth" / "ami_truth.json").read_text())["stars"][0]
    model = sa.scene("F480M", 80, (star["x"] - 39.5, star["y"] - 39.5), (2.0, 1.5, 0.05))
    a, b = diff[5:-5, 5:-5], model[5:-5, 5:-5]
    corr = np.corrcoef(a.ravel(), b.ravel())[0, 1]
    assert corr > 0.95
    assert abs(np.unravel_index(np.argmax(diff), diff.shape)[0] - star["y"]) <= 2


@pytest.mark.parity
def test_rotation_search_recovers_the_pupil_rotation_as_jwst_does():
    """With affine2d=None ami_analyze searches the pupil rotation (rotation_search '-3 3 1'):
    a mask image rotated by 1.3 deg is found within 0.1 deg, at jwst's find_rotation's answer."""
    from jwst.ami.find_affine2d_parameters import find_rotation

    from webbflow.refs import synthetic_ami as sa
    from webbflow.tasks import _ami_lg as lg
    from webbflow.tasks.ami_analyze import AmiAnalyzeParams, search_rotation

    class Mask:
        flat_to_flat, diameter, pupil_circumscribed = sa.FLAT_TO_FLAT, sa.DIAMETER, sa.PUPIL_CIRCUMSCRIBED

    for i, (x, y) in enumerate(sa.HOLES_AS_DESIGNED, start=1):
        setattr(Mask, f"x_a{i}", float(x))
        setattr(Mask, f"y_a{i}", float(y))
    band = sa.sampled_bandpass(FILTER, 7)
    pitch = np.deg2rad(sa.PIXEL_SCALE_MAS / 3.6e6)
    image = lg.psf_image(lg.hole_centres(Mask), band, 3, pitch, 64, sa.FLAT_TO_FLAT, (0.2, -0.1),
                         lg.Affine2d(rotradccw=np.deg2rad(1.3)))
    ours = np.rad2deg(search_rotation(image[None], Mask, AmiAnalyzeParams(affine2d=None), band, pitch).rotradccw)
    theirs = np.rad2deg(find_rotation(image, Mask, [0.0, 0.0], np.append(np.arange(-3, 3, 1.0), 3), pitch, 64,
                                      band, 3, "hex").rotradccw)
    assert abs(ours - 1.3) < 0.1
    assert ours == pytest.approx(theirs, rel=1e-6)


# ---------------------------------------------------------------------------
# end to end from the simulated uncal files, as users run both programs


@pytest.fixture(scope="module")
def ami_e2e(tmp_path_factory):
    """The simulated observation (target and PSF star, 2 integrations of 3 groups on SUB80): jwst's
    calwebb_detector1 on each uncal, calwebb_image2 on each level-2 association and calwebb_ami3 on
    the level-3 one, strun from the associations' folder; webbflow's ``run ami3 ASN`` from the uncal
    files alone (detector1 and image2 made on the way)."""
    pytest.importorskip("jwst")
    from simrun import end_to_end

    return end_to_end(tmp_path_factory, "ami_e2e", dict(instrument="niriss", exp_type="NIS_AMI", nints=2, ngroups=3, seed=5), "ami3")


@pytest.mark.parity
def test_ami3_end_to_end_from_the_uncal_files_writes_jwsts_products_whole(ami_e2e):
    """rate, rateints, calints and the ami3 products (ami-oi, psf-ami-oi, aminorm-oi), compared whole."""
    from test_products_whole import compare_products

    theirs, ours = ami_e2e
    suffixes = ("_rate.fits", "_rateints.fits", "_calints.fits", "ami-oi.fits", "aminorm-oi.fits")
    names = {p.name for p in theirs.iterdir() if p.name.endswith(suffixes)}
    kinds = {n.rsplit("_", 1)[-1] for n in names}
    assert kinds == {"rate.fits", "rateints.fits", "calints.fits", "ami-oi.fits", "psf-ami-oi.fits",
                     "aminorm-oi.fits"}, sorted(names)
    problems = compare_products(ours, theirs, names, suffixes=suffixes)
    assert not problems, "\n".join(["products differ from jwst's:"] + problems)
