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
    sci.zeroframe[1, 10, 10] = 60000.0  # saturated zero frame
    # a pixel that jumps near saturation in group 2 and saturates in group 3: with
    # frame-averaged groups its group 2 may hold saturated frames (DO_NOT_USE)
    sci.data[:, 0, 30, 40] = 12500.0
    sci.data[:, 1, 30, 40] = 50000.0
    sci.data[:, 2:, 30, 40] = 60000.0
    sat, bias = _sat_refs(sci)
    sat.data[16 + 30, 32 + 40] = 52000.0
    path = sci.save(tmp_path / "sat_in.fits")
    spath, bpath = sat.save(tmp_path / "sat_ref.fits"), bias.save(tmp_path / "bias_ref.fits")
    params = {"n_pix_grow_sat": grow}
    ours = run_step("saturation", models.open(path), params, references={"saturation": spath, "superbias": bpath}).model
    theirs = run_jwst_step(SaturationStep, path, cache, {"saturation": spath, "superbias": bpath}, **params)
    assert_parity(ours, theirs, ["data", "groupdq", "pixeldq", "zeroframe"], rtol=RTOL, min_fraction=MIN_FRACTION)
    assert np.array_equal(ours.groupdq, theirs.groupdq)
    assert (ours.groupdq & SAT).any() and (ours.pixeldq & dqflags.NO_SAT_CHECK).any()
    assert ours.zeroframe[1, 10, 10] == 0.0
    assert ours.groupdq[1, 1, 20, 20] & (dqflags.AD_FLOOR | DNU) == dqflags.AD_FLOOR | DNU
    group2 = ours.groupdq[:, 1, 30, 40]
    if nframes > 1:
        assert np.all(group2 == DNU), "group 2 of a frame-averaged ramp that saturated in group 3"
    else:
        assert np.all(group2 == 0)


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


# ---------------------------------------------------------------------------
# ipc


def _ipc_kernel_2d():
    k = np.full((3, 3), -0.002, np.float32)
    k[0, 1] = k[2, 1] = -0.0135
    k[1, 0] = k[1, 2] = -0.0145
    k[1, 1] = 1.0 + 0.056
    return k


def test_ipc_unit():
    """A kernel with only a right-neighbour weight shifts a point source; reference pixels are untouched."""
    sci = make_ramp((1, 2, 8, 8), xstart=1, ystart=1, noutputs=1)
    sci.meta.subarray.name = "SUB64P"
    sci.data[...] = 0.0
    sci.data[0, :, 5, 5] = 100.0
    sci.data[0, :, 0:4, :] = 7.0  # bottom reference rows
    k = np.zeros((3, 3), np.float32)
    k[1, 1] = 1.0
    k[1, 2] = 0.1  # output(y, x) += 0.1 * input(y, x - 1)
    ipc = models.IPCModel(data=k)
    ref_meta(ipc, sci, "ipc", full=False)
    out = run_step("ipc", sci, {}, references={"ipc": ipc}).model
    assert out.data[0, 0, 5, 5] == pytest.approx(100.0)
    assert out.data[0, 0, 5, 6] == pytest.approx(10.0)
    assert out.data[0, 0, 5, 4] == 0.0
    assert np.all(out.data[0, :, 0:4, :] == 7.0), "reference rows are not convolved"
    _check_skip("ipc", make_ramp((1, 2, 8, 8)), {"ipc": ipc})


@pytest.mark.parity
@pytest.mark.parametrize("kind", ["2d", "4d"])
def test_ipc_parity(tmp_path, cache, kind):
    """IPC is skipped by default in practice (CRDS gives N/A); validated here when enabled."""
    from jwst.ipc import IPCStep

    sci = make_ramp((2, 4, 64, 64), noutputs=1)
    place_sci(sci, (1, 3))  # the left columns and bottom rows hold (some) reference pixels
    if kind == "2d":
        ipc = models.IPCModel(data=_ipc_kernel_2d())
        ref_meta(ipc, sci, "ipc", full=False)
    else:
        rng = np.random.default_rng(5)
        k = np.broadcast_to(_ipc_kernel_2d()[:, :, None, None], (3, 3, 128, 128)).copy()
        k *= (1 + rng.normal(0, 0.01, k.shape)).astype(np.float32)
        ipc = make_ref(models.IPCModel, sci, "ipc", data=k)
    path, ipath = sci.save(tmp_path / "ipc_in.fits"), ipc.save(tmp_path / f"ipc_{kind}.fits")
    ours = run_step("ipc", models.open(path), {}, references={"ipc": ipath}).model
    theirs = run_jwst_step(IPCStep, path, cache, {"ipc": ipath})
    assert_parity(ours, theirs, ["data"], rtol=RTOL, min_fraction=MIN_FRACTION)


