"""assign_wcs for the slitless grisms: NIRCam WFSS (NRC_WFSS), NIRCam grism time series
(NRC_TSGRISM, GRISMR) and NIRISS WFSS (NIS_WFSS), as jwst 3.0 builds them.

A dispersed exposure's WCS starts on the grism detector and goes through the direct image:

    grism_detector (x, y, x0, y0, order) --dispersion--> direct_image (x0, y0, wavelength, order)
        --distortion--> v2v3 --DVA--> v2v3vacorr --pointing--> world (ra, dec, wavelength, order)

The dispersion is the ``specwcs`` reference's per-order polynomials, wrapped in the grism
transforms of ``stdatamodels.jwst.transforms`` (NIRCAMForwardRow/ColumnGrismDispersion and
NIRCAMBackwardGrismDispersion; NIRISS's with the filter wheel's rotation FWCPOS - fwcpos_ref), with
the barycentric velocity correction 1 / (1 + VELOSYS / c) on the wavelength.  The spatial part is
the imaging WCS of the same detector (distortion, filter offset, DVA, pointing), carrying the
wavelength and order alongside.

- WFSS: the direct-image position (x0, y0) is an input (extract_2d gives each catalogue source's);
  the FITS header gets the SIP approximation of the *imaging* WCS, as jwst writes it for WFSS.
- TSGRISM: the source sits at the aperture's reference point (XREF_SCI, YREF_SCI): the transform
  takes (x, y, order) in subarray pixels, shifts them to full frame and fills in that point.
  jwst's DHS branch (a ``regions`` reference selecting stripes) is not built here.

Every exposure also gets SPECSYS = BARYCENT and DISPAXIS (1: along rows; 2: along columns).
"""

from __future__ import annotations

import copy
import logging

from ...errors import InputFileError, ReferenceFileError, UnsupportedModeError
from .. import _wcs

log = logging.getLogger("webbflow.steps.assign_wcs")

SPEED_OF_LIGHT = 299792458.0  # m/s (astropy.constants.c)

# (exp_type, optic) -> dispersion direction (jwst.lib.dispaxis): NIRCam by pupil, NIRISS by filter
DISPAXIS = {
    ("NRC_WFSS", "GRISMR"): 1, ("NRC_WFSS", "GRISMC"): 2,
    ("NRC_TSGRISM", "GRISMR"): 1, ("NRC_TSGRISM", "GDHS0"): 1,
    ("NIS_WFSS", "GR150R"): 2, ("NIS_WFSS", "GR150C"): 1,
}


def dispersion_direction(model) -> int | None:
    exp_type = (model.meta.exposure.type or "").upper()
    optic = model.meta.instrument.filter if exp_type.startswith("NIS") else model.meta.instrument.pupil
    return DISPAXIS.get((exp_type, (optic or "").upper()))


def reftypes(model) -> tuple[str, ...]:
    return ("distortion", "filteroffset", "specwcs")


def _name(model) -> str:
    return model.meta.filename or "<in memory>"


def _ref_name(ref) -> str:
    return getattr(ref.meta, "filename", None) or "<in memory>"


def _tree(ref, *keys, optional=()):
    """The named entries of a specwcs tree (None for absent optional ones)."""
    out = []
    for k in keys:
        extra = ref._asdf_extra
        v = extra.get(k)
        if v is None and k not in optional:
            raise ReferenceFileError("specwcs", _ref_name(ref), f"has no {k!r} entry")
        out.append(v)
    return out


def velocity_correction(velosys):
    """Wavelength factor to the barycentric frame (jwst's model: Identity * Const1D, inverse Identity / Const1D)."""
    from astropy.modeling.models import Const1D, Identity

    factor = 1.0 / (1.0 + velosys / SPEED_OF_LIGHT)
    corr = Identity(1) * Const1D(factor, name="velocity_correction")
    corr.inverse = Identity(1) / Const1D(factor, name="inv_vel_correction")
    return corr


