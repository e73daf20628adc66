"""Slitless grisms (NIRCam WFSS, NIRCam grism time series, NIRISS WFSS) against jwst 3.0.

- The real NIRCam specwcs files (module A GRISMR/GRISMC, the DHS one from jwst's own tests) load in
  webbflow as the same transforms stdatamodels gives jwst, and evaluate identically.
- assign_wcs on a NRC_WFSS rate (both grisms), a NRC_TSGRISM rateints and a NIS_WFSS rate (a
  synthetic specwcs in jwst's form) builds jwst's WCS: the same frames, world coordinates and
  wavelengths (and back) per order, DISPAXIS/SPECSYS, and for WFSS the same SIP keywords.
- extract_2d gives jwst's cutouts from a catalogue: the same source ids, orders, xstart, ystart,
  xsize, ysize, pixels and wavelengths; the TSGRISM cutout and its photom match jwst's.
- spec2 on a WFSS level-2 association (science + sourcecat/segmap/direct_image) writes the cal
  product jwst's steps make (WFSS background scaled with the sources masked, flat_field, extract_2d,
  srctype, photom per order with the real NIRCam WFSS photom); spec2 on a TSGRISM rateints writes
  calints and x1dints.
Each test makes its own small inputs: full-frame WFSS images (2048^2) with a handful of sources.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_DATA
from webbflow import models
from webbflow.refs import synthetic as syn
from webbflow.tasks import load_all
from webbflow.tasks.base import run_step

load_all()

REAL_NIRCAM = SHARED_DATA / "real-refs" / "nircam"
SPECWCS = {"GRISMR": REAL_NIRCAM / "jwst_nircam_specwcs_0010.asdf", "GRISMC": REAL_NIRCAM / "jwst_nircam_specwcs_0011.asdf"}
DHS_SPECWCS = REAL_NIRCAM / "nircam_nrca1_specwcs.asdf"
ASSIGN_WCS_NA = ("regions", "wavelengthrange", "camera", "chromcorr", "collimator", "disperser", "fore",
                 "fpa", "msa", "ote", "ifupost", "ifufore", "ifuslicer")


def _rate(exp_type="NRC_WFSS", pupil="GRISMR", filt="F444W", subarray="FULL", nints=None, seed=1):
    """A NIRCam LW (NRCALONG) rate (or rateints with ``nints``) with SIAF pointing keywords."""
    det = "NRCALONG"
    if subarray == "FULL":
        ap = syn._siaf("NIRCam")["NRCA5_FULL"]
        xstart, ystart, nx, ny = 1, 1, 2048, 2048
    else:  # SUBGRISM64/128/256: the bottom rows of the detector, the F444W time-series aperture
        ap = syn._siaf("NIRCam")[f"NRCA5_GRISM{subarray[len('SUBGRISM'):]}_{filt}"]
        xstart, ystart, nx, ny = 1, 1, 2048, int(subarray[len("SUBGRISM"):])
    rng = np.random.default_rng(seed)
    shape = (ny, nx) if nints is None else (nints, ny, nx)
    data = (0.3 + rng.normal(0, 0.01, shape)).astype(np.float32)
    m = models.ImageModel(data=data) if nints is None else models.CubeModel(data=data)
    m.var_poisson = np.abs(data) / 400.0 + np.float32(1e-5)
    m.var_rnoise = np.full(shape, 1e-4, np.float32)
    m.err = np.sqrt(m.var_poisson + m.var_rnoise)
    m.dq = np.zeros(shape, np.uint32)
    meta = m.meta
    meta.telescope = "JWST"
    meta.bunit_data = meta.bunit_err = "DN/s"
    ins = meta.instrument
    ins.name, ins.detector, ins.module, ins.channel = "NIRCAM", det, "A", "LONG"
    ins.filter, ins.pupil = filt, pupil
    ex = meta.exposure
    ex.type, ex.readpatt = exp_type, "RAPID"
    ex.nints, ex.ngroups, ex.nframes, ex.groupgap = nints or 1, 3, 1, 0
    ex.start_time, ex.mid_time, ex.end_time = 59800.0, 59800.0005, 59800.001
    s = meta.subarray
    s.name, s.xstart, s.ystart, s.xsize, s.ysize = subarray, xstart, ystart, nx, ny
    s.fastaxis, s.slowaxis = -1, 2
    o = meta.observation
    o.date, o.time = "2022-08-01", "12:00:00.000"
    w = meta.wcsinfo
    w.v2_ref, w.v3_ref = float(ap.V2Ref), float(ap.V3Ref)
    w.v3yangle, w.vparity = float(ap.V3IdlYAngle), int(ap.VIdlParity)
    w.ra_ref, w.dec_ref, w.roll_ref = 53.16, -27.78, 47.3
    w.crpix1, w.crpix2 = float(ap.XSciRef), float(ap.YSciRef)
    w.siaf_xref_sci, w.siaf_yref_sci = float(ap.XSciRef), float(ap.YSciRef)
    w.crval1, w.crval2 = 53.16, -27.78
    w.ctype1, w.ctype2, w.cunit1, w.cunit2 = "RA---TAN", "DEC--TAN", "deg", "deg"
    w.cdelt1, w.cdelt2 = ap.XSciScale / 3600, ap.YSciScale / 3600
    rel = math.radians(47.3) - w.vparity * math.radians(w.v3yangle)
    w.pc1_1, w.pc1_2 = w.vparity * math.cos(rel), math.sin(rel)
    w.pc2_1, w.pc2_2 = -w.vparity * math.sin(rel), math.cos(rel)
    w.velosys = -12345.6
    meta.velocity_aberration.scale_factor = 1.00003
    meta.aperture.name = ap.AperName
    return m


def _wcs_refs(model, folder: Path, pupil="GRISMR"):
    """Synthetic distortion + filteroffset (with a row for this grism) for the exposure's detector, saved."""
    from webbflow.refs.synthetic import ExposureConfig

    ny, nx = 2048, 2048
    cfg = ExposureConfig(instrument="NIRCAM", detector="NRCALONG", exp_type="NRC_IMAGE", subarray="FULL",
                         xstart=1, ystart=1, xsize=nx, ysize=ny, filter="F444W", pupil="CLEAR")
    refs = syn.reference_set(cfg, reftypes=["distortion", "filteroffset"])
    fo = refs["filteroffset"]
    fo.set_tree(filters=list(fo.filters) + [{"filter": "F444W", "pupil": pupil, "column_offset": 0.31, "row_offset": -0.27}])
    out = {k: Path(v.save(folder / f"ref_{k}.asdf")) for k, v in refs.items()}
    out["specwcs"] = SPECWCS.get(pupil, SPECWCS["GRISMR"])
    return out


