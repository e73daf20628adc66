"""Reference models of the slitless grism modes (ASDF trees of astropy transforms).

- ``NIRCAMGrismModel`` / ``NIRISSGrismModel``: the grism ``specwcs``; per spectral order
  (``orders``) the dispersion polynomials ``displ`` (t -> wavelength), ``dispx``/``dispy``
  (trace offsets from the direct-image position) and their inverses ``invdispl``/``invdispx``/
  ``invdispy`` where the file has them; NIRISS adds ``fwcpos_ref`` (the filter wheel position
  the polynomials were measured at), NIRCam DHS adds ``stripes`` and ``fieldpoints``.
- ``WfssBkgModel``: the WFSS ``bkg`` reference, the dispersed sky of a filter + grism (SCI, DQ,
  ERR, DQ_DEF), which bkg_subtract scales to each exposure.
- ``WavelengthrangeModel``: the ``wavelengthrange`` reference: ``wavelengthrange`` rows of
  (order, filter, lower, upper) in microns for grisms, plus ``order`` and ``extract_orders``
  (per filter, the orders extract_2d extracts).

The transforms deserialise through astropy's and stdatamodels.jwst.transforms' ASDF converters
(DESIGN §8), so they are the very objects jwst builds its WCS from.
"""

from __future__ import annotations

from .base import ArraySpec as A
from .base import same_shape
from .classes import F4, U4, ReferenceFileModel, _AsdfTreeModel, _dq_def


class NIRCAMGrismModel(_AsdfTreeModel):
    """NIRCam grism dispersion (``specwcs``): displ, dispx, dispy, inverses, orders."""

    reftype = "specwcs"


class NIRISSGrismModel(_AsdfTreeModel):
    """NIRISS grism dispersion (``specwcs``): displ, dispx, dispy, invdispl, orders, fwcpos_ref."""

    reftype = "specwcs"


class WavelengthrangeModel(_AsdfTreeModel):
    """Wavelength ranges per order and filter (``wavelengthrange``), and the orders to extract."""

    reftype = "wavelengthrange"


class WfssBkgModel(ReferenceFileModel):
    """WFSS master background (``bkg``): SCI, DQ, ERR full-frame images and DQ_DEF."""

    reftype = "bkg"
    arrays = (
        A("data", "SCI", F4, ndim=2, required=True),
        A("dq", "DQ", U4, ndim=2, shape_of=same_shape),
        A("err", "ERR", F4, ndim=2, shape_of=same_shape),
        _dq_def(),
    )
