"""NIRSpec flat_field (f-, s- and d-flats with their fast-variation tables) and barshadow against jwst 3.0.

Inputs are made as jwst's users get them: a PRISM/CLEAR rate (rateints for BOTS) with the real
NIRSpec optical chain (see test_nirspec_wcs.py), through jwst's own assign_wcs and extract_2d.  The
flats: for the fixed slits the real (dummy) ``jwst_nirspec_fflat_0017.fits``; for BOTS and the MSA a
synthetic f-flat (a table per fixed slit; per MSA quadrant a per-shutter spectrum); synthetic
s-flats (2-D with a row per slit, 3-D for the MSA) and d-flats of NRS1 and NRS2 (3 wavelength
planes), and a synthetic bar shadow, all in the real files' form (refs/synthetic_nirspec_flat.py).
The same input and references go through webbflow's step and jwst's:

- fixed slits S200A1 (a point source: FLATFIELD_PS and FLATFIELD_UN), S400A1, S1600A1 on NRS1;
  the BOTS cutout (S1600A1, 2 integrations); three MSA slitlets of the trimmed SMACS 0723
  configuration on NRS2 (14, 26, 2);
- barshadow on those MSA slitlets after the flat (one forced POINT: not corrected);
- per slit SCI, ERR, VAR_POISSON, VAR_RNOISE, VAR_FLAT (and the flats, the bar shadow) within
  rtol 1e-4 for >= 99.9 % of pixels, DQ identical, the same slits, and the keywords jwst writes.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_DATA
from webbflow import models
from webbflow.errors import ReferenceFileError
from webbflow.tasks import load_all
from webbflow.tasks.base import run_step

load_all()

pytestmark = [pytest.mark.real]

REAL = SHARED_DATA / "real-refs" / "nirspec"
REAL_FFLAT = REAL / "jwst_nirspec_fflat_0017.fits"
JWST_NA = ("distortion", "filteroffset", "specwcs", "regions", "chromcorr", "ifupost", "ifufore", "ifuslicer")
ARRAYS = ("data", "err", "var_poisson", "var_rnoise", "var_flat")
RTOL, MIN_FRACTION = 1e-4, 0.999


@pytest.fixture(scope="module")
def flat_refs(tmp_path_factory) -> dict[str, str]:
    from webbflow.refs import synthetic_nirspec_flat as sf
    from webbflow.refs.synthetic_nirspec_optics import write_msa_reference

    d = tmp_path_factory.mktemp("nirspec-flat-refs")
    return {
        "msa": str(write_msa_reference(d / "webbflow_nirspec_msa.asdf")),
        "dflat_nrs1": str(sf.write_dflat(d / "webbflow_nirspec_dflat_nrs1.fits", "NRS1")),
        "dflat_nrs2": str(sf.write_dflat(d / "webbflow_nirspec_dflat_nrs2.fits", "NRS2")),
        "sflat_fs": str(sf.write_sflat(d / "webbflow_nirspec_sflat_fs.fits", "NRS_FIXEDSLIT")),
        "sflat_msa": str(sf.write_sflat(d / "webbflow_nirspec_sflat_msa.fits", "NRS_MSASPEC", "NRS2")),
        "fflat_bots": str(sf.write_fflat_fs(d / "webbflow_nirspec_fflat_bots.fits", "NRS_BRIGHTOBJ")),
        "fflat_msa": str(sf.write_fflat_msa(d / "webbflow_nirspec_fflat_msa.fits")),
        "barshadow": str(sf.write_barshadow(d / "webbflow_nirspec_barshadow.fits")),
    }


def _flats_for(exp_type, refs):
    detector = "nrs2" if exp_type == "NRS_MSASPEC" else "nrs1"
    fflat = {"NRS_FIXEDSLIT": str(REAL_FFLAT), "NRS_BRIGHTOBJ": refs["fflat_bots"], "NRS_MSASPEC": refs["fflat_msa"]}
    sflat = refs["sflat_msa"] if exp_type == "NRS_MSASPEC" else refs["sflat_fs"]
    return {"fflat": fflat[exp_type], "sflat": sflat, "dflat": refs[f"dflat_{detector}"]}


def _exposure(exp_type, tmp):
    """The rate (rateints) with signal, variances and a few flagged pixels, its WCS by jwst."""
    from test_nirspec_wcs import _msa_exposure, _rate

    detector = "NRS2" if exp_type == "NRS_MSASPEC" else "NRS1"
    m = _rate("NRS_BRIGHTOBJ" if exp_type == "NRS_BRIGHTOBJ" else "NRS_FIXEDSLIT", detector)
    if exp_type == "NRS_MSASPEC":
        _msa_exposure(m, tmp)
    shape = (2, 32, 2048) if exp_type == "NRS_BRIGHTOBJ" else (2048, 2048)
    if exp_type == "NRS_BRIGHTOBJ":  # two integrations, with their times (extract_2d copies INT_TIMES)
        from webbflow.refs.sim._common import INT_TIMES_DTYPE

        m.meta.exposure.nints = 2
        times = np.zeros(2, dtype=INT_TIMES_DTYPE)
        times["integration_number"] = [1, 2]
        for i, col in enumerate(("start", "mid", "end")):
            times[f"int_{col}_MJD_UTC"] = times[f"int_{col}_BJD_TDB"] = 59800.0 + 0.0002 * (np.arange(2) + i / 2)
        m.int_times = times
    rng = np.random.default_rng(19)
    m.data = (2.0 + rng.random(shape)).astype(np.float32)
    m.dq = np.zeros(shape, np.uint32)
    m.dq[..., ::97, ::89] = 1  # a sprinkle of DO_NOT_USE
    m.var_poisson = (0.02 * m.data).astype(np.float32)
    m.var_rnoise = np.full(shape, 0.003, np.float32)
    m.err = np.sqrt(m.var_poisson + m.var_rnoise)
    suffix = "rateints" if exp_type == "NRS_BRIGHTOBJ" else "rate"
    return Path(m.save(tmp / f"jw01234001001_01101_00001_{detector.lower()}_{suffix}.fits"))


def _run_both(exp_type, refs, cache, tmp):
    """jwst's assign_wcs and extract_2d, then flat_field by webbflow and by jwst on the cutouts."""
    from parity import jwst_offline, quiet_jwst

    from jwst.assign_wcs import AssignWcsStep
    from jwst.extract_2d import Extract2dStep
    from jwst.flatfield import FlatFieldStep

    path = _exposure(exp_type, tmp)
    optics = {**_optics(), "msa": refs["msa"]}
    flats = _flats_for(exp_type, refs)
    with jwst_offline(cache, "jwst_0541.pmap"), quiet_jwst(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wcsd = AssignWcsStep.call(str(path), **{f"override_{k}": v for k, v in optics.items()},
                                  **{f"override_{k}": "N/A" for k in JWST_NA})
        # three slits of each kind keep the run short
        names = {"NRS_FIXEDSLIT": ["S200A1", "S400A1", "S1600A1"], "NRS_MSASPEC": ["14", "26", "2"]}.get(exp_type)
        cut = Extract2dStep.call(wcsd, slit_names=names)
        if exp_type == "NRS_FIXEDSLIT":  # srctype's answer: the primary slit holds a point source
            for s in cut.slits:
                s.source_type = "POINT" if s.name == "S200A1" else "EXTENDED"
        elif exp_type == "NRS_MSASPEC":
            for i, s in enumerate(cut.slits):
                s.source_type = "POINT" if i == 1 else "EXTENDED"
        else:
            cut.source_type = "POINT"
        inp = cut.save(str(tmp / path.name.replace("_rate", "_extract_2d")))
        save = exp_type == "NRS_FIXEDSLIT"  # the interpolated flat, compared for the fixed slits
        theirs = FlatFieldStep.call(cut, **{f"override_{k}": v for k, v in flats.items()},
                                    save_interpolated_flat=save, output_dir=str(tmp / "jwst"))
    ours_dir = tmp / "ours"
    ours_dir.mkdir()
    res = run_step("flat_field", models.open(inp), {"save_interpolated_flat": save, "output_dir": str(ours_dir)},
                   references=flats)
    return {"input": Path(inp), "ours": res, "theirs": theirs, "tmp": tmp, "flats": flats}


def _optics():
    from test_nirspec_wcs import REAL_REFS

    return {k: str(v) for k, v in REAL_REFS.items()}


@pytest.fixture(scope="module")
def fs(flat_refs, real_rules_cache, tmp_path_factory):
    return _run_both("NRS_FIXEDSLIT", flat_refs, real_rules_cache, tmp_path_factory.mktemp("nrs-fs-flat"))


@pytest.fixture(scope="module")
def bots(flat_refs, real_rules_cache, tmp_path_factory):
    return _run_both("NRS_BRIGHTOBJ", flat_refs, real_rules_cache, tmp_path_factory.mktemp("nrs-bots-flat"))


@pytest.fixture(scope="module")
def mos(flat_refs, real_rules_cache, tmp_path_factory):
    return _run_both("NRS_MSASPEC", flat_refs, real_rules_cache, tmp_path_factory.mktemp("nrs-mos-flat"))


def _agree(name, ours, theirs, dq=False):
    from parity import compare_arrays, compare_dq

    assert ours is not None and theirs is not None, name
    ag = compare_dq(name, ours, theirs) if dq else compare_arrays(name, ours, theirs, rtol=RTOL)
    assert ag.fraction >= MIN_FRACTION, str(ag)
    return ag


def _same_slit(label, so, sj, extra=()):
    assert so.name == sj.name
    assert so.data.shape == sj.data.shape
    for a in ARRAYS + tuple(extra):
        _agree(f"{label} {so.name} {a}", getattr(so, a), getattr(sj, a))
    _agree(f"{label} {so.name} dq", so.dq, sj.dq, dq=True)


def _keywords(run, reftypes=("fflat", "sflat", "dflat")):
    ours, theirs = run["ours"].model, run["theirs"]
    assert ours.meta.cal_step.flat_field == theirs.meta.cal_step.flat_field == "COMPLETE"
    for rt in reftypes:
        o = getattr(ours.meta.ref_file, rt).name
        t = getattr(theirs.meta.ref_file, rt).name
        assert Path(o.replace("crds://", "")).name == Path(t.replace("crds://", "")).name, rt
    assert theirs.meta.ref_file.flat.name == ours.meta.ref_file.flat.name == "N/A"


@pytest.mark.parity
def test_fixed_slits_flat_matches_jwst(fs):
    ours, theirs = fs["ours"].model, fs["theirs"]
    assert [s.name for s in ours.slits] == [s.name for s in theirs.slits] == ["S200A1", "S400A1", "S1600A1"]
    for so, sj in zip(ours.slits, theirs.slits):
        point = sj.name == "S200A1"
        _same_slit("FS", so, sj, ("flatfield_point", "flatfield_uniform") if point else ())
        assert so.has("flatfield_point") == point and so.has("flatfield_uniform") == point
    _keywords(fs)
    # the real f-flat is a dummy of ones: the flat is the s-flat times the d-flat, a few per cent about 1
    applied = ours.slits[0].flatfield_point
    ok = np.isfinite(applied)
    assert ok.mean() > 0.5 and 0.95 < np.median(applied[ok]) < 1.05 and 0.005 < np.std(applied[ok]) < 0.1


@pytest.mark.parity
def test_fixed_slits_interpolated_flat_product(fs):
    """``save_interpolated_flat``: the flats that were applied, slit by slit, as jwst writes them
    (``<root>_interpolatedflat.fits``, a MultiSlitModel: SCI, DQ, ERR, WAVELENGTH per slit)."""
    from astropy.io import fits

    mine = sorted((fs["tmp"] / "ours").glob("*interpolatedflat*"))
    theirs = sorted((fs["tmp"] / "jwst").glob("*interpolatedflat*"))
    assert [p.name for p in mine] == [p.name for p in theirs] == ["jw01234001001_01101_00001_nrs1_interpolatedflat.fits"]
    with fits.open(mine[0]) as a, fits.open(theirs[0]) as b:
        assert a[0].header["DATAMODL"] == b[0].header["DATAMODL"] == "MultiSlitModel"
        ext = sorted((h.name, h.ver) for h in b if h.name in ("SCI", "DQ", "ERR", "WAVELENGTH"))
        assert sorted((h.name, h.ver) for h in a if h.name in ("SCI", "DQ", "ERR", "WAVELENGTH")) == ext
        assert len(ext) == 12
        for name, ver in ext:
            assert a[name, ver].header.get("SLTNAME") == b[name, ver].header.get("SLTNAME")
            _agree(f"flat {name},{ver}", a[name, ver].data, b[name, ver].data, dq=name == "DQ")


@pytest.mark.parity
def test_bots_flat_matches_jwst(bots):
    ours, theirs = bots["ours"].model, bots["theirs"]
    assert type(ours).__name__ == type(theirs).__name__ == "SlitModel"
    assert ours.data.shape == theirs.data.shape and ours.data.ndim == 3
    for a in ARRAYS:
        _agree(f"BOTS {a}", getattr(ours, a), getattr(theirs, a))
    _agree("BOTS dq", ours.dq, theirs.dq, dq=True)
    _keywords(bots)
    # every integration is divided by the same flat
    before = models.open(bots["input"]).data
    with np.errstate(invalid="ignore", divide="ignore"):
        flat0, flat1 = before[0] / ours.data[0], before[1] / ours.data[1]
    ok = np.isfinite(flat0) & np.isfinite(flat1)
    assert ok.mean() > 0.5 and np.allclose(flat0[ok], flat1[ok], rtol=1e-5)


@pytest.mark.parametrize("mode", ["bots", "fs", "mos"])
def test_flats_read_at_the_slits_rows_alone(mode, request):
    """The stage flows open the s-flat and d-flat with only the full-frame rows the cutouts cover
    (flat_field's ``reference_rows``, tasks/_lean_refs.py); the step makes from them exactly what it
    makes from the whole files."""
    from webbflow.tasks._lean_refs import open_step_references

    run = request.getfixturevalue(mode)
    model = models.open(run["input"])
    slits = [model] if mode == "bots" else list(model.slits)
    y0 = min(int(s.ystart) - 1 + int(model.meta.subarray.ystart or 1) - 1 for s in slits)
    y1 = max(int(s.ystart) - 1 + int(model.meta.subarray.ystart or 1) - 1 + s.data.shape[-2] for s in slits)
    refs = open_step_references("flat_field", dict(run["flats"]), model)
    for rt in ("sflat", "dflat"):
        assert refs[rt]._rows == (y0, y1), rt
        assert refs[rt].data.shape[-2] == y1 - y0 < 2048, rt
        assert refs[rt].meta.filename == run["flats"][rt]
    assert isinstance(refs["fflat"], str)  # read as before
    res = run_step("flat_field", model, {}, references=refs).model
    whole = run["ours"].model
    pairs = [(res, whole)] if mode == "bots" else list(zip(res.slits, whole.slits))
    for a, b in pairs:
        for name in (*ARRAYS, "dq", "wavelength"):
            assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True), (mode, name)
    assert res.meta.ref_file.dflat.name == whole.meta.ref_file.dflat.name


