"""Reprocessing on new reference files: synthetic contexts end to end, and real 2019 CRDS rules."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from webbflow import models
from webbflow.flows import reprocess as rp
from webbflow.refs import context as ctxmod

from conftest import REAL

NRCA = ["jw01234001001_02101_00001_nrca1", "jw01234001001_02101_00002_nrca1"]
NRCB = "jw01234002001_02101_00001_nrcb1"
L3 = "jw01234-o001_t001_nircam_clear-f200w"


def new_reference(cache: Path, reftype: str, detector: str, change, description: str,
                  instrument: str = "nircam", used: str | None = None) -> tuple[str, str, str]:
    """Deliver a modified reference for one detector (or in place of the file ``used``) through the local
    context writer: returns (old, new, pmap)."""
    cur = ctxmod.read_context(cache)
    rm = cur.rmaps[instrument.upper()][reftype]
    key = next(k for k in rm.entries if (rm.entries[k] == used if used else detector in k))
    old = rm.entries[key]
    src = ctxmod.reference_path(cache, old)
    new = ctxmod.next_name(ctxmod.references_dir(cache, instrument), f"jwst_{instrument}_{reftype}_", src.suffix)
    if change is None:  # a re-delivery under a new name
        ctxmod.reference_path(cache, new).write_bytes(src.read_bytes())
    else:
        m = models.open(src)
        change(m)
        m.save(ctxmod.reference_path(cache, new))
    rm.entries[key] = new
    w = ctxmod.write_context(cache, cur.rmaps, description)
    assert w.created
    return old, new, w.context


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.fits")}


@contextmanager
def crds_cache(path: Path):
    """CRDS pointed at the cache ``path`` (its newest context) for a module's fixture; the settings
    before are restored after."""
    import webbflow.refs.select as sel

    saved = {k: os.environ.get(k) for k in ("CRDS_PATH", "CRDS_CONTEXT", "CRDS_MODE")}
    os.environ["CRDS_PATH"] = str(path)
    os.environ.pop("CRDS_CONTEXT", None)
    sel.reset_crds_state()
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        sel.reset_crds_state()


@pytest.fixture(scope="module")
def observation(tmp_path_factory):
    """Two NRCA1 exposures and one NRCB1 exposure (64x64, 3 groups), processed to cal under jwst_0002."""
    from webbflow.flows.association import run_association
    from webbflow.refs.simulator import simulate

    base = tmp_path_factory.mktemp("reprocess")
    raw, prod = base / "raw", base / "products"
    a = simulate(raw, instrument="nircam", detector="nrca1", size=64, ngroups=3, nexp=2, seed=1)
    b = simulate(raw, instrument="nircam", detector="nrcb1", size=64, ngroups=3, nexp=1, seed=2, observation=2)
    assert (a.context, b.context) == ("jwst_0001.pmap", "jwst_0002.pmap")
    for p in a.asn_level2 + b.asn_level2 + [a.asn_level3, b.asn_level3]:
        p.unlink()  # they name _rate/_cal members; this test's association starts from the raw files
    asn = {"asn_type": "image3", "asn_rule": "candidate_Asn_Lv3Image", "asn_pool": "jw01234_pool",
           "products": [{"name": L3, "members": [{"expname": u.name, "exptype": "science"} for u in a.uncal + b.uncal]}]}
    (raw / "jw01234-o001_image3_asn.json").write_text(json.dumps(asn))
    with crds_cache(raw):
        res = run_association(raw / "jw01234-o001_image3_asn.json", output_dir=prod, stage3=False, max_workers=1)
        assert all(m.ok for m in res.members), [m.error for m in res.members]
        yield raw, prod


def test_new_flat_redoes_only_image2_of_that_detector(observation, crds_env):
    raw, prod = observation
    crds_env(raw)
    cal_b = prod / f"{NRCB}_cal.fits"
    before_b = models.open(cal_b)
    assert before_b.meta.ref_file.crds.context_used == "jwst_0002.pmap"
    old, new, pmap = new_reference(raw, "flat", "NRCB1", lambda m: setattr(m, "data", m.data * 1.25),
                                   "a brighter NRCB1 flat")
    assert pmap == "jwst_0003.pmap" and rp.newest_context() == pmap

    # dry run: the plan, and nothing written but the report
    t0 = _mtimes(prod)
    plan = rp.run_reprocess(str(prod), dry_run=True)
    assert _mtimes(prod) == t0
    assert plan["context"] == pmap and plan["summary"]["redone"] == 1 and plan["summary"]["unchanged"] == 2
    by_root = {e["root"]: e for e in plan["exposures"]}
    assert by_root[NRCB]["redo_from"] == "image2"
    assert by_root[NRCB]["changed"] == {"flat": {"stage": "image2", "old": old, "new": new}}
    assert all(by_root[r]["redo_from"] is None and by_root[r]["changed"] == {} for r in NRCA)

    rep = rp.run_reprocess(str(prod))  # default context: the newest
    after = _mtimes(prod)
    redone = {n for n in after if after[n] != t0.get(n)}
    assert redone == {f"{NRCB}_cal.fits", f"{NRCB}_i2d.fits"}, "only NRCB1's image2 products are rewritten"
    cal = models.open(cal_b)
    assert cal.meta.ref_file.crds.context_used == pmap
    assert cal.meta.ref_file.flat.name.endswith(new)
    good = np.isfinite(cal.data) & np.isfinite(before_b.data) & (np.abs(before_b.data) > 1e-3)
    ratio = np.median(cal.data[good] / before_b.data[good])
    print(f"cal ratio new/old flat: {ratio:.5f} (expected 0.8)")
    assert ratio == pytest.approx(0.8, rel=1e-4)
    # the detector1 provenance is kept; image2's now names the new context
    recs = rp.provenance_records(cal)
    assert recs["detector1"]["crds_context"] == "jwst_0002.pmap" and recs["image2"]["crds_context"] == pmap

    # the report, as files and as returned
    j = json.loads(Path(rep["report_json"]).read_text())
    assert j["summary"] == rep["summary"] and j["summary"]["redone"] == 1
    entry = next(e for e in j["exposures"] if e["root"] == NRCB)
    assert sorted(Path(p).name for p in entry["redone"]) == [f"{NRCB}_cal.fits", f"{NRCB}_i2d.fits"]
    md = Path(rep["report_markdown"]).read_text()
    assert f"| {NRCB} | image2 | jwst_0002.pmap | flat | `{old}` | `{new}` |" in md
    assert all(r in md.split("## Unchanged")[1] for r in NRCA)
    # rerunning finds nothing more to do
    again = rp.run_reprocess(str(prod), dry_run=True)
    assert again["summary"]["redone"] == 0


def test_new_dark_redoes_detector1_onwards_and_stage3(observation, crds_env):
    raw, prod = observation
    crds_env(raw)
    rates = {r: models.open(prod / f"{r}_rate.fits") for r in NRCA}
    old, new, pmap = new_reference(raw, "dark", "NRCA1", lambda m: setattr(m, "data", m.data + 20.0),
                                   "NRCA1 dark with 20 DN more")

    # without the raw files the exposure cannot be redone: said clearly, nothing else touched
    t0 = _mtimes(prod)
    rep = rp.run_reprocess([str(prod / f"{r}_cal.fits") for r in NRCA], context=pmap)
    assert _mtimes(prod) == t0
    assert all("raw exposure is needed to redo detector1" in e["error"] for e in rep["exposures"])

    rep = rp.run_reprocess(str(prod), context=pmap, raw_dirs=[str(raw)])
    by_root = {e["root"]: e for e in rep["exposures"]}
    for r in NRCA:
        e = by_root[r]
        assert e["redo_from"] == "detector1" and e["error"] is None
        assert e["changed"] == {"dark": {"stage": "detector1", "old": old, "new": new}}
        assert {Path(p).name for p in e["redone"]} >= {f"{r}_rate.fits", f"{r}_rateints.fits", f"{r}_cal.fits"}
    assert by_root[NRCB]["redo_from"] is None
    after = _mtimes(prod)
    assert all(after[n] == t0[n] for n in t0 if NRCB in n), "NRCB1 untouched"
    for r in NRCA:
        rate = models.open(prod / f"{r}_rate.fits")
        assert rate.meta.ref_file.crds.context_used == pmap and rate.meta.ref_file.dark.name.endswith(new)
        good = np.isfinite(rate.data) & np.isfinite(rates[r].data)
        assert not np.allclose(rate.data[good], rates[r].data[good]), "the new dark changed the rates"
        assert models.open(prod / f"{r}_cal.fits").meta.ref_file.crds.context_used == pmap
    # the Stage 3 product of the level-3 association with redone members is remade (or says why not)
    (s3,) = rep["stage3"]
    print("stage 3:", s3)
    assert s3["product"] == L3 and s3["reason"] == f"members redone: {', '.join(NRCA)}"
    from webbflow.deployments.params import image3_available

    if not image3_available():
        assert "image3 is not available" in s3["error"]
        return
    assert s3["error"] is None
    names = {Path(p).name for p in s3["redone"]}
    assert {f"{L3}_i2d.fits", f"{L3}_cat.ecsv"} <= names
    i2d = models.open(prod / f"{L3}_i2d.fits")
    assert i2d.meta.ref_file.crds.context_used == pmap
    assert rp.last_pipeline(i2d) == "image3"


def test_new_stage3_reference_remakes_only_the_stage3_product(observation, crds_env):
    from webbflow.deployments.params import image3_available

    if not image3_available():
        pytest.skip("image3 is not in this installation")
    raw, prod = observation
    crds_env(raw)
    i2d = prod / f"{L3}_i2d.fits"
    if not i2d.exists():  # made by the previous test; make it here when this test runs alone
        from webbflow.flows.calwebb_image3 import image3

        image3([str(prod / f"{r}_cal.fits") for r in NRCA + [NRCB]], product_name=L3, output_dir=str(prod))
    old, new, pmap = new_reference(raw, "apcorr", "NRCA1", None, "apcorr re-delivered")
    t0 = _mtimes(prod)
    rep = rp.run_reprocess(str(prod), raw_dirs=[str(raw)])
    assert rep["context"] == pmap
    assert rep["summary"]["redone"] == 0 and rep["summary"]["unchanged"] == 3, "no exposure uses apcorr"
    (s3,) = rep["stage3"]
    print("stage 3:", s3)
    assert s3["reason"] == "its own references changed" and s3["error"] is None
    assert s3["changed"] == {"apcorr": {"stage": "image3", "old": old, "new": new}}
    after = _mtimes(prod)
    assert after[f"{L3}_i2d.fits"] != t0[f"{L3}_i2d.fits"]
    assert all(after[n] == t0[n] for n in t0 if n.endswith(("_rate.fits", "_cal.fits", "_rateints.fits")))
    assert models.open(i2d).meta.ref_file.crds.context_used == pmap


def test_bad_inputs(tmp_path, observation, crds_env):
    from webbflow.errors import InputFileError

    raw, prod = observation
    crds_env(raw)
    with pytest.raises(InputFileError, match="no such file or folder"):
        rp.find_products([str(tmp_path / "nothing")])
    (tmp_path / "x_uncal.fits").write_bytes(b"")
    with pytest.raises(InputFileError, match="not a product reprocess knows"):
        rp.find_products([str(tmp_path / "x_uncal.fits")])
    with pytest.raises(InputFileError, match="holds no products"):
        rp.run_reprocess(str(tmp_path))


def test_command_line(observation, crds_env, capsys):
    from webbflow.flows.cli import main

    raw, prod = observation
    crds_env(raw)
    t0 = _mtimes(prod)
    assert main(["reprocess", str(prod), "--dry-run", "--raw-dir", str(raw)]) == 0
    out = capsys.readouterr().out
    assert "3 exposures checked, 0 would be redone, 3 unchanged, 0 failed" in out
    report = out.strip().splitlines()[-1].split("report: ")[1]
    assert Path(report).is_file() and _mtimes(prod) == t0
    assert main(["reprocess", str(prod), "--context", "jwst_9999.pmap", "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("webbflow: error: CRDS context jwst_9999.pmap is not in the cache") and "Traceback" not in err


def test_recorded_steps_keeps_only_what_differs():
    rec = {"parameters": {
        "jump": {"rejection_threshold": 5.5, "three_group_rejection_threshold": 6.0, "output_dir": "/old", "overrides": {}},
        "flat_field": {"skip": False, "overrides": {"flat": "/my/flat.fits"}},
        "ramp_fit": {"algorithm": "OLS_C"},
    }}
    assert rp.recorded_steps(rec) == {"jump": {"rejection_threshold": 5.5},
                                      "flat_field": {"overrides": {"flat": "/my/flat.fits"}}}


# ---------------------------------------------------------------------------
# the real 2019 rules


CORON = REAL / "nircam_coron_headers" / "jw01075001001_03105_00009_nrca2_uncal.fits"
CONTEXTS_05XX = [f"jwst_{i:04d}.pmap" for i in range(500, 542)]


@pytest.mark.real
def test_real_rules_which_05xx_contexts_change_which_references(real_rules_cache, crds_env):
    """A real NIRCam coronagraphic header (NRCA2, pupil MASKRND) through jwst_0500 ... jwst_0541."""
    crds_env(real_rules_cache)
    hist = rp.context_history(CORON, CONTEXTS_05XX)
    errors = [h["context"] for h in hist if "error" in h]
    # 0500-0503 select a NIRCam flat that the cache's bad-file list has since marked invalid
    assert errors == CONTEXTS_05XX[:4]
    assert all("scientifically invalid" in h["error"] for h in hist if "error" in h)
    base, *changes = [h for h in hist if "error" not in h]
    assert base["context"] == "jwst_0504.pmap" and base["changed"]["dark"][1] == "jwst_nircam_dark_0031.fits"
    print("changes:", [(c["previous"], c["context"], c["changed"]) for c in changes])
    # exactly one later context changes anything for this header: jwst_0535 delivers a coronagraphic flat
    assert [(c["previous"], c["context"]) for c in changes] == [("jwst_0534.pmap", "jwst_0535.pmap")]
    (old, new), = changes[0]["changed"].values()
    assert list(changes[0]["changed"]) == ["flat"]
    assert old.startswith("NOT FOUND") and "MASKRND" in old and new == "jwst_nircam_flat_0405.fits"
    # the same answer directly between two contexts, for the reftypes a product would have used
    diff = rp.diff_bestrefs(models.open(CORON), "jwst_0520.pmap", "jwst_0541.pmap", ["dark", "flat", "mask", "photom"])
    assert list(diff) == ["flat"] and diff["flat"][1] == "jwst_nircam_flat_0405.fits"


@pytest.mark.real
def test_real_rules_plan_for_a_product_made_with_an_old_context(real_rules_cache, crds_env, tmp_path):
    """A product (no webbflow provenance, as jwst makes them) recording jwst_0520 and its R_* keywords."""
    from webbflow.tasks.base import _record_ref

    crds_env(real_rules_cache)
    m = models.open(CORON)
    m.meta.ref_file.crds.context_used = "jwst_0520.pmap"
    for rt, name in (("dark", "jwst_nircam_dark_0031.fits"), ("mask", "jwst_nircam_mask_0031.fits"),
                     ("flat", "N/A"), ("photom", "jwst_nircam_photom_0049.fits")):
        _record_ref(m, rt, name)
    path = m.save(tmp_path / "jw01075001001_03105_00009_nrca2_cal.fits")
    chk, _model, recs = rp.check_product(Path(path), "jwst_0541.pmap")
    assert recs == {}
    assert chk.stages == ["detector1", "image2"] and chk.old_context["image2"] == "jwst_0520.pmap"
    assert chk.redo_from == "image2"
    assert list(chk.changed) == ["flat"], "dark, mask and photom are the same in jwst_0520 and jwst_0541"
    flat = chk.changed["flat"]
    assert flat["stage"] == "image2" and flat["new"] == "jwst_nircam_flat_0405.fits"
    assert flat["old"].startswith("NOT FOUND")


# ---------------------------------------------------------------------------
# a spectroscopic time series: spec2 and tso3 are redone as image2 and image3 are


@pytest.fixture(scope="module")
def lrs_tso(tmp_path_factory):
    """A MIRI LRS slitless time series (3 integrations) taken from its uncal file to tso3 by
    ``webbflow run calwebb_tso3 ASN``, in the associations' folder."""
    import shutil

    from webbflow.flows.cli import main
    from webbflow.refs.simulator import simulate

    base = tmp_path_factory.mktemp("reprocess-lrs")
    sim = simulate(base / "sim", instrument="miri", exp_type="MIR_LRS-SLITLESS", nints=3, seed=4)
    work = base / "work"
    work.mkdir()
    for f in list(sim.uncal) + list(sim.asn_level2) + [sim.asn_level3]:
        shutil.copy2(f, work / Path(f).name)
    with crds_cache(sim.crds_path):
        assert main(["run", "calwebb_tso3", str(work / Path(sim.asn_level3).name), "--output-dir", str(work)]) == 0
        yield sim, work


