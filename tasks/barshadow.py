"""barshadow: correct NIRSpec MSA slitlets for the shadows of the bars between shutters (jwst's BarShadowStep).

Only NRS_MSASPEC exposures, and only slitlets holding a uniform (extended) source: a POINT slitlet
(or ``source_type="POINT"``) gets a BARSHADOW of ones and BARSHDW = F.  For the others:

1. the slitlet's shadow map is assembled from the reference's two pieces along its shutters'
   states (SHUTSTA: ``0`` closed, ``1`` open, ``x`` the source's shutter), half a shutter pitch
   (500 rows) at a time: the first half of a lone open shutter (DATA1X1), then per following
   shutter the open-open piece (the middle of three open ones, DATA1X3), open-closed or
   closed-open (DATA1X1's halves) or a closed pair (DATA1X1's minimum), then the last half; where
   two pieces meet their shared row is averaged.
2. each cutout pixel's slit position (the slit frame's y, in shutter heights, divided by the
   slitlet's SLTYSCL, or 1.15 without it: the pitch over the open height) and wavelength (through
   the slitlet's WCS, detector -> slit_frame) give the map's row (from the source's shutter) and
   column (CRVAL1/CDELT1), where the map is interpolated linearly (NaN outside);
3. SCI and ERR are divided by that correction, VAR_POISSON, VAR_RNOISE and VAR_FLAT (zeros if
   flat_field has not run, as jwst makes it) by its square (``inverse`` multiplies), and BARSHADOW holds it, BARSHDW = T.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np

from ..errors import InputFileError
from .base import StepParams, step

log = logging.getLogger("webbflow.steps.barshadow")

SLITRATIO = 1.15  # shutter pitch over open height, when a slitlet has no SLTYSCL
HALF = 500  # rows of the reference per half shutter pitch (1001 rows: -1..1 pitch)


class BarShadowParams(StepParams):
    inverse: bool = False  # multiply by the correction instead of dividing
    source_type: Literal["POINT", "EXTENDED"] | None = None  # process every slitlet as this source type


def is_uniform(slit, forced: str | None = None) -> bool:
    """Whether the slitlet's source counts as uniform: anything but POINT (no type: extended)."""
    kind = forced or slit.source_type
    return not kind or kind.upper() != "POINT"


def shadow_map(one: np.ndarray, three: np.ndarray, states: str) -> np.ndarray:
    """The slitlet's bar shadow, (500 * nshutters + 500, columns), from the 1x1 and 1x3 pieces."""
    pieces = {
        ("open", "open"): three[: HALF + 1],
        ("open", "closed"): one[HALF:],
        ("closed", "open"): one[: HALF + 1],
        ("closed", "closed"): np.full((HALF + 1, one.shape[1]), np.nanmin(one)),
    }
    out = np.zeros((HALF * len(states) + HALF, one.shape[1]))
    out[: HALF + 1] = one[: HALF + 1]
    row = HALF
    previous = "open"
    for state in states[1:]:
        current = "closed" if state == "0" else "open"
        piece = pieces[(previous, current)]
        out[row] = 0.5 * (out[row] + piece[0])
        out[row + 1: row + piece.shape[0]] = piece[1:]
        row += piece.shape[0] - 1
        previous = current
    last = one[HALF + 1:]
    out[row] = 0.5 * (out[row] + last[0])
    out[row + 1: row + last.shape[0]] = last[1:]
    return out


