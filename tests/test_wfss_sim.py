"""NIRCam WFSS (NRC_WFSS) from the simulator through jwst's direct-image chain and spec2, against jwst 3.0.

One small simulated WFSS observation (refs/sim/wfss.py): a full-frame F444W direct image and one
GRISMR exposure on SUB640 (8 groups) of the same field of compact sources, with the references
(the real specwcs 0010 and WFSS photom 0064, synthetic wavelengthrange and bkg) and the
associations jwst's rules make.  jwst runs as its users run it, from the associations' folder with
CRDS_PATH on the simulation and no override: ``calwebb_detector1`` on both uncal files,
``calwebb_image2`` and ``calwebb_image3`` on the direct image's associations (which make the i2d,
source catalogue and segmentation map), then ``calwebb_spec2`` on the WFSS association.
webbflow's ``calwebb_spec2`` runs on jwst's inputs (the dispersed rate, the catalogue, the
segmentation map and the i2d) and must write the products jwst writes (cal, x1d), whole
(tests/test_products_whole.py: HDUs, keywords and their types, arrays within rtol 1e-4 for
99.9 %, table columns), with the same source ids, orders and cutouts.  The extracted spectra are
then checked against the simulator's truth.
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

SIM = dict(instrument="nircam", exp_type="NRC_WFSS", pupil="GRISMR", filter="F444W", seed=3)
DIRECT = "jw01234001001_02101_00001_nrcalong"
GRISM = "jw01234001001_02102_00001_nrcalong"
IMAGE3 = "jw01234-o001_t001_nircam_clear-f444w"
SPEC3 = "jw01234-o001_t001_nircam_f444w-grismr"
SPEC2_PRODUCTS = {f"{GRISM}_cal.fits", f"{GRISM}_x1d.fits"}


@pytest.fixture(scope="session")
def wfss(tmp_path_factory):
    from webbflow.refs.simulator import simulate

    root = tmp_path_factory.mktemp("wfss")
    sim = simulate(root / "sim", **SIM)
    return SimpleNamespace(sim=sim, root=root, cache=sim.crds_path, context=sim.context)


def _asns(sim):
    return [*sim.asn_level2, *sim.asn_level3_all]


@pytest.fixture(scope="session")
def jwst_wfss(wfss):
    """jwst as its users run it: detector1 on each uncal, then image2, image3, spec2 from the asn folder."""
    from jwst.stpipe import Step

    d = wfss.root / "jwst"
    d.mkdir()
    for f in [*_asns(wfss.sim), *wfss.sim.uncal]:
        shutil.copy2(f, d / Path(f).name)

    def run():
        cwd = os.getcwd()
        os.chdir(d)
        try:
            for u in wfss.sim.uncal:
                Step.from_cmdline(["calwebb_detector1", u.name])
            for kind in ("image2", "image3", "spec2"):
                for a in sorted(d.glob(f"*_{kind}_*_asn.json")):
                    Step.from_cmdline([f"calwebb_{kind}", a.name])
        finally:
            os.chdir(cwd)

    _quiet(run, wfss.cache, wfss.context)
    return d


@pytest.fixture(scope="session")
def ours_wfss(wfss, jwst_wfss):
    """webbflow's spec2 on jwst's inputs: the dispersed rate and the direct image's i2d, cat and segm."""
    from webbflow.flows.cli import main

    d = wfss.root / "ours_spec2"
    d.mkdir()
    (asn,) = [a for a in wfss.sim.asn_level2 if "_spec2_" in Path(a).name]
    shutil.copy2(asn, d / Path(asn).name)
    for name in (f"{GRISM}_rate.fits", f"{IMAGE3}_i2d.fits", f"{IMAGE3}_cat.ecsv", f"{IMAGE3}_segm.fits"):
        shutil.copy2(jwst_wfss / name, d / name)
    rc = _quiet(lambda: main(["run", "calwebb_spec2", str(d / Path(asn).name), "--output-dir", str(d)]),
                wfss.cache, wfss.context)
    assert rc == 0
    return d


def _cutouts(path):
    """(source id, order, xstart, ystart, xsize, ysize) of every slit of a WFSS cal product, in file order."""
    from astropy.io import fits

    with fits.open(path) as h:
        return [(h[i].header["SOURCEID"], h[i].header["SPORDER"], h[i].header["SLTSTRT1"], h[i].header["SLTSTRT2"],
                 h[i].header["SLTSIZE1"], h[i].header["SLTSIZE2"]) for i in range(len(h)) if h[i].name == "SCI"]