@pytest.mark.real  # the LRS simulator reads the real specwcs and distortion in ../shared/data
def test_new_spectroscopic_photom_redoes_spec2_and_tso3(lrs_tso, crds_env):
    """A new MIRI LRS photom: the exposure's spec2 is redone from its rateints (detector1 is not), and
    the tso3 products made from it are remade through their association."""
    sim, work = lrs_tso
    crds_env(sim.crds_path)
    root = Path(sim.uncal[0]).name[: -len("_uncal.fits")]
    product = json.loads(Path(sim.asn_level3).read_text())["products"][0]["name"]
    calints = work / f"{root}_calints.fits"
    before = models.open(calints)
    used = Path(before.meta.ref_file.photom.name.replace("crds://", "")).name
    old, new, pmap = new_reference(sim.crds_path, "photom", "", lambda m: None, "a re-delivered LRS photom",
                                   instrument="miri", used=used)
    assert old == used

    plan = rp.run_reprocess(str(work), dry_run=True)
    by_root = {e["root"]: e for e in plan["exposures"]}
    assert by_root[root]["redo_from"] == "spec2", by_root[root]
    assert by_root[root]["changed"] == {"photom": {"stage": "spec2", "old": old, "new": new}}

    t0 = _mtimes(work)
    whtlt = work / f"{product}_whtlt.ecsv"
    w0 = whtlt.stat().st_mtime_ns
    rep = rp.run_reprocess(str(work))
    after = _mtimes(work)
    redone = {n for n in after if after[n] != t0.get(n)}
    assert f"{root}_rateints.fits" not in redone and f"{root}_rate.fits" not in redone  # detector1 is not redone
    assert {f"{root}_calints.fits", f"{root}_x1dints.fits"} <= redone, redone
    assert f"{product}_x1dints.fits" in redone and whtlt.stat().st_mtime_ns != w0, "tso3 is remade"
    cal = models.open(calints)
    assert cal.meta.ref_file.crds.context_used == pmap and cal.meta.ref_file.photom.name.endswith(new)
    assert rp.provenance_records(cal)["spec2"]["crds_context"] == pmap
    # the same photom under a new name: the same science
    np.testing.assert_array_equal(cal.data, before.data)
    s3 = [s for s in rep["stage3"] if s["product"] == product]
    assert s3 and not s3[0]["error"] and s3[0]["reason"] == f"members redone: {root}"
    assert rp.run_reprocess(str(work), dry_run=True)["summary"]["redone"] == 0
