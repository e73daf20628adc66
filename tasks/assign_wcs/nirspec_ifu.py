"""assign_wcs for the NIRSpec IFU (NRS_IFU): the 30 slices of the image slicer.

The optical chain is the one of :mod:`.nirspec` (detector -> sca -> gwa, the disperser, the
collimator, the fore optics and the OTE), with the IFU's own planes between the GWA and the MSA::

    detector --dms2sca--> sca --det2gwa--> gwa
        --per slice: grating equation / prism, the collimator, ifupost, the slice's y table--> slit_frame
        --per slice: Scale(size) & Scale(size) | Shift(centre) & Shift(centre) | ifuslicer model--> slicer
        --ifufore (x, y, lambda)--> msa_frame --fore--> oteip --chromcorr--> oteip_chromcorr
        --OTE, metres -> microns--> v2v3 --DVA--> v2v3vacorr --pointing--> world

References: those of the slits (``camera``, ``collimator``, ``disperser``, ``fpa``, ``fore``, ``ote``,
``wavelengthrange``) and ``ifuslicer`` (the slices' centres and sizes on the slicer and the slicer's
model), ``ifupost`` (per slice ``slice_N``: ``linear`` then a polynomial plus a polynomial times the
wavelength, the slicer -> the MSA exit plane, which the collimator sees), ``ifufore`` (the slicer ->
the MSA entrance plane, the sky side) and ``chromcorr`` (the fore optics' chromaticity, on the OTE
image plane).

How each part is made, as jwst 3.0 makes it:

- gwa -> slit_frame, per slice: the slice's y as a function of the GWA beta angle is a 1000-point
  table at x = 0 over the slit y range (``slit_y_low``/``slit_y_high``), traced through ifupost at
  the middle of the wavelength range; the slice's x is 0; the wavelength comes from the exit
  angles (grating equation or the prism's index); NaN outside [ymin, ymax].  Its inverse goes
  slicer -> ifupost -> collimator -> GWA -> grating equation / Snell at the given wavelength.
- The bounding box of each slice: its edges (y = -0.55 and 0.55, x = 0) traced to the detector over
  the wavelength range in steps of 1e-10 m, padded by 10 columns and 2 rows, narrowed to rows
  with a finite wavelength.
- No slice falls on NRS2 with a medium-resolution grating or with G140H/F070LP: the exposure has no
  data on that detector (refused, as jwst refuses it).
- S_REGION: the RA/Dec box of every pixel of every slice's box; ``spectral_region`` their
  wavelength range.  (jwst runs the whole chain on every pixel of the boxes for this and again for
  the slice map; here one pass finds the pixels with a wavelength and runs the sky part on those.)
- The slice map: every pixel of a slice's box with a finite wavelength gets the slice number + 1
  (``regions``, 2048 x 2048, 0 elsewhere).  Unless ``nrs_ifu_slice_wcs`` is set, the WCS is then
  rebuilt on it: coordinates -> detector (identity) -> slicer through a RegionsSelector keyed on the
  map (each slice's transform with its own box; the inverse finds the slice from the slicer x, to
  1e-4), and from the slicer on the chain with the slice input fixed.  With ``nrs_ifu_slice_wcs``
  the full slice-keyed WCS stays, with its compound bounding box.
"""

from __future__ import annotations

import copy
import logging
import warnings

import numpy as np

from ...errors import InputFileError, ReferenceFileError
from . import nirspec as nrs

log = logging.getLogger("webbflow.steps.assign_wcs")

NSLICES = 30
REFTYPES = ("camera", "collimator", "disperser", "fore", "fpa", "ote", "wavelengthrange",
            "ifuslicer", "ifupost", "ifufore", "chromcorr")
BBOX_Y_RANGE = (-0.55, 0.55)  # jwst traces the slices' edges here whatever the slit y range


def reftypes(model) -> tuple[str, ...]:
    return REFTYPES


# ---------------------------------------------------------------------------
# the IFU references


