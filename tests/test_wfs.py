"""WFS&C weak-lens pairs from the simulator through image2 and calwebb_wfs-image3 (wfs_combine), against jwst 3.0.

One small simulated pair (NRCA3, F212N + WLP8, a 256-pixel subarray, 3 groups, dithered by 24
pixels) with the associations jwst's rules make for it (two level-2 ``image2`` by Asn_Lv2WFSC,
one ``wfs-image3`` by Asn_Lv3WFSCMB). jwst runs as its users run it, from the associations'
folder: ``calwebb_detector1`` on each uncal, ``calwebb_image2`` on each level-2 association and
``calwebb_wfs-image3`` on the level-3 one. webbflow runs ``webbflow run calwebb_wfs-image3 ASN``
end to end from the uncal files, and wfs-image3 on jwst's cal files; every product is compared
whole (tests/test_products_whole.py's comparison). wfs_combine's own rules are checked on small
arrays: the flip of a pair whose x offset is negative, the combination of good and bad pixels,
and the refined offset.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from simrun import inputs as _inputs
from simrun import simulate_into, strun
from test_products_whole import _quiet, compare_products
from webbflow.tasks import load_all

load_all()

SIM = dict(instrument="nircam", pupil="WLP8", size=256, ngroups=3, seed=3)
SUFFIXES = ("_rate.fits", "_rateints.fits", "_cal.fits", "_i2d.fits", ".fits")


@pytest.fixture(scope="module")
def wfs(tmp_path_factory):
    return simulate_into(tmp_path_factory, "wfs", SIM)


@pytest.fixture(scope="module")
def jwst_wfs(wfs):
    d = _inputs(wfs.sim, wfs.root / "jwst")
    calls = [("calwebb_detector1", u.name) for u in wfs.sim.uncal]
    calls += [("calwebb_image2", Path(a).name) for a in wfs.sim.asn_level2]
    calls += [("calwebb_wfs-image3", Path(wfs.sim.asn_level3).name)]
    _quiet(lambda: strun(d, calls), wfs.cache, wfs.context)
    return d


@pytest.fixture(scope="module")
def ours_wfs(wfs, jwst_wfs):
    from webbflow.flows.cli import main

    e2e = _inputs(wfs.sim, wfs.root / "ours_e2e")
    on_jwst = _inputs(wfs.sim, wfs.root / "ours_on_jwst", "*_cal.fits", src=jwst_wfs)
    asn = Path(wfs.sim.asn_level3).name

    def run():
        assert main(["run", "calwebb_wfs-image3", str(e2e / asn), "--output-dir", str(e2e)]) == 0
        assert main(["run", "wfs-image3", str(on_jwst / asn), "--output-dir", str(on_jwst)]) == 0

    _quiet(run, wfs.cache, wfs.context)
    return SimpleNamespace(e2e=e2e, on_jwst=on_jwst)


def test_simulated_pair_is_a_wfsc_pair_with_its_associations(wfs):
    from astropy.io import fits
    from astropy.table import Table

    sim = wfs.sim
    assert len(sim.uncal) == 2
    heads = [fits.getheader(u, 0) for u in sim.uncal]
    for h in heads:
        assert (h["EXP_TYPE"], h["PUPIL"], h["PATTTYPE"], h["NUMDTHPT"]) == ("NRC_IMAGE", "WLP8", "WFSC", 2)
        assert "WFSC" in h["VISITYPE"]
    assert [h["PATT_NUM"] for h in heads] == [1, 2]
    lv2 = [json.loads(Path(a).read_text()) for a in sim.asn_level2]
    assert [(a["asn_type"], a["asn_rule"]) for a in lv2] == [("image2", "candidate_Asn_Lv2WFSC")] * 2
    a3 = json.loads(Path(sim.asn_level3).read_text())
    assert (a3["asn_type"], a3["asn_rule"]) == ("wfs-image3", "candidate_Asn_Lv3WFSCMB")
    (product,) = a3["products"]
    assert product["name"].endswith("-nrca3_{suffix}-01")
    assert [m["expname"] for m in product["members"]] == [u.name.replace("_uncal", "_cal") for u in sim.uncal]
    truth = Table.read(next((sim.output_dir / "truth").glob("*_truth.ecsv")))
    dx, dy = truth.meta["dither_pixels"]
    assert abs(dx - 24) < 0.5 and abs(dy) < 0.5


@pytest.mark.parity
def test_wfs_products_end_to_end_match_jwst(ours_wfs, jwst_wfs):
    names = {p.name for p in jwst_wfs.iterdir() if p.name.endswith(".fits") and not p.name.endswith("_uncal.fits")}
    assert any(n.endswith("_wfscmb-01.fits") for n in names)
    problems = compare_products(ours_wfs.e2e, jwst_wfs, names, suffixes=(".fits",))
    problems = [p for p in problems if "_uncal.fits" not in p]  # the inputs sit beside our products
    assert not problems, "\n".join(["products differ from jwst's:"] + problems)


@pytest.mark.parity
def test_wfs_image3_on_jwst_cal_matches_jwst(ours_wfs, jwst_wfs):
    (name,) = [p.name for p in jwst_wfs.glob("*_wfscmb-01.fits")]
    problems = compare_products(ours_wfs.on_jwst, jwst_wfs, {name}, suffixes=("_wfscmb-01.fits",))
    assert not problems, "\n".join(["products differ from jwst's:"] + problems)


@pytest.mark.parity
def test_combined_pair_is_the_mean_of_the_aligned_images(ours_wfs):
    from webbflow import models

    (cmb_path,) = ours_wfs.e2e.glob("*_wfscmb-01.fits")
    cmb = models.open(cmb_path)
    a, b = (models.open(p) for p in sorted(ours_wfs.e2e.glob("*_cal.fits")))
    assert cmb.meta.cal_step.wfs_combine == "COMPLETE" and cmb.meta.filename == cmb_path.name
    # the 24-pixel dither: image 2 moved onto image 1, good pixels averaged
    good = ((a.dq[:, :-24] | b.dq[:, 24:]) & 1) == 0
    mean = 0.5 * (np.nan_to_num(a.data[:, :-24]) + np.nan_to_num(b.data[:, 24:]))
    np.testing.assert_allclose(cmb.data[:, :-24][good], mean[good], rtol=1e-6)
    assert np.all(cmb.data[:, -24:][(cmb.dq[:, -24:] & 1) != 0] == 0)


# ---------------------------------------------------------------------------
# wfs_combine on small arrays


def _pair(shift_x=3, shift_y=-2, size=48, flip=False):
    """Two images of a blob with simple tangent-plane WCSs, the second pointed ``shift`` pixels away."""
    from astropy import coordinates as coord
    from astropy import units as u
    from astropy.modeling import models as am
    from gwcs import coordinate_frames as cf
    from gwcs import wcs as gw

    from webbflow import models

    yy, xx = np.mgrid[:size, :size]
    out = []
    for k, (sx, sy) in enumerate([(0, 0), (shift_x, shift_y)]):
        m = models.ImageModel((size, size))
        x0, y0 = 20.3 + sx, 22.6 + sy
        m.data[:] = 100 * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / 18.0) + 1.0 + k
        m.err[:] = 0.1 * (k + 1)
        tr = ((am.Shift(-size / 2 - sx) & am.Shift(-size / 2 - sy)) | (am.Scale(1e-5) & am.Scale(1e-5))
              | am.Pix2Sky_TAN() | am.RotateNative2Celestial(30.0, -20.0, 180.0))
        det = cf.Frame2D(name="detector", axes_order=(0, 1), unit=(u.pix, u.pix))
        sky = cf.CelestialFrame(name="world", reference_frame=coord.ICRS(), unit=(u.deg, u.deg))
        m.meta.wcs = gw.WCS([(det, tr), (sky, None)])
        m.meta.filename = f"img{k + 1}_cal.fits"
        out.append(m)
    return out[::-1] if flip else out


def test_wfs_combine_aligns_and_averages_by_the_wcs_offset():
    from webbflow.tasks.base import run_step

    m1, m2 = _pair()
    m1.dq[5, 5] = 1  # bad in image 1 only: image 2's value
    m2.dq[10 + (-2), 12 + 3] = 1  # image 2's pixel that lands on (10, 12): image 1's value
    m1.dq[30, 30] = 1
    m2.dq[30 - 2, 30 + 3] = 1  # bad in both: 0 and DO_NOT_USE
    res = run_step("wfs_combine", [m1.copy(), m2.copy()], {})
    out = res.model
    assert res.qa["x offset"] == 3 and res.qa["y offset"] == -2
    shifted = np.zeros_like(m2.data)
    shifted[2:, :-3] = m2.data[:-2, 3:]
    expect = 0.5 * (m1.data + shifted)
    expect[5, 5] = shifted[5, 5]
    expect[10, 12] = m1.data[10, 12]
    expect[30, 30] = 0
    inside = np.zeros_like(expect, bool)  # where image 2 covers image 1
    inside[2:, :-3] = True
    np.testing.assert_allclose(out.data[inside], expect[inside], rtol=1e-6)
    assert out.dq[30, 30] & 1 and out.data[30, 30] == 0
    assert out.dq[5, 5] == 0 and out.err[5, 5] == pytest.approx(0.2)
    assert out.meta.wcs is None and out.meta.filename == "img1_cal.fits"


def test_wfs_combine_flips_a_pair_whose_x_offset_is_negative():
    from webbflow.tasks.base import run_step

    m1, m2 = _pair(shift_x=-4, shift_y=1)
    flipped = run_step("wfs_combine", [m1.copy(), m2.copy()], {}).model
    assert flipped.meta.filename == "img2_cal.fits"  # image 2 leads: the offset is now +4
    kept = run_step("wfs_combine", [m1.copy(), m2.copy()], {"flip_dithers": False}).model
    assert kept.meta.filename == "img1_cal.fits"


def test_wfs_combine_refines_a_wrong_wcs_offset_on_the_data():
    from webbflow.tasks.base import run_step

    m1, m2 = _pair(shift_x=3, shift_y=-2, size=64)
    # the data of image 2 lie one more pixel to the right than its WCS says
    m2.data[:, 1:] = m2.data[:, :-1].copy()
    plain = run_step("wfs_combine", [m1.copy(), m2.copy()], {}).qa
    refined = run_step("wfs_combine", [m1.copy(), m2.copy()],
                       {"do_refine": True, "psf_size": 20, "blur_size": 3}).qa
    assert (plain["x offset"], plain["y offset"]) == (3, -2)
    assert (refined["x offset"], refined["y offset"]) == (4, -2)


@pytest.mark.parity
def test_wfs_combine_refined_matches_jwst(tmp_path):
    """do_refine on the small pair, with a bad pixel near the PSF: jwst's DataSet and ours give the same image."""
    import warnings

    from stdatamodels.jwst import datamodels as dm
    from jwst.wfs_combine.wfs_combine import DataSet

    from webbflow import models
    from webbflow.tasks.base import run_step

    m1, m2 = _pair(shift_x=3, shift_y=-2, size=64)
    m2.data[:, 1:] = m2.data[:, :-1].copy()
    m1.dq[21, 19] = 1
    m2.dq[25, 30] = 1
    ours = run_step("wfs_combine", [m1.copy(), m2.copy()], {"do_refine": True, "psf_size": 20, "blur_size": 3})
    theirs_in = []
    for m in (m1, m2):
        m.save(tmp_path / m.meta.filename)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs_in.append(dm.open(tmp_path / m.meta.filename))
    ds = DataSet(theirs_in[0], theirs_in[1], True, True, 20, 3, 2)
    theirs = ds.do_all()
    assert (ours.qa["x offset"], ours.qa["y offset"]) == (ds.off_x, ds.off_y)
    assert ours.qa["x offset measured"] == round(ds.flt_off_x, 2)
    np.testing.assert_allclose(ours.model.data, theirs.data, rtol=1e-6)
    np.testing.assert_array_equal(ours.model.dq, theirs.dq)
    np.testing.assert_allclose(ours.model.err, theirs.err, rtol=1e-6)
    assert isinstance(models.open(tmp_path / "img1_cal.fits"), models.ImageModel)


def test_wfs_image3_names_help_and_a_misspelt_option(tmp_path, capsys):
    from webbflow.flows.cli import main, resolve_target

    for name in ("calwebb_wfs-image3", "calwebb_wfs-image3.cfg", "WfsCombineStep", "wfs_combine", "wfs-image3"):
        assert resolve_target(name) == ("pipeline", "wfs-image3"), name
    assert resolve_target("calwebb_tso-image2.cfg") == ("pipeline", "image2")
    assert main(["run", "calwebb_wfs-image3", "--help"]) == 0
    out = capsys.readouterr().out
    for p in ("do_refine=false", "flip_dithers=true", "psf_size=100", "blur_size=10", "n_size=2"):
        assert f"--steps.wfs_combine.{p}" in out
    (tmp_path / "x_wfs-image3_asn.json").write_text("{}")
    assert main(["run", "wfs-image3", str(tmp_path / "x_wfs-image3_asn.json"), "--do_refin=true"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--do_refin" in err[0]