def _jwst_assign_wcs(path, refs, cache, **kw):
    from parity import jwst_offline, quiet_jwst

    from jwst.assign_wcs import AssignWcsStep

    with jwst_offline(cache, "jwst_0541.pmap"), quiet_jwst(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AssignWcsStep.call(str(path), override_distortion=str(refs["distortion"]),
                                  override_filteroffset=str(refs["filteroffset"]), override_specwcs=str(refs["specwcs"]),
                                  **{f"override_{r}": "N/A" for r in ASSIGN_WCS_NA}, **kw)


# ---------------------------------------------------------------------------
# the specwcs references


@pytest.mark.real
@pytest.mark.parametrize("path", [SPECWCS["GRISMR"], SPECWCS["GRISMC"], DHS_SPECWCS], ids=["GRISMR", "GRISMC", "DHS"])
def test_real_nircam_specwcs_loads_and_evaluates_as_in_stdatamodels(path):
    from stdatamodels.jwst.datamodels import NIRCAMGrismModel

    ours = models.open(path)
    assert type(ours).__name__ == "NIRCAMGrismModel"
    assert ours.meta.instrument.name == "NIRCAM" and ours.meta.reftype.lower() == "specwcs"
    t = np.linspace(-0.2, 1.2, 57)
    x0 = np.linspace(10, 2000, 57)
    y0 = np.linspace(2000, 15, 57)
    with NIRCAMGrismModel(str(path)) as theirs:
        assert list(ours.orders) == list(theirs.orders.instance)
        names = [n for n in ("displ", "dispx", "dispy", "invdispl", "invdispx", "invdispy") if getattr(theirs, n) is not None]
        assert {"displ", "dispx", "dispy", "invdispl"} <= set(names)
        n_checked = 0
        for name in names:
            mine, jw = ours._asdf_extra.get(name), getattr(theirs, name).instance
            if mine is None:  # absent from the file: stdatamodels gives an empty default
                assert not jw, name
                continue
            assert len(mine) == len(jw)
            pairs = list(zip(mine, jw))
            while pairs:
                a, b = pairs.pop()
                assert type(a) is type(b)
                if isinstance(a, list):  # the DHS file: one list of transforms per stripe
                    assert len(a) == len(b)
                    pairs.extend(zip(a, b))
                    continue
                args = [t] if a.n_inputs == 1 else [x0, y0, t][: a.n_inputs]
                np.testing.assert_array_equal(np.asarray(a(*args)), np.asarray(b(*args)))
                n_checked += 1
        if path == DHS_SPECWCS:
            assert list(ours.stripes) == list(theirs.stripes.instance)
            assert list(ours.fieldpoints) == list(theirs.fieldpoints.instance)
    assert n_checked >= 4


# ---------------------------------------------------------------------------
# assign_wcs


def _check_world(ours_wcs, jwst_wcs, inputs, tol_deg=1e-9, tol_um=1e-9):
    a, b = ours_wcs(*inputs), jwst_wcs(*inputs)
    assert len(a) == len(b)
    for va, vb in zip(a, b):
        va, vb = np.asarray(va, float), np.asarray(vb, float)
        assert np.array_equal(np.isnan(va), np.isnan(vb))
        ok = ~np.isnan(va)
        assert ok.sum() > 0
        np.testing.assert_allclose(va[ok], vb[ok], rtol=0, atol=tol_deg)
    return a


@pytest.mark.parity
@pytest.mark.real
@pytest.mark.parametrize("pupil", ["GRISMR", "GRISMC"])
def test_assign_wcs_nrc_wfss_matches_jwst(pupil, tmp_path, real_rules_cache):
    m = _rate(pupil=pupil)
    path = m.save(tmp_path / "jw01234001001_01101_00001_nrcalong_rate.fits")
    refs = _wcs_refs(m, tmp_path, pupil)
    ours = run_step("assign_wcs", models.open(path), {}, references=refs).model
    theirs = _jwst_assign_wcs(path, refs, real_rules_cache, sip_approx=False)

    assert ours.meta.cal_step.assign_wcs == theirs.meta.cal_step.assign_wcs == "COMPLETE"
    assert ours.meta.wcsinfo.dispersion_direction == theirs.meta.wcsinfo.dispersion_direction == {"GRISMR": 1, "GRISMC": 2}[pupil]
    assert ours.meta.wcsinfo.specsys == theirs.meta.wcsinfo.specsys == "BARYCENT"
    assert ours.meta.wcs.available_frames == theirs.meta.wcs.available_frames
    # grism pixels (x, y) of sources at direct-image positions (x0, y0), both orders
    rng = np.random.default_rng(3)
    x0, y0 = rng.uniform(100, 1950, 40), rng.uniform(100, 1950, 40)
    dx = rng.uniform(-300, 300, 40)
    x, y = (x0 + dx, y0 + 2.0) if pupil == "GRISMR" else (x0 + 2.0, y0 + dx)
    for order in (1, 2):
        ra, dec, lam, o = _check_world(ours.meta.wcs, theirs.meta.wcs, (x, y, x0, y0, np.full(40, order)))
        # LW grism: 2.4-5.0 um in order 1, half that in order 2
        assert np.all((np.asarray(lam) * order > 2.3) & (np.asarray(lam) * order < 5.1))
        # backward: sky position + wavelength -> grism pixel
        back_o = ours.meta.wcs.backward_transform(ra, dec, lam, o)
        back_j = theirs.meta.wcs.backward_transform(ra, dec, lam, o)
        for a, b in zip(back_o, back_j):
            np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=0, atol=1e-6)
        # the pixel comes back along the dispersion (across it, the trace fixes the position)
        along = 0 if pupil == "GRISMR" else 1
        np.testing.assert_allclose(back_o[along], (x, y)[along], atol=0.02)
    # the grism's trace: 4 um in order 1 lands where jwst says, for a source at the centre
    d2g_o = ours.meta.wcs.get_transform("detector", "grism_detector")
    d2g_j = theirs.meta.wcs.get_transform("detector", "grism_detector")
    np.testing.assert_allclose(d2g_o(1024.0, 1024.0, 4.0, 1), d2g_j(1024.0, 1024.0, 4.0, 1), atol=1e-9)


