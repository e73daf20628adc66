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
from ...models.wfss_spectra import X1D_META_COLUMNS, fill_row, new_wfss_table, table_units


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
        t = new_wfss_table(len(source_ids), max(len(s.spec_table) for s in members), SPEC_COLUMNS, X1D_META_COLUMNS)
        t["SOURCE_ID"] = source_ids
        for s in members:
            fill_row(t, int(np.searchsorted(source_ids, int(s.meta["source_id"]))), s, SPEC_COLUMNS, X1D_META_COLUMNS)
        units = table_units(first, SPEC_COLUMNS, X1D_META_COLUMNS)
        head = members[0]
        meta = {"filename": head.meta.get("filename"), "group_id": gid,
                "dispersion_direction": first.meta.get("dispersion_direction"),
                "spectral_order": head.meta.get("spectral_order"),
                "exposure_time": model.meta.exposure.exposure_time,
                "integration_time": model.meta.exposure.integration_time}
        out.spec.append(Spectrum(t, meta, units))
    return out
