"""The WFSS x1d layout of jwst 3.0 (WFSSMultiSpecModel): one EXTRACT1D table per exposure and order.

extract_1d extracts a WFSS exposure's cutouts one by one (one spectrum per source and order);
jwst 3.0 then writes them flat: each (exposure, order) group becomes one table whose rows are
the sources, every group listing the same source ids in increasing order (a source missing from
a group keeps the schema's default row), and whose vector columns are as long as that group's
longest spectrum (shorter spectra padded with the defaults: NaN, DQ 1).  After the spectral
columns come the per-source ones: N_ALONGDISP (the spectrum's own length), SOURCE_TYPE,
SOURCE_XPOS/YPOS, SOURCE_RA/DEC and the cutout's EXTRACT2D_XSTART/YSTART/XSTOP/YSTOP (1-based
start, start + size).  Each table carries FILENAME (the exposure), EXPGRPID (its exposure
group id and ``_<order>``), DISPAXIS, SPORDER, EFFEXPTM and EFFINTTM.
"""

from __future__ import annotations

import numpy as np

from ...models.spectra import SPEC_COLUMNS, MultiSpecModel, Spectrum, WFSSMultiSpecModel

# the per-source columns after the spectral ones: (name, dtype, default, unit)
SOURCE_COLUMNS = (
    ("N_ALONGDISP", "u4", 0, None), ("SOURCE_TYPE", "S20", b"", None),
    ("SOURCE_XPOS", "f8", np.nan, "pix"), ("SOURCE_YPOS", "f8", np.nan, "pix"),
    ("SOURCE_RA", "f8", np.nan, "deg"), ("SOURCE_DEC", "f8", np.nan, "deg"),
    ("EXTRACT2D_XSTART", "u4", 0, "pix"), ("EXTRACT2D_YSTART", "u4", 0, "pix"),
    ("EXTRACT2D_XSTOP", "u4", 0, "pix"), ("EXTRACT2D_YSTOP", "u4", 0, "pix"),
)
# the schema's defaults of the spectral columns (NPIXELS too is NaN here, unlike a plain x1d)
_VECTOR_DEFAULT = {"DQ": 1}


def exposure_group_id(meta) -> str | None:
    """jwst's exposure group id from the observation keywords (``jw<prog><obs><visit>_<vg><seq><act>_<exp>``)."""
    o = meta.observation
    parts = (o.program_number, o.observation_number, o.visit_number, o.visit_group, o.sequence_id,
             o.activity_id, o.exposure_number)
    if any(p is None for p in parts):
        return None
    return f"jw{parts[0]}{parts[1]}{parts[2]}_{parts[3]}{parts[4]}{parts[5]}_{parts[6]}"


def cutout_keywords(slit) -> dict:
    """The spectrum metadata a WFSS cutout gives its row: the cutout's corners (1-based; stop = start + size)."""
    out = {"extract2d_xstart": slit.xstart, "extract2d_ystart": slit.ystart}
    if slit.xstart is None or slit.ystart is None:
        out["extract2d_xstop"] = out["extract2d_ystop"] = None
    else:
        out["extract2d_xstop"] = slit.xstart + slit.xsize
        out["extract2d_ystop"] = slit.ystart + slit.ysize
    return out


def _table(n_rows: int, source_ids) -> np.ndarray:
    dtype = ([("SOURCE_ID", "i4")] + [(c, d, (n_rows,)) for c, d in SPEC_COLUMNS]
             + [(c, d) for c, d, _v, _u in SOURCE_COLUMNS])
    t = np.zeros(len(source_ids), dtype=dtype)
    for c, d in SPEC_COLUMNS:
        t[c] = _VECTOR_DEFAULT.get(c, np.nan if d == "f8" else 0)
    for c, _d, v, _u in SOURCE_COLUMNS:
        t[c] = v
    t["SOURCE_ID"] = source_ids
    return t


def flatten(spectra: MultiSpecModel, model) -> WFSSMultiSpecModel:
    """The WFSS product of ``spectra`` (one spectrum per cutout, each with ``group_id`` in its meta)."""
    out = WFSSMultiSpecModel()
    out.meta = spectra.meta.model_copy(deep=True)
    out.meta.model_type = "WFSSMultiSpecModel"
    out._headers = {"PRIMARY": spectra._headers["PRIMARY"].copy()} if "PRIMARY" in spectra._headers else {}
    specs = list(spectra.spec)
    if not specs:
        return out
    groups: dict = {}
    for s in specs:
        groups.setdefault(s.meta.get("group_id"), []).append(s)
    source_ids = np.unique(np.array([int(s.meta["source_id"]) for s in specs], dtype=np.int64))
    first = specs[0]
    for gid, members in groups.items():
        n_rows = max(len(s.spec_table) for s in members)
        t = _table(n_rows, source_ids)
        for s in members:
            row = int(np.searchsorted(source_ids, int(s.meta["source_id"])))
            n = len(s.spec_table)
            for c, _d in SPEC_COLUMNS:
                t[c][row, :n] = s.spec_table[c]
            t["N_ALONGDISP"][row] = n
            t["SOURCE_TYPE"][row] = str(s.meta.get("source_type") or "").encode()[:20]
            for c, *_ in SOURCE_COLUMNS[2:]:
                v = s.meta.get(c.lower())
                if v is not None:
                    t[c][row] = v
        units = {c: u for c, _d, _v, u in SOURCE_COLUMNS if u}
        units.update({c: u for c, u in first.units.items() if c in t.dtype.names})
        head = members[0]
        meta = {"filename": head.meta.get("filename"), "group_id": gid,
                "dispersion_direction": first.meta.get("dispersion_direction"),
                "spectral_order": head.meta.get("spectral_order"),
                "exposure_time": model.meta.exposure.exposure_time,
                "integration_time": model.meta.exposure.integration_time}
        out.spec.append(Spectrum(t, meta, units))
    return out
