"""1-D spectrum models (x1d, x1dints, c1d) and the spectral TSO steps on arrays built here:
extract_1d's box extraction and background fit, white_light, outlier_detection mode tso."""

from __future__ import annotations

import json

import numpy as np
import pytest

from webbflow import models
from webbflow.models.spectra import Spectrum, new_spec_table, new_tso_spec_table, spectrum_units
from webbflow.tasks import load_all
from webbflow.tasks.base import run_step
from webbflow.tasks.extract_1d import Extract1dParams, extract
from webbflow.tasks.extract_1d.background import fit_background

load_all()
NA = {"override_extract1d": "N/A", "override_apcorr": "N/A", "override_psf": "N/A", "apply_apcorr": False}


def _spectrum(n, seed, name):
    rng = np.random.default_rng(seed)
    t = new_spec_table(n)
    t["WAVELENGTH"] = np.linspace(1, 5, n)
    t["FLUX"] = rng.normal(1e-3, 1e-4, n)
    t["DQ"] = rng.integers(0, 2, n)
    t["NPIXELS"] = 5.0
    return Spectrum(t, {"name": name, "source_id": seed, "spectral_order": 1, "dispersion_direction": 1,
                        "slit_ra": 10.5, "slit_dec": -3.25, "extraction_ystart": 2, "source_type": "POINT"},
                    spectrum_units())


def test_multispec_roundtrip_opens_in_stdatamodels(tmp_path):
    from stdatamodels.jwst import datamodels as dm

    m = models.MultiSpecModel()
    m.meta.instrument.name = "NIRSPEC"
    m.meta.exposure.type = "NRS_MSASPEC"
    m.spec = [_spectrum(40, 1, "138"), _spectrum(25, 2, "140")]
    path = m.save(tmp_path / "x_x1d.fits")
    with dm.open(path) as j:
        assert type(j).__name__ == "MultiSpecModel"
        assert [s.name for s in j.spec] == ["138", "140"]
        assert j.spec[1].source_id == 2 and j.spec[0].slit_dec == -3.25 and j.spec[0].extraction_ystart == 2
        for ours, theirs in zip(m.spec, j.spec):
            for col in ours.spec_table.dtype.names:
                np.testing.assert_array_equal(np.asarray(theirs.spec_table[col]), ours.spec_table[col])
            assert theirs.spec_table.columns["FLUX"].unit == "Jy"
            assert theirs.spec_table.columns["SB_VAR_FLAT"].unit == "MJy^2 / sr^2"
        # and what stdatamodels writes opens in webbflow unchanged
        j.save(tmp_path / "j_x1d.fits")
    back = models.open(tmp_path / "j_x1d.fits")
    assert type(back).__name__ == "MultiSpecModel" and len(back.spec) == 2
    assert back.spec[1].meta["name"] == "140" and back.spec[1].units["WAVELENGTH"] == "um"
    np.testing.assert_array_equal(back.spec[1].spec_table["DQ"], m.spec[1].spec_table["DQ"])
    assert back.spec[1].spec_table["DQ"].dtype == np.uint32


def test_tso_and_combined_models_roundtrip(tmp_path):
    from stdatamodels.jwst import datamodels as dm

    t = new_tso_spec_table(4, 30)
    t["FLUX"] = np.arange(120.0).reshape(4, 30)
    t["INT_NUM"] = [1, 2, 3, 4]
    t["MJD-AVG"] = 60000.0 + np.arange(4) / 1e4
    tso = models.TSOMultiSpecModel()
    tso.spec = [Spectrum(t, {"name": "MIR_LRS-SLITLESS", "spectral_order": 1}, spectrum_units())]
    tso.save(tmp_path / "a_x1dints.fits")
    with dm.open(tmp_path / "a_x1dints.fits") as j:
        assert type(j).__name__ == "TSOMultiSpecModel"
        np.testing.assert_array_equal(j.spec[0].spec_table["FLUX"], t["FLUX"])
        np.testing.assert_array_equal(j.spec[0].spec_table["MJD-AVG"], t["MJD-AVG"])
    c = models.MultiCombinedSpecModel()
    ct = new_spec_table(10, columns=models.spectra.COMBINED_COLUMNS)
    ct["FLUX"] = 2.0
    c.spec = [Spectrum(ct, {"source_id": 7, "spectral_order": 1, "source_type": "POINT"})]
    c.save(tmp_path / "a_c1d.fits")
    with dm.open(tmp_path / "a_c1d.fits") as j:
        assert type(j).__name__ == "MultiCombinedSpecModel"
        assert j.spec[0].source_id == 7
        np.testing.assert_array_equal(j.spec[0].spec_table["FLUX"], 2.0)
    again = models.open(tmp_path / "a_c1d.fits")
    assert type(again).__name__ == "MultiCombinedSpecModel" and again.spec[0].meta["source_id"] == 7


