"""Reference models of the MIRI MRS spectral extraction (extract_1d on cubes, spectral_leak).

- ``Extract1dIFUModel`` (``extract1d`` for IFU cubes, ASDF): ``meta.subtract_background``,
  ``meta.method`` (photutils' overlap method: exact, center or subpixel), ``meta.subpixels``,
  ``meta.region_type``, and the tree ``data`` holding, per wavelength (``wavelength``, microns),
  the aperture ``radius`` and the background annulus (``inner_bkg``, ``outer_bkg``), in the units
  their ``*_units`` entries name (arcsec), plus ``axis_ratio`` and ``axis_pa``.
- ``MirMrsApcorrModel`` (``apcorr`` for the MRS, ASDF): the tree ``apcorr_table`` with
  ``wavelength`` (n), ``radius`` (m, n) in ``radius_units``, ``apcorr`` and ``apcorr_err`` (m, n):
  the point-source correction of an aperture of each radius at each wavelength.
- ``NrsIfuApcorrModel`` (``apcorr`` for the NIRSpec IFU, ASDF): the same tree, for one grating and
  filter (``grating``, ``filter`` entries of ``apcorr_table``).
- ``MirMrsPtCorrModel`` (``mrsptcorr``, FITS): LEAKCOR (wavelength, frac_leak, err_leak: the
  fraction of channel 1B's light at half the wavelength that leaks into channel 3A), TRACOR,
  WAVCORR_OPTICAL, WAVCORR_XSLICE and WAVCORR_SHIFT.
"""

from __future__ import annotations

from .base import ArraySpec as A
from .classes import REFERENCE_MODELS, ApcorrModel, ReferenceFileModel, _AsdfTreeModel


class Extract1dIFUModel(_AsdfTreeModel):
    """IFU extraction parameters: ``data`` (wavelength, radius, inner_bkg, outer_bkg...) and
    ``meta.subtract_background``, ``meta.method``, ``meta.subpixels``."""

    reftype = "extract1d"


class MirMrsApcorrModel(_AsdfTreeModel, ApcorrModel):
    """MRS aperture corrections: ``apcorr_table`` {wavelength, radius, apcorr, apcorr_err, units}."""

    reftype = "apcorr"
    arrays = ()


class NrsIfuApcorrModel(_AsdfTreeModel, ApcorrModel):
    """NIRSpec IFU aperture corrections: ``apcorr_table`` {grating, filter, wavelength, radius, apcorr, ...}."""

    reftype = "apcorr"
    arrays = ()


class MirMrsPtCorrModel(ReferenceFileModel):
    """MRS point-source corrections: the spectral leak (LEAKCOR) and the across-slice tables."""

    reftype = "mrsptcorr"
    arrays = (
        A("leakcor_table", "LEAKCOR", table=True, required=True),
        A("tracor_table", "TRACOR", table=True),
        A("wavcorr_optical_table", "WAVCORR_OPTICAL", table=True),
        A("wavcorr_xslice_table", "WAVCORR_XSLICE", table=True),
        A("wavcorr_shift_table", "WAVCORR_SHIFT", table=True),
    )


# the MRS spectral-leak table has no other class (extract1d and apcorr keep their FITS/JSON defaults)
REFERENCE_MODELS["mrsptcorr"] = MirMrsPtCorrModel

__all__ = ["Extract1dIFUModel", "MirMrsApcorrModel", "MirMrsPtCorrModel", "NrsIfuApcorrModel"]
