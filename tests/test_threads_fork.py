"""tasks/_threads: work shared out to forked processes comes back whole, in order, and failures surface."""

import os

import pytest

from webbflow.tasks import _threads as T
from webbflow.tasks import resample as R

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")


def test_fork_map_returns_the_serial_answers_in_order():
    items = list(range(7))
    for n in (1, 2, 3):  # item x goes to child x % n; 0 is this process's
        assert T.fork_map(lambda x: (x * x, T.in_child()), items, nproc=n) == [(x * x, x % n != 0) for x in items]
    assert T.fork_map(lambda x: x, [], nproc=2) == []


def test_a_failure_in_a_child_is_raised_here():
    def fn(x):
        if x == 1:  # item 1 goes to the child
            raise ValueError("bad item")
        return x

    with pytest.raises(RuntimeError, match="ValueError: bad item"):
        T.fork_map(fn, [0, 1], nproc=2)


def test_processes_follows_the_setting_and_the_thread(monkeypatch):
    import threading

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    monkeypatch.setenv("WEBBFLOW_PROCESSES", "2")
    assert T.processes() == 2
    monkeypatch.setenv("WEBBFLOW_PROCESSES", "1")
    assert T.processes() == 1
    monkeypatch.delenv("WEBBFLOW_PROCESSES")
    assert T.processes() == 3
    got = []
    t = threading.Thread(target=lambda: got.append(T.processes()))  # steps run side by side on threads
    t.start()
    t.join()
    assert got == [1]


class _Wcs:
    forward_transform = None


def test_shared_entries_made_in_a_child_are_kept_by_the_parent():
    import numpy as np

    a, b, grid = _Wcs(), _Wcs(), _Wcs()
    store: dict = {"pixmap": [((a, grid, (2, 2), 1, 1), np.zeros((2, 2, 2)))]}
    marks = {k: len(v) for k, v in store.items()}

    def child():
        with R._sharing(store):
            R._lookup("pixmap", (b, grid, (2, 2), 1, 1), lambda: np.ones((2, 2, 2)))
            return R.shared_entries_since(marks)

    entries = T.Forked(child).result()
    assert len(store["pixmap"]) == 1  # the child's store was its own
    with R._sharing(store):
        R.take_shared_entries(entries, [a, grid])  # b unknown here: left out
        assert len(store["pixmap"]) == 1
        R.take_shared_entries(entries, [a, b, grid])
        R.take_shared_entries(entries, [a, b, grid])  # held already
    (key, value), = store["pixmap"][1:]
    assert key[0] is b and key[1] is grid and (value == 1).all()