def _slicer(refs):
    data = np.asarray(nrs._entry(refs["ifuslicer"], "ifuslicer", "data"), dtype=np.float64)
    model = nrs._entry(refs["ifuslicer"], "ifuslicer", "model")
    if data.ndim != 2 or data.shape[0] < NSLICES or data.shape[1] != 5:
        raise ReferenceFileError("ifuslicer", nrs._ref_name(refs["ifuslicer"]),
                                 f"its data is {data.shape}, not one row of 5 per slice for {NSLICES} slices")
    return data, model


def _slice_location(row):
    from astropy.modeling.models import Scale, Shift

    _num, xc, yc, xsize, ysize = row
    return Scale(xsize) & Scale(ysize) | Shift(xc) & Shift(yc)


def ifupost_transform(refs, n: int):
    """Slice n of the ifupost reference: (x, y, lambda) on the slicer -> (x, y) on the MSA exit plane."""
    from astropy.modeling.models import Identity, Mapping

    sl = nrs._entry(refs["ifupost"], "ifupost", f"slice_{n}")
    try:
        linear, px, pxd, py, pyd = (sl[k] for k in ("linear", "xpoly", "xpoly_distortion", "ypoly",
                                                    "ypoly_distortion"))
    except (KeyError, TypeError):
        raise ReferenceFileError("ifupost", nrs._ref_name(refs["ifupost"]),
                                 f"slice_{n} lacks linear, xpoly(_distortion) or ypoly(_distortion)") from None
    xy, lam = Mapping((0, 1), n_inputs=3), Mapping((2,))
    model_x = (xy | px) + ((xy | pxd) * (lam | Identity(1)))
    model_y = (xy | py) + ((xy | pyd) * (lam | Identity(1)))
    out = Identity(2, name="ifupost_outmap")
    out.inverse = Mapping([0, 1, 2, 0, 1, 2])
    inmap = Mapping([0, 1, 2, 0, 1, 2], name="ifupost_inmap")
    inmap.inverse = Identity(2)
    return linear & Identity(1) | (inmap | (model_x & model_y) | out)


# ---------------------------------------------------------------------------
# the transforms


def _y_of_beta(msa2gwa, lam_cen, y_range):
    from astropy.modeling.models import Tabular1D

    dy = np.linspace(y_range[0], y_range[1], 1000)
    beta_in = msa2gwa(np.zeros(dy.shape), dy, [lam_cen] * dy.size)[1]
    return Tabular1D(points=(beta_in,), lookup_table=dy, bounds_error=False, name="tabular")


def gwa_to_ifuslit(model, disperser, refs, order, y_range):
    from astropy.modeling.models import Const1D, Identity, Mapping
    from stdatamodels.jwst.transforms.models import Gwa2Slit

    agreq = nrs.angle_from_disperser(model, disperser, order)
    lgreq = nrs.wavelength_from_disperser(model, disperser, order)
    velosys = model.meta.wcsinfo.velosys
    if velosys is not None:
        vcorr = nrs.velocity_correction(velosys)
        lgreq = lgreq | vcorr
        agreq = vcorr.inverse & Identity(3) | agreq
        log.info("Applied Barycentric velocity correction : %s", vcorr[1].amplitude.value)
    w = model.meta.wcsinfo
    lam_cen = 0.5 * (w.waverange_end - w.waverange_start) + w.waverange_start
    col2gwa = nrs.collimator_to_gwa(refs, disperser)
    ymin, ymax = y_range
    data, slicer_model = _slicer(refs)
    transforms = []
    for n in range(NSLICES):
        to_slicer = _slice_location(data[n]) | slicer_model
        post = ifupost_transform(refs, n)
        msa2gwa = to_slicer & Const1D(lam_cen) | post | col2gwa
        y_of_beta = _y_of_beta(msa2gwa, lam_cen, y_range)
        forward = (
            Mapping((0, 1, 0, 1), n_inputs=3)
            | Const1D(0) * Identity(1) & Const1D(-1) * Identity(1) & Identity(2)
            | Identity(1) & y_of_beta & Identity(2)
            | Mapping((0, 1, 0, 1, 1, 2, 3))
            | Identity(2) & msa2gwa & Identity(2)
            | Mapping((0, 1, 2, 3, 5), n_inputs=7)
            | Identity(2) & lgreq
            | nrs._outside_slit(ymin, ymax)
        )
        msa2gwa_lam = to_slicer & Identity(1) | post | col2gwa
        forward.inverse = Mapping((0, 1, 2, 2)) | msa2gwa_lam & Identity(1) | Mapping((3, 0, 1, 2)) | agreq
        transforms.append(forward)
    return Gwa2Slit(np.arange(NSLICES), transforms)


