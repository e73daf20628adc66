"""NIRISS WFSS (NIS_WFSS) from the simulator through jwst's direct-image chain, spec2 and spec3, against jwst 3.0.

One small simulated NIRISS WFSS observation (refs/sim/wfss_niriss.py): a CLEAR/F150W direct image
(3 groups) and one GR150R/F150W dispersed exposure (4 groups) of the same field of five compact
sources, both on the SUB256 window (real WFSS is full frame; jwst's rules and steps take the
window alike, and it keeps CI small), with its references (the synthetic NIRISS specwcs with fwcpos_ref, WFSS
photom, wavelengthrange and bkg) and the associations jwst's rules make.  jwst runs as its users
run it, from the associations' folder with CRDS_PATH on the simulation and no override:
``calwebb_detector1`` on both uncal files, then ``calwebb_image2``, ``calwebb_image3`` (the i2d,
source catalogue and segmentation map), ``calwebb_spec2`` and ``calwebb_spec3``.  webbflow's
``calwebb_spec2`` runs on jwst's inputs (the dispersed rate, the catalogue, the segmentation map
and the i2d) and its ``calwebb_spec3`` on jwst's cal; each must write the products jwst writes
(cal, x1d; x1d, c1d), whole (tests/test_products_whole.py: HDUs, keywords and their types, arrays
within rtol 1e-4 for 99.9 %, DQ identical, table columns), with the same source ids, orders and
cutouts.  The extracted spectra are then checked against the simulator's truth.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from test_products_whole import _quiet, compare_products

SIM = dict(instrument="niriss", exp_type="NIS_WFSS", filter="GR150R", pupil="F150W", subarray="SUB256", seed=3)
DIRECT = "jw01234001001_02101_00001_nis"
GRISM = "jw01234001001_02102_00001_nis"
IMAGE3 = "jw01234-o001_t001_niriss_clear-f150w-sub256"
SPEC3 = "jw01234-o001_t001_niriss_f150w-gr150r"
SPEC2_PRODUCTS = {f"{GRISM}_cal.fits", f"{GRISM}_x1d.fits"}
SPEC3_PRODUCTS = {f"{SPEC3}_x1d.fits", f"{SPEC3}_c1d.fits"}


@pytest.fixture(scope="session")
def nis_wfss(tmp_path_factory):
    from webbflow.refs.simulator import simulate

    root = tmp_path_factory.mktemp("nis_wfss")
    sim = simulate(root / "sim", **SIM)
    return SimpleNamespace(sim=sim, root=root, cache=sim.crds_path, context=sim.context)


def _asns(sim):
    return [*sim.asn_level2, *sim.asn_level3_all]


@pytest.fixture(scope="session")
def jwst_nis_wfss(nis_wfss):
    """jwst as its users run it: detector1 on each uncal, then image2, image3, spec2, spec3 from the asn folder."""
    from jwst.stpipe import Step

    d = nis_wfss.root / "jwst"
    d.mkdir()
    for f in [*_asns(nis_wfss.sim), *nis_wfss.sim.uncal]:
        shutil.copy2(f, d / Path(f).name)

    def run():
        cwd = os.getcwd()
        os.chdir(d)
        try:
            for u in nis_wfss.sim.uncal:
                Step.from_cmdline(["calwebb_detector1", u.name])
            for kind in ("image2", "image3", "spec2", "spec3"):
                for a in sorted(d.glob(f"*_{kind}_*_asn.json")):
                    Step.from_cmdline([f"calwebb_{kind}", a.name])
        finally:
            os.chdir(cwd)

    _quiet(run, nis_wfss.cache, nis_wfss.context)
    return d


@pytest.fixture(scope="session")
def ours_spec2(nis_wfss, jwst_nis_wfss):
    """webbflow's spec2 on jwst's inputs: the dispersed rate and the direct image's i2d, cat and segm."""
    from webbflow.flows.cli import main

    d = nis_wfss.root / "ours_spec2"
    d.mkdir()
    (asn,) = [a for a in nis_wfss.sim.asn_level2 if "_spec2_" in Path(a).name]
    shutil.copy2(asn, d / Path(asn).name)
    for name in (f"{GRISM}_rate.fits", f"{IMAGE3}_i2d.fits", f"{IMAGE3}_cat.ecsv", f"{IMAGE3}_segm.fits"):
        shutil.copy2(jwst_nis_wfss / name, d / name)
    rc = _quiet(lambda: main(["run", "calwebb_spec2", str(d / Path(asn).name), "--output-dir", str(d)]),
                nis_wfss.cache, nis_wfss.context)
    assert rc == 0
    return d


