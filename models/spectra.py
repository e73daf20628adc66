"""1-D spectrum products: x1d, x1dints, c1d and the WFSS multi-spectrum files.

Layout (jwst 3.0): a primary header, optionally INT_TIMES, then one binary
table extension per spectrum (``EXTRACT1D`` for extracted spectra,
``COMBINE1D`` for combined ones, numbered by EXTVER), then the other kept
extensions and the ``ASDF`` tree.  Each spectrum is a :class:`Spectrum`: its
table and its own metadata, which is written both as keywords of its table
extension and as the entry ``spec[i]`` of the ASDF tree (as stdatamodels
does), so that a file opens in stdatamodels as the same class.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, ClassVar

import numpy as np
from astropy.io import fits

from .base import ArraySpec as A
from .base import DataModel

# Per-spectrum metadata of the EXTRACT1D extensions: (attribute, FITS keyword, type, comment).
SPEC_META: tuple[tuple[str, str, type, str], ...] = (
    ("name", "SLTNAME", str, "Slit name"),
    ("slitlet_id", "SLITID", int, "Slitlet ID"),
    ("source_id", "SOURCEID", int, "Source ID"),
    ("source_name", "SRCNAME", str, "Source name"),
    ("source_alias", "SRCALIAS", str, "Source alias"),
    ("stellarity", "STLARITY", float, "Source stellarity"),
    ("source_type", "SRCTYPE", str, "Source type used for calibration"),
    ("ta_xpos", "TA_XPOS", float, "[pix] TA x position"),
    ("ta_ypos", "TA_YPOS", float, "[pix] TA y position"),
    ("source_xpos", "SRCXPOS", float, "Source position in slit, x"),
    ("source_ypos", "SRCYPOS", Real, "Source position in slit, y"),
    ("source_ra", "SRCRA", float, "[deg] Source right ascension"),
    ("source_dec", "SRCDEC", float, "[deg] Source declination"),
    ("extraction_x", "EXTR_X", Real, "x location of the extraction"),  # int for a spaxel, float otherwise
    ("extraction_y", "EXTR_Y", Real, "y location of the extraction"),
    ("extraction_xstart", "EXTRXSTR", Real, "X axis start of extraction region"),
    ("extraction_xstop", "EXTRXSTP", Real, "X axis end of extraction region"),
    ("extraction_ystart", "EXTRYSTR", Real, "Y axis start of extraction region"),
    ("extraction_ystop", "EXTRYSTP", Real, "Y axis end of extraction region"),
    ("shutter_state", "SHUTSTA", str, "All (open and close) shutters in slit"),
    ("slit_ra", "SLIT_RA", float, "[deg] Right Ascension at middle of slit"),
    ("slit_dec", "SLIT_DEC", float, "[deg] Declination at middle of slit"),
    ("quadrant", "MSAQUAD", int, "MSA quadrant"),
    ("slit_xscale", "SLTXSCL", float, "Slit x scale"),
    ("slit_yscale", "SLTYSCL", float, "Slit y scale"),
    ("spectral_order", "SPORDER", int, "Spectral order number"),
    ("dispersion_direction", "DISPAXIS", int, "Dispersion direction"),
    ("detector", "DETECTOR", str, "Name of detector used to acquire the data"),
    ("int_num", "INT_NUM", int, "Integration number"),
    ("time_sys", "TIMESYS", str, "Principal time system for time-related keywords"),
    ("time_unit", "TIMEUNIT", str, "Default unit applicable to all time values"),
    ("start_time_mjd", "MJD-BEG", float, "[d] Integration start time (MJD)"),
    ("mid_time_mjd", "MJD-AVG", float, "[d] Integration mid time (MJD)"),
    ("end_time_mjd", "MJD-END", float, "[d] Integration end time (MJD)"),
    ("start_tdb", "TDB-BEG", float, "[d] Integration start time (TDB)"),
    ("mid_tdb", "TDB-MID", float, "[d] Integration mid time (TDB)"),
    ("end_tdb", "TDB-END", float, "[d] Integration end time (TDB)"),
    ("wavelength_corrected", "WAVECOR", bool, "Wavelength corrected for source position"),
    ("pathloss_correction_type", "PTHLOSS", str, "Type of pathloss correction applied"),
    ("barshadow_corrected", "BARSHDW", bool, "Bar shadow correction applied"),
    ("s_region", "S_REGION", str, "Spatial footprint of the observation"),
    ("position_angle", "PA_APER", float, "[deg] Position angle of aperture used"),
)

WFSS_SPEC_META: tuple[tuple[str, str, type, str], ...] = (
    ("filename", "FILENAME", str, "Name of the exposure the spectra come from"),
    ("group_id", "EXPGRPID", str, "Exposure group ID"),
    ("dispersion_direction", "DISPAXIS", int, "Dispersion direction"),
    ("spectral_order", "SPORDER", int, "Spectral order number"),
    ("exposure_time", "EFFEXPTM", float, "[s] Effective exposure time"),
    ("integration_time", "EFFINTTM", float, "[s] Effective integration time"),
    ("s_region", "S_REGION", str, "Spatial footprint of the observation"),
)

COMBINED_META: tuple[tuple[str, str, type, str], ...] = (
    ("spectral_order", "SPORDER", int, "Spectral order number"),
    ("source_id", "SOURCEID", int, "Source ID"),
    ("source_type", "SRCTYPE", str, "Source type used for calibration"),
)

WFSS_COMBINED_META: tuple[tuple[str, str, type, str], ...] = (
    ("spectral_order", "SPORDER", int, "Spectral order number"),
    ("dispersion_direction", "DISPAXIS", int, "Dispersion direction"),
)

# Table columns: (name, dtype, per-element shape is the spectrum's length?)
_F8 = "f8"
SPEC_COLUMNS: tuple[tuple[str, str], ...] = (
    ("WAVELENGTH", _F8), ("FLUX", _F8), ("FLUX_ERROR", _F8), ("FLUX_VAR_POISSON", _F8),
    ("FLUX_VAR_RNOISE", _F8), ("FLUX_VAR_FLAT", _F8), ("SURF_BRIGHT", _F8), ("SB_ERROR", _F8),
    ("SB_VAR_POISSON", _F8), ("SB_VAR_RNOISE", _F8), ("SB_VAR_FLAT", _F8), ("DQ", "u4"),
    ("BACKGROUND", _F8), ("BKGD_ERROR", _F8), ("BKGD_VAR_POISSON", _F8), ("BKGD_VAR_RNOISE", _F8),
    ("BKGD_VAR_FLAT", _F8), ("NPIXELS", _F8),
)
# x1dints: one row per integration, spectral columns are vectors; the scalars close the row
TSO_SCALAR_COLUMNS: tuple[tuple[str, str], ...] = (
    ("N_ALONGDISP", "u4"), ("SEGMENT", "i4"), ("MJD-BEG", _F8), ("MJD-AVG", _F8), ("MJD-END", _F8),
    ("TDB-BEG", _F8), ("TDB-MID", _F8), ("TDB-END", _F8),
)
COMBINED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("WAVELENGTH", _F8), ("FLUX", _F8), ("ERROR", _F8), ("SURF_BRIGHT", _F8), ("SB_ERROR", _F8),
    ("DQ", "u4"), ("WEIGHT", _F8), ("N_INPUT", _F8),
)
# the value a column takes where nothing was measured (stdatamodels' schema defaults)
_FILL = {"DQ": 1, "NPIXELS": 0, "INT_NUM": 0, "N_ALONGDISP": 0, "SEGMENT": 0}


def spectrum_units(flux_unit: str = "Jy", sb_unit: str = "MJy/sr") -> dict[str, str]:
    """The TUNIT of each EXTRACT1D column, for fluxes in ``flux_unit`` and surface brightness in ``sb_unit``."""
    sq = {"Jy": "Jy^2", "MJy": "MJy^2"}.get(flux_unit, f"{flux_unit}^2")
    sbsq = {"MJy/sr": "MJy^2 / sr^2"}.get(sb_unit, f"({sb_unit})^2")
    u = {"WAVELENGTH": "um", "FLUX": flux_unit, "FLUX_ERROR": flux_unit}
    for c in ("FLUX_VAR_POISSON", "FLUX_VAR_RNOISE", "FLUX_VAR_FLAT"):
        u[c] = sq
    for c in ("SURF_BRIGHT", "SB_ERROR", "BACKGROUND", "BKGD_ERROR"):
        u[c] = sb_unit
    for c in ("SB_VAR_POISSON", "SB_VAR_RNOISE", "SB_VAR_FLAT", "BKGD_VAR_POISSON", "BKGD_VAR_RNOISE", "BKGD_VAR_FLAT"):
        u[c] = sbsq
    for c in ("MJD-BEG", "MJD-AVG", "MJD-END", "TDB-BEG", "TDB-MID", "TDB-END"):
        u[c] = "d"
    return u


def new_spec_table(n: int, columns=SPEC_COLUMNS) -> np.ndarray:
    """A table of ``n`` rows with ``columns``, filled with the schema's defaults (NaN, DQ=1, counts 0)."""
    t = np.zeros(n, dtype=[(c, d) for c, d in columns])
    for c, d in columns:
        t[c] = _FILL.get(c, np.nan if d == _F8 else 0)
    return t