def ifuslit_to_slicer(refs):
    from astropy.modeling.models import Identity, Mapping
    from stdatamodels.jwst.transforms.models import Slit2Msa

    data, slicer_model = _slicer(refs)
    models = []
    for n in range(NSLICES):
        loc = _slice_location(data[n]).rename("slitdata_model")
        models.append(loc | slicer_model)
    s2m = Slit2Msa(np.arange(NSLICES), models)
    swap = Mapping((0, 1, 3, 2))
    swap.inverse = Mapping((0, 1, 3, 2))
    t = s2m & Identity(1) | swap
    t.inputs = ("name", "x_slit", "y_slit", "lam")
    t.outputs = ("x_slice", "y_slice", "lam", "name")
    return t


def slicer_to_msa(refs):
    from astropy.modeling.models import Identity, Mapping

    ifufore = nrs._entry(refs["ifufore"], "ifufore", "model")
    dup = Mapping((0, 1, 2, 2, 3))
    dup.inverse = Identity(4)
    t = dup | ifufore & Identity(2)
    t.inputs = ("x_slice", "y_slice", "lam", "name")
    t.outputs = ("x_msa", "y_msa", "lam", "name")
    return t


def ifu_msa_to_oteip(refs):
    from astropy.modeling.models import Identity, Mapping

    fore = nrs._entry(refs["fore"], "fore", "model")
    dup = Mapping((0, 1, 2, 2), name="msa2fore_mapping")
    dup.inverse = Mapping((0, 1, 2, 2), name="fore2msa")
    t = (dup | fore & Identity(1)) & Identity(1)
    t.inputs = ("x_msa", "y_msa", "lam", "name")
    t.outputs = ("x_ote", "y_ote", "lam", "name")
    return t


def oteip_to_chromcorr(refs):
    from astropy.modeling.models import Identity

    chrom = copy.deepcopy(nrs._entry(refs["chromcorr"], "chromcorr", "model"))
    if chrom.n_inputs != 3 or chrom.n_outputs != 3:
        raise ReferenceFileError("chromcorr", nrs._ref_name(refs["chromcorr"]),
                                 "its model does not map (x, y, wavelength) to (x, y, wavelength)")
    # jwst pads the inverse for the name input the pipeline carries along
    chrom.inverse = chrom.inverse & Identity(1)
    t = chrom & Identity(1)
    t.inputs = ("x_ote", "y_ote", "lam", "name")
    t.outputs = ("x_ote", "y_ote", "lam", "name")
    return t


def frames():
    from astropy import units as u
    from gwcs import coordinate_frames as cf

    f = nrs.frames()
    spec = cf.SpectralFrame(name="spectral", axes_order=(2,), unit=(u.micron,), axes_names=("wavelength",))
    slicer = cf.Frame2D(name="slicer_spatial", axes_order=(0, 1), unit=("", ""), axes_names=("x_slicer", "y_slicer"))
    oteip = cf.Frame2D(name="oteip", axes_order=(0, 1), unit=(u.deg, u.deg), axes_names=("X_OTEIP", "Y_OTEIP"))
    f["slicer"] = cf.CompositeFrame([slicer, spec], name="slicer")
    f["oteip_chromcorr"] = cf.CompositeFrame([oteip, spec], name="oteip_chromcorr")
    return f


def _no_data_on(model):
    inst = model.meta.instrument
    grating, filt = (inst.grating or "").upper(), (inst.filter or "").upper()
    if (inst.detector or "").upper() == "NRS2" and (grating.endswith("M") or (grating == "G140H" and filt == "F070LP")):
        raise InputFileError(model.meta.filename or "<in memory>",
                             f"no IFU slices fall on detector NRS2 with {grating}/{filt} (no data on this detector)")