# ---------------------------------------------------------------------------
# linearity


def _lin_coeffs(frame, seed=11):
    rng = np.random.default_rng(seed)
    c = np.zeros((4,) + frame, np.float32)
    c[1] = 1.0
    c[2] = (2.0e-6 * (1 + rng.normal(0, 0.05, frame))).astype(np.float32)
    c[3] = (1.0e-11 * (1 + rng.normal(0, 0.05, frame))).astype(np.float32)
    return c


def _inverse_coeffs(c):
    """Series inverse of y = x + a x^2 + b x^3 to third order: x = y - a y^2 + (2a^2 - b) y^3."""
    inv = np.zeros_like(c)
    inv[1] = 1.0
    inv[2] = -c[2]
    inv[3] = 2 * c[2] ** 2 - c[3]
    return inv


def test_linearity_unit():
    sci = make_ramp((1, 3, 4, 4))
    sci.data[...] = 20000.0
    sci.groupdq[0, 2, 0, 0] = SAT
    c = np.zeros((3, 4, 4), np.float32)
    c[1] = 1.0
    c[2] = 1.0e-6
    c[2, 1, 1] = np.nan  # no correction, NO_LIN_CORR
    c[1, 2, 2] = 0.0  # zero linear term: no correction, NO_LIN_CORR
    ldq = np.zeros((4, 4), np.uint32)
    ldq[3, 3] = dqflags.NO_LIN_CORR
    lin = models.LinearityModel(coeffs=c, dq=ldq)
    ref_meta(lin, sci, "linearity", full=False)
    out = run_step("linearity", sci, {}, references={"linearity": lin}).model
    expect = np.float32(20000.0) + np.float32(1e-6) * np.float32(20000.0) ** 2
    assert out.data[0, 0, 0, 1] == pytest.approx(expect, rel=1e-6)
    assert out.data[0, 2, 0, 0] == 20000.0, "saturated groups are not corrected"
    assert out.data[0, 1, 0, 0] == pytest.approx(expect, rel=1e-6)
    for y, x in ((1, 1), (2, 2), (3, 3)):
        assert np.all(out.data[0, :, y, x] == 20000.0)
        assert out.pixeldq[y, x] & dqflags.NO_LIN_CORR
    assert np.isnan(lin.coeffs[2, 1, 1]), "the reference is not modified"
    _check_skip("linearity", make_ramp((1, 2, 4, 4)), {"linearity": lin})


@pytest.mark.parity
@pytest.mark.parametrize("nframes,readpatt", [(1, "RAPID"), (4, "BRIGHT2")])
def test_linearity_parity(tmp_path, cache, nframes, readpatt):
    """Subarray cut from 128x128 coefficients (with INV_COEFFS); NaN / zero / flagged pixels, saturation, zero frame.

    With NFRAMES > 1 jwst corrects frame by frame using the inverse coefficients.
    """
    from jwst.linearity import LinearityStep

    sci = make_ramp((2, 5, 64, 64), nframes=nframes, readpatt=readpatt, bias=0.0, rate=4000.0, zero_frame=True)
    place_sci(sci, (33, 17))
    sci.zeroframe = sci.data[:, 0] * 0.5
    sci.zeroframe[0, 0, 0] = 0.0
    sci.groupdq[:, 3:, 10, 10] = SAT
    c = _lin_coeffs((128, 128))
    inv = _inverse_coeffs(c)
    ys, xs = sci_region(sci)
    c[2, ys.start + 3, xs.start + 4] = np.nan
    c[1, ys.start + 5, xs.start + 6] = 0.0
    ldq = np.zeros((128, 128), np.uint32)
    ldq[ys.start + 7, xs.start + 8] = dqflags.NO_LIN_CORR
    lin = make_ref(models.LinearityModel, sci, "linearity", coeffs=c, dq=ldq, inv_coeffs=inv)
    path, lpath = sci.save(tmp_path / "lin_in.fits"), lin.save(tmp_path / "lin_ref.fits")
    ours = run_step("linearity", models.open(path), {}, references={"linearity": lpath}).model
    theirs = run_jwst_step(LinearityStep, path, cache, {"linearity": lpath})
    assert_parity(ours, theirs, ["data", "pixeldq", "zeroframe"], rtol=RTOL, min_fraction=MIN_FRACTION)
    assert np.array_equal(ours.pixeldq, theirs.pixeldq)
    assert (ours.pixeldq & dqflags.NO_LIN_CORR).sum() == 3 * dqflags.NO_LIN_CORR


