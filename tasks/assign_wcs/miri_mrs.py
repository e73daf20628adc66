"""assign_wcs for the MIRI MRS (EXP_TYPE MIR_MRS), the integral-field spectrometer.

An MRS detector sees two channels side by side (MIRIFUSHORT: 1 left, 2 right; MIRIFULONG: 4
left, 3 right), each cut into slices; the exposure's BAND (SHORT, MEDIUM, LONG) picks the grating
setting, so one exposure covers two channel+band pairs, e.g. 1SHORT and 2SHORT.  Five frames::

    detector --slice map, per-slice (alpha, beta, lambda)--> alpha_beta
             --per channel alpha/beta -> V2/V3--> v2v3 --DVA scale--> v2v3vacorr
             --V23ToSky--> world (RA, Dec, lambda)

References (the MRS ones are per detector + band):

- ``regions``: the slice map, planes of throughput levels; plane 7 (80 %) labels each pixel with
  its slice (100 * channel + slice number) or 0 between slices;
- ``distortion``: per slice ``alpha_model``/``beta_model`` (x, y -> alpha, beta arcsec) and their
  inverses ``x_model``/``y_model`` ((alpha, lambda) -> x, y), beta of the first slice and slice
  width per channel+band (``bzero``/``bdel``), and per channel+band ``abv2v3_model``;
- ``specwcs``: per slice the wavelength model (x, y -> micron), in the order of the distortion's
  ``slices``;
- ``wavelengthrange``: each channel+band's wavelength range, which picks the channel of a
  wavelength on the way back.

Going back (world -> detector, as cube_build does), the wavelength picks the channel
(a label mapper over wavelength ranges), the channel's V2/V3 -> alpha/beta model gives alpha and
beta, beta gives the slice (``MIRI_AB2Slice``), and the slice's x/y models give the pixel.  The
transforms are the stdatamodels.jwst.transforms and gwcs selector classes jwst uses, so the WCS
serialises under the same ASDF tags.

The step also sets SPECSYS=BARYCENT and DISPAXIS=2 (wavelength runs along detector columns), and S_REGION
from the RA/Dec range of every pixel the WCS maps, plus the wavelength range
(``meta.wcsinfo.spectral_region``, not a FITS keyword).
"""

from __future__ import annotations

import copy
import logging
import warnings

import numpy as np

from ...errors import ReferenceFileError
from .. import _wcs

log = logging.getLogger("webbflow.steps.assign_wcs")

MRS = "MIR_MRS"
SLICE_MAP_PLANE = 7  # the regions plane of the 80 % throughput footprint
_DISPAXIS = 2  # jwst's dispersion axis of MIR_MRS


def reftypes(model) -> tuple[str, ...]:
    return ("distortion", "specwcs", "regions", "wavelengthrange")


def _name(ref) -> str:
    """The reference's path as read (an ASDF file's meta.filename may name its source, not the file)."""
    return getattr(ref, "_path", None) or getattr(getattr(ref, "meta", None), "filename", None) or "<in memory>"


def _tree(ref, reftype: str, *keys: str) -> list:
    out = []
    for k in keys:
        try:
            v = getattr(ref, k)
        except AttributeError:
            v = None
        if v is None:
            raise ReferenceFileError(reftype, _name(ref), f"has no {k!r} (not an MRS {reftype} reference)")
        out.append(v)
    return out


def _channels(model) -> tuple[list[str], str]:
    from ...errors import InputFileError

    channel = str(model.meta.instrument.channel or "").strip()
    band = str(model.meta.instrument.band or "").strip().upper()
    if not channel or not band or not channel.isdigit():
        raise InputFileError(model.meta.filename or "<in memory>",
                             f"MIR_MRS needs CHANNEL and BAND keywords (got {channel or '?'} / {band or '?'})")
    return list(channel), band


def _wave_ranges(wr_ref) -> dict[str, tuple]:
    sel, ranges = _tree(wr_ref, "wavelengthrange", "waverange_selector", "wavelengthrange")
    return {str(k): tuple(float(x) for x in v) for k, v in zip(sel, ranges)}


def _slice_map(regions_ref) -> np.ndarray:
    planes = np.asarray(regions_ref.regions)
    if planes.ndim != 3 or planes.shape[0] <= SLICE_MAP_PLANE:
        raise ReferenceFileError("regions", _name(regions_ref),
                                 f"holds a {planes.ndim}-D slice map {planes.shape}; the MRS reads a stack of "
                                 f"throughput planes (at least {SLICE_MAP_PLANE + 1}, detector-sized)")
    return planes[SLICE_MAP_PLANE].copy()


