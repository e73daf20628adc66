"""Deployments end to end: a real local Prefect server, a process work pool, ``prefect deploy`` of
deployments/prefect.yaml, a worker, and ``run_deployment`` of detector1 on a small simulated exposure.

One session-scoped fixture starts everything (about 30-60 s on a loaded 2-core machine) and stops
each process it started by its PID at the end.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from webbflow import models

PREFECT = str(Path(sys.executable).with_name("prefect"))
POOL = "webbflow-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """Stop a process started with start_new_session=True, and its children, by its PID (its group)."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


class Stack:
    def __init__(self, url, env, home, pool, sim, procs, logs):
        self.url, self.env, self.home, self.pool, self.sim, self.procs, self.logs = url, env, home, pool, sim, procs, logs

    def settings(self):
        from prefect.settings import PREFECT_API_URL, temporary_settings

        return temporary_settings({PREFECT_API_URL: self.url})

    def client(self):
        from prefect import get_client

        return get_client(sync_client=True)

    def log_tail(self, n=3000) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-n:]}" for p in self.logs if p.exists())


@pytest.fixture(scope="module")
def prefect_stack(tmp_path_factory):
    from webbflow.refs.simulator import simulate

    base = tmp_path_factory.mktemp("deployments")
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = dict(os.environ)
    env.update(
        PREFECT_HOME=str(base / "prefect-home"), PREFECT_API_URL=url, PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_RUNNER_POLL_FREQUENCY="1", PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_WORKER_PREFETCH_SECONDS="1",
        PREFECT_LOGGING_LEVEL="INFO", PREFECT_CLI_COLORS="false", PREFECT_CLI_WRAP_LINES="false",
    )
    env.pop("CRDS_CONTEXT", None)
    procs: list[subprocess.Popen] = []
    logs = [base / "server.log", base / "worker.log"]
    t0 = time.time()
    try:
        procs.append(subprocess.Popen(
            [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=open(logs[0], "w"), stderr=subprocess.STDOUT, start_new_session=True, cwd=base,
        ))
        # simulate while the server starts
        sim = simulate(base / "raw", instrument="nircam", size=64, ngroups=4, nexp=1, seed=5)
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if procs[0].poll() is not None or time.time() > deadline:
                pytest.fail("the Prefect server did not start:\n" + logs[0].read_text()[-3000:])
            time.sleep(0.5)
        t_up = time.time()
        from webbflow.deployments import ensure_work_pool
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: url}):
            assert ensure_work_pool(POOL) is True
        procs.append(subprocess.Popen(
            [PREFECT, "worker", "start", "--pool", POOL, "--type", "process", "--name", "test-worker"],
            env=env, stdout=open(logs[1], "w"), stderr=subprocess.STDOUT, start_new_session=True, cwd=base,
        ))
        from webbflow.deployments import prefect_yaml_path

        # the yaml names the pool "webbflow"; deploy it to this test's pool
        yaml_text = prefect_yaml_path().read_text().replace("name: webbflow\n      work_queue_name", f"name: {POOL}\n      work_queue_name")
        (base / "prefect.yaml").write_text(yaml_text)
        dep = subprocess.run([PREFECT, "--no-prompt", "deploy", "--all", "--prefect-file", str(base / "prefect.yaml")],
                             env=env, capture_output=True, text=True, cwd=base, timeout=180)
        assert dep.returncode == 0, dep.stdout[-3000:] + dep.stderr[-3000:]
        print(f"server up {t_up - t0:.1f} s, pool + worker + prefect deploy {time.time() - t_up:.1f} s")
        yield Stack(url, env, base, POOL, sim, procs, logs)
    finally:
        for p in reversed(procs):
            _stop(p)


def _deployments(stack) -> dict:
    with stack.settings(), stack.client() as c:
        return {f"{c.read_flow(d.flow_id).name}/{d.name}": d for d in c.read_deployments()}