# ---------------------------------------------------------------------------
# dark_current


def test_dark_unit_frame_averaging():
    """NFRAMES=2, GROUPGAP=1: group g subtracts the mean of dark frames 3g and 3g+1."""
    sci = make_ramp((1, 3, 2, 2), nframes=2, groupgap=1)
    before = sci.data.copy()
    frames = np.arange(9, dtype=np.float32)[:, None, None] * np.ones((1, 2, 2), np.float32)
    frames[4, 1, 1] = np.nan  # counts as 0
    ddq = np.zeros((2, 2), np.uint32)
    ddq[0, 1] = dqflags.HOT
    dark = models.DarkModel(data=frames, dq=ddq)
    ref_meta(dark, sci, "dark", full=False)
    dark.meta.exposure.nframes, dark.meta.exposure.groupgap, dark.meta.exposure.ngroups = 1, 0, 9
    res = run_step("dark_current", sci, {}, references={"dark": dark})
    out = res.model
    assert res.status == "COMPLETE" and out.meta.cal_step.dark_sub == "COMPLETE"
    np.testing.assert_allclose(out.data[0, :, 0, 0], before[0, :, 0, 0] - np.array([0.5, 3.5, 6.5]))
    np.testing.assert_allclose(out.data[0, 1, 1, 1], before[0, 1, 1, 1] - 1.5)
    assert out.pixeldq[0, 1] == dqflags.HOT
    np.testing.assert_array_equal(out.average_dark_current, np.zeros((2, 2)))
    # a dark with more frames per group than the science data cannot be used
    sci2 = make_ramp((1, 3, 2, 2))
    dark.meta.exposure.nframes = 2
    before2 = sci2.data.copy()
    res2 = run_step("dark_current", sci2, {}, references={"dark": dark})
    assert res2.status == "SKIPPED" and np.array_equal(res2.model.data, before2)
    assert res2.model.meta.cal_step.dark_sub == "SKIPPED"
    _check_skip("dark_current", make_ramp((1, 2, 2, 2)), {"dark": dark})


def test_dark_average_dark_current_sources():
    sci = make_ramp((1, 2, 2, 2))
    dark = models.DarkModel(data=np.zeros((2, 2, 2), np.float32))
    ref_meta(dark, sci, "dark", full=False)
    dark.meta.exposure.nframes, dark.meta.exposure.groupgap = 1, 0
    dark.meta.exposure.average_dark_current = 0.03
    out = run_step("dark_current", sci, {}, references={"dark": dark}).model
    np.testing.assert_allclose(out.average_dark_current, 0.03)  # the keyword
    dark.average_dark_current = np.array([[0.1, 0.2], [0.3, 0.4]], np.float32)
    out = run_step("dark_current", out, {}, references={"dark": dark}).model
    np.testing.assert_allclose(out.average_dark_current, dark.average_dark_current)  # the array
    out = run_step("dark_current", out, {"average_dark_current": 0.5}, references={"dark": dark}).model
    np.testing.assert_allclose(out.average_dark_current, 0.5)  # the parameter wins


def _nir_dark(sci, ngroups, seed=21, nframes=1, groupgap=0):
    rng = np.random.default_rng(seed)
    rate = rng.uniform(0.001, 0.05, (128, 128)).astype(np.float32)
    frames = np.arange(1, ngroups + 1, dtype=np.float32)[:, None, None] * rate * 10.0
    frames = frames + rng.normal(0, 0.5, frames.shape).astype(np.float32)
    ys, xs = sci_region(sci)
    frames[3, ys.start + 2, xs.start + 2] = np.nan
    ddq = np.zeros((128, 128), np.uint32)
    ddq[ys.start + 4, xs.start + 5] = dqflags.HOT | DNU
    dark = make_ref(models.DarkModel, sci, "dark", data=frames.astype(np.float32), dq=ddq)
    dark.meta.exposure.nframes, dark.meta.exposure.groupgap, dark.meta.exposure.ngroups = nframes, groupgap, ngroups
    dark.meta.exposure.readpatt = "RAPID"
    return dark


