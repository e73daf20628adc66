"""Stage 2 imaging steps: bkg_subtract, assign_wcs, photom, resample.

Unit tests check the physics on small images built here; parity tests run
our steps and jwst 3.0's on the same rate file with the same synthetic
reference files (refs/synthetic.py, built from the SIAF) and compare:

- cal (after assign_wcs, flat_field, photom): SCI, ERR, DQ and the variance
  arrays within rtol 1e-4 for at least 99.9 % of pixels;
- cal WCS: the two gwcs agree within 1 mas at the corners and the centre;
- i2d: the same shape and output WCS (1 mas), SCI within rtol 1e-3 for at
  least 99 % of pixels.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
import math
import warnings

import numpy as np
import pytest

from webbflow import models
from webbflow.models import dqflags
from webbflow.refs import synthetic as syn
from webbflow.tasks import load_all
from webbflow.tasks.base import run_step

load_all()

# (detector, subarray, exp_type, filter, pupil, SIAF instrument, SIAF aperture prefix)
CONFIGS = {
    "NIRCAM": ("NRCB1", "SUB64P", "NRC_IMAGE", "F200W", "CLEAR", "NIRCam", "NRCB1"),
    "NIRISS": ("NIS", "SUB64", "NIS_IMAGE", "CLEAR", "F150W", "NIRISS", "NIS"),
    "MIRI": ("MIRIMAGE", "SUB64", "MIR_IMAGE", "F770W", None, "MIRI", "MIRIM"),
    "FGS": ("GUIDER1", "SUB32CNTR", "FGS_IMAGE", None, None, "FGS", "FGS1"),
}
FASTSLOW = {"NRCB1": (1, -2), "NIS": (-2, -1), "MIRIMAGE": (1, 2), "GUIDER1": (-2, 1)}
ASSIGN_WCS_NA = (
    "specwcs", "regions", "wavelengthrange", "camera", "chromcorr", "collimator", "disperser", "fore",
    "fpa", "msa", "ote", "ifupost", "ifufore", "ifuslicer",
)
MAS_PER_DEG = 3.6e6


def _aperture(instrument, subarray=None):
    det, sub, _e, _f, _p, siaf_name, prefix = CONFIGS[instrument]
    return syn._siaf(siaf_name)[f"{prefix}_{subarray or sub}"]


def make_rate(instrument, *, subarray=None, seed=0, ra=53.16, dec=-27.78, roll=47.3, va_scale=1.00003, scene=True):
    """A rate-like ImageModel of a subarray with SIAF-based pointing keywords (as set_telescope_pointing writes)."""
    det, sub, exp_type, filt, pupil, _s, prefix = CONFIGS[instrument]
    sub = subarray or sub
    region = syn.siaf_subarray(instrument, det, sub)
    ap = _aperture(instrument, sub)
    rng = np.random.default_rng(seed)
    ny, nx = region.ysize, region.xsize
    y, x = np.mgrid[:ny, :nx]
    data = 0.5 + 0.002 * x + 0.001 * y + rng.normal(0, 0.02, (ny, nx))
    if scene:
        for _ in range(6):
            sy, sx = rng.uniform(4, ny - 4), rng.uniform(4, nx - 4)
            data += rng.uniform(5, 50) * np.exp(-((x - sx) ** 2 + (y - sy) ** 2) / (2 * 1.3**2))
    m = models.ImageModel(data=data.astype(np.float32))
    m.var_poisson = (np.abs(data) / 100.0 + 1e-4).astype(np.float32)
    m.var_rnoise = (2.5e-4 * (1 + 0.1 * rng.random((ny, nx)))).astype(np.float32)
    m.err = np.sqrt(m.var_poisson + m.var_rnoise)
    dq = np.zeros((ny, nx), np.uint32)
    dq[3, 5] = dqflags.DO_NOT_USE | dqflags.PIXEL["DEAD"]
    dq[10, 12] = dqflags.JUMP_DET
    dq[20, 7] = dqflags.PIXEL["HOT"]
    for a in (m.data, m.err, m.var_poisson, m.var_rnoise):
        a[3, 5] = np.nan
    m.dq = dq
    meta = m.meta
    meta.telescope = "JWST"
    meta.bunit_data = meta.bunit_err = "DN/s"
    meta.instrument.name = instrument
    meta.instrument.detector = det
    if instrument == "NIRCAM":
        meta.instrument.module, meta.instrument.channel = "B", "SHORT"
    meta.instrument.filter, meta.instrument.pupil = filt, pupil
    if instrument == "MIRI":
        meta.instrument.band = "N/A"
    ex = meta.exposure
    ex.type = exp_type
    ex.readpatt = {"MIRI": "FASTR1", "FGS": "FGSRAPID"}.get(instrument, "RAPID")
    ex.nints, ex.ngroups, ex.nframes, ex.groupgap = 1, 5, 1, 0
    ex.frame_time = ex.group_time = 1.0
    ex.start_time, ex.mid_time, ex.end_time = 59800.0, 59800.0005, 59800.001
    ex.exposure_time = ex.effective_exposure_time = ex.integration_time = ex.elapsed_exposure_time = 85.0
    ex.measurement_time, ex.duration = 80.0, 90.0
    s = meta.subarray
    s.name, s.xstart, s.ystart, s.xsize, s.ysize = sub, region.xstart, region.ystart, nx, ny
    s.fastaxis, s.slowaxis = FASTSLOW[det]
    o = meta.observation
    o.date, o.time, o.date_beg = "2022-08-01", "12:00:00.000", "2022-08-01T12:00:00.000"
    o.program_number, o.observation_number, o.visit_number = "01234", "001", "001"
    o.visit_group, o.sequence_id, o.activity_id, o.exposure_number = "01", "1", "01", f"{seed + 1:05d}"
    meta.target.source_type = "EXTENDED"
    w = meta.wcsinfo
    w.wcsaxes = 2
    w.v2_ref, w.v3_ref = float(ap.V2Ref), float(ap.V3Ref)
    w.v3yangle, w.vparity = float(ap.V3IdlYAngle), int(ap.VIdlParity)
    w.ra_ref, w.dec_ref, w.roll_ref = ra, dec, roll
    w.crpix1, w.crpix2 = float(ap.XSciRef), float(ap.YSciRef)
    w.siaf_xref_sci, w.siaf_yref_sci = float(ap.XSciRef), float(ap.YSciRef)
    w.crval1, w.crval2 = ra, dec
    w.ctype1, w.ctype2, w.cunit1, w.cunit2 = "RA---TAN", "DEC--TAN", "deg", "deg"
    w.cdelt1, w.cdelt2 = ap.XSciScale / 3600, ap.YSciScale / 3600
    rel = math.radians(roll) - w.vparity * math.radians(w.v3yangle)
    w.pc1_1, w.pc1_2 = w.vparity * math.cos(rel), math.sin(rel)
    w.pc2_1, w.pc2_2 = -w.vparity * math.sin(rel), math.cos(rel)
    meta.velocity_aberration.scale_factor = va_scale
    meta.coordinates.reference_frame = "ICRS"
    meta.aperture.name = f"{prefix}_{sub}"
    meta.pointing.ra_v1, meta.pointing.dec_v1, meta.pointing.pa_v3 = ra, dec, roll
    return m


def image2_refs(model, folder=None):
    """The synthetic image2 references for ``model``; the area map is full frame, as CRDS's are (jwst needs that)."""
    cfg = syn.exposure_config(model)
    wanted = [r for r in ("distortion", "filteroffset", "flat", "photom") if r in syn.mode_reftypes(cfg.instrument, cfg.exp_type)]
    refs = syn.reference_set(cfg, reftypes=wanted)
    ny, nx = syn.detector_spec(cfg.instrument, cfg.detector).shape
    full = dataclasses.replace(cfg, subarray="FULL", xstart=1, ystart=1, xsize=nx, ysize=ny)
    refs["area"] = syn.reference_set(full, reftypes=["area"])["area"]
    if folder is None:
        return refs
    return {k: v.save(folder / f"ref_{k}.{'asdf' if k in ('distortion', 'filteroffset') else 'fits'}") for k, v in refs.items()}