@pytest.mark.parity
@pytest.mark.real
def test_assign_wcs_nrc_wfss_sip_keywords_match_jwst(tmp_path, real_rules_cache):
    """WFSS headers carry the SIP approximation of the imaging WCS, as jwst fits it."""
    from gwcs import WCS
    from stdatamodels.jwst import datamodels as dm

    from jwst.assign_wcs import nircam
    from jwst.assign_wcs.util import update_fits_wcsinfo, wcs_bbox_from_shape

    m = _rate()
    path = m.save(tmp_path / "jw01234001001_01101_00001_nrcalong_rate.fits")
    refs = _wcs_refs(m, tmp_path)
    ours = run_step("assign_wcs", models.open(path), {}, references=refs).model
    # jwst's AssignWcsStep fits that approximation with the references CRDS selects; give its function ours
    theirs = dm.ImageModel(str(path))
    imwcs = WCS(nircam.imaging(theirs, {"distortion": str(refs["distortion"]), "filteroffset": str(refs["filteroffset"])}))
    imwcs.bounding_box = wcs_bbox_from_shape(theirs.data.shape)
    update_fits_wcsinfo(theirs, imwcs=imwcs, bounding_box=None, max_pix_error=0.01, degree=None,
                        max_inv_pix_error=0.01, inv_degree=None, npoints=12)
    jw = {k: v for k, v in theirs.meta.wcsinfo.instance.items()}
    keys = [k for k in jw if k.startswith(("a_", "b_", "ap_", "bp_", "crpix", "crval", "cd", "ctype"))]
    assert "a_order" in keys and "ap_order" in keys
    for k in keys:
        v = getattr(ours.meta.wcsinfo, k)
        if isinstance(jw[k], str):
            assert v == jw[k], k
        else:
            assert v == pytest.approx(jw[k], rel=1e-7, abs=1e-13), k
    for gone in ("pc1_1", "cdelt1"):
        assert getattr(ours.meta.wcsinfo, gone, None) is None


@pytest.mark.parity
@pytest.mark.real
def test_assign_wcs_nrc_tsgrism_matches_jwst(tmp_path, real_rules_cache):
    m = _rate(exp_type="NRC_TSGRISM", subarray="SUBGRISM64", nints=2)
    path = m.save(tmp_path / "jw01234001001_01101_00001_nrcalong_rateints.fits")
    refs = _wcs_refs(m, tmp_path)
    ours = run_step("assign_wcs", models.open(path), {}, references=refs).model
    theirs = _jwst_assign_wcs(path, refs, real_rules_cache)

    assert ours.meta.wcsinfo.dispersion_direction == theirs.meta.wcsinfo.dispersion_direction == 1
    assert ours.meta.wcs.available_frames == theirs.meta.wcs.available_frames
    ny, nx = m.data.shape[-2:]
    y, x = np.mgrid[0:ny:7, 0:nx:97]
    x, y = x.ravel().astype(float), y.ravel().astype(float)
    for order in (1, 2):
        ra, dec, lam, o = _check_world(ours.meta.wcs, theirs.meta.wcs, (x, y, np.full(x.size, order)))
    # the source at the reference point: its RA/Dec are the pointing's
    assert np.allclose(ra, 53.16, atol=2e-5) and np.allclose(dec, -27.78, atol=2e-5)


# ---------------------------------------------------------------------------
# extract_2d


