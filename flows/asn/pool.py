"""Association pools: '|'-separated tables of exposures, one row per exposure.

Column names are case-insensitive (kept lower-case here); every value is a
string. Bad pools raise :class:`~webbflow.errors.InputFileError` naming the
file and the row or column at fault.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ...errors import InputFileError

# Columns without which no rule can be evaluated
REQUIRED_COLUMNS = ("filename", "program", "exp_type", "asn_candidate")

# Values that mean "not given" (DMS pools write all of these)
EMPTY = frozenset(
    {"", "null", "Null", "NULL", "--", "n", "N", "f", "F", "false", "False", "FALSE",
     "n/a", "N/A"}
)


@dataclass
class Pool:
    """The rows of a pool, with where it came from."""

    path: Path
    columns: list[str]
    rows: list[dict[str, str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name

    def __len__(self) -> int:
        return len(self.rows)


def value(row: dict, *sources: str):
    """First meaningful value among ``sources`` (None when none is given)."""
    for src in sources:
        v = row.get(src)
        if v is not None and v not in EMPTY:
            return v
    return None


def read_pool(path, delimiter: str = "|", check_members: bool = True, allow_duplicates: bool = False) -> Pool:
    """Read a pool file; one-line errors for a missing column, a row of the wrong
    width, duplicate exposure file names (unless ``allow_duplicates``: jwst's synthetic
    test pools such as mega_pool reuse names) or (``check_members``) members outside
    the pool's folder."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputFileError(path, "no such pool file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(path, f"cannot read pool: {exc}") from None
    lines = [(n, ln.rstrip("\r\n")) for n, ln in enumerate(text.splitlines(), 1)]
    lines = [(n, ln) for n, ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise InputFileError(path, "empty pool: no header row")
    header_no, header = lines[0]
    columns = [c.strip().lower() for c in header.split(delimiter)]
    for col in REQUIRED_COLUMNS:
        if col not in columns:
            raise InputFileError(path, f"missing column {col.upper()!r} in the header (line {header_no})")
    rows = []
    seen: dict[str, int] = {}
    ifile = columns.index("filename")
    for n, line in lines[1:]:
        cells = line.split(delimiter)
        if len(cells) != len(columns):
            raise InputFileError(
                path, f"line {n}: cannot parse row: {len(cells)} fields, the header has {len(columns)}"
            )
        # values are compared case-blind, as jwst does (it lower-cases the pool on reading)
        cells = [c.strip().lower() for c in cells]
        fname = cells[ifile]
        if not fname:
            raise InputFileError(path, f"line {n}: empty FILENAME")
        if fname in seen and fname.endswith(".fits") and not allow_duplicates:
            raise InputFileError(path, f"line {n}: duplicate FILENAME {fname!r} (first on line {seen[fname]})")
        seen[fname] = n
        # an empty cell reads as 'null', as jwst's pool reader fills what astropy masks
        cells = [c or "null" for c in cells]
        if check_members and (Path(fname).is_absolute() or ".." in Path(fname).parts):
            raise InputFileError(path, f"line {n}: member {fname!r} is outside the pool's folder")
        rows.append(dict(zip(columns, cells)))
    return Pool(path=path, columns=columns, rows=rows)
