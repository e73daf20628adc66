"""Stages 1-3 through the association flow: fan-out, join, Stage 3 products, failures, reuse."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from webbflow import models


@pytest.fixture(scope="module")
def observation(tmp_path_factory):
    from webbflow.refs.simulator import simulate

    d = tmp_path_factory.mktemp("obs")
    return simulate(d / "raw", instrument="nircam", size=512, ngroups=4, nints=1, nexp=3, seed=7)


@pytest.fixture(scope="module", autouse=True)
def observation_cache(observation):
    """This module's runs select references from the observation's CRDS cache; the modules after
    it must not inherit that cache, so CRDS_PATH is restored when the module ends."""
    import os

    from webbflow.refs.select import reset_crds_state

    old = os.environ.get("CRDS_PATH")
    os.environ["CRDS_PATH"] = str(observation.crds_path)
    reset_crds_state()
    yield observation.crds_path
    if old is None:
        os.environ.pop("CRDS_PATH", None)
    else:
        os.environ["CRDS_PATH"] = old
    reset_crds_state()


@pytest.fixture(scope="module")
def processed(observation, observation_cache, tmp_path_factory):
    """One run of the association flow, shared by the tests that inspect its products."""
    from webbflow.flows.association import run_association

    out = tmp_path_factory.mktemp("products")
    res = run_association(observation.asn_level3, output_dir=out)
    return res, out


def test_stage3_products_and_catalogue(observation, processed):
    from webbflow.flows.demo import alignment_residuals

    res, out = processed
    assert all(m.ok for m in res.members) and len(res.members) == 3
    (prod,) = res.stage3.values()
    names = [Path(p).name for p in prod["written"]]
    root = Path(json.loads(Path(observation.asn_level3).read_text())["products"][0]["name"]).name
    assert f"{root}_i2d.fits" in names and f"{root}_cat.ecsv" in names and f"{root}_segm.fits" in names
    assert sum(n.endswith("_crf.fits") for n in names) == 3
    for m in res.members:  # the per-exposure products stay
        stem = m.member.replace("_uncal.fits", "")
        for sfx in ("rate", "rateints", "cal", "i2d"):
            assert (out / f"{stem}_{sfx}.fits").exists(), (stem, sfx)
    i2d = models.open(out / f"{root}_i2d.fits")
    assert isinstance(i2d, models.ImageModel) and i2d.meta.wcs is not None
    assert i2d.meta.cal_step.tweakreg == "COMPLETE" and i2d.meta.cal_step.resample == "COMPLETE"
    from stdatamodels.jwst import datamodels as dm

    with dm.open(out / f"{root}_i2d.fits") as s:
        assert type(s).__name__ == "ImageModel"
        ra, dec = s.meta.wcs(10, 10)
        assert np.isfinite(ra) and np.isfinite(dec)
    summary = alignment_residuals(out / f"{root}_cat.ecsv", observation.catalog, i2d=i2d)
    assert summary["matched"] >= 10, summary
    assert summary["median_mas"] < 10.0, summary


def test_rerun_reuses_everything(observation, processed):
    from webbflow.flows.association import run_association

    res, out = processed
    before = {p: p.stat().st_mtime_ns for p in out.glob("*.fits")}
    again = run_association(observation.asn_level3, output_dir=out)
    assert all(set(m.reused) == {"detector1", "image2"} for m in again.members)
    assert all(v.get("reused") for v in again.stage3.values())
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.fits")} == before, "nothing was rewritten"


def test_changed_image2_parameter_recomputes_from_image2(observation, processed, tmp_path):
    from webbflow.flows.association import run_association

    res, out = processed
    work = tmp_path / "w"
    shutil.copytree(out, work)
    again = run_association(observation.asn_level3, output_dir=work, stage3=False,
                            steps={"image2": {"resample": {"pixfrac": 0.8}}})
    assert all(m.reused == ["detector1"] for m in again.members), [m.reused for m in again.members]


def test_exposures_in_memory_or_one_at_a_time_give_the_same_mosaic(processed, tmp_path, monkeypatch):
    """Exposures within half of WEBBFLOW_MEMORY_BUDGET are kept in memory; beyond it they are read
    one at a time from disk. Both ways make the same mosaic and catalogue, and neither writes over the cal files."""
    from webbflow.flows.calwebb_image3 import image3, keep_in_memory
    from webbflow.flows.stage import quiet_prefect_settings

    _res, out = processed
    cals = sorted(str(p) for p in out.glob("*_cal.fits"))
    size = sum(Path(c).stat().st_size for c in cals)
    monkeypatch.setenv("WEBBFLOW_MEMORY_BUDGET", str(2 * size))
    assert keep_in_memory(cals)
    monkeypatch.setenv("WEBBFLOW_MEMORY_BUDGET", str(2 * size - 1))
    assert not keep_in_memory(cals)
    before = {c: Path(c).read_bytes() for c in cals}
    got = {}
    for mode in (True, False):
        d = tmp_path / str(mode)
        with quiet_prefect_settings():
            got[mode] = image3.fn(cals, product_name="p", output_dir=str(d), in_memory=mode)
        assert sorted(Path(w).name for w in got[mode]["written"] if w.endswith("_crf.fits")) == sorted(
            Path(c).name.replace("_cal.fits", "_crf.fits") for c in cals)
    assert {c: Path(c).read_bytes() for c in cals} == before
    a, b = got[True]["i2d"], got[False]["i2d"]
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(a.dq, b.dq)
    ca = (tmp_path / "True" / "p_cat.ecsv").read_text().splitlines()
    cb = (tmp_path / "False" / "p_cat.ecsv").read_text().splitlines()
    assert [l for l in ca if not l.startswith("#")] == [l for l in cb if not l.startswith("#")]


def test_forked_workers_or_one_process_give_the_same_products(processed, tmp_path, monkeypatch):
    """Stage 3 shares independent work (each exposure's sources, each group's drizzle, each blot, the
    mosaic's variance arrays) out to forked processes when it may use several cores; one process
    (WEBBFLOW_PROCESSES=1) makes the same products bit for bit."""
    import os

    from webbflow.flows.calwebb_image3 import image3
    from webbflow.flows.stage import quiet_prefect_settings
    from webbflow.tasks import _threads

    _res, out = processed
    cals = sorted(str(p) for p in out.glob("*_cal.fits"))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)  # as on two cores
    forks = []
    real_fork = os.fork

    def counting_fork():
        forks.append(1)
        return real_fork()

    monkeypatch.setattr(os, "fork", counting_fork)
    got = {}
    for n in ("1", "2"):
        monkeypatch.setenv("WEBBFLOW_PROCESSES", n)
        assert _threads.processes() == int(n)
        with quiet_prefect_settings():
            got[n] = image3.fn(cals, product_name="p", output_dir=str(tmp_path / n), in_memory=True)
        assert bool(forks) == (n == "2")
    a, b = got["1"]["i2d"], got["2"]["i2d"]
    for name in ("data", "err", "dq", "wht", "con", "var_poisson", "var_rnoise", "var_flat"):
        if a.has(name):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for crf in sorted((tmp_path / "1").glob("*_crf.fits")):
        with models.open(crf) as x, models.open(tmp_path / "2" / crf.name) as y:
            np.testing.assert_array_equal(x.dq, y.dq)
            np.testing.assert_array_equal(x.data, y.data)
    ca = (tmp_path / "1" / "p_cat.ecsv").read_text().splitlines()
    cb = (tmp_path / "2" / "p_cat.ecsv").read_text().splitlines()
    assert [l for l in ca if not l.startswith("#")] == [l for l in cb if not l.startswith("#")]


def test_one_failed_member_keeps_the_others(observation, tmp_path, crds_env):
    from webbflow.flows.association import AssociationFailed, run_association

    crds_env(observation.crds_path)
    folder = tmp_path / "asn"
    folder.mkdir()
    uncals = [Path(p) for p in observation.uncal]
    for p in uncals:
        shutil.copy(p, folder / p.name)
    bad = folder / uncals[1].name
    bad.write_bytes(bad.read_bytes()[: 20000])  # truncated
    asn = json.loads(Path(observation.asn_level3).read_text())
    (folder / "x_asn.json").write_text(json.dumps(asn))
    out = tmp_path / "out"
    with pytest.raises(AssociationFailed) as e:
        run_association(folder / "x_asn.json", output_dir=out)
    msg = str(e.value)
    assert uncals[1].name in msg and "1 of 3 members failed" in msg and "Stage 3 was not made" in msg
    good = [p for p in uncals if p != uncals[1]]
    for p in good:
        assert (out / p.name.replace("_uncal", "_cal")).exists()
    assert not list(out.glob("*_t001_*_i2d.fits"))
    # asked for: Stage 3 from the members that succeeded
    with pytest.raises(AssociationFailed):
        run_association(folder / "x_asn.json", output_dir=out, allow_partial=True)
    assert list(out.glob("jw01234-o001_t001_*_i2d.fits"))
    assert not list(out.glob(".*.part")) and not list(out.glob("*.part"))


def test_cli_image3_on_association_with_bad_member_path(tmp_path):
    asn = {"asn_type": "image3", "asn_rule": "candidate_Asn_Lv3Image",
           "products": [{"name": "p", "members": [{"expname": "../outside_cal.fits", "exptype": "science"}]}]}
    p = tmp_path / "sub" / "bad_asn.json"
    p.parent.mkdir()
    p.write_text(json.dumps(asn))
    (tmp_path / "outside_cal.fits").write_bytes(b"secret")
    r = subprocess.run([sys.executable, "-m", "webbflow.flows.cli", "run", "calwebb_image3", str(p), "--output-dir", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad_asn.json" in lines[0] and "outside" in lines[0], r.stderr
