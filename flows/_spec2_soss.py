"""spec2 branch of NIRISS SOSS (added to :data:`flows.calwebb_spec2.BRANCHES`).

jwst 3.0's SOSS path: assign_wcs, bkg_subtract (SOSS uses a reference background, ``bkg``; with
none in the context, as here, the step records SKIPPED), srctype, flat_field, and pathloss
(skipped for a time series, and with no reference); then extract_1d on the calibrated exposure in
DN/s and photom on the extracted spectra, not on the image (:data:`Branch.extra`
``"after_extract"``).  Products: calints (the exposure, not flux calibrated) and x1dints (the
photom-calibrated spectra of orders 1-3, one row per integration).  extract_1d runs jwst's default,
ATOCA decontamination then box sums (:mod:`webbflow.tasks.extract_1d._atoca`), or the plain box
extraction with ``soss_atoca=false``.
"""

from __future__ import annotations

from .calwebb_spec2 import BRANCHES, Branch

# steps jwst's Spec2Pipeline calls on a SOSS exposure that skip themselves (SKIPPED in the products)
SOSS_SKIPPED = ("badpix_selfcal", "msa_flagging", "clean_flicker_noise", "imprint", "bkg_subtract",
                "straylight", "fringe", "pathloss", "barshadow")


def record_skipped_references(model, params, members) -> None:
    """Refuse unreadable ATOCA
    inputs (soss_wave_grid_in, soss_estimate) before anything runs; record the
    ``bkg`` and ``pathloss`` references jwst's skipped steps look up, as it records them.

    jwst's bkg_subtract subtracts a SOSS reference background when the context has one: not
    implemented here, so such an exposure is refused rather than calibrated differently.  pathloss
    skips every SOSS time series (TSOVISIT) and is not implemented for other SOSS exposures.
    """
    from ..errors import UnsupportedModeError, WebbflowError
    from ..refs import get_reference_paths
    from ..tasks.base import _record_ref

    ex = params.get("extract_1d")
    if ex is not None and not ex.skip:  # refused before anything is calibrated or written
        from ..tasks.extract_1d.soss import check_params

        try:
            check_params(ex)
        except UnsupportedModeError as exc:
            raise UnsupportedModeError(f"{model.meta.filename or 'the input'}: {exc}") from None
    found = {}
    for rt in ("bkg", "pathloss"):
        try:
            found[rt] = str(get_reference_paths(model, [rt]).get(rt, "N/A"))
        except WebbflowError:
            found[rt] = "N/A"
        _record_ref(model, rt, found[rt])
    if found["bkg"].upper() != "N/A":
        raise UnsupportedModeError(f"{model.meta.filename or 'the input'}: the SOSS reference background "
                                   f"subtraction ({found['bkg']}) is not implemented")
    if found["pathloss"].upper() != "N/A" and not model.meta.visit.tsovisit:
        raise UnsupportedModeError(f"{model.meta.filename or 'the input'}: the SOSS pathloss correction of a "
                                   "non-TSO exposure is not implemented")

BRANCHES["NIS_SOSS"] = Branch(
    "niriss-soss",
    ("assign_wcs", "srctype", "flat_field"),
    resample=None,
    extract=True,
    marked_skipped=SOSS_SKIPPED,
    notes="NIRISS SOSS: ATOCA decontamination and box extraction of orders 1-3, then photom on the spectra",
    extra={"after_extract": ("photom",), "prepare": record_skipped_references},
)
