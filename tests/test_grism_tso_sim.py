"""NIRCam grism time series (NRC_TSGRISM) from the simulator through tso-spec2 and tso3, against jwst 3.0.

One small simulated grism TSO (NRCALONG SUBGRISM64, F322W2/GRISMR, 3 groups, 8 integrations, a 1 %
grey transit) with the references (the real specwcs 0010 and WFSS photom 0064) and the
associations jwst's rules make for it. jwst runs as its users run it, from the associations'
folder with CRDS_PATH on the simulation and no override: ``calwebb_detector1`` on the uncal,
``calwebb_spec2`` on the tso-spec2 association, ``calwebb_tso3`` on the tso3 association.
webbflow runs three times: ``webbflow run calwebb_spec2`` on jwst's rateints, ``webbflow run
calwebb_tso3`` on jwst's calints, and ``calwebb_tso3`` end to end from the uncal file alone
(detector1 and spec2 made on the way). Every product is compared whole
(tests/test_products_whole.py: file names, HDUs in order, keywords and their types, arrays within
rtol 1e-4 for 99.9 %, DQ equal, table columns; the whtlt.ecsv's columns, units and values within
rtol 1e-4). The white-light curve and the spectrum are then checked against the simulator's truth.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import SHARED_DATA
from test_products_whole import _quiet, compare_products

pytestmark = pytest.mark.real  # the simulation reads the real NIRCam grism references

SIM = dict(instrument="nircam", exp_type="NRC_TSGRISM", nints=8, ngroups=3, seed=5)
NINTS = SIM["nints"]
PRODUCT = "jw01234-o001_t001_nircam_f322w2-grismr-subgrism64"
EXPOSURE = "jw01234001001_02101_00001_nrcalong"
SPEC2_PRODUCTS = {f"{EXPOSURE}_calints.fits", f"{EXPOSURE}_x1dints.fits"}
TSO3_PRODUCTS = {f"{EXPOSURE}_o001_crfints.fits", f"{PRODUCT}_x1dints.fits", f"{PRODUCT}_whtlt.ecsv"}
ALL_PRODUCTS = {f"{EXPOSURE}_rate.fits", f"{EXPOSURE}_rateints.fits"} | SPEC2_PRODUCTS | TSO3_PRODUCTS
PRODUCT_SUFFIXES = ("_rate.fits", "_rateints.fits", "_calints.fits", "_x1dints.fits", "_crfints.fits", "_whtlt.ecsv")


@pytest.fixture(scope="session")
def tsg(tmp_path_factory):
    from webbflow.refs.simulator import simulate

    root = tmp_path_factory.mktemp("grism_tso")
    sim = simulate(root / "sim", **SIM)
    return SimpleNamespace(sim=sim, root=root, cache=sim.crds_path, context=sim.context)


def _inputs(sim, folder: Path, files=()) -> Path:
    """A folder as a user has it: the associations, plus the given files (uncal, rateints, calints)."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in [*sim.asn_level2, sim.asn_level3, *files]:
        shutil.copy2(f, folder / Path(f).name)
    return folder


@pytest.fixture(scope="session")
def jwst_tsg(tsg):
    from jwst.stpipe import Step

    d = _inputs(tsg.sim, tsg.root / "jwst", tsg.sim.uncal)

    def run():
        cwd = os.getcwd()
        os.chdir(d)
        try:
            Step.from_cmdline(["calwebb_detector1", tsg.sim.uncal[0].name])
            for a in tsg.sim.asn_level2:
                Step.from_cmdline(["calwebb_spec2", Path(a).name])
            Step.from_cmdline(["calwebb_tso3", Path(tsg.sim.asn_level3).name])
        finally:
            os.chdir(cwd)

    _quiet(run, tsg.cache, tsg.context)
    return d


@pytest.fixture(scope="session")
def ours_tsg(tsg, jwst_tsg):
    from webbflow.flows.cli import main

    sim = tsg.sim
    spec2 = _inputs(sim, tsg.root / "ours_spec2", jwst_tsg.glob("*_rateints.fits"))
    tso3 = _inputs(sim, tsg.root / "ours_tso3", jwst_tsg.glob(f"{EXPOSURE}_calints.fits"))
    e2e = _inputs(sim, tsg.root / "ours_e2e", sim.uncal)
    lv2, lv3 = Path(sim.asn_level2[0]).name, Path(sim.asn_level3).name

    def run():
        assert main(["run", "calwebb_spec2", str(spec2 / lv2), "--output-dir", str(spec2)]) == 0
        assert main(["run", "calwebb_tso3", str(tso3 / lv3), "--output-dir", str(tso3)]) == 0
        assert main(["run", "calwebb_tso3", str(e2e / lv3), "--output-dir", str(e2e)]) == 0

    _quiet(run, tsg.cache, tsg.context)
    return SimpleNamespace(spec2=spec2, tso3=tso3, e2e=e2e)