def _with_velocity(det2det, velosys):
    from astropy.modeling.models import Identity, Mapping

    if velosys is None:
        return det2det
    corr = velocity_correction(velosys)
    log.info("Added Barycentric velocity correction: %s", corr[1].amplitude.value)
    return det2det | Mapping((0, 1, 2, 3)) | Identity(2) & corr & Identity(1)


def nircam_dispersion(specwcs, pupil: str, with_inverse_y: bool = True):
    """The forward (grism -> direct) dispersion with its backward inverse, from a NIRCam specwcs."""
    from stdatamodels.jwst.transforms.models import (
        NIRCAMBackwardGrismDispersion,
        NIRCAMForwardColumnGrismDispersion,
        NIRCAMForwardRowGrismDispersion,
    )

    displ, dispx, dispy, orders = _tree(specwcs, "displ", "dispx", "dispy", "orders")
    invl, invx, invy = _tree(specwcs, "invdispl", "invdispx", "invdispy", optional=("invdispl", "invdispx", "invdispy"))
    if not with_inverse_y:
        invy = None
    forward_cls = NIRCAMForwardColumnGrismDispersion if (pupil or "").upper() == "GRISMC" else NIRCAMForwardRowGrismDispersion
    kw = dict(lmodels=displ, xmodels=dispx, ymodels=dispy, inv_lmodels=invl, inv_xmodels=invx, inv_ymodels=invy)
    det2det = forward_cls(orders, **kw)
    det2det.inverse = NIRCAMBackwardGrismDispersion(orders, **kw)
    return det2det


def niriss_dispersion(specwcs, filt: str, fwcpos):
    """NIRISS's forward dispersion rotated by the filter wheel offset, with its backward inverse."""
    from stdatamodels.jwst.transforms.models import (
        NIRISSBackwardGrismDispersion,
        NIRISSForwardColumnGrismDispersion,
        NIRISSForwardRowGrismDispersion,
    )

    displ, dispx, dispy, invl, orders, fwcpos_ref = _tree(
        specwcs, "displ", "dispx", "dispy", "invdispl", "orders", "fwcpos_ref")
    theta = fwcpos - fwcpos_ref
    filt = (filt or "").upper()
    if filt.endswith("C"):
        forward = NIRISSForwardRowGrismDispersion(orders, lmodels=displ, xmodels=dispx, ymodels=dispy, theta=theta)
    elif filt.endswith("R"):
        forward = NIRISSForwardColumnGrismDispersion(orders, lmodels=displ, xmodels=dispx, ymodels=dispy, theta=theta)
    else:
        raise ValueError(f"FILTER keyword {filt} is not valid.")
    forward.inverse = NIRISSBackwardGrismDispersion(orders, lmodels=invl, xmodels=dispx, ymodels=dispy, theta=-theta)
    return forward


def _spectral_frame():
    from astropy import units as u
    from gwcs import coordinate_frames as cf

    return cf.SpectralFrame(name="spectral", axes_order=(2,), unit=(u.micron,), axes_names=("wavelength",))


def wfss_pipeline(model, refs) -> list:
    """grism_detector -> detector -> v2v3 -> v2v3vacorr -> world for a WFSS exposure (NIRCam or NIRISS)."""
    from astropy import units as u
    from astropy.modeling.models import Identity
    from gwcs import coordinate_frames as cf

    exp_type = (model.meta.exposure.type or "").upper()
    if exp_type == "NIS_WFSS":
        fwcpos = model.meta.instrument.filter_position
        if fwcpos is None:
            raise InputFileError(_name(model), "has no FWCPOS keyword (filter wheel position); cannot build a NIRISS grism WCS")
        det2det = niriss_dispersion(refs["specwcs"], model.meta.instrument.filter, fwcpos)
    else:
        det2det = nircam_dispersion(refs["specwcs"], model.meta.instrument.pupil)
    det2det = _with_velocity(det2det, model.meta.wcsinfo.velosys)

    gdetector = cf.Frame2D(name="grism_detector", axes_order=(0, 1), axes_names=("x_grism", "y_grism"),
                           unit=(u.pix, u.pix))
    spec = _spectral_frame()
    image = _wcs.imaging_pipeline(model, refs["distortion"], refs.get("filteroffset"))
    world = image.pop()[0]
    world.name = "sky"
    pipeline = [(gdetector, det2det)]
    for frame, transform in image:
        name = frame.name
        frame.name = name + "spatial"
        pipeline.append((cf.CompositeFrame([frame, spec], name=name), transform & Identity(2)))
    pipeline.append((cf.CompositeFrame([world, spec], name="world"), None))
    return pipeline


