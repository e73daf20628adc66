"""MIRI LRS simulated (refs/sim/miri_lrs.py) and calibrated by jwst 3.0 and by webbflow, products compared whole.

Two small simulations, one per mode, each with its references, CRDS cache and the associations
jwst's rules make:

- the fixed slit: two FULL-frame nods along the slit (5 groups); jwst runs as its users run it,
  from the associations' folder with CRDS_PATH: ``calwebb_detector1`` on each uncal,
  ``calwebb_spec2`` on each nod's association (the other nod its background), ``calwebb_spec3``;
  webbflow runs spec2 and spec3 on jwst's rate files (its detector1 on MIRI full frames is
  compared elsewhere);
- the slitless time series: SLITLESSPRISM, 8 integrations with a transit; jwst runs detector1,
  spec2 (the slitless association) and tso3; webbflow runs the same three from the uncal file.

Every product jwst writes is written by webbflow under the same name and compared whole
(tests/test_products_whole.py: HDUs, keywords, arrays within rtol 1e-4 for 99.9 %, DQ equal,
tables). Against the simulator's truth: the fixed slit's extracted spectrum agrees with the truth
spectrum within its errors, and the white-light curve shows the transit's depth.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from simrun import inputs as _inputs
from simrun import simulate_into as _simulate
from simrun import strun as _strun
from simrun import webbflow_runs as _webbflow
from test_products_whole import _quiet, compare_products

pytestmark = pytest.mark.real  # the simulator reads the real LRS references in ../shared/data

SIM_FS = dict(instrument="miri", exp_type="MIR_LRS-FIXEDSLIT", seed=11)
SIM_SL = dict(instrument="miri", exp_type="MIR_LRS-SLITLESS", nints=8, seed=11)
STAGE2_3 = ("_cal.fits", "_calints.fits", "_s2d.fits", "_x1d.fits", "_x1dints.fits", "_crf.fits", "_crfints.fits",
            "_whtlt.ecsv")


@pytest.fixture(scope="session")
def lrs_fs(tmp_path_factory):
    return _simulate(tmp_path_factory, "lrs_fs", SIM_FS)


@pytest.fixture(scope="session")
def lrs_sl(tmp_path_factory):
    return _simulate(tmp_path_factory, "lrs_sl", SIM_SL)


@pytest.fixture(scope="session")
def fs_runs(lrs_fs):
    sim = lrs_fs.sim
    jw = _inputs(sim, lrs_fs.root / "jwst")
    lv2 = [Path(a).name for a in sim.asn_level2]
    calls = [("calwebb_detector1", u.name) for u in sim.uncal] + [("calwebb_spec2", a) for a in lv2]
    calls.append(("calwebb_spec3", Path(sim.asn_level3).name))
    _quiet(lambda: _strun(jw, calls), lrs_fs.cache, lrs_fs.context)
    ours = _inputs(sim, lrs_fs.root / "ours", "*_rate.fits", src=jw)  # stage 2 and 3 on jwst's rates
    calls = [("calwebb_spec2", a) for a in lv2] + [("calwebb_spec3", Path(sim.asn_level3).name)]
    _quiet(lambda: _webbflow(ours, calls), lrs_fs.cache, lrs_fs.context)
    return SimpleNamespace(jwst=jw, ours=ours)


@pytest.fixture(scope="session")
def sl_runs(lrs_sl):
    sim = lrs_sl.sim
    calls = [("calwebb_detector1", sim.uncal[0].name), ("calwebb_spec2", Path(sim.asn_level2[0]).name),
             ("calwebb_tso3", Path(sim.asn_level3).name)]
    jw = _inputs(sim, lrs_sl.root / "jwst")
    _quiet(lambda: _strun(jw, calls), lrs_sl.cache, lrs_sl.context)
    ours = _inputs(sim, lrs_sl.root / "ours")  # end to end: tso3 on the association alone, from the uncal file
    _quiet(lambda: _webbflow(ours, calls[-1:]), lrs_sl.cache, lrs_sl.context)
    return SimpleNamespace(jwst=jw, ours=ours)


@pytest.fixture(scope="session")
def fs_from_uncal(lrs_fs, fs_runs):
    """``webbflow run calwebb_spec3 ASN`` with only the uncal files and the associations beside it: the
    members' detector1 and spec2 (with the other nod as background) run first."""
    sim = lrs_fs.sim
    ours = _inputs(sim, lrs_fs.root / "ours_from_uncal")
    _quiet(lambda: _webbflow(ours, [("calwebb_spec3", Path(sim.asn_level3).name)]), lrs_fs.cache, lrs_fs.context)
    return ours