def new_tso_spec_table(nints: int, nwave: int) -> np.ndarray:
    """An x1dints table: ``nints`` rows of INT_NUM, ``nwave``-long spectral columns, then the per-row scalars."""
    cols = [("INT_NUM", "i4")] + [(c, d, (nwave,)) for c, d in SPEC_COLUMNS] + list(TSO_SCALAR_COLUMNS)
    t = np.zeros(nints, dtype=cols)
    for c in t.dtype.names:
        kind = t.dtype[c].base.kind
        t[c] = _FILL.get(c, np.nan if kind == "f" else 0)
    return t


@dataclass
class Spectrum:
    """One spectrum: its table, its metadata (schema names, as in ``spec[i]``) and the table's units."""

    spec_table: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    header: fits.Header = field(default_factory=fits.Header)  # other cards of its extension, kept

    def __getattr__(self, name):
        meta = self.__dict__.get("meta", {})
        if name in meta:
            return meta[name]
        raise AttributeError(name)


class MultiSpecBase(DataModel):
    """A model holding a list of spectra, ``model.spec``, each in its own table extension."""

    table_extname: ClassVar[str] = "EXTRACT1D"
    keywords: ClassVar[tuple[tuple[str, str, type, str], ...]] = SPEC_META
    # HDRTAB: a Stage 3 product's inputs' metadata, one row each (jwst's model blender)
    arrays = (A("int_times", "INT_TIMES", table=True), A("hdrtab", "HDRTAB", table=True))

    def __init__(self, init=None, **arrays):
        object.__setattr__(self, "spec", [])
        super().__init__(init, **arrays)
        if isinstance(init, MultiSpecBase):
            self.spec = [Spectrum(s.spec_table, dict(s.meta), dict(s.units), s.header.copy()) for s in init.spec]

    @property
    def shape(self):
        return None

    def copy(self, share_arrays: bool = False):
        new = super().copy(share_arrays=share_arrays)  # the spectra's tables are copied either way
        new.spec = [Spectrum(s.spec_table.copy(), dict(s.meta), dict(s.units), s.header.copy()) for s in self.spec]
        return new

    # -- reading: split the generic reader's kept table extensions into spectra ---------------
    def _read(self, path):
        super()._read(path)
        tables = [h for h in self._extra_hdus if h.name == self.table_extname]
        self._extra_hdus = [h for h in self._extra_hdus if h.name != self.table_extname]
        entries = self._asdf_extra.pop("spec", None) or []
        by_key = {k: (a, t) for a, k, t, _c in self.keywords}
        spectra = []
        for i, hdu in enumerate(tables):
            meta = dict(entries[i]) if i < len(entries) and isinstance(entries[i], dict) else {}
            meta.pop("spec_table", None)
            header = fits.Header()
            for card in hdu.header.cards:
                k = card.keyword
                if k in by_key:
                    attr, typ = by_key[k]
                    meta[attr] = _typed(card.value, typ)
                elif k not in ("EXTVER",) and not _table_card(k):
                    header.append(card, end=True)
            units = {c.name: c.unit for c in hdu.columns if c.unit}
            table = _native_table(hdu.data) if hdu.data is not None else new_spec_table(0)
            spectra.append(Spectrum(table, meta, units, header))
        self.spec = spectra

    # -- writing: put the spectra back as numbered table extensions ---------------------------
    def save(self, path, overwrite: bool = True) -> str:
        kept = self._extra_hdus
        order = self._hdu_order
        from .io import DeferredHdu

        # each table's HDU is made when its turn to be written comes (models/io.py DeferredHdu)
        # and a table made on demand (a WFSS product's, models/wfss_spectra.py) or a large one (a
        # time series' x1dints) is streamed to the file, without astropy's copies of it
        hdus = [DeferredHdu(self.table_extname, functools.partial(self._table_hdu, s, i + 1),
                            functools.partial(self._stream_table, s, i + 1) if _streamed(s) else None)
                for i, s in enumerate(self.spec)]
        self._extra_hdus = hdus + list(kept)
        # spectra go where they were read, else after INT_TIMES (jwst's order)
        base = [n for n in order if n != self.table_extname] or ["PRIMARY"]
        if self.has("int_times") and "INT_TIMES" not in base:
            base.insert(1, "INT_TIMES")
        if self.table_extname in order:
            at = len([n for n in order[: order.index(self.table_extname)] if n != self.table_extname])
        else:
            at = base.index("INT_TIMES") + 1 if "INT_TIMES" in base else 1
        self._hdu_order = base[:at] + [self.table_extname] * len(hdus) + base[at:]
        self._asdf_extra["spec"] = [_tree_entry(s, self.keywords) for s in self.spec]
        try:
            return super().save(path, overwrite)
        finally:
            self._extra_hdus = kept
            self._hdu_order = order
            self._asdf_extra.pop("spec", None)

    def _stream_table(self, s: Spectrum, extver: int, f) -> None:
        """``s``'s table extension written to ``f`` a chunk of rows at a time (models/io.py)."""
        from .io import _hdu_bytes, write_table_rows

        t = np.asarray(s.spec_table)
        if not write_table_rows(f, self._table_hdu(s, extver, t[:0]), t):
            f.write(_hdu_bytes(self._table_hdu(s, extver, t)))

    def _table_hdu(self, s: Spectrum, extver: int, table=None) -> fits.BinTableHDU:
        t = np.asarray(s.spec_table if table is None else table)
        cols = []
        for name in t.dtype.names:
            arr = t[name]
            sub = arr.shape[1:]
            bzero = {"u2": 1 << 15, "u4": 1 << 31, "u8": 1 << 63}.get(arr.dtype.newbyteorder("=").str[1:])
            cols.append(fits.Column(name=name, format=_tform(arr.dtype, sub), unit=s.units.get(name),
                                    dim=f"({sub[0]})" if sub else None, bzero=bzero, array=arr))
        hdu = fits.BinTableHDU.from_columns(cols, name=self.table_extname)
        hdu.header["EXTVER"] = (extver, "extension value")
        for attr, key, typ, comment in self.keywords:
            v = s.meta.get(attr)
            if v is None or (isinstance(v, float) and not np.isfinite(v)):
                continue
            hdu.header[key] = (_typed(v, typ), comment)
        for card in s.header.cards:
            if card.keyword not in hdu.header:
                hdu.header.append(card, end=True)
        return hdu