def _tso_cube(nints=6, ny=40, nx=12, dispaxis=2, photom=True):
    rng = np.random.default_rng(3)
    cube = models.CubeModel((nints, ny, nx))
    cube.meta.exposure.type = "MIR_LRS-SLITLESS"
    cube.meta.visit.tsovisit = True
    cube.meta.exposure.nints = nints
    cube.meta.instrument.name = "MIRI"
    cube.meta.instrument.detector = "MIRIMAGE"
    cube.meta.wcsinfo.dispersion_direction = dispaxis
    cube.meta.target.source_type = "POINT"
    cube.meta.cal_step.photom = "COMPLETE" if photom else None
    cube.meta.photometry.pixelarea_steradians = 2.0e-13
    cube.data[:] = rng.normal(5.0, 0.1, cube.data.shape)
    cube.var_poisson[:] = 0.01
    cube.var_rnoise[:] = 0.02
    cube.var_flat[:] = 0.0
    cube.err[:] = np.sqrt(0.03)
    wl = np.linspace(5, 12, ny if dispaxis == 2 else nx)
    cube.wavelength = (np.tile(wl[:, None], (1, nx)) if dispaxis == 2 else np.tile(wl[None, :], (ny, 1))).astype(np.float32)
    cube.wavelength[:3] = np.nan if dispaxis == 2 else cube.wavelength[:3]
    rows = np.arange(nints) + 1
    it = np.zeros(nints, dtype=[("integration_number", "i4"), ("int_start_MJD_UTC", "f8"), ("int_mid_MJD_UTC", "f8"),
                                ("int_end_MJD_UTC", "f8"), ("int_start_BJD_TDB", "f8"), ("int_mid_BJD_TDB", "f8"),
                                ("int_end_BJD_TDB", "f8")])
    it["integration_number"] = rows
    it["int_mid_MJD_UTC"] = 60000.0 + rows * 1e-4
    it["int_mid_BJD_TDB"] = 60000.001 + rows * 1e-4
    cube.int_times = it
    return cube


def test_extract_1d_cube_sums_every_integration():
    cube = _tso_cube()
    cube.data[2, 10, 4] = np.nan  # a lost pixel: left out of the sum and of NPIXELS
    expect = np.nansum(cube.data.astype(np.float64), axis=2)  # (nints, ny) before any NaN matching
    res = run_step("extract_1d", cube, NA)
    assert res.status == "COMPLETE"
    out = res.model
    assert type(out).__name__ == "TSOMultiSpecModel" and len(out.spec) == 1
    t = out.spec[0].spec_table
    assert t.shape == (6,) and t["WAVELENGTH"].shape == (6, 37)  # 3 rows without wavelength dropped
    np.testing.assert_allclose(t["FLUX"], expect[:, 3:] * 2.0e-13 * 1e6, rtol=1e-12)
    assert t["NPIXELS"][2, 7] == 11 and t["NPIXELS"][0, 7] == 12
    np.testing.assert_allclose(t["SURF_BRIGHT"][0], expect[0, 3:] / 12, rtol=1e-12)
    np.testing.assert_allclose(t["FLUX_VAR_RNOISE"][0], 12 * 0.02 * (2.0e-13 * 1e6) ** 2, rtol=1e-6)
    np.testing.assert_array_equal(t["MJD-AVG"], cube.int_times["int_mid_MJD_UTC"])
    np.testing.assert_array_equal(t["INT_NUM"], np.arange(1, 7))
    meta = out.spec[0].meta
    assert (meta["extraction_xstart"], meta["extraction_xstop"], meta["extraction_ystart"], meta["extraction_ystop"]) == (1, 12, 4, 40)
    assert out.spec[0].units["FLUX"] == "Jy"
    assert out.meta.cal_step.extract_1d == "COMPLETE"
    assert out.meta.ref_file.extract1d.name == "N/A"