def test_every_flow_is_deployed_on_the_process_pool(prefect_stack):
    deps = _deployments(prefect_stack)
    from webbflow.deployments.params import image3_available

    # self-explaining names, one form per instrument family where the steps differ
    expected = {"detector1/near-ir-uncal-to-rate", "detector1/miri-uncal-to-rate", "image2/rate-to-cal",
                "guider/guider-uncal-to-cal", "dark/dark-uncal-to-dark", "association/near-ir-asn-to-mosaic",
                "association/miri-asn-to-mosaic", "reprocess/daily-new-references",
                "asn-generate/pool-to-associations"} | (
        {"image3/cal-to-mosaic"} if image3_available() else set())
    assert set(deps) == expected
    from webbflow.deployments import DEPLOYMENT_NAMES

    entry = {v: k for k, v in DEPLOYMENT_NAMES.items()}
    for name, d in deps.items():
        assert d.work_pool_name == POOL and d.pull_steps == []
        assert d.entrypoint == f"webbflow.deployments.flows.{entry[name.split('/')[1]]}"
        assert d.description
    with prefect_stack.settings(), prefect_stack.client() as c:
        assert c.read_work_pool(POOL).type == "process"


def test_parameter_forms_are_typed_from_the_step_models(prefect_stack):
    deps = _deployments(prefect_stack)
    s = deps["detector1/near-ir-uncal-to-rate"].parameter_openapi_schema
    assert s["required"] == ["input", "output_dir"]
    assert s["properties"]["steps"]["$ref"] == "#/definitions/Detector1NirSteps"
    d1 = s["definitions"]["Detector1NirSteps"]["properties"]
    assert {"dq_init", "saturation", "jump", "ramp_fit", "superbias"} <= set(d1)
    assert not {"emicorr", "rscd", "reset", "firstframe"} & set(d1), "MIRI-only steps stay off the near-IR form"
    miri = deps["detector1/miri-uncal-to-rate"].parameter_openapi_schema["definitions"]["Detector1MiriSteps"]["properties"]
    assert {"emicorr", "rscd", "reset", "jump"} <= set(miri) and "superbias" not in miri
    assert d1["jump"]["$ref"] == "#/definitions/JumpParams"
    jump = s["definitions"]["JumpParams"]["properties"]
    assert jump["rejection_threshold"] == {"default": 4.0, "description": "CR sigma rejection threshold", "minimum": 0,
                                           "title": "Rejection Threshold", "type": "number"}
    assert jump["flag_4_neighbors"]["type"] == "boolean" and jump["flag_4_neighbors"]["default"] is True
    assert jump["sat_expand"]["type"] == "integer" and jump["sat_expand"]["default"] == 2
    assert s["definitions"]["JumpParams"]["additionalProperties"] is False, "unknown parameters are refused"
    assert s["definitions"]["RampFitParams"]["properties"]["algorithm"]["default"] == "OLS_C"
    # an optional number is a plain number box (empty: not set), not a number/None switch
    assert s["definitions"]["RampFitParams"]["properties"]["firstgroup"] == {
        "default": None, "title": "Firstgroup", "type": "integer",
        "description": "ignore groups before this one (0-based) (empty: not set)"}
    switches = [f"{name}: {model}.{p}" for name, d in deps.items()
                for model, sch in (d.parameter_openapi_schema.get("definitions") or {}).items()
                for p, v in sch.get("properties", {}).items()
                if {"type": "null"} in v.get("anyOf", []) and {a.get("type") for a in v["anyOf"]} & {"number", "integer"}]
    assert switches == []
    tweak = deps["association/near-ir-asn-to-mosaic"].parameter_openapi_schema["definitions"]["TweakRegParams"]["properties"]
    assert tweak["sip_degree"]["type"] == "integer" and tweak["sip_degree"]["maximum"] == 6
    assert s["properties"]["save_calibrated_ramp"] == {
        "default": False, "position": 4, "title": "save_calibrated_ramp", "type": "boolean",
        "description": "Also write the calibrated ramp (``_ramp.fits``) before ramp fitting."}
    img2 = deps["image2/rate-to-cal"].parameter_openapi_schema["definitions"]
    assert set(img2["Image2Steps"]["properties"]) == {"bkg_subtract", "assign_wcs", "flat_field", "photom", "resample"}
    asn = deps["association/near-ir-asn-to-mosaic"].parameter_openapi_schema
    assert {"Detector1NirSteps", "Image2Steps", "AssociationNirSteps"} <= set(asn["definitions"])
    assert asn["properties"]["runner"]["enum"] == ["threads", "processes", "dask"]