def ifu_pipeline(model, refs, y_range=(-0.55, 0.55)):
    """The slice-keyed gwcs pipeline of an NRS_IFU exposure (jwst's ``nirspec.ifu``)."""
    from astropy.modeling.models import Identity

    from .. import _wcs

    _no_data_on(model)
    inst = model.meta.instrument
    disperser = nrs.Disperser(refs["disperser"], inst.gwa_xtilt, inst.gwa_ytilt)
    order, wrange = nrs.order_and_range(model, refs["wavelengthrange"])
    w = model.meta.wcsinfo
    w.waverange_start, w.waverange_end = wrange[0], wrange[1]
    w.spectral_order = order
    dms2sca = nrs.dms_to_sca(model)
    dms2sca.name = "dms2sca"
    det2gwa = nrs.detector_to_gwa(refs, inst.detector, disperser)
    det2gwa.name = "det2gwa"
    gwa2slit = gwa_to_ifuslit(model, disperser, refs, order, y_range)
    gwa2slit.name = "gwa2slit"
    slit2slicer = ifuslit_to_slicer(refs)
    slit2slicer.name = "slit2slicer"
    slicer2msa = slicer_to_msa(refs)
    slicer2msa.name = "slicer2msa"
    f = frames()
    if (inst.filter or "").upper() == "OPAQUE":
        return [(f["detector"], dms2sca), (f["sca"], det2gwa), (f["gwa"], gwa2slit), (f["slit_frame"], slit2slicer),
                (f["slicer"], slicer2msa), (f["msa_frame"], None)], wrange
    msa2oteip = ifu_msa_to_oteip(refs)
    msa2oteip.name = "msa2oteip"
    chrom = oteip_to_chromcorr(refs)
    chrom.name = "chrom_corr"
    oteip2v23 = nrs.oteip_to_v23(refs)
    oteip2v23.name = "oteip2v23"
    va = _wcs.dva_correction(model.meta.velocity_aberration.scale_factor, w.v2_ref, w.v3_ref) & Identity(2)
    va.name = "va_corr"
    va.inputs = ("v2", "v3", "lam", "name")
    va.outputs = ("v2", "v3", "lam", "name")
    tel2sky = _wcs.v23tosky(w.v2_ref, w.v3_ref, w.roll_ref, w.ra_ref, w.dec_ref) & Identity(2)
    tel2sky.name = "v2v3_to_sky"
    tel2sky.inputs = ("v2", "v3", "lam", "name")
    tel2sky.outputs = ("ra", "dec", "lam", "name")
    return [
        (f["detector"], dms2sca), (f["sca"], det2gwa), (f["gwa"], gwa2slit), (f["slit_frame"], slit2slicer),
        (f["slicer"], slicer2msa), (f["msa_frame"], msa2oteip), (f["oteip"], chrom),
        (f["oteip_chromcorr"], oteip2v23), (f["v2v3"], va), (f["v2v3vacorr"], tel2sky), (f["world"], None),
    ], wrange


def compound_bounding_box(wcs, wrange):
    from astropy.modeling import bounding_box as mbbox

    forward = wcs.forward_transform
    forward.inputs = ("x", "y", "name")
    det2slit = wcs.get_transform("detector", "slit_frame")
    slit2det = det2slit.inverse
    boxes = {n: nrs.slit_bounding_box(slit2det, n, wrange, *BBOX_Y_RANGE,
                                      det2slit=lambda x, y, sid: det2slit(x, y, sid))
             for n in range(NSLICES)}
    return mbbox.CompoundBoundingBox.validate(forward, boxes, selector_args=[("name", True)], order="F")


# ---------------------------------------------------------------------------
# fixing the slice, the slice map


fix_slice = nrs.fix_slit  # the slit (here: slice) input fixed, as for the slits of the MSA


def _box_grid(full, n):
    from gwcs.wcstools import grid_from_bounding_box

    return grid_from_bounding_box(full.bounding_box[n])


