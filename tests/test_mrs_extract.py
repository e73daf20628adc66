"""extract_1d on MIRI MRS cubes and spectral_leak, against jwst 3.0.

A MIRIFULONG cal exposure (tests/mrs_cube_scene.py: a point source on extended emission, its WCS
from jwst's AssignWcsStep and the real CDP references) is built into a channel 4 LONG cube by
jwst's CubeBuildStep (a 0.9 um slice of the band, to keep the test short).  jwst's Extract1dStep
and ``webbflow run extract_1d`` extract it, as a point source (aperture and background annulus,
aperture correction) and as an extended source (the whole field), with the synthetic MRS
extract1d and apcorr references of refs/synthetic_mrs.py; the x1d products are compared whole.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import CRDS_RULES, SHARED_DATA

CONTEXT = "jwst_0541.pmap"
MIRI_REFS = SHARED_DATA / "real-refs" / "miri"
CUBE = "jw01523003001_03102_00001_mirifulong_ch4-long_s3d.fits"
X1D = "jw01523003001_03102_00001_mirifulong_ch4-long_extract1dstep.fits"
WAVEMIN, WAVEMAX = 24.6, 25.5


def _webbflow(*argv):
    from webbflow.flows.cli import main

    return main(["run", *[str(a) for a in argv]])


@pytest.fixture(scope="module")
def mrs(tmp_path_factory):
    """One cal exposure, jwst's ch4-long cube of it, the references, and both programs' x1d of it
    as a point and as an extended source."""
    if not MIRI_REFS.exists():
        pytest.skip("../shared/data/real-refs/miri is not here")
    pytest.importorskip("jwst")
    import mrs_cube_scene as scene
    from jwst.cube_build import CubeBuildStep
    from jwst.extract_1d import Extract1dStep
    from parity import jwst_offline, quiet_jwst

    from webbflow.refs import synthetic_mrs as syn

    root = tmp_path_factory.mktemp("mrs_extract")
    inp = root / "in"
    with jwst_offline(CRDS_RULES, CONTEXT), quiet_jwst():
        cals = scene.make_cal_files(inp, ndither=1)
        cubepar = scene.write_cubepar(inp / "jwst_miri_cubepar_test.fits")
        CubeBuildStep.call(str(cals[0]), channel="4", wavemin=WAVEMIN, wavemax=WAVEMAX,
                           override_cubepar=str(cubepar), save_results=True, output_dir=str(root / "cube"))
    refs = SimpleNamespace(extract1d=syn.save_inline(syn.extract1d_ifu(), inp / "jwst_miri_extract1d_test.asdf"),
                           apcorr=syn.save_inline(syn.mrs_apcorr(), inp / "jwst_miri_apcorr_test.asdf"))
    cube = root / "cube" / CUBE
    out = SimpleNamespace()
    for st in ("POINT", "EXTENDED"):
        jw, ours = root / f"jwst_{st.lower()}", root / f"ours_{st.lower()}"
        with jwst_offline(CRDS_RULES, CONTEXT), quiet_jwst():
            Extract1dStep.call(str(cube), override_extract1d=str(refs.extract1d), override_apcorr=str(refs.apcorr),
                               ifu_set_srctype=st, ifu_rfcorr=False, save_results=True, output_dir=str(jw))
        with jwst_offline(CRDS_RULES, CONTEXT):
            rc = _webbflow("extract_1d", cube, "--override_extract1d", refs.extract1d, "--override_apcorr",
                           refs.apcorr, "--ifu_set_srctype", st, "--ifu_rfcorr", "false", "--output-dir", ours)
        assert rc == 0
        setattr(out, st.lower(), SimpleNamespace(jwst=jw / X1D, ours=ours / X1D, folder=ours))
    return SimpleNamespace(root=root, cube=cube, refs=refs, scene=scene, **vars(out))


def _columns_agree(ours: Path, theirs: Path) -> dict:
    from astropy.io import fits

    with fits.open(ours) as a, fits.open(theirs) as b:
        ta, tb = a["EXTRACT1D"].data, b["EXTRACT1D"].data
        assert ta.columns.names == tb.columns.names
        assert [c.unit for c in ta.columns] == [c.unit for c in tb.columns]
        assert len(ta) == len(tb)
        out = {}
        for c in tb.columns.names:
            x, y = np.asarray(ta[c], float), np.asarray(tb[c], float)
            out[c] = float((np.isclose(x, y, rtol=1e-4, atol=0) | (np.isnan(x) & np.isnan(y))).mean())
    return out


def _compare_whole(ours: Path, theirs: Path) -> list[str]:
    from test_products_whole import compare_fits

    problems: list[str] = []
    compare_fits(ours.name, ours, theirs, problems)
    # R_EXTR1D: jwst records the override's path, webbflow crds://<name>; the same file
    return [p for p in problems if not (p.split(": ")[1].startswith("R_EXTR1D") and "extract1d_test.asdf" in p)]


@pytest.mark.parity
@pytest.mark.real
@pytest.mark.parametrize("kind", ["point", "extended"])
def test_cube_spectrum_matches_jwst(mrs, kind):
    run = getattr(mrs, kind)
    assert [p.name for p in run.folder.iterdir()] == [X1D]
    agree = _columns_agree(run.ours, run.jwst)
    print(kind, {k: round(v, 5) for k, v in agree.items()})
    assert min(agree.values()) >= 0.999, agree
    assert _compare_whole(run.ours, run.jwst) == []


@pytest.mark.parity
@pytest.mark.real
def test_spectra_show_the_scene(mrs):
    """The point source's spectrum follows the one the scene gave it (the drizzled cube of this
    undersampled source puts its level within a factor of two of the Gaussian's integral), and the
    extended extraction is the mean surface brightness of each plane's spaxels with data."""
    from webbflow import models

    x1d = models.open(mrs.point.ours)
    assert type(x1d).__name__ == "MRSMultiSpecModel"
    spec = x1d.spec[0]
    assert spec.meta["source_type"] == "POINT" and spec.meta["name"] == "MIR_MRS"
    t = spec.spec_table
    lam = t["WAVELENGTH"]
    assert WAVEMIN - 0.01 <= lam.min() and lam.max() <= WAVEMAX + 0.01
    sig = 0.3 * (lam / 10.0) / 2.355  # arcsec: the scene's point source
    truth_jy = 400.0 * (1 + 0.3 * np.sin(lam * 3.0)) * 2 * np.pi * sig**2 * (np.pi / 180 / 3600) ** 2 * 1e6
    good = (t["DQ"] == 0) & np.isfinite(t["FLUX"])
    assert good.mean() > 0.9
    assert np.corrcoef(t["FLUX"][good], truth_jy[good])[0, 1] > 0.99
    assert 0.5 < np.median(t["FLUX"][good] / truth_jy[good]) < 2.0
    assert np.all(t["NPIXELS"][good] > 10) and np.all(t["BACKGROUND"][good] > 0)
    assert np.all(np.isnan(t["RF_FLUX"]))  # no residual fringe fit asked for

    ext = models.open(mrs.extended.ours).spec[0].spec_table
    cube = models.open(mrs.cube)
    np.testing.assert_allclose(ext["SURF_BRIGHT"], np.nanmean(cube.data, axis=(1, 2)), rtol=1e-5)
    assert np.all(ext["BACKGROUND"] <= ext["SURF_BRIGHT"] * 1.01)  # clipped: the bright source is left out


@pytest.mark.parity
@pytest.mark.real
def test_residual_fringe_fit_is_refused_in_one_line(mrs, tmp_path, capsys):
    rc = _webbflow("extract_1d", mrs.cube, "--override_extract1d", mrs.refs.extract1d, "--override_apcorr",
                   mrs.refs.apcorr, "--output-dir", tmp_path)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0
    assert len(err) == 1 and "ifu_rfcorr=false" in err[0], err
    assert list(tmp_path.iterdir()) == []


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
