"""The DMS association rules, each declared the way jwst's documentation describes it.

A rule says which exposures it accepts (``accepts``), which pool columns must
agree among the members of one association (``same``: one entry per
constraint, each a tuple of columns tried in order, optional ones marked), and
what kind of association it makes. The engine indexes the pool on those keys.

Every rule of jwst 3.0's registry is here, under its jwst name (but for
Asn_Lv3ACQ_Reprocess, which only hands target acquisitions on to the level-3 rules:
``Rule.with_acquisitions``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
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
SPEC2_SCIENCE = frozenset({
    "mir_lrs-fixedslit", "mir_lrs-slitless", "mir_mrs", "mir_wfss", "nis_soss", "nis_wfss", "nrc_tsgrism",
    "nrc_wfss", "nrs_fixedslit", "nrs_ifu", "nrs_msaspec", "nrs_brightobj",
})
TSO_EXP_TYPES = frozenset({"nrc_tsimage", "nrc_tsgrism", "nrs_brightobj"})

# exp_type -> member exposure type for non-science pointings and calibrations
EXPTYPE_MAP = {
    # (NIRSpec's verify image is an acquisition for level 2b, but counts as science for jwst)
    **{t: "target_acquisition" for t in ACQ_EXP_TYPES - {"nrs_verify"}},
    "nrs_image": "engineering", "nrs_lamp": "engineering",
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


def per_integration(row: dict) -> bool:
    """Are this exposure's products per integration (rateints, calints)? Science pointings
    of time series, AMI and coronagraphy (not the NIRCam detectors without an occulter)."""
    if row.get("pntgtype") != "science" or row.get("exp_type") in ACQ_EXP_TYPES:
        return False
    et = value(row, "exp_type")
    if et in ("nrc_coron", "mir_4qpm", "mir_lyot"):
        if et == "nrc_coron" and row.get("subarray") == "full":
            pupil, det = row.get("pupil"), row.get("detector")
            if (pupil == "maskbar" and det in ("nrca1", "nrca2", "nrca3")) or (
                    pupil == "maskrnd" and det in ("nrca1", "nrca3", "nrca4")):
                return False
        return True
    return et == "nis_ami" or row.get("tsovisit") == "t" or et in TSO_EXP_TYPES


@dataclass(frozen=True)
class Key:
    """Members must share the first given value of ``sources`` (absent counts as a value
    of its own, unless ``required``, where a row without it is refused). ``get`` computes
    the value instead, when it is not a plain column."""

    name: str
    sources: tuple[str, ...]
    required: bool = True
    get: Callable[[dict], str | None] | None = None

    def of(self, row: dict):
        return self.get(row) if self.get is not None else value(row, *self.sources)


_DIRECT_IMAGE_CANDIDATE = re.compile(r"\[\('c\d{4}', 'direct_image'\)\]")


def target_of(row: dict) -> str | None:
    """The target a row counts for: 000 for a direct-image candidate, else its TARGETID."""
    if _DIRECT_IMAGE_CANDIDATE.fullmatch(row.get("asn_candidate", "")):
        return "000"
    return value(row, "targetid")


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
    candidate_types: tuple[str, ...] | None = None  # only for candidates of these types
    not_candidate_types: tuple[str, ...] = ()        # never for candidates of these types
    min_members: int = 1                              # fewer members: no association
    product: Callable | None = None                   # product name, when not the level's default
    # rows that join the associations they match, never opening one: True (match on every
    # key) or the names of the keys to match on
    joins: Callable[[dict], bool | tuple[str, ...]] | None = None
    finalize: Callable | None = None                  # last check/completion of an association: False drops it
    special: bool = False  # level 2: backgrounds, PSFs, acquisitions are this association's science
    joiners_open: bool = False  # a joining row met first opens the association (jwst: PSFs in coronagraphy)
    never_ints: bool = False    # members are always per-exposure products (rate, cal)
    any_candidate: bool = False  # level 2: valid in any candidate, not just observations (WFSS parallels)

    def key(self, row: dict) -> tuple | None:
        """The row's values of the rule's constraint keys (None: a required one is missing)."""
        out = []
        for k in self.same:
            v = k.of(row)
            if v is None and k.required:
                return None
            out.append(v)
        return tuple(out)
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
TARGET = Key("target", ("targetid",), get=target_of)
EXP_TYPE = Key("exp_type", ("exp_type",))
VISITYPE = Key("wfsvisit", ("visitype",), required=False)

_WFSC = re.compile(r".*wfsc.*")


def _mode_allowed(row: dict) -> bool:
    """Exposures no level-2b mode takes: NIRSpec with the opaque filter, NIRCam grism
    time series on NRCBLONG, wavefront-sensing visits."""
    return not (
        (value(row, "detector") == "nirspec" and value(row, "filter") == "opaque")
        or (value(row, "detector") == "nrcblong" and value(row, "exp_type") == "nrc_tsgrism")
        or re.fullmatch(r".+wfsc.+", value(row, "visitype") or "")
    )


# NIRSpec fixed-slit light paths that reach each detector: (slit, grating, filter) -> detectors,
# where slit "a" stands for every A slit
_NRS_FS_PATHS = {
    ("a", "prism", "clear"): "nrs1", ("a", "g395h", "f290lp"): "nrs1 nrs2",
    ("a", "g235h", "f170lp"): "nrs1 nrs2", ("a", "g140h", "f100lp"): "nrs1 nrs2",
    ("a", "g140h", "f070lp"): "nrs1", ("a", "g395m", "f290lp"): "nrs1", ("a", "g235m", "f170lp"): "nrs1",
    ("a", "g140m", "f100lp"): "nrs1", ("a", "g140m", "f070lp"): "nrs1",
    ("s200b1", "prism", "clear"): "nrs2", ("s200b1", "g395h", "f290lp"): "nrs2",
    ("s200b1", "g235h", "f170lp"): "nrs2", ("s200b1", "g140h", "f100lp"): "nrs2",
    ("s200b1", "g140h", "f070lp"): "nrs1 nrs2", ("s200b1", "g395m", "f290lp"): "nrs2",
    ("s200b1", "g235m", "f170lp"): "nrs2", ("s200b1", "g140m", "f100lp"): "nrs2",
    ("s200b1", "g140m", "f070lp"): "nrs1 nrs2",
}
# NIRSpec IFU: (grating, filter) -> detectors the spectra reach
_NRS_IFU_PATHS = {
    ("prism", "clear"): "nrs1", ("g140m", "f070lp"): "nrs1", ("g140m", "f100lp"): "nrs1",
    ("g235m", "f170lp"): "nrs1", ("g395m", "f290lp"): "nrs1", ("g140h", "f070lp"): "nrs1",
    ("g140h", "f100lp"): "nrs1 nrs2", ("g235h", "f170lp"): "nrs1 nrs2", ("g395h", "f290lp"): "nrs1 nrs2",
}
NIS_SOSS_UNCALIBRATED = frozenset({"f277w"})


def nrs_fs_on_detector(row: dict) -> bool:
    """Does this fixed-slit setting put light on the exposure's detector?"""
    det, filt, grat, slit = (value(row, c) for c in ("detector", "filter", "grating", "fxd_slit"))
    if None in (det, filt, grat, slit):
        return False
    return det in _NRS_FS_PATHS.get(("s200b1" if slit == "s200b1" else "a", grat, filt), "").split()


