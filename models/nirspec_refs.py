"""Reference models of the NIRSpec optical model (ASDF trees of astropy transforms).

Each is read as stdatamodels reads it, the tree kept as it is in the file:

- ``CameraModel``, ``CollimatorModel``, ``FOREModel``, ``OTEModel``: one ``model`` transform
  (camera: unitless GWA-side directions <-> FPA position; collimator: MSA position <-> unitless
  directions; fore: MSA -> OTE image plane, with the wavelength as third input; ote: OTE image plane
  -> V2/V3);
- ``FPAModel``: ``nrs1_model`` and ``nrs2_model``, detector pixels (1-based) -> FPA metres;
- ``DisperserModel``: the grating or prism on the GWA: ``groovedensity`` (gratings) or the prism's
  ``angle``, ``kcoef``, ``lcoef``, ``tcoef``, ``tref``, ``pref``; the mounting angles ``theta_x``,
  ``theta_y``, ``theta_z``, ``tilt_y``; the tilt sensor calibrations ``gwa_tiltx`` and ``gwa_tilty``;
- ``MSAModel``: per quadrant ``Q1``..``Q5`` a ``data`` table of shutters (or, in Q5, fixed slits)
  and the quadrant's ``model`` to MSA coordinates.

The transforms deserialise through astropy's and stdatamodels.jwst.transforms' converters (DESIGN §8).
"""

from __future__ import annotations

from .classes import REFERENCE_MODELS, _AsdfTreeModel


class CameraModel(_AsdfTreeModel):
    reftype = "camera"


class CollimatorModel(_AsdfTreeModel):
    reftype = "collimator"


class DisperserModel(_AsdfTreeModel):
    reftype = "disperser"


class FOREModel(_AsdfTreeModel):
    reftype = "fore"


class FPAModel(_AsdfTreeModel):
    reftype = "fpa"


class MSAModel(_AsdfTreeModel):
    reftype = "msa"


class OTEModel(_AsdfTreeModel):
    reftype = "ote"


class IFUPostModel(_AsdfTreeModel):
    """NIRSpec IFU post-optics: ``slice_0``..``slice_29``, each ``linear``, ``xpoly``, ``xpoly_distortion``,
    ``ypoly``, ``ypoly_distortion`` (the slicer -> MSA exit plane, the distortion times the wavelength)."""

    reftype = "ifupost"


class IFUSlicerModel(_AsdfTreeModel):
    """NIRSpec IFU slicer: ``data`` (30 x 5: slice, x/y centre, x/y size) and ``model`` (slicer frame -> plane)."""

    reftype = "ifuslicer"


class IFUFOREModel(_AsdfTreeModel):
    """NIRSpec IFU fore optics: ``model``, the slicer -> MSA entrance plane (x, y, wavelength -> x, y)."""

    reftype = "ifufore"


class ChromCorrModel(_AsdfTreeModel):
    """NIRSpec fore-optics chromaticity correction: ``model`` (x, y, wavelength -> x, y, wavelength)."""

    reftype = "chromcorr"


# a reference of another type given for one of these is refused by name (refs.open_reference)
REFERENCE_MODELS.update({cls.reftype: cls for cls in (CameraModel, CollimatorModel, DisperserModel, FOREModel,
                                                      FPAModel, MSAModel, OTEModel)})
REFERENCE_MODELS.update({cls.reftype: cls for cls in (IFUPostModel, IFUSlicerModel, IFUFOREModel, ChromCorrModel)})
