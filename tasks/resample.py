"""resample: drizzle calibrated images onto a common sky grid (jwst's ResampleStep, imaging).

The output grid (see :func:`._wcs.resampled_wcs`) is a TAN projection that
covers the union of the inputs' S_REGION footprints, with the first input's
pixel scale at its reference point times ``pixel_scale_ratio`` (or
``pixel_scale`` arcsec), oriented as the first input's detector
(``rotation=None``) or with its Y axis at ``rotation`` degrees east of north.
``output_wcs`` (an ASDF file with a ``wcs``), ``output_shape``, ``crpix`` and
``crval`` override it as in jwst.

Drizzling is stcal's :class:`stcal.resample.Resample` (the ``drizzle``
package's kernels) fed with our models:

- DQ: pixels flagged with anything but NON_SCIENCE are left out (jwst's
  ``good_bits="~DO_NOT_USE+NON_SCIENCE"``);
- weights: inverse read-noise variance (``weight_type="ivm"``) or exposure
  time (``"exptime"``);
- SCI in surface brightness (MJy/sr) is drizzled as is; VAR_RNOISE,
  VAR_POISSON and VAR_FLAT are drizzled as standard deviations and combined
  with the squared weights, and ERR is the square root of their sum
  (``enable_err``); CON holds the bit-packed context (which inputs fed each
  output pixel), WHT the summed weights.

The i2d product is an ImageModel carrying the first input's FITS metadata,
the output WCS (``meta.wcs`` and the linear FITS keywords in
meta.wcsinfo), the summed exposure times, the drizzle parameters
(meta.resample), PIXAR_SR/PIXAR_A2 of the output pixels and an S_REGION
combined from the inputs'.

``single=True`` (used by outlier detection) drizzles each exposure group
onto the common grid separately and returns a list.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import functools
import logging
from typing import Literal

import numpy as np
from pydantic import Field

from ..errors import ParameterError, UnsupportedModeError
from ..models import dqflags
from . import _wcs
from .base import StepParams, step

log = logging.getLogger("webbflow.steps.resample")

# Use every DQ flag except DO_NOT_USE and NON_SCIENCE (jwst's GOOD_BITS).
GOOD_BITS = "~DO_NOT_USE+NON_SCIENCE"

RESAMPLE_EXP_TYPES = {"MIR_IMAGE", "NRC_IMAGE", "NIS_IMAGE", "FGS_IMAGE"}


class ResampleParams(StepParams):
    pixfrac: float = Field(1.0, ge=0.0, le=1.0)  # pixel shrinkage factor
    kernel: Literal["square", "gaussian", "point", "turbo", "lanczos2", "lanczos3"] = "square"  # flux distribution kernel
    fillval: str = "NAN"  # output value of pixels with no weight
    weight_type: Literal["ivm", "exptime"] | None = "ivm"  # input image weighting
    output_shape: list[int] | None = None  # [x, y] size of the output
    crpix: list[float] | None = None  # 0-based output pixel of the reference point
    crval: list[float] | None = None  # (RA, Dec) of the reference point
    rotation: float | None = None  # output Y axis position angle east of north; None: the detector's orientation
    pixel_scale_ratio: float = 1.0  # output / input pixel scale
    pixel_scale: float | None = None  # absolute output pixel scale, arcsec
    output_wcs: str = ""  # ASDF file holding a custom output WCS ("wcs"); overrides the WCS parameters
    single: bool = False  # resample each exposure group to its own output on the common grid
    blendheaders: bool = True  # blend the inputs' metadata (several inputs)
    in_memory: bool = True  # keep images in memory
    enable_ctx: bool = True  # compute the context (CON) array
    enable_err: bool = True  # compute ERR from the resampled variances
    report_var: bool = True  # write the resampled variance arrays
    propagate_dq: bool = False  # OR the input DQ of contributing pixels into an output DQ
    pixmap_stepsize: float = 1.0  # pixel map evaluated every this many pixels (interpolated between)
    pixmap_order: int = 1  # spline order of that interpolation (1 or 3)

    def model_post_init(self, _ctx) -> None:
        for name, minimum in (("output_shape", 1), ("crpix", None), ("crval", None)):
            v = getattr(self, name)
            if v is None:
                continue
            if len(v) != 2:
                raise ParameterError(f"step resample: {name!r} must have exactly two values (got {v})")
            if minimum is not None and min(v) < minimum:
                raise ParameterError(f"step resample: {name!r} values must be at least {minimum} (got {v})")
        if self.pixmap_order not in (1, 3):
            raise ParameterError(f"step resample: 'pixmap_order' must be 1 or 3 (got {self.pixmap_order})")


# ---------------------------------------------------------------------------
# inputs


def group_id(model) -> str:
    """jwst's exposure group id: program, observation, visit, visit group, sequence, activity, exposure."""
    o = model.meta.observation
    gid = getattr(model.meta, "group_id", None)
    if gid:
        return str(gid)
    return (
        f"jw{o.program_number}{o.observation_number}{o.visit_number}"
        f"_{o.visit_group}{o.sequence_id}{o.activity_id}_{o.exposure_number}"
    )


