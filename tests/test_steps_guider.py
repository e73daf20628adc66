"""calwebb_guider's steps: guider_cds and flat_field (and dq_init on a guider ramp).

Unit tests check each FGS mode's rule and the flat-field arithmetic on small
arrays.  Parity tests (``parity``, ``real``) run the REAL flight FGS ACQ1
exposure in ../shared/data/real (GUIDER2, 6 x 2 x 128 x 128, SUBSTRT 887,1022)
through our steps and jwst 3.0's with the same synthetic references, written
here by our models as 200 x 200 windows around the subarray (so both cut them
by SUBSTRT), and compare: floats within rtol 1e-4 for >= 99.9 % of pixels, DQ
identical for >= 99.9 %.
"""

from __future__ import annotations

import logging

import numpy as np
from parity import quiet_jwst
import pytest

from webbflow import models
from webbflow.errors import ReferenceFileError, UnsupportedModeError
from webbflow.models import dqflags
from webbflow.tasks import load_all
from webbflow.tasks.base import run_step

load_all()

DNU = dqflags.DO_NOT_USE
NOFLAT = dqflags.NO_FLAT_FIELD
DQ_DEF_DTYPE = [("BIT", ">i4"), ("VALUE", ">u4"), ("NAME", "S40"), ("DESCRIPTION", "S80")]


# ---------------------------------------------------------------------------
# builders


def ref_meta(m, reftype, *, xstart, ystart, nx, ny, instrument="FGS", detector="GUIDER2"):
    m.meta.reftype = reftype.upper()
    m.meta.author, m.meta.pedigree = "webbflow tests", "DUMMY"
    m.meta.description = f"synthetic {reftype} for tests"
    m.meta.useafter = "2000-01-01T00:00:00"
    m.meta.telescope = "JWST"
    m.meta.instrument.name, m.meta.instrument.detector = instrument, detector
    m.meta.subarray.name = "GENERIC"
    m.meta.subarray.xstart, m.meta.subarray.ystart, m.meta.subarray.xsize, m.meta.subarray.ysize = xstart, ystart, nx, ny
    return m


def guider_ramp(exp_type="FGS_ACQ1", nints=2, ngroups=2, ny=4, nx=5, tgroup=0.5, seed=0):
    rng = np.random.default_rng(seed)
    g = models.GuiderRawModel((nints, ngroups, ny, nx))
    g.data = (1000 + rng.uniform(0, 50, (nints, 1, ny, nx)) * np.arange(ngroups)[None, :, None, None]
              + rng.normal(0, 2, (nints, ngroups, ny, nx))).astype(np.float32)
    m = g.meta
    m.instrument.name, m.instrument.detector = "FGS", "GUIDER1"
    m.exposure.type = exp_type
    m.exposure.group_time = tgroup
    m.exposure.nints, m.exposure.ngroups = nints, ngroups
    m.subarray.name = "GENERIC"
    m.subarray.xstart, m.subarray.ystart, m.subarray.xsize, m.subarray.ysize = 11, 21, nx, ny
    return g


def const_refs(g, gain=2.0, rn=10.0):
    ny, nx = g.data.shape[-2:]
    s = g.meta.subarray
    gm = ref_meta(models.GainModel(data=np.full((ny, nx), gain, np.float32)), "gain",
                  xstart=s.xstart, ystart=s.ystart, nx=nx, ny=ny, detector="GUIDER1")
    rm = ref_meta(models.ReadnoiseModel(data=np.full((ny, nx), rn, np.float32)), "readnoise",
                  xstart=s.xstart, ystart=s.ystart, nx=nx, ny=ny, detector="GUIDER1")
    return {"gain": gm, "readnoise": rm}


def image_flat(shape, value=2.0, err=0.1, xstart=1, ystart=1, instrument="NIRCAM", detector="NRCA1"):
    f = models.FlatModel(data=np.full(shape, value, np.float32))
    f.err = np.full(shape, err, np.float32)
    f.dq = np.zeros(shape, np.uint32)
    return ref_meta(f, "flat", xstart=xstart, ystart=ystart, nx=shape[1], ny=shape[0], instrument=instrument,
                    detector=detector)


