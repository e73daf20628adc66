"""JWST product file names: ``<root>_<suffix>.fits``."""

from __future__ import annotations

import re
from pathlib import Path

# suffixes that jwst strips to find an exposure's root name
KNOWN_SUFFIXES = {
    "uncal", "ramp", "rate", "rateints", "cal", "calints", "i2d", "s2d", "s3d", "x1d", "x1dints",
    "crf", "crfints", "bsub", "bsubints", "trapsfilled", "fitopt", "dark", "refpix", "linearity",
    "dq_init", "dqinit", "saturation", "superbias", "jump", "group_scale", "groupscale", "ipc",
    "firstframe", "lastframe", "reset", "rscd", "emicorr", "gain_scale", "gainscale",
    "charge_migration", "chargemigration", "picture_frame", "pictureframe", "clean_flicker_noise",
    "persistence", "ramp_fit", "rampfit", "dark_current", "darkcurrent", "assign_wcs", "assignwcs",
    "flat_field", "flatfield", "photom", "resample", "cal", "guider_cds", "segm", "cat",
}
# NIRSpec slit steps whose products feed flat_field and barshadow
KNOWN_SUFFIXES |= {"extract_2d", "extract2d", "barshadow"}
# the MOS steps before master_background_mos, whose outputs its products are named from
KNOWN_SUFFIXES |= {"srctype", "msa_flagging", "imprint_subtract"}


def root_of(name: str) -> str:
    stem = Path(name).name
    stem = re.sub(r"\.(fits|asdf)(\.gz)?$", "", stem)
    # strip repeated known suffixes (e.g. _dark_current, _uncal)
    changed = True
    while changed:
        changed = False
        for s in sorted(KNOWN_SUFFIXES, key=len, reverse=True):
            if stem.endswith("_" + s):
                stem = stem[: -(len(s) + 1)]
                changed = True
                break
    return stem


def product_path(output_dir, source_name: str, suffix: str) -> Path:
    return Path(output_dir) / f"{root_of(source_name)}_{suffix}.fits"
