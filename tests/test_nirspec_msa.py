"""The NIRSpec MSA steps of spec2 against jwst 3.0: msa_flagging, imprint (imprint_subtract) and the
decisions of master_background_mos.

The scene (tests/nirspec_msa_scene.py): a full NRS2 PRISM/CLEAR MSA rate of the real SMACS 0723
configuration (trimmed: four slitlets on NRS2, one of them a background slitlet), its imprint
(leakcal) exposure at the same dither point, the real optical chain, webbflow's synthetic msa
reference and a synthetic msaoper (three stuck-open shutters, two open in every state, one in its
internal state only, and one stuck closed).

jwst's Spec2Pipeline runs once on a level-2 association of the rate and the imprint member
(wavecorr to extract_1d skipped), saving each step's output; each of webbflow's steps runs on
jwst's input of that step and its output is compared with jwst's: every array identical
(SCI, ERR, variances) or within rtol 1e-4 (the imprint subtraction), DQ identical, the step's
status.  The trimmed configuration has no background slitlet on NRS2 (by jwst's rule, a source
name with BKG or BACKGROUND), so jwst's master_background_mos records FAILED and changes nothing;
after a nod subtraction it records SKIPPED.  webbflow makes the same decisions; the master
background computation is compared in tests/test_master_background_mos.py.
webbflow's NRS_MSASPEC branch runs on the same association: its cal is jwst's, whole.
"""

from __future__ import annotations

import json
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from webbflow import models
from webbflow.models.dqflags import PIXEL
from webbflow.tasks import load_all
from webbflow.tasks.base import run_step

import nirspec_msa_scene as scene

load_all()

pytestmark = [pytest.mark.real]

FAILED_OPEN = PIXEL["MSA_FAILED_OPEN"]
WCS_REFTYPES = ("camera", "collimator", "disperser", "fore", "fpa", "msa", "ote", "wavelengthrange")