@pytest.fixture(scope="session")
def ours_spec3(nis_wfss, jwst_nis_wfss):
    """webbflow's spec3 on jwst's cal file."""
    from webbflow.flows.cli import main

    d = nis_wfss.root / "ours_spec3"
    d.mkdir()
    (asn,) = [a for a in nis_wfss.sim.asn_level3_all if "_spec3_" in Path(a).name]
    shutil.copy2(asn, d / Path(asn).name)
    shutil.copy2(jwst_nis_wfss / f"{GRISM}_cal.fits", d / f"{GRISM}_cal.fits")
    rc = _quiet(lambda: main(["run", "calwebb_spec3", str(d / Path(asn).name), "--output-dir", str(d)]),
                nis_wfss.cache, nis_wfss.context)
    assert rc == 0
    return d


def _cutouts(path):
    """(source id, order, xstart, ystart, xsize, ysize) of every slit of a WFSS cal product, in file order."""
    from astropy.io import fits

    with fits.open(path) as h:
        return [(h[i].header["SOURCEID"], h[i].header["SPORDER"], h[i].header["SLTSTRT1"], h[i].header["SLTSTRT2"],
                 h[i].header["SLTSIZE1"], h[i].header["SLTSIZE2"]) for i in range(len(h)) if h[i].name == "SCI"]


def test_simulated_niriss_wfss_is_a_direct_image_and_a_dispersed_exposure_with_their_associations(nis_wfss):
    from astropy.io import fits

    sim = nis_wfss.sim
    assert [p.name for p in sim.uncal] == [f"{DIRECT}_uncal.fits", f"{GRISM}_uncal.fits"]
    heads = [fits.getheader(p) for p in sim.uncal]
    # NIRISS: the grism sits in the filter wheel, the blocking filter in the pupil wheel
    assert [(h["EXP_TYPE"], h["FILTER"], h["PUPIL"], h["SUBARRAY"]) for h in heads] == [
        ("NIS_IMAGE", "CLEAR", "F150W", "SUB256"), ("NIS_WFSS", "GR150R", "F150W", "SUB256")]
    assert all(h["DETECTOR"] == "NIS" and isinstance(h["FWCPOS"], float) for h in heads)
    sci = [fits.getheader(p, "SCI") for p in sim.uncal]
    assert sci[0]["PA_V3"] == pytest.approx(sci[1]["PA_V3"], abs=1e-9)
    asns = {Path(p).name.split("_")[2]: json.loads(Path(p).read_text()) for p in _asns(sim)}
    assert set(asns) == {"image2", "image3", "spec2", "spec3"}
    assert asns["image3"]["products"][0]["name"] == IMAGE3
    members = {m["exptype"]: m["expname"] for m in asns["spec2"]["products"][0]["members"]}
    assert members == {"science": f"{GRISM}_rate.fits", "direct_image": f"{IMAGE3}_i2d.fits",
                       "sourcecat": f"{IMAGE3}_cat.ecsv", "segmap": f"{IMAGE3}_segm.fits"}
    assert asns["spec3"]["products"][0]["name"] == SPEC3
    assert [m["expname"] for m in asns["spec3"]["products"][0]["members"]] == [f"{GRISM}_cal.fits"]
    names = sorted(p.name.split("_", 2)[-1] for p in (sim.output_dir / "truth").iterdir())
    assert names == ["cosmic_rays.ecsv", "sources.ecsv", "spectra.ecsv"]


