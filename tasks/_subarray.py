"""Matching reference data to a science subarray, the way jwst does.

Reference files are usually full frame; a subarray exposure needs the region
of the reference arrays under its pixels.  The region follows from the
SUBSTRT1/2 and SUBSIZE1/2 keywords of both files (1-based detector
coordinates).  A reference file that already covers exactly the science
region is used as it is.

``ref_matches_sci(sci, ref)``, ``subarray_slices(sci, ref)`` and
``ref_region(sci, ref, *names)`` return views, not copies: callers that
modify the arrays they get (for example to replace NaNs) must copy first.
"""

from __future__ import annotations

import logging

import numpy as np

from ..models import dqflags

log = logging.getLogger("webbflow.steps")


class GeometryError(ValueError):
    """A reference (``ref`` set) or the science data (``ref`` None) cannot be placed on the detector.

    :func:`webbflow.tasks.base.run_step` turns it into a one-line
    ReferenceFileError naming the reftype and file (or an InputFileError).
    """

    def __init__(self, message: str, ref=None):
        super().__init__(message)
        self.ref = ref

# Full-frame sizes (rows, columns) in science orientation.
NIR_FULL = (2048, 2048)
MIRI_FULL = (1024, 1032)


def full_frame_shape(model) -> tuple[int, int]:
    name = str(model.meta.instrument.name or "").upper()
    return MIRI_FULL if name == "MIRI" else NIR_FULL


def is_subarray(model) -> bool:
    """True when the model's arrays are smaller than its instrument's full frame."""
    ny, nx = model.data.shape[-2:]
    fy, fx = full_frame_shape(model)
    return nx < fx or ny < fy


def _primary_shape(model) -> tuple[int, int]:
    """Frame shape of a model's primary array (``data``, ``dq`` for masks, ``coeffs`` for linearity)."""
    arr = getattr(model, type(model).arrays[0].name)
    return tuple(arr.shape[-2:])


def ref_geometry(ref) -> tuple[int, int, int, int]:
    """(xstart, ystart, xsize, ysize) of a reference file, 1-based, from its keywords and arrays.

    Missing keywords are taken as full frame when the arrays are full-frame
    sized (jwst does the same); otherwise the reference cannot be placed.
    """
    sub = ref.meta.subarray
    ny, nx = _primary_shape(ref)
    xstart, ystart, xsize, ysize = sub.xstart, sub.ystart, sub.xsize, sub.ysize
    if None in (xstart, ystart, xsize, ysize):
        fy, fx = full_frame_shape(ref)
        if (ny, nx) == (fy, fx):
            log.warning("Reference file has no subarray keywords; taking it as full frame")
            return 1, 1, fx, fy
        raise GeometryError(
            f"reference file {ref.meta.filename or ''} has no SUBSTRT/SUBSIZE keywords and is not full frame ({ny}x{nx})",
            ref,
        )
    if xstart < 1 or ystart < 1:
        raise GeometryError(f"reference file {ref.meta.filename or ''} has invalid subarray corner ({xstart}, {ystart})", ref)
    if xsize != nx:
        log.warning("Reference file array size does not match SUBSIZE1; using the array size")
        xsize = nx
    if ysize != ny and not (ysize == 2048 and ny == 3200):  # NIRSpec IRS2 references keep SUBSIZE2=2048
        log.warning("Reference file array size does not match SUBSIZE2; using the array size")
        ysize = ny
    return xstart, ystart, xsize, ysize


def sci_geometry(sci) -> tuple[int, int, int, int]:
    """(xstart, ystart, xsize, ysize) of a science model, 1-based."""
    sub = sci.meta.subarray
    xstart, ystart, xsize, ysize = sub.xstart, sub.ystart, sub.xsize, sub.ysize
    if None in (xstart, ystart, xsize, ysize):
        raise GeometryError("science data has no SUBSTRT1/2, SUBSIZE1/2 keywords: cannot place it on the detector")
    if xstart < 1 or ystart < 1:
        raise GeometryError(f"science data has invalid subarray corner ({xstart}, {ystart})")
    ny, nx = sci.data.shape[-2:]
    if xsize != nx:
        log.warning("Science array size does not match SUBSIZE1; using the array size")
        xsize = nx
    if ysize != ny and not (ysize == 2048 and ny == 3200):
        log.warning("Science array size does not match SUBSIZE2; using the array size")
        ysize = ny
    return xstart, ystart, xsize, ysize


def ref_matches_sci(sci, ref) -> bool:
    """Whether the reference covers exactly the science region."""
    return ref_geometry(ref) == sci_geometry(sci)


