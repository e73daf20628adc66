"""MIRI MRS simulated (refs/sim/mrs.py) and calibrated by jwst 3.0 and by webbflow, products compared whole.

One small simulation: MIRIFUSHORT, band SHORT (channels 1 and 2), two points of the MRS 4-point
point-source dither (the simulator's default is four; two keep the CI budget), 4 groups, with its
references, CRDS cache and the associations jwst's rules make.  jwst runs as its users run it, from
the associations' folder with CRDS_PATH on the simulation: ``calwebb_detector1`` on each uncal,
``calwebb_spec2`` on each exposure's association, ``calwebb_spec3`` on the target's.  The one
override, on both sides, is ``--steps.extract_1d.ifu_rfcorr=false``: jwst's 1-D residual fringe
fit of single-band cubes is not in webbflow yet (another piece of work writes it).

webbflow runs (a) detector1 on the uncal files, (b) spec2 on jwst's rates, (c) spec3 on jwst's
cals; every product jwst writes is written by webbflow under the same name and compared whole
(tests/test_products_whole.py: HDUs, keywords, arrays within rtol 1e-4 for 99.9 %, DQ, tables;
cubes also with their WCS evaluated).  (d) the point source's spectrum extracted from the spec3
cubes matches the simulator's truth.

The CI budget: jwst's spec2 on an MRS full frame spends most of a minute per exposure in
straylight's cross-artifact kernel alone (it convolves every row of the frame whatever its
signal), so the whole chain (b)-(d) does not fit CI's share.  In CI this file runs the simulation,
its associations against jwst's asn_generate, the references CRDS selects, and (a) on the first
exposure; ``WEBBFLOW_MRS_FULL=1`` runs the rest (jwst detector1, spec2 and spec3 on both
exposures, then webbflow's spec2 and spec3 and the truth).
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

pytestmark = pytest.mark.real  # the simulator reads the real MRS references in ../shared/data

SIM = dict(instrument="miri", exp_type="MIR_MRS", detector="MIRIFUSHORT", band="SHORT", nexp=2, ngroups=4, seed=7)
RFCORR_OFF = "--steps.extract_1d.ifu_rfcorr=false"  # no 1-D residual fringe in webbflow yet: off on both sides
PRODUCT = "jw01234-o001_t001_miri"
FULL = os.environ.get("WEBBFLOW_MRS_FULL") == "1"
FULL_ONLY = "jwst's spec2/spec3 on MRS full frames exceed CI's budget: WEBBFLOW_MRS_FULL=1 runs them"


@pytest.fixture(scope="session")
def mrs(tmp_path_factory):
    from webbflow.refs.simulator import simulate

    root = tmp_path_factory.mktemp("mrs_sim")
    sim = simulate(root / "sim", **SIM)
    from webbflow.refs.sim.mrs import ref_files

    return SimpleNamespace(sim=sim, root=root, cache=sim.crds_path, context=sim.context,
                           sim_refs=ref_files(SIM["detector"], SIM["band"]))


def _copy(files, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy2(f, folder / Path(f).name)
    return folder


def _asns(sim):
    return [*sim.asn_level2, sim.asn_level3]


@pytest.fixture(scope="session")
def detector1_pair(mrs):
    """jwst's and webbflow's detector1 on the first exposure (CI): (jwst folder, webbflow folder)."""
    from jwst.stpipe import Step

    u = mrs.sim.uncal[0]
    jw = _copy([u], mrs.root / "jwst_detector1")

    def run():
        cwd = os.getcwd()
        os.chdir(jw)
        try:
            Step.from_cmdline(["calwebb_detector1", u.name])
        finally:
            os.chdir(cwd)

    _quiet(run, mrs.cache, mrs.context)
    ours = _webbflow(mrs, _copy([u], mrs.root / "ours_detector1"), [("calwebb_detector1", u.name)])
    return jw, ours


@pytest.fixture(scope="session")
def jwst_mrs(mrs):
    """jwst from the associations' folder: detector1 on each uncal, spec2 on each exposure, spec3."""
    from jwst.stpipe import Step

    if not FULL:
        pytest.skip(FULL_ONLY)
    sim = mrs.sim
    d = _copy([*sim.uncal, *_asns(sim)], mrs.root / "jwst")

    def run():
        cwd = os.getcwd()
        os.chdir(d)
        try:
            for u in sim.uncal:
                Step.from_cmdline(["calwebb_detector1", u.name])
            for a in sim.asn_level2:
                Step.from_cmdline(["calwebb_spec2", Path(a).name, RFCORR_OFF])
            Step.from_cmdline(["calwebb_spec3", Path(sim.asn_level3).name, RFCORR_OFF])
        finally:
            os.chdir(cwd)

    _quiet(run, mrs.cache, mrs.context)
    return d


