"""The compiled detector1 kernels give stcal's (and the numpy steps') answers, bit for bit.

Each kernel is run against the code it replaces on small arrays built to hit
the special cases: saturated and DO_NOT_USE groups, NaN and zero gain or read
noise, jumps of every size (four-neighbour flagging, several jumps in a ramp),
ramps of 2, 3 and 4 usable groups, one-group ramps, ZEROFRAME, MIRI groups
dropped in front and at the end, frame-averaged groups for saturation.  The
comparison is exact (``array_equal``), not within a tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest

from webbflow.models import dqflags

pytest.importorskip("numba")

DNU, SAT, JUMP = dqflags.DO_NOT_USE, dqflags.SATURATED, dqflags.JUMP_DET


def _ramps(rng, nints, ngroups, ny, nx, *, rate=30.0, n_crs=40, sat_level=None, bias=1000.0):
    """Noisy ramps with cosmic rays of many sizes; optional saturation (SATURATED from the first group above)."""
    t = np.arange(1, ngroups + 1, dtype=np.float32)
    rates = rng.gamma(2.0, rate / 2.0, size=(ny, nx)).astype(np.float32)
    rates[: ny // 4, : nx // 4] *= 40  # a bright corner
    data = bias + rates[None, None] * t[None, :, None, None] + rng.normal(0, 8, (nints, ngroups, ny, nx))
    gdq = np.zeros((nints, ngroups, ny, nx), np.uint8)
    for _ in range(n_crs):
        i, g = rng.integers(nints), rng.integers(1, ngroups)
        y, x = rng.integers(ny), rng.integers(nx)
        data[i, g:, y, x] += rng.choice([30.0, 150.0, 800.0, 5000.0, 2e5])
    data = data.astype(np.float32)
    if sat_level is not None:
        over = np.maximum.accumulate(data >= sat_level, axis=1)
        gdq[over] |= SAT
    return data, gdq


def _flag_some(rng, gdq, frac=0.02):
    m = rng.random(gdq.shape) < frac
    gdq[m] |= DNU


# ---------------------------------------------------------------------------
# jump


def _jump_both(data, gdq, pdq, gain, rnoise, **params):
    from webbflow.tasks.jump import JumpParams, detect_jumps

    p = JumpParams(**params)
    out = []
    for engine in ("auto", "stcal"):
        g, pd = gdq.copy(), pdq.copy()
        r = detect_jumps(data.copy(), g, pd, gain, rnoise, nframes=1, group_time=10.0, params=p, engine=engine)
        out.append(r)
    return out


def _flat_detector(shape, gain, rnoise):
    """No pixel flags, and one gain and read noise for every pixel."""
    return (np.zeros(shape, np.uint32), np.full(shape, gain, np.float32), np.full(shape, rnoise, np.float32))


@pytest.mark.parametrize("nints,ngroups", [(1, 10), (2, 6), (3, 4), (1, 3), (2, 14)])
@pytest.mark.parametrize("neighbours", [True, False])
def test_jump_kernel_matches_stcal(nints, ngroups, neighbours):
    from webbflow.tasks.jump import JumpParams, _kernel_method

    rng = np.random.default_rng(nints * 100 + ngroups)
    ny, nx = 40, 36
    data, gdq = _ramps(rng, nints, ngroups, ny, nx, sat_level=4000.0)
    _flag_some(rng, gdq)
    gdq[:, -1, :5] |= DNU  # a DO_NOT_USE last group in some pixels
    pdq = np.zeros((ny, nx), np.uint32)
    gain = rng.uniform(1.5, 2.5, (ny, nx)).astype(np.float32)
    gain[3, 4] = 0.0
    gain[5, 6] = np.nan
    rnoise = rng.uniform(4, 8, (ny, nx)).astype(np.float32)
    rnoise[7, 8] = 0.0
    params = {"flag_4_neighbors": neighbours, "min_diffs_single_pass": 10}
    assert _kernel_method(gdq, 10.0, JumpParams(**params)) is not None  # the kernel is what runs here
    ours, theirs = _jump_both(data, gdq, pdq, gain, rnoise, **params)
    assert np.array_equal(ours.groupdq, theirs.groupdq)
    assert np.array_equal(ours.pixeldq, theirs.pixeldq)
    assert ours.n_primary_crs == theirs.n_primary_crs
    assert np.count_nonzero(ours.groupdq & JUMP) > 0


def test_jump_kernel_single_pass_and_thresholds():
    """Many groups (one pass over all differences), and the 3- and 4-group thresholds in short ramps."""
    rng = np.random.default_rng(7)
    data, gdq = _ramps(rng, 2, 20, 24, 24, n_crs=60)
    pdq, gain, rnoise = _flat_detector((24, 24), gain=2.0, rnoise=5.0)
    for params in ({}, {"rejection_threshold": 3.0, "three_group_rejection_threshold": 4.0,
                        "four_group_rejection_threshold": 3.5}):
        ours, theirs = _jump_both(data, gdq, pdq, gain, rnoise, **params)
        assert np.array_equal(ours.groupdq, theirs.groupdq), params
    # short ramps: usable differences per pixel of 2, 3 and 4
    d3, g3 = _ramps(rng, 1, 5, 24, 24, n_crs=80)
    g3[0, 1, :8] |= DNU
    g3[0, 2, :4] |= SAT
    g3[0, 3:, :4] |= SAT
    ours, theirs = _jump_both(d3, g3, pdq, gain, rnoise)
    assert np.array_equal(ours.groupdq, theirs.groupdq)


def test_jump_falls_back_to_stcal_for_what_the_kernel_does_not_do():
    from webbflow.tasks.jump import JumpParams, _kernel_method

    gdq = np.zeros((2, 6, 8, 8), np.uint8)
    assert _kernel_method(gdq, 10.0, JumpParams()) == "iterative"
    assert _kernel_method(gdq, 10.0, JumpParams(expand_large_events=True)) is None
    assert _kernel_method(gdq, 10.0, JumpParams(after_jump_flag_dn1=10, after_jump_flag_time1=30)) is None
    assert _kernel_method(gdq, 10.0, JumpParams(minimum_sigclip_groups=2)) is None  # sigma clipping
    gdq[:, 2:] |= DNU  # fewer than 3 usable groups: stcal skips detection
    assert _kernel_method(gdq, 10.0, JumpParams()) is None


@pytest.mark.parametrize("only_use_ints,neighbours,block_rows", [(True, True, 3), (True, False, None), (False, True, 5)])
def test_jump_sigma_clipping_by_blocks_of_rows_matches_stcal(only_use_ints, neighbours, block_rows):
    """100+ integrations: stcal sigma-clips each pixel's differences across integrations; webbflow
    does it a block of rows at a time (blocks of 3 and 5 rows here, and one block of the whole frame)."""
    from webbflow.tasks import _jump_sigclip
    from webbflow.tasks.jump import JumpParams, _kernel_method, sigclip_applies

    rng = np.random.default_rng(3)
    nints, ngroups, ny, nx = 110, 5, 23, 17
    data, gdq = _ramps(rng, nints, ngroups, ny, nx, sat_level=4000.0, n_crs=400)
    _flag_some(rng, gdq)
    gdq[:, -1, :3] |= DNU
    gdq[5, 2] |= JUMP  # a group plane flagged JUMP_DET (or DO_NOT_USE) in every pixel
    gdq[5, 2, :2] |= DNU
    pdq = np.zeros((ny, nx), np.uint32)
    gain = rng.uniform(1.5, 2.5, (ny, nx)).astype(np.float32)
    gain[3, 4] = 0.0
    gain[5, 6] = np.nan
    rnoise = rng.uniform(4, 8, (ny, nx)).astype(np.float32)
    rnoise[7, 8] = 0.0
    params = {"only_use_ints": only_use_ints, "flag_4_neighbors": neighbours, "min_jump_to_flag_neighbors": 3.0}
    assert _kernel_method(gdq, 10.0, JumpParams(**params)) is None
    assert sigclip_applies(gdq, 10.0, JumpParams(**params))
    assert not sigclip_applies(gdq, 10.0, JumpParams(minimum_sigclip_groups=nints * ngroups + 1, only_use_ints=False))
    assert not sigclip_applies(gdq, 10.0, JumpParams(find_showers=True))
    block = (block_rows or ny) * nints * (ngroups - 1) * nx * 8
    old = _jump_sigclip.BLOCK_BYTES
    _jump_sigclip.BLOCK_BYTES = block
    try:
        ours, theirs = _jump_both(data, gdq, pdq, gain, rnoise, **params)
    finally:
        _jump_sigclip.BLOCK_BYTES = old
    assert np.array_equal(ours.groupdq, theirs.groupdq)
    assert np.array_equal(ours.pixeldq, theirs.pixeldq)
    assert ours.n_primary_crs == theirs.n_primary_crs
    assert np.count_nonzero(ours.groupdq & JUMP) > ours.n_primary_crs // 2 > 0
    assert not (ours.groupdq[5, 2] == JUMP).any()  # that plane's JUMP_DET-only pixels were cleared


# ---------------------------------------------------------------------------
# ramp fitting


def _fit_both(data, gdq, pdq, gain, rnoise, *, instrument="NIRCAM", zeroframe=None, dark=None, suppress=True):
    from webbflow.tasks.ramp_fit import fit_ramps

    out = []
    for engine in ("auto", "stcal"):
        g = gdq.copy()
        r = fit_ramps(data, g, pdq.copy(), gain, rnoise, instrument=instrument, frame_time=10.0, group_time=10.0,
                      groupgap=0, nframes=1, average_dark_current=dark, zeroframe=zeroframe,
                      suppress_one_group=suppress, engine=engine)
        if engine == "auto":
            assert np.array_equal(g, gdq), "the kernel must not change the group DQ it reads"
        out.append(r)
    return out


def _assert_same_fit(a, b):
    assert (a.image is None) == (b.image is None)
    if a.image is None:
        return
    for part in ("image", "integ"):
        for k in ("slope", "dq", "var_poisson", "var_rnoise", "err"):
            x, y = getattr(a, part)[k], getattr(b, part)[k]
            assert x.dtype == y.dtype, (part, k)
            assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), (part, k)


@pytest.mark.parametrize("suppress", [True, False])
def test_ramp_kernel_matches_stcal(suppress):
    rng = np.random.default_rng(11)
    nints, ngroups, ny, nx = 3, 8, 30, 32
    data, gdq = _ramps(rng, nints, ngroups, ny, nx, sat_level=9000.0)
    # jumps flagged where the cosmic rays are, some DO_NOT_USE, a persistence flag
    diffs = np.diff(data, axis=1)
    gdq[:, 1:][diffs > 400] |= JUMP
    _flag_some(rng, gdq, 0.03)
    gdq[0, 2, 10, 10] |= dqflags.PERSISTENCE
    gdq[1, 1:, 12, 12] |= DNU  # one good group (the first)
    gdq[2, :, 13, 13] |= SAT  # saturated from the start
    gdq[1, 0, 14, 14] |= SAT
    gdq[:, :, 15, 15] |= DNU  # nothing usable
    pdq = np.zeros((ny, nx), np.uint32)
    pdq[16, 16] = DNU
    gain = rng.uniform(1.5, 2.5, (ny, nx)).astype(np.float32)
    gain[17, 17] = 0.0
    gain[18, 18] = np.nan
    rnoise = rng.uniform(4, 8, (ny, nx)).astype(np.float32)
    dark = rng.uniform(0, 0.05, (ny, nx)).astype(np.float32)
    zero = (data[:, 0] - 5).astype(np.float32)
    zero[2, 13, 13] = 0.0
    a, b = _fit_both(data, gdq, pdq, gain, rnoise, zeroframe=zero, dark=dark, suppress=suppress)
    _assert_same_fit(a, b)
    assert np.isfinite(a.image["slope"]).sum() > 0.9 * ny * nx


def test_ramp_kernel_matches_stcal_miri_dropped_groups_and_long_ramps():
    """MIRI: leading and last groups DO_NOT_USE everywhere are dropped (and JUMP_DET on the new first group)."""
    rng = np.random.default_rng(12)
    data, gdq = _ramps(rng, 2, 30, 20, 24, rate=80.0, sat_level=30000.0)
    gdq[:, 1:][np.diff(data, axis=1) > 400] |= JUMP
    gdq[:, 0] |= DNU
    gdq[:, -1] |= DNU
    gdq[:, 1, 3, 3] |= JUMP
    pdq, gain, rnoise = _flat_detector((20, 24), gain=5.5, rnoise=30.0)
    a, b = _fit_both(data, gdq, pdq, gain, rnoise, instrument="MIRI")
    _assert_same_fit(a, b)
    # every first group saturated: no products from either
    gdq2 = gdq.copy()
    gdq2[:, 1:] |= SAT
    a, b = _fit_both(data, gdq2, pdq, gain, rnoise, instrument="MIRI")
    assert a.image is None and b.image is None


def test_ramp_kernel_one_group_exposures():
    rng = np.random.default_rng(13)
    data, gdq = _ramps(rng, 2, 1, 10, 12, n_crs=0)
    pdq, gain, rnoise = _flat_detector((10, 12), gain=2.0, rnoise=5.0)
    a, b = _fit_both(data, gdq, pdq, gain, rnoise)
    _assert_same_fit(a, b)


@pytest.mark.parametrize("case", ["nircam", "nircam-no-suppress", "miri-dropped", "one-group"])
def test_ramp_kernel_by_blocks_of_integrations_releasing_the_ramp_matches_stcal(case, monkeypatch):
    """fit_ramps(release_ramp=True): a few integrations at a time (the median rate over all of them
    first, the rate's sums carried across blocks), each block's memory given back once fitted;
    stcal's answers bit for bit, in blocks that do not divide the integrations evenly."""
    from webbflow.tasks import ramp_fit as RF

    rng = np.random.default_rng(21)
    nints, ngroups, ny, nx = (7, 1, 12, 1024) if case == "one-group" else (7, 6, 12, 1024)
    data, gdq = _ramps(rng, nints, ngroups, ny, nx, sat_level=9000.0, n_crs=200 if ngroups > 1 else 0)
    if ngroups > 1:
        gdq[:, 1:][np.diff(data, axis=1) > 400] |= JUMP
    _flag_some(rng, gdq, 0.03)
    gdq[1:3, :, 4, 5] |= SAT  # saturated in some integrations only
    gdq[:, :, 6, 7] |= DNU  # nothing usable in any
    gdq[:, 1:, 3, 3] |= DNU  # one good group, the first, everywhere
    instrument = "NIRCAM"
    if case == "miri-dropped":
        instrument = "MIRI"
        gdq[:, 0] |= DNU
        gdq[:, -1] |= DNU
    pdq = np.zeros((ny, nx), np.uint32)
    gain = rng.uniform(1.5, 2.5, (ny, nx)).astype(np.float32)
    gain[5, 9] = 0.0
    rnoise = rng.uniform(4, 8, (ny, nx)).astype(np.float32)
    dark = rng.uniform(0, 0.05, (ny, nx)).astype(np.float32)
    zero = (data[:, 0] - 5).astype(np.float32)
    suppress = case != "nircam-no-suppress"
    kw = dict(instrument=instrument, frame_time=10.0, group_time=10.0, groupgap=0, nframes=1,
              average_dark_current=dark, zeroframe=zero, suppress_one_group=suppress)
    theirs = RF.fit_ramps(data.copy(), gdq.copy(), pdq.copy(), gain, rnoise, engine="stcal", **kw)
    whole = RF.fit_ramps(data.copy(), gdq.copy(), pdq.copy(), gain, rnoise, **kw)
    blocks = []
    monkeypatch.setattr(RF, "RELEASE_BLOCK_BYTES", 3 * data[0].nbytes)  # blocks of 3, 3 and 1 integrations
    real_release = RF.release_pages
    monkeypatch.setattr(RF, "release_pages", lambda a, i0, i1: (blocks.append((a.ndim, i0, i1)), real_release(a, i0, i1)))
    d, g = data.copy(), gdq.copy()
    ours = RF.fit_ramps(d, g, pdq.copy(), gain, rnoise, release_ramp=True, **kw)
    assert sorted({b[1:] for b in blocks}) == [(0, 3), (3, 6), (6, 7)]
    # the fitted integrations' whole pages are given back (they read as zeros)
    assert (d == 0).mean() > 0.95 and (g == 0).mean() > 0.95
    _assert_same_fit(ours, theirs)
    _assert_same_fit(whole, theirs)
    assert np.isfinite(ours.image["slope"]).sum() > 0.9 * ny * nx


# ---------------------------------------------------------------------------
# saturation and IPC


def _saturation_both(ramp_factory, sat_ref, params, bias_ref=None):
    from webbflow.tasks import saturation as S

    out = []
    for use_kernel in (True, False):
        r = ramp_factory()
        orig = S._flag_with_kernel
        if not use_kernel:
            S._flag_with_kernel = lambda *a, **k: False
        try:
            S.flag_saturation(r, sat_ref, S.SaturationParams(**params), bias_ref)
        finally:
            S._flag_with_kernel = orig
        out.append(r)
    return out


@pytest.mark.parametrize("nframes,grow", [(1, 1), (1, 0), (1, 2), (4, 1), (4, 2)])
def test_saturation_kernel_matches_stcal(nframes, grow):
    from webbflow import models

    rng = np.random.default_rng(21 + nframes + grow)
    nints, ngroups, ny, nx = 2, 6, 40, 44
    base, _ = _ramps(rng, nints, ngroups, ny, nx, rate=300.0, n_crs=10)
    base[:, :, 30:32, 30:33] = -5.0  # A/D floor

    def factory():
        r = models.RampModel(base.copy())
        e = r.meta.exposure
        e.nframes, e.ngroups, e.nints, e.zero_frame = nframes, ngroups, nints, True
        s = r.meta.subarray
        s.xstart, s.ystart, s.xsize, s.ysize = 1, 1, nx, ny
        r.zeroframe = (base[:, 0] - 3.0).astype(np.float32)
        return r

    thresh = np.full((ny, nx), 20000.0, np.float32)
    thresh[2, 2] = np.nan
    sdq = np.zeros((ny, nx), np.uint32)
    sdq[4, 4] = dqflags.NO_SAT_CHECK
    sat_ref = models.SaturationModel(thresh)
    sat_ref.dq = sdq
    bias_ref = models.SuperBiasModel(np.full((ny, nx), 800.0, np.float32)) if nframes > 1 else None
    for ref in (sat_ref, bias_ref):
        if ref is not None:
            ref.meta.subarray.xstart, ref.meta.subarray.ystart = 1, 1
            ref.meta.subarray.xsize, ref.meta.subarray.ysize = nx, ny
    ours, theirs = _saturation_both(factory, sat_ref, {"n_pix_grow_sat": grow}, bias_ref)
    assert np.array_equal(ours.groupdq, theirs.groupdq)
    assert np.array_equal(ours.pixeldq, theirs.pixeldq)
    assert np.array_equal(ours.zeroframe, theirs.zeroframe)
    assert np.count_nonzero(ours.groupdq & SAT) > 0


@pytest.mark.parametrize("kind", ["2d", "2d-float64", "4d"])
def test_ipc_kernel_matches_numpy(kind):
    from webbflow.tasks.ipc import RefPixels, ipc_convolve, ipc_convolve_fast

    rng = np.random.default_rng(31)
    data = rng.normal(1000, 50, (2, 3, 36, 40)).astype(np.float32)
    data[0, 1, 10, 10] = np.nan
    k = np.array([[0.002, 0.02, 0.003], [0.018, 0.95, 0.017], [0.001, 0.021, 0.002]], np.float32)
    if kind == "2d-float64":
        k = k.astype(np.float64)
    elif kind == "4d":
        k = (k[:, :, None, None] + rng.normal(0, 0.001, (3, 3, 36, 40))).astype(np.float32)
    nref = RefPixels(4, 2, 4, 0)
    a, b = data.copy(), data.copy()
    for i in range(a.shape[0]):
        ipc_convolve(a[i], k, nref)
    assert ipc_convolve_fast(b, k, nref)
    assert np.array_equal(a.view(np.uint32), b.view(np.uint32))  # bit for bit, NaN included
