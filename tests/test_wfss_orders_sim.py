"""NIRCam WFSS, orders 1 and 2: the simulated traces against the real specwcs, and spec2 against jwst 3.0.

The simulator (refs/sim/wfss.py) disperses every source in both orders of the real module A
GRISMR specwcs (``jwst_nircam_specwcs_0010.asdf``).  For F322W2 on the SUB640 window, order 1
runs from about 1500 px before the source to 75 px after it, and order 2 starts about 920 px
after it, so the field gets one source left of the window whose order-2 trace runs onto it.

- The traces: in the truth, each source's trace for each order must lie where the real file's
  polynomials (read here from the ASDF tree, not through any WCS) put it: the offset from the
  source's direct-image position is dispx(invdispl(lambda)) along the rows and dispy (0) across,
  within half a pixel (measured: 0.08 px, the synthetic filter offset and distortion between the
  direct image and the dispersed frame), and the trace's direction and length agree to 1e-6 px.
- spec2: jwst's ``calwebb_detector1`` makes the dispersed rate; a source catalogue in image3's form
  is written from the simulator's truth (the full-frame direct image's chain is
  test_wfss_sim.py's, and costs a minute of CI); jwst's ``calwebb_spec2`` and webbflow's run on the
  same rate and catalogue, from the association's folder.  Both orders are cut, with the same
  source ids, orders and cutout corners, the cal and x1d agree whole (tests/test_products_whole.py),
  and the order-2 spectrum gives back the simulated F_nu.  With WEBBFLOW_WFSS_ORDERS_FULL=1 jwst
  runs the whole chain instead (detector1 on both uncal files, image2 and image3 on the direct
  image, spec2 on the simulation's association with image3's catalogue, segmentation map and i2d).
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

SIM = dict(instrument="nircam", exp_type="NRC_WFSS", pupil="GRISMR", filter="F322W2", seed=3)
GRISM = "jw01234001001_02102_00001_nrcalong"
SPEC2_PRODUCTS = {f"{GRISM}_cal.fits", f"{GRISM}_x1d.fits"}
CATALOG = "truth_cat.ecsv"
IMAGE3 = "jw01234-o001_t001_nircam_clear-f322w2"
# opt-in: the whole chain as jwst's users run it (detector1 on both uncal files, image2 and image3 on
# the full-frame direct image, spec2 with image3's catalogue): some minutes of jwst on CI's machines
FULL = os.environ.get("WEBBFLOW_WFSS_ORDERS_FULL") == "1"
WINDOW = (704, 704)  # NRCA5_SUB640's first column and row (0-based) on the full frame


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    from webbflow.refs.simulator import simulate

    root = tmp_path_factory.mktemp("wfss-orders")
    s = simulate(root / "sim", **SIM)
    return SimpleNamespace(sim=s, root=root, cache=s.crds_path, context=s.context)


@pytest.fixture(scope="module")
def sim_grismc(tmp_path_factory):
    """The same field through GRISMC (dispersing along the columns): for the trace check only."""
    from webbflow.refs.simulator import simulate

    root = tmp_path_factory.mktemp("wfss-orders-c")
    s = simulate(root / "sim", **{**SIM, "pupil": "GRISMC"})
    return SimpleNamespace(sim=s, root=root)


def _truth(sim):
    from astropy.table import Table

    truth = sim.sim.output_dir / "truth"
    (src,) = truth.glob("*_sources.ecsv")
    (spec,) = truth.glob("*_spectra.ecsv")
    return Table.read(src), Table.read(spec)


@pytest.mark.parametrize("pupil,specwcs,along", [("GRISMR", "jwst_nircam_specwcs_0010.asdf", "x"),
                                                 ("GRISMC", "jwst_nircam_specwcs_0011.asdf", "y")])
def test_simulated_traces_are_the_real_specwcs_in_both_orders(pupil, specwcs, along, request):
    """Offsets, direction and length of every order's trace, in pixels, against the real file's polynomials."""
    import asdf

    src, spec = _truth(request.getfixturevalue("sim" if pupil == "GRISMR" else "sim_grismc"))
    with asdf.open(SHARED_DATA / "real-refs" / "nircam" / specwcs) as af:
        orders = list(af.tree["orders"])
        models = {o: (af.tree["displ"][k], af.tree["invdispl"][k], af.tree["dispx"][k], af.tree["dispy"][k])
                  for k, o in enumerate(orders)}
    assert orders == [1, 2]
    assert set(spec["order"]) == {1, 2}
    worst = {}
    for o, (displ, invdispl, dispx, dispy) in models.items():
        for s in src:
            m = spec[(spec["source_id"] == s["id"]) & (spec["order"] == o)]
            lam = np.asarray(m["wavelength"], float)
            t = invdispl(lam)
            assert np.allclose(displ(t), lam, atol=1e-9)  # the file's pair is a consistent one
            dx, dy = dispx(t), dispy(t)
            # where the file puts the trace: the source's position on the window plus the offsets
            x0, y0 = s["x_direct"] - WINDOW[0], s["y_direct"] - WINDOW[1]
            off_x = np.asarray(m["x_grism"], float) - (x0 + dx)
            off_y = np.asarray(m["y_grism"], float) - (y0 + dy)
            # direction and length: the trace relative to its own start
            shape_x = (m["x_grism"] - m["x_grism"][0]) - (dx - dx[0])
            shape_y = (m["y_grism"] - m["y_grism"][0]) - (dy - dy[0])
            w = worst.setdefault(o, [0.0, 0.0])
            w[0] = max(w[0], float(np.max(np.hypot(off_x, off_y))))
            w[1] = max(w[1], float(np.max(np.hypot(shape_x, shape_y))))
    for o, (pos, shape) in worst.items():
        assert pos < 0.5, (o, pos)  # measured 0.08 px (the synthetic filter offset and distortion)
        assert shape < 1e-6, (o, shape)
    # order 2 disperses twice as far: over the F322W2 band about 1580 px in order 1 and 3150 in order 2
    m1 = spec[(spec["source_id"] == 1) & (spec["order"] == 1)]
    m2 = spec[(spec["source_id"] == 1) & (spec["order"] == 2)]
    across = "y" if along == "x" else "x"
    len1, len2 = float(np.ptp(m1[f"{along}_grism"])), float(np.ptp(m2[f"{along}_grism"]))
    assert 1500 < len1 < 1650 and len2 == pytest.approx(2 * len1, rel=1e-6)
    # GRISMR disperses along the rows (its dispy is 0), GRISMC along the columns (its dispx is 0)
    assert float(np.ptp(m1[f"{across}_grism"])) < 0.01


def _catalog(src, path: Path) -> Path:
    """image3's source catalogue columns for the truth's sources (sky boxes from a local affine fit)."""
    from astropy.coordinates import SkyCoord
    from astropy.table import QTable

    x, y = np.asarray(src["x_direct"], float), np.asarray(src["y_direct"], float)
    ra, dec = np.asarray(src["ra"], float), np.asarray(src["dec"], float)
    a = np.column_stack([np.ones_like(x), x, y])
    cra, *_ = np.linalg.lstsq(a, ra, rcond=None)
    cdec, *_ = np.linalg.lstsq(a, dec, rcond=None)

    def sky(px, py):
        return SkyCoord(cra[0] + cra[1] * px + cra[2] * py, cdec[0] + cdec[1] * px + cdec[2] * py, unit="deg")

    r = 3.0 + 3.0 * np.asarray(src["sigma_px"], float)
    t = QTable()
    t["label"] = np.asarray(src["id"], np.int32)
    t["xcentroid"], t["ycentroid"] = x, y
    t["sky_centroid"] = SkyCoord(ra, dec, unit="deg")
    t["isophotal_abmag"] = 23.9 - 2.5 * np.log10(np.asarray(src["direct_flux"], float))
    t["isophotal_abmag_err"] = np.full(len(src), 0.01)
    t["sky_bbox_ll"], t["sky_bbox_lr"] = sky(x - r, y - r), sky(x + r, y - r)
    t["sky_bbox_ul"], t["sky_bbox_ur"] = sky(x - r, y + r), sky(x + r, y + r)
    t["is_extended"] = np.asarray(src["kind"]) == "galaxy"
    t.write(str(path), format="ascii.ecsv", overwrite=True)
    return path


def _spec2_asn(sim, folder: Path) -> Path:
    """The simulation's spec2 association, its members the dispersed rate and the catalogue."""
    (asn,) = [a for a in sim.sim.asn_level2 if "_spec2_" in Path(a).name]
    tree = json.loads(Path(asn).read_text())
    tree["products"][0]["members"] = [{"expname": f"{GRISM}_rate.fits", "exptype": "science"},
                                      {"expname": CATALOG, "exptype": "sourcecat"}]
    out = folder / Path(asn).name
    out.write_text(json.dumps(tree, indent=4))
    return out