@pytest.mark.parity
@pytest.mark.parametrize(
    "nframes,groupgap,readpatt,dark_groups",
    [(1, 0, "RAPID", 10), (4, 1, "SHALLOW4", 30), (2, 0, "BRIGHT2", 6)],
    ids=["same-readout", "averaged", "averaged-extrapolated"],
)
def test_dark_parity_nir(tmp_path, cache, monkeypatch, nframes, groupgap, readpatt, dark_groups):
    """NIR 3-D darks on a 64x64 subarray: direct, frame-averaged (SHALLOW4) and extrapolated."""
    from jwst.dark_current import DarkCurrentStep

    monkeypatch.chdir(tmp_path)  # jwst writes dark_output into its output_dir (the working directory)

    sci = make_ramp((2, 5, 64, 64), nframes=nframes, groupgap=groupgap, readpatt=readpatt)
    place_sci(sci, (33, 17))
    dark = _nir_dark(sci, dark_groups)
    dark = _cut(dark, sci)
    if nframes == 1:
        # a per-pixel average dark current array (AVDRKCUR) in the reference: jwst 3.0 applies it
        # only to a ramp that already has an AVDRKCUR array of that shape, so here it is ignored
        dark.average_dark_current = np.random.default_rng(1).uniform(0.001, 0.01, (64, 64)).astype(np.float32)
    path, dpath = sci.save(tmp_path / "dark_in.fits"), dark.save(tmp_path / "dark_ref.fits")
    out_ours, out_jwst = tmp_path / "ours_dark.fits", tmp_path / "jwst_dark.fits"
    ours = run_step("dark_current", models.open(path), {"dark_output": str(out_ours)}, references={"dark": dpath}).model
    theirs = run_jwst_step(DarkCurrentStep, path, cache, {"dark": dpath}, dark_output=out_jwst.name)
    assert theirs.meta.cal_step.dark_sub == ours.meta.cal_step.dark_sub == "COMPLETE"
    arrays = ["data", "pixeldq"] + (["average_dark_current"] if theirs.average_dark_current is not None else [])
    assert_parity(ours, theirs, arrays, rtol=RTOL, min_fraction=MIN_FRACTION)
    assert (ours.has("average_dark_current")) == (theirs.average_dark_current is not None)
    # the dark that was subtracted, as saved by both
    from stdatamodels.jwst import datamodels

    saved_jwst = datamodels.open(str(out_jwst))
    saved_ours = models.open(out_ours)
    assert saved_ours.data.shape == saved_jwst.data.shape
    assert saved_ours.meta.exposure.nframes == saved_jwst.meta.exposure.nframes == nframes
    assert_parity(saved_ours, saved_jwst, ["data"], rtol=RTOL, min_fraction=MIN_FRACTION)


def _cut(ref, sci):
    """jwst 3.0's dark step needs a dark that matches the subarray: cut ours to it."""
    ys, xs = sci_region(sci)
    ref.data = ref.data[..., ys, xs].copy()
    ref.dq = ref.dq[..., ys, xs].copy()
    ref.meta.subarray.xstart, ref.meta.subarray.ystart = sci.meta.subarray.xstart, sci.meta.subarray.ystart
    ref.meta.subarray.xsize, ref.meta.subarray.ysize = sci.meta.subarray.xsize, sci.meta.subarray.ysize
    ref.meta.subarray.name = sci.meta.subarray.name
    return ref


def test_dark_full_frame_reference_cut_to_subarray():
    """A dark larger than the subarray is cut to it (same result as a matching dark)."""
    sci = make_ramp((1, 4, 64, 64))
    place_sci(sci, (33, 17))
    big = _nir_dark(sci, 6)
    small = _cut(_nir_dark(sci, 6), sci)
    a = run_step("dark_current", sci.copy(), {}, references={"dark": big}).model
    b = run_step("dark_current", sci.copy(), {}, references={"dark": small}).model
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(a.pixeldq, b.pixeldq)


