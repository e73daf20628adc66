"""skymatch: measure (and match, or subtract) the sky of overlapping exposures (jwst's SkyMatchStep).

The sky of each exposure is a clipped statistic (``skystat``: mode by
default, or median, midpt, mean) of its good pixels: pixels whose DQ has
only the ``dqbits`` flags allowed (by default anything but DO_NOT_USE and
NON_SCIENCE), finite, and within ``lower``/``upper``, after ``nclip``
iterations of ``lsigma``/``usigma`` clipping.  stcal's ``skymatch`` does the
computation on the exposures' footprints on the sky:

- ``local``: each exposure's own sky;
- ``global``: the smallest of the ``local`` values, for all;
- ``match`` (the default): sky *differences* measured in the overlaps of
  every pair of exposures, solved so that they agree; with ``match_down``
  the lowest sky is 0;
- ``global+match``: ``match``, then the ``global`` sky of the matched images
  added;
- ``user``: values read from ``skylist`` (lines of ``<file> <sky>``).

Exposures of one group (detectors of one exposure) are treated as one
image.  The result goes to ``meta.background``: ``level`` (the sky,
MJy/sr), ``method`` and ``subtracted`` (whether ``subtract`` removed it from
the data).  An exposure whose sky cannot be measured (no overlap, no good
pixels) is marked SKIPPED and left alone.

Memory: with a library on disk, each exposure's pixels and mask go to a
memory-mapped temporary file rather than staying in memory, since the
overlap statistics need all of them.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from ..errors import InputFileError, ParameterError
from ..models import dqflags
from ._library import as_library, give_back, member_root
from .base import STEPS, StepParams, step

log = logging.getLogger("webbflow.steps.skymatch")


class SkyMatchParams(StepParams):
    skymethod: Literal["local", "global", "match", "global+match", "user"] = "match"  # sky computation method
    match_down: bool = True  # match skies down to the lowest
    subtract: bool = False  # subtract the sky from the data
    skylist: str | None = None  # file of '<image> <sky>' lines (skymethod 'user')
    stepsize: int | None = None  # maximum spacing of the footprint polygon's vertices, pixels
    skystat: Literal["median", "midpt", "mean", "mode"] = "mode"  # sky statistic
    dqbits: str | None = "~DO_NOT_USE+NON_SCIENCE"  # DQ flags a good pixel may have
    lower: float | None = None  # lowest good pixel value
    upper: float | None = None  # highest good pixel value
    nclip: int = Field(5, ge=0)  # clipping iterations
    lsigma: float = Field(4.0, ge=0.0)  # lower clipping limit, sigma
    usigma: float = Field(4.0, ge=0.0)  # upper clipping limit, sigma
    binwidth: float = Field(0.1, ge=0.0)  # histogram bin width for mode and midpt, sigma
    in_memory: bool = True  # False: keep exposures in a temporary folder, not in memory


def good_pixel_bits(dqbits: str | None) -> int | None:
    """The DQ bit mask of the flags a good pixel may carry (astropy's bit-flag syntax, jwst flag names)."""
    from astropy.nddata.bitmask import interpret_bit_flags

    return interpret_bit_flags(dqbits, flag_name_map=dqflags.PIXEL)


def good_pixels(model, bits) -> np.ndarray:
    from astropy.nddata.bitmask import bitfield_to_boolean_mask

    finite = np.isfinite(model.data)
    if bits is None:
        return finite
    return bitfield_to_boolean_mask(model.dq, bits, good_mask_value=True, dtype=bool) & finite


def _previous_level(model, subtract: bool) -> float:
    """The sky already recorded in meta.background, checked for consistency (jwst's rules)."""
    bg = model.meta.background
    name = model.meta.filename or "<in memory>"
    if bg.subtracted is None:
        if bg.level is not None:
            raise InputFileError(name, "records a background level (BKGLEVEL) but not whether it was subtracted (BKGSUB)")
        return 0.0
    if bg.level is None:
        raise InputFileError(name, "records a subtracted background (BKGSUB) without its level (BKGLEVEL)")
    if bool(bg.subtracted) != subtract:
        raise ParameterError(
            f"step skymatch: subtract={subtract} disagrees with {name}, whose sky was "
            f"{'already' if bg.subtracted else 'not'} subtracted by an earlier run"
        )
    return float(bg.level)


class _Scratch:
    """Memory-mapped copies of the pixels and masks of exposures that live on disk."""

    def __init__(self):
        self.folder: Path | None = None

    def array(self, name: str, values: np.ndarray) -> np.ndarray:
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="webbflow-skymatch-"))
        mm = np.lib.format.open_memmap(self.folder / f"{name}.npy", mode="w+", dtype=values.dtype, shape=values.shape)
        mm[...] = values
        return mm

    def close(self):
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


