"""The association fan-out on Dask: prefect-dask's DaskTaskRunner on a LocalCluster of 2 worker processes."""

from __future__ import annotations


import pytest

from webbflow import models

distributed = pytest.importorskip("distributed", reason="the dask extra (prefect-dask, distributed) is not installed")
pytest.importorskip("prefect_dask")


@pytest.fixture(scope="module")
def observation(tmp_path_factory):
    from webbflow.refs.simulator import simulate

    raw = tmp_path_factory.mktemp("dask") / "raw"
    sim = simulate(raw, instrument="nircam", detector="nrca1", size=64, ngroups=3, nexp=3, seed=7)
    from conftest import write_level2_asn

    return sim, write_level2_asn(sim, raw)


def test_make_task_runner_dask():
    from prefect_dask import DaskTaskRunner

    from webbflow.flows.association import make_task_runner

    local = make_task_runner("dask", max_workers=2)
    assert isinstance(local, DaskTaskRunner) and local.address is None
    assert local.cluster_kwargs["n_workers"] == 2 and local.cluster_kwargs["processes"] is True
    remote = make_task_runner("dask", address="tcp://scheduler.example:8786")
    assert remote.address == "tcp://scheduler.example:8786"


def test_association_fan_out_on_a_local_cluster_of_two_workers(observation, crds_env, tmp_path):
    from distributed import Client, LocalCluster, get_task_stream

    from webbflow.flows.association import run_association

    sim, asn = observation
    crds_env(sim.crds_path)
    out = tmp_path / "products"
    import time

    t0 = time.perf_counter()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        t1 = time.perf_counter()
        with get_task_stream(client) as ts:
            res = run_association(asn, output_dir=out, runner="dask", address=cluster.scheduler_address)
        print(f"cluster start {t1 - t0:.1f} s, association {time.perf_counter() - t1:.1f} s; per member:",
              [round(m.seconds, 1) for m in res.members])
        workers = set(client.scheduler_info()["workers"])
        records = list(ts.data)
    assert len(res.members) == 3 and all(m.ok for m in res.members), [m.error for m in res.members]
    member_tasks = [r for r in records if "member" in str(r.get("key", ""))]
    print(f"{len(member_tasks)} member tasks on workers:", sorted({r["worker"] for r in member_tasks}))
    assert len(member_tasks) == 3
    used = {r["worker"] for r in member_tasks}
    assert used <= workers and len(used) == 2, "both Dask workers calibrated exposures"
    for m in res.members:
        root = m.member.split("_uncal")[0]
        cal = models.open(out / f"{root}_cal.fits")
        assert cal.meta.cal_step.flat_field == "COMPLETE" and cal.data.shape == (64, 64)
    assert not list(out.rglob("*.part"))


def test_killed_dask_worker_loses_nothing(observation, crds_env, tmp_path):
    """A Dask worker process is killed (SIGKILL) while it calibrates an exposure: Dask runs the task
    again on a live worker, and because a member task only writes through temporary names and
    renames, its rerun leaves the same products as an undisturbed run, with no temporary file left."""
    import os
    import signal
    import threading
    import time

    import numpy as np
    from distributed import Client, LocalCluster

    from webbflow.flows.association import run_association

    sim, asn = observation
    crds_env(sim.crds_path)
    out = tmp_path / "products"
    result, killed = {}, {}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        pids = client.run(os.getpid)  # {worker address: pid}

        def run():
            try:
                result["res"] = run_association(asn, output_dir=out, runner="dask", address=cluster.scheduler_address)
            except BaseException as exc:  # noqa: BLE001 - reported by the assertions below
                result["error"] = exc

        t = threading.Thread(target=run)
        t.start()
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not killed and t.is_alive():
            busy = {w: keys for w, keys in client.processing().items() if any("member" in str(k) for k in keys)}
            if busy:
                time.sleep(2.0)  # well inside the task: its references are read, its steps are running
                worker = sorted(busy)[0]
                os.kill(pids[worker], signal.SIGKILL)
                killed[worker] = sorted(map(str, busy[worker]))
                print("killed worker", worker, "while it ran", killed[worker])
            time.sleep(0.2)
        t.join(timeout=900)
    assert killed, "a worker was busy with an exposure and was killed"
    assert "error" not in result, result.get("error")
    res = result["res"]
    assert len(res.members) == 3 and all(m.ok for m in res.members), [m.error for m in res.members]
    assert not list(out.rglob("*.part")), "no temporary file left by the killed worker"
    # the products equal those of an undisturbed run in this process
    from webbflow.flows.calwebb_detector1 import detector1
    from webbflow.flows.calwebb_image2 import image2
    from webbflow.flows.stage import quiet_prefect_settings

    for m in res.members:
        root = m.member.split("_uncal")[0]
        cal = models.open(out / f"{root}_cal.fits")
        assert cal.meta.cal_step.flat_field == "COMPLETE"
        with quiet_prefect_settings():
            rate, _ = detector1.fn(str(sim.uncal[0].parent / m.member))
            ref = image2.fn(rate)
        ref = ref[0] if isinstance(ref, (list, tuple)) else ref
        np.testing.assert_array_equal(cal.data, ref.data)
        np.testing.assert_array_equal(cal.dq, ref.dq)
