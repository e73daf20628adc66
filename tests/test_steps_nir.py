"""Detector1 steps group 1: group_scale, dq_init, saturation, ipc, superbias, refpix,
linearity, dark_current, gain_scale.

Each step has unit tests on tiny arrays (the physics, and skip=True) and a
parity test against jwst 3.0 on the same simulated input file with the same
reference files.  Parity tolerances (issue 5): float arrays within rtol 1e-4
for at least 99.9 % of pixels, DQ identical for at least 99.9 % of pixels.
The measured agreement is printed (run with -s to see it).
"""

from __future__ import annotations

import numpy as np
import pytest
from parity import assert_parity
from steputils import (
    dq_def_table,
    make_ramp,
    make_ref,
    place_sci,
    ref_meta,
    run_jwst_step,
    sci_region,
    set_exposure_meta,
)

from webbflow import models
from webbflow.models import dqflags
from webbflow.tasks import load_all
from webbflow.tasks.base import STEPS, run_step

load_all()

RTOL = 1e-4
MIN_FRACTION = 0.999
SAT = dqflags.SATURATED
DNU = dqflags.DO_NOT_USE
REF = dqflags.REFERENCE_PIXEL


@pytest.fixture(scope="module")
def cache(real_rules_cache):
    return real_rules_cache


def _check_skip(name, model, refs=None):
    """skip=True leaves data unchanged and marks the step SKIPPED."""
    before = model.data.copy()
    res = run_step(name, model, {"skip": True}, references=refs or {})
    assert res.status == "SKIPPED"
    assert np.array_equal(res.model.data, before)
    attr = STEPS[name].cal_step
    assert getattr(res.model.meta.cal_step, attr) == "SKIPPED"


def _opens_in_stdatamodels(path, clsname):
    from stdatamodels.jwst import datamodels

    with datamodels.open(str(path)) as m:
        assert type(m).__name__ == clsname, f"{path} opened as {type(m).__name__}, expected {clsname}"


# ---------------------------------------------------------------------------
# group_scale


def test_group_scale_unit():
    m = make_ramp((1, 3, 4, 4), nframes=5, frame_divisor=4)
    before = m.data.copy()
    res = run_step("group_scale", m, {})
    assert res.status == "COMPLETE"
    np.testing.assert_allclose(res.model.data, before * 0.8, rtol=1e-7)
    assert res.model.meta.cal_step.group_scale == "COMPLETE"
    # NFRAMES equal to FRMDIVSR, or a power of 2 without FRMDIVSR: nothing to do
    for nframes, divisor in ((4, 4), (4, None)):
        m = make_ramp((1, 3, 4, 4), nframes=nframes, frame_divisor=divisor)
        before = m.data.copy()
        res = run_step("group_scale", m, {})
        assert res.status == "SKIPPED" and np.array_equal(res.model.data, before)
        assert res.model.meta.cal_step.group_scale == "SKIPPED"
    _check_skip("group_scale", make_ramp((1, 3, 4, 4), nframes=5, frame_divisor=4))


@pytest.mark.parity
def test_group_scale_parity(tmp_path, cache):
    from jwst.group_scale import GroupScaleStep

    sci = make_ramp((2, 4, 32, 32), level1b=True, nframes=5, frame_divisor=4, readpatt="MEDIUM8")
    path = sci.save(tmp_path / "gs_uncal.fits")
    ours = run_step("group_scale", models.open(path), {}).model
    theirs = run_jwst_step(GroupScaleStep, path, cache, {})
    assert theirs.meta.cal_step.group_scale == ours.meta.cal_step.group_scale == "COMPLETE"
    assert_parity(ours, theirs, ["data"], rtol=RTOL, min_fraction=MIN_FRACTION)


# ---------------------------------------------------------------------------
# dq_init


def _tiny_mask(sci, dq):
    m = models.MaskModel(dq=np.asarray(dq, dtype=np.uint32))
    ref_meta(m, sci, "mask", full=False, xstart=sci.meta.subarray.xstart, ystart=sci.meta.subarray.ystart)
    return m


def test_dq_init_unit():
    sci = make_ramp((2, 3, 4, 4), level1b=True)
    dq = np.zeros((4, 4), np.uint32)
    dq[1, 2] = DNU | dqflags.DEAD
    dq[3, 0] = dqflags.HOT
    res = run_step("dq_init", sci, {}, references={"mask": _tiny_mask(sci, dq)})
    out = res.model
    assert isinstance(out, models.RampModel) and not isinstance(out, models.Level1bModel)
    assert out.data.dtype == np.float32
    np.testing.assert_array_equal(out.data, sci.data.astype(np.float32))
    np.testing.assert_array_equal(out.pixeldq, dq)
    # DO_NOT_USE reaches every group; other flags stay in PIXELDQ only
    assert np.all(out.groupdq[:, :, 1, 2] == DNU)
    assert out.groupdq[:, :, 3, 0].sum() == 0
    assert out.meta.cal_step.dq_init == "COMPLETE"
    assert out.meta.model_type == "RampModel"
    _check_skip("dq_init", make_ramp((1, 2, 4, 4)), {"mask": _tiny_mask(sci, dq)})


