"""bkg_subtract: subtract dedicated background exposures (jwst's BackgroundStep, imaging).

In a level-2 association an exposure may come with background members
(``exptype: background``): exposures of empty sky taken with the same
configuration.  They are combined into one background image and subtracted:

1. each background is placed on the science exposure's pixels (subarrays are
   matched through SUBSTRT/SUBSIZE; pixels it does not cover are NaN); a
   rateints (3-D) background is first sigma-clipped along its integrations
   and averaged;
2. the backgrounds are sigma-clipped pixel by pixel across exposures
   (``sigma``, ``maxiters``) and the survivors averaged;
3. the average is subtracted from SCI and the backgrounds' DQ flags are OR'ed
   into the science DQ.  As in jwst, ERR and the variances are left as they
   are; the combined background's uncertainty (the error of the mean) is
   kept on the combined background product, which ``save_combined_background``
   writes (suffix ``combinedbackground``).

The backgrounds come from ``bkg_list`` (file names, or in-memory models when
the function is called directly); the image2 flow fills it from the
association.  WFSS exposures (NRC_WFSS, NIS_WFSS) subtract the scaled bkg reference
instead (tasks/_bkg_wfss.py); SOSS background subtraction is not handled here.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np

from ..errors import UnsupportedModeError
from .base import StepParams, step

log = logging.getLogger("webbflow.steps.bkg_subtract")

WFSS_TYPES = {"NIS_WFSS", "NRC_GRISM", "NRC_WFSS", "MIR_WFSS"}


class BkgSubtractParams(StepParams):
    bkg_list: list[str] | None = None  # background exposures (the association's background members take precedence in a flow)
    save_combined_background: bool = False  # write the combined background (suffix combinedbackground)
    sigma: float = 3.0  # clipping threshold, in standard deviations
    maxiters: int | None = None  # clipping iterations; None: until nothing more is clipped
    soss_source_percentile: float = 35.0  # NIRISS SOSS only (not handled here)
    soss_bkg_percentile: list[float] | None = None  # NIRISS SOSS only (not handled here)
    wfss_mmag_extract: float | None = None  # WFSS: mask only sources brighter than this AB magnitude
    wfss_mask: str | None = None  # WFSS: an image whose MASK array (True = background) replaces the catalogue mask
    wfss_maxiter: int = 5  # WFSS: outlier-rejection iterations of the background scaling
    wfss_rms_stop: float = 0.0  # WFSS: stop when the residual RMS improves by less than this percent (0: never)
    wfss_outlier_percent: float = 1.0  # WFSS: percentile rejected at each end per iteration


# ---------------------------------------------------------------------------
# placing a background on the science pixels


def _window(model) -> tuple[int, int, int, int]:
    """(x0, x1, y0, y1): 0-based, end-exclusive detector window of a model, from its subarray keywords."""
    from ._subarray import full_frame_shape

    s = model.meta.subarray
    if None in (s.xstart, s.ystart, s.xsize, s.ysize):
        fy, fx = full_frame_shape(model)
        if model.data.shape[-2:] != (fy, fx):
            from ..errors import InputFileError

            raise InputFileError(model.meta.filename or "<in memory>", "has no SUBSTRT/SUBSIZE keywords and is not full frame")
        return 0, fx, 0, fy
    return s.xstart - 1, s.xstart - 1 + s.xsize, s.ystart - 1, s.ystart - 1 + s.ysize


def _overlap(sci_win, bkg_win) -> bool:
    sx0, sx1, sy0, sy1 = sci_win
    bx0, bx1, by0, by1 = bkg_win
    return not (sx1 <= bx0 or bx1 <= sx0 or sy1 <= by0 or by1 <= sy0)


def _on_science_pixels(sci, bkg):
    """(data, err, dq) of ``bkg`` on the science window: NaN (DQ 0) where the background does not reach."""
    sx0, sx1, sy0, sy1 = _window(sci)
    bx0, bx1, by0, by1 = _window(bkg)
    x0, x1 = max(sx0, bx0), max(min(sx1, bx1), max(sx0, bx0))
    y0, y1 = max(sy0, by0), max(min(sy1, by1), max(sy0, by0))
    shape = list(sci.data.shape)
    if sci.data.ndim == 3:
        shape[0] = bkg.data.shape[0]
    data = np.full(shape, np.nan, dtype=bkg.data.dtype)
    err = np.full(shape, np.nan, dtype=bkg.data.dtype)
    dq = np.zeros(shape, dtype=np.uint32)
    # cut from the background, then paste at the science array's origin (as jwst does)
    ys = slice(y0 - by0, y1 - by0)
    xs = slice(x0 - bx0, x1 - bx0)
    d = bkg.data[..., ys, xs]
    e = bkg.err[..., ys, xs]
    q = bkg.dq[..., ys, xs]
    ny, nx = d.shape[-2], d.shape[-1]
    data[..., :ny, :nx] = d
    err[..., :ny, :nx] = e
    dq[..., :ny, :nx] = q
    return data, err, dq


def _open(bkg, arrays=None):
    from .. import models

    if isinstance(bkg, (str, Path)):
        return models.open(bkg, arrays=arrays)
    return bkg


def _sigma_clip(a, sigma, maxiters, axis=0):
    from astropy.stats import sigma_clip
    from astropy.utils.exceptions import AstropyUserWarning

    with warnings.catch_warnings():
        # NaNs and infs are clipped: that is intended
        warnings.filterwarnings("ignore", category=AstropyUserWarning, message=".*automatically clipped.*")
        return sigma_clip(a, sigma=sigma, maxiters=maxiters, axis=axis)


def average_background(sci, backgrounds, sigma: float = 3.0, maxiters: int | None = None):
    """The combined background of ``backgrounds`` (paths or models) on ``sci``'s pixels, as an ImageModel.

    ``data``: sigma-clipped mean across backgrounds; ``err``: the
    uncertainty of that mean, sqrt(sum err**2) / n over the kept values;
    ``dq``: the OR of the backgrounds' DQ.
    """
    from .. import models

    backgrounds = list(backgrounds)
    if not backgrounds:
        raise ValueError("no background exposures to combine")
    image_shape = sci.data.shape[-2:]
    n = len(backgrounds)
    cdata = np.zeros((n,) + image_shape)
    cerr = cdata.copy()
    dq = np.zeros(image_shape, dtype=np.uint32)
    sci_win = _window(sci)
    cube = sci.data.ndim == 3
    accum_dq = np.zeros(image_shape, dtype=np.uint32)
    for i, b in enumerate(backgrounds):
        bkg = _open(b, arrays=("data", "err", "dq"))  # the variances are not used
        log.info("Accumulating background %s", getattr(bkg.meta, "filename", None) or b)
        if not _overlap(sci_win, _window(bkg)):
            log.debug("%s does not overlap the science exposure", b)
            cdata[i] = np.nan
            cerr[i] = np.nan
            continue
        bdata, berr, bdq = _on_science_pixels(sci, bkg)
        del bkg
        if not cube:
            cdata[i] = bdata
            cerr[i] = berr * berr
            dq |= bdq
        else:
            # average each background's integrations first, clipped
            for rows in _row_blocks(bdata):
                cdata[i, rows] = _sigma_clip(bdata[:, rows], sigma, maxiters).mean(axis=0)
                e = berr[:, rows]
                cerr[i, rows] = _sigma_clip(e * e, sigma, maxiters).mean(axis=0)
            for k in range(bdq.shape[0]):
                accum_dq = np.bitwise_or(bdq[k], accum_dq)
            dq |= accum_dq
        del bdata, berr, bdq
    data = np.empty(image_shape, dtype=np.float32)
    err = np.empty(image_shape, dtype=np.float32)
    for rows in _row_blocks(cdata):
        clipped = _sigma_clip(cdata[:, rows], sigma, maxiters)
        data[rows] = clipped.mean(axis=0).data
        merr = np.ma.masked_array(cerr[:, rows], mask=clipped.mask)
        with np.errstate(invalid="ignore", divide="ignore"):
            err[rows] = (np.sqrt(merr.sum(axis=0)) / (n - merr.mask.sum(axis=0))).data
    out = models.ImageModel(data=data)
    out.err = err
    out.dq = dq
    return out


# bytes of one block of rows that a clipping pass takes at a time (astropy's sigma_clip makes about
# fifteen temporaries the size of its input: a whole 1024 x 1032 float64 stack peaked at +120 MiB)
CLIP_BLOCK_BYTES = 2 << 20


def _row_blocks(stack):
    """Slices of rows of ``stack`` (..., ny, nx) of about CLIP_BLOCK_BYTES each.  Clipping along the
    first axis treats each pixel alone (its own median, deviation and iterations: a pixel that has
    converged is not clipped again), so block by block gives the whole stack's answer, bit for bit."""
    ny = stack.shape[-2]
    row_bytes = max(1, stack[..., :1, :].nbytes)
    step = max(1, min(ny, CLIP_BLOCK_BYTES // row_bytes))
    return [slice(y, min(y + step, ny)) for y in range(0, ny, step)]


def _same_grating_tilt(sci, backgrounds, atol: float = 1.0e-8) -> bool:
    """NIRSpec: a background is subtracted only if the grating wheel sat where it sat for the science
    exposure (GWA_XTIL, GWA_YTIL equal within 1e-8, as jwst checks)."""
    ins = sci.meta.instrument
    for b in backgrounds:
        other = _open(b).meta.instrument
        if not np.allclose((ins.gwa_xtilt, ins.gwa_ytilt), (other.gwa_xtilt, other.gwa_ytilt), atol=atol, rtol=0):
            return False
    return True


def subtract_background(sci, backgrounds, sigma: float = 3.0, maxiters: int | None = None):
    """Subtract the combined background from ``sci`` in place; returns (sci, combined background model)."""
    bkg = average_background(sci, backgrounds, sigma, maxiters)
    log.info("Subtracting the average background from %s", sci.meta.filename or "the exposure")
    sci.data -= bkg.data
    sci.dq |= bkg.dq
    return sci, bkg


@step("bkg_subtract", "BackgroundStep", params=BkgSubtractParams, suffix="bsub", input_class="ImageModel",
      optional_reftypes=("bkg", "wavelengthrange"))
def bkg_subtract(model, refs, params: BkgSubtractParams, backgrounds=None):
    """Subtract the sigma-clipped mean of dedicated background exposures (the association's background members)."""
    exp_type = (model.meta.exposure.type or "").upper()
    if exp_type in ("NRC_WFSS", "NIS_WFSS"):  # the bkg reference scaled to the exposure (tasks/_bkg_wfss.py)
        from ._bkg_wfss import subtract_wfss_background

        if refs.get("bkg") is None:
            log.warning("No bkg reference for %s; bkg_subtract skipped", exp_type)
            return model, "SKIPPED"
        return subtract_wfss_background(model, refs["bkg"], refs.get("wavelengthrange"), params)
    if exp_type in WFSS_TYPES or exp_type == "NIS_SOSS":
        raise UnsupportedModeError(f"bkg_subtract for {exp_type} (reference-file background) is not implemented")
    bkg_list = list(backgrounds) if backgrounds is not None else [b for b in (params.bkg_list or []) if b]
    if not bkg_list:
        log.warning("No background list provided; bkg_subtract skipped")
        return model, "SKIPPED"
    if (model.meta.instrument.name or "").upper() == "NIRSPEC" and not _same_grating_tilt(model, bkg_list):
        log.warning("GWA_XTIL and GWA_YTIL of the backgrounds differ from the science exposure's; "
                    "bkg_subtract skipped")
        return model, "SKIPPED"
    model, combined = subtract_background(model, bkg_list, params.sigma, params.maxiters)
    if params.save_combined_background:
        from ..models.naming import product_path

        path = product_path(params.output_dir or Path.cwd(), model.meta.filename or "background.fits", "combinedbackground")
        combined.meta.filename = path.name
        combined.save(path)
        log.info("Combined background written to %s", path)
    return model


def _register_wfss_references():
    from ._bkg_wfss import reftypes_needed
    from .base import STEPS

    # the bkg and wavelengthrange references serve WFSS exposures only (as jwst asks for them)
    STEPS["bkg_subtract"].extra["optional_reftypes_needed"] = reftypes_needed


_register_wfss_references()
