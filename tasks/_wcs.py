"""WCS helpers shared by the imaging steps (assign_wcs, resample).

The imaging WCS of a JWST exposure is a gwcs pipeline of four frames::

    detector --distortion--> v2v3 --DVA scale--> v2v3vacorr --V23ToSky--> world

- ``distortion``: the distortion reference's transform (full-frame detector
  pixels, 0-based, to V2/V3 in arcsec), after a per-filter pixel shift from
  the filteroffset reference, and after a shift from subarray to full-frame
  pixels;
- the differential velocity aberration: a scale about (V2_REF, V3_REF) by
  VA_SCALE;
- ``V23ToSky``: the rotation of the telescope frame to the sky, from the
  pointing (V2_REF, V3_REF, ROLL_REF, RA_REF, DEC_REF), with V2/V3 treated as
  spherical coordinates.

The resampled (i2d) output WCS is a plain TAN projection whose pixel scale is
that of the input at its reference point and whose orientation follows the
input's ROLL_REF / V3I_YANG / VPARITY (stcal's ``wcs_from_sregions``).

This module also writes the FITS view of a WCS into ``meta.wcsinfo``: the SIP
approximation (gwcs ``to_fits_sip``) of a distorted imaging WCS, and the plain
linear keywords of a resampled one.
"""

from __future__ import annotations

import copy
import logging
import math
import re

import numpy as np

log = logging.getLogger("webbflow.steps.wcs")

# Exposure types whose WCS is the imaging pipeline, by instrument (jwst 3.0).
IMAGING_MODES = {
    "NIRCAM": {"NRC_IMAGE", "NRC_TACQ", "NRC_TACONFIRM", "NRC_CORON", "NRC_FOCUS", "NRC_TSIMAGE"},
    "NIRISS": {"NIS_IMAGE", "NIS_AMI", "NIS_TACQ", "NIS_TACONFIRM", "NIS_FOCUS"},
    "MIRI": {"MIR_IMAGE", "MIR_TACQ", "MIR_LYOT", "MIR_4QPM", "MIR_CORONCAL", "MIR_TACONFIRM"},
    "FGS": {"FGS_IMAGE", "FGS_FOCUS"},
}

# Exposure types jwst fits a FITS SIP approximation for (its IMAGING_TYPES).
SIP_EXP_TYPES = {
    "FGS_FOCUS", "FGS_IMAGE", "MIR_4QPM", "MIR_CORONCAL", "MIR_IMAGE", "MIR_LYOT", "MIR_TACONFIRM",
    "MIR_TACQ", "NIS_AMI", "NIS_FOCUS", "NIS_IMAGE", "NIS_TACONFIRM", "NIS_TACQ", "NRC_CORON",
    "NRC_FOCUS", "NRC_IMAGE", "NRC_TACONFIRM", "NRC_TACQ", "NRC_TSIMAGE", "NRS_CONFIRM", "NRS_FOCUS",
    "NRS_IMAGE", "NRS_MIMF", "NRS_MSATA", "NRS_TACONFIRM", "NRS_TACQ", "NRS_TASLIT", "NRS_VERIFY",
    "NRS_WATA",
}

# SIP polynomial degrees tried when the step's sip_degree / sip_inv_degree is None.
MAX_SIP_DEGREE = 6

# ---------------------------------------------------------------------------
# the transforms


def v23tosky(v2_ref: float, v3_ref: float, roll_ref: float, ra_ref: float, dec_ref: float, wrap_v2_at=180, wrap_lon_at=360):
    """V2/V3 (arcsec) -> (RA, Dec) in degrees, for the pointing (V2_REF, V3_REF arcsec; angles degrees).

    The telescope frame is rotated onto the sky by five Euler rotations:
    about z by V2_REF, about y by -V3_REF (bringing the reference point to
    the x axis), about x by ROLL_REF, about y by DEC_REF and about z by
    -RA_REF.
    """
    from astropy.modeling.models import RotationSequence3D, Scale
    from gwcs.geometry import CartesianToSpherical, SphericalToCartesian

    angles = np.array([v2_ref / 3600.0, -v3_ref / 3600.0, roll_ref, dec_ref, -ra_ref])
    rotation = RotationSequence3D(angles, axes_order="zyxyz")
    model = (
        (Scale(1 / 3600) & Scale(1 / 3600))
        | SphericalToCartesian(wrap_lon_at=wrap_v2_at)
        | rotation
        | CartesianToSpherical(wrap_lon_at=wrap_lon_at)
    )
    model.name = "v23tosky"
    return model


