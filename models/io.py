"""Reading and writing datamodels: FITS with an embedded ASDF tree, or plain ASDF."""

from __future__ import annotations

import contextlib
import contextvars
import io
import math
import threading
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..errors import InputFileError, ModelValidationError
from ._asdf_write import fast_write
from .base import (
    ASDF_EXTNAME,
    DataModel,
    _coerce_for,
    _is_structural,
    _load_asdf_tree,
    _native,
    _read_image,
    _strip_links,
    image_shape,
)
from .meta import get_path

BLOCK = 2880
_CHUNK_BYTES = 256 << 10  # an image is written this much at a time: its big-endian copy (and a DQ's offset one)
_EXTENSIONS_READY = False


def load_asdf_extensions() -> None:
    """Let asdf read its extension manifests (once a process) with libyaml's parser when pyyaml has it.

    asdf parses its ~45 manifests with pyyaml's pure-Python ``safe_load`` the first time a file is
    read or written (about 0.35 s of a 0.7 s first read); libyaml's ``CSafeLoader`` gives the same
    Python objects for them in a tenth of the time.  Only the parsing of that first load changes.
    """
    global _EXTENSIONS_READY
    if _EXTENSIONS_READY:
        return
    import asdf

    from ._asdf_write import cache_parsed_schemas

    cache_parsed_schemas()  # each schema parsed once a process (models/_asdf_write.py)
    import yaml

    try:
        from asdf.extension import _manifest
    except ImportError:  # another asdf layout: its own loader as is
        _manifest = None
    if _manifest is not None and getattr(yaml, "__with_libyaml__", False) and getattr(_manifest, "yaml", None) is yaml:
        class _CYaml:
            @staticmethod
            def safe_load(stream):
                return yaml.load(stream, Loader=yaml.CSafeLoader)  # noqa: S506 - a safe loader

        _manifest.yaml = _CYaml
        try:
            asdf.get_config().extensions
        finally:
            _manifest.yaml = yaml
    # loaded on the process-wide configuration, which every asdf.config_context() copies: a context
    # copied from a configuration without them lists and loads them again for itself (~0.06 s each)
    asdf.get_config().extensions
    _EXTENSIONS_READY = True


_conf_lock = threading.Lock()
_conf_depth = 0
_conf_items: dict = {}


@contextlib.contextmanager
def fits_config_read_once():
    """Inside, astropy.io.fits's configuration items (``conf.strip_header_whitespace``,
    ``conf.enable_record_valued_keyword_cards``, ...) are read once, on entry, instead of at each use.

    astropy reads a configuration item from its configuration object at every access (about 3 us),
    and its header cards look one up for each value, comment and keyword they format or parse:
    some 260,000 lookups for the products of 20 MOS sources, a second of CPU.  Inside, each item of
    ``fits.Conf`` is a plain class attribute holding the value the item had on entry, so that every
    card sees the values it would have seen (nothing in a run sets them); the items are put back
    when the outermost block ends.  Process-wide (other threads see the same values), reentrant and
    counted, for the worker threads of one run.  ``conf.set_temp`` and ``conf.reload`` cannot be
    used inside."""
    global _conf_depth
    from astropy.config import ConfigItem

    cls = type(fits.conf)
    with _conf_lock:
        if _conf_depth == 0:
            for name, item in list(vars(cls).items()):
                if isinstance(item, ConfigItem):
                    _conf_items[name] = item
                    setattr(cls, name, item())
        _conf_depth += 1
    try:
        yield
    finally:
        with _conf_lock:
            _conf_depth -= 1
            if _conf_depth == 0:
                for name, item in _conf_items.items():
                    setattr(cls, name, item)
                _conf_items.clear()


def check_readable(path: Path) -> None:
    if not path.exists():
        raise InputFileError(path, "no such file")
    if path.is_dir():
        raise InputFileError(path, "is a directory, not a file")
    if path.stat().st_size == 0:
        raise InputFileError(path, "file is empty")


