"""NIRISS SOSS in spec2: parity with jwst 3.0's Spec2Pipeline, box extraction.

jwst's default SOSS extraction is ATOCA (``soss_atoca=true``, compared in tests/test_soss_atoca.py):
both pipelines run here with extract_1d's ``soss_atoca=false``, jwst's box extraction of
orders 1-3 along the pastasoss traces (``soss_width`` 40 pixels), then photom on the spectra.

The input is one SUBSTRIP256 rateints written by stdatamodels: orders 1, 2 and 3 drawn along the
traces of the references (refs/synthetic_soss.py, built on the real spectrace 0023), a star
spectrum dimmed by a transit in the middle integration, noise, a NaN pixel in one integration,
a pixel flagged DO_NOT_USE in every integration, and the reference pixels.  The references:
pastasoss, specwcs, specprofile, speckernel and flat written by refs/synthetic_soss.py, and the
real SOSS photom; jwst reads them through overrides, with the real 2019 CRDS rules for the rest.

Compared: the product names (calints, x1dints), their extensions, keywords and arrays, and each
order's x1dints columns within rtol 1e-4 for at least 99.9 % of the values; and that the box
sums recover the drawn spectrum and the transit.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

NINTS = 3
PWCPOS = 245.79  # 0.03 deg off the commanded position: the traces rotate
ASSIGN_WCS_NA = ("distortion", "filteroffset", "regions", "wavelengthrange", "camera", "chromcorr", "collimator",
                 "disperser", "fore", "fpa", "msa", "ote", "ifupost", "ifufore", "ifuslicer")
ROOT = "jw01234001001_01101_00001_nis"
COARSE_GRID = (0.6, 2.9, 2500)  # ATOCA's soss_wave_grid_in in the small runs: jwst's dense inverse stays small


def _star(wave):
    """The star's count rate per column (DN/s), smooth in wavelength."""
    return 2000.0 * (1.0 + 0.3 * np.sin(3.0 * wave)) * np.exp(-0.5 * ((wave - 1.4) / 0.9) ** 2)


def _rateints(folder: Path, tree) -> tuple[Path, dict]:
    from stdatamodels.jwst import datamodels as dm

    from webbflow.refs.synthetic_soss import PROFILE_SIGMA, TraceModel

    ny, nx = 256, 2048
    rng = np.random.default_rng(21)
    depth = np.array([0.0, 0.01, 0.0])
    tm = TraceModel(tree, PWCPOS)
    rows = np.arange(ny, dtype=float)[:, None]
    scene = np.zeros((ny, nx))
    truth = {}
    for order, scale in ((1, 1.0), (2, 0.4), (3, 0.05)):
        cols, y, wave = tm.order(order)
        g = np.exp(-0.5 * ((rows - y[None, :]) / PROFILE_SIGMA) ** 2)
        g /= g.sum(axis=0, keepdims=True)
        rate = _star(wave) * scale
        scene[:, cols] += g * rate[None, :]
        truth[order] = (wave, rate)
    data = np.empty((NINTS, ny, nx), np.float32)
    for i in range(NINTS):
        data[i] = scene * (1.0 - depth[i]) + 1.0 + rng.normal(0.0, 0.5, (ny, nx))
    m = dm.CubeModel(data)
    m.var_poisson = (np.abs(data) / 100.0).astype(np.float32)
    m.var_rnoise = np.full(data.shape, 0.25, np.float32)
    m.var_flat = np.zeros(data.shape, np.float32)
    m.err = np.sqrt(m.var_poisson + m.var_rnoise).astype(np.float32)
    dq = np.zeros(data.shape, np.uint32)
    dq[:, :, :4] |= 2**31  # reference pixels: the 4 first and last columns, the 4 top rows
    dq[:, :, -4:] |= 2**31
    dq[:, -4:, :] |= 2**31
    y1 = int(round(tm.order(1)[1][700]))
    dq[:, y1, 700] |= 1  # dead in every integration
    m.data[1, y1 + 2, 900] = np.nan  # lost in one integration
    dq[1, y1 + 2, 900] |= 1
    m.dq = dq
    m.meta.bunit_data = m.meta.bunit_err = "DN/s"
    m.meta.filename = f"{ROOT}_rateints.fits"
    m.meta.instrument.name, m.meta.instrument.detector = "NIRISS", "NIS"
    m.meta.instrument.filter, m.meta.instrument.pupil = "CLEAR", "GR700XD"
    m.meta.instrument.pupil_position = PWCPOS
    m.meta.exposure.type = "NIS_SOSS"
    m.meta.exposure.nints, m.meta.exposure.ngroups = NINTS, 3
    m.meta.exposure.integration_start, m.meta.exposure.integration_end = 1, NINTS
    m.meta.exposure.segment_number = 1
    m.meta.visit.tsovisit = True
    m.meta.observation.date, m.meta.observation.time = "2024-03-01", "10:00:00"
    e = m.meta.exposure
    e.start_time, e.end_time = 60370.41667, 60370.42667
    e.mid_time = (e.start_time + e.end_time) / 2
    s = m.meta.subarray
    s.name, s.xstart, s.ystart, s.xsize, s.ysize, s.fastaxis, s.slowaxis = "SUBSTRIP256", 1, 1793, 2048, 256, -2, -1
    m.meta.target.ra, m.meta.target.dec = 80.4875, -69.4994
    m.meta.wcsinfo.velosys = -12345.6
    m.meta.wcsinfo.ra_ref, m.meta.wcsinfo.dec_ref = 80.4875, -69.4994
    m.meta.wcsinfo.v2_ref, m.meta.wcsinfo.v3_ref, m.meta.wcsinfo.roll_ref = -290.1, -697.5, 0.0
    t = np.zeros(NINTS, dtype=[("integration_number", "i4"), ("int_start_MJD_UTC", "f8"), ("int_mid_MJD_UTC", "f8"),
                               ("int_end_MJD_UTC", "f8"), ("int_start_BJD_TDB", "f8"), ("int_mid_BJD_TDB", "f8"),
                               ("int_end_BJD_TDB", "f8")])
    t["integration_number"] = np.arange(1, NINTS + 1)
    for k, off in (("start", 0.0), ("mid", 0.5), ("end", 1.0)):
        t[f"int_{k}_MJD_UTC"] = e.start_time + (np.arange(NINTS) + off) * 0.003
        t[f"int_{k}_BJD_TDB"] = t[f"int_{k}_MJD_UTC"] + 0.0008
    m.int_times = t
    path = folder / m.meta.filename
    m.save(path)
    return path, {"truth": truth, "depth": depth}


