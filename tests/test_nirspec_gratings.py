"""NIRSpec gratings: the synthetic dispersers and fore optics (refs/synthetic_nirspec_optics.py), and a fixed-slit
nod pair through a grating simulated (refs/sim/nirspec.py) and calibrated by jwst 3.0 and by webbflow, whole.

The simulation: G395H/F290LP, S200A1 on SUBS200A1, NRSRAPID, 3 groups, a 2-point nod.  jwst runs as its users
run it, from the associations' folder with CRDS_PATH and no override (``calwebb_detector1`` on each uncal,
``calwebb_spec2`` on the first nod's association); webbflow runs spec2 on the same association from jwst's
rates.  cal, s2d and x1d are compared whole (tests/test_products_whole.py), the slit's world coordinates at
every pixel within 1e-10 deg and 1e-12 m (the x1d's whole-slit sums of the nod-subtracted slit within 1e-6 of the
column's scale, as in tests/test_nirspec_sim.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from test_nirspec_sim import _x1d_columns_agree
from simrun import inputs as _inputs
from simrun import simulate_into, strun
from test_products_whole import _quiet, compare_fits

pytestmark = pytest.mark.real  # the optical chain is the real one in ../shared/data

SIM = dict(instrument="nirspec", exp_type="NRS_FIXEDSLIT", grating="G395H", filter="F290LP", ngroups=3, seed=11)


# ---------------------------------------------------------------------------
# the references


@pytest.mark.parametrize("filt", ["F070LP", "F100LP", "F170LP", "F290LP", "CLEAR"])
def test_fore_optics_reproduce_esas_distortion_maps(filt):
    """jwst's form of ESA's fore-optics model maps the MSA points of the file's own distortion map back to the
    field-stop points within the backward polynomials' accuracy (< 1 um on a 0.24 m field), and the inverse
    exactly."""
    from webbflow.refs.synthetic_nirspec_optics import _pcf_path, fore_model, read_pcf

    pcf = read_pcf(_pcf_path(f"Fore_{filt}.pcf"))
    model = fore_model(pcf)
    field, msa = pcf["InputDistortionMap_1"], pcf["OutputDistortionMap_1"]
    lam = np.full(len(msa), 2e-6)
    x, y = model(msa[:, 0], msa[:, 1], lam)
    assert np.max(np.hypot(x - field[:, 0], y - field[:, 1])) < 1e-6
    xi, yi = model.inverse(field[:, 0], field[:, 1], lam)
    assert np.max(np.hypot(xi - msa[:, 0], yi - msa[:, 1])) < 1e-12


def test_fore_reference_round_trips_as_stdatamodels_reads_it(tmp_path):
    from stdatamodels.jwst.datamodels import FOREModel

    from webbflow.refs.synthetic_nirspec_optics import fore_reference

    path = fore_reference("F290LP").save(tmp_path / "fore.asdf")
    with FOREModel(str(path)) as m:
        m.validate()
        assert m.meta.instrument.filter == "F290LP" and m.meta.reftype.lower() == "fore"
        assert m.model(0.01, 0.02, 3e-6) == pytest.approx(fore_reference("F290LP").model(0.01, 0.02, 3e-6), abs=1e-15)


def _s200a1_wcs(grating, filt, folder):
    """S200A1's WCS (webbflow's assign_wcs, as the simulator builds it) through ``grating`` and ``filt``, on SUBS200A1."""
    import datetime as dt

    import pysiaf

    from webbflow.refs import simulator as S
    from webbflow.refs.sim import nirspec as N
    from webbflow.refs.synthetic_nirspec_optics import disperser_reference, fore_reference, write_msa_reference

    real = N.real_refs_dir()
    paths = {rt: real / f for rt, f in N.OPTICS.items()}
    paths["msa"] = write_msa_reference(folder / "msa.asdf")
    paths["disperser"] = Path(disperser_reference(grating).save(folder / f"disperser_{grating}.asdf"))
    paths["fore"] = Path(fore_reference(filt).save(folder / f"fore_{filt}.asdf"))
    ap = pysiaf.Siaf("NIRSpec")["NRS_S200A1_SLIT"]
    aim = N._Aim(float(ap.V2Ref), float(ap.V3Ref), float(ap.V3IdlYAngle), int(ap.VIdlParity))
    window = N.Window("SUBS200A1", 1041, 64, 0.9)
    ids = S.ObservationIds(program="01234", observation="001", visit="001")
    model, _ = N._exposure("NRS_FIXEDSLIT", "NRSRAPID", 3, 1, window, dt.datetime(2024, 1, 15), 0)
    geometry = N._place(model, "NRS_FIXEDSLIT", "S200A1", window, ids, 0, 2, aim, 53.0, -27.0, 30.0, (0.0, 0.0),
                        paths, optics=(grating, filt))
    return geometry.wcs


@pytest.mark.parametrize("grating,filt,lo,hi", [("G395M", "F290LP", 2.87, 5.27), ("G235H", "F170LP", 1.66, 3.17),
                                                ("G140M", "F100LP", 0.97, 1.89)])
def test_grating_bands_land_on_nrs1_as_designed(tmp_path, grating, filt, lo, hi):
    """An M grating's band (the in-flight wavelengthrange) middle at NRS1 column 1024, the band within ~310-1740
    (1.8 nm per pixel for G395M); an H grating's band from column ~670-730 onto NRS2, as G395H's."""
    t = _s200a1_wcs(grating, filt, tmp_path).get_transform("slit_frame", "detector")
    x, y = (np.asarray(v) for v in t(np.zeros(3), np.zeros(3), np.array([lo, 0.5 * (lo + hi), hi]) * 1e-6))
    if grating.endswith("M"):
        assert x[1] == pytest.approx(1024.0, abs=0.5) and 290 < x[0] < 390 and 1660 < x[2] < 1760, x
    else:
        assert 650 < x[0] < 750 and x[2] > 4000, x  # the red end falls beyond NRS1 (on NRS2)
    on = x < 2048
    assert np.all((y[on] > 30) & (y[on] < 64)), y  # in SUBS200A1's rows


def test_g395h_matches_esas_functional_model_on_nrs1(tmp_path):
    """ESA's functional truth table for the fixed slits (G395H/F290LP): where light of each wavelength from a point
    of S200A1 lands on the detector.  Our chain (real FM2 optics, ESA's Fore_F290LP, the fitted G395H) puts the
    NRS1 (SCA491) points within 3 pixels."""
    from webbflow.refs.sim import nirspec as N

    table = N.real_refs_dir().parent / "nirspec-model" / "fixed_slits_functional_ESA_v4_20180618.txt"
    rows = [ln.split() for ln in table.read_text().splitlines()[1:] if ln.strip()]
    pts = [(float(r[0]), float(r[1]), float(r[2]), float(r[19]), float(r[20])) for r in rows if r[21] == "SCA491"]
    assert len(pts) >= 2
    t = _s200a1_wcs("G395H", "F290LP", tmp_path).get_transform("slit_frame", "detector")
    lam, xs, ys, i, j = (np.array(v) for v in zip(*pts))
    x, y = (np.asarray(v) for v in t(xs, ys, lam))
    dist = np.hypot(x - (i - 1), y + 1040 - (j - 1))  # ESA's pixels are 1-based; SUBS200A1 starts at row 1041
    print(f"G395H vs ESA's functional model on NRS1: {np.round(dist, 2).tolist()} pixels")
    assert np.max(dist) < 3.0, dist


# ---------------------------------------------------------------------------
# a grating fixed-slit observation


@pytest.fixture(scope="module")
def grating_sim(tmp_path_factory):
    return simulate_into(tmp_path_factory, "nrs_grating_sim", SIM)


@pytest.fixture(scope="module")
def grating_runs(grating_sim):
    from webbflow.flows.cli import main

    sim = grating_sim.sim
    asn = Path(sim.asn_level2[0]).name
    jw = _inputs(sim, grating_sim.root / "jwst")
    calls = [("calwebb_detector1", u.name) for u in sim.uncal] + [("calwebb_spec2", asn)]

    _quiet(lambda: strun(jw, calls), grating_sim.cache, grating_sim.context)
    ours = _inputs(sim, grating_sim.root / "ours")
    science = json.loads((jw / asn).read_text())["products"][0]["name"]

    def webbflow():
        for f in jw.glob("*_rate.fits"):
            shutil.copy2(f, ours / f.name)
        assert main(["run", "calwebb_spec2", str(ours / asn), "--output-dir", str(ours)]) == 0

    _quiet(webbflow, grating_sim.cache, grating_sim.context)
    return SimpleNamespace(jwst=jw, ours=ours, root=science)


def test_grating_exposure_and_its_references(grating_sim):
    from astropy.io import fits

    from parity import jwst_offline

    from webbflow.refs.select import bestrefs

    sim = grating_sim.sim
    with fits.open(sim.uncal[0]) as h:
        p = h[0].header
        assert (p["GRATING"], p["FILTER"], p["FXD_SLIT"]) == ("G395H", "F290LP", "S200A1")
    with jwst_offline(grating_sim.cache, grating_sim.context):
        best = bestrefs(sim.uncal[0], reftypes=["disperser", "fore", "sflat", "fflat"]).choices
    from webbflow.refs.context import reference_path

    for rt, key, want in (("disperser", "GRATING", "G395H"), ("fore", "FILTER", "F290LP"), ("sflat", "GRATING", "G395H")):
        path = reference_path(grating_sim.cache, Path(best[rt].value).name)
        if path.suffix == ".asdf":
            import asdf

            with asdf.open(path) as af:
                got = af.tree["meta"]["instrument"]["grating" if key == "GRATING" else "filter"]
        else:
            got = fits.getheader(path)[key]
        assert got == want, (rt, got)


def test_the_grating_spectrum_lands_where_the_optical_model_puts_it(grating_sim):
    """G395H on NRS1: S200A1's spectrum starts at 2.87 um at column ~840 (ESA's functional model puts 2.9 um of
    the slit centre at 878) and runs off the detector's right edge (the rest lands on NRS2), its trace rising a
    few rows across the detector; the nods' traces are 10 rows (1") apart."""
    from astropy.io import fits

    rows = []
    for u in grating_sim.sim.uncal:
        with fits.open(u) as h:
            d = h["SCI"].data[0].astype(np.float64)
        signal = d[-1] - d[0]
        peak = signal.max(axis=0)
        noise = np.median(np.abs(signal[:5, 100:1900]))
        bright = np.flatnonzero(peak > 20 * noise + 50)
        assert 820 < bright.min() < 880 and bright.max() > 2030, (bright.min(), bright.max())
        assert bright.size > 0.97 * (2044 - bright.min())
        trace = [int(np.argmax(np.median(signal[:, c: c + 20], axis=1))) for c in (900, 1900)]
        assert 2 <= trace[0] - trace[1] <= 10, trace
        rows.append(trace[0])
    assert abs(rows[1] - rows[0]) in (9, 10, 11) and 5 < min(rows) and max(rows) < 59


