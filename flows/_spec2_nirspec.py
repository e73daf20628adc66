"""spec2 branches of the NIRSpec slit modes (added to :data:`flows.calwebb_spec2.BRANCHES`).

jwst 3.0's Spec2Pipeline sends NRS_FIXEDSLIT and NRS_BRIGHTOBJ through ``_process_nirspec_slits``
and NRS_MSASPEC through ``_process_nirspec_msa_slits``: after assign_wcs (and the imprint and
background subtractions when the association has those members), extract_2d, srctype,
master_background_mos, wavecorr, flat_field, pathloss, barshadow, photom; then resample_spec (an
s2d, not for a time series) and extract_1d.  Its step verification skips the steps a mode does
not take, and records them SKIPPED on the products:

- fixed slits: msa_flagging, imprint, barshadow, master_background_mos (nothing recorded for
  the last), and the default-skipped badpix_selfcal and clean_flicker_noise;
- bright-object TSO: the same plus pathloss; the cutout of every integration gives the calints
  and, with no resampling, the x1dints;
- MSA: msa_flagging, imprint (with imprint members) and master_background_mos run in jwst.
  Those steps are not in webbflow yet, so this branch is jwst's chain without them (their S_
  keywords recorded SKIPPED): it is not yet jwst's MOS product.  barshadow runs (tasks/barshadow.py).

flat_field takes NIRSpec's f, s and d flats (tasks/_flat_nirspec.py, checked against jwst's step
in tests/test_nirspec_flat.py); the branch comparisons in tests/test_nirspec_spec2.py still skip
flat_field and barshadow on both sides.
"""

from __future__ import annotations

from .calwebb_spec2 import BRANCHES, Branch

# recorded SKIPPED by jwst's pipeline on every NIRSpec slit product (default-skipped or not this mode's)
_NRS_SKIPPED = ("badpix_selfcal", "msa_flagging", "clean_flicker_noise", "imprint", "bkg_subtract")
# assign_wcs asks CRDS for these on every exposure and jwst records the answers (N/A for NIRSpec slits)
_NRS_EXTRA = {"recorded_reftypes": ("distortion", "filteroffset")}

BRANCHES["NRS_FIXEDSLIT"] = Branch(
    "nirspec-fixedslit",
    ("assign_wcs", "bkg_subtract?", "extract_2d", "srctype", "wavecorr", "flat_field", "pathloss", "photom"),
    resample="resample_spec",
    extract=True,
    marked_skipped=_NRS_SKIPPED + ("barshadow",),
    notes="NIRSpec fixed slits: one cutout per open slit; s2d and x1d per slit",
    extra=_NRS_EXTRA,
)

BRANCHES["NRS_BRIGHTOBJ"] = Branch(
    "nirspec-brightobj",
    ("assign_wcs", "bkg_subtract?", "extract_2d", "srctype", "wavecorr", "flat_field", "photom"),
    resample=None,
    extract=True,
    marked_skipped=_NRS_SKIPPED + ("barshadow", "pathloss"),
    notes="NIRSpec bright-object TSO (S1600A1): the cutout of every integration; calints and x1dints",
    extra=_NRS_EXTRA,
)

BRANCHES["NRS_MSASPEC"] = Branch(
    "nirspec-msa",
    ("assign_wcs", "bkg_subtract?", "extract_2d", "srctype", "wavecorr", "flat_field", "pathloss", "barshadow",
     "photom"),
    resample="resample_spec",
    extract=True,
    marked_skipped=("badpix_selfcal", "msa_flagging", "clean_flicker_noise", "imprint", "bkg_subtract"),
    notes="NIRSpec MSA: jwst's chain without msa_flagging, imprint and master_background_mos (not yet in "
          "webbflow); fixed slits of an MSA exposure are not split off as jwst does",
    extra=_NRS_EXTRA,
)
