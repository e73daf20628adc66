"""NIRSpec IFU (NRS_IFU): assign_wcs against jwst 3.0 and against ESA's IFU functional model.

References: the real NIRSpec optical chain (FM2 camera, collimator, FPA, OTE, CLEAR fore, PRISM
disperser, in-flight wavelengthrange) and the real ``ifupost``; webbflow's synthetic ``ifuslicer``,
``ifufore`` and ``chromcorr`` (refs/synthetic_nirspec_ifu.py).  One full-frame PRISM/CLEAR NRS1 rate
goes through webbflow's step and through jwst's AssignWcsStep (all references given, run once):

- the same coordinate-based WCS (frames, the slice map REGIONS pixel for pixel), and for each of the
  30 slices the same bounding box, RA/Dec within 1e-10 deg, wavelength within 1e-10 micron and MSA
  position within 1e-12 m at every pixel of the box (NaN at the same pixels); sky -> pixel agrees;
- the whole product: HDUs, keywords (S_REGION, SPORDER, WAVSTART/WAVEND ...) and arrays;
- ``nrs_ifu_slice_wcs``: the slice-keyed WCS gives the same coordinates as the coordinate-based one.

ESA's IFU functional tables (PRISM/CLEAR and G395H/F290LP, slice 0 at x = 0, y = -0.5..0.5): ESA ran
them with the grating wheel at another position than its fixed-slit table (the GWA's entrance
angles differ by 5e-4 from those the FS table gives), so each check uses the disperser with its
mounting angles fitted to the table's collimator -> GWA planes (exact to 1e-15); the chain then
lands every wavelength on ESA's pixel (measured: 2e-7 pixel at most), passes ESA's GWA exit angles
within 1e-10 and ESA's OTE image-plane positions within 1e-8 deg.  With the flight and FS-fitted
dispersers as they are, the offsets are 15-17.6 pixels: the grating wheel's position, not the IFU.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_DATA
from nirspec_real import OPTICS, REAL
from webbflow import models
from webbflow.errors import InputFileError, ReferenceFileError
from webbflow.tasks import load_all
from webbflow.tasks.assign_wcs import nirspec_ifu as ifu
from webbflow.tasks.base import run_step

load_all()

ESA = SHARED_DATA / "real-refs" / "nirspec-model"
REAL_REFS = {
    **OPTICS,
    "ifupost": REAL / "jwst_nirspec_ifupost_0004.asdf",
}
JWST_NA = ("distortion", "filteroffset", "specwcs", "regions", "msa")
TOL_DEG = TOL_UM = TOL_PIX = 1e-10
TOL_M = 1e-12

pytestmark = [pytest.mark.real]


@pytest.fixture(scope="module")
def ifu_refs(tmp_path_factory) -> dict[str, str]:
    from webbflow.refs.synthetic_nirspec_ifu import write_ifu_references

    folder = tmp_path_factory.mktemp("nirspec-ifu-refs")
    refs = dict(REAL_REFS)
    refs.update(write_ifu_references(folder))
    return {k: str(v) for k, v in refs.items()}


@pytest.fixture(scope="module")
def opened(ifu_refs) -> dict:
    """The references opened once, as the step opens them (the ifupost tree is large to parse)."""
    from webbflow.refs.select import open_reference

    return {k: open_reference(k, v) for k, v in ifu_refs.items()}


def _rate(detector="NRS1", grating="PRISM", filt="CLEAR"):
    """A full-frame NRS_IFU rate (the slices cover the detector; the WCS does not depend on the
    pixels) pointed with the IFU's SIAF aperture."""
    import pysiaf

    m = models.IFUImageModel(data=np.zeros((2048, 2048), np.float32))
    m.dq = np.zeros((2048, 2048), np.uint32)
    m.err = np.zeros((2048, 2048), np.float32)
    meta = m.meta
    meta.telescope = "JWST"
    meta.bunit_data = "DN/s"
    ins = meta.instrument
    ins.name, ins.detector, ins.filter, ins.grating = "NIRSPEC", detector, filt, grating
    ins.gwa_xtilt, ins.gwa_ytilt, ins.gwa_tilt = 0.3358, 0.0337, 37.1
    ex = meta.exposure
    ex.type, ex.readpatt = "NRS_IFU", "NRSRAPID"
    ex.nints, ex.ngroups, ex.nframes, ex.groupgap = 1, 3, 1, 0
    ex.start_time, ex.mid_time, ex.end_time = 59800.0, 59800.0005, 59800.001
    s = meta.subarray
    s.name, s.xstart, s.ystart, s.xsize, s.ysize = "FULL", 1, 1, 2048, 2048
    s.fastaxis, s.slowaxis = (2, 1) if detector == "NRS1" else (-2, -1)
    o = meta.observation
    o.date, o.time = "2022-08-01", "12:00:00.000"
    ap = pysiaf.Siaf("NIRSpec")["NRS_FULL_IFU"]
    w = meta.wcsinfo
    w.v2_ref, w.v3_ref = float(ap.V2Ref), float(ap.V3Ref)
    w.v3yangle, w.vparity = float(ap.V3IdlYAngle), int(ap.VIdlParity)
    w.ra_ref, w.dec_ref, w.roll_ref = 53.16, -27.78, 47.3
    w.velosys = -12345.6
    meta.velocity_aberration.scale_factor = 1.00003
    meta.aperture.name = ap.AperName
    return m


