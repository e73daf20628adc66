"""MIRI MRS after the cal, against jwst 3.0: spec2's cube and spectrum, extract_1d on cubes, spectral_leak.

A MIRIFULONG exposure (tests/mrs_cube_scene.py: a point source on extended emission and a line at
16.5 um, its WCS from jwst's AssignWcsStep and the real CDP references) goes through jwst's
Spec2Pipeline and webbflow's spec2 with the same references (the cal steps whose references are not
real here skipped, as the scene is already in MJy/sr): the cal, the s3d (cube_build, spec2's way:
no field-of-view DQ flagging; ``output_type=multi`` and a 0.4 um slice of channel 3 to keep it
short) and the x1d (a point source: aperture, background annulus, aperture correction, with the
synthetic MRS extract1d and apcorr references of refs/synthetic_mrs.py) are compared whole.  The
same jwst cube is then extracted as an extended source (the whole field), and as a point source
centred by ``ifu_autocen``, by jwst's Extract1dStep and by ``webbflow run extract_1d``.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import CRDS_RULES, SHARED_DATA
from mrs_cube_scene import EXPOSURE_ROOT as ROOT
from mrs_cube_scene import x1d_columns_agree

CONTEXT = "jwst_0541.pmap"
MIRI_REFS = SHARED_DATA / "real-refs" / "miri"
WAVEMIN, WAVEMAX = 16.3, 16.7


def _webbflow(*argv):
    from webbflow.flows.cli import main

    return main(["run", *[str(a) for a in argv]])


def _spec2_steps(inp: Path, refs) -> dict:
    wcs = {"override_distortion": MIRI_REFS / "jwst_miri_distortion_0027.asdf",
           "override_specwcs": MIRI_REFS / "jwst_miri_specwcs_0016.asdf", "override_regions": inp / "regions_3d.asdf",
           "override_wavelengthrange": MIRI_REFS / "jwst_miri_wavelengthrange_0003.asdf"}
    return {
        "assign_wcs": {k: str(v) for k, v in wcs.items()},
        "straylight": {"skip": True}, "flat_field": {"skip": True}, "fringe": {"skip": True}, "photom": {"skip": True},
        "cube_build": {"output_type": "multi", "wavemin": WAVEMIN, "wavemax": WAVEMAX,
                       "override_cubepar": str(refs.cubepar)},
        "extract_1d": {"override_extract1d": str(refs.extract1d), "override_apcorr": str(refs.apcorr),
                       "ifu_set_srctype": "POINT"},
    }


@pytest.fixture(scope="module")
def mrs(tmp_path_factory):
    """One exposure through jwst's Spec2Pipeline and webbflow's spec2, and both programs'
    extended-source x1d of jwst's cube."""
    if not MIRI_REFS.exists():
        pytest.skip("../shared/data/real-refs/miri is not here")
    pytest.importorskip("jwst")
    import mrs_cube_scene as scene
    from jwst.extract_1d import Extract1dStep
    from parity import jwst_offline, quiet_jwst

    run2 = scene.spec2_both(tmp_path_factory.mktemp("mrs_extract"), _spec2_steps)
    root, inp, jw, ours, refs = run2.inp.parent, run2.inp, run2.jwst, run2.ours, run2.refs
    cube = jw / f"{ROOT}_s3d.fits"
    ext = SimpleNamespace(jwst=root / "jwst_ext", ours=root / "ours_ext")
    auto = SimpleNamespace(jwst=root / "jwst_auto", ours=root / "ours_auto")
    with jwst_offline(CRDS_RULES, CONTEXT), quiet_jwst():
        for run, kw, argv in ((ext, {"ifu_set_srctype": "EXTENDED"}, ["--ifu_set_srctype", "EXTENDED"]),
                              (auto, {"ifu_set_srctype": "POINT", "ifu_autocen": True},
                               ["--ifu_set_srctype", "POINT", "--ifu_autocen", "true"])):
            Extract1dStep.call(str(cube), override_extract1d=str(refs.extract1d), override_apcorr=str(refs.apcorr),
                               save_results=True, output_dir=str(run.jwst), **kw)
            rc = _webbflow("extract_1d", cube, "--override_extract1d", refs.extract1d, "--override_apcorr",
                           refs.apcorr, *argv, "--output-dir", run.ours)
            assert rc == 0
    return SimpleNamespace(root=root, inp=inp, jwst=jw, ours=ours, cube=cube, ext=ext, auto=auto, refs=refs,
                           scene=scene)


def _arrays_agree(ours: Path, theirs: Path, names) -> dict:
    from astropy.io import fits

    out = {}
    with fits.open(ours) as a, fits.open(theirs) as b:
        for ext in names:
            x, y = a[ext].data.astype(float), b[ext].data.astype(float)
            assert x.shape == y.shape, ext
            out[ext] = float((np.isclose(x, y, rtol=1e-4, atol=0) | (np.isnan(x) & np.isnan(y))).mean())
    return out