def nrs_ifu_on_detector(row: dict) -> bool:
    """Does this IFU setting put light on the exposure's detector? (True for non-IFU exposures)"""
    if value(row, "exp_type") != "nrs_ifu":
        return True
    det, filt, grat = (value(row, c) for c in ("detector", "filter", "grating"))
    if None in (det, filt, grat):
        return False
    return det in _NRS_IFU_PATHS.get((grat, filt), "").split()


def soss_calibrated(row: dict) -> bool:
    """NIRISS SOSS with a filter that has calibrations (True for other exposures)."""
    if value(row, "exp_type") != "nis_soss":
        return True
    return value(row, "filter") not in (None, *NIS_SOSS_UNCALIBRATED)


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


def _wfsc_visit(row) -> bool:
    return bool(re.fullmatch(r".+wfsc.+", value(row, "visitype") or ""))


def _lv2_wfsc(row):
    return (value(row, "exp_type") in IMAGE2_SCIENCE and exposure_type(row) in ("science", "psf")
            and _wfsc_visit(row)
            and not (value(row, "dms_note") == "wfsc_los_jitter" and value(row, "exp_type") == "nrc_image"))


def _lv3_wfscmb(row):
    return (value(row, "exp_type") in IMAGE3_SCIENCE and value(row, "patttype") == "wfsc"
            and value(row, "dms_note") != "wfsc_los_jitter" and value(row, "is_imprt") is None)


def _wfscmb_product(asn, base: str) -> str:
    """Combined wavefront image: ``<level-3 name>-<detector>_{suffix}-<activity>``."""
    row = asn.rows[0]
    return f"{base}-{value(row, 'detector')}_{{suffix}}-{value(row, 'act_id'):0>2s}".lower()


def _closest_direct(science: dict, directs: list[dict]) -> dict:
    """The direct image taken next after the science exposure (by EXPSPCIN), else the first."""
    closest = directs[0]
    try:
        sci = int(value(science, "expspcin"))
    except (TypeError, ValueError):
        return closest
    best = 9999
    for d in directs:
        try:
            diff = int(value(d, "expspcin")) - sci
        except (TypeError, ValueError):
            continue
        if 0 < diff < best:
            best, closest = diff, d
    return closest


def _wfss_catalog(asn, choose=_closest_direct) -> bool:
    """A WFSS spectrum needs a direct image: its level-3 mosaic, source catalogue and
    segmentation map become members (no direct image, no association)."""
    if not asn.joined:
        return False
    direct = choose(asn.rows[0], asn.joined)
    asn.joined = []  # the direct images are replaced by their level-3 products
    if value(direct, "instrume") == "miri":
        elems = [v for v in [direct.get("filter")] if v is not None]
    else:
        elems = [v for v in (value(direct, "filter", "band"), value(direct, "pupil", "grating")) if v]
    opt = "-".join(sorted(elems, key=str.lower)) or "clear"
    root = asn._level3_name(opt)
    asn.extra_members = [
        {"expname": f"{root}_i2d.fits", "exptype": "direct_image"},
        {"expname": f"{root}_cat.ecsv", "exptype": "sourcecat"},
        {"expname": f"{root}_segm.fits", "exptype": "segmap"},
    ]
    return True


def _lv2_wfss(grism_type: str, image_type: str, keys: tuple[Key, ...]) -> dict:
    return dict(
        accepts=lambda r: value(r, "exp_type") == grism_type and exposure_type(r) == "science",
        joins=lambda r: value(r, "exp_type") == image_type and exposure_type(r) == "science",
        same=(PROGRAM, IS_TSO, Key("target", ("targetid",), get=target_of), INSTRUMENT, *keys),
        single_science=True, finalize=_wfss_catalog,
    )


def _lv3_wfss(grism_type: str, grisms: tuple[str, ...] | None, grism_col: str, other_col: str | None):
    def accepts(r):
        return (value(r, "exp_type") == grism_type and value(r, "is_imprt") is None
                and (grisms is None or value(r, grism_col) in grisms))
    keys = [Key("opt_elem", (grism_col,))]
    if other_col:
        keys.append(Key("opt_elem2", (other_col,)))
    return dict(accepts=accepts, same=(PROGRAM, IS_TSO, INSTRUMENT, TARGET, EXP_TYPE, *keys),
                with_acquisitions=True)


def _lv2_image_tso(row):
    return (value(row, "exp_type") in IMAGE2_SCIENCE and is_tso(row) and _mode_allowed(row)
            and exposure_type(row) in ("science", "psf"))


def _lv2_spec_tso(row):
    et = value(row, "exp_type")
    return (
        et in SPEC2_SCIENCE - {"nrs_msaspec", "nrs_fixedslit", "mir_lrs-slitless", "mir_lrs-fixedslit"}
        and is_tso(row) and _mode_allowed(row) and exposure_type(row) in ("science", "psf")
        and not (et == "nrc_tsgrism" and value(row, "pupil") == "clear")
        and not (et == "nrs_brightobj" and not nrs_fs_on_detector(row))
        and soss_calibrated(row)
    )