@pytest.mark.parity
def test_dark_parity_miri(tmp_path, cache):
    """MIRI 4-D dark (DarkMIRIModel) with 2 integrations for a 3-integration exposure, AVDRKCUR keyword."""
    from jwst.dark_current import DarkCurrentStep

    sci = make_ramp((3, 5, 64, 72), detector="MIRIMAGE", bias=20000.0, rate=40.0, noutputs=1)
    place_sci(sci, (1, 1))
    sci.meta.subarray.name = "MASK1065"
    rng = np.random.default_rng(9)
    d = (np.arange(1, 8, dtype=np.float32)[None, :, None, None] * rng.uniform(0.5, 2, (2, 1, 64, 72))).astype(np.float32)
    d[1] += 3.0  # the second integration's dark differs
    ddq = np.zeros((2, 1, 64, 72), np.uint32)
    ddq[0, 0, 5, 5] = dqflags.HOT
    ddq[1, 0, 6, 6] = dqflags.WARM
    dark = models.DarkMIRIModel(data=d, dq=ddq)
    ref_meta(dark, sci, "dark", full=False)
    dark.meta.exposure.nframes, dark.meta.exposure.groupgap, dark.meta.exposure.ngroups = 1, 0, 7
    dark.meta.exposure.readpatt = "FASTR1"
    dark.meta.exposure.average_dark_current = 0.02
    path, dpath = sci.save(tmp_path / "mdark_in.fits"), dark.save(tmp_path / "mdark_ref.fits")
    _opens_in_stdatamodels(dpath, "DarkMIRIModel")
    ours = run_step("dark_current", models.open(path), {}, references={"dark": dpath}).model
    theirs = run_jwst_step(DarkCurrentStep, path, cache, {"dark": dpath})
    assert_parity(ours, theirs, ["data", "pixeldq", "average_dark_current"], rtol=RTOL, min_fraction=MIN_FRACTION)
    assert ours.pixeldq[5, 5] == dqflags.HOT and ours.pixeldq[6, 6] == dqflags.WARM
    np.testing.assert_allclose(ours.average_dark_current, 0.02)
    # with the parameter instead
    ours2 = run_step("dark_current", models.open(path), {"average_dark_current": 0.5}, references={"dark": dpath}).model
    theirs2 = run_jwst_step(DarkCurrentStep, path, cache, {"dark": dpath}, average_dark_current=0.5)
    assert_parity(ours2, theirs2, ["data", "average_dark_current"], rtol=RTOL, min_fraction=MIN_FRACTION)


# ---------------------------------------------------------------------------
# gain_scale


def _rate(shape=(32, 32), cube=False, gain_factor=None, seed=4):
    rng = np.random.default_rng(seed)
    shape = ((3,) if cube else ()) + shape
    cls = models.CubeModel if cube else models.ImageModel
    m = cls(data=rng.normal(5, 1, shape).astype(np.float32))
    m.err = rng.uniform(0.1, 0.2, shape).astype(np.float32)
    m.var_poisson = (m.err**2 * 0.6).astype(np.float32)
    m.var_rnoise = (m.err**2 * 0.4).astype(np.float32)
    m.dq = np.zeros(shape, np.uint32)
    set_exposure_meta(m, ngroups=5)
    m.meta.exposure.gain_factor = gain_factor
    return m


def test_gain_scale_unit():
    m = _rate(gain_factor=2.0)
    d, e, vp, vr = m.data.copy(), m.err.copy(), m.var_poisson.copy(), m.var_rnoise.copy()
    out = run_step("gain_scale", m, {}, references={"gain": "N/A"}).model
    np.testing.assert_allclose(out.data, d * 2)
    np.testing.assert_allclose(out.err, e * 2)
    np.testing.assert_allclose(out.var_poisson, vp * 4)
    np.testing.assert_allclose(out.var_rnoise, vr * 4)
    assert out.meta.cal_step.gain_scale == "COMPLETE"
    # no GAINFACT anywhere: skipped
    m2 = _rate()
    d2 = m2.data.copy()
    res = run_step("gain_scale", m2, {}, references={"gain": "N/A"})
    assert res.status == "SKIPPED" and np.array_equal(res.model.data, d2)
    _check_skip("gain_scale", _rate(gain_factor=2.0), {"gain": "N/A"})


@pytest.mark.parity
@pytest.mark.parametrize("cube", [False, True], ids=["rate", "rateints"])
def test_gain_scale_parity(tmp_path, cache, cube):
    """GAINFACT from the gain reference file (the exposure has none)."""
    from jwst.gain_scale import GainScaleStep

    m = _rate(cube=cube)
    gain = models.GainModel(data=np.full((32, 32), 2.0, np.float32))
    ref_meta(gain, m, "gain", full=False)
    gain.meta.exposure.gain_factor = 1.75
    path, gpath = m.save(tmp_path / "rate.fits"), gain.save(tmp_path / "gain.fits")
    ours = run_step("gain_scale", models.open(path), {}, references={"gain": gpath}).model
    theirs = run_jwst_step(GainScaleStep, path, cache, {"gain": gpath})
    assert ours.meta.exposure.gain_factor == theirs.meta.exposure.gain_factor == 1.75
    assert_parity(ours, theirs, ["data", "err", "var_poisson", "var_rnoise"], rtol=RTOL, min_fraction=MIN_FRACTION)


