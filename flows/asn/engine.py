"""The association engine: a pool and rules in, finished associations out.

How it works, and why it scales:

1. Each row's ``ASN_CANDIDATE`` list is parsed once and the pool is indexed by
   candidate id (``o001``, ``c1000``, ...).
2. For every candidate, and once over the whole pool for *discovered*
   associations (id ``a3001``), each rule sorts the rows it accepts into groups
   by its constraint keys (a dict lookup per row) instead of offering every row
   to every open association: the work grows with the pool, not with its square.
3. Finishing: associations with no science member are dropped, duplicates
   (same members) keep the lowest-level candidate (observation before
   candidate before discovered), and of associations that share a product
   name the one with more members wins. Sequence numbers are then given per
   candidate and association type, in the order jwst gives them.
"""

from __future__ import annotations

import ast
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ... import __version__ as _webbflow_version
from ...errors import InputFileError
from .pool import Pool, value
from .rules import RULES, Rule, exposure_type, is_tso

DEGRADED_OK = "No known degraded exposures in association."
DEGRADED_NOTOK = (
    "One or more members have an error associated with them."
    "\nDetails can be found in the member.exposerr attribute."
)
DISCOVERED_ID = "a3001"
LEVEL2B_EXPTYPES = frozenset({
    "fgs_image", "mir_4qpm", "mir_image", "mir_lyot", "nis_ami", "nis_image", "nrc_coron",
    "nrc_image", "nrs_mimf", "nrc_tsimage",
    "mir_lrs-fixedslit", "mir_lrs-slitless", "mir_mrs", "mir_wfss", "nis_soss", "nis_wfss",
    "nrc_tsgrism", "nrc_wfss", "nrs_fixedslit", "nrs_ifu", "nrs_msaspec", "nrs_brightobj",
})
_UNCAL = re.compile(r"(?P<path>.+)_uncal(?P<ext>\..+)")