def test_niriss_wfss_simulation_refuses_what_it_cannot_simulate_in_one_line(tmp_path, capsys):
    from webbflow.flows.cli import main

    for extra, word in ((["--filter", "CLEAR"], "GR150R"), (["--pupil", "F444W"], "F150W"),
                        (["--subarray", "SUB64"], "SUB256"), (["--detector", "NRCALONG"], "NIS")):
        out = tmp_path / extra[1]
        rc = main(["simulate", "--instrument", "niriss", "--exp-type", "NIS_WFSS", "--output-dir", str(out), *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc != 0 and len(err) == 1 and word in err[0] and "Traceback" not in err[0], err
        assert not out.exists() or not any(out.iterdir())


@pytest.mark.parity
def test_the_references_are_in_jwsts_form(nis_wfss):
    """The grism references open as jwst's own models: NIRISSGrismModel with fwcpos_ref and
    invertible order polynomials, NisWfssPhotomModel rows per grism, filter and order."""
    from stdatamodels.jwst import datamodels as dm

    from webbflow.refs.sim.wfss_niriss import FWCPOS_REF

    refs = nis_wfss.cache / "references" / "jwst" / "niriss"
    (specwcs,) = refs.glob("jwst_niriss_specwcs_gr150r_f150w_*.asdf")
    with dm.NIRISSGrismModel(str(specwcs)) as m:
        assert m.fwcpos_ref == FWCPOS_REF["GR150R"] and list(m.orders) == [1, 2]
        for displ, inv in zip(m.displ, m.invdispl):
            t = np.linspace(0.1, 0.9, 5)
            np.testing.assert_allclose(inv(displ(t)), t, atol=1e-9)
    (photom,) = refs.glob("jwst_niriss_photom_wfss_*.fits")
    with dm.open(str(photom)) as p:
        assert type(p).__name__ == "NisWfssPhotomModel"
        rows = {(r["filter"], r["pupil"], r["order"]) for r in p.phot_table}
        assert {("GR150R", "F150W", 1), ("GR150C", "F200W", 2)} <= rows


@pytest.mark.parity
def test_the_associations_are_those_jwsts_rules_make_from_the_pool(nis_wfss):
    from jwst.associations import AssociationPool
    from jwst.associations.main import Main
    from parity import quiet_jwst

    def strip(asn):
        return {k: v for k, v in asn.items() if k not in ("constraints", "code_version")}

    (pool,) = nis_wfss.sim.output_dir.glob("*_pool.csv")
    with quiet_jwst():
        gen = Main.cli(["--dry-run", "--version-id", "20240115t030000"], pool=AssociationPool.read(str(pool)))
    theirs = {a.asn_name + ".json": strip(json.loads(a.dump(format="json")[1])) for a in gen.associations}
    ours = {Path(p).name: strip(json.loads(Path(p).read_text())) for p in _asns(nis_wfss.sim)}
    assert ours == theirs


@pytest.mark.parity
def test_jwst_selects_the_niriss_grism_references_and_runs_every_wfss_step(nis_wfss, jwst_nis_wfss):
    from astropy.io import fits

    g = fits.getheader(jwst_nis_wfss / f"{GRISM}_cal.fits")
    assert g["R_SPCWCS"] == "crds://jwst_niriss_specwcs_gr150r_f150w_0001.asdf"
    assert g["R_PHOTOM"] == "crds://jwst_niriss_photom_wfss_0001.fits"
    assert g["R_BKG"] == "crds://jwst_niriss_bkg_gr150r_f150w_0001.fits"
    assert g["R_WAVRAN"] == "crds://jwst_niriss_wavelengthrange_0001.asdf"
    for step in ("S_WCS", "S_BKDSUB", "S_FLAT", "S_EXTR2D", "S_SRCTYP", "S_PHOTOM"):
        assert g[step] == "COMPLETE", step
    assert fits.getheader(jwst_nis_wfss / f"{GRISM}_x1d.fits")["S_EXTR1D"] == "COMPLETE"
    d = fits.getheader(jwst_nis_wfss / f"{DIRECT}_cal.fits")
    assert d["R_PHOTOM"] != g["R_PHOTOM"] and d["R_PHOTOM"].startswith("crds://jwst_niriss_photom_")


@pytest.mark.parity
def test_spec2_on_jwsts_inputs_writes_jwsts_products_whole(ours_spec2, jwst_nis_wfss):
    made = {p.name for p in ours_spec2.iterdir() if p.name.endswith((".fits", ".ecsv"))}
    assert made - {f"{GRISM}_rate.fits", f"{IMAGE3}_i2d.fits", f"{IMAGE3}_segm.fits", f"{IMAGE3}_cat.ecsv"} == \
        SPEC2_PRODUCTS
    theirs = _cutouts(jwst_nis_wfss / f"{GRISM}_cal.fits")
    assert _cutouts(ours_spec2 / f"{GRISM}_cal.fits") == theirs
    # every simulated source, order 1; GR150R disperses along the columns: the cutouts are tall
    assert len({c[0] for c in theirs}) == 5 and {c[1] for c in theirs} == {1}
    assert all(c[5] > c[4] for c in theirs)
    problems = compare_products(ours_spec2, jwst_nis_wfss, SPEC2_PRODUCTS, suffixes=("_cal.fits", "_x1d.fits"))
    assert not problems, "\n".join(["products differ from jwst's:"] + problems)


@pytest.mark.parity
def test_spec3_on_jwsts_cal_writes_jwsts_x1d_and_c1d_whole(ours_spec3, jwst_nis_wfss):
    made = {p.name for p in ours_spec3.iterdir() if p.name.endswith(".fits")} - {f"{GRISM}_cal.fits"}
    assert made == SPEC3_PRODUCTS
    problems = compare_products(ours_spec3, jwst_nis_wfss, SPEC3_PRODUCTS, suffixes=("_x1d.fits", "_c1d.fits"))
    assert not problems, "\n".join(["products differ from jwst's:"] + problems)


@pytest.mark.parity
def test_the_x1d_recovers_the_truth(nis_wfss, ours_spec2):
    """Each point source gives back the simulated F_nu over the blocking filter's band (within 5 %)."""
    from astropy.coordinates import SkyCoord
    from astropy.io import fits
    from astropy.table import Table

    with fits.open(ours_spec2 / f"{GRISM}_x1d.fits") as h:
        t = h["EXTRACT1D"].data
        assert h["EXTRACT1D"].columns["FLUX"].unit == "Jy"
    truth_dir = nis_wfss.sim.output_dir / "truth"
    (src_path,) = truth_dir.glob("*_sources.ecsv")
    (spec_path,) = truth_dir.glob("*_spectra.ecsv")
    src, spec = Table.read(src_path), Table.read(spec_path)
    idx, sep, _ = SkyCoord(t["SOURCE_RA"], t["SOURCE_DEC"], unit="deg").match_to_catalog_sky(
        SkyCoord(src["ra"], src["dec"]))
    assert np.all(sep.arcsec < 0.1) and len(set(idx)) == len(src) == len(t)
    lo, hi = 1.36, 1.64  # inside F150W's half-power band
    checked = 0
    for row, i in zip(t, idx):
        s = src[i]
        if s["kind"] != "point":
            continue
        mine = spec[spec["source_id"] == s["id"]]
        n = row["N_ALONGDISP"]
        w, f, e = row["WAVELENGTH"][:n], row["FLUX"][:n], row["FLUX_ERROR"][:n]
        inside = (w > lo) & (w < hi) & np.isfinite(f)
        assert inside.sum() > 40, s["id"]
        expected = np.interp(w[inside], mine["wavelength"], mine["flux"])
        assert np.median(f[inside] / e[inside]) > 5, s["id"]  # S/N per pixel
        assert abs(np.median(f[inside] / expected) - 1) < 0.05, (s["id"], np.median(f[inside] / expected))
        checked += 1
    assert checked == 3


def test_an_observation_runs_the_wfss_spec3_after_the_spec2_that_makes_its_cal(nis_wfss):
    """``webbflow run observation``'s order: image2, then image3 (the catalogue), then spec2, then
    spec3 on spec2's cal (not from the uncal, where the catalogue would be missing)."""
    from webbflow.flows.asn.engine import generate
    from webbflow.flows.asn.pool import read_pool
    from webbflow.flows.observation import plan

    (pool,) = nis_wfss.sim.output_dir.glob("*_pool.csv")
    first, second, third, skipped = plan(generate(read_pool(pool)))
    assert [a.asn_type for a in first] == ["image2"] and [a.asn_type for a in second] == ["image3"]
    assert [a.asn_type for a in third] == ["spec2", "spec3"] and not skipped
