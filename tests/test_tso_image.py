"""NIRCam imaging time series (NRC_TSIMAGE) from the simulator through tso-image2 and tso3, against jwst 3.0.

One small simulated TSO (NRCA3 SUB64P, F210M, 3 groups, 12 integrations, a 1 % transit) with
the associations jwst's rules make for it. jwst runs as its users run it, from the associations'
folder: ``calwebb_detector1`` on the uncal, ``calwebb_image2`` on the tso-image2 association,
``calwebb_tso3`` on the tso3 association. webbflow runs twice: ``webbflow run tso3 ASN`` end to
end from the uncal file alone (detector1 and image2 made on the way), and tso3 on jwst's calints.
Every product is compared whole (tests/test_products_whole.py's comparison: file names, HDUs,
keywords, arrays within rtol 1e-4 for 99.9 %, DQ equal, the phot.ecsv's columns, units, metadata
and values within rtol 1e-4). The light curve is then checked against the simulator's truth.
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

SIM = dict(exp_type="NRC_TSIMAGE", nints=12, ngroups=3, seed=5)
PRODUCT_SUFFIXES = ("_rate.fits", "_rateints.fits", "_calints.fits", "_crfints.fits", "_phot.ecsv")


@pytest.fixture(scope="module")
def tso(tmp_path_factory):
    return simulate_into(tmp_path_factory, "tso_image", SIM)


@pytest.fixture(scope="module")
def jwst_tso(tso):
    d = _inputs(tso.sim, tso.root / "jwst")
    calls = [("calwebb_detector1", tso.sim.uncal[0].name)]
    calls += [("calwebb_image2", Path(a).name) for a in tso.sim.asn_level2]
    calls += [("calwebb_tso3", Path(tso.sim.asn_level3).name)]
    _quiet(lambda: strun(d, calls), tso.cache, tso.context)
    return d


@pytest.fixture(scope="module")
def ours_tso(tso, jwst_tso):
    from webbflow.flows.cli import main

    e2e = _inputs(tso.sim, tso.root / "ours_e2e")
    on_jwst = _inputs(tso.sim, tso.root / "ours_on_jwst", "*_calints.fits", src=jwst_tso)  # tso3 on jwst's calints

    def run():
        asn = Path(tso.sim.asn_level3).name
        assert main(["run", "calwebb_tso3", str(e2e / asn), "--output-dir", str(e2e)]) == 0
        assert main(["run", "tso3", str(on_jwst / asn), "--output-dir", str(on_jwst)]) == 0

    _quiet(run, tso.cache, tso.context)
    return SimpleNamespace(e2e=e2e, on_jwst=on_jwst)


def test_simulated_tso_is_a_time_series_with_its_associations(tso):
    from astropy.io import fits

    sim = tso.sim
    assert len(sim.uncal) == 1
    with fits.open(sim.uncal[0]) as h:
        p = h[0].header
        assert (p["EXP_TYPE"], p["TSOVISIT"], p["SUBARRAY"], p["NINTS"]) == ("NRC_TSIMAGE", True, "SUB64P", 12)
        assert h["SCI"].data.shape == (12, 3, 64, 64)
        it = h["INT_TIMES"].data
        assert list(it["integration_number"]) == list(range(1, 13))
        assert np.all(np.diff(it["int_mid_MJD_UTC"]) > 0)
        assert np.all(it["int_start_MJD_UTC"] < it["int_mid_MJD_UTC"])
        assert np.all(it["int_mid_MJD_UTC"] < it["int_end_MJD_UTC"])
        # barycentric: TDB runs 69.184 s ahead of UTC; the light time to the barycentre is within 500 s
        lag = (it["int_mid_BJD_TDB"] - it["int_mid_MJD_UTC"]) * 86400 - 69.184
        assert np.all(np.abs(lag) < 500.5)
    (l2,) = sim.asn_level2
    a2, a3 = json.loads(Path(l2).read_text()), json.loads(Path(sim.asn_level3).read_text())
    assert (a2["asn_type"], a2["asn_rule"]) == ("tso-image2", "candidate_Asn_Lv2ImageTSO")
    assert a2["products"][0]["members"][0]["expname"].endswith("_rateints.fits")
    assert (a3["asn_type"], a3["asn_rule"]) == ("tso3", "candidate_Asn_Lv3TSO")
    assert [m["expname"] for m in a3["products"][0]["members"]] == [
        sim.uncal[0].name.replace("_uncal.fits", "_calints.fits")]
    truth = sim.output_dir / "truth"
    assert sorted(p.name.split("_", 2)[-1] for p in truth.iterdir()) == ["cosmic_rays.ecsv", "lightcurve.ecsv",
                                                                         "truth.ecsv"]


def _names(folder: Path, suffixes) -> set[str]:
    return {p.name for p in folder.iterdir() if p.name.endswith(tuple(suffixes))}


@pytest.mark.parity
def test_tso_products_end_to_end_match_jwst(ours_tso, jwst_tso):
    names = _names(jwst_tso, PRODUCT_SUFFIXES)
    assert {n.rsplit("_", 1)[-1] for n in names} == {"rate.fits", "rateints.fits", "calints.fits", "crfints.fits",
                                                    "phot.ecsv"}
    problems = compare_products(ours_tso.e2e, jwst_tso, names, suffixes=PRODUCT_SUFFIXES)
    assert not problems, "\n".join(["products differ from jwst's:"] + problems)


@pytest.mark.parity
def test_tso3_on_jwst_calints_matches_jwst(ours_tso, jwst_tso):
    names = _names(jwst_tso, ("_crfints.fits", "_phot.ecsv"))
    problems = compare_products(ours_tso.on_jwst, jwst_tso, names, suffixes=("_crfints.fits", "_phot.ecsv"))
    assert not problems, "\n".join(["products differ from jwst's:"] + problems)


@pytest.mark.parity
def test_light_curve_recovers_the_simulated_transit(tso, ours_tso):
    from astropy.table import Table

    (phot,) = ours_tso.e2e.glob("*_phot.ecsv")
    tab = Table.read(phot)
    (truth_path,) = (tso.sim.output_dir / "truth").glob("*_lightcurve.ecsv")
    truth = Table.read(truth_path)
    assert len(tab) == len(truth) == 12
    np.testing.assert_allclose(tab["MJD"], truth["int_mid_MJD_UTC"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(tab["BJD_TDB"], truth["int_mid_BJD_TDB"], rtol=0, atol=1e-9)
    flux = np.asarray(tab["net_aperture_sum"].value, float)
    err = np.asarray(tab["net_aperture_sum_err"].value, float)
    true = np.asarray(truth["relative_flux"], float)
    out = true == 1.0
    norm = np.median(flux[out])
    rel, rel_err = flux / norm, err / norm
    # every integration within 4 sigma of the truth, and the depth recovered within 3 sigma of its error
    assert np.all(np.abs(rel - true) < 4 * rel_err), (rel - true) / rel_err
    deep = true == true.min()
    depth = np.mean(rel[out]) - np.mean(rel[deep])
    depth_err = np.hypot(np.std(rel[out]) / np.sqrt(out.sum()), np.std(rel[out]) / np.sqrt(deep.sum()))
    assert abs(depth - truth.meta["depth"]) < 3 * depth_err + 1e-4, (depth, depth_err)
    assert depth > 5 * depth_err  # the transit is detected


def test_tso3_with_a_member_that_cannot_be_made_fails_in_one_line(tmp_path, capsys):
    from webbflow.flows.cli import main

    asn = {"asn_type": "tso3", "asn_rule": "candidate_Asn_Lv3TSO", "asn_id": "o001", "asn_pool": "pool",
           "products": [{"name": "jw01234-o001_t001_nircam_clear-f210m-sub64p",
                         "members": [{"expname": "jw01234001001_02101_00001_nrca3_calints.fits",
                                      "exptype": "science"}]}]}
    (tmp_path / "x_tso3_asn.json").write_text(json.dumps(asn))
    rc = main(["run", "tso3", str(tmp_path / "x_tso3_asn.json"), "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1
    assert "jw01234001001_02101_00001_nrca3_calints.fits" in err[0] and "_uncal" in err[0]
    assert "Traceback" not in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x_tso3_asn.json"]


@pytest.mark.parity
def test_tso_cubes_and_photometry_agree_everywhere(ours_tso, jwst_tso):
    """The stated tolerances on every element: SCI/ERR within rtol 1e-4 for 99.9 %, DQ identical, and
    every row of every numeric column of the photometry within rtol 1e-4."""
    from astropy.io import fits
    from astropy.table import Table
    from parity import compare_arrays

    for folder in (ours_tso.e2e, ours_tso.on_jwst):
        for theirs in sorted(jwst_tso.glob("*_c*ints.fits")):
            ours = folder / theirs.name
            if not ours.exists():  # tso3 alone on jwst's calints makes only the crfints
                continue
            with fits.open(ours) as a, fits.open(theirs) as b:
                for ext in ("SCI", "ERR", "VAR_POISSON", "VAR_RNOISE", "VAR_FLAT"):
                    ag = compare_arrays(f"{theirs.name}[{ext}]", a[ext].data, b[ext].data, rtol=1e-4)
                    assert ag.fraction >= 0.999, str(ag)
                np.testing.assert_array_equal(a["DQ"].data, b["DQ"].data)
        (theirs,) = jwst_tso.glob("*_phot.ecsv")
        a, b = Table.read(folder / theirs.name), Table.read(theirs)
        assert a.colnames == b.colnames
        for c in b.colnames:
            x, y = np.asarray(getattr(a[c], "value", a[c]), float), np.asarray(getattr(b[c], "value", b[c]), float)
            ag = compare_arrays(f"phot {c}", x, y, rtol=1e-4)
            assert ag.fraction == 1.0, str(ag)