def sky_offset_mas(ra1, dec1, ra2, dec2):
    from astropy.coordinates import SkyCoord

    return SkyCoord(ra1, dec1, unit="deg").separation(SkyCoord(ra2, dec2, unit="deg")).to_value("mas")


def check_points(shape):
    ny, nx = shape
    xs = np.array([0, nx - 1, 0, nx - 1, (nx - 1) / 2])
    ys = np.array([0, 0, ny - 1, ny - 1, (ny - 1) / 2])
    return xs, ys


# ---------------------------------------------------------------------------
# assign_wcs


def test_assign_wcs_reference_point_and_roll():
    """The pixel whose V2/V3 is (V2_REF, V3_REF) lands on (RA_REF, DEC_REF); +V3 points at PA = ROLL_REF."""
    m = make_rate("NIRCAM")
    refs = image2_refs(m)
    # put the reference point at the subarray pixel (20.3, 40.7): its V2/V3 from the distortion
    x0, y0 = 20.3, 40.7
    s = m.meta.subarray
    v2, v3 = refs["distortion"].model(x0 + s.xstart - 1 + _offset(refs, m)[0], y0 + s.ystart - 1 + _offset(refs, m)[1])
    m.meta.wcsinfo.v2_ref, m.meta.wcsinfo.v3_ref = float(v2), float(v3)
    out = run_step("assign_wcs", m, {}, references=refs).model
    assert out.meta.cal_step.assign_wcs == "COMPLETE"
    ra, dec = out.meta.wcs(x0, y0)
    err = sky_offset_mas(ra, dec, 53.16, -27.78)
    print(f"reference pixel -> (RA_REF, DEC_REF) within {err:.2e} mas")
    assert err < 1.0
    # V3 direction on the sky: a point 10" further along +V3 is 10" away at position angle ROLL_REF
    from astropy.coordinates import SkyCoord

    v2s = out.meta.wcs.get_transform("v2v3vacorr", "world")
    ra1, dec1 = v2s(v2, v3 + 10.0)
    c0, c1 = SkyCoord(53.16, -27.78, unit="deg"), SkyCoord(ra1, dec1, unit="deg")
    assert c0.separation(c1).arcsec == pytest.approx(10.0, rel=1e-6)
    assert c0.position_angle(c1).deg == pytest.approx(47.3, abs=1e-6)
    # and the inverse brings the sky position back to the pixel
    xb, yb = out.meta.wcs.invert(ra, dec)
    assert (xb, yb) == pytest.approx((x0, y0), abs=1e-3)