def slitlet_correction(slit, ref) -> np.ndarray:
    """The correction over the slitlet's WCS bounding box (float32)."""
    from gwcs.wcstools import grid_from_bounding_box
    from scipy import ndimage

    states = slit.shutter_state
    wcs = getattr(slit.meta, "wcs", None)
    if wcs is None:
        raise InputFileError(slit._path or "<input>", f"slitlet {slit.name} has no WCS (run assign_wcs and extract_2d first)")
    crval1, cdelt1, cdelt2 = ref.crval1, ref.cdelt1, ref.cdelt2
    if None in (crval1, cdelt1, cdelt2):
        from ..errors import ReferenceFileError

        raise ReferenceFileError("barshadow", ref.meta.filename or "<in memory>",
                                 "DATA1X1 lacks CRVAL1, CDELT1 or CDELT2")
    shadow = shadow_map(np.asarray(ref.data1x1), np.asarray(ref.data1x3), states)
    x, y = grid_from_bounding_box(wcs.bounding_box, step=(1, 1))
    _xs, ys, lam = wcs.get_transform("detector", "slit_frame")(x, y)
    if slit.slit_yscale is None:
        log.warning("barshadow: slitlet %s has no SLTYSCL; using %s", slit.name, SLITRATIO)
        ys = ys / SLITRATIO
    else:
        ys = ys / slit.slit_yscale
    rows_per_shutter = 1.0 / cdelt2
    # the shutters run downwards: the first of SHUTSTA is the last in the map
    fiducial = len(states) - states.find("x")
    row = shadow.shape[0] - rows_per_shutter * fiducial + ys * rows_per_shutter
    col = (lam - crval1) / cdelt1
    corr = ndimage.map_coordinates(shadow, [row, col], cval=np.nan, order=1, mode="nearest")
    return corr.astype(np.float32)


@step(
    "barshadow",
    "BarShadowStep",
    params=BarShadowParams,
    optional_reftypes=("barshadow",),
    suffix="barshadow",
    input_class="MultiSlitModel",
)
def barshadow(model, refs, params: BarShadowParams):
    """Divide MSA slitlets of uniform sources by the bar shadow along their shutters."""
    from ..models import MultiSlitModel

    if (model.meta.exposure.type or "").upper() != "NRS_MSASPEC":
        log.info("barshadow: only for NRS_MSASPEC; skipped")
        return model, "SKIPPED"
    ref = refs.get("barshadow")
    if ref is None:
        log.warning("barshadow: no BARSHADOW reference; skipped")
        return model, "SKIPPED"
    if not isinstance(model, MultiSlitModel):
        raise InputFileError(model.meta.filename or "<input>", "barshadow takes the slitlets extract_2d makes (a MultiSlitModel)")
    corrected = 0
    for slit in model.slits:
        if not is_uniform(slit, params.source_type) or not slit.shutter_state:
            why = "source not uniform" if slit.shutter_state else "no shutters"
            log.info("barshadow: slitlet %s not corrected (%s)", slit.slitlet_id, why)
            slit.barshadow_corrected = False
            slit.barshadow = np.ones_like(slit.data)
            _in_schema_order(slit, "BARSHADOW")
            continue
        corr = slitlet_correction(slit, ref)
        slit.barshadow_corrected = True
        c2 = corr * corr
        if not params.inverse:
            slit.data = slit.data / corr
            slit.err = slit.err / corr
            slit.var_poisson = slit.var_poisson / c2
            slit.var_rnoise = slit.var_rnoise / c2
            slit.var_flat = slit.var_flat / c2  # as jwst, made (zeros) when flat_field has not run
        else:
            slit.data = slit.data * corr
            slit.err = slit.err * corr
            slit.var_poisson = slit.var_poisson * c2
            slit.var_rnoise = slit.var_rnoise * c2
            slit.var_flat = slit.var_flat * c2
        slit.barshadow = corr
        _in_schema_order(slit, "BARSHADOW")
        corrected += 1
    from .base import report_qa

    report_qa(**{"slitlets corrected": corrected, "slitlets": len(model.slits)})
    return model


def _in_schema_order(slit, extname: str) -> None:
    """Place a new extension where stdatamodels writes it (schema order: BARSHADOW after
    WAVELENGTH), not after the extensions the slit was read with."""
    from ..models import MultiSlitModel

    order = slit._hdu_order
    if extname in order or not order:  # no order recorded: the writer follows the schema's
        return
    schema = [s.extname for s in MultiSlitModel.slit_arrays]
    pos = schema.index(extname)
    later = [i for i, n in enumerate(order) if n in schema and schema.index(n) > pos]
    order.insert(later[0] if later else len(order), extname)


def _barshadow_refs_needed(model, params: BarShadowParams):
    """jwst asks CRDS for the bar shadow of MSA exposures only."""
    return ("barshadow",) if (model.meta.exposure.type or "").upper() == "NRS_MSASPEC" else ()


def _register_extras():
    from .base import STEPS

    STEPS["barshadow"].extra["optional_reftypes_needed"] = _barshadow_refs_needed


_register_extras()
