"""A gWCS's combined transforms built once per scope instead of at every evaluation.

gwcs combines a WCS's step transforms into one compound model each time it is evaluated
(``forward_transform``, ``backward_transform`` and ``get_transform`` are properties that rebuild
it), and astropy's compound models map the parameters of their whole tree each time one is
built: for a NIRSpec slit's nine frames that is about 10 ms for the forward transform and 90 ms
for the backward one, more than evaluating them on a slit's pixels.  Stage 3 evaluates each
slit's WCS tens of times (two output grids, two drizzles, a blot, pixel scales).

Inside :func:`reuse_wcs_transforms`, those three properties give back the compound model they
built the first time for the same WCS, as long as it is the same: the same step transform
objects (by identity, held so that no identity is reused), the same frames and, for the forward
and backward transforms, the same bounding box (its intervals and order).  A transform replaced
in the pipeline (``set_transform``, ``insert_transform``) or a new bounding box makes a new one,
as gwcs would.  The compound models are the ones gwcs builds, so the values are the same; the
leaves are shared as in gwcs's own compound models.

Evaluations are kept too: a call of the WCS (``wcs(x, y)``, ``pixel_to_world_values``) or of its
``invert`` with the same plain numeric inputs (compared by dtype, shape and bytes), the same
keywords and the same transforms and bounding box gives back a copy of the first answer (at most
64 MB of inputs and answers are kept a scope, so that large images cost no memory).  The two
output grids of a source (outlier detection's and resample_spec's) evaluate each slit's WCS on
the same bounding-box grid, as do the pixel maps of its drizzles.  A pixel map too large for one
block (a full-frame slit's, :func:`webbflow.tasks.resample._pixel_map`) is evaluated within
:func:`evaluations_not_kept`: its blocks could not all be kept anyway, and those that were would
stay in memory for the whole scope (about 60 MiB for a MIRI LRS source) to save little.

The switch and its cache are a context variable, so they hold for the thread that entered the
scope and nothing else; outside, gwcs runs unchanged.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading

_CACHE: contextvars.ContextVar[dict | None] = contextvars.ContextVar("webbflow_wcs_transforms", default=None)
_NOT_KEPT: contextvars.ContextVar[bool] = contextvars.ContextVar("webbflow_wcs_not_kept", default=False)
_lock = threading.Lock()
_installed = False


def _bbox_key(bbox):
    """A bounding box's value (intervals and order), or its identity when it is not a plain one."""
    if bbox is None:
        return None
    from astropy.modeling.bounding_box import ModelBoundingBox

    if type(bbox) is ModelBoundingBox:
        return ("model", bbox.order, tuple(bbox.ignored),
                tuple((k, float(v.lower), float(v.upper)) for k, v in bbox.intervals.items()))
    return ("object", id(bbox))


def _cached(cache: dict, key, transforms: tuple, extra, build):
    got = cache.get(key)
    if got is not None and got[1] == extra and len(got[0]) == len(transforms) \
            and all(a is b for a, b in zip(got[0], transforms)):
        return got[2]
    value = build()
    cache[key] = (transforms, extra, value)
    return value


_MAX_MEMO = 4_000_000  # input elements above which an evaluation is not kept
_MEMO_BYTES = 64 * 2**20  # what a scope keeps of evaluations at most (inputs and answers)


def _memo_key(args, kwargs):
    """``(hashable key, input bytes)`` of plain numeric arguments, or None (not kept)."""
    import numpy as np

    parts, raw, size = [], [], 0
    for a in args:
        if not isinstance(a, (np.ndarray, float, int, np.floating, np.integer)) or isinstance(a, bool):
            return None
        arr = np.asarray(a)
        if arr.dtype.kind not in "fiu":
            return None
        size += arr.size
        if size > _MAX_MEMO:
            return None
        b = np.ascontiguousarray(arr).tobytes()
        parts.append((type(a).__name__, arr.dtype.str, arr.shape, hash(b)))
        raw.append(b)
    try:
        kw = tuple(sorted((k, v if not isinstance(v, float) or v == v else "nan") for k, v in kwargs.items()))
        hash(kw)
    except TypeError:
        return None
    return (tuple(parts), kw), raw


