"""Associations: reading real asn files, validation, member path safety, work resolution."""

from __future__ import annotations

import json

import numpy as np
import pytest

from webbflow import models
from webbflow.errors import InputFileError
from webbflow.flows.association import load_asn, member_path, work_needed

from conftest import SHARED_DATA

ASN_DIR = SHARED_DATA / "associations" / "asn"


@pytest.mark.real
@pytest.mark.parametrize("name", sorted(p.name for p in ASN_DIR.glob("*.json")))
def test_real_association_files_validate(name):
    asn, folder = load_asn(ASN_DIR / name)
    assert asn.products and all(p.members for p in asn.products)
    assert folder == ASN_DIR.resolve()


def test_levels():
    lv2, _ = load_asn(ASN_DIR / "asn_level2.json")
    lv3, _ = load_asn(ASN_DIR / "asn_mosaic.json")
    assert lv2.level == 2 and lv3.level == 3


def test_member_paths_stay_in_the_folder(tmp_path):
    asn = {"asn_type": "image3", "asn_rule": "candidate_Asn_Lv3Image", "products": [
        {"name": "p", "members": [{"expname": "../../etc/passwd", "exptype": "science"}]}]}
    p = tmp_path / "bad_asn.json"
    p.write_text(json.dumps(asn))
    a, folder = load_asn(p)
    with pytest.raises(InputFileError, match=r"bad_asn.json.*passwd.*outside the association's folder"):
        member_path(p, folder, a.products[0].members[0].expname)
    with pytest.raises(InputFileError, match="absolute path"):
        member_path(p, folder, "/etc/passwd")
    # a subfolder is fine
    assert member_path(p, folder, "./data/x_rate.fits") == (tmp_path / "data" / "x_rate.fits").resolve()


@pytest.mark.real
def test_real_bad_path_example_is_refused_or_inside(tmp_path):
    # the shared example names ./data/... (inside the folder): accepted; a parent path is not
    asn, folder = load_asn(ASN_DIR / "asn_level2_bad_path.json")
    for prod in asn.products:
        for m in prod.members:
            assert folder in member_path(ASN_DIR / "asn_level2_bad_path.json", folder, m.expname).parents


@pytest.mark.parametrize(
    "text,problem",
    [
        ("{not json", "invalid JSON"),
        ('{"products": []}', "products"),
        ('{"products": [{"name": "p", "members": [{"exptype": "science"}]}]}', "expname"),
        ('[1, 2]', "valid association"),
    ],
)
def test_malformed_associations(tmp_path, text, problem):
    p = tmp_path / "m_asn.json"
    p.write_text(text)
    with pytest.raises(InputFileError) as e:
        load_asn(p)
    assert "m_asn.json" in str(e.value) and problem in str(e.value)


def test_work_needed(tmp_path):
    assert work_needed(tmp_path / "jw01_uncal.fits") == ["detector1", "image2"]
    assert work_needed(tmp_path / "jw01_rate.fits") == ["image2"]
    assert work_needed(tmp_path / "jw01_cal.fits") == []
    m = models.ImageModel(np.zeros((4, 4), np.float32))
    m.meta.cal_step.photom = "COMPLETE"
    m.save(tmp_path / "oddly_named.fits")
    assert work_needed(tmp_path / "oddly_named.fits") == []


def test_concurrent_exposure_flows_read_back_their_own_runs():
    """Exposure flows of one association run on a thread pool; each reads the record of the
    run it made (the products it wrote), even when a neighbour finishes in between."""
    import threading

    from webbflow.flows.stage import LastRuns

    last = LastRuns()
    barrier = threading.Barrier(2)
    seen = {}

    def exposure(name):
        last.append(name)
        barrier.wait()  # both have recorded their run before either reads it back
        seen[name] = last[-1]

    threads = [threading.Thread(target=exposure, args=(n,)) for n in ("jw01_nrca1", "jw01_nrca2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"jw01_nrca1": "jw01_nrca1", "jw01_nrca2": "jw01_nrca2"}


def test_an_untracked_run_takes_one_member_at_a_time_unless_told(monkeypatch):
    """Outside a Prefect run the members of an association are made one after the other in the calling
    thread (one exposure's arrays in memory at a time); max_workers=2 runs two at once on threads."""
    import threading

    from webbflow.flows import association as A

    running, most, where = [0], [0], []
    lock = threading.Lock()
    together: list[threading.Barrier] = []  # with two workers: both members are running before either ends

    def member(path, *args, **kwargs):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        where.append(threading.current_thread() is threading.main_thread())
        if together:
            together[0].wait()
        with lock:
            running[0] -= 1
        return A.MemberResult(member=path, ok=True)

    monkeypatch.setattr(A.member_task, "fn", member)
    results = [f.result() for f in [A.submit_member(f"jw0{i}_uncal.fits", "out", None, None) for i in range(3)]]
    assert [r.member for r in results] == ["jw00_uncal.fits", "jw01_uncal.fits", "jw02_uncal.fits"]
    assert most[0] == 1 and all(where)

    token = A._PLAIN_WORKERS.set(2)
    try:
        most[0], where[:] = 0, []
        together.append(threading.Barrier(2, timeout=60))
        results = [f.result() for f in [A.submit_member(f"jw0{i}_uncal.fits", "out", None, None) for i in range(2)]]
    finally:
        A._PLAIN_WORKERS.reset(token)
    assert [r.member for r in results] == ["jw00_uncal.fits", "jw01_uncal.fits"]
    assert most[0] == 2 and not any(where)


def test_an_untracked_run_warms_up_readers_only_for_threads(monkeypatch, tmp_path):
    """Importing every step module and round-tripping a WCS before the members start is for members
    that start together on threads; a run taking them one at a time does without it."""
    from webbflow.flows import _rerun
    from webbflow.flows import association as A

    calls = []
    monkeypatch.setattr(A, "warm_up_readers", lambda: calls.append("warm"))
    monkeypatch.setattr(A.process_association, "fn", lambda asn, **kw: A.AssociationResult(asn=asn, members=[]))
    monkeypatch.setattr(_rerun, "lookup", lambda *a, **kw: None)
    monkeypatch.setattr(_rerun, "store", lambda *a, **kw: None)
    from webbflow.flows import stage

    monkeypatch.setattr(stage, "prefect_tracking", lambda: False)
    asn = tmp_path / "x_asn.json"
    asn.write_text("{}")
    assert A.run_association(asn, output_dir=tmp_path).asn == str(asn)
    assert calls == []
    A.run_association(asn, output_dir=tmp_path, max_workers=2)
    assert calls == ["warm"]