def test_simulated_wfss_is_a_direct_image_and_a_dispersed_exposure_with_their_associations(wfss):
    from astropy.io import fits

    sim = wfss.sim
    assert [p.name for p in sim.uncal] == [f"{DIRECT}_uncal.fits", f"{GRISM}_uncal.fits"]
    heads = [fits.getheader(p) for p in sim.uncal]
    assert [(h["EXP_TYPE"], h["FILTER"], h["PUPIL"], h["SUBARRAY"]) for h in heads] == [
        ("NRC_IMAGE", "F444W", "CLEAR", "FULL"), ("NRC_WFSS", "F444W", "GRISMR", "SUB640")]
    assert all((h["DETECTOR"], h["MODULE"]) == ("NRCALONG", "A") for h in heads)
    # one field: the dispersed window's reference point is where the direct image's WCS says
    sci = [fits.getheader(p, "SCI") for p in sim.uncal]
    assert sci[0]["PA_V3"] == pytest.approx(sci[1]["PA_V3"], abs=1e-9)
    assert sci[0]["RA_V1"] == pytest.approx(sci[1]["RA_V1"], abs=1e-12)
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


def test_wfss_simulation_refuses_what_it_cannot_simulate_in_one_line(tmp_path, capsys):
    from webbflow.flows.cli import main

    for extra, word in ((["--pupil", "CLEAR"], "GRISMR"), (["--detector", "NRCBLONG"], "NRCALONG"),
                        (["--filter", "F200W"], "F444W"), (["--subarray", "SUBGRISM64"], "SUB640")):
        out = tmp_path / extra[1]
        rc = main(["simulate", "--instrument", "nircam", "--exp-type", "NRC_WFSS", "--output-dir", str(out), *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc != 0 and len(err) == 1 and word in err[0] and "Traceback" not in err[0], err
        assert not out.exists() or not any(out.iterdir())


@pytest.mark.parity
def test_the_associations_are_those_jwsts_rules_make_from_the_pool(wfss):
    from jwst.associations import AssociationPool
    from jwst.associations.main import Main
    from parity import quiet_jwst

    def strip(asn):
        return {k: v for k, v in asn.items() if k not in ("constraints", "code_version")}

    (pool,) = wfss.sim.output_dir.glob("*_pool.csv")
    with quiet_jwst():
        gen = Main.cli(["--dry-run", "--version-id", "20240115t030000"], pool=AssociationPool.read(str(pool)))
    theirs = {a.asn_name + ".json": strip(json.loads(a.dump(format="json")[1])) for a in gen.associations}
    ours = {Path(p).name: strip(json.loads(Path(p).read_text())) for p in _asns(wfss.sim)}
    assert ours == theirs


@pytest.mark.parity
def test_jwst_selects_the_grism_references_from_the_cache_and_the_imaging_ones_for_the_direct_image(wfss, jwst_wfss):
    from astropy.io import fits

    real = SHARED_DATA / "real-refs" / "nircam"
    refs = wfss.cache / "references" / "jwst" / "nircam"
    for name in ("jwst_nircam_specwcs_0010.asdf", "jwst_nircam_photom_0064.fits"):
        assert (refs / name).read_bytes() == (real / name).read_bytes(), name
    g = fits.getheader(jwst_wfss / f"{GRISM}_cal.fits")
    assert g["R_SPCWCS"] == "crds://jwst_nircam_specwcs_0010.asdf"
    assert g["R_PHOTOM"] == "crds://jwst_nircam_photom_0064.fits"
    assert g["R_BKG"] == "crds://jwst_nircam_bkg_0001.fits"
    assert g["R_WAVRAN"] == "crds://jwst_nircam_wavelengthrange_0001.asdf"
    for step in ("S_WCS", "S_BKDSUB", "S_FLAT", "S_EXTR2D", "S_SRCTYP", "S_PHOTOM"):
        assert g[step] == "COMPLETE", step
    assert fits.getheader(jwst_wfss / f"{GRISM}_x1d.fits")["S_EXTR1D"] == "COMPLETE"
    d = fits.getheader(jwst_wfss / f"{DIRECT}_cal.fits")
    assert d["R_PHOTOM"] != g["R_PHOTOM"] and d["R_PHOTOM"].startswith("crds://jwst_nircam_photom_")


@pytest.mark.parity
def test_spec2_on_jwsts_inputs_writes_jwsts_products_whole(ours_wfss, jwst_wfss):
    made = {p.name for p in ours_wfss.iterdir() if p.name.endswith((".fits", ".ecsv"))}
    assert made - {f"{GRISM}_rate.fits", f"{IMAGE3}_i2d.fits", f"{IMAGE3}_segm.fits", f"{IMAGE3}_cat.ecsv"} == \
        SPEC2_PRODUCTS
    # the same sources, orders and cutouts, in the same order
    theirs = _cutouts(jwst_wfss / f"{GRISM}_cal.fits")
    assert _cutouts(ours_wfss / f"{GRISM}_cal.fits") == theirs
    assert len({c[0] for c in theirs}) >= 6 and {c[1] for c in theirs} == {1}
    problems = compare_products(ours_wfss, jwst_wfss, SPEC2_PRODUCTS, suffixes=("_cal.fits", "_x1d.fits"))
    assert not problems, "\n".join(["products differ from jwst's:"] + problems)


@pytest.mark.parity
def test_the_x1d_is_jwsts_flat_wfss_table_and_recovers_the_truth(wfss, ours_wfss):
    """One EXTRACT1D table for the exposure's order 1, a row per catalogue source; each point source
    wholly on the window gives back the simulated F_nu where the band's response is high."""
    from astropy.coordinates import SkyCoord
    from astropy.io import fits
    from astropy.table import Table
    from stdatamodels.jwst import datamodels as dm

    with dm.open(ours_wfss / f"{GRISM}_x1d.fits") as x1d:
        assert type(x1d).__name__ == "WFSSMultiSpecModel" and len(x1d.spec) == 1
        assert (x1d.spec[0].spectral_order, x1d.spec[0].group_id) == (1, "jw01234001001_02102_00001_1")
    with fits.open(ours_wfss / f"{GRISM}_x1d.fits") as h:
        t = h["EXTRACT1D"].data
        assert h["EXTRACT1D"].columns["FLUX"].unit == "Jy"
    truth_dir = wfss.sim.output_dir / "truth"
    (src_path,) = truth_dir.glob("*_sources.ecsv")
    (spec_path,) = truth_dir.glob("*_spectra.ecsv")
    src, spec = Table.read(src_path), Table.read(spec_path)
    cat_pos = SkyCoord(t["SOURCE_RA"], t["SOURCE_DEC"], unit="deg")
    true_pos = SkyCoord(src["ra"], src["dec"])
    idx, sep, _ = cat_pos.match_to_catalog_sky(true_pos)
    assert np.all(sep.arcsec < 0.1)  # every catalogue source is a simulated one
    assert len(set(idx)) == len(src)  # and every simulated source was found
    checked = 0
    for row, i in zip(t, idx):
        s = src[i]
        if s["kind"] != "point":
            continue
        mine = spec[(spec["source_id"] == s["id"]) & (spec["order"] == 1)]
        n = row["N_ALONGDISP"]
        w, f, e = row["WAVELENGTH"][:n], row["FLUX"][:n], row["FLUX_ERROR"][:n]
        # where the band's response is high and the trace (truth) lies on the window, clear of its edges
        xg = np.interp(w, mine["wavelength"], mine["x_grism"])
        inside = (w > 4.0) & (w < 4.8) & np.isfinite(f) & (xg > 5) & (xg < 634)
        if inside.sum() < 150:
            continue
        expected = np.interp(w[inside], mine["wavelength"], mine["flux"])
        assert np.median(f[inside] / e[inside]) > 5, s["id"]  # S/N per pixel
        assert abs(np.median(f[inside] / expected) - 1) < 0.05, (s["id"], np.median(f[inside] / expected))
        checked += 1
    assert checked >= 2


def test_a_wfss_spec2_association_makes_the_direct_images_level3_products_first(tmp_path, monkeypatch):
    """``webbflow run calwebb_spec2`` on a WFSS association whose catalogue, segmentation map and i2d
    are not made yet runs the image3 association of the same folder that makes them (into the output
    folder), and hands spec2 the files where they were made (the level-3 run is replaced here by one
    that writes the files: the real chain adds a full-frame image3 to CI's time)."""
    from webbflow.flows import _spec2_grism, association

    folder, out = tmp_path / "asn", tmp_path / "out"
    folder.mkdir()
    out.mkdir()

    def asn(name, level_type, product, members):
        (folder / name).write_text(json.dumps({
            "asn_type": level_type, "asn_rule": "x", "asn_id": "o001", "asn_pool": "p.csv", "program": "01234",
            "products": [{"name": product, "members": [{"expname": e, "exptype": t} for e, t in members]}]}))
        return folder / name

    spec2 = asn("a_spec2_00001_asn.json", "spec2", GRISM, [
        (f"{GRISM}_rate.fits", "science"), (f"{IMAGE3}_i2d.fits", "direct_image"),
        (f"{IMAGE3}_cat.ecsv", "sourcecat"), (f"{IMAGE3}_segm.fits", "segmap")])
    image3 = asn("a_image3_00001_asn.json", "image3", IMAGE3, [(f"{DIRECT}_cal.fits", "science")])
    asn("a_image3_00002_asn.json", "image3", "jw01234-o001_t001_nircam_clear-f150w", [("other_cal.fits", "science")])
    ran = []

    def fake_level3(path, output_dir=None, **_kw):
        ran.append(Path(path).name)
        for s in _spec2_grism.LEVEL3_SUFFIXES:
            (Path(output_dir) / f"{IMAGE3}{s}").write_text("made")
        return SimpleNamespace(failed=[])

    monkeypatch.setattr(association, "process_association", fake_level3)
    others = {0: {"direct_image": [folder / f"{IMAGE3}_i2d.fits"], "sourcecat": [folder / f"{IMAGE3}_cat.ecsv"],
                  "segmap": [folder / f"{IMAGE3}_segm.fits"]}}
    got = _spec2_grism.make_level3_members(spec2, folder, out, others)
    assert ran == [image3.name]  # only the association that makes them
    assert got == {0: {k: [out / v[0].name] for k, v in others[0].items()}}
    # made already: nothing runs again
    ran.clear()
    assert _spec2_grism.make_level3_members(spec2, folder, out, others) == got and ran == []
