"""photom: flux calibration of imaging data to MJy/sr (jwst's PhotomStep, imaging modes).

For NIRCam, NIRISS, MIRI (imager) and FGS images the photom reference holds
a PHOTOM table with one row per optical configuration and the conversion
PHOTMJSR, in (MJy/sr) / (DN/s).  The row is chosen as jwst does:

- NIRCam: FILTER and PUPIL (and SUBARRAY when the table has that column);
- NIRISS: FILTER and PUPIL (calints cubes are not calibrated, as in jwst);
- MIRI imager: SUBARRAY and FILTER, else the "GENERIC" subarray row;
- FGS: the table's only row.

Optional TIMECOEFF_LINEAR / _EXPONENTIAL / _POWERLAW tables (one row per
PHOTOM row) give a throughput change with time at the exposure's mid time
(EXPMID, MJD); the product of those present divides PHOTMJSR when
``apply_time_correction`` is set.

The data and ERR are multiplied by PHOTMJSR, the variance arrays by its
square; BUNIT becomes MJy/sr.  PHOTMJSR and PHOTUJA2 (the same in uJy/arcsec^2)
are recorded, and PIXAR_SR / PIXAR_A2 are copied from the area reference's
header (or, lacking them there, the photom reference's), whose pixel area
map is attached as the AREA extension.  ``inverse=True`` divides instead
and sets BUNIT back to DN/s.
"""

from __future__ import annotations

import logging

import numpy as np

from ..errors import ReferenceFileError, UnsupportedModeError
from .base import StepParams, step
from .flat_field import match_nans_and_flags

log = logging.getLogger("webbflow.steps.photom")

def _mjsr_to_uja2() -> float:
    """(MJy / sr) -> (uJy / arcsec^2), about 23.5044 (the value astropy's units give, as jwst uses)."""
    from astropy import units as u

    return float((u.megajansky / u.steradian).to(u.microjansky / u.arcsecond / u.arcsecond))


MJSR_TO_UJA2 = _mjsr_to_uja2()

IMAGING_MODES = {
    "NIRCAM": {"NRC_IMAGE", "NRC_TSIMAGE", "NRC_CORON", "NRC_FOCUS", "NRC_TACQ", "NRC_TACONFIRM"},
    "NIRISS": {"NIS_IMAGE", "NIS_AMI", "NIS_FOCUS", "NIS_TACQ", "NIS_TACONFIRM"},
    "MIRI": {"MIR_IMAGE", "MIR_LYOT", "MIR_4QPM", "MIR_CORONCAL", "MIR_TACQ", "MIR_TACONFIRM"},
    "FGS": {"FGS_IMAGE", "FGS_FOCUS"},
}
# Spectroscopic modes whose PHOTOM row also carries a relative response against wavelength
# (WAVELENGTH, RELRESPONSE, NELEM): the conversion becomes a 2-D array from the exposure's
# per-pixel wavelengths (the WAVELENGTH array assign_wcs attached, else the WCS).
SPECTRAL_MODES = {
    "MIRI": {"MIR_LRS-FIXEDSLIT", "MIR_LRS-SLITLESS"},
}


class PhotomParams(StepParams):
    inverse: bool = False  # divide by the conversion instead of multiplying
    source_type: str | None = None  # process as this source type (POINT or EXTENDED); imaging ignores it
    apply_time_correction: bool = True  # apply the reference's time-dependent throughput correction if it has one


# ---------------------------------------------------------------------------
# the reference table


def _as_str(v) -> str:
    return (v.decode() if isinstance(v, bytes) else str(v)).strip().upper()


def find_row(table, match: dict) -> int | None:
    """Index of the one row whose columns equal ``match`` (strings compared upper-case), or None."""
    names = {n.lower(): n for n in table.dtype.names}
    ok = np.ones(len(table), dtype=bool)
    for col, value in match.items():
        if col not in names:
            raise ReferenceFileError("photom", "<table>", f"has no column {col!r}")
        column = np.asarray(table[names[col]])
        if column.dtype.kind in "SUO":
            column = np.array([_as_str(v) for v in column])
            ok &= column == (None if value is None else str(value).upper())
        else:
            ok &= column == value
    rows = np.flatnonzero(ok)
    if len(rows) > 1:
        raise ReferenceFileError("photom", "<table>", f"has {len(rows)} rows matching {match}; expected one")
    if len(rows) == 0:
        log.warning("Expected to find one matching row in the photom table, found 0 (%s)", match)
        return None
    return int(rows[0])


