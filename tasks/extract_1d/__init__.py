"""extract_1d: 1-D spectra from 2-D spectral images (jwst's Extract1dStep, box extraction).

Input: a SlitModel or ImageModel (one spectral image; output ``_x1d``, a MultiSpecModel), a
CubeModel of integrations (TSO; output ``_x1dints``, a TSOMultiSpecModel with one table row per
integration), or a model holding ``slits`` (MultiSlitModel: one EXTRACT1D table per slit).

For each spectral image:

1. Pixels flagged DO_NOT_USE and NaN pixels are made to agree (NaN in SCI, ERR and the
   variances, DO_NOT_USE in DQ), in place, as jwst does.
2. The extraction parameters come from the extract1d JSON reference (the aperture whose ``id``
   is the slit name or ``ANY`` and whose ``spectral_order`` matches), or, with no reference
   (``override_extract1d=N/A``), the whole array with no background.
3. The aperture's weights (:mod:`.aperture`) are zeroed where the wavelength is not finite; the
   wavelength of each dispersion element is the weighted mean of the aperture's wavelengths.
4. Background (:mod:`.background`), if the reference gives background regions, is fitted per
   dispersion element and subtracted.
5. The box sums (:mod:`.box`) run over all integrations at once.  After photom, surface
   brightness (MJy/sr) sums become fluxes in Jy through the pixel solid angle (NIRSpec point
   sources are already in MJy per pixel); without photom the units are DN/s.

6. Aperture corrections (:mod:`.apcorr`, ``apply_apcorr`` with an apcorr reference) scale a
   point source's fluxes, surface brightnesses and their variances.

NIRISS SOSS has its own box extraction (:mod:`.soss`, ``soss_atoca=false``; ATOCA is not
implemented); MIRI MRS cubes (IFUCubeModel) their aperture photometry per plane (:mod:`.ifu`).
With ``use_source_posn`` (:mod:`._source_posn`) the aperture is first moved across the dispersion
to the source's position from the WCS (NIRSpec slits, MIRI LRS fixed slit), as jwst does.
Optimal extraction is not implemented: asking for it raises an unsupported-mode error rather than
giving a different product.  ``override_psf=N/A`` gives jwst's products.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
from pydantic import Field

from ... import models
from ...errors import InputFileError, ReferenceFileError, UnsupportedModeError
from ...models import dqflags
from ...models.spectra import (
    MultiSpecModel,
    Spectrum,
    TSOMultiSpecModel,
    new_spec_table,
    new_tso_spec_table,
    spectrum_units,
)
from ..base import StepParams, step
from ..flat_field import match_nans_and_flags
from . import aperture as ap
from .background import fit_background
from .box import box_extract

log = logging.getLogger("webbflow.steps.extract_1d")

WFSS_EXPTYPES = {"NIS_WFSS", "NRC_WFSS", "NRC_GRISM", "MIR_WFSS"}


class ApertureOffData(ValueError):
    """The extraction aperture covers no pixel of the spectral image."""


class Extract1dParams(StepParams):
    suffix: str | None = None  # x1d, or x1dints for a cube of integrations
    subtract_background: bool | None = None  # subtract the reference's background regions
    apply_apcorr: bool = True  # apply aperture corrections (needs an apcorr reference)
    extraction_type: Literal["box", "optimal"] | None = "box"  # box (summed aperture) or optimal (PSF-weighted; not implemented)
    use_source_posn: bool | None = None  # move the aperture to the source (None: the extract1d reference's, else on for LRS FS and NIRSpec slits)
    position_offset: float = 0.0  # pixels to move the aperture across the dispersion
    model_nod_pair: bool = True  # optimal extraction only
    optimize_psf_location: bool = True  # optimal extraction only
    smoothing_length: int | None = None  # boxcar along the dispersion applied to the background
    bkg_fit: Literal["poly", "mean", "median"] | None = None  # background fit type
    bkg_order: int | None = Field(None, ge=0)  # background polynomial order
    log_increment: int = 50  # (jwst's progress messages; kept for compatibility)
    save_profile: bool = False  # write the extraction profile (_profile)
    save_scene_model: bool = False  # write the modelled scene (_scene_model; optimal extraction)
    save_residual_image: bool = False  # write data minus scene model (_residual; optimal extraction)
    center_xy: list[float] | None = None  # IFU only
    ifu_autocen: bool = False  # IFU only: find the source centre in the collapsed cube
    bkg_sigma_clip: float = 3.0  # IFU only: sigma clipping of the background annulus
    ifu_rfcorr: bool = True  # IFU only: residual fringe correction of the MIRI MRS spectrum
    ifu_set_srctype: Literal["POINT", "EXTENDED"] | None = None  # IFU only: override the source type
    ifu_rscale: float | None = Field(None, ge=0.5, le=3)  # IFU only: aperture radius in PSF FWHMs
    ifu_covar_scale: float = 1.0  # IFU only: scale of the errors for covariance between spaxels
    soss_atoca: bool = True  # NIRISS SOSS: ATOCA decontamination of the orders (else box extraction)
    soss_threshold: float = 1e-2  # NIRISS SOSS: trace-profile threshold of the pixels modelled
    soss_n_os: int = 2  # NIRISS SOSS: oversampling of the wavelength grid
    soss_wave_grid_in: str | None = None  # NIRISS SOSS: file with a wavelength grid to use
    soss_wave_grid_out: str | None = None  # NIRISS SOSS: file to save the wavelength grid to
    soss_estimate: str | None = None  # NIRISS SOSS: file with a first estimate of the flux
    soss_rtol: float = 1.0e-4  # NIRISS SOSS: relative tolerance of the wavelength grid
    soss_max_grid_size: int = 20000  # NIRISS SOSS: largest wavelength grid
    soss_tikfac: float | None = None  # NIRISS SOSS: Tikhonov regularisation factor (None: searched)
    soss_width: float = 40.0  # NIRISS SOSS: box width in pixels
    soss_bad_pix: Literal["model", "masking"] = "masking"  # NIRISS SOSS: how bad pixels are handled
    soss_modelname: str | None = None  # NIRISS SOSS: file to save the trace models to
    soss_order_3: bool = True  # NIRISS SOSS: model the third order too


def wavelengths(m) -> np.ndarray:
    """The wavelength of each pixel: the WAVELENGTH array when it holds values, else the WCS."""
    wl = m.wavelength if m.has("wavelength") else None
    if wl is not None and wl.size and not (np.nanmin(wl) == 0.0 and np.nanmax(wl) == 0.0):
        return np.array(wl)
    wcs = getattr(m.meta, "wcs", None)
    if wcs is None:
        raise InputFileError(m.meta.filename or "the input", "has neither a WAVELENGTH array nor a WCS: no wavelengths")
    ny, nx = m.data.shape[-2:]
    yy, xx = np.indices((ny, nx), dtype=np.float64)
    return np.asarray(wcs(xx, yy)[2])


def spectral_wcs(ra, dec, wavelength):
    """The gWCS of one extracted spectrum (pixel index -> RA, Dec, wavelength), as jwst records it."""
    from astropy import coordinates as coord
    from astropy import units as u
    from astropy.modeling.models import Const1D, Mapping, Tabular1D
    from gwcs import coordinate_frames as cf
    from gwcs.wcs import WCS

    pixel_frame = cf.CoordinateFrame(naxes=1, axes_type=("SPATIAL",), axes_order=(0,), unit=(u.pix,), name="pixel_frame")
    sky = cf.CelestialFrame(name="sky", axes_order=(0, 1), reference_frame=coord.ICRS())
    spec = cf.SpectralFrame(name="spectral", axes_order=(2,), unit=(u.micron,), axes_names=("wavelength",))
    world = cf.CompositeFrame([sky, spec], name="world")
    pix = np.arange(len(wavelength), dtype=float)
    fwd = Mapping((0, 0, 0)) | Const1D(ra) & Const1D(dec) & Tabular1D(
        points=pix, lookup_table=wavelength, bounds_error=False, fill_value=None)
    fwd.name = "pixel_to_world"
    d = np.diff(wavelength)
    if np.all(d > 0):
        fwd.inverse = Mapping((2,)) | Tabular1D(points=wavelength, lookup_table=pix, bounds_error=False)
    elif np.all(d < 0):
        fwd.inverse = Mapping((2,)) | Tabular1D(points=wavelength[::-1], lookup_table=pix[::-1], bounds_error=False)
    return WCS([(pixel_frame, fwd), (world, None)])


def _source_type(m, slit=None):
    """A slit's own source type when it has one, else the exposure's (SRCTYPE)."""
    if slit is not None:
        own = slit_attributes(slit).get("source_type")
        if own is not None:
            return own
    return m.meta.target.source_type


def _source_type_for_posn(top, m, in_multislit: bool):
    """The source type jwst's use_source_posn default looks at: a slit's own of a multi-slit model;
    a single slit's own, else the exposure's; the exposure's for an image or cube."""
    if in_multislit:
        return slit_attributes(m).get("source_type")
    if isinstance(m, models.SlitModel):
        own = slit_attributes(m).get("source_type")
        if own is not None:
            return own
    return top.meta.target.source_type


