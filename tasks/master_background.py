"""master_background: subtract a master background spectrum in Stage 3 (jwst's MasterBackgroundStep).

Input: a list of models, as an association's members are.  1-D spectra (MultiSpecModel x1d,
the association's ``background`` members) are the background; the others (SlitModel,
MultiSlitModel, ImageModel) are the science, changed in place and returned.

1. Nothing is done (status SKIPPED) when a science exposure already had its background
   subtracted in Stage 2 (``bkg_subtract`` or ``master_background`` COMPLETE), unless
   ``force_subtract``.
2. The master background is ``user_background`` (an x1d or c1d file) if given; else the
   combination of the background x1d spectra (combine_1d, weighted by exposure time), where a
   background exposure that did not point at a background target (BKGDTARG false) gives its
   BACKGROUND column as its surface brightness (BKGD_ERROR as SB_ERROR).  ``median_kernel``
   > 1 (odd; an even size is lowered by one) median-filters its SURF_BRIGHT and FLUX.
3. The master's SURF_BRIGHT against WAVELENGTH (sorted) is interpolated linearly at each science
   pixel's wavelength (the WAVELENGTH array, else the WCS): pixels with no wavelength or
   outside the master's range get 0 and DQ DO_NOT_USE; the result is subtracted from SCI.
   NIRSpec MOS slits are not background-subtracted this way (jwst uses 0 for them; MOS has
   its own Stage 2 step); NIRSpec fixed-slit point sources (which jwst corrects for path loss
   first) and NIRSpec IFU images are refused as not implemented.  MIRI MRS images take the
   master at each pixel's WCS wavelength (0 where it has none), their DQ untouched; an MRS
   background spectrum always gives its BACKGROUND column as the sky, as jwst takes it.

Without any background member and no ``user_background`` the step leaves the science as it is.
``save_background`` writes the master background (``_masterbg1d``) and each science exposure's
2-D background (``_masterbg2d``, a copy of the exposure whose data is the background) into the
step's output folder, named as jwst names them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .. import models
from ..errors import ParameterError, UnsupportedModeError
from ..models import dqflags
from .base import StepParams, step

log = logging.getLogger("webbflow.steps.master_background")


class MasterBackgroundParams(StepParams):
    median_kernel: int = 1  # moving-median boxcar width applied to the master background
    user_background: str | None = None  # a user's master background (x1d or c1d)
    save_background: bool = False  # write the master background (masterbg1d) and its 2-D expansions (masterbg2d)
    force_subtract: bool = False  # subtract even when Stage 2 already subtracted a background
    output_use_model: bool = True  # name the output after the input model's file name (jwst compatibility)


def _is_spectrum(m) -> bool:
    from ..models.spectra import MultiSpecBase

    return isinstance(m, MultiSpecBase)  # x1d of any kind (MRS x1d included) or c1d


def _already_subtracted(science) -> bool:
    done = [m.meta.cal_step.bkg_subtract == "COMPLETE" or m.meta.cal_step.master_background == "COMPLETE"
            for m in science]
    if any(done):
        if all(done):
            log.info("Not subtracting master background: background was subtracted in calspec2")
        else:
            log.warning("Not subtracting master background: some inputs had their background subtracted in calspec2")
        log.info("Set force_subtract = True to subtract it anyway")
        return True
    return False


def _background_as_surf_bright(spectrum) -> None:
    """A background exposure of the science target: its BACKGROUND column is the sky."""
    for s in spectrum.spec:
        t = s.spec_table
        t["SURF_BRIGHT"][:] = t["BACKGROUND"]
        t["SB_ERROR"][:] = t["BKGD_ERROR"]
        t["BACKGROUND"][:] = 0
        t["BKGD_ERROR"][:] = 0.0


def _ifu_extended(spectrum) -> bool:
    """An IFU background spectrum whose BACKGROUND column is the sky: always for MIRI MRS, for the
    NIRSpec IFU when its (first) spectrum was extracted as an extended source, as jwst takes them."""
    exp_type = (spectrum.meta.exposure.type or "").upper()
    if exp_type == "MIR_MRS":
        return True
    first = spectrum.spec[0].meta if spectrum.spec else {}
    return exp_type == "NRS_IFU" and str(first.get("source_type") or "").upper() == "EXTENDED"


def master_spectrum(backgrounds, params: MasterBackgroundParams):
    """The combined master background spectrum (a MultiCombinedSpecModel) of background x1d models."""
    from scipy.signal import medfilt

    from .combine_1d import Combine1dParams, combine

    for b in backgrounds:
        if b.meta.observation.bkgdtarg is False or _ifu_extended(b):
            _background_as_surf_bright(b)
    master = combine(list(backgrounds), Combine1dParams(exptime_key="exposure_time"))
    if master is None:
        raise ParameterError("master_background: the background members hold no usable spectrum")
    kernel = int(params.median_kernel)
    if kernel % 2 == 0:
        kernel -= 1
        log.info("Even median filter kernels are not supported; using %d", kernel)
    if kernel > 1:
        t = master.spec[0].spec_table
        t["SURF_BRIGHT"] = medfilt(np.asarray(t["SURF_BRIGHT"], dtype=float), kernel_size=[kernel])
        t["FLUX"] = medfilt(np.asarray(t["FLUX"], dtype=float), kernel_size=[kernel])
    return master


def _table_of(spectrum):
    t = spectrum.spec[0].spec_table
    wave = np.asarray(t["WAVELENGTH"], dtype=float).copy()
    sb = np.asarray(t["SURF_BRIGHT"], dtype=float).copy()
    if not np.all(np.diff(wave) > 0):
        order = np.argsort(wave)
        wave, sb = wave[order], sb[order]
    return wave, sb


def _pixel_wavelengths(model, exp_type):
    wl = getattr(model, "wavelength", None) if model.has("wavelength") else None
    if wl is not None and np.any(np.isfinite(wl)) and np.nanmax(np.abs(wl)) > 0:
        return np.array(wl, dtype=float)
    if model.meta.wcs is None:
        from ..errors import InputFileError

        raise InputFileError(model.meta.filename or "input", "has neither a WAVELENGTH array nor a WCS")
    from gwcs.wcstools import grid_from_bounding_box

    wcs = model.meta.wcs
    shape = model.data.shape[-2:]
    if wcs.bounding_box is None:
        y, x = np.indices(shape, dtype=float)
    else:
        x, y = grid_from_bounding_box(wcs.bounding_box)
    out = np.full(shape, np.nan)
    world = wcs(x, y)
    lam = np.asarray(world[-1], dtype=float)
    xi, yi = np.asarray(x, dtype=int), np.asarray(y, dtype=int)
    out[yi, xi] = lam
    return out


def _expand(model, wave, sb, exp_type):
    """The master background at this model's pixels, and the pixels outside its wavelengths."""
    wl = _pixel_wavelengths(model, exp_type)
    wl[np.isnan(wl)] = -1.0
    outside = (wl > wave.max()) | (wl < wave.min())
    wl[outside] = -1.0
    return np.interp(wl, wave, sb, left=0.0, right=0.0), outside