def _column(table, name):
    for n in table.dtype.names:
        if n.lower() == name:
            return np.asarray(table[n])
    raise KeyError(name)


def time_correction(ref, mid_time) -> np.ndarray | None:
    """Per PHOTOM row, the product of the reference's time-dependence corrections at ``mid_time`` (MJD).

    None when the reference has no time-dependence tables.  Each kind:
    linear ``1 - lossperyear * (t - t0) / 365``; exponential
    ``amplitude * exp(-(t - t0) / tau) + const``; power law
    ``(t - t0 + tsoft)**alpha * year1value / (365 + tsoft)**alpha``.
    """
    kinds = [k for k in ("timecoeff_linear", "timecoeff_exponential", "timecoeff_powerlaw") if ref.has(k)]
    if not kinds:
        return None
    if mid_time is None:
        log.warning("The photom reference has time-dependent coefficients but the exposure has no EXPMID; not applied")
        return None
    corr = np.full(len(ref.phot_table), 1.0)
    for kind in kinds:
        t = getattr(ref, kind)
        t0 = _column(t, "t0")
        if kind == "timecoeff_linear":
            corr *= 1.0 - _column(t, "lossperyear") * (mid_time - t0) / 365.0
        elif kind == "timecoeff_exponential":
            corr *= _column(t, "amplitude") * np.exp(-(mid_time - t0) / _column(t, "tau")) + _column(t, "const")
        else:
            alpha = _column(t, "alpha")
            tsoft = _column(t, "tsoft")
            norm = ((365.0 + tsoft) ** alpha) / _column(t, "year1value")
            corr *= ((mid_time - t0 + tsoft) ** alpha) / norm
    return corr


def _validate_reference(ref) -> None:
    """As stdatamodels does: time-dependence tables must have one row per PHOTOM row."""
    n = len(ref.phot_table)
    for kind in ("timecoeff_linear", "timecoeff_exponential", "timecoeff_powerlaw"):
        if ref.has(kind) and len(getattr(ref, kind)) != n:
            raise ReferenceFileError(
                "photom", ref.meta.filename or "<in memory>",
                f"its {kind.upper()} table has {len(getattr(ref, kind))} rows but PHOTOM has {n}",
            )


def select_row(model, ref) -> int | None:
    """The PHOTOM row for this exposure (see the module doc), or None when none matches."""
    inst = (model.meta.instrument.name or "").upper()
    up = lambda v: None if v is None else str(v).upper()  # noqa: E731
    filt, pupil, sub = up(model.meta.instrument.filter), up(model.meta.instrument.pupil), up(model.meta.subarray.name)
    table = ref.phot_table
    if inst in ("NIRCAM", "NIRISS"):
        match = {"filter": filt, "pupil": pupil}
        if inst == "NIRCAM" and "subarray" in [n.lower() for n in table.dtype.names]:
            match["subarray"] = sub
        return find_row(table, match)
    if inst == "MIRI":
        row = find_row(table, {"subarray": sub, "filter": filt})
        if row is None:
            row = find_row(table, {"subarray": "GENERIC", "filter": filt})
        return row
    if inst == "FGS":
        return 0
    raise UnsupportedModeError(f"photom for {inst or '?'} is not implemented")


# ---------------------------------------------------------------------------
# pixel area


def attach_area(model, ref, area) -> None:
    """AREA extension from the area map (cut to the subarray), PIXAR_SR/PIXAR_A2 from its header or the photom reference's."""
    from ._subarray import ref_region

    sr = a2 = None
    if area is not None:
        model.area = np.array(ref_region(model, area, "data"), dtype=np.float32)
        log.info("Pixel area map copied to output")
        sr = area.meta.photometry.pixelarea_steradians
        a2 = area.meta.photometry.pixelarea_arcsecsq
        if sr is None or a2 is None:
            log.warning("PIXAR_SR or PIXAR_A2 missing from the area reference; trying the photom reference")
    if sr is None or a2 is None:
        sr = ref.meta.photometry.pixelarea_steradians
        a2 = ref.meta.photometry.pixelarea_arcsecsq
        if sr is None or a2 is None:
            log.warning("PIXAR_SR or PIXAR_A2 missing from the photom reference")
    model.meta.photometry.pixelarea_steradians = None if sr is None else float(sr)
    model.meta.photometry.pixelarea_arcsecsq = None if a2 is None else float(a2)


# ---------------------------------------------------------------------------
# the calibration


