"""Where to extract: the extraction parameters (extract1d JSON reference or defaults) and the
aperture's pixel weights.

The aperture is a 2-D weight image on the spectral image's grid: 1 for pixels fully inside, the
covered fraction for pixels the limits cut, 0 elsewhere (and wherever the wavelength is not
finite).  Cross-dispersion limits come, in this order, from the ``src_coeff`` polynomials, from
``extract_width`` around the source's trace (``use_source_posn``) or around the middle of the
start/stop range, or from the start/stop values; the
dispersion-direction limits from start/stop.  All limits are inclusive pixel indices, zero-based.
"""

from __future__ import annotations

import logging

import numpy as np

from ...errors import ParameterError

log = logging.getLogger("webbflow.steps.extract_1d")

HORIZONTAL = 1


def extraction_parameters(ref: dict | None, shape, slitname: str, order: int, params,
                          exp_type: str = "", use_source_posn: bool | None = None) -> dict | None:
    """The extraction settings for one slit and order; ``None`` when the reference has no aperture for them.

    With no reference (N/A) the whole array is extracted, with no background, and the aperture is
    never moved to the source.  ``use_source_posn`` (the parameter, or False where jwst turns an unset
    one off) is resolved against the aperture's own value and ``exp_type``'s default
    (:func:`._source_posn.decide`).
    """
    ny, nx = shape[-2:]
    if ref is None:
        return {"xstart": 0, "xstop": nx - 1, "ystart": 0, "ystop": ny - 1, "extract_width": None,
                "src_coeff": None, "bkg_coeff": None, "subtract_background": False, "bkg_fit": None,
                "bkg_order": 0, "smoothing_length": 0, "independent_var": "pixel",
                "position_offset": 0.0, "spectral_order": order, "use_source_posn": False}
    for aper in ref.get("apertures", []):
        aid = aper.get("id")
        if aid is None or aid == "dummy" or not (aid == slitname or aid == "ANY" or slitname == "ANY"):
            continue
        if aper.get("region_type", "target") != "target":
            continue
        sp = aper.get("spectral_order", order)
        if sp != order and sp != "ANY":
            continue
        out = {
            "xstart": aper.get("xstart", 0), "xstop": aper.get("xstop", nx - 1),
            "ystart": aper.get("ystart", 0), "ystop": aper.get("ystop", ny - 1),
            "extract_width": aper.get("extract_width"), "src_coeff": aper.get("src_coeff"),
            "bkg_coeff": aper.get("bkg_coeff"), "independent_var": str(aper.get("independent_var", "pixel")).lower(),
            "position_offset": params.position_offset, "spectral_order": order,
        }
        subtract = params.subtract_background
        if out["bkg_coeff"] is not None and subtract is None:
            subtract = True
        out["subtract_background"] = bool(subtract)
        fit = params.bkg_fit if params.bkg_fit is not None else aper.get("bkg_fit", "poly")
        order_ = params.bkg_order if params.bkg_order is not None else aper.get("bkg_order", 0)
        if fit == "mean":
            fit, order_ = "poly", 0
        out["bkg_fit"] = fit if subtract else None
        out["bkg_order"] = order_
        sm = params.smoothing_length if params.smoothing_length is not None else aper.get("smoothing_length", 0)
        sm = int(np.round(sm))
        if sm != 0 and sm < 3:
            log.warning("Smoothing length %d is not allowed: 0 used", sm)
            sm = 0
        elif sm and sm % 2 == 0:
            sm -= 1
            log.warning("Even smoothing lengths are not supported: %d used", sm)
        out["smoothing_length"] = sm
        from ._source_posn import decide

        out["use_source_posn"] = decide(use_source_posn, aper.get("use_source_posn"), exp_type)
        return out
    return None


def _poly(coeffs):
    c = np.asarray(coeffs, dtype=float)
    return lambda v: np.polyval(c[::-1], v)


def _set_limits(profile, idx, lower, upper, allow_partial=True):
    """Weights 1 between ``lower`` and ``upper`` (inclusive), the covered fraction at the cut pixels."""
    profile[(idx >= lower) & (idx <= upper)] = 1.0
    if allow_partial:
        for w in (idx - lower + 1, upper - idx + 1):
            cut = (w > 0) & (w < 1) & (profile < w)
            profile[cut] = w[cut]