def _user_sky(library, params: SkyMatchParams):
    if params.skylist is None:
        raise ParameterError("step skymatch: skymethod 'user' needs a skylist file of '<image> <sky>' lines")
    path = Path(params.skylist)
    try:
        rows = [ln.split() for ln in path.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    except OSError as exc:
        raise InputFileError(path, f"cannot read the skylist ({exc.strerror})") from None
    try:
        table = [(member_root(r[0]), float(r[1])) for r in rows]
    except (IndexError, ValueError):
        raise InputFileError(path, "skylist lines must be '<image file> <sky value>'") from None
    if len(table) != len(library):
        raise InputFileError(path, f"lists {len(table)} images; the input has {len(library)}")
    log.info("Setting the sky of the exposures to the values in %s", path)
    for _i, model in library.each(modify=True):
        root = member_root(model.meta.filename or "")
        hits = [v for r, v in table if r == root]
        if len(hits) != 1:
            raise InputFileError(path, f"lists {root!r} {len(hits)} times; expected once")
        sky = hits[0]
        bg = model.meta.background
        bg.level, bg.subtracted, bg.method = sky, params.subtract, params.skymethod
        if params.subtract:
            model.data -= np.float32(sky)
        model.meta.cal_step.skymatch = "COMPLETE"
    return library


def _inverse(wcs):
    """``wcs.invert`` for the overlap polygons' vertices, with the backward transform built once.

    stcal asks each exposure's inverse WCS for the pixel positions of every overlap polygon's
    vertices (a few points, without the bounding box); gwcs chains and inverts the WCS's
    pipeline again at every call.  Where gwcs would only evaluate that transform (plain arrays,
    no units, 2-D frames, no bounding box asked for), the one built here is evaluated; any other
    call is gwcs' own.  The WCS is not changed while the step runs."""
    try:
        backward = wcs.backward_transform
        plain = (backward is not None and not backward.uses_quantity
                 and getattr(wcs.input_frame, "naxes", None) == 2 and getattr(wcs.output_frame, "naxes", None) == 2)
    except (NotImplementedError, AttributeError):
        plain = False
    if not plain:
        return wcs.invert

    def invert(*args, with_bounding_box=True, fill_value=np.nan, **kwargs):
        if (with_bounding_box and wcs.bounding_box is not None) or kwargs or len(args) != 2 or not all(
                type(a) is np.ndarray for a in args):
            return wcs.invert(*args, with_bounding_box=with_bounding_box, fill_value=fill_value, **kwargs)
        return backward(*args, with_bounding_box=with_bounding_box, fill_value=fill_value)

    return invert


def _scan_rows(polygon, data):
    """gwcs' ``Polygon.scan``: the same pixels of ``data`` set to the polygon's id, the scan lines'
    crossings computed for all lines at once.

    gwcs walks the polygon's bounding box one scan line at a time, keeping a table of the edges the
    line crosses (an edge from its lower row up to, not including, its upper row; at the box's last
    row, the edges that end there), intersecting each with the line as two NumPy vectors and filling
    between pairs of sorted crossings (rounded up).  stcal's skymatch scans the pixels of every
    overlap this way, about a thousand Python-level intersections a polygon on a 1024^2 exposure.
    Here each edge's crossings of all its rows are computed in one go, with the same integer and
    float operations in the same order (so the same values), and each row filled as gwcs fills it."""
    verts = np.asarray(polygon._vertices)
    bx0, by0, bw, bh = polygon._bbox
    if bw <= 0 or len(verts) < 2:
        return data
    ny, nx = data.shape
    last = by0 + bh  # gwcs' last scan line: its edge table is not updated there
    start, stop = verts[:-1], verts[1:]
    keep = start[:, 1] != stop[:, 1]  # horizontal edges never enter the table
    start, stop = start[keep], stop[keep]
    rows, xs = [], []
    for (sx, sy), (ex, ey) in zip(start, stop):
        ylo, yhi = min(sy, ey), max(sy, ey)
        # the scan lines this edge is active on: [ylo, yhi), and yhi itself when it is the last line
        y = np.arange(ylo, yhi + 1 if yhi == last else yhi, dtype=np.int64)
        u0, u1 = ex - sx, ey - sy
        w1 = sy - y
        # gwcs: t = det(v, w) / det(u, v) with v = (bw, 0), w = start - (bx0, y); x = t * u0 + start_x
        d = np.int64(u0) * np.int64(0) - np.int64(u1) * np.int64(bw)
        if d == 0:
            x = np.full(y.shape, float(sx))
        else:
            x = (np.int64(bw) * w1 - np.int64(0) * (sx - bx0)) / d * u0 + sx
        rows.append(y)
        xs.append(np.ceil(x).astype(np.int64))
    if not rows:
        return data
    y = np.concatenate(rows)
    x = np.concatenate(xs)
    order = np.lexsort((x, y))
    y, x = y[order], x[order]
    cuts = np.flatnonzero(np.diff(y)) + 1
    shiftx, shifty, rid = polygon._shiftx, polygon._shifty, polygon._rid
    for ys, xrow in zip(np.split(y, cuts), np.split(x, cuts)):
        ysh = int(ys[0]) + shifty
        if ysh < 0 or ysh >= ny:
            continue
        row = data[ysh]
        for i, j in zip(xrow[::2].tolist(), xrow[1::2].tolist()):
            xstart = max(0, i + shiftx)
            xend = min(j + shiftx, nx - 1)
            row[xstart: xend + 1] = rid  # a Python slice, as gwcs' (a negative end counts from the right)
    return data


def _install_fast_scan() -> None:
    """stcal's SkyImage makes its overlap masks with gwcs' ``region.Polygon``; it gets a subclass
    whose ``scan`` is :func:`_scan_rows` (everything else of the polygon is gwcs')."""
    import types

    import stcal.skymatch.skyimage as si
    from gwcs import region

    if getattr(si.region, "_webbflow_scan", False):
        return

    class Polygon(region.Polygon):
        def scan(self, data):
            return _scan_rows(self, data)

    si.region = types.SimpleNamespace(Polygon=Polygon, _webbflow_scan=True)


def match_sky(library, params: SkyMatchParams):
    """Compute the skies of the library's exposures and record them; returns the library."""
    from stcal.skymatch import SkyGroup, SkyImage, SkyStats, skymatch

    if params.skymethod == "user":
        return _user_sky(library, params)
    _install_fast_scan()
    bits = good_pixel_bits(params.dqbits)
    stats = SkyStats(skystat=params.skystat, lower=params.lower, upper=params.upper, nclip=params.nclip,
                     lsig=params.lsigma, usig=params.usigma, binwidth=params.binwidth)
    scratch = _Scratch()
    try:
        images = []
        for gindex, (_gid, indices) in enumerate(library.group_indices.items()):
            members = []
            for i in indices:
                model = library.borrow(i)
                try:
                    mask = good_pixels(model, bits)
                    level = _previous_level(model, params.subtract)
                    if library.in_memory(i):
                        data = model.data
                    else:
                        data = scratch.array(f"data{i}", model.data)
                        mask = scratch.array(f"mask{i}", mask)
                    # the WCS is only evaluated, never changed: no copy (a member shelved to disk
                    # keeps its WCS object alive through these references)
                    wcs = model.meta.wcs
                    sky = SkyImage(image=data, wcs_fwd=wcs.__call__, wcs_inv=_inverse(wcs), mask=mask,
                                   sky_id=model.meta.filename, skystat=stats, stepsize=params.stepsize,
                                   meta={"index": i})
                    if params.subtract:
                        sky.sky = level
                    members.append(sky)
                finally:
                    library.shelve(i, model, modify=False)
                    del model
            if len(members) == 1:
                images.extend(members)
            else:
                images.append(SkyGroup(members, sky_id=gindex))

        skymatch(images, skymethod=params.skymethod, match_down=params.match_down, subtract=params.subtract)

        results = {}
        for im in images:
            for sky in ([im] if isinstance(im, SkyImage) else list(im)):
                results[sky.meta["index"]] = sky
        for i, model in library.each(modify=True):
            sky = results[i]
            if sky.is_sky_valid:
                bg = model.meta.background
                bg.method = params.skymethod
                bg.level = float(sky.sky)
                bg.subtracted = params.subtract
                if params.subtract and sky.image is not model.data:
                    model.data[...] = sky.image[...]
                model.meta.cal_step.skymatch = "COMPLETE"
                log.info("%s: sky %.6g %s", model.meta.filename, sky.sky, model.meta.bunit_data or "")
            else:
                model.meta.cal_step.skymatch = "SKIPPED"
                log.warning("%s: sky could not be measured; left alone", model.meta.filename)
    finally:
        scratch.close()
    return library


@step("skymatch", "SkyMatchStep", params=SkyMatchParams, suffix="skymatch", input_class="ModelLibrary")
def skymatch_step(models_in, refs, params: SkyMatchParams):
    """Measure and equalise (or subtract) the sky background of overlapping exposures."""
    library = as_library(models_in, params.in_memory)
    match_sky(library, params)
    return give_back(library, models_in)


STEPS["skymatch"].extra["records_status"] = True
