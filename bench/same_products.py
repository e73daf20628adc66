"""Are two runs' products the same?  A strict comparison of two output folders, for performance work.

    python bench/same_products.py DIR_BEFORE DIR_AFTER

For a change that must leave every product as it was (issue #22), this compares file for file:

- the same file names in both folders (FITS, ECSV, PNG, ASDF, JSON associations);
- FITS: the same extensions in the same order; each extension's array bit for bit (same dtype,
  shape and bytes, so NaNs in the same places with the same payload); table columns likewise; the
  header cards in the same order with the same values and comments, except the dates and times of
  the run (DATE, and in the ASDF metadata tree the dates, the step timings and the software
  run-times listed in ``VOLATILE``); the ASDF metadata tree (the ``ASDF`` extension) parsed and
  compared node for node, arrays bit for bit, with the same exceptions;
- ECSV catalogues line for line, except their ``date`` line;
- PNG quick-looks and anything else byte for byte.

It prints each difference and exits with status 1 if there is any.  Not a test: a tool to say how
a change was checked.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np

# header keywords and ASDF tree keys that record when (and how long) a run ran, not what it made
VOLATILE = {"DATE", "date", "seconds", "wall", "cpu", "elapsed", "duration_s", "timestamp", "started", "finished",
            "run_seconds", "asdf_library", "history"}


_FOLDERS: list[str] = []  # the two folders compared (their names may appear in the products)


def _same_array(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind == "O":
        return all(_same_node(x, y, "") == [] for x, y in zip(a.ravel(), b.ravel()))
    return np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()


def _same_node(x, y, where: str) -> list[str]:
    """Differences between two parsed ASDF nodes."""
    if isinstance(x, dict) and isinstance(y, dict):
        out = []
        for k in sorted(set(x) | set(y), key=str):
            if k in VOLATILE:
                continue
            if k not in x or k not in y:
                out.append(f"{where}/{k}: only in {'after' if k not in x else 'before'}")
                continue
            out += _same_node(x[k], y[k], f"{where}/{k}")
        return out
    if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
        if len(x) != len(y):
            return [f"{where}: {len(x)} against {len(y)} items"]
        return [d for i, (a, b) in enumerate(zip(x, y)) for d in _same_node(a, b, f"{where}[{i}]")]
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        return [] if _same_array(x, y) else [f"{where}: arrays differ"]
    if type(x) is not type(y):
        return [f"{where}: {type(x).__name__} against {type(y).__name__}"]
    if hasattr(x, "to_tree") or hasattr(x, "forward_transform") or hasattr(x, "__dict__"):
        # transforms, WCS objects, frames: compared by their serialised form
        return [] if _asdf_bytes(x) == _asdf_bytes(y) else [f"{where}: {type(x).__name__} differs"]
    if isinstance(x, float) and np.isnan(x) and np.isnan(y):
        return []
    if isinstance(x, str) and _FOLDERS:  # the runs' own output folders (e.g. output_dir parameters)
        x, y = x.replace(_FOLDERS[0], "<out>"), y.replace(_FOLDERS[1], "<out>")
    return [] if x == y else [f"{where}: {x!r} against {y!r}"]


def _asdf_bytes(obj) -> bytes:
    import asdf

    buf = io.BytesIO()
    af = asdf.AsdfFile({"x": obj})
    af.write_to(buf)
    text = buf.getvalue()
    # drop the library/history block, which names versions only
    return b"\n".join(line for line in text.splitlines() if b"asdf_library" not in line)


def _asdf_tree(raw: bytes):
    import asdf

    with asdf.open(io.BytesIO(raw), lazy_load=False, memmap=False) as af:
        return {k: v for k, v in af.tree.items()}


def compare_fits(a: Path, b: Path) -> list[str]:
    from astropy.io import fits

    out = []
    with fits.open(a, memmap=False) as fa, fits.open(b, memmap=False) as fb:
        names_a = [h.name for h in fa]
        names_b = [h.name for h in fb]
        if names_a != names_b:
            return [f"{a.name}: extensions {names_a} against {names_b}"]
        for ha, hb in zip(fa, fb):
            # the ASDF extension's length follows the length of the timings it holds
            skip = VOLATILE | ({"NAXIS1", "TFORM1"} if ha.name == "ASDF" else set())
            ca = [(c.keyword, c.value, c.comment) for c in ha.header.cards if c.keyword not in skip]
            cb = [(c.keyword, c.value, c.comment) for c in hb.header.cards if c.keyword not in skip]
            if ca != cb:
                diff = [f"{x} / {y}" for x, y in zip(ca, cb) if x != y][:3] or [f"{len(ca)} against {len(cb)} cards"]
                out.append(f"{a.name}[{ha.name}] header: {'; '.join(map(str, diff))}")
            if ha.name == "ASDF":
                ta = _asdf_tree(ha.data["ASDF_METADATA"][0].tobytes())
                tb = _asdf_tree(hb.data["ASDF_METADATA"][0].tobytes())
                out += [f"{a.name}[ASDF]{d}" for d in _same_node(ta, tb, "")]
            elif ha.data is None or hb.data is None:
                if (ha.data is None) != (hb.data is None):
                    out.append(f"{a.name}[{ha.name}]: data in one only")
            elif isinstance(ha, (fits.BinTableHDU, fits.TableHDU)):
                if ha.columns.names != hb.columns.names:
                    out.append(f"{a.name}[{ha.name}]: columns {ha.columns.names} against {hb.columns.names}")
                else:
                    for n in ha.columns.names:
                        if not _same_array(ha.data[n], hb.data[n]):
                            out.append(f"{a.name}[{ha.name}] column {n} differs")
            elif not _same_array(ha.data, hb.data):
                out.append(f"{a.name}[{ha.name}]: array differs")
    return out


def compare_text(a: Path, b: Path) -> list[str]:
    la = [x for x in a.read_text().splitlines() if not x.lstrip("#-{ ").startswith("date")]
    lb = [x for x in b.read_text().splitlines() if not x.lstrip("#-{ ").startswith("date")]
    return [] if la == lb else [f"{a.name}: lines differ"]


def compare_dirs(before: Path, after: Path) -> tuple[list[str], int]:
    _FOLDERS[:] = [str(before.resolve()), str(after.resolve())]
    skip = {".webbflow"}  # caches and run records, not products
    fa = {p.name for p in before.iterdir() if p.is_file() and not p.name.startswith(".")} - skip
    fb = {p.name for p in after.iterdir() if p.is_file() and not p.name.startswith(".")} - skip
    out = [f"{n}: only before" for n in sorted(fa - fb)] + [f"{n}: only after" for n in sorted(fb - fa)]
    for n in sorted(fa & fb):
        a, b = before / n, after / n
        if n.endswith(".fits"):
            out += compare_fits(a, b)
        elif n.endswith(".ecsv"):
            out += compare_text(a, b)
        elif a.read_bytes() != b.read_bytes():
            out.append(f"{n}: bytes differ")
    return out, len(fa & fb)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(__doc__.split("\n\n")[1])
        return 2
    problems, n = compare_dirs(Path(argv[0]), Path(argv[1]))
    for p in problems:
        print(p)
    print(f"{n} files compared: {'the same' if not problems else f'{len(problems)} difference(s)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