@pytest.fixture(scope="module")
def runs(sim):
    """jwst's detector1 on the dispersed exposure, then jwst's and webbflow's spec2 on its rate (with
    WEBBFLOW_WFSS_ORDERS_FULL=1: jwst's whole chain, spec2 with image3's catalogue, segmentation map and i2d)."""
    from jwst.stpipe import Step

    from webbflow.flows.cli import main

    theirs, ours = sim.root / "jwst", sim.root / "ours"
    theirs.mkdir()
    ours.mkdir()
    if FULL:
        uncals = list(sim.sim.uncal)
        for f in [*sim.sim.asn_level2, *sim.sim.asn_level3_all]:
            shutil.copy2(f, theirs / Path(f).name)
        (asn,) = [theirs / Path(a).name for a in sim.sim.asn_level2 if "_spec2_" in Path(a).name]
        inputs = [f"{GRISM}_rate.fits", asn.name] + [f"{IMAGE3}{s}" for s in ("_i2d.fits", "_cat.ecsv", "_segm.fits")]
    else:
        uncals = [u for u in sim.sim.uncal if u.name.startswith(GRISM)]
        src, _spec = _truth(sim)
        _catalog(src, theirs / CATALOG)
        asn = _spec2_asn(sim, theirs)
        inputs = [f"{GRISM}_rate.fits", CATALOG, asn.name]
    for u in uncals:
        shutil.copy2(u, theirs / u.name)

    def run_jwst():
        cwd = os.getcwd()
        os.chdir(theirs)
        try:
            for u in uncals:
                Step.from_cmdline(["calwebb_detector1", u.name])
            for kind in ("image2", "image3") if FULL else ():
                for a in sorted(theirs.glob(f"*_{kind}_*_asn.json")):
                    Step.from_cmdline([f"calwebb_{kind}", a.name])
            Step.from_cmdline(["calwebb_spec2", asn.name])
        finally:
            os.chdir(cwd)

    _quiet(run_jwst, sim.cache, sim.context)
    for name in inputs:
        shutil.copy2(theirs / name, ours / name)
    rc = _quiet(lambda: main(["run", "calwebb_spec2", str(ours / asn.name), "--output-dir", str(ours)]),
                sim.cache, sim.context)
    assert rc == 0
    return SimpleNamespace(theirs=theirs, ours=ours)


