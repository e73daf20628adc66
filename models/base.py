"""The DataModel base class and its FITS/ASDF I/O.

Layout on disk follows JWST: a primary header, one named extension per array
(SCI, ERR, DQ, ...), binary tables (DQ_DEF, INT_TIMES, ...) and an ``ASDF``
extension holding the metadata tree, including the gwcs WCS at ``meta.wcs``.

Faithfulness: every header card of every extension is kept as read and written
back; modelled metadata only overrides the keywords it maps to.  Extensions
that the model class does not declare are kept verbatim.  Arrays are read
once from the file into memory and converted to native byte order in place,
so opening costs one copy of each array, not two or three.
"""

from __future__ import annotations

import copy as _copy
import io
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
from astropy.io import fits
from pydantic import ValidationError

from ..errors import InputFileError, ModelValidationError, a_an
from .meta import KEYWORD_FIELDS, Meta, get_path, set_path

ASDF_EXTNAME = "ASDF"
FITS_SOURCE_PREFIX = "fits:"

# Cards that astropy regenerates for each HDU; never copied between headers.
_STRUCTURAL = {
    "SIMPLE", "XTENSION", "BITPIX", "NAXIS", "EXTEND", "PCOUNT", "GCOUNT", "BZERO", "BSCALE",
    "TFIELDS", "THEAP", "EXTNAME", "EXTVER", "CHECKSUM", "DATASUM", "GROUPS", "BLANK",
}


def _is_structural(key: str) -> bool:
    if key in _STRUCTURAL:
        return True
    for p in ("NAXIS", "TTYPE", "TFORM", "TUNIT", "TNULL", "TSCAL", "TZERO", "TDISP", "TDIM", "TBCOL"):
        if key.startswith(p) and key[len(p):].isdigit():
            return True
    return False


@dataclass(frozen=True)
class ArraySpec:
    """Declares one array or table of a model.

    ``dtypes``: accepted dtypes (byte order ignored); the first is the one a
    new array gets.  ``ndim``: an int or a tuple of accepted ranks.
    ``shape_of``: how a default array's shape follows from the primary array's.
    """

    name: str
    extname: str
    dtypes: tuple[str, ...] = ("float32",)
    ndim: int | tuple[int, ...] | None = None
    required: bool = False
    table: bool = False
    fill: Any = 0
    shape_of: Callable[[tuple[int, ...]], tuple[int, ...]] | None = None

    def accepts_ndim(self, n: int) -> bool:
        if self.ndim is None:
            return True
        return n in (self.ndim if isinstance(self.ndim, tuple) else (self.ndim,))


def same_shape(s):
    return tuple(s)


def last2(s):
    return tuple(s[-2:])


# ---------------------------------------------------------------------------
# Reading helpers


def _native(arr: np.ndarray) -> np.ndarray:
    """Return ``arr`` in native byte order, swapping in place when it can."""
    if arr.dtype.byteorder in ("=", "|") or arr.dtype.isnative:
        return arr
    if arr.flags.writeable and arr.flags.owndata:
        arr.byteswap(inplace=True)
        return arr.view(arr.dtype.newbyteorder("="))
    return arr.astype(arr.dtype.newbyteorder("="))


_UNSIGNED = {16: (np.int16, np.uint16, 1 << 15), 32: (np.int32, np.uint32, 1 << 31), 64: (np.int64, np.uint64, 1 << 63)}


def image_shape(header: fits.Header) -> tuple[int, ...]:
    """An image extension's array shape (numpy order) from its header; () without data."""
    naxis = header.get("NAXIS", 0)
    return tuple(int(header[f"NAXIS{i}"]) for i in range(naxis, 0, -1))


