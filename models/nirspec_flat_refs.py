"""Reference models of the NIRSpec spectroscopic flats and the MSA bar shadow, as stdatamodels reads them.

- ``NirspecFlatModel`` (``fflat``, ``sflat``, ``dflat``): SCI, DQ, ERR (2-D, or 3-D with one plane
  per wavelength; a d-flat's DQ and ERR may stay 2-D under a 3-D SCI), the WAVELENGTH table (the
  wavelength of each SCI plane, micron), the FAST_VARIATION table (``slit_name``, ``nelem``, and
  ``wavelength``, ``data``, ``error`` arrays: the flat's quickly varying part against wavelength,
  one row per fixed slit or a single row) and DQ_DEF.  A fixed-slit f-flat is the table alone.
- ``NirspecQuadFlatModel`` (the MOS ``fflat``): per MSA quadrant (EXTVER 1..4) SCI, DQ, ERR
  (planes, 171 shutter rows, 365 shutter columns), WAVELENGTH and FAST_VARIATION.
- ``BarshadowModel`` (``barshadow``): DATA1X1/VAR1X1 (one open shutter) and DATA1X3/VAR1X3 (the
  middle of three open shutters), 1001 rows (slit position -1..1 in shutter pitches) by 101
  wavelength columns, with CRVAL1/CDELT1 (micron) and CRVAL2/CDELT2 in DATA1X1's header.

:func:`fast_variation` reads a FAST_VARIATION table's columns as stdatamodels presents them: a
column the file lacks (real dummy f-flats have no ``error``) reads as NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelValidationError
from .base import ArraySpec as A
from .classes import F4, REFERENCE_MODELS, U4, ReferenceFileModel, _dq_def

FLAT_COLUMNS = ("slit_name", "nelem", "wavelength", "data", "error")


class NirspecFlatModel(ReferenceFileModel):
    """A NIRSpec f-, s- or d-flat (see the module docstring)."""

    reftype = "fflat"
    arrays = (
        A("data", "SCI", F4, ndim=(2, 3)),
        A("dq", "DQ", U4, ndim=(2, 3)),
        A("err", "ERR", F4, ndim=(2, 3)),
        A("wavelength", "WAVELENGTH", table=True),
        A("flat_table", "FAST_VARIATION", table=True),
        _dq_def(),
    )


@dataclass
class FlatQuadrant:
    """One MSA quadrant of a MOS f-flat."""

    data: np.ndarray
    dq: np.ndarray
    err: np.ndarray
    wavelength: np.ndarray  # the WAVELENGTH table
    flat_table: np.ndarray  # the FAST_VARIATION table


class NirspecQuadFlatModel(NirspecFlatModel):
    """The MOS f-flat: ``quadrants[q]`` (q = MSA quadrant - 1) each a :class:`FlatQuadrant`."""

    arrays = (_dq_def(),)

    def _read(self, path: Path) -> None:
        from astropy.io import fits

        from .io import check_readable

        super()._read(path)
        check_readable(path)
        found: dict[int, dict] = {}
        with fits.open(path, memmap=False) as hdul:
            for hdu in hdul[1:]:
                name = (hdu.name or "").upper()
                if name not in ("SCI", "DQ", "ERR", "WAVELENGTH", "FAST_VARIATION"):
                    continue
                ver = int(hdu.header.get("EXTVER", 1))
                found.setdefault(ver, {})[name] = np.array(hdu.data)
        quads = []
        for ver in range(1, 5):
            parts = found.get(ver, {})
            missing = [n for n in ("SCI", "WAVELENGTH", "FAST_VARIATION") if n not in parts]
            if missing:
                raise ModelValidationError(path, f"MSA quadrant {ver} has no {', '.join(missing)} extension")
            sci = parts["SCI"].astype(np.float32)
            quads.append(FlatQuadrant(
                data=sci,
                dq=parts.get("DQ", np.zeros(sci.shape, np.uint32)).astype(np.uint32),
                err=parts.get("ERR", np.zeros(sci.shape, np.float32)).astype(np.float32),
                wavelength=parts["WAVELENGTH"],
                flat_table=parts["FAST_VARIATION"],
            ))
        object.__setattr__(self, "quadrants", quads)


class BarshadowModel(ReferenceFileModel):
    """The MSA bar shadow (see the module docstring)."""

    reftype = "barshadow"
    arrays = (
        A("data1x1", "DATA1X1", F4, ndim=2, required=True),
        A("var1x1", "VAR1X1", F4, ndim=2),
        A("data1x3", "DATA1X3", F4, ndim=2, required=True),
        A("var1x3", "VAR1X3", F4, ndim=2),
    )

    def _wcs_keyword(self, key: str) -> float | None:
        h = self._headers.get("DATA1X1")
        v = None if h is None else h.get(key)
        return None if v is None else float(v)

    @property
    def crval1(self):
        return self._wcs_keyword("CRVAL1")

    @property
    def cdelt1(self):
        return self._wcs_keyword("CDELT1")

    @property
    def crval2(self):
        return self._wcs_keyword("CRVAL2")

    @property
    def cdelt2(self):
        return self._wcs_keyword("CDELT2")


def fast_variation(table: np.ndarray | None) -> dict[str, np.ndarray] | None:
    """A FAST_VARIATION table's columns by name (lower case); absent ones are NaN (error) or None."""
    if table is None or getattr(table, "dtype", None) is None or table.dtype.names is None:
        return None
    names = {n.lower(): n for n in table.dtype.names}
    if "wavelength" not in names or "data" not in names:
        return None
    cols: dict[str, np.ndarray] = {}
    for c in FLAT_COLUMNS:
        if c in names:
            col = np.asarray(table[names[c]])
            if c == "slit_name":
                col = np.array([v.decode() if isinstance(v, bytes) else str(v) for v in col])
            elif c != "nelem":
                col = col.astype(np.float32)
            cols[c] = col
    if "error" not in cols:
        cols["error"] = np.full(cols["wavelength"].shape, np.nan, np.float32)
    return cols


REFERENCE_MODELS.update({"fflat": NirspecFlatModel, "sflat": NirspecFlatModel, "dflat": NirspecFlatModel,
                         "barshadow": BarshadowModel})