def _cutouts(path):
    from astropy.io import fits

    with fits.open(path) as h:
        return [(h[i].header["SOURCEID"], h[i].header["SPORDER"], h[i].header["SLTSTRT1"], h[i].header["SLTSTRT2"],
                 h[i].header["SLTSIZE1"], h[i].header["SLTSIZE2"]) for i in range(len(h)) if h[i].name == "SCI"]


@pytest.mark.parity
def test_spec2_cuts_both_orders_as_jwst_does_and_writes_its_products_whole(runs):
    made = {p.name for p in runs.ours.iterdir() if p.name.endswith(".fits")}
    assert made - {f"{GRISM}_rate.fits", f"{IMAGE3}_i2d.fits", f"{IMAGE3}_segm.fits"} == SPEC2_PRODUCTS
    theirs = _cutouts(runs.theirs / f"{GRISM}_cal.fits")
    assert _cutouts(runs.ours / f"{GRISM}_cal.fits") == theirs
    orders = {}
    for sid, order, *_ in theirs:
        orders.setdefault(order, set()).add(sid)
    assert set(orders) == {1, 2} and len(orders[1]) >= 6 and len(orders[2]) >= 1, orders
    problems = compare_products(runs.ours, runs.theirs, SPEC2_PRODUCTS, suffixes=("_cal.fits", "_x1d.fits"))
    assert not problems, "\n".join(["products differ from jwst's:"] + problems)


@pytest.mark.parity
def test_the_order2_spectrum_recovers_the_truth(sim, runs):
    """The x1d's order-2 table: the source whose order-2 trace runs onto the window gives back its F_nu."""
    from astropy.io import fits

    from astropy.coordinates import SkyCoord

    src, spec = _truth(sim)
    with fits.open(runs.ours / f"{GRISM}_x1d.fits") as h:
        tables = {h[i].header["SPORDER"]: h[i].data for i in range(len(h)) if h[i].name == "EXTRACT1D"}
    assert set(tables) == {1, 2}
    # the rows with an order-2 spectrum, matched to the simulated sources by position (image3's labels
    # are its own); the flat table's other rows are empty
    t = tables[2][tables[2]["N_ALONGDISP"] > 0]
    assert len(t) >= 1
    idx, sep, _ = SkyCoord(t["SOURCE_RA"], t["SOURCE_DEC"], unit="deg").match_to_catalog_sky(
        SkyCoord(src["ra"], src["dec"]))
    assert np.all(sep.arcsec < 0.1)
    checked = 0
    for row, i in zip(t, idx):
        sid = int(src["id"][i])
        mine = spec[(spec["source_id"] == sid) & (spec["order"] == 2)]
        n = int(row["N_ALONGDISP"])
        w, f, e = row["WAVELENGTH"][:n], row["FLUX"][:n], row["FLUX_ERROR"][:n]
        xg = np.interp(w, mine["wavelength"], mine["x_grism"])
        inside = np.isfinite(f) & (e > 0) & (xg > 5) & (xg < 634)
        if inside.sum() < 100:
            continue
        expected = np.interp(w[inside], mine["wavelength"], mine["flux"])
        assert np.median(f[inside] / e[inside]) > 5, sid
        assert abs(np.median(f[inside] / expected) - 1) < 0.05, (sid, np.median(f[inside] / expected))
        checked += 1
    assert checked >= 1
