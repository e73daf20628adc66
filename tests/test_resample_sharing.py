"""Stage 3 shares resample's output grid and pixel maps between steps: never a stale one."""

import numpy as np

from webbflow.tasks import resample as R


class _Wcs:
    """Stands for a gwcs WCS (keys compare such objects by identity)."""

    forward_transform = None


def _counting(monkeypatch):
    import stcal.resample.utils as utils

    calls = []

    def fake(wcs_from, wcs_to, shape=None, **kwargs):
        calls.append((wcs_from, wcs_to))
        return np.full(tuple(shape) + (2,), float(len(calls)))

    monkeypatch.setattr(utils, "calc_pixmap", fake)
    return calls


def test_pixel_maps_are_computed_once_per_pair_of_wcs_objects(monkeypatch):
    calls = _counting(monkeypatch)
    a, b, grid = _Wcs(), _Wcs(), _Wcs()
    store: dict = {}
    with R._sharing(store):
        first = R._calc_pixmap_shared(a, grid, (3, 4), stepsize=1, order=1)
        first[:] = -1.0  # drizzle may change its map: the shared one must not change
        again = R._calc_pixmap_shared(a, grid, (3, 4), stepsize=1, order=1)
        other = R._calc_pixmap_shared(b, grid, (3, 4), stepsize=1, order=1)
        coarser = R._calc_pixmap_shared(a, grid, (3, 4), stepsize=2, order=1)
    assert len(calls) == 3  # a (once), b, a with another step size
    assert (again == 1.0).all() and (other == 2.0).all() and (coarser == 3.0).all()
    # a new WCS object for the same exposure (changed by tweakreg, or read again) is computed anew
    with R._sharing(store):
        R._calc_pixmap_shared(_Wcs(), grid, (3, 4), stepsize=1, order=1)
    assert len(calls) == 4


def test_nothing_is_shared_outside_a_product(monkeypatch):
    calls = _counting(monkeypatch)
    a, grid = _Wcs(), _Wcs()
    R._calc_pixmap_shared(a, grid, (2, 2), stepsize=1, order=1)
    R._calc_pixmap_shared(a, grid, (2, 2), stepsize=1, order=1)
    assert len(calls) == 2
    with R._sharing(None):  # a library whose members are not all in memory
        R._calc_pixmap_shared(a, grid, (2, 2), stepsize=1, order=1)
        R._calc_pixmap_shared(a, grid, (2, 2), stepsize=1, order=1)
    assert len(calls) == 4
