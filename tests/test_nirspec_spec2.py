"""NIRSpec fixed slits and bright-object TSO in spec2 after assign_wcs, against jwst 3.0: extract_2d,
srctype, wavecorr, pathloss, photom, and the NRS_FIXEDSLIT branch to the cal, s2d and x1d.

References: the real optical chain, wavecorr (jwst_nirspec_wavecorr_0001) and fixed-slit area
(jwst_nirspec_area_0020) from ../shared/data; webbflow's synthetic msa reference; the synthetic
pathloss (PathlossModel, five fixed-slit apertures) and a photom in the real NrsFsPhotomModel's
form with a varying PHOTMJ and response (refs/synthetic_nirspec_spec2.py: the real photom_0014 is a
DUMMY of ones, which would not test the arithmetic).

NIRSpec's flat_field is compared with jwst's step in tests/test_nirspec_flat.py; here jwst and
webbflow both run with flat_field skipped (barshadow skips itself for fixed slits in jwst and is
recorded SKIPPED, as here).

- Fixed slits (PRISM/CLEAR, NRS1, SUBS200A1: the primary slit S200A1 alone, a point source placed
  in it by XOFFSET/YOFFSET): jwst's Spec2Pipeline runs once, saving each step's output; each of
  webbflow's steps runs on jwst's output of the step before and is compared with jwst's: the
  same slits, slit attributes (SLTSTRT/SLTSIZE, source position, SRCTYPE, WAVECOR, PTHLOSS), arrays
  (SCI, ERR, variances, WAVELENGTH, PATHLOSS_PS/UN, PHOTOM_PS/UN) within rtol 1e-4 for >= 99.9 %
  of the pixels, DQ identical, PHOTMJSR and the pixel areas.  Then webbflow's spec2 branch runs from
  the same rate file: its cal, s2d and x1d are compared whole with jwst's (HDUs in order,
  keywords and types, arrays, tables; the R_ reference records aside, which name the override
  paths jwst was given where webbflow names the files).
- Bright-object TSO (S1600A1, SUB2048 32 rows, 3 integrations): the cutout cube, srctype,
  wavecorr and photom, step by step against jwst's steps on the same assign_wcs output.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from nirspec_real import OPTICS, REAL, WCS_NA
from webbflow import models
from webbflow.tasks import load_all
from webbflow.tasks.base import run_step

load_all()

pytestmark = [pytest.mark.real]

ROOT = "jw01234001001_01101_00001_nrs1"
RTOL, MIN_FRACTION = 1e-4, 0.999
ARRAYS = ("data", "err", "var_poisson", "var_rnoise", "wavelength", "pathloss_point", "pathloss_uniform",
          "photom_point", "photom_uniform")
SLIT_ATTRS = ("name", "xstart", "xsize", "ystart", "ysize", "source_id", "shutter_id", "slit_ymin", "slit_ymax",
              "source_xpos", "source_ypos", "source_type", "wavelength_corrected", "pathloss_correction_type")


@pytest.fixture(scope="module")
def refs(tmp_path_factory) -> dict[str, str]:
    from webbflow.refs import synthetic_nirspec_spec2 as syn
    from webbflow.refs.synthetic_nirspec_optics import write_msa_reference

    folder = tmp_path_factory.mktemp("nrs-spec2-refs")
    out = {k: str(v) for k, v in OPTICS.items()}
    out["msa"] = str(write_msa_reference(folder / "webbflow_nirspec_msa.asdf"))
    out["wavecorr"] = str(REAL / "jwst_nirspec_wavecorr_0001.asdf")
    out["area"] = str(REAL / "jwst_nirspec_area_0020.fits")
    out["pathloss"] = str(syn.write_pathloss(folder / "webbflow_nirspec_pathloss_fs.fits", "FS"))
    out["photom"] = str(syn.write_fs_photom(folder / "webbflow_nirspec_photom_fs.fits", REAL / "jwst_nirspec_photom_0014.fits"))
    return out


def _rate(exp_type: str):
    """A PRISM/CLEAR NRS1 exposure with signal and variances: FS on SUBS200A1 (2048 x 64), or BOTS on
    SUB2048 (32 rows, 3 integrations); the pointing of the slit's SIAF aperture, the source moved into
    the slit by the dither offsets (the ground optical model puts the aperture's reference 1.7 slit
    widths off the slit centre)."""
    import pysiaf

    bots = exp_type == "NRS_BRIGHTOBJ"
    shape = (3, 32, 2048) if bots else (64, 2048)
    rng = np.random.default_rng(19)
    m = (models.CubeModel if bots else models.ImageModel)(data=rng.normal(10.0, 1.0, shape).astype(np.float32))
    m.err = np.full(shape, 1.0, np.float32)
    m.dq = np.zeros(shape, np.uint32)
    m.dq[..., 20, 1200] = 4  # a flagged pixel inside the spectra
    m.var_poisson = np.full(shape, 0.6, np.float32)
    m.var_rnoise = np.full(shape, 0.4, np.float32)
    meta = m.meta
    meta.telescope, meta.bunit_data, meta.bunit_err = "JWST", "DN/s", "DN/s"
    ins = meta.instrument
    ins.name, ins.detector, ins.filter, ins.grating = "NIRSPEC", "NRS1", "CLEAR", "PRISM"
    ins.fixed_slit = "S1600A1" if bots else "S200A1"
    ins.gwa_xtilt, ins.gwa_ytilt, ins.gwa_tilt = 0.3358, 0.0337, 37.1
    ex = meta.exposure
    ex.type, ex.readpatt = exp_type, "NRSRAPID"
    ex.nints, ex.ngroups, ex.nframes, ex.groupgap = (3 if bots else 1), 3, 1, 0
    ex.start_time, ex.mid_time, ex.end_time = 59800.0, 59800.0005, 59800.001
    ex.exposure_time = ex.effective_exposure_time = ex.measurement_time = ex.duration = 100.0
    ex.elapsed_exposure_time, ex.integration_time, ex.frame_time, ex.group_time = 100.0, 100.0, 0.9, 0.9
    s = meta.subarray
    if bots:
        s.name, s.xstart, s.ystart, s.xsize, s.ysize = "SUB2048", 1, 947, 2048, 32
    else:
        s.name, s.xstart, s.ystart, s.xsize, s.ysize = "SUBS200A1", 1, 1041, 2048, 64
    s.fastaxis, s.slowaxis = 2, 1
    meta.observation.date, meta.observation.time = "2022-08-01", "12:00:00.000"
    meta.target.source_type = "POINT"
    meta.dither.x_offset, meta.dither.y_offset = (0.0, 0.0) if bots else (0.31, 0.2)
    ap = pysiaf.Siaf("NIRSpec")[f"NRS_{ins.fixed_slit}_SLIT"]
    w = meta.wcsinfo
    w.v2_ref, w.v3_ref = float(ap.V2Ref), float(ap.V3Ref)
    w.v3yangle, w.vparity = float(ap.V3IdlYAngle), int(ap.VIdlParity)
    w.ra_ref, w.dec_ref, w.roll_ref = 53.16, -27.78, 47.3
    w.velosys = -12345.6
    meta.velocity_aberration.scale_factor = 1.00003
    meta.aperture.name = ap.AperName
    if bots:
        from webbflow.refs.sim._common import INT_TIMES_DTYPE

        it = np.zeros(3, dtype=INT_TIMES_DTYPE)
        it["integration_number"] = [1, 2, 3]
        it["int_mid_MJD_UTC"] = 59800.0005 + np.arange(3) * 1e-4
        m.int_times = it
    meta.date = "2026-01-01T00:00:00.000"  # as every exposure has
    return m


def _wcs_overrides(refs) -> dict:
    out = {f"override_{k}": refs[k] for k in (*OPTICS, "msa")}
    out.update({f"override_{k}": "N/A" for k in WCS_NA})
    return out


@pytest.fixture(scope="module")
def fs(refs, tmp_path_factory, real_rules_cache):
    """jwst's Spec2Pipeline on the FS rate (each step's output saved), and webbflow's spec2 branch."""
    from jwst.pipeline import Spec2Pipeline
    from parity import jwst_offline, quiet_jwst
    from webbflow.flows.calwebb_spec2 import calibrate_exposure

    tmp = tmp_path_factory.mktemp("nrs-fs")
    rate = Path(_rate("NRS_FIXEDSLIT").save(tmp / f"{ROOT}_rate.fits"))
    jdir, odir = tmp / "jwst", tmp / "webbflow"
    jdir.mkdir()
    odir.mkdir()
    steps = {name: {"save_results": True} for name in ("assign_wcs", "extract_2d", "srctype", "wavecorr", "pathloss")}
    steps["assign_wcs"].update(_wcs_overrides(refs))
    steps["flat_field"] = {"skip": True}  # checked alone in test_nirspec_flat.py: skipped on both sides here
    steps["barshadow"] = {"skip": True}
    steps["wavecorr"]["override_wavecorr"] = refs["wavecorr"]
    steps["pathloss"]["override_pathloss"] = refs["pathloss"]
    steps["photom"] = {"override_photom": refs["photom"], "override_area": refs["area"]}
    steps["extract_1d"] = {"override_extract1d": "N/A", "override_apcorr": "N/A", "override_psf": "N/A"}
    with jwst_offline(real_rules_cache, "jwst_0541.pmap"), quiet_jwst(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = Spec2Pipeline(steps=steps, output_dir=str(jdir), save_results=True)
        pipe.prefetch_references = False  # the 2019 rules know nothing of the newer reference types
        pipe.run(str(rate))
        ours_steps = {k: {kk: vv for kk, vv in v.items() if kk != "save_results" and not kk.endswith("_psf")}
                      for k, v in steps.items() if k != "barshadow"}
        ours_steps["assign_wcs"] = {k: v for k, v in ours_steps["assign_wcs"].items() if v != "N/A"}
        calibrate_exposure(str(rate), {}, steps=ours_steps, output_dir=str(odir), asn_info=("singleton", "singleton"))
    return SimpleNamespace(tmp=tmp, rate=rate, jwst=jdir, ours=odir, refs=refs)


_OPENED: dict = {}


def _open(path):
    """jwst's products, read once (their WCS takes seconds to read)."""
    if path not in _OPENED:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _OPENED[path] = models.open(path)
    return _OPENED[path]


def _slits(m):
    return list(m.slits) if isinstance(m, models.MultiSlitModel) else [m]


def _compare(step_name, ours, theirs):
    """Slits, attributes, arrays, DQ and photometry keywords of two models; returns the agreement lines."""
    from parity import compare_arrays, compare_dq

    so, st = _slits(ours), _slits(theirs)
    assert [s.name for s in so] == [s.name for s in st], step_name
    report = []
    for o, t in zip(so, st):
        for a in SLIT_ATTRS:
            if a == "source_type" and step_name == "extract_2d":
                # jwst writes the exposure's SRCTYPE into the first slit's SCI header before srctype has
                # typed the slits, and it reads back as that slit's; webbflow's slit has none yet
                continue
            x, y = getattr(o, a), getattr(t, a)
            if isinstance(y, float) and x is not None:
                assert x == pytest.approx(y, rel=1e-9, abs=1e-12), (step_name, o.name, a)
            else:
                assert x == y, (step_name, o.name, a, x, y)
        for name in ARRAYS:
            x = getattr(o, name) if o.has(name) else None
            y = getattr(t, name) if t.has(name) else None
            assert (x is None) == (y is None), (step_name, o.name, name)
            if y is None:
                continue
            ag = compare_arrays(f"{step_name} {o.name} {name}", x, y, rtol=RTOL)
            assert ag.fraction >= MIN_FRACTION, str(ag)
            report.append(ag)
        dq = compare_dq(f"{step_name} {o.name} dq", o.dq, t.dq)
        assert dq.fraction == 1.0, str(dq)
        po, pt = o.meta.photometry, t.meta.photometry
        for f in ("conversion_megajanskys", "conversion_microjanskys", "pixelarea_steradians", "pixelarea_arcsecsq"):
            x, y = getattr(po, f), getattr(pt, f)
            assert (x is None) == (y is None) and (y is None or x == pytest.approx(y, rel=1e-6)), (step_name, f, x, y)
        if getattr(theirs.meta.cal_step, step_name) != "SKIPPED" and step_name == "photom":
            assert o.meta.bunit_data == t.meta.bunit_data, (step_name, o.meta.bunit_data, t.meta.bunit_data)
    assert getattr(ours.meta.cal_step, step_name) == getattr(theirs.meta.cal_step, step_name)
    return report


FS_CHAIN = [("assign_wcs", "extract_2d"), ("extract_2d", "srctype"), ("srctype", "wavecorr"), ("wavecorr", "pathloss"),
            ("pathloss", "photom")]


@pytest.mark.parity
@pytest.mark.parametrize("before,step_name", FS_CHAIN, ids=[s for _b, s in FS_CHAIN])
def test_fs_step_matches_jwst_on_jwst_input(fs, before, step_name):
    """Each step on jwst's output of the step before it gives jwst's output of that step."""
    refs = {k: fs.refs[k] for k in ("wavecorr", "pathloss", "photom", "area")}
    inp = _open(fs.jwst / f"{ROOT}_{before}.fits").copy()  # the steps update their input in place
    theirs = _open(fs.jwst / f"{ROOT}_{step_name if step_name != 'photom' else 'cal'}.fits")
    before_wl = _slits(inp)[0].wavelength.copy() if step_name == "wavecorr" else None
    res = run_step(step_name, inp, {}, references=refs)
    assert res.status == "COMPLETE"
    _compare(step_name, res.model, theirs)
    slit = _slits(res.model)[0]
    # what a user checks: the point source's slit corrected as a point source
    if step_name == "extract_2d":
        assert slit.name == "S200A1" and abs(slit.source_xpos) < 0.5 and abs(slit.source_ypos) < 0.5
    if step_name == "wavecorr":
        shift = np.nanmedian(slit.wavelength - before_wl)
        assert slit.wavelength_corrected and 0 < abs(shift) < 0.05  # microns: a fraction of a pixel
    if step_name == "pathloss":
        assert slit.pathloss_correction_type == "POINT"
        assert 0.3 < np.nanmedian(slit.pathloss_point) < 1.0
    if step_name == "photom":
        assert slit.meta.bunit_data == "MJy" and slit.photom_uniform is not None


@pytest.mark.parity
def test_fs_branch_cal_s2d_x1d_whole(fs):
    """webbflow's NRS_FIXEDSLIT branch from the rate: cal, s2d and x1d as jwst's Spec2Pipeline writes them."""
    from test_products_whole import compare_fits

    problems: list[str] = []
    for sfx in ("cal", "s2d", "x1d"):
        ours, theirs = fs.ours / f"{ROOT}_{sfx}.fits", fs.jwst / f"{ROOT}_{sfx}.fits"
        assert ours.exists(), ours.name
        compare_fits(sfx, ours, theirs, problems)
    assert problems == [], "\n".join(problems)
    cal = _open(fs.ours / f"{ROOT}_cal.fits")
    assert cal.meta.cal_step.flat_field == "SKIPPED" and cal.meta.cal_step.barshadow == "SKIPPED"
    assert cal.meta.cal_step.wavecorr == cal.meta.cal_step.pathloss == cal.meta.cal_step.photom == "COMPLETE"
    s = cal.slits[0]
    flux = s.data[np.isfinite(s.data)]
    assert flux.size > 1000 and s.meta.bunit_data == "MJy"


@pytest.fixture(scope="module")
def bots(refs, tmp_path_factory, real_rules_cache):
    """BOTS: webbflow's assign_wcs output (identical to jwst's, tests/test_nirspec_wcs.py), then jwst's
    extract_2d, srctype, wavecorr and photom on it (the cutout and the photom output saved)."""
    from jwst.extract_2d import Extract2dStep
    from jwst.photom import PhotomStep
    from jwst.srctype import SourceTypeStep
    from jwst.wavecorr import WavecorrStep
    from parity import jwst_offline, quiet_jwst

    tmp = tmp_path_factory.mktemp("nrs-bots")
    wcs_refs = {k: refs[k] for k in (*OPTICS, "msa")}
    assigned = run_step("assign_wcs", _rate("NRS_BRIGHTOBJ"), {}, references=wcs_refs).model
    path = Path(assigned.save(tmp / f"{ROOT}_assign_wcs.fits"))
    with jwst_offline(real_rules_cache, "jwst_0541.pmap"), quiet_jwst(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = Extract2dStep.call(str(path))
        m.save(tmp / "jwst_extract_2d.fits")
        m = SourceTypeStep.call(m)
        m = WavecorrStep.call(m, override_wavecorr=refs["wavecorr"])
        m = PhotomStep.call(m, override_photom=refs["photom"], override_area=refs["area"])
        m.save(tmp / "jwst_photom.fits")
    return SimpleNamespace(path=path, jwst={k: tmp / f"jwst_{k}.fits" for k in ("extract_2d", "photom")}, refs=refs)


@pytest.mark.parity
def test_bots_steps_match_jwst(bots):
    """The BOTS cutout (a SlitModel of the 3 integrations) after extract_2d, and after srctype, wavecorr and
    photom, as jwst's steps make them from the same input."""
    refs = {k: bots.refs[k] for k in ("wavecorr", "photom", "area")}
    model = models.open(bots.path)
    for name in ("extract_2d", "srctype", "wavecorr", "photom"):
        res = run_step(name, model, {}, references=refs)
        assert res.status == "COMPLETE", name
        assert isinstance(res.model, models.SlitModel) and res.model.data.shape[0] == 3
        if name in bots.jwst:
            _compare(name, res.model, _open(bots.jwst[name]))
        model = res.model
    assert model.source_type == "POINT" and model.meta.cal_step.wavecorr == "COMPLETE"
    assert model.int_times is not None and len(model.int_times) == 3
    assert model.meta.bunit_data == "MJy" and model.meta.photometry.pixelarea_arcsecsq == pytest.approx(0.17050274)


@pytest.mark.parity
def test_bad_inputs_one_line_errors(fs):
    from webbflow.errors import InputFileError, ParameterError, ReferenceFileError

    # wavecorr on an exposure not cut into slits
    m = _rate("NRS_FIXEDSLIT")
    m.meta.cal_step.assign_wcs = "COMPLETE"
    with pytest.raises(InputFileError, match="wavecorr takes the slits"):
        run_step("wavecorr", m, {}, references={"wavecorr": fs.refs["wavecorr"]})
    # extract_2d before assign_wcs: skipped, as jwst does
    assert run_step("extract_2d", _rate("NRS_FIXEDSLIT"), {}).status == "SKIPPED"
    # a slit that is not open (SUBS200A1 holds S200A1 alone)
    assigned = _open(fs.jwst / f"{ROOT}_assign_wcs.fits")
    with pytest.raises(ParameterError, match="none of the requested slits"):
        run_step("extract_2d", assigned.copy(), {"slit_names": ["S400A1"]})
    # photom for NIRSpec slits without an area reference, and a pathloss file of the wrong kind
    cut = _open(fs.jwst / f"{ROOT}_srctype.fits")
    with pytest.raises(ReferenceFileError, match="area"):
        run_step("photom", cut.copy(), {}, references={"photom": fs.refs["photom"], "area": "N/A"})
    with pytest.raises(ReferenceFileError, match="PS/UNI"):
        run_step("pathloss", cut.copy(), {}, references={"pathloss": fs.refs["photom"]})


def test_synthetic_pathloss_is_a_pathloss_model_jwst_reads(refs):
    """The synthetic pathloss reference opens in stdatamodels as a PathlossModel with the five fixed-slit
    apertures, a point-source grid over the slit and a uniform vector, and webbflow reads the same."""
    from stdatamodels.jwst import datamodels as dm

    from webbflow.models.nirspec_spec2_refs import pathloss_apertures
    from webbflow.refs.select import open_reference

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = dm.PathlossModel(refs["pathloss"])
        ours = pathloss_apertures(open_reference("pathloss", refs["pathloss"]))
    assert [a.name for a in theirs.apertures] == [a.name for a in ours] == ["S200A1", "S200A2", "S400A1", "S1600A1",
                                                                               "S200B1"]
    for t, o in zip(theirs.apertures, ours):
        assert np.array_equal(t.pointsource_data, o.pointsource_data)
        assert np.array_equal(t.uniform_data, o.uniform_data)
        assert t.pointsource_wcs.crval3 == o.pointsource_wcs["crval3"] and t.pointsource_wcs.cdelt1 == 0.05
    # a centred point source loses more light in a narrow slit, and more at long wavelengths
    s200, s1600 = ours[0].pointsource_data, ours[3].pointsource_data
    assert s200[-1, 10, 10] < s200[0, 10, 10] < 1.0 and s200[-1, 10, 10] < s1600[-1, 10, 10]