def subarray_slices(sci, ref) -> tuple[slice, slice]:
    """(row slice, column slice) of the reference arrays under the science pixels."""
    rx, ry, rnx, rny = ref_geometry(ref)
    sx, sy, _, _ = sci_geometry(sci)
    # use the actual science array size for the extent
    sny, snx = sci.data.shape[-2:]
    x0, y0 = sx - rx, sy - ry
    x1, y1 = x0 + snx, y0 + sny
    if x0 < 0 or y0 < 0 or x1 > rnx or y1 > rny:
        raise GeometryError(
            f"science subarray (SUBSTRT1={sx}, SUBSTRT2={sy}, {snx}x{sny}) does not lie inside the reference "
            f"(SUBSTRT1={rx}, SUBSTRT2={ry}, {rnx}x{rny})",
            ref,
        )
    return slice(y0, y1), slice(x0, x1)


def standard_dq(ref):
    """The reference's DQ array with its own bit definitions (DQ_DEF table) mapped to JWST's.

    Reference files may number their flags their own way and name them in a
    DQ_DEF table; stdatamodels translates them to the standard bits when it
    opens the file (its "dynamic DQ").  Names that are not JWST flags are
    dropped.  Without a DQ_DEF table the array is returned as it is.  The
    result is cached on the model.
    """
    dq = getattr(ref, "dq", None)
    if dq is None:
        return None
    cached = ref.__dict__.get("_webbflow_std_dq")
    if cached is not None and cached[0] is dq:
        return cached[1]
    table = ref.dq_def if (type(ref).spec("dq_def") is not None and ref.has("dq_def")) else None
    if table is None or getattr(table, "dtype", None) is None or table.dtype.names is None or len(table) == 0:
        return dq
    names = {n.upper(): n for n in table.dtype.names}
    out = np.zeros(dq.shape, dtype=dq.dtype)
    for value, name in zip(table[names["VALUE"]], table[names["NAME"]]):
        name = (name.decode() if isinstance(name, bytes) else str(name)).strip()
        std = dqflags.PIXEL.get(name)
        if std is None:
            log.warning("DQ_DEF flag %s is not a JWST DQ mnemonic; it is ignored", name)
            continue
        hit = (dq & dq.dtype.type(int(value))) != 0
        out[hit] |= dq.dtype.type(std)
    object.__setattr__(ref, "_webbflow_std_dq", (dq, out))
    return out


def ref_region(sci, ref, *names: str):
    """The named reference arrays cut to the science region (views), as a tuple (or one array).

    A declared array missing from the file is made with its default (as
    stdatamodels does, e.g. a zero DQ); one with no default comes back as None.
    """
    match = ref_matches_sci(sci, ref)
    ys, xs = (slice(None), slice(None)) if match else subarray_slices(sci, ref)
    if not match:
        log.info("Extracting %s reference subarray to match science data", type(ref).__name__)
    out = []
    for name in names:
        arr = standard_dq(ref) if name == "dq" else getattr(ref, name, None)
        if arr is None:
            out.append(None)
            continue
        arr = np.asarray(arr)
        out.append(arr[..., ys, xs] if not match else arr)
    return out[0] if len(out) == 1 else tuple(out)


def subarray_model(sci, ref):
    """A reference model of the same class whose image arrays are cut to the science region.

    Returns ``ref`` itself when it already matches.  The new model shares
    metadata values (copied) and holds views into the reference arrays; its
    ``dq`` has standard JWST bits (``standard_dq``).
    """
    if ref_matches_sci(sci, ref):
        return ref
    ys, xs = subarray_slices(sci, ref)
    log.info("Extracting %s reference subarray to match science data", type(ref).__name__)
    new = type(ref).__new__(type(ref))
    object.__setattr__(new, "_arrays", {})
    new.meta = ref.meta.model_copy(deep=True)
    new._headers = {k: h.copy() for k, h in ref._headers.items()}
    new._extra_hdus = list(ref._extra_hdus)
    new._hdu_order = list(ref._hdu_order)
    new._asdf_extra = dict(ref._asdf_extra)
    new._path = ref._path
    new._asdf_handle = ref._asdf_handle
    ny, nx = _primary_shape(ref)
    for name in ref.array_names():
        if name == "dq_def":
            continue  # dq below is already in standard bits
        arr = standard_dq(ref) if name == "dq" else ref._arrays[name]
        spec = type(ref).spec(name)
        if spec is not None and not spec.table and getattr(arr, "ndim", 0) >= 2 and tuple(arr.shape[-2:]) == (ny, nx):
            new._arrays[name] = arr[..., ys, xs]
        else:
            new._arrays[name] = arr
    sx, sy, _, _ = sci_geometry(sci)
    sny, snx = sci.data.shape[-2:]
    new.meta.subarray.xstart, new.meta.subarray.ystart = sx, sy
    new.meta.subarray.xsize, new.meta.subarray.ysize = snx, sny
    return new