def test_dq_init_dq_def_mapping():
    """Mask flags numbered the file's own way (DQ_DEF) are mapped to JWST's bits."""
    sci = make_ramp((1, 2, 4, 4))
    mask = _tiny_mask(sci, np.array([[1, 2, 4, 0]] * 4, np.uint32))
    mask.dq_def = dq_def_table([(0, 1, "DO_NOT_USE", "bad"), (1, 2, "HOT", "hot"), (2, 4, "SPOOKY", "not a JWST flag")])
    out = run_step("dq_init", sci, {}, references={"mask": mask}).model
    np.testing.assert_array_equal(out.pixeldq[0], [DNU, dqflags.HOT, 0, 0])


@pytest.mark.parity
def test_dq_init_parity_real_mask(tmp_path, cache, shared_data):
    """A 64x64 NIRCam NRCA1 subarray, the real full-frame NRCA1 mask, and a user DQ file."""
    from astropy.io import fits
    from jwst.dq_init import DQInitStep

    mask = shared_data / "real" / "jwst_nircam_mask_ref.fits"
    sci = make_ramp((2, 4, 64, 64), level1b=True, detector="NRCA1", noutputs=1)
    place_sci(sci, (1, 1985))  # a corner of the detector: has reference pixels
    path = sci.save(tmp_path / "dq_uncal.fits")
    user = np.zeros((64, 64), np.uint32)
    user[10:12, 20:23] = dqflags.DO_NOT_USE | dqflags.WARM
    upath = tmp_path / "user_dq.fits"
    fits.PrimaryHDU(user).writeto(upath)

    ours = run_step("dq_init", models.open(path), {"user_supplied_dq": str(upath)}, references={"mask": str(mask)}).model
    theirs = run_jwst_step(DQInitStep, path, cache, {"mask": mask}, user_supplied_dq=str(upath))
    assert_parity(ours, theirs, ["data", "pixeldq", "groupdq"], rtol=RTOL, min_fraction=MIN_FRACTION)
    assert np.array_equal(ours.pixeldq, theirs.pixeldq), "dq_init is exact"
    assert ours.pixeldq[10, 20] & dqflags.WARM
    assert np.any(ours.pixeldq & REF), "the corner holds reference pixels"
    # our product opens in stdatamodels as a RampModel
    out = ours.save(tmp_path / "dq_ours.fits")
    _opens_in_stdatamodels(out, "RampModel")


# ---------------------------------------------------------------------------
# saturation


def _sat_refs(sci, frame=(128, 128), origin=(1, 1), level=52000.0, seed=3):
    rng = np.random.default_rng(seed)
    thresh = (level + rng.normal(0, 500, frame)).astype(np.float32)
    sdq = np.zeros(frame, np.uint32)
    ys, xs = sci_region(sci)
    # inside the science region: a NaN level and a NO_SAT_CHECK pixel
    thresh[ys.start + 5, xs.start + 6] = np.nan
    sdq[ys.start + 7, xs.start + 8] = dqflags.NO_SAT_CHECK
    sat = make_ref(models.SaturationModel, sci, "saturation", origin=origin, data=thresh, dq=sdq)
    bias = make_ref(models.SuperBiasModel, sci, "superbias", origin=origin,
                    data=np.full(frame, 12000.0, np.float32) + rng.normal(0, 20, frame).astype(np.float32))
    return sat, bias


def test_saturation_unit():
    sci = make_ramp((1, 5, 6, 6))
    sci.data[...] = 1000.0
    sci.data[0, :, 2, 3] = [1000, 3000, 6000, 9000, 12000]  # crosses 5000 in group 3 (index 2)
    sci.data[0, 1, 5, 5] = 0.0  # A/D floor in one group
    sat = models.SaturationModel(data=np.full((6, 6), 5000.0, np.float32))
    ref_meta(sat, sci, "saturation", full=False)
    out = run_step("saturation", sci, {"n_pix_grow_sat": 0}, references={"saturation": sat, "superbias": "N/A"}).model
    flags = out.groupdq[0, :, 2, 3] & SAT
    np.testing.assert_array_equal(flags, [0, 0, SAT, SAT, SAT])
    assert out.groupdq[0, 1, 5, 5] == dqflags.AD_FLOOR | DNU
    assert out.groupdq[0, 2, 5, 5] == 0
    assert (out.groupdq & SAT).sum() == 3 * SAT
    # with one ring of neighbours grown
    sci2 = make_ramp((1, 5, 6, 6))
    sci2.data[...] = 1000.0
    sci2.data[0, :, 2, 3] = [1000, 3000, 6000, 9000, 12000]
    out2 = run_step("saturation", sci2, {}, references={"saturation": sat, "superbias": "N/A"}).model
    assert np.all(out2.groupdq[0, 2, 1:4, 2:5] & SAT)
    assert not np.any(out2.groupdq[0, 1] & SAT)
    _check_skip("saturation", make_ramp((1, 2, 6, 6)), {"saturation": sat, "superbias": "N/A"})


