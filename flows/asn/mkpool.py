"""A pool from exposure headers (``webbflow asn pool``), as jwst's mkpool makes it.

Every primary-header keyword becomes a (lower-case) column holding the value as text;
the columns association rules need but headers lack get DMS's defaults; each
exposure's observation candidate comes from OBSERVTN, and targets are numbered
in the order their names first appear.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import InputFileError

SKIPPED_KEYWORDS = {"", "COMMENT", "HISTORY"}
NON_HEADER_COLUMNS = {
    "asn_candidate": None, "dms_note": "", "is_imprt": "f", "pntgtype": "science",
    "targetid": "1", "mostilno": "1", "dithptin": "1",
}


def _header(path: Path):
    from astropy.io import fits

    try:
        return fits.getheader(path, 0)
    except FileNotFoundError:
        raise InputFileError(path, "no such exposure") from None
    except (OSError, ValueError) as exc:
        raise InputFileError(path, f"cannot read the FITS header: {exc}") from None


def make_pool(files, asn_candidate: str | list | None = None, dms_note: str = "", is_imprt: str = "f",
              pntgtype: str = "science"):
    """An astropy table with one row per exposure (all values text, '|'-separated when written)."""
    from astropy.table import Table

    files = [str(f) for f in files]
    headers = []
    for f in files:
        h = _header(Path(f))
        if "OBSERVTN" not in h:
            raise InputFileError(f, "no OBSERVTN keyword: cannot name its observation candidate")
        if "TARGNAME" not in h:
            raise InputFileError(f, "no TARGNAME keyword: cannot number its target")
        headers.append(h)
    names = set(NON_HEADER_COLUMNS) | {"filename"}
    for h in headers:
        names.update(k.lower() for k in h.keys() if k not in SKIPPED_KEYWORDS)
    columns = sorted(names)
    fixed = {**NON_HEADER_COLUMNS, "dms_note": dms_note, "is_imprt": is_imprt, "pntgtype": pntgtype}
    rows = []
    targets: dict[str, int] = {}
    for f, h in zip(files, headers):
        row = dict.fromkeys(columns, "null")
        row.update({k.lower(): str(v) for k, v in h.items() if k not in SKIPPED_KEYWORDS})
        row.update(fixed)
        row["filename"] = f
        own = [(f"o{h['OBSERVTN']}", "observation")]
        if isinstance(asn_candidate, str):
            # given as text, "[(...), ...]": the observation goes first
            row["asn_candidate"] = f"[{own[0]}, {asn_candidate[1:]}"
        else:
            row["asn_candidate"] = str(own + list(asn_candidate or []))
        targets.setdefault(row["targname"], len(targets) + 1)
        row["targetid"] = str(targets[row["targname"]])
        rows.append([row[c] for c in columns])
    return Table(rows=rows, names=columns, dtype=[object] * len(columns)) if rows else Table(names=columns)


def write_pool(table, path) -> Path:
    """Write the pool '|'-separated, atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    table.write(str(tmp), format="ascii", delimiter="|", overwrite=True)
    tmp.replace(path)
    return path
