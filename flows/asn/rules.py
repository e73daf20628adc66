"""The DMS association rules, each declared the way jwst's documentation describes it.

A rule says which exposures it accepts (``accepts``), which pool columns must
agree among the members of one association (``same``: one entry per
constraint, each a tuple of columns tried in order, optional ones marked), and
what kind of association it makes. The engine indexes the pool on those keys.

Covered so far: level-2b and level-3 imaging (science and non-science images).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from .pool import value

ACQ_EXP_TYPES = frozenset({
    "mir_tacq", "mir_taconfirm", "nis_taconfirm", "nis_tacq", "nrc_taconfirm", "nrc_tacq",
    "nrs_confirm", "nrs_msata", "nrs_taconfirm", "nrs_tacq", "nrs_taslit", "nrs_verify",
    "nrs_wata",
})
IMAGE2_SCIENCE = frozenset({
    "fgs_image", "mir_4qpm", "mir_image", "mir_lyot", "nis_ami", "nis_image", "nrc_coron",
    "nrc_image", "nrs_mimf", "nrc_tsimage",
})
IMAGE2_NONSCIENCE = frozenset({"mir_coroncal", "nis_focus", "nrc_focus", "nrs_focus", "nrs_image"}) | ACQ_EXP_TYPES
IMAGE3_SCIENCE = frozenset({"nrc_image", "mir_image", "nis_image", "fgs_image", "nrs_mimf"})
TSO_EXP_TYPES = frozenset({"nrc_tsimage", "nrc_tsgrism", "nrs_brightobj"})

# exp_type -> member exposure type for non-science pointings and calibrations
EXPTYPE_MAP = {
    **{t: "target_acquisition" for t in ACQ_EXP_TYPES},
    "mir_darkall": "dark", "mir_darkimg": "dark", "mir_darkmrs": "dark", "nis_dark": "dark",
    "nrc_dark": "dark", "nrs_dark": "dark",
    "mir_flatimage": "flat", "mir_flatmrs": "flat", "mir_flatimage-ext": "flat",
    "mir_flatmrs-ext": "flat", "nrc_flat": "flat",
    "nis_focus": "engineering", "nis_lamp": "engineering", "nrc_focus": "engineering",
    "nrc_led": "engineering",
    "nrs_autoflat": "autoflat", "nrs_autowave": "autowave",
}


def exposure_type(row: dict) -> str:
    """What an exposure is to an association: science, background, psf, imprint,
    target_acquisition, ... (a non-science pointing type wins)."""
    pntg = value(row, "pntgtype")
    if pntg is not None and pntg != "science":
        return pntg
    kind = EXPTYPE_MAP.get(value(row, "exp_type"), "science")
    if kind != "science":
        return kind
    for special, column in (("psf", "is_psf"), ("imprint", "is_imprt"), ("background", "bkgdtarg")):
        if value(row, column) is not None:
            return special
    return "science"


def is_tso(row: dict) -> bool:
    """A time-series exposure: a science pointing in a TSO visit or of a TSO exp_type."""
    return value(row, "pntgtype") == "science" and (
        value(row, "tsovisit") == "t" or value(row, "exp_type") in TSO_EXP_TYPES
    )


@dataclass(frozen=True)
class Key:
    """Members must share the first given value of ``sources`` (absent counts as a value
    of its own, unless ``required``, where a row without it is refused)."""

    name: str
    sources: tuple[str, ...]
    required: bool = True


@dataclass(frozen=True)
class Rule:
    name: str
    level: int                       # 2 (level-2b) or 3
    asn_type: str
    accepts: Callable[[dict], bool]
    same: tuple[Key, ...]
    single_science: bool = False     # level 2: one science exposure per association
    description: str = ""
    with_acquisitions: bool = False  # level 3: the observation's target acquisitions join
    extra: dict = field(default_factory=dict)


# Keys shared by the DMS bases
PROGRAM = Key("program", ("program",))
IS_TSO = Key("is_tso", ("tsovisit",), required=False)
INSTRUMENT = Key("instrument", ("instrume",))
MODE = (
    INSTRUMENT,
    Key("detector", ("detector",)),
    Key("opt_elem", ("filter", "band")),
    Key("opt_elem2", ("pupil", "grating"), required=False),
    Key("fxd_slit", ("fxd_slit",), required=False),
    Key("subarray", ("subarray",), required=False),
    Key("channel", ("channel",), required=False),
)
OPTICAL_PATH = (
    Key("opt_elem", ("filter",), required=False),
    Key("opt_elem2", ("pupil", "grating"), required=False),
    Key("fxd_slit", ("fxd_slit",), required=False),
    Key("subarray", ("subarray",)),
)
TARGET = Key("target", ("targetid",))
EXP_TYPE = Key("exp_type", ("exp_type",))
VISITYPE = Key("wfsvisit", ("visitype",), required=False)

_WFSC = re.compile(r".*wfsc.*")


def _mode_allowed(row: dict) -> bool:
    """Exposures that no level-2b mode takes (NIRSpec with the opaque filter)."""
    return not (value(row, "detector") == "nirspec" and value(row, "filter") == "opaque")


def _lv2_image_science(row):
    return (value(row, "exp_type") in IMAGE2_SCIENCE and not is_tso(row) and _mode_allowed(row)
            and exposure_type(row) in ("science", "psf"))


def _lv2_image_nonscience(row):
    et = value(row, "exp_type")
    return (
        exposure_type(row) == "target_acquisition"
        or et in IMAGE2_NONSCIENCE
        or (et == "nrs_msaspec" and value(row, "msastate") == "primarypark_allopen"
            and value(row, "grating") == "mirror")
    )


def _lv3_image(row):
    return (value(row, "exp_type") in IMAGE3_SCIENCE
            and value(row, "bkgdtarg") is None and not is_tso(row)
            and value(row, "is_imprt") is None
            and not _WFSC.fullmatch(value(row, "visitype") or ""))


RULES: tuple[Rule, ...] = (
    Rule(
        "Asn_Lv2Image", 2, "image2", _lv2_image_science,
        same=(PROGRAM, IS_TSO, *MODE), single_science=True,
        description="Level-2b non-TSO science image: one science exposure (calwebb_image2).",
    ),
    Rule(
        "Asn_Lv2ImageNonScience", 2, "image2", _lv2_image_nonscience,
        same=(PROGRAM, IS_TSO), single_science=True,
        description="Level-2b non-science image such as a target acquisition: one exposure.",
    ),
    Rule(
        "Asn_Lv3Image", 3, "image3", _lv3_image,
        same=(PROGRAM, IS_TSO, INSTRUMENT, *OPTICAL_PATH, TARGET, EXP_TYPE, VISITYPE),
        with_acquisitions=True,
        description="Level-3 science image, non-TSO, non-WFS&C: a mosaic per optical path and target.",
    ),
)