# extract_1d subtracts a median background: where the source is faint against it (the band's
# edges) the net flux is a small difference of large numbers, and jwst's and webbflow's sums,
# in a different order, differ there by up to ~1e-5 relative. Those two columns are held to the
# stated tolerance (rtol 1e-4 for >= 99.9 % of the values) instead of the 1e-6 used for the rest.
BACKGROUND_SUBTRACTED = ("FLUX", "SURF_BRIGHT")


def _compare(ours_dir: Path, jwst_dir: Path, names: set[str], suffixes) -> list[str]:
    from astropy.io import fits
    from parity import compare_arrays

    problems = []
    for p in compare_products(ours_dir, jwst_dir, names, suffixes=suffixes):
        col = next((c for c in BACKGROUND_SUBTRACTED if f"[EXTRACT1D]: column {c} = " in p), None)
        if col is None:
            problems.append(p)
            continue
        name = p.split("[EXTRACT1D]")[0]
        with fits.open(ours_dir / name) as a, fits.open(jwst_dir / name) as b:
            x, y = np.asarray(a["EXTRACT1D"].data[col], float), np.asarray(b["EXTRACT1D"].data[col], float)
        both = np.isnan(x) & np.isnan(y)
        ag = compare_arrays(f"{name}[EXTRACT1D] {col}", np.where(both, 0.0, x), np.where(both, 0.0, y), rtol=1e-4)
        if ag.fraction < 0.999:
            problems.append(str(ag))
    return problems


def _products(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.name.endswith((".fits", ".ecsv")) and not p.name.endswith("_uncal.fits")}


def test_simulated_grism_tso_is_a_time_series_with_its_associations(tsg):
    from astropy.io import fits

    sim = tsg.sim
    assert [p.name for p in sim.uncal] == [f"{EXPOSURE}_uncal.fits"]
    with fits.open(sim.uncal[0]) as h:
        p = h[0].header
        assert (p["EXP_TYPE"], p["TSOVISIT"], p["SUBARRAY"], p["NINTS"], p["NGROUPS"]) == (
            "NRC_TSGRISM", True, "SUBGRISM64", NINTS, 3)
        assert (p["DETECTOR"], p["MODULE"], p["FILTER"], p["PUPIL"], p["APERNAME"]) == (
            "NRCALONG", "A", "F322W2", "GRISMR", "NRCA5_GRISM64_F322W2")
        assert (p["SUBSTRT1"], p["SUBSTRT2"], p["SUBSIZE1"], p["SUBSIZE2"]) == (1, 1, 2048, 64)
        assert (h["SCI"].header["XREF_SCI"], h["SCI"].header["YREF_SCI"]) == (1581.0, 35.0)
        assert h["SCI"].data.shape == (NINTS, 3, 64, 2048)
        it = h["INT_TIMES"].data
        assert list(it["integration_number"]) == list(range(1, NINTS + 1))
        assert np.all(np.diff(it["int_mid_MJD_UTC"]) > 0)
    (l2,) = sim.asn_level2
    a2, a3 = json.loads(Path(l2).read_text()), json.loads(Path(sim.asn_level3).read_text())
    assert (a2["asn_type"], a2["asn_rule"]) == ("tso-spec2", "candidate_Asn_Lv2SpecTSO")
    assert [m["expname"] for m in a2["products"][0]["members"]] == [f"{EXPOSURE}_rateints.fits"]
    assert (a3["asn_type"], a3["asn_rule"]) == ("tso3", "candidate_Asn_Lv3TSO")
    assert a3["products"][0]["name"] == PRODUCT
    assert [m["expname"] for m in a3["products"][0]["members"]] == [f"{EXPOSURE}_calints.fits"]
    truth = sim.output_dir / "truth"
    assert sorted(p.name.split("_", 2)[-1] for p in truth.iterdir()) == [
        "cosmic_rays.ecsv", "lightcurve.ecsv", "spectrum.ecsv", "truth.ecsv"]