# ---------------------------------------------------------------------------
# refpix


def _from_detector(d, fast, slow):
    """Inverse of refpix.to_detector: detector orientation -> science (DMS) orientation."""
    sf, ss = int(np.sign(fast)), int(np.sign(slow))
    if abs(fast) == 1:
        return d[..., ::ss, ::sf]
    return np.swapaxes(d, -2, -1)[..., ::sf, ::ss]


def _nir_refpix_ramp(detector, nints, ngroups, region=None, noutputs=4, seed=2, zero_frame=False, subarray=None):
    """A NIR ramp with amplifier offsets, odd/even column offsets and row (1/f-like) noise seen by the reference pixels.

    Simulated in detector orientation on the part of the 2048x2048 frame that
    ``region`` = (x0, y0, nx, ny) (1-based science corner and size) covers, then
    turned to science orientation.
    """
    from webbflow.tasks.refpix import detector_origin, to_detector

    rng = np.random.default_rng(seed)
    fast, slow = {"NRCA1": (-1, 2), "NRCB1": (1, -2), "NIS": (-2, -1), "NRS1": (2, 1)}[detector]
    x0, y0, nx, ny = region or (1, 1, 2048, 2048)
    r0, c0 = detector_origin(y0 - 1, x0 - 1, ny, nx, fast, slow)
    h, w = (ny, nx) if abs(fast) == 1 else (nx, ny)
    rows, cols = np.arange(r0, r0 + h), np.arange(c0, c0 + w)
    nref = (rows < 4)[:, None] | (rows >= 2044)[:, None] | (cols < 4)[None, :] | (cols >= 2044)[None, :]
    signal = np.where(nref, 0.0, rng.uniform(20, 400, (h, w)))
    amp, parity = cols // 512, cols % 2
    frames = np.zeros((nints, ngroups, ny, nx), np.float32)
    for i in range(nints):
        for g in range(ngroups):
            det = signal * (g + 1) + rng.normal(0, 4.0, (h, w))
            det += rng.normal(300, 40, (4, 2))[amp, parity][None, :]
            det += np.cumsum(rng.normal(0, 0.8, 2048))[r0 : r0 + h, None]  # row-correlated drift
            frames[i, g] = _from_detector(det, fast, slow)
    sci = models.RampModel(data=frames)
    set_exposure_meta(sci, detector=detector, nints=nints, ngroups=ngroups, xstart=x0, ystart=y0,
                      noutputs=noutputs, zero_frame=zero_frame, subarray=subarray)
    # reference pixels flagged as in real masks, a few of them also DO_NOT_USE, and a hot one
    pdq_det = np.where(nref, np.uint32(REF), np.uint32(0))
    pdq_det[(rows == 1)[:, None] & ((cols >= 100) & (cols < 140))[None, :]] |= DNU
    pdq_det[((rows >= 700) & (rows < 760))[:, None] & (cols == 2)[None, :]] |= DNU
    sci.pixeldq = _from_detector(pdq_det, fast, slow).copy()
    hot = to_detector(sci.data, fast, slow)
    hot[:, :, (rows == 2), (cols == 300)] += 5000.0  # an outlier among the bottom reference pixels (if present)
    if zero_frame:
        sci.zeroframe = sci.data[:, 0] * 0.8
        sci.zeroframe[0, 5, 5] = 0.0
    return sci


@pytest.fixture(scope="module")
def full_frame_ramp_path(tmp_path_factory):
    sci = _nir_refpix_ramp("NRCA1", 1, 2, seed=12)
    return sci.save(tmp_path_factory.mktemp("refpix") / "refpix_full.fits")


def _refpix_parity(tmp_path, cache, sci_or_path, params=None, overrides=None, arrays=("data",)):
    from jwst.refpix import RefPixStep

    path = sci_or_path if isinstance(sci_or_path, str) else sci_or_path.save(tmp_path / "refpix_in.fits")
    params = dict(params or {})
    refs = dict(overrides or {})
    ours_res = run_step("refpix", models.open(path), params, references=refs)
    theirs = run_jwst_step(RefPixStep, path, cache, refs, **params)
    assert ours_res.model.meta.cal_step.refpix == theirs.meta.cal_step.refpix
    assert_parity(ours_res.model, theirs, list(arrays), rtol=RTOL, min_fraction=MIN_FRACTION)
    return ours_res, theirs