_DHS_SUBARRAYS = frozenset({"sub260stripe4_dhs", "sub41stripe1_dhs", "sub82stripe2_dhs", "sub164stripe4_dhs"})


def _lv3_tso(row):
    et = value(row, "exp_type")
    return (
        is_tso(row) and et is not None and value(row, "is_imprt") is None
        and et not in ("mir_mrs", "mir_flatmrs", "nrs_autowave", "nrs_ifu")
        and not (et == "nrc_tsgrism" and (value(row, "pupil") in ("clear", "gdhs0", "gdhs60")
                                          or value(row, "detector") == "nrcblong"))
        and value(row, "subarray") not in _DHS_SUBARRAYS
        and not (et == "nis_soss" and (value(row, "nints") == "1" or not soss_calibrated(row)))
        and not (et == "nrs_brightobj" and not nrs_fs_on_detector(row))
    )


_NOD_PATTERNS = ("2-point-nod", "4-point-nod", "along-slit-nod")
_LV2SPEC_TYPES = SPEC2_SCIENCE - {"nis_wfss", "nrc_wfss", "nrs_fixedslit", "nrs_msaspec", "mir_lrs-slitless",
                                  "mir_lrs-fixedslit"}
_MODE_NAMES = ("program", "is_tso", *(k.name for k in MODE))


def _lv2_spec_common(row):
    return (value(row, "exp_type") in _LV2SPEC_TYPES and not is_tso(row) and _mode_allowed(row)
            and value(row, "patttype") not in _NOD_PATTERNS and nrs_ifu_on_detector(row))


def _lv2_spec(row):
    return _lv2_spec_common(row) and exposure_type(row) in ("science", "psf")


def _lv2_spec_joins(row):
    """Backgrounds join on the mode; imprints also on the mosaic tile."""
    if not _lv2_spec_common(row):
        return None
    kind = exposure_type(row)
    if kind == "background":
        return _MODE_NAMES
    if kind == "imprint":
        return (*_MODE_NAMES, "mostilno")
    return None


def prune_imprints(asn) -> bool:
    """Keep the imprints that fit the science: of the science's kind (background or not),
    of its target when any is, and of its dither position when there are more imprints than science."""
    science = [r for r in asn.rows if asn.member_type(r) == "science"]
    is_bkg = any(r.get("bkgdtarg") == "t" for r in science)
    imprints = [r for r in asn.joined if exposure_type(r) == "imprint" and "targetid" in r and "bkgdtarg" in r]
    check = [r for r in imprints if (r.get("bkgdtarg") == "t") == is_bkg]
    targets = {r.get("targetid") for r in science if "targetid" in r and "bkgdtarg" in r}
    matching = [r for r in check if r["targetid"] in targets]
    drop = []
    if matching:
        drop = [r for r in check if r not in matching]
        check = matching
    if 1 <= len(science) < len(check):
        keep = {id(i) for s in science if "dithptin" in s for i in check
                if "dithptin" in i and i["dithptin"] == s["dithptin"]}
        if keep:
            drop += [r for r in check if id(r) not in keep]
    asn.joined = [r for r in asn.joined if all(r is not d for d in drop)]
    return True


_LRS = ("mir_lrs-slitless", "mir_lrs-fixedslit")


def _lrs_science(row):
    return value(row, "exp_type") in _LRS and exposure_type(row) in ("science", "psf")


def _lrs_joins(row):
    """An LRS background joins on the mode; the target-acquisition confirmation on the observation."""
    if value(row, "exp_type") in _LRS and exposure_type(row) == "background" and not is_tso(row):
        return _MODE_NAMES
    if value(row, "exp_type") == "mir_taconfirm":
        return ("program", "is_tso", "obs_id")
    return None


def _noopt_product(asn, base: str) -> str:
    """MRS products cover every channel and band: no optical element in the name."""
    return f"jw{asn.program}-{asn.acid}_{asn.target}_{'-'.join(asn.found('instrument'))}".lower()


def _lv3_mrs(row):
    return (value(row, "exp_type") == "mir_mrs" and not is_tso(row) and value(row, "is_imprt") is None
            and exposure_type(row) != "background")


def _lv3_mrs_joins(row):
    if (value(row, "exp_type") == "mir_mrs" and not is_tso(row) and value(row, "is_imprt") is None
            and exposure_type(row) == "background"):
        return ("program", "is_tso", "instrument", "exp_type")
    return None


def _is_special(row):
    return value(row, "bkgdtarg", "is_psf") is not None


def _lv2_image_special(row):
    return (value(row, "exp_type") in IMAGE2_SCIENCE and _is_special(row) and _mode_allowed(row)
            and exposure_type(row) != "imprint")


def _lv2_spec_special(row):
    return (value(row, "exp_type") in SPEC2_SCIENCE and _is_special(row) and _mode_allowed(row)
            and nrs_ifu_on_detector(row) and exposure_type(row) != "imprint")


def _lv2_spec_special_joins(row):
    if (value(row, "exp_type") in SPEC2_SCIENCE and _is_special(row) and _mode_allowed(row)
            and nrs_ifu_on_detector(row) and exposure_type(row) == "imprint"):
        return (*_MODE_NAMES, "mostilno")
    return None


def nrc_coron_on_detector(row: dict) -> bool:
    """Full-frame NIRCam coronagraphy: the bar mask's target falls on NRCA4, the round masks' on NRCA2."""
    det, sub, pupil = (value(row, c) for c in ("detector", "subarray", "pupil"))
    if None in (det, sub, pupil):
        return False
    if sub != "full":
        return True
    return not ((pupil == "maskbar" and det in ("nrca1", "nrca2", "nrca3"))
                or (pupil == "maskrnd" and det in ("nrca1", "nrca3", "nrca4")))