def dva_correction(va_scale, v2_ref, v3_ref):
    """The differential velocity aberration: V2/V3 scaled by ``va_scale`` about (v2_ref, v3_ref)."""
    from astropy.modeling.models import Identity, Scale, Shift

    if va_scale is None or va_scale == 1:
        return Identity(2)
    if va_scale <= 0:
        raise ValueError(f"velocity aberration scale (VA_SCALE) must be positive, not {va_scale}")
    corr = Scale(va_scale, name="dva_scale_v2") & Scale(va_scale, name="dva_scale_v3")
    v2_ref = v2_ref or 0.0
    v3_ref = v3_ref or 0.0
    if v2_ref == 0 and v3_ref == 0:
        return corr
    # scaling about the reference point: v' = s * v + (1 - s) * v_ref
    corr = corr | (Shift((1 - va_scale) * v2_ref, name="dva_v2_shift") & Shift((1 - va_scale) * v3_ref, name="dva_v3_shift"))
    corr.name = "DVA_Correction"
    return corr


def subarray_offset(model):
    """Shift from subarray to full-frame pixels (0-based), or None for a full frame at (1, 1)."""
    from astropy.modeling.models import Identity, Shift

    xstart = model.meta.subarray.xstart
    ystart = model.meta.subarray.ystart
    tx = Shift(xstart - 1) if xstart is not None and xstart != 1 else None
    ty = Shift(ystart - 1) if ystart is not None and ystart != 1 else None
    if tx is None and ty is None:
        return None
    return (tx or Identity(1)) & (ty or Identity(1))


def shape_bbox(shape) -> tuple[tuple[float, float], tuple[float, float]]:
    """((x_lo, x_hi), (y_lo, y_hi)) covering the pixels of an array of ``shape`` (edges at -0.5)."""
    return ((-0.5, shape[-1] - 0.5), (-0.5, shape[-2] - 0.5))


def subarray_bbox(model) -> tuple[tuple[float, float], tuple[float, float]]:
    """((x_lo, x_hi), (y_lo, y_hi)) of the subarray from SUBSIZE1/2, in subarray pixels."""
    xsize = model.meta.subarray.xsize
    ysize = model.meta.subarray.ysize
    return ((-0.5, -0.5 if xsize is None else xsize - 0.5), (-0.5, -0.5 if ysize is None else ysize - 0.5))


def _existing_bbox(transform):
    """A transform's bounding box as ((x_lo, x_hi), (y_lo, y_hi)), or None when it has none."""
    try:
        bb = transform.bounding_box
    except NotImplementedError:
        return None
    return bb.bounding_box(order="F")


def _bind(transform, bbox) -> None:
    from astropy.modeling import bind_bounding_box

    bind_bounding_box(transform, bbox, order="F")


def filter_offset(filteroffset_ref, instrument: str, filt, pupil) -> tuple[float, float] | None:
    """(column, row) pixel offset for the exposure's filter (and pupil, except for MIRI), or None."""
    if filteroffset_ref is None:
        return None
    rows = getattr(filteroffset_ref, "filters", None) or []
    rows = [dict(r) for r in rows]
    if instrument == "MIRI":
        for r in rows:
            if r.get("filter") == filt:
                return r.get("column_offset"), r.get("row_offset")
        return None
    matches = [r for r in rows if r.get("filter") == filt and r.get("pupil") == pupil]
    if len(matches) > 1:
        from ..errors import ReferenceFileError

        raise ReferenceFileError(
            "filteroffset", getattr(filteroffset_ref.meta, "filename", None) or "<in memory>",
            f"has {len(matches)} rows for filter {filt} pupil {pupil}; expected one",
        )
    if not matches:
        log.debug("No filter offset for filter %s pupil %s", filt, pupil)
        return None
    col, row = matches[0].get("column_offset", "N/A"), matches[0].get("row_offset", "N/A")
    if col == "N/A" or row == "N/A":
        return None
    return col, row


