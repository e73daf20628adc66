"""An association run with no Prefect API: no flow run (so no temporary server), the same products as a
run tracked by Prefect, and an unchanged rerun recognised as a whole without opening an exposure; a
changed reference or input goes back through the stage-by-stage cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from webbflow.flows import _rerun
from webbflow.flows import association as A

ROOTS = [f"jw01234001001_02101_0000{i}_nrca1" for i in (1, 2)]
VOLATILE = {"DATE", "CHECKSUM", "DATASUM"}


@pytest.fixture(scope="module")
def observation(tmp_path_factory):
    """Two NRCA1 exposures (64x64, 3 groups) and a level-2 association of their raw files."""
    from conftest import write_level2_asn

    from webbflow.refs.simulator import simulate

    raw = tmp_path_factory.mktemp("rerun") / "raw"
    sim = simulate(raw, instrument="nircam", detector="nrca1", size=64, ngroups=3, nexp=2, seed=5)
    return sim, write_level2_asn(sim, raw)


@pytest.fixture
def untracked(monkeypatch):
    """No Prefect: any flow run (which would start a server without an API) fails the test."""
    import prefect

    monkeypatch.setenv("WEBBFLOW_PREFECT", "off")

    def no_flow_run(self, *a, **k):
        raise AssertionError(f"flow {self.name} was run through Prefect")

    monkeypatch.setattr(prefect.Flow, "__call__", no_flow_run)


def _mtimes(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in out.glob("*.fits")}


def _count_opens(monkeypatch) -> list:
    from webbflow import models

    opened = []
    real = models.open

    def spy(path, *a, **k):
        opened.append(Path(str(path)).name)
        return real(path, *a, **k)

    monkeypatch.setattr(models, "open", spy)
    return opened


def test_untracked_run_makes_the_tracked_runs_products(observation, crds_env, tmp_path, monkeypatch):
    sim, asn = observation
    crds_env(sim.crds_path)
    tracked = A.run_association(asn, output_dir=tmp_path / "tracked", max_workers=2)  # session server
    monkeypatch.setenv("WEBBFLOW_PREFECT", "off")
    import prefect

    monkeypatch.setattr(prefect.Flow, "__call__", lambda self, *a, **k: pytest.fail("a Prefect flow run"))
    plain = A.run_association(asn, output_dir=tmp_path / "plain", max_workers=2)
    assert [m.ok for m in plain.members] == [m.ok for m in tracked.members] == [True, True]
    names = sorted(p.name for p in (tmp_path / "tracked").glob("*.fits"))
    assert names == sorted(p.name for p in (tmp_path / "plain").glob("*.fits"))
    assert {f"{r}_{s}.fits" for r in ROOTS for s in ("rate", "rateints", "cal", "i2d")} <= set(names)
    for name in names:
        with fits.open(tmp_path / "tracked" / name) as a, fits.open(tmp_path / "plain" / name) as b:
            assert [h.name for h in a] == [h.name for h in b], name
            for ha, hb in zip(a, b):
                if ha.name == "ASDF":  # its size moves with the provenance's timings, as in test_products_whole
                    continue
                ka = {k: v for k, v in ha.header.items() if k not in VOLATILE}
                kb = {k: v for k, v in hb.header.items() if k not in VOLATILE}
                assert ka == kb, (name, ha.name)
                if isinstance(ha, fits.BinTableHDU):
                    assert ha.data.tobytes() == hb.data.tobytes(), f"{name}[{ha.name}]"
                elif ha.data is not None:
                    np.testing.assert_array_equal(ha.data, hb.data, err_msg=f"{name}[{ha.name}]")


def test_unchanged_rerun_is_recognised_whole_and_changes_are_not(observation, crds_env, tmp_path, untracked,
                                                                  monkeypatch):
    sim, asn = observation
    crds_env(sim.crds_path)
    out = tmp_path / "products"
    first = A.run_association(asn, output_dir=out, max_workers=2)
    assert all(m.ok and m.reused == [] and m.stages == ["detector1", "image2"] for m in first.members)
    record = _rerun.record_path(asn, out)
    assert record.exists()
    t0 = _mtimes(out)

    # nothing changed: every product reused, no exposure opened, nothing rewritten
    opened = _count_opens(monkeypatch)
    again = A.run_association(asn, output_dir=out, max_workers=2)
    assert opened == []
    assert all(m.ok and m.reused == ["detector1", "image2"] for m in again.members)
    assert sorted(map(str, again.members[0].products)) == sorted(map(str, first.members[0].products))
    assert all(getattr(p, "reused", False) for m in again.members for p in m.products)
    assert _mtimes(out) == t0

    # a reference file touched: the whole-run record no longer holds, the stages' keys (by reference
    # name and size) still do, so the exposures are opened and checked but nothing is recomputed
    ref = sorted(json.loads(record.read_text())["references"])[0]
    os.utime(ref)
    again = A.run_association(asn, output_dir=out, max_workers=2)
    assert set(opened) >= {f"{r}_uncal.fits" for r in ROOTS}
    assert all(m.reused == ["detector1", "image2"] for m in again.members)
    assert _mtimes(out) == t0
    opened.clear()
    A.run_association(asn, output_dir=out, max_workers=2)
    assert opened == [], "the record was written again"

    # one raw exposure changed: that exposure is redone, the other reused
    with fits.open(sim.uncal[0], mode="update") as h:
        h["SCI"].data[0, 0, 10, 10] += 50
    res = {m.member.split("_uncal")[0]: m for m in A.run_association(asn, output_dir=out, max_workers=2).members}
    assert res[ROOTS[0]].reused == [] and res[ROOTS[1]].reused == ["detector1", "image2"]
    t1 = _mtimes(out)
    assert t1[f"{ROOTS[0]}_cal.fits"] != t0[f"{ROOTS[0]}_cal.fits"]
    assert t1[f"{ROOTS[1]}_cal.fits"] == t0[f"{ROOTS[1]}_cal.fits"]

    # a product deleted: made again
    (out / f"{ROOTS[1]}_cal.fits").unlink()
    res = {m.member.split("_uncal")[0]: m for m in A.run_association(asn, output_dir=out, max_workers=2).members}
    assert (out / f"{ROOTS[1]}_cal.fits").exists() and res[ROOTS[1]].reused == ["detector1"]
