"""extract_2d for NIRSpec slits: fixed slits, the MSA and bright-object time series.

assign_wcs leaves a NIRSpec exposure with one WCS for all its open slits (the slit as an input of
the ``gwa -> slit_frame`` transform) and a bounding box per slit.  For every open slit (or those the
``slit_names`` / ``source_ids`` parameters pick), as jwst 3.0 does:

- the slit's own WCS (:func:`tasks.assign_wcs.nirspec.slit_wcs`), its bounding box rounded to pixel
  indices gives the cutout ``[ylo:yhi, xlo:xhi]`` (the upper edge excluded);
- the WCS gets a shift by (xlo, ylo) in front of its ``detector -> sca`` transform, so the cutout's
  pixel (0, 0) is the exposure's (xlo, ylo), and the cutout's shape as its bounding box;
- SCI, ERR, DQ, VAR_RNOISE and VAR_POISSON cut out (every integration of a cube), WAVELENGTH from
  the slit WCS at every pixel (float32), INT_TIMES copied for a time series;
- the slit attributes: SLTNAME, SLTSTRT1/2 (1-based), SLTSIZE1/2, SOURCEID, SHUTTRID, the slit's y
  range; for the MSA also the source name, alias, stellarity, position in the shutter, slitlet id
  (the shutter id for a fixed slit of an MSA exposure), quadrant, shutter centre, dither position,
  source RA/Dec, the slit scales and the shutter state;
- the fixed slit named by FXD_SLIT (and the bright-object slit) gets the source position in the
  slit from the dither offsets (XOFFSET/YOFFSET through the ideal frame to V2/V3, then to the slit
  frame); the other fixed slits 0, 0;
- S_REGION of each slit from its corners on the sky at 2 micron (kept when that gives NaN).

Fixed slits and the MSA give a MultiSlitModel; NRS_BRIGHTOBJ gives one SlitModel (a cube).
"""

from __future__ import annotations

import logging

import numpy as np

from ..errors import InputFileError, ParameterError

log = logging.getLogger("webbflow.steps.extract_2d")

NIRSPEC_MODES = ("NRS_FIXEDSLIT", "NRS_MSASPEC", "NRS_BRIGHTOBJ", "NRS_LAMP", "NRS_AUTOFLAT", "NRS_AUTOWAVE")
_CUT_ARRAYS = ("data", "err", "dq", "var_rnoise", "var_poisson")


def select_slits(open_slits, slit_names=None, source_ids=None):
    """The open slits named in ``slit_names`` then those of ``source_ids`` (each once), in slit order."""
    names = [str(s.name) for s in open_slits]
    ids = [str(s.source_id) for s in open_slits]
    chosen = []
    if slit_names is not None:
        wanted = []
        for n in (str(x) for x in slit_names):
            if n in names:
                wanted.append(n)
            else:
                log.warning("Slit %s is not in the list of open slits.", n)
        chosen = [s for s in open_slits if str(s.name) in wanted]
    if source_ids is not None:
        wanted = []
        for i in (str(x) for x in source_ids):
            if i in ids:
                wanted.append(i)
            else:
                log.warning("Source id %s is not in the list of open slits.", i)
        for s in open_slits:
            if str(s.source_id) in wanted and s not in chosen:
                chosen.append(s)
    if not chosen:
        raise ParameterError("step extract_2d: none of the requested slits or source ids is open on this exposure")
    return chosen


def _pixel_index(v):
    return int(np.floor(v + 0.5))


def cutout_wcs(model, slit):
    """The slit's WCS with the cutout offset in front, and (xlo, xhi, ylo, yhi) of the cutout."""
    from astropy.modeling.models import Shift

    from .assign_wcs.nirspec import slit_wcs

    w = slit_wcs(model, slit.name)
    (x0, x1), (y0, y1) = w.bounding_box.bounding_box(order="F")
    xlo, xhi, ylo, yhi = (_pixel_index(v) for v in (x0, x1, y0, y1))
    tr = (Shift(xlo) & Shift(ylo)) | w.get_transform("detector", "sca")
    w.set_transform("detector", "sca", tr.rename("dms2sca"))
    return w, xlo, xhi, ylo, yhi