def test_the_cache_holds_the_real_grism_references_and_jwst_selects_them(tsg, jwst_tsg):
    """The specwcs and photom in the simulation's CRDS cache are the real files, byte for byte;
    jwst's calints records them (and the synthetic wavelengthrange), selected with CRDS_PATH alone."""
    from astropy.io import fits

    real = SHARED_DATA / "real-refs" / "nircam"
    refs = tsg.cache / "references" / "jwst" / "nircam"
    for name in ("jwst_nircam_specwcs_0010.asdf", "jwst_nircam_photom_0064.fits"):
        assert (refs / name).read_bytes() == (real / name).read_bytes(), name
    h = fits.getheader(jwst_tsg / f"{EXPOSURE}_calints.fits")
    assert h["R_SPCWCS"] == "crds://jwst_nircam_specwcs_0010.asdf"
    assert h["R_PHOTOM"] == "crds://jwst_nircam_photom_0064.fits"
    assert h["R_WAVRAN"].startswith("crds://jwst_nircam_wavelengthrange_")
    assert (h["S_WCS"], h["S_FLAT"], h["S_EXTR2D"], h["S_SRCTYP"], h["S_PHOTOM"]) == ("COMPLETE",) * 5


def test_the_trace_lands_where_jwsts_wcs_puts_it(tsg, jwst_tsg):
    """The simulated spectrum sits on the row and at the wavelengths that jwst's WCS (the real
    specwcs) gives: the brightest row of jwst's cutout is its source row 34, the counts rise and
    fall with the filter's band over the columns jwst assigns 2.4-4.0 um, and the truth's
    wavelength per column is jwst's."""
    from astropy.io import fits
    from astropy.table import Table

    (spec_path,) = (tsg.sim.output_dir / "truth").glob("*_spectrum.ecsv")
    truth = Table.read(spec_path)
    with fits.open(jwst_tsg / f"{EXPOSURE}_calints.fits") as h:
        sci, wl = h["SCI"].data, h["WAVELENGTH"].data
        assert (h["SCI"].header["SLTSTRT1"], h["SCI"].header["SLTSTRT2"]) == (1, 1)
        assert h["SCI"].header["SRCYPOS"] == 34
    profile = np.nansum(sci[0][:, 300:1500], axis=1)
    assert int(np.argmax(profile)) == 34 == round(float(np.median(truth["trace_y"])))
    assert profile[34] > 0.4 * profile.sum()  # a compact trace, not a smear
    row = wl[34]
    np.testing.assert_allclose(truth["wavelength"], row, rtol=0, atol=1e-5)
    lit = np.asarray(truth["count_rate"]) > 0.05 * np.max(truth["count_rate"])
    assert 2.3 < row[lit].min() < 2.6 and 3.9 < row[lit].max() < 4.2  # F322W2's band, ~1 nm per pixel
    assert 1500 < lit.sum() < 1800
    col = np.nansum(sci[0], axis=0)
    assert np.nanmedian(col[lit]) > 20 * np.nanmedian(np.abs(col[~lit & np.isfinite(col)]))


@pytest.mark.parity
def test_spec2_on_jwst_rateints_matches_jwst(ours_tsg, jwst_tsg):
    assert _products(ours_tsg.spec2) - {f"{EXPOSURE}_rateints.fits"} == SPEC2_PRODUCTS
    problems = _compare(ours_tsg.spec2, jwst_tsg, SPEC2_PRODUCTS, suffixes=("_calints.fits", "_x1dints.fits"))
    assert not problems, "\n".join(["products differ from jwst's:"] + problems)


@pytest.mark.parity
def test_tso3_on_jwst_calints_matches_jwst(ours_tsg, jwst_tsg):
    assert _products(ours_tsg.tso3) - {f"{EXPOSURE}_calints.fits"} == TSO3_PRODUCTS
    problems = _compare(ours_tsg.tso3, jwst_tsg, TSO3_PRODUCTS,
                        suffixes=("_crfints.fits", f"{PRODUCT}_x1dints.fits", "_whtlt.ecsv"))
    assert not problems, "\n".join(["products differ from jwst's:"] + problems)


@pytest.mark.parity
def test_tso3_end_to_end_from_the_uncal_matches_jwst(ours_tsg, jwst_tsg):
    assert _products(jwst_tsg) == ALL_PRODUCTS
    assert _products(ours_tsg.e2e) == ALL_PRODUCTS
    problems = _compare(ours_tsg.e2e, jwst_tsg, ALL_PRODUCTS, suffixes=PRODUCT_SUFFIXES)
    assert not problems, "\n".join(["products differ from jwst's:"] + problems)