def _full_frame_distortion(model, distortion_ref, filteroffset_ref):
    """Full-frame detector -> V2/V3 with the filter offset (TSGRISM shifts subarray pixels itself)."""
    from astropy.modeling.models import Shift

    transform = getattr(distortion_ref, "model", None)
    if transform is None:
        raise ReferenceFileError("distortion", _ref_name(distortion_ref), "holds no 'model' transform")
    transform = copy.deepcopy(transform)
    bbox = _wcs._existing_bbox(transform)
    inst = (model.meta.instrument.name or "").upper()
    off = _wcs.filter_offset(filteroffset_ref, inst, model.meta.instrument.filter, model.meta.instrument.pupil)
    if off is not None and off[0] is not None and off[1] is not None:
        transform = Shift(off[0]) & Shift(off[1]) | transform
    _wcs._bind(transform, _wcs.shape_bbox(model.data.shape) if bbox is None else bbox)
    return transform


def tsgrism_pipeline(model, refs) -> list:
    """grism_detector (x, y, order) -> direct_image -> v2v3 -> v2v3vacorr -> world for NRC_TSGRISM (GRISMR)."""
    from astropy import coordinates as coord
    from astropy import units as u
    from astropy.modeling.models import Const1D, Identity, Mapping
    from gwcs import coordinate_frames as cf

    ins = model.meta.instrument
    if (ins.module or "").upper() != "A":
        raise UnsupportedModeError(f"{_name(model)}: NRC_TSGRISM is supported for module A only (MODULE = {ins.module})")
    if "DHS" in (model.meta.subarray.name or "").upper():
        raise UnsupportedModeError(f"{_name(model)}: NRC_TSGRISM with the DHS (subarray {model.meta.subarray.name}) "
                                   "needs the regions reference, not supported yet")
    if "GRISMR" not in (ins.pupil or "").upper():
        raise UnsupportedModeError(f"{_name(model)}: NRC_TSGRISM supports the GRISMR pupil only (PUPIL = {ins.pupil})")
    w = model.meta.wcsinfo
    for attr, kw in (("siaf_xref_sci", "XREF_SCI"), ("siaf_yref_sci", "YREF_SCI")):
        if getattr(w, attr) is None:
            raise InputFileError(_name(model), f"has no {kw} keyword; the TSGRISM source position is unknown")
    missing = [k.upper() for k in ("v2_ref", "v3_ref", "roll_ref", "ra_ref", "dec_ref") if getattr(w, k) is None]
    if missing:
        raise InputFileError(_name(model), f"has no pointing keywords {', '.join(missing)}; cannot build a WCS")

    det2det = nircam_dispersion(refs["specwcs"], ins.pupil, with_inverse_y=False)
    det2det = _with_velocity(det2det, w.velosys)
    xc, yc = Const1D(w.siaf_xref_sci), Const1D(w.siaf_yref_sci)
    xc.inverse, yc.inverse = Const1D(w.siaf_xref_sci), Const1D(w.siaf_yref_sci)
    sub = _wcs.subarray_offset(model)
    sub2direct = Mapping((0, 1, 0, 1, 2)) | (Identity(2) & xc & yc & Identity(1)) | det2det
    if sub is not None:
        sub2direct = sub & Identity(1) | sub2direct

    distortion = _full_frame_distortion(model, refs["distortion"], refs.get("filteroffset")) & Identity(2)
    va = _wcs.dva_correction(model.meta.velocity_aberration.scale_factor, w.v2_ref, w.v3_ref) & Identity(2)
    tel2sky = _wcs.v23tosky(w.v2_ref, w.v3_ref, w.roll_ref, w.ra_ref, w.dec_ref) & Identity(2)

    spec = _spectral_frame()
    frames = {
        "grism_detector": cf.Frame2D(name="grism_detector", axes_order=(0, 1), unit=(u.pix, u.pix)),
        "direct_image": cf.CompositeFrame([cf.Frame2D(name="full_detector", axes_order=(0, 1), axes_names=("dx", "dy"),
                                                      unit=(u.pix, u.pix)), spec], name="direct_image"),
        "v2v3": cf.CompositeFrame([cf.Frame2D(name="v2v3_spatial", axes_order=(0, 1), axes_names=("v2", "v3"),
                                              unit=(u.deg, u.deg)), spec], name="v2v3"),
        "v2v3vacorr": cf.CompositeFrame([cf.Frame2D(name="v2v3vacorr_spatial", axes_order=(0, 1),
                                                    axes_names=("v2", "v3"), unit=(u.arcsec, u.arcsec)), spec],
                                        name="v2v3vacorr"),
        "world": cf.CompositeFrame([cf.CelestialFrame(reference_frame=coord.ICRS(), name="icrs"), spec], name="world"),
    }
    return [
        (frames["grism_detector"], sub2direct),
        (frames["direct_image"], distortion),
        (frames["v2v3"], va),
        (frames["v2v3vacorr"], tel2sky),
        (frames["world"], None),
    ]


