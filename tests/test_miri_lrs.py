"""MIRI LRS (fixed slit and slitless): step-level parity with jwst 3.0.

assign_wcs: the LRS WCS built by webbflow (tasks/assign_wcs/miri_lrs.py) against jwst's own
``load_wcs`` on the same exposure with the same references: the real imager distortion (flt9)
and the real LRS specwcs (0005 fixed slit FULL, 0006 SLITLESSPRISM) from ../shared/data.
Compared: world coordinates (RA, Dec, lambda) on every pixel of the bounding box within
1e-10 deg and 1e-10 um, the inverse transform, the bounding box, the WAVELENGTH array,
S_REGION, DITH_RA/DITH_DEC, SPECSYS and DISPAXIS; and the written product, read back by
stdatamodels, carries the same WCS.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from conftest import SHARED_DATA

from webbflow import models
from webbflow.tasks import load_all
from webbflow.tasks.base import run_step

MIRI_REFS = SHARED_DATA / "real-refs" / "miri"
DISTORTION = MIRI_REFS / "jwst_miri_imager_distortion_flt9.asdf"
SPECWCS = {"MIR_LRS-FIXEDSLIT": MIRI_REFS / "jwst_miri_specwcs_0005.fits",
           "MIR_LRS-SLITLESS": MIRI_REFS / "jwst_miri_specwcs_0006.fits"}
# the other reference types assign_wcs may consider: N/A for LRS (no CRDS query in a step test)
NOT_USED = ("filteroffset", "regions", "wavelengthrange", "camera", "chromcorr", "collimator", "disperser", "fore",
            "fpa", "msa", "ote", "ifupost", "ifufore", "ifuslicer")

pytestmark = [pytest.mark.parity, pytest.mark.real]


def _distortion():
    import asdf

    with asdf.open(DISTORTION) as af:
        return af.tree["model"]


def _specwcs_with_vertices(exp_type, tmp_path):
    """The real specwcs; for the slit, with its V2/V3 corners (the 2022 file predates them) from the distortion."""
    src = SPECWCS[exp_type]
    if exp_type != "MIR_LRS-FIXEDSLIT":
        return src
    with fits.open(src) as hdul:
        hdr = hdul[0].header
        x0, y0 = hdr["IMX"] - 1, hdr["IMY"] - 1
        # the slit: 4.7" x 0.51", about 43 x 4.6 pixels of 0.11" around the reference point
        corners = [(x0 - 21.4, y0 - 2.3), (x0 + 21.4, y0 - 2.3), (x0 + 21.4, y0 + 2.3), (x0 - 21.4, y0 + 2.3)]
        dist = _distortion()
        for i, (x, y) in enumerate(corners, start=1):
            v2, v3 = dist(x, y)
            hdr[f"V2VERT{i}"], hdr[f"V3VERT{i}"] = float(v2), float(v3)
        out = tmp_path / "jwst_miri_specwcs_slit_vertices.fits"
        hdul.writeto(out)
    return out


def _rate(exp_type, tmp_path, seed=17):
    """A small LRS count-rate exposure written by stdatamodels (fixed slit: FULL; slitless: SLITLESSPRISM, 2 ints)."""
    from stdatamodels.jwst import datamodels as dm

    with fits.open(SPECWCS[exp_type]) as hdul:
        h = hdul[0].header
        ref_x, ref_y = (h["IMX"], h["IMY"]) if exp_type == "MIR_LRS-FIXEDSLIT" else (h["IMXSLTL"], h["IMYSLTL"])
    v2_ref, v3_ref = _distortion()(ref_x - 1, ref_y - 1)
    if exp_type == "MIR_LRS-FIXEDSLIT":
        m = dm.ImageModel(np.ones((1024, 1032), np.float32))
        m.meta.subarray.name, sub = "FULL", (1, 1, 1032, 1024)
        m.meta.dither.x_offset, m.meta.dither.y_offset = 0.0, 1.1  # the second nod, along the slit
    else:
        m = dm.CubeModel(np.ones((2, 416, 72), np.float32))
        m.meta.subarray.name, sub = "SLITLESSPRISM", (1, 529, 72, 416)
        m.meta.visit.tsovisit = True
    m.meta.subarray.xstart, m.meta.subarray.ystart, m.meta.subarray.xsize, m.meta.subarray.ysize = sub
    rng = np.random.default_rng(seed)
    shape = m.data.shape
    m.data = rng.normal(5.0, 1.0, shape).astype(np.float32)
    m.var_poisson = np.abs(rng.normal(0.05, 0.01, shape)).astype(np.float32)
    m.var_rnoise = np.full(shape, 0.02, np.float32)
    m.err = np.sqrt(m.var_poisson + m.var_rnoise).astype(np.float32)
    m.dq = np.zeros(shape, np.uint32)
    m.dq[..., 100:103, 30:33] = 4  # JUMP_DET, kept
    m.data[..., 200, 40] = np.nan
    m.dq[..., 200, 40] = 1
    m.meta.bunit_data = m.meta.bunit_err = "DN/s"
    m.meta.subarray.fastaxis, m.meta.subarray.slowaxis = 1, 2
    m.meta.instrument.name, m.meta.instrument.detector, m.meta.instrument.filter = "MIRI", "MIRIMAGE", "P750L"
    m.meta.exposure.type = exp_type
    m.meta.observation.date, m.meta.observation.time = "2024-03-01", "10:00:00"
    e = m.meta.exposure  # the times resample_spec weights and sums
    e.exposure_time = e.effective_exposure_time = e.measurement_time = e.duration = 111.0
    e.start_time, e.end_time = 60370.41667 + seed * 0.01, 60370.41795 + seed * 0.01
    e.mid_time = (e.start_time + e.end_time) / 2
    w = m.meta.wcsinfo
    w.v2_ref, w.v3_ref = float(v2_ref), float(v3_ref)
    w.roll_ref, w.ra_ref, w.dec_ref, w.v3yangle, w.vparity = 61.3, 80.4875, -69.4994, 4.83, -1
    w.velosys = -23456.7
    # the target 0.3" from the aperture's reference point
    m.meta.target.ra, m.meta.target.dec = w.ra_ref + 0.3 / 3600 / np.cos(np.radians(w.dec_ref)), w.dec_ref
    m.meta.velocity_aberration.scale_factor = 1.0000712
    path = tmp_path / f"lrs_{exp_type[8:].lower()}_rate.fits"
    m.save(path)
    return path


@pytest.fixture(scope="module", params=["MIR_LRS-FIXEDSLIT", "MIR_LRS-SLITLESS"])
def wcs_pair(request, tmp_path_factory):
    """(exp_type, webbflow's model after assign_wcs, jwst's model after load_wcs, our written product)."""
    from jwst.assign_wcs.assign_wcs import load_wcs
    from stdatamodels.jwst import datamodels as dm

    load_all()
    exp_type = request.param
    tmp = tmp_path_factory.mktemp(exp_type[8:].lower())
    rate = _rate(exp_type, tmp)
    specwcs = _specwcs_with_vertices(exp_type, tmp)
    refs = {"distortion": str(DISTORTION), "specwcs": str(specwcs), **dict.fromkeys(NOT_USED, "N/A")}
    res = run_step("assign_wcs", models.open(rate), {}, references=refs)
    ours = res.model
    written = tmp / "ours_assign_wcs.fits"
    ours.save(written)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = load_wcs(dm.open(rate), {"distortion": str(DISTORTION), "specwcs": str(specwcs)})
    return exp_type, res, theirs, written


def _bbox_grid(wcs):
    (x0, x1), (y0, y1) = wcs.bounding_box.bounding_box(order="F")
    x, y = np.meshgrid(np.arange(np.ceil(x0), np.floor(x1) + 1), np.arange(np.ceil(y0), np.floor(y1) + 1))
    return x, y


def _assert_world_equal(ours, theirs, x, y):
    a, b = ours(x, y), theirs(x, y)
    for name, u, v in zip(("RA", "Dec", "lambda"), a, b):
        assert np.array_equal(np.isnan(u), np.isnan(v)), f"{name}: NaN where jwst has none (or the reverse)"
        ok = ~np.isnan(u)
        assert ok.sum() > 0.5 * u.size, f"{name}: most of the bounding box is NaN"
        diff = np.abs(u[ok] - v[ok])
        print(f"{name}: {ok.sum()} pixels, max |webbflow - jwst| = {diff.max():.2e}")
        assert diff.max() <= 1e-10, name


def test_assign_wcs_lrs_world_coordinates_match_jwst(wcs_pair):
    exp_type, res, theirs, _ = wcs_pair
    ours = res.model
    assert res.status == "COMPLETE" and ours.meta.cal_step.assign_wcs == "COMPLETE"
    assert ours.meta.wcs.available_frames == theirs.meta.wcs.available_frames
    assert np.allclose(np.array(ours.meta.wcs.bounding_box.bounding_box(order="F")),
                       np.array(theirs.meta.wcs.bounding_box.bounding_box(order="F")), rtol=0, atol=1e-9)
    x, y = _bbox_grid(theirs.meta.wcs)
    _assert_world_equal(ours.meta.wcs, theirs.meta.wcs, x, y)
    # the wavelength range is the LRS prism's (about 3 to 14 micron over the calibrated rows)
    lam = ours.meta.wcs(x, y)[2]
    assert 2.5 < np.nanmin(lam) < 5.5 and 13 < np.nanmax(lam) < 15
    # the inverse: sky and wavelength back to the pixel
    xs, ys = x[::17, ::5].ravel(), y[::17, ::5].ravel()
    ra, dec, lam = ours.meta.wcs(xs, ys)
    ok = ~np.isnan(lam)
    ours_back = ours.meta.wcs.backward_transform(ra[ok], dec[ok], lam[ok])
    theirs_back = theirs.meta.wcs.backward_transform(ra[ok], dec[ok], lam[ok])
    for u, v in zip(ours_back, theirs_back):
        assert np.allclose(u, v, rtol=0, atol=1e-7, equal_nan=True)
    assert np.nanmax(np.abs(ours_back[1] - ys[ok])) < 1e-3


def test_assign_wcs_lrs_keywords_and_wavelength_match_jwst(wcs_pair):
    exp_type, res, theirs, _ = wcs_pair
    ours = res.model
    assert ours.meta.wcsinfo.specsys == theirs.meta.wcsinfo.specsys == "BARYCENT"
    assert ours.meta.wcsinfo.dispersion_direction == theirs.meta.wcsinfo.dispersion_direction == 2
    assert ours.meta.wcsinfo.s_region == theirs.meta.wcsinfo.s_region
    if exp_type == "MIR_LRS-FIXEDSLIT":
        # the slit's corners on the sky (jwst's imaging footprint fails on the 3-axis slitless WCS
        # and leaves S_REGION unset: so does webbflow)
        assert ours.meta.wcsinfo.s_region.startswith("POLYGON ICRS")
        assert ours.meta.dither.dithered_ra == pytest.approx(theirs.meta.dither.dithered_ra, abs=1e-10)
        assert ours.meta.dither.dithered_dec == pytest.approx(theirs.meta.dither.dithered_dec, abs=1e-10)
    wl_ours = ours.wavelength
    wl_theirs = np.asarray(theirs.wavelength, dtype=np.float32)
    assert wl_ours.shape == wl_theirs.shape == ours.data.shape[-2:]
    assert np.array_equal(np.isnan(wl_ours), np.isnan(wl_theirs))
    assert np.array_equal(wl_ours[~np.isnan(wl_ours)], wl_theirs[~np.isnan(wl_theirs)])
    assert res.references["specwcs"].endswith(".fits") and res.references["distortion"].endswith(".asdf")


def test_assign_wcs_lrs_product_opens_in_stdatamodels_with_the_same_wcs(wcs_pair):
    """The written exposure (ASDF extension) gives jwst the WCS webbflow built."""
    from stdatamodels.jwst import datamodels as dm

    exp_type, res, theirs, written = wcs_pair
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reread = dm.open(written)
    assert type(reread).__name__ == ("ImageModel" if exp_type == "MIR_LRS-FIXEDSLIT" else "CubeModel")
    x, y = _bbox_grid(theirs.meta.wcs)
    _assert_world_equal(reread.meta.wcs, theirs.meta.wcs, x[::4, ::4], y[::4, ::4])
    assert reread.meta.wcsinfo.s_region == theirs.meta.wcsinfo.s_region
    assert reread.meta.cal_step.assign_wcs == "COMPLETE"
    assert reread.meta.ref_file.specwcs.name.endswith(".fits")


def _lrs_photom(tmp_path):
    """An LRS photom reference (MirLrsPhotomModel) of the real form: one row per subarray, 500-element
    response arrays of which NELEM are used, covering 4.5-14 um (pixels outside it get no calibration)."""
    from stdatamodels.jwst import datamodels as dm

    n, nelem = 500, 420
    wave = np.zeros(n, np.float32)
    resp = np.zeros(n, np.float32)
    wave[:nelem] = np.linspace(14.0, 4.5, nelem)  # decreasing, as the real files are: jwst sorts them
    resp[:nelem] = (1.0 + 0.3 * np.sin(wave[:nelem])) * np.exp(-((wave[:nelem] - 8.0) / 6.0) ** 2)
    rows = [("P750L", sub, conv, 0.02 * conv, nelem, wave, resp, 0.01 * resp)
            for sub, conv in (("FULL", 61.2), ("SLITLESSPRISM", 58.7))]
    dtype = [("filter", "S12"), ("subarray", "S17"), ("photmjsr", "<f4"), ("uncertainty", "<f4"), ("nelem", "<i2"),
             ("wavelength", "<f4", (n,)), ("relresponse", "<f4", (n,)), ("reluncertainty", "<f4", (n,))]
    ref = dm.MirLrsPhotomModel(phot_table=np.array(rows, dtype=dtype))
    ref.meta.instrument.name, ref.meta.instrument.detector, ref.meta.instrument.filter = "MIRI", "MIRIMAGE", "P750L"
    ref.meta.reftype, ref.meta.author, ref.meta.pedigree = "PHOTOM", "webbflow tests", "DUMMY"
    ref.meta.description, ref.meta.useafter = "LRS photom for tests", "2022-01-01T00:00:00"
    ref.meta.photometry.pixelarea_steradians, ref.meta.photometry.pixelarea_arcsecsq = 2.84403609523084e-13, 0.0121
    out = tmp_path / "jwst_miri_photom_lrs.fits"
    ref.save(out)
    return out


def test_photom_lrs_matches_jwst(wcs_pair, tmp_path):
    """photom on the LRS exposure after assign_wcs: PHOTMJSR times the relative response at each pixel's
    wavelength; pixels outside the response are DO_NOT_USE and NaN; same arrays, DQ and keywords as jwst."""
    from jwst.photom.photom import DataSet
    from parity import compare_arrays, compare_dq

    exp_type, res, theirs, _ = wcs_pair
    ref = _lrs_photom(tmp_path)
    ours = run_step("photom", res.model.copy(), {}, references={"photom": str(ref), "area": "N/A"})
    assert ours.status == "COMPLETE"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        jw = DataSet(theirs.copy(), False, None, True).apply_photom(str(ref), "N/A")
    o = ours.model
    for name in ("data", "err", "var_poisson", "var_rnoise"):
        ag = compare_arrays(name, getattr(o, name), getattr(jw, name), rtol=1e-6)
        assert ag.fraction == 1.0, name
    assert compare_dq("dq", o.dq, jw.dq).fraction == 1.0
    assert o.meta.photometry.conversion_megajanskys == pytest.approx(jw.meta.photometry.conversion_megajanskys, rel=1e-7)
    assert o.meta.photometry.conversion_microjanskys == pytest.approx(jw.meta.photometry.conversion_microjanskys, rel=1e-7)
    assert o.meta.photometry.pixelarea_steradians == jw.meta.photometry.pixelarea_steradians
    assert o.meta.bunit_data == jw.meta.bunit_data == "MJy/sr"
    # the calibration did something: calibrated pixels changed scale, uncalibrated ones are flagged
    calibrated = np.isfinite(o.data) & ~np.isnan(res.model.wavelength)
    assert calibrated.sum() > 1000
    uncal = np.isnan(o.wavelength) | (o.wavelength < 4.5) | (o.wavelength > 14.0)
    assert np.all(o.dq[..., uncal] & 1) and np.all(np.isnan(o.data[..., uncal]))


def _lrs_pathloss(tmp_path):
    """An LRS pathloss reference (MirLrsPathlossModel): wavelengths from long to short as in the real
    file, each with a 2-D grid of the slit's throughput over the source position (pixels from the
    reference point: 41 along the slit, 11 across it)."""
    from stdatamodels.jwst import datamodels as dm

    waves = np.linspace(14.5, 4.0, 120).astype(np.float32)
    yy, xx = np.mgrid[-2.5:2.51:0.5, -20:21:1.0]
    rows = []
    for w in waves:
        width = 0.8 + 0.12 * w  # the PSF grows with wavelength: more of it misses the slit
        centre = 0.95 - 0.025 * (w - 4.0)  # and less of it passes even when centred
        grid = (centre * np.exp(-0.5 * (yy / width) ** 2) * (1 - 0.002 * np.abs(xx))).astype(np.float32)
        rows.append((w, grid, 0.01 * grid))
    dtype = [("wavelength", "<f4"), ("pathloss", "<f4", yy.shape), ("pathloss_err", "<f4", yy.shape)]
    ref = dm.MirLrsPathlossModel(pathloss_table=np.array(rows, dtype=dtype))
    ref.meta.instrument.name, ref.meta.instrument.detector, ref.meta.instrument.filter = "MIRI", "MIRIMAGE", "P750L"
    ref.meta.exposure.type = "MIR_LRS-FIXEDSLIT"
    ref.meta.reftype, ref.meta.author, ref.meta.pedigree = "PATHLOSS", "webbflow tests", "DUMMY"
    ref.meta.description, ref.meta.useafter = "LRS pathloss for tests", "2022-01-01T00:00:00"
    w = ref.meta.wcsinfo
    w.crpix1, w.crval1, w.cdelt1, w.crpix2, w.crval2, w.cdelt2 = 21.0, 0.0, 1.0, 6.0, 0.0, 0.5
    out = tmp_path / "jwst_miri_pathloss_lrs.fits"
    ref.save(out)
    return out


@pytest.mark.parametrize("user_slit_loc", [None, 0.12])
def test_pathloss_lrs_matches_jwst(wcs_pair, tmp_path, user_slit_loc):
    """pathloss for a point source in the slit, 2.7 pixels along it from the reference point: the same
    correction array, data, variances and PATHLOSS_PS as jwst's do_correction (with and without a
    user slit offset); an extended source is left alone and marked SKIPPED."""
    from jwst.pathloss.pathloss import do_correction
    from parity import compare_arrays
    from stdatamodels.jwst import datamodels as dm

    exp_type, res, theirs, _ = wcs_pair
    if exp_type != "MIR_LRS-FIXEDSLIT":
        pytest.skip("pathloss corrects the LRS fixed slit only (jwst has no slitless pathloss)")
    ref = _lrs_pathloss(tmp_path)
    det2world = theirs.meta.wcs.get_transform("detector", "world")
    imx, imy = -det2world.offset_1, -det2world.offset_2
    ra, dec, _ = theirs.meta.wcs(imx + 2.7, imy)
    mine, jw = res.model.copy(), theirs.copy()
    for m in (mine, jw):
        m.meta.target.ra, m.meta.target.dec, m.meta.target.source_type = float(ra), float(dec), "POINT"
    out = run_step("pathloss", mine, {"user_slit_loc": user_slit_loc}, references={"pathloss": str(ref)})
    assert out.status == "COMPLETE"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        jw = do_correction(jw, dm.MirLrsPathlossModel(str(ref)), user_slit_loc=user_slit_loc, return_corrections=False)
    o = out.model
    for name in ("pathloss_point", "data", "err", "var_poisson", "var_rnoise", "wavelength"):
        ag = compare_arrays(name, getattr(o, name), getattr(jw, name), rtol=1e-6)
        assert ag.fraction == 1.0, name
    assert np.array_equal(o.dq, jw.dq)
    corr = o.pathloss_point[np.isfinite(o.pathloss_point)]
    assert corr.size > 1000 and 0.3 < corr.min() < corr.max() < 1.0
    # an extended source: no correction
    ext = res.model.copy()
    ext.meta.target.source_type = "EXTENDED"
    skipped = run_step("pathloss", ext, {}, references={"pathloss": str(ref)})
    assert skipped.status == "SKIPPED" and skipped.model.meta.cal_step.pathloss == "SKIPPED"
    assert np.array_equal(skipped.model.data, res.model.data, equal_nan=True)
    # a point source without a target position: a one-line error naming the exposure
    from webbflow.errors import InputFileError

    lost = res.model.copy()
    lost.meta.target.source_type, lost.meta.target.ra = "POINT", None
    with pytest.raises(InputFileError, match="TARG_RA"):
        run_step("pathloss", lost, {}, references={"pathloss": str(ref)})


def test_assign_wcs_lrs_refuses_a_specwcs_without_its_table(tmp_path):
    from webbflow.errors import ReferenceFileError

    load_all()
    rate = _rate("MIR_LRS-SLITLESS", tmp_path)
    bad = tmp_path / "jwst_miri_specwcs_notable.fits"
    with fits.open(SPECWCS["MIR_LRS-SLITLESS"]) as hdul:
        fits.HDUList([hdul[0].copy()]).writeto(bad)
    refs = {"distortion": str(DISTORTION), "specwcs": str(bad), **dict.fromkeys(NOT_USED, "N/A")}
    with pytest.raises(ReferenceFileError, match="WAVETABLE"):
        run_step("assign_wcs", models.open(rate), {}, references=refs)


def _miri_flat(tmp_path):
    """A MIRI imager flat (FlatModel, full frame) with pixel-to-pixel structure and a few bad pixels."""
    from stdatamodels.jwst import datamodels as dm

    rng = np.random.default_rng(3)
    flat = dm.FlatModel(rng.normal(1.0, 0.03, (1024, 1032)).astype(np.float32))
    flat.err = np.full((1024, 1032), 0.005, np.float32)
    flat.dq = np.zeros((1024, 1032), np.uint32)
    flat.dq[700:702, 20:22] = 1 | 1024  # DO_NOT_USE + DEAD
    flat.meta.instrument.name, flat.meta.instrument.detector, flat.meta.instrument.filter = "MIRI", "MIRIMAGE", "P750L"
    flat.meta.reftype, flat.meta.author, flat.meta.pedigree = "FLAT", "webbflow tests", "DUMMY"
    flat.meta.description, flat.meta.useafter = "MIRI flat for tests", "2022-01-01T00:00:00"
    flat.meta.subarray.name, flat.meta.subarray.xstart, flat.meta.subarray.ystart = "FULL", 1, 1
    flat.meta.subarray.xsize, flat.meta.subarray.ysize = 1032, 1024
    out = tmp_path / "jwst_miri_flat_lrs.fits"
    flat.save(out)
    return out


def test_spec2_lrs_slitless_branch_calints_match_jwsts_steps(tmp_path):
    """spec2's LRS slitless branch on a rateints: the calints (a SlitModel, as jwst's) equals jwst's own
    chain on the same input (load_wcs, the SlitModel conversion, srctype, flat_field, photom), and the
    x1dints holds one spectrum per integration."""
    from jwst.assign_wcs.assign_wcs import load_wcs
    from jwst.flatfield.flat_field import do_correction as jwst_flat
    from jwst.photom.photom import DataSet
    from jwst.srctype.srctype import set_source_type
    from parity import compare_arrays
    from stdatamodels.jwst import datamodels as dm

    from webbflow.flows.calwebb_spec2 import calibrate_exposure

    load_all()
    exp_type = "MIR_LRS-SLITLESS"
    rate = _rate(exp_type, tmp_path)
    rateints = tmp_path / "jw01234001001_01101_00001_mirimage_rateints.fits"
    rate.rename(rateints)
    flat, photom = _miri_flat(tmp_path), _lrs_photom(tmp_path)
    steps = {
        "assign_wcs": {"override_distortion": str(DISTORTION), "override_specwcs": str(SPECWCS[exp_type])},
        "flat_field": {"override_flat": str(flat)},
        "photom": {"override_photom": str(photom), "override_area": "N/A"},
        "extract_1d": {"override_extract1d": str(MIRI_REFS / "jwst_miri_extract1d_0005.json"),
                       "override_apcorr": "N/A", "override_psf": "N/A"},
    }
    out = tmp_path / "out"
    cal, resampled, x1d, run = calibrate_exposure(rateints, {}, steps=steps, output_dir=out)
    names = sorted(p.name for p in out.glob("*.fits"))
    assert names == ["jw01234001001_01101_00001_mirimage_calints.fits", "jw01234001001_01101_00001_mirimage_x1dints.fits"]
    assert resampled is None
    assert [r.name for r in run.records] == ["assign_wcs", "srctype", "flat_field", "photom", "extract_1d"]
    assert type(cal).__name__ == "SlitModel" and cal.data.ndim == 3
    assert (cal.xstart, cal.ystart, cal.xsize, cal.ysize) == (1, 529, 72, 416)
    for step in ("assign_wcs", "srctype", "flat_field", "photom"):
        assert getattr(cal.meta.cal_step, step) == "COMPLETE", step
    for step in ("pathloss", "bkg_subtract", "straylight", "fringe"):
        assert getattr(cal.meta.cal_step, step) == "SKIPPED", step

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        jw = load_wcs(dm.open(rateints), {"distortion": str(DISTORTION), "specwcs": str(SPECWCS[exp_type])})
        slit = dm.SlitModel(jw)
        for attr in ("xstart", "ystart", "xsize", "ysize"):
            setattr(slit, attr, getattr(jw.meta.subarray, attr))
        set_source_type(slit)
        slit, _ = jwst_flat(slit, dm.FlatModel(str(flat)))
        slit = DataSet(slit, False, None, True).apply_photom(str(photom), "N/A")
    assert cal.meta.target.source_type == slit.meta.target.source_type == "POINT"
    for name in ("data", "err", "var_poisson", "var_rnoise", "var_flat", "wavelength"):
        ag = compare_arrays(name, getattr(cal, name), getattr(slit, name), rtol=1e-4)
        assert ag.fraction >= 0.999, name
    assert np.array_equal(cal.dq, slit.dq)

    spectra = models.open(out / names[1])
    assert type(spectra).__name__ == "TSOMultiSpecModel"
    table = spectra.spec[0].spec_table
    assert len(table) == 2  # one row per integration
    flux = np.asarray(table["FLUX"])
    assert np.isfinite(flux).sum() > 0.5 * flux.size


def test_spec2_lrs_fixedslit_cal_s2d_x1d_match_jwst(tmp_path, real_rules_cache):
    """spec2's LRS fixed-slit branch on a nod exposure writes cal, s2d and x1d: the cal (SlitModel)
    equals jwst's chain (load_wcs, SlitModel, srctype, flat_field, pathloss, photom), with the other
    nod subtracted as the background member (jwst's background_sub); the s2d and x1d equal, whole
    product, what jwst's ResampleSpecStep and Extract1dStep (real extract1d JSON) make from that cal."""
    from jwst.assign_wcs.assign_wcs import load_wcs
    from jwst.background.background_sub import background_sub
    from jwst.flatfield.flat_field import do_correction as jwst_flat
    from jwst.pathloss.pathloss import do_correction as jwst_pathloss
    from jwst.photom.photom import DataSet
    from jwst.srctype.srctype import set_source_type
    from parity import compare_arrays
    from stdatamodels.jwst import datamodels as dm

    import json

    from webbflow.flows.calwebb_spec2 import run_spec2, spec2_last_run

    load_all()
    exp_type = "MIR_LRS-FIXEDSLIT"
    rate = tmp_path / "jw01234002001_01101_00001_mirimage_rate.fits"
    _rate(exp_type, tmp_path).rename(rate)
    nod2 = tmp_path / "jw01234002001_01101_00002_mirimage_rate.fits"
    _rate(exp_type, tmp_path, seed=18).rename(nod2)
    specwcs = _specwcs_with_vertices(exp_type, tmp_path)
    flat, photom, pathloss = _miri_flat(tmp_path), _lrs_photom(tmp_path), _lrs_pathloss(tmp_path)
    steps = {
        "assign_wcs": {"override_distortion": str(DISTORTION), "override_specwcs": str(specwcs)},
        "flat_field": {"override_flat": str(flat)},
        "pathloss": {"override_pathloss": str(pathloss)},
        "photom": {"override_photom": str(photom), "override_area": "N/A"},
        "extract_1d": {"override_extract1d": str(MIRI_REFS / "jwst_miri_extract1d_0005.json"),
                       "override_apcorr": "N/A", "override_psf": "N/A"},
    }
    # the level-2 association jwst's rules make for a nod: the other nod is the background member
    asn = tmp_path / "jw01234-o002_20240301t100000_spec2_00001_asn.json"
    asn.write_text(json.dumps({
        "asn_type": "spec2", "asn_rule": "Asn_Lv2SpecSpecial", "asn_pool": "jw01234_20240301t100000_pool.csv",
        "products": [{"name": "jw01234002001_01101_00001_mirimage",
                      "members": [{"expname": rate.name, "exptype": "science"},
                                  {"expname": nod2.name, "exptype": "background"}]}]}))
    out = tmp_path / "out"
    written = run_spec2(asn, output_dir=out, steps=steps)  # what `webbflow run calwebb_spec2 ASN` runs
    names = [f"jw01234002001_01101_00001_mirimage_{s}.fits" for s in ("cal", "s2d", "x1d")]
    assert [Path(p).name for p in written] == names
    assert sorted(p.name for p in out.glob("*.fits")) == names
    run = spec2_last_run[-1]
    cal = models.open(out / "jw01234002001_01101_00001_mirimage_cal.fits")
    assert cal.meta.asn.table_name == asn.name and cal.meta.asn.pool_name == "jw01234_20240301t100000_pool.csv"
    assert [r.name for r in run.records] == ["assign_wcs", "bkg_subtract", "srctype", "flat_field", "pathloss", "photom",
                                             "resample_spec", "extract_1d"]
    assert type(cal).__name__ == "SlitModel" and (cal.xsize, cal.ysize) == (1032, 1024)
    assert cal.meta.cal_step.pathloss == "COMPLETE" and cal.meta.cal_step.bkg_subtract == "COMPLETE"
    assert cal.meta.cal_step.straylight == "SKIPPED" and cal.meta.cal_step.targ_centroid == "SKIPPED"

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        jw = load_wcs(dm.open(rate), {"distortion": str(DISTORTION), "specwcs": str(specwcs)})
        _bkg, jw = background_sub(jw, [str(nod2)], 3.0, None)
        slit = dm.SlitModel(jw)
        for attr in ("xstart", "ystart", "xsize", "ysize"):
            setattr(slit, attr, getattr(jw.meta.subarray, attr))
        set_source_type(slit)
        slit, _ = jwst_flat(slit, dm.FlatModel(str(flat)))
        slit = jwst_pathloss(slit, dm.MirLrsPathlossModel(str(pathloss)), return_corrections=False)
        slit = DataSet(slit, False, None, True).apply_photom(str(photom), "N/A")
    for name in ("data", "err", "var_poisson", "var_rnoise", "var_flat", "pathloss_point", "wavelength"):
        ag = compare_arrays(name, getattr(cal, name), getattr(slit, name), rtol=1e-4)
        assert ag.fraction >= 0.999, name
    assert np.array_equal(cal.dq, slit.dq)
    # the point source's pathloss was applied: a correction below 1 over the slit's wavelengths
    corr = cal.pathloss_point[np.isfinite(cal.pathloss_point)]
    assert corr.size > 10000 and corr.max() < 1.0
    reread = dm.open(out / "jw01234002001_01101_00001_mirimage_cal.fits")
    assert type(reread).__name__ == "SlitModel" and reread.meta.cal_step.photom == "COMPLETE"

    # the s2d and x1d: jwst's resample_spec (one model, as spec2 gives it) and extract_1d on our cal
    from jwst.extract_1d import Extract1dStep
    from jwst.resample import ResampleSpecStep
    from parity import jwst_offline, quiet_jwst
    from test_products_whole import compare_fits

    theirs = tmp_path / "jwst"
    theirs.mkdir()
    with warnings.catch_warnings(), jwst_offline(real_rules_cache, "jwst_0541.pmap"), quiet_jwst():
        warnings.simplefilter("ignore")
        jw_cal = dm.open(out / names[0])
        jw_cal.meta.cal_step.adaptive_trace_model = jw_cal.meta.cal_step.pixel_replace = "SKIPPED"  # as in jwst's spec2
        s2d = ResampleSpecStep.call(jw_cal)
        s2d.save(theirs / names[1])
        x1d = Extract1dStep.call(s2d, **steps["extract_1d"])
        x1d.save(theirs / names[2])
    problems: list[str] = []
    compare_fits("s2d", out / names[1], theirs / names[1], problems)
    assert problems == []
    compare_fits("x1d", out / names[2], theirs / names[2], problems)
    # jwst's step run alone records its overrides and context differently from a pipeline run
    reference_records = ("CRDS_CTX", "R_APCORR", "R_EXTR1D")
    assert [p for p in problems if not any(k in p for k in reference_records)] == []
    ours_s2d, ours_x1d = models.open(out / names[1]), models.open(out / names[2])
    assert ours_s2d.meta.cal_step.resample == "COMPLETE" and ours_x1d.meta.cal_step.extract_1d == "COMPLETE"
    assert ours_x1d.meta.cal_step.pixel_replace == "SKIPPED" and ours_x1d.meta.cal_step.adaptive_trace_model == "SKIPPED"
    # the s2d disperses along y as the detector does (wavelength falling with row), over the specwcs range
    lam = ours_s2d.wavelength[:, ours_s2d.data.shape[1] // 2]
    assert np.all(np.diff(lam[np.isfinite(lam)]) < 0) and 2.5 < np.nanmin(lam) < 5.0 and 13.0 < np.nanmax(lam) < 15.0
    table = ours_x1d.spec[0].spec_table
    assert np.isfinite(np.asarray(table["FLUX"])).sum() > 0.9 * len(table)