def imaging_distortion(model, distortion_ref, filteroffset_ref=None):
    """Detector (subarray pixels, 0-based) -> V2/V3 transform, with its bounding box bound."""
    from astropy.modeling.models import Shift

    instrument = (model.meta.instrument.name or "").upper()
    transform = getattr(distortion_ref, "model", None)
    if transform is None:
        from ..errors import ReferenceFileError

        raise ReferenceFileError(
            "distortion", getattr(distortion_ref.meta, "filename", None) or "<in memory>", "holds no 'model' transform"
        )
    # the reference may serve several exposures: never modify its transform
    transform = copy.deepcopy(transform)
    bbox = _existing_bbox(transform)

    if instrument != "FGS":
        off = filter_offset(filteroffset_ref, instrument, model.meta.instrument.filter, model.meta.instrument.pupil)
        if off is not None and off[0] is not None and off[1] is not None:
            log.info("Filter offsets (column, row): %s, %s", off[0], off[1])
            transform = Shift(off[0]) & Shift(off[1]) | transform
    if bbox is None or instrument != "FGS":
        _bind(transform, shape_bbox(model.data.shape) if bbox is None else bbox)

    sub = subarray_offset(model)
    if sub is not None:
        transform = sub | transform
        _bind(transform, subarray_bbox(model))
    return transform


def imaging_pipeline(model, distortion_ref, filteroffset_ref=None) -> list:
    """The gwcs pipeline ``[(frame, transform), ...]`` of an imaging exposure."""
    from astropy import coordinates as coord
    from astropy import units as u
    from gwcs import coordinate_frames as cf

    w = model.meta.wcsinfo
    missing = [k for k in ("v2_ref", "v3_ref", "roll_ref", "ra_ref", "dec_ref") if getattr(w, k) is None]
    if missing:
        from ..errors import InputFileError

        kws = {"v2_ref": "V2_REF", "v3_ref": "V3_REF", "roll_ref": "ROLL_REF", "ra_ref": "RA_REF", "dec_ref": "DEC_REF"}
        raise InputFileError(
            model.meta.filename or "<in memory>",
            f"has no pointing keywords {', '.join(kws[k] for k in missing)} in its SCI header; cannot build a WCS",
        )
    detector = cf.Frame2D(name="detector", axes_order=(0, 1), unit=(u.pix, u.pix))
    v2v3 = cf.Frame2D(name="v2v3", axes_order=(0, 1), axes_names=("v2", "v3"), unit=(u.arcsec, u.arcsec))
    v2v3vacorr = cf.Frame2D(name="v2v3vacorr", axes_order=(0, 1), axes_names=("v2", "v3"), unit=(u.arcsec, u.arcsec))
    world = cf.CelestialFrame(reference_frame=coord.ICRS(), name="world")

    distortion = imaging_distortion(model, distortion_ref, filteroffset_ref)
    va = dva_correction(model.meta.velocity_aberration.scale_factor, w.v2_ref, w.v3_ref)
    tel2sky = v23tosky(w.v2_ref, w.v3_ref, w.roll_ref, w.ra_ref, w.dec_ref)
    return [(detector, distortion), (v2v3, va), (v2v3vacorr, tel2sky), (world, None)]


# ---------------------------------------------------------------------------
# FITS views of a WCS, in meta.wcsinfo


def _drop_wcsinfo(model, pattern: re.Pattern) -> None:
    """Unset matching meta.wcsinfo entries, and the matching cards kept from the input's SCI header."""
    wcsinfo = model.meta.wcsinfo
    for name in list(type(wcsinfo).model_fields) + list((wcsinfo.model_extra or {}).keys()):
        if pattern.match(name) and getattr(wcsinfo, name, None) is not None:
            if name in type(wcsinfo).model_fields:
                setattr(wcsinfo, name, None)
            else:
                delattr(wcsinfo, name)
    sci = model._headers.get("SCI")
    if sci is not None:
        for key in list(sci.keys()):
            if pattern.match(key.lower()):
                del sci[key]


def _set_wcsinfo(model, values: dict) -> None:
    wcsinfo = model.meta.wcsinfo
    for k, v in values.items():
        if isinstance(v, np.generic):
            v = v.item()
        setattr(wcsinfo, k, v)