def _catalog(model, path: Path, sources):
    """An image3-like source catalogue (ECSV) for sources at direct-image pixels (x, y, half size, abmag, extended)."""
    from astropy.coordinates import SkyCoord
    from astropy.table import QTable

    d2w = model.meta.wcs.get_transform("detector", "world")

    def sky(x, y):
        ra, dec, _, _ = d2w(np.asarray(x, float), np.asarray(y, float), 4.0, 1)
        return SkyCoord(ra, dec, unit="deg")

    x = np.array([s[0] for s in sources], float)
    y = np.array([s[1] for s in sources], float)
    r = np.array([s[2] for s in sources], float)
    t = QTable()
    t["label"] = np.arange(1, len(sources) + 1, dtype=np.int32)
    t["xcentroid"], t["ycentroid"] = x, y
    t["sky_centroid"] = sky(x, y)
    t["isophotal_abmag"] = np.array([s[3] for s in sources], float)
    t["isophotal_abmag_err"] = np.full(len(sources), 0.01)
    t["sky_bbox_ll"], t["sky_bbox_lr"] = sky(x - r, y - r), sky(x + r, y - r)
    t["sky_bbox_ul"], t["sky_bbox_ur"] = sky(x - r, y + r), sky(x + r, y + r)
    t["is_extended"] = np.array([s[4] for s in sources], bool)
    t.write(str(path), format="ascii.ecsv", overwrite=True)
    return path


# direct-image sources: (x, y, bbox half size, AB mag, extended); the last lie near or off the edges
WFSS_SOURCES = [
    (1000.3, 1020.7, 6, 21.0, False), (420.0, 300.5, 9, 22.5, True), (1700.2, 1500.9, 5, 20.1, False),
    (60.0, 1900.0, 7, 23.2, True), (1990.0, 80.0, 5, 22.0, False), (2030.0, 1000.0, 4, 19.5, False),
    (1000.0, 2040.0, 6, 24.0, True), (300.0, 1000.0, 5, 25.5, False),
]