def _names(folder: Path, suffixes) -> set[str]:
    return {p.name for p in folder.iterdir() if p.name.endswith(tuple(suffixes))}


# ---------------------------------------------------------------------------
# the simulation


def test_fixed_slit_simulation_is_a_nod_pair_with_jwsts_associations(lrs_fs):
    from astropy.io import fits

    sim = lrs_fs.sim
    assert len(sim.uncal) == 2
    for k, u in enumerate(sim.uncal):
        with fits.open(u) as h:
            p = h[0].header
            assert (p["EXP_TYPE"], p["FILTER"], p["SUBARRAY"], p["APERNAME"]) == (
                "MIR_LRS-FIXEDSLIT", "P750L", "FULL", "MIRIM_SLIT")
            assert (p["PATTTYPE"], p["PATT_NUM"], p["NUMDTHPT"]) == ("ALONG-SLIT-NOD", k + 1, 2)
            assert h["SCI"].data.shape == (1, 5, 1024, 1032) and h["SCI"].data.dtype.kind == "u"
            assert h["SCI"].header["S_REGION"].startswith("POLYGON ICRS")
    # the nods sit either side of the slit centre, along it: XOFFSET changes sign, YOFFSET does not
    with fits.open(sim.uncal[0]) as a, fits.open(sim.uncal[1]) as b:
        xa, xb = a["SCI"].header.get("XOFFSET", a[0].header.get("XOFFSET")), b[0].header["XOFFSET"]
        assert xa == pytest.approx(-xb, abs=0.05) and abs(xa) > 0.5
    asns = {Path(a).name: json.loads(Path(a).read_text()) for a in sim.asn_level2}
    assert len(asns) == 2
    for a in asns.values():
        assert (a["asn_type"], a["asn_rule"]) == ("spec2", "candidate_Asn_Lv2MIRLRSFixedSlitNod")
        (product,) = a["products"]
        kinds = sorted((m["exptype"], m["expname"][:-10]) for m in product["members"])
        assert [k for k, _ in kinds] == ["background", "science"]
        assert kinds[0][1] != kinds[1][1]  # each nod's background is the other nod
    a3 = json.loads(Path(sim.asn_level3).read_text())
    assert (a3["asn_type"], a3["asn_rule"]) == ("spec3", "candidate_Asn_Lv3SpectralTarget")
    members = a3["products"][0]["members"]
    assert sorted(m["exptype"] for m in members) == ["background", "background", "science", "science"]
    assert sorted(m["expname"].rsplit("_", 1)[-1] for m in members) == ["cal.fits", "cal.fits", "x1d.fits", "x1d.fits"]