def _webbflow(mrs, folder: Path, calls):
    from webbflow.flows.cli import main

    def run():
        for argv in calls:
            rc = main(["run", *argv[:1], str(folder / argv[1]), "--output-dir", str(folder), *argv[2:]])
            assert rc == 0, argv

    _quiet(run, mrs.cache, mrs.context)
    return folder


@pytest.fixture(scope="session")
def ours_mrs(mrs, jwst_mrs):
    """webbflow: detector1 on the uncal files; spec2 on jwst's rates; spec3 on jwst's cals."""
    sim = mrs.sim
    d1 = _copy(sim.uncal, mrs.root / "ours_detector1_all")
    _webbflow(mrs, d1, [("calwebb_detector1", u.name) for u in sim.uncal])
    rates = [jwst_mrs / u.name.replace("_uncal", "_rate") for u in sim.uncal]
    s2 = _copy([*rates, *sim.asn_level2], mrs.root / "ours_spec2")
    _webbflow(mrs, s2, [("calwebb_spec2", Path(a).name, RFCORR_OFF) for a in sim.asn_level2])
    cals = [jwst_mrs / u.name.replace("_uncal", "_cal") for u in sim.uncal]
    s3 = _copy([*cals, sim.asn_level3], mrs.root / "ours_spec3")
    _webbflow(mrs, s3, [("calwebb_spec3", Path(sim.asn_level3).name, RFCORR_OFF)])
    return SimpleNamespace(d1=d1, s2=s2, s3=s3)


def _names(folder: Path, suffixes) -> set[str]:
    return {p.name for p in folder.iterdir() if p.name.endswith(tuple(suffixes))}


# ---------------------------------------------------------------------------
# the simulation


def test_mrs_simulation_is_a_dithered_mrs_observation_with_jwsts_associations(mrs):
    from astropy.io import fits

    sim = mrs.sim
    assert len(sim.uncal) == 2
    offsets = []
    for k, u in enumerate(sim.uncal):
        with fits.open(u) as h:
            p = h[0].header
            assert (p["EXP_TYPE"], p["DETECTOR"], p["CHANNEL"], p["BAND"], p["SUBARRAY"]) == (
                "MIR_MRS", "MIRIFUSHORT", "12", "SHORT", "FULL")
            assert (p["PATTTYPE"], p["DITHOPFR"], p["PATT_NUM"]) == ("4-POINT", "POINT-SOURCE", k + 1)
            assert p["APERNAME"] == "MIRIFU_CHANNEL1A"
            assert h["SCI"].data.shape == (1, 4, 1024, 1032) and h["SCI"].data.dtype.kind == "u"
            offsets.append((p["XOFFSET"], p["YOFFSET"]))
    # the pattern's first two points are some 2" apart
    assert np.hypot(*np.subtract(*offsets)) > 1.5
    a2 = [json.loads(Path(a).read_text()) for a in sim.asn_level2]
    assert len(a2) == 2 and all(a["asn_type"] == "spec2" for a in a2)
    a3 = json.loads(Path(sim.asn_level3).read_text())
    assert (a3["asn_type"], a3["asn_rule"]) == ("spec3", "candidate_Asn_Lv3MIRMRS")
    (product,) = a3["products"]
    assert product["name"] == PRODUCT and len(product["members"]) == 2
    # truth: the point source's spectrum over channels 1 and 2 of SHORT
    from astropy.table import Table

    truth = Table.read(sim.catalog)
    assert truth["wavelength"].unit == "um" and truth["flux"].unit == "Jy"
    assert truth["wavelength"].min() < 4.9 and truth["wavelength"].max() > 8.8 and np.all(truth["flux"] > 0)


@pytest.mark.parity
def test_the_associations_are_those_jwsts_rules_make_from_the_pool(mrs):
    from jwst.associations import AssociationPool
    from jwst.associations.main import Main
    from parity import quiet_jwst

    def strip(asn):
        return {k: v for k, v in asn.items() if k not in ("constraints", "code_version")}

    (pool,) = mrs.sim.output_dir.glob("*_pool.csv")
    with quiet_jwst():
        gen = Main.cli(["--dry-run", "--version-id", "20240115t030000"], pool=AssociationPool.read(str(pool)))
    theirs = {a.asn_name + ".json": strip(json.loads(a.dump(format="json")[1])) for a in gen.associations}
    ours = {Path(p).name: strip(json.loads(Path(p).read_text())) for p in _asns(mrs.sim)}
    assert ours == theirs


