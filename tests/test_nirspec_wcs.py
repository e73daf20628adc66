"""NIRSpec fixed slits (NRS_FIXEDSLIT) and bright-object TSO (NRS_BRIGHTOBJ): assign_wcs against jwst 3.0.

The references are the real NIRSpec optical chain (FM2 cryo-test camera, collimator, FPA, OTE,
CLEAR fore, PRISM disperser; the in-flight wavelengthrange) and webbflow's synthetic ``msa``
reference (the fixed slits where ESA's SIAF delivery puts them).  The same rate (rateints) file
and the same references go through webbflow's step and jwst's AssignWcsStep:

- the same open slits (name, id, source id, quadrant, y range), the same bounding box per slit,
  RA, Dec and wavelength within 1e-10 deg / 1e-10 micron at every pixel of every bounding box
  (NaN at the same pixels), and the inverse (sky + wavelength -> pixel) within 1e-10 pixel;
- the whole product: the same HDUs, keywords (SPECSYS, DISPAXIS, SPORDER, WAVSTART, WAVEND, ...)
  and arrays.

The same for an MSA exposure (NRS_MSASPEC, NRS2): the open slitlets come from the real SMACS 0723
MSA metadata file (configuration 1, dither point 1, trimmed to every 12th slitlet), named by
MSAMETFL beside the exposure: the same slitlets with every field of jwst's Slit records (shutters,
y range, source ids, names and positions, background slitlets), boxes and coordinates.

And against ESA's functional truth (G395H/F290LP, slit S200A1): the chain with webbflow's msa
reference and a G395H disperser in jwst's form lands every wavelength of the table on the
detector pixel ESA computes, within half a pixel (measured: 0.17 pixel at most); on NRS1 that
grating WCS (grating equation, order -1) equals jwst's too.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_DATA
from nirspec_real import OPTICS, WCS_NA
from webbflow import models
from webbflow.errors import InputFileError, ReferenceFileError
from webbflow.tasks import load_all
from webbflow.tasks.assign_wcs import nirspec as nrs
from webbflow.tasks.base import run_step

load_all()

ESA_FS = SHARED_DATA / "real-refs" / "nirspec-model" / "fixed_slits_functional_ESA_v4_20180618.txt"
REAL_REFS = dict(OPTICS)
JWST_NA = WCS_NA
TOL_DEG = TOL_UM = TOL_PIX = 1e-10

pytestmark = [pytest.mark.real]


@pytest.fixture(scope="module")
def nrs_refs(tmp_path_factory) -> dict[str, Path]:
    from webbflow.refs.synthetic_nirspec_optics import disperser_reference, write_msa_reference

    folder = tmp_path_factory.mktemp("nirspec-refs")
    refs = dict(REAL_REFS)
    refs["msa"] = write_msa_reference(folder / "webbflow_nirspec_msa.asdf")
    refs["disperser_g395h"] = Path(disperser_reference("G395H").save(folder / "webbflow_nirspec_disperser_g395h.asdf"))
    return refs


def _rate(exp_type="NRS_FIXEDSLIT", detector="NRS1"):
    """A NIRSpec PRISM/CLEAR rate (FULL, fixed slit S200A1 primary) or rateints (SUB2048, S1600A1)
    with the pointing of the primary slit's SIAF aperture.  The WCS does not depend on the pixels:
    the arrays are small."""
    import pysiaf

    bots = exp_type == "NRS_BRIGHTOBJ"
    shape = (3, 8, 8) if bots else (8, 8)
    m = (models.CubeModel if bots else models.ImageModel)(data=np.zeros(shape, np.float32))
    m.dq = np.zeros(shape, np.uint32)
    m.err = np.zeros(shape, np.float32)
    meta = m.meta
    meta.telescope = "JWST"
    meta.bunit_data = "DN/s"
    ins = meta.instrument
    ins.name, ins.detector, ins.filter, ins.grating = "NIRSPEC", detector, "CLEAR", "PRISM"
    ins.fixed_slit = "S1600A1" if bots else "S200A1"
    ins.gwa_xtilt, ins.gwa_ytilt, ins.gwa_tilt = 0.3358, 0.0337, 37.1
    ex = meta.exposure
    ex.type, ex.readpatt = exp_type, "NRSRAPID"
    ex.nints, ex.ngroups, ex.nframes, ex.groupgap = (3 if bots else 1), 3, 1, 0
    ex.start_time, ex.mid_time, ex.end_time = 59800.0, 59800.0005, 59800.001
    s = meta.subarray
    if bots:  # the BOTS subarray: 32 rows across S1600A1's spectrum
        s.name, s.xstart, s.ystart, s.xsize, s.ysize = "SUB2048", 1, 947, 2048, 32
    else:
        s.name, s.xstart, s.ystart, s.xsize, s.ysize = "FULL", 1, 1, 2048, 2048
    s.fastaxis, s.slowaxis = (2, 1) if detector == "NRS1" else (-2, -1)
    o = meta.observation
    o.date, o.time = "2022-08-01", "12:00:00.000"
    ap = pysiaf.Siaf("NIRSpec")[f"NRS_{ins.fixed_slit}_SLIT"]
    w = meta.wcsinfo
    w.v2_ref, w.v3_ref = float(ap.V2Ref), float(ap.V3Ref)
    w.v3yangle, w.vparity = float(ap.V3IdlYAngle), int(ap.VIdlParity)
    w.ra_ref, w.dec_ref, w.roll_ref = 53.16, -27.78, 47.3
    w.velosys = -12345.6
    meta.velocity_aberration.scale_factor = 1.00003
    meta.aperture.name = ap.AperName
    return m


MSA_META = SHARED_DATA / "real-refs" / "nirspec-msa" / "jw02736007001_01_msa.fits"


def _msa_exposure(m, tmp):
    """Make ``m`` an NRS_MSASPEC exposure of MSA configuration 1, dither point 1 of the real SMACS 0723
    MSA metadata file, trimmed to every 12th slitlet (all their rows, all dither points) to keep
    the run short; written beside the exposure, where MSAMETFL finds it."""
    import pysiaf
    from astropy.io import fits

    with fits.open(MSA_META) as h:
        rows = h["SHUTTER_INFO"].data
        first = (rows["msa_metadata_id"] == 1) & (rows["dither_point_index"] == 1)
        keep = list(dict.fromkeys(rows["slitlet_id"][first]))[::12]
        h["SHUTTER_INFO"].data = rows[np.isin(rows["slitlet_id"], keep)]
        h.writeto(tmp / MSA_META.name, overwrite=True)
    ins = m.meta.instrument
    m.meta.exposure.type = "NRS_MSASPEC"
    ins.msa_metadata_file, ins.msa_metadata_id, ins.fixed_slit = MSA_META.name, 1, None
    m.meta.dither.position_number = 1
    m.meta.observation.program_number = "02736"
    ap = pysiaf.Siaf("NIRSpec")["NRS_FULL_MSA"]
    m.meta.wcsinfo.v2_ref, m.meta.wcsinfo.v3_ref = float(ap.V2Ref), float(ap.V3Ref)
    m.meta.aperture.name = ap.AperName
    return keep


def _run_both(tmp, refs, exp_type, detector, cache):
    from parity import jwst_offline, quiet_jwst

    from jwst.assign_wcs import AssignWcsStep

    suffix = "rateints" if exp_type == "NRS_BRIGHTOBJ" else "rate"
    m = _rate(exp_type if exp_type != "NRS_MSASPEC" else "NRS_FIXEDSLIT", detector)
    if exp_type == "NRS_MSASPEC":
        _msa_exposure(m, tmp)
    path = m.save(tmp / f"jw01234001001_01101_00001_{detector.lower()}_{suffix}.fits")
    used = {k: str(v) for k, v in refs.items() if k in nrs.REFTYPES}
    ours = run_step("assign_wcs", models.open(path), {}, references=used).model
    with jwst_offline(cache, "jwst_0541.pmap"), quiet_jwst(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = AssignWcsStep.call(str(path), **{f"override_{k}": v for k, v in used.items()},
                                    **{f"override_{k}": "N/A" for k in JWST_NA})
    return path, ours, theirs


CASES = [("NRS_FIXEDSLIT", "NRS1"), ("NRS_FIXEDSLIT", "NRS2"), ("NRS_BRIGHTOBJ", "NRS1"), ("NRS_MSASPEC", "NRS2")]


@pytest.fixture(scope="module", params=CASES, ids=[f"{e}-{d}" for e, d in CASES])
def both(request, nrs_refs, tmp_path_factory, real_rules_cache):
    exp_type, detector = request.param
    tmp = tmp_path_factory.mktemp(f"nrs-{exp_type}-{detector}")
    path, ours, theirs = _run_both(tmp, nrs_refs, exp_type, detector, real_rules_cache)
    return exp_type, detector, tmp, path, ours, theirs


def _slit_record(s):
    """Every field of a Slit (name, ids, shutters, y range, source name/position, scales), NaN-safe."""
    return tuple(repr(v) for v in s)


@pytest.mark.parity
def test_same_slits_boxes_world_coordinates_and_inverse(both):
    from gwcs.wcstools import grid_from_bounding_box
    from jwst.assign_wcs.nirspec import nrs_wcs_set_input

    exp_type, detector, _tmp, _path, ours, theirs = both
    assert ours.meta.cal_step.assign_wcs == theirs.meta.cal_step.assign_wcs == "COMPLETE"
    assert ours.meta.wcs.available_frames == theirs.meta.wcs.available_frames == [
        "detector", "sca", "gwa", "slit_frame", "msa_frame", "oteip", "v2v3", "v2v3vacorr", "world"]
    slits_o = ours.meta.wcs.get_transform("gwa", "slit_frame").slits
    slits_t = theirs.meta.wcs.get_transform("gwa", "slit_frame").slits
    assert [_slit_record(s) for s in slits_o] == [_slit_record(s) for s in slits_t]
    names = [s.name for s in slits_t]
    expected = {("NRS_FIXEDSLIT", "NRS1"): ["S200A1", "S200A2", "S400A1", "S1600A1"],
                ("NRS_FIXEDSLIT", "NRS2"): ["S200B1"],
                ("NRS_BRIGHTOBJ", "NRS1"): ["S1600A1"],
                # slitlets of the trimmed SMACS 0723 configuration that fall on NRS2 (by quadrant)
                ("NRS_MSASPEC", "NRS2"): [14, 26, 2, 38]}[(exp_type, detector)]
    assert names == expected
    for name in names:
        wo, wt = nrs.slit_wcs(ours, name), nrs_wcs_set_input(theirs, name)
        bo, bt = wo.bounding_box.bounding_box(order="F"), wt.bounding_box.bounding_box(order="F")
        assert bo == bt, name
        (x0, x1), (y0, y1) = bt
        assert 2 <= x1 - x0 < 2048 and 1 <= y1 - y0 < 200, (name, bt)
        x, y = grid_from_bounding_box(wt.bounding_box)
        ra_o, dec_o, lam_o = wo(x, y)
        ra_t, dec_t, lam_t = wt(x, y)
        for a, b, tol in ((ra_o, ra_t, TOL_DEG), (dec_o, dec_t, TOL_DEG), (lam_o, lam_t, TOL_UM)):
            assert np.array_equal(np.isnan(a), np.isnan(b)), name
            ok = np.isfinite(b)
            assert ok.sum() > 1000, name
            assert np.max(np.abs(a[ok] - b[ok])) <= tol, name
        ok = np.isfinite(lam_t)
        # PRISM: 0.6-5.3 micron (the box has a 10-column margin); the target near the pointing
        assert 0.5 < np.nanmin(lam_o) and np.nanmax(lam_o) < 5.6
        assert abs(np.nanmedian(dec_o) - (-27.78)) < 0.1
        # back: sky and wavelength to the pixel, as jwst's inverse does (and to the pixel it came from)
        xi_o, yi_o = wo.invert(ra_t[ok], dec_t[ok], lam_t[ok])
        xi_t, yi_t = wt.invert(ra_t[ok], dec_t[ok], lam_t[ok])
        assert np.nanmax(np.abs(xi_o - xi_t)) <= TOL_PIX and np.nanmax(np.abs(yi_o - yi_t)) <= TOL_PIX
        assert np.array_equal(np.isnan(xi_o), np.isnan(xi_t))
        assert np.nanmax(np.abs(xi_t - x[ok])) < 0.1 and np.nanmax(np.abs(yi_t - y[ok])) < 0.1
    w_o, w_t = ours.meta.wcsinfo, theirs.meta.wcsinfo
    assert (w_o.specsys, w_o.dispersion_direction, w_o.spectral_order) == (w_t.specsys, w_t.dispersion_direction,
                                                                           w_t.spectral_order) == ("BARYCENT", 1, 0)
    assert (w_o.waverange_start, w_o.waverange_end) == (w_t.waverange_start, w_t.waverange_end) == (6e-07, 5.3e-06)
    assert w_o.s_region == w_t.s_region


@pytest.mark.parity
def test_whole_product_matches_jwst(both):
    from astropy.io import fits
    from test_products_whole import compare_fits

    from stdatamodels.jwst import datamodels as dm

    exp_type, detector, tmp, path, ours, theirs = both
    mine, jw = tmp / "ours_assignwcs.fits", tmp / "jwst_assignwcs.fits"
    ours.save(mine)
    theirs.save(jw)
    problems: list[str] = []
    compare_fits(f"{exp_type} {detector}", mine, jw, problems)
    # how the step was run, not what it made: jwst's step run alone stamps its version, context and
    # date, records the CRDS answers for every reftype it asks about (R_DISTOR = N/A ...) and the
    # override paths; webbflow's in-memory run records the reference names
    provenance = ("CAL_VCS", "CAL_VER", "CRDS_CTX", "CRDS_VER", "DATE", "FILENAME", "R_")
    science = [p for p in problems if not any(f" {k}" in p or f"'{k}" in p for k in provenance)]
    # jwst writes the input's ERR and DQ in another order than the input file has them whenever it
    # opens and saves that file, with no step at all: the order is the input's business, not assign_wcs's
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dm.open(path).save(tmp / "jwst_open_save.fits")
    with fits.open(jw) as a, fits.open(tmp / "jwst_open_save.fits") as b, fits.open(mine) as c:
        assert [h.name for h in a] == [h.name for h in b]
        assert sorted(h.name for h in c) == sorted(h.name for h in a)
    science = [p for p in science if "HDUs" not in p]
    assert science == []
    missing = [p for p in problems if "keywords missing" in p]
    assert all("R_DISTOR" in p for p in missing)
    # the product opens in jwst with the WCS it can use per slit
    from jwst.assign_wcs.nirspec import nrs_wcs_set_input

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reread = dm.open(mine)
    assert type(reread).__name__ == ("CubeModel" if exp_type == "NRS_BRIGHTOBJ" else "ImageModel")
    first = reread.meta.wcs.get_transform("gwa", "slit_frame").slits[0].name
    w = nrs_wcs_set_input(reread, first)
    (x0, x1), (y0, y1) = w.bounding_box.bounding_box(order="F")
    ra, dec, lam = w(0.5 * (x0 + x1), 0.5 * (y0 + y1))
    assert np.isfinite(lam) and 0.6 < lam < 5.3


@pytest.mark.parity
def test_esa_functional_truth_on_the_detector(nrs_refs, capsys, tmp_path):
    """ESA's fixed-slit truth (G395H/F290LP, S200A1 at x=0, y=-0.5..0.5, 2.9-5 micron): where each
    wavelength lands on NRS1 or NRS2 (the table's SCA491/SCA492, 1-based pixels)."""
    from astropy.table import Table

    table = Table.read(ESA_FS, format="ascii")
    lam = np.asarray(table["wavelength"], float)
    ys = np.asarray(table["yslitpos"], float)
    xs = np.zeros_like(ys)
    refs = {k: str(v) for k, v in nrs_refs.items() if k in nrs.REFTYPES}
    refs["disperser"] = str(nrs_refs["disperser_g395h"])
    worst = 0.0
    for detector, sca in (("NRS1", "SCA491"), ("NRS2", "SCA492")):
        m = _rate("NRS_FIXEDSLIT", detector)
        m.meta.instrument.grating, m.meta.instrument.filter = "G395H", "F290LP"
        m.meta.instrument.gwa_xtilt = m.meta.instrument.gwa_ytilt = None
        m.meta.wcsinfo.velosys = None
        out = run_step("assign_wcs", m, {}, references=refs).model
        assert out.meta.wcsinfo.spectral_order == -1
        w = nrs.slit_wcs(out, "S200A1")
        # the slit's position on the MSA: the synthetic msa reference against ESA's (metres)
        mx, my, _ = w.get_transform("slit_frame", "msa_frame")(xs, ys, lam)
        assert np.max(np.abs(mx - table["xmsapos"])) < 1e-6 and np.max(np.abs(my - table["ymaspos"])) < 1e-5
        # the grating's exit angles
        gx, gy, _ = w.get_transform("slit_frame", "gwa")(xs, ys, lam)
        assert np.max(np.abs(gx - table["xdispLaw"])) < 1e-5 and np.max(np.abs(gy - table["ydispLaw"])) < 1e-4
        # the pixel: full-frame SCA coordinates are 0-based, ESA's 1-based
        on = np.asarray(table["SCA"]) == sca
        assert on.any()
        x, y = w.get_transform("slit_frame", "detector")(xs[on], ys[on], lam[on])
        sca_x, sca_y = w.get_transform("detector", "sca")(x, y)
        dx, dy = sca_x + 1 - table["i"][on], sca_y + 1 - table["j"][on]
        worst = max(worst, float(np.max(np.hypot(dx, dy))))
        if detector == "NRS1":
            _grating_parity(out, m, refs, tmp_path)
    with capsys.disabled():
        print(f"\nESA fixed-slit truth: largest detector offset {worst:.3f} pixel over 5 wavelengths")
    assert worst < 0.5


def _grating_parity(ours, model, refs, tmp):
    """The grating path (grating equation, order -1) against jwst's assign_wcs on the same file."""
    from gwcs.wcstools import grid_from_bounding_box
    from jwst.assign_wcs.assign_wcs import load_wcs
    from jwst.assign_wcs.nirspec import nrs_wcs_set_input

    from stdatamodels.jwst import datamodels as dm

    path = model.save(tmp / "jw01234001001_01101_00001_nrs1_rate.fits")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = load_wcs(dm.open(str(path)), dict(refs), [-0.55, 0.55])
    assert ([repr(tuple(s)) for s in theirs.meta.wcs.get_transform("gwa", "slit_frame").slits]
            == [repr(tuple(s)) for s in ours.meta.wcs.get_transform("gwa", "slit_frame").slits])
    for s in theirs.meta.wcs.get_transform("gwa", "slit_frame").slits:
        wt, wo = nrs_wcs_set_input(theirs, s.name), nrs.slit_wcs(ours, s.name)
        assert wt.bounding_box.bounding_box(order="F") == wo.bounding_box.bounding_box(order="F")
        x, y = grid_from_bounding_box(wt.bounding_box)
        for a, b in zip(wo(x, y), wt(x, y)):
            assert np.array_equal(np.isnan(a), np.isnan(b)) and np.isfinite(b).sum() > 100
            assert np.nanmax(np.abs(a - b)) <= 1e-10
        lam = wo(x, y)[2]
        assert 2.8 < np.nanmin(lam) and np.nanmax(lam) < 5.4  # G395H


def test_bad_inputs_one_line_errors(nrs_refs, tmp_path):
    refs = {k: str(v) for k, v in nrs_refs.items() if k in nrs.REFTYPES}
    m = _rate()
    m.meta.instrument.gwa_tilt = None  # the prism's temperature
    with pytest.raises(InputFileError, match="GWA_TILT"):
        run_step("assign_wcs", m, {}, references=refs)
    m = _rate()
    m.meta.wcsinfo.ra_ref = None
    with pytest.raises(InputFileError, match="RA_REF"):
        run_step("assign_wcs", m, {}, references=refs)
    # an MSA exposure whose MSA metadata file is not beside it
    m = _rate()
    _msa_exposure(m, tmp_path)
    m.meta.instrument.msa_metadata_file = "jw99999001001_01_msa.fits"
    m._path = str(m.save(tmp_path / "jw99999001001_01101_00001_nrs1_rate.fits"))
    with pytest.raises(InputFileError, match="MSAMETFL"):
        run_step("assign_wcs", m, {}, references=refs)
    # an msa reference without its fixed-slit quadrant
    from webbflow.refs.synthetic_nirspec_optics import msa_reference

    bad = msa_reference()
    del bad._asdf_extra["Q5"]
    refs["msa"] = str(bad.save(tmp_path / "msa_no_q5.asdf"))
    with pytest.raises(ReferenceFileError, match="Q5"):
        run_step("assign_wcs", _rate(), {}, references=refs)


def test_slit_ids_and_names():
    assert [nrs.slit_id(n) for n in nrs.FIXED_SLIT_ORDER] == [-101, -102, -103, -104, -105]
    assert [nrs.slit_name(i) for i in (-101, -104, -105, 7, "x")] == ["S200A1", "S1600A1", "S200B1", "NONE", "NONE"]
    assert math.isclose(nrs.velocity_correction(0.0)(2.0), 2.0)
