"""detector1's shared tail: charge_migration, jump, picture_frame, clean_flicker_noise, persistence, ramp_fit.

Unit tests check the physics on tiny arrays and the skip rules.  Parity tests
(``-m parity``) run jwst 3.0's step and ours on the same simulated file with
the same reference files and require, for at least 99.9 % of pixels, float
arrays within rtol 1e-4 and DQ arrays identical; each prints the agreement
it measured.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from webbflow import models
from webbflow.errors import UnsupportedModeError
from webbflow.models import dqflags
from webbflow.tasks import load_all
from webbflow.tasks.base import STEPS, run_step

from parity import assert_parity
from steputils_tail import install_in_crds_cache, jwst_run, nircam_ramp, ref_model, write_refs

load_all()

RTOL = 1e-4
MIN_FRACTION = 0.999
RATE_ARRAYS = ["data", "dq", "err", "var_poisson", "var_rnoise"]


def _refs(paths):
    return {k: str(v) for k, v in paths.items()}


def _const_refs(sci, gain=1.0, readnoise=5.0):
    ny, nx = sci.data.shape[-2:]
    return {
        "gain": ref_model(models.GainModel, sci, "gain", np.full((ny, nx), gain)),
        "readnoise": ref_model(models.ReadnoiseModel, sci, "readnoise", np.full((ny, nx), readnoise)),
    }


def _linear_ramp(nints=1, ngroups=6, ny=4, nx=4, slope=7.5, bias=100.0):
    m = nircam_ramp(nints=nints, ngroups=ngroups, ny=ny, nx=nx, n_stars=0, n_crs=0, n_bad=0, saturate=False)
    t = m.meta.exposure.group_time * np.arange(ngroups)
    m.data = np.broadcast_to((bias + slope * t)[None, :, None, None], m.data.shape).astype(np.float32).copy()
    return m


@pytest.fixture(scope="module")
def private_cache(tmp_path_factory, real_rules_cache):
    """A copy of the jwst_0541 rules into which tests may install reference files."""
    dst = tmp_path_factory.mktemp("crds-tail")
    shutil.copytree(real_rules_cache, dst, dirs_exist_ok=True)
    return dst


@pytest.fixture
def fresh_cache(tmp_path, real_rules_cache):
    """A cache of its own for a test that installs full-frame references (names may repeat across tests)."""
    dst = tmp_path / "crds"
    shutil.copytree(real_rules_cache, dst)
    return dst


# ---------------------------------------------------------------------------
# declarations and defaults


JWST_CLASSES = {
    "charge_migration": ("jwst.charge_migration", "ChargeMigrationStep"),
    "jump": ("jwst.jump", "JumpStep"),
    "picture_frame": ("jwst.picture_frame", "PictureFrameStep"),
    "clean_flicker_noise": ("jwst.clean_flicker_noise", "CleanFlickerNoiseStep"),
    "persistence": ("jwst.persistence", "PersistenceStep"),
    "ramp_fit": ("jwst.ramp_fitting", "RampFitStep"),
}
STPIPE_ONLY = {"pre_hooks", "post_hooks", "output_ext", "output_use_model", "output_use_index", "search_output_file",
               "input_dir"}


@pytest.mark.parity
@pytest.mark.parametrize("name", sorted(JWST_CLASSES))
def test_parameters_match_jwst_spec(name):
    """Every jwst parameter exists here with the same default, and nothing else is added."""
    import importlib

    mod, cls_name = JWST_CLASSES[name]
    cls = getattr(importlib.import_module(mod), cls_name)
    jwst_step = cls()
    spec = cls.load_spec_file()
    jwst_names = {k for k in spec if k not in STPIPE_ONLY and not k.startswith("override_")}
    ours = STEPS[name].params()
    our_names = set(type(ours).model_fields) - {"overrides"}
    assert jwst_names == our_names, f"missing {jwst_names - our_names}, extra {our_names - jwst_names}"
    for k in sorted(jwst_names):
        theirs = getattr(jwst_step, k)
        mine = getattr(ours, k)
        assert mine == theirs or (mine is None and theirs is None), f"{name}.{k}: ours {mine!r}, jwst {theirs!r}"
    jwst_reftypes = {k[len("override_"):] for k in spec if k.startswith("override_")}
    declared = set(STEPS[name].reftypes) | set(STEPS[name].optional_reftypes)
    # clean_flicker_noise's pastasoss is NIRISS SOSS only (unsupported here); gain/readnoise feed the draft rate
    assert jwst_reftypes - {"pastasoss"} <= declared
    print(f"{name}: {len(jwst_names)} parameters match jwst's names and defaults")


def test_declarations():
    assert STEPS["ramp_fit"].extra["suffixes"] == ["rate", "rateints"]
    assert set(STEPS["jump"].reftypes) == {"gain", "readnoise"}
    assert STEPS["picture_frame"].reftypes == ("pictureframe",)
    assert STEPS["persistence"].reftypes == ()
    for name in ("charge_migration", "picture_frame", "clean_flicker_noise", "persistence"):
        assert STEPS[name].params().skip is True, f"{name} is skipped by default in jwst"
    for name in ("jump", "ramp_fit"):
        assert STEPS[name].params().skip is False


@pytest.mark.parametrize("name", ["charge_migration", "picture_frame", "clean_flicker_noise", "persistence"])
def test_skipped_by_default(name):
    m = nircam_ramp(nints=1, ngroups=4, ny=8, nx=8)
    before = m.data.copy(), m.groupdq.copy()
    res = run_step(name, m, {})
    assert res.status == "SKIPPED"
    assert getattr(res.model.meta.cal_step, name) == "SKIPPED"
    assert np.array_equal(res.model.data, before[0]) and np.array_equal(res.model.groupdq, before[1])


# ---------------------------------------------------------------------------
# ramp_fit


def test_ramp_fit_noiseless_linear_ramp_gives_slope():
    m = _linear_ramp(nints=2, ngroups=6, slope=7.5)
    res = run_step("ramp_fit", m, {}, references=_const_refs(m))
    rate, rateints = res.model
    assert isinstance(rate, models.ImageModel) and isinstance(rateints, models.CubeModel)
    np.testing.assert_allclose(rate.data, 7.5, rtol=1e-6)
    np.testing.assert_allclose(rateints.data, 7.5, rtol=1e-6)
    assert rate.data.shape == (4, 4) and rateints.data.shape == (2, 4, 4)
    assert not rate.dq.any()
    # no Poisson noise in the slope is not the same as no variance: read noise remains
    assert (rate.var_rnoise > 0).all() and (rate.err > 0).all()
    assert rate.meta.bunit_data == "DN/s" and rateints.meta.bunit_err == "DN/s"
    assert rate.meta.cal_step.ramp_fit == "COMPLETE" and rateints.meta.cal_step.ramp_fit == "COMPLETE"


@pytest.mark.parametrize("exp_type", ["MIR_MRS", "NRS_IFU"])
def test_ramp_fit_ifu_rate_is_an_ifu_image(exp_type, tmp_path):
    """jwst writes an IFU exposure's rate as an IFUImageModel (spec2's IFU steps expect one)."""
    import stdatamodels.jwst.datamodels as sdm

    m = _linear_ramp(nints=2, ngroups=5, slope=3.0)
    m.meta.exposure.type = exp_type
    rate, rateints = run_step("ramp_fit", m, {}, references=_const_refs(m)).model
    assert type(rate) is models.IFUImageModel and isinstance(rateints, models.CubeModel)
    np.testing.assert_allclose(rate.data, 3.0, rtol=1e-6)
    rate.meta.filename = "jw_ifu_rate.fits"
    with sdm.open(rate.save(tmp_path / "jw_ifu_rate.fits")) as theirs:
        assert type(theirs) is sdm.IFUImageModel
        np.testing.assert_array_equal(theirs.data, rate.data)


def test_ramp_fit_fits_segments_between_jumps():
    m = _linear_ramp(ngroups=8, slope=3.0)
    m.data[0, 4:, 1, 2] += 1500.0  # a cosmic ray between groups 3 and 4
    m.groupdq[0, 4, 1, 2] = dqflags.JUMP_DET
    rate, _ = run_step("ramp_fit", m, {}, references=_const_refs(m)).model
    np.testing.assert_allclose(rate.data, 3.0, rtol=1e-5)
    assert rate.dq[1, 2] & dqflags.JUMP_DET


def test_ramp_fit_saturated_and_bad_pixels():
    m = _linear_ramp(ngroups=5, slope=2.0)
    m.groupdq[0, :, 0, 0] = dqflags.SATURATED  # saturated from the first group
    m.groupdq[0, 3:, 0, 1] = dqflags.SATURATED  # saturated from group 3: fit the first three
    m.pixeldq[3, 3] = dqflags.DO_NOT_USE | dqflags.DEAD
    m.groupdq[0, :, 3, 3] = dqflags.DO_NOT_USE
    gdq_before = m.groupdq.copy()
    rate, _ = run_step("ramp_fit", m, {}, references=_const_refs(m)).model
    assert np.isnan(rate.data[0, 0]) and rate.dq[0, 0] & dqflags.SATURATED and rate.dq[0, 0] & dqflags.DO_NOT_USE
    np.testing.assert_allclose(rate.data[0, 1], 2.0, rtol=1e-5)
    assert np.isnan(rate.data[3, 3]) and rate.dq[3, 3] & dqflags.DEAD
    assert np.array_equal(m.groupdq, gdq_before), "the input ramp is left as it was"


def test_ramp_fit_group_limits_and_fitopt(tmp_path):
    m = _linear_ramp(ngroups=8, slope=4.0)
    m.data[0, 6:] += 500.0  # garbage in the last groups, excluded by lastgroup
    m.meta.filename = "jw_test_jump.fits"
    res = run_step("ramp_fit", m, {"lastgroup": 5, "save_opt": True, "output_dir": str(tmp_path)},
                   references=_const_refs(m))
    rate, _ = res.model
    np.testing.assert_allclose(rate.data, 4.0, rtol=1e-5)
    opt = models.open(tmp_path / "jw_test_fitopt.fits")
    assert type(opt).__name__ == "RampFitOutputModel"
    np.testing.assert_allclose(opt.slope[0, 0], 4.0, rtol=1e-5)
    from stdatamodels.jwst import datamodels as sdm

    with sdm.open(tmp_path / "jw_test_fitopt.fits") as theirs:
        assert type(theirs).__name__ == "RampFitOutputModel"


def test_rate_products_open_in_stdatamodels(tmp_path):
    from stdatamodels.jwst import datamodels as sdm

    m = nircam_ramp(nints=2, ngroups=5, ny=16, nx=16, seed=4)
    rate, rateints = run_step("ramp_fit", m, {}, references=_const_refs(m, gain=2.0, readnoise=6.0)).model
    rate.save(tmp_path / "x_rate.fits")
    rateints.save(tmp_path / "x_rateints.fits")
    with sdm.open(tmp_path / "x_rate.fits") as r, sdm.open(tmp_path / "x_rateints.fits") as ri:
        assert type(r).__name__ == "ImageModel" and type(ri).__name__ == "CubeModel"
        np.testing.assert_array_equal(r.data, rate.data)
        assert r.meta.bunit_data == "DN/s" and r.meta.cal_step.ramp_fit == "COMPLETE"


# ---------------------------------------------------------------------------
# jump


def test_jump_flags_injected_jump_and_neighbours():
    m = nircam_ramp(nints=1, ngroups=8, ny=16, nx=16, seed=2, n_stars=0, n_crs=0, n_bad=0, saturate=False)
    m.data[0, 5:, 8, 8] += 1000.0
    res = run_step("jump", m, {}, references=_const_refs(m, gain=2.0, readnoise=6.0))
    gdq = res.model.groupdq
    assert res.status == "COMPLETE"
    assert gdq[0, 5, 8, 8] & dqflags.JUMP_DET
    flagged = np.argwhere(gdq & dqflags.JUMP_DET)
    expected = {(0, 5, 8, 8), (0, 5, 7, 8), (0, 5, 9, 8), (0, 5, 8, 7), (0, 5, 8, 9)}
    assert {tuple(x) for x in flagged} == expected, "the jump and its four neighbours, nothing else"
    assert res.model.meta.exposure.primary_cosmic_rays > 0


def test_jump_skips_short_ramps_and_flags_bad_gain():
    m = nircam_ramp(nints=1, ngroups=2, ny=8, nx=8)
    res = run_step("jump", m, {}, references=_const_refs(m))
    assert res.status == "SKIPPED" and m.meta.cal_step.jump == "SKIPPED"
    m = nircam_ramp(nints=1, ngroups=5, ny=8, nx=8, n_crs=0, n_bad=0)
    refs = _const_refs(m, gain=2.0)
    refs["gain"].data[2, 3] = np.nan
    res = run_step("jump", m, {}, references=refs)
    assert res.model.pixeldq[2, 3] & dqflags.NO_GAIN_VALUE and res.model.pixeldq[2, 3] & dqflags.DO_NOT_USE


# ---------------------------------------------------------------------------
# charge_migration, persistence


def test_charge_migration_flags_pixel_neighbours_and_later_groups():
    m = nircam_ramp(nints=1, ngroups=5, ny=8, nx=8, n_stars=0, n_crs=0, n_bad=0, saturate=False)
    m.data[0, 3:, 4, 4] = 30000.0
    res = run_step("charge_migration", m, {"skip": False})
    flag = dqflags.CHARGELOSS | dqflags.DO_NOT_USE
    gdq = res.model.groupdq
    for y, x in [(4, 4), (3, 4), (5, 4), (4, 3), (4, 5)]:
        assert (gdq[0, 3:, y, x] & flag == flag).all() and not gdq[0, :3, y, x].any()
    assert not gdq[0, :, 3, 3].any(), "diagonal neighbours are not flagged"
    assert np.count_nonzero(gdq) == 5 * 2
    short = nircam_ramp(nints=1, ngroups=2, ny=8, nx=8)
    assert run_step("charge_migration", short, {"skip": False}).status == "SKIPPED"


def test_persistence_window_after_saturation():
    m = nircam_ramp(nints=2, ngroups=6, ny=4, nx=4, n_stars=0, n_crs=0, n_bad=0, saturate=False)
    tg = m.meta.exposure.group_time
    m.groupdq[0, 2:, 1, 1] = dqflags.SATURATED
    res = run_step("persistence", m, {"skip": False, "persistence_time": int(2.5 * tg)})
    pers = (res.model.groupdq & dqflags.PERSISTENCE) != 0
    # the window opens at group 2 and lasts 2.5 group times: groups 2, 3, 4
    assert pers[0, :, 1, 1].tolist() == [False, False, True, True, True, False]
    assert not pers[1].any() and np.count_nonzero(pers) == 3
    m2 = nircam_ramp(nints=1, ngroups=4, ny=4, nx=4, n_stars=0)
    assert run_step("persistence", m2, {"skip": False}).status == "FAILED"
    assert m2.meta.cal_step.persistence == "FAILED"


# ---------------------------------------------------------------------------
# clean_flicker_noise, picture_frame


def test_clean_flicker_noise_removes_row_stripes():
    m = nircam_ramp(nints=1, ngroups=5, ny=64, nx=64, seed=9, n_stars=3, n_crs=0, n_bad=0, flicker=5.0, readnoise=6.0)
    diffs_before = np.diff(m.data[0], axis=0)
    res = run_step("clean_flicker_noise", m, {"skip": False}, references=_const_refs(m, gain=2.0, readnoise=6.0))
    assert res.status == "COMPLETE"
    diffs_after = np.diff(res.model.data[0], axis=0)
    # row-to-row scatter of the per-row medians: 1/f stripes of 5 DN rms per group, CDS read noise 6 DN
    before = np.median(diffs_before, axis=2).std(axis=1).mean()
    after = np.median(diffs_after, axis=2).std(axis=1).mean()
    print(f"row-median scatter {before:.2f} DN -> {after:.2f} DN")
    assert after < before / 5


def test_clean_flicker_noise_median_image_removes_varying_stripes():
    """median_image (no jwst parity: jwst assigns a WCS first, which needs distortion references).

    The median ramp across integrations is subtracted before the fit, so the
    stripes each integration adds on top of the median are removed and the
    median ramp (scene and median stripes) is kept.
    """
    m = nircam_ramp(nints=3, ngroups=4, ny=48, nx=48, seed=12, n_stars=4, n_crs=0, n_bad=0, sky=0.2, readnoise=2.0)
    truth = m.data.copy()
    stripes = np.random.default_rng(1).normal(0, 5.0, (3, 4, 48, 1)).astype(np.float32)
    m.data += stripes
    res = run_step("clean_flicker_noise", m, {"skip": False, "background_method": "median_image"},
                   references=_const_refs(m, gain=2.0, readnoise=2.0))
    assert res.status == "COMPLETE"
    kept = np.median(stripes, axis=0, keepdims=True)  # the median ramp keeps the median stripes

    def row_scatter(x):
        rows = np.median(x, axis=3)
        return (rows - np.median(rows, axis=2, keepdims=True)).std()

    before = row_scatter(np.broadcast_to(stripes - kept, m.data.shape))
    after = row_scatter(res.model.data - truth - kept)
    print(f"varying row stripes {before:.2f} DN -> {after:.2f} DN")
    assert after < before / 3


def test_clean_flicker_noise_unsupported_options_say_so():
    m = nircam_ramp(nints=1, ngroups=4, ny=16, nx=16)
    refs = _const_refs(m)
    res = run_step("clean_flicker_noise", m, {"skip": False, "fit_method": "fft"}, references=refs)
    assert res.status == "FAILED", "jwst refuses fft for imaging: FAILED, data unchanged"
    m.meta.exposure.type = "NRS_FIXEDSLIT"
    with pytest.raises(UnsupportedModeError, match="fft"):
        run_step("clean_flicker_noise", m, {"skip": False, "fit_method": "fft"}, references=refs)
    with pytest.raises(UnsupportedModeError, match="mask_science_regions"):
        run_step("clean_flicker_noise", m, {"skip": False, "mask_science_regions": True}, references=refs)


def test_clean_flicker_noise_only_fetches_the_references_it_needs():
    m = nircam_ramp(nints=1, ngroups=4, ny=16, nx=16, flicker=5.0)
    res = run_step("clean_flicker_noise", m, {"skip": False}, references=_const_refs(m))
    assert set(res.references) == {"gain", "readnoise"}
    assert res.model.meta.ref_file.flat is None, "no flat asked for, none recorded"


def test_picture_frame_applies_to_nirspec_full_frame_only():
    m = nircam_ramp(nints=1, ngroups=3, ny=16, nx=16)
    pf = ref_model(models.PictureFrameModel, m, "pictureframe", np.zeros((16, 16)))
    res = run_step("picture_frame", m, {"skip": False}, references={"pictureframe": pf, **_const_refs(m)})
    assert res.status == "SKIPPED"


def test_picture_frame_subtracts_scaled_frame():
    from webbflow.tasks.picture_frame import region_masks, subtract_picture_frame

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:2048, :2048]
    d = np.minimum(np.minimum(yy, 2047 - yy), np.minimum(xx, 2047 - xx))
    frame = np.exp(-d / 60.0).astype(np.float32)
    sky = 3.0 + rng.normal(0, 0.01, (2048, 2048)).astype(np.float32)
    image = (sky + 0.7 * frame)[None]  # a rate image with 0.7 x the reference pattern
    center, edge = region_masks(np.ones((2048, 2048), bool))
    subtract_picture_frame(image, frame, center, edge, is_ramp=False)
    resid = image[0] - sky
    # the frame is gone; a constant offset (the sky's edge level) remains
    assert np.ptp(np.median(resid[center])) < 1e-6
    assert abs(np.median(resid[edge]) - np.median(resid[center])) < 0.01


# ---------------------------------------------------------------------------
# parity with jwst


@pytest.fixture(scope="module")
def jump_input(tmp_path_factory):
    d = tmp_path_factory.mktemp("jump")
    m = nircam_ramp(nints=2, ngroups=8, ny=64, nx=64, seed=3, n_crs=80)
    path = m.save(d / "jw_tail_dark_current.fits")
    return d, path, write_refs(d, m, bad_gain=4)


@pytest.mark.parity
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"rejection_threshold": 3.0, "flag_4_neighbors": False},
        {"after_jump_flag_dn1": 500.0, "after_jump_flag_time1": 25.0, "min_jump_to_flag_neighbors": 5.0},
        {"expand_large_events": True, "min_jump_area": 4.0, "edge_size": 5},
    ],
    ids=["defaults", "threshold3-no-neighbours", "after-jump", "snowballs"],
)
def test_jump_parity(jump_input, real_rules_cache, params):
    from jwst.jump import JumpStep

    d, path, refs = jump_input
    ours = run_step("jump", models.open(path), dict(params), references=_refs(refs)).model
    theirs = jwst_run(JumpStep, path, real_rules_cache, refs, **params)
    print(f"jump {params}: {np.count_nonzero(theirs.groupdq & dqflags.JUMP_DET)} jump flags in jwst, "
          f"extended events {theirs.meta.exposure.extended_emission_events}")
    assert_parity(ours, theirs, ["groupdq", "pixeldq"], rtol=RTOL, min_fraction=MIN_FRACTION)
    assert ours.meta.exposure.primary_cosmic_rays == pytest.approx(theirs.meta.exposure.primary_cosmic_rays, rel=1e-6)


@pytest.mark.parity
def test_jump_parity_full_frame_references(tmp_path, real_rules_cache):
    """A 64x64 subarray inside 256x256 references: both cut the same region."""
    from jwst.jump import JumpStep

    m = nircam_ramp(nints=1, ngroups=6, ny=64, nx=64, seed=8, xstart=33, ystart=17, subarray="SUB64P")
    path = m.save(tmp_path / "jw_sub_dark_current.fits")
    big = nircam_ramp(nints=1, ngroups=2, ny=256, nx=256, n_stars=0, n_crs=0, n_bad=0, subarray="SUB256")
    refs = write_refs(tmp_path, big)
    ours = run_step("jump", models.open(path), {}, references=_refs(refs)).model
    theirs = jwst_run(JumpStep, path, real_rules_cache, refs)
    assert_parity(ours, theirs, ["groupdq", "pixeldq"], rtol=RTOL, min_fraction=MIN_FRACTION)


@pytest.fixture(scope="module")
def ramp_fit_input(tmp_path_factory, real_rules_cache):
    """The jump output of jwst on a simulated ramp, with INT_TIMES and a ZEROFRAME."""
    from jwst.jump import JumpStep

    d = tmp_path_factory.mktemp("rampfit")
    m = nircam_ramp(nints=2, ngroups=8, ny=64, nx=64, seed=5, n_crs=80)
    m.zeroframe = m.data[:, 0] - 3.0
    m.meta.exposure.zero_frame = True
    it = np.zeros(2, dtype=[("integration_number", "i4"), ("int_start_MJD_UTC", "f8"), ("int_mid_MJD_UTC", "f8"),
                            ("int_end_MJD_UTC", "f8"), ("int_start_BJD_TDB", "f8"), ("int_mid_BJD_TDB", "f8"),
                            ("int_end_BJD_TDB", "f8")])
    it["integration_number"] = [1, 2]
    it["int_start_MJD_UTC"] = [59800.25, 59800.251]
    m.int_times = it
    src = m.save(d / "jw_rf_dark_current.fits")
    refs = write_refs(d, m, bad_gain=2)
    jumped = jwst_run(JumpStep, src, real_rules_cache, refs)
    path = d / "jw_rf_jump.fits"
    jumped.save(str(path))
    return d, path, refs


@pytest.mark.parity
@pytest.mark.parametrize(
    "params",
    [{}, {"algorithm": "LIKELY"}, {"firstgroup": 1, "lastgroup": 6}, {"suppress_one_group": False}],
    ids=["OLS_C", "LIKELY", "group-limits", "no-suppression"],
)
def test_ramp_fit_parity(ramp_fit_input, real_rules_cache, params):
    from jwst.ramp_fitting import RampFitStep

    d, path, refs = ramp_fit_input
    rate, rateints = run_step("ramp_fit", models.open(path), dict(params), references=_refs(refs)).model
    jrate, jrateints = jwst_run(RampFitStep, path, real_rules_cache, refs, **params)
    print(f"ramp_fit {params or 'defaults'}: rate")
    assert_parity(rate, jrate, RATE_ARRAYS, rtol=RTOL, min_fraction=MIN_FRACTION)
    print("rateints")
    assert_parity(rateints, jrateints, RATE_ARRAYS, rtol=RTOL, min_fraction=MIN_FRACTION)
    assert rateints.int_times is not None and len(rateints.int_times) == 2


@pytest.mark.parity
def test_ramp_fit_parity_fitopt_and_chargeloss(ramp_fit_input, real_rules_cache, tmp_path):
    """charge_migration then ramp_fit (CHARGELOSS re-fit path), with the optional fit product."""
    from jwst.charge_migration import ChargeMigrationStep
    from jwst.ramp_fitting import RampFitStep

    d, path, refs = ramp_fit_input
    cm_ours = run_step("charge_migration", models.open(path), {"skip": False, "signal_threshold": 15000.0}).model
    cm_theirs = jwst_run(ChargeMigrationStep, path, real_rules_cache, {}, skip=False, signal_threshold=15000.0)
    assert_parity(cm_ours, cm_theirs, ["groupdq"], rtol=RTOL, min_fraction=MIN_FRACTION)
    cm_path = tmp_path / "jw_cm_charge_migration.fits"
    cm_theirs.save(str(cm_path))
    ours_dir, theirs_dir = tmp_path / "ours", tmp_path / "jwst"
    ours_dir.mkdir()
    theirs_dir.mkdir()
    rate, _ = run_step("ramp_fit", models.open(cm_path), {"save_opt": True, "output_dir": str(ours_dir)},
                       references=_refs(refs)).model
    jrate, _ = jwst_run(RampFitStep, cm_path, real_rules_cache, refs, save_opt=True, output_dir=str(theirs_dir))
    assert_parity(rate, jrate, RATE_ARRAYS, rtol=RTOL, min_fraction=MIN_FRACTION)
    from stdatamodels.jwst import datamodels as sdm

    ours_opt = models.open(next(ours_dir.glob("*_fitopt.fits")))
    with sdm.open(next(theirs_dir.glob("*_fitopt.fits"))) as theirs_opt:
        assert_parity(ours_opt, theirs_opt, ["slope", "sigslope", "yint", "sigyint", "pedestal", "weights", "crmag"],
                      rtol=RTOL, min_fraction=MIN_FRACTION)


@pytest.mark.parity
def test_jump_and_ramp_fit_parity_miri(tmp_path, real_rules_cache):
    """MIRI imaging: first and last groups DO_NOT_USE (as rscd/lastframe leave them), 3 integrations."""
    from jwst.jump import JumpStep
    from jwst.ramp_fitting import RampFitStep

    m = nircam_ramp(nints=3, ngroups=10, ny=64, nx=64, seed=17, n_crs=60, instrument="MIRI", detector="MIRIMAGE",
                    subarray="SUB64", exp_type="MIR_IMAGE", group_time=2.775, xstart=1, ystart=779)
    m.groupdq[:, 0] |= dqflags.DO_NOT_USE
    m.groupdq[:, -1] |= dqflags.DO_NOT_USE
    path = m.save(tmp_path / "jw_miri_dark_current.fits")
    refs = write_refs(tmp_path, m, gain=5.5, readnoise=14.0)
    ours = run_step("jump", models.open(path), {}, references=_refs(refs)).model
    theirs = jwst_run(JumpStep, path, real_rules_cache, refs)
    assert_parity(ours, theirs, ["groupdq", "pixeldq"], rtol=RTOL, min_fraction=MIN_FRACTION)
    jpath = tmp_path / "jw_miri_jump.fits"
    theirs.save(str(jpath))
    rate, rateints = run_step("ramp_fit", models.open(jpath), {}, references=_refs(refs)).model
    jrate, jrateints = jwst_run(RampFitStep, jpath, real_rules_cache, refs)
    assert_parity(rate, jrate, RATE_ARRAYS, rtol=RTOL, min_fraction=MIN_FRACTION)
    assert_parity(rateints, jrateints, RATE_ARRAYS, rtol=RTOL, min_fraction=MIN_FRACTION)


@pytest.mark.parity
@pytest.mark.parametrize("threshold", [25000.0, 8000.0])
def test_charge_migration_parity(jump_input, real_rules_cache, threshold):
    from jwst.charge_migration import ChargeMigrationStep

    d, path, _ = jump_input
    ours = run_step("charge_migration", models.open(path), {"skip": False, "signal_threshold": threshold}).model
    theirs = jwst_run(ChargeMigrationStep, path, real_rules_cache, {}, skip=False, signal_threshold=threshold)
    print(f"charge_migration {threshold}: {np.count_nonzero(theirs.groupdq & dqflags.CHARGELOSS)} CHARGELOSS groups")
    assert np.count_nonzero(theirs.groupdq & dqflags.CHARGELOSS) > 0
    assert_parity(ours, theirs, ["groupdq"], rtol=RTOL, min_fraction=MIN_FRACTION)


@pytest.mark.parity
def test_persistence_parity(ramp_fit_input, real_rules_cache, tmp_path):
    from jwst.persistence import PersistenceStep

    d, path, _ = ramp_fit_input  # has INT_TIMES: integration starts come from the table
    for params in ({"persistence_time": 30}, {"persistence_time": 100, "dn_threshold": 5000.0, "persistence_dnu": True}):
        ours = run_step("persistence", models.open(path), {"skip": False, **params,
                                                           "save_persistence": str(tmp_path / "ours.asdf")}).model
        theirs = jwst_run(PersistenceStep, path, real_rules_cache, {}, skip=False, **params,
                          save_persistence=str(tmp_path / "jwst.asdf"))
        print(f"persistence {params}: {np.count_nonzero(theirs.groupdq & dqflags.PERSISTENCE)} flagged groups")
        assert np.count_nonzero(theirs.groupdq & dqflags.PERSISTENCE) > 0
        assert_parity(ours, theirs, ["groupdq"], rtol=RTOL, min_fraction=MIN_FRACTION)
    # the next exposure picks up the windows left open by this one
    ours = run_step("persistence", models.open(path), {"skip": False, "persistence_time": 100,
                                                       "persistence_array_file": str(tmp_path / "ours.asdf")}).model
    theirs = jwst_run(PersistenceStep, path, real_rules_cache, {}, skip=False, persistence_time=100,
                      persistence_array_file=str(tmp_path / "jwst.asdf"))
    assert_parity(ours, theirs, ["groupdq"], rtol=RTOL, min_fraction=MIN_FRACTION)


@pytest.fixture(scope="module")
def flicker_input(tmp_path_factory, private_cache):
    d = tmp_path_factory.mktemp("flicker")
    m = nircam_ramp(nints=2, ngroups=6, ny=64, nx=64, seed=5, flicker=8.0)
    path = m.save(d / "jw_fl_jump.fits")
    refs = write_refs(d, m)
    # jwst's draft rate comes from a fresh RampFitStep that asks CRDS: give it our files
    install_in_crds_cache(private_cache, path, refs)
    flat = ref_model(models.FlatModel, m, "flat", 1 + 0.05 * np.random.default_rng(0).standard_normal((64, 64)))
    flat.data[10, 10] = 0.0
    flat.data[20, 30] = np.nan
    refs["flat"] = flat.save(d / "test_flat.fits")
    return d, path, refs


@pytest.mark.parity
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"background_method": "model"},  # 32x32 boxes: too few for the 5x5 filter, jwst falls back to a median
        {"background_method": "model", "background_box_size": [8, 8]},
        {"background_method": None, "n_sigma": 3.0},
        {"single_mask": False, "fit_histogram": True},
        {"apply_flat_field": True},
        {"autoparam": True},
    ],
    ids=["defaults", "model-bkg", "model-bkg-8x8", "no-bkg", "mask-per-int-histogram", "flat", "autoparam"],
)
def test_clean_flicker_noise_parity(flicker_input, private_cache, params):
    from jwst.clean_flicker_noise import CleanFlickerNoiseStep

    d, path, refs = flicker_input
    ours = run_step("clean_flicker_noise", models.open(path), {"skip": False, **params}, references=_refs(refs))
    theirs = jwst_run(CleanFlickerNoiseStep, path, private_cache, {"flat": refs["flat"]}, skip=False, **params)
    assert ours.status == theirs.meta.cal_step.clean_flicker_noise == "COMPLETE"
    changed = np.mean(ours.model.data != models.open(path).data)
    print(f"clean_flicker_noise {params or 'defaults'}: {100 * changed:.1f}% of samples changed")
    assert changed > 0.5
    assert_parity(ours.model, theirs, ["data"], rtol=RTOL, min_fraction=MIN_FRACTION)


@pytest.mark.parity
def test_clean_flicker_noise_parity_rate_input_and_user_mask(flicker_input, private_cache, tmp_path):
    """A rate and a rateints (stage-2 use), then a ramp with a user-supplied mask."""
    from jwst.clean_flicker_noise import CleanFlickerNoiseStep

    d, path, refs = flicker_input
    rate, rateints = run_step("ramp_fit", models.open(path), {}, references=_refs(refs)).model
    for product, params in ((rate, {}), (rateints, {"single_mask": False})):
        prod_path = product.save(tmp_path / f"jw_fl_{product.data.ndim}d.fits")
        ours = run_step("clean_flicker_noise", models.open(prod_path), {"skip": False, **params}).model
        theirs = jwst_run(CleanFlickerNoiseStep, prod_path, private_cache, {}, skip=False, **params)
        print(f"clean_flicker_noise on a {type(product).__name__}")
        assert_parity(ours, theirs, ["data"], rtol=RTOL, min_fraction=MIN_FRACTION)
    mask = models.ImageModel(np.ones((64, 64), np.float32))
    mask.data[20:40, 20:40] = 0
    mask_path = mask.save(tmp_path / "user_mask.fits")
    ours = run_step("clean_flicker_noise", models.open(path), {"skip": False, "user_mask": mask_path}).model
    theirs = jwst_run(CleanFlickerNoiseStep, path, private_cache, {}, skip=False, user_mask=mask_path)
    assert_parity(ours, theirs, ["data"], rtol=RTOL, min_fraction=MIN_FRACTION)


@pytest.mark.parity
def test_clean_flicker_noise_parity_miri_imaging(tmp_path, fresh_cache):
    """MIRI imaging: vertical flicker, median along columns (mask_science_regions left off: see the module)."""
    from jwst.clean_flicker_noise import CleanFlickerNoiseStep

    m = nircam_ramp(nints=1, ngroups=6, ny=64, nx=64, seed=19, instrument="MIRI", detector="MIRIMAGE",
                    subarray="SUB64", exp_type="MIR_IMAGE", group_time=2.775, xstart=1, ystart=779)
    m.data += np.random.default_rng(3).normal(0, 4.0, (1, 6, 1, 64)).astype(np.float32)  # column flicker
    path = m.save(tmp_path / "jw_mirfl_jump.fits")
    refs = write_refs(tmp_path, m, gain=5.5, readnoise=14.0)
    install_in_crds_cache(fresh_cache, path, refs)
    ours = run_step("clean_flicker_noise", models.open(path), {"skip": False}, references=_refs(refs)).model
    theirs = jwst_run(CleanFlickerNoiseStep, path, fresh_cache, {}, skip=False)
    assert theirs.meta.cal_step.clean_flicker_noise == "COMPLETE"
    assert_parity(ours, theirs, ["data"], rtol=RTOL, min_fraction=MIN_FRACTION)


@pytest.mark.parity
@pytest.mark.slow
def test_picture_frame_parity_nirspec_full_frame(tmp_path, fresh_cache):
    """NIRSpec NRS1 full frame (the only mode the step corrects), 3 groups; then its rate."""
    from jwst.picture_frame import PictureFrameStep

    m = nircam_ramp(nints=1, ngroups=3, ny=2048, nx=2048, seed=7, n_stars=20, n_crs=200, instrument="NIRSPEC",
                    detector="NRS1", subarray="FULL", exp_type="NRS_FIXEDSLIT")
    yy, xx = np.mgrid[:2048, :2048]
    d = np.minimum(np.minimum(yy, 2047 - yy), np.minimum(xx, 2047 - xx))
    frame = (0.5 * np.exp(-d / 60.0)).astype(np.float32)
    m.data += (frame * m.meta.exposure.group_time)[None, None] * np.arange(1, 4, dtype=np.float32)[None, :, None, None]
    path = m.save(tmp_path / "jw_pf_jump.fits")
    refs = write_refs(tmp_path, m)
    install_in_crds_cache(fresh_cache, path, refs)
    refs["pictureframe"] = ref_model(models.PictureFrameModel, m, "pictureframe", frame).save(tmp_path / "pf.fits")
    params = {"skip": False, "mask_science_regions": False}
    ours = run_step("picture_frame", models.open(path), params, references=_refs(refs))
    theirs = jwst_run(PictureFrameStep, path, fresh_cache, {"pictureframe": refs["pictureframe"]}, **params)
    assert ours.status == theirs.meta.cal_step.picture_frame == "COMPLETE"
    assert_parity(ours.model, theirs, ["data"], rtol=RTOL, min_fraction=MIN_FRACTION)
    # on a rate image
    rate, _ = run_step("ramp_fit", models.open(path), {}, references=_refs(refs)).model
    rate_path = rate.save(tmp_path / "jw_pf_rate.fits")
    ours = run_step("picture_frame", models.open(rate_path), params, references={"pictureframe": refs["pictureframe"]})
    theirs = jwst_run(PictureFrameStep, rate_path, fresh_cache, {"pictureframe": refs["pictureframe"]}, **params)
    assert_parity(ours.model, theirs, ["data"], rtol=RTOL, min_fraction=MIN_FRACTION)


@pytest.mark.parity
@pytest.mark.slow
def test_clean_flicker_noise_parity_full_frame_by_channel(tmp_path, fresh_cache):
    """NIRCam full frame: fit by amplifier, and autoparam's channel statistics (2048-pixel rows)."""
    from jwst.clean_flicker_noise import CleanFlickerNoiseStep

    m = nircam_ramp(nints=1, ngroups=2, ny=2048, nx=2048, seed=21, n_stars=30, n_crs=100, subarray="FULL",
                    flicker=4.0)
    m.data[:, :, :, 512:1024] += np.float32(3.0) * np.arange(2, dtype=np.float32)[None, :, None, None]  # amp offset
    path = m.save(tmp_path / "jw_ff_jump.fits")
    refs = write_refs(tmp_path, m)
    install_in_crds_cache(fresh_cache, path, refs)
    flat = 1 + 0.03 * np.random.default_rng(2).standard_normal((2048, 2048))
    refs["flat"] = ref_model(models.FlatModel, m, "flat", flat).save(tmp_path / "flat.fits")
    from webbflow.tasks.clean_flicker_noise import auto_parameters

    chosen = auto_parameters(m, {k: models.open(v) for k, v in refs.items()}, "NRC_IMAGE", models.open(refs["flat"]))
    print(f"autoparam chooses {chosen}")
    assert chosen["fit_by_channel"] is True, "the offset amplifier calls for a fit by channel"
    for params in ({"fit_by_channel": True}, {"autoparam": True}):
        ours = run_step("clean_flicker_noise", models.open(path), {"skip": False, **params}, references=_refs(refs))
        theirs = jwst_run(CleanFlickerNoiseStep, path, fresh_cache, {"flat": refs["flat"]}, skip=False, **params)
        print(f"clean_flicker_noise full frame {params}")
        assert ours.status == theirs.meta.cal_step.clean_flicker_noise == "COMPLETE"
        assert_parity(ours.model, theirs, ["data"], rtol=RTOL, min_fraction=MIN_FRACTION)
