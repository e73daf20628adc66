"""outlier_detection: flag cosmic rays and other outliers by comparing exposures (jwst's
OutlierDetectionStep, imaging mode).

1. Each exposure group (the detectors of one exposure) is drizzled alone
   onto the common output grid that resample would choose (resample's own
   code: ``pixfrac``, ``kernel``, ``fillval``, ``weight_type`` weights,
   pixels with DQ flags other than those ``good_bits`` allows left out).
2. In each drizzled image, pixels whose weight is below ``maskpt`` times
   the sigma-clipped mean weight are set to NaN; the median of the drizzled
   images, pixel by pixel, ignoring NaNs, is the outlier-free sky (stcal's
   ``MedianComputer``; on disk, in sections, when the exposures are kept on
   disk, so that memory does not grow with their number).
3. The median is blotted (interpolated) back onto each exposure's pixels
   (stcal's ``gwcs_blot``), with the exposure's unsubtracted sky level
   (``meta.background``, else ``backg``) added.
4. A pixel is an outlier (stcal's ``flag_resampled_crs``) when it differs
   from the blot by more than ``snr1`` times its error plus ``scale1`` times
   the blot's local gradient, or, next to such a pixel, by more than
   ``snr2`` times its error plus ``scale2`` times the gradient.  Outliers
   get DQ ``DO_NOT_USE | OUTLIER`` and NaN in SCI, ERR and the variances.

With ``resample_data=False`` the exposures are compared pixel to pixel
(they must share a grid) against their plain median with ``snr1`` only.

``save_results`` writes each exposure as ``<root>_<asn_id>_crf.fits`` (or
``<root>_crf.fits`` without an association id); ``save_intermediate_results``
adds the drizzled images, the median and the blots.

Slit spectra (jwst's ``spec`` mode: NRS_FIXEDSLIT, NRS_MSASPEC,
MIR_LRS-FIXEDSLIT, NRC_WFSS, NIS_WFSS SlitModels, one slit in several
exposures) go the same way with resample_spec's rectified grid
(:mod:`.resample_spec`) instead of a sky grid: each exposure group is
drizzled with its error (``driz_err``), the median of the drizzled errors
is blotted back too, and it replaces the exposure's own ERR in the
comparison.  Only NIRSpec slits have such a grid here.

A TSO cube of integrations (jwst's ``tso`` mode) is compared with its own
median over time (:mod:`.outlier_detection_tso`), and so is a coronagraphic
cube (jwst's ``coron`` mode, :mod:`.outlier_detection_coron`).  jwst's IFU mode
is not implemented: such inputs raise an unsupported-mode error.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from ..errors import ParameterError, UnsupportedModeError, a_an
from ..models import dqflags
from ._library import as_library, give_back, member_root
from .base import STEPS, StepParams, report_qa, step

log = logging.getLogger("webbflow.steps.outlier_detection")

IMAGE_MODES = {"NRC_IMAGE", "MIR_IMAGE", "NRS_IMAGE", "NIS_IMAGE", "FGS_IMAGE"}
SPEC_MODES = {"NRC_WFSS", "MIR_LRS-FIXEDSLIT", "NRS_FIXEDSLIT", "NRS_MSASPEC", "NIS_WFSS"}
OTHER_MODES = {
    "TSO": {"NIS_SOSS", "MIR_LRS-SLITLESS", "NRC_TSGRISM", "NRS_BRIGHTOBJ", "NRC_TSIMAGE"},
    "IFU": {"NRS_IFU", "MIR_MRS"},
    "coronagraphic": {"NRC_CORON", "MIR_LYOT", "MIR_4QPM"},
}


class OutlierDetectionParams(StepParams):
    weight_type: Literal["ivm", "exptime"] = "ivm"  # drizzle weighting
    pixfrac: float = Field(1.0, ge=0.0, le=1.0)  # drizzle pixel shrinkage
    kernel: Literal["square", "point", "turbo"] = "square"  # drizzle kernel
    fillval: str = "NAN"  # value of drizzled pixels with no input
    maskpt: float = 0.7  # weight fraction below which drizzled pixels are ignored
    snr: str = "5.0 4.0"  # detection thresholds: first pass, neighbours
    scale: str = "1.2 0.7"  # gradient scale factors: first pass, neighbours
    backg: float = 0.0  # background added to the blot when none is recorded
    kernel_size: str = "7 7"  # IFU mode only
    threshold_percent: float = 99.8  # IFU mode only
    rolling_window_width: int = 25  # TSO mode only (not implemented)
    ifu_second_check: bool = False  # IFU mode only
    save_intermediate_results: bool = False  # write drizzled images, median and blots
    resample_data: bool = True  # compare on the drizzled grid (False: pixel to pixel)
    good_bits: str = "~DO_NOT_USE"  # DQ flags a pixel may have and still be used
    search_output_file: bool = False  # jwst compatibility: look for a previous output file (unused)
    in_memory: bool = True  # False: exposures and the median stack in temporary files
    pixmap_stepsize: float = 1.0  # pixel map evaluated every this many pixels
    pixmap_order: int = 1  # spline order of its interpolation (1 or 3)

    def model_post_init(self, _ctx) -> None:
        for name in ("snr", "scale"):
            try:
                values = [float(v) for v in getattr(self, name).split()]
            except ValueError:
                values = []
            if len(values) != 2:
                raise ParameterError(f"step outlier_detection: {name!r} must be two numbers, e.g. '5.0 4.0' (got {getattr(self, name)!r})")
        if self.pixmap_order not in (1, 3):
            raise ParameterError(f"step outlier_detection: 'pixmap_order' must be 1 or 3 (got {self.pixmap_order})")

    @property
    def snr_pair(self) -> tuple[float, float]:
        a, b = (float(v) for v in self.snr.split())
        return a, b

    @property
    def scale_pair(self) -> tuple[float, float]:
        a, b = (float(v) for v in self.scale.split())
        return a, b


def _check_mode(library) -> str:
    """``"imaging"`` or ``"spec"``; other modes raise an unsupported-mode error."""
    exp_type = (library.read_metadata(0).exposure.type or "").upper()
    if exp_type in IMAGE_MODES:
        return "imaging"
    if exp_type in SPEC_MODES:
        return "spec"
    for mode, types in OTHER_MODES.items():
        if exp_type in types:
            raise UnsupportedModeError(
                f"outlier_detection: {exp_type} needs jwst's {mode} mode, which is not implemented here (imaging only)"
            )
    raise UnsupportedModeError(f"outlier_detection: exposure type {exp_type or '(none)'} is not an imaging mode")


def _resample_params(params: OutlierDetectionParams):
    from .resample import ResampleParams

    return ResampleParams(
        pixfrac=params.pixfrac, kernel=params.kernel, fillval=params.fillval, weight_type=params.weight_type,
        enable_ctx=False, pixmap_stepsize=params.pixmap_stepsize, pixmap_order=params.pixmap_order,
    )


def _intermediate_path(library, params, name: str) -> Path:
    out = Path(params.output_dir or ".")
    return out / name


# elements of the stack whose median one call of np.nanmedian computes (a few MiB of its work arrays)
_MEDIAN_BLOCK = 1 << 18


class _StackMedian:
    """The median over the first axis of a stack of images held in memory, ignoring NaNs: stcal's
    in-memory ``MedianComputer`` (same ``append``/``evaluate``), the same values bit for bit.

    stcal calls ``np.nanmedian`` once per row of the output to bound its work arrays; this calls it
    on blocks of rows holding about ``_MEDIAN_BLOCK`` elements of the stack, which bounds them as
    well.  Each pixel's median comes from the same per-pixel sort and middle values whatever the
    block (numpy sorts along the stacked axis pixel by pixel), so only the per-call cost goes:
    for 4 exposures of 512x512 about a third of stcal's CPU time."""

    def __init__(self, full_shape: tuple, dtype) -> None:
        self.stack = np.empty(full_shape, dtype=dtype)

    def append(self, data: np.ndarray, idx: int) -> None:
        self.stack[idx] = data

    def evaluate(self) -> np.ndarray:
        import warnings

        cube = self.stack
        n, ny = cube.shape[0], cube.shape[1]
        per_row = max(1, int(np.prod(cube.shape[2:], dtype=np.int64)) * n)
        rows = max(1, _MEDIAN_BLOCK // per_row)
        out = np.empty(cube.shape[1:], dtype=cube.dtype)
        with warnings.catch_warnings():
            warnings.filterwarnings(action="ignore", message="All-NaN slice encountered", category=RuntimeWarning)
            for r0 in range(0, ny, rows):
                # the stack is not needed afterwards: sorted in place, as stcal does
                np.nanmedian(cube[:, r0:r0 + rows], axis=0, overwrite_input=True, out=out[r0:r0 + rows])
        self.stack = None
        return out


def _median_computer(full_shape: tuple, on_disk: bool, dtype):
    """Where the drizzled images go for their median: stcal's on-disk computer, or the stack in memory."""
    if on_disk:
        from stcal.outlier_detection.median import MedianComputer

        return MedianComputer(full_shape, False, None, dtype)
    return _StackMedian(full_shape, dtype)


def median_with_resampling(library, params: OutlierDetectionParams, on_disk: bool):
    """The median of the exposure groups drizzled onto the common grid: ``(median, wcs)``."""
    from .resample import _sharing, shared_store

    with _sharing(shared_store(library)):  # the grid and pixel maps, which resample reuses
        return _median_with_resampling(library, params, on_disk)


def _median_with_resampling(library, params: OutlierDetectionParams, on_disk: bool):
    from ._threads import fork_map
    from .resample import _shared_grid, shared_entries_since, shared_store, take_shared_entries

    rparams = _resample_params(params)
    stubs = [library.stub(i, copy=False) for i in range(len(library))]  # read only
    grid = _shared_grid(stubs, rparams)
    groups = list(library.group_indices.values())
    store = shared_store(library)
    # the groups' drizzles are independent: side by side on forked processes when the members and
    # the median's stack are in memory (a child reads the members as the fork left them) and
    # nothing is written on the way
    parallel = store is not None and not on_disk and not params.save_intermediate_results
    marks = {k: len(v) for k, v in store.items()} if store is not None else {}

    def one(g):
        data, wcs = _drizzle_group(library, params, rparams, grid, g, groups)
        if parallel:  # what the shared store gained (the members' pixel maps), for the parent to keep
            return data, wcs, shared_entries_since(marks)
        return data, wcs, None

    done = fork_map(one, range(len(groups))) if parallel else [one(g) for g in range(len(groups))]
    computer = None
    median_wcs = None
    objects = [m.meta.wcs for m in stubs] + [grid["wcs"]]
    for g, (data, wcs, entries) in enumerate(done):
        if computer is None:  # the first group is always drizzled here: its WCS is this process's grid
            median_wcs = wcs
            computer = _median_computer((len(groups),) + data.shape, on_disk, data.dtype)
        if entries:
            take_shared_entries(entries, objects)
        computer.append(data, g)
        done[g] = None
        del data
    return computer.evaluate(), median_wcs


def _drizzle_group(library, params: OutlierDetectionParams, rparams, grid: dict, g: int, groups: list):
    """Group ``g`` drizzled onto the grid, its pixels of too little weight set to NaN: ``(data, wcs)``."""
    from stcal.outlier_detection.utils import compute_weight_threshold

    from ._threads import in_child
    from .resample import _drizzle

    indices = groups[g]
    borrowed = [(i, library.borrow(i)) for i in indices]
    try:
        log.info("Drizzling %d exposure(s) of group %d/%d onto the common grid", len(indices), g + 1, len(groups))
        # only the arrays are needed unless the drizzled images are written
        drizzled = _drizzle([m for _i, m in borrowed], dict(grid), rparams, enable_var=False, report_var=False,
                            compute_err=None, good_bits=params.good_bits,
                            bare=not params.save_intermediate_results)
    finally:
        for i, m in borrowed:
            library.shelve(i, m, modify=False)
        del borrowed
    if params.save_intermediate_results:
        root = member_root(drizzled.meta.filename or f"group{g}")
        name = f"{root}_{library.asn_id}_outlier_i2d.fits" if library.asn_id else f"{root}_outlier_i2d.fits"
        drizzled.save(_intermediate_path(library, params, name))
        drizzled = {"data": drizzled.data, "wht": drizzled.wht, "wcs": drizzled.meta.wcs}
    data, wht = drizzled["data"], drizzled["wht"]
    threshold = compute_weight_threshold(wht, params.maskpt)
    data[wht < threshold] = np.nan
    return data, (None if in_child() else drizzled["wcs"])


def median_without_resampling(library, params: OutlierDetectionParams, on_disk: bool):
    """The pixel-by-pixel median of the exposures themselves (all on one grid): ``(median, wcs)``."""
    from stcal.outlier_detection.utils import compute_weight_threshold
    from stcal.resample.utils import build_driz_weight

    from .resample import _as_dict

    import copy

    computer = None
    median_wcs = None
    shape = None
    for i, model in library.each(modify=False):
        data = model.data.copy()
        weight = build_driz_weight(_as_dict(model, params.weight_type, False, None), weight_type=params.weight_type,
                                   good_bits=params.good_bits, flag_name_map=dqflags.PIXEL)
        if computer is None:
            shape = data.shape
            median_wcs = copy.deepcopy(model.meta.wcs)
            computer = _median_computer((len(library),) + data.shape, on_disk, data.dtype)
        elif data.shape != shape:
            raise ParameterError(
                f"step outlier_detection: resample_data=False needs exposures of one shape; "
                f"{model.meta.filename} is {data.shape}, the first is {shape}"
            )
        data[weight < compute_weight_threshold(weight, params.maskpt)] = np.nan
        computer.append(data, i)
    return computer.evaluate(), median_wcs


def flag_outliers(library, params: OutlierDetectionParams):
    """Flag outliers in every exposure of ``library`` in place; returns the library."""
    if len(library) < 2:
        # jwst 3.0 records this as FAILED (S_OUTLIR), in every mode that needs two exposures
        log.warning("outlier_detection needs at least two exposures (got %d): skipped", len(library))
        library.mark_step("outlier_detection", "FAILED")
        return library
    from ._outlier_ifu import IFU_TYPES, flag_outliers_ifu

    if (library.read_metadata(0).exposure.type or "").upper() in IFU_TYPES:  # mode ifu: tasks/_outlier_ifu.py
        return flag_outliers_ifu(library, params)
    if _check_mode(library) == "spec":
        return flag_outliers_spec(library, params)
    counts = (0, 0)  # pixels flagged, pixels looked at
    on_disk = not params.in_memory or not all(library.in_memory(i) for i in range(len(library)))
    if params.resample_data:
        median, median_wcs = median_with_resampling(library, params, on_disk)
    else:
        median, median_wcs = median_without_resampling(library, params, on_disk)
    if params.save_intermediate_results:
        from .. import models

        med = models.ImageModel(data=median.astype(np.float32))
        med.meta = library.read_metadata(0).model_copy(deep=True)
        med.meta.wcs = median_wcs
        base = library.product_name or member_root(library.read_metadata(0).filename or "outlier")
        med.save(_intermediate_path(library, params, f"{base}_{library.asn_id}_median.fits" if library.asn_id
                                    else f"{base}_median.fits"))

    from .resample import _install_pixmap_sharing, _sharing, shared_store

    _install_pixmap_sharing()
    with _sharing(shared_store(library) if params.resample_data else None):  # the drizzles' pixel maps
        counts = _flag_each(library, params, median, median_wcs, counts)
    report_qa(**{"outlier %": round(100.0 * counts[0] / max(counts[1], 1), 4)})
    return library


def _flag_each(library, params: OutlierDetectionParams, median, median_wcs, counts):
    """Blot the median back onto each exposure and flag its outliers; returns the updated counts."""
    from .flat_field import match_nans_and_flags
    from .resample import _SHARED

    flag_bits = np.uint32(dqflags.DO_NOT_USE | dqflags.OUTLIER)
    masks = None
    if params.resample_data and not params.save_intermediate_results and _SHARED.get() is not None:
        # each member's blot and comparison are independent: side by side on forked processes (the
        # members in memory, their pixel maps in the shared store); the flags are set here
        masks = library.map_forked(lambda i, model: _outlier_mask(library, params, model, i, median, median_wcs))
    for i, model in library.each(modify=True):
        mask = _outlier_mask(library, params, model, i, median, median_wcs) if masks is None else masks[i]
        model.dq |= mask.astype(np.uint32) * flag_bits
        match_nans_and_flags(model)
        model.meta.cal_step.outlier_detection = "COMPLETE"
        log.info("%s: %d pixels flagged as outliers", model.meta.filename, int(np.count_nonzero(mask)))
        counts = (counts[0] + int(np.count_nonzero(mask)), counts[1] + int(mask.size))
        if masks is not None:
            masks[i] = None
    return counts


def _outlier_mask(library, params: OutlierDetectionParams, model, i: int, median, median_wcs):
    """The member's outliers: where it differs from the median blotted onto it (or from the median)."""
    from stcal.outlier_detection.utils import flag_crs, flag_resampled_crs, gwcs_blot

    snr1, snr2 = params.snr_pair
    scale1, scale2 = params.scale_pair
    if not params.resample_data:
        return flag_crs(model.data, model.err, median, snr1)
    blot = gwcs_blot(median_data=median, median_wcs=median_wcs, blot_shape=model.data.shape,
                     blot_wcs=model.meta.wcs, fillval=np.nan, pixmap_stepsize=params.pixmap_stepsize,
                     pixmap_order=params.pixmap_order)
    if params.save_intermediate_results:
        from .. import models

        b = models.ImageModel(data=blot.astype(np.float32))
        b.meta = model.meta.model_copy(deep=True)
        root = member_root(model.meta.filename or f"member{i}")
        b.save(_intermediate_path(library, params, f"{root}_{library.asn_id}_blot.fits" if library.asn_id
                                  else f"{root}_blot.fits"))
    backg = params.backg
    bg = model.meta.background
    if bg.subtracted is False and bg.level is not None:
        backg = bg.level
    return flag_resampled_crs(model.data, model.err, blot, snr1, snr2, scale1, scale2, backg)


def flag_outliers_spec(library, params: OutlierDetectionParams):
    """jwst's ``spec`` mode on a library of slit exposures: flags outliers in place; returns the library."""
    from stcal.outlier_detection.utils import compute_weight_threshold, flag_crs, flag_resampled_crs, gwcs_blot

    from .flat_field import match_nans_and_flags
    from .resample import ResampleParams, _drizzle, windowed_drizzles
    from .resample_spec import spectral_output_grid

    snr1, snr2 = params.snr_pair
    scale1, scale2 = params.scale_pair
    on_disk = not params.in_memory or not all(library.in_memory(i) for i in range(len(library)))
    members = [library.borrow(i) for i in range(len(library))]
    try:
        for m in members:
            if not hasattr(m, "data") or m.data is None or m.data.ndim != 2:
                raise UnsupportedModeError(
                    f"outlier_detection: spec mode compares 2-D slits of one source across exposures; "
                    f"{m.meta.filename or type(m).__name__} is {a_an(type(m).__name__)} (regroup by source first)"
                )
        if params.resample_data:
            grid = spectral_output_grid(members, good_bits=params.good_bits)
            rparams = ResampleParams(pixfrac=params.pixfrac, kernel=params.kernel, fillval=params.fillval,
                                     weight_type=params.weight_type, enable_ctx=False, pixmap_stepsize=1.0, pixmap_order=1)
            groups = list(library.group_indices.values())
            median = median_err = None
            for g, indices in enumerate(groups):
                with windowed_drizzles():  # the pixel maps of the drizzled pixels only
                    drizzled = _drizzle([members[i] for i in indices], dict(grid), rparams, enable_var=False,
                                        report_var=False, compute_err="driz_err", good_bits=params.good_bits)
                if params.save_intermediate_results:
                    root = member_root(members[indices[0]].meta.filename or f"group{g}")
                    drizzled.save(_intermediate_path(library, params, f"{root}_{library.asn_id}_outlier_s2d.fits"
                                                     if library.asn_id else f"{root}_outlier_s2d.fits"))
                if median is None:
                    shape = (len(groups),) + drizzled.data.shape
                    median = _median_computer(shape, on_disk, drizzled.data.dtype)
                    median_err = _median_computer(shape, on_disk, drizzled.data.dtype)
                low = drizzled.wht < compute_weight_threshold(drizzled.wht, params.maskpt)
                drizzled.data[low] = np.nan
                drizzled.err[low] = np.nan
                median.append(drizzled.data, g)
                median_err.append(drizzled.err, g)
                del drizzled
            med, med_err, med_wcs = median.evaluate(), median_err.evaluate(), grid["wcs"]
        else:
            med, med_err = _plain_median(members, params, on_disk)
        flag_bits = np.uint32(dqflags.DO_NOT_USE | dqflags.OUTLIER)
        for model in members:
            cut = (slice(None), slice(None))
            if params.resample_data:
                backg = params.backg
                bg = model.meta.background
                if bg.subtracted is False and bg.level is not None:
                    backg = bg.level
                found = _blots_in_window(med, med_err, med_wcs, model)
                if found is None:  # stcal's blots of the whole exposure
                    blot = gwcs_blot(median_data=med, median_wcs=med_wcs, blot_shape=model.data.shape,
                                     blot_wcs=model.meta.wcs, fillval=np.nan, pixmap_stepsize=1, pixmap_order=1)
                    blot_err = gwcs_blot(median_data=med_err, median_wcs=med_wcs, blot_shape=model.data.shape,
                                         blot_wcs=model.meta.wcs, fillval=np.nan, pixmap_stepsize=1, pixmap_order=1)
                else:
                    cut, blot, blot_err = found
                mask = flag_resampled_crs(model.data[cut], blot_err, blot, snr1, snr2, scale1, scale2, backg)
                del blot, blot_err
            else:
                mask = flag_crs(model.data, med_err, med, snr1)
            model.dq[cut] |= mask.astype(np.uint32) * flag_bits
            match_nans_and_flags(model)
            model.meta.cal_step.outlier_detection = "COMPLETE"
            log.info("%s: %d pixels flagged as outliers", model.meta.filename, int(np.count_nonzero(mask)))
    finally:
        for i, model in enumerate(members):
            library.shelve(i, model, modify=True)
    return library


# rows of an exposure's pixel map evaluated at once while looking for its finite part
_BLOT_SCAN_ROWS = 64
# pixels kept around the blotted window for flag_resampled_crs (its derivative and 3x3 smoothing
# reach one pixel; outside the window the blot is NaN and nothing is flagged)
_BLOT_MARGIN = 2
# the margin around an exposure's bounding box within which a blot window is looked for
_BLOT_SCAN_MARGIN = 16


def _blots_in_window(med, med_err, med_wcs, model):
    """stcal's two ``gwcs_blot`` of a slit exposure (median and its error), over the window where the
    exposure's pixel map to the median's grid is finite: ``(window, blot, blot_err)`` with the window
    a pair of slices grown by ``_BLOT_MARGIN`` pixels; None when that window is most of the exposure.

    A blot's pixel is drizzle's interpolation of the median at that pixel's map alone; where the map
    is NaN (both coordinates; stcal makes them -1, outside the median) it is the fill value, NaN.
    The map is scanned a block of rows at a time for its finite pixels (never whole in memory),
    then evaluated again over the window, one map for both blots (stcal makes it twice).  None of
    these evaluations is kept by the source's WCS cache: no other map is made on these grids."""
    from ._wcs_cache import evaluations_not_kept

    with evaluations_not_kept():
        return _blots_in_window_of(med, med_err, med_wcs, model)


def _blots_in_window_of(med, med_err, med_wcs, model):
    from drizzle.resample import blot_image

    from . import resample
    from .resample import _pixel_map

    ny, nx = model.data.shape
    wcs = model.meta.wcs
    bbox = resample._bbox_tuple(wcs)
    if bbox is None:
        return None
    # not scanned when the bounding box and a wide margin cover most of the exposure (a NIRSpec cutout):
    # the window, though not bounded by the box, would hardly be smaller (a decision only)
    (bx0, bx1), (by0, by1) = bbox
    m = _BLOT_SCAN_MARGIN
    box = (min(nx, bx1 + m) - max(0, bx0 - m)) * (min(ny, by1 + m) - max(0, by0 - m))
    if box > resample._WINDOW_WORTH * ny * nx:
        return None
    rows = cols = None
    for r0 in range(0, ny, _BLOT_SCAN_ROWS):
        r1 = min(ny, r0 + _BLOT_SCAN_ROWS)
        block = _pixel_map(wcs, med_wcs, (ny, nx), window=(r0, r1, 0, nx))
        finite = np.isfinite(block).any(axis=2)
        del block
        hit_rows = np.flatnonzero(finite.any(axis=1))
        if hit_rows.size:
            hit_cols = np.flatnonzero(finite.any(axis=0))
            rows = (r0 + hit_rows[0] if rows is None else rows[0], r0 + hit_rows[-1] + 1)
            cols = (hit_cols[0], hit_cols[-1] + 1) if cols is None else (min(cols[0], hit_cols[0]),
                                                                          max(cols[1], hit_cols[-1] + 1))
    if rows is None:
        rows = cols = (0, 0)
    m = _BLOT_MARGIN
    wr0, wr1 = max(0, rows[0] - m), min(ny, rows[1] + m)
    wc0, wc1 = max(0, cols[0] - m), min(nx, cols[1] + m)
    if (wr1 - wr0) * (wc1 - wc0) > resample._WINDOW_WORTH * ny * nx:
        return None
    pixmap = _pixel_map(wcs, med_wcs, (ny, nx), window=(wr0, wr1, wc0, wc1))
    pixmap[np.isnan(pixmap)] = -1  # as stcal's gwcs_blot
    blots = []
    for data in (med, med_err):
        out = np.full((wr1 - wr0, wc1 - wc0), np.nan, dtype=np.float32)
        blot_image(data=data, pixmap=pixmap, out_img=out, fillval=np.nan, iscale=1.0, interp="linear")
        blots.append(out)
    return (slice(wr0, wr1), slice(wc0, wc1)), blots[0], blots[1]


def _plain_median(members, params, on_disk):
    """Pixel-by-pixel medians of the exposures' data and errors (``resample_data=False``; one grid)."""
    from stcal.outlier_detection.utils import compute_weight_threshold
    from stcal.resample.utils import build_driz_weight

    from .resample import _as_dict

    shape = members[0].data.shape
    data_med = _median_computer((len(members),) + shape, on_disk, members[0].data.dtype)
    err_med = _median_computer((len(members),) + shape, on_disk, members[0].data.dtype)
    for i, model in enumerate(members):
        if model.data.shape != shape:
            raise ParameterError(
                f"step outlier_detection: resample_data=False needs exposures of one shape; "
                f"{model.meta.filename} is {model.data.shape}, the first is {shape}"
            )
        weight = build_driz_weight(_as_dict(model, params.weight_type, False, None), weight_type=params.weight_type,
                                   good_bits=params.good_bits, flag_name_map=dqflags.PIXEL)
        low = weight < compute_weight_threshold(weight, params.maskpt)
        data, err = model.data.copy(), model.err.copy()
        data[low] = np.nan
        err[low] = np.nan
        data_med.append(data, i)
        err_med.append(err, i)
    return data_med.evaluate(), err_med.evaluate()


@step("outlier_detection", "OutlierDetectionStep", params=OutlierDetectionParams, suffix="crf", input_class="ModelLibrary")
def outlier_detection(models_in, refs, params: OutlierDetectionParams):
    """Flag cosmic rays and other outliers against the median of the drizzled exposures."""
    from .outlier_detection_tso import flag_tso_outliers, is_tso_cube

    if is_tso_cube(models_in):  # mode tso: one exposure's integrations against their median
        flag_tso_outliers(models_in, params)
        return models_in
    from .outlier_detection_coron import flag_coron_outliers, is_coron_cube

    if is_coron_cube(models_in):  # mode coron: one coronagraphic exposure's integrations
        count = flag_coron_outliers(models_in, params)
        report_qa(**{"outlier %": round(100.0 * count / max(models_in.data.size, 1), 4)})
        return models_in
    library = as_library(models_in, params.in_memory)
    flag_outliers(library, params)
    if params.save_results:
        library.save_members(params.output_dir or ".", params.suffix or "crf")
    return give_back(library, models_in)


STEPS["outlier_detection"].extra["records_status"] = True