def test_extract_1d_reference_aperture_and_polynomial_background(tmp_path):
    """A JSON reference's extract_width and background regions: a sloped background is removed."""
    ny, nx = 30, 20
    img = models.SlitModel((ny, nx))
    img.meta.exposure.type = "NRS_FIXEDSLIT"
    img.meta.instrument.name = "NIRSPEC"
    img.meta.instrument.fixed_slit = "S200A1"
    img.meta.wcsinfo.dispersion_direction = 1
    y = np.arange(ny)[:, None]
    img.data[:] = (1.0 + 0.1 * y).astype(np.float32) * np.ones((1, nx), np.float32)
    img.data[13:17] += 10.0  # the source: 4 rows of 10 above the background
    img.var_rnoise[:] = 1.0
    img.wavelength = np.tile(np.linspace(1, 2, nx, dtype=np.float32), (ny, 1))
    ref = {"apertures": [{"id": "S200A1", "spectral_order": 1, "extract_width": 4, "ystart": 13, "ystop": 16,
                          "bkg_coeff": [[-0.5], [5.5], [23.5], [29.5]], "bkg_order": 1}]}
    path = tmp_path / "extract1d.json"
    path.write_text(json.dumps(ref))
    out = run_step("extract_1d", img, {"override_extract1d": str(path), "override_apcorr": "N/A"}).model
    t = out.spec[0].spec_table
    np.testing.assert_allclose(t["FLUX"], 40.0, rtol=1e-5)  # DN/s: no photom
    np.testing.assert_allclose(t["BACKGROUND"], 1.0 + 0.1 * 14.5, rtol=1e-5)
    np.testing.assert_allclose(t["NPIXELS"], 4.0)
    assert out.spec[0].meta["name"] == "S200A1"
    assert out.spec[0].units["FLUX"] == "DN/s"
    # the fit's read noise adds to the source's: more than the aperture's own 4 pixels' variance
    assert np.all(t["FLUX_VAR_RNOISE"] > 4.0)


def test_background_median_is_the_median_of_the_regions():
    img = np.tile(np.arange(10.0)[:, None], (1, 5))
    bg = np.zeros_like(img)
    bg[[0, 1, 2, 8, 9]] = 1
    prof = np.zeros_like(img)
    prof[4:6] = 1
    z = np.zeros_like(img)
    r = fit_background(img, z, z, z, prof, bg, "median", 0, 0)
    np.testing.assert_allclose(r["model"][0], 2.0)


def test_white_light_sums_each_integration():
    from webbflow.tasks.white_light import white_light_curve

    t = new_tso_spec_table(5, 8)
    t["WAVELENGTH"] = np.linspace(5, 12, 8)
    t["FLUX"] = np.arange(5.0)[:, None] + 1.0
    t["FLUX"][1, 3] = np.nan
    t["MJD-AVG"] = [1.0, 2.0, 3.0, 3.0, 5.0]  # a repeated time is left out
    t["TDB-MID"] = t["MJD-AVG"] + 0.5
    m = models.TSOMultiSpecModel()
    m.meta.instrument.name = "MIRI"
    m.spec = [Spectrum(t, {"spectral_order": 1, "detector": "MIRIMAGE"}, {"FLUX": "Jy"})]
    tab = white_light_curve(m, min_wave=None, max_wave=None)
    assert list(tab.colnames) == ["MJD_UTC", "BJD_TDB", "whitelight_flux"]
    np.testing.assert_array_equal(tab["MJD_UTC"], [1.0, 2.0, 3.0, 5.0])
    np.testing.assert_allclose(tab["whitelight_flux"].value, [8.0, 14.0, 24.0, 40.0])
    assert str(tab["whitelight_flux"].unit) == "Jy"
    tab = white_light_curve(m, min_wave=5.0, max_wave=6.0)  # the first two wavelengths only
    np.testing.assert_allclose(tab["whitelight_flux"].value, [2.0, 4.0, 6.0, 10.0])


def test_outlier_detection_tso_flags_a_spike():
    cube = _tso_cube(nints=8)
    cube.data[5, 20, 6] += 50.0
    res = run_step("outlier_detection", cube, {})
    out = res.model
    assert out.dq[5, 20, 6] & (1 | 16) == (1 | 16) and np.isnan(out.data[5, 20, 6])
    flagged = (out.dq & 16) != 0
    assert flagged.sum() == 1
    assert out.meta.cal_step.outlier_detection == "COMPLETE"