def image_model(cls=models.ImageModel, shape=(4, 5)):
    m = cls(shape)
    m.data = np.full(shape, 10.0, np.float32)
    m.err = np.full(shape, 1.0, np.float32)
    m.var_poisson = np.full(shape, 0.64, np.float32)
    m.var_rnoise = np.full(shape, 0.36, np.float32)
    m.meta.instrument.name, m.meta.instrument.detector = "NIRCAM", "NRCA1"
    m.meta.exposure.type = "NRC_IMAGE"
    ny, nx = shape[-2:]
    m.meta.subarray.name = "SUB"
    m.meta.subarray.xstart, m.meta.subarray.ystart, m.meta.subarray.xsize, m.meta.subarray.ysize = 1, 1, nx, ny
    return m


# ---------------------------------------------------------------------------
# guider_cds


@pytest.mark.parametrize("exp_type", ["FGS_ACQ1", "FGS_ACQ2", "FGS_TRACK"])
def test_guider_cds_two_group_modes(exp_type):
    g = guider_ramp(exp_type, nints=3)
    g.dq = np.zeros((4, 5), np.uint32)
    g.dq[1, 1] = DNU
    res = run_step("guider_cds", g, references=const_refs(g))
    out = res.model
    assert res.status == "COMPLETE" and isinstance(out, models.GuiderCalModel)
    assert out.meta.cal_step.guider_cds == "COMPLETE" and out.meta.bunit_data == "DN/s"
    diff = g.data[:, 1] - g.data[:, 0]
    np.testing.assert_allclose(out.data, diff / 0.5, rtol=1e-6)
    var = 2 * (10.0 / 0.5) ** 2 + np.maximum(diff, 0) / (2.0 * 0.5)
    np.testing.assert_allclose(out.err, np.sqrt(var), rtol=1e-6)
    assert out.dq.shape == (4, 5) and out.dq[1, 1] == DNU
    assert out.meta.exposure.type == exp_type


def test_guider_cds_fineguide_averages_four_groups():
    g = guider_ramp("FGS_FINEGUIDE", nints=2, ngroups=10)
    out = run_step("guider_cds", g, references=const_refs(g)).model
    diff = g.data[:, -4:].mean(axis=1) - g.data[:, :4].mean(axis=1)
    np.testing.assert_allclose(out.data, diff / 0.5, rtol=1e-5)


@pytest.mark.parametrize("exp_type", ["FGS_ID-IMAGE", "FGS_ID-STACK"])
def test_guider_cds_id_takes_the_smaller_difference(exp_type):
    g = guider_ramp(exp_type, nints=2)
    g.data[0, 1, 0, 0] += 500  # a cosmic ray in integration 1: the other one wins
    out = run_step("guider_cds", g, references=const_refs(g)).model
    d = np.minimum(g.data[0, 1] - g.data[0, 0], g.data[1, 1] - g.data[1, 0])
    assert out.data.shape == (1, 4, 5)
    np.testing.assert_allclose(out.data[0], d / 0.5, rtol=1e-6)


def test_guider_cds_stack_uses_mean_of_unmatched_reference():
    g = guider_ramp("FGS_ID-STACK", nints=2)
    refs = const_refs(g)
    big = ref_meta(models.GainModel(data=np.array([[1.0, 3.0], [1.0, 3.0]], np.float32)), "gain",
                   xstart=500, ystart=500, nx=2, ny=2, detector="GUIDER1")
    refs["gain"] = big  # does not cover the subarray: its mean (2) is used
    out = run_step("guider_cds", g, references=refs).model
    d = np.minimum(g.data[0, 1] - g.data[0, 0], g.data[1, 1] - g.data[1, 0])
    var = 2 * (10.0 / 0.5) ** 2 + np.maximum(d, 0) / (2.0 * 0.5)
    np.testing.assert_allclose(out.err[0], np.sqrt(var), rtol=1e-6)


