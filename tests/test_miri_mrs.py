"""MIRI MRS (MIR_MRS): assign_wcs and the spec2 corrections up to the cal, in parity with jwst 3.0.

assign_wcs: the MRS WCS built by webbflow (tasks/assign_wcs/miri_mrs.py) against jwst's
``load_wcs`` on the same rate with the same references, for both detectors:

- MIRIFUSHORT, band SHORT (1SHORT + 2SHORT): the real in-flight distortion and specwcs (flt9) and
  wavelength ranges; the slice map traced through that distortion (refs/synthetic_mrs.py), as
  no real 12SHORT map is in ../shared/data;
- MIRIFULONG, band LONG (3LONG + 4LONG): the real ground set (distortion 0027, specwcs 0016,
  wavelengthrange 0003) and its real slice map (regions 0017, 2-D, stacked into planes).

Compared: detector -> world (RA, Dec, lambda) on every slice pixel within 1e-10 deg / um, the
inverse world -> detector (what cube_build uses) on the same pixels, detector -> alpha_beta
identical, and S_REGION, SPECSYS, DISPAXIS; the written product opens in stdatamodels with the
same WCS.  Then straylight, fringe and photom on that exposure against jwst's steps, and the
spec2 MIR_MRS branch writing the cal.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import SHARED_DATA

from webbflow import models
from webbflow.tasks import load_all
from webbflow.tasks.base import run_step

MIRI_REFS = SHARED_DATA / "real-refs" / "miri"
FLT9 = MIRI_REFS / "mrs_flt9"
# reference sets per detector: (band, distortion, specwcs, wavelengthrange, real 2-D regions or None)
SETS = {
    "MIRIFUSHORT": ("SHORT", FLT9 / "jwst_miri_mrs12A_distortion_flt9.asdf", FLT9 / "jwst_miri_mrs12A_specwcs_flt9.asdf",
                    FLT9 / "jwst_miri_mrs_wavelengthrange_flt9.asdf", None),
    "MIRIFULONG": ("LONG", MIRI_REFS / "jwst_miri_distortion_0027.asdf", MIRI_REFS / "jwst_miri_specwcs_0016.asdf",
                   MIRI_REFS / "jwst_miri_wavelengthrange_0003.asdf", MIRI_REFS / "jwst_miri_regions_0017.asdf"),
}
CHANNELS = {"MIRIFUSHORT": "12", "MIRIFULONG": "34"}
# the reference types assign_wcs considers but the MRS does not use: N/A (no CRDS query in a step test)
NOT_USED = ("filteroffset", "camera", "chromcorr", "collimator", "disperser", "fore", "fpa", "msa", "ote",
            "ifupost", "ifufore", "ifuslicer")

pytestmark = [pytest.mark.parity, pytest.mark.real]


def _regions(detector, tmp):
    """The slice map file: the real 34LONG one stacked into planes, or one traced for 12SHORT."""
    from webbflow.refs import synthetic_mrs
    from webbflow.refs.select import open_reference

    band, dist, spec, wr, real = SETS[detector]
    if real is not None:
        planes = synthetic_mrs.regions_from_plane(open_reference("regions", real).regions)
    else:
        planes = synthetic_mrs.regions_from_distortion(open_reference("distortion", dist), open_reference("specwcs", spec),
                                                       open_reference("wavelengthrange", wr), band)
    path = tmp / f"mrs_{detector.lower()}_regions.asdf"
    synthetic_mrs.regions(planes, detector, band).save(path)
    return path


def _rate(detector, tmp, seed=20):
    """A full-frame MRS count-rate exposure (IFUImageModel) written by stdatamodels."""
    import asdf
    from stdatamodels.jwst import datamodels as dm

    band, dist, _spec, _wr, _real = SETS[detector]
    ch = CHANNELS[detector][0]
    with asdf.open(dist) as af:
        v23 = dict(zip(af.tree["abv2v3_model"]["channel_band"], af.tree["abv2v3_model"]["model"]))
        v2_ref, v3_ref = v23[ch + band](0.0, 0.0)
    rng = np.random.default_rng(seed)
    shape = (1024, 1032)
    # a flat 2 DN/s glow with +-0.05 of noise (all of it under straylight's 3-sigma cut) and a
    # bright band of 40 rows across both channels (clear of the unlit strip between them)
    data = 2.0 + rng.uniform(-0.05, 0.05, shape)
    for c0, c1 in ((20, 490), (530, 1010)):
        data[480:520, c0:c1] += 25.0 + 5.0 * np.sin(np.arange(c0, c1) / 7.0)
    m = dm.IFUImageModel(data.astype(np.float32))
    m.var_poisson = np.abs(rng.normal(0.05, 0.01, shape)).astype(np.float32)
    m.var_rnoise = np.full(shape, 0.02, np.float32)
    m.err = np.sqrt(m.var_poisson + m.var_rnoise).astype(np.float32)
    m.dq = np.zeros(shape, np.uint32)
    m.dq[300:303, 200:203] = 4  # JUMP_DET, kept
    m.data[500, 700] = np.nan
    m.dq[500, 700] = 1
    m.meta.bunit_data = m.meta.bunit_err = "DN/s"
    m.meta.subarray.name = "FULL"
    m.meta.subarray.xstart, m.meta.subarray.ystart, m.meta.subarray.xsize, m.meta.subarray.ysize = 1, 1, 1032, 1024
    m.meta.subarray.fastaxis, m.meta.subarray.slowaxis = 1, 2
    i = m.meta.instrument
    i.name, i.detector, i.channel, i.band = "MIRI", detector, CHANNELS[detector], band
    m.meta.exposure.type = "MIR_MRS"
    m.meta.observation.date, m.meta.observation.time = "2024-03-01", "10:00:00"
    e = m.meta.exposure
    e.exposure_time = e.effective_exposure_time = e.measurement_time = e.duration = 277.5
    e.start_time, e.end_time = 60370.41667, 60370.42
    e.mid_time = (e.start_time + e.end_time) / 2
    w = m.meta.wcsinfo
    w.v2_ref, w.v3_ref = float(v2_ref), float(v3_ref)
    w.roll_ref, w.ra_ref, w.dec_ref, w.v3yangle, w.vparity = 254.1, 83.8221, -5.3911, -4.45, -1
    w.velosys = 12345.6
    m.meta.target.ra, m.meta.target.dec = w.ra_ref, w.dec_ref
    m.meta.velocity_aberration.scale_factor = 0.99998923
    path = tmp / f"mrs_{detector.lower()}_rate.fits"
    m.save(path)
    return path


_BUILT: dict = {}


def _assigned(detector, tmp_path_factory):
    """(refs, rate path, webbflow's assign_wcs StepResult), made once per detector for the module."""
    if detector not in _BUILT:
        load_all()
        tmp = tmp_path_factory.mktemp(detector.lower())
        band, dist, spec, wr, _real = SETS[detector]
        refs = {"distortion": str(dist), "specwcs": str(spec), "wavelengthrange": str(wr),
                "regions": str(_regions(detector, tmp))}
        rate = _rate(detector, tmp)
        res = run_step("assign_wcs", models.open(rate), {}, references={**refs, **dict.fromkeys(NOT_USED, "N/A")})
        _BUILT[detector] = (tmp, refs, rate, res)
    return _BUILT[detector]


@pytest.fixture(scope="module", params=["MIRIFUSHORT", "MIRIFULONG"])
def mrs(request, tmp_path_factory):
    """(detector, refs, rate path, webbflow's StepResult, jwst's model after load_wcs, our written product)."""
    detector = request.param
    tmp, refs, rate, res = _assigned(detector, tmp_path_factory)
    written = tmp / "ours_assign_wcs.fits"
    res.model.save(written)
    return detector, refs, rate, res, _jwst_assigned(detector, tmp_path_factory), written


def _jwst_assigned(detector, tmp_path_factory):
    """jwst's load_wcs on the same rate with the same references, once per detector for the module."""
    from jwst.assign_wcs.assign_wcs import load_wcs
    from stdatamodels.jwst import datamodels as dm

    key = ("jwst", detector)
    if key not in _BUILT:
        _tmp, refs, rate, _res = _assigned(detector, tmp_path_factory)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _BUILT[key] = load_wcs(dm.IFUImageModel(str(rate)), refs)
    return _BUILT[key]


def _slice_pixels(ours):
    """Every pixel of the 80 % throughput slice map (a sample of 1 in 7, to keep it quick)."""
    y, x = np.nonzero(_slice_map(ours) > 0)
    return x[::7].astype(float), y[::7].astype(float)


def _slice_map(model):
    det2ab = model.meta.wcs.get_transform("detector", "alpha_beta")
    return np.asarray(det2ab.label_mapper.mapper)


def test_assign_wcs_mrs_world_and_inverse_match_jwst(mrs):
    detector, _refs, _rate_path, res, theirs, _w = mrs
    ours = res.model
    assert res.status == "COMPLETE" and ours.meta.cal_step.assign_wcs == "COMPLETE"
    assert isinstance(ours, models.IFUImageModel)
    assert [f for f in ours.meta.wcs.available_frames] == list(theirs.meta.wcs.available_frames) == [
        "detector", "alpha_beta", "v2v3", "v2v3vacorr", "world"]
    assert np.array_equal(_slice_map(ours), _slice_map(theirs))
    x, y = _slice_pixels(ours)
    assert x.size > 10000
    ra, dec, lam = ours.meta.wcs(x, y)
    ra_j, dec_j, lam_j = theirs.meta.wcs(x, y)
    good = np.isfinite(ra_j)
    assert good.mean() > 0.99  # slice pixels all map to the sky
    assert np.array_equal(np.isfinite(ra), good)
    for a, b in ((ra, ra_j), (dec, dec_j), (lam, lam_j)):
        assert np.max(np.abs(a[good] - b[good])) <= 1e-10
    # both channels are there, each in its wavelength range
    chans = {int(s) // 100 for s in np.unique(_slice_map(ours)) if s}
    assert chans == {int(c) for c in CHANNELS[detector]}
    # alpha, beta (and lambda) identical
    ab = ours.meta.wcs.get_transform("detector", "alpha_beta")(x, y)
    ab_j = theirs.meta.wcs.get_transform("detector", "alpha_beta")(x, y)
    for a, b in zip(ab, ab_j):
        assert np.array_equal(a[good], b[good])
    # the inverse, as cube_build uses it: world -> detector back to the pixel
    xb, yb = ours.meta.wcs.backward_transform(ra[good], dec[good], lam[good])
    xb_j, yb_j = theirs.meta.wcs.backward_transform(ra_j[good], dec_j[good], lam_j[good])
    ok = np.isfinite(xb_j)
    assert ok.mean() > 0.95
    assert np.array_equal(np.isfinite(xb), ok)
    assert np.max(np.abs(xb[ok] - xb_j[ok])) <= 1e-10 and np.max(np.abs(yb[ok] - yb_j[ok])) <= 1e-10
    # back near the pixel (the inverse ignores the barycentric correction of lambda, in jwst too)
    assert np.median(np.hypot(xb[ok] - x[good][ok], yb[ok] - y[good][ok])) < 0.5
    # alpha_beta -> detector (cube_build's internal frame) and v2v3 -> alpha_beta
    inv_ab = ours.meta.wcs.get_transform("alpha_beta", "detector")(*[c[good] for c in ab])
    inv_ab_j = theirs.meta.wcs.get_transform("alpha_beta", "detector")(*[c[good] for c in ab_j])
    for a, b in zip(inv_ab, inv_ab_j):
        f = np.isfinite(b)
        assert np.array_equal(np.isfinite(a), f) and np.max(np.abs(a[f] - b[f])) <= 1e-10


def test_assign_wcs_mrs_metadata_match_jwst(mrs):
    _d, _refs, _rate_path, res, theirs, _w = mrs
    ours = res.model
    w, wj = ours.meta.wcsinfo, theirs.meta.wcsinfo
    assert w.s_region == wj.s_region and w.s_region.startswith("POLYGON ICRS")
    assert w.specsys == wj.specsys == "BARYCENT"
    assert w.dispersion_direction == wj.dispersion_direction == 2
    assert np.allclose(w.spectral_region, wj.spectral_region, rtol=0, atol=1e-12)


def test_assign_wcs_mrs_product_opens_in_stdatamodels_with_the_same_wcs(mrs):
    from stdatamodels.jwst import datamodels as dm

    _d, _refs, _rate_path, res, theirs, written = mrs
    with dm.open(written) as reread:
        assert type(reread).__name__ == "IFUImageModel"
        assert reread.meta.cal_step.assign_wcs == "COMPLETE"
        assert reread.meta.instrument.channel == theirs.meta.instrument.channel
        x = np.array([100.0, 300.0, 700.0, 900.0])
        y = np.array([100.0, 500.0, 512.0, 1000.0])
        a, b = reread.meta.wcs(x, y), theirs.meta.wcs(x, y)
        for u, v in zip(a, b):
            assert np.array_equal(np.isfinite(u), np.isfinite(v))
            assert np.allclose(u[np.isfinite(v)], v[np.isfinite(v)], rtol=0, atol=1e-10)


def test_assign_wcs_mrs_refuses_an_old_2d_slice_map():
    """jwst 3.0 reads a stack of throughput planes; the old 2-D map is a bad reference, said in one line."""
    from webbflow.errors import ReferenceFileError
    from webbflow.refs.select import open_reference
    from webbflow.tasks.assign_wcs.miri_mrs import _slice_map

    old = open_reference("regions", SETS["MIRIFULONG"][4])
    with pytest.raises(ReferenceFileError, match=r"regions .*0017.*2-D slice map \(1024, 1032\)") as exc:
        _slice_map(old)
    assert "\n" not in str(exc.value)


# ---------------------------------------------------------------------------
# straylight, fringe, photom: each step on the MIRIFUSHORT exposure after assign_wcs


def _c_kernel_on_lit_rows(fimg, xvec, imin, imax, lor_fwhm, lor_amp, g_fwhm, g_dx, g1_amp, g2_amp):
    """jwst's own C kernel (calc_xart) run on the rows with light only: a row with no light gets
    exactly 0 from it, and its full-frame run costs about a minute a detector half."""
    from jwst.straylight.calc_xart import xart_wrapper

    fuse = np.where(fimg < 0.0, 0.0, fimg)
    rows = np.nonzero(np.any(fuse[:, imin:imax] != 0, axis=1))[0]
    assert 0 < rows.size <= 64
    out = np.zeros(fimg.shape)
    g_std = g_fwhm / (2 * np.sqrt(2.0 * np.log(2)))
    res = xart_wrapper(imin, imax, fimg.shape[1], rows.size, xvec, np.ascontiguousarray(fuse[rows]).ravel(),
                       (lor_fwhm / 2.0)[rows], lor_amp[rows], g_std[rows], g_dx[rows], g1_amp[rows], g2_amp[rows])
    out[rows] = np.reshape(res[0], (rows.size, fimg.shape[1]))
    return out


def test_xartifact_kernel_matches_jwsts_c_kernel():
    """The compiled cross-artifact model against jwst's C extension on 12 rows of a lit image."""
    from jwst.straylight.calc_xart import xart_wrapper

    from webbflow.tasks._xart_kernel import xartifact_model

    rng = np.random.default_rng(3)
    ny = 12
    img = np.abs(rng.normal(1.0, 0.5, (ny, 1032)))
    img[rng.random(img.shape) < 0.5] = 0.0
    img[3, 5] = -2.0  # negative light counts as none
    x = np.arange(1032.0)
    pars = [8 + rng.random(ny), 1e-3 * (1 + rng.random(ny)), 18 + rng.random(ny), 28 + rng.random(ny),
            1e-3 * rng.random(ny), 3e-4 * rng.random(ny)]
    fuse = np.where(img < 0, 0.0, img)
    for imin, imax in ((0, 516), (516, 1024)):
        ours = xartifact_model(img, x, imin, imax, *pars)
        res = xart_wrapper(imin, imax, 1032, ny, x, fuse.ravel(), pars[0] / 2, pars[1],
                           pars[2] / (2 * np.sqrt(2 * np.log(2))), pars[3], pars[4], pars[5])
        theirs = np.reshape(res[0], img.shape)
        assert np.all(theirs > 0)
        assert np.max(np.abs(ours - theirs) / theirs) < 1e-12


@pytest.fixture(scope="module")
def mrs_short(tmp_path_factory):
    """The MIRIFUSHORT rate (straylight, fringe and photom need no WCS: jwst's steps get the same file)
    and its references, with synthetic mrsxartcorr, fringe and photom made on the WCS's wavelengths."""
    from webbflow.refs import synthetic_mrs

    tmp, refs, rate, res = _assigned("MIRIFUSHORT", tmp_path_factory)
    y, x = np.indices((1024, 1032), dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wave = res.model.meta.wcs(x, y)[2]
    paths = {"mrsxartcorr": tmp / "xartcorr.fits", "fringe": tmp / "fringe.fits", "photom": tmp / "photom.fits"}
    synthetic_mrs.mrsxartcorr().save(paths["mrsxartcorr"])
    synthetic_mrs.fringe(wave, "MIRIFUSHORT", "SHORT").save(paths["fringe"])
    synthetic_mrs.photom(wave, "MIRIFUSHORT", "SHORT").save(paths["photom"])
    return rate, {**refs, **{k: str(v) for k, v in paths.items()}}


def _jwst_step(step_class, path, cache, **kw):
    """jwst's step on the file, offline (the real 2019 rules as the CRDS cache; every reference overridden)."""
    from parity import jwst_offline, quiet_jwst
    from stdatamodels.jwst import datamodels as dm

    with warnings.catch_warnings(), jwst_offline(cache, "jwst_0541.pmap"), quiet_jwst():
        warnings.simplefilter("ignore")
        return step_class.call(dm.open(path), **kw)


def _assert_same_arrays(ours, theirs, names=("data", "err", "dq", "var_poisson", "var_rnoise"), rtol=0.0):
    for name in names:
        a, b = np.asarray(getattr(ours, name)), np.asarray(getattr(theirs, name))
        assert a.dtype.newbyteorder("=") == b.dtype.newbyteorder("=") and a.shape == b.shape, name
        assert np.array_equal(np.isnan(a), np.isnan(b)) if a.dtype.kind == "f" else True, name
        if rtol == 0.0:
            assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), name
        else:
            f = np.isfinite(b)
            assert np.allclose(a[f], b[f], rtol=rtol, atol=0), name


@pytest.mark.parametrize("clean_showers", [False, True])
def test_straylight_matches_jwst(mrs_short, real_rules_cache, monkeypatch, clean_showers):
    import jwst.straylight.straylight as jwst_straylight
    from jwst.straylight import StraylightStep

    rate, refs = mrs_short
    monkeypatch.setattr(jwst_straylight, "makemodel_ccode", _c_kernel_on_lit_rows)
    theirs = _jwst_step(StraylightStep, rate, real_rules_cache, override_mrsxartcorr=refs["mrsxartcorr"],
                        override_regions=refs["regions"], clean_showers=clean_showers)
    res = run_step("straylight", models.open(rate), {"clean_showers": clean_showers},
                   references={"mrsxartcorr": refs["mrsxartcorr"], "regions": refs["regions"]})
    ours = res.model
    assert res.status == "COMPLETE" and ours.meta.cal_step.straylight == theirs.meta.cal_step.straylight == "COMPLETE"
    before = models.open(rate).data
    # the band's scattered light and the glow's level came off
    assert np.nanmedian(before[100:200, 20:490] - ours.data[100:200, 20:490]) > 1.5
    _assert_same_arrays(ours, theirs, rtol=2e-6)
    assert np.max(np.abs(ours.data - theirs.data)[np.isfinite(theirs.data)]) < 1e-5


def test_fringe_matches_jwst(mrs_short, real_rules_cache):
    from jwst.fringe import FringeStep

    rate, refs = mrs_short
    theirs = _jwst_step(FringeStep, rate, real_rules_cache, override_fringe=refs["fringe"])
    res = run_step("fringe", models.open(rate), {}, references={"fringe": refs["fringe"]})
    assert res.status == "COMPLETE" and res.model.meta.cal_step.fringe == theirs.meta.cal_step.fringe == "COMPLETE"
    assert not np.array_equal(res.model.data, models.open(rate).data)
    _assert_same_arrays(res.model, theirs)


def test_photom_mrs_matches_jwst(mrs_short, real_rules_cache):
    from jwst.photom import PhotomStep

    rate, refs = mrs_short
    theirs = _jwst_step(PhotomStep, rate, real_rules_cache, override_photom=refs["photom"], override_area="N/A")
    res = run_step("photom", models.open(rate), {}, references={"photom": refs["photom"], "area": "N/A"})
    ours = res.model
    assert res.status == "COMPLETE" and ours.meta.cal_step.photom == theirs.meta.cal_step.photom == "COMPLETE"
    _assert_same_arrays(ours, theirs)
    assert ours.meta.bunit_data == theirs.meta.bunit_data == "MJy/sr"
    p, pj = ours.meta.photometry, theirs.meta.photometry
    assert p.conversion_megajanskys == pj.conversion_megajanskys
    assert p.conversion_microjanskys == pytest.approx(pj.conversion_microjanskys, rel=1e-12)
    assert (p.pixelarea_steradians, p.pixelarea_arcsecsq) == (pj.pixelarea_steradians, pj.pixelarea_arcsecsq)
    # between the slices there is no conversion: NaN and DO_NOT_USE
    assert np.isnan(ours.data[500, 515]) and ours.dq[500, 515] & 1


# ---------------------------------------------------------------------------
# spec2's MIR_MRS branch: the cal


def _mrs_flat(tmp):
    """An MRS flat (FlatModel, full frame) with pixel-to-pixel structure and a few bad pixels."""
    from stdatamodels.jwst import datamodels as dm

    rng = np.random.default_rng(4)
    flat = dm.FlatModel(rng.normal(1.0, 0.03, (1024, 1032)).astype(np.float32))
    flat.err = np.full((1024, 1032), 0.005, np.float32)
    flat.dq = np.zeros((1024, 1032), np.uint32)
    flat.dq[490:492, 100:102] = 1 | 1024  # DO_NOT_USE + DEAD, inside the bright band
    i = flat.meta.instrument
    i.name, i.detector, i.channel, i.band = "MIRI", "MIRIFUSHORT", "12", "SHORT"
    flat.meta.exposure.type = "MIR_MRS"
    flat.meta.reftype, flat.meta.author, flat.meta.pedigree = "FLAT", "webbflow tests", "DUMMY"
    flat.meta.description, flat.meta.useafter = "MIRI MRS flat for tests", "2022-01-01T00:00:00"
    flat.meta.subarray.name, flat.meta.subarray.xstart, flat.meta.subarray.ystart = "FULL", 1, 1
    flat.meta.subarray.xsize, flat.meta.subarray.ysize = 1032, 1024
    out = tmp / "jwst_miri_flat_mrs.fits"
    flat.save(out)
    return out


def test_spec2_mrs_branch_writes_the_cal_as_jwsts_steps_make_it(mrs_short, monkeypatch, tmp_path, tmp_path_factory):
    """spec2's MIR_MRS branch on a rate: the cal (an IFUImageModel with the MRS WCS) equals jwst's own
    chain on the same input (load_wcs, srctype, straylight, flat_field, fringe, photom)."""
    import jwst.straylight.straylight as jwst_straylight
    from jwst.flatfield.flat_field import do_correction as jwst_flat
    from jwst.fringe.fringe import apply_fringe
    from jwst.photom.photom import DataSet
    from jwst.srctype.srctype import set_source_type
    from stdatamodels.jwst import datamodels as dm

    from webbflow.flows.calwebb_spec2 import calibrate_exposure

    rate, refs = mrs_short
    flat = _mrs_flat(tmp_path)
    science = tmp_path / "jw01234001001_01101_00001_mirifushort_rate.fits"
    science.write_bytes(rate.read_bytes())
    steps = {
        "assign_wcs": {f"override_{k}": refs[k] for k in ("distortion", "specwcs", "regions", "wavelengthrange")},
        "straylight": {"override_mrsxartcorr": refs["mrsxartcorr"]},
        "flat_field": {"override_flat": str(flat)},
        "fringe": {"override_fringe": refs["fringe"]},
        "photom": {"override_photom": refs["photom"], "override_area": "N/A"},
        # the cal alone (s3d and x1d: tests/test_mrs_extract.py)
        "cube_build": {"skip": True}, "extract_1d": {"skip": True},
    }
    out = tmp_path / "out"
    cal, resampled, x1d, run = calibrate_exposure(science, {}, steps=steps, output_dir=out)
    assert sorted(p.name for p in out.glob("*.fits")) == ["jw01234001001_01101_00001_mirifushort_cal.fits"]
    assert resampled is None and x1d is None
    assert [r.name for r in run.records] == ["assign_wcs", "srctype", "straylight", "flat_field", "fringe", "photom",
                                             "residual_fringe"]
    assert run.records[-1].status == "SKIPPED"  # off by default, as in jwst
    for name in ("assign_wcs", "srctype", "straylight", "flat_field", "fringe", "photom"):
        assert getattr(cal.meta.cal_step, name) == "COMPLETE", name
    for name in ("bkg_subtract", "pathloss", "barshadow", "residual_fringe"):
        assert getattr(cal.meta.cal_step, name) == "SKIPPED", name

    monkeypatch.setattr(jwst_straylight, "makemodel_ccode", _c_kernel_on_lit_rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # jwst's assign_wcs on this rate (the module's load_wcs run: its WCS and keywords) on a fresh copy
        assigned = _jwst_assigned("MIRIFUSHORT", tmp_path_factory)
        jw = dm.IFUImageModel(str(science))
        jw.meta.wcs = assigned.meta.wcs
        for key in ("s_region", "specsys", "dispersion_direction"):
            setattr(jw.meta.wcsinfo, key, getattr(assigned.meta.wcsinfo, key))
        jw.meta.cal_step.assign_wcs = assigned.meta.cal_step.assign_wcs
        set_source_type(jw)
        jw = jwst_straylight.correct_xartifact(jw, dm.MirMrsXArtCorrModel(refs["mrsxartcorr"]))
        jw, _ = jwst_flat(jw, dm.FlatModel(str(flat)))
        jw = apply_fringe(jw, dm.FringeModel(refs["fringe"]))
        jw = DataSet(jw, False, None, True).apply_photom(refs["photom"], "N/A")
    assert cal.meta.target.source_type == jw.meta.target.source_type == "EXTENDED"
    assert cal.meta.bunit_data == jw.meta.bunit_data == "MJy/sr"
    _assert_same_arrays(cal, jw, names=("data", "err", "dq", "var_poisson", "var_rnoise", "var_flat"), rtol=2e-6)
    assert np.isfinite(cal.data).sum() > 300000  # the slices' pixels are calibrated

    # the written cal: an IFUImageModel with jwst's extensions in jwst's order
    from astropy.io import fits

    jw_path = tmp_path / "jwst_cal.fits"
    jw.save(jw_path)
    with fits.open(out / "jw01234001001_01101_00001_mirifushort_cal.fits") as a, fits.open(jw_path) as b:
        assert a[0].header["DATAMODL"] == b[0].header["DATAMODL"] == "IFUImageModel"
        assert [h.name for h in a] == [h.name for h in b]
        for key in ("S_REGION", "SPECSYS", "DISPAXIS", "PHOTMJSR", "BUNIT", "SRCTYPE"):
            assert a["SCI"].header.get(key) == b["SCI"].header.get(key), key
        assert a["SCI"].header["SRCTYPE"] == "EXTENDED"


def test_straylight_and_fringe_refuse_what_does_not_fit_in_one_line():
    """straylight works on full MRS frames only; a fringe flat of another shape is a bad reference."""
    from webbflow.errors import InputFileError, ReferenceFileError
    from webbflow.models import FringeModel
    from webbflow.refs import synthetic_mrs

    load_all()
    sub = models.IFUImageModel(data=np.ones((64, 72), np.float32))
    sub.meta.filename = "jw01234001001_01101_00001_mirifushort_rate.fits"
    sub.meta.exposure.type, sub.meta.instrument.channel, sub.meta.instrument.band = "MIR_MRS", "12", "SHORT"
    with pytest.raises(InputFileError, match=r"mirifushort_rate.fits.*full MRS frames \(1024, 1032\)"):
        run_step("straylight", sub, {}, references={"mrsxartcorr": synthetic_mrs.mrsxartcorr()})
    with pytest.raises(ReferenceFileError, match=r"fringe .*is \(1024, 1032\); the exposure is \(64, 72\)"):
        run_step("fringe", sub, {}, references={"fringe": FringeModel(data=np.ones((1024, 1032), np.float32))})


def test_photom_mrs_time_correction_matches_jwst():
    """The MRS throughput loss with time (TIMECOEFF_POWERLAW_CH1..4) against jwst's own function, on a
    detector whose wavelengths come from a stand-in WCS (the function reads only its bounding box and values)."""
    from types import SimpleNamespace

    from jwst.photom.time_dependence import miri_mrs_time_correction

    from webbflow.models import MirMrsPhotomModel
    from webbflow.tasks._photom_mrs import _time_correction

    class Wcs:
        bounding_box = ((-0.5, 1031.5), (-0.5, 1023.5))

        def __call__(self, x, y):
            lam = np.where(x < 512, 4.9 + 1.0e-3 * y, 7.5 + 1.4e-3 * y)
            lam = np.where((x % 23) < 2, np.nan, lam)  # between slices
            return x, y, lam

    ref = MirMrsPhotomModel(data=np.ones((1024, 1032), np.float32))
    dtype = [("binwave", ">f4"), ("alpha", ">f4"), ("year1value", ">f4"), ("tsoft", ">f4"), ("t0", ">f4")]
    for c in "1234":
        tab = np.zeros(8, dtype=dtype)
        tab["binwave"] = np.linspace(4.5 + 2.5 * (int(c) - 1), 7.0 + 3.0 * int(c), 8)
        tab["alpha"] = -0.05 - 0.01 * np.arange(8)
        tab["year1value"] = 0.98 - 0.01 * np.arange(8)
        tab["tsoft"], tab["t0"] = 30.0, 59720.0
        setattr(ref, f"timecoeff_powerlaw_ch{c}", tab)
    model = SimpleNamespace(data=np.zeros((1024, 1032), np.float32),
                            meta=SimpleNamespace(wcs=Wcs(), instrument=SimpleNamespace(detector="MIRIFUSHORT")))
    ours = _time_correction(model, ref, 60370.4)
    theirs = miri_mrs_time_correction(model, "MIRIFUSHORT", ref, 60370.4)
    assert np.allclose(ours, theirs, rtol=1e-12, atol=0)
    assert 0.8 < ours[:, 4:1028].min() < ours.max() <= 1.0 and np.any(ours[:, :512] < 0.99)