def _coron(exp_types, *extra):
    def ok(row):
        return (value(row, "exp_type") in exp_types and value(row, "bkgdtarg") is None
                and value(row, "is_imprt") is None and all(f(row) for f in extra))

    def accepts(row):
        return ok(row) and exposure_type(row) == "science"

    def joins(row):
        # PSF references join whatever target the science is of
        if ok(row) and exposure_type(row) == "psf":
            return ("program", "is_tso", "instrument", "opt_elem", "opt_elem2", "fxd_slit", "subarray", "exp_type")
        return None

    return dict(accepts=accepts, joins=joins, same=(PROGRAM, IS_TSO, INSTRUMENT, *OPTICAL_PATH, EXP_TYPE, TARGET),
                with_acquisitions=True, joiners_open=True,
                finalize=lambda asn: any(exposure_type(r) == "psf" for r in asn.joined))


def _int(row, *cols):
    try:
        return int(value(row, *cols))
    except (TypeError, ValueError):
        return None


def nod_overlap(science: dict, other: dict) -> bool:
    """Would ``other`` (another nod of the same slit) see the science source? Then it
    cannot be its background. NIRSpec fixed slit and MOS only."""
    et = value(science, "exp_type")
    if et not in ("nrs_fixedslit", "nrs_msaspec"):
        return False
    if str(science.get("targetid")) != str(other.get("targetid")):
        return True
    numdthpt = _int(science, "numdthpt") or 0
    pn, bn = _int(science, "patt_num"), _int(other, "patt_num")
    sub = _int(science, "subpxpts") if _int(science, "subpxpts") is not None else _int(science, "subpxpns")
    bsub = _int(other, "subpxpts") if _int(other, "subpxpts") is not None else _int(other, "subpxpns")
    if None in (pn, bn, sub, bsub) or 0 in (sub, bsub):
        return et == "nrs_fixedslit"
    sci_pos, bkg_pos = (pn - 1) // sub, (bn - 1) // bsub
    if sci_pos == bkg_pos:
        return True
    if et == "nrs_msaspec":
        return False
    # the long slit's 5-point nods overlap their neighbours
    return value(science, "fxd_slit") == "s1600a1" and numdthpt // sub == 5 and abs(sci_pos - bkg_pos) <= 1


def make_nod_asns(asn) -> list:
    """One association per science nod: the other nods that do not overlap it are its
    backgrounds, and every non-science member is kept."""
    from .engine import Association

    members = asn.member_rows()
    science = [r for r in members if asn.member_type(r) == "science"]
    others = [r for r in members if asn.member_type(r) != "science"]
    out = []
    for sci in science:
        bkgs = [o for o in science if o is not sci and not nod_overlap(sci, o)]
        kinds = {id(sci): "science", **{id(b): "background" for b in bkgs},
                 **{id(o): asn.member_type(o) for o in others}}
        out.append(Association(asn.rule, asn.ruleset, asn.acid, asn.ctype, asn.pool_name, rows=[sci],
                               joined=bkgs + others, version_id=asn.version_id, kinds=kinds,
                               opened_by=asn.opener()))
    return out


def _nrs_fs(row):
    return value(row, "exp_type") == "nrs_fixedslit" and _mode_allowed(row) and nrs_fs_on_detector(row)


_SUBPX = Key("subpxpts", ("subpxpns", "subpxpts"))


def _source_product(asn, base: str) -> str:
    """Per-source spectra: the source id is left for the pipeline to fill in."""
    sub = "-".join(asn.found("subarray"))
    sub = "" if sub in ("", "full") else "-" + sub
    slits = "-".join(sorted({v for n in ("fxd_slit", "fxd_slit2") for v in asn.found(n)}, key=str.lower))
    slit = f"-{slits}" if slits else ""
    return (f"jw{asn.program}-{asn.acid}_{{source_id}}_{'-'.join(asn.found('instrument'))}_"
            f"{asn.opt_element()}{slit}{sub}").lower()


def _nrs_fs_product(asn, base: str) -> str:
    """Fixed-slit spectra: source id and slit name are left for the pipeline to fill in."""
    sub = "-".join(asn.found("subarray"))
    sub = "" if sub in ("", "full") else "-" + sub
    return (f"jw{asn.program}-{asn.acid}_{asn.target}-{{source_id}}_{'-'.join(asn.found('instrument'))}_"
            f"{asn.opt_element()}-{{slit_name}}{sub}").lower()


def _a_slits(row):
    """The two S200A slits count as one for grouping."""
    s = value(row, "fxd_slit")
    return "s200a" if s in ("s200a1", "s200a2") else s


_OPTICAL_PATH_FS = (
    Key("opt_elem", ("filter",), required=False),
    Key("opt_elem2", ("pupil", "grating"), required=False),
    Key("slit_group", ("fxd_slit",), required=False, get=_a_slits),
    Key("subarray", ("subarray",)),
)


def _lv3_nrs_fs_any(row):
    return (value(row, "exp_type") in ("nrs_autoflat", "nrs_autowave", "nrs_fixedslit") and not is_tso(row)
            and nrs_fs_on_detector(row) and value(row, "is_imprt") is None)


def _lv3_nrs_fs(row):
    return _lv3_nrs_fs_any(row) and exposure_type(row) != "background"


def _lv3_nrs_fs_joins(row):
    """Background exposures join whatever target the science is of."""
    if _lv3_nrs_fs_any(row) and exposure_type(row) == "background":
        return ("program", "is_tso", "instrument", "opt_elem", "opt_elem2", "slit_group", "subarray")
    return None


def _lv3_msa(row):
    et = value(row, "exp_type")
    return (not is_tso(row) and value(row, "is_imprt") is None
            and (et in ("nrs_autoflat", "nrs_autowave") or (et == "nrs_msaspec" and value(row, "msametfl") is not None)))


def _lv3_spec_aux(row):
    return (value(row, "bkgdtarg") == "t" and not is_tso(row) and value(row, "is_imprt") is None
            and value(row, "exp_type") in ("mir_lrs-fixedslit", "nrs_fixedslit"))


def _lv3_ifu_background(row):
    return (value(row, "bkgdtarg") == "t" and not is_tso(row) and value(row, "is_imprt") is None
            and value(row, "exp_type") == "nrs_ifu" and nrs_ifu_on_detector(row))


def _nrs_ifu_nod(row):
    return (value(row, "exp_type") == "nrs_ifu" and nrs_ifu_on_detector(row) and _mode_allowed(row)
            and value(row, "patttype") in ("2-point-nod", "4-point-nod"))