MRS_REFTYPES = ("distortion", "specwcs", "regions", "wavelengthrange", "flat", "fringe", "photom", "mrsxartcorr",
                "cubepar", "extract1d", "apcorr", "mrsptcorr")
DETECTOR_REFTYPES = ("mask", "saturation", "linearity", "dark", "gain", "readnoise", "reset", "rscd", "emicorr")


@pytest.mark.parity
def test_crds_selects_every_mrs_reference_from_the_cache(mrs):
    """CRDS (the cache's own rules) selects, for the simulated MIR_MRS exposure, a file of the cache for
    every reference type jwst's detector1, spec2 and spec3 read for the MRS, and N/A for the pixel
    area; stdatamodels opens each as jwst's MRS model."""
    from parity import jwst_offline
    from stdatamodels.jwst import datamodels as dm

    from webbflow.refs.select import bestrefs

    with jwst_offline(mrs.cache, mrs.context):
        best = bestrefs(mrs.sim.uncal[0], reftypes=[*MRS_REFTYPES, *DETECTOR_REFTYPES, "area"])
    chosen = best.choices
    assert chosen["area"].kind == "n/a"
    refs = mrs.cache / "references" / "jwst" / "miri"
    names = {}
    for rt in (*MRS_REFTYPES, *DETECTOR_REFTYPES):
        assert chosen[rt].kind == "file", rt
        names[rt] = Path(chosen[rt].value).name
        assert (refs / names[rt]).exists(), rt
    kinds = {"flat": "FlatModel", "fringe": "FringeModel", "photom": "MirMrsPhotomModel",
             "mrsxartcorr": "MirMrsXArtCorrModel", "cubepar": "MiriIFUCubeParsModel", "mrsptcorr": "MirMrsPtCorrModel",
             "regions": "RegionsModel", "extract1d": "Extract1dIFUModel", "apcorr": "MirMrsApcorrModel",
             "mask": "MaskModel", "saturation": "SaturationModel", "dark": "DarkMIRIModel", "reset": "ResetModel"}
    for rt, cls in kinds.items():
        with dm.open(refs / names[rt]) as m:
            assert type(m).__name__ == cls, (rt, type(m).__name__)
            if rt in ("flat", "fringe", "photom", "regions"):
                assert (m.meta.instrument.detector, m.meta.instrument.band) == ("MIRIFUSHORT", "SHORT"), rt
    # the geometry is the real in-flight set of the band
    assert (refs / names["distortion"]).read_bytes() == (mrs.sim_refs["distortion"]).read_bytes()


# ---------------------------------------------------------------------------
# parity


@pytest.mark.parity
def test_detector1_rate_matches_jwst(detector1_pair):
    jw, ours = detector1_pair
    names = _names(jw, ("_rate.fits", "_rateints.fits"))
    assert len(names) == 2
    problems = compare_products(ours, jw, names, suffixes=("_rate.fits", "_rateints.fits"))
    assert not problems, "\n".join(["products differ from jwst's:"] + problems)


@pytest.mark.parity
def test_detector1_rates_of_every_exposure_match_jwst(ours_mrs, jwst_mrs):
    names = _names(jwst_mrs, ("_rate.fits", "_rateints.fits"))
    assert len(names) == 4
    problems = compare_products(ours_mrs.d1, jwst_mrs, names, suffixes=("_rate.fits", "_rateints.fits"))
    assert not problems, "\n".join(["products differ from jwst's:"] + problems)


@pytest.mark.parity
def test_spec2_on_jwsts_rates_matches_jwst(ours_mrs, jwst_mrs):
    sfx = ("_cal.fits", "_s3d.fits", "_x1d.fits")
    names = {n for n in _names(jwst_mrs, sfx) if n.startswith("jw01234001")}
    # per exposure: the cal, the first cube (channel 1) and extract_1d on each cube (<root>_0_x1d, <root>_1_x1d)
    assert {n.rsplit("_", 1)[-1] for n in names} == {"cal.fits", "s3d.fits", "x1d.fits"} and len(names) == 8
    problems = compare_products(ours_mrs.s2, jwst_mrs, names, suffixes=sfx)
    assert not problems, "\n".join(["products differ from jwst's:"] + problems)