@pytest.mark.parity
@pytest.mark.parametrize("nframes,groupgap,readpatt,grow", [(1, 0, "RAPID", 1), (4, 1, "SHALLOW4", 2)])
def test_saturation_parity(tmp_path, cache, nframes, groupgap, readpatt, grow):
    """Subarray 64x64 inside 128x128 references; NaN level, NO_SAT_CHECK, zero frame, saturating stars."""
    from jwst.saturation import SaturationStep

    sci = make_ramp((2, 6, 64, 64), nframes=nframes, groupgap=groupgap, readpatt=readpatt, rate=1800.0,
                    zero_frame=True, noutputs=1)
    place_sci(sci, (33, 17))
    sci.zeroframe = sci.data[:, 0] - 50.0
    sci.zeroframe[0, 3, 3] = 0.0
    sci.data[1, 1, 20, 20] = 0.0  # A/D floor
    # a pixel that jumps near saturation in group 2 (exercises the frame-averaged group-2 check)
    sci.data[:, 1:, 30, 40] += 38000.0
    sat, bias = _sat_refs(sci)
    path = sci.save(tmp_path / "sat_in.fits")
    spath, bpath = sat.save(tmp_path / "sat_ref.fits"), bias.save(tmp_path / "bias_ref.fits")
    params = {"n_pix_grow_sat": grow}
    ours = run_step("saturation", models.open(path), params, references={"saturation": spath, "superbias": bpath}).model
    theirs = run_jwst_step(SaturationStep, path, cache, {"saturation": spath, "superbias": bpath}, **params)
    assert_parity(ours, theirs, ["data", "groupdq", "pixeldq", "zeroframe"], rtol=RTOL, min_fraction=MIN_FRACTION)
    assert np.array_equal(ours.groupdq, theirs.groupdq)
    assert (ours.groupdq & SAT).any() and (ours.pixeldq & dqflags.NO_SAT_CHECK).any()


# ---------------------------------------------------------------------------
# superbias


def test_superbias_unit():
    sci = make_ramp((2, 3, 4, 4), zero_frame=True)
    sci.zeroframe = sci.data[:, 0].copy()
    sci.zeroframe[1, 0, 0] = 0.0
    before = sci.data.copy()
    zbefore = sci.zeroframe.copy()
    b = np.arange(16, dtype=np.float32).reshape(4, 4) * 10
    b[2, 2] = np.nan
    bdq = np.zeros((4, 4), np.uint32)
    bdq[1, 1] = dqflags.UNRELIABLE_BIAS
    bias = models.SuperBiasModel(data=b, dq=bdq)
    ref_meta(bias, sci, "superbias", full=False)
    out = run_step("superbias", sci, {}, references={"superbias": bias}).model
    expect = np.where(np.isnan(b), 0, b)
    np.testing.assert_array_equal(out.data, before - expect)
    assert out.pixeldq[1, 1] == dqflags.UNRELIABLE_BIAS
    np.testing.assert_array_equal(out.zeroframe[0], zbefore[0] - expect)
    assert out.zeroframe[1, 0, 0] == 0.0
    assert np.isnan(bias.data[2, 2]), "the reference is not modified"
    _check_skip("superbias", make_ramp((1, 2, 4, 4)), {"superbias": bias})


@pytest.mark.parity
def test_superbias_parity(tmp_path, cache):
    """Subarray cut from a 128x128 bias with NaNs and DQ flags numbered by its own DQ_DEF."""
    from jwst.superbias import SuperBiasStep

    sci = make_ramp((2, 5, 64, 64), zero_frame=True)
    place_sci(sci, (17, 49))
    sci.zeroframe = sci.data[:, 0] - 5.0
    sci.zeroframe[0, :2, :2] = 0.0
    rng = np.random.default_rng(7)
    b = (11000 + rng.normal(0, 300, (128, 128))).astype(np.float32)
    b[60, 30] = np.nan
    bdq = np.zeros((128, 128), np.uint32)
    bdq[55:58, 40:44] = 2  # file bit 2 = UNRELIABLE_BIAS
    bdq[70, 70] = 1 | 4  # DO_NOT_USE and a flag that is not a JWST one
    bias = make_ref(models.SuperBiasModel, sci, "superbias", data=b, dq=bdq)
    bias.dq_def = dq_def_table([(0, 1, "DO_NOT_USE", "bad"), (1, 2, "UNRELIABLE_BIAS", "bias"), (2, 4, "FUZZY", "?")])
    path, bpath = sci.save(tmp_path / "sb_in.fits"), bias.save(tmp_path / "sb_ref.fits")
    ours = run_step("superbias", models.open(path), {}, references={"superbias": bpath}).model
    theirs = run_jwst_step(SuperBiasStep, path, cache, {"superbias": bpath})
    assert_parity(ours, theirs, ["data", "pixeldq", "zeroframe"], rtol=RTOL, min_fraction=MIN_FRACTION)
    assert np.array_equal(ours.pixeldq, theirs.pixeldq)
    assert ours.pixeldq[55 - 48, 40 - 16] == dqflags.UNRELIABLE_BIAS