@pytest.mark.parity
@pytest.mark.real
@pytest.mark.parametrize("pupil", ["GRISMR"])  # GRISMC's WCS is checked above; its cutouts cost as much again
def test_extract_2d_nrc_wfss_matches_jwst(pupil, tmp_path, real_rules_cache):
    """The same sources, orders and cutouts (xstart, ystart, xsize, ysize), the same pixels and wavelengths."""
    from stdatamodels.jwst import datamodels as dm

    from jwst.extract_2d import Extract2dStep
    from parity import jwst_offline, quiet_jwst
    from webbflow.refs import synthetic_grism as sg

    m = _rate(pupil=pupil)
    m.data += np.random.default_rng(5).normal(0, 0.05, m.data.shape).astype(np.float32)
    path = m.save(tmp_path / "jw01234001001_01101_00001_nrcalong_rate.fits")
    refs = _wcs_refs(m, tmp_path, pupil)
    refs["wavelengthrange"] = Path(sg.wavelengthrange("NIRCAM", "NRC_WFSS").save(tmp_path / "ref_wavelengthrange.asdf"))
    ours = run_step("assign_wcs", models.open(path), {}, references=refs).model
    cat = _catalog(ours, tmp_path / "jw01234-o001_t001_nircam_clear-f444w_cat.ecsv", WFSS_SOURCES)
    ours.meta.source_catalog = str(cat)
    # order 1 only (extract_orders; the default orders from the reference are exercised by the spec2 test)
    params = {"wfss_mmag_extract": 25.0, "extract_orders": [1]}
    out = run_step("extract_2d", ours, params, references={"wavelengthrange": refs["wavelengthrange"]}).model

    theirs = _jwst_assign_wcs(path, refs, real_rules_cache, sip_approx=False)
    theirs.meta.source_catalog = str(cat)
    with jwst_offline(real_rules_cache, "jwst_0541.pmap"), quiet_jwst(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        jout = Extract2dStep.call(theirs, override_wavelengthrange=str(refs["wavelengthrange"]), wfss_mmag_extract=25.0,
                                  extract_orders=[1])

    assert out.meta.cal_step.extract_2d == jout.meta.cal_step.extract_2d == "COMPLETE"
    key = lambda s: (s.name, s.meta.wcsinfo.spectral_order, s.xstart, s.ystart, s.xsize, s.ysize)  # noqa: E731
    mine = [key(s) for s in out.slits]
    print(f"\n{pupil}: {len(mine)} cutouts: {mine}")
    assert mine == [key(s) for s in jout.slits]
    # the faint source (25.5) is cut by wfss_mmag_extract; those off the detector lose their orders
    assert "8" not in {s.name for s in out.slits} and len({s.name for s in out.slits}) >= 4
    assert {s.meta.wcsinfo.spectral_order for s in out.slits} == {1}
    for a, b in zip(out.slits, jout.slits):
        for arr in ("data", "err", "dq", "var_poisson", "var_rnoise", "var_flat"):
            assert a.has(arr) == (getattr(b, arr) is not None), arr
            if a.has(arr):
                np.testing.assert_array_equal(getattr(a, arr), getattr(b, arr), err_msg=arr)
        np.testing.assert_allclose(a.wavelength, b.wavelength, rtol=1e-6, equal_nan=True)
        for attr in ("source_id", "source_xpos", "source_ypos", "source_ra", "source_dec", "is_extended"):
            assert getattr(a, attr) == pytest.approx(getattr(b, attr), rel=1e-9), attr
        assert a.meta.wcsinfo.dispersion_direction == b.meta.wcsinfo.dispersion_direction
        # the slit WCS: grism_slit pixels -> sky and wavelength
        ys, xs = np.mgrid[0 : a.data.shape[0] : 3, 0 : a.data.shape[1] : 11]
        for va, vb in zip(a.meta.wcs(xs, ys), b.meta.wcs(xs, ys)):
            np.testing.assert_allclose(np.asarray(va, float), np.asarray(vb, float), rtol=0, atol=1e-9, equal_nan=True)
    # the cutouts share one copy of the exposure's WCS steps (memory: one exposure WCS, however many cutouts)
    shared = {id(s.meta.wcs.pipeline[1].transform) for s in out.slits}
    assert len(shared) == 1 and ours.meta.wcs.pipeline[0].transform is not out.slits[0].meta.wcs.pipeline[1].transform
    # the product opens in stdatamodels as a MultiSlitModel with the same slits, whose WCSs (the shared
    # transforms written once, aliased by the later cutouts) evaluate as jwst's
    saved = out.save(tmp_path / "ours_extract_2d.fits")
    with dm.open(saved) as back:
        assert isinstance(back, dm.MultiSlitModel) and len(back.slits) == len(jout.slits)
        assert [(s.name, s.xstart, s.ysize) for s in back.slits] == [(s.name, s.xstart, s.ysize) for s in jout.slits]
        for a, b in zip(back.slits, jout.slits):
            ys, xs = np.mgrid[0 : a.data.shape[0] : 3, 0 : a.data.shape[1] : 11]
            for va, vb in zip(a.meta.wcs(xs, ys), b.meta.wcs(xs, ys)):
                np.testing.assert_allclose(np.asarray(va, float), np.asarray(vb, float), rtol=0, atol=1e-9, equal_nan=True)


@pytest.mark.parity
@pytest.mark.real
def test_extract_2d_nrc_tsgrism_matches_jwst(tmp_path, real_rules_cache, monkeypatch):
    """The time-series cutout: full rows, the source (moved by the dither offset) on row 34, per integration;
    then photom on it."""
    from stdatamodels.jwst import datamodels as dm

    from jwst.extract_2d import Extract2dStep
    from parity import jwst_offline, quiet_jwst
    from webbflow.refs import synthetic_grism as sg

    m = _rate(exp_type="NRC_TSGRISM", subarray="SUBGRISM128", nints=3)
    m.meta.dither.x_offset, m.meta.dither.y_offset = 1.5, 0.0
    m.meta.target.source_type = "POINT"
    path = m.save(tmp_path / "jw01234001001_01101_00001_nrcalong_rateints.fits")
    refs = _wcs_refs(m, tmp_path)
    refs["wavelengthrange"] = Path(sg.wavelengthrange("NIRCAM", "NRC_TSGRISM").save(tmp_path / "ref_wavelengthrange.asdf"))
    ours = run_step("assign_wcs", models.open(path), {}, references=refs).model
    out = run_step("extract_2d", ours, {}, references={"wavelengthrange": refs["wavelengthrange"]}).model
    theirs = _jwst_assign_wcs(path, refs, real_rules_cache)
    with jwst_offline(real_rules_cache, "jwst_0541.pmap"), quiet_jwst(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        jout = Extract2dStep.call(theirs, override_wavelengthrange=str(refs["wavelengthrange"]))

    assert type(out).__name__ == type(jout).__name__ == "SlitModel"
    assert out.meta.cal_step.extract_2d == jout.meta.cal_step.extract_2d == "COMPLETE"
    assert (out.xstart, out.ystart, out.xsize, out.ysize) == (jout.xstart, jout.ystart, jout.xsize, jout.ysize)
    assert out.data.shape == jout.data.shape == (3, 64, 2048)
    for arr in ("data", "err", "dq", "var_poisson", "var_rnoise"):
        np.testing.assert_array_equal(getattr(out, arr), getattr(jout, arr), err_msg=arr)
    np.testing.assert_allclose(out.wavelength, jout.wavelength, rtol=1e-6, equal_nan=True)
    assert out.source_xpos == pytest.approx(jout.source_xpos, abs=1e-9)
    assert out.meta.wcsinfo.siaf_xref_sci == pytest.approx(jout.meta.wcsinfo.siaf_xref_sci, abs=1e-9)
    assert out.meta.wcsinfo.siaf_yref_sci == jout.meta.wcsinfo.siaf_yref_sci == 34
    assert out.meta.wcsinfo.spectral_order == jout.meta.wcsinfo.spectral_order == 1
    assert (out.name, out.source_id, out.source_type) == (jout.name, jout.source_id, jout.source_type)
    # the dither offset moves the source off the reference point along the rows
    assert abs(out.source_xpos - (m.meta.wcsinfo.siaf_xref_sci - 1)) > 5

    # photom: the real NIRCam grism photom's GRISMR order-1 row over every integration
    from jwst.photom import PhotomStep
    from webbflow.refs.synthetic import ExposureConfig

    cfg = ExposureConfig(instrument="NIRCAM", detector="NRCALONG", exp_type="NRC_IMAGE", subarray="FULL",
                         xstart=1, ystart=1, xsize=2048, ysize=2048, filter="F444W", pupil="CLEAR")
    area = Path(syn.reference_set(cfg, reftypes=["area"])["area"].save(tmp_path / "ref_area.fits"))
    photom_ref = REAL_NIRCAM / "jwst_nircam_photom_0064.fits"
    out = run_step("photom", out, {}, references={"photom": photom_ref, "area": area}).model
    with jwst_offline(real_rules_cache, "jwst_0541.pmap"), quiet_jwst(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        jout = PhotomStep.call(jout, override_photom=str(photom_ref), override_area=str(area))
    assert out.meta.cal_step.photom == jout.meta.cal_step.photom == "COMPLETE"
    for arr in ("data", "err", "var_poisson", "var_rnoise"):
        np.testing.assert_allclose(getattr(out, arr), getattr(jout, arr), rtol=1e-5, atol=0, equal_nan=True, err_msg=arr)
    np.testing.assert_array_equal(out.dq, jout.dq)
    np.testing.assert_array_equal(out.area, jout.area)
    assert out.meta.bunit_data == jout.meta.bunit_data == "MJy/sr"
    for k in ("conversion_megajanskys", "pixelarea_steradians", "pixelarea_arcsecsq"):
        assert getattr(out.meta.photometry, k) == pytest.approx(getattr(jout.meta.photometry, k), rel=1e-6), k
    good = (out.dq & 1) == 0
    assert good.mean() > 0.2 and np.all(np.isfinite(out.data[good])) and np.all(out.data[good] != 0)

    # spec2's NRC_TSGRISM branch on the same rateints gives these calints, and an x1dints per integration
    from webbflow.flows.calwebb_spec2 import spec2

    monkeypatch.setenv("CRDS_PATH", str(real_rules_cache))
    monkeypatch.setenv("CRDS_CONTEXT", "jwst_0541.pmap")
    steps = {"assign_wcs": {"override_distortion": str(refs["distortion"]), "override_filteroffset": str(refs["filteroffset"]),
                            "override_specwcs": str(refs["specwcs"])},
             "flat_field": {"skip": True}, "extract_2d": {"override_wavelengthrange": str(refs["wavelengthrange"])},
             "photom": {"override_photom": str(photom_ref), "override_area": str(area)},
             "extract_1d": {"override_extract1d": "N/A", "override_apcorr": "N/A"}}
    flow_out = tmp_path / "spec2"
    flow_out.mkdir()
    spec2(str(path), steps=steps, output_dir=str(flow_out))
    with dm.open(flow_out / "jw01234001001_01101_00001_nrcalong_calints.fits") as cal:
        assert isinstance(cal, dm.SlitModel) and cal.meta.cal_step.bkg_subtract == "SKIPPED"
        np.testing.assert_allclose(cal.data, out.data, rtol=1e-6, equal_nan=True)
    with dm.open(flow_out / "jw01234001001_01101_00001_nrcalong_x1dints.fits") as x1d:
        assert isinstance(x1d, dm.TSOMultiSpecModel) and len(x1d.spec[0].spec_table) == 3


# ---------------------------------------------------------------------------
# spec2 on a WFSS association


@pytest.mark.parity
@pytest.mark.real
def test_spec2_nrc_wfss_cal_matches_jwst_step_chain(tmp_path, real_rules_cache, monkeypatch):
    """spec2 on a level-2 WFSS association (science + the direct image's catalogue, segmentation map and
    i2d): the cal product holds jwst's slits, pixels and keywords (jwst's steps run in its pipeline's order)."""
    import json

    from stdatamodels.jwst import datamodels as dm

    from jwst.assign_wcs import AssignWcsStep
    from jwst.background import BackgroundStep
    from jwst.extract_2d import Extract2dStep
    from jwst.flatfield import FlatFieldStep
    from jwst.photom import PhotomStep
    from jwst.srctype import SourceTypeStep
    from parity import jwst_offline, quiet_jwst
    from webbflow.flows.calwebb_spec2 import spec2
    from webbflow.refs import synthetic_grism as sg
    from webbflow.refs.synthetic import ExposureConfig

    folder = tmp_path / "asn"
    folder.mkdir()
    m = _rate(pupil="GRISMR")
    bkg = sg.wfss_background("NIRCAM", "NRC_WFSS", "NRCALONG", "F444W", "GRISMR")
    m.data = (m.data - 0.3 + 0.5 * bkg.data).astype(np.float32)
    for x0, y0, *_ in WFSS_SOURCES[:2]:  # bright spectra along their traces, which the mask keeps out of the scale
        m.data[int(y0) - 1 : int(y0) + 4, int(x0) : int(x0) + 1000] += 40.0
    m.meta.target.source_type = None
    rate = Path(m.save(folder / "jw01234001001_01101_00001_nrcalong_rate.fits"))
    refs = _wcs_refs(m, tmp_path, "GRISMR")
    refs["wavelengthrange"] = Path(sg.wavelengthrange("NIRCAM", "NRC_WFSS").save(tmp_path / "ref_wavelengthrange.asdf"))
    refs["bkg"] = Path(bkg.save(tmp_path / "ref_bkg.fits"))
    cfg = ExposureConfig(instrument="NIRCAM", detector="NRCALONG", exp_type="NRC_IMAGE", subarray="FULL",
                         xstart=1, ystart=1, xsize=2048, ysize=2048, filter="F444W", pupil="CLEAR")
    more = syn.reference_set(cfg, reftypes=["area", "flat"])
    refs["area"] = Path(more["area"].save(tmp_path / "ref_area.fits"))
    refs["flat"] = Path(more["flat"].save(tmp_path / "ref_flat.fits"))
    refs["photom"] = REAL_NIRCAM / "jwst_nircam_photom_0064.fits"
    with_wcs = run_step("assign_wcs", models.open(rate), {}, references=refs).model
    cat = _catalog(with_wcs, folder / "jw01234-o001_t001_nircam_clear-f444w_cat.ecsv", WFSS_SOURCES[:2])
    for name in ("jw01234-o001_t001_nircam_clear-f444w_segm.fits", "jw01234-o001_t001_nircam_clear-f444w_i2d.fits"):
        (folder / name).write_bytes(b"")  # their names are recorded; spec2 does not read them
    asn = {"asn_type": "spec2", "asn_rule": "Asn_Lv2WFSS", "asn_id": "o001", "asn_pool": "jw01234_pool.csv",
           "program": "01234", "target": "1", "version_id": None, "code_version": "3.0.0", "degraded_status": "No known degraded exposures in association.",
           "constraints": "", "products": [{"name": "jw01234001001_01101_00001_nrcalong", "members": [
               {"expname": rate.name, "exptype": "science", "exposerr": "null"},
               {"expname": cat.name, "exptype": "sourcecat"},
               {"expname": "jw01234-o001_t001_nircam_clear-f444w_segm.fits", "exptype": "segmap"},
               {"expname": "jw01234-o001_t001_nircam_clear-f444w_i2d.fits", "exptype": "direct_image"}]}]}
    asn_path = folder / "jw01234-o001_20260101t000000_spec2_00001_asn.json"
    asn_path.write_text(json.dumps(asn, indent=2))
    na = {f"override_{r}": "N/A" for r in ASSIGN_WCS_NA}
    steps = {
        "assign_wcs": {"override_distortion": str(refs["distortion"]), "override_filteroffset": str(refs["filteroffset"]),
                       "override_specwcs": str(refs["specwcs"]), "sip_approx": False},
        "bkg_subtract": {"override_bkg": str(refs["bkg"]), "override_wavelengthrange": str(refs["wavelengthrange"])},
        "flat_field": {"override_flat": str(refs["flat"])},
        "extract_2d": {"override_wavelengthrange": str(refs["wavelengthrange"])},
        "photom": {"override_photom": str(refs["photom"]), "override_area": str(refs["area"])},
        "extract_1d": {"skip": True},
    }
    out = tmp_path / "ours"
    out.mkdir()
    monkeypatch.setenv("CRDS_PATH", str(real_rules_cache))
    monkeypatch.setenv("CRDS_CONTEXT", "jwst_0541.pmap")
    spec2(str(asn_path), steps=steps, output_dir=str(out))
    ours_path = out / "jw01234001001_01101_00001_nrcalong_cal.fits"
    assert ours_path.exists()

    monkeypatch.chdir(folder)
    with jwst_offline(real_rules_cache, "jwst_0541.pmap"), quiet_jwst(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        j = dm.open(str(rate))
        j.meta.source_catalog = cat.name
        j = AssignWcsStep.call(j, override_distortion=str(refs["distortion"]), override_filteroffset=str(refs["filteroffset"]),
                               override_specwcs=str(refs["specwcs"]), sip_approx=False, **na)
        j = BackgroundStep.call(j, override_bkg=str(refs["bkg"]), override_wavelengthrange=str(refs["wavelengthrange"]))
        j = FlatFieldStep.call(j, override_flat=str(refs["flat"]), override_fflat="N/A", override_sflat="N/A", override_dflat="N/A")
        j = Extract2dStep.call(j, override_wavelengthrange=str(refs["wavelengthrange"]))
        j = SourceTypeStep.call(j)
        j = PhotomStep.call(j, override_photom=str(refs["photom"]), override_area=str(refs["area"]))

    with dm.open(ours_path) as ours:
        assert isinstance(ours, dm.MultiSlitModel)
        assert ours.meta.source_catalog == j.meta.source_catalog == cat.name
        assert ours.meta.segmentation_map == "jw01234-o001_t001_nircam_clear-f444w_segm.fits"
        assert ours.meta.asn.table_name == asn_path.name
        for step_name in ("assign_wcs", "bkg_subtract", "flat_field", "extract_2d", "srctype", "photom"):
            assert getattr(ours.meta.cal_step, step_name) == getattr(j.meta.cal_step, step_name) == "COMPLETE", step_name
        assert ours.meta.background.scaling_factor == pytest.approx(j.meta.background.scaling_factor, rel=1e-9)
        # the sky's own scale, not pulled up by the spectra
        assert ours.meta.background.scaling_factor == pytest.approx(0.5, rel=0.01)
        key = lambda s: (s.name, s.meta.wcsinfo.spectral_order, s.xstart, s.ystart, s.xsize, s.ysize, s.source_type)  # noqa: E731
        assert [key(s) for s in ours.slits] == [key(s) for s in j.slits]
        assert len(ours.slits) == 4  # two sources, orders 1 and 2 (the reference's extract_orders for F444W)
        for a, b in zip(ours.slits, j.slits):
            for arr in ("data", "err", "var_poisson", "var_rnoise", "var_flat", "wavelength"):
                np.testing.assert_allclose(getattr(a, arr), getattr(b, arr), rtol=1e-5, atol=1e-7, equal_nan=True, err_msg=arr)
            np.testing.assert_array_equal(a.dq, b.dq)
            assert a.meta.bunit_data == b.meta.bunit_data == "MJy/sr"
            for k in ("conversion_megajanskys", "pixelarea_steradians"):
                assert getattr(a.meta.photometry, k) == pytest.approx(getattr(b.meta.photometry, k), rel=1e-6), k
            # the real (ground) photom 0064 covers order 1's wavelengths; it tabulates order 2 at 3.9-5.1 um
            # where the (ground) specwcs puts order 2 at half that: jwst and webbflow flag all of order 2
            good = (a.dq & 1) == 0
            if a.meta.wcsinfo.spectral_order == 1:
                assert good.mean() > 0.99 and np.all(np.isfinite(a.data[good]))
            else:
                assert not good.any()
        np.testing.assert_array_equal(ours.slits[0].area, j.slits[0].area)


# ---------------------------------------------------------------------------
# NIRISS WFSS (synthetic specwcs in jwst's form)


def _nis_rate(grism="GR150R", pupil="F150W", fwcpos=-0.23):
    """A NIRISS full-frame WFSS rate pointed with the SIAF's NIS_CEN aperture."""
    m = _rate()
    ap = syn._siaf("NIRISS")["NIS_CEN"]
    ins = m.meta.instrument
    ins.name, ins.detector, ins.module, ins.channel = "NIRISS", "NIS", None, None
    ins.filter, ins.pupil, ins.filter_position = grism, pupil, fwcpos
    m.meta.exposure.type = "NIS_WFSS"
    m.meta.subarray.fastaxis, m.meta.subarray.slowaxis = -2, -1
    w = m.meta.wcsinfo
    w.v2_ref, w.v3_ref = float(ap.V2Ref), float(ap.V3Ref)
    w.v3yangle, w.vparity = float(ap.V3IdlYAngle), int(ap.VIdlParity)
    w.crpix1, w.crpix2 = float(ap.XSciRef), float(ap.YSciRef)
    w.siaf_xref_sci, w.siaf_yref_sci = float(ap.XSciRef), float(ap.YSciRef)
    m.meta.aperture.name = ap.AperName
    return m


@pytest.mark.parity
@pytest.mark.real
@pytest.mark.parametrize("grism", ["GR150R"])  # GR150C runs the same code with rows and columns swapped
def test_nis_wfss_assign_wcs_and_extract_2d_match_jwst(grism, tmp_path, real_rules_cache):
    """NIRISS WFSS: the filter wheel rotation (FWCPOS - fwcpos_ref), the trace along columns (GR150R)
    or rows (GR150C): the same WCS and the same cutouts as jwst."""
    from jwst.extract_2d import Extract2dStep
    from parity import jwst_offline, quiet_jwst
    from webbflow.refs import synthetic_grism as sg
    from webbflow.refs.synthetic import ExposureConfig

    m = _nis_rate(grism)
    path = m.save(tmp_path / "jw01234001001_01101_00001_nis_rate.fits")
    cfg = ExposureConfig(instrument="NIRISS", detector="NIS", exp_type="NIS_IMAGE", subarray="FULL",
                         xstart=1, ystart=1, xsize=2048, ysize=2048, filter="CLEAR", pupil="F150W")
    r = syn.reference_set(cfg, reftypes=["distortion", "filteroffset"])
    r["filteroffset"].set_tree(filters=list(r["filteroffset"].filters)
                               + [{"filter": grism, "pupil": "F150W", "column_offset": -0.4, "row_offset": 0.25}])
    refs = {k: Path(v.save(tmp_path / f"ref_{k}.asdf")) for k, v in r.items()}
    refs["specwcs"] = Path(sg.niriss_specwcs(grism, "F150W", fwcpos_ref=0.12).save(tmp_path / "ref_specwcs.asdf"))
    refs["wavelengthrange"] = Path(sg.wavelengthrange("NIRISS", "NIS_WFSS").save(tmp_path / "ref_wavelengthrange.asdf"))
    ours = run_step("assign_wcs", models.open(path), {}, references=refs).model
    theirs = _jwst_assign_wcs(path, refs, real_rules_cache, sip_approx=False)
    assert ours.meta.wcsinfo.dispersion_direction == theirs.meta.wcsinfo.dispersion_direction == {"GR150R": 2, "GR150C": 1}[grism]
    assert ours.meta.wcs.available_frames == theirs.meta.wcs.available_frames
    rng = np.random.default_rng(4)
    x0, y0 = rng.uniform(100, 1900, 30), rng.uniform(100, 1900, 30)
    off = rng.uniform(25, 90, 30)
    x, y = (x0 + 1.0, y0 + off) if grism == "GR150R" else (x0 + off, y0 + 1.0)
    ra, dec, lam, o = _check_world(ours.meta.wcs, theirs.meta.wcs, (x, y, x0, y0, np.ones(30)))
    assert np.all((lam > 1.30) & (lam < 1.70))  # F150W, order 1
    for a, b in zip(ours.meta.wcs.backward_transform(ra, dec, lam, o), theirs.meta.wcs.backward_transform(ra, dec, lam, o)):
        np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=0, atol=1e-6)

    ours.meta.source_catalog = str(_catalog(ours, tmp_path / "cat.ecsv", WFSS_SOURCES[:5]))
    out = run_step("extract_2d", ours, {}, references={"wavelengthrange": refs["wavelengthrange"]}).model
    theirs.meta.source_catalog = ours.meta.source_catalog
    with jwst_offline(real_rules_cache, "jwst_0541.pmap"), quiet_jwst(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        jout = Extract2dStep.call(theirs, override_wavelengthrange=str(refs["wavelengthrange"]))
    key = lambda s: (s.name, s.meta.wcsinfo.spectral_order, s.xstart, s.ystart, s.xsize, s.ysize)  # noqa: E731
    assert [key(s) for s in out.slits] == [key(s) for s in jout.slits]
    assert len(out.slits) >= 3
    for a, b in zip(out.slits, jout.slits):
        np.testing.assert_array_equal(a.data, b.data)
        np.testing.assert_allclose(a.wavelength, b.wavelength, rtol=1e-6, equal_nan=True)
        # the trace runs along the grism's dispersion: the cutout is long that way
        assert (a.ysize > a.xsize) if grism == "GR150R" else (a.xsize > a.ysize)