@pytest.mark.parity
def test_msa_slitlets_flat_matches_jwst(mos):
    ours, theirs = mos["ours"].model, mos["theirs"]
    assert [s.name for s in ours.slits] == [s.name for s in theirs.slits]
    assert [s.name for s in ours.slits] == ["14", "26", "2"]
    for so, sj in zip(ours.slits, theirs.slits):
        assert (so.quadrant, so.xcen, so.ycen) == (sj.quadrant, sj.xcen, sj.ycen)
        _same_slit("MOS", so, sj)
    _keywords(mos)


@pytest.fixture(scope="module")
def mos_barshadow(mos, flat_refs, real_rules_cache):
    """barshadow by each on its own flat-fielded MSA slitlets (the same arrays: see the flat test)."""
    from parity import jwst_offline, quiet_jwst

    from jwst.barshadow import BarShadowStep

    with jwst_offline(real_rules_cache, "jwst_0541.pmap"), quiet_jwst(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = BarShadowStep.call(mos["theirs"], override_barshadow=flat_refs["barshadow"])
    # on the flat test's product (that test is done with it)
    res = run_step("barshadow", mos["ours"].model, {}, references={"barshadow": flat_refs["barshadow"]})
    return res, theirs, mos["tmp"]


@pytest.mark.parity
def test_msa_barshadow_matches_jwst(mos_barshadow):
    res, theirs, _tmp = mos_barshadow
    ours = res.model
    assert res.status == "COMPLETE" and ours.meta.cal_step.barshadow == theirs.meta.cal_step.barshadow == "COMPLETE"
    assert Path(ours.meta.ref_file.barshadow.name.replace("crds://", "")).name == Path(
        theirs.meta.ref_file.barshadow.name.replace("crds://", "")).name
    corrected = 0
    for so, sj in zip(ours.slits, theirs.slits):
        assert so.barshadow_corrected == sj.barshadow_corrected
        _same_slit("barshadow", so, sj, ("barshadow",))
        if sj.barshadow_corrected:
            corrected += 1
            shade = so.barshadow[np.isfinite(so.barshadow)]
            # the bars' shadows: the correction dips well below 1 near them and stays <= 1
            assert shade.min() < 0.8 and shade.max() <= 1.0001
        else:
            assert so.source_type == "POINT" and np.all(so.barshadow == 1)
    assert corrected >= 2 and res.qa["slitlets corrected"] == corrected


def test_barshadow_skips_other_modes(fs):
    res = run_step("barshadow", fs["ours"].model, {})
    assert res.status == "SKIPPED" and res.references == {}


def test_fixed_slit_missing_from_fflat_is_one_line_error(tmp_path):
    """A fixed-slit f-flat without the slit's row (nor ANY): one line naming the file and the slit."""
    from astropy.io import fits

    bad = tmp_path / "fflat_no_s400a1.fits"
    with fits.open(REAL_FFLAT) as h:
        t = h["FAST_VARIATION"].data
        h["FAST_VARIATION"].data = t[np.char.strip(t["slit_name"]) != "S400A1"]
        h.writeto(bad)
    slit = models.SlitModel(data=np.ones((6, 40), np.float32))
    slit.name, slit.xstart, slit.ystart, slit.xsize, slit.ysize = "S400A1", 1000, 1000, 40, 6
    slit.source_type = "EXTENDED"
    slit.wavelength = np.tile(np.linspace(1.0, 2.0, 40, dtype=np.float32), (6, 1))
    m = models.MultiSlitModel(slit)
    m.meta.instrument.name, m.meta.exposure.type = "NIRSPEC", "NRS_FIXEDSLIT"
    m.meta.subarray.xstart = m.meta.subarray.ystart = 1
    m.meta.wcsinfo.dispersion_direction = 1
    with pytest.raises(ReferenceFileError, match="fflat_no_s400a1.fits.*S400A1"):
        run_step("flat_field", m, {}, references={"fflat": str(bad), "sflat": "N/A", "dflat": "N/A"})
    # the other flats absent (N/A): the f-flat alone, a table of ones for S200A1
    slit.name = "S200A1"
    out = run_step("flat_field", m, {}, references={"fflat": str(REAL_FFLAT), "sflat": "N/A", "dflat": "N/A"}).model
    assert out.meta.cal_step.flat_field == "COMPLETE"
    assert np.allclose(out.slits[0].data, 1.0) and np.all(out.slits[0].dq == 0)


@pytest.mark.parity
def test_msa_barshadow_whole_product(mos_barshadow):
    """The MSA product after flat_field and barshadow, saved by each: the same HDUs (SCI, DQ, ERR,
    WAVELENGTH, BARSHADOW, VAR_* per slitlet), keywords and arrays as jwst's."""
    from astropy.io import fits
    from test_products_whole import compare_fits

    res, theirs, tmp = mos_barshadow
    ours = res.model
    mine, jw = tmp / "ours_barshadow.fits", tmp / "jwst_barshadow.fits"
    ours.save(mine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs.save(jw)
    problems: list[str] = []
    compare_fits("MOS barshadow", mine, jw, problems)
    # how the steps were run, not what they made: jwst stamps its version, context and date, and
    # the override paths of the references (compared by name in the tests above)
    provenance = ("CAL_VCS", "CAL_VER", "CRDS_CTX", "CRDS_VER", "DATE", "FILENAME", "R_")
    science = [p for p in problems if not any(f" {k}" in p or f"'{k}" in p for k in provenance)]
    assert science == []
    with fits.open(mine) as a:
        names = [h.name for h in a]
    assert names.count("BARSHADOW") == names.count("SCI") == len(ours.slits)


@pytest.mark.parametrize("states", ["x", "1x1", "11x", "10x1", "x0", "1x00", "0x01"])
def test_shadow_map_for_closed_and_open_neighbours(states):
    """The slitlet's shadow map for shutter states the SMACS slitlets above lack (closed shutters,
    a closed pair), against jwst's assembly of the same reference pieces."""
    from jwst.barshadow.bar_shadow import create_shadow, create_shutter_elements

    from webbflow.refs.synthetic_nirspec_flat import shadow_profiles
    from webbflow.tasks.barshadow import shadow_map

    one, three, _crval1, _cdelt1 = shadow_profiles("PRISM")

    class Ref:
        data1x1, data1x3 = one, three

    theirs = create_shadow(create_shutter_elements(Ref), states)
    ours = shadow_map(one, three, states)
    assert ours.shape == theirs.shape == (500 * len(states) + 500, 101)
    assert np.array_equal(ours, theirs)
    # a closed shutter shades its part of the slitlet (at a trailing one jwst averages the closed
    # centre with the open edge: 0.525), an open one's middle is unshaded; jwst's assembly takes
    # the first shutter as open whatever its state (so does webbflow's, above)
    for i, s in enumerate(states[1:], start=1):
        centre = ours[500 * (i + 1)].mean()
        assert (centre < 0.6) if s == "0" else (centre > 0.9), (states, i, centre)
