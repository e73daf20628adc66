"""NIRSpec fixed slits simulated (refs/sim/nirspec.py) and calibrated by jwst 3.0 and by webbflow, products whole.

One simulation (PRISM/CLEAR, S200A1 on SUBS200A1, NRSRAPID, 4 groups, a 2-point nod along the slit) with
its CRDS cache and the associations jwst's rules make; jwst runs as its users run it, from the
associations' folder with CRDS_PATH and no override: ``calwebb_detector1`` on each uncal,
``calwebb_spec2`` on the first nod's association (the other nod its background).  (jwst's spec2 of the
second nod and its ``calwebb_spec3`` are left out of CI for time: NIRSpec's source-based spec3 is another
piece of work.)  webbflow runs detector1 on that nod's uncal file and spec2 on jwst's rates; every product
is compared whole (tests/test_products_whole.py: HDUs, keywords, arrays within rtol 1e-4 for 99.9 %, DQ equal, tables),
the slit's world coordinates at every pixel within 1e-10 deg and 1e-12 m.  Against the truth: the
point source's spectrum in the calibrated slit agrees with the simulated F_nu.

Bright-object TSO (S1600A1, SUB2048, ``--exp-type NRS_BRIGHTOBJ``) is simulated by the same module; its
jwst run (detector1, tso-spec2, tso3) against ``webbflow run calwebb_tso3`` from the uncal file is by hand
for CI time (the report of issue 19); here only its refusal of another slit.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from simrun import inputs as _inputs
from simrun import simulate_into, strun
from test_products_whole import _quiet, compare_fits

pytestmark = pytest.mark.real  # the simulator places light through the real optical references in ../shared/data

SIM_FS = dict(instrument="nirspec", exp_type="NRS_FIXEDSLIT", seed=7)


@pytest.fixture(scope="session")
def fs_sim(tmp_path_factory):
    return simulate_into(tmp_path_factory, "nrs_fs_sim", SIM_FS)


@pytest.fixture(scope="session")
def fs_runs(fs_sim):
    """jwst's detector1 on both nods and spec2 on the first nod's association (strun from the associations'
    folder); webbflow's detector1 on the first nod's uncal file and spec2 on the same association from jwst's
    rates.  (One nod through spec2 each: the second is the same code path; CI time.)"""
    from webbflow.flows.cli import main

    sim = fs_sim.sim
    asn = Path(sim.asn_level2[0]).name
    jw = _inputs(sim, fs_sim.root / "jwst")
    calls = [("calwebb_detector1", u.name) for u in sim.uncal] + [("calwebb_spec2", asn)]

    _quiet(lambda: strun(jw, calls), fs_sim.cache, fs_sim.context)
    ours = _inputs(sim, fs_sim.root / "ours")
    d1 = ours / "detector1"
    science = json.loads((jw / asn).read_text())["products"][0]["name"]

    def webbflow():
        assert main(["run", "calwebb_detector1", str(ours / f"{science}_uncal.fits"), "--output-dir", str(d1)]) == 0
        for f in jw.glob("*_rate.fits"):  # spec2 on jwst's rates
            shutil.copy2(f, ours / f.name)
        assert main(["run", "calwebb_spec2", str(ours / asn), "--output-dir", str(ours)]) == 0

    _quiet(webbflow, fs_sim.cache, fs_sim.context)
    return SimpleNamespace(jwst=jw, ours=ours, d1=d1, root=science)


def _truth(sim):
    from astropy.table import Table

    return Table.read(sim.catalog)


# ---------------------------------------------------------------------------
# the simulation


def test_fixed_slit_simulation_is_a_nod_pair_in_s200a1(fs_sim):
    from astropy.io import fits

    sim = fs_sim.sim
    assert len(sim.uncal) == 2
    offsets = []
    for k, u in enumerate(sim.uncal):
        with fits.open(u) as h:
            p, s = h[0].header, h["SCI"].header
            assert (p["EXP_TYPE"], p["FXD_SLIT"], p["GRATING"], p["FILTER"], p["DETECTOR"]) == (
                "NRS_FIXEDSLIT", "S200A1", "PRISM", "CLEAR", "NRS1")
            assert (p["SUBARRAY"], p["SUBSTRT2"], p["SUBSIZE2"], p["READPATT"]) == ("SUBS200A1", 1041, 64, "NRSRAPID")
            assert (p["PATTTYPE"], p["PATT_NUM"], p["NUMDTHPT"], p["PRIDTPTS"]) == ("2-POINT-NOD", k + 1, 2, 2)
            assert p["APERNAME"] == "NRS_S200A1_SLIT" and p["SRCTYAPT"] == "POINT" and p["GWA_TILT"] > 0
            assert h["SCI"].data.shape == (1, 4, 64, 2048) and h["SCI"].data.dtype == np.uint16
            assert s["S_REGION"].startswith("POLYGON ICRS") and s["V2_REF"] and s["RA_REF"]
            offsets.append((p["XOFFSET"], p["YOFFSET"]))
    # the nods move the target along the slit (ideal y), 1" apart, and not across it
    assert [x for x, _ in offsets] == [0.0, 0.0] and offsets[1][1] - offsets[0][1] == pytest.approx(1.0)
    # the truth: jwst's rule (ideal offsets -> v2v3 -> slit frame) puts the source either side of the slit
    # centre, in the slit's middle across it
    meta = _truth(sim).meta
    ys, xs = meta["source_y_slit"], meta["source_x_slit"]
    assert ys[0] == pytest.approx(-ys[1], abs=0.01) and 0.1 < abs(ys[0]) < 0.3
    assert max(abs(x) for x in xs) < 0.05


def test_the_light_lands_where_the_optical_model_puts_it(fs_sim):
    """The spectrum fills the columns and rows of S200A1's PRISM footprint, with each nod's trace where the
    source sits along the slit (10 rows apart: 1" at 0.1" per pixel)."""
    from astropy.io import fits

    rows = []
    for u in fs_sim.sim.uncal:
        with fits.open(u) as h:
            d = h["SCI"].data[0].astype(np.float64)
        signal = d[-1] - d[0]
        col = np.median(signal[:, 1250:1350], axis=1)
        rows.append(int(np.argmax(col)))
        lit = np.median(signal[rows[-1] - 1: rows[-1] + 2], axis=0)
        # the PRISM spectrum of S200A1 spans columns ~1084-1518 of NRS1 (optical model; ESA's truth within pixels)
        bright = np.flatnonzero(lit > 5 * np.median(np.abs(lit[100:900])) + 20)
        assert 1080 < bright.min() < 1130 and 1440 < bright.max() < 1530, (bright.min(), bright.max())
    assert abs(rows[1] - rows[0]) in (9, 10, 11) and 10 < min(rows) and max(rows) < 54


@pytest.mark.parity
def test_associations_are_jwsts(fs_sim):
    """The pool's spec2 and spec3 associations, as jwst 3.0's generator makes them from the same pool."""
    from jwst.associations import AssociationPool
    from jwst.associations.main import Main

    from parity import quiet_jwst

    sim = fs_sim.sim
    (pool_path,) = sim.output_dir.glob("*_pool.csv")
    version = pool_path.name.split("_")[1]
    with quiet_jwst(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gen = Main.cli(["--dry-run", "--version-id", version], pool=AssociationPool.read(str(pool_path)))
    theirs = {a.asn_name + ".json": json.loads(a.dump(format="json")[1]) for a in gen.associations}
    ours = {Path(p).name: json.loads(Path(p).read_text()) for p in [*sim.asn_level2, sim.asn_level3]}
    assert sorted(ours) == sorted(theirs)
    strip = lambda a: {k: v for k, v in a.items() if k not in ("constraints", "code_version")}  # noqa: E731
    for name, asn in theirs.items():
        assert strip(ours[name]) == strip(asn), name
    # what a user checks: each nod calibrated with the other as background, and one spec3 of both
    for p in sim.asn_level2:
        a = json.loads(Path(p).read_text())
        assert a["asn_rule"] == "candidate_Asn_Lv2NRSFSS"
        kinds = sorted((m["exptype"], m["expname"]) for m in a["products"][0]["members"])
        assert [k for k, _ in kinds] == ["background", "science"] and kinds[0][1] != kinds[1][1]
    a3 = json.loads(Path(sim.asn_level3).read_text())
    assert a3["asn_type"] == "spec3" and len(a3["products"][0]["members"]) == 2


def test_references_are_selected_by_crds_for_the_mode(fs_sim):
    from parity import jwst_offline

    from webbflow.refs.select import bestrefs

    wanted = ["camera", "collimator", "disperser", "fore", "fpa", "ote", "msa", "wavelengthrange", "wavecorr",
              "pathloss", "photom", "area", "fflat", "sflat", "dflat", "dark", "superbias", "extract1d", "barshadow"]
    with jwst_offline(fs_sim.cache, fs_sim.context):
        best = bestrefs(fs_sim.sim.uncal[0], reftypes=wanted).choices
    files = {rt for rt, c in best.items() if c.kind == "file"}
    assert files == set(wanted) - {"extract1d", "barshadow"}
    assert best["extract1d"].kind == best["barshadow"].kind == "n/a"
    from astropy.io import fits

    from webbflow.refs.context import reference_path

    dark = reference_path(fs_sim.cache, Path(best["dark"].value).name)
    with fits.open(dark) as h:  # jwst's dark step takes a dark of the subarray's shape
        assert (h[0].header["SUBARRAY"], h["SCI"].data.shape[-2:]) == ("SUBS200A1", (64, 2048))


# ---------------------------------------------------------------------------
# parity


@pytest.mark.parity
def test_detector1_rates_whole(fs_sim, fs_runs):
    problems: list[str] = []
    root = fs_runs.root
    compare_fits("rate", fs_runs.d1 / f"{root}_rate.fits", fs_runs.jwst / f"{root}_rate.fits", problems)
    assert problems == [], "\n".join(problems)


def _x1d_columns_agree(problem: str, ours: Path, theirs: Path) -> bool:
    """An x1d column flagged by the whole-product comparison (rtol 1e-6 per value) that agrees within 1e-6 of the
    column's scale: the whole-slit sums of a nod-subtracted slit cancel to a few per cent of their terms, so the
    order of float32 sums shows in the last digits of the near-zero ones."""
    from astropy.io import fits

    if "column " not in problem:
        return False
    col = problem.split("column ", 1)[1].split(" ", 1)[0]
    x, y = (np.asarray(fits.getdata(p, "EXTRACT1D")[col], float) for p in (ours, theirs))
    return bool(np.allclose(x, y, rtol=0, atol=1e-6 * np.nanmax(np.abs(y)), equal_nan=True))


@pytest.mark.parity
def test_spec2_cal_s2d_x1d_whole(fs_sim, fs_runs):
    """The nod-subtracted, flat-fielded, pathloss- and photom-corrected slit, its resampled image and spectrum."""
    problems: list[str] = []
    root = fs_runs.root
    for sfx in ("cal", "s2d", "x1d"):
        ours, theirs = fs_runs.ours / f"{root}_{sfx}.fits", fs_runs.jwst / f"{root}_{sfx}.fits"
        assert ours.exists(), ours.name
        found: list[str] = []
        compare_fits(sfx, ours, theirs, found)
        problems += [p for p in found if not (sfx == "x1d" and _x1d_columns_agree(p, ours, theirs))]
    assert problems == [], "\n".join(problems)
    from astropy.io import fits

    with fits.open(fs_runs.ours / f"{root}_cal.fits") as h:
        p = h[0].header
        assert all(p[k] == "COMPLETE" for k in ("S_BKDSUB", "S_FLAT", "S_PTHLOS", "S_PHOTOM", "S_WAVCOR", "S_EXTR2D"))
        assert h["SCI"].header["SLTNAME"] == "S200A1" and h["SCI"].header["SRCTYPE"] == "POINT"


@pytest.mark.parity
def test_world_coordinates_at_every_pixel(fs_sim, fs_runs):
    """The cal's slit WCS, evaluated at each pixel of the cutout: within 1e-10 deg and 1e-12 m of jwst's."""
    from webbflow import models

    root = fs_runs.root
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours, theirs = (models.open(d / f"{root}_cal.fits") for d in (fs_runs.ours, fs_runs.jwst))
    (so,), (st,) = list(ours.slits), list(theirs.slits)
    assert (so.name, so.xstart, so.ystart, so.xsize, so.ysize) == (st.name, st.xstart, st.ystart, st.xsize, st.ysize)
    y, x = np.mgrid[: st.data.shape[0], : st.data.shape[1]]
    ra_o, dec_o, lam_o = so.meta.wcs(x, y)
    ra_t, dec_t, lam_t = st.meta.wcs(x, y)
    assert np.array_equal(np.isfinite(lam_o), np.isfinite(lam_t)) and np.isfinite(lam_t).sum() > 5000
    ok = np.isfinite(lam_t)
    assert np.max(np.abs(ra_o[ok] - ra_t[ok])) < 1e-10 and np.max(np.abs(dec_o[ok] - dec_t[ok])) < 1e-10
    assert np.max(np.abs(lam_o[ok] - lam_t[ok])) * 1e-6 < 1e-12  # the world frame's wavelengths are in microns


def _box_spectrum(cal_path: Path, half: int = 3):
    """(wavelength um, F_nu Jy) of the positive trace: the cal slit summed over ``2 half + 1`` rows about it, less
    the median of the rows that hold neither nod's light (the exposures' offset left after nod subtraction)."""
    from astropy.io import fits

    with fits.open(cal_path) as h:
        sci, wl = h["SCI"].data.astype(np.float64), h["WAVELENGTH"].data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        profile = np.nanmedian(sci[:, 100:300], axis=1)
        row = int(np.nanargmax(profile))
        quiet = np.isfinite(profile) & (np.abs(profile) < 0.1 * np.nanmax(np.abs(profile)))
        level = np.nanmedian(sci[quiet], axis=0)
        box = sci[row - half: row + half + 1] - level
        flux = np.nanmean(box, axis=0) * box.shape[0] * 1e6  # MJy -> Jy; NaN (flagged) pixels as the mean
    return wl[row], flux


@pytest.mark.parity
def test_spectrum_matches_the_truth(fs_sim, fs_runs):
    """The point source's F_nu in the calibrated slit (a 7-row box about it, the slit's residual level subtracted)
    agrees with the truth spectrum: binned by 20 columns, the median within 5 %, most bins within 10 % (S/N ~ 15
    per column; the flats, ~1 +- 3 %, are not in the scene)."""
    truth = _truth(fs_sim.sim)
    lam, flux = _box_spectrum(fs_runs.jwst / f"{fs_runs.root}_cal.fits")
    ok = np.isfinite(lam) & np.isfinite(flux) & (lam > 0.7) & (lam < 5.2)
    ratio = flux[ok] / np.interp(lam[ok], truth["wavelength"], truth["flux"])
    bins = np.array([np.median(ratio[i: i + 20]) for i in range(0, ratio.size - 19, 20)])
    assert ratio.size > 350 and bins.size >= 17
    assert abs(np.median(bins) - 1.0) < 0.05, bins.round(3)
    assert np.mean(np.abs(bins - 1.0) < 0.10) >= 0.8, bins.round(3)
    print(f"NIRSpec FS truth: extracted/truth median {np.median(ratio):.4f}, 20-column bins {bins.round(3).tolist()}")


def test_bad_options_are_one_line_errors(tmp_path):
    from webbflow.errors import ParameterError
    from webbflow.refs.simulator import simulate

    cases = [dict(grating="G395M", filter="F170LP"), dict(grating="G999H"), dict(slit="S400A1"), dict(readpatt="NRSIRS2", subarray="SUBS200A1"),
             dict(nexp=4), dict(detector="NRS2")]
    for kw in cases:
        with pytest.raises(ParameterError) as e:
            simulate(tmp_path / "x", instrument="nirspec", exp_type="NRS_FIXEDSLIT", **kw)
        assert "\n" not in str(e.value), kw
    with pytest.raises(ParameterError, match="S1600A1"):
        simulate(tmp_path / "y", instrument="nirspec", exp_type="NRS_BRIGHTOBJ", slit="S200A1")