def _tform(dtype: np.dtype, sub: tuple[int, ...]) -> str:
    n = int(np.prod(sub)) if sub else 1
    code = {"f8": "D", "f4": "E", "i4": "J", "u4": "J", "i2": "I", "u2": "I", "i8": "K", "u8": "K", "b1": "L"}.get(
        dtype.newbyteorder("=").str[1:]
    )
    if code is None and dtype.kind in ("S", "U"):
        return f"{dtype.itemsize if dtype.kind == 'S' else dtype.itemsize // 4}A"
    return f"{n if sub else ''}{code}"


def _table_card(key: str) -> bool:
    return any(key.startswith(p) and key[len(p):].isdigit() for p in ("TTYPE", "TFORM", "TUNIT", "TDIM", "TZERO", "TSCAL", "TNULL", "TDISP"))


def _typed(v, typ):
    if v is None:
        return None
    if typ is bool:
        return bool(v)
    if typ is Real:  # a schema "number": int or float as set
        return v.item() if isinstance(v, np.generic) else v
    if typ is int:
        return int(v)
    if typ is float:
        return float(v)
    return str(v)


def _native_table(data) -> np.ndarray:
    """A plain structured array in native byte order, columns as FITS scales them (TZERO: unsigned)."""
    cols = {n: np.asarray(data[n]) for n in data.dtype.names}
    out = np.empty(len(data), dtype=[(n, c.dtype.newbyteorder("="), c.shape[1:]) for n, c in cols.items()])
    for n, c in cols.items():
        out[n] = c
    return out