def _is_tso(model) -> bool:
    return bool(model.meta.visit.tsovisit) or (model.meta.exposure.type or "").upper() in (
        "NRC_TSIMAGE", "NRC_TSGRISM", "NRS_BRIGHTOBJ")


def _meta_without_wcs(model):
    """A deep copy of the exposure's metadata without its WCS: the exposure's gWCS holds every open slit
    (an MSA exposure's hundred or more), and copying it for each cutout, only to replace it, took most
    of extract_2d's time."""
    wcs = model.meta.wcs
    model.meta.wcs = None
    try:
        return model.meta.model_copy(deep=True)
    finally:
        model.meta.wcs = wcs


def cut_slit(model, slit):
    """One SlitModel: the cutout, its WCS and wavelengths, the exposure's metadata."""
    from gwcs.wcstools import grid_from_bounding_box

    from ..models import SlitModel
    from ._wcs import shape_bbox

    w, xlo, xhi, ylo, yhi = cutout_wcs(model, slit)
    log.info("Name of subarray extracted: %s", slit.name)
    log.info("Subarray x-extents are: %s %s", xlo, xhi)
    log.info("Subarray y-extents are: %s %s", ylo, yhi)
    if model.data.ndim not in (2, 3):
        raise InputFileError(model.meta.filename or "<in memory>", f"has {model.data.ndim}-D data; extract_2d takes 2-D or 3-D")
    window = (..., slice(ylo, yhi), slice(xlo, xhi))
    new = SlitModel(data=model.data[window].copy())
    for name in _CUT_ARRAYS[1:]:
        arr = getattr(model, name, None) if model.has(name) else None
        if arr is not None and np.size(arr):
            setattr(new, name, arr[window].copy())
    w.bounding_box = shape_bbox(new.data.shape)
    x, y = grid_from_bounding_box(w.bounding_box)
    new.wavelength = np.asarray(w(x, y)[2], dtype=np.float32)
    if model.data.ndim == 3 and _is_tso(model) and model.has("int_times") and model.int_times is not None:
        new.int_times = model.int_times.copy()
    new.meta = _meta_without_wcs(model)  # the slit gets its own WCS below
    new.meta.model_type = "SlitModel"
    if "PRIMARY" in model._headers:
        new._headers = {"PRIMARY": model._headers["PRIMARY"].copy()}
    new.meta.wcs = w
    new.meta.wcsinfo.dispersion_direction = model.meta.wcsinfo.dispersion_direction
    return new, xlo, xhi, ylo, yhi


def set_slit_attributes(new, slit, xlo, xhi, ylo, yhi) -> None:
    """The slit's attributes from assign_wcs's Slit record and the cutout's place (1-based starts)."""
    new.name = str(slit.name)
    new.xstart, new.xsize = int(xlo) + 1, int(xhi - xlo)
    new.ystart, new.ysize = int(ylo) + 1, int(yhi - ylo)
    new.source_id = int(slit.source_id)
    new.slit_ymin, new.slit_ymax = float(slit.ymin), float(slit.ymax)
    new.shutter_id = int(slit.shutter_id)
    exp_type = (new.meta.exposure.type or "").upper()
    if exp_type in ("NRS_MSASPEC", "NRS_AUTOFLAT") or str(new.meta.instrument.lamp_mode).upper() == "MSASPEC":
        new.source_name = slit.source_name
        new.source_alias = slit.source_alias
        new.stellarity = float(slit.stellarity)
        new.source_xpos, new.source_ypos = float(slit.source_xpos), float(slit.source_ypos)
        try:
            new.slitlet_id = int(slit.name)
        except ValueError:  # a fixed slit in an MSA exposure: named, so its shutter id
            new.slitlet_id = int(slit.shutter_id)
        new.quadrant = int(slit.quadrant)
        new.xcen, new.ycen = int(slit.xcen), int(slit.ycen)
        new.dither_position = int(slit.dither_position)
        new.source_ra, new.source_dec = float(slit.source_ra), float(slit.source_dec)
        new.slit_xscale, new.slit_yscale = float(slit.slit_xscale), float(slit.slit_yscale)
        new.shutter_state = slit.shutter_state