def test_outlier_detection_tso_rolling_median_matches_windows():
    from webbflow.tasks.outlier_detection_tso import running_median

    x = np.random.default_rng(0).normal(size=(9, 2, 3))
    for w in (3, 4):
        med = running_median(x, w)
        h = w // 2
        for i in range(9 - w + 1):
            np.testing.assert_array_equal(med[i + h], np.median(x[i:i + w], axis=0))
        np.testing.assert_array_equal(med[0], med[h])


def test_outlier_detection_tso_rolling_median_by_blocks_of_rows_is_the_same(monkeypatch):
    """The rolling median is taken a block of rows at a time (its sorting copy stays small): the
    same medians, bit for bit, as over the whole cube at once."""
    from numpy.lib.stride_tricks import sliding_window_view

    from webbflow.tasks import outlier_detection_tso as tso

    x = np.random.default_rng(1).normal(size=(30, 7, 5)).astype(np.float32)
    x[3, 2, 1] = x[10, 6, 4] = np.nan
    monkeypatch.setattr(tso, "MEDIAN_BLOCK_BYTES", 1)  # one row a block: seven blocks
    for w in (4, 5):
        med = tso.running_median(x, w)
        h = w // 2
        whole = np.median(sliding_window_view(x, w, axis=0), axis=-1)
        assert med[h: h + 30 - w + 1].tobytes() == whole.astype(med.dtype).tobytes()
        assert np.isnan(med[h: h + 30 - w + 1]).sum() == np.isnan(whole).sum() > 0


def test_box_extraction_of_a_stack_by_chunks_of_integrations_is_the_same(monkeypatch):
    """A long stack is box-extracted a few integrations at a time: the sums are those of the whole
    stack at once, bit for bit, for either dispersion direction and with NaNs in data and variances."""
    from webbflow.tasks.extract_1d import box

    rng = np.random.default_rng(3)
    data = rng.normal(10.0, 3.0, size=(11, 9, 6)).astype(np.float32)
    data[2, 4, 3] = data[7, 0, 0] = np.nan
    var = [rng.uniform(0.1, 2.0, size=data.shape).astype(np.float32) for _ in range(3)]
    var[1][5, 3, 2] = np.nan
    profile = np.zeros((9, 6))
    profile[2:7, 1:5] = 1.0
    profile[2, 1:5] = 0.25
    monkeypatch.setattr(box, "CHUNK_BYTES", 9 * 6 * 4 * 3)  # three integrations a chunk: four chunks
    for dispaxis in (1, 2):
        whole = box._box_extract(data, *var, profile, dispaxis)
        chunked = box.box_extract(data, *var, profile, dispaxis)
        assert whole.keys() == chunked.keys()
        for k in whole:
            assert whole[k].dtype == chunked[k].dtype and whole[k].tobytes() == chunked[k].tobytes(), k
        assert np.isfinite(whole["flux"]).sum() > 11 and whole["flux"].shape[0] == 11


def test_outlier_detection_tso_low_weight_mask_is_stcals_threshold():
    """The low-weight mask made an integration at a time equals the weights compared with stcal's
    sigma-clipped threshold, for thresholds below, between and above the 0/1 weights."""
    from stcal.outlier_detection.utils import compute_weight_threshold

    from webbflow.tasks.outlier_detection_tso import _low_weight, good_pixels

    rng = np.random.default_rng(0)
    cubes = (rng.choice(np.array([0, 1, 4, 2**20], np.uint32), size=(5, 6, 7)), np.ones((3, 4, 5), np.uint32))
    for maskpt in (0.7, 0.0, 1.0, 1.5, -1.0, float("nan")):
        for dq in cubes:
            for bits in ("~DO_NOT_USE+NON_SCIENCE", "0"):
                w = good_pixels(dq, bits)
                expected = w < compute_weight_threshold(w, maskpt)
                assert np.array_equal(_low_weight(dq, bits, maskpt), expected), (maskpt, bits)


