"""adaptive_trace_model (jwst 3.0's AdaptiveTraceModelStep): parity on a MIRI LRS fixed-slit exposure.

The input: a FULL-frame LRS rate written by stdatamodels (tests/test_miri_lrs.py's ``_rate``) with a
compact source drawn along the slit (a Gaussian across the slit, 1.1 pixels wide, 2000 DN/s on a
5 DN/s sky; its position from webbflow's assign_wcs with the real distortion and specwcs), run once
through webbflow's spec2 with ``--steps.adaptive_trace_model.skip=false`` and ``oversample=2``
(flat, pathloss and photom skipped to keep it small).  Its cal (a SlitModel, saved before the step
as jwst saves it) is the input of both pipelines' step, run as users run them (``webbflow run
adaptive_trace_model`` and strun):

- the defaults (skip=false): the trace model (TRACEMODEL) at the compact source, the data unchanged;
- ``oversample=2``: flux, ERR, variances, DQ, WAVELENGTH, TRACEMODEL on the doubled spatial axis;
  the WCS maps the new pixels to the old;

products compared whole (extensions, keywords, arrays within rtol 1e-4 for >= 99.9 %, DQ equal).
spec2's s2d and x1d against jwst's ResampleSpecStep and Extract1dStep on jwst's oversampled
product (Spec2Pipeline's order after the step), whole.

tso3 (jwst's Tso3Pipeline runs the step on each calints cube after outlier_detection): a small MIRI
LRS slitless calints (a SlitModel of 4 integrations made by webbflow's spec2) through jwst's
Tso3Pipeline and ``webbflow run tso3`` with the step on and ``save_results``: crfints, the step's
product, x1dints and whtlt.ecsv whole; and the real 2019 cube (a CubeModel), which the step declines
(S_TRCMOD = FAILED) as jwst's does.  spec3's IFU path (MRS cals before cube_build) costs minutes of
jwst time, beyond the CI budget; it was compared by hand on tests/mrs_cube_scene.py's two MIRIFULONG
dithers (cube_build channel=3, 16.0-17.5 um, extract_1d skipped): with the step's defaults, with
``oversample=2`` and with ``save_results`` the crf, ``_adaptive_trace_model`` (TRACEMODEL) and
ch3-long s3d products are jwst's whole (no difference found by test_products_whole.compare_fits;
the oversampled cube's SCI identical to jwst's, and different from the default cube's in 98 % of
spaxels); with ``oversample=2`` and extract_1d on, the ch3-long x1d too (FLUX, SURF_BRIGHT,
WAVELENGTH equal in 100 % of 601 rows).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from astropy.io import fits

pytestmark = [pytest.mark.parity, pytest.mark.real]

ROOT = "jw01234002001_01101_00001_mirimage"


def _with_source(model) -> None:
    """Draw the compact source along the slit of ``model`` (in place), 3.2 pixels right of the slit's centre."""
    from gwcs.wcstools import grid_from_bounding_box

    wcs = model.meta.wcs
    x, y = grid_from_bounding_box(wcs.bounding_box)
    alpha = wcs.transform("detector", "alpha_beta", x, y)[0]
    xc = float(np.nanmean(x[np.abs(alpha) < 0.05]))
    yy, xx = np.mgrid[:1024, :1032]
    src = 2000.0 * np.exp(-0.5 * ((xx - xc - 3.2) / 1.1) ** 2)
    src[(yy < y.min()) | (yy > y.max())] = 0
    model.data = (model.data + src).astype(np.float32)
    model.var_poisson = (np.abs(model.data) / 100.0).astype(np.float32)
    model.err = np.sqrt(model.var_poisson + model.var_rnoise).astype(np.float32)


STEPS2 = {"extract_1d": {"override_apcorr": "N/A", "override_psf": "N/A"},
          "adaptive_trace_model": {"skip": "false", "oversample": "2"},
          **{s: {"skip": "true"} for s in ("flat_field", "pathloss", "photom")}}


