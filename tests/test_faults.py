"""Faults during a run (issue 10): nothing is lost, and the user reads one clear line.

- A reference file that disappears, or is truncated, after CRDS selected it and before its
  step opens it: the run fails with a ReferenceFileError naming the reftype and the file,
  and leaves no product and no temporary ``.part`` file.
- A rerun that fails while saving never truncates the product of the earlier run.
- Runs writing into the same output folder at once (different exposures, and the same
  exposure twice) never corrupt each other's products.
- The Prefect API is unreachable (PREFECT_API_URL points at a closed port, as when the
  server has stopped): decided behaviour is that ``webbflow run`` refuses at once with one
  line naming the API URL and how to go on (start the server, unset PREFECT_API_URL or set
  WEBBFLOW_PREFECT=off), exits non-zero, prints no traceback and writes no product.
  Prefect would otherwise raise ``RuntimeError: Failed to reach API`` with a traceback
  before the flow starts; a server that stops in the middle of a run fails the next
  task-run call with an httpx connection error (or a 503 while it shuts down), which the CLI
  reports the same way, without Prefect's own retry and event-service noise. Products are
  written through temporary names, so none is left half-written; what finished stays, and a
  rerun against a live server completes the job, reusing the stages recorded as finished.

In-process runs call the stage flows untracked (no PREFECT_API_URL: no temporary server).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from webbflow import models
from webbflow.errors import ReferenceFileError


@pytest.fixture(scope="module")
def sim_template(tmp_path_factory):
    """Two 64x64 NIRCam exposures (4 groups) and their private CRDS cache, made once."""
    from webbflow.refs.simulator import simulate

    root = tmp_path_factory.mktemp("faults") / "sim"
    return simulate(root, instrument="nircam", size=64, ngroups=4, nints=1, nexp=2, seed=11)


@pytest.fixture
def sim(sim_template, tmp_path, crds_env):
    """A private copy of the simulation (the faults damage its CRDS cache), set as CRDS_PATH."""
    src = Path(sim_template.crds_path)
    dst = tmp_path / "sim"
    shutil.copytree(src, dst)
    crds_env(dst)
    uncal = [dst / Path(u).relative_to(src) for u in sim_template.uncal]
    return dst, uncal


def _dark_path(crds: Path) -> Path:
    (dark,) = crds.rglob("*_dark_*.fits")
    return dark


def _leftovers(out: Path) -> list[str]:
    if not out.exists():
        return []
    return sorted(p.name for p in out.rglob("*") if p.is_file() and (p.name.endswith(".part") or "_rate" in p.name))


def _fault_after_selection(monkeypatch, fault):
    """Run ``fault()`` right after detector1 selected its references, before any step opens one."""
    import webbflow.flows.calwebb_detector1 as d1

    original = d1.resolve_references
    seen = {}

    def resolve_then_fault(model, params):
        refs, ctx = original(model, params)
        seen["dark"] = refs["dark_current"]["dark"]
        fault(Path(seen["dark"]))
        return refs, ctx

    monkeypatch.setattr(d1, "resolve_references", resolve_then_fault)
    return seen


def test_reference_disappears_mid_run(sim, tmp_path, monkeypatch, capsys):
    crds, uncal = sim
    dark = _dark_path(crds)
    seen = _fault_after_selection(monkeypatch, lambda p: p.unlink())
    out = tmp_path / "out"
    from webbflow.flows.calwebb_detector1 import run_detector1

    with pytest.raises(ReferenceFileError) as err:
        run_detector1(uncal[0], output_dir=out)
    assert Path(seen["dark"]).resolve() == dark.resolve()
    msg = str(err.value)
    print("error:", msg)
    assert err.value.reftype == "dark" and dark.name in msg and "not found" in msg
    assert "\n" not in msg
    assert _leftovers(out) == [], "no rate, rateints or temporary file is left"


def test_reference_truncated_mid_run_through_the_cli(sim, tmp_path, monkeypatch, capsys):
    crds, uncal = sim
    dark = _dark_path(crds)
    size = dark.stat().st_size

    def truncate(p: Path):
        with open(p, "r+b") as f:
            f.truncate(size // 3)

    _fault_after_selection(monkeypatch, truncate)
    out = tmp_path / "out"
    from webbflow.flows.cli import main

    capsys.readouterr()
    rc = main(["run", "detector1", str(uncal[0]), "--output-dir", str(out)])
    err = capsys.readouterr().err
    print("stderr:", err)
    assert rc != 0
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("webbflow: error:")
    assert "dark reference" in lines[0] and dark.name in lines[0] and uncal[0].name in lines[0]
    assert _leftovers(out) == []


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_failed_rerun_never_truncates_the_existing_product(sim, tmp_path, monkeypatch):
    crds, uncal = sim
    out = tmp_path / "out"
    from webbflow.flows.calwebb_detector1 import run_detector1

    written = run_detector1(uncal[0], output_dir=out)
    rate = out / uncal[0].name.replace("_uncal", "_rate")
    assert str(rate) in written
    before = {p.name: _digest(p) for p in out.iterdir()}
    assert rate.name in before

    import webbflow.models.io as mio

    calls = []

    def disk_full(f, arr):
        calls.append(arr.shape)
        f.write(b"\0" * 100)  # something reached the disk before the failure
        raise OSError(28, "No space left on device (injected)")

    monkeypatch.setattr(mio, "_write_image_data", disk_full)
    with pytest.raises(OSError, match="injected"):
        run_detector1(uncal[0], output_dir=out, steps={"jump": {"rejection_threshold": 5.0}})
    assert calls, "the fault was reached: the rerun got as far as saving"
    after = {p.name: _digest(p) for p in out.iterdir()}
    assert after == before, "the products of the first run are byte-identical and no .part file is left"
    m = models.open(rate)
    assert isinstance(m, models.ImageModel) and m.data.shape == (64, 64)


CHILD_ENV_DROP = ("PREFECT_API_URL", "WEBBFLOW_PREFECT")


def test_concurrent_runs_into_one_folder(sim, tmp_path):
    """Three `webbflow run detector1` processes at once into one folder: exposures 1 and 2, and
    exposure 1 a second time.  Every product opens, has its shape, and no temporary file remains."""
    crds, uncal = sim
    out = tmp_path / "shared-out"
    env = {k: v for k, v in os.environ.items() if k not in CHILD_ENV_DROP}
    env["CRDS_PATH"] = str(crds)
    env["WEBBFLOW_PREFECT"] = "off"
    procs = []
    for i, u in enumerate([uncal[0], uncal[1], uncal[0]]):
        log = open(tmp_path / f"child{i}.log", "w")
        procs.append((subprocess.Popen(
            [sys.executable, "-m", "webbflow.flows.cli", "run", "detector1", str(u), "--output-dir", str(out)],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path), log))
    for p, log in procs:
        p.wait(timeout=300)
        log.close()
    logs = [(tmp_path / f"child{i}.log").read_text() for i in range(3)]
    assert [p.returncode for p, _ in procs] == [0, 0, 0], "\n----\n".join(logs)
    names = sorted(p.name for p in out.iterdir())
    print("products:", names)
    assert not [n for n in names if n.endswith(".part")]
    expected = {u.name.replace("_uncal", s) for u in uncal[:2] for s in ("_rate", "_rateints")}
    assert expected <= set(names)
    for name in expected:
        m = models.open(out / name)
        if "_rateints" in name:
            assert isinstance(m, models.CubeModel) and m.data.shape == (1, 64, 64)
        else:
            assert isinstance(m, models.ImageModel) and m.data.shape == (64, 64)
        assert m.dq.shape[-2:] == (64, 64) and m.err.shape == m.data.shape


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens on it once the socket is closed


def test_prefect_api_unreachable(sim, tmp_path):
    crds, uncal = sim
    out = tmp_path / "out"
    url = f"http://127.0.0.1:{_closed_port()}/api"
    env = {k: v for k, v in os.environ.items() if k not in CHILD_ENV_DROP}
    env.update(CRDS_PATH=str(crds), PREFECT_API_URL=url)
    r = subprocess.run(
        [sys.executable, "-m", "webbflow.flows.cli", "run", "detector1", str(uncal[0]), "--output-dir", str(out)],
        env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    print("stderr:", r.stderr)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("webbflow: error:") and url in lines[0] and "cannot be reached" in lines[0]
    assert uncal[0].name in lines[0]
    assert not out.exists() or not any(out.iterdir()), "no product"


def test_prefect_server_stops_during_an_association_run(tmp_path):
    """The Prefect server is killed while `webbflow run image3 ASN` is under way, right after the
    first exposure's cal product appears.  Decided behaviour: the run stops with one line naming
    the API URL (no traceback, none of Prefect's service noise); every product already on disk
    is complete and opens; no temporary file is left; and a rerun against a live server finishes
    the job, reusing the exposures that were done."""
    import signal
    import time

    from conftest import start_prefect_server, stop_prefect_server
    from webbflow.refs.simulator import simulate

    sim = simulate(tmp_path / "sim", instrument="nircam", size=128, ngroups=4, nints=1, nexp=3, seed=3)
    out = tmp_path / "out"
    proc, url = start_prefect_server(tmp_path / "server-home", tmp_path / "server.log")
    env = {k: v for k, v in os.environ.items() if k not in CHILD_ENV_DROP}
    # one retry of a failed API call, not Prefect's default five with back-off: the outcome is the same
    env.update(CRDS_PATH=str(sim.crds_path), PREFECT_API_URL=url, PREFECT_CLIENT_MAX_RETRIES="1")
    cmd = [sys.executable, "-m", "webbflow.flows.cli", "run", "image3", str(sim.asn_level3), "--output-dir", str(out)]
    try:
        run = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
        deadline = time.monotonic() + 400
        while not list(out.glob("*_cal.fits")) and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert run.poll() is None, "the run was still going when the first exposure was done"
        stop_prefect_server(proc, signal.SIGKILL)
        _, err = run.communicate(timeout=600)
    finally:
        stop_prefect_server(proc, signal.SIGKILL)
    print("stderr:", err)
    assert run.returncode != 0
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("webbflow: error:") and url in lines[0] and "cannot be reached" in lines[0]
    assert not list(out.rglob("*.part")), "no temporary file left"
    assert list(out.glob("*_cal.fits"))
    for p in out.glob("*.fits"):
        models.open(p)  # every product on disk is whole
    # the stages recorded as finished keep their products on the rerun (a product written after
    # the server went away may have no record yet, and is made again)
    import json

    done = [Path(p) for r in (out / ".webbflow-cache").glob("*.json") for p in json.loads(r.read_text())["products"]]
    first = {p: p.stat().st_mtime_ns for p in done}
    print(f"{len(done)} product(s) recorded as finished before the server stopped")
    assert done

    proc, url = start_prefect_server(tmp_path / "server2-home", tmp_path / "server2.log")
    try:
        env["PREFECT_API_URL"] = url
        env.pop("PREFECT_CLIENT_MAX_RETRIES")
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    finally:
        stop_prefect_server(proc)
    assert r.returncode == 0, r.stderr
    assert len(list(out.glob("*_cal.fits"))) == 3 and list(out.glob("*_i2d.fits"))
    assert {p: p.stat().st_mtime_ns for p in done} == first, "finished exposures are reused, not recomputed"