def _ifu_nods(asn):
    prune_imprints(asn)
    return make_nod_asns(asn)


def _lv3_nrs_ifu(row):
    return (value(row, "exp_type") in ("nrs_autowave", "nrs_ifu") and nrs_ifu_on_detector(row)
            and not is_tso(row) and value(row, "is_imprt") is None)


def _lv3_image(row):
    return (value(row, "exp_type") in IMAGE3_SCIENCE
            and value(row, "bkgdtarg") is None and not is_tso(row)
            and value(row, "is_imprt") is None
            and not _WFSC.fullmatch(value(row, "visitype") or ""))



# --- the rules added for the remaining modes: lamps, LRS slit nods, WFSS parallels,
#     background images and MRS cubes, coronagraphy as images, SOSS spectra

def _lv2_image_joins(row):
    """Background images join the science image of the same mode."""
    if (value(row, "exp_type") in IMAGE2_SCIENCE and not is_tso(row) and _mode_allowed(row)
            and exposure_type(row) == "background"):
        return _MODE_NAMES
    return None


# NIRSpec calibration lamps that light each grating's fixed-slit spectra (on both detectors)
_NRS_FS_LAMPS = {
    "prism": ("line4", "flat5", "test"),
    "g395h": ("flat3", "line3"), "g395m": ("flat3", "line3"),
    "g235h": ("flat2", "line2"), "g235m": ("flat2", "line2"),
    "g140h": ("flat1", "ref", "line1", "flat4"), "g140m": ("flat1", "line1", "flat4"),
}


def nrslamp_on_detector(row: dict) -> bool:
    """Does a NIRSpec lamp exposure put light on its detector? MSA: always (it depends on
    the open shutters); IFU: both detectors for G235H/G395H and G140H (not NRS2 with
    FLAT4), NRS1 only for the medium gratings and the prism; fixed slit: the lamps of the
    grating, on either detector."""
    det, grating, opmode = value(row, "detector"), value(row, "grating"), value(row, "opmode")
    if None in (det, grating, opmode):
        return False
    if opmode == "msaspec":
        return True
    lamp = value(row, "lamp")
    if lamp is None:
        return False
    if opmode == "ifu":
        if grating in ("g395h", "g235h"):
            return True
        if grating in ("g395m", "g235m", "g140m", "prism"):
            return det == "nrs1"
        return grating == "g140h" and not (det == "nrs2" and lamp == "flat4")
    if opmode == "fixedslit":
        return det in ("nrs1", "nrs2") and lamp in _NRS_FS_LAMPS.get(grating, ())
    return False


def _nrs_lamp_image(row):
    """A NIRSpec lamp seen through the mirror (the image mode, when OPMODE says so)."""
    return (value(row, "exp_type") == "nrs_lamp" and value(row, "grating") == "mirror"
            and value(row, "opmode") in (None, "image"))


def _nrs_lamp_spectral(row):
    """A NIRSpec lamp, auto-flat or auto-wave spectrum behind the opaque filter, with a lamp
    lit, through a grating, on a detector it reaches; MSA ones need their shutter file."""
    opmode, lamp = value(row, "opmode"), value(row, "lamp")
    return (value(row, "exp_type") in ("nrs_autoflat", "nrs_autowave", "nrs_lamp")
            and value(row, "filter") == "opaque" and nrslamp_on_detector(row)
            and (opmode != "msaspec" or value(row, "msametfl") is not None)
            and lamp not in (None, "nolamp") and value(row, "grating") != "mirror"
            and opmode != "grating-only")


def _lrs_slit_nod(row):
    return (value(row, "exp_type") == "mir_lrs-fixedslit" and value(row, "patttype") == "along-slit-nod"
            and value(row, "patt_num") is not None)


def _lrs_nod_joins(row):
    """The target-acquisition confirmation image joins the nods of its program."""
    return ("program", "is_tso") if value(row, "exp_type") == "mir_taconfirm" else None


def _lrs_nod_asns(asn) -> list:
    """One association per science nod of the slit: the nods at another position along the
    slit (another PATT_NUM) are its backgrounds, the confirmation image is kept. The first
    nod's association lists its members in pool order (as jwst meets them); each other one
    starts with its nod, then the backgrounds taken after it, those taken before, and the
    confirmation image last (the order jwst's reprocessing adds them). The backgrounds are
    all at one position: the first background's."""
    from .engine import Association

    members = asn.member_rows()
    if asn.positions:
        members.sort(key=lambda r: asn.positions.get(id(r), 0))
    science = [r for r in members if exposure_type(r) == "science" and _lrs_slit_nod(r)]
    out = []
    for n, sci in enumerate(science):
        here = value(sci, "patt_num")
        keep = [r for r in members if r is sci or not _lrs_slit_nod(r) or here not in value(r, "patt_num")]
        kinds = {id(r): ("science" if r is sci else "background" if _lrs_slit_nod(r) else asn.member_type(r))
                 for r in keep}
        if n > 0:
            at = members.index(sci)
            nods = [r for r in keep if r is not sci and _lrs_slit_nod(r)]
            after = [r for r in nods if members.index(r) > at]
            before = [r for r in nods if members.index(r) < at]
            keep = [sci, *after, *before, *(r for r in keep if not _lrs_slit_nod(r))]
        # the first background fixes the position the others must share (jwst's constraint
        # takes the first value it matches)
        first = next((value(r, "patt_num") for r in keep if r is not sci and _lrs_slit_nod(r)), None)
        keep = [r for r in keep if r is sci or not _lrs_slit_nod(r) or value(r, "patt_num") == first]
        out.append(Association(asn.rule, asn.ruleset, asn.acid, asn.ctype, asn.pool_name, rows=keep,
                               version_id=asn.version_id, kinds=kinds, opened_by=asn.opener()))
    return out


def _long_wave_direct(science: dict, directs: list[dict]) -> dict:
    """Pure-parallel WFSS: the long-wavelength direct image (NIRCam), else the first one."""
    return next((d for d in directs if "long" in d["filename"]), directs[0])