def box_profile(shape, ep: dict, dispaxis: int, wavelength, coeffs: str = "src_coeff"):
    """``(weights, lower, upper)``: the aperture (or background regions) weight image and its mean limits."""
    ny, nx = shape
    yidx, xidx = np.mgrid[:ny, :nx]
    cross = yidx if dispaxis == HORIZONTAL else xidx
    xstart, xstop, ystart, ystop = ep["xstart"], ep["xstop"], ep["ystart"], ep["ystop"]
    profile = np.zeros(shape)
    allow_partial = not (coeffs == "bkg_coeff" and ep.get("bkg_fit") == "median")
    lower = upper = None
    if ep[coeffs] is not None:
        if ep["independent_var"].startswith("wavelength"):
            ind = wavelength
        else:
            ind = (xidx if dispaxis == HORIZONTAL else yidx).astype(np.float32)
        pairs = ep[coeffs]
        if len(pairs) % 2:
            raise ParameterError(f"extract_1d: {coeffs} must hold pairs of lower and upper limit polynomials")
        for lo_c, hi_c in zip(pairs[0::2], pairs[1::2]):
            # polynomial limits put 0 at a pixel's centre; start/stop at its lower edge, upper pixel included
            lo = _poly(lo_c)(ind) + 0.5
            hi = _poly(hi_c)(ind) - 0.5
            _set_limits(profile, cross, lo, hi, allow_partial)
            mlo, mhi = float(np.mean(lo)), float(np.mean(hi))
            lower = mlo if lower is None else min(lower, mlo)
            upper = mhi if upper is None else max(upper, mhi)
    elif ep["extract_width"] is not None and ep.get("trace") is not None:  # about the source's trace
        width = ep["extract_width"]
        trace = np.asarray(ep["trace"], dtype=np.float64)
        if dispaxis != HORIZONTAL:
            trace = np.tile(trace, (nx, 1)).T
        lo = trace - (width - 1.0) / 2.0
        hi = lo + width - 1
        with np.errstate(invalid="ignore"):
            _set_limits(profile, cross, lo, hi)
        lower, upper = float(np.nanmean(lo)), float(np.nanmean(hi))
    elif ep["extract_width"] is not None:
        middle = (ystart + ystop) / 2.0 if dispaxis == HORIZONTAL else (xstart + xstop) / 2.0
        width = ep["extract_width"]
        lower = middle - (width - 1.0) / 2.0
        upper = lower + width - 1
        _set_limits(profile, cross, lower, upper)
    else:
        lower, upper = (ystart, ystop) if dispaxis == HORIZONTAL else (xstart, xstop)
        _set_limits(profile, cross, lower, upper)
    if dispaxis == HORIZONTAL:
        profile[:, : int(np.ceil(xstart))] = 0
        profile[:, int(np.floor(xstop)) + 1:] = 0
    else:
        profile[: int(np.ceil(ystart)), :] = 0
        profile[int(np.floor(ystop)) + 1:, :] = 0
    return profile, lower, upper


def shift(ep: dict, offset: float) -> None:
    """Move the aperture and background regions ``offset`` pixels across the dispersion."""
    if offset == 0:
        return
    if ep.get("trace") is not None:
        ep["trace"] = ep["trace"] + offset
    for key in ("src_coeff", "bkg_coeff"):
        if ep[key] is not None:
            ep[key] = [[c[0] + offset, *c[1:]] for c in ep[key]]
    if ep["dispaxis"] == HORIZONTAL:
        ep["ystart"] += offset
        ep["ystop"] += offset
    else:
        ep["xstart"] += offset
        ep["xstop"] += offset


def aperture_centre(profile):
    """Weighted mean (row, column) of the aperture (the array centre's weights if it is empty)."""
    w = np.where(profile > 0, profile, 0.0)
    if w.sum() == 0:
        w = np.ones_like(w)
    yidx, xidx = np.mgrid[: profile.shape[0], : profile.shape[1]]
    return float(np.average(yidx, weights=w)), float(np.average(xidx, weights=w))