def _offset(refs, m):
    from webbflow.tasks._wcs import filter_offset

    off = filter_offset(refs.get("filteroffset"), m.meta.instrument.name, m.meta.instrument.filter, m.meta.instrument.pupil)
    return (0.0, 0.0) if off is None else off


def test_assign_wcs_sip_header_matches_gwcs(tmp_path):
    """On a 400x400 NIRCam subarray the distortion needs SIP terms; the FITS header WCS reproduces the gwcs."""
    from astropy.io import fits
    from astropy.wcs import WCS as FitsWCS

    m = make_rate("NIRCAM", subarray="SUB400P", scene=False)
    out = run_step("assign_wcs", m, {}, references=image2_refs(m)).model
    path = out.save(tmp_path / "sip_cal.fits")
    hdr = fits.getheader(path, "SCI")
    assert hdr["CTYPE1"] == "RA---TAN-SIP" and hdr["CTYPE2"] == "DEC--TAN-SIP"
    assert hdr["A_ORDER"] >= 2 and "AP_ORDER" in hdr and "CD1_1" in hdr
    assert not any(k in hdr for k in ("PC1_1", "CDELT1")), "a SIP header carries CD, not PC/CDELT"
    assert hdr["S_REGION"].startswith("POLYGON ICRS")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fw = FitsWCS(hdr)
    y, x = np.mgrid[0:400:37, 0:400:37].astype(float)
    ra_g, dec_g = out.meta.wcs(x, y)
    ra_f, dec_f = fw.all_pix2world(x, y, 0)
    err = sky_offset_mas(ra_g, dec_g, ra_f, dec_f).max()
    print(f"SIP header vs gwcs: max {err:.3f} mas over a 11x11 grid (0.01 px = {0.01 * 31:.2f} mas)")
    assert err < 0.01 * 0.032 * 1000  # sip_max_pix_error of 0.01 pixel of ~32 mas
    # the gwcs survives the FITS round trip (ASDF extension) and opens in stdatamodels
    back = models.open(path)
    assert np.allclose(back.meta.wcs(x, y), (ra_g, dec_g), rtol=0, atol=1e-10)


def test_assign_wcs_needs_pointing():
    from webbflow.errors import InputFileError

    m = make_rate("NIRISS")
    m.meta.wcsinfo.roll_ref = None
    with pytest.raises(InputFileError, match="ROLL_REF"):
        run_step("assign_wcs", m, {}, references=image2_refs(m))


# ---------------------------------------------------------------------------
# photom


def _photom_ref(rows, timecoeff=None):
    table = np.array(rows, dtype=[("filter", "S12"), ("pupil", "S12"), ("photmjsr", ">f4"), ("uncertainty", ">f4")])
    ref = models.NrcImgPhotomModel(phot_table=table)
    ref.meta.photometry.pixelarea_steradians = 2.2e-14
    ref.meta.photometry.pixelarea_arcsecsq = 0.000936
    if timecoeff is not None:
        ref.timecoeff_linear = timecoeff
    return ref