@pytest.mark.parity
def test_white_light_curve_and_spectrum_recover_the_truth(tsg, ours_tsg, jwst_tsg):
    from astropy.io import fits
    from astropy.table import Table

    truth_dir = tsg.sim.output_dir / "truth"
    (lc_path,) = truth_dir.glob("*_lightcurve.ecsv")
    (spec_path,) = truth_dir.glob("*_spectrum.ecsv")
    truth, spec = Table.read(lc_path), Table.read(spec_path)
    for folder in (ours_tsg.e2e, jwst_tsg):
        wl = Table.read(folder / f"{PRODUCT}_whtlt.ecsv")
        assert len(wl) == len(truth) == NINTS
        np.testing.assert_allclose(wl["MJD_UTC"], truth["int_mid_MJD_UTC"], rtol=0, atol=1e-9)
        flux = np.asarray(wl["whitelight_flux"].value, float)
        true = np.asarray(truth["relative_flux"], float)
        out, deep = true == 1.0, true == true.min()
        rel = flux / np.median(flux[out])
        scatter = np.std(rel[out], ddof=1)
        depth = np.mean(rel[out]) - np.mean(rel[deep])
        depth_err = scatter * np.sqrt(1 / out.sum() + 1 / deep.sum())
        # the truth's depth within 3 sigma of the measured noise, and detected
        assert abs(depth - truth.meta["depth"]) < 3 * depth_err + 2e-4, (depth, depth_err)
        assert depth > 5 * depth_err
        assert np.all(np.abs(rel - true) < 5 * scatter + 2e-4), rel - true

    # the extracted order-1 spectrum is the truth's F_nu (Jy) where the band's response is high
    with fits.open(ours_tsg.e2e / f"{PRODUCT}_x1dints.fits") as h:
        t = h["EXTRACT1D"].data
        assert h["EXTRACT1D"].columns["FLUX"].unit == "Jy"
        first = t["INT_NUM"] == 1
        w, f, e = t["WAVELENGTH"][first][0], t["FLUX"][first][0], t["FLUX_ERROR"][first][0]
    inside = (w > 2.6) & (w < 3.9) & np.isfinite(f)
    expected = np.interp(w[inside], spec["wavelength"], spec["flux"])
    assert inside.sum() > 1000
    assert np.median(f[inside] / e[inside]) > 50  # S/N per pixel well above 5
    assert np.median(np.abs(f[inside] / expected - 1)) < 0.03


def test_grism_tso_simulation_refuses_other_grisms_and_detectors_in_one_line(tmp_path, capsys):
    from webbflow.flows.cli import main

    for extra, word in ((["--pupil", "GRISMC"], "GRISMR"), (["--detector", "NRCBLONG"], "NRCALONG"),
                        (["--subarray", "SUB64P"], "SUBGRISM")):
        out = tmp_path / extra[1]
        rc = main(["simulate", "--instrument", "nircam", "--exp-type", "NRC_TSGRISM", "--nints", "4",
                   "--output-dir", str(out), *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc != 0 and len(err) == 1 and word in err[0] and "Traceback" not in err[0], err
        assert not out.exists() or not any(out.iterdir())


@pytest.mark.parity
def test_the_associations_are_those_jwsts_rules_make_from_the_pool(tsg):
    """jwst's association generator, on the pool the simulation wrote, gives the same association
    files field for field (the constraints' repr and the producer's version aside)."""
    from jwst.associations import AssociationPool
    from jwst.associations.main import Main
    from parity import quiet_jwst

    def strip(asn):
        return {k: v for k, v in asn.items() if k not in ("constraints", "code_version")}

    (pool,) = tsg.sim.output_dir.glob("*_pool.csv")
    with quiet_jwst():
        gen = Main.cli(["--dry-run", "--version-id", "20240115t030000"], pool=AssociationPool.read(str(pool)))
    theirs = {a.asn_name + ".json": strip(json.loads(a.dump(format="json")[1])) for a in gen.associations}
    ours = {Path(p).name: strip(json.loads(Path(p).read_text())) for p in [*tsg.sim.asn_level2, tsg.sim.asn_level3]}
    assert ours == theirs


def test_missing_real_references_stop_the_simulation_before_it_writes(tmp_path, monkeypatch, capsys):
    from webbflow.flows.cli import main

    monkeypatch.setenv("WEBBFLOW_REAL_REFS", str(tmp_path / "nowhere"))
    out = tmp_path / "sim"
    rc = main(["simulate", "--instrument", "nircam", "--exp-type", "NRC_TSGRISM", "--output-dir", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and "jwst_nircam_specwcs_0010.asdf" in err[0] and "Traceback" not in err[0]
    assert not out.exists()