def test_guider_cds_cuts_references_and_rejects_ones_that_miss():
    g = guider_ramp("FGS_ACQ1")
    gain = np.ones((30, 30), np.float32)
    gain[20:24, 10:15] = 4.0  # under the subarray (SUBSTRT 11, 21)
    refs = const_refs(g)
    refs["gain"] = ref_meta(models.GainModel(data=gain), "gain", xstart=1, ystart=1, nx=30, ny=30, detector="GUIDER1")
    out = run_step("guider_cds", g, references=refs).model
    diff = g.data[:, 1] - g.data[:, 0]
    np.testing.assert_allclose(out.err, np.sqrt(2 * 20.0**2 + np.maximum(diff, 0) / (4.0 * 0.5)), rtol=1e-6)
    refs["gain"] = ref_meta(models.GainModel(data=gain), "gain", xstart=100, ystart=1, nx=30, ny=30, detector="GUIDER1")
    with pytest.raises(ReferenceFileError):
        run_step("guider_cds", g, references=refs)


def test_guider_cds_skips_without_gain():
    g = guider_ramp()
    res = run_step("guider_cds", g, {"override_gain": "N/A"}, references={"readnoise": const_refs(g)["readnoise"]})
    assert res.status == "SKIPPED" and res.model is g and g.meta.cal_step.guider_cds == "SKIPPED"


def test_guider_cds_takes_level1b_and_carries_tables():
    g = guider_ramp()
    raw = models.Level1bModel(data=np.round(g.data).astype(np.uint16))
    raw.meta = g.meta.model_copy(deep=True)
    gr = models.GuiderRawModel(raw)
    gr.pointing_table = np.zeros(2, dtype=[("time", "f8"), ("jitter", "f8")])
    out = run_step("guider_cds", gr, references=const_refs(g)).model
    assert out.pointing_table is not None and len(out.pointing_table) == 2
    diff = raw.data[:, 1].astype(np.float32) - raw.data[:, 0].astype(np.float32)
    np.testing.assert_allclose(out.data, diff / 0.5, rtol=1e-6)


# ---------------------------------------------------------------------------
# flat_field


def test_flat_field_image_divides_and_propagates_variances():
    m = image_model()
    flat = image_flat((4, 5))
    flat.data[0, 0] = np.nan
    flat.data[0, 1] = 0.0
    flat.dq[0, 2] = 2  # its own bit 2 is NO_FLAT_FIELD (DQ_DEF)
    flat.dq[0, 3] = 4  # UNRELIABLE_FLAT: still applied
    flat.dq_def = np.array([(1, 2, b"NO_FLAT_FIELD", b"x"), (2, 4, b"UNRELIABLE_FLAT", b"y")], dtype=DQ_DEF_DTYPE)
    res = run_step("flat_field", m, references={"flat": flat})
    assert res.status == "COMPLETE" and m.meta.cal_step.flat_field == "COMPLETE"
    assert m.data[2, 2] == pytest.approx(5.0)
    assert m.var_poisson[2, 2] == pytest.approx(0.16) and m.var_rnoise[2, 2] == pytest.approx(0.09)
    assert m.var_flat[2, 2] == pytest.approx(25.0 / 4.0 * 0.01)
    assert m.err[2, 2] == pytest.approx(np.sqrt(0.16 + 0.09 + 0.0625), rel=1e-6)
    for x in (0, 1, 2):  # NaN flat, zero flat, NO_FLAT_FIELD: not applied, flagged, NaN
        assert m.dq[0, x] & DNU and m.dq[0, x] & NOFLAT
        assert np.isnan(m.data[0, x]) and np.isnan(m.err[0, x])
    assert m.dq[0, 3] == dqflags.UNRELIABLE_FLAT and m.data[0, 3] == pytest.approx(5.0)


def test_flat_field_inverse_multiplies():
    m = image_model()
    run_step("flat_field", m, {"inverse": True}, references={"flat": image_flat((4, 5))})
    assert m.data[1, 1] == pytest.approx(20.0)
    assert not m.var_flat.any()
    assert m.err[1, 1] == pytest.approx(np.sqrt(0.64 * 4 + 0.36 * 4), rel=1e-6)