def update_fits_sip(
    model,
    max_pix_error: float = 0.01,
    degree=None,
    max_inv_pix_error: float | None = 0.01,
    inv_degree=None,
    npoints: int = 12,
    crpix=None,
    projection: str = "TAN",
):
    """Write the FITS WCS + SIP approximation of ``model.meta.wcs`` into ``meta.wcsinfo``.

    ``crpix`` (1-based) defaults to the CRPIX1/2 already in wcsinfo, else the
    centre of the bounding box.  ``degree``/``inv_degree`` None tries degrees
    1..5 and keeps the lowest that meets ``max_pix_error``/``max_inv_pix_error``.
    Returns the FITS header gwcs produced.
    """
    w = model.meta.wcsinfo
    if crpix is None:
        crpix = [w.crpix1, w.crpix2]
    if None in crpix:
        crpix = None
    if degree is None:
        degree = range(1, MAX_SIP_DEGREE)
    if inv_degree is None:
        inv_degree = range(1, MAX_SIP_DEGREE)
    hdr = model.meta.wcs.to_fits_sip(
        max_pix_error=max_pix_error,
        degree=degree,
        max_inv_pix_error=max_inv_pix_error,
        inv_degree=inv_degree,
        npoints=npoints,
        crpix=crpix,
        projection=projection,
    )
    values = {k.lower(): v for k, v in hdr.items() if not k.upper().startswith("NAXIS")}
    _drop_wcsinfo(model, re.compile(r"^(naxis|cdelt[12]|pc[12]_[12]|[ab]p?_order|[ab]p?_\d_\d)$"))
    _set_wcsinfo(model, values)
    return hdr


def s_region_keyword(footprint) -> str | None:
    """S_REGION's ``POLYGON ICRS`` of a footprint's four (RA, Dec) vertices, 9 decimals each; None when
    one is NaN.  (stcal's compute_s_region_keyword writes the same; importing it imports
    stcal.alignment and with it shapely, 3 MiB that nothing else in a spec2 run uses.)"""
    s_region = "POLYGON ICRS  " + " ".join(format(v, ".9f") for v in np.asarray(footprint).flatten())
    if "nan" in s_region:
        log.info("There are NaNs in s_region, S_REGION not updated.")
        return None
    return s_region


def update_s_region(model) -> None:
    """S_REGION from the footprint of the imaging WCS (pixel edges of its bounding box)."""
    wcs = model.meta.wcs
    bbox = wcs.bounding_box
    if bbox is None:  # the data's extent, set on the WCS
        shape = model.data.shape
        bbox = wcs.bounding_box = ((-0.5, shape[-1] - 0.5), (-0.5, shape[-2] - 0.5))
    footprint = wcs.footprint(bbox, center=False, axis_type="spatial").T[:2, :]
    np.mod(footprint[0], 360, out=footprint[0])  # RA positive
    s_region = s_region_keyword(footprint.T)
    if s_region is not None:
        model.meta.wcsinfo.s_region = s_region
        log.info("S_REGION: %s", s_region)


def is_sky_like(frame) -> bool:
    from gwcs import coordinate_frames as cf

    if isinstance(frame, cf.CelestialFrame):
        return True
    if isinstance(frame, cf.CompositeFrame):
        return any(isinstance(f, cf.CelestialFrame) for f in frame.frames)
    return False


# ---------------------------------------------------------------------------
# the resampled (i2d) output WCS


def resampled_wcs(
    wcs,
    wcsinfo: dict,
    shape,
    s_regions: list[str],
    pixel_scale_ratio: float = 1.0,
    pixel_scale: float | None = None,
    output_shape=None,
    rotation: float | None = None,
    crpix=None,
    crval=None,
):
    """The output WCS of a resampling, as jwst chooses it.

    ``wcs``/``wcsinfo``/``shape``: the first input's WCS, its wcsinfo (needs
    ra_ref, dec_ref, roll_ref, v3yangle, vparity) and data shape;
    ``s_regions``: the S_REGION polygons of all inputs (their union is
    covered). ``pixel_scale`` is in degrees and overrides
    ``pixel_scale_ratio`` (output/input scale at the input's reference
    point). ``output_shape`` is (ny, nx); ``crpix`` 0-based.

    Returns ``(wcs, input_scale_deg, output_scale_deg, pixel_scale_ratio)``.
    """
    from stcal.alignment.util import compute_scale, wcs_from_sregions
    from stcal.resample.utils import compute_mean_pixel_area

    if not s_regions:
        raise ValueError("no input footprints (S_REGION) to resample")
    if wcs.output_frame.naxes != 2:
        from ..errors import UnsupportedModeError

        raise UnsupportedModeError(f"resampling needs a 2-axis celestial WCS; this one has {wcs.output_frame.naxes} axes")
    ref_wcs = copy.deepcopy(wcs)
    if pixel_scale is None:
        scale_in = compute_scale(ref_wcs, fiducial=np.array([wcsinfo["ra_ref"], wcsinfo["dec_ref"]]))
        pixel_scale = scale_in * pixel_scale_ratio
    else:
        scale_in = float(np.rad2deg(math.sqrt(compute_mean_pixel_area(ref_wcs, shape=shape))))
        pixel_scale_ratio = pixel_scale / scale_in
    log.info("Output pixel scale %.6g arcsec (ratio %.6g to the input's)", 3600 * pixel_scale, pixel_scale_ratio)
    out = wcs_from_sregions(
        s_regions,
        ref_wcs=ref_wcs,
        ref_wcsinfo=wcsinfo,
        pscale_ratio=pixel_scale_ratio,
        pscale=pixel_scale,
        rotation=rotation,
        shape=output_shape,
        crpix=crpix,
        crval=crval,
    )
    return out, scale_in, pixel_scale, pixel_scale_ratio


