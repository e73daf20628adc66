"""detector1 end to end: the Prefect flow, its products and provenance, the CLI, and parity
with jwst's calwebb_detector1 on simulated exposures with the same references."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from webbflow import models

from parity import assert_parity, jwst_offline


def _simulate(root: Path, **kw):
    from webbflow.refs.simulator import simulate

    return simulate(root, **kw)


@pytest.fixture(scope="module")
def nircam(tmp_path_factory):
    d = tmp_path_factory.mktemp("d1-nircam")
    return _simulate(d, instrument="nircam", size=64, ngroups=6, nints=2, seed=11)


@pytest.fixture(scope="module")
def miri(tmp_path_factory):
    d = tmp_path_factory.mktemp("d1-miri")
    return _simulate(d, instrument="miri", size=64, ngroups=8, nints=2, seed=12)


@pytest.fixture(scope="module")
def niriss(tmp_path_factory):
    d = tmp_path_factory.mktemp("d1-niriss")
    return _simulate(d, instrument="niriss", size=64, ngroups=5, nints=1, seed=13)


def _cli(*args, env=None, cwd=None):
    import os

    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "webbflow.flows.cli", *map(str, args)], capture_output=True, text=True, env=e, cwd=cwd, timeout=900)


def test_python_api_returns_models_and_writes_nothing(nircam, crds_env, tmp_path, monkeypatch):
    from webbflow.flows import detector1

    crds_env(nircam.crds_path)
    monkeypatch.chdir(tmp_path)
    uncal = nircam.uncal[0]
    before = sorted(p.name for p in uncal.parent.glob("*.fits"))
    state = detector1(str(uncal), return_state=True)
    rate, rateints = state.result()
    assert isinstance(rate, models.ImageModel) and isinstance(rateints, models.CubeModel)
    assert rate.data.shape == (64, 64) and rateints.data.shape == (2, 64, 64)
    assert sorted(p.name for p in uncal.parent.glob("*.fits")) == before
    assert list(tmp_path.iterdir()) == []
    # the rate of a star field is positive on average and has saturated cores flagged
    assert np.nanmedian(rate.data) > 0
    assert rate.meta.cal_step.ramp_fit == "COMPLETE" and rate.meta.cal_step.jump == "COMPLETE"
    assert rate.meta.ref_file.crds.context_used == nircam.context
    # one Prefect task run per step, in the flow run
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    import anyio

    async def task_names():
        async with get_client() as client:
            trs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
            )
            return sorted(t.name.rsplit("-", 1)[0] for t in trs)

    import time

    from webbflow.flows.calwebb_detector1 import NIR_STEPS, TAIL_STEPS

    expected = NIR_STEPS + TAIL_STEPS + ["ramp_fit"]
    # Prefect records task runs from events it sends in the background: the last steps' records can
    # reach the server a moment after the flow returns, so read until they are all there (or 60 s)
    deadline = time.monotonic() + 60
    while True:
        names = anyio.run(task_names)
        if all(n in names for n in expected) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for step_name in expected:
        assert step_name in names, f"no task run for {step_name}: {names}"


def test_python_api_accepts_in_memory_model(nircam, crds_env):
    from webbflow.flows import detector1

    crds_env(nircam.crds_path)
    m = models.open(nircam.uncal[0])
    rate, rateints = detector1(m, steps={"jump": {"rejection_threshold": 5.0}})
    assert isinstance(rate, models.ImageModel)
    prov = rate._asdf_extra["webbflow_provenance"][-1]
    assert prov["parameters"]["jump"]["rejection_threshold"] == 5.0


def test_cli_products_provenance_and_intermediate(nircam, tmp_path):
    out = tmp_path / "out"
    r = _cli(
        "run", "calwebb_detector1", nircam.uncal[0], "--output-dir", out,
        "--steps.jump.save_results=true", "--steps.dark_current.save_results=true",
        env={"CRDS_PATH": str(nircam.crds_path)},
    )
    assert r.returncode == 0, r.stderr
    root = nircam.uncal[0].name.replace("_uncal.fits", "")
    for sfx in ("rate", "rateints", "jump", "dark_current"):
        assert (out / f"{root}_{sfx}.fits").exists(), sfx
    rate = models.open(out / f"{root}_rate.fits")
    assert isinstance(rate, models.ImageModel)
    from astropy.io import fits

    with fits.open(out / f"{root}_rate.fits") as h:
        hdr = h[0].header
        assert hdr["CRDS_CTX"] == nircam.context
        for key in ("R_DARK", "R_GAIN", "R_READNO", "R_SATURA", "R_SUPERB", "R_LINEAR", "R_MASK"):
            assert key in hdr and hdr[key] != "N/A", key
        assert hdr["S_JUMP"] == "COMPLETE" and hdr["S_RAMP"] == "COMPLETE"
    prov = rate._asdf_extra["webbflow_provenance"][-1]
    assert prov["crds_context"] == nircam.context
    assert "webbflow" in prov["versions"] and "stcal" in prov["versions"]
    assert prov["parameters"]["jump"]["save_results"] is True
    # a single step runs alone on an intermediate product
    r = _cli("run", "jump", out / f"{root}_dark_current.fits", "--output-dir", tmp_path / "single",
             env={"CRDS_PATH": str(nircam.crds_path)})
    assert r.returncode == 0, r.stderr
    single = models.open(tmp_path / "single" / f"{root}_jumpstep.fits")
    ref = models.open(out / f"{root}_jump.fits")
    np.testing.assert_array_equal(single.groupdq, ref.groupdq)
    # and records what ran it, as strun does on every step's product
    with fits.open(tmp_path / "single" / f"{root}_jumpstep.fits") as hd:
        assert hd[0].header["CAL_VER"] and hd[0].header["CRDS_CTX"] == nircam.context
    # products open in stdatamodels as the right classes
    from stdatamodels.jwst import datamodels as dm

    with dm.open(out / f"{root}_rate.fits") as s:
        assert type(s).__name__ == "ImageModel"
    with dm.open(out / f"{root}_rateints.fits") as s:
        assert type(s).__name__ == "CubeModel"


def test_cli_bad_parameter_is_one_line(nircam, tmp_path):
    r = _cli("run", "detector1", nircam.uncal[0], "--output-dir", tmp_path, "--steps.jump.rejection_threshold=abc",
             env={"CRDS_PATH": str(nircam.crds_path)})
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "jump" in lines[0] and "rejection_threshold" in lines[0], r.stderr
    r = _cli("run", "detector1", nircam.uncal[0], "--output-dir", tmp_path, "--steps.jump.no_such_param=1",
             env={"CRDS_PATH": str(nircam.crds_path)})
    assert r.returncode != 0 and "no_such_param" in r.stderr and "Traceback" not in r.stderr
    assert not list(tmp_path.glob("*_rate.fits"))


def test_rate_file_given_to_detector1_is_refused(tmp_path):
    m = models.ImageModel(np.zeros((8, 8), np.float32))
    m.meta.instrument.name = "NIRCAM"
    p = m.save(tmp_path / "x_rate.fits")
    r = _cli("run", "detector1", p, "--output-dir", tmp_path)
    assert r.returncode != 0
    assert len(r.stderr.strip().splitlines()) == 1 and "x_rate.fits" in r.stderr and "ImageModel" in r.stderr


def _jwst_detector1(uncal: Path, crds_path: Path, out: Path):
    from jwst.pipeline import Detector1Pipeline

    out.mkdir(parents=True, exist_ok=True)
    with jwst_offline(crds_path):
        Detector1Pipeline.call(str(uncal), output_dir=str(out), save_results=True)
    root = uncal.name.replace("_uncal.fits", "")
    return out / f"{root}_rate.fits", out / f"{root}_rateints.fits"


def _parity(sim, tmp_path, crds_env):
    from stdatamodels.jwst import datamodels as dm

    from webbflow.flows import detector1

    uncal = sim.uncal[0]
    jrate, jints = _jwst_detector1(uncal, sim.crds_path, tmp_path / "jwst")
    crds_env(sim.crds_path)
    rate, rateints = detector1(str(uncal))
    arrays = ["data", "dq", "err", "var_poisson", "var_rnoise"]
    with dm.open(jrate) as j:
        rep = assert_parity(rate, j, arrays, rtol=1e-4, min_fraction=0.999)
    with dm.open(jints) as j:
        rep += assert_parity(rateints, j, arrays, rtol=1e-4, min_fraction=0.999)
    return rep


@pytest.mark.parity
def test_parity_nircam(nircam, tmp_path, crds_env):
    _parity(nircam, tmp_path, crds_env)


@pytest.mark.parity
def test_parity_miri(miri, tmp_path, crds_env):
    _parity(miri, tmp_path, crds_env)


@pytest.mark.parity
def test_parity_niriss(niriss, tmp_path, crds_env):
    _parity(niriss, tmp_path, crds_env)


def test_ramp_read_by_the_flow_is_fitted_by_blocks_and_released_with_the_same_products(miri, crds_env, monkeypatch):
    """detector1 on a file marks the ramp it read as not needed after ramp_fit: the fit then goes a few
    integrations at a time (here one) and gives each block back; rate and rateints are those of the
    whole fit, bit for bit, and an in-memory input is never released."""
    from webbflow.flows.calwebb_detector1 import detector1
    from webbflow.tasks import ramp_fit as RF

    crds_env(miri.crds_path)
    uncal = str(miri.uncal[0])
    whole = detector1.fn(uncal)
    released = []
    real = RF.release_pages
    monkeypatch.setattr(RF, "RELEASE_BLOCK_BYTES", 1)
    monkeypatch.setattr(RF, "release_pages", lambda a, i0, i1: (released.append((i0, i1)), real(a, i0, i1)))
    blocks = detector1.fn(uncal)
    assert sorted(set(released)) == [(0, 1), (1, 2)]
    for a, b in zip(whole, blocks):
        assert a.array_names() == b.array_names()
        for name in a.array_names():
            x, y = np.asarray(getattr(a, name)), np.asarray(getattr(b, name))
            assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), name
    released.clear()
    ramp = models.open(uncal)
    detector1.fn(ramp)
    assert not released
