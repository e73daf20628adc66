"""tso3's variance cubes read from the calints file when they are used, not held from the start.

A spectroscopic TSO cube's three variances (VAR_POISSON, VAR_RNOISE, VAR_FLAT) are half of its
arrays, and tso3 reads them in two places only: outlier_detection's last act, which makes NaN and
DO_NOT_USE agree across every array (a variance that is not finite makes the pixel NaN and
DO_NOT_USE everywhere), and extract_1d's sums.  The command line's tso3 (which keeps no arrays for
a caller) opens the cube without them and:

- after outlier_detection, reads them a few integrations at a time to apply their part of that
  agreement to SCI, ERR and DQ (:func:`apply_variance_nans`), as if they had been in the cube;
- gives the cube :class:`FileCube` stand-ins, each reading its variance from the file when the
  crfints product is written or extract_1d sums a chunk of integrations, NaN where SCI is NaN
  (after the agreement, SCI is NaN exactly where every array is).  When outlier_detection did not
  flag the cube (skipped), the variances are read whole instead, as before.

The values are those of the whole cubes held from the start, bit for bit.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..models import dqflags
from ..models.base import _native

VARIANCES = ("var_poisson", "var_rnoise", "var_flat")
_CHUNK_BYTES = 1 << 20  # float32 read per chunk of integrations


class _File:
    """A file open for reading, closed when no stand-in holds it any more: the stand-ins read the
    file they were made from even if a product of the same name replaces it meanwhile."""

    __slots__ = ("fd",)

    def __init__(self, path):
        self.fd = os.open(path, os.O_RDONLY)

    def read_into(self, buf: memoryview, offset: int) -> int:
        done = 0
        while done < len(buf):
            got = os.preadv(self.fd, [buf[done:]], offset + done)
            if got <= 0:
                break
            done += got
        return done

    def __del__(self):
        try:
            os.close(self.fd)
        except OSError:  # pragma: no cover - closed already
            pass


class FileCube:
    """A float32 image cube of a FITS file, read when sliced or made an array; ``nan_where`` (a cube
    of the same shape, or None) puts NaN where it is NaN.  Holds nothing of the data between reads."""

    __slots__ = ("file", "offset", "shape", "nan_where")

    ndim = 3
    dtype = np.dtype(np.float32)

    def __init__(self, file: _File, offset: int, shape: tuple, nan_where=None):
        self.file, self.offset, self.shape, self.nan_where = file, offset, tuple(shape), nan_where

    def read(self, a: int, b: int) -> np.ndarray:
        """Integrations a:b, native float32."""
        plane = int(np.prod(self.shape[1:]))
        arr = np.empty((b - a) * plane, dtype=">f4")
        if self.file.read_into(memoryview(arr).cast("B"), self.offset + a * plane * 4) != arr.nbytes:
            raise OSError("truncated variance cube")
        arr = _native(arr).reshape((b - a,) + self.shape[1:])  # swapped in place
        if self.nan_where is not None:
            arr[np.isnan(self.nan_where[a:b])] = np.nan
        return arr

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        n = self.shape[0]
        if isinstance(key, (int, np.integer)):
            k = int(key) + (n if key < 0 else 0)
            if not 0 <= k < n:
                raise IndexError(key)
            return self.read(k, k + 1)[0]
        if isinstance(key, slice) and key.step in (None, 1):
            a, b, _ = key.indices(n)
            return self.read(a, max(a, b))
        return self.read(0, n)[key]

    def __array__(self, dtype=None, copy=None):
        arr = self.read(0, self.shape[0])
        return arr if dtype is None else arr.astype(dtype, copy=False)


def variance_sources(path) -> dict[str, FileCube] | None:
    """The variance cubes of a FITS file as :class:`FileCube` (no data read), or None when one is
    not a plain float32 cube (scaled, another type, or a duplicate extension): then read as usual."""
    wanted = {n.upper(): n for n in VARIANCES}
    found: dict[str, tuple] = {}
    with fits.open(Path(path), memmap=False, lazy_load_hdus=True, do_not_scale_image_data=True) as hdul:
        for hdu in hdul[1:]:
            name = wanted.get((hdu.name or "").upper())
            if name is None:
                continue
            h = hdu.header
            if name in found or int(h.get("BITPIX", 0)) != -32 or h.get("BSCALE", 1) != 1 or h.get("BZERO", 0) != 0 \
                    or int(h.get("NAXIS", 0)) != 3:
                return None
            found[name] = (hdu._data_offset, tuple(int(h[f"NAXIS{k}"]) for k in (3, 2, 1)))
    if not found:
        return None
    file = _File(path)
    return {name: FileCube(file, offset, shape) for name, (offset, shape) in found.items()}


def apply_variance_nans(cube, sources: dict[str, FileCube]) -> None:
    """SCI and ERR NaN and DQ DO_NOT_USE where a variance of the file is not finite (the variances'
    part of ``flat_field.match_nans_and_flags``), for the arrays shaped like SCI; in place."""
    shape = cube.data.shape
    parts = [s for s in sources.values() if s.shape == shape]
    if not parts:
        return
    arrays = [cube.data] + ([cube.err] if cube.has("err") and cube.err.shape == shape else [])
    dq = cube.dq if cube.has("dq") and cube.dq.shape == shape else None
    dnu = np.uint32(dqflags.DO_NOT_USE)
    step = max(1, _CHUNK_BYTES // max(1, int(np.prod(shape[1:])) * 4))
    for a in range(0, shape[0], step):
        b = min(shape[0], a + step)
        bad = np.zeros((b - a,) + shape[1:], dtype=bool)
        for s in parts:
            bad |= ~np.isfinite(s.read(a, b))
        if not bad.any():
            continue
        for arr in arrays:
            arr[a:b][bad] = np.nan
        if dq is not None:
            dq[a:b][bad] |= dnu


def attach(cube, sources: dict[str, FileCube]) -> None:
    """The stand-ins into the cube, in place of its variances, once outlier_detection and
    :func:`apply_variance_nans` made NaN agree: each variance is then NaN where SCI is, and not
    finite nowhere else, so a later ``match_nans_and_flags`` has nothing to change in it (it leaves
    the stand-ins alone)."""
    for name, s in sources.items():
        if s.shape != cube.data.shape:  # took no part in the agreement: read as it is
            s.nan_where = None
            cube._arrays[name] = np.asarray(s)
            continue
        s.nan_where = cube.data
        cube._arrays[name] = s


def read_whole(cube, sources: dict[str, FileCube]) -> None:
    """The variances read whole into the cube, as a plain open would have them."""
    for name, s in sources.items():
        s.nan_where = None
        cube._arrays[name] = np.asarray(s)