def scale(model, factor, inverse: bool = False) -> None:
    """Multiply data and ERR by ``factor`` (a number or per-pixel array) and the variances by its
    square, in place; divide with ``inverse``."""
    squared = factor * factor
    with np.errstate(divide="ignore", invalid="ignore"):
        for name in ("data", "err"):
            arr = getattr(model, name)
            if not inverse:
                arr *= factor
            else:
                arr /= factor
        for name in ("var_poisson", "var_rnoise", "var_flat"):
            if model.has(name) and getattr(model, name).size > 0:
                arr = getattr(model, name)
                if not inverse:
                    arr *= squared
                else:
                    arr /= squared


def apply_conversion(model, conversion, inverse: bool = False) -> None:
    """Scale data and ERR by ``conversion`` and the variances by its square (divide with ``inverse``); set BUNIT."""
    scale(model, conversion, inverse)
    unit = "DN/s" if inverse else "MJy/sr"
    model.meta.bunit_data = unit
    model.meta.bunit_err = unit
    match_nans_and_flags(model)


def calibrate(model, photom_ref, area_ref=None, params: PhotomParams | None = None):
    """Apply the imaging photometric calibration to ``model`` in place. Returns (model, status)."""
    params = params or PhotomParams()
    inst = (model.meta.instrument.name or "").upper()
    _validate_reference(photom_ref)
    attach_area(model, photom_ref, area_ref)
    if inst == "NIRISS" and model.data.ndim == 3:
        log.error("Unexpected data model type %s for NIRISS; photom skipped", type(model).__name__)
        return model, "SKIPPED"
    row = select_row(model, photom_ref)
    if row is None:
        return model, "COMPLETE"
    corr = time_correction(photom_ref, model.meta.exposure.mid_time)
    table_row = photom_ref.phot_table[row]
    names = {n.lower(): n for n in photom_ref.phot_table.dtype.names}
    if "photmjsr" not in names:
        raise ReferenceFileError("photom", photom_ref.meta.filename or "<in memory>", "has no PHOTMJSR column (not an imaging photom file)")
    # a numpy scalar of the table's type, so the arithmetic matches jwst's bit for bit
    conversion = table_row[names["photmjsr"]]
    tc = None if corr is None else corr[row]
    if params.apply_time_correction and tc is not None and tc != 1.0:
        log.info("Multiplicative time dependence correction is %.6g", tc)
        conversion = conversion / tc
    log.info("PHOTMJSR value: %.6g", conversion)
    model.meta.photometry.conversion_megajanskys = float(conversion)
    model.meta.photometry.conversion_microjanskys = float(conversion * MJSR_TO_UJA2)
    if "wavelength" in names and "relresponse" in names:
        return calibrate_spectral(model, table_row, names, conversion, params)
    apply_conversion(model, conversion, params.inverse)
    return model, "COMPLETE"


def relative_response(table_row, names) -> tuple[np.ndarray, np.ndarray]:
    """(wavelengths in micron, increasing; relative response) of a spectroscopic PHOTOM row."""
    waves = np.asarray(table_row[names["wavelength"]])
    resp = np.asarray(table_row[names["relresponse"]])
    if "nelem" in names:
        n = int(table_row[names["nelem"]])
        waves, resp = waves[:n], resp[:n]
    if not np.all(np.diff(waves) > 0):
        order = np.argsort(waves)
        waves, resp = waves[order].copy(), resp[order].copy()
    if 0.0 < waves.max() < 1.0e-4:  # metres
        waves = waves * 1.0e6
    return waves, resp


