"""assign_mtwcs: a moving-target frame for the exposures of a moving target (jwst's AssignMTWcsStep).

A solar-system target moves across the sky between exposures; its position
at each exposure's mid-point is in the SCI header (MT_RA, MT_DEC).  To stack
the exposures on the target rather than on the stars, each exposure's WCS
gets one more frame, ``moving_target``, after ``world``: a shift in RA and
Dec that carries the target's position in that exposure to the average
position over all exposures (MT_AVRA, MT_AVDEC, recorded too).  Resampling
then aligns the target.  S_REGION is recomputed in the new frame.

Stage 3 uses this step instead of tweakreg when the target type
(TARGTYPE) is ``moving`` (:func:`is_moving_target`).  When an exposure lacks
MT_RA or MT_DEC the step is skipped with a warning (the target will be
smeared), as jwst does.
"""

from __future__ import annotations

import copy
import logging

import numpy as np

from ..errors import a_an
from . import _wcs
from ._library import as_library, give_back
from .base import STEPS, StepParams, step

log = logging.getLogger("webbflow.steps.assign_mtwcs")


class AssignMTWcsParams(StepParams):
    suffix: str | None = "assign_mtwcs"
    output_use_model: bool = True  # name outputs after the model's filename (jwst compatibility)


def is_moving_target(meta) -> bool:
    """Whether the exposure's target type (TARGTYPE) is 'moving'."""
    kind = getattr(getattr(meta, "target", None), "type", None)
    return isinstance(kind, str) and kind.strip().lower() == "moving"


def add_moving_target_frame(wcs, ra_average: float, dec_average: float, mt_ra: float, mt_dec: float):
    """A copy of ``wcs`` with a ``moving_target`` frame: world shifted by (average - this exposure's) target position."""
    from astropy.modeling.models import Identity, Shift
    from gwcs import WCS
    from gwcs import coordinate_frames as cf

    pipeline = [(step.frame, step.transform) for step in wcs.pipeline[:-1]]
    world = wcs.output_frame
    frame = copy.deepcopy(world)
    frame.name = "moving_target"
    shift = Shift(ra_average - mt_ra) & Shift(dec_average - mt_dec)
    if isinstance(world, cf.CompositeFrame):
        shift = shift & Identity(1)
    elif not isinstance(world, cf.CelestialFrame):
        raise TypeError(f"cannot add a moving-target frame after {a_an(type(world).__name__)}")
    pipeline.append((world, shift))
    pipeline.append((frame, None))
    return WCS(pipeline)


def assign_moving_target_wcs(library):
    """Give every exposure of ``library`` the moving-target frame; returns the library."""
    n = len(library)
    ras, decs = np.full(n, np.nan), np.full(n, np.nan)
    for i in range(n):
        w = library.read_metadata(i).wcsinfo
        if w.mt_ra is None or w.mt_dec is None:
            log.warning("%s has no moving-target position (MT_RA/MT_DEC): assign_mtwcs skipped, the target will "
                        "not be aligned", library.read_metadata(i).filename)
            library.mark_step("assign_mtwcs", "SKIPPED")
            return library
        ras[i], decs[i] = w.mt_ra, w.mt_dec
    ra_avg, dec_avg = float(ras.mean()), float(decs.mean())
    log.info("Average moving-target position RA %.8f Dec %.8f", ra_avg, dec_avg)
    for i, model in library.each(modify=True):
        w = model.meta.wcsinfo
        model.meta.wcs = add_moving_target_frame(model.meta.wcs, ra_avg, dec_avg, w.mt_ra, w.mt_dec)
        w.mt_avra, w.mt_avdec = ra_avg, dec_avg
        exp_type = (model.meta.exposure.type or "").upper()
        if any(exp_type in types for types in _wcs.IMAGING_MODES.values()):
            _wcs.update_s_region(model)
        model.meta.cal_step.assign_mtwcs = "COMPLETE"
    return library


@step("assign_mtwcs", "AssignMTWcsStep", params=AssignMTWcsParams, suffix="assign_mtwcs", input_class="ModelLibrary")
def assign_mtwcs(models_in, refs, params: AssignMTWcsParams):
    """Add a frame to each exposure's WCS that follows the moving target to its average position."""
    library = as_library(models_in)
    assign_moving_target_wcs(library)
    return give_back(library, models_in)


STEPS["assign_mtwcs"].extra["records_status"] = True
