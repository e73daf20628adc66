"""MIRI MRS 2-D residual fringe correction (``residual_fringe``, off by default) against jwst 3.0.

Input: the MIRIFULONG cal of tests/mrs_cube_scene.py (WCS from jwst's AssignWcsStep and the real
CDP references) given residual fringes as in tests/test_mrs_rfcorr.py (every pixel times
1 + 4 % x sin(2 pi sigma / 2.9 cm-1 + 0.7)) and marked fringe-flat corrected; the ``fringefreq``
reference is refs/synthetic_mrs.py's.  jwst's step runs as ``strun residual_fringe --skip=false``
from the cal's folder, webbflow's as ``webbflow run residual_fringe --skip=false``, with the same
``override_*`` files; the ``_residual_fringe.fits`` products are compared whole and their SCI must
be identical (the fits are jwst's arithmetic).

jwst fits every column of every slice one by one (some 0.4 s of CPU each, about 1000 columns per
detector), so CI restricts the regions reference to ten columns of one slice per channel (303,
408: the primary fringe everywhere and the dichroic fringe in channel 4); ``WEBBFLOW_MRS_FULL=1``
runs the whole detector.  The per-column pieces (continuum, sine fit and its evidence) are also
compared with jwst's functions on synthetic channel 1 and 3 columns, which covers channel 1's
reversed wavenumbers in CI (tests/test_mrs_sim.py compares the whole step on the simulated
MIRIFUSHORT cal with ``WEBBFLOW_MRS_FULL=1``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import CRDS_RULES

CONTEXT = "jwst_0541.pmap"
FULL = os.environ.get("WEBBFLOW_MRS_FULL") == "1"
SLICES = (303, 408)
HALF_WIDTH = 5  # columns kept each side of a slice's middle in CI
ROOT = "jw01523003001_03102_00001_mirifulong"


def _regions(src: Path, dst: Path, slices=None, half_width=None) -> Path:
    """The regions reference restricted to ``slices`` (and ``half_width`` columns about their middles)."""
    import asdf

    with asdf.open(src, lazy_load=False, memmap=False) as af:
        tree = {k: v for k, v in af.tree.items() if k not in ("asdf_library", "history")}
        reg = np.asarray(af.tree["regions"]).copy()
    if slices is not None:
        keep = np.isin(reg, slices)
        if half_width is not None:
            for s in slices:
                cols = np.nonzero((reg[7] == s).any(axis=0))[0]
                mid = (cols.min() + cols.max()) // 2
                off = np.ones(reg.shape[-1], bool)
                off[mid - half_width:mid + half_width + 1] = False
                keep[:, :, off] &= reg[:, :, off] != s
        reg[~keep] = 0
    tree["regions"] = reg
    asdf.AsdfFile(tree).write_to(dst)
    return dst


def fringed_cal(folder: Path) -> Path:
    """The scene's cal with residual fringes, marked fringe-flat corrected."""
    import mrs_cube_scene as scene
    from parity import jwst_offline, quiet_jwst
    from stdatamodels.jwst import datamodels as dm
    from test_mrs_rfcorr import _fringed

    with jwst_offline(CRDS_RULES, CONTEXT), quiet_jwst(), pytest.MonkeyPatch.context() as mp:
        mp.setattr(scene, "_scene", _fringed(scene._scene))
        cal = scene.make_cal_files(folder, ndither=1)[0]
    with dm.open(cal) as m:
        m.meta.cal_step.fringe = "COMPLETE"
        m.save(cal)
    return cal


@pytest.fixture(scope="module")
def scene_cal(tmp_path_factory):
    pytest.importorskip("jwst")
    import mrs_cube_scene as scene

    if not scene.MIRI_REFS.exists():
        pytest.skip("../shared/data/real-refs/miri is not here")
    from webbflow.refs import synthetic_mrs as syn

    root = tmp_path_factory.mktemp("residual_fringe")
    cal = fringed_cal(root / "in")
    ff = root / "in" / "jwst_miri_fringefreq_test.fits"
    syn.fringefreq().save(ff)
    regions = root / "in" / "regions_3d.asdf"
    return SimpleNamespace(root=root, cal=cal, fringefreq=ff, regions=regions,
                           small=_regions(regions, root / "in" / "regions_small.asdf", SLICES, HALF_WIDTH))


def run_both(cal: Path, root: Path, cache, context, args) -> tuple[Path, Path]:
    """``strun residual_fringe`` (from the cal's copy in root/jwst) and ``webbflow run residual_fringe``
    (into root/ours) with ``args``; returns the two product folders."""
    from jwst.stpipe import Step
    from test_products_whole import _quiet

    from webbflow.flows.cli import main

    jw, ours = root / "jwst", root / "ours"
    jw.mkdir(parents=True)
    ours.mkdir(parents=True)
    shutil.copy2(cal, jw / cal.name)

    def jwst_run():
        cwd = os.getcwd()
        os.chdir(jw)
        try:
            Step.from_cmdline(["residual_fringe", cal.name, "--skip=false", *args])
        finally:
            os.chdir(cwd)

    _quiet(jwst_run, cache, context)
    assert _quiet(lambda: main(["run", "residual_fringe", str(cal), "--skip=false", *args, "--output-dir", str(ours)]),
                  cache, context) == 0
    return jw, ours