def exposure_wavelengths(model) -> np.ndarray:
    """Per-pixel wavelengths: the WAVELENGTH array when it holds values, else the WCS evaluated on the pixels."""
    wl = model.wavelength if model.has("wavelength") else None
    if wl is not None and wl.size and not (np.nanmin(wl) == 0.0 and np.nanmax(wl) == 0.0):
        return wl.copy()
    wcs = getattr(model.meta, "wcs", None)
    if wcs is None:
        raise UnsupportedModeError("photom: a spectroscopic exposure needs a WCS (run assign_wcs first)")
    ny, nx = model.data.shape[-2:]
    out = np.empty((ny, nx), dtype=np.float64)
    # a block of rows at a time: the transforms' temporaries on a full MIRI frame were ~40 MiB;
    # each pixel's wavelength is its own, so the values are the same
    step = max(1, WCS_BLOCK_BYTES // (8 * max(nx, 1)))
    for y0 in range(0, ny, step):
        y, x = np.indices((min(step, ny - y0), nx), dtype=np.float64)
        y += y0
        out[y0:y0 + step] = wcs(x, y)[2]
    return out


WCS_BLOCK_BYTES = 1 << 20  # float64 pixel coordinates evaluated at a time by exposure_wavelengths


def calibrate_spectral(model, table_row, names, conversion, params: PhotomParams):
    """Scale by PHOTMJSR times the relative response at each pixel's wavelength.

    Pixels with no wavelength, or outside the response's range, get a conversion of 0 and are
    flagged DO_NOT_USE (and become NaN with the rest of the unusable pixels).
    """
    waves, resp = relative_response(table_row, names)
    wl = exposure_wavelengths(model)
    wl[np.isnan(wl)] = -1.0
    factor = np.interp(wl, waves, resp, left=np.nan, right=np.nan)
    del wl
    no_cal = np.isnan(factor)
    factor *= conversion  # in place: one full-frame float64 array fewer, the same products
    factor[no_cal] = 0.0
    apply_conversion_array(model, factor, params.inverse, no_cal)
    return model, "COMPLETE"


def apply_conversion_array(model, factor, inverse, no_cal) -> None:
    """As :func:`apply_conversion` with a per-pixel factor; ``no_cal`` pixels are flagged DO_NOT_USE."""
    from ..models import dqflags

    scale(model, factor, inverse)
    model.dq[..., no_cal] |= np.uint32(dqflags.DO_NOT_USE)
    unit = "DN/s" if inverse else "MJy/sr"
    model.meta.bunit_data = unit
    model.meta.bunit_err = unit
    match_nans_and_flags(model)


def _supported(model) -> bool:
    from ..models import CubeModel, ImageModel, SlitModel

    if isinstance(model, SlitModel):  # MIRI LRS: jwst's spec2 calibrates LRS exposures as a SlitModel
        return (model.meta.exposure.type or "").upper() in SPECTRAL_MODES["MIRI"]
    return isinstance(model, (ImageModel, CubeModel))


@step(
    "photom",
    "PhotomStep",
    params=PhotomParams,
    reftypes=("photom",),
    optional_reftypes=("area",),
    suffix="photom",
    input_class="ImageModel",
)
def photom(model, refs, params: PhotomParams):
    """Convert an image from DN/s to MJy/sr with the photom table; attach the pixel area map."""
    from ..models import SlitModel
    from . import _photom_grism

    from . import _photom_soss

    if _photom_soss.applies(model):  # NIRISS SOSS: the extracted spectra, per order
        with np.errstate(invalid="ignore"):
            return _photom_soss.calibrate(model, refs["photom"], params)
    if _photom_grism.applies(model):  # grism cutouts: per slit and spectral order
        calibrate_grism = _photom_grism.calibrate_tso if isinstance(model, SlitModel) else _photom_grism.calibrate_wfss
        with np.errstate(invalid="ignore", divide="ignore"):
            return calibrate_grism(model, refs["photom"], refs.get("area"), params)
    from . import _photom_nirspec, _photom_nirspec_ifu

    if _photom_nirspec_ifu.applies(model):  # the NIRSpec IFU: a per-pixel conversion from the slices' WCSs
        with np.errstate(invalid="ignore"):
            return _photom_nirspec_ifu.calibrate(model, refs["photom"], refs.get("area"), params)
    if _photom_nirspec.applies(model):  # NIRSpec fixed slits, MSA slits, the BOTS cutout: per slit
        return _photom_nirspec.calibrate(model, refs["photom"], refs.get("area"), params)
    from . import _photom_mrs

    if _photom_mrs.applies(model):  # the MIRI MRS: a per-pixel conversion
        return _photom_mrs.calibrate(model, refs["photom"], refs.get("area"), params)
    if not _supported(model):
        log.warning("photom takes an ImageModel or CubeModel here, not a %s; skipped", type(model).__name__)
        return model, "SKIPPED"
    inst = (model.meta.instrument.name or "").upper()
    exp_type = (model.meta.exposure.type or "").upper()
    if exp_type not in IMAGING_MODES.get(inst, set()) | SPECTRAL_MODES.get(inst, set()):
        raise UnsupportedModeError(
            f"photom calibrates imaging (NIRCam, NIRISS, MIRI, FGS) and MIRI LRS here; not {inst or '?'} {exp_type or '?'}"
        )
    with np.errstate(invalid="ignore"):
        return calibrate(model, refs["photom"], refs.get("area"), params)