@pytest.fixture(scope="module")
def both(ifu_refs, opened, tmp_path_factory, real_rules_cache):
    """webbflow's and jwst's assign_wcs on the same rate with the same references (jwst run once)."""
    from parity import jwst_offline, quiet_jwst

    from jwst.assign_wcs import AssignWcsStep

    tmp = tmp_path_factory.mktemp("nrs-ifu")
    path = _rate().save(tmp / "jw01234001001_01101_00001_nrs1_rate.fits")
    ours = run_step("assign_wcs", models.open(path), {}, references=opened).model
    with jwst_offline(real_rules_cache, "jwst_0541.pmap"), quiet_jwst(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from stdatamodels.jwst import datamodels as dm

        theirs = AssignWcsStep.call(dm.IFUImageModel(str(path)), **{f"override_{k}": v for k, v in ifu_refs.items()},
                                    **{f"override_{k}": "N/A" for k in JWST_NA})
    return tmp, path, ours, theirs


@pytest.mark.parity
def test_same_slices_boxes_coordinates_and_slice_map(both):
    from gwcs.wcstools import grid_from_bounding_box
    from jwst.assign_wcs.nirspec import nrs_wcs_set_input

    _tmp, _path, ours, theirs = both
    assert ours.meta.cal_step.assign_wcs == theirs.meta.cal_step.assign_wcs == "COMPLETE"
    frames = ["coordinates", "detector", "slicer", "msa_frame", "oteip", "oteip_chromcorr", "v2v3", "v2v3vacorr",
              "world"]
    assert ours.meta.wcs.available_frames == theirs.meta.wcs.available_frames == frames
    # the slice map: every slice there, 30 bands of about 35 rows across the PRISM's spectra
    assert ours.regions.dtype == np.int32 and np.array_equal(ours.regions, theirs.regions)
    assert sorted(np.unique(ours.regions)) == list(range(31))
    rows = [np.unique(np.nonzero(ours.regions == n + 1)[0]).size for n in range(30)]
    assert min(rows) > 25 and max(rows) < 45
    for n in range(30):
        wo, wt = ifu.slice_wcs(ours, n), nrs_wcs_set_input(theirs, n)
        bo, bt = wo.bounding_box.bounding_box(order="F"), wt.bounding_box.bounding_box(order="F")
        assert bo == bt, n
        x, y = grid_from_bounding_box(wt.bounding_box)
        ra_o, dec_o, lam_o = wo(x, y)
        ra_t, dec_t, lam_t = wt(x, y)
        for a, b, tol in ((ra_o, ra_t, TOL_DEG), (dec_o, dec_t, TOL_DEG), (lam_o, lam_t, TOL_UM)):
            assert np.array_equal(np.isnan(a), np.isnan(b)), n
            ok = np.isfinite(b)
            assert ok.sum() > 5000, n
            assert np.max(np.abs(a[ok] - b[ok])) <= tol, n
        mo = wo.get_transform("detector", "msa_frame")(x, y)
        mt = wt.get_transform("detector", "msa_frame")(x, y)
        for a, b in zip(mo[:2], mt[:2]):
            assert np.nanmax(np.abs(a - b)) <= TOL_M, n
        # PRISM: 0.6-5.3 micron; the slices within the 3" field around the pointing
        assert 0.5 < np.nanmin(lam_o) and np.nanmax(lam_o) < 5.5
        assert abs(np.nanmedian(dec_o) - (-27.78)) < 3 / 3600 and abs(np.nanmedian(ra_o) - 53.16) < 4 / 3600
        if n not in (0, 13, 29):
            continue
        # back: sky and wavelength to the pixel, on a sample of the slice's valid pixels
        ok = np.flatnonzero(np.isfinite(lam_t))[::97]
        xi_o, yi_o = wo.invert(ra_t.flat[ok], dec_t.flat[ok], lam_t.flat[ok])
        xi_t, yi_t = wt.invert(ra_t.flat[ok], dec_t.flat[ok], lam_t.flat[ok])
        assert np.array_equal(np.isnan(xi_o), np.isnan(xi_t))
        assert np.nanmax(np.abs(xi_o - xi_t)) <= TOL_PIX and np.nanmax(np.abs(yi_o - yi_t)) <= TOL_PIX
    ys = [0.5 * sum(ifu.slice_wcs(theirs, n).bounding_box.bounding_box(order="F")[1]) for n in range(30)]
    # the slices alternate about the middle of the field on the detector, about 49 rows apart
    assert np.all(np.diff(ys[0::2]) < -40) and np.all(np.diff(ys[1::2]) > 40)
    w_o, w_t = ours.meta.wcsinfo, theirs.meta.wcsinfo
    assert (w_o.specsys, w_o.dispersion_direction, w_o.spectral_order) == (w_t.specsys, w_t.dispersion_direction,
                                                                           w_t.spectral_order) == ("BARYCENT", 1, 0)
    assert (w_o.waverange_start, w_o.waverange_end) == (w_t.waverange_start, w_t.waverange_end) == (6e-07, 5.3e-06)
    assert w_o.s_region == w_t.s_region and w_o.s_region.startswith("POLYGON ICRS")
    assert np.allclose(w_o.spectral_region, w_t.spectral_region, rtol=0, atol=1e-12)


@pytest.mark.parity
def test_whole_product_matches_jwst(both):
    from test_products_whole import compare_fits

    from stdatamodels.jwst import datamodels as dm

    tmp, _path, ours, theirs = both
    mine, jw = tmp / "ours_assignwcs.fits", tmp / "jwst_assignwcs.fits"
    ours.save(mine)
    theirs.save(jw)
    problems: list[str] = []
    compare_fits("NRS_IFU NRS1", mine, jw, problems)
    # how the step was run, not what it made (as in test_nirspec_wcs): version, context, date, the
    # CRDS answers and override paths jwst records
    provenance = ("CAL_VCS", "CAL_VER", "CRDS_CTX", "CRDS_VER", "DATE", "FILENAME", "R_")
    science = [p for p in problems if not any(f" {k}" in p or f"'{k}" in p for k in provenance)]
    assert science == []
    # the product opens in jwst, which finds each slice's WCS in it
    from jwst.assign_wcs.nirspec import nrs_wcs_set_input

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reread = dm.open(mine)
    assert type(reread).__name__ == "IFUImageModel"
    assert np.array_equal(reread.regions, theirs.regions)
    w = nrs_wcs_set_input(reread, 7)
    (x0, x1), (y0, y1) = w.bounding_box.bounding_box(order="F")
    ra, dec, lam = w(0.5 * (x0 + x1), 0.5 * (y0 + y1))
    assert np.isfinite(lam) and 0.6 < lam < 5.3


def test_slice_keyed_wcs_gives_the_same_coordinates(both, opened):
    """nrs_ifu_slice_wcs=True keeps the full slice-keyed WCS (detector ... gwa, slit_frame ...) with its
    compound bounding box; the coordinates of a slice are those of the coordinate-based WCS."""
    from gwcs.wcstools import grid_from_bounding_box

    _tmp, path, ours, _theirs = both
    keyed = run_step("assign_wcs", models.open(path), {"nrs_ifu_slice_wcs": True}, references=opened).model
    assert keyed.meta.wcs.available_frames[:5] == ["detector", "sca", "gwa", "slit_frame", "slicer"]
    assert list(keyed.meta.wcs.get_transform("gwa", "slit_frame").slit_ids) == list(range(30))
    assert np.array_equal(keyed.regions, ours.regions)
    for n in (0, 13, 29):
        wk, wc = ifu.slice_wcs(keyed, n), ifu.slice_wcs(ours, n)
        x, y = grid_from_bounding_box(wk.bounding_box)
        inside = ours.regions[y.astype(int), x.astype(int)] == n + 1
        for a, b in zip(wk(x, y), wc(x, y)):
            assert np.array_equal(a[inside], b[inside])
        assert len(ifu.ifu_slice_wcs(keyed)) == 30


def _fit_gwa_angles(table, start):
    """The disperser's mounting angles that take ESA's collimator exit directions to its GWA entrance ones."""
    from scipy.optimize import least_squares
    from stdatamodels.jwst.transforms.models import Rotation3DToGWA

    cx, cy = np.asarray(table["xcolDirCosi"]), np.asarray(table["ycolDirCosi"])
    cz = np.sqrt(1 - cx**2 - cy**2)

    def residual(p):
        gx, gy, _ = Rotation3DToGWA(list(p), axes_order="xyzy")(cx, cy, cz)
        return np.concatenate([gx - table["xdispIn"], gy - table["ydispIn"]])

    fit = least_squares(residual, start, xtol=1e-15, ftol=1e-15, gtol=1e-15)
    assert np.max(np.abs(fit.fun)) < 1e-13
    return [float(a) for a in fit.x]


def _disperser_at_esa_gwa(table, src, dst) -> str:
    import asdf

    with asdf.open(src, lazy_load=False, memmap=False) as af:
        tree = {k: v for k, v in af.tree.items() if k not in ("asdf_library", "history")}
    keys = ("theta_x", "theta_y", "theta_z", "tilt_y")
    tree.update(zip(keys, _fit_gwa_angles(table, [tree[k] for k in keys])))
    asdf.AsdfFile(tree).write_to(dst)
    return str(dst)


@pytest.mark.parity
def test_esa_ifu_functional_truth_on_the_detector(ifu_refs, opened, capsys, tmp_path):
    from astropy.table import Table
    from gwcs import WCS

    from webbflow.refs.select import open_reference
    from webbflow.refs.synthetic_nirspec_optics import disperser_reference

    g395h = disperser_reference("G395H").save(tmp_path / "g395h.asdf")
    worst, worst_gwa, worst_ote = 0.0, 0.0, 0.0
    for name, grating, filt, src in (("ifu_prism_functional_ESA_v1_20180619.txt", "PRISM", "CLEAR",
                                      ifu_refs["disperser"]),
                                     ("ifu_grating_functional_ESA_v1_20180619.txt", "G395H", "F290LP", g395h)):
        table = Table.read(ESA / name, format="ascii")
        lam = np.asarray(table["wavelength"], float)
        ys = np.asarray(table["yslitpos"], float)
        xs = np.zeros_like(ys)
        esa_disperser = _disperser_at_esa_gwa(table, src, tmp_path / f"{grating}.asdf")
        refs = dict(opened, disperser=open_reference("disperser", esa_disperser))
        for detector, sca in (("NRS1", "SCA491"), ("NRS2", "SCA492")):
            on = np.asarray(table["SCA"]) == sca
            if not on.any():
                continue
            m = _rate(detector, grating, filt)
            m.meta.instrument.gwa_xtilt = m.meta.instrument.gwa_ytilt = None
            m.meta.wcsinfo.velosys = None
            pipeline, _ = ifu.ifu_pipeline(m, refs)
            w = ifu.wcs_of_slice(WCS(pipeline), 0)
            gx, gy, _ = w.get_transform("slit_frame", "gwa")(xs, ys, lam)
            worst_gwa = max(worst_gwa, np.max(np.abs(gx - table["xdispLaw"])), np.max(np.abs(gy - table["ydispLaw"])))
            ox, oy, _ = w.get_transform("slit_frame", "oteip")(xs, ys, lam)
            worst_ote = max(worst_ote, np.max(np.abs(ox - table["xOTEIP"])), np.max(np.abs(oy - table["yOTEIP"])))
            x, y = w.get_transform("slit_frame", "detector")(xs[on], ys[on], lam[on])
            sca_x, sca_y = w.get_transform("detector", "sca")(x, y)
            # full-frame SCA pixels are 0-based, ESA's 1-based
            worst = max(worst, float(np.max(np.hypot(sca_x + 1 - table["i"][on], sca_y + 1 - table["j"][on]))))
    with capsys.disabled():
        print(f"\nESA IFU truth (slice 0, PRISM and G395H): largest detector offset {worst:.2e} pixel, "
              f"GWA exit {worst_gwa:.1e}, OTE image plane {worst_ote:.1e} deg")
    assert worst < 0.01 and worst_gwa < 1e-10 and worst_ote < 1e-8


def test_bad_inputs_one_line_errors(ifu_refs, opened):
    from webbflow.tasks.assign_wcs import AssignWcsParams

    # no slice falls on NRS2 with a medium-resolution grating
    with pytest.raises(InputFileError, match="no IFU slices fall on detector NRS2"):
        run_step("assign_wcs", _rate("NRS2", "G235M", "F170LP"), {}, references=opened)
    # none of the IFU references (CRDS answered N/A for all three)
    refs = dict(opened, ifupost=None, ifuslicer=None, ifufore=None)
    with pytest.raises(ReferenceFileError, match="no IFU reference files"):
        ifu.assign(_rate(), refs, AssignWcsParams())
    # an ifupost reference without its first slice
    import asdf

    bad = Path(ifu_refs["ifuslicer"]).with_name("ifupost_no_slice_0.asdf")
    with asdf.open(ifu_refs["ifupost"], lazy_load=False, memmap=False) as af:
        tree = {k: v for k, v in af.tree.items() if k not in ("asdf_library", "history", "slice_0")}
    asdf.AsdfFile(tree).write_to(bad)
    with pytest.raises(ReferenceFileError, match="slice_0"):
        run_step("assign_wcs", _rate(), {}, references=dict(opened, ifupost=str(bad)))