def test_every_deployment_parameter_has_a_description(prefect_stack):
    """Top-level parameters, each step of a form and each step's parameters (the common ones included)."""
    missing = []
    for name, d in _deployments(prefect_stack).items():
        s = d.parameter_openapi_schema
        missing += [f"{name}: {p}" for p, v in s["properties"].items() if not v.get("description")]
        for model, sch in (s.get("definitions") or {}).items():
            missing += [f"{name}: {model}.{p}" for p, v in sch.get("properties", {}).items() if not v.get("description")]
    assert missing == []


def test_reprocess_runs_on_a_cron_schedule(prefect_stack, tmp_path, capsys):
    d = _deployments(prefect_stack)["reprocess/daily-new-references"]
    (sched,) = d.schedules
    assert sched.schedule.cron == "0 6 * * *" and sched.schedule.timezone == "UTC"
    assert sched.active is False, "the yaml's schedule waits for a products folder"
    # webbflow deploy with a products folder: the same deployment, schedule on, folder as parameter
    from webbflow.flows.cli import main

    with prefect_stack.settings():
        rc = main(["deploy", "--pool", POOL, "--products", str(tmp_path), "--only", "reprocess", "--cron", "30 5 * * 1",
                   "--env", "CRDS_PATH=/data/crds"])
    assert rc == 0
    out = capsys.readouterr().out
    assert f"deployed reprocess/daily-new-references ({d.id})" in out and "reprocess runs at '30 5 * * 1'" in out
    d = _deployments(prefect_stack)["reprocess/daily-new-references"]
    (sched,) = d.schedules
    assert sched.active is True and sched.schedule.cron == "30 5 * * 1"
    assert d.parameters == {"products": str(tmp_path.resolve())}
    assert d.job_variables == {"env": {"CRDS_PATH": "/data/crds"}}


def test_bad_parameters_are_refused_before_any_run(prefect_stack):
    from prefect.deployments import run_deployment

    base = {"input": str(prefect_stack.sim.uncal[0]), "output_dir": str(prefect_stack.home / "never")}
    for steps in ({"jump": {"no_such_parameter": 1}}, {"jump": {"rejection_threshold": "high"}}, {"jupm": {}}):
        with prefect_stack.settings(), pytest.raises(Exception, match="(?i)validat|parameter"):
            run_deployment("detector1/near-ir-uncal-to-rate", parameters=base | {"steps": steps}, timeout=0)
    assert not (prefect_stack.home / "never").exists()


def test_run_deployment_detector1_on_a_worker(prefect_stack):
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.deployments import run_deployment

    sim = prefect_stack.sim
    out = prefect_stack.home / "products"
    params = {"input": str(sim.uncal[0]), "output_dir": str(out), "steps": {"jump": {"rejection_threshold": 5.5}}}
    with prefect_stack.settings():
        fr = run_deployment("detector1/near-ir-uncal-to-rate", parameters=params,
                            job_variables={"env": {"CRDS_PATH": str(sim.crds_path)}}, timeout=240)
    assert fr.state is not None and fr.state.is_completed(), f"{fr.state}\n{prefect_stack.log_tail()}"
    assert fr.name == "detector1 jw01234001001_02101_00001_nrca1"
    root = "jw01234001001_02101_00001_nrca1"
    rate = models.open(out / f"{root}_rate.fits")
    assert isinstance(rate, models.ImageModel) and rate.data.shape == (64, 64)
    assert isinstance(models.open(out / f"{root}_rateints.fits"), models.CubeModel)
    assert rate.meta.ref_file.crds.context_used == sim.context
    prov = rate._asdf_extra["webbflow_provenance"][-1]
    assert prov["parameters"]["jump"]["rejection_threshold"] == 5.5, "the form's value reached the step"
    assert prov["parameters"]["jump"]["three_group_rejection_threshold"] == 6.0
    assert not list(out.glob("*.part")) and not list(out.glob(".*.part"))
    with prefect_stack.settings(), prefect_stack.client() as c:
        arts = c.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[fr.id])))
        result_paths = {a.key for a in arts}
        assert {f"detector1-{root.replace('_', '-')}-steps", f"detector1-{root.replace('_', '-')}-dq",
                f"detector1-{root.replace('_', '-')}-summary"} <= result_paths
        steps = json.loads(next(a for a in arts if a.key.endswith("-steps")).data)
        assert [r["step"] for r in steps if r["status"] == "COMPLETE"][:2] == ["dq_init", "saturation"]
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

        logs = c.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[fr.id])))
    assert any("jump: COMPLETE" in lg.message for lg in logs), "step logs reach Prefect"
