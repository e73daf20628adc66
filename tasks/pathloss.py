"""pathloss: the slit-loss correction of spectra (jwst's PathLossStep), MIRI LRS fixed slit.

The LRS pathloss reference (MirLrsPathlossModel) has a PATHLOSS table with one row per
wavelength: the wavelength and the fraction of a point source's light that passes the slit, as
a 2-D grid over the source's position in the slit (the grid's axes given by CRPIX/CRVAL/CDELT 1
and 2 in the table's header, in slit coordinates where (0, 0) is the slit centre).

For a point source (SRCTYPE POINT; anything else is left alone and marked SKIPPED, as jwst does):

1. the source's position: TARG_RA/TARG_DEC through the WCS back to the detector (at the
   wavelength of the slit's reference point), relative to that reference point (the specwcs
   IMX/IMY that assign_wcs keeps in the WCS's first shift); ``user_slit_loc`` (arcsec, across
   the slit) moves it by that many pixels of the WCS's spatial scale;
2. the 1-D pathloss at that position: bilinear interpolation in the grid (a source outside the
   grid falls back to the slit centre);
3. the 2-D correction: that vector interpolated linearly at each pixel's wavelength (NaN outside
   the table's wavelengths and where the pixel has none).

The data and ERR are multiplied by the correction, the variances by its square (the LRS
correction is multiplicative and jwst applies it so even when ``inverse`` is set); the correction
is kept as PATHLOSS_PS and the wavelengths as WAVELENGTH.  NIRSpec modes are not implemented here.
"""

from __future__ import annotations

import logging

import numpy as np

from ..errors import ReferenceFileError, UnsupportedModeError
from .base import StepParams, step
from .flat_field import match_nans_and_flags

log = logging.getLogger("webbflow.steps.pathloss")

LRS_MODES = ("MIR_LRS-FIXEDSLIT",)


class PathLossParams(StepParams):
    inverse: bool = False  # invert the operation
    source_type: str | None = None  # process as this source type (not used by MIRI LRS, as in jwst)
    user_slit_loc: float | None = None  # user-provided source offset across the MIRI LRS slit, arcsec


class LrsPathloss:
    """The PATHLOSS table of an LRS pathloss reference and the grid axes from its header."""

    def __init__(self, ref):
        self.name = getattr(ref.meta, "filename", None) or "<in memory>"
        hdu = None
        if hasattr(ref, "has") and ref.has("pathloss_table"):
            table, header = ref.pathloss_table, ref._headers.get("PATHLOSS", {})
        else:
            hdu = next((h for h in getattr(ref, "_extra_hdus", []) if h.name == "PATHLOSS"), None)
            if hdu is None:
                raise ReferenceFileError("pathloss", self.name, "has no PATHLOSS table (not an LRS pathloss file)")
            table, header = hdu.data, hdu.header
        cols = {c.lower(): c for c in table.dtype.names}
        if "wavelength" not in cols or "pathloss" not in cols:
            raise ReferenceFileError("pathloss", self.name, "its PATHLOSS table lacks the wavelength or pathloss column")
        self.wavelength = np.asarray(table[cols["wavelength"]])
        self.grid = np.asarray(table[cols["pathloss"]])
        if self.grid.ndim != 3:
            raise ReferenceFileError("pathloss", self.name, f"its pathloss column is {self.grid.ndim - 1}-D, expected 2-D")
        # the schema's defaults for absent keywords: CRPIX 0
        self.crpix = (float(header.get("CRPIX1", 0.0)), float(header.get("CRPIX2", 0.0)))
        try:
            self.crval = (float(header["CRVAL1"]), float(header["CRVAL2"]))
            self.cdelt = (float(header["CDELT1"]), float(header["CDELT2"]))
        except KeyError as exc:
            raise ReferenceFileError("pathloss", self.name, f"its PATHLOSS header has no {exc.args[0]}") from None

    def vector_at(self, xcenter: float, ycenter: float) -> tuple[np.ndarray, bool]:
        """The pathloss against wavelength at slit position (x, y), and whether that lies inside the grid."""
        _, nrows, ncols = self.grid.shape
        col = self.crpix[0] + (xcenter - self.crval[0]) / self.cdelt[0] - 1
        row = self.crpix[1] + (ycenter - self.crval[1]) / self.cdelt[1] - 1
        if col < 0 or col >= ncols - 1 or row < 0 or row >= nrows - 1:
            return np.zeros(self.grid.shape[0], dtype=np.float32), False
        j, i = int(col), int(row)
        fx, fy = col - j, row - i
        g = self.grid
        vec = ((1 - fx) * (1 - fy) * g[:, i, j] + (1 - fx) * fy * g[:, i + 1, j]
               + fx * (1 - fy) * g[:, i, j + 1] + fx * fy * g[:, i + 1, j + 1])
        return vec, True