def extract_image(m, ref, params: Extract1dParams, slitname: str, source_meta=None, apcorr_ref=None) -> Spectrum | None:
    """Extract one spectral image (2-D, or a 3-D stack of integrations) into a :class:`Spectrum`.

    ``source_meta``: the exposure's model when ``m`` is one slit of it; ``apcorr_ref``: the
    apcorr reference, applied to a point source.  Returns None (with a message) when the
    reference has no aperture for this slit and order, or no wavelength is valid.
    """
    top = source_meta or m
    match_nans_and_flags(m)
    order = getattr(m.meta.wcsinfo, "spectral_order", None)
    if order is None:
        log.warning("spectral_order is None; using 1")
        order = 1
    exp_type = top.meta.exposure.type or ""
    use_posn = params.use_source_posn
    src_type_posn = _source_type_for_posn(top, m, source_meta is not None)
    if use_posn is None and (src_type_posn != "POINT" or exp_type in WFSS_EXPTYPES):
        use_posn = False
        log.info("Setting use_source_posn to False for exposure type %s, source type %s", exp_type, src_type_posn)
    ep = ap.extraction_parameters(ref, m.data.shape, slitname, order, params, exp_type, use_posn)
    if ep is None:
        log.info("No extraction aperture for %s order %s in the reference: skipped", slitname, order)
        return None
    dispaxis = m.meta.wcsinfo.dispersion_direction
    if dispaxis is None:
        log.warning("%s: the dispersion direction (DISPAXIS) is missing: skipped", slitname)
        return None
    ep["dispaxis"] = dispaxis
    wl2d = wavelengths(m)
    if ep["use_source_posn"]:
        from ._source_posn import offset_to_source

        offset, trace = offset_to_source(top, m, slit_attributes(m), ep, wl2d)
        ap.shift(ep, offset)
        ep["trace"] = trace
    if ep.get("position_offset", 0.0):
        log.info("Applying additional cross-dispersion offset %.2f pixels", ep["position_offset"])
    ap.shift(ep, ep.get("position_offset", 0.0))
    shape2 = m.data.shape[-2:]
    profile, lower, upper = ap.box_profile(shape2, ep, dispaxis, wl2d)
    if not np.any(profile > 0):
        raise ApertureOffData(f"the extraction aperture (x {ep['xstart']}..{ep['xstop']}, y {ep['ystart']}..{ep['ystop']}"
                              f"{', width %s' % ep['extract_width'] if ep['extract_width'] is not None else ''}) "
                              f"lies off the data ({shape2[1]} x {shape2[0]} pixels) of {slitname}")
    profile[~np.isfinite(wl2d)] = 0.0
    nz = np.nonzero(profile.sum(axis=dispaxis - 1) > 0)[0]
    left, right = (int(nz[0]), int(nz[-1])) if len(nz) else (None, None)
    bg_profile = None
    if ep["subtract_background"] and ep["bkg_coeff"] is not None:
        bg_profile, _, _ = ap.box_profile(shape2, ep, dispaxis, wl2d, coeffs="bkg_coeff")
    use = np.isfinite(wl2d) & (profile > 0)
    wsum = np.where(use, profile, 0.0).sum(axis=dispaxis - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        wave = np.where(use, wl2d * profile, 0.0).sum(axis=dispaxis - 1) / wsum
    wave[wsum == 0] = np.nan
    valid = np.isfinite(wave)
    if not valid.any():
        log.error("%s: spectrum is empty; no valid data", slitname)
        return None
    cy, cx = ap.aperture_centre(profile)
    ra = dec = None
    wcs = getattr(m.meta, "wcs", None)
    # A WFSS spectrum's sky position and spectral WCS go into no product (jwst's flat WFSS tables have
    # no column for them): the cutout's WCS (slow to make and evaluate) is used only for an aperture correction
    wfss = exp_type in WFSS_EXPTYPES
    if wfss and not (apcorr_ref is not None and str(_source_type(top, m if source_meta is not None or isinstance(
            m, models.SlitModel) else None)).upper() == "POINT"):
        wcs = None
    if wcs is not None:
        c = wcs(cx, cy)
        if not np.any(np.isnan(np.asarray(c[:2], dtype=float))):
            ra, dec = float(c[0]), float(c[1])
    # the sums, for all integrations at once
    stack = m.data if m.data.ndim == 3 else m.data[None]

    def _var(name):
        if not m.has(name):
            return None
        v = getattr(m, name)
        return v if v.ndim == 3 else v[None]

    vr, vp, vf = _var("var_rnoise"), _var("var_poisson"), _var("var_flat")
    bkg = None
    if bg_profile is not None:
        bkg = _background_stack(stack, vr, vp, vf, profile, bg_profile, ep, dispaxis)
    s = box_extract(stack, vr, vp, vf, profile, dispaxis, bkg)
    photom_done = str(top.meta.cal_step.photom or "").upper() == "COMPLETE"
    src_type = _source_type(top, m if (source_meta is not None or isinstance(m, models.SlitModel)) else None)
    inst = (top.meta.instrument.name or "").upper()
    npix = s["npixels"]
    n1 = np.where(npix > 0, npix, 1.0)
    n2 = n1**2
    sb = s["flux"] / n1
    sb_vars = [s[k] / n2 for k in ("var_poisson", "var_rnoise", "var_flat")]
    background = s["background"] / n1
    b_vars = [s[f"bkg_{k}"] / n2 for k in ("var_poisson", "var_rnoise", "var_flat")]
    f_vars = [s[k] for k in ("var_poisson", "var_rnoise", "var_flat")]
    if photom_done:
        area = top.meta.photometry.pixelarea_steradians if source_meta is None else (
            m.meta.photometry.pixelarea_steradians or top.meta.photometry.pixelarea_steradians)
        if area is None:
            log.warning("Pixel area (solid angle) is not populated; the flux will not be correct.")
            area = 1.0
        if src_type == "POINT" and inst == "NIRSPEC":
            flux = s["flux"] * 1.0e6
            f_vars = [v * 1.0e12 for v in f_vars]
            sb = np.zeros_like(sb)
            sb_vars = [np.zeros_like(v) for v in sb_vars]
            background = background / area
            b_vars = [v / area**2 for v in b_vars]
        else:
            flux = s["flux"] * area * 1.0e6
            f_vars = [v * area**2 * 1.0e12 for v in f_vars]
        units = spectrum_units("Jy", "MJy/sr")
    else:
        log.warning("The photom step has not been run.")
        flux = s["flux"]
        units = {k: ("DN^2 / s^2" if "VAR" in k else "DN/s") for k in spectrum_units()}
        units["WAVELENGTH"] = "um"
        for c in ("MJD-BEG", "MJD-AVG", "MJD-END", "TDB-BEG", "TDB-MID", "TDB-END"):
            units[c] = "d"
    error = np.sqrt(f_vars[0] + f_vars[1] + f_vars[2])
    sb_error = np.sqrt(sb_vars[0] + sb_vars[1] + sb_vars[2])
    b_error = np.sqrt(b_vars[0] + b_vars[1] + b_vars[2])
    dq = np.where(np.isnan(flux), np.uint32(dqflags.DO_NOT_USE), np.uint32(0)).astype(np.uint32)
    cols = {
        "WAVELENGTH": np.broadcast_to(wave, flux.shape), "FLUX": flux, "FLUX_ERROR": error,
        "FLUX_VAR_POISSON": f_vars[0], "FLUX_VAR_RNOISE": f_vars[1], "FLUX_VAR_FLAT": f_vars[2],
        "SURF_BRIGHT": sb, "SB_ERROR": sb_error, "SB_VAR_POISSON": sb_vars[0], "SB_VAR_RNOISE": sb_vars[1],
        "SB_VAR_FLAT": sb_vars[2], "DQ": dq, "BACKGROUND": background, "BKGD_ERROR": b_error,
        "BKGD_VAR_POISSON": b_vars[0], "BKGD_VAR_RNOISE": b_vars[1], "BKGD_VAR_FLAT": b_vars[2],
        "NPIXELS": npix,
    }
    del s, n1, n2  # the sums the columns above do not hold (a stack's: ~10 MiB for 300 integrations)
    if apcorr_ref is not None and src_type is not None and str(src_type).upper() == "POINT":
        from . import apcorr

        try:
            factor = apcorr.correction(apcorr_ref, m, top, slitname, ra, dec, wave,
                                       np.broadcast_to(wave, flux.shape), npix)
        except apcorr.ApcorrError as exc:
            raise ReferenceFileError("apcorr", apcorr_ref.meta.filename or "(apcorr)", str(exc)) from None
        apcorr.apply(cols, factor)
    # the columns are held by ``cols`` alone from here, so that each goes once copied into the table
    del flux, error, sb, sb_error, sb_vars, background, b_error, b_vars, f_vars, dq, npix
    nwave = int(valid.sum())
    if m.data.ndim == 3:
        table = new_tso_spec_table(stack.shape[0], nwave)
        for k in list(cols):  # each column let go once in the table
            table[k] = cols.pop(k)[:, valid]
        table["N_ALONGDISP"] = nwave
        table["SEGMENT"] = top.meta.exposure.segment_number or 1
        table["INT_NUM"] = np.arange(1, stack.shape[0] + 1)
        for k in ("MJD-BEG", "MJD-AVG", "MJD-END", "TDB-BEG", "TDB-MID", "TDB-END"):
            table[k] = np.nan
    else:
        table = new_spec_table(nwave)
        for k, v in cols.items():
            table[k] = v[0, valid]
    wave_valid = wave[valid]
    meta: dict = {} if wfss else {"meta": {"wcs": spectral_wcs(ra, dec, wave_valid)}}
    if slitname not in (None, "ANY"):
        meta["name"] = slitname
    meta.update({"slit_ra": ra, "slit_dec": dec, "spectral_order": order, "dispersion_direction": dispaxis,
                 "detector": top.meta.instrument.detector, "position_angle": m.meta.aperture.position_angle})
    if dispaxis == ap.HORIZONTAL:
        limits = (left, right, lower, upper)
    else:
        limits = (lower, upper, left, right)
    for key, v in zip(("extraction_xstart", "extraction_xstop", "extraction_ystart", "extraction_ystop"), limits):
        meta[key] = None if v is None else v + 1
    if source_meta is not None or isinstance(m, models.SlitModel):
        _copy_slit_keywords(m, meta)
    return Spectrum(table, meta, units)


def _background_stack(stack, vr, vp, vf, profile, bg_profile, ep, dispaxis):
    """The background fit of each integration, stacked: ``model`` (nints, ny, nx) and summed variances."""
    if ep["bkg_fit"] not in ("poly", "median"):
        raise UnsupportedModeError(f"extract_1d: background fit {ep['bkg_fit']!r} is not one of poly, mean, median")
    t = (lambda a: a) if dispaxis == ap.HORIZONTAL else (lambda a: a.T)
    models_, vars_ = [], {"var_rnoise": [], "var_poisson": [], "var_flat": []}
    for i in range(stack.shape[0]):
        z = np.zeros(stack.shape[-2:])
        r = fit_background(t(stack[i]), t(vr[i] if vr is not None else z), t(vp[i] if vp is not None else z),
                           t(vf[i] if vf is not None else z), t(profile), t(bg_profile), ep["bkg_fit"],
                           int(ep["bkg_order"]), int(ep["smoothing_length"]))
        mdl = np.broadcast_to(r["model"], t(stack[i]).shape)
        models_.append(t(mdl))
        for k in vars_:
            vars_[k].append(r[k])
    out = {"model": np.stack(models_)}
    out.update({k: np.stack(v) for k, v in vars_.items()})
    return out


_SLIT_COPY = ("slitlet_id", "source_id", "ta_xpos", "ta_ypos", "source_xpos", "source_ypos", "source_ra",
              "source_dec", "shutter_state")
_SLIT_COPY_SET = ("source_name", "source_alias", "source_type", "stellarity", "quadrant", "slit_xscale",
                  "slit_yscale", "wavelength_corrected", "pathloss_correction_type", "barshadow_corrected")


def slit_attributes(slit) -> dict:
    """A slit's own metadata (name, source, shutter...) under the spectrum's attribute names.

    Read from the slit's own entries of the ASDF tree and its SCI keywords (the same keywords as
    the spectrum's).
    """
    from ...models.spectra import SPEC_META

    attrs = dict(getattr(slit, "slit_meta", None) or {})
    tree = getattr(slit, "_asdf_extra", None) or {}
    for attr, _key, _typ, _c in SPEC_META:
        if attr not in attrs and tree.get(attr) is not None and not isinstance(tree[attr], dict):
            attrs[attr] = tree[attr]
    hdr = slit._headers.get("SCI") if hasattr(slit, "_headers") else None
    if hdr is not None:
        for attr, key, typ, _c in SPEC_META:
            if key in hdr and attr not in attrs and not isinstance(hdr[key], type(None)):
                attrs[attr] = hdr[key]
    if getattr(slit, "name", None) and "name" not in attrs:
        attrs["name"] = slit.name
    return attrs


def _copy_slit_keywords(slit, meta: dict) -> None:
    attrs = slit_attributes(slit)
    for k in _SLIT_COPY:
        if k in attrs:
            meta[k] = attrs[k]
    for k in _SLIT_COPY_SET:
        if attrs.get(k) is not None:
            meta[k] = attrs[k]


def _check_supported(model, params: Extract1dParams, refs: dict) -> None:
    if params.extraction_type == "optimal" and refs.get("psf") is not None:
        raise UnsupportedModeError("extract_1d: optimal extraction is not implemented; use extraction_type=box")


def output_model(model, cls):
    """An empty spectrum product of class ``cls`` with ``model``'s metadata and primary header, but
    not its WCS (the spectra carry their own) nor FILETYPE (jwst's spectra have none)."""
    out = cls()
    wcs, model.meta.wcs = model.meta.wcs, None
    try:
        out.meta = model.meta.model_copy(deep=True)
    finally:
        model.meta.wcs = wcs
    out.meta.model_type = cls.__name__
    out.meta.filetype = None
    out._headers = {"PRIMARY": model._headers["PRIMARY"].copy()} if "PRIMARY" in model._headers else {}
    return out


def _output_model(model, cube: bool):
    return output_model(model, TSOMultiSpecModel if cube else MultiSpecModel)


def _is_tso(model) -> bool:
    return bool(model.meta.visit.tsovisit) or (model.meta.exposure.type or "") in (
        "NRC_TSIMAGE", "NRC_TSGRISM", "NRS_BRIGHTOBJ", "NIS_SOSS", "MIR_LRS-SLITLESS")


def populate_times(model, out) -> None:
    """Copy each integration's times from INT_TIMES into the x1dints rows, when the table covers them."""
    it = model.int_times if model.has("int_times") else None
    if it is None or len(it) == 0:
        log.warning("INT_TIMES table not found - time keywords will not be populated.")
        return
    nints = model.meta.exposure.nints or 1
    start = model.meta.exposure.integration_start
    if start is None:
        log.warning("INTSTART not found; assuming a value of 1.")
        start = 1
    end = model.meta.exposure.integration_end
    if end is None:
        log.warning("INTEND not found; assuming a value of %d.", nints)
        end = nints
    shape = model.data.shape
    if len(shape) != 3 or shape[0] > len(it):
        log.warning("Not using INT_TIMES table because the data shape is not consistent with the number of table rows.")
        return
    num = np.asarray(it["integration_number"])
    first, last = start - 1, end - 1
    offset = first - (num[0] - 1)
    if first < num[0] - 1 or last > num[-1] - 1 or offset > num[-1] - 1:
        log.warning("Not using the INT_TIMES table because it does not include rows for all integrations in the data.")
        return
    cols = {"MJD-BEG": "int_start_MJD_UTC", "MJD-AVG": "int_mid_MJD_UTC", "MJD-END": "int_end_MJD_UTC",
            "TDB-BEG": "int_start_BJD_TDB", "TDB-MID": "int_mid_BJD_TDB", "TDB-END": "int_end_BJD_TDB"}
    for s in out.spec:
        n = len(s.spec_table)
        rows = np.arange(n) + offset
        s.meta["time_scale"] = "UTC"
        s.spec_table["INT_NUM"] = num[rows]
        for k, c in cols.items():
            s.spec_table[k] = np.asarray(it[c])[rows]


def extract(model, refs: dict, params: Extract1dParams):
    """Extract every spectrum of ``model``: a MultiSpecModel, or a TSOMultiSpecModel for a cube."""
    if (model.meta.exposure.type or "").upper() == "NIS_SOSS":  # NIRISS SOSS: its own box extraction
        from .soss import extract_soss

        return extract_soss(model, refs.get("pastasoss"), params, refs.get("specprofile"), refs.get("speckernel"))
    if isinstance(model, models.IFUCubeModel):  # IFU cubes: aperture photometry per plane (.ifu)
        from .ifu import extract_ifu_cube

        return extract_ifu_cube(model, refs, params)
    _check_supported(model, params, refs)
    exp_type = model.meta.exposure.type or ""
    wfss = exp_type.upper() in WFSS_EXPTYPES
    ref = None if wfss else refs.get("extract1d")  # jwst reads no extract1d reference for WFSS
    apref = refs.get("apcorr") if params.apply_apcorr else None
    slits = getattr(model, "slits", None)
    if slits is not None:
        out = _output_model(model, cube=bool(len(slits)) and slits[0].data.ndim == 3)
        for slit in slits:
            if slit.data.size == 0:
                log.info("No data for slit %s, skipping ...", slit.name)
                continue
            order = getattr(slit.meta.wcsinfo, "spectral_order", None)
            if order == 0 and not _is_prism(model):
                log.info("Spectral order 0 is a direct image, skipping ...")
                continue
            try:
                spec = extract_image(slit, ref, params, slit.name, source_meta=model, apcorr_ref=apref)
            except ApertureOffData as exc:  # one slit lost; the others are kept
                log.error("%s: slit %s skipped: %s", model.meta.filename or "input", slit.name, exc)
                continue
            if spec is not None:
                if wfss:  # what jwst's flat WFSS table records of each cutout
                    from .wfss import cutout_keywords, exposure_group_id

                    gid = exposure_group_id(model.meta)
                    spec.meta.update(cutout_keywords(slit), filename=model.meta.filename,
                                     group_id=None if gid is None else f"{gid}_{order if order is not None else 1}")
                out.spec.append(spec)
    else:
        if model.data.ndim not in (2, 3):
            raise InputFileError(model.meta.filename or "the input", f"is {model.data.ndim}-D; extract_1d needs 2-D or 3-D data")
        slitname = exp_type
        own = slit_attributes(model).get("name")
        if exp_type == "NRS_BRIGHTOBJ" and own:
            slitname = own
        elif exp_type == "NRS_FIXEDSLIT":
            slitname = own or model.meta.instrument.fixed_slit or slitname
        elif isinstance(model, models.ImageModel) and own:
            slitname = own
        out = _output_model(model, cube=model.data.ndim == 3)
        if model.has("int_times"):
            out.int_times = model.int_times.copy()
        order = getattr(model.meta.wcsinfo, "spectral_order", None)
        if order == 0 and not _is_prism(model):
            log.info("Spectral order 0 is a direct image, skipping ...")
        else:
            log.info("Processing spectral order %s", order or 1)
            try:
                spec = extract_image(model, ref, params, slitname, apcorr_ref=apref)
            except ApertureOffData as exc:
                raise InputFileError(model.meta.filename or "the input", str(exc)) from None
            if spec is not None:
                out.spec.append(spec)
    if _is_tso(model) and isinstance(out, TSOMultiSpecModel):
        populate_times(model, out)
    elif out.has("int_times"):
        out.int_times = None
    out.meta.target.source_type = None
    if wfss and slits is not None:  # jwst 3.0's flat WFSS layout: one table per exposure and order
        from .wfss import flatten

        out = flatten(out, model)
    return out


def _is_prism(model) -> bool:
    inst = (model.meta.instrument.name or "").upper()
    filt = (model.meta.instrument.filter or "NONE").upper()
    grating = (model.meta.instrument.grating or "NONE").upper()
    return (inst == "MIRI" and "P750L" in filt) or (inst == "NIRSPEC" and "PRISM" in grating)


def _wanted_refs(model, params: Extract1dParams):
    if (model.meta.exposure.type or "").upper() == "NIS_SOSS":  # jwst reads these three for SOSS
        return ["pastasoss", "specprofile", "speckernel"]
    want = [] if (model.meta.exposure.type or "").upper() in WFSS_EXPTYPES else ["extract1d"]
    if params.apply_apcorr:
        want.append("apcorr")
    if params.extraction_type == "optimal":
        want.append("psf")
    return want


@step("extract_1d", "Extract1dStep", params=Extract1dParams, optional_reftypes=("extract1d", "apcorr", "psf", "pastasoss", "specprofile", "speckernel"),
      suffix="x1d", input_class="DataModel")
def extract_1d(model, refs, params: Extract1dParams):
    """Extract 1-D spectra from 2-D spectral images (box extraction), per integration for cubes."""
    return extract(model, refs, params)


def _register_extras():
    from ..base import STEPS

    STEPS["extract_1d"].extra["optional_reftypes_needed"] = _wanted_refs


_register_extras()