def _ifu_background(model, wave, sb):
    """The master background at every pixel of a MIRI MRS image, by the WCS's wavelength there (0 where
    the pixel has none or lies outside the master's wavelengths; DQ untouched, as jwst does for IFUs)."""
    if (model.meta.instrument.name or "").upper() != "MIRI":
        raise UnsupportedModeError("master_background: NIRSpec IFU images (slice by slice) are not implemented")
    if model.meta.wcs is None:
        from ..errors import InputFileError

        raise InputFileError(model.meta.filename or "input", "has no WCS (assign_wcs must have run in Stage 2)")
    y, x = np.indices(model.data.shape, dtype=np.float64)
    lam = np.asarray(model.meta.wcs(x, y)[2], dtype=float)
    lam[np.isnan(lam)] = -1.0
    return np.interp(lam, wave, sb, left=0.0, right=0.0).astype(model.data.dtype)


def _background_of(model, bkg, outside):
    """The 2-D background product of one science model: a copy whose data is the background."""
    b = model.copy()
    b.data = bkg.astype(model.data.dtype)
    b.dq = model.dq | np.where(outside, dqflags.DO_NOT_USE, 0).astype(model.dq.dtype)
    return b


def subtract_master_background(science, master, params: MasterBackgroundParams, keep: bool = False):
    """Subtract the master background from each science model in place.

    With ``keep``, returns each model's 2-D background (a copy of the model whose data is the
    background, DO_NOT_USE outside the master's wavelengths), the ``masterbg2d`` products.
    """
    wave, sb = _table_of(master)
    kept = []
    for model in science:
        exp_type = model.meta.exposure.type
        if isinstance(model, models.MultiSlitModel):
            background = model.copy() if keep else None
            for k, slit in enumerate(model.slits):
                stype = slit.meta.exposure.type or exp_type
                if stype == "NRS_MSASPEC":
                    log.warning("Master background subtraction is not supported for NIRSpec MOS spectra; "
                                "the background of slit %s is 0", slit.name)
                    if keep:
                        background.slits[k].data[...] = 0.0
                        background.slits[k].dq[...] = 0
                    continue
                if stype == "NRS_FIXEDSLIT" and str(slit.source_type or "").upper() == "POINT":
                    raise UnsupportedModeError("master_background: NIRSpec fixed-slit point sources (path-loss "
                                               "corrected background) are not implemented")
                bkg, outside = _expand(slit, wave, sb, stype)
                slit.data -= bkg.astype(slit.data.dtype)
                slit.dq[outside] |= dqflags.DO_NOT_USE
                if keep:
                    background.slits[k].data = bkg.astype(slit.data.dtype)
                    background.slits[k].dq[outside] |= dqflags.DO_NOT_USE
            kept.append(background)
        elif isinstance(model, models.IFUImageModel):
            bkg = _ifu_background(model, wave, sb)
            if keep:
                b = model.copy()
                b.data = bkg
                kept.append(b)
            model.data -= bkg
        elif isinstance(model, (models.SlitModel, models.ImageModel)):
            bkg, outside = _expand(model, wave, sb, exp_type)
            if keep:
                kept.append(_background_of(model, bkg, outside))
            model.data -= bkg.astype(model.data.dtype)
            model.dq[outside] |= dqflags.DO_NOT_USE
        else:
            raise UnsupportedModeError(f"master_background: {type(model).__name__} inputs are not implemented")
    return kept if keep else None