def _read_image(fileobj, info: dict, header: fits.Header, path,
                rows: tuple[int, int] | None = None) -> np.ndarray | None:
    """Read an image extension's data with a single allocation; ``rows`` = (y0, y1) reads only
    those rows of the second-to-last axis (of every plane), within the image (callers check)."""
    shape = image_shape(header)
    if not shape:
        return None
    bitpix = int(header["BITPIX"])
    bzero = header.get("BZERO", 0)
    bscale = header.get("BSCALE", 1)
    raw_dtype = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}.get(bitpix)
    if raw_dtype is None:
        raise InputFileError(path, f"extension {header.get('EXTNAME', '?')} has unsupported BITPIX {bitpix}")
    if rows is not None:
        arr = _read_rows(fileobj, info["datLoc"], shape, raw_dtype, rows, header, path)
        shape = shape[:-2] + (rows[1] - rows[0], shape[-1])
    else:
        count = int(np.prod(shape))
        fileobj.seek(info["datLoc"])
        arr = np.fromfile(fileobj, dtype=raw_dtype, count=count)
        if arr.size != count:
            raise _truncated(header, path, count, shape, arr.size)
    arr = _native(arr)  # before reshaping: the array fromfile made is swapped in place, not copied
    arr = arr.reshape(shape)
    if bscale == 1 and bitpix in _UNSIGNED and bzero == _UNSIGNED[bitpix][2]:
        # JWST's unsigned integers: stored signed with BZERO = 2**(n-1).
        signed, unsigned, offset = _UNSIGNED[bitpix]
        u = arr.view(unsigned)
        u ^= unsigned(offset)
        return u
    if bscale != 1 or bzero != 0:
        # scale in float: BITPIX=8 with BZERO=-128 (signed bytes) would overflow the stored uint8
        return (arr.astype(np.float64) * bscale + bzero).astype(np.float32 if bitpix in (8, 16, -32) else np.float64)
    return arr


def _truncated(header, path, count, shape, got) -> InputFileError:
    name = header.get("EXTNAME", "?")
    return InputFileError(path, f"extension {name} is truncated: expected {count} values of {shape}, file holds {got}")