@pytest.fixture(scope="module")
def soss(tmp_path_factory):
    """(rateints, references, truth, jwst's output folder, webbflow's output folder): one run of each."""
    import os

    from parity import jwst_offline, quiet_jwst

    from webbflow.refs.synthetic_soss import pastasoss_tree, write_soss_references

    base = tmp_path_factory.mktemp("soss")
    refs = write_soss_references(base / "refs")
    rate, truth = _rateints(base, pastasoss_tree())
    cache = tmp_path_factory.mktemp("crds-0541-soss")
    import shutil

    from conftest import CRDS_RULES

    shutil.copytree(CRDS_RULES, cache, dirs_exist_ok=True)
    steps = {
        "assign_wcs": {"override_specwcs": str(refs["specwcs"]), **{f"override_{r}": "N/A" for r in ASSIGN_WCS_NA}},
        "bkg_subtract": {"override_bkg": "N/A"},
        "flat_field": {"override_flat": str(refs["flat"])},
        "pathloss": {"override_pathloss": "N/A"},
        "extract_1d": {"soss_atoca": False, "override_pastasoss": str(refs["pastasoss"]),
                       "override_specprofile": str(refs["specprofile"]),
                       "override_speckernel": str(refs["speckernel"])},
        "photom": {"override_photom": str(refs["photom"]), "override_area": "N/A"},
    }
    ours_steps = {k: dict(v) for k, v in steps.items() if k not in ("bkg_subtract", "pathloss")}
    # the reference types jwst's pipeline prefetches that the 2019 rules do not know, or the cache has no file for
    steps["extract_1d"].update(override_extract1d="N/A", override_apcorr="N/A", override_psf="N/A")
    steps["flat_field"].update(override_dflat="N/A", override_fflat="N/A", override_sflat="N/A")
    steps.update({"barshadow": {"override_barshadow": "N/A"}, "cube_build": {"override_cubepar": "N/A"},
                  "fringe": {"override_fringe": "N/A"}, "straylight": {"override_mrsxartcorr": "N/A"},
                  "msa_flagging": {"override_msaoper": "N/A"}, "wavecorr": {"override_wavecorr": "N/A"}})
    jdir = base / "jwst"
    jdir.mkdir()
    from jwst.pipeline import Spec2Pipeline

    cwd = os.getcwd()
    with jwst_offline(cache, "jwst_0541.pmap"), quiet_jwst(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            os.chdir(base)
            Spec2Pipeline.call(str(rate), steps=steps, output_dir=str(jdir), save_results=True)
        finally:
            os.chdir(cwd)

    from webbflow.flows.calwebb_spec2 import spec2

    odir = base / "webbflow"
    odir.mkdir()
    with jwst_offline(cache, "jwst_0541.pmap"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec2.fn(str(rate), steps=ours_steps, output_dir=str(odir))
    return {"rate": rate, "refs": refs, "truth": truth, "jwst": jdir, "ours": odir}


@pytest.mark.parity
@pytest.mark.real
def test_soss_spec2_products_are_jwsts(soss):
    from test_products_whole import compare_fits

    names = {p.name for p in soss["jwst"].iterdir() if p.suffix == ".fits"}
    assert names == {f"{ROOT}_calints.fits", f"{ROOT}_x1dints.fits"}
    assert {p.name for p in soss["ours"].iterdir() if p.suffix == ".fits"} == names
    problems = []
    compare_fits(f"{ROOT}_calints.fits", soss["ours"] / f"{ROOT}_calints.fits",
                 soss["jwst"] / f"{ROOT}_calints.fits", problems)
    assert not problems, "\n".join(problems)


@pytest.mark.parity
@pytest.mark.real
def test_soss_x1dints_columns_within_1e4_of_jwsts(soss):
    from test_products_whole import compare_headers

    name = f"{ROOT}_x1dints.fits"
    problems = []
    agreement = {}
    with fits.open(soss["ours"] / name) as fa, fits.open(soss["jwst"] / name) as fb:
        assert [(h.name, h.ver) for h in fa] == [(h.name, h.ver) for h in fb]
        for ha, hb in zip(fa, fb):
            compare_headers(f"{name}[{hb.name},{hb.ver}]", ha.header, hb.header, problems, hdu=hb.name)
            if hb.name != "EXTRACT1D":
                continue
            a, b = ha.data, hb.data
            assert a.columns.names == b.columns.names
            for col in b.columns.names:
                assert a.columns[col].unit == b.columns[col].unit, (hb.ver, col)
                x, y = np.asarray(a[col]), np.asarray(b[col])
                assert x.shape == y.shape, (hb.ver, col)
                if x.dtype.kind == "f":
                    ok = np.isclose(x, y, rtol=1e-4, atol=0) | (np.isnan(x) & np.isnan(y))
                else:
                    ok = x == y
                agreement[(hb.ver, col)] = float(np.mean(ok))
    assert not problems, "\n".join(problems)
    low = {k: v for k, v in agreement.items() if v < 0.999}
    assert not low, f"columns agreeing with jwst's for < 99.9 % of values: {low}"
    assert len({k[0] for k in agreement}) == 3  # orders 1, 2 and 3


@pytest.mark.parity
@pytest.mark.real
def test_soss_box_recovers_the_drawn_spectrum_and_transit(soss):
    """Order 1's box holds the drawn count rate (times the flat, calibrated by photom) and its dip."""
    from stdatamodels.jwst import datamodels as dm

    wave, rate = soss["truth"]["truth"][1]
    with dm.open(soss["ours"] / f"{ROOT}_x1dints.fits") as x1d:
        sp = {s.spectral_order: s for s in x1d.spec}
        assert sorted(sp) == [1, 2, 3]
        t = sp[1].spec_table
        flux = np.asarray(t["FLUX"])
        assert flux.shape == (NINTS, 2048)
        np.testing.assert_allclose(t["WAVELENGTH"][0], wave, rtol=1e-9)
    # photom's conversion, undone with the reference's row for order 1
    with fits.open(soss["refs"]["photom"]) as ph:
        tab = ph["PHOTOM"].data
        row = tab[(tab["filter"] == "CLEAR") & (tab["pupil"] == "GR700XD") & (tab["order"] == 1)][0]
        n = int(row["nelem"])
        w, r = np.asarray(row["wavelength"][:n], float), np.asarray(row["relresponse"][:n], float)
        srt = np.argsort(w)
        conv = row["photmj"] * np.interp(wave, w[srt], r[srt], left=np.nan, right=np.nan)
    dn = flux / conv[None, :]
    good = np.isfinite(dn).all(axis=0) & (rate > 200) & (np.arange(2048) > 10) & (np.arange(2048) < 2030)
    assert good.sum() > 1000
    # the box (40 rows) holds all of a 4-pixel Gaussian; the sky adds 40 DN/s; the flat is within 1.5 %
    ratio = (dn[0, good] - 40.0) / rate[good]
    assert abs(np.median(ratio) - 1.0) < 0.01
    white = np.nansum(dn[:, good], axis=1)
    dip = 1.0 - white[1] / (0.5 * (white[0] + white[2]))
    assert dip == pytest.approx(0.01, abs=0.002)


# ---------------------------------------------------------------------------
# the simulator


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    from webbflow.refs.simulator import simulate

    out = tmp_path_factory.mktemp("soss-sim")
    return simulate(out, instrument="niriss", exp_type="NIS_SOSS", nints=2, ngroups=2)


@pytest.mark.real
def test_simulated_soss_has_jwsts_associations_and_selects_the_soss_references(simulated, monkeypatch):
    import json

    from webbflow import models
    from webbflow.refs import get_reference_paths
    from webbflow.refs.select import reset_crds_state

    out = simulated.output_dir
    (uncal,) = simulated.uncal
    m = models.open(uncal)
    assert m.meta.exposure.type == "NIS_SOSS" and m.meta.visit.tsovisit
    assert (m.meta.subarray.name, m.meta.subarray.ystart, m.meta.subarray.ysize) == ("SUBSTRIP256", 1793, 256)
    assert m.data.shape == (2, 2, 256, 2048) and m.has("int_times") and len(m.int_times) == 2
    assert (m.meta.instrument.filter, m.meta.instrument.pupil) == ("CLEAR", "GR700XD")
    (lv2,) = simulated.asn_level2
    a2 = json.loads(Path(lv2).read_text())
    assert a2["asn_type"] == "tso-spec2" and Path(lv2).name.endswith("_tso-spec2_00001_asn.json")
    assert [mb["expname"] for mb in a2["products"][0]["members"]] == [uncal.name.replace("_uncal", "_rateints")]
    a3 = json.loads(Path(simulated.asn_level3).read_text())
    assert a3["asn_type"] == "tso3"
    assert a3["products"][0]["name"] == "jw01234-o001_t001_niriss_clear-gr700xd-substrip256"
    assert [mb["expname"] for mb in a3["products"][0]["members"]] == [uncal.name.replace("_uncal", "_calints")]
    monkeypatch.setenv("CRDS_PATH", str(out))
    monkeypatch.delenv("CRDS_CONTEXT", raising=False)
    reset_crds_state()
    try:
        got = get_reference_paths(m, ["specwcs", "pastasoss", "specprofile", "speckernel", "photom", "flat"])
    finally:
        reset_crds_state()
    names = {k: Path(v).name for k, v in got.items()}
    assert names["pastasoss"].startswith("jwst_niriss_pastasoss") and names["specwcs"].startswith("jwst_niriss_specwcs")
    assert names["photom"] == "jwst_niriss_photom_soss_0001.fits" and names["flat"] == "jwst_niriss_flat_soss_0001.fits"
    with fits.open(got["photom"]) as ph:
        assert ph[0].header["DATAMODL"] == "NisSossPhotomModel"


@pytest.mark.real
def test_simulated_soss_traces_land_where_extract_1d_looks(simulated):
    """In the first integration's last-minus-first group, the light of every order is centred (within
    half a pixel) on the trace row extract_1d centres its box on; the truth files cover the traces."""
    from astropy.table import Table

    from webbflow import models
    from webbflow.refs.sim.soss import PWCPOS
    from webbflow.refs.synthetic_soss import TraceModel, pastasoss_tree

    (uncal,) = simulated.uncal
    m = models.open(uncal)
    diff = m.data[0, -1].astype(float) - m.data[0, 0].astype(float)
    tm = TraceModel(pastasoss_tree(), PWCPOS)
    for order, cols in ((1, np.arange(200, 1800, 50)), (2, np.arange(700, 1500, 50)), (3, np.arange(650, 900, 25))):
        _c, y, _w = tm.order(order)
        checked = 0
        for c in cols:
            lo, hi = max(int(round(y[c])) - 8, 4), min(int(round(y[c])) + 9, 252)
            seg = diff[lo:hi, c] - np.median(diff[4:252, c])
            if seg.max() < 250:  # too faint in two groups to centre on
                continue
            w = np.clip(seg, 0, None)
            centre = lo + float(np.sum(np.arange(hi - lo) * w) / np.sum(w))
            assert abs(centre - y[c]) <= 0.4, (order, c, centre, y[c])
            checked += 1
        assert checked >= 5, (order, checked)
    stem = uncal.name[:13]
    for order in (1, 2, 3):
        t = Table.read(simulated.output_dir / "truth" / f"{stem}_nis_order{order}_spectrum.ecsv")
        assert len(t) == tm.order(order)[0].size and np.all(t["count_rate"] >= 0) and t["count_rate"].max() > 0
    lc = Table.read(simulated.output_dir / "truth" / f"{stem}_nis_lightcurve.ecsv")
    assert list(lc["integration_number"]) == [1, 2]


# ---------------------------------------------------------------------------
# tso3 on the calints of the spec2 run


TSO3_PRODUCT = "jw01234-o001_t001_niriss_clear-gr700xd-substrip256"


def _level3_asn(folder: Path, member: Path, asn_type: str, rule: str) -> Path:
    """A level-3 association of ``member`` as jwst's rules write it (``asn_type`` by rule ``rule``)."""
    import json

    asn = {"asn_type": asn_type, "asn_rule": rule, "version_id": "20240301t100000",
           "code_version": "1.0", "degraded_status": "No known degraded exposures in association.",
           "program": "01234", "constraints": "", "asn_id": "o001", "target": "t001",
           "asn_pool": "jw01234_20240301t100000_pool.csv",
           "products": [{"name": TSO3_PRODUCT,
                         "members": [{"expname": member.name, "exptype": "science", "exposerr": None,
                                      "asn_candidate": "[('o001', 'observation')]"}]}]}
    path = folder / f"jw01234-o001_20240301t100000_{asn_type}_00001_asn.json"
    path.write_text(json.dumps(asn, indent=1))
    return path


def _tso3_asn(folder: Path, calints: Path) -> Path:
    return _level3_asn(folder, calints, "tso3", "candidate_Asn_Lv3TSO")


def _run_tso3(soss, simulated, tag: str, extract_1d: dict):
    """jwst's Tso3Pipeline on jwst's calints and webbflow's tso3 on webbflow's, from the same
    association, with extract_1d's ``extract_1d`` settings: (jwst's folder, webbflow's folder).

    jwst's Tso3Pipeline prefetches gain and readnoise whatever the mode, which the 2019 rules
    select but have no file for: both run with the simulation's CRDS cache (whose NIS SUBSTRIP256
    detector references fit this exposure), the SOSS references given as in the spec2 run.
    """
    import os
    import shutil

    from parity import jwst_offline, quiet_jwst

    refs = soss["refs"]
    base = soss["jwst"].parent
    cache = simulated.output_dir
    ex = {"override_pastasoss": str(refs["pastasoss"]), "override_specprofile": str(refs["specprofile"]),
          "override_speckernel": str(refs["speckernel"]), **extract_1d}
    ours_steps = {"extract_1d": dict(ex), "photom": {"override_photom": str(refs["photom"]), "override_area": "N/A"},
                  "white_light": {"override_wavelengthrange": "N/A"}}
    steps = {k: dict(v) for k, v in ours_steps.items()}
    steps["extract_1d"].update(override_extract1d="N/A", override_apcorr="N/A", override_psf="N/A")
    folders = {}
    for who in ("jwst", "ours"):
        f = base / f"tso3{tag}-{who}"
        f.mkdir()
        cal = f / f"{ROOT}_calints.fits"
        shutil.copyfile(soss[who] / cal.name, cal)
        folders[who] = (f, _tso3_asn(f, cal))
    from jwst.pipeline import Tso3Pipeline

    f, asn = folders["jwst"]
    cwd = os.getcwd()
    with jwst_offline(cache), quiet_jwst(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            os.chdir(f)
            Tso3Pipeline.call(asn.name, steps=steps, save_results=True)
        finally:
            os.chdir(cwd)
    from webbflow.flows.calwebb_tso3 import run_tso3
    from webbflow.flows.stage import quiet_prefect_settings

    f, asn = folders["ours"]
    with jwst_offline(cache), warnings.catch_warnings(), quiet_prefect_settings():
        warnings.simplefilter("ignore")
        run_tso3(asn, output_dir=f, steps=ours_steps)
    return folders["jwst"][0], folders["ours"][0]


@pytest.fixture(scope="module")
def soss_tso3(soss, simulated):
    """tso3 with the box extraction (soss_atoca=false)."""
    return _run_tso3(soss, simulated, "", {"soss_atoca": False})


ATOCA_FULL = os.environ.get("WEBBFLOW_SOSS_ATOCA_FULL") == "1"


@pytest.fixture(scope="module", params=["coarse-grid", pytest.param("default", marks=pytest.mark.skipif(
    not ATOCA_FULL, reason="jwst's ATOCA with its defaults takes ~200 s CPU and 6 GB: WEBBFLOW_SOSS_ATOCA_FULL=1"))])
def soss_tso3_atoca(request, soss, simulated):
    """tso3 with ATOCA on (jwst's default).  Always: on a given uniform wavelength grid of 2500
    points (soss_wave_grid_in) and a given Tikhonov factor, which keep jwst's dense inverse of the
    order 1+2 system small; with WEBBFLOW_SOSS_ATOCA_FULL=1 also with every default (the adaptive
    grid of ~13500 points, the factor searched)."""
    from webbflow.models import SossWaveGridModel

    ex = {"soss_atoca": True}
    if request.param == "coarse-grid":
        grid = soss["jwst"].parent / "tso3_grid_in.fits"
        SossWaveGridModel(wavegrid=np.linspace(*COARSE_GRID)).save(grid)
        ex.update(soss_wave_grid_in=str(grid), soss_tikfac=1e-6)
    return _run_tso3(soss, simulated, f"-atoca-{request.param}", ex)


def _assert_tso3_products_whole(jdir: Path, odir: Path) -> None:
    """jwst's tso3 wrote the crfints, x1dints and white-light curve, and webbflow's are the same, whole
    (the calints inputs set aside first)."""
    from test_products_whole import compare_products

    product = TSO3_PRODUCT
    names = {p.name for p in jdir.iterdir() if p.name.endswith((".fits", ".ecsv")) and "calints" not in p.name}
    assert names == {f"{ROOT}_o001_crfints.fits", f"{product}_x1dints.fits", f"{product}_whtlt.ecsv"}
    for d in (jdir, odir):
        (d / f"{ROOT}_calints.fits").rename(d / f"{ROOT}_calints.input")
    problems = compare_products(odir, jdir, names)
    assert not problems, "\n".join(problems)


@pytest.mark.parity
@pytest.mark.real
def test_soss_tso3_products_are_jwsts(soss_tso3):
    """crfints, x1dints (orders 1-3 calibrated by photom) and the white-light curve, whole."""
    jdir, odir = soss_tso3
    product = TSO3_PRODUCT
    _assert_tso3_products_whole(jdir, odir)
    from astropy.table import Table

    wl = Table.read(odir / f"{product}_whtlt.ecsv")
    assert {"whitelight_flux_order_1", "whitelight_flux_order_2", "whitelight_flux_order_3"} <= set(wl.colnames)
    f1 = np.asarray(wl["whitelight_flux_order_1"])
    assert f1[1] < f1[0] and f1[1] < f1[2]  # the transit, in the middle integration


@pytest.mark.parity
@pytest.mark.real
def test_soss_tso3_with_atoca_products_are_jwsts(soss_tso3_atoca):
    """tso3 with ATOCA decontaminating the orders: crfints, x1dints and white-light curve, whole
    (the x1dints columns within rtol 1e-4, the TIKFACTR as jwst's)."""
    jdir, odir = soss_tso3_atoca
    product = TSO3_PRODUCT
    _assert_tso3_products_whole(jdir, odir)
    with fits.open(odir / f"{product}_x1dints.fits") as fo, fits.open(jdir / f"{product}_x1dints.fits") as fj:
        assert fo[0].header["TIKFACTR"] == pytest.approx(fj[0].header["TIKFACTR"], rel=1e-9)
        for ho, hj in zip(fo[1:], fj[1:]):
            if hj.name == "EXTRACT1D":
                x, y = np.asarray(ho.data["FLUX"]), np.asarray(hj.data["FLUX"])
                assert np.all(np.isclose(x, y, rtol=1e-4, atol=0) | (np.isnan(x) & np.isnan(y))), hj.ver


# ---------------------------------------------------------------------------
# extract_1d's SOSS background (subtract_background=true)

@pytest.fixture(scope="module", params=["box", "atoca"])
def soss_background(request, soss, real_rules_cache):
    """jwst's Extract1dStep and ``webbflow run extract_1d`` on the rateints with subtract_background=true:
    the box extraction, and ATOCA on a coarse given grid and Tikhonov factor (the factors of order 2's
    blue end and order 3 searched on the background-subtracted typical integration)."""
    from parity import jwst_offline, quiet_jwst

    from jwst.extract_1d import Extract1dStep
    from webbflow.flows.cli import main
    from webbflow.models import SossWaveGridModel

    refs = soss["refs"]
    base = soss["jwst"].parent / f"background-{request.param}"
    base.mkdir()
    opts = {"subtract_background": True, "soss_atoca": request.param == "atoca",
            "override_pastasoss": str(refs["pastasoss"]), "override_specprofile": str(refs["specprofile"]),
            "override_speckernel": str(refs["speckernel"])}
    if request.param == "atoca":
        grid = base / "grid_in.fits"
        SossWaveGridModel(wavegrid=np.linspace(*COARSE_GRID)).save(grid)
        opts.update(soss_wave_grid_in=str(grid), soss_tikfac=1e-6)
    out = {}
    for who in ("jwst", "ours"):
        d = base / who
        d.mkdir()
        with jwst_offline(real_rules_cache, "jwst_0541.pmap"), quiet_jwst(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if who == "jwst":
                Extract1dStep.call(str(soss["rate"]), output_dir=str(d), save_results=True,
                                   override_extract1d="N/A", override_apcorr="N/A", override_psf="N/A", **opts)
            else:
                argv = [f"--steps.extract_1d.{k}={v}" for k, v in opts.items()]
                assert main(["run", "extract_1d", str(soss["rate"]), "--output-dir", str(d)] + argv) == 0
        out[who] = d
    return out["jwst"], out["ours"]


@pytest.mark.parity
@pytest.mark.real
def test_soss_background_subtracted_as_jwst_does(soss_background, soss):
    """The x1dints whole, every column (BACKGROUND too) within rtol 1e-4 of jwst's; the background
    found is the scene's sky (1 DN/s per pixel), and the box sums no longer hold it."""
    from test_products_whole import compare_products

    jdir, odir = soss_background
    name = f"{ROOT}_extract1dstep.fits"  # the step run alone: jwst's name for its product
    assert {p.name for p in jdir.iterdir()} == {p.name for p in odir.iterdir()} == {name}
    problems = compare_products(odir, jdir, {name})
    assert not problems, "\n".join(problems)
    with fits.open(odir / name) as fo, fits.open(jdir / name) as fj:
        for ho, hj in zip(fo[1:], fj[1:]):
            if hj.name != "EXTRACT1D":
                continue
            for col in hj.columns.names:
                x, y = np.asarray(ho.data[col]), np.asarray(hj.data[col])
                if x.dtype.kind == "f":
                    assert np.all(np.isclose(x, y, rtol=1e-4, atol=0) | (np.isnan(x) & np.isnan(y))), (hj.ver, col)
            # the sky is 1 DN/s; jwst's mean of the pixels under a percentile of the image sets aside the
            # upper noise of many sky pixels with the traces, so the background found is lower (~0.91)
            bkg = np.asarray(ho.data["BACKGROUND"])[:, 10:-10]
            assert 0.85 < np.median(bkg) < 1.0, hj.ver
        flux = np.asarray(fo["EXTRACT1D", 1].data["FLUX"])[0]  # order 1, first integration
    wave, rate = soss["truth"]["truth"][1]
    good = np.isfinite(flux) & (rate > 500) & (np.arange(2048) > 10) & (np.arange(2048) < 2030)
    assert abs(np.median(flux[good] / rate[good]) - 1.0) < 0.015  # 4 DN/s of the 40 DN/s of sky left in the box


# ---------------------------------------------------------------------------
# spec3 on a SOSS exposure that is not a time series


def _spec3_asn(folder: Path, cal: Path) -> Path:
    """The association jwst's rules make for a SOSS exposure outside a time series
    (Asn_Lv3SlitlessSpectral: asn_type spec3, the cal as the science member)."""
    return _level3_asn(folder, cal, "spec3", "candidate_Asn_Lv3SlitlessSpectral")


@pytest.fixture(scope="module", params=["box", "atoca"])
def soss_spec3(request, soss, real_rules_cache):
    """jwst's Spec3Pipeline (strun from the association's folder) and webbflow's spec3 on the same cal,
    with the box extraction (soss_atoca=false) and with ATOCA (on the coarse given grid and factor;
    order 2's blue end's and order 3's factors searched).

    The cal: the first integration of jwst's calints as the one-integration image a SOSS exposure
    outside a time series is calibrated to (TSOVISIT false, its exposure times set).
    """
    import os
    import shutil

    from jwst.stpipe import Step
    from parity import jwst_offline, quiet_jwst
    from stdatamodels.jwst import datamodels as dm

    from webbflow.flows.cli import main

    refs = soss["refs"]
    base = soss["jwst"].parent / f"spec3-{request.param}"
    base.mkdir()
    cal = base / f"{ROOT}_cal.fits"
    with dm.open(soss["jwst"] / f"{ROOT}_calints.fits") as ci, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = dm.ImageModel(ci.data[0])
        m.update(ci)
        for name in ("err", "dq", "var_poisson", "var_rnoise", "var_flat"):
            setattr(m, name, getattr(ci, name)[0])
        m.meta.wcs = ci.meta.wcs
        m.meta.visit.tsovisit = False
        e = m.meta.exposure
        e.exposure_time = e.effective_exposure_time = 96.6
        e.integration_time = e.effective_integration_time = 32.2
        m.save(cal)
    ex = {"soss_atoca": "false", "override_pastasoss": str(refs["pastasoss"]),
          "override_specprofile": str(refs["specprofile"]), "override_speckernel": str(refs["speckernel"])}
    if request.param == "atoca":
        from webbflow.models import SossWaveGridModel

        SossWaveGridModel(wavegrid=np.linspace(*COARSE_GRID)).save(base / "grid_in.fits")
        ex.update(soss_atoca="true", soss_wave_grid_in=str(base / "grid_in.fits"), soss_tikfac="1e-06")
    ours_steps = {"extract_1d": ex, "photom": {"override_photom": str(refs["photom"]), "override_area": "N/A"}}
    # what jwst's pipeline prefetches that the 2019 rules do not know
    jwst_steps = {**ours_steps, "extract_1d": dict(ex, override_extract1d="N/A", override_apcorr="N/A",
                                                   override_psf="N/A"),
                  "cube_build": {"override_cubepar": "N/A"}, "spectral_leak": {"override_mrsptcorr": "N/A"}}
    folders = {}
    for who, steps in (("jwst", jwst_steps), ("ours", ours_steps)):
        f = base / who
        f.mkdir()
        shutil.copyfile(cal, f / cal.name)
        folders[who] = (f, _spec3_asn(f, f / cal.name), [f"--steps.{s}.{k}={v}" for s, kv in steps.items()
                                                         for k, v in kv.items()])
    f, asn, argv = folders["jwst"]
    cwd = os.getcwd()
    with jwst_offline(real_rules_cache, "jwst_0541.pmap"), quiet_jwst(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            os.chdir(f)
            Step.from_cmdline(["calwebb_spec3", asn.name] + argv)
        finally:
            os.chdir(cwd)
    f, asn, argv = folders["ours"]
    with jwst_offline(real_rules_cache, "jwst_0541.pmap"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["run", "calwebb_spec3", str(asn), "--output-dir", str(f)] + argv) == 0
    return folders["jwst"][0], folders["ours"][0]


@pytest.mark.parity
@pytest.mark.real
def test_soss_spec3_x1d_and_c1d_are_jwsts(soss_spec3):
    """x1d (photom-calibrated spectra of orders 1-3) and c1d (one COMBINE1D per order), whole."""
    from stdatamodels.jwst import datamodels as dm
    from test_products_whole import compare_products

    jdir, odir = soss_spec3
    product = TSO3_PRODUCT
    names = {p.name for p in jdir.iterdir() if p.name.endswith(".fits") and "_cal" not in p.name}
    assert names == {f"{product}_x1d.fits", f"{product}_c1d.fits"}
    for d in (jdir, odir):
        (d / f"{ROOT}_cal.fits").rename(d / f"{ROOT}_cal.input")
    problems = compare_products(odir, jdir, names)
    assert not problems, "\n".join(problems)
    with dm.open(odir / f"{product}_x1d.fits") as x1d, dm.open(odir / f"{product}_c1d.fits") as c1d:
        assert type(x1d).__name__ == "TSOMultiSpecModel" and x1d.meta.cal_step.photom == "COMPLETE"
        assert [s.spectral_order for s in c1d.spec] == [1, 2, 3]
        # one input spectrum: the combined flux is the extracted one, on its wavelengths
        t, c = x1d.spec[0].spec_table, c1d.spec[0].spec_table
        flux = dict(zip(np.asarray(t["WAVELENGTH"][0]), np.asarray(t["FLUX"][0])))
        cw, cf = np.asarray(c["WAVELENGTH"]), np.asarray(c["FLUX"])
        assert len(cw) > 2000 and np.all(np.asarray(c["N_INPUT"]) == 1)
        np.testing.assert_allclose(cf, [flux[w] for w in cw], rtol=1e-12)


@pytest.mark.real
def test_soss_spec3_refuses_a_bad_atoca_grid_before_writing_anything(soss, real_rules_cache, tmp_path):
    """spec3 with an ATOCA wavelength grid that is not a SossWaveGridModel file: one line, nothing written."""
    from parity import jwst_offline

    from webbflow.errors import InputFileError
    from webbflow.flows.calwebb_spec3 import spec3

    out = tmp_path / "atoca3"
    with jwst_offline(real_rules_cache, "jwst_0541.pmap"), pytest.raises(InputFileError,
                                                                          match="not a SossWaveGridModel") as exc:
        spec3.fn([str(soss["ours"] / f"{ROOT}_calints.fits")], product_name="jw01234-o001_t001_niriss_clear-gr700xd",
                 output_dir=str(out), steps={"extract_1d": {"soss_wave_grid_in": str(soss["rate"])}})
    assert "\n" not in str(exc.value) and soss["rate"].name in str(exc.value)
    assert not out.exists() or list(out.iterdir()) == []


# ---------------------------------------------------------------------------
# end to end from the simulated uncal file, as users run both programs


BOX = "--steps.extract_1d.soss_atoca=false"  # ATOCA on jwst's default grid is beyond CI (see ATOCA_FULL)


@pytest.fixture(scope="module")
def soss_e2e(tmp_path_factory):
    """The simulated SOSS time series (SUBSTRIP256, 2 integrations of 2 groups): calwebb_detector1 on
    the uncal, calwebb_spec2 on the tso-spec2 association and calwebb_tso3 on the tso3 one, the box
    extraction in both extract_1d runs, by jwst's strun from the associations' folder and by
    ``webbflow run`` stage by stage from the same files."""
    pytest.importorskip("jwst")
    from simrun import inputs, simulate_into, strun, webbflow_run
    from test_products_whole import _quiet

    run = simulate_into(tmp_path_factory, "soss_e2e", dict(instrument="niriss", exp_type="NIS_SOSS", nints=2,
                                                           ngroups=2))
    sim = run.sim
    calls = [("calwebb_detector1", sim.uncal[0].name)]
    calls += [("calwebb_spec2", Path(a).name, BOX) for a in sim.asn_level2]
    calls += [("calwebb_tso3", Path(sim.asn_level3).name, BOX)]
    theirs = inputs(sim, run.root / "jwst")
    _quiet(lambda: strun(theirs, calls), run.cache, run.context)
    ours = inputs(sim, run.root / "webbflow")

    def webbflow():
        for pipeline, arg, *options in calls:
            webbflow_run(pipeline, ours / arg, *options, "--output-dir", ours)

    _quiet(webbflow, run.cache, run.context)
    return theirs, ours


@pytest.mark.parity
def test_soss_end_to_end_from_the_uncal_file_writes_jwsts_products_whole(soss_e2e):
    """rate, rateints, calints, x1dints, the tso3 crfints and x1dints and the white-light curve, whole."""
    from test_products_whole import compare_products

    theirs, ours = soss_e2e
    suffixes = ("_rate.fits", "_rateints.fits", "_calints.fits", "_crfints.fits", "_x1dints.fits", "_whtlt.ecsv")
    names = {p.name for p in theirs.iterdir() if p.name.endswith(suffixes)}
    kinds = {n.rsplit("_", 1)[-1] for n in names}
    assert kinds == {"rate.fits", "rateints.fits", "calints.fits", "crfints.fits", "x1dints.fits", "whtlt.ecsv"}, \
        sorted(names)
    problems = compare_products(ours, theirs, names, suffixes=suffixes)
    assert not problems, "\n".join(["products differ from jwst's:"] + problems)