@pytest.fixture(scope="module")
def lrs(tmp_path_factory, real_rules_cache):
    """The LRS rate with the source and webbflow's spec2 on it with adaptive_trace_model on
    (oversample=2; flat, pathloss and photom skipped to keep it small): its cal is the steps' input."""
    from test_miri_lrs import DISTORTION, MIRI_REFS, NOT_USED, _rate, _specwcs_with_vertices
    from parity import jwst_offline

    from webbflow import models
    from webbflow.flows.calwebb_spec2 import spec2_last_run
    from webbflow.flows.cli import main
    from webbflow.tasks import load_all
    from webbflow.tasks.base import run_step

    load_all()
    base = tmp_path_factory.mktemp("atm")
    rate = _rate("MIR_LRS-FIXEDSLIT", base)
    specwcs = _specwcs_with_vertices("MIR_LRS-FIXEDSLIT", base)
    refs = {"distortion": str(DISTORTION), "specwcs": str(specwcs), **dict.fromkeys(NOT_USED, "N/A")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = run_step("assign_wcs", models.open(rate), {}, references=refs).model
        _with_source(m)
        with fits.open(rate) as h:
            h["SCI"].data, h["ERR"].data, h["VAR_POISSON"].data = m.data, m.err, m.var_poisson
            h.writeto(base / f"{ROOT}_rate.fits")
    steps = {"assign_wcs": {"override_distortion": str(DISTORTION), "override_specwcs": str(specwcs)}, **STEPS2}
    steps["extract_1d"] = dict(steps["extract_1d"], override_extract1d=str(MIRI_REFS / "jwst_miri_extract1d_0005.json"))
    argv = [f"--steps.{s}.{k}={v}" for s, kv in steps.items() for k, v in kv.items()]
    out = base / "spec2"
    with jwst_offline(real_rules_cache, "jwst_0541.pmap"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["run", "calwebb_spec2", str(base / f"{ROOT}_rate.fits"), "--output-dir", str(out)] + argv) == 0
    return {"base": base, "cal": out / f"{ROOT}_cal.fits", "spec2": out, "steps": steps,
            "records": [(r.name, r.status) for r in spec2_last_run[-1].records]}


@pytest.fixture(scope="module")
def runs(lrs, real_rules_cache):
    """``_both`` once per setting (the spec2 comparison reuses jwst's oversample=2 product)."""
    done = {}

    def get(tag, **params):
        if tag not in done:
            done[tag] = _both(lrs, real_rules_cache, tag, **params)
        return done[tag]

    return get


def _both(lrs, cache, tag, **params):
    """``webbflow run adaptive_trace_model`` and jwst's strun on the cal, each in its own folder:
    ``<tag>/{ours,jwst}/<root>_adaptivetracemodelstep.fits``."""
    import os
    import shutil

    from jwst.stpipe import Step
    from parity import jwst_offline, quiet_jwst

    from webbflow.flows.cli import main

    args = ["--skip=false"] + [f"--{k}={v}" for k, v in params.items()]
    out = {}
    for who in ("ours", "jwst"):
        d = lrs["base"] / tag / who
        d.mkdir(parents=True)
        shutil.copyfile(lrs["cal"], d / lrs["cal"].name)
        out[who] = d / f"{ROOT}_adaptivetracemodelstep.fits"
    with jwst_offline(cache, "jwst_0541.pmap"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = out["ours"].parent
        assert main(["run", "adaptive_trace_model", str(d / lrs["cal"].name), "--output-dir", str(d)] + args) == 0
    cwd = os.getcwd()
    with jwst_offline(cache, "jwst_0541.pmap"), quiet_jwst(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        os.chdir(out["jwst"].parent)  # as strun is run
        try:
            Step.from_cmdline(["adaptive_trace_model", lrs["cal"].name] + args)
        finally:
            os.chdir(cwd)
    return out["ours"], out["jwst"]


def _whole(ours: Path, theirs: Path) -> list[str]:
    from test_products_whole import compare_fits

    problems = []
    compare_fits(theirs.name, ours, theirs, problems)
    return problems


def test_trace_model_with_the_defaults_is_jwsts(lrs, runs):
    ours, theirs = runs("defaults")
    problems = _whole(ours, theirs)
    assert not problems, "\n".join(problems)
    with fits.open(ours) as a, fits.open(lrs["cal"]) as cal:
        assert a[0].header["S_TRCMOD"] == "COMPLETE"
        trace = a["TRACEMODEL"].data
        # the spline model covers the compact source in every row of the slit, and nothing else
        assert np.isfinite(trace).sum() > 2000
        rows = np.nonzero(np.isfinite(trace).any(axis=1))[0]
        assert rows.size > 350
        np.testing.assert_array_equal(a["SCI"].data, cal["SCI"].data)  # data unchanged without oversampling
        # where the model is, it follows the data: the source's peak within 5 %
        r = rows[rows.size // 2]
        peak = np.nanargmax(trace[r])
        assert abs(trace[r, peak] / cal["SCI"].data[r, peak] - 1) < 0.05


def test_oversample_2_is_jwsts(lrs, runs):
    ours, theirs = runs("os2", oversample=2.0)
    problems = _whole(ours, theirs)
    assert not problems, "\n".join(problems)
    from stdatamodels.jwst import datamodels as dm

    with dm.open(ours) as m, fits.open(lrs["cal"]) as cal:
        assert m.data.shape == (1024, 2064) and m.trace_model.shape == (1024, 2064)
        assert m.meta.wcs.input_frame.name == "coordinates"
        # surface brightness: each new pixel keeps its parent's level, so a row sums to twice the original
        r = 200  # a row of the slit (rows 7-393)
        sci, wave = cal["SCI"].data[r], cal["WAVELENGTH"].data[r]
        assert np.nansum(m.data[r]) / 2 == pytest.approx(np.nansum(sci[np.isfinite(wave)]), rel=0.05)
        assert np.nanmax(m.data[r]) == pytest.approx(np.nanmax(sci[np.isfinite(wave)]), rel=0.1)
        # the DQ of each new pixel is its parent's (nearest pixel), and the wavelengths are finite on the slit
        assert np.isfinite(m.wavelength[r]).sum() == pytest.approx(2 * np.isfinite(wave).sum(), abs=2)


def test_spec2_with_the_step_on_and_oversample_2_matches_jwsts_steps(lrs, runs, real_rules_cache):
    """``spec2 --steps.adaptive_trace_model.skip=false --steps.adaptive_trace_model.oversample=2``: the
    cal is as before the step (jwst saves it first), and the s2d and x1d are what jwst's Spec2Pipeline
    makes after the step: its AdaptiveTraceModelStep (on that cal), ResampleSpecStep and Extract1dStep
    (flat, pathloss and photom skipped on both sides to keep the run small)."""
    from jwst.extract_1d import Extract1dStep
    from jwst.resample import ResampleSpecStep
    from parity import jwst_offline, quiet_jwst
    from stdatamodels.jwst import datamodels as dm
    from test_products_whole import compare_fits

    out = lrs["spec2"]
    names = [f"{ROOT}_{s}.fits" for s in ("cal", "s2d", "x1d")]
    assert sorted(p.name for p in out.glob("*.fits")) == sorted(names)
    assert ("adaptive_trace_model", "COMPLETE") in lrs["records"]
    with dm.open(out / names[0]) as cal:
        assert cal.data.shape == (1024, 1032) and cal.meta.cal_step.adaptive_trace_model is None  # saved before it

    _ours, jwst_os2 = runs("os2", oversample=2.0)
    theirs = lrs["base"] / "spec2-jwst"
    theirs.mkdir()
    with jwst_offline(real_rules_cache, "jwst_0541.pmap"), quiet_jwst(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = dm.open(jwst_os2)
        model.meta.cal_step.pixel_replace = "SKIPPED"  # as in jwst's spec2
        s2d = ResampleSpecStep.call(model)
        s2d.save(theirs / names[1])
        x1d = Extract1dStep.call(s2d, **lrs["steps"]["extract_1d"])
        x1d.save(theirs / names[2])
    problems: list[str] = []
    compare_fits("s2d", out / names[1], theirs / names[1], problems)
    compare_fits("x1d", out / names[2], theirs / names[2], problems)
    # jwst's steps run alone record their overrides and context differently from a pipeline run
    reference_records = ("CRDS_CTX", "R_APCORR", "R_EXTR1D")
    assert [p for p in problems if not any(k in p for k in reference_records)] == []
    with dm.open(out / names[1]) as ours_s2d, dm.open(out / names[2]) as ours_x1d:
        assert ours_s2d.meta.cal_step.adaptive_trace_model == "COMPLETE"
        assert ours_x1d.meta.cal_step.adaptive_trace_model == "COMPLETE"
        # the s2d is oversampled across the slit (about 45 native columns, here 91) and holds the source
        assert ours_s2d.data.shape[1] == 91
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the columns off the slit are all NaN
            assert np.nanmax(np.nanmedian(ours_s2d.data, axis=0)) > 500
        # jwst's LRS extract1d aperture is in native s2d columns: on the oversampled s2d it takes no pixel
        # (NPIXELS 0, FLUX NaN) in jwst, and so in webbflow
        assert np.all(np.asarray(ours_x1d.spec[0].spec_table["NPIXELS"]) == 0)


def test_unsupported_options_are_refused_in_one_line():
    from webbflow.errors import ParameterError
    from webbflow.tasks import load_all
    from webbflow.tasks.base import STEPS

    load_all()
    spec = STEPS["adaptive_trace_model"]
    assert spec.make_params({}).skip is True  # skipped by default, as in jwst
    for bad in ({"save_intermediate_results": True}, {"maximum_cores": "all"}, {"oversample": 0.5}):
        with pytest.raises(ParameterError) as exc:
            spec.make_params(bad)
        assert "\n" not in str(exc.value) and "adaptive_trace_model" in str(exc.value)


def test_a_model_the_step_does_not_apply_to_is_marked_failed_as_jwst_does():
    """jwst records S_TRCMOD = FAILED for other models (a SOSS or grism cube) and leaves the data alone."""
    from webbflow import models
    from webbflow.tasks import load_all
    from webbflow.tasks.base import run_step

    load_all()
    cube = models.CubeModel(data=np.ones((2, 8, 9), np.float32))
    cube.meta.exposure.type = "NIS_SOSS"
    res = run_step("adaptive_trace_model", cube, {"skip": False}, references={})
    assert res.status == "FAILED" and res.model.meta.cal_step.adaptive_trace_model == "FAILED"
    assert not res.model.has("trace_model") and np.all(res.model.data == 1)


# ---------------------------------------------------------------------------
# tso3: the step on each calints cube, after outlier_detection (jwst's Tso3Pipeline order)

TSO_ROOT = "jw01234001001_01101_00001_mirimage"
TSO_PRODUCT = "jw01234-o001_t001_miri_p750l-slitlessprism"
NINTS = 4
TSO_EXTRACT = {"override_apcorr": "N/A", "override_psf": "N/A"}


def _int_times(nints: int, start: float):
    """An INT_TIMES table of ``nints`` rows (one 27.75 s integration after another)."""
    cols = {"integration_number": np.arange(1, nints + 1, dtype=np.int32)}
    dt = 27.75 / 86400
    for kind, off in (("start", 0.0), ("mid", 0.5), ("end", 1.0)):
        for scale in ("MJD_UTC", "BJD_TDB"):
            cols[f"int_{kind}_{scale}"] = start + dt * (np.arange(nints) + off)
    return np.rec.fromarrays(list(cols.values()), names=list(cols))


@pytest.fixture(scope="module")
def tso(tmp_path_factory, real_rules_cache):
    """A MIRI LRS slitless calints (SlitModel, 4 integrations of 416 x 72, a compact source along the
    trace, a transit-free star) made by webbflow's spec2 from a rateints, and calwebb_tso3 on its
    association by jwst (from the association's folder, as strun) and by webbflow, both with
    ``--steps.adaptive_trace_model.skip=false`` and ``save_results=true`` (the cube after the step,
    with its TRACEMODEL, as ``<exposure>_<asn_id>_adaptive_trace_model.fits``)."""
    import json
    import os
    import shutil

    from jwst.pipeline import Tso3Pipeline
    from parity import jwst_offline, quiet_jwst
    from stdatamodels.jwst import datamodels as dm
    from test_miri_lrs import DISTORTION, MIRI_REFS, NOT_USED, SPECWCS, _rate

    from webbflow import models
    from webbflow.flows.calwebb_spec2 import calibrate_exposure
    from webbflow.flows.cli import main
    from webbflow.tasks import load_all
    from webbflow.tasks.base import run_step

    load_all()
    base = tmp_path_factory.mktemp("atm_tso3")
    rate = _rate("MIR_LRS-SLITLESS", base)
    refs = {"distortion": str(DISTORTION), "specwcs": str(SPECWCS["MIR_LRS-SLITLESS"]),
            **dict.fromkeys(NOT_USED, "N/A")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = run_step("assign_wcs", models.open(rate), {}, references=refs).model
        from gwcs.wcstools import grid_from_bounding_box

        x, y = grid_from_bounding_box(m.meta.wcs.bounding_box)
        alpha = m.meta.wcs.transform("detector", "alpha_beta", x, y)[0]
        xc = float(np.nanmean(x[np.abs(alpha) < 0.05]))
    rng = np.random.default_rng(5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = dm.open(rate)
        yy, xx = np.mgrid[:416, :72]
        src = 800.0 * np.exp(-0.5 * ((xx - xc - 0.3) / 1.2) ** 2)
        src[(yy < y.min()) | (yy > y.max())] = 0
        data = rng.normal(5.0, 0.5, (NINTS, 416, 72)) + src * (1 + 0.002 * np.arange(NINTS))[:, None, None]
        data[:, 200, 40] = np.nan
        cube = dm.CubeModel(data.astype(np.float32))
        cube.update(r)
        cube.meta.wcsinfo = r.meta.wcsinfo
        cube.var_rnoise = np.full(data.shape, 0.02, np.float32)
        cube.var_poisson = (np.abs(data) / 100.0).astype(np.float32)
        cube.err = np.sqrt(cube.var_poisson + cube.var_rnoise).astype(np.float32)
        cube.dq = np.zeros(data.shape, np.uint32)
        cube.dq[:, 200, 40] = 1
        cube.meta.exposure.nints = NINTS
        cube.meta.exposure.integration_start, cube.meta.exposure.integration_end = 1, NINTS
        cube.int_times = _int_times(NINTS, r.meta.exposure.start_time)
        rateints = base / f"{TSO_ROOT}_rateints.fits"
        cube.save(rateints)
    steps2 = {"assign_wcs": {"override_distortion": refs["distortion"], "override_specwcs": refs["specwcs"]},
              **{s: {"skip": "true"} for s in ("flat_field", "photom", "extract_1d")}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calibrate_exposure(rateints, {}, steps=steps2, output_dir=base / "spec2")
    calints = base / "spec2" / f"{TSO_ROOT}_calints.fits"
    extract = dict(TSO_EXTRACT, override_extract1d=str(MIRI_REFS / "jwst_miri_extract1d_0005.json"))
    asn = {"asn_type": "tso3", "asn_rule": "candidate_Asn_Lv3SpecTSO", "asn_id": "o001", "asn_pool": "jw01234_pool",
           "program": "01234", "target": "1",
           "products": [{"name": TSO_PRODUCT, "members": [{"expname": calints.name, "exptype": "science"}]}]}
    out = {}
    for who in ("ours", "jwst"):
        d = out[who] = base / who
        d.mkdir()
        shutil.copyfile(calints, d / calints.name)
        (d / "jw01234-o001_tso3_00001_asn.json").write_text(json.dumps(asn))
    cwd = os.getcwd()
    with jwst_offline(real_rules_cache, "jwst_0541.pmap"), quiet_jwst(), warnings.catch_warnings(), \
            pytest.MonkeyPatch.context() as mp:
        warnings.simplefilter("ignore")
        mp.setattr(Tso3Pipeline, "prefetch_references", False)  # gain, readnoise: listed, never read
        os.chdir(out["jwst"])
        try:
            Tso3Pipeline.call("jw01234-o001_tso3_00001_asn.json", steps={
                "adaptive_trace_model": {"skip": False, "save_results": True}, "extract_1d": extract})
        finally:
            os.chdir(cwd)
    argv = ["run", "tso3", str(out["ours"] / "jw01234-o001_tso3_00001_asn.json"), "--output-dir", str(out["ours"]),
            "--steps.adaptive_trace_model.skip=false", "--steps.adaptive_trace_model.save_results=true"] + [f"--steps.extract_1d.{k}={v}" for k, v in extract.items()]
    with jwst_offline(real_rules_cache, "jwst_0541.pmap"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(argv) == 0
    return SimpleNamespace(ours=out["ours"], jwst=out["jwst"], calints=calints, argv=argv, cache=real_rules_cache)


def test_tso3_with_the_step_on_writes_jwsts_products(tso):
    """crfints, the step's product (save_results), x1dints and whtlt.ecsv as jwst writes them, whole;
    S_TRCMOD = COMPLETE on the x1dints."""
    from test_products_whole import compare_products

    suffixes = ("crfints.fits", "adaptive_trace_model.fits", "x1dints.fits", "whtlt.ecsv")
    names = {p.name for p in tso.jwst.iterdir() if p.name.endswith(suffixes)}
    assert names == {f"{TSO_ROOT}_o001_crfints.fits", f"{TSO_ROOT}_o001_adaptive_trace_model.fits",
                     f"{TSO_PRODUCT}_x1dints.fits", f"{TSO_PRODUCT}_whtlt.ecsv"}
    ours = {p.name for p in tso.ours.iterdir() if p.suffix in (".fits", ".ecsv")} - {tso.calints.name}
    assert ours == names
    problems = compare_products(tso.ours, tso.jwst, names, suffixes=suffixes)
    assert not problems, "\n".join(problems)
    with fits.open(tso.ours / f"{TSO_ROOT}_o001_adaptive_trace_model.fits") as atm:
        assert atm[0].header["S_TRCMOD"] == "COMPLETE" and atm["TRACEMODEL"].data.shape == (416, 72)
        assert np.isfinite(atm["TRACEMODEL"].data).sum() > 300
    with fits.open(tso.ours / f"{TSO_PRODUCT}_x1dints.fits") as x1d, \
            fits.open(tso.ours / f"{TSO_ROOT}_o001_crfints.fits") as crf:
        assert x1d[0].header["S_TRCMOD"] == "COMPLETE"
        assert "S_TRCMOD" not in crf[0].header  # the crfints is saved before the step
        flux = np.asarray(x1d["EXTRACT1D"].data["FLUX"])
        assert flux.shape[0] == NINTS and np.isfinite(flux).mean() > 0.5


def test_tso3_trace_model_fits_the_median_image(tso):
    """The step alone on the calints (as tso3 runs it): TRACEMODEL is one 2-D image, fitted on the
    median over the integrations, following the star; the cube's data untouched."""
    from webbflow import models
    from webbflow.tasks import load_all
    from webbflow.tasks.base import run_step

    load_all()
    cube = models.open(tso.calints)
    before = cube.data.copy()
    res = run_step("adaptive_trace_model", cube, {"skip": False}, references={})
    assert res.status == "COMPLETE"
    trace = res.model.trace_model
    assert trace.shape == before.shape[1:]
    np.testing.assert_array_equal(res.model.data, before)
    median = np.nanmedian(before, axis=0)
    rows = np.nonzero(np.isfinite(trace).any(axis=1))[0]
    assert rows.size > 100
    r = rows[rows.size // 2]
    peak = np.nanargmax(trace[r])
    assert abs(trace[r, peak] / median[r, peak] - 1) < 0.05
    with pytest.raises(Exception) as exc:  # oversampling a time series is refused, as jwst refuses it
        run_step("adaptive_trace_model", models.open(tso.calints), {"skip": False, "oversample": 2.0}, references={})
    assert "\n" not in str(exc.value) and "oversampl" in str(exc.value)


def test_tso3_on_a_cube_the_step_does_not_apply_to_records_failed(tmp_path, real_rules_cache):
    """The real MIRI LRS slitless cube of 2019 (a CubeModel, not jwst 2.0's SlitModel calints) in tso3
    with the step on: jwst's step declines it (S_TRCMOD = FAILED), and tso3 goes on to the spectra."""
    from parity import jwst_offline
    from test_spectra_real import EXPOSURE as EXPOSURE_REAL
    from test_spectra_real import NA, PRODUCT, _asn, _tso_member

    from webbflow.flows.calwebb_tso3 import run_tso3

    asn = _asn(tmp_path, _tso_member(tmp_path))
    with jwst_offline(real_rules_cache, "jwst_0541.pmap"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_tso3(asn, output_dir=tmp_path, steps={"extract_1d": NA, "adaptive_trace_model": {"skip": "false"}})
    written = {p.name for p in tmp_path.iterdir()} - {asn.name, f"{EXPOSURE_REAL}_calints.fits"}
    # by default jwst's tso3 saves nothing for the step (save_results is false)
    assert written == {f"{EXPOSURE_REAL}_o001_crfints.fits", f"{PRODUCT}_x1dints.fits", f"{PRODUCT}_whtlt.ecsv"}
    with fits.open(tmp_path / f"{PRODUCT}_x1dints.fits") as x1d:
        assert x1d[0].header["S_TRCMOD"] == "FAILED"
        assert len(x1d["EXTRACT1D"].data) == 10  # every integration's spectrum
    assert (tmp_path / f"{PRODUCT}_whtlt.ecsv").exists()
