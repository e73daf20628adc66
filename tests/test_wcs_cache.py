"""tasks/_wcs_cache.py: a gWCS's combined transforms and evaluations reused within a scope must give
gwcs's own answers, bit for bit, and must not outlive a change of the WCS."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import REAL
from gwcs import wcstools

from webbflow import models
from webbflow.tasks._wcs_cache import reuse_wcs_transforms

SLIT = REAL / "nirspec_msa_prism_slits" / "jw01345062001_03101_00001_nrs2_phot.138.1345_933.fits"


@pytest.fixture(scope="module")
def wcs():
    if not SLIT.exists():
        pytest.skip("the real NIRSpec slit is not in ../shared/data")
    return models.open(SLIT).meta.wcs


def _same(a, b):
    return all(np.array_equal(x, y, equal_nan=True) and np.asarray(x).dtype == np.asarray(y).dtype for x, y in zip(a, b))


def test_values_are_gwcs_own(wcs):
    grid = wcstools.grid_from_bounding_box(wcs.bounding_box)
    world = wcs(*grid)
    pixel = wcs.invert(*[w[:, ::7] for w in world])
    det2slit = wcs.get_transform("detector", "slit_frame")(*grid)
    with reuse_wcs_transforms():
        assert wcs.forward_transform is wcs.forward_transform
        assert wcs.backward_transform is wcs.backward_transform
        for _ in range(2):  # built, then reused
            assert _same(wcs(*grid), world)
            assert _same(wcs.pixel_to_world_values(*grid), world)
            assert _same(wcs.invert(*[w[:, ::7] for w in world]), pixel)
            assert _same(wcs.get_transform("detector", "slit_frame")(*grid), det2slit)
        got = wcs(*grid)
        got[0][:] = 0.0  # a caller's change of its answer is not seen by the next one
        assert _same(wcs(*grid), world)
    assert wcs.forward_transform is not wcs.forward_transform  # outside: gwcs as it is


def test_a_changed_wcs_is_evaluated_again(wcs):
    grid = wcstools.grid_from_bounding_box(wcs.bounding_box)
    bbox = wcs.bounding_box.bounding_box(order="F")
    with reuse_wcs_transforms():
        first = wcs.forward_transform
        wide = ((bbox[0][0], bbox[0][1] - 100), bbox[1])  # a smaller box: NaN beyond it
        wcs.bounding_box = wide
        try:
            assert wcs.forward_transform is not first
            narrowed = wcs(*grid)
            assert np.isnan(narrowed[2][:, -50:]).all() and not np.isnan(narrowed[2][:, :200]).all()
            wcs.bounding_box = None
            assert not np.isnan(wcs(*grid)[2][:, -50:]).all()
        finally:
            wcs.bounding_box = bbox
        assert _same(wcs(*grid), wcs.__call__.__wrapped__(wcs, *grid))
        # a step's transform replaced: its new compound, its new values
        frames = wcs.available_frames
        old = wcs.get_transform(frames[-2], frames[-1])
        from astropy.modeling.models import Identity

        shifted = old | (Identity(2) & Identity(1))
        before = wcs.forward_transform
        wcs.set_transform(frames[-2], frames[-1], shifted)
        try:
            assert wcs.forward_transform is not before
            assert wcs.get_transform(frames[-2], frames[-1]) is shifted
        finally:
            wcs.set_transform(frames[-2], frames[-1], old)


def test_a_pixel_map_of_several_blocks_is_not_kept_and_is_the_same(wcs, monkeypatch):
    """A map evaluated in several blocks (a full-frame slit's) leaves nothing in the scope's
    evaluation cache, and is the map of one block's evaluation; a one-block map is kept."""
    from webbflow.tasks import _wcs_cache, resample

    shape = (60, 40)
    outside = resample._pixel_map(wcs, wcs, shape)
    monkeypatch.setattr(resample, "_PIXMAP_BLOCK", 40 * 7)  # 9 blocks of 7 rows (the last of 4)
    with reuse_wcs_transforms():
        cache = _wcs_cache._CACHE.get()
        blocks = resample._pixel_map(wcs, wcs, shape)
        assert cache.get("__bytes__", 0) == 0
        assert not any(isinstance(k, tuple) and k[0] in ("call", "invert") for k in cache)
        monkeypatch.setattr(resample, "_PIXMAP_BLOCK", 40 * 60)  # one block
        whole = resample._pixel_map(wcs, wcs, shape)
        assert cache.get("__bytes__", 0) > 0
    assert np.array_equal(blocks, outside, equal_nan=True) and np.array_equal(whole, outside, equal_nan=True)