def test_photom_scales_by_the_table_value_and_sets_units():
    m = make_rate("NIRCAM")
    before = {n: getattr(m, n).copy() for n in ("data", "err", "var_poisson", "var_rnoise")}
    ref = _photom_ref([("F200W", "CLEAR", 0.25, 0.004), ("F090W", "CLEAR", 0.5, 0.01), ("F200W", "WLP8", 3.0, 0.1)])
    area = image2_refs(m)["area"]
    out = run_step("photom", m, {}, references={"photom": ref, "area": area}).model
    c = np.float32(0.25)
    good = np.isfinite(before["data"])
    assert np.array_equal(out.data[good], (before["data"] * c)[good])
    assert np.array_equal(out.err[good], (before["err"] * c)[good])
    assert np.allclose(out.var_poisson[good], before["var_poisson"][good] * 0.0625, rtol=1e-6)
    assert np.allclose(out.var_rnoise[good], before["var_rnoise"][good] * 0.0625, rtol=1e-6)
    assert out.meta.bunit_data == "MJy/sr" and out.meta.bunit_err == "MJy/sr"
    assert out.meta.photometry.conversion_megajanskys == pytest.approx(0.25)
    assert out.meta.photometry.conversion_microjanskys == pytest.approx(0.25 * 23.5044305, rel=1e-6)
    # PIXAR_* come from the area reference, whose map is cut to the subarray
    assert out.meta.photometry.pixelarea_steradians == pytest.approx(area.meta.photometry.pixelarea_steradians)
    s = m.meta.subarray
    assert np.array_equal(out.area, area.data[s.ystart - 1 : s.ystart - 1 + s.ysize, s.xstart - 1 : s.xstart - 1 + s.xsize])
    assert out.meta.cal_step.photom == "COMPLETE"
    # NaN pixels are DO_NOT_USE
    assert out.dq[3, 5] & dqflags.DO_NOT_USE


def test_photom_time_dependence_and_inverse():
    m = make_rate("NIRCAM")
    data0 = m.data.copy()
    tc = np.array([(59000.0, 0.02), (59000.0, 0.0), (59000.0, 0.0)], dtype=[("t0", ">f4"), ("lossperyear", ">f4")])
    ref = _photom_ref([("F200W", "CLEAR", 0.25, 0.004), ("F090W", "CLEAR", 0.5, 0.01), ("F200W", "WLP8", 3.0, 0.1)], tc)
    out = run_step("photom", m, {}, references={"photom": ref, "area": "N/A"}).model
    loss = 1.0 - 0.02 * (59800.0005 - 59000.0) / 365.0
    assert out.meta.photometry.conversion_megajanskys == pytest.approx(0.25 / loss, rel=1e-6)
    # without an area map PIXAR_* fall back to the photom reference's
    assert out.meta.photometry.pixelarea_steradians == pytest.approx(2.2e-14)
    assert not out.has("area")
    # the inverse undoes the calibration
    back = run_step("photom", out, {"inverse": True}, references={"photom": ref, "area": "N/A"}).model
    good = np.isfinite(data0)
    assert np.allclose(back.data[good], data0[good], rtol=1e-6)
    assert back.meta.bunit_data == "DN/s"
    # apply_time_correction=False uses the table value as it is
    m2 = run_step("photom", make_rate("NIRCAM"), {"apply_time_correction": False}, references={"photom": ref, "area": "N/A"}).model
    assert m2.meta.photometry.conversion_megajanskys == pytest.approx(0.25)


def test_photom_without_a_matching_row_leaves_data_alone():
    m = make_rate("NIRCAM")
    m.meta.instrument.filter = "F150W"
    before = m.data.copy()
    out = run_step("photom", m, {}, references={"photom": _photom_ref([("F200W", "CLEAR", 0.25, 0.0)]), "area": "N/A"}).model
    assert np.array_equal(out.data, before, equal_nan=True)
    assert out.meta.bunit_data == "DN/s"


# ---------------------------------------------------------------------------
# resample


def _calibrated(instrument, **kw):
    m = make_rate(instrument, **kw)
    refs = image2_refs(m)
    m = run_step("assign_wcs", m, {}, references=refs).model
    m = run_step("photom", m, {}, references=refs).model
    return m


def test_resample_conserves_surface_brightness_of_a_flat_image():
    m = _calibrated("MIRI", scene=False)
    m.data[:] = 3.5  # MJy/sr everywhere
    m.dq[:] = 0
    m.var_rnoise[:] = 1e-4
    for a in (m.err, m.var_poisson):
        a[:] = np.nan_to_num(a, nan=1e-3)
    i2d = run_step("resample", m, {}).model
    assert i2d.meta.cal_step.resample == "COMPLETE"
    covered = i2d.wht > 0
    # output pixels fully inside the input footprint: away from the edges of the covered area
    from scipy.ndimage import binary_erosion

    interior = binary_erosion(covered, iterations=2)
    assert interior.sum() > 0.7 * m.data.size
    print(f"flat 3.5 MJy/sr -> i2d interior {i2d.data[interior].min():.7f} .. {i2d.data[interior].max():.7f}")
    assert np.allclose(i2d.data[interior], 3.5, rtol=1e-5)
    assert np.isnan(i2d.data[~covered]).all()  # fillval NAN
    # the output pixel scale is the input's at the reference point
    assert i2d.meta.resample.pixel_scale_ratio == pytest.approx(1.0, rel=1e-3)
    assert math.sqrt(i2d.meta.photometry.pixelarea_arcsecsq) == pytest.approx(0.11, rel=0.02)
    assert i2d.meta.bunit_data == "MJy/sr"
    assert i2d.meta.resample.pointings == 1 and i2d.meta.exposure.exposure_time == 85.0
    assert i2d.con.shape[1:] == i2d.data.shape and i2d.con[0][interior].all()


