"""MIRI-only detector1 steps: emicorr, firstframe, lastframe, reset, rscd.

Unit tests check each step's physics on small arrays built here; parity tests
(marked ``parity``) run our step and jwst 3.0's on the same MIRI SUB64 file
(64 x 72, 10 groups, 2 integrations) with the same reference files, written
by our models, and compare: floats within rtol 1e-4 for >= 99.9 % of pixels,
DQ identical for >= 99.9 %.
"""

from __future__ import annotations

import logging

import numpy as np
from parity import quiet_jwst
import pytest

from webbflow import models
from webbflow.errors import ReferenceFileError
from webbflow.models import dqflags
from webbflow.tasks import load_all
from webbflow.tasks.base import STEPS, run_step

load_all()

DNU = dqflags.DO_NOT_USE
SAT = dqflags.SATURATED
FLUX_EST = dqflags.FLUX_ESTIMATED

# SUB64 clocking (rowclocks, frameclocks) and the 390.625 Hz tone (256 pixel times a period)
ROWCLOCKS, FRAMECLOCKS = 28, 8512
F390 = 390.625


# ---------------------------------------------------------------------------
# builders


def miri_ramp(nints=2, ngroups=10, ny=64, nx=72, *, readpatt="FASTR1", subarray="SUB64", xstart=1, ystart=779,
              detector="MIRIMAGE", seed=1, extra=None, noise=3.0):
    """A MIRI ramp: bias + slope x group + Gaussian noise (+ ``extra``), float32, zeroed DQ."""
    rng = np.random.default_rng(seed)
    r = models.RampModel((nints, ngroups, ny, nx))
    slope = rng.uniform(5, 50, (ny, nx))
    bias = rng.uniform(8000, 12000, (ny, nx))
    g = np.arange(ngroups)[None, :, None, None]
    data = bias + slope * g + rng.normal(0, noise, (nints, ngroups, ny, nx))
    if extra is not None:
        data = data + extra
    r.data = data.astype(np.float32)
    r.pixeldq = np.zeros((ny, nx), np.uint32)
    r.groupdq = np.zeros((nints, ngroups, ny, nx), np.uint8)
    m = r.meta
    m.telescope = "JWST"
    m.instrument.name = "MIRI"
    m.instrument.detector = detector
    m.instrument.filter = "F1000W"
    m.exposure.type = "MIR_IMAGE"
    m.exposure.readpatt = readpatt
    m.exposure.nints, m.exposure.ngroups = nints, ngroups
    m.exposure.nframes, m.exposure.groupgap = 1, 0
    m.exposure.nsamples = 9 if "SLOW" in readpatt else 1
    m.exposure.frame_time = m.exposure.group_time = 0.0865
    m.exposure.start_time = 59945.0
    m.subarray.name = subarray
    m.subarray.xstart, m.subarray.ystart, m.subarray.xsize, m.subarray.ysize = xstart, ystart, nx, ny
    m.subarray.fastaxis, m.subarray.slowaxis = 1, 2
    m.observation.date, m.observation.time = "2023-01-01", "00:00:00"
    return r


def ref_meta(m, reftype, *, subarray="SUB64", xstart=1, ystart=779, nx=72, ny=64):
    m.meta.reftype = reftype.upper()
    m.meta.author = "webbflow tests"
    m.meta.pedigree = "DUMMY"
    m.meta.description = f"synthetic {reftype} for tests"
    m.meta.useafter = "2000-01-01T00:00:00"
    m.meta.telescope = "JWST"
    m.meta.instrument.name = "MIRI"
    m.meta.instrument.detector = "MIRIMAGE"
    m.meta.subarray.name = subarray
    m.meta.subarray.xstart, m.meta.subarray.ystart, m.meta.subarray.xsize, m.meta.subarray.ysize = xstart, ystart, nx, ny
    return m


DQ_DEF_DTYPE = [("BIT", ">i4"), ("VALUE", ">u4"), ("NAME", "S40"), ("DESCRIPTION", "S80")]