def detector_to_abl(model, distortion, specwcs, regions, wavelengthrange):
    """(x, y) -> (alpha, beta, lambda) through the slice map, with the inverse cube_build uses."""
    from astropy.modeling import models as am
    from gwcs import selector
    from stdatamodels.jwst.transforms.models import MIRI_AB2Slice

    channels, band = _channels(model)
    alpha_m, beta_m, x_m, y_m, slices, bzero, bdel = _tree(
        distortion, "distortion", "alpha_model", "beta_model", "x_model", "y_model", "slices", "bzero", "bdel")
    (lam_m,) = _tree(specwcs, "specwcs", "model")
    if not (len(alpha_m) == len(beta_m) == len(x_m) == len(y_m) == len(slices) == len(lam_m)):
        raise ReferenceFileError("specwcs", _name(specwcs),
                                 f"has {len(lam_m)} slice models; the distortion {_name(distortion)} has {len(slices)}")
    beta0 = dict(zip(bzero["channel_band"], bzero["beta_zero"]))
    dbeta = dict(zip(bdel["channel_band"], bdel["delta_beta"]))
    lam_m = list(lam_m)
    velosys = model.meta.wcsinfo.velosys
    if velosys is not None:
        from .miri_lrs import _velocity_correction

        vcorr = _velocity_correction(velosys)
        lam_m = [m | vcorr for m in lam_m]
        log.info("Applied Barycentric velocity correction : %s", vcorr[1].amplitude.value)

    # the reference's models are composed as they are (each reference is read afresh for a step)
    per_slice = {}
    for i, number in enumerate(slices):
        # the reference's models take (y, x): the detector row first
        fwd = am.Mapping([1, 0, 0, 1, 0]) | alpha_m[i] & beta_m[i] & lam_m[i]
        fwd.inverse = am.Mapping([2, 0, 2, 0]) | x_m[i] & y_m[i]
        per_slice[number] = fwd

    ranges = _wave_ranges(wavelengthrange)
    by_range = {}
    for c in channels:
        cb = c + band
        if cb not in beta0 or cb not in dbeta:
            raise ReferenceFileError("distortion", _name(distortion), f"has no beta zero point or width for {cb}")
        if cb not in ranges:
            raise ReferenceFileError("wavelengthrange", _name(wavelengthrange), f"has no range for {cb}")
        to_slice = MIRI_AB2Slice(beta0[cb], dbeta[cb], c)
        by_range[ranges[cb]] = selector.LabelMapper(inputs=("alpha", "beta", "lam"), mapper=to_slice,
                                                    inputs_mapping=am.Mapping((1,), n_inputs=3))
    labels = selector.LabelMapperArray(_slice_map(regions))
    labels.inverse = selector.LabelMapperRange(("alpha", "beta", "lam"), by_range, am.Mapping((2,)))
    return selector.RegionsSelector(("x", "y"), ("alpha", "beta", "lam"), label_mapper=labels, selector=per_slice)


def abl_to_v2v3l(model, distortion, wavelengthrange):
    """(alpha, beta, lambda) -> (V2, V3, lambda): the channel of lambda picks its V2/V3 model."""
    from astropy.modeling import models as am
    from gwcs import selector

    channels, band = _channels(model)
    (abv2v3,) = _tree(distortion, "distortion", "abv2v3_model")
    to_v23 = dict(zip(abv2v3["channel_band"], abv2v3["model"]))
    ranges = _wave_ranges(wavelengthrange)
    labels, per_channel = {}, {}
    for c in channels:
        cb = c + band
        if cb not in to_v23:
            raise ReferenceFileError("distortion", _name(distortion), f"has no alpha/beta -> V2/V3 model for {cb}")
        labels[ranges[cb]] = am.Mapping((2,), name="mapping_lam") | am.Const1D(int(c), name="channel #")
        spatial = copy.deepcopy(to_v23[cb])
        back = spatial.inverse
        del spatial.inverse
        spatial.inverse = back
        lam = am.Identity(1, name="identity_lam")
        lam._inputs = ("lam",)  # noqa: SLF001 - named as jwst names it, so the selector's inputs match
        per_channel[int(c)] = spatial & lam
    by_lambda = selector.LabelMapperRange(("alpha", "beta", "lam"), labels, inputs_mapping=am.Mapping([2]))
    by_lambda.inverse = by_lambda.copy()
    return selector.RegionsSelector(("alpha", "beta", "lam"), ("v2", "v3", "lam"),
                                    label_mapper=by_lambda, selector=per_channel)


