"""Reference models of the slitless grism modes (ASDF trees of astropy transforms).

- ``NIRCAMGrismModel`` / ``NIRISSGrismModel``: the grism ``specwcs``; per spectral order
  (``orders``) the dispersion polynomials ``displ`` (t -> wavelength), ``dispx``/``dispy``
  (trace offsets from the direct-image position) and their inverses ``invdispl``/``invdispx``/
  ``invdispy`` where the file has them; NIRISS adds ``fwcpos_ref`` (the filter wheel position
  the polynomials were measured at), NIRCam DHS adds ``stripes`` and ``fieldpoints``.
- ``WavelengthrangeModel``: the ``wavelengthrange`` reference: ``wavelengthrange`` rows of
  (order, filter, lower, upper) in microns for grisms, plus ``order`` and ``extract_orders``
  (per filter, the orders extract_2d extracts).

The transforms deserialise through astropy's and stdatamodels.jwst.transforms' ASDF converters
(DESIGN §8), so they are the very objects jwst builds its WCS from.
"""

from __future__ import annotations

from .classes import _AsdfTreeModel


class NIRCAMGrismModel(_AsdfTreeModel):
    """NIRCam grism dispersion (``specwcs``): displ, dispx, dispy, inverses, orders."""

    reftype = "specwcs"


class NIRISSGrismModel(_AsdfTreeModel):
    """NIRISS grism dispersion (``specwcs``): displ, dispx, dispy, invdispl, orders, fwcpos_ref."""

    reftype = "specwcs"


class WavelengthrangeModel(_AsdfTreeModel):
    """Wavelength ranges per order and filter (``wavelengthrange``), and the orders to extract."""

    reftype = "wavelengthrange"