@pytest.mark.parity
def test_spec3_on_jwsts_cals_matches_jwst(ours_mrs, jwst_mrs):
    """crf per exposure, one cube and one spectrum per channel (band SHORT), whole; cubes within rtol
    1e-4 for >= 99.9 % of spaxels (compare_products) and their WCS identical."""
    import warnings

    from stdatamodels.jwst import datamodels as dm

    sfx = ("_crf.fits", "_s3d.fits", "_x1d.fits")
    names = {n for n in _names(jwst_mrs, sfx) if n.startswith(PRODUCT) or n.endswith("_crf.fits")}
    assert sorted(n for n in names if n.startswith(PRODUCT)) == [
        f"{PRODUCT}_ch1-short_s3d.fits", f"{PRODUCT}_ch1-short_x1d.fits",
        f"{PRODUCT}_ch2-short_s3d.fits", f"{PRODUCT}_ch2-short_x1d.fits"]
    problems = compare_products(ours_mrs.s3, jwst_mrs, names, suffixes=sfx)
    assert not problems, "\n".join(["products differ from jwst's:"] + problems)
    for c in ("ch1-short", "ch2-short"):
        name = f"{PRODUCT}_{c}_s3d.fits"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mo, mt = dm.open(ours_mrs.s3 / name), dm.open(jwst_mrs / name)
        nz, ny, nx = mt.data.shape
        z, y, x = np.mgrid[0:nz:97, 0:ny:5, 0:nx:5]
        for u, v in zip(mo.meta.wcs(x, y, z), mt.meta.wcs(x, y, z)):
            assert np.array_equal(u, v), name


# ---------------------------------------------------------------------------
# against the truth


@pytest.mark.parity
def test_point_source_spectrum_matches_the_truth(mrs, ours_mrs):
    """The channel 1 and 2 spectra from spec3's cubes (aperture photometry with the background
    annulus and the apcorr) are the simulated F_nu within 2 %, with S/N >> 5."""
    from astropy.io import fits
    from astropy.table import Table

    truth = Table.read(mrs.sim.catalog)
    for c in ("ch1-short", "ch2-short"):
        with fits.open(ours_mrs.s3 / f"{PRODUCT}_{c}_x1d.fits") as h:
            t = h["EXTRACT1D"].data
            wave, flux, err = (np.asarray(t[k], float) for k in ("WAVELENGTH", "FLUX", "FLUX_ERROR"))
        expected = np.interp(wave, truth["wavelength"], truth["flux"])
        ok = np.isfinite(flux) & np.isfinite(err) & (err > 0)
        # the band's ends, where the dithers do not overlap and the slices thin out, are left out
        lo, hi = np.percentile(wave[ok], [3, 97])
        ok &= (wave > lo) & (wave < hi)
        assert ok.sum() > 500
        ratio = flux[ok] / expected[ok]
        snr = flux[ok] / err[ok]
        print(f"{c}: median flux/truth {np.median(ratio):.4f}, 5-95 % {np.percentile(ratio, 5):.4f} - "
              f"{np.percentile(ratio, 95):.4f}, median S/N {np.median(snr):.0f}")
        assert np.median(snr) > 20
        # measured: median 0.996-0.997 (channel 1) and 1.001-1.003 (channel 2), 90 % within 1.5 % of it
        assert np.median(ratio) == pytest.approx(1.0, abs=0.02)
        assert np.percentile(np.abs(ratio - np.median(ratio)), 90) < 0.03


@pytest.mark.parametrize("argv, message", [
    (["--detector", "MIRIMAGE"], "MIRIFUSHORT or MIRIFULONG"),
    (["--band", "WIDE"], "SHORT, MEDIUM and LONG"),
    (["--subarray", "SUB256"], "no subarrays"),
    (["--filter", "F770W"], "has no filter"),
    (["--slit", "S200A1"], "--slit is for NIRSpec fixed slits"),
])
def test_bad_mrs_simulation_options_fail_in_one_line(tmp_path, capsys, argv, message):
    from webbflow.flows.cli import main

    out = tmp_path / "sim"
    rc = main(["simulate", "--instrument", "miri", "--exp-type", "MIR_MRS", "--output-dir", str(out), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and message in err[0] and "Traceback" not in err[0]
    assert not out.exists()