def slice_pixels(model, sky=True):
    """One pass over every slice's box on the full slice-keyed WCS: per slice the pixels with a
    finite wavelength, the mean slicer x over the box and (``sky``) RA, Dec, wavelength of those
    pixels.  jwst evaluates the whole chain on every pixel twice (footprint and slice map); a pixel
    with no wavelength has no sky position either, so the rest of the chain runs on the valid ones."""
    full = model.meta.wcs
    det2slit = full.get_transform("detector", "slit_frame")
    slit2slicer = full.get_transform("slit_frame", "slicer")
    slit2world = full.get_transform("slit_frame", "world") if sky else None
    out = []
    for n in range(NSLICES):
        x, y = _box_grid(full, n)
        _, xs, ys, lam = det2slit(x, y, n)
        # the grid reaches half a pixel past the box, where the WCS (which applies its box) gives NaN
        box = full.bounding_box[n]
        (x0, x1), (y0, y1) = (tuple(box[k]) for k in ("x", "y"))
        valid = np.isfinite(lam) & (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
        x_slicer = np.round(np.nanmean(slit2slicer(n, xs, ys, lam)[0]), 5)
        world = slit2world(n, xs[valid], ys[valid], lam[valid])[:3] if sky else None
        out.append((x[valid].astype(int), y[valid].astype(int), x_slicer, world))
    return out


def footprint(pixels):
    """The RA/Dec box of the slices' pixels and their wavelength range (jwst's NRS_IFU footprint)."""
    from .miri_mrs import _wrap_ra

    ra = _wrap_ra(np.concatenate([np.ravel(p[3][0]) for p in pixels]))
    dec = np.concatenate([np.ravel(p[3][1]) for p in pixels])
    lam = np.concatenate([np.ravel(p[3][2]) for p in pixels])
    lo, hi = np.nanmin(ra), np.nanmax(ra)
    lo = lo + 360.0 if lo < 0 else lo
    hi = hi - 360.0 if hi >= 360.0 else hi
    dlo, dhi = np.nanmin(dec), np.nanmax(dec)
    return np.array([lo, dlo, hi, dlo, hi, dhi, lo, dhi]), (np.nanmin(lam), np.nanmax(lam))


def apply_slicemap(model, pixels, replace_wcs=True):
    """The slice map (``regions``) and, unless told otherwise, the coordinate-based WCS built on it."""
    import gwcs
    from astropy.modeling import bind_bounding_box
    from astropy.modeling.models import Const1D, Identity, Mapping
    from gwcs import selector

    full = model.meta.wcs
    dms2sca = fix_slice(full.get_transform("detector", "sca"), 0)
    sca2gwa = fix_slice(full.get_transform("sca", "gwa"), 0)
    gwa2slit = full.get_transform("gwa", "slit_frame")
    slit2slicer = full.get_transform("slit_frame", "slicer")
    regions = np.zeros((2048, 2048), dtype=np.int32)
    transforms, slice_by_x = {}, {}
    for n, (xi, yi, x_slicer, _) in enumerate(pixels):
        regions[yi, xi] = n + 1
        t = dms2sca | sca2gwa | fix_slice(gwa2slit, n) | fix_slice(slit2slicer, n)
        bind_bounding_box(t, ((xi.min() - 0.5, xi.max() + 0.5), (yi.min() - 0.5, yi.max() + 0.5)), order="F")
        transforms[n + 1] = t
        slice_by_x[x_slicer] = Mapping((0,), n_inputs=3) | Const1D(n + 1)
    if hasattr(type(model), "arrays") and any(a.name == "regions" for a in type(model).arrays):
        model.regions = regions
    if not replace_wcs:
        return
    mapper = selector.LabelMapperArray(regions)
    mapper.inverse = selector.LabelMapperDict(inputs=("x_slice", "y_slice", "lam"), mapper=slice_by_x,
                                              inputs_mapping=Mapping((0,), n_inputs=3), atol=1e-4)
    det2slicer = selector.RegionsSelector(("x", "y"), ("x_slice", "y_slice", "lam"), label_mapper=mapper,
                                          selector=transforms, name="det2slicer")
    det2slicer.inputs = ("x", "y")
    det2slicer.outputs = ("x_slice", "y_slice", "lam")
    coord2det = Identity(2)
    coord2det.name = "coord2det"
    coord2det.inputs = ("x", "y")
    coord2det.outputs = ("x", "y")
    at = full.available_frames.index("slicer")
    coords = gwcs.coordinate_frames.Frame2D(name="coordinates", axes_order=(0, 1))
    pipeline = [(coords, coord2det), (full.pipeline[0].frame, det2slicer)]
    pipeline += [(st.frame, fix_slice(st.transform, 0)) for st in full.pipeline[at:]]
    model.meta.wcs = gwcs.WCS(pipeline)


def slice_wcs(model, n):
    """The WCS of slice ``n`` (0-29): no slice input, that slice's bounding box (jwst's nrs_wcs_set_input)."""
    return wcs_of_slice(model.meta.wcs, n)


def wcs_of_slice(full, n):
    """:func:`slice_wcs` of a full IFU gwcs object (slice-keyed or coordinate-based)."""
    from gwcs import WCS

    coordinate_based = "gwa" not in full.available_frames
    ids = list(range(NSLICES)) if coordinate_based else list(full.get_transform("gwa", "slit_frame").slit_ids)
    if n not in ids:
        raise ValueError(f"Input slit name {n} is not present in the input model.")
    steps = []
    for i, st in enumerate(full.pipeline):
        t = fix_slice(st.transform, n)
        if coordinate_based and i == 0:
            t = copy.deepcopy(t)
        steps.append((st.frame, t))
    w = WCS(steps)
    if hasattr(full.pipeline[1].transform, "selector"):
        w.bounding_box = full.pipeline[1].transform.selector[n + 1].bounding_box
    elif full.bounding_box is not None:
        w.bounding_box = full.bounding_box[n]
    return w


def ifu_slice_wcs(model) -> list:
    """The WCS of each of the 30 slices (jwst's nrs_ifu_wcs)."""
    return [slice_wcs(model, n) for n in range(NSLICES)]


# ---------------------------------------------------------------------------
# the step


def assign(model, refs, params):
    from gwcs import WCS
    from stcal.alignment.util import compute_s_region_keyword

    if all(refs.get(k) is None for k in ("ifufore", "ifuslicer", "ifupost")):
        raise ReferenceFileError("ifufore/ifuslicer/ifupost", "N/A",
                                 "no IFU reference files for this NRS_IFU exposure; cannot build its WCS")
    for rt in REFTYPES:
        if refs.get(rt) is None:
            log.info("Step assign_wcs skipped: reference type %s is N/A for this exposure", rt)
            return model, "SKIPPED"
    nrs._check_pointing(model)
    if (model.meta.instrument.grating or "").upper() == "PRISM" and model.meta.instrument.gwa_tilt is None:
        raise InputFileError(model.meta.filename or "<in memory>", "has no GWA_TILT (the prism's temperature)")
    model.meta.wcsinfo.specsys = "BARYCENT"
    model.meta.wcsinfo.dispersion_direction = 1
    pipeline, wrange = ifu_pipeline(model, refs, (params.slit_y_low, params.slit_y_high))
    model.meta.wcs = WCS(pipeline)
    model.meta.wcs.bounding_box = compound_bounding_box(model.meta.wcs, wrange)
    sky = (model.meta.instrument.filter or "").upper() != "OPAQUE"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "(invalid value|Mean of empty)", RuntimeWarning)
        pixels = slice_pixels(model, sky)
    if sky:
        box, lam_range = footprint(pixels)
        s_region = compute_s_region_keyword(box)
        if s_region is not None:
            model.meta.wcsinfo.s_region = s_region
        model.meta.wcsinfo.spectral_region = lam_range
    else:
        model.meta.wcsinfo.s_region = None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "invalid value", RuntimeWarning)
        apply_slicemap(model, pixels, replace_wcs=not params.nrs_ifu_slice_wcs)
    log.info("assign_wcs: NIRSpec IFU WCS built for %s slices (%s); S_REGION %s", NSLICES,
             "slice-keyed" if params.nrs_ifu_slice_wcs else "coordinate-based", model.meta.wcsinfo.s_region)
    return model


__all__ = ["apply_slicemap", "assign", "fix_slice", "ifu_pipeline", "ifu_slice_wcs", "reftypes", "slice_pixels",
           "slice_wcs", "wcs_of_slice"]