def _copy(result):
    import numpy as np

    if isinstance(result, tuple):
        return tuple(_copy(r) for r in result)
    if isinstance(result, list):
        return [_copy(r) for r in result]
    return result.copy() if isinstance(result, np.ndarray) else result


def _nbytes(result) -> int:
    import numpy as np

    if isinstance(result, (tuple, list)):
        return sum(_nbytes(r) for r in result)
    return result.nbytes if isinstance(result, np.ndarray) else 8


def _install() -> None:
    global _installed
    if _installed:
        return
    with _lock:
        if _installed:
            return
        from gwcs.wcs._pipeline import Pipeline

        forward_fget = Pipeline.forward_transform.fget
        backward_fget = Pipeline.backward_transform.fget
        get_transform = Pipeline.get_transform

        def _state(self):
            return tuple(step.transform for step in self._pipeline), tuple(self.available_frames)

        def _with_bbox(self, kind, fget):
            cache = _CACHE.get()
            if cache is None:
                return fget(self)
            transforms, frames = _state(self)
            bbox = self.bounding_box
            key = _bbox_key(bbox)
            if key is not None and key[0] == "object":  # compared by identity, and held
                transforms += (bbox,)
            return _cached(cache, (kind, id(self)), transforms, (frames, key), lambda: fget(self))

        def forward_transform(self):
            return _with_bbox(self, "forward", forward_fget)

        def backward_transform(self):
            return _with_bbox(self, "backward", backward_fget)

        def cached_get_transform(self, from_frame, to_frame):
            cache = _CACHE.get()
            if cache is None:
                return get_transform(self, from_frame, to_frame)
            transforms, frames = _state(self)
            key = ("get", id(self), self._frame_name(from_frame), self._frame_name(to_frame))
            return _cached(cache, key, transforms, frames, lambda: get_transform(self, from_frame, to_frame))

        cached_get_transform.__wrapped__ = get_transform
        cached_get_transform.__doc__ = get_transform.__doc__
        Pipeline.forward_transform = property(forward_transform, doc=Pipeline.forward_transform.__doc__)
        Pipeline.backward_transform = property(backward_transform, doc=Pipeline.backward_transform.__doc__)
        Pipeline.get_transform = cached_get_transform

        from gwcs.wcs import WCS

        def memo(kind, method):
            def evaluate(self, *args, **kwargs):
                cache = _CACHE.get()
                got = None if cache is None or _NOT_KEPT.get() else _memo_key(args, kwargs)
                if got is None:
                    return method(self, *args, **kwargs)
                key, raw = got
                transforms, frames = _state(self)
                bbox = self.bounding_box
                bkey = _bbox_key(bbox)
                if bkey is not None and bkey[0] == "object":
                    transforms += (bbox,)
                slot = (kind, id(self), key)
                hit = cache.get(slot)
                if hit is not None and hit[1] == (frames, bkey) and hit[3] == raw and len(hit[0]) == len(transforms) \
                        and all(a is b for a, b in zip(hit[0], transforms)):
                    return _copy(hit[2])
                result = method(self, *args, **kwargs)
                kept = _copy(result)
                size = sum(len(b) for b in raw) + _nbytes(kept)
                used = cache.get("__bytes__", 0) - (0 if hit is None else hit[4])  # a replaced entry's freed
                if used + size <= _MEMO_BYTES:  # large images (a full-frame slit's pixel maps) are not kept
                    cache[slot] = (transforms, (frames, bkey), kept, raw, size)
                    cache["__bytes__"] = used + size
                return result

            evaluate.__wrapped__ = method
            evaluate.__doc__ = method.__doc__
            evaluate.__name__ = method.__name__
            return evaluate

        WCS.__call__ = memo("call", WCS.__call__)
        WCS.invert = memo("invert", WCS.invert)
        _installed = True


@contextlib.contextmanager
def reuse_wcs_transforms():
    """Inside, each gWCS's combined transforms are built once (see the module's docstring)."""
    _install()
    if _CACHE.get() is not None:  # nested: the outer scope's cache goes on
        yield
        return
    token = _CACHE.set({})
    try:
        yield
    finally:
        _CACHE.reset(token)


@contextlib.contextmanager
def evaluations_not_kept():
    """Inside, WCS evaluations are neither kept nor looked up (the combined transforms still are)."""
    token = _NOT_KEPT.set(True)
    try:
        yield
    finally:
        _NOT_KEPT.reset(token)
