"""NIRISS SOSS extract_1d side products (ATOCA), in stdatamodels' layouts.

- ``SossExtractModel`` (``<name>_SossExtractModel.fits``, extract_1d's ``soss_modelname``): each
  order's ATOCA trace model (ORDER1..3) and box weights (APER1..3), one plane per integration.
- ``SossWaveGridModel`` (extract_1d's ``soss_wave_grid_out`` / ``soss_wave_grid_in``): the
  wavelength grid of the orders 1+2 model, float64, in a WAVEGRID extension.
"""

from __future__ import annotations

from .base import ArraySpec as A
from .base import DataModel

F4 = ("float32",)


class SossExtractModel(DataModel):
    """ATOCA's trace models and box apertures of each order, (nints, ny, nx) each."""

    arrays = tuple(A(f"order{o}", f"ORDER{o}", F4, ndim=3) for o in (1, 2, 3)) + tuple(
        A(f"aperture{o}", f"APER{o}", F4, ndim=3) for o in (1, 2, 3))


class SossWaveGridModel(DataModel):
    """A SOSS ATOCA wavelength grid (um)."""

    arrays = (A("wavegrid", "WAVEGRID", ("float64",), ndim=1, required=True),)
