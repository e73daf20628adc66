"""extract_1d's ``use_source_posn`` against jwst 3.0: the box aperture moved to the source's position
(NIRSpec fixed slit and MIRI LRS fixed slit, each on the cal and the s2d).

The scene is the NIRSpec fixed-slit exposure of tests/test_nirspec_spec2.py (PRISM/CLEAR, NRS1,
SUBS200A1, the real optical references), imported from there: jwst's assign_wcs and extract_2d
cut out the S200A1 slit, whose source position (SRCXPOS/SRCYPOS) comes from the dither offsets,
off the slit's centre.  A point source (a Gaussian of 1 pixel sigma across the dispersion) is put
on that cal cutout along the trace the slit WCS gives for that position, and the cutout is
resampled by jwst's ResampleSpecStep into the s2d.  The extract1d reference is a JSON file of the
real files' form: a 5-pixel box (``extract_width``) about the middle of the slit, with no
``use_source_posn`` of its own, so that jwst's NRS_FIXEDSLIT default (on) decides.

jwst's Extract1dStep and webbflow's extract_1d run on the same files with ``use_source_posn``
unset, true and false (the cal: the unresampled slit, the WCS's slit frame in metres) and unset on
the s2d (the resampled slit, in microns); the x1d products are compared whole (HDUs, keywords with
EXTRXSTR/EXTRXSTP/EXTRYSTR/EXTRYSTP, every column).  A second cal has the source moved along the
slit: the moved aperture extracts within a few % of the first cal's flux, the fixed one does not.
"""

from __future__ import annotations

import json
import logging
import warnings
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from test_nirspec_spec2 import ROOT, _rate, _wcs_overrides, refs  # noqa: F401  (refs: the module fixture)

pytestmark = [pytest.mark.real]

WIDTH = 5  # the box, pixels across the dispersion
MOVE = -0.2  # the second cal's source moved this far along the slit (slit-frame units: the slit is 1 long)


def _extract1d_reference(path: Path, ny: int) -> Path:
    ref = {"reftype": "EXTRACT1D", "instrument": "NIRSPEC", "telescope": "JWST", "exp_type": "NRS_FIXEDSLIT",
           "pedigree": "GROUND", "description": "NIRSpec FS S200A1 box (webbflow test)", "author": "webbflow test",
           "useafter": "2015-11-01T00:00:00",
           "apertures": [{"id": "S200A1", "region_type": "target", "dispaxis": 1, "bkg_order": 0,
                          "ystart": 0, "ystop": ny - 1, "extract_width": WIDTH}]}
    path.write_text(json.dumps(ref, indent=4) + "\n")
    return path


