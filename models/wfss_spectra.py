"""WFSS Stage 3 spectrum products: all sources of a product in one x1d and one c1d (jwst 3.0's layout).

jwst 3.0's calwebb_spec3 writes, for NIRCam/NIRISS/MIRI WFSS, one ``<product>_x1d.fits``
(``WFSSMultiSpecModel``) and one ``<product>_c1d.fits`` (``WFSSMultiCombinedSpecModel``) holding
every source, instead of one file per source.  The classes are :mod:`webbflow.models.spectra`'s;
this module builds and reads their tables:

``wfss_x1d(sources) -> WFSSMultiSpecModel``
    ``sources``: per source (in processing order) its extracted spectra (:class:`Spectrum`, whose
    meta holds ``filename``, ``group_id`` (``<exposure group>_<order>``), ``spectral_order``,
    ``source_id`` and the slit's source metadata) and the weight times the source's spectra carry.
    One EXTRACT1D table per exposure group (exposure and order), in the order groups are first
    met; one row per source of the whole product, sorted by SOURCE_ID; the spectral columns are
    vectors as long as the group's longest spectrum, padded with the schema's defaults (NaN, DQ 1),
    N_ALONGDISP the spectrum's own length; a source missing from a group keeps the default row
    (SOURCE_ID still set).  The table's FILENAME, SPORDER, EFFEXPTM and EFFINTTM are those of the
    first source that has the group (jwst carries a source's first exposure time to all its
    spectra).

``wfss_c1d(combined) -> WFSSMultiCombinedSpecModel``
    ``combined``: per source its combined spectra (one per order).  One COMBINE1D table per order
    (in the order orders are first met), one row per source, sorted by SOURCE_ID.

``expand_wfss(model) -> [(source_id, [Spectrum], exposure_time, integration_time)]``
    The other way: the spectra of a WFSSMultiSpecModel regrouped per source, each row cut to its
    N_ALONGDISP elements with its metadata columns as spectrum metadata (combine_1d on a WFSS x1d).

``primary_meta(model)``: a copy of a model's metadata holding only what jwst's
``update(only="PRIMARY")`` copies (no SCI-extension keywords, no WCS).

``SpillFile`` and ``LazySpectrum``: spec3 keeps memory to one exposure plus the catalogue by
writing each extracted spectrum's table to a temporary file as soon as it is made
(``SpillFile.spill``) and reading it back only when a step needs it (combine_1d of its source, the
fill of its x1d table); ``wfss_x1d(..., lazy=True)`` and ``wfss_c1d(..., lazy=True)`` give tables
made when the product's save reaches them, one at a time.
"""

from __future__ import annotations

import functools
import os
import tempfile
import threading

import numpy as np

from .spectra import (
    COMBINED_COLUMNS,
    SPEC_COLUMNS,
    Spectrum,
    WFSSMultiCombinedSpecModel,
    WFSSMultiSpecModel,
)

_F8 = "f8"
# the per-source (metadata) columns of each table: (name, dtype, spectrum attribute, unit)
X1D_META_COLUMNS = (
    ("N_ALONGDISP", "u4", None, None), ("SOURCE_TYPE", "S20", "source_type", None),
    ("SOURCE_XPOS", _F8, "source_xpos", "pix"), ("SOURCE_YPOS", _F8, "source_ypos", "pix"),
    ("SOURCE_RA", _F8, "source_ra", "deg"), ("SOURCE_DEC", _F8, "source_dec", "deg"),
    ("EXTRACT2D_XSTART", "u4", "extract2d_xstart", "pix"), ("EXTRACT2D_YSTART", "u4", "extract2d_ystart", "pix"),
    ("EXTRACT2D_XSTOP", "u4", "extract2d_xstop", "pix"), ("EXTRACT2D_YSTOP", "u4", "extract2d_ystop", "pix"),
)
C1D_META_COLUMNS = (
    ("N_ALONGDISP", "u4", None, None), ("SOURCE_TYPE", "S20", "source_type", None),
    ("SOURCE_RA", _F8, "source_ra", "deg"), ("SOURCE_DEC", _F8, "source_dec", "deg"),
)
_DEFAULT = {"SOURCE_ID": -999, "DQ": 1, "N_ALONGDISP": 0, "SOURCE_TYPE": b""}


def _default(name: str, dtype: str):
    if name in _DEFAULT:
        return _DEFAULT[name]
    return np.nan if dtype == _F8 else 0