def test_sharing_copy_is_read_only_and_nan_matching_copies_only_on_change():
    """``copy(share_arrays=True)`` shares the arrays read-only; match_nans_and_flags leaves a consistent
    shared array in place and replaces one it has to change with an updated copy."""
    from webbflow.tasks.flat_field import match_nans_and_flags

    cube = _tso_cube()
    cube.dq = np.zeros(cube.data.shape, np.uint32)
    match_nans_and_flags(cube)
    shared = cube.copy(share_arrays=True)
    assert np.shares_memory(shared.data, cube.data) and not shared.data.flags.writeable
    with pytest.raises(ValueError):
        shared.data[0, 0, 0] = 1.0
    match_nans_and_flags(shared)  # nothing to change: still the shared arrays
    assert np.shares_memory(shared.data, cube.data) and np.shares_memory(shared.dq, cube.dq)
    cube.err[1, 2, 3] = np.nan  # now the shared err is NaN where data and DQ are not
    match_nans_and_flags(shared)
    assert not np.shares_memory(shared.data, cube.data) and np.isnan(shared.data[1, 2, 3])
    assert shared.dq[1, 2, 3] & 1 and not cube.dq[1, 2, 3] & 1 and np.isfinite(cube.data[1, 2, 3])


def test_extract_1d_refuses_what_it_does_not_do():
    from webbflow.errors import UnsupportedModeError

    cube = _tso_cube()
    # use_source_posn where jwst cannot place the source (slitless, no WCS): the aperture stays put
    moved = extract(cube, {"extract1d": {"apertures": [{"id": "ANY"}]}}, Extract1dParams(use_source_posn=True))
    fixed = extract(cube, {"extract1d": {"apertures": [{"id": "ANY"}]}}, Extract1dParams(use_source_posn=False))
    np.testing.assert_array_equal(moved.spec[0].spec_table["FLUX"], fixed.spec[0].spec_table["FLUX"])
    cube.meta.exposure.type = "NIS_SOSS"
    # the ATOCA wavelength grid asked for where no ATOCA runs and none is given: refused in one line
    with pytest.raises(UnsupportedModeError, match="soss_wave_grid_out needs the ATOCA wavelength grid"):
        extract(cube, {}, Extract1dParams(soss_atoca=False, soss_wave_grid_out="grid.fits"))
    # a SOSS exposure through another filter: skipped, with jwst's error line, the input unchanged
    out, status = extract(cube, {}, Extract1dParams())
    assert status == "SKIPPED" and out is cube


# ---------------------------------------------------------------------------
# imaging TSO: tso_photometry and tso3's photometry branch, on a simulated star


def _imaging_tso_cube(path, n=6, size=64):
    from astropy import coordinates as coord
    from astropy import units as u
    from astropy.modeling import models as am
    from gwcs import coordinate_frames as cf
    from gwcs import wcs as gw

    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[:size, :size]
    cube = models.CubeModel((n, size, size))
    for i in range(n):  # a star drifting by a few hundredths of a pixel, with a small transit-like wiggle
        x0, y0 = 31.6 + 0.05 * i, 30.2 - 0.03 * i
        star = 500.0 * (1 + 0.01 * np.sin(i)) * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * 1.3**2))
        cube.data[i] = (star + 2.0 + rng.normal(0, 0.2, (size, size))).astype(np.float32)
    cube.err[:] = 0.2
    cube.dq[0, 5, 5] = 1
    m = cube.meta
    m.exposure.type, m.visit.tsovisit, m.exposure.nints = "NRC_TSIMAGE", True, n
    m.instrument.name, m.instrument.detector, m.instrument.channel = "NIRCAM", "NRCA3", "SHORT"
    m.instrument.filter, m.instrument.pupil = "F210M", "CLEAR"
    m.subarray.name, m.subarray.xstart, m.subarray.ystart, m.subarray.xsize, m.subarray.ysize = "SUB64P", 1, 1, size, size
    m.target.catalog_name, m.exposure.integration_time = "WASP-0", 2.0
    m.wcsinfo.siaf_xref_sci, m.wcsinfo.siaf_yref_sci = 33.0, 31.0
    m.bunit_data = m.bunit_err = "MJy/sr"
    m.photometry.pixelarea_steradians = 1.0e-13
    tr = ((am.Shift(-32) & am.Shift(-32)) | (am.Scale(1.7e-5) & am.Scale(1.7e-5)) | am.Pix2Sky_TAN()
          | am.RotateNative2Celestial(80.0, -30.0, 180.0))
    det = cf.Frame2D(name="detector", axes_order=(0, 1), unit=(u.pix, u.pix))
    sky = cf.CelestialFrame(name="world", reference_frame=coord.ICRS(), unit=(u.deg, u.deg))
    m.wcs = gw.WCS([(det, tr), (sky, None)])
    it = np.zeros(n, dtype=[("integration_number", "i4"), ("int_start_MJD_UTC", "f8"), ("int_mid_MJD_UTC", "f8"),
                            ("int_end_MJD_UTC", "f8"), ("int_start_BJD_TDB", "f8"), ("int_mid_BJD_TDB", "f8"),
                            ("int_end_BJD_TDB", "f8")])
    it["integration_number"] = np.arange(1, n + 1)
    it["int_mid_MJD_UTC"] = 60000.0 + np.arange(n) * 2.5e-5
    it["int_mid_BJD_TDB"] = it["int_mid_MJD_UTC"] + 0.0008
    cube.int_times = it
    cube.save(path)
    return path