def reset_ref(nints=2, ngroups=6, ny=64, nx=72, seed=2):
    """A RESET reference whose own DQ bits (1: DO_NOT_USE, 2: UNRELIABLE_DARK) are named in DQ_DEF."""
    rng = np.random.default_rng(seed)
    ref = models.ResetModel((nints, ngroups, ny, nx))
    ref.data = rng.normal(0, 20, (nints, ngroups, ny, nx)).astype(np.float32)
    ref.data[0, 0, 3, 3] = np.nan
    ref.err = np.ones((nints, ngroups, ny, nx), np.float32)
    dq = np.zeros((ny, nx), np.uint32)
    dq[10, 10], dq[11, 11], dq[12, 12] = 1, 2, 3
    ref.dq = dq
    ref.dq_def = np.array([(0, 1, b"DO_NOT_USE", b"bad"), (1, 2, b"UNRELIABLE_DARK", b"unreliable")], dtype=DQ_DEF_DTYPE)
    ref_meta(ref, "reset", nx=nx, ny=ny)
    ref.meta.exposure.nints, ref.meta.exposure.ngroups, ref.meta.exposure.readpatt = nints, ngroups, "FASTR1"
    return ref


def rscd_ref(rows=(("SUB64", "FASTR1", 2, 4), ("FULL", "FASTR1", 1, 3))):
    ref = models.RSCDModel()
    ref.rscd_group_skip_table = np.array(
        [(s.encode(), r.encode(), a, b) for s, r, a, b in rows],
        dtype=[("subarray", "S17"), ("readpatt", "S12"), ("group_skip1", ">i4"), ("group_skip", ">i4")],
    )
    return ref_meta(ref, "rscd")


def wave_shape(x):
    return np.sin(2 * np.pi * x) + 0.3 * np.sin(4 * np.pi * x + 0.7)


