"""Reference models of NIRISS SOSS (the GR700XD spectral orders 1-3).

- ``PastasossModel``: the ``pastasoss`` reference, an ASDF tree: ``meta`` (PWCPOS_CMD and its
  bounds, the wavelength grid, the SOSS frame), ``traces`` (per order: the (x, y) trace at the
  commanded pupil wheel position, its rotation pivot and column cutoff), ``wavecal_models``
  (per order: a 2-D polynomial in the scaled column and pupil wheel offset) and ``throughputs``.
- ``SpecProfileModel``: the ``specprofile`` reference, one ORDER image extension per order (the
  normalised spatial profile of the trace, with padding).
- ``SpecKernelModel``: the ``speckernel`` reference, WAVELENGTHS and KERNELS images.
- ``NisSossPhotomModel``: the SOSS ``photom`` reference: a PHOTOM table of (filter, pupil,
  order, photmj, uncertainty, nelem, wavelength, relresponse, reluncertainty).
"""

from __future__ import annotations

from .base import ArraySpec as A
from .classes import F4, PhotomModel, ReferenceFileModel, _AsdfTreeModel


class PastasossModel(_AsdfTreeModel):
    """SOSS traces and wavelength calibration (``pastasoss``)."""

    reftype = "pastasoss"


class SpecProfileModel(ReferenceFileModel):
    """SOSS spatial profiles (``specprofile``): its ORDER extensions are kept as they are."""

    reftype = "specprofile"


class SpecKernelModel(ReferenceFileModel):
    """SOSS spectral kernels (``speckernel``)."""

    reftype = "speckernel"
    arrays = (A("wavelengths", "WAVELENGTHS", F4, ndim=2), A("kernels", "KERNELS", F4, ndim=2))


class NisSossPhotomModel(PhotomModel):
    """NIRISS SOSS photometric calibration, per order (PHOTMJ, relative response against wavelength)."""