def test_tso_photometry_finds_the_star(tmp_path):
    path = _imaging_tso_cube(tmp_path / "jw01366001001_04101_00001-seg001_nrca3_calints.fits")
    tab = run_step("tso_photometry", models.open(path), {}).model
    assert len(tab) == 6
    np.testing.assert_allclose(np.median(tab["centroid_x"].value), 31.72, atol=0.05)
    np.testing.assert_allclose(np.median(tab["centroid_y"].value), 30.13, atol=0.05)
    # background: 2 MJy/sr per pixel (2e-7 Jy per pixel) plus the star's wings in the 4-5 pixel annulus
    assert np.all((tab["annulus_mean"].value > 2.0e-7) & (tab["annulus_mean"].value < 5.0e-7))
    np.testing.assert_allclose(tab["aperture_bkg"].value, tab["annulus_mean"].value * np.pi * 9, rtol=1e-6)
    np.testing.assert_allclose(tab["net_aperture_sum"].value, (tab["aperture_sum"] - tab["aperture_bkg"]).value)
    assert str(tab["net_aperture_sum"].unit) == "Jy"
    np.testing.assert_array_equal(tab["MJD"], 60000.0 + np.arange(6) * 2.5e-5)


@pytest.mark.parity
def test_tso_photometry_matches_jwst(tmp_path, real_rules_cache):
    from jwst.tso_photometry import TSOPhotometryStep
    from parity import compare_arrays, jwst_offline, quiet_jwst

    path = _imaging_tso_cube(tmp_path / "jw01366001001_04101_00001-seg001_nrca3_calints.fits")
    gain = models.GainModel((64, 64))
    gain.data[:] = 2.0
    gain.meta.instrument.name, gain.meta.instrument.detector = "NIRCAM", "NRCA3"
    g = gain.meta.subarray
    g.name, g.xstart, g.ystart, g.xsize, g.ysize = "SUB64P", 1, 1, 64, 64
    gain.save(tmp_path / "gain.fits")
    with jwst_offline(real_rules_cache, "jwst_0541.pmap"), quiet_jwst():
        theirs = TSOPhotometryStep.call(str(path), override_gain=str(tmp_path / "gain.fits"))
    ours = run_step("tso_photometry", models.open(path), {}).model
    assert ours.colnames == theirs.colnames
    assert dict(ours.meta) == dict(theirs.meta)
    for c in theirs.colnames:
        assert str(getattr(ours[c], "unit", "")) == str(getattr(theirs[c], "unit", "")), c
        ag = compare_arrays(c, np.asarray(getattr(ours[c], "value", ours[c])), np.asarray(getattr(theirs[c], "value", theirs[c])))
        assert ag.fraction >= 0.999, str(ag)


def test_tso3_imaging_writes_the_photometry_catalogue(tmp_path):
    from astropy.table import Table

    from webbflow.flows.calwebb_tso3 import run_tso3

    member = _imaging_tso_cube(tmp_path / "jw01366001001_04101_00001-seg001_nrca3_calints.fits")
    asn = {"asn_type": "tso3", "asn_rule": "candidate_Asn_Lv3TSO", "asn_id": "o001", "asn_pool": "pool",
           "products": [{"name": "jw01366-o001_t001_nircam_f210m-clear-sub64p",
                         "members": [{"expname": member.name, "exptype": "science"}]}]}
    (tmp_path / "tso3_asn.json").write_text(json.dumps(asn))
    written = run_tso3(tmp_path / "tso3_asn.json", output_dir=tmp_path)
    assert sorted(p.split("/")[-1] for p in written) == [
        "jw01366-o001_t001_nircam_f210m-clear-sub64p_phot.ecsv", "jw01366001001_04101_00001-seg001_nrca3_o001_crfints.fits"]
    tab = Table.read(tmp_path / "jw01366-o001_t001_nircam_f210m-clear-sub64p_phot.ecsv")
    assert len(tab) == 6 and tab.meta["number_of_integrations"] == 6
    direct = run_step("tso_photometry", models.open(tmp_path / "jw01366001001_04101_00001-seg001_nrca3_o001_crfints.fits"), {}).model
    np.testing.assert_allclose(tab["net_aperture_sum"], direct["net_aperture_sum"].value, rtol=1e-12)


