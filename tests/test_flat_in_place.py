"""flat_field's cube arithmetic in place and the per-integration NaN agreement on read-only arrays
(issue #17): the same values as the whole-cube formulas; S_REGION written without stcal.alignment."""

import numpy as np

from webbflow import models
from webbflow.models import dqflags
from webbflow.tasks import flat_field as ff

DNU = dqflags.DO_NOT_USE


def _cube(seed=3, shape=(4, 6, 5)):
    rng = np.random.default_rng(seed)
    m = models.CubeModel(shape)
    m.data = rng.normal(10, 3, shape).astype(np.float32)
    m.err = rng.uniform(0.1, 1, shape).astype(np.float32)
    m.var_poisson = rng.uniform(0.1, 1, shape).astype(np.float32)
    m.var_rnoise = rng.uniform(0.1, 1, shape).astype(np.float32)
    m.dq = np.zeros(shape, np.uint32)
    m.data[0, 1, 1] = np.nan
    m.var_rnoise[2, 3, 4] = np.inf
    m.dq[1, 2, 2] = DNU
    return m


def _whole(m, extra_nan=None):
    """The NaN agreement over whole cubes (the formulas the per-plane passes replace)."""
    arrays = {n: getattr(m, n).copy() for n in ("data", "err", "var_rnoise", "var_poisson") if m.has(n)}
    invalid = np.zeros(m.data.shape, bool)
    for a in arrays.values():
        invalid |= ~np.isfinite(a)
    invalid |= (m.dq & DNU) != 0
    dq = m.dq.copy()
    dq[invalid] |= DNU
    for a in arrays.values():
        a[invalid] = np.nan
    return arrays, dq


def test_read_only_cube_agreement_plane_by_plane():
    m = _cube()
    want, want_dq = _whole(m)
    shared = m.copy(share_arrays=True)  # read-only views of m's arrays
    assert not shared.data.flags.writeable
    before = {n: getattr(m, n).copy() for n in want}
    ff.match_nans_and_flags(shared)
    for n, a in want.items():
        np.testing.assert_array_equal(getattr(shared, n), a)
        np.testing.assert_array_equal(getattr(m, n), before[n])  # the shared original untouched
    np.testing.assert_array_equal(shared.dq, want_dq)
    # once they agree, nothing is copied
    agreed = shared.copy(share_arrays=True)
    ff.match_nans_and_flags(agreed)
    for n in want:
        assert not getattr(agreed, n).flags.writeable


def test_writeable_cube_agreement_in_place():
    m = _cube(seed=5)
    want, want_dq = _whole(m)
    data = m.data
    ff.match_nans_and_flags(m)
    assert m.data is data
    for n, a in want.items():
        np.testing.assert_array_equal(getattr(m, n), a)
    np.testing.assert_array_equal(m.dq, want_dq)


def test_in_place_helper_falls_back_to_a_new_array():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.full(3, 2, np.float32)
    assert ff._in_place(np.divide, a, b) is a
    ro = np.arange(6, dtype=np.float32).reshape(2, 3)
    ro.flags.writeable = False
    out = ff._in_place(np.divide, ro, b)
    assert out is not ro and np.array_equal(out, np.arange(6, dtype=np.float32).reshape(2, 3) / b)
    i = np.arange(6, dtype=np.int32)
    assert ff._in_place(np.divide, i, 2.0).dtype == np.float64  # the result's type, not the input's


def test_s_region_keyword_as_stcal_writes_it():
    from stcal.alignment.util import compute_s_region_keyword

    from webbflow.tasks._wcs import s_region_keyword

    fp = np.array([[359.9999999996, -0.123456789123], [10.5, 20.25], [0.0, 1e-12], [123.456789012345, -89.9]])
    assert s_region_keyword(fp) == compute_s_region_keyword(fp)
    fp[2, 1] = np.nan
    assert s_region_keyword(fp) is None and compute_s_region_keyword(fp) is None
