"""spec2 branches of the slitless grisms (added to :data:`flows.calwebb_spec2.BRANCHES`).

NRC_WFSS follows jwst 3.0's grism path: assign_wcs, bkg_subtract (the WFSS ``bkg`` reference,
scaled with the sources masked: it runs with or without background members), flat_field on the
whole dispersed image *before* extract_2d, extract_2d (one cutout per catalogue source and
order), srctype, photom per order; no resampled product; extract_1d on the cutouts, written as
jwst 3.0's flat WFSS table (tasks/extract_1d/wfss.py).  The level-2 association's ``sourcecat``,
``segmap`` and ``direct_image`` members are recorded as jwst records them (file names only:
SCATFILE, SEGMFILE, DIRIMAGE; extract_2d and bkg_subtract find the catalogue beside the
exposure).  Its cal and x1d are compared whole with jwst's on a simulated WFSS observation
(tests/test_wfss_sim.py).

NRC_TSGRISM (GRISMR): assign_wcs, flat_field, extract_2d (the source at the reference point),
srctype, photom of the cutout; calints and x1dints (jwst records bkg_subtract as SKIPPED: no
background members and no reference background for this mode).  Its steps are checked against
jwst one by one (tests/test_grism.py), and its calints and x1dints whole against strun's on a
simulated grism time series (tests/test_grism_tso_sim.py).

NIS_WFSS takes the same steps as NRC_WFSS (NIRISS's grism WCS turns the traces by the filter
wheel's FWCPOS - fwcpos_ref; photom reads the NisWfssPhotomModel rows by grism, blocking filter
and order); its cal and x1d are compared whole with jwst's on a simulated NIRISS WFSS observation
(tests/test_niriss_wfss_sim.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

from .calwebb_spec2 import BRANCHES, Branch

log = logging.getLogger("webbflow.flows")

# steps jwst's Spec2Pipeline calls on a WFSS exposure which skip themselves (SKIPPED in the cal product)
WFSS_SKIPPED = ("badpix_selfcal", "msa_flagging", "clean_flicker_noise", "imprint", "straylight", "fringe",
                "pathloss", "barshadow", "wfss_contam")


def wire_wfss_members(model, params, members) -> None:
    """The direct image's catalogue, segmentation map and i2d, as jwst's Spec2Pipeline records them."""
    for kind, attr in (("sourcecat", "source_catalog"), ("segmap", "segmentation_map"), ("direct_image", "direct_image")):
        paths = members.get(kind) or []
        if paths:
            setattr(model.meta, attr, Path(paths[0]).name)
            log.info("Using %s %s", kind, Path(paths[0]).name)
    if not model.meta.source_catalog:
        from ..errors import InputFileError

        raise InputFileError(model.meta.filename or "<in memory>",
                             "is a WFSS exposure with no source catalogue: the association needs a sourcecat member")


LEVEL3_SUFFIXES = ("_cat.ecsv", "_segm.fits", "_i2d.fits")  # the direct image's products a WFSS spec2 names


def make_level3_members(asn_path, folder: Path, out: Path, others: dict, steps=None, config=None) -> dict:
    """A level-2 association's members that are level-3 products (a WFSS exposure's source
    catalogue, segmentation map and direct image), made first when they are not there yet: by the
    level-3 association of the same folder whose product they belong to (jwst's image3 on the
    direct images, made from their raw files as needed), into ``out``.  Returns ``others`` with
    each member's path where it now is (the association's folder, else ``out``)."""
    from ..errors import InputFileError, WebbflowError
    from .association import call_flow, load_asn, process_association

    def where(p: Path) -> Path:
        return p if p.exists() or not (Path(out) / p.name).exists() else Path(out) / p.name

    missing = [p for kinds in others.values() for ps in kinds.values() for p in ps if not where(p).exists()]
    roots = {p.name[: -len(s)] for p in missing for s in LEVEL3_SUFFIXES if p.name.endswith(s)}
    for a in sorted(Path(folder).glob("*_asn.json")) if roots else ():
        if a.resolve() == Path(asn_path).resolve():
            continue
        try:
            lv3, _ = load_asn(a)
        except WebbflowError:
            continue
        if lv3.level != 3 or not roots & {p.name for p in lv3.products}:
            continue
        log.info("Making %s first: %s", ", ".join(sorted(roots & {p.name for p in lv3.products})), a.name)
        res = call_flow(process_association, str(a), output_dir=str(out), steps=steps, config=config)
        if res.failed:
            raise InputFileError(a, f"the level-3 association that makes {Path(asn_path).name}'s "
                                    f"{', '.join(p.name for p in missing)} failed")
    return {i: {k: [where(p) for p in ps] for k, ps in kinds.items()} for i, kinds in others.items()}


BRANCHES["NRC_WFSS"] = Branch(
    "nircam-wfss",
    ("assign_wcs", "bkg_subtract", "flat_field", "extract_2d", "srctype", "photom"),
    resample=None,
    extract=True,
    marked_skipped=WFSS_SKIPPED,
    notes="NIRCam wide-field slitless: flat_field before extract_2d, one cutout per source and order",
    extra={"prepare": wire_wfss_members},
)

BRANCHES["NIS_WFSS"] = Branch(
    "niriss-wfss",
    BRANCHES["NRC_WFSS"].calibrate,
    resample=None,
    extract=True,
    marked_skipped=WFSS_SKIPPED,
    notes="NIRISS wide-field slitless: as NIRCam's; the grism in the filter wheel, the blocking filter in the pupil",
    extra={"prepare": wire_wfss_members},
)

BRANCHES["NRC_TSGRISM"] = Branch(
    "nircam-tsgrism",
    ("assign_wcs", "flat_field", "extract_2d", "srctype", "photom"),
    resample=None,
    extract=True,
    marked_skipped=("bkg_subtract",) + WFSS_SKIPPED,
    notes="NIRCam grism time series: the source at the aperture's reference point, one cutout per integration",
)
