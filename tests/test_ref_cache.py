"""References opened once per run (refs/_ref_cache.py): each file parsed once, each caller its own copy."""

from __future__ import annotations

import os

import numpy as np

from webbflow import models
from webbflow.refs import select
from webbflow.refs._ref_cache import reference_cache


def _gain(path, value=2.0):
    m = models.GainModel(data=np.full((6, 7), value, np.float32))
    m.save(path)
    return path


def _counting(monkeypatch):
    reads = []
    real = models.open

    def counted(path, *a, **k):
        reads.append(str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(models, "open", counted)
    return reads


def test_reference_parsed_once_per_run_and_copies_independent(tmp_path, monkeypatch):
    path = _gain(tmp_path / "gain.fits")
    reads = _counting(monkeypatch)
    with reference_cache() as state:
        a = select.open_reference("gain", path)
        a.data[0, 0] = -1.0  # a step changing its model in place
        a.meta.filename = "changed"
        b = select.open_reference("gain", path)
        c = select.open_reference("gain", path, arrays=("data",))  # other arrays: another entry
        d = select.open_reference("gain", path, arrays=("data",))
    assert reads == [str(path), str(path)]
    assert state["reused"] == 2
    assert isinstance(b, models.GainModel)
    assert np.all(b.data == 2.0) and b.meta.filename == "gain.fits"
    assert np.array_equal(c.data, d.data) and c.data is not d.data
    # outside a run nothing is kept
    select.open_reference("gain", path)
    select.open_reference("gain", path)
    assert len(reads) == 4


def test_changed_file_is_read_again(tmp_path, monkeypatch):
    path = _gain(tmp_path / "gain.fits")
    reads = _counting(monkeypatch)
    with reference_cache():
        assert np.all(select.open_reference("gain", path).data == 2.0)
        _gain(path, 3.0)
        st = os.stat(path)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        assert np.all(select.open_reference("gain", path).data == 3.0)
    assert len(reads) == 2


def test_references_over_the_limit_are_not_kept(tmp_path, monkeypatch):
    path = _gain(tmp_path / "gain.fits")
    reads = _counting(monkeypatch)
    monkeypatch.setenv("WEBBFLOW_REFERENCE_CACHE_MB", "0")
    with reference_cache():
        select.open_reference("gain", path)
        select.open_reference("gain", path)
    assert len(reads) == 2


def test_kept_references_dropped_before_stage3_are_read_again(tmp_path, monkeypatch):
    """An association run lets its members' references go when they are done (Stage 3 reads other
    files): the memory is freed, and a later open reads the file again and is kept again."""
    from webbflow.refs._ref_cache import drop_kept

    path = _gain(tmp_path / "gain.fits")
    reads = _counting(monkeypatch)
    with reference_cache() as state:
        select.open_reference("gain", path)
        assert state["bytes"] > 0 and len(state["models"]) == 1
        drop_kept()
        assert state["bytes"] == 0 and not state["models"]
        assert np.all(select.open_reference("gain", path).data == 2.0)
        select.open_reference("gain", path)
    assert reads == [str(path), str(path)]
