"""Caching and resume of association runs: nothing is recomputed when nothing changed, a changed
parameter recomputes from its stage onwards, and a run killed with SIGKILL resumes without redoing
finished exposures and leaves no partial product."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from webbflow import models
from webbflow.flows.association import run_association

ROOTS = [f"jw01234001001_02101_0000{i}_nrca1" for i in (1, 2, 3)]


@pytest.fixture(scope="module")
def observation(tmp_path_factory):
    """Three NRCA1 exposures (64x64, 3 groups) and a level-2 association of their raw files."""
    from webbflow.refs.simulator import simulate

    raw = tmp_path_factory.mktemp("resume") / "raw"
    sim = simulate(raw, instrument="nircam", detector="nrca1", size=64, ngroups=3, nexp=3, seed=3)
    from conftest import write_level2_asn

    return sim, write_level2_asn(sim, raw)


def _products(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in out.glob("*") if p.is_file()}


def _by_member(res):
    return {m.member.split("_uncal")[0]: m for m in res.members}


def test_unchanged_rerun_recomputes_nothing_and_a_parameter_change_recomputes_from_its_stage(observation, crds_env, tmp_path):
    sim, asn = observation
    crds_env(sim.crds_path)
    out = tmp_path / "products"

    first = _by_member(run_association(asn, output_dir=out, max_workers=2))
    assert all(m.ok and m.reused == [] for m in first.values())
    t0 = _products(out)
    assert {f"{r}_{s}.fits" for r in ROOTS for s in ("rate", "rateints", "cal", "i2d")} <= set(t0)

    again = _by_member(run_association(asn, output_dir=out, max_workers=2))
    assert all(m.ok and m.reused == ["detector1", "image2"] for m in again.values())
    assert _products(out) == t0, "no file rewritten"
    assert sorted(again[ROOTS[0]].products) == sorted(first[ROOTS[0]].products)

    # an image2 parameter: detector1 is reused, image2 is redone for every exposure
    steps = {"image2": {"resample": {"pixfrac": 0.8}}}
    res = _by_member(run_association(asn, output_dir=out, steps=steps, max_workers=2))
    assert all(m.ok and m.reused == ["detector1"] for m in res.values())
    t1 = _products(out)
    for r in ROOTS:
        assert t1[f"{r}_rate.fits"] == t0[f"{r}_rate.fits"] and t1[f"{r}_rateints.fits"] == t0[f"{r}_rateints.fits"]
        assert t1[f"{r}_cal.fits"] != t0[f"{r}_cal.fits"] and t1[f"{r}_i2d.fits"] != t0[f"{r}_i2d.fits"]
        prov = models.open(out / f"{r}_i2d.fits")._asdf_extra["webbflow_provenance"][-1]
        assert prov["parameters"]["resample"]["pixfrac"] == 0.8

    # a detector1 parameter: both stages are redone
    steps = {"image2": {"resample": {"pixfrac": 0.8}}, "detector1": {"jump": {"rejection_threshold": 5.0}}}
    res = _by_member(run_association(asn, output_dir=out, steps=steps, max_workers=2))
    assert all(m.ok and m.reused == [] for m in res.values())
    t2 = _products(out)
    for r in ROOTS:
        assert t2[f"{r}_rate.fits"] != t1[f"{r}_rate.fits"] and t2[f"{r}_cal.fits"] != t1[f"{r}_cal.fits"]
    # and the same again is all reused
    res = _by_member(run_association(asn, output_dir=out, steps=steps, max_workers=2))
    assert all(m.reused == ["detector1", "image2"] for m in res.values())
    assert _products(out) == t2


def _api_url_for_child(tmp_path) -> dict:
    """Environment for a child process: this process's temporary Prefect server, else a private PREFECT_HOME."""
    try:
        from prefect.server.api.server import SubprocessASGIServer

        srv = SubprocessASGIServer()
        if srv.running:
            return {"PREFECT_API_URL": srv.api_url}
    except Exception:  # noqa: BLE001 - then the child starts its own
        pass
    return {"PREFECT_HOME": str(tmp_path / "child-prefect-home")}


CHILD = """
import sys
from webbflow.flows.association import run_association
run_association(sys.argv[1], output_dir=sys.argv[2], stage3=False, max_workers=1)
"""


def test_killed_run_resumes_without_recomputing_finished_exposures(observation, crds_env, tmp_path):
    sim, asn = observation
    crds_env(sim.crds_path)
    out = tmp_path / "products"
    cache = out / ".webbflow-cache"
    env = dict(os.environ) | _api_url_for_child(tmp_path)
    log = tmp_path / "child.log"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(asn), str(out)], env=env, stdout=open(log, "w"),
                             stderr=subprocess.STDOUT, start_new_session=True)
    # kill once the first exposure is finished and the second is half way (its rate written, not its cal)
    midway = out / f"{ROOTS[1]}_rate.fits"
    try:
        deadline = time.time() + 240
        while not midway.exists():
            assert child.poll() is None, "the run ended before it could be killed:\n" + log.read_text()[-3000:]
            assert time.time() < deadline, "the first exposure never finished:\n" + log.read_text()[-3000:]
            time.sleep(0.02)
        os.killpg(child.pid, signal.SIGKILL)  # the run and anything it started (its task workers, a temporary server)
        child.wait(30)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(30)
    assert child.returncode == -signal.SIGKILL
    finished = {p.name for p in cache.glob("*.json")}
    assert f"{ROOTS[0]}.detector1.json" in finished and f"{ROOTS[0]}.image2.json" in finished
    assert not any(n.startswith(ROOTS[2]) for n in finished), "the third exposure had not started"
    second_was_finished = f"{ROOTS[1]}.image2.json" in finished
    assert not second_was_finished or (out / f"{ROOTS[1]}_cal.fits").exists()
    print("killed with", sorted(finished), "and files", sorted(p.name for p in out.iterdir()))
    # as if the kill had come in the middle of writing the third exposure's rate
    (out / f".{ROOTS[2]}_rate.fits.k1ll3d.part").write_bytes(b"SIMPLE  =                    T" + b"\0" * 100)
    before = _products(out)

    # the restart is a new run: it digests the code afresh, as a new process would
    import webbflow.flows.association as association

    association._CODE_VERSION = None
    res = _by_member(run_association(asn, output_dir=out, stage3=False, max_workers=1))
    assert all(m.ok for m in res.values()), [m.error for m in res.values()]
    assert res[ROOTS[0]].reused == ["detector1", "image2"]
    if not second_was_finished:
        assert "image2" not in res[ROOTS[1]].reused
    assert res[ROOTS[2]].reused == []
    after = _products(out)
    for name, t in before.items():
        if name.startswith(ROOTS[0]):
            assert after[name] == t, f"{name} of the finished exposure was rewritten"
    everything = [p for p in out.rglob("*") if p.is_file()]
    assert not [p for p in everything if p.name.endswith(".part")], "no temporary file survives"
    for r in ROOTS:
        for sfx in ("rate", "rateints", "cal", "i2d"):
            m = models.open(out / f"{r}_{sfx}.fits")  # every product is whole
            assert m.data.shape[-2:] == (64, 64)
        assert models.open(out / f"{r}_cal.fits").meta.cal_step.photom == "COMPLETE"