@dataclass
class Association:
    """One association: its rule, candidate, members and (once finished) its sequence."""

    rule: Rule
    ruleset: str                  # "candidate" or "discover"
    acid: str                     # o001, c1000, a3001
    pool_name: str
    rows: list[dict] = field(default_factory=list)
    acquisitions: list[dict] = field(default_factory=list)
    sequence: int = 1
    version_id: str | None = None

    # -- naming ---------------------------------------------------------------------------
    @property
    def program(self) -> str:
        return f"{self.rows[0]['program']:0>5s}"

    @property
    def asn_type(self) -> str:
        return self.rule.asn_type

    @property
    def name(self) -> str:
        stamp = f"_{self.version_id}" if self.version_id else ""
        return f"jw{self.program}-{self.acid}{stamp}_{self.asn_type}_{self.sequence:05d}_asn"

    @property
    def filename(self) -> str:
        return self.name + ".json"

    def _values(self, *sources):
        found = []
        for r in self.rows:
            v = value(r, *sources)
            if v is not None and v not in found:
                found.append(v)
        return found

    def product_name(self) -> str:
        if self.rule.level == 2:
            science = [r for r in self.rows if self.member_type(r) == "science"]
            if not science:
                return "undefined"
            stem = Path(science[0]["filename"]).name
            stem = stem.rsplit(".", 1)[0] if "." in stem else stem
            return re.sub(r"_[a-z0-9]+$", "", stem) if "_" in stem else stem
        target = self.target
        instrument = "-".join(self._values("instrume"))
        elems = []
        for sources in (("filter",), ("pupil", "grating")):
            vals = sorted(self._values(*sources), key=str.lower)
            if vals:
                elems.append("-".join(vals))
        elems.sort(key=str.lower)
        opt = "-".join(elems) or "clear"
        slits = "-".join(sorted(self._values("fxd_slit"), key=str.lower))
        sub = "-".join(self._values("subarray"))
        sub = "" if sub in ("", "full") else "-" + sub
        slit = f"-{slits}" if slits else ""
        return f"jw{self.program}-{self.acid}_{target}_{instrument}_{opt}{slit}{sub}".lower()

    @property
    def target(self) -> str:
        if self.rule.level == 2:
            return self.rows[0]["targetid"]
        tid = "-".join(self._values("targetid"))
        return f"t{tid:0>3s}"

    # -- members --------------------------------------------------------------------------
    def member_type(self, row: dict) -> str:
        kind = exposure_type(row)
        if self.rule.level == 2 and (kind == "psf" or self.rule.name == "Asn_Lv2ImageNonScience"):
            return "science"
        return kind

    def member_name(self, row: dict) -> str:
        fname = row["filename"]
        m = _UNCAL.fullmatch(fname)
        if m is None:
            return fname
        ints = is_tso(row) or value(row, "exp_type") in ("nrc_coron", "mir_4qpm", "mir_lyot", "nis_ami")
        if self.rule.level == 2:
            suffix = "rateints" if ints else "rate"
        else:
            kind = self.member_type(row)
            suffix = "x1d" if kind == "background" else (
                "cal" if value(row, "exp_type") in LEVEL2B_EXPTYPES else "rate")
            suffix += "ints" if ints else ""
        return f"{m['path']}_{suffix}{m['ext']}"

    def members(self) -> list[dict]:
        out = []
        for row in [*self.rows, *self.acquisitions]:
            member = {"expname": self.member_name(row), "exptype": self.member_type(row),
                      "exposerr": row.get("exposerr") or None}
            if self.rule.level == 3:
                member["asn_candidate"] = row["asn_candidate"]
            out.append(member)
        return out

    def has_science(self) -> bool:
        return any(self.member_type(r) == "science" for r in self.rows)

    def membership(self) -> frozenset:
        return frozenset((m["expname"], m["exptype"]) for m in self.members())

    # -- output ---------------------------------------------------------------------------
    def constraints_text(self) -> str:
        lines = []
        for key in self.rule.same:
            vals = self._values(*key.sources)
            lines.append(f"{key.name}: {'|'.join(vals) if vals else None} (from {', '.join(key.sources)})")
        lines.append(f"asn_candidate: {self.acid}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        members = self.members()
        degraded = DEGRADED_NOTOK if any(m["exposerr"] not in (None, "", "null") for m in members) else DEGRADED_OK
        data = {
            "asn_type": self.asn_type,
            "asn_rule": f"{self.ruleset}_{self.rule.name}",
            "version_id": self.version_id,
            "code_version": f"webbflow {_webbflow_version}",
            "degraded_status": degraded,
            "program": self.program,
            "constraints": self.constraints_text(),
            "asn_id": self.acid,
        }
        if self.rule.level == 2:
            data.update(asn_pool=self.pool_name, target=self.target)
        else:
            data.update(target=self.target, asn_pool=self.pool_name)
        data["products"] = [{"name": self.product_name(), "members": members}]
        return data

    def dumps(self) -> str:
        return json.dumps(self.to_dict(), indent=4)


# ---------------------------------------------------------------------------------------
def parse_candidates(text: str, pool: Pool, lineno: int) -> list[tuple[str, str]]:
    """``"[('o001', 'observation'), ('c1000', 'mosaic')]"`` -> list of (id, type)."""
    try:
        value_ = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise InputFileError(pool.path, f"row {lineno}: cannot parse ASN_CANDIDATE {text!r}") from None
    if isinstance(value_, int):
        return [(str(value_), "unknown")]
    try:
        return [(str(cid), str(ctype)) for cid, ctype in value_]
    except (TypeError, ValueError):
        raise InputFileError(pool.path, f"row {lineno}: cannot parse ASN_CANDIDATE {text!r}") from None


def _group(rule: Rule, rows: list[dict], acid: str, ruleset: str, pool: Pool,
           version_id: str | None) -> list[Association]:
    """Sort the rows a rule accepts into associations by the rule's constraint keys."""
    groups: dict[tuple, Association] = {}
    made: list[Association] = []
    for row in rows:
        if not rule.accepts(row):
            continue
        key = []
        for k in rule.same:
            v = value(row, *k.sources)
            if v is None and k.required:
                break
            key.append(v)
        else:
            asn = None if rule.single_science else groups.get(tuple(key))
            if asn is None:
                asn = Association(rule, ruleset, acid, pool.name, version_id=version_id)
                groups[tuple(key)] = asn
                made.append(asn)
            asn.rows.append(row)
    if rule.with_acquisitions and made:
        acqs = [r for r in rows if exposure_type(r) == "target_acquisition"]
        for asn in made:
            obs = {r.get("obs_num") for r in asn.rows}
            prog, tso = asn.rows[0]["program"], value(asn.rows[0], "tsovisit")
            asn.acquisitions = [
                r for r in acqs
                if r.get("obs_num") in obs and r["program"] == prog and value(r, "tsovisit") == tso
                and value(r, "is_imprt") is None
            ]
    return made


def _prune(asns: list[Association]) -> list[Association]:
    """Drop duplicate memberships (keeping the lowest-level candidate) and, of
    associations sharing a product name, keep the one whose members include the other's."""
    ordered = sorted(asns, key=lambda a: a.acid)
    kept: list[Association] = []
    seen: set = set()
    while ordered:
        asn = ordered.pop()
        members = asn.membership()
        if (asn.asn_type, members) in seen:
            continue
        seen.add((asn.asn_type, members))
        kept.append(asn)
    by_product: dict[str, list[Association]] = defaultdict(list)
    for asn in kept:
        by_product[asn.product_name()].append(asn)
    drop = set()
    for same in by_product.values():
        for i, a in enumerate(same):
            for b in same[i + 1:]:
                if id(a) in drop or id(b) in drop:
                    continue
                ma, mb = a.membership(), b.membership()
                if ma <= mb:
                    drop.add(id(a))
                elif mb <= ma:
                    drop.add(id(b))
    return [a for a in kept if id(a) not in drop]


def _resequence(asns: list[Association]) -> None:
    counters: dict[tuple, int] = defaultdict(int)
    for asn in asns:
        counters[asn.acid, asn.asn_type] += 1
        asn.sequence = counters[asn.acid, asn.asn_type]


def make_timestamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dt%H%M%S")


def generate(pool: Pool, rules: tuple[Rule, ...] = RULES, candidate_ids: list[str] | None = None,
             all_candidates: bool = False, discover: bool = False,
             version_id: str | bool | None = None) -> list[Association]:
    """Associations of ``pool`` by ``rules``, as jwst's asn_generate makes them.

    With no mode given (no ``candidate_ids``, ``all_candidates`` or ``discover``), both
    the candidates' and the discovered associations are made, as asn_generate does.
    """
    if version_id is True:
        version_id = make_timestamp()
    if not discover and not all_candidates and candidate_ids is None:
        discover = all_candidates = True

    # 1. index the pool by candidate, in the order jwst meets the candidate types
    by_ctype: dict[str, dict[str, None]] = {}
    rows_of: dict[str, list[dict]] = defaultdict(list)
    parsed: dict[str, list] = {}
    for n, row in enumerate(pool.rows, 1):
        text = row["asn_candidate"]
        cands = parsed.get(text)
        if cands is None:
            cands = parsed[text] = parse_candidates(text, pool, n)
        for cid, ctype in cands:
            by_ctype.setdefault(ctype, {})[cid] = None
            if not rows_of[cid] or rows_of[cid][-1] is not row:
                rows_of[cid].append(row)
    order = [(cid, ctype) for ctype, ids in by_ctype.items() for cid in ids]
    if candidate_ids is not None:
        order = [(cid, ct) for want in candidate_ids for cid, ct in order if cid == want]

    associations: list[Association] = []
    if candidate_ids is not None or all_candidates:
        for cid, _ctype in order:
            for rule in rules:
                associations.extend(_group(rule, rows_of[cid], cid, "candidate", pool, version_id))
    if discover:
        for rule in rules:
            associations.extend(_group(rule, pool.rows, DISCOVERED_ID, "discover", pool, version_id))

    # 2. finish: validity, then duplicates, then sequence, level 2 first
    finished: list[Association] = []
    for level in (2, 3):
        asns = [a for a in associations if a.rule.level == level and a.has_science()]
        if level == 3:
            asns = [a for a in asns if not (a.acid.startswith("c") and _single_obs(a) and _multi_obs_type(a, by_ctype))]
        asns = _prune(asns)
        _resequence(asns)
        finished.extend(asns)
    return finished


def _single_obs(asn: Association) -> bool:
    return len({r.get("obs_num") for r in asn.rows}) <= 1


def _multi_obs_type(asn: Association, by_ctype: dict) -> bool:
    """Group, background and mosaic candidates need exposures from several observations."""
    return any(asn.acid in by_ctype.get(t, {}) for t in ("group", "background", "mosaic"))


def write_associations(asns: list[Association], output_dir) -> list[Path]:
    """Write each association as ``<name>.json`` (atomically) and return the paths."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for asn in asns:
        path = out / asn.filename
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(asn.dumps())
        tmp.replace(path)
        paths.append(path)
    return paths