def test_resample_rotation_zero_is_north_up_east_left():
    m = _calibrated("NIRCAM")
    i2d = run_step("resample", m, {"rotation": 0.0}).model
    w = i2d.meta.wcs
    ny, nx = i2d.data.shape
    ra0, dec0 = w(nx / 2, ny / 2)
    ra_up, dec_up = w(nx / 2, ny / 2 + 10)
    ra_right, dec_right = w(nx / 2 + 10, ny / 2)
    assert dec_up > dec0 and abs(ra_up - ra0) * 3600 < 1e-3
    assert ra_right < ra0 and abs(dec_right - dec0) * 3600 < 1e-3
    wi = i2d.meta.wcsinfo
    assert (wi.pc1_1, wi.pc1_2, wi.pc2_1, wi.pc2_2) == pytest.approx((-1.0, 0.0, 0.0, 1.0), abs=1e-12)
    assert wi.ctype1 == "RA---TAN" and wi.v2_ref is None and wi.a_order is None


def test_resample_two_exposures_combine():
    """Two dithered exposures of the same sky: the mosaic covers both and counts two pointings."""
    a = _calibrated("NIRCAM", seed=0)
    b = _calibrated("NIRCAM", seed=1, ra=53.16 + 0.5 / 3600, dec=-27.78 + 0.4 / 3600)
    i2d = run_step("resample", [a, b], {}).model
    assert i2d.meta.resample.pointings == 2
    assert i2d.meta.exposure.exposure_time == 170.0
    assert i2d.data.size > 1.1 * a.data.size  # the union of two offset footprints
    assert (i2d.con[0] == 3).sum() > 0.5 * a.data.size  # both exposures feed the overlap


# ---------------------------------------------------------------------------
# bkg_subtract


def test_bkg_subtract_clipped_mean_of_backgrounds():
    sci = make_rate("NIRCAM", scene=False)
    data0 = sci.data.copy()
    levels = 0.40 + 0.002 * np.arange(12)
    bkgs = []
    for k, level in enumerate(levels):
        b = make_rate("NIRCAM", seed=10 + k, scene=False)
        b.data[:] = level
        b.err[:] = 0.01
        b.dq[:] = 0
        bkgs.append(b)
    # a cosmic ray in one background: with 12 values it lies far beyond 3 sigma and is clipped
    bkgs[2].data[30, 30] = 500.0
    bkgs[1].dq[40, 41] = dqflags.JUMP_DET
    from webbflow.tasks.bkg_subtract import subtract_background

    out, combined = subtract_background(sci, bkgs, sigma=3.0, maxiters=None)
    mean_all = levels.mean()
    mean_clipped = np.delete(levels, 2).mean()
    assert combined.data[0, 0] == pytest.approx(mean_all, abs=1e-6)
    assert combined.data[30, 30] == pytest.approx(mean_clipped, abs=1e-6), "the outlier is clipped"
    # the error of the mean over the kept values
    assert combined.err[0, 0] == pytest.approx(math.sqrt(12 * 0.01**2) / 12, rel=1e-5)
    assert combined.err[30, 30] == pytest.approx(math.sqrt(11 * 0.01**2) / 11, rel=1e-5)
    assert out.data[0, 0] == pytest.approx(data0[0, 0] - mean_all, abs=1e-5)
    assert out.data[30, 30] == pytest.approx(data0[30, 30] - mean_clipped, abs=1e-5)
    assert out.dq[40, 41] & dqflags.JUMP_DET
    assert np.array_equal(out.err, make_rate("NIRCAM", scene=False).err, equal_nan=True), "ERR is left alone, as in jwst"


def test_bkg_subtract_without_backgrounds_is_skipped():
    sci = make_rate("NIRCAM", scene=False)
    data0 = sci.data.copy()
    res = run_step("bkg_subtract", sci, {})
    assert res.status == "SKIPPED" and sci.meta.cal_step.bkg_subtract == "SKIPPED"
    assert np.array_equal(res.model.data, data0, equal_nan=True)


# ---------------------------------------------------------------------------
# parity with jwst


def _jwst(step_class, inp, cache, **kw):
    import logging

    from parity import jwst_offline, quiet_jwst

    with jwst_offline(cache, "jwst_0541.pmap"), quiet_jwst(logging.ERROR), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return step_class.call(inp, **kw)