def test_lrs_references_are_of_real_form_and_selected_by_crds(lrs_fs, lrs_sl):
    """CRDS (the cache's own rules) selects the LRS references for each mode; stdatamodels opens them
    as the LRS models; the slit's specwcs carries its corners (V2VERTn/V3VERTn) as jwst 3.0 reads them."""
    from stdatamodels.jwst import datamodels as dm

    from webbflow.refs.select import bestrefs

    for obs, exp_type in ((lrs_fs, "MIR_LRS-FIXEDSLIT"), (lrs_sl, "MIR_LRS-SLITLESS")):
        from parity import jwst_offline

        with jwst_offline(obs.cache, obs.context):
            best = bestrefs(obs.sim.uncal[0], reftypes=["specwcs", "distortion", "photom", "apcorr", "pathloss",
                                                       "extract1d", "flat", "area"])
        chosen = best.choices
        names = {rt: Path(c.value).name for rt, c in chosen.items() if c.kind == "file"}
        assert names["extract1d"].endswith(".json") and names["distortion"].endswith(".asdf")
        assert chosen["area"].kind == "n/a"  # LRS has no pixel-area map
        refs = obs.cache / "references" / "jwst" / "miri"
        kinds = {"photom": "MirLrsPhotomModel", "apcorr": "MirLrsApcorrModel", "specwcs": "MiriLRSSpecwcsModel",
                 "flat": "FlatModel"}
        opener = {"specwcs": dm.MiriLRSSpecwcsModel}  # the real file says SpecwcsModel; jwst opens it so
        if exp_type == "MIR_LRS-FIXEDSLIT":
            kinds["pathloss"] = "MirLrsPathlossModel"
        else:
            assert chosen["pathloss"].kind == "n/a"
        for rt, cls in kinds.items():
            with opener.get(rt, dm.open)(refs / names[rt]) as m:
                assert type(m).__name__ == cls, (rt, type(m).__name__)
                if rt == "photom":
                    t = m.phot_table
                    assert {s.strip() for s in t["subarray"]} == {"FULL", "SLITLESSPRISM"}
                    n = int(t["nelem"][0])
                    assert 4.4 < t["wavelength"][0][:n].min() and t["wavelength"][0][:n].max() < 12.1
                    assert np.all(t["relresponse"][0][:n] > 0) and 1 < t["photmjsr"][0] < 1000
                if rt == "specwcs" and exp_type == "MIR_LRS-FIXEDSLIT":
                    assert all(getattr(m.meta, f"v{a}_vert{i}") is not None for a in (2, 3) for i in range(1, 5))
                if rt == "pathloss":
                    assert np.all(m.pathloss_table["pathloss"] >= 1.0)  # jwst multiplies by it


def test_slitless_simulation_is_a_time_series_with_tso3(lrs_sl):
    from astropy.io import fits
    from astropy.table import Table

    sim = lrs_sl.sim
    (u,) = sim.uncal
    with fits.open(u) as h:
        p = h[0].header
        assert (p["EXP_TYPE"], p["TSOVISIT"], p["SUBARRAY"], p["NINTS"]) == ("MIR_LRS-SLITLESS", True,
                                                                            "SLITLESSPRISM", 8)
        assert (p["SUBSTRT1"], p["SUBSTRT2"], p["SUBSIZE1"], p["SUBSIZE2"]) == (1, 529, 72, 416)
        assert h["SCI"].data.shape == (8, 5, 416, 72)
        assert np.all(np.diff(h["INT_TIMES"].data["int_mid_MJD_UTC"]) > 0)
    (l2,) = sim.asn_level2
    a2, a3 = json.loads(Path(l2).read_text()), json.loads(Path(sim.asn_level3).read_text())
    assert a2["asn_rule"] == "candidate_Asn_MIRLRSTAConfirm"
    assert a2["products"][0]["members"][0]["expname"].endswith("_rateints.fits")
    assert (a3["asn_type"], a3["asn_rule"]) == ("tso3", "candidate_Asn_Lv3TSO")
    (lc,) = (sim.output_dir / "truth").glob("*_lightcurve.ecsv")
    truth = Table.read(lc)
    assert len(truth) == 8 and truth["relative_flux"].min() == pytest.approx(1 - truth.meta["depth"])


# ---------------------------------------------------------------------------
# parity