def _read_rows(fileobj, start: int, shape, raw_dtype: str, rows: tuple[int, int], header, path) -> np.ndarray:
    """Rows y0:y1 of each plane of an image stored from byte ``start`` (flat, in file order)."""
    ny, nx = shape[-2:]
    y0, y1 = rows
    planes = int(np.prod(shape[:-2]))
    item = np.dtype(raw_dtype).itemsize
    out = np.empty((planes, (y1 - y0) * nx), raw_dtype)
    for k in range(planes):
        fileobj.seek(start + (k * ny + y0) * nx * item)
        got = fileobj.readinto(memoryview(out[k]).cast("B"))
        if got != out[k].nbytes:
            end = fileobj.seek(0, 2)  # how many of the image's values the file does hold
            held = min(int(np.prod(shape)), max(0, (end - start) // item))
            raise _truncated(header, path, int(np.prod(shape)), shape, held)
    return out.reshape(-1)


_ARRAY_LOCK = threading.RLock()
_arrays_locked = False


def _lazy_arrays_one_at_a_time() -> None:
    """asdf's lazily read arrays (``NDArrayType``) read their block from the file's buffer when first
    used, by a seek and a read on the buffer the file's arrays share.  Some stay lazy inside the
    transforms of a WCS (a ``Tabular`` model's points), and spec3 evaluates and writes the slits of
    one exposure in several source threads at once: two first reads at the same time read each
    other's bytes (a block header decoded from the wrong place: a ``UnicodeDecodeError``, one source
    failing in 2 of 9 runs of the 20-source bench).  Each use of such an array goes through one lock (after the
    first, asdf gives back the array it kept, at once)."""
    global _arrays_locked
    if _arrays_locked:
        return
    with _ARRAY_LOCK:
        if _arrays_locked:
            return
        from asdf.tags.core import NDArrayType

        make = getattr(NDArrayType, "_make_array", None)
        if make is None:  # another asdf: its arrays are read as it reads them
            _arrays_locked = True
            return

        def _make_array(self):
            with _ARRAY_LOCK:
                return make(self)

        _make_array.__wrapped__ = make
        NDArrayType._make_array = _make_array
        _arrays_locked = True


def _load_asdf_tree(data: bytes | np.ndarray, path) -> dict:
    """Read the metadata tree from an embedded ASDF extension."""
    import asdf
    from asdf import treeutil
    from asdf.tags.core import NDArrayType

    _lazy_arrays_one_at_a_time()
    buf = io.BytesIO(bytes(np.asarray(data, dtype=np.uint8).tobytes()))
    try:
        # The file object stays open (it is an in-memory buffer of the small
        # ASDF extension), so that arrays nested inside tagged objects such
        # as a gwcs WCS can still be read when they are first touched.
        from ._lazy_wcs import CUT_YAML, LAZY_WCS, lazy_tree, split_wcs_yaml

        lazy = LAZY_WCS.get()  # WCS nodes made on first use (models/_lazy_wcs.py)
        cut = None
        if lazy and CUT_YAML.get():  # the WCS nodes' YAML cut out, parsed when each is used
            split = split_wcs_yaml(buf.getvalue())
            if split is not None:
                buf, cut = io.BytesIO(split[0]), split[1]
        af = asdf.open(buf, lazy_load=True, memmap=False, ignore_unrecognized_tag=True, ignore_missing_extensions=True,
                       **({"lazy_tree": True} if lazy else {}))

        def cb(node):
            if isinstance(node, NDArrayType):
                src = getattr(node, "_source", None)
                if isinstance(src, str) and src.startswith(FITS_SOURCE_PREFIX):
                    return _FitsLink(src)
                return np.array(node)
            return node

        tree = lazy_tree(af, cb, cut) if lazy else treeutil.walk_and_modify(dict(af.tree), cb)
        tree["__asdf_handle__"] = af
    except Exception as exc:  # noqa: BLE001 - any asdf failure is a bad file
        raise InputFileError(path, f"cannot read the ASDF metadata extension ({exc})") from exc
    if isinstance(tree.get("history"), list):
        # older files keep a bare list of history entries
        tree["history"] = {"entries": tree["history"]}
    for k in ("asdf_library", "history_asdf", "_fits_hash"):
        tree.pop(k, None)
    return tree


class _FitsLink:
    """Stand-in for an array that the ASDF tree points to in a FITS extension."""

    def __init__(self, source):
        self.source = source


def _strip_links(tree):
    if isinstance(tree, dict):
        return {k: _strip_links(v) for k, v in tree.items() if not isinstance(v, _FitsLink)}
    if isinstance(tree, list):
        return [_strip_links(v) for v in tree if not isinstance(v, _FitsLink)]
    return tree


def _coerce_for(annotation, value):
    """Make a value read from FITS or ASDF fit a field's declared type."""
    import typing

    args = set(typing.get_args(annotation)) or {annotation}
    if isinstance(value, bool):
        return value
    if str in args and not isinstance(value, str) and value is not None:
        if hasattr(value, "isot"):
            return value.isot
        if isinstance(value, (int, float)):
            return value
        return str(value)
    if bool in args and isinstance(value, str) and value.strip().upper() in ("T", "F", "TRUE", "FALSE"):
        return value.strip().upper() in ("T", "TRUE")
    return value


# ---------------------------------------------------------------------------


class DataModel:
    """A JWST datamodel: typed ``meta`` plus named numpy arrays.

    ``DataModel(path)`` opens a file; ``DataModel(other_model)`` converts
    (sharing arrays, copying metadata); ``DataModel((ny, nx))`` makes a new
    model with zeroed arrays of that shape; ``DataModel(data=array)`` wraps
    arrays.
    """

    arrays: ClassVar[tuple[ArraySpec, ...]] = ()
    # Where this model's schema puts a keyword when that differs from the science placement in
    # meta.py (``{"PIXAR_SR": "PRIMARY"}`` for area and photom references), and the schema's
    # defaults for keywords a file may lack.  Read and write both follow them.
    keyword_hdus: ClassVar[dict[str, str]] = {}
    keyword_defaults: ClassVar[dict[str, Any]] = {}
    # DATAMODL value written to files; defaults to the class name
    model_type: ClassVar[str | None] = None
    # (y0, y1) when the image arrays hold only those rows of the file's (``models.open(rows=...)``)
    _rows: tuple[int, int] | None = None

    def __init__(self, init=None, **arrays):
        object.__setattr__(self, "_arrays", {})
        self.meta = Meta()
        self._headers: dict[str, fits.Header] = {}
        self._extra_hdus: list[fits.hdu.base._BaseHDU] = []
        self._hdu_order: list[str] = []
        self._asdf_extra: dict = {}
        self._path: str | None = None
        self._asdf_handle = None
        if init is None:
            pass
        elif isinstance(init, (str, os.PathLike)):
            self._read(Path(init))
        elif isinstance(init, DataModel):
            self._convert_from(init)
        elif isinstance(init, tuple):
            self._arrays[self.arrays[0].name] = np.full(init, self.arrays[0].fill, dtype=self.arrays[0].dtypes[0])
        elif isinstance(init, np.ndarray):
            self._arrays[self.arrays[0].name] = init
        else:
            raise TypeError(f"cannot make {a_an(type(self).__name__)} from {type(init).__name__}")
        for k, v in arrays.items():
            setattr(self, k, v)
        if self.meta.model_type is None or init is None or isinstance(init, (tuple, np.ndarray, DataModel)):
            self.meta.model_type = self.model_type or type(self).__name__

    # -- array access ----------------------------------------------------
    @classmethod
    def keyword_fields(cls) -> list[tuple[tuple[str, ...], str, str, Any]]:
        """``(path, keyword, hdu, annotation)`` of every FITS-mapped field, placed as this model's schema places it."""
        cached = cls.__dict__.get("_keyword_fields_cache")
        if cached is None:
            cached = [(p, k, cls.keyword_hdus.get(k, h), a) for p, k, h, a in KEYWORD_FIELDS]
            cls._keyword_fields_cache = cached
        return cached

    @classmethod
    def spec(cls, name: str) -> ArraySpec | None:
        for s in cls.arrays:
            if s.name == name:
                return s
        return None

    @classmethod
    def spec_by_extname(cls, extname: str) -> ArraySpec | None:
        for s in cls.arrays:
            if s.extname == extname:
                return s
        return None

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        arrs = object.__getattribute__(self, "_arrays")
        if name in arrs:
            return arrs[name]
        spec = type(self).spec(name)
        if spec is None:
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")
        # A missing array is made on first use, shaped after the primary array.
        primary = arrs.get(self.arrays[0].name)
        if spec.table or spec.shape_of is None or primary is None:
            return None
        arr = np.full(spec.shape_of(primary.shape), spec.fill, dtype=spec.dtypes[0])
        arrs[name] = arr
        return arr

    def __setattr__(self, name, value):
        spec = type(self).spec(name)
        if spec is not None:
            if value is None:
                self._arrays.pop(name, None)
                return
            if not spec.table:
                value = np.asarray(value)
                if value.dtype.name not in spec.dtypes and value.dtype.newbyteorder("=").name not in spec.dtypes:
                    value = value.astype(spec.dtypes[0])
            self._arrays[name] = value
            return
        object.__setattr__(self, name, value)

    def has(self, name: str) -> bool:
        """Whether the array ``name`` is present (not made on demand)."""
        return name in self._arrays

    def array_names(self) -> list[str]:
        return [s.name for s in self.arrays if s.name in self._arrays]

    @property
    def shape(self):
        d = self._arrays.get(self.arrays[0].name) if self.arrays else None
        return None if d is None else d.shape

    # -- context manager / lifetime --------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        pass

    def copy(self, share_arrays: bool = False) -> "DataModel":
        """A deep copy; with ``share_arrays``, the metadata and headers are copied but the numpy
        arrays are read-only views of this model's (for readers that replace arrays rather than
        write into them: a write raises instead of changing this model)."""
        new = type(self).__new__(type(self))

        def dup(v):
            if share_arrays and isinstance(v, np.ndarray):
                v = v.view()
                v.flags.writeable = False
                return v
            return v.copy() if hasattr(v, "copy") else v

        object.__setattr__(new, "_arrays", {k: dup(v) for k, v in self._arrays.items()})
        new.meta = self.meta.model_copy(deep=True)
        new._headers = {k: h.copy() for k, h in self._headers.items()}
        new._extra_hdus = [h.copy() for h in self._extra_hdus]
        new._hdu_order = list(self._hdu_order)
        new._asdf_extra = _copy.deepcopy(self._asdf_extra)
        new._path = self._path
        new._asdf_handle = self._asdf_handle
        new._rows = self._rows
        return new

    def _convert_from(self, other: "DataModel") -> None:
        self.meta = other.meta.model_copy(deep=True)
        self._headers = {k: h.copy() for k, h in other._headers.items()}
        self._asdf_extra = _copy.deepcopy(other._asdf_extra)
        self._path = other._path
        self._asdf_handle = other._asdf_handle
        for name, arr in other._arrays.items():
            spec = type(self).spec(name)
            if spec is None:
                continue
            if not spec.table and not spec.accepts_ndim(np.ndim(arr)):
                continue
            setattr(self, name, arr)
        # keep other extensions that both classes ignore
        own = {s.extname for s in self.arrays}
        self._extra_hdus = [h.copy() for h in other._extra_hdus if h.name not in own]

    # -- validation ------------------------------------------------------
    def validate(self, path=None, skipped=()) -> None:
        """Check arrays against the class's declaration; raise ModelValidationError naming the problem.

        ``skipped``: arrays deliberately not read (``models.open(arrays=...)``), not required.
        """
        where = path or self._path or f"<{type(self).__name__}>"
        for spec in self.arrays:
            arr = self._arrays.get(spec.name)
            if arr is None:
                if spec.required and spec.name not in skipped:
                    raise ModelValidationError(where, f"{type(self).__name__} requires a {spec.extname} extension, which is missing")
                continue
            if spec.table:
                if arr.dtype.names is None:
                    raise ModelValidationError(where, f"extension {spec.extname} must be a table")
                continue
            if not spec.accepts_ndim(arr.ndim):
                raise ModelValidationError(
                    where,
                    f"extension {spec.extname} has {arr.ndim} dimensions {arr.shape}; {type(self).__name__} expects {spec.ndim}",
                )
            dt = arr.dtype.newbyteorder("=").name if not arr.dtype.isnative else arr.dtype.name
            if dt not in spec.dtypes:
                raise ModelValidationError(
                    where, f"extension {spec.extname} has dtype {dt}; {type(self).__name__} expects {' or '.join(spec.dtypes)}"
                )
        self._validate_shapes(where)

    def _validate_shapes(self, where) -> None:
        primary = self._arrays.get(self.arrays[0].name) if self.arrays else None
        if primary is None:
            return
        for spec in self.arrays[1:]:
            arr = self._arrays.get(spec.name)
            if arr is None or spec.table or spec.shape_of is None:
                continue
            want = spec.shape_of(primary.shape)
            if tuple(arr.shape) != tuple(want):
                raise ModelValidationError(
                    where, f"extension {spec.extname} has shape {arr.shape}, but {self.arrays[0].extname} implies {want}"
                )

    # -- reading ---------------------------------------------------------
    def _read(self, path: Path) -> None:
        from .io import read_into

        read_into(self, path)

    # -- writing ---------------------------------------------------------
    def save(self, path, overwrite: bool = True) -> str:
        """Write the model to ``path`` (FITS, or ASDF for ``.asdf``) atomically.

        The file is written under a temporary name in the target folder and
        renamed into place, so a failure never leaves a partial product nor
        truncates an existing one.
        """
        from .atomic import atomic_open
        from .io import write_asdf, write_fits

        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(path)
        self.meta.filename = path.name
        with atomic_open(path, "wb") as f:
            if path.suffix.lower() == ".asdf":
                write_asdf(self, f)
            else:
                write_fits(self, f)
        self._path = str(path)
        return str(path)

    # -- metadata helpers ------------------------------------------------
    def meta_from_tree(self, tree: dict, header_values: dict, where) -> None:
        """Build ``self.meta`` from an ASDF ``meta`` tree and FITS keyword values (FITS wins)."""
        merged = tree if tree else {}
        for path, value in header_values.items():
            set_path(merged, path, value)
        try:
            self.meta = Meta.model_validate(merged)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            kwd = _keyword_for(tuple(str(p) for p in err["loc"]))
            what = f"keyword {kwd} (meta.{loc})" if kwd else f"meta.{loc}"
            raise ModelValidationError(where, f"{what}: {err['msg']} (got {err.get('input')!r})") from None

    def to_flat_dict(self) -> dict[str, Any]:
        """``{"meta.exposure.ngroups": 10, ...}`` for every set, FITS-mapped field."""
        out = {}
        for path, _kw, _hdu, _ann in KEYWORD_FIELDS:
            v = get_path(self.meta, path)
            if v is not None:
                out["meta." + ".".join(path)] = v
        return out

    def __repr__(self):
        shapes = ", ".join(f"{n}={self._arrays[n].shape}" for n in self.array_names() if hasattr(self._arrays[n], "shape"))
        return f"<{type(self).__name__}({shapes}) {self.meta.filename or ''}>"


def _keyword_for(path: tuple[str, ...]) -> str | None:
    for p, k, _h, _a in KEYWORD_FIELDS:
        if p == path:
            return k
    return None