def mrs_pipeline(model, refs) -> list:
    """The gwcs pipeline of an MRS exposure."""
    from astropy import coordinates as coord
    from astropy import units as u
    from astropy.modeling import bind_bounding_box
    from astropy.modeling.models import Identity
    from gwcs import coordinate_frames as cf

    w = model.meta.wcsinfo
    missing = [k.upper() for k in ("v2_ref", "v3_ref", "roll_ref", "ra_ref", "dec_ref") if getattr(w, k) is None]
    if missing:
        from ...errors import InputFileError

        raise InputFileError(model.meta.filename or "<in memory>",
                             f"has no pointing keywords {', '.join(missing)} in its SCI header; cannot build a WCS")
    detector = cf.Frame2D(name="detector", axes_order=(0, 1), unit=(u.pix, u.pix))
    ab = cf.Frame2D(name="alpha_beta_spatial", axes_order=(0, 1), unit=(u.arcsec, u.arcsec), axes_names=("alpha", "beta"))
    ab_lam = cf.SpectralFrame(name="alpha_beta_spectral", axes_order=(2,), unit=(u.micron,), axes_names=("lambda",))
    alpha_beta = cf.CompositeFrame([ab, ab_lam], name="alpha_beta")
    v23 = cf.Frame2D(name="v2v3_spatial", axes_order=(0, 1), unit=(u.arcsec, u.arcsec), axes_names=("v2", "v3"))
    v23va = cf.Frame2D(name="v2v3vacorr_spatial", axes_order=(0, 1), unit=(u.arcsec, u.arcsec), axes_names=("v2", "v3"))
    lam = cf.SpectralFrame(name="spectral", axes_order=(2,), unit=(u.micron,), axes_names=("lambda",))
    v2v3 = cf.CompositeFrame([v23, lam], name="v2v3")
    v2v3vacorr = cf.CompositeFrame([v23va, lam], name="v2v3vacorr")
    icrs = cf.CelestialFrame(name="icrs", reference_frame=coord.ICRS(), axes_order=(0, 1), unit=(u.deg, u.deg),
                             axes_names=("RA", "DEC"))
    world = cf.CompositeFrame([icrs, lam], name="world")

    # named in place: a renamed copy (astropy's rename) deep-copies some 80 slice models
    det2abl = detector_to_abl(model, refs["distortion"], refs["specwcs"], refs["regions"], refs["wavelengthrange"])
    det2abl.name = "detector_to_abl"
    abl2v23 = abl_to_v2v3l(model, refs["distortion"], refs["wavelengthrange"])
    abl2v23.name = "abl_to_v2v3l"
    va = _wcs.dva_correction(model.meta.velocity_aberration.scale_factor, w.v2_ref, w.v3_ref) & Identity(1)
    tel2sky = _wcs.v23tosky(w.v2_ref, w.v3_ref, w.roll_ref, w.ra_ref, w.dec_ref) & Identity(1)
    bind_bounding_box(det2abl, _wcs.shape_bbox(model.data.shape[-2:]), order="F")
    return [(detector, det2abl), (alpha_beta, abl2v23), (v2v3, va), (v2v3vacorr, tel2sky), (world, None)]


def _wrap_ra(ra: np.ndarray) -> np.ndarray:
    """The finite RA values, those more than 180 deg from their median moved by 360 deg to its side."""
    ra = np.asarray(ra, dtype=np.float64)
    good = ra[np.isfinite(ra)]
    if good.size == 0:
        return good
    med = np.median(good)
    far = np.abs(good - med) > 180.0
    if far.any():
        good = good.copy()
        good[far] += -360.0 if med < 180 else 360.0
    return good


def footprint(model) -> tuple[np.ndarray, tuple[float, float]]:
    """The RA/Dec box of every pixel the WCS maps, and the wavelength range."""
    from gwcs.wcstools import grid_from_bounding_box

    wcs = model.meta.wcs
    bbox = wcs.bounding_box or _wcs.shape_bbox(model.data.shape[-2:])
    x, y = grid_from_bounding_box(bbox)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "invalid value", RuntimeWarning)
        ra, dec, lam = wcs(x, y)
    ra = _wrap_ra(ra)
    lo, hi = np.nanmin(ra), np.nanmax(ra)
    lo = lo + 360.0 if lo < 0 else lo
    hi = hi - 360.0 if hi >= 360.0 else hi
    dlo, dhi = np.nanmin(dec), np.nanmax(dec)
    box = np.array([[lo, dlo], [hi, dlo], [hi, dhi], [lo, dhi]])
    return box, (float(np.nanmin(lam)), float(np.nanmax(lam)))


def assign(model, refs, params):
    from gwcs import WCS
    from stcal.alignment.util import compute_s_region_keyword

    for rt in reftypes(model):
        if refs.get(rt) is None:
            log.info("Step assign_wcs skipped: reference type %s is N/A for this exposure", rt)
            return model, "SKIPPED"
    model.meta.wcsinfo.specsys = "BARYCENT"
    model.meta.wcsinfo.dispersion_direction = _DISPAXIS
    model.meta.wcs = WCS(mrs_pipeline(model, refs))
    box, lam_range = footprint(model)
    s_region = compute_s_region_keyword(box)
    if s_region is not None:
        model.meta.wcsinfo.s_region = s_region
    model.meta.wcsinfo.spectral_region = lam_range
    log.info("assign_wcs: MRS WCS built for channels %s band %s; S_REGION %s",
             model.meta.instrument.channel, model.meta.instrument.band, model.meta.wcsinfo.s_region)
    return model