def _column_wavelengths(slit):
    ny, nx = slit.data.shape
    yy, xx = np.indices((ny, nx), dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.nanmedian(np.asarray(slit.meta.wcs(xx, yy)[2]), axis=0)


def _put_source(slit, ypos: float, col_wl) -> None:
    """A Gaussian trace (1 pixel sigma, 200 DN/s a column) where the slit WCS puts a source at
    (SRCXPOS, ``ypos``) in the slit at each column's wavelength ``col_wl`` (microns), on a flat
    background; SRCYPOS set to ``ypos``."""
    ny, nx = slit.data.shape
    yy = np.indices((ny, nx), dtype=float)[0]
    s2d = slit.meta.wcs.get_transform("slit_frame", "detector")
    ok = np.isfinite(col_wl)
    _, yc = s2d(np.full(ok.sum(), slit.source_xpos), np.full(ok.sum(), ypos), col_wl[ok] * 1e-6)
    prof = np.zeros((ny, nx))
    prof[:, ok] = 200.0 * np.exp(-0.5 * (yy[:, ok] - yc[None, :]) ** 2) / np.sqrt(2 * np.pi)
    slit.data = (slit.data - 10.0 + prof).astype(np.float32)  # the flat 10 DN/s level taken off
    slit.source_ypos = ypos
    # flat_field (not run) would have given the slit its flat variance: zero for a flat without errors;
    # without it resample_spec's VAR_FLAT, and so every flux extracted from the s2d, is NaN
    slit.var_flat = np.zeros(slit.data.shape, np.float32)


@contextmanager
def _captured(names):
    """The INFO and WARNING messages of the loggers ``names`` (jwst's set to INFO for the while)."""
    lines: list[str] = []

    class _H(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    h = _H(logging.INFO)
    old = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).addHandler(h)
        logging.getLogger(n).setLevel(logging.INFO)
    try:
        yield lines
    finally:
        for n in names:
            logging.getLogger(n).removeHandler(h)
            logging.getLogger(n).setLevel(old[n])


@pytest.fixture(scope="module")
def runs(refs, tmp_path_factory, real_rules_cache):  # noqa: F811
    from jwst.assign_wcs import AssignWcsStep
    from jwst.extract_1d import Extract1dStep
    from jwst.extract_2d import Extract2dStep
    from jwst.resample import ResampleSpecStep
    from parity import jwst_offline, quiet_jwst
    from webbflow.flows.single import run_single_step

    tmp = tmp_path_factory.mktemp("srcposn")
    rate = Path(_rate("NRS_FIXEDSLIT").save(tmp / f"{ROOT}_rate.fits"))
    out = SimpleNamespace(tmp=tmp, jwst={}, ours={}, jwst_log={}, ours_log={})
    with jwst_offline(real_rules_cache, "jwst_0541.pmap"), quiet_jwst(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = AssignWcsStep.call(str(rate), **_wcs_overrides(refs))
        cal = Extract2dStep.call(m)
        slit = cal.slits[0]
        slit.source_type = "POINT"
        y0 = float(slit.source_ypos)
        ref = _extract1d_reference(tmp / "extract1d.json", slit.data.shape[0])
        inputs = {}
        col_wl = _column_wavelengths(slit)
        for tag, ypos in (("cal", y0), ("moved", y0 + MOVE)):
            c = cal.copy()
            _put_source(c.slits[0], ypos, col_wl)
            folder = tmp / tag
            folder.mkdir()
            c.meta.filename = f"{ROOT}_cal.fits"
            inputs[tag] = folder / f"{ROOT}_cal.fits"
            c.save(inputs[tag])
        s2d_dir = tmp / "s2d"
        s2d_dir.mkdir()
        s2d = ResampleSpecStep.call(str(inputs["cal"]))
        inputs["s2d"] = s2d_dir / f"{ROOT}_s2d.fits"
        s2d.save(inputs["s2d"])
        # jwst runs once per distinct product: on this mode use_source_posn=true is its default's product
        # (ours with true is compared with jwst's default), and the moved source with it fixed is ours alone
        runs_ = [("cal", "default", None, True), ("cal", "true", True, False), ("cal", "false", False, True),
                 ("s2d", "default", None, True), ("moved", "default", None, True), ("moved", "false", False, False)]
        for inp, case, value, oracle in runs_:
            key = f"{inp}-{case}"
            jdir, odir = tmp / "jwst" / key, tmp / "ours" / key
            odir.mkdir(parents=True)
            if oracle:
                jdir.mkdir(parents=True)
                with _captured(("jwst.extract_1d.extract", "jwst.extract_1d.source_location")) as lines:
                    Extract1dStep.call(str(inputs[inp]), output_dir=str(jdir), save_results=True, use_source_posn=value,
                                       override_extract1d=str(ref), override_apcorr="N/A", override_psf="N/A")
                out.jwst_log[key] = lines
            params = {"override_extract1d": str(ref), "override_apcorr": "N/A"}
            if value is not None:
                params["use_source_posn"] = value
            with _captured(("webbflow.steps.extract_1d",)) as lines:
                run_single_step("extract_1d", inputs[inp], output_dir=odir, params=params)
            out.ours_log[key] = lines
            name = inputs[inp].name.rsplit("_", 1)[0] + "_extract1dstep.fits"
            out.jwst[key], out.ours[key] = jdir / name, odir / name
    out.jwst["cal-true"] = out.jwst["cal-default"]
    out.y0 = y0
    return out


def _table(path):
    from astropy.io import fits

    with fits.open(path) as f:
        return f["EXTRACT1D"].header.copy(), np.array(f["EXTRACT1D"].data)


@pytest.mark.parity
@pytest.mark.parametrize("key", ["cal-default", "cal-true", "cal-false", "s2d-default", "moved-default"])
def test_x1d_whole_as_jwst(runs, key):
    """The x1d of each case, whole: HDUs, keywords (the aperture's EXTR* limits), every column."""
    from parity import compare_arrays
    from test_products_whole import compare_fits

    ours, theirs = runs.ours[key], runs.jwst[key]
    assert ours.exists() and theirs.exists(), key
    problems: list[str] = []
    compare_fits(key, ours, theirs, problems)
    assert problems == [], "\n".join(problems)
    (ho, to), (ht, tt) = _table(ours), _table(theirs)
    for k in ("EXTRXSTR", "EXTRXSTP", "EXTRYSTR", "EXTRYSTP"):
        assert ho[k] == pytest.approx(ht[k], rel=1e-6, abs=1e-9), k
    for col in tt.dtype.names:
        if tt[col].dtype.kind == "f":
            agree = compare_arrays(col, to[col], tt[col], rtol=1e-4)
            assert agree.fraction >= 0.999, str(agree)


def test_aperture_follows_the_source(runs):
    """Off the slit's centre, the aperture moves to the source (unset or true), not with false; with
    the source moved along the slit, the moved aperture's flux stays within a few % of the first."""
    h = {k: _table(runs.ours[k])[0] for k in runs.ours}
    t = {k: _table(runs.ours[k])[1] for k in runs.ours}
    centre = lambda hdr: (hdr["EXTRYSTR"] + hdr["EXTRYSTP"]) / 2.0  # noqa: E731
    assert abs(runs.y0) > 0.02  # the source is off the slit's centre
    assert abs(centre(h["cal-default"]) - centre(h["cal-false"])) > 1.0
    assert centre(h["cal-true"]) == centre(h["cal-default"])
    # moving the source along the slit moves the aperture by as many pixels
    assert abs(centre(h["moved-default"]) - centre(h["cal-default"])) > 3.0
    assert centre(h["moved-false"]) == centre(h["cal-false"])
    # the resampled slit gives the same source: its moved box holds most of the cal's flux
    s2d = t["s2d-default"]["FLUX"]
    assert np.isfinite(s2d).mean() > 0.9 and np.nansum(s2d) > 0.9 * np.nansum(t["cal-default"]["FLUX"])
    ok = np.isfinite(t["cal-default"]["FLUX"]) & np.isfinite(t["moved-default"]["FLUX"])
    ref = np.nansum(t["cal-default"]["FLUX"][ok])
    assert ref > 0
    assert abs(np.nansum(t["moved-default"]["FLUX"][ok]) / ref - 1) < 0.03
    # the fixed aperture loses most of the moved source
    assert np.nansum(t["moved-false"]["FLUX"][ok]) / ref < 0.5
    # on the centred aperture, nearly all the source's light (a 5-pixel box holds 98.8 % of a 1-pixel Gaussian)
    assert np.nansum(t["cal-default"]["FLUX"][ok]) > np.nansum(t["cal-false"]["FLUX"][ok])


# ---------------------------------------------------------------------------
# MIRI LRS fixed slit: the dithered pointing (DITH_RA/DITH_DEC) through the WCS's inverse


@pytest.fixture(scope="module")
def lrs(tmp_path_factory, real_rules_cache):
    """The LRS nod exposure of tests/test_miri_lrs.py (FULL, the source 1.1" along the slit) after
    webbflow's assign_wcs (real distortion and specwcs) as a point-source cal; jwst's and webbflow's
    extract_1d on it with the real extract1d (jwst_miri_extract1d_0005: an 8-column box, its
    ``use_source_posn`` false) and ``use_source_posn=true``."""
    from jwst.extract_1d import Extract1dStep
    from parity import jwst_offline, quiet_jwst
    from test_miri_lrs import DISTORTION, MIRI_REFS, NOT_USED, _specwcs_with_vertices
    from test_miri_lrs import _rate as lrs_rate
    from webbflow import models
    from webbflow.flows.calwebb_spec2 import as_slit_model
    from webbflow.flows.single import run_single_step
    from webbflow.tasks import load_all
    from webbflow.tasks.base import run_step

    load_all()
    tmp = tmp_path_factory.mktemp("srcposn-lrs")
    rate = lrs_rate("MIR_LRS-FIXEDSLIT", tmp)
    wcs_refs = {"distortion": str(DISTORTION), "specwcs": str(_specwcs_with_vertices("MIR_LRS-FIXEDSLIT", tmp)),
                **dict.fromkeys(NOT_USED, "N/A")}
    m = run_step("assign_wcs", models.open(rate), {}, references=wcs_refs).model
    m.meta.target.source_type = "POINT"
    m.var_flat = np.zeros(m.data.shape, np.float32)  # as flat_field gives it (else the s2d's fluxes are NaN)
    cal = tmp / "jw01234002001_01101_00002_mirimage_cal.fits"
    m.meta.filename = cal.name
    m.save(cal)
    # the s2d: webbflow's resample_spec of the slit (compared with jwst's in tests/test_miri_lrs.py)
    s2d = tmp / "s2d" / cal.name.replace("_cal", "_s2d")
    s2d.parent.mkdir()
    run_step("resample_spec", as_slit_model(models.open(cal)), {}).model.save(s2d)
    ref = MIRI_REFS / "jwst_miri_extract1d_0005.json"
    out = SimpleNamespace(jwst={}, ours={})
    for case, inp, value in (("true", cal, True), ("default", cal, None), ("s2d-true", s2d, True)):
        jdir, odir = tmp / "jwst" / case, tmp / "ours" / case
        jdir.mkdir(parents=True)
        odir.mkdir(parents=True)
        params = {"override_extract1d": str(ref), "override_apcorr": "N/A"}
        if value is not None:
            params["use_source_posn"] = value
        out.ours[case] = odir / (inp.name.rsplit("_", 1)[0] + "_extract1dstep.fits")
        with jwst_offline(real_rules_cache, "jwst_0541.pmap"), quiet_jwst(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run_single_step("extract_1d", inp, output_dir=odir, params=params)
            if value:
                Extract1dStep.call(str(inp), output_dir=str(jdir), save_results=True, use_source_posn=True,
                                   override_extract1d=str(ref), override_apcorr="N/A", override_psf="N/A")
                out.jwst[case] = jdir / out.ours[case].name
    return out


@pytest.mark.parity
def test_lrs_x1d_with_source_posn_whole_as_jwst(lrs):
    """use_source_posn=true on the LRS cal and s2d: the x1d as jwst's, whole; the reference's false
    (the default here) leaves the box at the reference's columns."""
    from test_products_whole import compare_fits

    problems: list[str] = []
    for case in ("true", "s2d-true"):
        compare_fits(f"lrs-{case}", lrs.ours[case], lrs.jwst[case], problems)
    assert problems == [], "\n".join(problems)
    s2d_hdr, s2d_table = _table(lrs.ours["s2d-true"])
    assert np.isfinite(s2d_table["FLUX"]).mean() > 0.9
    # on the s2d the slit spans the reference's columns: the box moved by a few columns to the source
    assert 1.0 < abs(s2d_hdr["EXTRXSTR"] - 28) < 10
    from astropy.io import fits

    moved = _table(lrs.ours["true"])[0]
    # the reference's columns 27..34 are those of an s2d; on the detector the slit is hundreds of columns
    # away: the box went to the source, 8 columns wide
    assert moved["EXTRXSTR"] > 100 and moved["EXTRXSTP"] - moved["EXTRXSTR"] == pytest.approx(7.0)
    # unset, the reference's use_source_posn (false) holds over the mode's default: the box stays at
    # columns 27..34, where the detector has no wavelengths, so no spectrum is extracted
    with fits.open(lrs.ours["default"]) as f:
        assert "EXTRACT1D" not in f


def test_decision_hierarchy_parameter_reference_mode():
    """jwst's order: the parameter, then the reference aperture's value, then the exposure type's
    default; no extract1d reference (N/A) never moves the aperture."""
    from webbflow.tasks.extract_1d import Extract1dParams
    from webbflow.tasks.extract_1d.aperture import extraction_parameters

    def decided(param, aperture_value, exp_type, ref=True):
        aper = {"id": "S200A1", "dispaxis": 1}
        if aperture_value is not None:
            aper["use_source_posn"] = aperture_value
        ep = extraction_parameters({"apertures": [aper]} if ref else None, (20, 100), "S200A1", 1,
                                   Extract1dParams(), exp_type, param)
        return ep["use_source_posn"]

    assert decided(None, None, "NRS_FIXEDSLIT") is True
    assert decided(None, None, "NRS_MSASPEC") is True and decided(None, None, "MIR_LRS-FIXEDSLIT") is True
    assert decided(None, None, "MIR_LRS-SLITLESS") is False and decided(None, None, "NRC_TSGRISM") is False
    assert decided(None, False, "NRS_FIXEDSLIT") is False and decided(None, True, "MIR_LRS-SLITLESS") is True
    assert decided(True, False, "NRS_FIXEDSLIT") is True and decided(False, True, "NRS_FIXEDSLIT") is False
    assert decided(True, True, "NRS_FIXEDSLIT", ref=False) is False


SOURCE_POSN_LINES = ("Turning on source position", "Setting use_source_posn", "to center extraction",
                     "Computed source location", "Nominal location is", "outside the bounding box")


@pytest.mark.parity
@pytest.mark.parametrize("key", ["cal-default", "cal-false", "s2d-default", "moved-default"])
def test_source_position_log_lines_as_jwst(runs, key):
    """What the log says of the source's position, line for line as jwst says it."""
    pick = lambda lines: [ln for ln in lines if any(p in ln for p in SOURCE_POSN_LINES)]  # noqa: E731
    theirs = pick(runs.jwst_log[key])
    assert pick(runs.ours_log[key]) == theirs
    assert any("Computed source location" in ln for ln in theirs) == (key != "cal-false")
