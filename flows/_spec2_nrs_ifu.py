"""spec2 branch of the NIRSpec IFU (NRS_IFU), added to :data:`flows.calwebb_spec2.BRANCHES`.

jwst 3.0's Spec2Pipeline sends NRS_IFU through ``_process_common`` on the IFUImageModel assign_wcs
makes: assign_wcs, msa_flagging (the failed-open shutters of ``msaoper``; SKIPPED when CRDS gives
none), imprint (jwst's imprint_subtract, with the association's imprint members), bkg_subtract (with
background members), srctype, flat_field (the f, s and d flats at each slice's wavelengths:
tasks/_flat_nirspec_ifu.py), pathloss (SKIPPED when the reference is N/A), photom (a per-pixel
conversion to MJy/sr with the slices' pixel areas: tasks/_photom_nirspec_ifu.py); the cal; then
cube_build (spec2 builds without the field-of-view DQ flagging) to the s3d and extract_1d on it.

Its step verification records SKIPPED, without running them, the default-skipped badpix_selfcal and
clean_flicker_noise, and the steps of other modes: targ_centroid, straylight, fringe, barshadow and
residual_fringe.

After the cal: cube_build (tasks/cube_build, the NIRSpec drizzle of tasks/cube_build/nirspec.py; one
cube of the exposure's grating and filter, written as ``<root>_s3d.fits``) and extract_1d on it
(``<root>_x1d.fits``), as jwst's spec2 makes them.
"""

from __future__ import annotations

from .calwebb_spec2 import BRANCHES, Branch, _mrs_prepare

BRANCHES["NRS_IFU"] = Branch(
    "nirspec-ifu",
    ("assign_wcs", "msa_flagging", "imprint", "bkg_subtract?", "srctype", "flat_field", "pathloss", "photom"),
    resample="cube_build",
    extract=True,
    marked_skipped=("badpix_selfcal", "clean_flicker_noise", "bkg_subtract", "targ_centroid", "straylight", "fringe",
                    "barshadow", "residual_fringe"),
    notes="NIRSpec IFU: the cal (flat_field and photom per slice), s3d (cube_build) and x1d",
    extra={"model_class": "IFUImageModel", "prepare": _mrs_prepare,
           "recorded_reftypes": ("distortion", "filteroffset")},
)