@pytest.mark.parity
def test_grating_spec2_cal_s2d_x1d_whole(grating_sim, grating_runs):
    problems: list[str] = []
    root = grating_runs.root
    for sfx in ("cal", "s2d", "x1d"):
        ours, theirs = grating_runs.ours / f"{root}_{sfx}.fits", grating_runs.jwst / f"{root}_{sfx}.fits"
        assert ours.exists(), ours.name
        found: list[str] = []
        compare_fits(sfx, ours, theirs, found)
        # the whole-slit sums of a nod-subtracted slit: float32 summation order in the near-zero values' last digits
        problems += [p for p in found if not (sfx == "x1d" and _x1d_columns_agree(p, ours, theirs))]
    assert problems == [], "\n".join(problems)


@pytest.mark.parity
def test_grating_world_coordinates_at_every_pixel(grating_sim, grating_runs):
    import warnings

    from webbflow import models

    root = grating_runs.root
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours, theirs = (models.open(d / f"{root}_cal.fits") for d in (grating_runs.ours, grating_runs.jwst))
    (so,), (st,) = list(ours.slits), list(theirs.slits)
    assert (so.name, so.xstart, so.ystart, so.xsize, so.ysize) == (st.name, st.xstart, st.ystart, st.xsize, st.ysize)
    y, x = np.mgrid[: st.data.shape[0], : st.data.shape[1]]
    ra_o, dec_o, lam_o = so.meta.wcs(x, y)
    ra_t, dec_t, lam_t = st.meta.wcs(x, y)
    ok = np.isfinite(lam_t)
    assert np.array_equal(np.isfinite(lam_o), ok) and ok.sum() > 5000
    assert np.max(np.abs(ra_o[ok] - ra_t[ok])) < 1e-10 and np.max(np.abs(dec_o[ok] - dec_t[ok])) < 1e-10
    assert np.max(np.abs(lam_o[ok] - lam_t[ok])) * 1e-6 < 1e-12
    assert 2.8 < np.nanmin(lam_t) < 3.0  # G395H starts at 2.87 um