def interpolate_on_wavelengths(wavelengths, table_wave, vector):
    """Linear interpolation of ``vector`` at each wavelength; NaN outside ``table_wave`` (increasing) and for NaN input."""
    # padded in float64 (the padding computed in the table's precision), as jwst pads them
    wave = np.zeros(len(table_wave) + 2)
    wave[1:-1] = table_wave
    wave[0], wave[-1] = table_wave[0] - 0.1, table_wave[-1] + 0.1
    vec = np.zeros(len(vector) + 2)
    vec[1:-1] = vector
    vec[0] = vec[-1] = np.nan
    wavelengths = np.asarray(wavelengths)
    flat = wavelengths.reshape(-1)
    out = np.empty(flat.shape, dtype=np.result_type(flat.dtype, vec.dtype))
    # a block at a time (each pixel's value is its own): the index and fraction arrays of a whole
    # MIRI frame were ~50 MiB
    for i in range(0, max(flat.size, 1), _BLOCK):
        w = flat[i:i + _BLOCK]
        lower = np.searchsorted(table_wave, w)
        upper = lower + 1
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = (w - wave[lower]) / (wave[upper] - wave[lower])
            out[i:i + _BLOCK] = vec[lower] + frac * (vec[upper] - vec[lower])
    return out.reshape(wavelengths.shape)


_BLOCK = 1 << 17  # pixels interpolated at a time


def source_position(model):
    """(x, y) of the target relative to the slit's reference point, and that point (detector pixels)."""
    det_to_world = model.meta.wcs.get_transform("detector", "world")
    world_to_det = model.meta.wcs.get_transform("world", "detector")
    # assign_wcs (jwst's and ours) opens the LRS transform with shifts by minus the reference point
    imx, imy = -det_to_world.offset_1, -det_to_world.offset_2
    src_x = src_y = None  # an LRS exposure carries no SOURCE_XPOS/SOURCE_YPOS: from the target's RA/Dec
    if src_x is None or src_y is None:
        _ra, _dec, ref_wave = det_to_world(imx, imy)
        src_x, src_y = world_to_det(model.meta.target.ra, model.meta.target.dec, ref_wave)
        log.info("LRS target location from RA/Dec = (%s, %s)", src_x, src_y)
    return src_x - imx, src_y - imy, imx, imy


def lrs_correction(model, table: LrsPathloss, user_slit_loc=None):
    """The 2-D point-source pathloss of an LRS fixed-slit exposure, and the per-pixel wavelengths."""
    from .photom import exposure_wavelengths

    t = model.meta.target
    xc, yc, imx, imy = (np.nan,) * 4 if t.ra is None or t.dec is None else source_position(model)
    if not (np.isfinite(xc) and np.isfinite(yc)):
        from ..errors import InputFileError

        raise InputFileError(model.meta.filename or "the exposure",
                             "has no usable target position (TARG_RA/TARG_DEC) for the LRS pathloss correction")
    log.info("Target location relative to aperture center = (%.3f, %.3f)", xc, yc)
    if user_slit_loc is not None:
        from stcal.alignment.util import compute_scale

        ra, dec, lam = model.meta.wcs(imx, imy)
        scale = compute_scale(model.meta.wcs, (ra, dec, lam), disp_axis=model.meta.wcsinfo.dispersion_direction)
        yc = yc + user_slit_loc / (scale * 3600.0)
        log.info("New target location = (%.3f, %.3f)", xc, yc)
    vector, inside = table.vector_at(xc, yc)
    if not inside:
        log.info("Source is outside slit. Correction defaulting to center of the slit.")
        vector, inside = table.vector_at(0.0, 0.0)
    wavelengths = exposure_wavelengths(model)
    # the LRS table runs from long to short wavelengths
    corr = interpolate_on_wavelengths(wavelengths, table.wavelength[::-1], vector[::-1])
    return corr, wavelengths


def correct_lrs(model, ref, params: PathLossParams):
    if (model.meta.target.source_type or "").upper() != "POINT":
        log.warning("Not a point source; skipping correction for LRS.")
        return model, "SKIPPED"
    corr, wavelengths = lrs_correction(model, LrsPathloss(ref), params.user_slit_loc)
    corr = corr.astype(np.float32)  # jwst applies the correction as a float32 image
    squared = corr * corr
    model.data *= corr
    model.err *= corr
    for name in ("var_poisson", "var_rnoise", "var_flat"):
        if model.has(name) and getattr(model, name).size > 0:
            getattr(model, name)[...] *= squared
    model.pathloss_point = corr.astype(np.float32)
    model.wavelength = np.asarray(wavelengths, dtype=np.float32)
    match_nans_and_flags(model)
    return model, "COMPLETE"


@step(
    "pathloss",
    "PathLossStep",
    params=PathLossParams,
    reftypes=("pathloss",),
    suffix="pathloss",
    input_class="ImageModel",
)
def pathloss(model, refs, params: PathLossParams):
    """Correct a spectrum for the light the slit loses (MIRI LRS fixed slit, NIRSpec fixed slits and MSA)."""
    from ..models import ImageModel, SlitModel

    exp_type = (model.meta.exposure.type or "").upper()
    from . import _pathloss_nirspec

    if _pathloss_nirspec.applies(model):  # NIRSpec fixed slits and MSA slitlets
        return _pathloss_nirspec.correct(model, refs["pathloss"], params)
    if exp_type not in LRS_MODES:
        raise UnsupportedModeError(f"pathloss corrects MIRI LRS fixed-slit exposures here; not {exp_type or '?'}")
    # spec2 hands LRS exposures over as a SlitModel, as jwst does
    if not isinstance(model, (ImageModel, SlitModel)) or model.data.ndim != 2:
        raise UnsupportedModeError(f"pathloss for {exp_type} takes a 2-D ImageModel or SlitModel, not {type(model).__name__}")
    with np.errstate(invalid="ignore"):
        return correct_lrs(model, refs["pathloss"], params)
