"""detector1 streamed one integration at a time gives the in-memory flow's products exactly.

``flows/_streaming.py`` runs the ramp steps integration by integration, keeps
the calibrated ramp in a spill file, and runs jump and ramp_fit on blocks of
rows.  These tests run both ways on small simulated exposures with several
integrations (blocks of 8 rows, so that jump's neighbour flagging crosses
block edges), and compare every array and the metadata.
"""

from __future__ import annotations

import numpy as np
import pytest

from webbflow.flows import _streaming


def _simulate(root, **kw):
    from webbflow.refs.simulator import simulate

    return simulate(root, **kw)


@pytest.fixture(scope="module")
def nircam(tmp_path_factory):
    return _simulate(tmp_path_factory.mktemp("stream-nircam"), instrument="nircam", size=64, ngroups=7, nints=3, seed=21)


@pytest.fixture(scope="module")
def miri(tmp_path_factory):
    return _simulate(tmp_path_factory.mktemp("stream-miri"), instrument="miri", size=64, ngroups=12, nints=4, seed=22)


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def _both(sim, crds_env, monkeypatch, steps=None):
    from webbflow.flows.calwebb_detector1 import detector1, detector1_last_run

    crds_env(sim.crds_path)
    monkeypatch.setattr(_streaming, "BLOCK_BYTES", 1)  # blocks of 8 rows
    out = {}
    for mode in ("never", "always"):
        monkeypatch.setenv("WEBBFLOW_STREAM", mode)
        out[mode] = detector1.fn(str(sim.uncal[0]), steps=steps)
        # the steps table: status, skip reason and science figures (jumps flagged, saturated pixels)
        out[mode + "-records"] = [(r.name, r.status, r.reason, r.qa) for r in detector1_last_run[-1].records]
    return out


def _assert_identical(out):
    for k, name in enumerate(("rate", "rateints")):
        a, b = out["never"][k], out["always"][k]
        for arr in ("data", "dq", "err", "var_poisson", "var_rnoise"):
            x, y = getattr(a, arr), getattr(b, arr)
            assert x.dtype == y.dtype and x.shape == y.shape, (name, arr)
            assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), (name, arr)
        fa, fb = _flat(a.meta.model_dump()), _flat(b.meta.model_dump())
        assert {k2 for k2 in set(fa) | set(fb) if fa.get(k2) != fb.get(k2)} == set(), name
    assert out["never-records"] == out["always-records"]
    figures = {name: qa for name, status, _, qa in out["always-records"] if status == "COMPLETE"}
    assert "jumps flagged" in figures["jump"] and "saturated pixels" in figures["saturation"]


def test_streamed_nircam_equals_in_memory(nircam, crds_env, monkeypatch):
    out = _both(nircam, crds_env, monkeypatch)
    _assert_identical(out)
    rate = out["always"][0]
    assert rate.meta.cal_step.jump == "COMPLETE" and rate.meta.cal_step.ramp_fit == "COMPLETE"
    assert np.count_nonzero(out["always"][1].dq & 4) > 0  # jumps were found (and agree)
    print(f"streamed NIRCam: rate {rate.data.shape}, {np.isfinite(rate.data).mean():.4f} finite, identical arrays and metadata")


def test_streamed_miri_equals_in_memory(miri, crds_env, monkeypatch):
    """MIRI: per-integration dark and reset, rscd counts over integrations, groups dropped in ramp fitting."""
    out = _both(miri, crds_env, monkeypatch)
    _assert_identical(out)
    m = out["always"][0].meta
    assert m.cal_step.rscd == "COMPLETE" and m.cal_step.reset == "COMPLETE"


def test_streamed_with_other_jump_thresholds(nircam, crds_env, monkeypatch):
    out = _both(nircam, crds_env, monkeypatch,
                steps={"jump": {"rejection_threshold": 3.0, "flag_4_neighbors": False}, "ramp_fit": {"suppress_one_group": False}})
    _assert_identical(out)


def test_when_detector1_streams(nircam, crds_env, monkeypatch):
    from webbflow import models
    from webbflow.flows.stage import resolve_params

    crds_env(nircam.crds_path)
    path = str(nircam.uncal[0])
    head = models.open(path, arrays=())
    assert not head.has("data")  # the metadata alone
    from webbflow.flows.calwebb_detector1 import branch_for

    names = branch_for(head)

    def reason(**steps):
        return _streaming.stream_reason(path, head, names, resolve_params(names, steps, model=head), False)

    monkeypatch.setenv("WEBBFLOW_STREAM", "auto")
    assert "fits WEBBFLOW_MEMORY_BUDGET" in reason()  # small: in memory
    monkeypatch.setenv("WEBBFLOW_MEMORY_BUDGET", "10K")
    assert reason() is None  # larger than the budget: streamed
    assert "needs the whole exposure" in reason(persistence={"skip": False, "persistence_time": 100})
    assert "jump options" in reason(jump={"expand_large_events": True})
    assert "saves an intermediate product" in reason(dark_current={"save_results": True})
    assert "LIKELY" in reason(ramp_fit={"algorithm": "LIKELY"})
    monkeypatch.setenv("WEBBFLOW_STREAM", "never")
    assert reason() == "WEBBFLOW_STREAM=never"


def test_spill_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    shape = (3, 4, 20, 6)
    data = rng.normal(size=shape).astype(np.float32)
    gdq = rng.integers(0, 255, size=shape, dtype=np.uint8)
    spill = _streaming.Spill(shape, tmp_path)
    try:
        for i in range(3):
            spill.write_integration(i, data[i : i + 1], gdq[i : i + 1])
        d, g = spill.read_rows(5, 12)
        assert np.array_equal(d, data[:, :, 5:12]) and np.array_equal(g, gdq[:, :, 5:12])
        spill.write_groupdq_rows(5, np.zeros((3, 4, 7, 6), np.uint8))
        _, g = spill.read_rows(0, 20, with_data=False)
        assert not g[:, :, 5:12].any() and np.array_equal(g[:, :, :5], gdq[:, :, :5])
    finally:
        spill.close()
    assert not spill.dir.exists()