def check_same(jw: Path, ours: Path, cal: Path, min_columns: int) -> None:
    from astropy.io import fits
    from test_products_whole import compare_products

    name = cal.name.replace("_cal.fits", "_residual_fringe.fits")
    problems = compare_products(ours, jw, {name})
    assert not problems, "\n".join(problems)
    a, b = fits.getdata(ours / name, "SCI"), fits.getdata(jw / name, "SCI")
    assert np.array_equal(a, b, equal_nan=True), f"SCI differs at {np.count_nonzero(~((a == b) | np.isnan(a)))} px"
    before = fits.getdata(cal, "SCI")
    fitted = np.unique(np.nonzero(np.abs(b - before) > 1e-4 * np.abs(before))[1])
    print(f"{fitted.size} columns corrected, identical to jwst's")
    assert fitted.size >= min_columns
    with fits.open(ours / name) as h:
        assert h[0].header["S_RESFRI"] == "COMPLETE"


@pytest.fixture(scope="module")
def small(scene_cal):
    """Both programs on the two restricted slices: (jwst folder, webbflow folder)."""
    args = [f"--override_fringefreq={scene_cal.fringefreq}", f"--override_regions={scene_cal.small}"]
    return run_both(scene_cal.cal, scene_cal.root / "small", CRDS_RULES, CONTEXT, args)


@pytest.mark.parity
def test_step_matches_jwst_on_two_slices(scene_cal, small):
    check_same(*small, scene_cal.cal, min_columns=2 * HALF_WIDTH)


@pytest.mark.parity
@pytest.mark.skipif(not FULL, reason="jwst's fit of the whole detector takes minutes: WEBBFLOW_MRS_FULL=1 runs it")
def test_step_matches_jwst_on_the_whole_detector(scene_cal):
    args = [f"--override_fringefreq={scene_cal.fringefreq}", f"--override_regions={scene_cal.regions}",
            "--ignore_region_min=16.45", "--ignore_region_max=16.55"]
    jw, ours = run_both(scene_cal.cal, scene_cal.root / "full", CRDS_RULES, CONTEXT, args)
    check_same(jw, ours, scene_cal.cal, min_columns=200)


def test_fringes_are_weaker_after(scene_cal, small):
    """The correction removes the injected fringe in the fitted columns."""
    from astropy.io import fits
    from test_mrs_rfcorr import _fringe

    from webbflow import models

    m = models.open(scene_cal.cal)
    before = np.array(m.data)
    after = fits.getdata(small[1] / f"{ROOT}_residual_fringe.fits", "SCI")
    yy, xx = np.mgrid[:1024, :1032]
    injected = _fringe(m.meta.wcs(xx, yy)[2]) - 1
    changed = np.isfinite(before) & (np.abs(after - before) > 1e-4 * np.abs(before))
    # the correction (before / after - 1) against the injected fringe: 1 when it is what was removed
    corr = np.corrcoef(before[changed] / after[changed] - 1, injected[changed])[0, 1]
    print(f"{changed.sum()} px corrected; correlation of the correction with the injected fringe {corr:.3f}")
    assert changed.sum() > 5000
    assert corr > 0.8


# ------------------------------------------------------------------------------------------------
# the per-column pieces against jwst's functions


def _column(channel: int, seed: int = 3):
    """A column's flux, weights and wavenumbers (cm-1) with a 4 % fringe of period 2.9 cm-1 (and a
    1 % dichroic one of 0.4 cm-1 in channel 3); the wavelengths grow along the column in channel 1
    and fall in channel 3, as on the detectors."""
    rng = np.random.default_rng(seed)
    y = np.arange(1024.0)
    lam = 4.9 + 0.85 * y / 1023 if channel == 1 else 13.45 - 1.9 * y / 1023
    sigma = 1.0e4 / lam
    cont = 10.0 + 2.0 * np.sin(lam)
    fr = 1 + 0.04 * np.sin(2 * np.pi * sigma / 2.9 + 0.3)
    if channel == 3:
        fr *= 1 + 0.01 * np.sin(2 * np.pi * sigma / 0.4)
    flux = cont * fr * (1 + 0.002 * rng.standard_normal(y.size))
    return flux, flux / flux.mean(), sigma