def new_wfss_table(nrows: int, nwave: int, vector_columns, meta_columns) -> np.ndarray:
    """``nrows`` rows: SOURCE_ID, the ``nwave``-long spectral columns, then the metadata columns,
    every cell at the schema's default."""
    dtype = [("SOURCE_ID", "i4")] + [(c, d, (nwave,)) for c, d in vector_columns] + [(c, d) for c, d, _a, _u in meta_columns]
    t = np.empty(nrows, dtype=dtype)
    t["SOURCE_ID"] = -999
    for c, d in vector_columns:
        t[c] = _default(c, d)
    for c, d, _a, _u in meta_columns:
        t[c] = _default(c, d)
    return t


def fill_row(table, i: int, spec: Spectrum, vector_columns, meta_columns) -> None:
    src = spec.spec_table
    n = len(src)
    for c, _d in vector_columns:
        table[c][i, :n] = src[c]
    table["N_ALONGDISP"][i] = n
    for c, _d, attr, _u in meta_columns:
        if attr is None:
            continue
        v = spec.meta.get(attr)
        if v is None:  # jwst leaves the default (and warns)
            continue
        table[c][i] = v.encode() if isinstance(v, str) else v


def table_units(example: Spectrum, vector_columns, meta_columns) -> dict:
    units = {c: u for c, _d, _a, u in meta_columns if u}
    for c, _d in vector_columns:
        if example.units.get(c):
            units[c] = example.units[c]
    return units


class LazySpectrum:
    """A spectrum whose table is made (``make()``) each time ``spec_table`` is read, not held;
    ``nrows`` its length, known without making it.  Otherwise as :class:`Spectrum` (not a
    dataclass: Prefect's walk of a task's inputs would remake it field by field, reading its table)."""

    __getattr__ = Spectrum.__getattr__  # its metadata as attributes

    def __init__(self, make, nrows: int, meta: dict, units: dict):
        from astropy.io import fits

        self._make, self.nrows, self.meta, self.units, self.header = make, nrows, meta, units, fits.Header()

    @property
    def spec_table(self) -> np.ndarray:
        return self._make()


def _nrows(s) -> int:
    return s.nrows if isinstance(s, LazySpectrum) else len(s.spec_table)


class SpillFile:
    """An unnamed temporary file (in ``folder``, else the system's) that spectra's tables are
    appended to and read back from, from any thread; gone once closed."""

    def __init__(self, folder=None):
        self._file = tempfile.TemporaryFile(dir=folder)
        self._end = 0
        self._lock = threading.Lock()

    def spill(self, s) -> LazySpectrum:
        """``s`` (a Spectrum) with its table in the file instead of in memory."""
        t = np.ascontiguousarray(s.spec_table)
        data = t.tobytes()
        with self._lock:
            offset = self._end
            self._end += len(data)
        os.pwrite(self._file.fileno(), data, offset)
        read = functools.partial(self._read, offset, len(data), t.dtype, len(t))
        return LazySpectrum(read, len(t), s.meta, s.units)

    def _read(self, offset: int, nbytes: int, dtype, n: int) -> np.ndarray:
        buf = bytearray(nbytes)
        if nbytes and os.preadv(self._file.fileno(), [buf], offset) != nbytes:
            raise OSError("spec3: a spilled spectrum could not be read back whole")
        return np.frombuffer(buf, dtype=dtype, count=n)

    def close(self) -> None:
        self._file.close()


def primary_meta(model):
    """A copy of ``model.meta`` with only the primary header's metadata (no SCI keywords, no WCS)."""
    from .meta import KEYWORD_FIELDS, get_path

    meta = model.meta.model_copy(deep=True)
    meta.wcs = None
    for path, _key, hdu, _ann in KEYWORD_FIELDS:
        if hdu == "PRIMARY" or get_path(meta, path) is None:
            continue
        obj = meta
        for p in path[:-1]:
            obj = getattr(obj, p)
        setattr(obj, path[-1], None)
    return meta


def _primary_of(model, out) -> None:
    out.meta = primary_meta(model)
    out.meta.model_type = type(out).__name__
    out.meta.filetype = None
    out._headers = {"PRIMARY": model._headers["PRIMARY"].copy()} if "PRIMARY" in getattr(model, "_headers", {}) else {}


def _x1d_table(ids, info: dict) -> np.ndarray:
    """One exposure group's EXTRACT1D table: a row per source of ``ids``, filled from its spectra."""
    table = new_wfss_table(len(ids), info["n"], SPEC_COLUMNS, X1D_META_COLUMNS)
    table["SOURCE_ID"] = ids
    for s in info["spectra"]:
        row = int(np.nonzero(ids == int(s.meta["source_id"]))[0][0])
        fill_row(table, row, s, SPEC_COLUMNS, X1D_META_COLUMNS)
    return table


