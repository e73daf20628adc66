"""extract_1d's ``use_source_posn``: the box aperture moved across the dispersion to the source.

Whether to move it is decided as jwst 3.0 decides (highest first): the step parameter; the matched
aperture's ``use_source_posn`` in the extract1d reference; on for the exposure types whose source
position is known (MIR_LRS-FIXEDSLIT, NRS_FIXEDSLIT, NRS_MSASPEC, NRS_BRIGHTOBJ), off for the others.
An unset parameter is also turned off for a source that is not POINT and for WFSS, and there is
no moving at all without an extract1d reference.

Where the source is: at the middle of the WCS bounding box along the dispersion, the wavelength
there is the mean of the WCS wavelengths down that column (row, for vertical dispersion); the
source's cross-dispersion pixel at that wavelength comes from

- NIRSpec: the slit's ``source_xpos``/``source_ypos`` through the WCS's slit_frame -> detector
  transform (the wavelength in metres when the WCS still has the ``gwa`` frame, i.e. an
  unresampled cal slit; in microns for a resampled s2d);
- MIRI LRS fixed slit: the dithered pointing (DITH_RA/DITH_DEC) through the WCS's inverse.

The aperture is then moved by that location less the nominal aperture's weighted centre in the
same column.  The source's trace (its position at every dispersion element, from the same
transforms) is kept: a box given by ``extract_width`` follows it, as jwst's does.  A location
that is NaN or outside the bounding box leaves the aperture where it is.
"""

from __future__ import annotations

import logging

import numpy as np

from . import aperture as ap

log = logging.getLogger("webbflow.steps.extract_1d")

SRCPOS_EXPTYPES = ("MIR_LRS-FIXEDSLIT", "NRS_FIXEDSLIT", "NRS_MSASPEC", "NRS_BRIGHTOBJ")
NIRSPEC_SLIT_TYPES = ("NRS_FIXEDSLIT", "NRS_MSASPEC", "NRS_BRIGHTOBJ")


def decide(param: bool | None, aperture_value, exp_type: str) -> bool:
    """The parameter, else the reference aperture's value, else the exposure type's default."""
    if param is not None:
        return bool(param)
    if aperture_value is not None:
        return bool(aperture_value)
    if exp_type in SRCPOS_EXPTYPES:
        log.info("Turning on source position correction for exp_type = %s", exp_type)
        return True
    return False


def _bounding_box(wcs, shape):
    bb = getattr(wcs, "bounding_box", None)
    if bb is None:
        ny, nx = shape
        return (-0.5, nx - 0.5), (-0.5, ny - 0.5)
    return (tuple(bb[0]), tuple(bb[1]))


def _middle(wcs, bb, dispaxis):
    """(dispersion pixel at the bounding box's middle, mean wavelength down that column)."""
    if dispaxis == ap.HORIZONTAL:
        n = int(round(bb[1][1]))
        mid = (bb[0][0] + bb[0][1]) / 2.0
        x, y = np.full(n, mid), np.arange(n, dtype=np.float64)
    else:
        n = int(round(bb[0][1]))
        mid = (bb[1][0] + bb[1][1]) / 2.0
        x, y = np.arange(n, dtype=np.float64), np.full(n, mid)
    wl = np.asarray(wcs(x, y)[2], dtype=np.float64)
    middle_wl = np.nanmean(wl) if np.any(np.isfinite(wl)) else np.nan
    return mid, middle_wl


def _nirspec_trace(shape, bb, wcs, xpos, ypos):
    """The source's cross-dispersion row at every column: (xpos, ypos) in the slit frame at wavelengths
    spanning the slit's, through slit_frame -> detector, interpolated (and extrapolated) to the
    columns; NaN outside the bounding box."""
    from gwcs.wcstools import grid_from_bounding_box
    from scipy.interpolate import interp1d

    x, y = grid_from_bounding_box(bb)
    nx = int(bb[0][1] - bb[0][0])
    _, _, slit_wl = wcs.get_transform("detector", "slit_frame")(x, y)  # metres (cal) or microns (s2d)
    waves = np.linspace(np.nanmin(slit_wl), np.nanmax(slit_wl), nx)
    tx, ty = wcs.get_transform("slit_frame", "detector")(np.full(nx, xpos), np.full(nx, ypos), waves)
    # jwst evaluates the interpolation at 0..nx-1 and places it from the box's first whole column
    trace = interp1d(tx, ty, fill_value="extrapolate")(np.arange(nx))
    full = np.full(shape[1], np.nan)
    x0 = int(np.ceil(bb[0][0]))
    full[x0:x0 + nx] = trace
    return full