def _compare_whole(ours: Path, theirs: Path) -> list[str]:
    from test_products_whole import compare_fits

    problems: list[str] = []
    compare_fits(ours.name, ours, theirs, problems)
    return problems


@pytest.mark.parity
@pytest.mark.real
def test_spec2_mrs_writes_jwsts_cal_s3d_and_x1d(mrs):
    names = [f"{ROOT}_cal.fits", f"{ROOT}_s3d.fits", f"{ROOT}_x1d.fits"]
    assert sorted(p.name for p in mrs.ours.glob("*.fits")) == sorted(names)
    assert sorted(p.name for p in mrs.jwst.glob("*.fits")) == sorted(names)
    cal = _arrays_agree(mrs.ours / names[0], mrs.jwst / names[0], ("SCI", "ERR", "DQ", "VAR_POISSON"))
    s3d = _arrays_agree(mrs.ours / names[1], mrs.jwst / names[1], ("SCI", "ERR", "DQ", "WMAP"))
    x1d = x1d_columns_agree(mrs.ours / names[2], mrs.jwst / names[2])
    print("cal", cal, "s3d", s3d, "x1d", {k: round(v, 5) for k, v in x1d.items()})
    assert min(cal.values()) == 1.0 and min(s3d.values()) >= 0.999, (cal, s3d)
    assert min(x1d.values()) >= 0.999, x1d
    for n in names:
        assert _compare_whole(mrs.ours / n, mrs.jwst / n) == [], n


@pytest.mark.parity
@pytest.mark.real
@pytest.mark.parametrize("kind", ["ext", "auto"])
def test_extended_and_autocentred_spectra_match_jwst(mrs, kind):
    """The whole field (extended source), and a point source centred where DAOStarFinder finds it."""
    run = getattr(mrs, kind)
    name = f"{ROOT}_extract1dstep.fits"
    assert [p.name for p in run.ours.iterdir()] == [name]
    agree = x1d_columns_agree(run.ours / name, run.jwst / name)
    print(kind, {k: round(v, 5) for k, v in agree.items()})
    assert min(agree.values()) >= 0.999, agree
    assert _compare_whole(run.ours / name, run.jwst / name) == []


@pytest.mark.parity
@pytest.mark.real
def test_spectra_show_the_scene(mrs):
    """The point source's spectrum shows the 16.5 um line and follows the scene's continuum; the
    extended extraction is the mean surface brightness of each plane's spaxels with data."""
    from webbflow import models

    x1d = models.open(mrs.ours / f"{ROOT}_x1d.fits")
    assert type(x1d).__name__ == "MRSMultiSpecModel"
    spec = x1d.spec[0]
    assert spec.meta["source_type"] == "POINT" and spec.meta["name"] == "MIR_MRS"
    t = spec.spec_table
    lam = t["WAVELENGTH"]
    assert WAVEMIN - 0.01 <= lam.min() and lam.max() <= WAVEMAX + 0.01
    good = (t["DQ"] == 0) & np.isfinite(t["FLUX"])
    assert good.mean() > 0.9
    line = good & (np.abs(lam - 16.5) < 0.01)
    cont = good & (np.abs(lam - 16.5) > 0.05)
    assert line.any() and np.max(t["FLUX"][line]) > 1.2 * np.median(t["FLUX"][cont])
    assert np.all(t["NPIXELS"][good] > 10) and np.all(t["BACKGROUND"][good] > 0)
    assert np.all(np.isnan(t["RF_FLUX"]))  # a multi-channel cube: no residual fringe fit

    ext = models.open(mrs.ext.ours / f"{ROOT}_extract1dstep.fits").spec[0].spec_table
    cube = models.open(mrs.cube)
    np.testing.assert_allclose(ext["SURF_BRIGHT"], np.nanmean(cube.data, axis=(1, 2)), rtol=1e-5)


@pytest.mark.parity
@pytest.mark.real
def test_single_band_cube_gets_residual_fringe_columns(mrs, tmp_path):
    """jwst fits residual fringes on single-band MRS cubes by default; so does webbflow (compared
    with jwst in tests/test_mrs_rfcorr.py): this scene has no fringes, so RF_* stay near the plain
    columns (within 1 % typically: the fit takes some noise for fringes), and they are filled, not
    NaN as for the multi-channel cube."""
    from webbflow import models

    cube = models.open(mrs.cube)
    cube.meta.instrument.channel = "3"  # a single-band cube
    band = tmp_path / "in" / "one_band_s3d.fits"
    band.parent.mkdir()
    cube.save(band)
    out = tmp_path / "out"
    rc = _webbflow("extract_1d", band, "--override_extract1d", mrs.refs.extract1d, "--override_apcorr",
                   mrs.refs.apcorr, "--output-dir", out)
    assert rc == 0
    t = models.open(out / "one_band_extract1dstep.fits").spec[0].spec_table
    good = np.isfinite(t["FLUX"]) & (t["FLUX"] > 0)
    assert good.mean() > 0.9 and np.isfinite(t["RF_FLUX"][good]).all()
    for rf, plain in (("RF_FLUX", "FLUX"), ("RF_SURF_BRIGHT", "SURF_BRIGHT")):
        rel = np.abs(t[rf][good] / t[plain][good] - 1)
        assert np.median(rel) < 0.02 and rel.max() < 0.15, (rf, np.median(rel), rel.max())