@pytest.fixture(scope="module")
def msa(tmp_path_factory, real_rules_cache):
    """jwst's Spec2Pipeline and webbflow's NRS_MSASPEC branch on a level-2 association of the rate and its
    imprint member, as far as the steps checked here go (assign_wcs, msa_flagging, imprint, extract_2d,
    srctype, master_background_mos; wavecorr to extract_1d skipped on both sides: those steps are compared
    in tests/test_nirspec_spec2.py and tests/test_nirspec_flat.py).  jwst saves each step's output: the
    inputs and outputs of the step comparisons.  jwst's master_background_mos also runs alone on its
    srctype output marked as nod-subtracted."""
    from jwst.master_background import MasterBackgroundMosStep
    from jwst.pipeline import Spec2Pipeline
    from parity import jwst_offline, quiet_jwst
    from stdatamodels.jwst import datamodels as dm

    from webbflow.flows.calwebb_spec2 import calibrate_exposure, load_level2_asn

    tmp = tmp_path_factory.mktemp("nrs-msa")
    refs = scene.references(tmp)
    rate = scene.msa_rate(tmp)
    imprint = scene.msa_rate(tmp, imprint=True)
    asn = {"asn_type": "spec2", "asn_rule": "Asn_Lv2NRSMSA", "asn_id": "c1000", "asn_pool": "jw02736_pool.csv",
           "program": "02736", "products": [{"name": scene.ROOT, "members": [
               {"expname": rate.name, "exptype": "science"}, {"expname": imprint.name, "exptype": "imprint"}]}]}
    asn_path = tmp / "jw02736-c1000_spec2_00001_asn.json"
    asn_path.write_text(json.dumps(asn))
    jdir, odir = tmp / "jwst", tmp / "webbflow"
    jdir.mkdir()
    odir.mkdir()
    later = ("wavecorr", "flat_field", "pathloss", "barshadow", "photom", "resample_spec", "extract_1d")
    steps = {"assign_wcs": scene.wcs_overrides(refs), "msa_flagging": {"override_msaoper": refs["msaoper"]}}
    steps.update({s: {"skip": True} for s in later})
    ours = {k: {kk: vv for kk, vv in v.items() if vv != "N/A"} for k, v in steps.items()}
    for name in ("assign_wcs", "msa_flagging", "imprint_subtract", "srctype"):
        steps.setdefault(name, {})["save_results"] = True
    out = {k: jdir / f"{scene.ROOT}_{sfx}.fits" for k, sfx in (
        ("assign_wcs", "assign_wcs"), ("msa_flagging", "msa_flagging"), ("imprint", "imprint_subtract"),
        ("srctype", "srctype"), ("mbkg", "cal"))}
    out["mbkg_after_nod"] = tmp / "jwst_mbkg_after_nod.fits"
    with jwst_offline(real_rules_cache, "jwst_0541.pmap"), quiet_jwst(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = Spec2Pipeline(steps=steps, output_dir=str(jdir), save_results=True)
        pipe.prefetch_references = False  # the 2019 rules know nothing of the newer reference types
        pipe.run(str(asn_path))
        nod = dm.open(out["srctype"])
        nod.meta.cal_step.bkg_subtract = "COMPLETE"
        MasterBackgroundMosStep.call(nod).save(out["mbkg_after_nod"])
        _asn, products = load_level2_asn(asn_path)
        members = {k: v for k, v in products[0].items() if k not in ("name", "science")}
        calibrate_exposure(str(products[0]["science"]), members, steps=ours, output_dir=str(odir),
                           product_name=products[0]["name"], asn_info=("jw02736_pool.csv", asn_path.name))
    return SimpleNamespace(tmp=tmp, refs=refs, rate=rate, imprint=imprint, jwst=out,
                           cal=SimpleNamespace(jwst=out["mbkg"], ours=odir / f"{scene.ROOT}_cal.fits"))


_OPENED: dict = {}


def _open(path):
    if path not in _OPENED:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _OPENED[path] = models.open(path)
    return _OPENED[path]


def _same_arrays(step_name, ours, theirs, exact=("err", "var_poisson", "var_rnoise")):
    from parity import compare_arrays, compare_dq

    for name in exact:
        assert np.array_equal(getattr(ours, name), getattr(theirs, name), equal_nan=True), (step_name, name)
    ag = compare_arrays(f"{step_name} data", ours.data, theirs.data, rtol=1e-4)
    assert ag.fraction >= 0.999, str(ag)
    dq = compare_dq(f"{step_name} dq", ours.dq, theirs.dq)
    assert dq.fraction == 1.0, str(dq)


@pytest.mark.parity
def test_msa_flagging_matches_jwst(msa):
    """The failed-open shutters flag the same pixels as jwst's MSAFlagOpenStep, nothing else changes."""
    inp = _open(msa.jwst["assign_wcs"]).copy()
    theirs = _open(msa.jwst["msa_flagging"])
    refs = {k: msa.refs[k] for k in (*WCS_REFTYPES, "msaoper")}
    res = run_step("msa_flagging", inp, {}, references=refs)
    assert res.status == "COMPLETE" and res.model.meta.cal_step.msa_flagging == theirs.meta.cal_step.msa_flagging
    _same_arrays("msa_flagging", res.model, theirs)
    assert np.array_equal(res.model.data, _open(msa.jwst["assign_wcs"]).data)
    # what a user checks: each stuck-open shutter (the internal-state one too) flags a spectrum's
    # worth of pixels, a few rows high and hundreds of columns long, and nothing else is flagged
    flagged = (res.model.dq & FAILED_OPEN) != 0
    assert res.qa["failed open shutters"] == 3
    assert 3 * 1000 < flagged.sum() < 3 * 3000
    rows, cols = np.nonzero(flagged)
    assert cols.max() - cols.min() > 300
    before = _open(msa.jwst["assign_wcs"]).dq
    assert np.array_equal(res.model.dq & ~np.uint32(FAILED_OPEN), before)


@pytest.mark.parity
def test_imprint_matches_jwst(msa):
    """The imprint exposure is subtracted as jwst's ImprintStep subtracts it (SCI, DQ or-ed)."""
    inp = _open(msa.jwst["msa_flagging"]).copy()
    theirs = _open(msa.jwst["imprint"])
    res = run_step("imprint", inp, {"imprint_list": [str(msa.imprint)]})
    assert res.status == "COMPLETE"
    assert res.model.meta.cal_step.imprint == theirs.meta.cal_step.imprint == "COMPLETE"
    _same_arrays("imprint", res.model, theirs)
    # the imprint's pattern is gone: the residual is the science's level, and its flagged pixels are ours
    before = _open(msa.jwst["msa_flagging"]).data
    leak = models.open(msa.imprint).data
    assert np.allclose(res.model.data, before - leak, rtol=1e-6, atol=1e-6)
    assert res.model.dq[101, 500] & 1


def test_imprint_choice_follows_jwst(msa):
    """With several imprint members the one at the exposure's observation and dither point is taken;
    with none matching, or none given, the step is SKIPPED and the data unchanged."""
    from webbflow.tasks.imprint import choose_imprint

    sci = _open(msa.jwst["msa_flagging"])
    other = models.open(msa.imprint)
    other.meta.dither.position_number = 2
    other.meta.filename = "other_rate.fits"
    same = models.open(msa.imprint)
    assert choose_imprint(sci, [other, same]) is same
    assert choose_imprint(sci, [other]) is other  # one member: taken whatever its dither point
    bkg = models.open(msa.imprint)
    bkg.meta.observation.bkgdtarg = True
    other.meta.observation.bkgdtarg = True
    assert choose_imprint(sci, [other, bkg]) is None
    res = run_step("imprint", sci.copy(), {})
    assert res.status == "SKIPPED" and res.model.meta.cal_step.imprint == "SKIPPED"
    assert np.array_equal(res.model.data, sci.data)


@pytest.mark.parity
@pytest.mark.parametrize("case", ["no_background_slit", "after_nod"])
def test_master_background_mos_decisions_match_jwst(msa, case):
    """No background slitlet: FAILED, as jwst records it; after a nod subtraction: SKIPPED.  The slitlets
    are unchanged in both."""
    inp = _open(msa.jwst["srctype"]).copy()
    if case == "after_nod":
        inp.meta.cal_step.bkg_subtract = "COMPLETE"
    theirs = _open(msa.jwst["mbkg" if case == "no_background_slit" else "mbkg_after_nod"])
    res = run_step("master_background_mos", inp, {})
    want = "FAILED" if case == "no_background_slit" else "SKIPPED"
    assert res.model.meta.cal_step.master_background == theirs.meta.cal_step.master_background == want
    assert [s.name for s in res.model.slits] == [s.name for s in theirs.slits]
    assert not any("BKG" in str(s.source_name).upper() for s in theirs.slits)
    for o, t in zip(res.model.slits, theirs.slits):
        assert np.array_equal(o.data, t.data, equal_nan=True) and np.array_equal(o.dq, t.dq)


def test_master_background_mos_decisions_with_background_slitlets(msa):
    """With a background slitlet, a nod subtraction still makes the step SKIPPED; only background slitlets:
    FAILED (no source to subtract from).  The computation itself is compared with jwst's in
    tests/test_master_background_mos.py."""
    inp = _open(msa.jwst["srctype"]).copy()
    inp.slits[0].source_name = "2736_BKG14"
    inp.meta.cal_step.bkg_subtract = "COMPLETE"
    assert run_step("master_background_mos", inp, {}).status == "SKIPPED"
    only = _open(msa.jwst["srctype"]).copy()
    for s in only.slits:
        s.source_name = "background"
    res = run_step("master_background_mos", only, {})
    assert res.model.meta.cal_step.master_background == "FAILED"


def test_bad_inputs_one_line_errors(msa, tmp_path):
    from webbflow.errors import InputFileError, ReferenceFileError

    refs = {k: msa.refs[k] for k in WCS_REFTYPES}
    # msa_flagging before assign_wcs
    with pytest.raises(InputFileError, match="run assign_wcs first"):
        run_step("msa_flagging", models.open(msa.rate), {}, references={**refs, "msaoper": msa.refs["msaoper"]})
    # an msaoper that is not the shutter list
    bad = tmp_path / "bad_msaoper.json"
    bad.write_text(json.dumps({"reftype": "MSAOPER", "shutters": []}))
    with pytest.raises(ReferenceFileError, match="no 'msaoper' list"):
        run_step("msa_flagging", _open(msa.jwst["assign_wcs"]).copy(), {}, references={**refs, "msaoper": str(bad)})
    # an imprint of another shape
    small = models.open(msa.imprint)
    for name in ("data", "dq", "err", "var_poisson", "var_rnoise"):
        setattr(small, name, getattr(small, name)[:100])
    small.meta.filename = "small_rate.fits"
    path = small.save(tmp_path / "small_rate.fits")
    with pytest.raises(InputFileError, match="does not match"):
        run_step("imprint", _open(msa.jwst["msa_flagging"]).copy(), {"imprint_list": [str(path)]})


STPIPE_ONLY = {"pre_hooks", "post_hooks", "output_ext", "output_use_model", "output_use_index", "search_output_file",
               "input_dir"}


@pytest.mark.parity
@pytest.mark.parametrize("name,module,cls_name", [
    ("msa_flagging", "jwst.msaflagopen", "MSAFlagOpenStep"), ("imprint", "jwst.imprint", "ImprintStep"),
    ("master_background_mos", "jwst.master_background", "MasterBackgroundMosStep")])
def test_parameters_and_references_are_jwsts(name, module, cls_name):
    """The steps' parameters are jwst's, with jwst's defaults (imprint's ``imprint_list`` aside: the flow's
    way to hand it the association's imprint members, which jwst passes as a second input; and
    master_background_mos's ``steps``, its sub-steps' settings, which jwst's pipeline step also takes), and they
    declare jwst's reference types."""
    import importlib

    from webbflow.tasks.base import STEPS

    cls = getattr(importlib.import_module(module), cls_name)
    spec = cls.load_spec_file()
    # master_background_mos is a jwst Pipeline: its sub-steps' settings come under "steps"
    jwst_names = {k for k in spec if k not in STPIPE_ONLY | {"steps"} and not k.startswith("override_")}
    ours = STEPS[name].params()
    extra = {"imprint": {"imprint_list"}, "master_background_mos": {"steps"}}.get(name, set())
    our_names = set(type(ours).model_fields) - {"overrides", "output_use_model"} - extra
    assert jwst_names == our_names
    jwst_step = cls()
    for k in jwst_names:
        assert getattr(ours, k) == getattr(jwst_step, k), k
    if name != "master_background_mos":  # a Pipeline: its references are its sub-steps'
        assert set(cls.reference_file_types) <= set(STEPS[name].reftypes)
    assert STEPS[name].jwst_class == cls_name and cls.class_alias == name


@pytest.mark.parity
def test_msa_branch_cal_matches_jwst(msa):
    """webbflow's MSA branch from an association with an imprint member: the cal as jwst's Spec2Pipeline writes
    it, whole (HDUs, keywords, arrays), with the failed-open flags, the imprint subtracted and
    master_background_mos FAILED (no background slitlet) recorded on it."""
    from test_products_whole import compare_fits

    assert msa.cal.ours.exists() and msa.cal.jwst.exists()
    problems: list[str] = []
    compare_fits("cal", msa.cal.ours, msa.cal.jwst, problems)
    assert problems == [], "\n".join(problems)
    cal = _open(msa.cal.ours)
    cs = cal.meta.cal_step
    assert (cs.msa_flagging, cs.imprint, cs.master_background) == ("COMPLETE", "COMPLETE", "FAILED")
    assert any(((s.dq & FAILED_OPEN) != 0).any() for s in cal.slits)


def test_imprint_takes_jwsts_pipeline_name():
    """Spec2Pipeline calls the imprint step ``imprint_subtract``: settings under that name (command line,
    config files, a whole association's steps) reach webbflow's ``imprint`` step."""
    from webbflow.flows.association import steps_by_stage
    from webbflow.flows.stage import resolve_params

    params = resolve_params(["assign_wcs", "imprint", "srctype"], {"imprint_subtract": {"skip": True}})
    assert params["imprint"].skip is True and not params["assign_wcs"].skip
    staged = steps_by_stage({"imprint_subtract": {"skip": True}}, "spec3")
    assert staged["spec2"] == {"imprint": {"skip": True}}