def test_flat_field_cube_and_subarray():
    m = image_model(models.CubeModel, (3, 4, 5))
    m.meta.subarray.xstart, m.meta.subarray.ystart = 3, 2
    flat = image_flat((10, 10))
    flat.data[1, 2] = 4.0  # the science pixel (0, 0)
    run_step("flat_field", m, references={"flat": flat})
    assert m.data.shape == (3, 4, 5)
    np.testing.assert_allclose(m.data[:, 0, 0], 2.5)
    np.testing.assert_allclose(m.data[:, 1, 1], 5.0)


def test_flat_field_guider_folds_flat_error_into_err():
    c = models.GuiderCalModel((2, 4, 5))
    c.data = np.full((2, 4, 5), 10.0, np.float32)
    c.err = np.full((2, 4, 5), 3.0, np.float32)
    c.meta.instrument.name, c.meta.exposure.type = "FGS", "FGS_ACQ1"
    c.meta.subarray.xstart, c.meta.subarray.ystart, c.meta.subarray.xsize, c.meta.subarray.ysize = 1, 1, 5, 4
    flat = image_flat((4, 5), instrument="FGS", detector="GUIDER1")
    flat.data[3, 4] = np.nan
    run_step("flat_field", c, references={"flat": flat})
    assert c.data[0, 0, 0] == pytest.approx(5.0)
    assert c.err[0, 0, 0] == pytest.approx(np.sqrt(9 + 25 / 4 * 0.01), rel=1e-6)
    assert c.dq.shape == (4, 5) and c.dq[3, 4] == DNU | NOFLAT
    # the guider's DQ is 2-D under 3-D data, so (as in jwst) it does not turn data into NaN:
    # the bad flat pixel is just left uncorrected
    np.testing.assert_array_equal(c.data[:, 3, 4], 10.0)


def test_flat_field_skips_and_refuses():
    m = image_model()
    assert run_step("flat_field", m, {"override_flat": "N/A"}).status == "SKIPPED"
    assert run_step("flat_field", m, references={"flat": image_flat((2, 2))}).status == "SKIPPED"  # flat too small
    m.meta.cal_step.extract_2d = "COMPLETE"
    assert run_step("flat_field", m, references={"flat": image_flat((4, 5))}).status == "SKIPPED"
    assert m.data[0, 0] == 10.0
    # NIRSpec fixed slits take the f/s/d flats, on the cutouts extract_2d makes: a whole image is refused
    s = image_model()
    s.meta.instrument.name, s.meta.exposure.type = "NIRSPEC", "NRS_FIXEDSLIT"
    with pytest.raises(UnsupportedModeError, match="takes the MultiSlitModel extract_2d makes, not ImageModel"):
        run_step("flat_field", s, references={"fflat": "N/A", "sflat": "N/A", "dflat": "N/A"})


def test_flat_field_user_supplied_flat(tmp_path):
    m = image_model()
    p = image_flat((4, 5), value=4.0).save(tmp_path / "myflat.fits")
    res = run_step("flat_field", m, {"user_supplied_flat": str(p)})
    assert res.status == "COMPLETE" and m.data[0, 0] == pytest.approx(2.5)
    assert m.meta.ref_file.flat.name.endswith("myflat.fits")


# ---------------------------------------------------------------------------
# parity on the real FGS ACQ1 exposure


def _quiet():
    return quiet_jwst(logging.CRITICAL)


WIN = dict(xstart=850, ystart=1000, nx=200, ny=200)  # the real subarray is x 887..1014, y 1022..1149


