"""MIRI MRS residual fringes against jwst 3.0: extract_1d's 1-D fit (``ifu_rfcorr``, on by default).

The MIRIFULONG exposure of tests/mrs_cube_scene.py (a point source on extended emission, a line at
16.5 um; its WCS from jwst's AssignWcsStep and the real CDP references) is given residual fringes:
every pixel is multiplied by 1 + 4 % x sin(2 pi sigma / 2.9 cm-1 + 0.7), sigma being the pixel's
wavenumber, the period of the MRS's primary residual fringe.  jwst's Spec2Pipeline and webbflow's
spec2 then run on it with the same references and, for extract_1d, their defaults (the residual
fringe fit on): the cal steps whose references are not real here are skipped (the scene is already
in MJy/sr), cube_build makes the channel 3 cube (``channel=3``, 16.0-17.5 um, to stay small), a
single band (3 LONG), and extract_1d fits its spectra's fringes (the scene's SRCTYPE is EXTENDED:
the whole field).  The x1d are compared whole, and ``webbflow run extract_1d`` with its defaults on
jwst's cube is compared with jwst's x1d, which is jwst's Extract1dStep with its defaults on that cube.
The fit itself is also compared with jwst's function on synthetic channel 1 and 3 spectra.
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
WAVEMIN, WAVEMAX = 16.0, 17.5
FRINGE_PERIOD = 2.9  # cm-1
FRINGE_AMPLITUDE = 0.04


def _fringe(lam_um):
    return 1.0 + FRINGE_AMPLITUDE * np.sin(2 * np.pi * (1.0e4 / lam_um) / FRINGE_PERIOD + 0.7)


def _fringed(scene_fn):
    """The scene's surface brightness times the fringe at each pixel's wavelength."""
    def fringed(ra, dec, lam, off):
        return scene_fn(ra, dec, lam, off) * _fringe(lam)
    return fringed


def _steps(inp: Path, refs) -> dict:
    wcs = {"override_distortion": MIRI_REFS / "jwst_miri_distortion_0027.asdf",
           "override_specwcs": MIRI_REFS / "jwst_miri_specwcs_0016.asdf", "override_regions": inp / "regions_3d.asdf",
           "override_wavelengthrange": MIRI_REFS / "jwst_miri_wavelengthrange_0003.asdf"}
    return {
        "assign_wcs": {k: str(v) for k, v in wcs.items()},
        "straylight": {"skip": True}, "flat_field": {"skip": True}, "fringe": {"skip": True}, "photom": {"skip": True},
        "cube_build": {"channel": "3", "wavemin": WAVEMIN, "wavemax": WAVEMAX, "override_cubepar": str(refs.cubepar)},
        "extract_1d": {"override_extract1d": str(refs.extract1d), "override_apcorr": str(refs.apcorr)},
    }


@pytest.fixture(scope="module")
def rf(tmp_path_factory):
    """One fringed exposure through jwst's Spec2Pipeline and webbflow's spec2; then both programs'
    extract_1d, with their defaults, on jwst's band cube."""
    if not MIRI_REFS.exists():
        pytest.skip("../shared/data/real-refs/miri is not here")
    pytest.importorskip("jwst")
    import mrs_cube_scene as scene
    from parity import jwst_offline

    from webbflow.flows.cli import main

    run2 = scene.spec2_both(tmp_path_factory.mktemp("mrs_rfcorr"), _steps, scene=_fringed(scene._scene))
    root, jw, ours, refs = run2.inp.parent, run2.jwst, run2.ours, run2.refs
    # extract_1d alone, with its defaults, on jwst's cube: jwst's spec2 ran jwst's Extract1dStep
    # with its defaults on that cube, so its x1d is that step's product
    cube = jw / f"{ROOT}_s3d.fits"
    alone = root / "ours_extract_1d"
    with jwst_offline(CRDS_RULES, CONTEXT):
        rc = main(["run", "extract_1d", str(cube), "--override_extract1d", str(refs.extract1d),
                   "--override_apcorr", str(refs.apcorr), "--output-dir", str(alone)])
        assert rc == 0
    return SimpleNamespace(root=root, jwst=jw, ours=ours, cube=cube, alone=alone, refs=refs)


def _compare_whole(ours: Path, theirs: Path) -> list[str]:
    from test_products_whole import compare_fits

    problems: list[str] = []
    compare_fits(ours.name, ours, theirs, problems)
    # R_<reftype>: jwst records an override's path, webbflow crds://<name>; the same files
    return [p for p in problems if not (p.split(": ")[1][:2] == "R_" and "crds://" in p
                                        and p.split("crds://")[1].split("'")[0] in p.split("jwst writes")[1])]


def _fringe_amplitude(lam, spec):
    """The relative amplitude of the injected fringe left in a spectrum: the spectrum over a smooth
    continuum (a cubic in wavenumber), projected on the fringe's sine and cosine."""
    sigma = 1.0e4 / lam
    good = np.isfinite(spec) & (np.abs(lam - 16.5) > 0.05)  # not the line
    cont = np.polyval(np.polyfit(sigma[good], spec[good], 3), sigma)
    r = spec[good] / cont[good] - 1.0
    ph = 2 * np.pi * sigma[good] / FRINGE_PERIOD
    return float(2 * np.hypot(np.mean(r * np.sin(ph)), np.mean(r * np.cos(ph))))