def _tree_entry(s: Spectrum, keywords) -> dict:
    known = {a: t for a, _k, t, _c in keywords}
    out = {}
    for k, v in s.meta.items():
        if v is None:
            continue
        out[k] = _typed(v, known[k]) if k in known else v
    return out


class MultiSpecModel(MultiSpecBase):
    """Extracted spectra (``_x1d``): one EXTRACT1D table per slit, source or order."""


class TSOMultiSpecModel(MultiSpecBase):
    """Per-integration spectra (``_x1dints``): one EXTRACT1D table per segment and order, one row per integration."""


class MRSMultiSpecModel(MultiSpecBase):
    """MIRI MRS extracted spectra (``_x1d`` of an IFU cube)."""


class WFSSMultiSpecModel(MultiSpecBase):
    """WFSS spectra of one exposure: one EXTRACT1D table per order, one row per source."""

    keywords = WFSS_SPEC_META
    arrays = ()


class MultiCombinedSpecModel(MultiSpecBase):
    """Combined spectra (``_c1d``): one COMBINE1D table per source and order."""

    table_extname = "COMBINE1D"
    keywords = COMBINED_META


class WFSSMultiCombinedSpecModel(MultiSpecBase):
    """Combined WFSS spectra (``_c1d``): one COMBINE1D table per order, one row per source."""

    table_extname = "COMBINE1D"
    keywords = WFSS_COMBINED_META


SPECTRUM_MODELS = (
    MultiSpecModel, TSOMultiSpecModel, MRSMultiSpecModel, WFSSMultiSpecModel,
    MultiCombinedSpecModel, WFSSMultiCombinedSpecModel,
)


_STREAMED_TABLE_BYTES = 1 << 20  # a spectrum's table at least this large is streamed when written


def _streamed(s) -> bool:
    """Whether a spectrum's table is written a chunk of rows at a time (``_stream_table``)."""
    if hasattr(s, "nrows"):  # made on demand
        return True
    t = getattr(s, "spec_table", None)
    return isinstance(t, np.ndarray) and t.nbytes >= _STREAMED_TABLE_BYTES
