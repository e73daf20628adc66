"""picture_frame: remove NIRSpec's thermal "picture frame" (jwst's PictureFrameStep).

Thermal emission raises the signal in a frame along the edges of NIRSpec
full-frame exposures.  The PICTUREFRAME reference holds the pattern as a
rate image.  The step, as jwst does it:

1. makes a draft rate from the ramp (ramp_fit with default parameters), or
   uses the rate or rateints it is given;
2. builds a background mask from it (NaN and zero pixels out, signal above
   ``n_sigma`` clipped out);
3. takes the median background level in a central region and in an edge
   band (rows/columns 4-74 and 1985-2042) of the reference and of each group
   (minus the first group) or each rate image;
4. scales the reference to match (``scale = (center - edge) / (ref_center -
   ref_edge)``, offset by the edge level) and subtracts it.

Only NIRSpec full frame is corrected; anything else is SKIPPED, and the step
is skipped by default.  ``mask_science_regions`` (jwst's default) would also
mask the slits, IFU slices and failed-open MSA shutters using NIRSpec's WCS,
which webbflow does not compute yet: the step then goes on with the
sigma-clipped mask alone and warns, which is what jwst does when it cannot
assign a WCS.  Parity is measured with ``mask_science_regions=False``.
"""

from __future__ import annotations

import logging

import numpy as np
from pydantic import Field

from .base import STEPS, StepParams, step

log = logging.getLogger("webbflow.steps.picture_frame")

LOWER_EDGE = (4, 75)
UPPER_EDGE = (1985, 2043)
CENTER = (76, 1984)


class PictureFrameParams(StepParams):
    skip: bool = True  # jwst skips it by default
    mask_science_regions: bool = Field(True, description="mask known science regions (needs NIRSpec's WCS; see docs)")
    n_sigma: float = Field(2.0, description="clipping level for non-background signal")
    save_mask: bool = Field(False, description="save the background mask (suffix pctfrm_mask)")
    save_correction: bool = Field(False, description="save the subtracted correction (suffix pctfrm_correction)")


def region_masks(background_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(center, edge) boolean masks of background pixels, reference pixels excluded from the edge band."""
    ny, nx = background_mask.shape
    y = np.arange(ny)[:, None]
    x = np.arange(nx)[None, :]
    center = background_mask & (y >= CENTER[0]) & (y < CENTER[1]) & (x >= CENTER[0]) & (x < CENTER[1])
    outside = (y < LOWER_EDGE[0]) | (y >= UPPER_EDGE[1]) | (x < LOWER_EDGE[0]) | (x >= UPPER_EDGE[1])
    band = (
        ((y >= LOWER_EDGE[0]) & (y < LOWER_EDGE[1]))
        | ((y >= UPPER_EDGE[0]) & (y < UPPER_EDGE[1]))
        | ((x >= LOWER_EDGE[0]) & (x < LOWER_EDGE[1]))
        | ((x >= UPPER_EDGE[0]) & (x < UPPER_EDGE[1]))
    )
    edge = background_mask & band & ~outside
    return center, edge


def subtract_picture_frame(data: np.ndarray, reference: np.ndarray, center: np.ndarray, edge: np.ndarray,
                           is_ramp: bool) -> np.ndarray:
    """Scale the reference to each image's center/edge levels and subtract it from ``data`` in place.

    For a ramp (nints, ngroups, ny, nx) the levels are measured on each group
    minus the first group of its integration, which is left as it is.
    Returns the correction that was subtracted (one per image).
    """
    ref_center = np.nanmedian(reference[center])
    ref_edge = np.nanmedian(reference[edge])
    if is_ramp:
        zero = data[:, :1]
        image = data[:, 1:]
        image -= zero
    else:
        zero = 0.0
        image = data
    med_center = np.nanmedian(image[..., center], axis=-1)
    med_edge = np.nanmedian(image[..., edge], axis=-1)
    scale = (med_center - med_edge) / (ref_center - ref_edge)
    correction = scale[..., None, None] * (reference - ref_edge) + med_edge[..., None, None]
    image += zero - correction
    return correction


def _needed_refs(model, params) -> set[str]:
    return {"gain", "readnoise"} if getattr(model, "data", None) is not None and model.data.ndim == 4 else set()


@step(
    "picture_frame",
    "PictureFrameStep",
    params=PictureFrameParams,
    reftypes=("pictureframe",),
    optional_reftypes=("gain", "readnoise"),
    suffix="picture_frame",
)
def picture_frame(model, refs, params: PictureFrameParams):
    """Scale and subtract the PICTUREFRAME thermal pattern from NIRSpec full-frame data."""
    from .clean_flicker_noise import _intermediate, create_mask, draft_rate
    from .ramp_fit import side_product_path

    instrument = str(model.meta.instrument.name).upper()
    subarray = str(model.meta.subarray.name).upper()
    if instrument != "NIRSPEC" or subarray != "FULL":
        log.warning("Picture frame correction is only applicable to NIRSpec full frame exposures; skipped.")
        return model, "SKIPPED"
    is_ramp = model.data.ndim == 4
    if is_ramp and model.data.shape[1] == 1:
        log.warning("Picture frame correction cannot be performed for single-group data; skipped.")
        return model, "SKIPPED"
    log.info("Applying picture frame correction")
    image_model = draft_rate(model, refs) if is_ramp else model
    if params.mask_science_regions:
        log.warning(
            "picture_frame: masking science regions needs NIRSpec's WCS, which webbflow does not compute yet; "
            "using the sigma-clipped background mask only (as jwst does when no WCS can be assigned)"
        )
    mask = create_mask(image_model, "", mask_science_regions=False, n_sigma=params.n_sigma, single_mask=True)
    if params.save_mask:
        path = side_product_path(model, params, "pctfrm_mask")
        log.info("Saving mask file %s", path)
        _intermediate(image_model, mask).save(path)
    center, edge = region_masks(mask)
    if not np.any(center) or not np.any(edge):
        log.error("No data to scale; skipping picture frame correction.")
        return model, "SKIPPED"
    reference = np.asarray(refs["pictureframe"].data, dtype=np.float32)
    if reference.shape != model.data.shape[-2:]:
        from ..errors import ReferenceFileError

        raise ReferenceFileError("pictureframe", refs["pictureframe"].meta.filename or "<in memory>",
                                 f"shape {reference.shape} does not match the full-frame data {model.data.shape[-2:]}")
    before = model.data.copy() if params.save_correction else None
    subtract_picture_frame(model.data, reference, center, edge, is_ramp)
    if before is not None:
        path = side_product_path(model, params, "pctfrm_correction")
        log.info("Saving correction file %s", path)
        _intermediate(model, model.data - before).save(path)
    return model


STEPS["picture_frame"].extra["optional_reftypes_needed"] = _needed_refs