@pytest.mark.parity
@pytest.mark.real
def test_extract_1d_defaults_fit_fringes_as_jwst(rf):
    """(a) extract_1d with its defaults on a single-band MRS cube: jwst's x1d (its Extract1dStep with
    its defaults, run by its Spec2Pipeline on the same cube) whole, RF_* included."""
    from astropy.io import fits

    name = f"{ROOT}_extract1dstep.fits"
    assert [p.name for p in rf.alone.iterdir()] == [name]
    theirs = rf.jwst / f"{ROOT}_x1d.fits"
    agree = x1d_columns_agree(rf.alone / name, theirs)
    print("extract_1d", {k: round(v, 5) for k, v in agree.items()})
    assert min(agree.values()) >= 0.999, agree
    problems = _compare_whole(rf.alone / name, theirs)
    print(problems)
    assert [p for p in problems if "FILENAME" not in p] == []
    with fits.open(rf.alone / name) as f:
        t = f["EXTRACT1D"].data
        assert np.isfinite(t["RF_FLUX"]).mean() > 0.99 and np.isfinite(t["RF_SURF_BRIGHT"]).mean() > 0.99
        assert not np.allclose(t["RF_FLUX"], t["FLUX"])  # the fit did something


@pytest.mark.parity
@pytest.mark.real
def test_spec2_without_rfcorr_override_writes_jwsts_x1d(rf):
    """(b) spec2 with extract_1d's defaults now writes the x1d of the band cube, as jwst does."""
    names = [f"{ROOT}_cal.fits", f"{ROOT}_s3d.fits", f"{ROOT}_x1d.fits"]
    assert sorted(p.name for p in rf.ours.glob("*.fits")) == sorted(names)
    assert sorted(p.name for p in rf.jwst.glob("*.fits")) == sorted(names)
    agree = x1d_columns_agree(rf.ours / names[2], rf.jwst / names[2])
    print("spec2 x1d", {k: round(v, 5) for k, v in agree.items()})
    assert min(agree.values()) >= 0.999, agree
    assert _compare_whole(rf.ours / names[2], rf.jwst / names[2]) == []


@pytest.mark.parity
@pytest.mark.real
def test_corrected_spectrum_has_much_weaker_fringes(rf):
    """(d) the injected 4 % fringe: its amplitude in RF_FLUX is a small fraction of that in FLUX."""
    from astropy.io import fits

    with fits.open(rf.ours / f"{ROOT}_x1d.fits") as f:
        t = f["EXTRACT1D"].data
        lam, flux, rf_flux = (np.asarray(t[c], float) for c in ("WAVELENGTH", "FLUX", "RF_FLUX"))
    before, after = _fringe_amplitude(lam, flux), _fringe_amplitude(lam, rf_flux)
    print(f"fringe amplitude: {before:.4f} in FLUX, {after:.4f} in RF_FLUX")
    assert before > 0.5 * FRINGE_AMPLITUDE
    assert after < 0.25 * before


def _spectrum(channel: int, seed: int = 3):
    """A band's spectrum: a power-law continuum, a line, the primary fringe (and, in channels 3-4,
    the dichroic one) with a slow beat, noise, a few non-positive and NaN points."""
    w0, w1, dw = {1: (4.90, 5.74, 0.0008), 3: (15.41, 17.98, 0.0025)}[channel]
    lam = np.arange(w0, w1, dw)
    sigma = 1.0e4 / lam
    cont = 100 * (lam / 10) ** -1.5 + 5 * np.exp(-0.5 * ((lam - lam.mean()) / 0.01) ** 2)
    fr = 0.04 * np.sin(2 * np.pi * sigma / 2.9 + 0.3) * (1 + 0.2 * np.cos(sigma / 30))
    if channel == 3:
        fr += 0.02 * np.sin(2 * np.pi * sigma / 0.4)
    flux = cont * (1 + fr) * (1 + 0.003 * np.random.default_rng(seed).normal(size=lam.size))
    flux[[10, 11, 400]] = [-1.0, 0.0, np.nan]
    return lam, cont, flux


@pytest.mark.parity
@pytest.mark.parametrize("channel", [1, 3])
def test_fit_matches_jwsts_function(channel):
    """The 1-D fit alone against jwst's residual_fringe.utils.fit_residual_fringes_1d (as extract_1d
    calls it): the same corrected spectrum, and a spectrum too short to fit fails in both."""
    pytest.importorskip("jwst")
    from jwst.residual_fringe import utils as jwst_rf

    from webbflow.tasks.extract_1d._rfcorr import FringeFitError, residual_fringe_1d

    lam, cont, flux = _spectrum(channel)
    theirs = jwst_rf.fit_residual_fringes_1d(flux.copy(), lam, channel=channel, dichroic_only=False, max_amp=None)
    ours = residual_fringe_1d(flux, lam, channel)
    same = np.isclose(ours, theirs, rtol=1e-4, atol=0) | (np.isnan(ours) & np.isnan(theirs))
    assert same.mean() >= 0.999, same.mean()
    good = np.isfinite(flux) & (flux > 0)
    before, after = np.std(flux[good] / cont[good] - 1), np.std(ours[good] / cont[good] - 1)
    print(f"channel {channel}: fringe rms {before:.4f} -> {after:.4f}")
    assert after < 0.25 * before
    short = slice(0, 30)  # under 5 fringe periods
    with pytest.raises(ValueError):
        jwst_rf.fit_residual_fringes_1d(flux[short].copy(), lam[short], channel=channel)
    with pytest.raises(FringeFitError):
        residual_fringe_1d(flux[short], lam[short], channel)
