"""NIRISS SOSS ATOCA decontamination (extract_1d ``soss_atoca=true``, jwst 3.0's default) against jwst.

ATOCA's choices are discrete and sensitive to the last bit of its inputs: the adaptive
wavelength grid (intervals halved until a Romberg estimate meets ``soss_rtol``) and the Tikhonov
factor (the smallest factor where d chi2 / d log(factor) passes a threshold, over solutions that
are ill-conditioned at the small factors).  So the pieces are compared exactly, on the references
of a simulated SOSS observation (``webbflow simulate --exp-type NIS_SOSS``) and a rateints drawn
along their traces: each order's wavelength map and kernel, the integration weights of the
detector model, the first flux estimate, the decontamination grid and the Tikhonov tests.

The whole products (jwst's calwebb_detector1 then calwebb_spec2 with its defaults, run as its
users run it from the association's folder, against ``webbflow run calwebb_spec2`` on the same
association) take jwst about 200 s of CPU and 6 GB (the dense inverse of the order 1+2 design
matrix, 13486 x 13486): ``WEBBFLOW_SOSS_ATOCA_FULL=1`` runs them, comparing the x1dints whole and
every column within rtol 1e-4.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

FULL = os.environ.get("WEBBFLOW_SOSS_ATOCA_FULL") == "1"
FULL_ONLY = "jwst's ATOCA takes ~200 s CPU and 6 GB: WEBBFLOW_SOSS_ATOCA_FULL=1 runs the whole-product comparison"


@pytest.fixture(scope="module")
def pieces(tmp_path_factory):
    """Both implementations' order models, masks and typical integration on one SOSS rateints."""
    from stdatamodels.jwst import datamodels as dm
    from test_niriss_soss import _rateints

    from jwst.extract_1d.soss_extract import soss_extract as J
    from webbflow import models
    from webbflow.refs import open_reference
    from webbflow.refs.synthetic_soss import pastasoss_tree, write_soss_references
    from webbflow.tasks.extract_1d import Extract1dParams
    from webbflow.tasks.extract_1d import _atoca as A
    from webbflow.tasks.extract_1d import soss as S

    base = tmp_path_factory.mktemp("atoca")
    refs = write_soss_references(base / "refs")
    rate, _truth = _rateints(base, pastasoss_tree())
    ours = {rt: open_reference(rt, refs[rt]) for rt in ("pastasoss", "specprofile", "speckernel")}
    captured = {}

    def capture(filled, errs, mederr, scimask0, refmask0, oms, box, params, subarray, cut, **_kw):
        captured.update(filled=filled, errs=errs, mederr=mederr, scimask0=scimask0, refmask0=refmask0, oms=oms,
                        box=box, cut=cut)
        raise _Captured

    real = A.atoca_models
    A.atoca_models = capture
    try:
        with pytest.raises(_Captured):
            S.extract_soss(models.open(rate), ours["pastasoss"], Extract1dParams(), ours["specprofile"],
                           ours["speckernel"])
    finally:
        A.atoca_models = real
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        jref = {"pastasoss": dm.PastasossModel(str(refs["pastasoss"])),
                "spec_profiles": dm.SpecProfileModel(str(refs["specprofile"])),
                "speckernel": dm.SpecKernelModel(str(refs["speckernel"])), "subarray": "SUBSTRIP256",
                "pwcpos": models.open(rate).meta.instrument.pupil_position}
        jm = J.get_ref_file_args(jref, [1, 2, 3])
    filled, mederr = captured["filled"], captured["mederr"]
    n = filled.shape[0]
    typical = np.mean(filled, axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        typical += np.random.default_rng(seed=42).normal(0, mederr * np.sqrt((n - 1) / n))
    return {**captured, "jm": jm, "typical": typical}


class _Captured(Exception):
    pass


@pytest.mark.parity
def test_atoca_order_models_are_jwsts_to_the_bit(pieces):
    """Wavelength maps, profiles, throughputs and spectral kernels of orders 1-3: identical."""
    for j, order in zip(pieces["jm"], (1, 2, 3)):
        om = pieces["oms"][order]
        assert np.array_equal(om.wavemap, j.wavemap, equal_nan=True), order
        assert np.array_equal(om.profile, j.specprofile), order
        w = np.linspace(0.6, 2.9, 200)
        assert np.array_equal(om.throughput(w), j.throughput(w)), order
        wc = w[::-1].copy()
        assert np.array_equal(om.kernel(w, wc), j.kernel(w, wc)), order
        assert om.kernel.min_value == j.kernel.min_value


@pytest.mark.parity
def test_atoca_estimate_and_grid_are_jwsts(pieces):
    """The first flux estimate (order 1's uncontaminated pixels), the detector model's integration
    weights, and the adaptive decontamination grid: the same numbers as jwst's."""
    from jwst.extract_1d.soss_extract import soss_extract as J
    from jwst.extract_1d.soss_extract.atoca import ExtractionEngine

    from webbflow.tasks.extract_1d import _atoca as A
    from webbflow.tasks.extract_1d import _atoca_utils as U
    from webbflow.tasks.extract_1d._atoca_engine import Engine

    p = pieces
    typical, mederr, box = p["typical"], p["mederr"], p["box"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        integ = J.Integration(typical.copy(), mederr, p["scimask0"].copy(), p["refmask0"].copy(), p["jm"],
                              {f"Order {o}": box[o] for o in box}, do_bkgsub=False)
        est_j = integ.estim_flux_first_order()  # (changes jm[0]'s profile, as ours changes its own)
        grid_j = integ.make_decontamination_grid(est_j, rtol=1e-4, max_grid_size=20000, n_os=2)
    om1, om2 = p["oms"][1], p["oms"][2]
    mask_int = integ.scimask
    mtp = {o: ~(box[o] > 0) | integ.refmask for o in box}
    grid_est = U.oversample(U.grid_from_map(om1.wavemap, om1.profile), 1)
    assert np.array_equal(om1.profile, p["jm"][0].specprofile)
    est_mask = (om2.profile >= 1e-4) | mtp[1]
    ours = Engine([om1.wavemap], [om1.profile], [om1.throughput], [None], grid_est, [est_mask], global_mask=mask_int)
    theirs = ExtractionEngine([om1.wavemap], [om1.profile], [p["jm"][0].throughput], [None], grid_est, [est_mask],
                              global_mask=mask_int, orders=[1])
    assert ours.bounds == theirs.i_bounds and np.array_equal(ours.mask, theirs.mask)
    assert abs(ours.weights[0] - theirs.weights[0]).max() == 0
    first, first_j = ours.fit(typical, mederr), theirs(typical, mederr)
    assert np.array_equal(first, first_j, equal_nan=True)
    from scipy.interpolate import UnivariateSpline

    ok = np.isfinite(first)
    est = UnivariateSpline(grid_est[ok], first[ok], k=3, s=0, ext=0)
    g2, g1 = om2.grid_from_trace(2), om1.grid_from_trace(2)
    shared = g2 >= np.min(g1)
    g1 = g1[g1 > np.min(g2[shared])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grid = U.adaptive_grid([g2[shared], g1, g2[~shared]], [est, est, A._ones], [0.77, np.max(g1)], max_iter=30,
                               rtol=1e-4, max_total_size=20000)
    assert grid.size > 5000 and np.array_equal(grid, grid_j)


@pytest.mark.parity
def test_atoca_tikhonov_tests_and_factor_are_jwsts(pieces):
    """Order 3 alone on its oversampled pixel grid: the Tikhonov tests (chi2 under a Cauchy loss for
    each factor) and the factor chosen, against jwst's engine on the same pixels."""
    from jwst.extract_1d.soss_extract.atoca import ExtractionEngine
    from jwst.extract_1d.soss_extract.soss_extract import _do_tiktests

    from webbflow.tasks.extract_1d import _atoca as A
    from webbflow.tasks.extract_1d import _atoca_utils as U

    p = pieces
    om3 = p["oms"][3]
    mask = ~(p["box"][3] > 0) | p["scimask0"] | ~np.isfinite(p["mederr"])
    single = A._SingleOrder(om3, None)
    eng = single.engine(mask)
    guess = 1e-12
    best, tests = U.search_factor(eng.tikhonov(p["typical"], p["mederr"]), guess, [-2, 8])
    theirs = ExtractionEngine([om3.wavemap], [om3.profile], [A._ones], [np.array([1.0])], single.grid_os, [mask],
                              orders=[3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        best_j, _ = _do_tiktests(theirs, p["typical"], p["mederr"], guess, [p["jm"][2]], mask, tikfac_log_range=[-2, 8])
    assert len(tests.factors) == 16
    assert best == pytest.approx(best_j, rel=1e-9)
    f, f_j = eng.fit(p["typical"], p["mederr"], best), theirs(p["typical"], p["mederr"], tikhonov=True, factor=best_j)
    ok = np.isfinite(f_j)
    assert ok.sum() > 100 and np.allclose(f[ok], f_j[ok], rtol=1e-8, atol=0)


# ---------------------------------------------------------------------------
# whole products (opt-in)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    import shutil

    from parity import jwst_offline, quiet_jwst

    from jwst.stpipe import Step
    from webbflow.flows.cli import main
    from webbflow.refs.simulator import simulate

    root = tmp_path_factory.mktemp("atoca_sim")
    sim = simulate(root / "sim", instrument="niriss", exp_type="NIS_SOSS", nints=2, ngroups=2)
    out = sim.output_dir
    (lv2,) = sim.asn_level2
    jw, wf = root / "jwst", root / "webbflow"
    for d in (jw, wf):
        d.mkdir()
        for p in list(out.glob("*_uncal.fits")) + list(out.glob("*_asn.json")):
            shutil.copyfile(p, d / p.name)
    cwd = os.getcwd()
    with jwst_offline(out), quiet_jwst(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            os.chdir(jw)
            for u in sorted(jw.glob("*_uncal.fits")):
                Step.from_cmdline(["calwebb_detector1", u.name])
            Step.from_cmdline(["calwebb_spec2", Path(lv2).name])
        finally:
            os.chdir(cwd)
    with jwst_offline(out), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["run", "calwebb_spec2", str(wf / Path(lv2).name), "--output-dir", str(wf)]) == 0
    return jw, wf, sim


@pytest.mark.parity
@pytest.mark.skipif(not FULL, reason=FULL_ONLY)
def test_atoca_spec2_x1dints_is_jwsts(runs):
    from astropy.io import fits
    from test_products_whole import compare_headers

    jw, wf, sim = runs
    (uncal,) = sim.uncal
    name = uncal.name.replace("_uncal", "_x1dints")
    problems, agreement = [], {}
    with fits.open(wf / name) as fa, fits.open(jw / name) as fb:
        assert [(h.name, h.ver) for h in fa] == [(h.name, h.ver) for h in fb]
        assert fa[0].header["TIKFACTR"] == pytest.approx(fb[0].header["TIKFACTR"], rel=1e-6)
        for ha, hb in zip(fa, fb):
            compare_headers(f"{name}[{hb.name},{hb.ver}]", ha.header, hb.header, problems, hdu=hb.name)
            if hb.name != "EXTRACT1D":
                continue
            for col in hb.data.columns.names:
                x, y = np.asarray(ha.data[col]), np.asarray(hb.data[col])
                assert x.shape == y.shape, (hb.ver, col)
                ok = (np.isclose(x, y, rtol=1e-4, atol=0) | (np.isnan(x) & np.isnan(y))) if x.dtype.kind == "f" \
                    else (x == y)
                agreement[(hb.ver, col)] = float(np.mean(ok))
    assert not problems, "\n".join(problems)
    low = {k: v for k, v in agreement.items() if v < 0.999}
    assert not low, f"columns agreeing with jwst's for < 99.9 % of values: {low}"
    assert len({k[0] for k in agreement}) == 3


# ---------------------------------------------------------------------------
# ATOCA's optional inputs and side products, against jwst's extract_1d (always on: a coarse
# wavelength grid keeps jwst's dense inverse small)

ROOT = "jw01234001001_01101_00001_nis"
GRID = (0.6, 2.9, 2500)  # soss_wave_grid_in: uniform, about one point per order 1 pixel


def _estimate_file(path):
    """A soss_estimate written by stdatamodels: a SpecModel of a smooth spectrum (not the scene's)."""
    from stdatamodels.jwst import datamodels as dm

    w = np.linspace(0.5, 3.0, 400)
    t = np.zeros(w.size, dtype=dm.SpecModel().get_dtype("spec_table"))
    t["WAVELENGTH"] = w
    t["FLUX"] = 2.0 * (1.0 + 0.3 * np.sin(3.0 * w)) * np.exp(-0.5 * ((w - 1.4) / 0.9) ** 2)
    dm.SpecModel(spec_table=t).save(str(path))
    return path


@pytest.fixture(scope="module")
def options(tmp_path_factory, real_rules_cache):
    """jwst's Extract1dStep and ``webbflow run extract_1d`` on one SOSS rateints with ATOCA's
    soss_wave_grid_in (a grid written by webbflow), soss_estimate (a SpecModel written by
    stdatamodels; it sets the Tikhonov factor's first guess), soss_modelname, soss_wave_grid_out and
    soss_bad_pix="model" (the rateints' dead pixel on order 1's trace and its pixel lost in one
    integration take the order's model)."""
    from parity import jwst_offline, quiet_jwst
    from test_niriss_soss import _rateints

    from jwst.extract_1d import Extract1dStep
    from webbflow.flows.cli import main
    from webbflow.models import SossWaveGridModel
    from webbflow.refs.synthetic_soss import pastasoss_tree, write_soss_references

    base = tmp_path_factory.mktemp("atoca_options")
    refs = write_soss_references(base / "refs")
    rate, _truth = _rateints(base, pastasoss_tree())
    grid_in = base / "grid_in.fits"
    SossWaveGridModel(wavegrid=np.linspace(*GRID)).save(grid_in)
    estimate = _estimate_file(base / "estimate.fits")
    opts = {"override_pastasoss": str(refs["pastasoss"]), "override_specprofile": str(refs["specprofile"]),
            "override_speckernel": str(refs["speckernel"]), "soss_wave_grid_in": str(grid_in),
            "soss_estimate": str(estimate), "soss_modelname": "atoca_x1dints.fits",
            "soss_wave_grid_out": "grid_out.fits", "soss_bad_pix": "model"}
    out = {}
    cwd = os.getcwd()
    for who in ("jwst", "webbflow"):
        d = base / who
        d.mkdir()
        with jwst_offline(real_rules_cache, "jwst_0541.pmap"), quiet_jwst(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                os.chdir(d)  # soss_wave_grid_out is a path from the working folder, in both
                if who == "jwst":
                    Extract1dStep.call(str(rate), output_dir=str(d), save_results=True, override_extract1d="N/A",
                                       override_apcorr="N/A", override_psf="N/A", **opts)
                else:
                    argv = [f"--steps.extract_1d.{k}={v}" for k, v in opts.items()]
                    assert main(["run", "extract_1d", str(rate), "--output-dir", str(d)] + argv) == 0
            finally:
                os.chdir(cwd)
        out[who] = d
    return out["jwst"], out["webbflow"], grid_in


def _columns_agree(name, fa, fb, rtol, need):
    low = {}
    for ha, hb in zip(fa, fb):
        if hb.name != "EXTRACT1D":
            continue
        for col in hb.data.columns.names:
            x, y = np.asarray(ha.data[col]), np.asarray(hb.data[col])
            assert x.shape == y.shape, (name, hb.ver, col)
            ok = (np.isclose(x, y, rtol=rtol, atol=0) | (np.isnan(x) & np.isnan(y))) if x.dtype.kind == "f" \
                else (x == y)
            if np.mean(ok) < need:
                low[(hb.ver, col)] = float(np.mean(ok))
    return low


@pytest.mark.parity
def test_atoca_options_write_jwsts_files(options):
    """The same files, named as jwst names them, opening in stdatamodels as jwst's classes; the grid
    written back is the grid read."""
    from stdatamodels.jwst import datamodels as dm

    jw, wf, grid_in = options
    names = {p.name for p in jw.iterdir()}
    assert names == {"grid_out.fits", "atoca_SossExtractModel.fits", "atoca_AtocaSpectra.fits",
                     f"{ROOT}_extract1dstep.fits"}
    assert {p.name for p in wf.iterdir()} == names
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, cls in (("grid_out.fits", dm.SossWaveGridModel), ("atoca_SossExtractModel.fits", dm.SossExtractModel),
                          ("atoca_AtocaSpectra.fits", dm.MultiSpecModel)):
            with dm.open(wf / name) as m:
                assert type(m) is cls, name
        with dm.open(wf / "grid_out.fits") as g, dm.open(grid_in) as g0:
            assert np.array_equal(g.wavegrid, g0.wavegrid) and g.wavegrid.dtype.newbyteorder("=") == np.float64


@pytest.mark.parity
def test_atoca_options_products_are_jwsts(options):
    """x1dints, the trace models and apertures, and the ATOCA spectra: HDUs, keywords and values.

    The Tikhonov factor is the one found from the estimate's guess; the spectra and trace models
    agree within rtol 1e-6 (jwst inverts the order 1+2 system, webbflow factorises it: measured
    3e-13 on the ATOCA spectra, 2e-14 on the x1dints, 1e-7 on the float32 trace models)."""
    from astropy.io import fits
    from test_products_whole import compare_headers

    jw, wf, _ = options
    problems = []
    for name in (f"{ROOT}_extract1dstep.fits", "atoca_SossExtractModel.fits", "atoca_AtocaSpectra.fits",
                 "grid_out.fits"):
        with fits.open(wf / name) as fa, fits.open(jw / name) as fb:
            assert [(h.name, h.ver) for h in fa] == [(h.name, h.ver) for h in fb], name
            for ha, hb in zip(fa, fb):
                compare_headers(f"{name}[{hb.name},{hb.ver}]", ha.header, hb.header, problems, hdu=hb.name)
            if name.endswith("extract1dstep.fits"):
                assert fa[0].header["TIKFACTR"] == pytest.approx(fb[0].header["TIKFACTR"], rel=1e-9)
            if "SossExtractModel" in name:
                for ha, hb in zip(fa[1:], fb[1:]):
                    if hb.name == "ASDF":
                        continue
                    x, y = ha.data, hb.data
                    assert x.shape == y.shape and x.dtype == y.dtype, hb.name
                    if hb.name.startswith("APER"):
                        assert np.array_equal(x, y), hb.name
                    else:  # float32 models (NaN written as 0, as jwst writes them): the same pixels modelled
                        assert np.array_equal(x == 0, y == 0) and np.allclose(x, y, rtol=1e-6, atol=0), hb.name
            elif name != "grid_out.fits":
                low = _columns_agree(name, fa, fb, 1e-6, 1.0)
                assert not low, f"{name}: columns not all within rtol 1e-6 of jwst's: {low}"
    assert not problems, "\n".join(problems)


def test_atoca_refuses_bad_option_files_in_one_line(tmp_path, capsys, real_rules_cache):
    """A soss_wave_grid_in that is no SossWaveGridModel, a soss_estimate that is no SpecModel: one
    line naming the file, a non-zero exit, nothing written."""
    from parity import jwst_offline
    from test_niriss_soss import _rateints

    from webbflow.flows.cli import main
    from webbflow.refs.synthetic_soss import pastasoss_tree, write_soss_references

    refs = write_soss_references(tmp_path / "refs")
    rate, _ = _rateints(tmp_path, pastasoss_tree())
    over = [f"--steps.extract_1d.override_{rt}={refs[rt]}" for rt in ("pastasoss", "specprofile", "speckernel")]
    for opt in ("soss_wave_grid_in", "soss_estimate"):
        out = tmp_path / opt
        out.mkdir()
        with jwst_offline(real_rules_cache, "jwst_0541.pmap"):
            argv = ["run", "extract_1d", str(rate), "--output-dir", str(out), f"--steps.extract_1d.{opt}={rate}"]
            assert main(argv + over) != 0
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and rate.name in err[0] and ("SossWaveGridModel" in err[0] or "SpecModel" in err[0]), err
        assert "Traceback" not in err[0] and list(out.iterdir()) == []
