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
- MSA: msa_flagging (tasks/msa_flagging.py: the failed-open shutters of the ``msaoper`` reference
  flagged through the exposure's optical chain, with the WCS references assign_wcs used), then
  imprint (tasks/imprint.py, jwst's imprint_subtract: the association's imprint member subtracted;
  SKIPPED with none, as jwst records it), then extract_2d, srctype, master_background_mos
  (tasks/master_background_mos.py), wavecorr and on; barshadow runs (tasks/barshadow.py).
  master_background_mos makes jwst's decisions (SKIPPED after a nod subtraction, FAILED with no
  background or no source slitlet) and subtracts the master background made from the background
  slitlets, calibrating its copy with this flow's flat_field, pathloss, barshadow and photom
  settings (``_inherit_mbkg_substeps``), as jwst's pipeline hands its own down.  Not yet here: the split of an MSA
  exposure's fixed slits (quadrant 5) through the FS chain (wavecorr, flat_field, pathloss, photom
  with EXP_TYPE NRS_FIXEDSLIT), which jwst 3.0 does after srctype: assign_wcs refuses, in one line,
  an MSA metadata file whose ``fixed_slit`` column opens one.

flat_field takes NIRSpec's f, s and d flats (tasks/_flat_nirspec.py, checked against jwst's step
in tests/test_nirspec_flat.py); the branch comparisons in tests/test_nirspec_spec2.py still skip
flat_field and barshadow on both sides.  msa_flagging and imprint are checked against
jwst's steps in tests/test_nirspec_msa.py.
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


def _msa_prepare(model, params, members):
    """jwst's MOS wiring: msa_flagging builds its chain from the WCS references assign_wcs used (jwst
    reads them back from the R_ keywords), and imprint (jwst's imprint_subtract) takes the association's
    imprint members (jwst 3.0 keeps only the first of several for an MSA exposure)."""
    from ..tasks.msa_flagging import WCS_REFTYPES

    if "msa_flagging" in params and "assign_wcs" in params:
        given = params["assign_wcs"].overrides
        mine = dict(params["msa_flagging"].overrides)
        for rt in WCS_REFTYPES:
            if rt in given and rt not in mine:
                mine[rt] = given[rt]
        params["msa_flagging"] = params["msa_flagging"].model_copy(update={"overrides": mine})
    if "master_background_mos" in params:
        _inherit_mbkg_substeps(params)
    imprints = [str(p) for p in members.get("imprint") or []]
    if "imprint" in params and imprints and not params["imprint"].imprint_list:
        params["imprint"] = params["imprint"].model_copy(update={"imprint_list": imprints[:1]})


def _inherit_mbkg_substeps(params):
    """master_background_mos calibrates its background copy with the flow's own flat_field, pathloss,
    barshadow and photom settings (skip, overrides, parameters), as jwst's parent pipeline hands them
    down; what the user gave under the step's own ``steps`` wins."""
    from ..tasks.master_background_mos import inherited_settings

    mine = params["master_background_mos"]
    subs = {k: dict(v) for k, v in mine.steps.items()}
    for name in ("flat_field", "pathloss", "barshadow", "photom"):
        if name in params:
            subs[name] = {**inherited_settings(name, params[name]), **subs.get(name, {})}
    params["master_background_mos"] = mine.model_copy(update={"steps": subs})


BRANCHES["NRS_MSASPEC"] = Branch(
    "nirspec-msa",
    ("assign_wcs", "msa_flagging", "imprint", "bkg_subtract?", "extract_2d", "srctype", "master_background_mos",
     "wavecorr", "flat_field", "pathloss", "barshadow", "photom"),
    resample="resample_spec",
    extract=True,
    marked_skipped=("badpix_selfcal", "clean_flicker_noise", "bkg_subtract"),
    notes="NIRSpec MSA: msa_flagging, imprint, then jwst's MOS chain (master_background_mos from the background "
          "slitlets); fixed slits of an MSA exposure are not split off as jwst does",
    extra={**_NRS_EXTRA, "prepare": _msa_prepare},
)