def test_refpix_unit_subarray_odd_even():
    """Subarray with one output: the clipped means of odd/even reference columns are subtracted everywhere."""
    sci = make_ramp((1, 2, 8, 8), detector="NRCA2", noutputs=1)  # FASTAXIS=1, SLOWAXIS=-2: rows flip
    sci.meta.subarray.name = "SUB64P"
    sci.data[...] = 50.0
    sci.pixeldq[:, :] = 0
    # detector rows 0-3 are DMS rows 4-7 here (SLOWAXIS=-2 flips rows)
    sci.pixeldq[4:, :] = REF
    sci.data[0, :, 4:, 0::2] = 10.0  # even detector columns
    sci.data[0, :, 4:, 1::2] = 20.0
    res = run_step("refpix", sci, {})
    out = res.model.data
    assert res.status == "COMPLETE"
    np.testing.assert_allclose(out[0, 0, :4, 0::2], 40.0)
    np.testing.assert_allclose(out[0, 0, :4, 1::2], 30.0)
    np.testing.assert_allclose(out[0, 0, 4:], 0.0)
    _check_skip("refpix", make_ramp((1, 2, 8, 8)))


def test_refpix_unit_miri_subarray_skipped():
    sci = make_ramp((1, 3, 16, 16), detector="MIRIMAGE", noutputs=1)
    before = sci.data.copy()
    res = run_step("refpix", sci, {})
    assert res.status == "SKIPPED" and res.model.meta.cal_step.refpix == "SKIPPED"
    assert np.array_equal(res.model.data, before)


def test_refpix_running_median_matches_numpy():
    from webbflow.tasks.refpix import running_median

    rng = np.random.default_rng(0)
    data = rng.normal(0, 1, (50, 4)).astype(np.float32)
    dq = np.zeros((50, 4), np.uint32)
    dq[rng.random((50, 4)) < 0.3] = DNU
    dq[20:31] = DNU  # a stretch with no good pixel for the middle row
    got = running_median(data, dq, 11)
    pdata = np.pad(data, ((5, 5), (0, 0)), mode="reflect")
    pdq = np.pad(dq, ((5, 5), (0, 0)), mode="reflect")
    for i in range(50):
        w, q = pdata[i : i + 11], pdq[i : i + 11]
        good = w[(q & DNU) == 0]
        if good.size == 0:
            assert np.isnan(got[i])
        else:
            assert got[i] == np.median(good)
    assert np.isnan(got[25])


@pytest.mark.parity
@pytest.mark.parametrize("params", [{}, {"odd_even_columns": False, "side_smoothing_length": 10, "side_gain": 0.8}],
                         ids=["default", "no-odd-even"])
def test_refpix_parity_full_frame(tmp_path, cache, full_frame_ramp_path, params):
    """NIRCam NRCA1 full frame (2 groups): top/bottom per amplifier, odd/even columns, side running median."""
    _refpix_parity(tmp_path, cache, full_frame_ramp_path, params)


@pytest.mark.parity
def test_refpix_parity_four_output_subarray(tmp_path, cache):
    """NIRISS (transposed axes) SUBSTRIP256-like 4-output subarray: amplifier sections on the full frame."""
    sci = _nir_refpix_ramp("NIS", 2, 3, region=(1, 1793, 2048, 256), noutputs=4, subarray="SUBSTRIP256",
                           zero_frame=True)
    _refpix_parity(tmp_path, cache, sci, arrays=("data", "zeroframe"))


@pytest.mark.parity
@pytest.mark.parametrize("odd_even", [True, False])
def test_refpix_parity_one_output_subarray(tmp_path, cache, odd_even):
    """NIRCam NRCB1 64x64 corner subarray, one output: clipped means of the subarray's reference pixels."""
    sci = _nir_refpix_ramp("NRCB1", 2, 4, region=(1, 1, 64, 64), noutputs=1, subarray="SUB64P", zero_frame=True)
    _refpix_parity(tmp_path, cache, sci, {"odd_even_columns": odd_even}, arrays=("data", "zeroframe"))


@pytest.mark.parity
def test_refpix_parity_nirspec_edgeless(tmp_path, cache):
    """NIRSpec SUB32 (no reference pixels): its first and last 4 columns serve as reference pixels."""
    sci = _nir_refpix_ramp("NRS1", 1, 3, region=(1, 1001, 2048, 32), noutputs=1, subarray="SUB32")
    sci.meta.exposure.type = "NRS_FIXEDSLIT"
    _refpix_parity(tmp_path, cache, sci)