@pytest.fixture(scope="module")
def fgs_refs(tmp_path_factory):
    d = tmp_path_factory.mktemp("fgs_refs")
    rng = np.random.default_rng(3)
    n = WIN["nx"]
    gain = ref_meta(models.GainModel(data=rng.uniform(1.5, 2.5, (n, n)).astype(np.float32)), "gain", **WIN)
    rn = ref_meta(models.ReadnoiseModel(data=rng.uniform(10, 20, (n, n)).astype(np.float32)), "readnoise", **WIN)
    flat = models.FlatModel(data=rng.uniform(0.9, 1.1, (n, n)).astype(np.float32))
    flat.err = rng.uniform(0.001, 0.01, (n, n)).astype(np.float32)
    dq = np.zeros((n, n), np.uint32)
    dq[100, 100], dq[101, 101], dq[102, 102] = 1, 2, 4  # its own bits, named in DQ_DEF
    flat.dq = dq
    flat.dq_def = np.array([(0, 1, b"DO_NOT_USE", b"bad"), (1, 2, b"NO_FLAT_FIELD", b"no flat"),
                            (2, 4, b"UNRELIABLE_FLAT", b"iffy")], dtype=DQ_DEF_DTYPE)
    flat.data[110, 110], flat.data[111, 111] = np.nan, 0.0
    ref_meta(flat, "flat", **WIN)
    mask = models.MaskModel(dq=np.zeros((n, n), np.uint32))
    mask.dq[60:63, 70] = 1  # DO_NOT_USE
    mask.dq[90, 95] = 8  # HOT in the mask's own numbering
    mask.dq_def = np.array([(0, 1, b"DO_NOT_USE", b"bad"), (3, 8, b"HOT", b"hot")], dtype=DQ_DEF_DTYPE)
    ref_meta(mask, "mask", **WIN)
    out = {}
    for name, m in (("gain", gain), ("readnoise", rn), ("flat", flat), ("mask", mask)):
        out[name] = m.save(d / f"fgs_{name}.fits")
    return out


def _raw(real_path):
    return models.GuiderRawModel(models.open(real_path))


@pytest.mark.parity
@pytest.mark.real
def test_guider_cds_and_flat_field_parity_on_real_fgs_acq1(shared_data, fgs_refs, real_rules_cache, tmp_path):
    from jwst.flatfield import FlatFieldStep
    from jwst.guider_cds import GuiderCdsStep
    from parity import assert_parity, jwst_offline
    from stdatamodels.jwst import datamodels as dm

    real = shared_data / "real" / "fgs_acq1_guider2_uncal.fits"
    with jwst_offline(real_rules_cache, "jwst_0541.pmap"), _quiet():
        j_cds = GuiderCdsStep.call(str(real), override_gain=fgs_refs["gain"], override_readnoise=fgs_refs["readnoise"])
        j_flat = FlatFieldStep.call(j_cds.copy(), override_flat=fgs_refs["flat"])
    ours = run_step("guider_cds", _raw(real), {"override_gain": fgs_refs["gain"],
                                               "override_readnoise": fgs_refs["readnoise"]}).model
    assert isinstance(ours, models.GuiderCalModel) and ours.data.shape == (6, 128, 128)
    print("guider_cds on the real FGS ACQ1 exposure: rtol 1e-4 on >= 99.9% of pixels, DQ identical")
    assert_parity(ours, j_cds, ["data", "err", "dq"])
    ours = run_step("flat_field", ours, {"override_flat": fgs_refs["flat"]}).model
    print("flat_field after guider_cds: rtol 1e-4 on >= 99.9% of pixels, DQ identical")
    assert_parity(ours, j_flat, ["data", "err", "dq"])
    assert (ours.dq != 0).sum() >= 4  # the flat's flags reached the product
    assert ours.meta.cal_step.guider_cds == j_flat.meta.cal_step.guider_cds == "COMPLETE"
    assert ours.meta.cal_step.flat_field == j_flat.meta.cal_step.flat_field == "COMPLETE"
    # our product opens in stdatamodels as the same model, with the same arrays
    path = ours.save(tmp_path / "fgs_acq1_cal.fits")
    back = dm.open(path)
    assert type(back).__name__ == "GuiderCalModel"
    np.testing.assert_array_equal(back.data, ours.data)
    assert back.dq.shape == (128, 128) and back.meta.exposure.type == "FGS_ACQ1" and back.meta.bunit_data == "DN/s"