def _lv2_wfss_parallel(row):
    return (value(row, "exp_type") in ("nis_wfss", "nrc_wfss", "mir_wfss") and exposure_type(row) == "science"
            and bool(_DIRECT_IMAGE_CANDIDATE.fullmatch(row.get("asn_candidate", ""))))


def _lv2_wfss_parallel_joins(row):
    if (value(row, "exp_type") in ("nis_image", "nrc_image", "mir_image") and exposure_type(row) == "science"
            and _DIRECT_IMAGE_CANDIDATE.fullmatch(row.get("asn_candidate", ""))):
        return True
    return None


def _lv3_image_background(row):
    return (value(row, "exp_type") in IMAGE3_SCIENCE and value(row, "bkgdtarg") is not None
            and not is_tso(row) and value(row, "is_imprt") is None
            and not _WFSC.fullmatch(value(row, "visitype") or ""))


def _lv3_mrs_background(row):
    """MRS exposures of a background target: BKGDTARG must be T (other values, such as Y, do
    not count here, where any value makes a background image)."""
    return (value(row, "exp_type") == "mir_mrs" and value(row, "bkgdtarg") == "t"
            and not is_tso(row) and value(row, "is_imprt") is None)


def _lv3_coron_image(row):
    """Full-frame short-wave NIRCam coronagraphy, science only (no backgrounds, no PSFs)."""
    return (value(row, "exp_type") == "nrc_coron" and value(row, "bkgdtarg") is None
            and value(row, "is_psf") is None and value(row, "is_imprt") is None
            and value(row, "channel") == "short" and value(row, "subarray") == "full")


def _coron_image_product(asn, base: str) -> str:
    return f"{base}-image3"


def _lv3_slitless(row):
    """Single-object slitless spectra (NIRISS SOSS) taken without a nod pattern, not TSO."""
    return (value(row, "exp_type") == "nis_soss" and not is_tso(row) and value(row, "patttype") is None
            and value(row, "is_imprt") is None)


def _lv3_spectral_target(row):
    """Nodded single-target spectra: MIRI LRS fixed slit or NIRISS SOSS, not TSO."""
    return (value(row, "exp_type") in ("mir_lrs-fixedslit", "nis_soss") and not is_tso(row)
            and value(row, "patttype") in _NOD_PATTERNS and value(row, "is_imprt") is None)


def _nod_backgrounds(asn) -> bool:
    """With two or more nods, each nod's extracted spectrum (x1d) is a background for the others."""
    science = [r for r in asn.member_rows() if asn.member_type(r) == "science"]
    if len(science) < 2:
        return True
    asn.extra_members = [
        {"expname": re.sub(r"_[a-z0-9]+$", "", Path(r["filename"]).name.rsplit(".", 1)[0]) + "_x1d.fits",
         "exptype": "background", "exposerr": r.get("exposerr"), "asn_candidate": r["asn_candidate"]}
        for r in science
    ]
    return True


