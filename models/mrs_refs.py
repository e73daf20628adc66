"""Reference models of the MIRI MRS (medium resolution spectrometer).

- ``DistortionMRSModel`` (``distortion``, ASDF): per slice the detector -> alpha / beta models
  (``alpha_model``, ``beta_model``) and their inverses (``x_model``, ``y_model``: alpha, lambda ->
  detector x, y), the slice numbers (``slices``, 100 * channel + slice), the beta of slice 1 and
  the slice width per channel+band (``bzero``, ``bdel``), and per channel+band the
  alpha/beta -> V2/V3 model (``abv2v3_model``).
- ``SpecwcsModel`` (``specwcs``): for the MRS an ASDF tree whose ``model`` list holds one
  detector -> wavelength model per slice (in the order of ``slices``).  The LRS specwcs is a FITS
  file of the same DATAMODL, read as a plain reference (its WAVETABLE extension kept as it is).
- ``RegionsModel`` (``regions``, ASDF): the slice map, a stack of detector-sized planes, one per
  throughput level (plane 7: the 80 % throughput footprint jwst's WCS uses).
- ``MirMrsXArtCorrModel`` (``mrsxartcorr``, FITS): the straylight cross-artifact parameters,
  one table per channel+band (CH1A ... CH4C), one row per detector row.
- ``FringeModel`` (``fringe``, FITS): SCI, ERR, DQ and DQ_DEF, a multiplicative fringe flat.
- ``FringeFreqModel`` (``fringefreq``, FITS): the residual fringe fit's settings per slice and band
  (RFC_FREQ_SHORT, RFC_FREQ_MEDIUM, RFC_FREQ_LONG: slice, ffreq, dffreq, min_nfringes, max_nfringes,
  min_snr, pgram_res, one entry per fringe component) and the largest fringe amplitude by
  wavelength (MAX_AMP: wavelength, amplitude).
- ``MirMrsPhotomModel`` (``photom`` for the MRS, FITS): SCI (the per-pixel conversion to MJy/sr),
  ERR, DQ, DQ_DEF, PIXSIZ and the optional time-dependence tables TIMECOEFF_POWERLAW_CH1..4.

The transforms deserialise through astropy's and stdatamodels.jwst.transforms' ASDF converters
(DESIGN §8), so they are the objects jwst builds its WCS from.
"""

from __future__ import annotations

from .base import ArraySpec as A
from .base import same_shape
from .classes import F4, U4, DistortionModel, PhotomModel, ReferenceFileModel, _AsdfTreeModel, _dq_def

I2 = ("int16", "int32", "int64", "uint8", "uint16", "uint32")


class DistortionMRSModel(DistortionModel):
    """MRS distortion: alpha_model, beta_model, x_model, y_model, slices, bzero, bdel, abv2v3_model."""

    reftype = "distortion"


class SpecwcsModel(_AsdfTreeModel):
    """A specwcs: MRS per-slice wavelength models (``model``, ``slices``), or the LRS FITS table."""

    reftype = "specwcs"


class RegionsModel(ReferenceFileModel):
    """The MRS slice map: ``regions`` (planes, 1024, 1032), slice number 100 * channel + slice, 0 between."""

    reftype = "regions"
    asdf_extension = False
    arrays = (A("regions", "REGIONS", I2, required=True),)


XART_TABLES = tuple(f"ch{c}{b}_table" for c in "1234" for b in "abc")


class MirMrsXArtCorrModel(ReferenceFileModel):
    """Straylight cross-artifact parameters: CH1A ... CH4C tables of (yrow, lor_fwhm, lor_scale,
    gau_fwhm, gau_xoff, gau_scale1, gau_scale2), one row per detector row."""

    reftype = "mrsxartcorr"
    arrays = tuple(A(name, name[:4].upper(), table=True) for name in XART_TABLES)


class FringeModel(ReferenceFileModel):
    """Fringe flat: the science is divided by SCI (NaN counts as 1)."""

    reftype = "fringe"
    arrays = (
        A("data", "SCI", F4, ndim=2, required=True),
        A("err", "ERR", F4, ndim=2, shape_of=same_shape),
        A("dq", "DQ", U4, ndim=2, shape_of=same_shape),
        _dq_def(),
    )


class FringeFreqModel(ReferenceFileModel):
    """Residual fringe settings: RFC_FREQ_SHORT/MEDIUM/LONG tables by slice and the MAX_AMP table."""

    reftype = "fringefreq"
    arrays = tuple(A(f"rfc_freq_{b}_table", f"RFC_FREQ_{b.upper()}", table=True) for b in ("short", "medium", "long")) \
        + (A("max_amp_table", "MAX_AMP", table=True),)


class MirMrsPhotomModel(PhotomModel):
    """MRS photom: a per-pixel conversion (SCI) from DN/s to MJy/sr, with PIXSIZ and time coefficients."""

    # stdatamodels' mirmrs_photom schema keeps PHOTMJSR (and the pixel area) in the primary header
    keyword_hdus = {"PIXAR_SR": "PRIMARY", "PIXAR_A2": "PRIMARY", "PHOTMJSR": "PRIMARY"}

    arrays = (
        A("data", "SCI", F4, ndim=2, required=True),
        A("err", "ERR", F4, ndim=2, shape_of=same_shape),
        A("dq", "DQ", U4, ndim=2, shape_of=same_shape),
        _dq_def(),
        A("pixsiz", "PIXSIZ", F4, ndim=2),
    ) + tuple(A(f"timecoeff_powerlaw_ch{c}", f"TIMECOEFF_POWERLAW_CH{c}", table=True) for c in "1234")