def _wcs_agreement(w_ours, w_jwst, shape) -> float:
    xs, ys = check_points(shape)
    ra1, dec1 = w_ours(xs, ys)
    ra2, dec2 = w_jwst(xs, ys)
    return float(sky_offset_mas(ra1, dec1, ra2, dec2).max())


@pytest.mark.parity
@pytest.mark.parametrize("instrument", ["NIRCAM", "NIRISS", "MIRI"])
def test_image2_steps_parity(instrument, tmp_path, real_rules_cache):
    from stdatamodels.jwst import datamodels as dm

    from jwst.assign_wcs import AssignWcsStep
    from jwst.flatfield import FlatFieldStep
    from jwst.photom import PhotomStep
    from jwst.resample import ResampleStep
    from parity import assert_parity, compare_arrays

    rate = make_rate(instrument)
    rate_path = rate.save(tmp_path / f"jw01234001001_01101_00001_{instrument.lower()}_rate.fits")
    refs = image2_refs(rate, tmp_path)

    # ours: assign_wcs -> flat_field -> photom -> (cal) -> resample -> (i2d)
    m = models.open(rate_path)
    m = run_step("assign_wcs", m, {}, references={k: refs[k] for k in ("distortion", "filteroffset")}).model
    m = run_step("flat_field", m, {}, references={"flat": refs["flat"]}).model
    m = run_step("photom", m, {}, references={"photom": refs["photom"], "area": refs["area"]}).model
    cal_path = m.save(tmp_path / "ours_cal.fits")
    i2d = run_step("resample", models.open(cal_path), {}).model
    i2d_path = i2d.save(tmp_path / "ours_i2d.fits")

    # jwst on the same file with the same references
    cache = real_rules_cache
    j = _jwst(AssignWcsStep, str(rate_path), cache, override_distortion=str(refs["distortion"]),
              override_filteroffset=str(refs["filteroffset"]), **{f"override_{r}": "N/A" for r in ASSIGN_WCS_NA})
    j = _jwst(FlatFieldStep, j, cache, override_flat=str(refs["flat"]), override_fflat="N/A", override_sflat="N/A", override_dflat="N/A")
    j = _jwst(PhotomStep, j, cache, override_photom=str(refs["photom"]), override_area=str(refs["area"]))
    jcal_path = tmp_path / "jwst_cal.fits"
    j.save(str(jcal_path))
    ji2d = _jwst(ResampleStep, str(jcal_path), cache)

    # cal arrays, read back from both files (our product opened by stdatamodels)
    ours_cal = dm.open(cal_path)
    jwst_cal = dm.open(jcal_path)
    print(f"\n{instrument} cal (rtol 1e-4, >= 99.9 %):")
    assert_parity(ours_cal, jwst_cal, ("data", "err", "dq", "var_poisson", "var_rnoise", "var_flat", "area"), rtol=1e-4, min_fraction=0.999)
    assert ours_cal.meta.bunit_data == jwst_cal.meta.bunit_data == "MJy/sr"
    for attr in ("conversion_megajanskys", "conversion_microjanskys", "pixelarea_steradians", "pixelarea_arcsecsq"):
        assert getattr(ours_cal.meta.photometry, attr) == pytest.approx(getattr(jwst_cal.meta.photometry, attr), rel=1e-6)
    assert ours_cal.meta.wcsinfo.s_region == jwst_cal.meta.wcsinfo.s_region

    # cal WCS
    err = _wcs_agreement(ours_cal.meta.wcs, jwst_cal.meta.wcs, ours_cal.data.shape)
    print(f"{instrument} cal WCS: max {err:.3g} mas at the corners and centre (limit 1 mas)")
    assert err < 1.0
    for k in ("crpix1", "crpix2", "crval1", "crval2", "cd1_1", "cd1_2", "cd2_1", "cd2_2", "ctype1", "ctype2"):
        ov, jv = getattr(ours_cal.meta.wcsinfo, k), getattr(jwst_cal.meta.wcsinfo, k)
        assert ov == (pytest.approx(jv, rel=1e-9, abs=1e-15) if isinstance(jv, float) else jv), k

    # i2d
    ours_i2d = dm.open(i2d_path)
    assert ours_i2d.data.shape == ji2d.data.shape
    err = _wcs_agreement(ours_i2d.meta.wcs, ji2d.meta.wcs, ours_i2d.data.shape)
    print(f"{instrument} i2d {ours_i2d.data.shape}: WCS max {err:.3g} mas (limit 1 mas)")
    assert err < 1.0
    for k in ("crpix1", "crpix2", "crval1", "crval2", "cdelt1", "cdelt2", "pc1_1", "pc1_2", "pc2_1", "pc2_2"):
        assert getattr(ours_i2d.meta.wcsinfo, k) == pytest.approx(getattr(ji2d.meta.wcsinfo, k), rel=1e-9, abs=1e-12), k
    ag = compare_arrays("i2d SCI", ours_i2d.data, ji2d.data, rtol=1e-3)
    assert ag.fraction >= 0.99
    for n in ("err", "wht", "var_rnoise", "var_poisson"):
        assert compare_arrays(f"i2d {n}", getattr(ours_i2d, n), getattr(ji2d, n), rtol=1e-3).fraction >= 0.99
    assert np.array_equal(ours_i2d.con, ji2d.con)
    assert ours_i2d.meta.resample.pixel_scale_ratio == pytest.approx(ji2d.meta.resample.pixel_scale_ratio, rel=1e-9)
    assert ours_i2d.meta.wcsinfo.s_region == ji2d.meta.wcsinfo.s_region