def source_position_in_slit(new) -> bool:
    """SRCXPOS/SRCYPOS of the target in the slit from the dither offsets; False (and 0, 0) without them."""
    from stdatamodels.jwst.transforms.models import IdealToV2V3

    d, w = new.meta.dither, new.meta.wcsinfo
    if d.x_offset is None or d.y_offset is None:
        log.warning("XOFFSET/YOFFSET missing for the primary slit; setting source position in slit to 0.0, 0.0")
        new.source_xpos, new.source_ypos = 0.0, 0.0
        return False
    v2, v3 = IdealToV2V3(w.v3yangle, w.v2_ref, w.v3_ref, w.vparity)(d.x_offset, d.y_offset)
    xs, ys, _ = new.meta.wcs.get_transform("v2v3", "slit_frame")(v2, v3, 2.0)
    new.source_xpos, new.source_ypos = xs, ys  # numpy scalars, as jwst leaves them
    log.info("Source X/Y position in the slit: %s, %s", xs, ys)
    return True


def update_s_region(new) -> None:
    """S_REGION from the slit's corners (x = +-0.5, its y range) on the sky at 2 micron; the wavelength span."""
    to_world = new.meta.wcs.get_transform("slit_frame", "world")
    ra, dec, lam = to_world([-0.5, -0.5, 0.5, 0.5], [new.slit_ymin, new.slit_ymax, new.slit_ymax, new.slit_ymin],
                            [2e-6] * 4)
    footprint = np.array([ra, dec]).T
    s = "POLYGON ICRS  {:.9f} {:.9f} {:.9f} {:.9f} {:.9f} {:.9f} {:.9f} {:.9f}".format(*footprint.flatten())
    if "nan" not in s:
        new.meta.wcsinfo.s_region = s
    new.meta.wcsinfo.spectral_region = (np.nanmin(lam), np.nanmax(lam))


def extract(model, slit_names=None, source_ids=None):
    """The cutouts of a NIRSpec exposure (see the module docstring); (model, "SKIPPED") when there is
    nothing to cut."""
    from .extract_2d import _new_multislit

    exp_type = (model.meta.exposure.type or "").upper()
    if (model.meta.instrument.grating or "").upper() == "MIRROR":
        log.info("EXP_TYPE %s with grating=MIRROR not supported for extract 2D", exp_type)
        return model, "SKIPPED"
    if model.meta.cal_step.assign_wcs in (None, "SKIPPED"):
        log.warning("assign_wcs was skipped; extract_2d will be SKIPPED")
        return model, "SKIPPED"
    if model.meta.wcs is None:
        raise InputFileError(model.meta.filename or "<in memory>", "has no WCS: run assign_wcs before extract_2d")
    open_slits = model.meta.wcs.get_transform("gwa", "slit_frame").slits
    if slit_names is not None or source_ids is not None:
        open_slits = select_slits(open_slits, slit_names, source_ids)
    with_world = "world" in model.meta.wcs.available_frames

    if exp_type == "NRS_BRIGHTOBJ":
        slit = open_slits[0]
        new, xlo, xhi, ylo, yhi = cut_slit(model, slit)
        # jwst makes the cutout as SlitModel(data=, err=, dq=, wavelength=, ...) and writes it in that order
        new._hdu_order = ["SCI", "ERR", "DQ", "WAVELENGTH", "VAR_POISSON", "VAR_RNOISE"]
        set_slit_attributes(new, slit, xlo, xhi, ylo, yhi)
        source_position_in_slit(new)
        if with_world:
            update_s_region(new)
        return new

    out = _new_multislit(model)
    primary = model.meta.instrument.fixed_slit
    for slit in open_slits:
        new, xlo, xhi, ylo, yhi = cut_slit(model, slit)
        set_slit_attributes(new, slit, xlo, xhi, ylo, yhi)
        if exp_type == "NRS_FIXEDSLIT":
            if slit.name == primary:
                source_position_in_slit(new)
            else:  # no target position for the other fixed slits
                new.source_xpos, new.source_ypos = 0.0, 0.0
        if with_world:
            update_s_region(new)
        new.meta.bunit_data, new.meta.bunit_err = model.meta.bunit_data, model.meta.bunit_err
        out.slits.append(new)
    log.info("extract_2d: %d NIRSpec slit(s): %s", len(out.slits), ", ".join(s.name for s in out.slits))
    return out