def split_s_regions(s_region: str | None) -> list[str]:
    """The polygons of an S_REGION that may hold several ("POLYGON ... POLYGON ...")."""
    if not s_region:
        return []
    return ["POLYGON ICRS " + p.strip() for p in s_region.split("POLYGON ICRS") if p.strip()]


def update_wcsinfo_linear(model) -> None:
    """Write the linear FITS keywords of a resampled (FITSImagingWCSTransform) WCS into meta.wcsinfo.

    SIP and CD terms of the input are removed, and so are the pointing
    keywords that describe a detector (V2_REF ... VPARITY).
    """
    from astropy.wcs.utils import celestial_frame_to_wcs
    from gwcs.fitswcs import FITSImagingWCSTransform

    _drop_wcsinfo(model, re.compile(r"^(cd[12]_[12]|[ab]p?_\d_\d|[ab]p?_order)$"))
    wcs = model.meta.wcs
    t = wcs.forward_transform
    if not isinstance(t, FITSImagingWCSTransform):
        # a custom output WCS: fit a linear FITS WCS to it
        from astropy.modeling import CompoundModel
        from astropy.modeling.projections import Projection

        code = None
        if isinstance(t, CompoundModel):
            for m in t.traverse_postorder():
                if isinstance(m, Projection):
                    code = m.prjprm.code
                    break
        if code is None:
            raise ValueError("the output WCS has no sky projection; cannot describe it with FITS keywords")
        hdr = wcs.to_fits_sip(
            max_pix_error=0.01, degree=1, max_inv_pix_error=None, inv_degree=0, npoints=12,
            crpix=None, projection=code,
            **({} if wcs.bounding_box is not None else {"bounding_box": shape_bbox(model.data.shape)}),
        )
        _drop_wcsinfo(model, re.compile(r"^(cdelt[12]|pc[12]_[12])$"))
        _set_wcsinfo(model, {k.lower(): v for k, v in hdr.items() if not k.upper().startswith("NAXIS")})
    else:
        fw = celestial_frame_to_wcs(frame=wcs.pipeline[-1].frame.reference_frame, projection=t.projection.prjprm.code)
        _set_wcsinfo(model, {
            "crpix1": float(t.crpix[0] + 1), "crpix2": float(t.crpix[1] + 1),
            "cdelt1": float(t.cdelt[0]), "cdelt2": float(t.cdelt[1]),
            "crval1": float(t.crval[0]), "crval2": float(t.crval[1]),
            "pc1_1": float(t.pc[0][0]), "pc1_2": float(t.pc[0][1]),
            "pc2_1": float(t.pc[1][0]), "pc2_2": float(t.pc[1][1]),
            "ctype1": fw.wcs.ctype[0], "ctype2": fw.wcs.ctype[1],
            "cunit1": str(wcs.output_frame.unit[0]), "cunit2": str(wcs.output_frame.unit[1]),
            "radesys": fw.wcs.radesys,
        })
    for k in ("v2_ref", "v3_ref", "ra_ref", "dec_ref", "roll_ref", "v3yangle", "vparity"):
        _drop_wcsinfo(model, re.compile(f"^{k}$"))
    sci = model._headers.get("SCI")
    if sci is not None:
        for key in ("V2_REF", "V3_REF", "RA_REF", "DEC_REF", "ROLL_REF", "V3I_YANG", "VPARITY"):
            sci.remove(key, ignore_missing=True, remove_all=True)