@pytest.mark.parity
def test_fixed_slit_stage2_and_stage3_products_match_jwst(fs_runs):
    names = _names(fs_runs.jwst, STAGE2_3)
    suffixes = {n.rsplit("_", 1)[-1] for n in names}
    assert suffixes == {"cal.fits", "s2d.fits", "x1d.fits", "crf.fits"}, suffixes
    assert len(names) == 2 * 3 + 2 + 2  # each nod's cal/s2d/x1d, its crf, the product's s2d and x1d
    problems = compare_products(fs_runs.ours, fs_runs.jwst, names, suffixes=STAGE2_3)
    assert not problems, "\n".join(["products differ from jwst's:"] + problems)


@pytest.mark.parity
def test_fixed_slit_spec3_from_the_uncal_files_matches_jwst(fs_runs, fs_from_uncal):
    suffixes = ("_rate.fits",) + STAGE2_3
    names = _names(fs_runs.jwst, suffixes)
    assert {n.rsplit("_", 1)[-1] for n in names} == {"rate.fits", "cal.fits", "s2d.fits", "x1d.fits", "crf.fits"}
    problems = compare_products(fs_from_uncal, fs_runs.jwst, names, suffixes=suffixes)
    assert not problems, "\n".join(["products differ from jwst's:"] + problems)


@pytest.mark.parity
def test_slitless_products_end_to_end_match_jwst(sl_runs):
    suffixes = ("_rate.fits", "_rateints.fits") + STAGE2_3
    names = _names(sl_runs.jwst, suffixes)
    assert {n.rsplit("_", 1)[-1] for n in names} == {"rate.fits", "rateints.fits", "calints.fits", "x1dints.fits",
                                                    "crfints.fits", "whtlt.ecsv"}
    problems = compare_products(sl_runs.ours, sl_runs.jwst, names, suffixes=suffixes)
    assert not problems, "\n".join(["products differ from jwst's:"] + problems)


# ---------------------------------------------------------------------------
# against the truth


@pytest.mark.parity
def test_fixed_slit_spectrum_matches_the_truth(lrs_fs, fs_runs):
    """The combined nods' spectrum (spec3 x1d) is the simulated source's F_nu within its errors, with S/N >> 5."""
    from astropy.io import fits
    from astropy.table import Table

    (truth_path,) = (lrs_fs.sim.output_dir / "truth").glob("*_spectrum.ecsv")
    truth = Table.read(truth_path)
    (x1d,) = [p for p in fs_runs.ours.glob("jw*-o*_x1d.fits")]
    with fits.open(x1d) as h:
        t = h["EXTRACT1D"].data
        wave, flux, err = (np.asarray(t[c], float) for c in ("WAVELENGTH", "FLUX", "FLUX_ERROR"))
        assert h["EXTRACT1D"].header["TUNIT2"] == "Jy"
    expected = np.interp(wave, truth["wavelength"], truth["flux"])
    ok = np.isfinite(flux) & np.isfinite(err) & (err > 0) & (wave > 5.0) & (wave < 11.9)
    assert ok.sum() > 200
    snr = flux[ok] / err[ok]
    assert np.median(snr) > 20
    pull = (flux[ok] - expected[ok]) / err[ok]
    print(f"spectrum vs truth: median S/N {np.median(snr):.1f}, median pull {np.median(pull):+.2f}, "
          f"rms pull {np.sqrt(np.mean(pull ** 2)):.2f}, median ratio {np.median(flux[ok] / expected[ok]):.4f}")
    assert abs(np.median(pull)) < 1.0 and np.sqrt(np.mean(pull**2)) < 2.5
    assert np.median(flux[ok] / expected[ok]) == pytest.approx(1.0, abs=0.03)
    # the silicate absorption at 9.7 um is seen
    band = ok & (np.abs(wave - 9.7) < 0.4)
    side = ok & (np.abs(wave - 9.7) > 1.5) & (np.abs(wave - 9.7) < 2.5)
    model_depth = 1 - np.median(expected[band] / (expected[side].mean()))
    seen_depth = 1 - np.median(flux[band] / (flux[side].mean()))
    assert seen_depth == pytest.approx(model_depth, abs=0.05)


