"""Synthetic references and the local CRDS context (refs/synthetic.py, refs/context.py, refs/build.py).

What a user checks:

- ``CRDS_PATH=<the folder webbflow built>`` and nothing else: the crds client
  (and so jwst) selects exactly our files for every reference type the mode
  needs, and N/A for the rest;
- every file opens in stdatamodels as the class jwst reads it with;
- the content has the promised structure (hot pixels flagged, gain with
  amplifier structure, a SIAF distortion accurate to 1 mas and invertible to
  1e-3 px, ...);
- adding to a folder writes a new context and keeps the old one;
- STScI's jwst runs calwebb_detector1 (and image2) on a webbflow-simulated
  exposure with CRDS_PATH alone and records our reference files.

crds is queried in a child process whose environment holds CRDS_PATH and no
other CRDS_* variable, which is the situation a user is in.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from webbflow import models
from webbflow.models import dqflags
from webbflow.refs import build as refbuild
from webbflow.refs import context as ctxmod
from webbflow.refs import synthetic

from conftest import REAL

DET, SUB = "NRCB1", "SUB64P"

EXPECTED_CLASS = {
    "mask": "MaskModel", "saturation": "SaturationModel", "superbias": "SuperBiasModel",
    "linearity": "LinearityModel", "dark": "DarkModel", "gain": "GainModel", "readnoise": "ReadnoiseModel",
    "ipc": "IPCModel", "flat": "FlatModel", "area": "PixelAreaModel", "distortion": "DistortionModel",
    "filteroffset": "FilteroffsetModel", "abvegaoffset": "ABVegaOffsetModel", "reset": "ResetModel",
    "rscd": "RSCDModel", "emicorr": "EmiModel",
}
PHOTOM_CLASS = {"NIRCAM": "NrcImgPhotomModel", "NIRISS": "NisImgPhotomModel", "MIRI": "MirImgPhotomModel",
                "FGS": "FgsImgPhotomModel"}
APCORR_CLASS = {"NIRCAM": "NrcImgApcorrModel", "NIRISS": "NisImgApcorrModel", "MIRI": "MirImgApcorrModel",
                "FGS": "FgsImgApcorrModel"}


def make_exposure(instrument="NIRCAM", detector=DET, subarray=SUB, exp_type="NRC_IMAGE", readpatt="RAPID",
                  ngroups=4, nints=1, filt="F200W", pupil="CLEAR", nframes=1, groupgap=0, data=True):
    """An uncal exposure header (and a zero ramp) placed on the SIAF subarray."""
    region = synthetic.siaf_subarray(instrument, detector, subarray)
    shape = (nints, ngroups, region.ysize, region.xsize) if data else (1, 1, 1, 1)
    m = models.Level1bModel(data=np.zeros(shape, dtype=np.uint16))
    meta = m.meta
    meta.telescope = "JWST"
    meta.instrument.name = instrument
    meta.instrument.detector = detector
    meta.instrument.filter = filt
    meta.instrument.pupil = pupil
    if instrument == "NIRCAM":
        meta.instrument.module = detector[3]
        meta.instrument.channel = "LONG" if detector.endswith("LONG") else "SHORT"
    e = meta.exposure
    e.type, e.readpatt, e.ngroups, e.nints, e.nframes, e.groupgap = exp_type, readpatt, ngroups, nints, nframes, groupgap
    s = meta.subarray
    s.name, s.xstart, s.ystart, s.xsize, s.ysize = subarray, region.xstart, region.ystart, region.xsize, region.ysize
    s.fastaxis, s.slowaxis = synthetic.detector_axes(detector)
    cfg = synthetic.exposure_config(m)
    e.frame_time = synthetic.frame_time(cfg)
    e.group_time = e.frame_time * (nframes + groupgap)
    meta.observation.date = "2024-01-15"
    meta.observation.time = "03:00:00.000"
    meta.filename = f"jw01234001001_01101_00001_{detector.lower()}_uncal.fits"
    return m


def crds_parameters(model) -> dict:
    return {k: v for k, v in model.to_flat_dict().items() if isinstance(v, (str, int, float, bool))}


def run_crds(cache, queries, context=None) -> dict:
    """Ask crds in a child process that sees CRDS_PATH=cache and no other CRDS_* variable.

    ``queries``: {label: (parameters, reftypes)} -> {label: {reftype: path or message}},
    plus ``"__context__"``: the context crds uses.
    """
    script = textwrap.dedent(
        """
        import json, sys
        import crds
        from crds.core import heavy_client
        queries = json.loads(sys.stdin.read())
        out = {"__context__": heavy_client.get_processing_mode("jwst")[1]}
        for label, (params, reftypes) in queries.items():
            res = {}
            for rt in reftypes:
                try:
                    res[rt] = crds.getreferences(params, reftypes=[rt], observatory="jwst")[rt]
                except Exception as exc:
                    res[rt] = "ERROR " + str(exc)
            out[label] = res
        print("RESULT" + json.dumps(out))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRDS_")}
    env["CRDS_PATH"] = str(cache)
    if context:
        env["CRDS_CONTEXT"] = context
    p = subprocess.run([sys.executable, "-c", script], input=json.dumps(queries), env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


@pytest.fixture(scope="module")
def nircam_cache(tmp_path_factory):
    d = tmp_path_factory.mktemp("nircam-refs")
    exp = make_exposure()
    path = d / exp.meta.filename
    exp.save(path)
    result = refbuild.build_reference_cache([path], d / "crds")
    return d / "crds", exp, result, result.selections[str(path)]


# ---------------------------------------------------------------------------
# selection through crds with CRDS_PATH alone


def test_crds_path_alone_selects_our_files(nircam_cache):
    cache, exp, result, selected = nircam_cache
    assert result.context == "jwst_0001.pmap" and result.new_context
    wanted = synthetic.mode_reftypes("NIRCAM", "NRC_IMAGE")
    others = ["refpix", "sirskernel", "persat", "trapdensity", "trappars", "drizpars", "emicorr", "reset",
              "rscd", "bkg", "wavelengthrange", "pictureframe", "pars-detector1pipeline", "pars-jumpstep"]
    got = run_crds(cache, {"exp": (crds_parameters(exp), list(wanted) + others)})
    assert got["__context__"] == "jwst_0001.pmap"
    sel = got["exp"]
    for rt in wanted:
        expect = ctxmod.reference_path(cache, selected[rt])
        assert sel[rt] == str(expect), (rt, sel[rt])
        assert Path(sel[rt]).exists()
        assert f"_{rt}_" in Path(sel[rt]).name
    for rt in others:
        assert "N/A" in sel[rt].upper(), (rt, sel[rt])
    # one file per reftype, all written by this build
    assert sorted(Path(sel[rt]) for rt in wanted) == sorted(result.written)


def test_webbflow_selection_agrees(nircam_cache, crds_env):
    cache, exp, _result, selected = nircam_cache
    from webbflow.refs.select import get_reference_paths

    crds_env(cache, mode="auto")
    wanted = synthetic.mode_reftypes("NIRCAM", "NRC_IMAGE")
    paths = get_reference_paths(exp, wanted)
    for rt in wanted:
        assert Path(paths[rt]).resolve() == ctxmod.reference_path(cache, selected[rt]).resolve(), rt


def test_mappings_are_valid_crds_mappings(nircam_cache):
    cache, _exp, result, _sel = nircam_cache
    from crds.core import rmap

    mdir = ctxmod.mappings_dir(cache)
    kinds = {".rmap": rmap.ReferenceMapping, ".imap": rmap.InstrumentContext, ".pmap": rmap.PipelineContext}
    for name in result.mappings:
        text = (mdir / name).read_text()
        # from_string checks the syntax and the sha1sum, as crds does when it loads a mapping
        m = kinds[Path(name).suffix].from_string(text, name)
        assert m.name == name
        assert m.header["sha1sum"] in text
    info = (ctxmod.config_dir(cache) / "server_config").read_text()
    assert "'operational_context': 'jwst_0001.pmap'" in info


# ---------------------------------------------------------------------------
# every file opens in stdatamodels as the class jwst uses


@pytest.fixture(scope="module")
def all_instrument_cache(tmp_path_factory):
    d = tmp_path_factory.mktemp("all-refs")
    exps = [
        make_exposure("NIRISS", "NIS", "SUB64", "NIS_IMAGE", "NISRAPID", 3, filt="CLEAR", pupil="F150W", data=False),
        make_exposure("MIRI", "MIRIMAGE", "SUB64", "MIR_IMAGE", "FAST", 5, 2, filt="F770W", pupil=None, data=False),
        make_exposure("FGS", "GUIDER1", "SUB32CNTR", "FGS_IMAGE", "FGSRAPID", 3, filt=None, pupil=None, data=False),
    ]
    paths = []
    for i, e in enumerate(exps):
        p = d / f"exp{i}_uncal.fits"
        e.save(p)
        paths.append(p)
    paths.append(REAL / "fgs_acq1_guider2_uncal.fits")  # a real flight guider exposure (ACQ1, 128x128)
    result = refbuild.build_reference_cache(paths, d / "crds")
    return d / "crds", paths, result


def _open_strict(path):
    from stdatamodels.jwst import datamodels as dm

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = dm.open(path)
        m.validate()
    return m


def test_every_file_opens_in_stdatamodels(nircam_cache, all_instrument_cache):
    checked = expected = 0
    for cache, result in ((nircam_cache[0], nircam_cache[2]), (all_instrument_cache[0], all_instrument_cache[2])):
        for label, sel in result.selections.items():
            expected += len(sel)
            for rt, name in sel.items():
                path = ctxmod.reference_path(cache, name)
                m = _open_strict(path)
                ins = m.meta.instrument.name
                want = {"photom": PHOTOM_CLASS[ins], "apcorr": APCORR_CLASS[ins]}.get(rt, EXPECTED_CLASS.get(rt))
                if rt == "dark" and ins == "MIRI":
                    want = "DarkMIRIModel"
                assert type(m).__name__ == want, (label, rt, type(m).__name__)
                assert m.meta.reftype.lower() == rt
                assert m.meta.useafter and m.meta.pedigree and m.meta.author and m.meta.description
                # our own models read it back as the class stdatamodels chose
                ours = models.open(path)
                assert type(ours).__name__.lower() == want.lower(), (rt, type(ours).__name__)
                checked += 1
    # NIRCam 15, NIRISS 15, MIRI 17, FGS imaging 14, FGS guider 4
    assert checked == expected == 65


def test_modes_get_the_reftypes_jwst_reads(all_instrument_cache):
    cache, paths, result = all_instrument_cache
    sel = result.selections
    assert set(sel[str(paths[0])]) == set(synthetic.NIR_REFTYPES)  # NIRISS imaging
    miri = set(sel[str(paths[1])])
    assert {"reset", "rscd", "emicorr", "dark", "linearity", "filteroffset"} <= miri and "superbias" not in miri
    assert "filteroffset" not in sel[str(paths[2])]  # FGS imaging has no filter wheel
    assert set(sel[str(paths[3])]) == {"mask", "gain", "readnoise", "flat"}  # calwebb_guider
    # the guider's window moves from exposure to exposure: its references are full frame
    mask = models.open(ctxmod.reference_path(cache, sel[str(paths[3])]["mask"]))
    assert mask.dq.shape == (2048, 2048) and mask.meta.subarray.name == "FULL"
    # MIRI darks are 4-D, per readout pattern, covering the exposure's groups
    dark = models.open(ctxmod.reference_path(cache, sel[str(paths[1])]["dark"]))
    assert dark.data.shape == (2, 5, 64, 72) and dark.meta.exposure.readpatt == "FAST"


# ---------------------------------------------------------------------------
# content


@pytest.fixture(scope="module")
def full_frame_set():
    exp = make_exposure(data=False)
    cfg = synthetic.exposure_config(exp)
    full = replace(cfg, subarray="FULL", xstart=1, ystart=1, xsize=2048, ysize=2048, frame_time=None)
    return synthetic.reference_set(full, reftypes=["mask", "dark", "gain", "superbias", "readnoise", "saturation",
                                                    "linearity", "flat", "area", "photom"]), full


def test_hot_and_warm_pixels_are_flagged(full_frame_set):
    refs, cfg = full_frame_set
    f = dqflags.PIXEL
    dark, mask = refs["dark"], refs["mask"]
    t_last = synthetic.group_times(cfg, cfg.ngroups)[-1]
    rate = dark.data[-1] / t_last  # DN/s (the transient adds < 2 DN over ~43 s)
    hot = (dark.dq & f["HOT"]) > 0
    warm = (dark.dq & f["WARM"]) > 0
    n = hot.size
    print(f"hot {hot.sum()} ({100 * hot.mean():.3f}%), warm {warm.sum()} ({100 * warm.mean():.3f}%)")
    assert 0.0003 < hot.mean() < 0.002 and 0.001 < warm.mean() < 0.01
    assert np.all(rate[hot] > 0.9) and np.median(rate[~hot & ~warm]) < 0.05
    assert np.all(rate[warm] > 0.04) and np.all(rate[warm] < 1.0)
    # the mask flags the same pixels, hot ones as DO_NOT_USE
    assert np.array_equal((mask.dq & f["HOT"]) > 0, hot)
    assert np.all(mask.dq[hot] & f["DO_NOT_USE"])
    assert np.array_equal((mask.dq & f["WARM"]) > 0, warm)
    # the 4-pixel reference border, and a DQ_DEF naming every flag used
    border = np.ones((2048, 2048), bool)
    border[4:-4, 4:-4] = False
    assert np.all(mask.dq[border] & f["REFERENCE_PIXEL"]) and not np.any(mask.dq[~border] & f["REFERENCE_PIXEL"])
    names = {r["NAME"].decode().strip() if isinstance(r["NAME"], bytes) else r["NAME"].strip() for r in mask.dq_def}
    used = {k for k, v in f.items() if v and np.any(mask.dq & v)}
    assert used <= names
    assert (mask.dq & f["DEAD"]).astype(bool).sum() > 0 and n > 0


def test_gain_bias_noise_have_detector_structure(full_frame_set):
    refs, _cfg = full_frame_set
    g = refs["gain"].data
    amps = [g[4:-4, 4 + 512 * i: 512 * (i + 1) - 4].mean() for i in range(4)]
    print("gain per amplifier", [round(float(a), 4) for a in amps])
    assert all(1.5 < a < 2.5 for a in amps)
    assert (max(amps) - min(amps)) / np.mean(amps) > 0.005  # amplifiers differ
    # smooth spatial variation inside one amplifier, beyond pixel scatter
    quad = g[4:1024, 4:512]
    assert abs(quad[:100].mean() - quad[-100:].mean()) / quad.mean() > 0.0005 or quad.std() / quad.mean() > 0.006
    b = refs["superbias"].data
    assert 10000 < np.median(b) < 16000
    cols = b[4:-4].mean(axis=0)
    assert np.abs(np.diff(cols[4:-4])).mean() > 5  # column structure
    assert abs(cols[5:-5:2].mean() - cols[4:-4:2].mean()) > 1  # even/odd columns
    rn = refs["readnoise"].data
    assert 5 < np.median(rn) < 15
    sat = refs["saturation"].data
    good = np.isfinite(sat)
    assert np.all(sat[good] <= 65000) and np.all(sat[good] > b[good] + 30000)
    assert np.all(refs["saturation"].dq[~good] & dqflags.PIXEL["NO_SAT_CHECK"])


def test_linearity_flat_photom_area(full_frame_set):
    refs, _cfg = full_frame_set
    c = refs["linearity"].coeffs
    assert c.shape[0] == 5 and np.allclose(c[1][np.isfinite(c[1])], 1.0)
    raw = 30000.0
    corr = np.nansum([c[i][1000:1010, 1000:1010] * raw**i for i in range(5)], axis=0)
    frac = corr / raw - 1
    print(f"non-linearity at 30000 DN: {100 * frac.mean():.2f}%")
    assert np.all((frac > 0.02) & (frac < 0.12))
    flat = refs["flat"].data
    sci = flat[4:-4, 4:-4]
    assert abs(np.nanmedian(sci) - 1) < 0.01 and 0.005 < np.nanstd(sci) < 0.05
    assert np.all(np.isnan(flat[(refs["flat"].dq & dqflags.PIXEL["NO_FLAT_FIELD"]) > 0]))
    low = (refs["flat"].dq & dqflags.PIXEL["LOW_QE"]) > 0
    assert low.any() and np.nanmax(flat[low]) < 0.8
    ph = refs["photom"]
    rows = [r for r in ph.phot_table if r["filter"].strip() in (b"F200W", "F200W") and r["pupil"].strip() in (b"CLEAR", "CLEAR")]
    assert len(rows) == 1 and 0.05 < rows[0]["photmjsr"] < 50 and rows[0]["uncertainty"] > 0
    ap = synthetic.siaf_aperture(synthetic.detector_spec("NIRCAM", DET))
    scale2 = ap.XSciScale * ap.YSciScale
    area = refs["area"]
    assert abs(area.meta.photometry.pixelarea_arcsecsq / scale2 - 1) < 0.02
    assert math.isclose(area.meta.photometry.pixelarea_steradians,
                        area.meta.photometry.pixelarea_arcsecsq * (math.pi / 180 / 3600) ** 2, rel_tol=1e-9)
    a = area.data
    assert 0.97 < a.min() < 1.0 < a.max() < 1.03
    iy, ix = int(round(ap.YSciRef)) - 1, int(round(ap.XSciRef)) - 1
    assert abs(a[iy, ix] - 1) < 1e-3


@pytest.mark.parametrize("instrument,detector", [("NIRCAM", "NRCB1"), ("NIRCAM", "NRCALONG"), ("NIRISS", "NIS"),
                                                 ("MIRI", "MIRIMAGE"), ("FGS", "GUIDER2")])
def test_distortion_matches_siaf(instrument, detector):
    spec = synthetic.detector_spec(instrument, detector)
    ap = synthetic.siaf_aperture(spec)
    tr = synthetic.distortion_transform(spec)
    # the reference pixel (1-based SIAF sci frame; our frame is 0-based) lands on V2Ref/V3Ref
    v2, v3 = tr(ap.XSciRef - 1, ap.YSciRef - 1)
    err_mas = 1000 * math.hypot(v2 - ap.V2Ref, v3 - ap.V3Ref)
    ny, nx = spec.shape
    x, y = np.meshgrid(np.linspace(0, nx - 1, 33), np.linspace(0, ny - 1, 33))
    v2g, v3g = tr(x, y)
    v2s, v3s = ap.sci_to_tel(x + 1, y + 1)  # pysiaf's own transform (planar Idl2Tel)
    siaf_mas = 1000 * np.hypot(v2g - v2s, v3g - v3s).max()
    xb, yb = tr.inverse(v2g, v3g)
    rt_px = np.hypot(xb - x, yb - y).max()
    print(f"{detector}: ref pixel {err_mas:.3g} mas, vs pysiaf {siaf_mas:.3g} mas, round trip {rt_px:.2e} px")
    assert err_mas < 1.0
    assert siaf_mas < 1.0
    assert rt_px < 1e-3


def test_subarrays_are_cut_from_one_full_frame_and_deterministic(full_frame_set):
    refs, _full = full_frame_set
    exp = make_exposure(data=False)
    sub = synthetic.reference_set(exp, reftypes=["gain", "superbias", "mask", "flat", "linearity"])
    s = exp.meta.subarray
    win = (slice(s.ystart - 1, s.ystart - 1 + s.ysize), slice(s.xstart - 1, s.xstart - 1 + s.xsize))
    for rt in ("gain", "superbias", "flat"):
        assert np.array_equal(sub[rt].data, refs[rt].data[win], equal_nan=True), rt
    assert np.array_equal(sub["mask"].dq, refs["mask"].dq[win])
    assert np.array_equal(sub["linearity"].coeffs, refs["linearity"].coeffs[:, win[0], win[1]], equal_nan=True)
    assert (sub["gain"].meta.subarray.xstart, sub["gain"].meta.subarray.ystart) == (s.xstart, s.ystart)
    again = synthetic.reference_set(exp, reftypes=["gain", "mask"])
    assert np.array_equal(again["gain"].data, sub["gain"].data) and np.array_equal(again["mask"].dq, sub["mask"].dq)
    other = synthetic.reference_set(exp, seed=1, reftypes=["gain"])
    assert not np.array_equal(other["gain"].data, sub["gain"].data)


def test_unsupported_mode_is_a_clear_error():
    from webbflow.errors import UnsupportedModeError

    exp = make_exposure(data=False)
    exp.meta.instrument.name = "NIRSPEC"
    exp.meta.instrument.detector = "NRS1"
    with pytest.raises(UnsupportedModeError, match="NIRSPEC"):
        synthetic.reference_set(exp)


# ---------------------------------------------------------------------------
# adding to a cache makes a new context and keeps the old


def test_adding_a_detector_writes_a_new_context(tmp_path):
    cache = tmp_path / "crds"
    a = make_exposure(data=False)
    b = make_exposure(detector="NRCA3", subarray="SUB64P", data=False)
    r1 = refbuild.build_reference_cache([a], cache)
    pmap1 = ctxmod.mappings_dir(cache) / "jwst_0001.pmap"
    text1 = pmap1.read_text()
    r2 = refbuild.build_reference_cache([b], cache)
    assert (r1.context, r2.context) == ("jwst_0001.pmap", "jwst_0002.pmap") and r2.new_context
    assert pmap1.read_text() == text1  # the old context is untouched
    assert ctxmod.list_contexts(cache) == ["jwst_0001.pmap", "jwst_0002.pmap"]
    assert ctxmod.current_context(cache) == "jwst_0002.pmap"
    # the same exposures again: nothing new
    r3 = refbuild.build_reference_cache([a, b], cache)
    assert r3.context == "jwst_0002.pmap" and not r3.new_context and not r3.written
    # a longer exposure needs a longer dark: a new dark and a new context; the old dark stays in 0002
    a_long = make_exposure(ngroups=9, data=False)
    r4 = refbuild.build_reference_cache([a_long], cache)
    assert r4.context == "jwst_0003.pmap"
    assert [p.name for p in r4.written] == ["jwst_nircam_dark_0003.fits"]
    assert models.open(r4.written[0]).data.shape[0] == 9

    rt = ["dark", "gain", "flat"]
    pa, pb, plong = crds_parameters(a), crds_parameters(b), crds_parameters(a_long)
    new = run_crds(cache, {"a": (pa, rt), "b": (pb, rt), "long": (plong, rt)})
    old = run_crds(cache, {"a": (pa, rt), "b": (pb, rt)}, context="jwst_0001.pmap")
    mid = run_crds(cache, {"a": (pa, ["dark"])}, context="jwst_0002.pmap")
    assert new["__context__"] == "jwst_0003.pmap" and old["__context__"] == "jwst_0001.pmap"
    assert Path(old["a"]["gain"]).name == Path(new["a"]["gain"]).name == r1.selections[a.meta.filename]["gain"]
    assert "ERROR" in old["b"]["dark"] or "NOT FOUND" in old["b"]["dark"]  # NRCA3 was not in jwst_0001
    assert Path(new["b"]["dark"]).name == r2.selections[b.meta.filename]["dark"]
    assert Path(mid["a"]["dark"]).name == "jwst_nircam_dark_0001.fits"
    assert Path(new["a"]["dark"]).name == Path(new["long"]["dark"]).name == "jwst_nircam_dark_0003.fits"


def test_cli_refs_build(tmp_path, capsys):
    from webbflow.flows.cli import main

    exp = make_exposure(data=False)
    f = tmp_path / "jw01234001001_01101_00001_nrcb1_uncal.fits"
    exp.save(f)
    rc = main(["refs", "build", "--for", str(f), "--output-dir", str(tmp_path / "crds")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "context: jwst_0001.pmap (new context)" in out
    wrote = [ln.split(None, 1)[1] for ln in out.splitlines() if ln.startswith("wrote")]
    assert len(wrote) == 15 and all(Path(p).exists() for p in wrote)
    rc = main(["refs", "build", "--for", str(f), "--output-dir", str(tmp_path / "crds")])
    out = capsys.readouterr().out
    assert "jwst_0001.pmap (context unchanged)" in out and "wrote" not in out
    rc = main(["refs", "build", "--for", str(tmp_path / "missing.fits"), "--output-dir", str(tmp_path / "c2")])
    assert rc != 0 and "missing.fits" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# Done when: jwst runs calwebb_detector1 with CRDS_PATH alone and records our files


def _uniform_uncal(template_path: Path, out: Path, rate: float, seed: int = 0) -> Path:
    """An exposure with the simulated one's header and a uniform illumination of ``rate`` DN/s."""
    m = models.open(template_path)
    cfg = synthetic.exposure_config(m)
    truth = synthetic.detector_truth(cfg.instrument, cfg.detector, seed)
    sl = cfg.region.slices
    nints, ng, ny, nx = m.data.shape
    t = synthetic.group_times(cfg, ng)
    sig = rate * t[:, None, None] + synthetic.dark_ramp(cfg, truth, cfg.region, ng)
    sig[:, ~truth.science[sl]] = 0.0
    rng = np.random.default_rng(5)
    ramp = truth.bias[sl][None] + sig + rng.normal(0, 1, sig.shape) * truth.readnoise[sl][None]
    m.data = np.clip(np.round(ramp), 0, 65535).astype(np.uint16)[None].repeat(nints, 0)
    m.save(out)
    return out


@pytest.mark.slow
def test_jwst_detector1_with_crds_path_alone(tmp_path):
    pytest.importorskip("jwst")
    from stdatamodels.jwst import datamodels as dm

    from webbflow.refs.simulator import simulate

    obs = tmp_path / "obs"
    sim = simulate(obs, instrument="nircam", detector=DET, subarray=SUB, ngroups=4, nexp=1, seed=3)
    uncal = Path(sim.uncal[0])
    assert sim.context == ctxmod.current_context(obs)
    flat_uncal = _uniform_uncal(uncal, obs / "jw01234001001_02101_00002_nrcb1_uncal.fits", rate=2000.0)
    again = refbuild.build_reference_cache([flat_uncal], obs)  # same configuration: the same files, no new context
    assert again.context == sim.context and not again.new_context and not again.written
    selected = next(iter(again.selections.values()))

    script = textwrap.dedent(
        f"""
        from jwst.pipeline import Detector1Pipeline, Image2Pipeline
        for name in ({uncal.name!r}, {flat_uncal.name!r}):
            Detector1Pipeline.call(name, save_results=True)
        Image2Pipeline.call({uncal.name.replace('_uncal', '_rate')!r}, save_results=True)
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRDS_")}
    env["CRDS_PATH"] = str(obs)
    p = subprocess.run([sys.executable, "-c", script], cwd=obs, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-4000:]
    assert "CRDS - ERROR" not in p.stdout + p.stderr

    rate = dm.open(obs / uncal.name.replace("_uncal", "_rate"))
    assert rate.meta.ref_file.crds.context_used == sim.context
    for rt in ("mask", "saturation", "superbias", "ipc", "linearity", "dark", "gain", "readnoise"):
        assert getattr(rate.meta.ref_file, rt).name == "crds://" + selected[rt], rt
    steps = rate.meta.cal_step
    for s in ("dq_init", "saturation", "ipc", "superbias", "refpix", "linearity", "dark_sub", "jump", "ramp_fit"):
        assert getattr(steps, s) == "COMPLETE", s

    cal = dm.open(obs / uncal.name.replace("_uncal", "_cal"))
    for rt in ("distortion", "filteroffset", "flat", "photom", "area"):
        assert getattr(cal.meta.ref_file, rt).name == "crds://" + selected[rt], rt
    for s in ("assign_wcs", "flat_field", "photom"):
        assert getattr(cal.meta.cal_step, s) == "COMPLETE", s

    # the references describe the detector consistently: bias + dark + a uniform 2000 DN/s, calibrated by
    # jwst with them, comes back as 2000 DN/s (read noise alone: ~0.1 % on the median of 4096 pixels)
    flat_rate = dm.open(obs / flat_uncal.name.replace("_uncal", "_rate"))
    good = (flat_rate.dq & dqflags.PIXEL["DO_NOT_USE"]) == 0
    med = float(np.median(flat_rate.data[good]))
    print(f"uniform 2000 DN/s exposure: jwst rate median {med:.3f} DN/s over {good.sum()} pixels")
    assert abs(med / 2000.0 - 1) < 0.01


def test_refuses_a_cache_it_did_not_build(real_rules_cache):
    from webbflow.errors import ParameterError

    with pytest.raises(ParameterError, match="did not build"):
        refbuild.build_reference_cache([make_exposure(data=False)], real_rules_cache)


def test_source_catalog_and_miri_tables():
    refs = synthetic.reference_set(make_exposure(data=False), reftypes=["apcorr", "abvegaoffset"])
    t = refs["apcorr"].apcorr_table
    rows = t[(t["filter"] == b"F200W") & (t["pupil"] == b"CLEAR")]
    ee = rows["eefraction"]
    assert {30, 50, 70} <= set(np.round(ee * 100).astype(int))  # source_catalog's default aperture_ee
    assert np.all(np.diff(rows["radius"]) > 0) and np.allclose(rows["apcorr"], 1 / ee, rtol=1e-6)
    assert len(set(rows["skyin"])) == 1 and rows["skyout"][0] > rows["skyin"][0] > rows["radius"].max()
    ab = refs["abvegaoffset"]._asdf_extra["abvega_offset"]
    off = {(r["filter"], r["pupil"]): r["abvega_offset"] for r in ab}
    assert 1.4 < off[("F200W", "CLEAR")] < 2.0 and off[("F200W", "CLEAR")] > off[("F150W", "CLEAR")] > off[("F090W", "CLEAR")]

    miri = make_exposure("MIRI", "MIRIMAGE", "SUB64", "MIR_IMAGE", "FAST", 6, 2, filt="F770W", pupil=None, data=False)
    mr = synthetic.reference_set(miri, reftypes=["reset", "rscd", "emicorr", "photom"])
    reset = mr["reset"].data
    assert reset.shape == (2, 6, 64, 72)
    col = reset[0, :, 10, 10]
    assert np.all(np.diff(col) < 0) and col[0] > 10  # a decaying reset anomaly
    skip = [r for r in mr["rscd"].rscd_group_skip_table if r["subarray"] == b"SUB64" and r["readpatt"] == b"FAST"]
    assert len(skip) == 1
    cases = mr["emicorr"]._asdf_extra["subarray_cases"]
    assert "SUB64" in cases and "FULL_FAST" in cases and "FULL_SLOW" in cases
    assert cases["FULL_FAST"]["frameclocks"] * 10e-6 == pytest.approx(2.77504)  # MIRI's full-frame FAST frame time
    ph = mr["photom"].phot_table
    assert len([r for r in ph if r["filter"] == b"F770W" and r["subarray"] == b"SUB64"]) == 1