def emi_signal(nints, ngroups, ny, nx, *, amp=6.0, phi0=0.37, nsamples=1, r1=True):
    """The 390.625 Hz EMI seen by each pixel read of a SUB64 exposure (same on the 4 channels)."""
    period = (1.0 / F390) / 10e-6
    frame = ny * ROWCLOCKS + (1024 - ny) * 7
    per_int = ngroups * frame + (FRAMECLOCKS if r1 else 0)
    t = (np.arange(nints)[:, None, None, None] * per_int + np.arange(ngroups)[None, :, None, None] * frame
         + np.arange(ny)[None, None, :, None] * ROWCLOCKS + np.arange(nx // 4)[None, None, None, :] * nsamples)
    v = amp * wave_shape((t / period + phi0) % 1)
    return np.repeat(v, 4, axis=-1)


def emi_ref(n=128):
    ref = models.EmiModel()
    x = (np.arange(n) + 0.5) / n
    ref.set_tree(
        frequencies={
            "Hz390": {"frequency": F390, "phase_amplitudes": wave_shape(x).astype(np.float32)},
            "Hz10": {"frequency": 10.039216, "phase_amplitudes": (0.5 * wave_shape(x)).astype(np.float32)},
        },
        subarray_cases={
            "SUB64": {"rowclocks": ROWCLOCKS, "frameclocks": FRAMECLOCKS,
                      "freqs": {"FAST": ["Hz390"], "SLOW": {"MIRIMAGE": ["Hz390", "Hz10"]}}},
        },
    )
    ref.meta.reftype = "emicorr"
    ref.meta.author, ref.meta.pedigree, ref.meta.description = "webbflow tests", "DUMMY", "synthetic emicorr"
    ref.meta.useafter = "2000-01-01T00:00:00"
    ref.meta.instrument.name = "MIRI"
    ref.meta.telescope = "JWST"
    return ref


# ---------------------------------------------------------------------------
# firstframe / lastframe


def test_firstframe_is_skipped_by_default():
    r = miri_ramp(ngroups=5)
    res = run_step("firstframe", r)
    assert res.status == "SKIPPED" and r.meta.cal_step.firstframe == "SKIPPED"
    assert not r.groupdq.any()


def test_firstframe_flags_group1_but_keeps_bright_pixels():
    r = miri_ramp(ngroups=5)
    r.groupdq[:, 2:, 4, 4] = SAT  # saturated by group 3 in both integrations
    r.groupdq[1, 2:, 5, 5] = SAT  # only in integration 2
    res = run_step("firstframe", r, {"skip": False})
    assert res.status == "COMPLETE"
    g0 = r.groupdq[:, 0]
    assert (g0[:, 0, 0] & DNU).all()
    assert not (g0[:, 4, 4] & DNU).any()
    assert g0[0, 5, 5] & DNU and not g0[1, 5, 5] & DNU
    assert r.pixeldq[4, 4] & FLUX_EST and r.pixeldq[5, 5] & FLUX_EST and not r.pixeldq[0, 0] & FLUX_EST
    assert not (r.groupdq[:, 1:] & DNU).any()


def test_firstframe_without_bright_rule_flags_everything():
    r = miri_ramp(ngroups=5)
    r.groupdq[:, 2:, 4, 4] = SAT
    run_step("firstframe", r, {"skip": False, "bright_use_group1": False})
    assert (r.groupdq[:, 0] & DNU).all()
    assert not r.pixeldq.any()


@pytest.mark.parametrize("detector, ngroups", [("MIRIMAGE", 3), ("NRCA1", 10)])
def test_firstframe_skips_short_ramps_and_non_miri(detector, ngroups):
    r = miri_ramp(ngroups=ngroups, detector=detector)
    res = run_step("firstframe", r, {"skip": False})
    assert res.status == "SKIPPED" and not r.groupdq.any()


def test_lastframe_flags_last_group():
    r = miri_ramp(ngroups=4)
    res = run_step("lastframe", r)
    assert res.status == "COMPLETE" and r.meta.cal_step.lastframe == "COMPLETE"
    assert (r.groupdq[:, -1] & DNU).all()
    assert not r.groupdq[:, :-1].any()


def test_lastframe_skips_two_groups():
    r = miri_ramp(ngroups=2)
    assert run_step("lastframe", r).status == "SKIPPED"
    assert not r.groupdq.any()


# ---------------------------------------------------------------------------
# reset


def test_reset_subtracts_first_groups_and_maps_dq():
    r = miri_ramp(nints=3, ngroups=8)
    before = r.data.copy()
    ref = reset_ref(nints=2, ngroups=6)
    res = run_step("reset", r, references={"reset": ref})
    assert res.status == "COMPLETE"
    corr = np.nan_to_num(ref.data)
    # the first 6 groups corrected; integration 3 uses the reference's last integration
    np.testing.assert_array_equal(r.data[0, :6], before[0, :6] - corr[0])
    np.testing.assert_array_equal(r.data[1, :6], before[1, :6] - corr[1])
    np.testing.assert_array_equal(r.data[2, :6], before[2, :6] - corr[1])
    np.testing.assert_array_equal(r.data[:, 6:], before[:, 6:])
    assert r.data[0, 0, 3, 3] == before[0, 0, 3, 3]  # NaN in the reference counts as 0
    assert r.pixeldq[10, 10] == DNU
    assert r.pixeldq[11, 11] == dqflags.UNRELIABLE_DARK
    assert r.pixeldq[12, 12] == DNU | dqflags.UNRELIABLE_DARK
    assert np.isnan(ref.data[0, 0, 3, 3])  # the reference itself is not modified


def test_reset_segment_uses_its_integration_numbers():
    r = miri_ramp(nints=1, ngroups=4)
    r.meta.exposure.nints = 3
    r.meta.exposure.integration_start, r.meta.exposure.integration_end = 2, 2
    before = r.data.copy()
    ref = reset_ref(nints=2, ngroups=6)
    run_step("reset", r, references={"reset": ref})
    np.testing.assert_array_equal(r.data[0], before[0] - ref.data[1, :4])


def test_reset_skips_when_reference_is_na_or_not_miri():
    r = miri_ramp(ngroups=4)
    assert run_step("reset", r, {"override_reset": "N/A"}).status == "SKIPPED"
    nir = miri_ramp(ngroups=4, detector="NRCA1")
    assert run_step("reset", nir, references={"reset": reset_ref()}).status == "SKIPPED"


def test_reset_reference_not_covering_subarray_is_an_error():
    r = miri_ramp(ngroups=4, xstart=500)
    with pytest.raises(ReferenceFileError):
        run_step("reset", r, references={"reset": reset_ref()})


# ---------------------------------------------------------------------------
# rscd


def test_rscd_flags_table_counts_per_integration(tmp_path):
    r = miri_ramp(nints=3, ngroups=10)
    res = run_step("rscd", r, references={"rscd": rscd_ref()})
    assert res.status == "COMPLETE"
    dnu = (r.groupdq & DNU) != 0
    assert dnu[0, :2].all() and not dnu[0, 2:].any()
    assert dnu[1:, :4].all() and not dnu[1:, 4:].any()
    assert r.meta.rscd.ngroups_skip_int1 == 2 and r.meta.rscd.ngroups_skip_int2p == 4
    r.save(tmp_path / "rscd.fits")
    from astropy.io import fits

    h = fits.getheader(tmp_path / "rscd.fits")
    assert h["INT1SKIP"] == 2 and h["INT2SKIP"] == 4 and h["S_RSCD"] == "COMPLETE"


def test_rscd_backs_off_for_saturation():
    r = miri_ramp(nints=2, ngroups=10)
    r.groupdq[:, 4:, 7, 7] = SAT  # saturated from group 5 on
    r.groupdq[:, 0:, 8, 8] = SAT  # saturated from group 1: cannot be helped, left alone
    run_step("rscd", r, references={"rscd": rscd_ref()})
    dnu = (r.groupdq & DNU) != 0
    # the first two groups left must be below saturation:
    # integration 1 (2 groups flagged) is fine, integration 2 backs off from 4 groups to 2
    assert dnu[0, :2, 7, 7].all() and not dnu[0, 2:, 7, 7].any()
    assert dnu[1, :2, 7, 7].all() and not dnu[1, 2:, 7, 7].any()
    assert dnu[1, :4, 8, 8].all()
    assert r.pixeldq[7, 7] & FLUX_EST and not r.pixeldq[8, 8] & FLUX_EST
    assert r.meta.rscd.keep_groups_saturation_int1 == 0
    assert r.meta.rscd.keep_groups_saturation_int2p == 1


def test_rscd_short_ramps():
    r = miri_ramp(nints=2, ngroups=5)
    run_step("rscd", r, references={"rscd": rscd_ref()})
    dnu = (r.groupdq & DNU) != 0
    assert dnu[:, 0].all() and not dnu[:, 1:].any()  # 5 groups or fewer: one group flagged
    r = miri_ramp(nints=2, ngroups=2)
    assert run_step("rscd", r, references={"rscd": rscd_ref()}).status == "SKIPPED"


def test_rscd_unknown_configuration_skips():
    r = miri_ramp(subarray="BRIGHTSKY")
    assert run_step("rscd", r, references={"rscd": rscd_ref()}).status == "SKIPPED"
    assert not r.groupdq.any()


# ---------------------------------------------------------------------------
# emicorr


def _emi_case(**kw):
    nints, ngroups = kw.pop("nints", 2), kw.pop("ngroups", 10)
    emi = emi_signal(nints, ngroups, 64, 72, **kw)
    noisy = miri_ramp(nints=nints, ngroups=ngroups, extra=emi)
    clean = miri_ramp(nints=nints, ngroups=ngroups)
    return noisy, clean, emi


def test_emicorr_skipped_by_default():
    r, _, _ = _emi_case()
    before = r.data.copy()
    assert run_step("emicorr", r, references={"emicorr": emi_ref()}).status == "SKIPPED"
    np.testing.assert_array_equal(r.data, before)


@pytest.mark.parametrize("params", [{}, {"fit_ints_separately": True}, {"algorithm": "sequential"}])
def test_emicorr_removes_injected_emi(params):
    r, clean, emi = _emi_case()
    res = run_step("emicorr", r, {"skip": False, **params}, references={"emicorr": emi_ref()})
    assert res.status == "COMPLETE"
    resid = np.std(r.data - clean.data)
    print(f"{params}: EMI rms {np.std(emi):.3f} DN -> residual {resid:.3f} DN")
    assert resid < 0.1 * np.std(emi)


def test_emicorr_on_the_fly_without_reference(tmp_path):
    r, clean, emi = _emi_case()
    r.meta.filename = "jw_test_uncal.fits"
    res = run_step("emicorr", r, {"skip": False, "onthefly_corr_freq": "390.625", "save_intermediate_results": True,
                                  "output_dir": str(tmp_path)})
    assert res.status == "COMPLETE"
    assert np.std(r.data - clean.data) < 0.2 * np.std(emi)
    made = models.open(tmp_path / "jw_test_emi_ref_waves.asdf")
    assert isinstance(made, models.EmiModel)
    assert made.subarray_cases["SUB64"]["rowclocks"] == ROWCLOCKS
    assert "390.625" in made.frequencies


def test_emicorr_skips_what_it_cannot_correct():
    r, _, _ = _emi_case()
    r.meta.exposure.readpatt = "SLOWGRPAVG"
    assert run_step("emicorr", r, {"skip": False}, references={"emicorr": emi_ref()}).status == "SKIPPED"
    r, _, _ = _emi_case(ngroups=2)
    assert run_step("emicorr", r, {"skip": False}, references={"emicorr": emi_ref()}).status == "SKIPPED"
    r = miri_ramp(subarray="BRIGHTSKY")  # not in the reference's subarray cases
    assert run_step("emicorr", r, {"skip": False}, references={"emicorr": emi_ref()}).status == "SKIPPED"
    r = miri_ramp()
    assert run_step("emicorr", r, {"skip": False, "override_emicorr": "N/A"}).status == "SKIPPED"


def test_emicorr_parameters_follow_jwst():
    p = STEPS["emicorr"].make_params({"onthefly_corr_freq": "390.625, 218.52055", "algorithm": "sequential"})
    assert p.onthefly_corr_freq == [390.625, 218.52055]
    d = STEPS["emicorr"].params()
    assert (d.skip, d.algorithm, d.use_n_cycles, d.scale_reference, d.fit_ints_separately) == (True, "joint", 3, True, False)


# ---------------------------------------------------------------------------
# reference files written by our models open in stdatamodels


def test_our_miri_references_open_in_stdatamodels(tmp_path):
    from stdatamodels.jwst import datamodels as dm

    reset_ref().save(tmp_path / "reset.fits")
    rscd_ref().save(tmp_path / "rscd.fits")
    emi_ref().save(tmp_path / "emi.asdf")
    m = dm.open(tmp_path / "reset.fits")
    assert type(m).__name__ == "ResetModel" and m.meta.exposure.ngroups == 6
    assert m.dq[12, 12] == DNU | dqflags.UNRELIABLE_DARK  # stdatamodels maps DQ_DEF too
    t = dm.RSCDModel(str(tmp_path / "rscd.fits")).rscd_group_skip_table
    assert list(t["group_skip"]) == [4, 3] and list(t["group_skip1"]) == [2, 1]
    e = dm.EmiModel(str(tmp_path / "emi.asdf"))
    assert e.subarray_cases.SUB64.rowclocks == ROWCLOCKS and e.frequencies.Hz390.frequency == F390
    ours = models.open(tmp_path / "rscd.fits")
    assert isinstance(ours, models.RSCDModel) and len(ours.rscd_group_skip_table) == 2


# ---------------------------------------------------------------------------
# parity with jwst


def _quiet():
    return quiet_jwst(logging.CRITICAL)


def run_jwst(step_class, path, cache, **kwargs):
    from parity import jwst_offline

    with jwst_offline(cache, "jwst_0541.pmap"), _quiet():
        return step_class.call(str(path), **kwargs)


@pytest.fixture(scope="module")
def miri_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("miri")
    r = miri_ramp()
    r.groupdq[:, 2:, 5, 5] = SAT
    r.groupdq[:, 0:, 6, 6] = SAT
    r.groupdq[:, 3:, 20, 20] = SAT
    r.groupdq[1, 2:, 22, 22] = SAT
    r.pixeldq[30, 30] = DNU
    noisy, _, _ = _emi_case()
    slow_r = miri_ramp(nints=3, ngroups=12, readpatt="SLOW", extra=emi_signal(3, 12, 64, 72, nsamples=9, r1=False))
    return {
        "ramp": r.save(d / "miri_sub64_ramp.fits"),
        "emi": noisy.save(d / "miri_sub64_emi_ramp.fits"),
        "emi_slow": slow_r.save(d / "miri_sub64_slow_emi_ramp.fits"),
        "reset": reset_ref().save(d / "reset.fits"),
        "rscd": rscd_ref().save(d / "rscd.fits"),
        "emicorr": emi_ref().save(d / "emicorr.asdf"),
    }


def _compare(ours, theirs, arrays, step):
    from parity import assert_parity

    print(f"{step}: tolerance rtol 1e-4 on >= 99.9% of pixels, DQ identical on >= 99.9%")
    assert_parity(ours, theirs, arrays)
    assert getattr(ours.meta.cal_step, step) == getattr(theirs.meta.cal_step, step)


@pytest.mark.parity
@pytest.mark.parametrize("params", [{"skip": False}, {"skip": False, "bright_use_group1": False}])
def test_firstframe_parity(miri_files, real_rules_cache, params):
    from jwst.firstframe import FirstFrameStep

    theirs = run_jwst(FirstFrameStep, miri_files["ramp"], real_rules_cache, **params)
    ours = run_step("firstframe", models.open(miri_files["ramp"]), params).model
    _compare(ours, theirs, ["data", "groupdq", "pixeldq"], "firstframe")


@pytest.mark.parity
def test_lastframe_parity(miri_files, real_rules_cache):
    from jwst.lastframe import LastFrameStep

    theirs = run_jwst(LastFrameStep, miri_files["ramp"], real_rules_cache)
    ours = run_step("lastframe", models.open(miri_files["ramp"])).model
    _compare(ours, theirs, ["data", "groupdq", "pixeldq"], "lastframe")


@pytest.mark.parity
def test_reset_parity(miri_files, real_rules_cache):
    from jwst.reset import ResetStep

    theirs = run_jwst(ResetStep, miri_files["ramp"], real_rules_cache, override_reset=miri_files["reset"])
    ours = run_step("reset", models.open(miri_files["ramp"]), {"override_reset": miri_files["reset"]}).model
    _compare(ours, theirs, ["data", "groupdq", "pixeldq"], "reset")
    assert ours.meta.ref_file.reset.name.endswith("reset.fits")


@pytest.mark.parity
def test_rscd_parity(miri_files, real_rules_cache):
    from jwst.rscd import RscdStep

    theirs = run_jwst(RscdStep, miri_files["ramp"], real_rules_cache, override_rscd=miri_files["rscd"])
    ours = run_step("rscd", models.open(miri_files["ramp"]), references={"rscd": miri_files["rscd"]}).model
    _compare(ours, theirs, ["data", "groupdq", "pixeldq"], "rscd")
    for k in ("ngroups_skip_int1", "ngroups_skip_int2p", "keep_groups_saturation_int1",
              "keep_groups_saturation_int2p", "keep_bright_firstgroup_int1", "keep_bright_firstgroup_int2p"):
        assert getattr(ours.meta.rscd, k) == getattr(theirs.meta.rscd, k), k


@pytest.mark.parity
@pytest.mark.parametrize(
    "case, params",
    [
        ("emi", {}),
        ("emi", {"fit_ints_separately": True}),
        ("emi", {"algorithm": "sequential"}),
        ("emi", {"algorithm": "sequential", "scale_reference": False}),
        ("emi", {"onthefly_corr_freq": [F390]}),
        ("emi_slow", {}),  # two frequencies, SLOW (9 samples a pixel)
        ("emi_slow", {"algorithm": "sequential", "nints_to_phase": 2, "use_n_cycles": None}),
    ],
)
def test_emicorr_parity(miri_files, real_rules_cache, case, params):
    from jwst.emicorr import EmiCorrStep

    kw = {"skip": False, **params}
    theirs = run_jwst(EmiCorrStep, miri_files[case], real_rules_cache, override_emicorr=miri_files["emicorr"], **kw)
    ours = run_step("emicorr", models.open(miri_files[case]), {**kw, "override_emicorr": miri_files["emicorr"]}).model
    _compare(ours, theirs, ["data", "groupdq", "pixeldq"], "emicorr")
    print(f"emicorr {case} {params}: max |ours - jwst| = {np.nanmax(np.abs(ours.data - theirs.data)):.3g} DN")