@pytest.mark.parity
@pytest.mark.real
def test_guider_chain_parity_with_calwebb_guider(shared_data, fgs_refs, real_rules_cache):
    """dq_init (a mask on the 2-D guider DQ), guider_cds and flat_field against jwst's GuiderPipeline."""
    from jwst.pipeline import GuiderPipeline
    from parity import assert_parity, jwst_offline

    real = shared_data / "real" / "fgs_acq1_guider2_uncal.fits"
    steps = {
        "dq_init": {"override_mask": fgs_refs["mask"]},
        "guider_cds": {"override_gain": fgs_refs["gain"], "override_readnoise": fgs_refs["readnoise"]},
        "flat_field": {"override_flat": fgs_refs["flat"]},
    }
    with jwst_offline(real_rules_cache, "jwst_0541.pmap"), _quiet():
        theirs = GuiderPipeline.call(str(real), steps=steps)
    m = models.open(real)
    for name in ("dq_init", "guider_cds", "flat_field"):
        m = run_step(name, m, steps[name]).model
    assert isinstance(m, models.GuiderCalModel)
    print("dq_init + guider_cds + flat_field vs calwebb_guider: rtol 1e-4 on >= 99.9% of pixels, DQ identical")
    assert_parity(m, theirs, ["data", "err", "dq"])
    # the mask's window pixels (60..62, 70) and (90, 95) are science pixels (38..40, 33) and (68, 58)
    assert (m.dq[38:41, 33] & DNU).all() and not (m.dq[37, 33] & DNU)
    assert m.dq[68, 58] & dqflags.HOT


@pytest.mark.parity
@pytest.mark.parametrize("cls", [models.ImageModel, models.CubeModel])
def test_flat_field_imaging_parity(cls, real_rules_cache, tmp_path):
    """A MIRI SUB64 rate (ImageModel) and rateints (CubeModel) flat-fielded by ours and jwst's FlatFieldStep."""
    from jwst.flatfield import FlatFieldStep
    from parity import assert_parity, jwst_offline

    rng = np.random.default_rng(7)
    shape = (64, 72) if cls is models.ImageModel else (2, 64, 72)
    m = cls(shape)
    m.data = rng.normal(5.0, 1.0, shape).astype(np.float32)
    m.var_poisson = rng.uniform(0.01, 0.1, shape).astype(np.float32)
    m.var_rnoise = rng.uniform(0.01, 0.05, shape).astype(np.float32)
    m.err = np.sqrt(m.var_poisson + m.var_rnoise)
    m.dq = np.zeros(shape, np.uint32)
    m.dq[..., 5, 5] = DNU
    m.data[..., 6, 6] = np.nan
    meta = m.meta
    meta.telescope = "JWST"
    meta.instrument.name, meta.instrument.detector, meta.instrument.filter = "MIRI", "MIRIMAGE", "F1000W"
    meta.exposure.type, meta.exposure.readpatt = "MIR_IMAGE", "FASTR1"
    meta.observation.date, meta.observation.time = "2023-01-01", "00:00:00"
    meta.subarray.name = "SUB64"
    meta.subarray.xstart, meta.subarray.ystart, meta.subarray.xsize, meta.subarray.ysize = 1, 779, 72, 64
    sci = m.save(tmp_path / f"miri_{cls.__name__}.fits")
    n = (100, 100)
    flat = models.FlatModel(data=rng.uniform(0.8, 1.2, n).astype(np.float32))
    flat.err = rng.uniform(0.001, 0.02, n).astype(np.float32)
    flat.dq = np.zeros(n, np.uint32)
    flat.dq[30, 30], flat.dq[31, 31] = 1, 2
    flat.dq_def = np.array([(0, 1, b"DO_NOT_USE", b"bad"), (1, 2, b"NO_FLAT_FIELD", b"none")], dtype=DQ_DEF_DTYPE)
    flat.data[40, 40], flat.data[41, 41] = np.nan, 0.0
    ref_meta(flat, "flat", xstart=1, ystart=760, nx=100, ny=100, instrument="MIRI", detector="MIRIMAGE")
    fpath = flat.save(tmp_path / "miri_flat.fits")
    with jwst_offline(real_rules_cache, "jwst_0541.pmap"), _quiet():
        theirs = FlatFieldStep.call(str(sci), override_flat=fpath)
    ours = run_step("flat_field", models.open(sci), {"override_flat": fpath}).model
    print(f"flat_field {cls.__name__}: rtol 1e-4 on >= 99.9% of pixels, DQ identical")
    assert_parity(ours, theirs, ["data", "err", "dq", "var_poisson", "var_rnoise", "var_flat"])
    assert ours.meta.cal_step.flat_field == theirs.meta.cal_step.flat_field == "COMPLETE"