@pytest.mark.parity
def test_assign_wcs_parity_fgs_and_sip(tmp_path, real_rules_cache):
    """FGS imaging, and a NIRCam 400x400 subarray whose SIP fit needs higher orders: same WCS and SIP keywords."""
    from stdatamodels.jwst import datamodels as dm

    from jwst.assign_wcs import AssignWcsStep

    for instrument, sub in (("FGS", None), ("NIRCAM", "SUB400P")):
        rate = make_rate(instrument, subarray=sub, scene=False)
        rate_path = rate.save(tmp_path / f"{instrument}_rate.fits")
        refs = image2_refs(rate, tmp_path)
        wcs_refs = {k: refs[k] for k in ("distortion", "filteroffset") if k in refs}
        ours = run_step("assign_wcs", models.open(rate_path), {}, references=wcs_refs).model
        ours_path = ours.save(tmp_path / f"{instrument}_ours_cal.fits")
        kw = {f"override_{r}": "N/A" for r in ASSIGN_WCS_NA}
        kw.update({f"override_{k}": str(v) for k, v in wcs_refs.items()})
        kw.setdefault("override_filteroffset", "N/A")
        j = _jwst(AssignWcsStep, str(rate_path), real_rules_cache, **kw)
        o = dm.open(ours_path)
        err = _wcs_agreement(o.meta.wcs, j.meta.wcs, o.data.shape)
        print(f"{instrument} {sub or ''} assign_wcs: max {err:.3g} mas")
        assert err < 1.0
        oi, ji = o.meta.wcsinfo.instance, j.meta.wcsinfo.instance
        sip = sorted(k for k in ji if k[:2] in ("a_", "b_", "ap", "bp"))
        assert sip == sorted(k for k in oi if k[:2] in ("a_", "b_", "ap", "bp"))
        for k in sip + ["crpix1", "crpix2", "crval1", "crval2", "ctype1", "ctype2", "s_region"]:
            assert oi[k] == (pytest.approx(ji[k], rel=1e-9, abs=1e-18) if isinstance(ji[k], float) else ji[k]), k
        print(f"  {len(sip)} SIP keywords equal; CTYPE1 {oi['ctype1']}")


@pytest.mark.parity
def test_bkg_subtract_parity(tmp_path, real_rules_cache):
    from jwst.background import BackgroundStep
    from parity import assert_parity

    sci_path = make_rate("NIRCAM", seed=1).save(tmp_path / "sci_rate.fits")
    bkg_paths = []
    for k in range(4):
        b = make_rate("NIRCAM", seed=10 + k, scene=False)
        b.data[:] = (0.4 + 0.01 * k + np.random.default_rng(k).normal(0, 0.02, b.data.shape)).astype(np.float32)
        b.data[5 + k, 7] = 80.0
        b.dq[20, 20 + k] = dqflags.JUMP_DET
        bkg_paths.append(str(b.save(tmp_path / f"bkg{k}_rate.fits")))
    ours = run_step("bkg_subtract", models.open(sci_path), {"bkg_list": bkg_paths}).model
    theirs = _jwst(BackgroundStep, str(sci_path), real_rules_cache, bkg_list=bkg_paths)
    print("\nbkg_subtract (rtol 1e-4, >= 99.9 %):")
    assert_parity(ours, theirs, ("data", "err", "dq"), rtol=1e-4, min_fraction=0.999)
    assert ours.meta.cal_step.bkg_subtract == theirs.meta.cal_step.bkg_subtract == "COMPLETE"


# ---------------------------------------------------------------------------
# the image2 flow (draft) on a level-2 association


def _write_asn(folder, science, backgrounds, name="jw01234001001_01101_00001_nrcb1"):
    import json

    members = [{"expname": science, "exptype": "science"}] + [{"expname": b, "exptype": "background"} for b in backgrounds]
    asn = {"asn_type": "image2", "asn_pool": "test_pool.csv", "products": [{"name": name, "members": members}]}
    path = folder / "test_image2_asn.json"
    path.write_text(json.dumps(asn))
    return path


