"""MIRI coronagraphy (refs/sim/coron_miri.py) simulated, calibrated by jwst 3.0 and by webbflow, products compared whole.

One small simulation for the session: ``webbflow simulate --instrument miri --exp-type MIR_4QPM
--filter F1065C`` (the MASK1065 subarray, 288 x 224, 3 groups, 2 integrations), a science exposure
with a companion and one PSF-reference exposure, with its references, psfmask, CRDS cache and the
associations jwst's rules make.  jwst runs once, as its users run it: from the associations' folder
with CRDS_PATH set and no override, ``strun calwebb_detector1`` on each uncal, ``calwebb_image2``
on each image2 association, ``calwebb_coron3``.  webbflow runs image2 on jwst's rateints and
coron3 on jwst's calints; every product is compared whole (tests/test_products_whole.py: HDUs,
keywords, arrays within rtol 1e-4 for 99.9 %, DQ equal).  Against the truth: the companion is in
the psfsub where it was put, with most of its flux.

Measured when this was written (load average 12-15 on the shared 2-core VM; the file took 47 s
of CPU): every array of the calints, crfints, psfstack, psfalign, psfsub and i2d agreed with
jwst's for 100 % of the pixels (max relative difference 0), DQ equal; the companion's flux within
5 pixels of its position in the integration-averaged psfsub was 0.87 of its simulated flux, and
what is left within 10 pixels of the star 0.11 of the calints' light there.  By hand, outside
this file: MIR_LYOT F2300C (two PSF references) compared the same way, identical too (companion
0.54 of its flux within 5 pixels, the F2300C PSF being wider).  ``webbflow run calwebb_coron3``
from the uncal files alone (detector1, image2, coron3) must write all of jwst's products (rate,
rateints, calints, crfints, psfstack, psfalign, psfsub, i2d: 12 for F1065C, 16 for F2300C), whole.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from simrun import simulate_into
from simrun import strun as _strun
from simrun import webbflow_runs as _webbflow
from test_products_whole import _quiet, _report, compare_products

SIM = dict(instrument="miri", exp_type="MIR_4QPM", filter="F1065C", ngroups=3, nints=2, nexp=1, seed=5)
CORON3_SUFFIXES = ("_crfints.fits", "_psfstack.fits", "_psfalign.fits", "_psfsub.fits", "_i2d.fits")


def _copy(files, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy2(f, folder / Path(f).name)
    return folder


def _names(folder: Path, suffixes) -> set[str]:
    return {p.name for p in folder.iterdir() if p.name.endswith(tuple(suffixes))}


@pytest.fixture(scope="session")
def miri_coron(tmp_path_factory):
    return simulate_into(tmp_path_factory, "miri_coron", SIM)


@pytest.fixture(scope="session")
def miri_coron_runs(miri_coron):
    sim = miri_coron.sim
    lv2 = [Path(a).name for a in sim.asn_level2]
    lv3 = Path(sim.asn_level3).name
    jw = _copy(list(sim.uncal) + list(sim.asn_level2) + [sim.asn_level3], miri_coron.root / "jwst")
    calls = ([("calwebb_detector1", u.name) for u in sim.uncal] + [("calwebb_image2", a) for a in lv2]
             + [("calwebb_coron3", lv3)])
    _quiet(lambda: _strun(jw, calls), miri_coron.cache, miri_coron.context)
    # webbflow: image2 on jwst's rateints, coron3 on jwst's calints
    im2 = _copy(list(jw.glob("*_rateints.fits")) + list(sim.asn_level2), miri_coron.root / "ours_image2")
    c3 = _copy(list(jw.glob("*_calints.fits")) + [sim.asn_level3], miri_coron.root / "ours_coron3")
    _quiet(lambda: (_webbflow(im2, [("calwebb_image2", a) for a in lv2]), _webbflow(c3, [("calwebb_coron3", lv3)])),
           miri_coron.cache, miri_coron.context)
    return SimpleNamespace(jwst=jw, image2=im2, coron3=c3)


# ---------------------------------------------------------------------------
# the simulation


def test_simulation_is_on_the_coronagraphs_siaf_subarray_with_jwsts_associations(miri_coron):
    import json

    import pysiaf
    from astropy.io import fits

    sim = miri_coron.sim
    aper = pysiaf.Siaf("MIRI")["MIRIM_MASK1065"]
    assert len(sim.uncal) == 2
    flags = []
    for path in sim.uncal:
        h = fits.getheader(path)
        assert (h["EXP_TYPE"], h["FILTER"], h["CORONMSK"], h["SUBARRAY"], h["APERNAME"], h["DETECTOR"]) == (
            "MIR_4QPM", "F1065C", "4QPM_1065", "MASK1065", "MIRIM_MASK1065", "MIRIMAGE")
        assert (h["SUBSIZE1"], h["SUBSIZE2"]) == (aper.XSciSize, aper.YSciSize) == (288, 224)
        # the subarray's corner in the full frame, from SIAF: detector = science + (SUBSTRT - 1)
        assert h["SUBSTRT1"] - 1 == pytest.approx(aper.XDetRef - aper.XSciRef, abs=0.5)
        assert h["SUBSTRT2"] - 1 == pytest.approx(aper.YDetRef - aper.YSciRef, abs=0.5)
        assert (h["NINTS"], h["NGROUPS"]) == (2, 3)
        assert fits.getdata(path, "SCI").shape == (2, 3, 224, 288)
        flags.append(h["IS_PSF"])
    assert flags == [False, True]
    assert len(sim.asn_level2) == 2
    asn = json.loads(sim.asn_level3.read_text())
    assert asn["asn_type"] == "coron3" and asn["products"][0]["name"].endswith("_miri_f1065c-mask1065")
    members = asn["products"][0]["members"]
    assert [m["exptype"] for m in members] == ["science", "psf"]
    assert [m["expname"] for m in members] == [p.name.replace("_uncal", "_calints") for p in sim.uncal]


def test_simulation_selects_its_psfmask_and_shows_the_companion(miri_coron, crds_env):
    from astropy.table import Table

    from webbflow import models
    from webbflow.refs import get_reference_paths, open_reference

    sim = miri_coron.sim
    crds_env(sim.crds_path)
    sci = models.open(sim.uncal[0])
    mask = open_reference("psfmask", get_reference_paths(sci, ["psfmask"])["psfmask"])
    assert mask.data.shape == (224, 288) and mask.meta.instrument.coronagraph == "4QPM_1065"
    truth = Table.read(sim.output_dir / "truth" / "companion.ecsv")
    x, y = float(truth["x"][0]), float(truth["y"][0])
    sx, sy = truth.meta["star_x"], truth.meta["star_y"]
    assert mask.data[int(round(y)), int(round(x))] == 1.0  # the companion is in a clear quadrant
    assert mask.data[int(round(sy)), int(round(sx))] == 0.0  # the star sits where the quadrants meet
    assert mask.data[int(round(sy)) + 30, int(round(sx))] == 0.0  # along a transition line
    assert mask.data[2, 2] == 0.0  # outside the coronagraph's field
    ramp = sci.data[0].astype(float)
    diff = ramp[-1] - ramp[0]
    cut = diff[int(y) - 3: int(y) + 4, int(x) - 3: int(x) + 4]
    dy, dx = np.unravel_index(np.argmax(cut), cut.shape)
    assert abs(dx - 3) <= 1 and abs(dy - 3) <= 1
    assert cut.max() > 20 * np.std(diff[150:200, 20:60])


def test_lyot_and_filters_are_checked():
    from webbflow.errors import ParameterError
    from webbflow.refs.sim.coron_miri import coron_miri_setup, psfmask_data

    setup, mask = coron_miri_setup("MIR_LYOT", None, None, None, None)
    assert (setup.subarray, setup.filter, mask, setup.xsize, setup.ysize) == ("MASKLYOT", "F2300C", "LYOT_2300", 320, 304)
    m = psfmask_data(setup, setup.xref_sci - 1, setup.yref_sci - 1)
    cy, cx = int(round(setup.yref_sci - 1)), int(round(setup.xref_sci - 1))
    assert m[cy, cx] == 0 and m[cy, cx + 15] == 0 and m[cy, cx + 30] == 1  # the 2.16" spot, then clear
    assert m[cy + 60, cx] == 0  # the spot's support bar
    for et, filt in (("MIR_LYOT", "F1065C"), ("MIR_4QPM", "F2300C"), ("MIR_4QPM", "F770W")):
        with pytest.raises(ParameterError, match=filt):
            coron_miri_setup(et, None, None, filt, None)


# ---------------------------------------------------------------------------
# parity with jwst


@pytest.mark.parity
def test_image2_calints_whole_match_jwst(miri_coron_runs):
    from astropy.io import fits

    from parity import compare_arrays

    names = _names(miri_coron_runs.jwst, ("_calints.fits",))
    assert len(names) == 2 and _names(miri_coron_runs.image2, ("_calints.fits",)) == names
    problems = [p for p in compare_products(miri_coron_runs.image2, miri_coron_runs.jwst, names, suffixes=(".fits",))
                if not p.startswith("products webbflow writes")]
    assert not problems, _report(problems)
    for name in sorted(names):
        with fits.open(miri_coron_runs.image2 / name) as a, fits.open(miri_coron_runs.jwst / name) as b:
            assert [h.name for h in a] == [h.name for h in b]
            assert a[0].header["S_PHOTOM"] == "COMPLETE" and a[0].header["S_FLAT"] == "COMPLETE"
            for ext in ("SCI", "ERR", "VAR_POISSON", "VAR_RNOISE", "VAR_FLAT"):
                ag = compare_arrays(f"{name}[{ext}]", a[ext].data, b[ext].data, rtol=1e-4)
                assert ag.fraction >= 0.999, str(ag)
            assert np.array_equal(a["DQ"].data, b["DQ"].data), name


@pytest.mark.parity
def test_coron3_products_whole_match_jwst(miri_coron_runs):
    from astropy.io import fits

    from parity import compare_arrays

    names = _names(miri_coron_runs.jwst, CORON3_SUFFIXES)
    # one crfints per member, psfstack, psfalign and psfsub for the science exposure, the i2d
    assert len(names) == 6 and _names(miri_coron_runs.coron3, CORON3_SUFFIXES) == names
    problems = [p for p in compare_products(miri_coron_runs.coron3, miri_coron_runs.jwst, names, suffixes=(".fits",))
                if not p.startswith("products webbflow writes")]
    assert not problems, _report(problems)
    for name in sorted(names):
        with fits.open(miri_coron_runs.coron3 / name) as a, fits.open(miri_coron_runs.jwst / name) as b:
            for ext in ("SCI", "ERR"):
                ag = compare_arrays(f"{name}[{ext}]", a[ext].data, b[ext].data, rtol=1e-4)
                assert ag.fraction >= 0.999, str(ag)
            if "DQ" in b:
                assert np.array_equal(a["DQ"].data, b["DQ"].data), name


def test_companion_recovered_in_the_psfsub_where_it_was_put(miri_coron, miri_coron_runs):
    from astropy.table import Table

    from webbflow import models

    truth = Table.read(miri_coron.sim.output_dir / "truth" / "companion.ecsv")
    x, y, flux = float(truth["x"][0]), float(truth["y"][0]), float(truth["flux_mjy_sr_px"][0])
    sx, sy = truth.meta["star_x"], truth.meta["star_y"]
    (sub_name,) = _names(miri_coron_runs.coron3, ("_psfsub.fits",))
    sub = models.open(miri_coron_runs.coron3 / sub_name)
    assert sub.meta.cal_step.klip == "COMPLETE" and sub.meta.cal_step.outlier_detection == "COMPLETE"
    img = np.nanmean(sub.data, axis=0)
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
    r = np.hypot(xx - x, yy - y)
    iy, ix = np.unravel_index(np.nanargmax(np.where(r < 8, img, -np.inf)), img.shape)
    assert abs(ix - x) <= 1 and abs(iy - y) <= 1, (ix, iy, x, y)
    noise = np.nanstd(img[(r > 10) & (r < 20)])
    assert img[iy, ix] > 20 * noise, (img[iy, ix], noise)
    ratio = float(np.nansum(img[r < 5]) / flux)  # most of the companion's flux survives the subtraction
    assert 0.6 < ratio < 1.2, ratio
    # the star is gone: what is left around where it sat is a small part of the light the calints show there
    cal_name = sub_name.rsplit("_", 2)[0] + "_calints.fits"  # <exposure>_<asn_id>_psfsub -> <exposure>_calints
    cal = np.nanmean(models.open(miri_coron_runs.coron3 / cal_name).data, axis=0)
    near = np.hypot(xx - sx, yy - sy) < 10  # measured: 0.11 with one PSF-reference exposure
    assert np.nansum(np.abs(img[near])) < 0.2 * np.nansum(cal[near])


def test_simulate_refuses_a_filter_the_coronagraph_does_not_have_in_one_line(tmp_path, capsys):
    from webbflow.flows.cli import main

    out = tmp_path / "lyot"
    rc = main(["simulate", "--instrument", "miri", "--exp-type", "MIR_LYOT", "--filter", "F1550C", "--output-dir", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1 and "F1550C" in err and "F2300C" in err, err
    assert "Traceback" not in err and not out.exists()


@pytest.fixture(scope="session")
def miri_coron_e2e(miri_coron, miri_coron_runs):
    """``webbflow run calwebb_coron3 ASN`` from the uncal files alone (detector1, image2, coron3)."""
    sim = miri_coron.sim
    e2e = _copy(list(sim.uncal) + list(sim.asn_level2) + [sim.asn_level3], miri_coron.root / "ours_e2e")
    _quiet(lambda: _webbflow(e2e, [("calwebb_coron3", Path(sim.asn_level3).name)]), miri_coron.cache,
           miri_coron.context)
    return e2e


@pytest.mark.parity
def test_coron3_end_to_end_from_the_uncal_files_writes_jwsts_products_whole(miri_coron_runs, miri_coron_e2e):
    """Every product jwst's strun chain wrote (rate, rateints, calints and coron3's), compared whole."""
    suffixes = ("_rate.fits", "_rateints.fits", "_calints.fits", *CORON3_SUFFIXES)
    names = _names(miri_coron_runs.jwst, suffixes)
    # two exposures: their rate, rateints, calints and crfints; the psfstack, psfalign, psfsub and i2d
    assert len(names) == 12 and {n.rsplit("_", 1)[-1] for n in names} == {s.lstrip("_") for s in suffixes}, \
        sorted(names)
    problems = compare_products(miri_coron_e2e, miri_coron_runs.jwst, names, suffixes=suffixes)
    assert not problems, _report(problems)