def _open_fits(path: Path) -> fits.HDUList:
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", fits.verify.VerifyWarning)
            warnings.filterwarnings("ignore", message=".*non-standard.*")
            hdul = fits.open(path, memmap=False, lazy_load_hdus=False, do_not_scale_image_data=True)
    except Exception as exc:  # noqa: BLE001
        raise InputFileError(path, f"not a readable FITS file ({_short(exc)})") from None
    if len(hdul) == 0:
        raise InputFileError(path, "not a readable FITS file (no HDUs)")
    return hdul


def _short(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return msg[0] if msg else type(exc).__name__


@contextlib.contextmanager
def without_schema_pass():
    """Files read inside, in this thread, skip asdf's validation of their metadata tree against the
    schemas on read (the tree read is the same; the model's own checks still run).  asdf's extensions
    are loaded first into its process-wide configuration, which the context's copy of it then shares."""
    import asdf

    load_asdf_extensions()
    with asdf.config_context() as cfg:
        cfg.validate_on_read = False
        yield


def read_into(model: DataModel, path: Path, only: set[str] | None = None, rows: tuple[int, int] | None = None) -> None:
    """Read ``path`` into ``model``; with ``only``, FITS arrays not named there are not read (nor required);
    with ``rows`` = (y0, y1), see :func:`_row_window`."""
    check_readable(path)
    model._path = str(path)
    if path.suffix.lower() == ".asdf":
        _read_asdf(model, path)
    else:
        _read_fits(model, path, only, rows)
    if model.meta.model_type is None:
        model.meta.model_type = model.model_type or type(model).__name__
    model.validate(path, skipped=() if only is None else {s.name for s in type(model).arrays if s.name not in only})


def read_asdf_hdu(hdu, path) -> dict:
    """The metadata tree of a file's ``ASDF`` extension (a one-row table, or raw bytes)."""
    load_asdf_extensions()
    try:
        data = hdu.data
        if isinstance(data, fits.FITS_rec) or getattr(data, "dtype", None) is not None and data.dtype.names:
            data = data["ASDF_METADATA"][0]
        return _load_asdf_tree(data, path)
    except InputFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to read it is a bad file
        raise InputFileError(path, f"cannot read the ASDF extension ({_short(exc)})") from None


def _row_window(cls, hdul, only, rows):
    """``rows`` when every image array to be read has two or more axes and those rows: the arrays are
    then read as those rows alone (``model._rows`` says so); else None, and the arrays are read whole."""
    if rows is None:
        return None
    y0, y1 = int(rows[0]), int(rows[1])
    for i, hdu in enumerate(hdul[1:], start=1):
        spec = cls.spec_by_extname(hdu.name or f"HDU{i}")
        if spec is None or spec.table or (only is not None and spec.name not in only):
            continue
        shape = image_shape(hdu.header)
        if shape and not (len(shape) >= 2 and 0 <= y0 < y1 <= shape[-2]):
            return None
    return y0, y1


def _read_fits(model: DataModel, path: Path, only: set[str] | None = None, rows: tuple[int, int] | None = None) -> None:
    hdul = _open_fits(path)
    cls = type(model)
    header_values = {}
    tree: dict = {}
    window = _row_window(cls, hdul, only, rows)
    model._rows = window
    with hdul, open(path, "rb") as raw:
        names_seen: set[str] = set()
        for i, hdu in enumerate(hdul):
            name = "PRIMARY" if i == 0 else (hdu.name or f"HDU{i}")
            hdr = hdu.header
            if name == ASDF_EXTNAME:
                model._asdf_read = True  # written back even by models that do not write one of their own
                tree = read_asdf_hdu(hdu, path)
                continue
            model._hdu_order.append(name)
            if name in names_seen:
                # a second extension of the same name (EXTVER>1): keep verbatim
                model._extra_hdus.append(_detached(hdu, path))
                continue
            names_seen.add(name)
            model._headers[name] = _clean_header(hdr)
            if i == 0 and ("CHECKSUM" in hdr or "DATASUM" in hdr):
                model._checksum = True
            spec = cls.spec_by_extname(name)
            if spec is None or i == 0:
                if i > 0:
                    model._extra_hdus.append(_detached(hdu, path))
                continue
            if only is not None and spec.name not in only:
                continue  # not wanted by the caller: neither read nor kept
            if spec.table:
                if not isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)):
                    raise ModelValidationError(path, f"extension {name} should be a table, found an image")
                try:
                    data = hdu.data
                except Exception as exc:  # noqa: BLE001
                    raise InputFileError(path, f"extension {name} cannot be read ({_short(exc)})") from None
                model._arrays[spec.name] = data if data is not None else np.zeros(0)
            else:
                if not isinstance(hdu, (fits.ImageHDU, fits.PrimaryHDU)):
                    raise ModelValidationError(path, f"extension {name} should be an image, found a table")
                # where the data start, from the HDU (HDUList.fileinfo re-serialises every header
                # before it at each call: quadratic in the number of extensions)
                arr = _read_image(raw, {"datLoc": hdu._data_offset}, hdr, path, window)
                if arr is not None:
                    model._arrays[spec.name] = arr
        for fpath, key, hduname, ann in cls.keyword_fields():
            h = model._headers.get(hduname)
            if h is not None and key in h:
                v = h[key]
                if isinstance(v, fits.card.Undefined):
                    continue
                header_values[fpath] = _coerce_for(ann, v)
            elif key in cls.keyword_defaults and get_path_tree(tree.get("meta"), fpath) is None:
                header_values[fpath] = _coerce_for(ann, cls.keyword_defaults[key])
    handle = tree.pop("__asdf_handle__", None)
    tree = _strip_links(tree)
    model._asdf_handle = handle
    meta_tree = tree.pop("meta", {}) or {}
    for spec in cls.arrays:
        tree.pop(spec.name, None)
    tree.pop("extra_fits", None)
    model._asdf_extra = tree
    model.meta_from_tree(meta_tree, header_values, path)


