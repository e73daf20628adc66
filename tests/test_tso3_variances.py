"""tso3's variances read from the calints file when used (flows/_tso3_variances.py): the same arrays,
bit for bit, as the whole cube held from the start and made to agree by ``match_nans_and_flags``."""

from __future__ import annotations

import numpy as np
import pytest

from webbflow import models
from webbflow.flows import _tso3_variances as tv
from webbflow.models import dqflags
from webbflow.tasks.flat_field import match_nans_and_flags

DNU = dqflags.DO_NOT_USE


def _cube_file(tmp_path, nints=7, ny=9, nx=5):
    rng = np.random.default_rng(5)
    cube = models.CubeModel((nints, ny, nx))
    cube.meta.exposure.type = "MIR_LRS-SLITLESS"
    cube.meta.visit.tsovisit = True
    cube.data[:] = rng.normal(5.0, 1.0, cube.data.shape)
    cube.err = rng.uniform(0.1, 1.0, cube.data.shape).astype(np.float32)
    cube.dq = np.zeros(cube.data.shape, np.uint32)
    for name in tv.VARIANCES:
        setattr(cube, name, rng.uniform(0.01, 2.0, cube.data.shape).astype(np.float32))
    cube.data[0, 1, 1] = np.nan                 # the data alone
    cube.err[1, 2, 2] = np.inf                  # the error alone
    cube.dq[2, 3, 3] = DNU                      # DQ alone
    cube.var_poisson[3, 4, 4] = np.nan          # a variance alone: only it makes the pixel NaN
    cube.var_rnoise[4, 5, 0] = np.inf
    cube.var_flat[6, 8, 4] = np.nan
    cube.var_flat[6, 0, 0] = -np.inf
    path = tmp_path / "x_calints.fits"
    cube.save(path)
    return path


def test_file_cube_reads_what_the_file_holds(tmp_path):
    path = _cube_file(tmp_path)
    whole = models.open(path)
    sources = tv.variance_sources(path)
    assert set(sources) == set(tv.VARIANCES)
    for name, s in sources.items():
        ref = getattr(whole, name)
        assert s.shape == ref.shape and s.ndim == 3 and len(s) == ref.shape[0]
        assert np.asarray(s).tobytes() == ref.tobytes()
        assert s[2:5].tobytes() == ref[2:5].tobytes() and s[-1].tobytes() == ref[-1].tobytes()
        assert s[3].tobytes() == ref[3].tobytes() and s[5:].tobytes() == ref[5:].tobytes()
        assert s[:, 1].tobytes() == ref[:, 1].tobytes()  # anything else: read whole, then indexed
        with pytest.raises(IndexError):
            s[ref.shape[0]]


@pytest.mark.parametrize("chunk", [1, 1 << 20])
def test_variances_applied_after_the_flags_are_the_whole_cubes_agreement(tmp_path, monkeypatch, chunk):
    """outlier_detection's ``match_nans_and_flags`` over the cube without its variances, then their
    part read from the file, then the stand-ins: every array as one agreement over all of them."""
    monkeypatch.setattr(tv, "_CHUNK_BYTES", chunk)  # one integration a chunk, or all at once
    path = _cube_file(tmp_path)
    whole = models.open(path)
    whole.dq[5, 6, 1] |= DNU  # as outlier flags would be
    match_nans_and_flags(whole)

    lean = models.open(path, arrays=[s.name for s in models.CubeModel.arrays if s.name not in tv.VARIANCES])
    assert not any(lean.has(n) for n in tv.VARIANCES)
    lean.dq[5, 6, 1] |= DNU
    match_nans_and_flags(lean)
    sources = tv.variance_sources(path)
    tv.apply_variance_nans(lean, sources)
    tv.attach(lean, sources)
    for name in ("data", "err", "dq"):
        assert getattr(lean, name).tobytes() == getattr(whole, name).tobytes(), name
    for name in tv.VARIANCES:
        assert np.asarray(getattr(lean, name)).tobytes() == getattr(whole, name).tobytes(), name
    assert np.isnan(whole.data[3, 4, 4]) and whole.dq[6, 0, 0] & DNU  # the variances' own NaNs took part
    before = {n: lean._arrays[n] for n in tv.VARIANCES}
    match_nans_and_flags(lean)  # extract_1d's own: nothing to change, the stand-ins left as they are
    assert lean.data.tobytes() == whole.data.tobytes()
    assert all(lean._arrays[n] is before[n] for n in tv.VARIANCES)

    # written: the same file as the whole cube's
    lean.save(tmp_path / "lean.fits")
    whole.save(tmp_path / "whole.fits")
    a, b = models.open(tmp_path / "lean.fits"), models.open(tmp_path / "whole.fits")
    for name in ("data", "err", "dq") + tv.VARIANCES:
        assert getattr(a, name).tobytes() == getattr(b, name).tobytes(), name


def test_variances_read_whole_are_the_files(tmp_path):
    path = _cube_file(tmp_path)
    whole = models.open(path)
    lean = models.open(path, arrays=["data", "err", "dq"])
    tv.read_whole(lean, tv.variance_sources(path))
    for name in tv.VARIANCES:
        got = getattr(lean, name)
        assert isinstance(got, np.ndarray) and got.tobytes() == getattr(whole, name).tobytes()


def test_a_scaled_variance_is_not_deferred(tmp_path):
    from astropy.io import fits

    path = _cube_file(tmp_path)
    with fits.open(path, mode="update") as hdul:
        hdul["VAR_FLAT"].header["BZERO"] = 1.0
    assert tv.variance_sources(path) is None


def test_box_extraction_over_stand_ins_is_the_arrays(tmp_path):
    """extract_1d's box sums read the stand-ins a chunk of integrations at a time: the same sums."""
    from webbflow.tasks.extract_1d import box

    path = _cube_file(tmp_path, nints=40, ny=30, nx=6)
    whole = models.open(path)
    match_nans_and_flags(whole)
    lean = models.open(path, arrays=["data", "err", "dq"])
    match_nans_and_flags(lean)
    sources = tv.variance_sources(path)
    tv.apply_variance_nans(lean, sources)
    tv.attach(lean, sources)
    profile = np.zeros((30, 6))
    profile[:, 1:4] = 1.0
    args = [(m.var_rnoise, m.var_poisson, m.var_flat) for m in (whole, lean)]
    old = box.CHUNK_BYTES
    try:
        box.CHUNK_BYTES = 30 * 6 * 4 * 3  # three integrations a chunk
        a = box.box_extract(whole.data, *args[0], profile, 2)
        b = box.box_extract(lean.data, *args[1], profile, 2)
    finally:
        box.CHUNK_BYTES = old
    for k in a:
        assert a[k].tobytes() == b[k].tobytes(), k


def test_stand_ins_read_their_file_even_when_a_product_replaces_it(tmp_path):
    """A product written under the input's name (a crfints given as tso3's input names its own
    crfints so) replaces the file; the stand-ins still read the one they were made from."""
    import os

    path = _cube_file(tmp_path)
    whole = models.open(path)
    sources = tv.variance_sources(path)
    other = tmp_path / "other.fits"
    models.CubeModel((2, 3, 4)).save(other)
    os.replace(other, path)
    for name, s in sources.items():
        assert np.asarray(s).tobytes() == getattr(whole, name).tobytes()