RULES: tuple[Rule, ...] = (
    Rule(
        "Asn_Lv2CoronAsRate", 2, "image2",
        lambda r: (value(r, "exp_type") == "nrc_coron" and value(r, "subarray") == "full"
                   and nrc_coron_on_detector(r) and _mode_allowed(r) and exposure_type(r) in ("science", "psf")),
        same=(PROGRAM, IS_TSO, *MODE), single_science=True, never_ints=True,
        description="Level-2b full-frame NIRCam coronagraphy also calibrated as a plain rate image.",
    ),
    Rule(
        "Asn_Lv2FGS", 2, "image2",
        lambda r: (value(r, "exp_type") in ("fgs_image", "fgs_focus") and exposure_type(r) in ("science", "psf")
                   and not re.fullmatch(r".+wfsc.+", value(r, "visitype") or "")),
        same=(PROGRAM, IS_TSO), single_science=True,
        description="Level-2b FGS image: one science exposure (not wavefront sensing).",
    ),
    Rule(
        "Asn_Lv2Image", 2, "image2", _lv2_image_science,
        same=(PROGRAM, IS_TSO, *MODE), single_science=True, joins=_lv2_image_joins, joiners_open=True,
        description="Level-2b non-TSO science image: one science exposure with its background images (calwebb_image2).",
    ),
    Rule(
        "Asn_Lv2ImageNonScience", 2, "image2", _lv2_image_nonscience,
        same=(PROGRAM, IS_TSO), single_science=True, special=True,
        description="Level-2b non-science image such as a target acquisition: one exposure.",
    ),
    Rule(
        "Asn_Lv2ImageSpecial", 2, "image2", _lv2_image_special,
        same=(PROGRAM, IS_TSO, *MODE), single_science=True, special=True,
        description="Level-2b background or PSF image, calibrated as its own science exposure.",
    ),
    Rule(
        "Asn_Lv2ImageTSO", 2, "tso-image2", _lv2_image_tso,
        same=(PROGRAM, IS_TSO, *MODE), single_science=True,
        description="Level-2b time-series image: one science exposure (calwebb_tso-image2).",
    ),
    Rule(
        "Asn_Lv2MIRLRSFixedSlitNod", 2, "spec2", lambda r: _lrs_slit_nod(r) and exposure_type(r) == "science",
        same=(PROGRAM, IS_TSO), joins=_lrs_nod_joins, joiners_open=True, finalize=_lrs_nod_asns,
        not_candidate_types=("background",),
        description="Level-2b MIRI LRS slit nods: one association per nod, the nods at other positions "
                    "along the slit its backgrounds, with the target-acquisition confirmation.",
    ),
    Rule(
        "Asn_Lv2NRSFSS", 2, "spec2", lambda r: _nrs_fs(r) and exposure_type(r) == "science",
        same=(PROGRAM, IS_TSO, *MODE, Key("expspcin", ("expspcin",)), Key("nods", ("numdthpt",)), _SUBPX),
        joins=lambda r: _MODE_NAMES if _nrs_fs(r) and exposure_type(r) != "science" else None,
        finalize=make_nod_asns, joiners_open=True,
        description="Level-2b NIRSpec fixed-slit nods: one association per nod, the other nods its backgrounds.",
    ),
    Rule(
        "Asn_Lv2NRSIFUNod", 2, "spec2", _nrs_ifu_nod,
        same=(PROGRAM, IS_TSO, *MODE, Key("patttype", ("patttype",)), Key("mosaic_tile", ("mostilno",))),
        finalize=_ifu_nods,
        description="Level-2b NIRSpec IFU nods: one association per nod, the other nods its backgrounds, with imprints.",
    ),
    Rule(
        "Asn_Lv2NRSLAMPImage", 2, "image2", _nrs_lamp_image, same=(PROGRAM, IS_TSO), single_science=True,
        special=True,
        description="Level-2b NIRSpec lamp image (through the mirror): one exposure, calibrated as science.",
    ),
    Rule(
        "Asn_Lv2NRSLAMPSpectral", 2, "nrslamp-spec2", _nrs_lamp_spectral, same=(PROGRAM, IS_TSO),
        single_science=True, special=True,
        description="Level-2b NIRSpec lamp spectrum (calwebb_nrslamp-spec2): one exposure on a detector its "
                    "grating and lamp reach.",
    ),
    Rule(
        "Asn_Lv2NRSMSA", 2, "spec2",
        lambda r: value(r, "exp_type") == "nrs_msaspec" and _mode_allowed(r),
        same=(PROGRAM, IS_TSO, *MODE, Key("msametfl", ("msametfl",)), Key("expspcin", ("expspcin",))),
        finalize=make_nod_asns,
        description="Level-2b NIRSpec MOS nods: one association per nod, the other nods its backgrounds.",
    ),
    Rule(
        "Asn_Lv2Spec", 2, "spec2", _lv2_spec,
        same=(PROGRAM, IS_TSO, *MODE, Key("mostilno", ("mostilno",))), single_science=True,
        joins=_lv2_spec_joins, finalize=prune_imprints, joiners_open=True,
        description="Level-2b spectrum (non-TSO, no nods): one science exposure with its backgrounds and imprints.",
    ),
    Rule(
        "Asn_Lv2SpecImprint", 2, "spec2",
        lambda r: (value(r, "exp_type") in SPEC2_SCIENCE and value(r, "is_imprt") is not None
                   and _mode_allowed(r) and nrs_ifu_on_detector(r)),
        same=(PROGRAM, IS_TSO, *MODE), single_science=True, special=True,
        description="Level-2b imprint (leakcal) exposure, calibrated as its own science exposure.",
    ),
    Rule(
        "Asn_Lv2SpecSpecial", 2, "spec2", _lv2_spec_special,
        same=(PROGRAM, IS_TSO, *MODE, Key("mostilno", ("mostilno",))), single_science=True, special=True,
        joins=_lv2_spec_special_joins, finalize=prune_imprints,
        description="Level-2b background or PSF spectrum as its own science exposure, with its imprints.",
    ),
    Rule(
        "Asn_Lv2SpecTSO", 2, "tso-spec2", _lv2_spec_tso,
        same=(PROGRAM, IS_TSO, *MODE), single_science=True,
        description="Level-2b time-series spectrum: one science exposure (calwebb_tso-spec2).",
    ),
    Rule(
        "Asn_Lv2WFSC", 2, "image2", _lv2_wfsc,
        same=(PROGRAM, IS_TSO, Key("wfsc", ("visitype",))), single_science=True,
        description="Level-2b wavefront sensing and control image: one science exposure (no LOS-jitter NIRCam images).",
    ),
    Rule("Asn_Lv2WFSSMIR", 2, "spec2", **_lv2_wfss("mir_wfss", "mir_image", (Key("detector", ("detector",)),)),
         description="Level-2b MIRI WFSS: one grism exposure, with the catalogue of its direct image."),
    Rule("Asn_Lv2WFSSNIS", 2, "spec2", **_lv2_wfss("nis_wfss", "nis_image", (
        Key("pupil", ("pupil",)), Key("subarray", ("subarray",)))),
         description="Level-2b NIRISS WFSS: one grism exposure, with the catalogue of its direct image."),
    Rule("Asn_Lv2WFSSNRC", 2, "spec2", **_lv2_wfss("nrc_wfss", "nrc_image", (Key("detector", ("detector",)),)),
         description="Level-2b NIRCam WFSS: one grism exposure, with the catalogue of its direct image."),
    Rule(
        "Asn_Lv2WFSSParallel", 2, "spec2", _lv2_wfss_parallel, same=(PROGRAM, IS_TSO, TARGET, INSTRUMENT),
        joins=_lv2_wfss_parallel_joins, single_science=True, any_candidate=True,
        finalize=lambda asn: _wfss_catalog(asn, _long_wave_direct),
        description="Level-2b pure-parallel WFSS (a direct-image candidate, no target): one grism exposure, "
                    "with the catalogue of its direct image.",
    ),
    Rule(
        "Asn_MIRLRSTAConfirm", 2, "spec2", _lrs_science,
        same=(PROGRAM, IS_TSO, *MODE, Key("obs_id", ("obs_id",), required=False)), single_science=True,
        joins=_lrs_joins,
        description="Level-2b MIRI LRS: one science exposure with its backgrounds and target-acquisition confirmation.",
    ),
    Rule("Asn_Lv3AMI", 3, "ami3", **_coron(("nis_ami",)),
         description="Level-3 NIRISS AMI: science exposures of a target with their PSF references."),
    Rule(
        "Asn_Lv3Image", 3, "image3", _lv3_image,
        same=(PROGRAM, IS_TSO, INSTRUMENT, *OPTICAL_PATH, TARGET, EXP_TYPE, VISITYPE),
        with_acquisitions=True,
        description="Level-3 science image, non-TSO, non-WFS&C: a mosaic per optical path and target.",
    ),
    Rule(
        "Asn_Lv3ImageBackground", 3, "image3", _lv3_image_background,
        same=(PROGRAM, IS_TSO, INSTRUMENT, *OPTICAL_PATH, TARGET, EXP_TYPE, VISITYPE),
        with_acquisitions=True, special=True,
        description="Level-3 background images (non-TSO, non-WFS&C): a background target's images combined as science.",
    ),
    Rule(
        "Asn_Lv3ImageMosaic", 3, "image3", _lv3_image,
        same=(PROGRAM, IS_TSO, INSTRUMENT, *OPTICAL_PATH, EXP_TYPE, VISITYPE),
        with_acquisitions=True, candidate_types=("mosaic",),
        description="Level-3 image mosaic: the tiles of a mosaic candidate in one product, whatever their target.",
    ),
    Rule("Asn_Lv3MIRCoron", 3, "coron3", **_coron(("mir_lyot", "mir_4qpm"))),
    Rule(
        "Asn_Lv3MIRMRS", 3, "spec3", _lv3_mrs,
        same=(PROGRAM, IS_TSO, INSTRUMENT, TARGET, EXP_TYPE), joins=_lv3_mrs_joins,
        with_acquisitions=True, product=_noopt_product,
        description="Level-3 MIRI MRS: every channel and band of a target in one cube, with its backgrounds.",
    ),
    Rule("Asn_Lv3MIRMRSBackground", 3, "spec3", _lv3_mrs_background,
         same=(PROGRAM, IS_TSO, INSTRUMENT, TARGET, EXP_TYPE), with_acquisitions=True, special=True,
         product=_noopt_product,
         description="Level-3 MIRI MRS background exposures (non-TSO), combined as science in one cube."),
    Rule("Asn_Lv3NRSIFU", 3, "spec3", _lv3_nrs_ifu,
         same=(PROGRAM, IS_TSO, INSTRUMENT, TARGET, Key("patttype", ("patttype",)), Key("opt_elem", ("grating",))),
         with_acquisitions=True,
         description="Level-3 NIRSpec IFU: a target's exposures through one grating, in one cube."),
    Rule("Asn_Lv3NRSIFUBackground", 3, "spec3", _lv3_ifu_background,
         same=(PROGRAM, IS_TSO, INSTRUMENT, TARGET, Key("opt_elem", ("grating",))), with_acquisitions=True,
         special=True,
         description="Level-3 NIRSpec IFU background exposures, combined as science."),
    Rule("Asn_Lv3NRSFSS", 3, "spec3", _lv3_nrs_fs,
         same=(PROGRAM, IS_TSO, INSTRUMENT, *_OPTICAL_PATH_FS, TARGET), with_acquisitions=True,
         product=_nrs_fs_product, joins=_lv3_nrs_fs_joins, joiners_open=True,
         description="Level-3 NIRSpec fixed slit: a target's spectra through one light path (per slit later)."),
    Rule("Asn_Lv3SpecAux", 3, "spec3", _lv3_spec_aux,
         same=(PROGRAM, IS_TSO, INSTRUMENT, *OPTICAL_PATH, TARGET), with_acquisitions=True, special=True,
         description="Level-3 background spectra of a fixed-slit target, combined as science."),
    Rule("Asn_Lv3SpectralSource", 3, "spec3", _lv3_msa,
         same=(PROGRAM, IS_TSO, INSTRUMENT, *OPTICAL_PATH, TARGET), with_acquisitions=True,
         product=_source_product,
         description="Level-3 NIRSpec MOS: the spectra of every source, one product each (named later)."),
    Rule("Asn_Lv3NRCCoron", 3, "coron3", **_coron(("nrc_coron",), nrc_coron_on_detector),
         description="Level-3 NIRCam coronagraphy: science exposures of a target with their PSF references."),
    Rule("Asn_Lv3NRCCoronImage", 3, "image3", _lv3_coron_image,
         same=(PROGRAM, IS_TSO, INSTRUMENT, *OPTICAL_PATH, EXP_TYPE, TARGET), with_acquisitions=True,
         never_ints=True, product=_coron_image_product,
         description="Level-3 NIRCam full-frame short-wave coronagraphy handled as plain imaging: science only."),
    Rule("Asn_Lv3SlitlessSpectral", 3, "spec3", _lv3_slitless,
         same=(PROGRAM, IS_TSO, INSTRUMENT, *OPTICAL_PATH, TARGET), with_acquisitions=True,
         description="Level-3 single-object slitless spectra (NIRISS SOSS) without nods, non-TSO."),
    Rule("Asn_Lv3SpectralTarget", 3, "spec3", _lv3_spectral_target,
         same=(PROGRAM, IS_TSO, INSTRUMENT, *OPTICAL_PATH, TARGET, Key("patttype_spectarg", ("patttype",))),
         with_acquisitions=True, finalize=_nod_backgrounds,
         description="Level-3 nodded single-target spectra (MIRI LRS slit, NIRISS SOSS), non-TSO: "
                     "each nod's spectrum is also a background."),
    Rule(
        "Asn_Lv3TSO", 3, "tso3", _lv3_tso,
        same=(PROGRAM, IS_TSO, INSTRUMENT, *OPTICAL_PATH, TARGET, EXP_TYPE),
        with_acquisitions=True, candidate_types=("observation",),
        description="Level-3 time series: the exposures of one observation, one target and light path.",
    ),
    Rule(
        "Asn_Lv3WFSCMB", 3, "wfs-image3", _lv3_wfscmb,
        same=(PROGRAM, IS_TSO, INSTRUMENT, *OPTICAL_PATH, TARGET, EXP_TYPE,
              Key("detector", ("detector",)), Key("obs_id", ("obs_id",)), Key("act_id", ("act_id",))),
        not_candidate_types=("group",), min_members=2, product=_wfscmb_product,
        description="Level-3 wavefront sensing: a pair of images of one activity on one detector, combined.",
    ),
    Rule("Asn_Lv3WFSSMIR", 3, "spec3", **_lv3_wfss("mir_wfss", ("p750l",), "filter", None),
         description="Level-3 MIRI WFSS: the P750L grism exposures of a target."),
    Rule("Asn_Lv3WFSSNIS", 3, "spec3", **_lv3_wfss("nis_wfss", ("gr150r", "gr150c"), "filter", "pupil"),
         description="Level-3 NIRISS WFSS: the exposures of one grism and blocking filter on a target."),
    Rule("Asn_Lv3WFSSNRC", 3, "spec3", **_lv3_wfss("nrc_wfss", ("grismr", "grismc"), "pupil", "filter"),
         description="Level-3 NIRCam WFSS: the exposures of one grism and filter on a target."),
)