def get_path_tree(tree, path):
    """The value at ``path`` in a plain metadata tree, or None."""
    for p in path:
        if not isinstance(tree, dict):
            return None
        tree = tree.get(p)
    return tree


def _detached(hdu, path):
    """A copy of an HDU whose data is in memory, independent of the open file."""
    try:
        data = hdu.data
    except Exception as exc:  # noqa: BLE001
        raise InputFileError(path, f"extension {hdu.name} cannot be read ({_short(exc)})") from None
    if isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)):
        new = type(hdu)(data=data, header=hdu.header.copy(), name=hdu.name)
    elif isinstance(hdu, fits.ImageHDU):
        # scaling was not applied when opening: keep the raw stored values and header
        new = fits.ImageHDU(data=None if data is None else np.array(data), header=hdu.header.copy(), do_not_scale_image_data=True)
    else:
        new = hdu.copy()
    return new


def _clean_header(hdr: fits.Header) -> fits.Header:
    out = fits.Header()
    for card in hdr.cards:
        if _is_structural(card.keyword):
            continue
        out.append(card, end=True)
    return out


def _read_asdf(model: DataModel, path: Path) -> None:
    import asdf

    load_asdf_extensions()
    try:
        with asdf.open(path, lazy_load=False, memmap=False, ignore_unrecognized_tag=True, ignore_missing_extensions=True) as af:
            tree = {k: v for k, v in af.tree.items() if k not in ("asdf_library", "history")}
            cls = type(model)
            for spec in cls.arrays:
                if spec.name in tree:
                    model._arrays[spec.name] = np.array(tree.pop(spec.name))
            meta_tree = tree.pop("meta", {}) or {}
            model._asdf_extra = tree
    except InputFileError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InputFileError(path, f"not a readable ASDF file ({_short(exc)})") from None
    defaults = {fpath: _coerce_for(ann, cls.keyword_defaults[key]) for fpath, key, _h, ann in cls.keyword_fields()
                if key in cls.keyword_defaults and get_path_tree(meta_tree, fpath) is None}
    model.meta_from_tree(meta_tree, defaults, path)