@pytest.mark.parity
def test_white_light_curve_shows_the_transit(lrs_sl, sl_runs):
    from astropy.table import Table

    (wl,) = sl_runs.ours.glob("*_whtlt.ecsv")
    tab = Table.read(wl)
    (truth_path,) = (lrs_sl.sim.output_dir / "truth").glob("*_lightcurve.ecsv")
    truth = Table.read(truth_path)
    assert len(tab) == len(truth) == 8
    np.testing.assert_allclose(tab["MJD_UTC"], truth["int_mid_MJD_UTC"], rtol=0, atol=1e-9)
    flux = np.asarray(tab["whitelight_flux"], float)
    true = np.asarray(truth["relative_flux"], float)
    # the first integration carries MIRI's first-integration reset effects: TSO analyses drop it
    flux, true = flux[1:], true[1:]
    out, deep = true == 1.0, true == true.min()
    rel = flux / np.median(flux[out])
    expected = truth.meta["depth"] * truth.meta["white_light_source_fraction"]  # the box holds sky too
    depth = np.mean(rel[out]) - np.mean(rel[deep])
    scatter = np.std(rel[out], ddof=1)
    depth_err = scatter * np.sqrt(1 / out.sum() + 1 / deep.sum())
    print(f"white light: depth {depth:.4f} +- {depth_err:.4f}, expected {expected:.4f}")
    assert depth > 3 * depth_err  # the transit is seen
    assert abs(depth - expected) < 3 * depth_err + 0.002


@pytest.mark.parametrize("argv, message", [
    (["--exp-type", "MIR_LRS-SLITLESS", "--nexp", "2"], "one exposure of many integrations"),
    (["--exp-type", "MIR_LRS-FIXEDSLIT", "--subarray", "SUB256"], "read on the FULL subarray"),
    (["--exp-type", "MIR_LRS-FIXEDSLIT", "--filter", "F770W"], "P750L"),
])
def test_bad_lrs_simulation_options_fail_in_one_line(tmp_path, capsys, argv, message):
    from webbflow.flows.cli import main

    out = tmp_path / "sim"
    rc = main(["simulate", "--instrument", "miri", "--output-dir", str(out), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and message in err[0] and "Traceback" not in err[0]
    assert not out.exists()


@pytest.mark.parity
def test_lrs_wcs_world_coordinates_match_jwst(fs_runs, sl_runs):
    """The WCS each cal/calints carries gives jwst's RA, Dec and wavelength over its bounding box
    (within 1e-10 deg and 1e-10 um), read back by stdatamodels from both products."""
    import warnings

    from stdatamodels.jwst import datamodels as dm

    pairs = [(fs_runs, n) for n in sorted(_names(fs_runs.jwst, ("_cal.fits",)))]
    pairs += [(sl_runs, n) for n in sorted(_names(sl_runs.jwst, ("_calints.fits",)))]
    assert len(pairs) == 3
    for runs, name in pairs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours, theirs = dm.open(runs.ours / name), dm.open(runs.jwst / name)
        (x0, x1), (y0, y1) = theirs.meta.wcs.bounding_box.bounding_box(order="F")
        x, y = np.meshgrid(np.arange(np.ceil(x0), np.floor(x1) + 1, 2), np.arange(np.ceil(y0), np.floor(y1) + 1, 2))
        for what, a, b in zip(("RA", "Dec", "wavelength"), ours.meta.wcs(x, y), theirs.meta.wcs(x, y)):
            assert np.array_equal(np.isnan(a), np.isnan(b)), (name, what)
            ok = np.isfinite(b)
            assert ok.sum() > 0.5 * b.size and np.max(np.abs(a[ok] - b[ok])) <= 1e-10, (name, what)