def _nan_flag_consistent(model):
    """``model``, or a copy of it whose NaNs and DO_NOT_USE flags agree (the input is not modified)."""
    from .flat_field import match_nans_and_flags

    shape = model.data.shape
    arrays = [getattr(model, n) for n in ("data", "err", "var_rnoise", "var_poisson", "var_flat") if model.has(n)]
    arrays = [a for a in arrays if a.shape == shape]
    dq = model.dq if model.has("dq") and model.dq.shape == shape else None
    # checked a block of rows at a time (each pixel's answer is its own): no full-frame masks
    rows = max(1, _WEIGHT_BLOCK // max(1, shape[-1])) if len(shape) > 1 else max(1, shape[0])
    consistent = True
    for r0 in range(0, shape[0], rows):
        b = slice(r0, r0 + rows)
        invalid = np.zeros((min(shape[0], r0 + rows) - r0,) + tuple(shape[1:]), dtype=bool)
        for a in arrays:
            invalid |= ~np.isfinite(a[b])
        if dq is not None:
            invalid |= (dq[b] & np.uint32(dqflags.DO_NOT_USE)) != 0
        consistent = all(np.isnan(a[b][invalid]).all() for a in arrays)
        if dq is not None:
            consistent &= bool(((dq[b][invalid] & np.uint32(dqflags.DO_NOT_USE)) != 0).all())
        if not consistent:
            break
    if consistent:
        return model
    fixed = model.copy()
    match_nans_and_flags(fixed)
    return fixed


def _as_dict(model, weight_type, enable_var: bool, compute_err) -> dict:
    """What stcal's Resample reads from an input image."""
    ex = model.meta.exposure
    get = lambda n: getattr(model, n) if model.has(n) else None  # noqa: E731
    d = {
        "data": model.data,
        "dq": get("dq"),
        "filename": model.meta.filename,
        "group_id": group_id(model),
        "wcs": model.meta.wcs,
        "wcsinfo": model.meta.wcsinfo,
        "bunit_data": model.meta.bunit_data,
        "exposure_time": ex.exposure_time,
        "start_time": ex.start_time,
        "end_time": ex.end_time,
        "duration": ex.duration,
        "measurement_time": ex.measurement_time,
        "pixelarea_steradians": model.meta.photometry.pixelarea_steradians,
        "pixelarea_arcsecsq": model.meta.photometry.pixelarea_arcsecsq,
        "level": model.meta.background.level,
        "subtracted": model.meta.background.subtracted,
        "instrument_name": model.meta.instrument.name,
        "exposure_type": ex.type,
    }
    if enable_var:
        for n in ("var_flat", "var_rnoise", "var_poisson"):
            d[n] = get(n)
    elif weight_type is not None and weight_type.startswith("ivm"):
        d["var_rnoise"] = get("var_rnoise")
    if compute_err == "driz_err":
        d["err"] = get("err")
    return d


def load_custom_wcs(path: str, output_shape=None) -> dict | None:
    """A custom output WCS from an ASDF file: ``{"wcs", "pixel_area", "pixel_scale"}`` (arcsec units)."""
    if not path:
        return None
    import asdf

    with asdf.open(path) as af:
        wcs = copy.deepcopy(af.tree["wcs"])
        area = af.tree.get("pixel_area")
        scale = af.tree.get("pixel_scale")
        if scale is None and area is not None:
            scale = float(np.sqrt(area))
        pixel_shape = af.tree.get("pixel_shape")
        array_shape = af.tree.get("array_shape", None if pixel_shape is None else pixel_shape[::-1])
    if output_shape is not None:
        wcs.array_shape = tuple(output_shape[::-1])
    elif wcs.array_shape is None:
        if array_shape is not None:
            wcs.array_shape = tuple(array_shape)
        elif getattr(wcs, "bounding_box", None) is not None:
            wcs.array_shape = tuple(int(ax[1] + 0.5) for ax in wcs.bounding_box.bounding_box(order="C"))
        else:
            raise ParameterError(
                "step resample: 'output_shape' is needed when the custom WCS has no array_shape, pixel_shape or bounding_box"
            )
    return {"wcs": wcs, "pixel_area": area, "pixel_scale": scale}


def output_grid(inputs, params: ResampleParams) -> dict:
    """The output WCS (``{"wcs", "pixel_scale" (arcsec), "pixel_scale_ratio"}``) for these inputs."""
    custom = load_custom_wcs(params.output_wcs, params.output_shape)
    if custom is not None:
        if params.output_shape is None and custom["wcs"].array_shape is None:
            raise ParameterError("step resample: the custom output WCS needs an array shape")
        return custom
    first = inputs[0]
    w = first.meta.wcsinfo
    wcsinfo = {"ra_ref": w.ra_ref, "dec_ref": w.dec_ref, "roll_ref": w.roll_ref, "v3yangle": w.v3yangle, "vparity": w.vparity}
    missing = [k for k, v in wcsinfo.items() if v is None]
    if missing:
        from ..errors import InputFileError

        raise InputFileError(first.meta.filename or "<in memory>", f"has no wcsinfo {', '.join(missing)}: cannot choose the output grid")
    s_regions = []
    for m in inputs:
        s_regions.extend(_wcs.split_s_regions(m.meta.wcsinfo.s_region))
    shape = None if params.output_shape is None else tuple(params.output_shape[::-1])
    scale = None if params.pixel_scale is None else params.pixel_scale / 3600.0
    wcs, _scale_in, scale_out, ratio = _wcs.resampled_wcs(
        first.meta.wcs, wcsinfo, first.data.shape, s_regions,
        pixel_scale_ratio=params.pixel_scale_ratio, pixel_scale=scale, output_shape=shape,
        rotation=params.rotation, crpix=params.crpix, crval=params.crval,
    )
    return {"wcs": wcs, "pixel_scale": 3600.0 * scale_out, "pixel_scale_ratio": ratio}


# ---------------------------------------------------------------------------
# computations shared by the steps of one product
#
# outlier_detection drizzles every exposure onto the grid resample then drizzles them onto again:
# the same output grid and the same pixel maps (input pixel -> output pixel, one WCS evaluation
# per pixel).  Within :func:`_sharing` (a model library's ``shared`` dictionary), the grid and
# the maps are computed once and reused.  Keys hold the WCS objects themselves and are compared
# by identity: a member whose WCS changed (tweakreg, or read again from disk) has a new object,
# so nothing stale is reused, and the answers are those of computing them again.

_SHARED: contextvars.ContextVar = contextvars.ContextVar("webbflow_resample_shared", default=None)
_GRID_FIELDS = ("output_wcs", "output_shape", "pixel_scale_ratio", "pixel_scale", "rotation", "crpix", "crval")


def shared_store(library) -> dict | None:
    """The library's store of shared computations, when its members are all kept in memory (else
    None: members read again from disk have new WCS objects, and their maps would only pile up)."""
    return library.shared if all(library.in_memory(i) for i in range(len(library))) else None


@contextlib.contextmanager
def _sharing(store: dict | None):
    token = _SHARED.set(store)
    try:
        yield
    finally:
        _SHARED.reset(token)


def _same(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(x is y if hasattr(x, "forward_transform") else x == y for x, y in zip(a, b))


def _lookup(kind: str, key: tuple, compute):
    store = _SHARED.get()
    if store is None:
        return compute()
    entries = store.setdefault(kind, [])
    for k, v in entries:
        if _same(k, key):
            return v
    v = compute()
    entries.append((key, v))
    return v


class _Ref(int):
    """A WCS object in a shared-store key sent from a forked child: its ``id``, the same in the
    parent, which had the object at that address when it forked."""


def shared_entries_since(marks: dict) -> list:
    """What the current store gained since ``marks`` (``{kind: number of entries}``), in a form a
    forked child can send to its parent: WCS objects in the keys replaced by :class:`_Ref`."""
    store = _SHARED.get()
    if store is None:
        return []
    return [(kind, tuple(_Ref(id(x)) if hasattr(x, "forward_transform") else x for x in key), value)
            for kind, entries in store.items() for key, value in entries[marks.get(kind, 0):]]


def take_shared_entries(entries: list, objects) -> None:
    """Add entries from :func:`shared_entries_since` (sent by a forked child) to the current store,
    their keys holding again the WCS objects among ``objects`` they stand for; an entry whose object
    is not among them, or already held, is left out (it would be computed again if needed)."""
    store = _SHARED.get()
    if store is None:
        return
    table = {id(o): o for o in objects if o is not None}
    for kind, key, value in entries:
        if any(isinstance(x, _Ref) and int(x) not in table for x in key):
            continue
        key = tuple(table[int(x)] if isinstance(x, _Ref) else x for x in key)
        held = store.setdefault(kind, [])
        if not any(_same(k, key) for k, _v in held):
            held.append((key, value))


def _shared_grid(inputs, params: ResampleParams) -> dict:
    key = tuple(m.meta.wcs for m in inputs) + tuple(str(m.meta.wcsinfo.s_region) for m in inputs) + tuple(
        tuple(m.data.shape) for m in inputs) + tuple(repr(getattr(params, f)) for f in _GRID_FIELDS)
    return _lookup("grid", key, lambda: output_grid(inputs, params))


# pixels per block of a pixel map: each block's intermediate arrays (a dozen float64 arrays of
# the WCS's steps) stay in the CPU's caches; much smaller blocks pay the WCS call's fixed cost
_PIXMAP_BLOCK = 65536


def _bbox_tuple(wcs):
    """``wcs.bounding_box`` as stcal's ``calc_pixmap`` reads it (F order), or None."""
    bbox = getattr(wcs, "bounding_box", None)
    if bbox is None:
        return None
    try:
        return bbox.bounding_box(order="F")
    except AttributeError:
        return tuple(bbox)


def _frame_axes(frame):
    return getattr(frame, "naxes", None) if frame is not None else None


def _plain_box(transform):
    """``(xlo, xhi, ylo, yhi)`` of a 2-input transform's bounding box, when astropy would only compare
    its two inputs with these limits (no ignored inputs, no compound box); else None."""
    from astropy.modeling.bounding_box import ModelBoundingBox

    try:
        bbox = transform.bounding_box
    except NotImplementedError:
        return None
    if type(bbox) is not ModelBoundingBox or bbox.ignored or sorted(bbox.intervals) != [0, 1]:
        return None
    (xlo, xhi), (ylo, yhi) = bbox.intervals[0], bbox.intervals[1]
    return float(xlo), float(xhi), float(ylo), float(yhi)


def _block_evaluator(wcs_from, wcs_to):
    """``(x, y) -> (x', y')``: ``wcs_to.world_to_pixel_values(*wcs_from.pixel_to_world_values(x, y))``.

    gwcs builds each WCS's compound transform anew at every call (its pipeline's steps chained,
    and for the inverse the chain built twice and inverted: about 8 ms, paid once per block).
    Where that is all gwcs would do for these inputs (plain float arrays, transforms without
    units, 2-D frames, no bounding box on the target WCS), the two transforms are built once
    and evaluated as gwcs evaluates them: with the source's bounding box, NaN outside it.
    Otherwise every block goes through gwcs' own calls."""

    def through_gwcs(x, y):
        return wcs_to.world_to_pixel_values(*wcs_from.pixel_to_world_values(x, y))

    try:
        if (wcs_to.bounding_box is not None or _frame_axes(wcs_from.output_frame) != 2
                or _frame_axes(wcs_to.input_frame) != 2 or _frame_axes(wcs_to.output_frame) != 2):
            return through_gwcs
        forward = wcs_from.forward_transform
        backward = wcs_to.backward_transform
        if forward is None or forward.uses_quantity or backward.uses_quantity:
            return through_gwcs
    except (NotImplementedError, AttributeError):
        return through_gwcs

    box = _plain_box(forward)

    def once_built(x, y):
        if box is not None and box[0] <= x.min() and x.max() <= box[1] and box[2] <= y.min() and y.max() <= box[3]:
            # every pixel of the block inside the bounding box: what astropy would evaluate (all of
            # them), without its selection of the pixels inside and their copies
            world = forward(x, y)
        else:
            world = forward(x, y, with_bounding_box=True, fill_value=np.nan)
        return backward(*world, with_bounding_box=True, fill_value=np.nan)

    return once_built


def _pixel_map(wcs_from, wcs_to, shape=None, disable_bbox="to", stepsize=1, order=1, window=None):
    """stcal's ``calc_pixmap`` (same arguments, same answer bit for bit, same bounding boxes
    afterwards), with the full-resolution map evaluated in blocks of rows.

    Every pixel's coordinates go through the same element-wise WCS evaluation whatever the
    blocks, so the map is the one a single evaluation of the whole grid gives; evaluating it a
    block at a time keeps the intermediate arrays in cache (about half the CPU time of one
    evaluation of a 512x512 or 1024x1024 grid).  Interpolated maps (``stepsize`` > 1) and
    shapes stcal would find from the bounding box are left to stcal.

    ``window`` ``(r0, r1, c0, c1)``: only the map of those rows and columns, the same values
    (each pixel's evaluation is its own)."""
    from stcal.resample import utils

    from ._wcs_cache import evaluations_not_kept

    if stepsize != 1 or shape is None or len(shape) != 2 or disable_bbox not in ("to", "from", "both", "none"):
        return utils.calc_pixmap(wcs_from, wcs_to, shape, disable_bbox=disable_bbox, stepsize=stepsize, order=order)
    bbox_from, bbox_to = _bbox_tuple(wcs_from), _bbox_tuple(wcs_to)
    if disable_bbox in ("from", "both") and bbox_from is not None:
        wcs_from.bounding_box = None
    if disable_bbox in ("to", "both") and bbox_to is not None:
        wcs_to.bounding_box = None
    wr0, wr1, wc0, wc1 = window or (0, int(shape[0]), 0, int(shape[1]))
    ny, nx = wr1 - wr0, wc1 - wc0
    rows = max(1, _PIXMAP_BLOCK // max(nx, 1))
    pixmap = None
    # a map of several blocks: its blocks' evaluations are not kept by the WCS cache (tasks/_wcs_cache.py)
    scope = evaluations_not_kept() if ny > rows else contextlib.nullcontext()
    try:
        evaluate = _block_evaluator(wcs_from, wcs_to)
        with scope:
            for r0 in range(0, ny, rows):
                r1 = min(ny, r0 + rows)
                y, x = np.indices((r1 - r0, nx), dtype=np.float64)
                y += r0 + wr0
                if wc0:
                    x += wc0
                px, py = evaluate(x, y)
                px, py = np.asarray(px), np.asarray(py)
                if pixmap is None:
                    pixmap = np.empty((ny, nx, 2), dtype=np.result_type(px, py))
                pixmap[r0:r1, :, 0] = px
                pixmap[r0:r1, :, 1] = py
    finally:
        # as stcal does: both bounding boxes set again from their F-ordered intervals
        if bbox_from is not None:
            wcs_from.bounding_box = bbox_from
        if bbox_to is not None:
            wcs_to.bounding_box = bbox_to
    return pixmap


def _calc_pixmap_shared(wcs_from, wcs_to, shape=None, *args, **kwargs):
    """stcal's ``calc_pixmap`` (as :func:`_pixel_map`), reused within :func:`_sharing` (a copy:
    drizzle may change it); within :func:`windowed_drizzles`, the map of the drizzled window only."""
    if _SHARED.get() is None or args or set(kwargs) - {"stepsize", "order"}:
        if _WINDOWED.get() and _SHARED.get() is None and not args and shape is not None and len(shape) == 2 \
                and kwargs.get("stepsize", 1) == 1 and not set(kwargs) - {"stepsize", "order"}:
            return _window_map(wcs_from, wcs_to, tuple(int(n) for n in shape))
        return _pixel_map(wcs_from, wcs_to, shape, *args, **kwargs)
    key = (wcs_from, wcs_to, None if shape is None else tuple(shape), kwargs.get("stepsize", 1), kwargs.get("order", 1))
    return _lookup("pixmap", key, lambda: _pixel_map(wcs_from, wcs_to, shape, **kwargs)).copy()


# pixels of exactly evaluated map kept around the drizzled range of a windowed map (drizzle's
# square kernel reads the map of a pixel's neighbours for its corners)
_WINDOW_MARGIN = 4
_WINDOWED: contextvars.ContextVar = contextvars.ContextVar("webbflow_resample_windowed", default=False)
# a window of more than this fraction of the input: the whole map and arrays, as stcal
_WINDOW_WORTH = 0.5


@contextlib.contextmanager
def windowed_drizzles():
    """Drizzles within: each input's pixel map and arrays cut to the rows and columns stcal drizzles.

    stcal drizzles only the input pixels within its bounding box (``resample_range``), but makes the
    pixel map of the whole input (float64, 16 MiB for a 1032x1024 exposure) and hands drizzle the
    whole arrays.  Here the map is evaluated on that range and a margin of ``_WINDOW_MARGIN`` pixels
    only (:class:`_WindowMap`), and drizzle is given the same cut of the data, weights and DQ with
    the range shifted to it: the same pixels through the same map values, so the same sums.  A
    drizzle asked for pixels outside the window (never, as stcal calls it) gets the whole map.
    Not with :func:`_sharing` (a shared map is reused by blots of the whole exposure)."""
    _install_window_drizzle()
    token = _WINDOWED.set(True)
    try:
        yield
    finally:
        _WINDOWED.reset(token)


class _WindowMap(np.ndarray):
    """The pixel map of a window ``origin`` (row, column) of an input of ``full_shape``; ``full()``
    makes the whole map."""

    origin: tuple = (0, 0)
    full_shape: tuple = ()
    full = None


def _window_of(wcs, shape: tuple):
    """``(r0, r1, c0, c1)``: the rows and columns stcal drizzles of an input (``resample_range`` of its
    bounding box) and ``_WINDOW_MARGIN`` around them; None for the whole input."""
    from stcal.resample.utils import resample_range

    bbox = _bbox_tuple(wcs)
    if bbox is None:
        return None
    xmin, xmax, ymin, ymax = resample_range(shape, bbox)
    m = _WINDOW_MARGIN
    r0, r1 = max(0, ymin - m), min(shape[0], ymax + m + 1)
    c0, c1 = max(0, xmin - m), min(shape[1], xmax + m + 1)
    if (r1 - r0) * (c1 - c0) > _WINDOW_WORTH * shape[0] * shape[1]:  # not worth it
        return None
    return r0, r1, c0, c1


def _window_map(wcs_from, wcs_to, shape: tuple):
    window = _window_of(wcs_from, shape)
    if window is None:
        return _pixel_map(wcs_from, wcs_to, shape)
    r0, r1, c0, c1 = window
    from ._wcs_cache import evaluations_not_kept

    # not kept by the source's WCS cache (a full-frame LRS slit's: 3 MiB for no CPU time measured)
    with evaluations_not_kept():
        out = _pixel_map(wcs_from, wcs_to, shape, window=(r0, r1, c0, c1)).view(_WindowMap)
    out.origin, out.full_shape = (r0, c0), shape
    out.full = lambda: _pixel_map(wcs_from, wcs_to, shape)
    return out


def _cut_for_window(pixmap, arrays: dict, bounds: dict):
    """``(pixmap, arrays, bounds)`` for drizzle: cut to a :class:`_WindowMap`'s window, or whole."""
    (r0, c0), (ny, nx) = pixmap.origin, pixmap.full_shape
    h, w = pixmap.shape[:2]
    m = _WINDOW_MARGIN
    x0 = 0 if bounds["xmin"] is None else bounds["xmin"]
    x1 = nx - 1 if bounds["xmax"] is None else bounds["xmax"]
    y0 = 0 if bounds["ymin"] is None else bounds["ymin"]
    y1 = ny - 1 if bounds["ymax"] is None else bounds["ymax"]
    inside = (x0 - c0 >= min(m, x0) and (c0 + w) - 1 - x1 >= min(m, nx - 1 - x1)
              and y0 - r0 >= min(m, y0) and (r0 + h) - 1 - y1 >= min(m, ny - 1 - y1))
    for a in arrays.values():  # a window's weights (_lean_driz_weight) are of the same window
        inside &= not isinstance(a, _WindowMap) or (a.origin == pixmap.origin and a.shape[:2] == (h, w))
    if not inside:
        return np.asarray(pixmap.full()), _whole(arrays), bounds
    cut = {k: (None if a is None else a.view(np.ndarray) if isinstance(a, _WindowMap) else
               np.ascontiguousarray(a[r0:r0 + h, c0:c0 + w])) for k, a in arrays.items()}
    return (np.ascontiguousarray(pixmap.view(np.ndarray)), cut,
            {"xmin": x0 - c0, "xmax": x1 - c0, "ymin": y0 - r0, "ymax": y1 - r0})


def _whole(arrays: dict) -> dict:
    return {k: (a.full() if isinstance(a, _WindowMap) else a) for k, a in arrays.items()}


def _install_window_drizzle() -> None:
    """stcal's Resample makes drizzle's ``Drizzle`` through its module's name: routed to
    a subclass (:func:`_window_drizzle_class`), which is drizzle's own for any map but a :class:`_WindowMap`."""
    import stcal.resample.resample as sr

    cls = _window_drizzle_class()
    if sr.Drizzle is not cls:
        sr.Drizzle = cls


@functools.lru_cache(maxsize=None)
def _window_drizzle_class():
    from drizzle.resample import Drizzle

    class WindowDrizzle(Drizzle):
        def add_image(self, data, exptime, pixmap, data2=None, dq=None, *args, weight_map=None,
                      xmin=None, xmax=None, ymin=None, ymax=None, **kwargs):
            bounds = {"xmin": xmin, "xmax": xmax, "ymin": ymin, "ymax": ymax}
            if isinstance(pixmap, _WindowMap) and not args:
                arrays = {"data": data, "data2": data2, "dq": dq, "weight_map": weight_map}
                pixmap, arrays, bounds = _cut_for_window(pixmap, arrays, bounds)
                data, data2, dq, weight_map = (arrays[k] for k in ("data", "data2", "dq", "weight_map"))
            else:
                if isinstance(pixmap, _WindowMap):
                    pixmap = np.asarray(pixmap.full())
                if isinstance(weight_map, _WindowMap):
                    weight_map = weight_map.full()
            return super().add_image(data, exptime, pixmap, data2, dq, *args, weight_map=weight_map, **bounds,
                                     **kwargs)

    return WindowDrizzle


def _install_pixmap_sharing() -> None:
    """Route stcal's Resample and its blot (``gwcs_blot``, whose map from an exposure's pixels to the
    median's grid is the one its drizzle used) through :func:`_calc_pixmap_shared`, which falls
    back to stcal's own outside :func:`_sharing`."""
    import stcal.outlier_detection.utils as so
    import stcal.resample.resample as sr

    for module in (sr, so):
        if module.calc_pixmap is not _calc_pixmap_shared:
            module.calc_pixmap = _calc_pixmap_shared


# rows of an exposure whose drizzle weights are made at once (a few MiB of work arrays)
_WEIGHT_BLOCK = 1 << 18


def _lean_driz_weight(model, weight_type=None, good_bits=None, flag_name_map=None):
    """stcal's ``build_driz_weight`` (the same float32 weights, bit for bit), its ``ivm`` weights made
    a block of rows at a time.

    stcal makes them over the whole exposure: the DQ mask (astropy's bit-flag temporaries), the
    inverse variance, their product and a float32 copy of it, about 13 MiB of work arrays for a
    full-frame exposure at each drizzle.  Each pixel's weight is its own (``1 / var_rnoise``, 0
    where that is not finite, times its 0/1 DQ mask), so the blocks give the same values.  Other
    weight types, and an exposure without DQ or with no read-noise variance of its shape, go to
    stcal's own."""
    from stcal.resample.utils import build_driz_weight

    data, dq, var = model["data"], model["dq"], model.get("var_rnoise")
    if weight_type != "ivm" or dq is None or var is None or var.shape != data.shape or dq.shape != data.shape \
            or data.ndim != 2:
        return build_driz_weight(model, weight_type=weight_type, good_bits=good_bits, flag_name_map=flag_name_map)
    window = _window_of(model["wcs"], data.shape) if _WINDOWED.get() and model.get("wcs") is not None else None
    if window is not None:  # within windowed_drizzles: the weights of the pixel map's window only
        r0, r1, c0, c1 = window
        out = _ivm_weights(dq[r0:r1, c0:c1], var[r0:r1, c0:c1], good_bits, flag_name_map).view(_WindowMap)
        out.origin, out.full_shape = (r0, c0), data.shape
        out.full = lambda: _ivm_weights(dq, var, good_bits, flag_name_map)
        return out
    return _ivm_weights(dq, var, good_bits, flag_name_map)


def _ivm_weights(dq, var, good_bits, flag_name_map):
    from astropy.nddata.bitmask import bitfield_to_boolean_mask

    out = np.empty(dq.shape, dtype=np.float32)
    rows = max(1, _WEIGHT_BLOCK // max(1, dq.shape[1]))
    for r0 in range(0, dq.shape[0], rows):
        b = slice(r0, r0 + rows)
        mask = bitfield_to_boolean_mask(dq[b], good_bits, good_mask_value=1, dtype=np.uint8, flag_name_map=flag_name_map)
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / var[b]
        inv[~np.isfinite(inv)] = 0
        out[b] = inv * mask
    return out


def _install_lean_weights() -> None:
    """Route stcal's Resample through :func:`_lean_driz_weight`."""
    import stcal.resample.resample as sr

    if sr.build_driz_weight is not _lean_driz_weight:
        sr.build_driz_weight = _lean_driz_weight


# ---------------------------------------------------------------------------
# the output product


def _keyword_meta(meta):
    """A copy of ``meta`` with only its FITS-keyword metadata (as stdatamodels' ``update``): no extras, no WCS."""
    from ..models.meta import Group

    # the WCS is not copied at all (its copy costs more than the rest): the memo maps it to None
    new = copy.deepcopy(meta, {id(meta.wcs): None}) if meta.wcs is not None else meta.model_copy(deep=True)

    def strip(g):
        if g.__pydantic_extra__:
            g.__pydantic_extra__.clear()
        for name in type(g).model_fields:
            v = getattr(g, name)
            if isinstance(v, Group):
                strip(v)

    strip(new)
    new.wcs = None
    return new


def _new_output(ref, out: dict, params: ResampleParams, enable_var: bool, report_var: bool, compute_err, blender=None):
    from ..models import ImageModel

    model = ImageModel(data=out["data"])
    model.meta = _keyword_meta(ref.meta)
    # the kept header cards of the first input, less its structural and WCS cards (rewritten below)
    for hdu in ("PRIMARY", "SCI"):
        if hdu in ref._headers:
            model._headers[hdu] = ref._headers[hdu].copy()
    model.meta.model_type = "ImageModel"
    if blender is not None:
        # Stage 3: the inputs' metadata blended and their HDRTAB table; the resampling's own
        # values below (exposure times, pixel area, ...) then take precedence, as in jwst
        blender.finalize(model)
    # jwst's i2d extension order
    model._hdu_order = ["PRIMARY", "SCI", "ERR", "CON", "WHT", "DQ", "VAR_POISSON", "VAR_RNOISE", "VAR_FLAT"]
    model.wht = out["wht"]
    if params.enable_ctx and out.get("con") is not None:
        model.con = out["con"]
    if params.propagate_dq and out.get("dq") is not None:
        model.dq = out["dq"]
    if compute_err and out.get("err") is not None:
        model.err = out["err"]
    else:
        model.meta.bunit_err = None
        if "ERR" in model._headers:
            model._headers["ERR"].remove("BUNIT", ignore_missing=True)
    if enable_var and report_var:
        for n in ("var_rnoise", "var_flat", "var_poisson"):
            setattr(model, n, out[n])
    model.meta.wcs = out["wcs"]
    model.meta.photometry.pixelarea_steradians = float(out["pixelarea_steradians"])
    model.meta.photometry.pixelarea_arcsecsq = float(out["pixelarea_arcsecsq"])
    r = model.meta.resample
    r.pointings = int(out["pointings"])
    r.pixel_scale_ratio = None if out["pixel_scale_ratio"] is None else float(out["pixel_scale_ratio"])
    r.pixfrac = float(out["pixfrac"])
    r.kernel = out["kernel"]
    r.fillval = out["fillval"]
    r.weight_type = out["weight_type"]
    ex = model.meta.exposure
    ex.exposure_time = out["exposure_time"]
    ex.start_time = out["start_time"]
    ex.end_time = out["end_time"]
    ex.duration = out["duration"]
    ex.measurement_time = out["measurement_time"]
    ex.effective_exposure_time = out["exposure_time"]
    ex.elapsed_exposure_time = out["elapsed_exposure_time"]
    level = out.get("level")
    model.meta.background.level = level
    model.meta.background.subtracted = None if level is None else bool(out.get("subtracted", False))
    model.meta.bunit_data = ref.meta.bunit_data
    return model


def _finalize_wcs(model, inputs, out_wcs) -> None:
    from stcal.alignment import combine_sregions
    from stcal.resample.utils import is_imaging_wcs

    if not is_imaging_wcs(model.meta.wcs):
        return
    _wcs.update_wcsinfo_linear(model)
    s_regions = []
    for m in inputs:
        s_regions.extend(_wcs.split_s_regions(m.meta.wcsinfo.s_region))
    det2world = out_wcs.get_transform("detector", "world")
    try:
        model.meta.wcsinfo.s_region = combine_sregions(s_regions, det2world, intersect_footprint=out_wcs.footprint())
    except ValueError as exc:
        log.warning("Could not combine the inputs' S_REGIONs: %s; S_REGION not set", exc)
        model.meta.wcsinfo.s_region = None
        if "SCI" in model._headers:
            model._headers["SCI"].remove("S_REGION", ignore_missing=True)


def _resample_variances(self, model, pixmap, pixel_scale_ratio, iscale, weight_map, xmin, xmax, ymin, ymax):
    """stcal's ``Resample.resample_variance_arrays`` with the same sums, made without its stacking.

    stcal adds each drizzled variance, weighted, to its running sum with ``np.nansum`` of the pair
    (the sum so far, the new term) stacked into one new array of both: about a third of the
    accumulation's time on a 1024^2 output.  Here the pair is added directly as ``nansum`` adds it
    (NaN counting as 0, the sum so far promoted to the term's type, then the term added), with the
    term made as stcal makes it (variance times weight, times weight), so every sum is the same.
    The drizzling of the arrays and the weights are stcal's; an inverse-variance weighting without a
    read-noise variance to weight by is left to stcal whole."""
    from stcal.resample import Resample
    from stcal.resample.utils import get_tmeasure

    ivm = self.weight_type.startswith("ivm")
    if (not ivm and self.weight_type != "exptime") or (ivm and not (
            "var_rnoise" in self.variance_array_names and self._check_var_array(model, "var_rnoise"))):
        return Resample.resample_variance_arrays(self, model, pixmap, pixel_scale_ratio, iscale, weight_map,
                                                 xmin, xmax, ymin, ymax)
    info = self._variance_info
    names = [n for n in self.variance_array_names if self._check_var_array(model, n)]
    part = self._variance_part  # the arrays summed here (the others by a forked child, :func:`_fork_variance_sums`)
    if part is not None:
        names = [n for n in names if n in part or (ivm and n == "var_rnoise")]  # read noise: the weights
    for name in names:
        info[name]["var"] = self._resample_one_variance_array(
            name, model=model, pixmap=pixmap, pixel_scale_ratio=pixel_scale_ratio, iscale=iscale,
            weight_map=weight_map, xmin=xmin, xmax=xmax, ymin=ymin, ymax=ymax)
    if ivm:
        rn_var = info["var_rnoise"]["var"]
        good = (rn_var > 0) & np.isfinite(rn_var)
        weight = np.zeros(self.output_array_shape)
        weight[good] = np.reciprocal(rn_var[good])
    else:
        weight = np.full(self.output_array_shape, get_tmeasure(model)[0])
    for name in names if part is None else [n for n in names if n in part]:
        var, wsum = info[name]["var"], info[name]["wsum"]
        mask = (var >= 0) & np.isfinite(var) & (weight > 0)
        w = weight[mask]
        with np.errstate(over="ignore"):  # stcal silences overflow warnings here too
            term = var[mask] * w
            term *= w
        so_far = wsum[mask]
        np.copyto(so_far, 0, where=np.isnan(so_far))
        np.copyto(term, 0, where=np.isnan(term))
        wsum[mask] = so_far + term
        info[name]["wt"][mask] += w


def _drizzle(inputs, grid: dict, params: ResampleParams, *, enable_var: bool, report_var: bool, compute_err, n_expected=None,
             good_bits=GOOD_BITS, stream=None, blender=None, bare: bool = False):
    """Drizzle ``inputs`` (or, when given, the models ``stream`` yields one at a time; ``inputs`` then
    only need their metadata, e.g. a model library's stubs) onto ``grid``.

    ``bare``: return stcal's output dictionary (``data``, ``wht``, ``wcs``, ...) instead of a
    product, for a caller that only needs the arrays (outlier detection's median)."""
    from stcal.resample import Resample

    _install_pixmap_sharing()
    _install_lean_weights()

    class _Resample(Resample):
        dq_flag_name_map = dqflags.PIXEL
        resample_variance_arrays = _resample_variances
        _variance_part = None  # the variance arrays summed here, when not all
        _forked_variances = None  # the child summing the others

        def finalize_resample_variance(self, output_model):
            if self._forked_variances is None:
                return Resample.finalize_resample_variance(self, output_model)
            own: dict = {}
            Resample.finalize_resample_variance(self, own)
            theirs = self._forked_variances.result()
            self._forked_variances = None
            for name in self.variance_array_names:
                output_model[name] = theirs[name] if name in theirs else own[name]

    r = _Resample(
        output_wcs=grid,
        n_input_models=n_expected or len(inputs),
        pixfrac=params.pixfrac,
        kernel=params.kernel,
        fillval=params.fillval,
        weight_type=params.weight_type,
        good_bits=good_bits,
        enable_ctx=params.enable_ctx,
        enable_var=enable_var,
        compute_err=compute_err,
        propagate_dq=params.propagate_dq,
        pixmap_stepsize=params.pixmap_stepsize,
        pixmap_order=params.pixmap_order,
    )
    from ._threads import processes

    if r.enable_var and r.compute_err != "driz_err" and (stream is None or _SHARED.get() is not None) \
            and processes() > 1:
        _fork_variance_sums(r, inputs, stream, params)
    try:
        for m in inputs if stream is None else stream:
            r.add_model(_as_dict(m, params.weight_type, r.enable_var, r.compute_err))
        r.finalize()
    finally:
        if r._forked_variances is not None:
            r._forked_variances.cancel()
    out = r.output_model
    if bare:
        return out
    model = _new_output(inputs[0], out, params, r.enable_var, report_var, compute_err, blender=blender)
    _finalize_wcs(model, inputs, r.output_wcs)
    model.meta.cal_step.resample = "COMPLETE"
    return model


def _fork_variance_sums(r, inputs, stream, params: ResampleParams) -> None:
    """Start a forked child that sums the read-noise and Poisson variances of ``r``'s drizzle (its own
    pass over the same models, whose pixels it reads as the fork left them); this process then sums
    the data, weights, context and the other variances (drizzling the read noise again for the
    inverse-variance weights).  Kept apart from :func:`_drizzle` so that its closure holds nothing of
    a drizzle that runs on one process."""
    from stcal.resample import Resample

    from ._threads import Forked

    theirs = {"var_rnoise", "var_poisson"}

    def variances():
        r._variance_part = theirs
        r._driz.add_image = lambda *a, **k: None  # the data's drizzle is the parent's
        for m in inputs if stream is None else stream:  # the child's copy of the stream
            r.add_model(_as_dict(m, params.weight_type, r.enable_var, r.compute_err))
        out: dict = {}
        Resample.finalize_resample_variance(r, out)
        return {k: out[k] for k in r.variance_array_names if k in out and k in theirs}

    r._forked_variances = Forked(variances)
    r._variance_part = set(r.variance_array_names) - theirs


def resample_images(inputs, params: ResampleParams | None = None):
    """Drizzle ``inputs`` (imaging models with a WCS and S_REGION) into one i2d ImageModel.

    With ``params.single`` returns a list: one product per exposure group,
    all on the common grid (drizzled errors, no variances).
    """
    params = params or ResampleParams()
    from ._library import ModelLibrary

    if isinstance(inputs, (list, tuple)) and inputs and not all(hasattr(m, "meta") for m in inputs):
        inputs = ModelLibrary(list(inputs))  # paths: opened one at a time
    if isinstance(inputs, ModelLibrary):
        return _resample_library(inputs, params)
    if not isinstance(inputs, (list, tuple)):
        inputs = [inputs]
    if not inputs:
        raise ValueError("resample needs at least one input image")
    for m in inputs:
        if m.data.ndim != 2:
            raise UnsupportedModeError(f"resample takes 2-D images, not {m.data.ndim}-D data ({m.meta.filename or type(m).__name__})")
        if m.meta.wcs is None:
            raise UnsupportedModeError(f"{m.meta.filename or 'input'} has no WCS: run assign_wcs first")
    if params.weight_type is None:
        raise ParameterError("step resample: weight_type None is not supported; use 'ivm' or 'exptime'")
    inputs = [_nan_flag_consistent(m) for m in inputs]
    grid = output_grid(inputs, params)
    if params.single:
        groups: dict[str, list] = {}
        for m in inputs:
            groups.setdefault(group_id(m), []).append(m)
        return [
            _drizzle(members, dict(grid), params, enable_var=False, report_var=False, compute_err="driz_err")
            for members in groups.values()
        ]
    if params.enable_err:
        enable_var, report_var, compute_err = True, params.report_var, "from_var"
    else:
        enable_var, report_var, compute_err = False, False, None
    return _drizzle(inputs, grid, params, enable_var=enable_var, report_var=report_var, compute_err=compute_err)


def _check_input(m) -> None:
    if len(m.shape) != 2:
        raise UnsupportedModeError(f"resample takes 2-D images, not {len(m.shape)}-D data ({m.meta.filename or type(m).__name__})")
    if m.meta.wcs is None:
        raise UnsupportedModeError(f"{m.meta.filename or 'input'} has no WCS: run assign_wcs first")


def _resample_library(library, params: ResampleParams):
    """resample_images for a model library: the exposures are read and drizzled one at a time.

    The output grid comes from the members' metadata (stubs without pixels),
    so only one exposure and the output arrays are in memory at once.
    """
    if params.weight_type is None:
        raise ParameterError("step resample: weight_type None is not supported; use 'ivm' or 'exptime'")
    stubs = [library.stub(i, copy=False) for i in range(len(library))]  # read only
    for m in stubs:
        _check_input(m)
    with _sharing(shared_store(library)):
        return _resample_stubs(library, stubs, params)


def _resample_stubs(library, stubs, params: ResampleParams):
    grid = _shared_grid(stubs, params)

    def stream(indices, blender=None):
        for i in indices:
            model = library.borrow(i)
            try:
                if blender is not None:
                    blender.accumulate(model)
                yield _nan_flag_consistent(model)
            finally:
                library.shelve(i, model, modify=False)
                del model

    if params.single:
        return [
            _drizzle([stubs[i] for i in idx], dict(grid), params, enable_var=False, report_var=False,
                     compute_err="driz_err", stream=stream(idx))
            for idx in library.group_indices.values()
        ]
    if params.enable_err:
        enable_var, report_var, compute_err = True, params.report_var, "from_var"
    else:
        enable_var, report_var, compute_err = False, False, None
    from ..models.blend import MetaBlender

    blender = MetaBlender()
    return _drizzle(stubs, grid, params, enable_var=enable_var, report_var=report_var, compute_err=compute_err,
                    stream=stream(range(len(library)), blender), blender=blender)


@step("resample", "ResampleStep", params=ResampleParams, suffix="i2d", input_class="ImageModel")
def resample(model, refs, params: ResampleParams):
    """Drizzle a calibrated image (or a list of them) onto a sky grid: the i2d product."""
    return resample_images(model, params)