def _miri_trace(shape, bb, wcs, ra, dec):
    """The source's cross-dispersion column at every row (LRS disperses along y): the sky position at
    wavelengths spanning the slit's through the WCS's inverse, interpolated to the rows."""
    from gwcs.wcstools import grid_from_bounding_box
    from scipy.interpolate import interp1d

    x, y = grid_from_bounding_box(bb)
    ny = int(bb[1][1] - bb[1][0])
    _, _, wl = wcs(x, y)
    waves = np.linspace(np.nanmin(wl), np.nanmax(wl), ny)
    tx, ty = wcs.backward_transform(np.full(ny, ra), np.full(ny, dec), waves)
    trace = interp1d(ty, tx, fill_value="extrapolate")(np.arange(ny))
    full = np.full(shape[0], np.nan)
    y0 = int(np.ceil(bb[1][0]))
    full[y0:y0 + ny] = trace
    return full


def source_location(top, slit, slit_attrs: dict):
    """``(middle_pix, middle_wl, location, trace)`` of the source in the spectral image, or Nones.

    ``trace``: the source's cross-dispersion position at every dispersion element (NaN off the
    WCS bounding box), which a box of ``extract_width`` then follows, as in jwst.

    ``top``: the exposure's model; ``slit``: the model holding the spectral image and its WCS
    (``top`` itself for a single slit); ``slit_attrs``: the slit's own attributes (source_xpos...).
    """
    none = (None, None, None, None)
    wcs = getattr(slit.meta, "wcs", None)
    if wcs is None:
        log.warning("%s has no WCS: the source position cannot be found", slit.meta.filename or "the input")
        return none
    dispaxis = slit.meta.wcsinfo.dispersion_direction
    shape = slit.data.shape[-2:]
    bb = _bounding_box(wcs, shape)
    lower, upper = bb[1] if dispaxis == ap.HORIZONTAL else bb[0]
    mid, middle_wl = _middle(wcs, bb, dispaxis)
    middle = int(np.round(mid))
    exp_type = top.meta.exposure.type
    if exp_type in NIRSPEC_SLIT_TYPES:
        log.info("Using source_xpos and source_ypos to center extraction.")
        xpos, ypos = slit_attrs.get("source_xpos"), slit_attrs.get("source_ypos")
        if xpos is None or ypos is None:
            log.warning("Source position in the slit (source_xpos, source_ypos) not found.")
            return none
        slit2det = wcs.get_transform("slit_frame", "detector")
        scale = 1e-6 if "gwa" in wcs.available_frames else 1.0  # a cal slit's slit_frame is in metres
        _, location = slit2det(xpos, ypos, middle_wl * scale)
        make_trace = lambda: _nirspec_trace(shape, bb, wcs, xpos, ypos)  # noqa: E731
    elif exp_type == "MIR_LRS-FIXEDSLIT":
        log.info("Using dithered_ra and dithered_dec to center extraction.")
        ra, dec = slit.meta.dither.dithered_ra, slit.meta.dither.dithered_dec
        if ra is None or dec is None:
            log.warning("Dithered pointing location not found in meta.dither.")
            return none
        location, _ = wcs.backward_transform(ra, dec, middle_wl)
        make_trace = lambda: _miri_trace(shape, bb, wcs, ra, dec)  # noqa: E731
    else:
        log.warning("Source position cannot be found for EXP_TYPE %s", exp_type)
        return none
    location = float(location)
    if np.isnan(location):
        log.warning("Source position could not be determined from WCS.")
        return none
    if location < lower or location > upper:
        log.warning("WCS implies the target is at %.2f, which is outside the bounding box,", location)
        log.warning("so we can't get spectrum location using the WCS")
        return none
    return middle, float(middle_wl), location, make_trace()


def centre_at(profile, dispaxis: int, middle_pix: int) -> float:
    """Weighted cross-dispersion centre of the aperture in dispersion element ``middle_pix``."""
    if dispaxis == ap.HORIZONTAL:
        w = np.array(profile[:, middle_pix], dtype=np.float64)
    else:
        w = np.array(profile[middle_pix, :], dtype=np.float64)
    w[w <= 0] = 0.0
    if w.sum() == 0:
        w[:] = 1.0
    return float(np.average(np.arange(w.size), weights=w))


def offset_to_source(top, slit, slit_attrs: dict, ep: dict, wavelength):
    """``(offset, trace)``: the cross-dispersion shift (pixels) that centres the nominal aperture
    ``ep`` on the source, and the source's trace; ``(0, None)`` when the source cannot be placed."""
    middle, middle_wl, location, trace = source_location(top, slit, slit_attrs)
    if location is None:
        return 0.0, None
    log.info("Computed source location is %.2f, at pixel %d, wavelength %.2f", location, middle, middle_wl)
    nominal, _, _ = ap.box_profile(slit.data.shape[-2:], ep, ep["dispaxis"], wavelength)
    nominal_location = centre_at(nominal, ep["dispaxis"], middle)
    offset = location - nominal_location
    log.info("Nominal location is %.2f, so offset is %.2f pixels", nominal_location, offset)
    return offset, trace