def _miri_full_ramp(nints=2, ngroups=3, seed=8):
    rng = np.random.default_rng(seed)
    shape = (nints, ngroups, 1024, 1032)
    sig = rng.uniform(5, 50, (1024, 1032))
    sig[:, :4] = sig[:, -4:] = 0
    data = 30000 + sig[None, None] * np.arange(1, ngroups + 1)[None, :, None, None] + rng.normal(0, 3, shape)
    for a in range(4):  # amplifier drifts, different for odd and even rows
        data[:, :, 0::2, a::4] += rng.normal(0, 20, (nints, ngroups, 1, 1))
        data[:, :, 1::2, a::4] += rng.normal(0, 20, (nints, ngroups, 1, 1))
    sci = models.RampModel(data=data.astype(np.float32))
    set_exposure_meta(sci, detector="MIRIMAGE", nints=nints, ngroups=ngroups, noutputs=1, subarray="FULL")
    sci.pixeldq[:, :4] = REF
    sci.pixeldq[:, -4:] = REF
    sci.pixeldq[100:110, 1] |= DNU
    return sci


@pytest.mark.parity
@pytest.mark.parametrize("odd_even_rows", [True, False])
def test_refpix_parity_miri_full_frame(tmp_path, cache, odd_even_rows):
    """MIRI full frame: first read removed, per-amplifier left/right reference columns, odd/even rows."""
    _refpix_parity(tmp_path, cache, _miri_full_ramp(), {"odd_even_rows": odd_even_rows})


@pytest.mark.parity
def test_refpix_parity_sirs(tmp_path, cache, full_frame_ramp_path):
    """SIRS kernels (refpix_algorithm="sirs") on the NRCA1 full frame, from an ASDF SIRSKERNEL reference."""
    rng = np.random.default_rng(3)
    n = 1025
    f = np.arange(n)
    gamma = np.exp(-f / 200.0)[None, :] * (1 + 0.1 * rng.normal(size=(4, n)))
    zeta = np.exp(-f / 150.0)[None, :] * (1 + 0.1 * rng.normal(size=(4, n)))
    ker = models.SIRSKernelModel()
    ker.meta.reftype = "SIRSKERNEL"
    ker.meta.instrument.name = "NIRCAM"
    ker.meta.description = "webbflow test SIRS kernels"
    ker.meta.author, ker.meta.pedigree, ker.meta.useafter = "webbflow tests", "GROUND", "2015-01-01T00:00:00"
    ker.set_tree(nrca1={"gamma": gamma.astype(np.float64), "zeta": zeta.astype(np.float64)})
    kpath = ker.save(tmp_path / "sirs_kernel.asdf")
    ours, _ = _refpix_parity(tmp_path, cache, full_frame_ramp_path, {"refpix_algorithm": "sirs"}, {"sirskernel": kpath})
    median = run_step("refpix", models.open(full_frame_ramp_path), {}).model
    assert not np.allclose(ours.model.data, median.data), "SIRS differs from the running median"


# ---------------------------------------------------------------------------
# inputs the steps refuse


def test_steps_need_a_ramp():
    from webbflow.errors import InputFileError

    rate = _rate()
    sat = models.SaturationModel(data=np.full((32, 32), 5e4, np.float32))
    ref_meta(sat, rate, "saturation", full=False)
    with pytest.raises(InputFileError, match="needs a ramp"):
        run_step("saturation", rate, {}, references={"saturation": sat, "superbias": "N/A"})


def test_irs2_mean_subtraction_is_refused_in_one_line():
    """NIRSpec IRS2 readouts are corrected by refpix, saturation and ipc (tests/test_nirspec_detector1.py
    compares them with jwst); jwst's optional IRS2 mean subtraction is not implemented and is refused."""
    from webbflow.errors import UnsupportedModeError

    sci = models.RampModel(data=np.zeros((1, 2, 3200, 8), np.float32))
    set_exposure_meta(sci, detector="NRS1", ngroups=2, xsize=8, ysize=2048)
    sci.meta.instrument.name = "NIRSPEC"
    sci.meta.exposure.readpatt = "NRSIRS2RAPID"
    with pytest.raises(UnsupportedModeError, match="irs2_mean_subtraction"):
        run_step("refpix", sci, {"irs2_mean_subtraction": True}, references={"refpix": "N/A", "sirskernel": "N/A"})
