"""What an operator sees: Prefect task-run states and names, run names and artifacts of a command-line
association run, the command line's help, version, "did you mean", progress display and reuse report.

The Prefect checks go through the API of the session's test server (conftest ``prefect_server``).
One small simulation (2 NIRCam exposures of 64x64, 4 groups) is shared by the module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from webbflow.flows import cli

from conftest import write_level2_asn


def _main(*args) -> int:
    return cli.main([str(a) for a in args])


# ---------------------------------------------------------------------------
# the command line without a run


def test_version(capsys):
    from webbflow import __version__

    with pytest.raises(SystemExit) as e:
        _main("--version")
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"webbflow {__version__}"


def test_run_pipeline_help_lists_steps_and_parameters(capsys):
    assert _main("run", "detector1", "--help") == 0
    out = capsys.readouterr().out
    # every step of both branches, in order, with jump's parameters, defaults and descriptions
    assert out.index("  group_scale (GroupScaleStep)") < out.index("  jump (JumpStep)") < out.index("  ramp_fit (RampFitStep)")
    assert "--steps.jump.rejection_threshold=4.0  (float)  CR sigma rejection threshold" in out
    assert "emicorr (EmiCorrStep) [MIRI only]" in out
    assert "--save_calibrated_ramp=false" in out
    assert _main("run", "calwebb_image3", "--help") == 0
    out = capsys.readouterr().out
    for opt in ("--runner=", "--max_workers=", "--scheduler=", "--allow_partial="):
        assert opt in out
    assert "  tweakreg (TweakRegStep)" in out and "--steps.tweakreg.snr_threshold=" in out


def test_run_step_help_lists_that_steps_parameters(capsys):
    assert _main("run", "jump", "--help") == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: webbflow run jump INPUT")
    assert "--rejection_threshold=4.0  (float)  CR sigma rejection threshold" in out
    assert "--override_readnoise=PATH" in out
    assert "--steps." not in out and "ramp_fit" not in out


def test_unknown_names_get_a_did_you_mean(tmp_path, capsys):
    f = tmp_path / "x_uncal.fits"
    f.write_bytes(b"")
    assert _main("run", "jmup", f) != 0
    err = capsys.readouterr().err
    assert "unknown pipeline or step 'jmup' (did you mean 'jump'?)" in err and len(err.strip().splitlines()) == 1


def test_every_step_parameter_is_described():
    from webbflow.tasks import load_all
    from webbflow.tasks.base import STEPS

    load_all()
    missing = [f"{n}.{f}" for n, s in STEPS.items() for f, fi in s.params.model_fields.items() if not fi.description]
    assert missing == []


def test_info_on_an_association(tmp_path, capsys):
    asn = {"asn_type": "image3", "asn_rule": "candidate_Asn_Lv3Image", "asn_id": "o001",
           "products": [{"name": "jw01234-o001_t001_nircam_clear-f200w",
                         "members": [{"expname": "a_cal.fits", "exptype": "science"}]}]}
    p = tmp_path / "x_asn.json"
    p.write_text(json.dumps(asn))
    assert _main("info", p) == 0
    out = capsys.readouterr().out
    assert "model:       association" in out and "level:       3" in out
    assert "science      a_cal.fits  (not there yet)" in out


# ---------------------------------------------------------------------------
# runs


DEMO_SETTINGS = dict(size=64, ngroups=4, nexp=2, seed=21)


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """Simulated the way the demo simulates (so that the demo's reuse can be checked on it)."""
    from webbflow.flows.demo import _simulation

    sim, reused = _simulation(tmp_path_factory.mktemp("operator-sim"), dict(DEMO_SETTINGS))
    assert not reused
    return sim


def test_demo_reuses_a_simulation_with_the_same_settings(sim):
    from webbflow.flows.demo import _simulation

    folder = sim.uncal[0].parent
    before = [p.stat().st_mtime_ns for p in sim.uncal]
    again, reused = _simulation(folder, dict(DEMO_SETTINGS))
    assert reused and again.uncal == sim.uncal and again.crds_path == sim.crds_path and again.context == sim.context
    assert [p.stat().st_mtime_ns for p in sim.uncal] == before, "nothing was simulated again"


def _flow_run(client, name: str):
    """The newest flow run named ``name`` (other tests of the session may have made runs of that name)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])),
                                 sort=FlowRunSort.EXPECTED_START_TIME_DESC)
    assert runs, f"no flow run named {name!r}"
    return runs[0]


def _task_runs(client, flow_run_id, expect=(), timeout: float = 60.0):
    """The flow run's task runs once the server has recorded them, each in its final state.

    Task runs and their states reach the server as events, after the flow run itself has finished:
    read too early, the last task runs may be missing or still show Running.  ``expect``: names
    that must be among them."""
    import time

    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout
    while True:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        names = {t.name for t in runs}
        settled = all(t.state is not None and t.state.is_final() for t in runs) and set(expect) <= names
        if settled or time.monotonic() > deadline:
            return runs
        time.sleep(0.5)


def _artifacts(client, flow_run_id) -> dict:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return {a.key: a for a in arts}


def test_skipped_steps_and_products_are_told_apart_in_prefect(sim, crds_env, tmp_path):
    """A skipped step's task run is in state Skipped with its reason; gain_scale's two runs are named
    after their product; the steps table carries the science figures and the reasons."""
    from prefect import get_client

    from webbflow.flows.calwebb_detector1 import detector1
    from webbflow.flows.stage import quiet_prefect_settings

    crds_env(sim.crds_path)
    with quiet_prefect_settings():
        state = detector1(str(sim.uncal[0]), output_dir=str(tmp_path), steps={"dark_current": {"skip": True}, "ipc": {"override_ipc": "N/A"}},
                          return_state=True)
    assert state.is_completed()
    fr_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as c:
        fr = c.read_flow_run(fr_id)
        tasks = {t.name: t for t in _task_runs(c, fr_id, expect=("gain_scale [rate]", "gain_scale [rateints]"))}
        arts = _artifacts(c, fr_id)
    assert fr.name == "detector1 jw01234001001_02101_00001_nrca1"
    dark = tasks["dark_current-0"] if "dark_current-0" in tasks else next(t for n, t in tasks.items() if n.startswith("dark_current"))
    assert dark.state.type.value == "COMPLETED" and dark.state.name == "Skipped"
    assert dark.state.message == "dark_current skipped: skip=True"
    # a step whose reference is N/A, and one that declined the exposure
    ipc = next(t for n, t in tasks.items() if n.startswith("ipc"))
    assert (ipc.state.name, ipc.state.message) == ("Skipped", "ipc skipped: reference ipc is N/A for this exposure")
    assert tasks["gain_scale [rate]"].state.name == "Skipped"
    assert "not applicable" in tasks["gain_scale [rate]"].state.message
    jump = next(t for n, t in tasks.items() if n.startswith("jump"))
    assert jump.state.name == "Completed"
    assert {"gain_scale [rate]", "gain_scale [rateints]"} <= set(tasks)
    rows = json.loads(arts["detector1-jw01234001001-02101-00001-nrca1-steps"].data)
    by_step = {r["step"]: r for r in rows}
    assert by_step["dark_current"]["status"] == "SKIPPED" and by_step["dark_current"]["note"] == "skip=True"
    assert "jumps flagged" in by_step["jump"]["qa"] and "saturated pixels" in by_step["saturation"]["qa"]
    params = json.loads(arts["detector1-jw01234001001-02101-00001-nrca1-parameters"].data)
    assert {"step": "jump", "parameter": "rejection_threshold", "value": "4.0"} in params
    assert {"step": "dark_current", "parameter": "skip", "value": "True"} in params


def test_cli_association_run_is_named_and_published_and_reuse_is_reported(sim, crds_env, tmp_path, capsys):
    from prefect import get_client

    crds_env(sim.crds_path)
    asn = write_level2_asn(sim, sim.uncal[0].parent)
    out = tmp_path / "products"
    assert _main("run", "image3", asn, "--output-dir", out) == 0
    first = capsys.readouterr().out.splitlines()
    assert first and all(line.startswith("wrote ") for line in first), first
    stem = asn.name.removesuffix(".json").removesuffix("_asn")
    with get_client(sync_client=True) as c:
        fr = _flow_run(c, f"association {stem}")
        arts = _artifacts(c, fr.id)
        tasks = {t.name for t in _task_runs(c, fr.id, expect=[f"member {u.name.removesuffix('_uncal.fits')}"
                                                               for u in sim.uncal])}
    key = "association-" + stem.lower().replace("_", "-")
    members = json.loads(arts[f"{key}-members"].data)
    assert [m["exposure"] for m in members] == [u.name for u in sim.uncal] and all(m["ok"] for m in members)
    assert f"{key}-summary" in arts
    assert {f"member {u.name.removesuffix('_uncal.fits')}" for u in sim.uncal} <= tasks
    # the same run again: everything is reused, said so, and shown as Cached task runs
    assert _main("run", "image3", asn, "--output-dir", out) == 0
    second = capsys.readouterr().out.splitlines()
    assert sorted(line.split(" ", 1)[1] for line in second) == sorted(line.split(" ", 1)[1] for line in first)
    assert all(line.startswith("reused ") for line in second), second
    with get_client(sync_client=True) as c:
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
        from prefect.client.schemas.sorting import FlowRunSort

        runs = c.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_="exposure jw01234001001_02101_00001")),
                                sort=FlowRunSort.START_TIME_DESC)
        cached = [t for t in _task_runs(c, runs[0].id, expect=("detector1 (reused)", "image2 (reused)"))
                  if t.state.name == "Cached"]
    assert sorted(t.name for t in cached) == ["detector1 (reused)", "image2 (reused)"]
    assert all("unchanged" in t.state.message for t in cached)

    # a level-3 association of the same exposures: image3 runs on the reused cal files.  Its DQ table
    # shows the mosaic's uncovered pixels as DO_NOT_USE, and a row per crf from that file's DQ
    asn3 = sim.uncal[0].parent / "jw01234-o001_image3_asn.json"
    asn3.write_text(json.dumps({"asn_type": "image3", "asn_rule": "candidate_Asn_Lv3Image", "products": [
        {"name": "jw01234-o001_t001_nircam_clear-f200w",
         "members": [{"expname": u.name, "exptype": "science"} for u in sim.uncal]}]}))
    assert _main("run", "image3", asn3, "--output-dir", out) == 0
    capsys.readouterr()
    with get_client(sync_client=True) as c:
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

        from prefect.client.schemas.sorting import ArtifactSort

        # the newest: other tests of the session make mosaics of the same name
        dq_art = c.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["image3-jw01234-o001-t001-nircam-clear-f200w-dq"])),
                                  sort=ArtifactSort.CREATED_DESC)
    assert dq_art, "no image3 DQ table"
    rows = {r["product"]: r for r in json.loads(dq_art[0].data)}
    i2d = rows["jw01234-o001_t001_nircam_clear-f200w_i2d.fits"]
    assert 0.0 < float(i2d["DO_NOT_USE %"]) < 100.0 and i2d["any flag %"] == i2d["DO_NOT_USE %"]
    assert i2d["SATURATED %"] == "n/a" and i2d["JUMP_DET %"] == "n/a"
    crfs = sorted(out.glob("*_crf.fits"))
    assert len(crfs) == len(sim.uncal) and {p.name for p in crfs} <= set(rows)
    from astropy.io import fits

    with fits.open(crfs[0]) as h:
        dq = h["DQ"].data
        assert float(rows[crfs[0].name]["SATURATED %"]) == pytest.approx(100 * np.mean((dq & 2) != 0), abs=1e-3)
        assert float(rows[crfs[0].name]["any flag %"]) == pytest.approx(100 * np.mean(dq != 0), abs=1e-3)
        assert np.mean((dq & 2) != 0) > 0, "the simulated bright star saturates"


def _in_pty(argv, env, cwd, timeout=600) -> str:
    """Run ``argv`` with a pseudo-terminal as its stdout; returns what it printed."""
    import pty
    import select
    import time

    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # 160 columns: no truncation
    proc = subprocess.Popen(argv, stdout=slave, stderr=subprocess.PIPE, env=env, cwd=cwd, start_new_session=True)
    os.close(slave)
    chunks, deadline = [], time.time() + timeout
    try:
        while time.time() < deadline:
            r, _, _ = select.select([master], [], [], 1.0)
            if r:
                try:
                    data = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        proc.wait(timeout=60)
    finally:
        os.close(master)
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
    assert proc.returncode == 0, proc.stderr.read().decode(errors="replace")[-2000:]
    return b"".join(chunks).decode(errors="replace")


def test_progress_display_on_a_terminal_only(sim, tmp_path):
    env = dict(os.environ, CRDS_PATH=str(sim.crds_path), WEBBFLOW_PREFECT="off", COLUMNS="160", TERM="xterm")
    argv = [sys.executable, "-m", "webbflow.flows.cli", "run", "detector1", str(sim.uncal[1]), "--output-dir",
            str(tmp_path)]
    import re

    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", _in_pty(argv, env, tmp_path))
    root = "jw01234001001_02101_00002_nrca1"
    # the row names the exposure and ends done with the count of steps it ran (the final render)
    final = [line for line in re.split(r"[\r\n]+", shown) if f"detector1 {root}" in line][-1]
    assert "done" in final and "16 steps" in final, shown[-3000:]
    assert f"wrote {tmp_path / (root + '_rate.fits')}" in shown
    # stdout to a pipe: only the products; -v: the per-step log on stderr, with reasons and figures
    r = subprocess.run(argv[:3] + ["-v"] + argv[3:], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"wrote {tmp_path / (root + '_rate.fits')}",
                                     f"wrote {tmp_path / (root + '_rateints.fits')}"]
    assert "dark_current: COMPLETE in" in r.stderr
    assert "persistence: SKIPPED in" in r.stderr and "(skip=True)" in r.stderr
    assert "jump: COMPLETE in" in r.stderr and "jumps flagged" in r.stderr


_LIBRARY_LOGS_RUN = """
import logging, sys
import numpy as np
from prefect import flow, task
from webbflow import models
from webbflow.flows.stage import quiet_prefect_settings, step_task
from webbflow.tasks import load_all
from webbflow.tasks.base import STEPS

load_all()
stamp = sys.argv[1]

@task
def in_a_task():
    logging.getLogger("stcal.jump.jump").info("stcal line %s", stamp)

@flow(name="library-logs")
def tiny():
    # tweakreg's task body, skipped: it routes the library loggers as a real run does
    res = step_task("tweakreg")("tweakreg", models.ImageModel(np.zeros((4, 4), np.float32)),
                                STEPS["tweakreg"].make_params({"skip": True}), {})
    assert res.status == "SKIPPED"
    logging.getLogger("tweakwcs.imalign").info("tweakwcs fit %s: rms 0.01 pix, 12 matches", stamp)
    in_a_task()

logging.getLogger("tweakwcs.imalign").info("outside any run %s", stamp)
with quiet_prefect_settings():
    state = tiny(return_state=True)
assert state.is_completed()
print("FLOW_RUN", state.state_details.flow_run_id)
"""


def test_tweakwcs_and_stcal_log_lines_reach_the_runs_logs(prefect_server):
    """The library loggers (tweakwcs: tweakreg's fits; stcal: jump and ramp notes) are routed into the
    run's logs by the step task body; a line emitted outside any run is not sent to the server.

    The run is made in a fresh process, as a user's run is: logging is process-wide, and the tests
    before this one in a pytest worker (jwst's logging set-up, quieted oracles, log capture) leave
    it otherwise than a user's process has it."""
    import time
    from uuid import UUID

    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId, LogFilterName

    stamp = f"{time.time_ns()}"
    r = subprocess.run([sys.executable, "-c", _LIBRARY_LOGS_RUN, stamp], capture_output=True, text=True,
                       timeout=600, env={**os.environ, "PREFECT_API_URL": prefect_server})
    assert r.returncode == 0, r.stderr[-2000:]
    fr_id = UUID(next(ln.split()[1] for ln in r.stdout.splitlines() if ln.startswith("FLOW_RUN ")))
    wanted = {f"tweakwcs fit {stamp}: rms 0.01 pix, 12 matches", f"stcal line {stamp}"}
    with get_client(sync_client=True) as c:
        deadline = time.monotonic() + 60
        while True:  # logs reach the server in batches
            got = {lg.message for lg in c.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[fr_id])))}
            if wanted <= got or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        every = c.read_logs(log_filter=LogFilter(name=LogFilterName(any_=["tweakwcs.imalign"])))
    assert wanted <= got, got
    assert not [lg for lg in every if lg.message == f"outside any run {stamp}"]