def _step_overrides(refs):
    return {
        "assign_wcs": {"override_distortion": str(refs["distortion"]), "override_filteroffset": str(refs["filteroffset"])},
        "flat_field": {"override_flat": str(refs["flat"])},
        "photom": {"override_photom": str(refs["photom"]), "override_area": str(refs["area"])},
    }


@pytest.mark.parity
def test_image2_flow_on_an_association_matches_jwst(tmp_path, real_rules_cache, monkeypatch):
    """Science + two background members: our flow's cal and i2d against jwst's Image2Pipeline on the same asn."""
    from stdatamodels.jwst import datamodels as dm

    from jwst.pipeline import Image2Pipeline
    from parity import assert_parity, compare_arrays, jwst_offline
    from webbflow.flows.calwebb_image2 import image2, image2_last_run

    data = tmp_path / "data"
    data.mkdir()
    sci = make_rate("NIRCAM", seed=3)
    sci.save(data / "sci_rate.fits")
    for k in range(2):
        b = make_rate("NIRCAM", seed=20 + k, scene=False)
        b.data[:] = np.float32(0.45 + 0.01 * k)
        b.save(data / f"bkg{k}_rate.fits")
    asn = _write_asn(data, "sci_rate.fits", ["bkg0_rate.fits", "bkg1_rate.fits"])
    refs = image2_refs(sci, tmp_path)
    # run from another folder: members are found relative to the association
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    ours_dir = tmp_path / "ours"
    with jwst_offline(real_rules_cache, "jwst_0541.pmap"):
        cals = image2(str(asn), steps=_step_overrides(refs), output_dir=str(ours_dir))
    written = sorted(Path(p).name for p in image2_last_run[0].written)
    assert written == ["jw01234001001_01101_00001_nrcb1_cal.fits", "jw01234001001_01101_00001_nrcb1_i2d.fits"]
    assert cals[0].meta.cal_step.bkg_subtract == "COMPLETE" and cals[0].meta.asn.pool_name == "test_pool.csv"

    jwst_dir = tmp_path / "jwst"
    jwst_dir.mkdir()
    monkeypatch.chdir(data)  # jwst looks for members relative to the current folder
    jsteps = {k: dict(v) for k, v in _step_overrides(refs).items()}
    jsteps["assign_wcs"].update({f"override_{r}": "N/A" for r in ASSIGN_WCS_NA})
    jsteps["flat_field"].update(override_fflat="N/A", override_sflat="N/A", override_dflat="N/A")
    jsteps["bkg_subtract"] = {"override_bkg": "N/A", "override_wavelengthrange": "N/A"}
    jsteps["resample"] = {"save_results": True}
    _jwst(Image2Pipeline, str(asn), real_rules_cache, steps=jsteps, output_dir=str(jwst_dir), save_results=True)
    ocal = dm.open(ours_dir / "jw01234001001_01101_00001_nrcb1_cal.fits")
    jcal = dm.open(jwst_dir / "jw01234001001_01101_00001_nrcb1_cal.fits")
    print("\nimage2 flow vs Image2Pipeline, cal (rtol 1e-4, >= 99.9 %):")
    assert_parity(ocal, jcal, ("data", "err", "dq", "var_poisson", "var_rnoise", "var_flat"), rtol=1e-4, min_fraction=0.999)
    assert _wcs_agreement(ocal.meta.wcs, jcal.meta.wcs, ocal.data.shape) < 1.0
    oi2d = dm.open(ours_dir / "jw01234001001_01101_00001_nrcb1_i2d.fits")
    ji2d = dm.open(jwst_dir / "jw01234001001_01101_00001_nrcb1_i2d.fits")
    assert oi2d.data.shape == ji2d.data.shape
    assert _wcs_agreement(oi2d.meta.wcs, ji2d.meta.wcs, oi2d.data.shape) < 1.0
    assert compare_arrays("i2d SCI", oi2d.data, ji2d.data, rtol=1e-3).fraction >= 0.99


def test_image2_asn_members_must_stay_in_the_association_folder(tmp_path):
    from webbflow.errors import InputFileError
    from webbflow.flows.calwebb_image2 import load_level2_asn

    (tmp_path / "a").mkdir()
    asn = _write_asn(tmp_path / "a", "../sci_rate.fits", [])
    with pytest.raises(InputFileError, match="outside the association's folder"):
        load_level2_asn(asn)
    asn = _write_asn(tmp_path / "a", "x_rate.fits", ["sub/b_rate.fits"])
    _asn, products = load_level2_asn(asn)
    assert products[0]["science"] == (tmp_path / "a" / "x_rate.fits").resolve()
    assert products[0]["background"] == [(tmp_path / "a" / "sub" / "b_rate.fits").resolve()]