def test_wfss_multispec_roundtrip(tmp_path):
    """WFSS spectra: one table per order, one row per source with vector columns, string SOURCE_TYPE."""
    from stdatamodels.jwst import datamodels as dm

    n, nw = 3, 20
    vec = ["WAVELENGTH", "FLUX", "FLUX_ERROR", "FLUX_VAR_POISSON", "FLUX_VAR_RNOISE", "FLUX_VAR_FLAT", "SURF_BRIGHT",
           "SB_ERROR", "SB_VAR_POISSON", "SB_VAR_RNOISE", "SB_VAR_FLAT"]
    cols = ([("SOURCE_ID", "i4")] + [(c, "f8", (nw,)) for c in vec] + [("DQ", "u4", (nw,))]
            + [(c, "f8", (nw,)) for c in ("BACKGROUND", "BKGD_ERROR", "BKGD_VAR_POISSON", "BKGD_VAR_RNOISE",
                                           "BKGD_VAR_FLAT", "NPIXELS")]
            + [("N_ALONGDISP", "u4"), ("SOURCE_TYPE", "S20"), ("SOURCE_XPOS", "f8"), ("SOURCE_YPOS", "f8"),
               ("SOURCE_RA", "f8"), ("SOURCE_DEC", "f8"), ("EXTRACT2D_XSTART", "u4"), ("EXTRACT2D_YSTART", "u4"),
               ("EXTRACT2D_XSTOP", "u4"), ("EXTRACT2D_YSTOP", "u4")])
    t = np.zeros(n, dtype=cols)
    t["SOURCE_ID"] = [4, 9, 12]
    t["FLUX"] = np.arange(n * nw).reshape(n, nw)
    t["SOURCE_TYPE"] = [b"POINT", b"EXTENDED", b"POINT"]
    t["EXTRACT2D_XSTOP"] = 100
    m = models.WFSSMultiSpecModel()
    m.meta.exposure.type = "NIS_WFSS"
    m.spec = [Spectrum(t, {"spectral_order": 1, "dispersion_direction": 2, "filename": "a_cal.fits", "group_id": "x"},
                       spectrum_units())]
    m.save(tmp_path / "w_x1d.fits")
    with dm.open(tmp_path / "w_x1d.fits") as j:
        assert type(j).__name__ == "WFSSMultiSpecModel"
        assert j.spec[0].spectral_order == 1 and j.spec[0].group_id == "x"
        assert list(j.spec[0].spec_table["SOURCE_TYPE"]) == ["POINT", "EXTENDED", "POINT"]
        np.testing.assert_array_equal(j.spec[0].spec_table["FLUX"], t["FLUX"])
        np.testing.assert_array_equal(j.spec[0].spec_table["EXTRACT2D_XSTOP"], 100)
        j.save(tmp_path / "j_x1d.fits")
    back = models.open(tmp_path / "j_x1d.fits")
    assert type(back).__name__ == "WFSSMultiSpecModel"
    assert list(back.spec[0].spec_table["SOURCE_TYPE"]) == ["POINT", "EXTENDED", "POINT"]
    assert back.spec[0].meta["filename"] == "a_cal.fits"


def test_extract_1d_aperture_off_the_data_is_one_clear_error(tmp_path):
    from webbflow.errors import InputFileError

    cube = _tso_cube()
    cube.meta.filename = "jw00623_calints.fits"
    ref = {"apertures": [{"id": "ANY", "xstart": 200, "xstop": 210}]}
    with pytest.raises(InputFileError, match=r"jw00623_calints.fits: the extraction aperture \(x 200..210.*lies off the data \(12 x 40"):
        extract(cube, {"extract1d": ref}, Extract1dParams())