# ---------------------------------------------------------------------------
# writing


_BITPIX = {
    "uint8": (8, None), "int16": (16, None), "uint16": (16, 1 << 15), "int32": (32, None),
    "uint32": (32, 1 << 31), "int64": (64, None), "uint64": (64, 1 << 63),
    "float32": (-32, None), "float64": (-64, None),
}


def _image_header(extname: str | None, arr: np.ndarray | None, cards: fits.Header | None, primary: bool) -> fits.Header:
    h = fits.Header()
    if primary:
        h["SIMPLE"] = True
    else:
        h["XTENSION"] = "IMAGE"
    if arr is None:
        h["BITPIX"] = 8
        h["NAXIS"] = 0
    else:
        bitpix, bzero = _BITPIX[arr.dtype.newbyteorder("=").name]
        h["BITPIX"] = bitpix
        h["NAXIS"] = arr.ndim
        for i, n in enumerate(reversed(arr.shape), start=1):
            h[f"NAXIS{i}"] = n
    if primary:
        h["EXTEND"] = True
    else:
        h["PCOUNT"] = 0
        h["GCOUNT"] = 1
    if arr is not None and bzero is not None:
        h["BSCALE"] = 1
        h["BZERO"] = bzero
    if extname and not primary:
        h["EXTNAME"] = extname
        # numbered as stdatamodels numbers every named extension: 1, or a slit's number
        h["EXTVER"] = int(cards.get("EXTVER", 1)) if cards is not None else 1
    if cards is not None:
        for card in cards.cards:
            if not _is_structural(card.keyword) and card.keyword != "EXTVER":
                h.append(card, end=True)
    return h