@pytest.mark.parity
@pytest.mark.parametrize("channel,ffreq,dffreq,nmax", [(1, 2.9, 1.5, 10), (3, 2.9, 1.5, 10), (3, 0.4, 0.15, 15)])
def test_column_fit_matches_jwsts_functions(channel, ffreq, dffreq, nmax):
    """Continuum (robust degree-2 spline for the primary fringe, plain degree-1 for the dichroic one)
    and the evidence-driven sum of sines, against jwst's residual_fringe.utils: identical results."""
    pytest.importorskip("jwst")
    from jwst.residual_fringe import utils as jwst_rf

    from webbflow.tasks import residual_fringe as rf

    flux, w, sigma = _column(channel)
    bg_j, knots_j = jwst_rf.fit_1d_background_complex(flux.copy(), w.copy(), sigma.copy(), ffreq=ffreq, channel=channel)
    bg_o, knots_o = rf.background(flux.copy(), w.copy(), sigma.copy(), ffreq, channel)
    assert np.array_equal(knots_j, knots_o) and np.array_equal(bg_j, bg_o)
    resid = flux / bg_o - 1
    good = np.ones(flux.size, int)
    good[:40] = 0
    wj, wo = w.copy(), w.copy()
    theirs = jwst_rf.fit_1d_fringes_bayes_evidence(resid.copy(), wj, sigma.copy(), ffreq, dffreq, nmax, 0.001, good)
    ours = rf.fit_fringes(resid.copy(), wo, sigma.copy(), ffreq, dffreq, nmax, 0.001, good)
    assert np.array_equal(theirs[0], ours[0])
    assert tuple(theirs[1:]) == tuple(ours[1:])
    assert np.array_equal(wj, wo)  # both mask the weights in place
    print(f"channel {channel}, {ffreq} cm-1: {ours[2]} sines")
    assert ours[2] >= 1


def test_column_pieces_match_jwsts_helpers():
    """Feature masking, envelope and runaway checks against jwst's helpers on a column with a line."""
    pytest.importorskip("jwst")
    from jwst.residual_fringe import utils as jwst_rf

    from webbflow.tasks import residual_fringe as rf

    flux, _, _ = _column(3, seed=5)
    flux[500:506] *= np.array([1.2, 1.6, 2.2, 1.7, 1.25, 1.05])
    x = np.arange(flux.size)
    env = rf.lower_envelope(x, flux)
    assert np.array_equal(env, jwst_rf.fit_envelope(x, flux)[0])
    csum = np.cumsum(np.insert(flux, 0, 0))
    smooth = (csum[7:] - csum[:-7]) / 7.0
    assert np.array_equal(rf.lower_envelope(x, smooth), jwst_rf.fit_envelope(x, smooth)[0])
    mod = np.abs(flux / env) - 1
    amp = np.full(flux.size, 0.2)
    wf = rf.feature_weights(mod, amp)
    assert np.array_equal(wf, jwst_rf.find_lines(mod, amp))
    assert wf[500:506].sum() == 0 and wf.sum() > 900
    fit = 0.05 * np.sin(x / 3.0)
    fit[300:320] *= 10
    ours = rf.runaway_flags(fit.copy(), np.full(fit.size, 0.4))
    theirs = jwst_rf.check_res_fringes(fit.copy(), np.full(fit.size, 0.4))
    assert np.array_equal(ours[0], theirs[0]) and np.array_equal(ours[1], theirs[1]) and ours[1].sum() > 0


# ------------------------------------------------------------------------------------------------
# settings and bad input


def test_spec2_runs_it_after_photom_and_skips_it_by_default():
    from webbflow.flows.calwebb_spec2 import BRANCHES
    from webbflow.tasks import load_all
    from webbflow.tasks.base import STEPS

    load_all()
    mrs = BRANCHES["MIR_MRS"]
    assert mrs.calibrate[-2:] == ("photom", "residual_fringe")
    assert "residual_fringe" not in mrs.marked_skipped
    spec = STEPS["residual_fringe"]
    assert spec.reftypes == ("fringefreq", "regions")
    p = spec.make_params()
    assert p.skip is True and p.suffix == "residual_fringe"
    assert spec.make_params({"ignore_region_min": "[5.0, 6.1]", "ignore_region_max": "5.2,6.3"}).ignore_region_max == [5.2, 6.3]
    from webbflow.errors import ParameterError

    with pytest.raises(ParameterError, match="as many"):
        spec.make_params({"ignore_region_min": [5.0], "ignore_region_max": [5.2, 6.0]})


def test_bad_input_one_line_error(scene_cal, tmp_path, capsys):
    """A cal that has not been fringe-flat corrected: one line naming the file, exit 1, no product."""
    from webbflow import models
    from webbflow.flows.cli import main

    m = models.open(scene_cal.cal)
    m.meta.cal_step.fringe = "SKIPPED"
    bad = tmp_path / f"{ROOT}_cal.fits"
    m.save(bad)
    out = tmp_path / "out"
    rc = main(["run", "residual_fringe", str(bad), "--skip=false", f"--override_fringefreq={scene_cal.fringefreq}",
               f"--override_regions={scene_cal.small}", "--output-dir", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0
    assert any(bad.name in line and "fringe" in line for line in err), err
    assert "Traceback" not in "\n".join(err)
    assert not out.exists() or not any(out.iterdir())