def wfss_x1d(sources, primary_source, lazy: bool = False) -> WFSSMultiSpecModel:
    """The product's x1d: ``sources`` is ``[(spectra, exposure_time, integration_time)]`` per source;
    ``primary_source`` the model whose primary metadata the product takes (see the module);
    ``lazy``: each table is made when read (LazySpectrum), not held."""
    groups: dict = {}
    ids = []
    for spectra, exptime, inttime in sources:
        for s in spectra:
            g = s.meta.get("group_id")
            n = _nrows(s)
            if g not in groups:
                groups[g] = {"n": n, "filename": s.meta.get("filename"), "order": s.meta.get("spectral_order"),
                             "exposure_time": exptime, "integration_time": inttime, "spectra": []}
            else:
                groups[g]["n"] = max(groups[g]["n"], n)
            groups[g]["spectra"].append(s)
            ids.append(int(s.meta["source_id"]))
    ids = np.unique(np.asarray(ids, dtype=np.int64))
    out = WFSSMultiSpecModel()
    _primary_of(primary_source, out)
    example = next((s for spectra, _e, _i in sources for s in spectra), None)
    for g, info in groups.items():
        meta = {"filename": info["filename"], "group_id": g,
                "dispersion_direction": example.meta.get("dispersion_direction"),
                "spectral_order": info["order"], "exposure_time": info["exposure_time"],
                "integration_time": info["integration_time"]}
        units = table_units(example, SPEC_COLUMNS, X1D_META_COLUMNS)
        make = functools.partial(_x1d_table, ids, info)
        out.spec.append(LazySpectrum(make, len(ids), meta, units) if lazy else Spectrum(make(), meta, units))
    return out


def _c1d_table(nrows: int, info: dict) -> np.ndarray:
    """One order's COMBINE1D table: a row per source (``nrows``), sorted by SOURCE_ID."""
    table = new_wfss_table(nrows, info["n"], COMBINED_COLUMNS, C1D_META_COLUMNS)
    for j, s in info["items"]:
        fill_row(table, j, s, COMBINED_COLUMNS, C1D_META_COLUMNS)
        table["SOURCE_ID"][j] = int(s.meta["source_id"])
    return table[np.argsort(table["SOURCE_ID"], kind="stable")]


def wfss_c1d(combined, primary_source, lazy: bool = False) -> WFSSMultiCombinedSpecModel:
    """The product's c1d: ``combined`` is, per source, its combined spectra (one per order);
    ``lazy``: each table is made when read (LazySpectrum), not held."""
    orders: dict = {}
    for j, spectra in enumerate(combined):
        for s in spectra:
            o = s.meta.get("spectral_order")
            orders.setdefault(o, {"n": 0, "items": []})
            orders[o]["n"] = max(orders[o]["n"], _nrows(s))
            orders[o]["items"].append((j, s))
    out = WFSSMultiCombinedSpecModel()
    _primary_of(primary_source, out)
    example = next((s for spectra in combined for s in spectra), None)
    for o, info in orders.items():
        meta = {"spectral_order": o, "dispersion_direction": example.meta.get("dispersion_direction")}
        units = table_units(example, COMBINED_COLUMNS, C1D_META_COLUMNS)
        make = functools.partial(_c1d_table, len(combined), info)
        out.spec.append(LazySpectrum(make, len(combined), meta, units) if lazy else Spectrum(make(), meta, units))
    return out


def expand_wfss(model) -> list[tuple[int, list[Spectrum], float | None, float | None]]:
    """The spectra of a WFSS x1d per source: ``[(source_id, spectra, exposure_time, integration_time)]``.

    Each source's weight times are those of the first table it appears in, as jwst regroups them.
    """
    by_source: dict = {}
    for ext in model.spec:
        t = ext.spec_table
        names = t.dtype.names
        for r in range(len(t)):
            sid = int(t["SOURCE_ID"][r])
            n = int(t["N_ALONGDISP"][r])
            table = np.zeros(n, dtype=[(c, d) for c, d in SPEC_COLUMNS])
            for c, _d in SPEC_COLUMNS:
                if c in names:
                    table[c] = t[c][r][:n]
            meta = {"source_id": sid, "filename": ext.meta.get("filename"), "group_id": ext.meta.get("group_id"),
                    "spectral_order": ext.meta.get("spectral_order"),
                    "dispersion_direction": ext.meta.get("dispersion_direction")}
            for c, _d, attr, _u in X1D_META_COLUMNS:
                if attr is not None and c in names:
                    v = t[c][r]
                    meta[attr] = v.decode() if isinstance(v, bytes) else v.item()
            units = {c: u for c, u in ext.units.items() if c in dict(SPEC_COLUMNS)}
            entry = by_source.setdefault(sid, [sid, [], ext.meta.get("exposure_time"), ext.meta.get("integration_time")])
            entry[1].append(Spectrum(table, meta, units))
    return [tuple(v) for v in by_source.values()]