# ---------------------------------------------------------------------------
# spectral_leak

def _mrs_x1d(path: Path, channel: str, band: str, wave, flux, rf_flux, source_type="POINT"):
    """An MRS x1d as jwst's extract_1d writes it (stdatamodels, test-only)."""
    from stdatamodels.jwst import datamodels as dm

    m = dm.MRSMultiSpecModel()
    m.meta.instrument.name = "MIRI"
    m.meta.instrument.detector = "MIRIFULONG" if channel in "34" else "MIRIFUSHORT"
    m.meta.instrument.channel = channel
    m.meta.instrument.band = band
    m.meta.exposure.type = "MIR_MRS"
    m.meta.observation.date = "2022-08-20"
    m.meta.observation.time = "10:00:00.000"
    m.meta.telescope = "JWST"
    tab = np.zeros(wave.size, dtype=dm.MRSSpecModel().get_dtype("spec_table"))
    tab["WAVELENGTH"], tab["FLUX"], tab["RF_FLUX"] = wave, flux, rf_flux
    spec = dm.MRSSpecModel(spec_table=tab)
    spec.source_type = source_type
    spec.name = "MIR_MRS"
    m.spec.append(spec)
    m.meta.filename = path.name
    m.save(path)
    return path


@pytest.mark.parity
def test_spectral_leak_matches_jwst(tmp_path):
    pytest.importorskip("jwst")
    from jwst.datamodels import ModelContainer
    from jwst.spectral_leak import SpectralLeakStep
    from parity import jwst_offline, quiet_jwst
    from stdatamodels.jwst import datamodels as dm

    from webbflow import models
    from webbflow.refs import synthetic_mrs as syn
    import webbflow.tasks.spectral_leak  # noqa: F401  (registers the step)
    from webbflow.tasks.base import run_step

    ref = tmp_path / "jwst_miri_mrsptcorr_test.fits"
    syn.mrsptcorr().save(ref)
    w1b = np.linspace(5.66, 6.63, 900)
    w3a = np.linspace(11.55, 13.47, 700)
    files = [
        _mrs_x1d(tmp_path / "a_ch1-medium_x1d.fits", "1", "MEDIUM", w1b, 2.0 + 0.1 * w1b, 2.1 + 0.1 * w1b),
        _mrs_x1d(tmp_path / "a_ch3-short_x1d.fits", "3", "SHORT", w3a, 0.5 + 0.01 * w3a, 0.4 + 0.01 * w3a),
        _mrs_x1d(tmp_path / "a_ch4-long_x1d.fits", "4", "LONG", np.linspace(24.2, 27.9, 50), np.ones(50), np.ones(50)),
    ]
    with jwst_offline(CRDS_RULES, CONTEXT), quiet_jwst():
        theirs = SpectralLeakStep.call(ModelContainer([dm.open(f) for f in files]), override_mrsptcorr=str(ref))
    res = run_step("spectral_leak", [models.open(f) for f in files], {"override_mrsptcorr": str(ref)})
    ours = res.model
    before = models.open(files[1]).spec[0].spec_table
    after = ours[1].spec[0].spec_table
    # the leak is there (up to 0.8 % of channel 1B at half the wavelength) and taken off
    assert np.max(before["FLUX"] - after["FLUX"]) > 0.005 * 2.6
    for o, t in zip(ours, theirs):
        np.testing.assert_allclose(o.spec[0].spec_table["FLUX"], t.spec[0].spec_table["FLUX"], rtol=1e-12)
        np.testing.assert_allclose(o.spec[0].spec_table["RF_FLUX"], t.spec[0].spec_table["RF_FLUX"], rtol=1e-12)
        assert o.meta.cal_step.spectral_leak == t.meta.cal_step.spectral_leak
    assert [o.meta.cal_step.spectral_leak for o in ours] == [None, "COMPLETE", None]
    assert ours[1].meta.ref_file.mrsptcorr.name == "crds://" + ref.name
    # an extended source is not corrected: every spectrum is marked SKIPPED
    ext = [models.open(f) for f in files]
    ext[0].spec[0].meta["source_type"] = "EXTENDED"
    res = run_step("spectral_leak", ext, {"override_mrsptcorr": str(ref)})
    assert [o.meta.cal_step.spectral_leak for o in res.model] == ["SKIPPED"] * 3
    np.testing.assert_array_equal(res.model[1].spec[0].spec_table["FLUX"], before["FLUX"])