def _write_image_data(f, arr: np.ndarray) -> None:
    name = arr.dtype.newbyteorder("=").name
    bitpix, bzero = _BITPIX[name]
    flat = arr.reshape(-1) if arr.flags.c_contiguous else None
    n = arr.size
    step = max(1, _CHUNK_BYTES // arr.dtype.itemsize)
    written = 0
    for start in range(0, n, step):
        if flat is not None:
            chunk = flat[start : start + step]
        else:
            chunk = np.ascontiguousarray(arr).reshape(-1)[start : start + step]
        if bzero is not None:
            signed = {16: np.int16, 32: np.int32, 64: np.int64}[bitpix]
            chunk = (chunk ^ chunk.dtype.type(bzero)).view(signed)
        out = chunk.astype(chunk.dtype.newbyteorder(">"), copy=True) if chunk.dtype.byteorder != ">" else chunk
        f.write(out.tobytes() if not out.flags.c_contiguous else memoryview(out).cast("B"))
        written += out.nbytes
    pad = (-written) % BLOCK
    if pad:
        f.write(b"\0" * pad)


class DeferredHdu:
    """An extension made only when it is written (``make()``), and let go once written: a model
    with many large tables holds one HDU copy of one table at a time while it is saved.  With
    ``stream`` (a function of the open file), the extension writes itself instead, its bytes
    never held whole."""

    __slots__ = ("name", "make", "stream")

    def __init__(self, name: str, make, stream=None):
        self.name, self.make, self.stream = name, make, stream


def _write_hdu(f, hdu) -> None:
    if isinstance(hdu, DeferredHdu) and hdu.stream is not None:
        hdu.stream(f)
    else:
        f.write(_hdu_bytes(hdu))


_STREAM_ROWS_BYTES = 8 << 20  # rows written per chunk by write_table_rows


def write_table_rows(f, header_hdu: fits.BinTableHDU, table: np.ndarray) -> bool:
    """A binary table extension written from ``table`` (a structured array of numbers and byte
    strings), its header ``header_hdu``'s (the same columns, no rows) with the row count set, its
    rows converted to FITS (big-endian, unsigned integers offset as TZERO says) a chunk at a
    time: the bytes astropy writes, without astropy's copies of the whole table.  False (nothing
    written) for a table with other kinds of columns."""
    names = table.dtype.names
    out_types = []
    for name in names:
        base, sub = table.dtype[name].base, table.dtype[name].shape
        if base.kind not in "fiuS":
            return False
        code = base.newbyteorder("=").str[1:]
        target = np.dtype(">i" + code[1:]) if base.kind == "u" and code != "u1" else base.newbyteorder(">")
        out_types.append((name, target, sub))
    raw = _hdu_bytes(header_hdu)
    header = fits.Header.fromstring(bytes(raw).decode("ascii"))
    header["NAXIS2"] = len(table)
    f.write(header.tostring().encode("ascii"))
    out_dtype = np.dtype(out_types)
    step = max(1, _STREAM_ROWS_BYTES // max(out_dtype.itemsize, 1))
    written = 0
    for start in range(0, len(table), step):
        chunk = table[start:start + step]
        out = np.empty(len(chunk), dtype=out_dtype)
        for name in names:
            v = chunk[name]
            if v.dtype.kind == "u" and v.dtype.itemsize > 1:
                v = (v ^ v.dtype.type(1 << (8 * v.dtype.itemsize - 1))).view(v.dtype.str.replace("u", "i"))
            out[name] = v
        f.write(memoryview(out).cast("B"))
        written += out.nbytes
    pad = (-written) % BLOCK
    if pad:
        f.write(b"\0" * pad)
    return True


def _hdu_bytes(hdu) -> memoryview:
    """Serialise one non-primary HDU through astropy (tables and kept extensions): a view of the
    serialised bytes after the dummy primary block, not a copy of them."""
    if isinstance(hdu, DeferredHdu):
        hdu = hdu.make()
    bio = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(bio, output_verify="silentfix")
    return bio.getbuffer()[BLOCK:]


def _fits_value(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (str, int, float, bool)):
        return v
    return None


def keep_card_type(header: fits.Header, key: str, value):
    """``value``, as an int when the card it replaces holds that same number as an int.

    A float-typed field read from ``FOCUSPOS = 3`` must not come back as ``3.0``."""
    old = header.get(key) if key in header else None
    if isinstance(value, float) and isinstance(old, int) and not isinstance(old, bool) and value == old:
        return old
    return value


_RELEASED: contextvars.ContextVar[frozenset] = contextvars.ContextVar("webbflow_released_once_written",
                                                                   default=frozenset())


@contextlib.contextmanager
def released_once_written(names):
    """Inside, :func:`write_fits` lets each image array named in ``names`` go (set to None on the
    model) as soon as its extension is written, so that the rest of the write (the other arrays,
    the ASDF extension's serialisation) does not sit on it.  For a caller that does not read those
    arrays again; the file written is the same."""
    token = _RELEASED.set(frozenset(names))
    try:
        yield
    finally:
        _RELEASED.reset(token)


def write_fits(model: DataModel, f) -> None:
    cls = type(model)
    # headers for every extension we will write, with modelled keywords applied
    headers = {k: h.copy() for k, h in model._headers.items()}
    headers.setdefault("PRIMARY", fits.Header())
    array_ext = [s for s in cls.arrays if s.name in model._arrays]
    for s in array_ext:
        headers.setdefault(s.extname, fits.Header())
    for path, key, hduname, _ann in cls.keyword_fields():
        h = headers.get(hduname)
        if h is None:
            continue
        raw = get_path(model.meta, path)
        v = _fits_value(raw)
        if v is None:
            if raw is None and key in h and key != "BUNIT":
                # the field was cleared: do not let a stale card from the input resurrect it
                del h[key]
            continue
        h[key] = keep_card_type(h, key, v)
    if hasattr(model, "_after_keywords"):  # a class whose own fields share a keyword with meta's
        model._after_keywords(headers)
    # order: as read; an array new to this model goes where the class declares it (jwst's order of
    # extensions), before the first present array that the class declares after it
    order = [n for n in model._hdu_order if n != "PRIMARY"]
    rank = {s.extname: i for i, s in enumerate(cls.arrays)}
    for s in array_ext:
        if s.extname in order:
            continue
        mine = rank[s.extname]
        at = next((k for k, n in enumerate(order) if rank.get(n, -1) > mine), len(order))
        order.insert(at, s.extname)
    extras = {}
    for hdu in model._extra_hdus:
        extras.setdefault(hdu.name, []).append(hdu)
    for n in extras:
        if n not in order:
            order.append(n)

    primary = _image_header(None, None, headers["PRIMARY"], primary=True)
    if getattr(model, "_checksum", False):
        # the original carried checksums: keep them, recomputed for the new header
        phdu = fits.PrimaryHDU(header=primary)
        phdu.add_checksum()
        primary = phdu.header
    f.write(primary.tostring().encode("ascii"))
    done_extra: dict[str, int] = {}
    for extname in order:
        spec = cls.spec_by_extname(extname)
        if spec is not None and spec.name in model._arrays:
            arr = model._arrays[spec.name]
            if spec.table:
                hdu = fits.BinTableHDU(data=arr, name=extname)
                hdu.header["EXTVER"] = 1
                ncol = len(hdu.columns)
                for card in headers.get(extname, fits.Header()).cards:
                    # a TDIMn past the table's columns is a plain keyword (jwst's s3d WCS-TABLE TDIM2)
                    k = card.keyword
                    past = k.startswith("TDIM") and k[4:].isdigit() and int(k[4:]) > ncol
                    if past or not _is_structural(card.keyword):
                        hdu.header.append(card, end=True)
                f.write(_hdu_bytes(hdu))
            else:
                arr = np.asarray(arr)
                if arr.dtype == bool:
                    arr = arr.astype(np.uint8)
                f.write(_image_header(extname, arr, headers.get(extname), primary=False).tostring().encode("ascii"))
                _write_image_data(f, arr)
                if spec.name in _RELEASED.get():
                    arr = None
                    setattr(model, spec.name, None)
            continue
        lst = extras.get(extname)
        if lst:
            k = done_extra.get(extname, 0)
            if k < len(lst):
                _write_hdu(f, lst[k])
                done_extra[extname] = k + 1
    # remaining duplicates of already-written names
    for name, lst in extras.items():
        for hdu in lst[done_extra.get(name, 0):]:
            _write_hdu(f, hdu)
    if getattr(cls, "asdf_extension", True) or getattr(model, "_asdf_read", False):
        f.write(_hdu_bytes(_asdf_hdu(model)))


def asdf_tree(model: DataModel, with_arrays: bool) -> dict:
    tree = dict(model._asdf_extra)
    tree["meta"] = _prune(model.meta.model_dump(exclude_none=True))
    if with_arrays:
        for name, arr in model._arrays.items():
            tree[name] = np.asarray(arr)
    return tree


def _prune(d):
    if isinstance(d, dict):
        out = {}
        for k, v in d.items():
            v = _prune(v)
            if isinstance(v, dict) and not v:
                continue
            out[k] = v
        return out
    return d


def _asdf_hdu(model: DataModel) -> fits.BinTableHDU:
    return _asdf_table_hdu(asdf_tree(model, with_arrays=False))


def _asdf_table_hdu(tree: dict) -> fits.BinTableHDU:
    """The ``ASDF`` extension holding ``tree`` (arrays stay in their FITS extensions)."""
    load_asdf_extensions()
    buf = io.BytesIO()
    fast_write(tree, buf)  # asdf's bytes, without its schema pass (models/_asdf_write.py)
    data = np.frombuffer(buf.getvalue(), dtype=np.uint8)[None, :]
    col = fits.Column(name="ASDF_METADATA", format=f"{data.shape[1]}B", array=data)
    return fits.BinTableHDU.from_columns([col], name=ASDF_EXTNAME)


def write_asdf(model: DataModel, f) -> None:
    load_asdf_extensions()
    fast_write(asdf_tree(model, with_arrays=True), f)


__all__ = ["read_into", "write_fits", "write_asdf", "asdf_tree", "check_readable", "_native"]