def imaging_sip(model, refs, params) -> None:
    """The FITS SIP approximation of the exposure's *imaging* WCS (over its whole array) into meta.wcsinfo."""
    from gwcs import WCS

    imwcs = WCS(_wcs.imaging_pipeline(model, refs["distortion"], refs.get("filteroffset")))
    imwcs.bounding_box = _wcs.shape_bbox(model.data.shape)
    grism_wcs = model.meta.wcs
    model.meta.wcs = imwcs  # update_fits_sip fits the model's WCS: lend it the imaging one
    try:
        _wcs.update_fits_sip(
            model, max_pix_error=params.sip_max_pix_error, degree=params.sip_degree,
            max_inv_pix_error=params.sip_max_inv_pix_error, inv_degree=params.sip_inv_degree,
            npoints=params.sip_npoints, crpix=None)
    finally:
        model.meta.wcs = grism_wcs


def assign(model, refs, params):
    from gwcs import WCS

    from ...models import ImageModel

    exp_type = (model.meta.exposure.type or "").upper()
    if refs.get("specwcs") is None or refs.get("distortion") is None:
        missing = [r for r in ("specwcs", "distortion") if refs.get(r) is None]
        log.info("Step assign_wcs skipped: reference type %s is N/A for this exposure", ", ".join(missing))
        return model, "SKIPPED"
    if exp_type in ("NRC_WFSS", "NIS_WFSS") and not isinstance(model, ImageModel):
        raise InputFileError(_name(model), f"is {type(model).__name__}; {exp_type} needs an ImageModel (a _rate file)")
    model.meta.wcsinfo.specsys = "BARYCENT"
    model.meta.wcsinfo.dispersion_direction = dispersion_direction(model)
    pipeline = tsgrism_pipeline(model, refs) if exp_type == "NRC_TSGRISM" else wfss_pipeline(model, refs)
    model.meta.wcs = WCS(pipeline)
    if exp_type in ("NRC_WFSS", "NIS_WFSS") and params.sip_approx:
        try:
            imaging_sip(model, refs, params)
        except (ValueError, RuntimeError) as exc:
            log.warning("Failed to write the FITS SIP approximation of the WCS: %s", exc)
    log.info("assign_wcs: %s grism WCS built (DISPAXIS %s)", exp_type, model.meta.wcsinfo.dispersion_direction)
    return model