def _save_backgrounds(master, backgrounds_2d, science, params: MasterBackgroundParams, asn_id: str | None) -> None:
    """``save_background``: the master spectrum and each science exposure's 2-D background, named as
    jwst names them (``<root>[_<asn_id>]_masterbg1d.fits``, ``<science root>[_<asn_id>]_masterbg2d.fits``)."""
    from ..models.naming import root_of

    out = Path(params.output_dir or ".")
    out.mkdir(parents=True, exist_ok=True)
    tag = f"_{asn_id}" if asn_id else ""
    if master is not None:
        root = root_of(master.meta.filename or "master_background")
        master.save(out / f"{root}{tag}_masterbg1d.fits")
    for sci, b in zip(science, backgrounds_2d):
        b.save(out / f"{root_of(sci.meta.filename or 'science')}{tag}_masterbg2d.fits")


@step("master_background", "MasterBackgroundStep", params=MasterBackgroundParams, suffix="mbsub",
      input_class="ModelLibrary")
def master_background(models_in, refs, params: MasterBackgroundParams):
    """Subtract a master background spectrum, from the background members or the user's, from the science."""
    if hasattr(models_in, "to_list"):  # an association's members
        members = models_in.to_list()
    else:
        members = list(models_in) if isinstance(models_in, (list, tuple)) else [models_in]
    science = [m for m in members if not _is_spectrum(m)]
    backgrounds = [m for m in members if _is_spectrum(m)]
    if not params.force_subtract and _already_subtracted(science):
        return science, "SKIPPED"
    if params.user_background:
        master = models.open(params.user_background)
        name = Path(params.user_background).name
    elif backgrounds:
        master = master_spectrum(backgrounds, params)
        name = None
    else:
        log.warning("No background data and no user-supplied background; master_background not applied")
        return science, "SKIPPED"
    kept = subtract_master_background(science, master, params, keep=params.save_background)
    if params.save_background:
        # a user's background is saved only as its 2-D expansions, as jwst does
        _save_backgrounds(None if params.user_background else master, kept, science, params,
                          getattr(models_in, "asn_id", None))
    for m in science:
        m.meta.cal_step.master_background = "COMPLETE"
        if name:
            m.meta.background.master_background_file = name
    return science


def _register_extras():
    from .base import STEPS

    # `webbflow run master_background ASN` reads the background members too, as jwst's step does
    STEPS["master_background"].extra["asn_member_types"] = ("science", "background")


_register_extras()
