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
   name the one with more members wins (when jwst would call them a subset:
   see ``_membership_relation``). Sequence numbers are then given per
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
from .pool import EMPTY as EMPTY_VALUES, Pool, value
from .rules import IMAGE2_NONSCIENCE, RULES, Rule, exposure_type, per_integration

DEGRADED_OK = "No known degraded exposures in association."
DEGRADED_NOTOK = (
    "One or more members have an error associated with them."
    "\nDetails can be found in the member.exposerr attribute."
)
DISCOVERED_ID = "a3001"
# candidate types whose level-3 associations need exposures from more than one observation
MULTI_OBS_TYPES = ("group", "background", "mosaic")
LEVEL2B_EXPTYPES = IMAGE2_NONSCIENCE | frozenset({
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
    ctype: str                    # observation, mosaic, ..., discovered
    pool_name: str
    rows: list[dict] = field(default_factory=list)
    acquisitions: list[dict] = field(default_factory=list)
    joined: list[dict] = field(default_factory=list)     # rows that only join (backgrounds, PSFs, imprints, ...)
    extra_members: list[dict] = field(default_factory=list)
    positions: dict[int, int] = field(default_factory=dict, repr=False)  # id(row) -> place in the pass
    kinds: dict[int, str] = field(default_factory=dict, repr=False)      # id(row) -> member type, when set
    opened_by: dict | None = field(default=None, repr=False)
    # a joining row met before any of its own rows opened it (rules with joiners_open)
    joiner_opened: bool = True
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

    def product_name(self) -> str:
        if self.rule.level == 2:
            science = [r for r in self.rows if self.member_type(r) == "science"]
            if not science:
                return "undefined"
            # the science file's name, folder kept, without extension and suffix
            path = Path(science[0]["filename"])
            stem = path.name.rsplit(".", 1)[0] if "." in path.name else path.name
            stem = re.sub(r"_[a-z0-9]+$", "", stem) if "_" in stem else stem
            return str(path.parent / stem) if str(path.parent) != "." else stem
        base = self._level3_name()
        return self.rule.product(self, base) if self.rule.product else base

    def found(self, name: str) -> list[str]:
        """The values the members gave to the rule's constraint ``name`` (jwst's found_values)."""
        keys = [k for k in self.rule.same if k.name == name]
        vals: list[str] = []
        for k in keys:
            for r in self.rows:
                v = k.of(r)
                if v is not None and v not in vals:
                    vals.append(v)
        return vals

    def opt_element(self) -> str:
        elems = []
        for name in ("opt_elem", "opt_elem2"):
            vals = sorted(self.found(name), key=str.lower)
            if vals:
                elems.append("-".join(vals))
        elems.sort(key=str.lower)
        return "-".join(elems) or "clear"

    def _level3_name(self, opt: str | None = None) -> str:
        """``jw<program>-<acid>_<target>_<instrument>_<optical elements>[-<slit>][-<subarray>]``."""
        instrument = "-".join(self.found("instrument"))
        opt = self.opt_element() if opt is None else opt
        slits = []
        for name in ("fxd_slit", "fxd_slit2"):
            v = "-".join(sorted(self.found(name), key=str.lower))
            if v and v not in slits:
                slits.append(v)
        slit = "-".join(sorted(slits, key=str.lower))
        sub = "-".join(self.found("subarray"))
        sub = "" if sub in ("", "full") else "-" + sub
        slit = f"-{slit}" if slit else ""
        target = f"t{'-'.join(self.found('target')):0>3s}"
        return f"jw{self.program}-{self.acid}_{target}_{instrument}_{opt}{slit}{sub}".lower()

    @property
    def target(self) -> str:
        if self.rule.level == 2:
            return self.opener().get("targetid")
        return f"t{'-'.join(self.found('target')):0>3s}"

    # -- members --------------------------------------------------------------------------
    def member_type(self, row: dict) -> str:
        if id(row) in self.kinds:
            return self.kinds[id(row)]
        kind = exposure_type(row)
        if self.rule.level == 2 and self.rule.special:
            return "imprint" if kind == "imprint" and row is not self.rows[0] else "science"
        if self.rule.level == 2 and kind == "psf":
            return "science"
        if self.rule.level == 3 and self.rule.special and kind != "target_acquisition":
            return "science"  # auxiliary data (backgrounds) processed as science
        return kind

    def member_name(self, row: dict) -> str:
        fname = row["filename"]
        m = _UNCAL.fullmatch(fname)
        if m is None:
            return fname
        ints = not self.rule.never_ints and per_integration(row)
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
        for row in self.member_rows():
            member = {"expname": self.member_name(row), "exptype": self.member_type(row),
                      "exposerr": row.get("exposerr")}
            if self.rule.level == 3:
                # generated for one candidate, a member carries just that candidate (as in jwst)
                member["asn_candidate"] = row["asn_candidate"]
            out.append(member)
        return out + [dict(m) for m in self.extra_members]

    def opener(self) -> dict:
        """The row that opened the association (jwst takes its level-2 target from it)."""
        if self.opened_by is not None:
            return self.opened_by
        if self.rule.joiners_open and self.joiner_opened and self.joined and self.positions:
            return min(self.rows + self.joined, key=lambda r: self.positions.get(id(r), 0))
        return self.rows[0]

    def member_rows(self) -> list[dict]:
        """Members in jwst's order: rows met after the association opened, in pool order,
        then the ones jwst offers again at the end of its pass: rows met before it opened,
        and acquisitions of an observation the association did not have yet when met."""
        extra = self.joined + self.acquisitions
        if not extra or not self.positions:
            return [*self.rows, *extra]
        pos = self.positions
        main = sorted(self.rows + self.joined, key=lambda r: pos.get(id(r), 0))
        openers = main if self.rule.joiners_open and self.joiner_opened else self.rows
        start = min(pos.get(id(r), 0) for r in openers)
        inline, later = [], []
        for r in main:
            (inline if pos.get(id(r), 0) >= start else later).append(r)
        for a in self.acquisitions:
            p = pos.get(id(a), 0)
            seen_obs = {r.get("obs_num") for r in main if start <= pos.get(id(r), 0) < p}
            (inline if p > start and a.get("obs_num") in seen_obs else later).append(a)
        inline.sort(key=lambda r: pos.get(id(r), 0))
        if self.rule.joiners_open and not self.joiner_opened:
            # the joining rows it missed come back first at the end of jwst's pass, then acquisitions
            acqs = {id(a) for a in self.acquisitions}
            later.sort(key=lambda r: (id(r) in acqs, pos.get(id(r), 0)))
        else:
            later.sort(key=lambda r: pos.get(id(r), 0))
        return inline + later

    def has_science(self) -> bool:
        return any(self.member_type(r) == "science" for r in self.rows)

    def is_valid(self) -> bool:
        """jwst's validity checks: a science member; level 2 only for observation candidates
        (or background ones with a background member); the rule's own check."""
        if not self.has_science() or len(self.rows) < self.rule.min_members:
            return False
        if self.rule.level == 2 and not self.rule.any_candidate and not (
            self.ctype == "observation"
            or (self.ctype == "background" and any(self.member_type(r) == "background" for r in self.member_rows()))
        ):
            return False
        if (self.rule.level == 3 and self.ctype in MULTI_OBS_TYPES
                and len({r.get("obs_num") for r in self.rows + self.joined}) <= 1):
            return False
        return True

    def finish(self) -> list[Association]:
        """The finished associations this one makes: none if invalid, itself, or (a rule's
        finalize returning a list, e.g. nods) several."""
        if not self.is_valid():
            return []
        if self.rule.finalize is None:
            return [self]
        done = self.rule.finalize(self)
        if isinstance(done, list):
            return [a for a in done if a.is_valid()]
        return [self] if done else []

    def membership(self) -> frozenset:
        return frozenset((m["expname"], m["exptype"]) for m in self.members())

    # -- output ---------------------------------------------------------------------------
    def constraints_text(self) -> str:
        lines = []
        for key in self.rule.same:
            vals = list(dict.fromkeys(v for v in map(key.of, self.rows) if v is not None))
            lines.append(f"{key.name}: {'|'.join(vals) if vals else None} (from {', '.join(key.sources)})")
        lines.append(f"asn_candidate: {self.acid}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        members = self.members()
        degraded = DEGRADED_NOTOK if any(m.get("exposerr") is not None and m["exposerr"] not in EMPTY_VALUES for m in members) else DEGRADED_OK
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
def parse_candidates(text: str) -> list[tuple[str, str]]:
    """``"[('o001', 'observation'), ('c1000', 'mosaic')]"`` -> list of (id, type).

    Like jwst, a value that is not such a list (the directive rows of jwst's test pools
    carry their column's name there) puts the row in no candidate."""
    try:
        value_ = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return []
    if isinstance(value_, int):
        return [(str(value_), "unknown")]
    try:
        return [(str(cid), str(ctype)) for cid, ctype in value_]
    except (TypeError, ValueError):
        return []


def _group(rule: Rule, rows: list[dict], acid: str, ctype: str, ruleset: str, pool: Pool,
           version_id: str | None) -> list[tuple[int, Association]]:
    """Sort the rows a rule accepts into associations by the rule's constraint keys; each
    association comes with the position of the row that opened it."""
    if (rule.candidate_types is not None and ctype not in rule.candidate_types) or ctype in rule.not_candidate_types:
        return []
    groups: dict[tuple, list[Association]] = defaultdict(list)
    made: list[Association] = []
    opened: list[int] = []
    joiners: list[tuple[dict, tuple]] = []
    every = tuple(k.name for k in rule.same)
    # associations one of whose optional constraints no member has set yet: as in jwst, such
    # a constraint matches any value, and the first member that has one fixes it
    unset: dict[int, list] = {}
    # the keys of the associations by their required values (never missing): a row without
    # an optional value is compared with these only
    required = tuple(i for i, k in enumerate(rule.same) if k.required)
    by_required: dict[tuple, set] = defaultdict(set)
    wildcards: list[tuple[dict, tuple]] = []
    for pos, row in enumerate(rows):
        joins = rule.joins(row) if rule.joins is not None else None
        if joins:
            joiners.append((row, every if joins is True else joins))
            continue
        if not rule.accepts(row):
            continue
        key = rule.key(row)
        if key is None:
            continue
        if None in key:
            wildcards.append((row, key))
        if rule.single_science:
            hits = []
        elif None in key or unset:
            # a row without an optional value joins every association that matches on the rest
            hits = [a for k in by_required.get(tuple(key[i] for i in required), ()) if _compatible(key, k)
                    for a in groups.get(k, ())]
        else:
            hits = groups.get(key, [])[:]
        if not hits:
            asn = Association(rule, ruleset, acid, ctype, pool.name, version_id=version_id)
            groups[key].append(asn)
            by_required[tuple(key[i] for i in required)].add(key)
            made.append(asn)
            opened.append(pos)
            if None in key:
                unset[id(asn)] = list(key)
            hits = [asn]
        for asn in hits:
            asn.rows.append(row)
            have = unset.get(id(asn))
            if have is not None and any(h is None and v is not None for h, v in zip(have, key)):
                _fix(groups, unset, asn, have, key)
                by_required[tuple(key[i] for i in required)].add(tuple(have))
    if wildcards and rule.level == 3 and rule.with_acquisitions:
        # jwst offers every member again at the end of its pass: a row without an optional value
        # also joins the associations opened after it (listed after the rows they opened with)
        for row, key in wildcards:
            for k in by_required.get(tuple(key[i] for i in required), ()):
                if _compatible(key, k):
                    for asn in groups.get(k, ()):
                        if all(r is not row for r in asn.rows) and all(r is not row for r in asn.joined):
                            asn.joined.append(row)
    by_subset: dict[tuple, dict] = {}
    for row, names in joiners:
        # a joining row matches on the keys it names; a missing optional value matches any
        idx = tuple(i for i, k in enumerate(rule.same) if k.name in names)
        if idx not in by_subset:
            sub: dict[tuple, list] = defaultdict(list)
            for key, asns in groups.items():
                sub[tuple(key[i] for i in idx)].extend(asns)
            by_subset[idx] = sub
        want = tuple(rule.same[i].of(row) for i in idx)
        if any(w is None and rule.same[i].required for w, i in zip(want, idx)):
            continue
        if None in want or unset:
            hits = [a for k, asns in by_subset[idx].items() for a in asns if _compatible(want, k)]
        else:
            hits = by_subset[idx].get(want, ())
        for asn in hits:
            asn.joined.append(row)
    if rule.with_acquisitions and made:
        acqs = [r for r in rows if exposure_type(r) == "target_acquisition"]
        for asn in made:
            obs = {r.get("obs_num") for r in asn.rows + asn.joined}
            prog, tso = asn.rows[0]["program"], value(asn.rows[0], "tsovisit")
            asn.acquisitions = [
                r for r in acqs
                if r.get("obs_num") in obs and r["program"] == prog and value(r, "tsovisit") in (None, tso)
                and value(r, "is_imprt") is None
            ]
    if made and (joiners or wildcards or rule.with_acquisitions):
        positions = {id(r): i for i, r in enumerate(rows)}
        for asn in made:
            asn.positions = positions
        if rule.joiners_open:
            _which_joiner_opened(made, joiners, positions)
            # an association a joining row opened was opened where that row is (this orders it
            # among the others, hence its sequence number)
            opened = [min(positions[id(r)] for r in (*a.rows, *a.joined)) if a.joiner_opened and a.joined else pos
                      for a, pos in zip(made, opened)]
    return list(zip(opened, made))


def _compatible(want: tuple, have: tuple) -> bool:
    """Do two sets of constraint values agree? A missing (optional) value agrees with any."""
    return all(w is None or h is None or w == h for w, h in zip(want, have))


def _fix(groups: dict, unset: dict, asn: Association, have: list, key: tuple) -> None:
    """The first member with a value for an unset constraint fixes it (jwst's force_unique)."""
    old = tuple(have)
    groups[old].remove(asn)
    if not groups[old]:
        del groups[old]
    for i, v in enumerate(key):
        if have[i] is None:
            have[i] = v
    groups[tuple(have)].append(asn)
    if None not in have:
        del unset[id(asn)]


def _which_joiner_opened(made: list[Association], joiners: list[tuple[dict, tuple]], positions: dict) -> None:
    """A joining row met before the rows it joins opens one association only, the one its
    first matching row fills (jwst: a PSF opens a coronagraphy association that takes the
    first target's science; other targets' science opens its own, the PSF joining it later)."""
    first = {id(a): min(positions[id(r)] for r in a.rows) for a in made}
    for asn in made:
        asn.joiner_opened = False
    for row, _ in joiners:
        p = positions[id(row)]
        hits = [a for a in made if any(j is row for j in a.joined)]
        if hits:
            asn = min(hits, key=lambda a: first[id(a)])
            if p < first[id(asn)]:
                asn.joiner_opened = True


def _prune(asns: list[Association]) -> list[Association]:
    """Drop duplicate memberships (keeping the lowest-level candidate) and, of
    associations sharing a product name, keep the one whose members include the other's."""
    ordered = sorted(asns, key=lambda a: a.acid)
    kept: list[Association] = []
    seen: set = set()
    while ordered:
        asn = ordered.pop()
        members = asn.membership()
        if members in seen:
            continue
        seen.add(members)
        kept.append(asn)
    by_product: dict[str, list[Association]] = defaultdict(list)
    for asn in kept:
        by_product[asn.product_name()].append(asn)
    drop = set()
    for same in by_product.values():
        if len(same) < 2:
            continue
        # jwst walks them in candidate order; the larger of a "subset" pair stays and is then
        # compared with the rest in place of the one it was compared as
        same = sorted(same, key=lambda a: a.acid)
        members = {id(a): a.members() for a in same}
        for first in same:
            if id(first) in drop:
                continue
            asn = first
            for entrant in same:
                if entrant is asn or id(entrant) in drop:
                    continue
                relation = _membership_relation(members[id(asn)], members[id(entrant)])
                if relation == "subset":
                    if len(members[id(entrant)]) > len(members[id(asn)]):
                        asn, entrant = entrant, asn
                    drop.add(id(entrant))
                elif relation == "same":
                    drop.add(id(entrant))
    return [a for a in kept if id(a) not in drop]


def _membership_relation(left: list[dict], right: list[dict]) -> str | None:
    """How two products' members compare, as jwst judges it when two associations make
    the same product: "same", "subset" or None (different).

    jwst calls a pair a subset whenever their member counts differ and the only other
    difference is members one of them lacks: no exposure listed twice in either, and
    every exposure they share of the same member type. It does not check that the
    smaller list is inside the larger: a PSF-only overlap (an ami3 and a coron3
    association naming the same files) is enough."""
    diffs = set()
    for product in (left, right):
        names = [m["expname"] for m in product]
        if len(names) != len(set(names)):
            diffs.add("duplicate")
    if len(left) != len(right):
        diffs.add("length")
    unmatched = list(right)
    unaccounted = False
    for member in left:
        for other in unmatched:
            if other["expname"] == member["expname"]:
                if other["exptype"] != member["exptype"]:
                    diffs.add("mismatch")
                unmatched.remove(other)
                break
        else:
            unaccounted = True
    if unaccounted or unmatched:
        diffs.add("unaccounted")
    if not diffs:
        return "same"
    return "subset" if diffs == {"length", "unaccounted"} else None


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
            cands = parsed[text] = parse_candidates(text)
        for cid, ctype in cands:
            by_ctype.setdefault(ctype, {})[cid] = None
            if not rows_of[cid] or rows_of[cid][-1]["filename"] is not row["filename"]:
                # generating for one candidate, a row carries just that candidate (as in jwst)
                rows_of[cid].append({**row, "asn_candidate": f"[('{cid}', '{ctype}')]"})
    order = [(cid, ctype) for ctype, ids in by_ctype.items() for cid in ids]
    if candidate_ids is not None:
        unknown = [want for want in candidate_ids if want not in rows_of]
        if unknown:
            known = ", ".join(cid for cid, _ in order) or "none"
            raise InputFileError(pool.path, f"no candidate {', '.join(map(repr, unknown))} in the pool "
                                            f"(its candidates: {known})")
        order = [(cid, ct) for want in candidate_ids for cid, ct in order if cid == want]

    associations: list[Association] = []

    def run(rows, acid, ctype, ruleset):
        # jwst offers each row to every rule in turn: order what was opened the same way
        made = []
        for irule, rule in enumerate(rules):
            made.extend((pos, irule, asn) for pos, asn in _group(rule, rows, acid, ctype, ruleset, pool, version_id))
        associations.extend(asn for _, _, asn in sorted(made, key=lambda t: t[:2]))

    if candidate_ids is not None or all_candidates:
        for cid, ctype in order:
            run(rows_of[cid], cid, ctype, "candidate")
    if discover:
        run(pool.rows, DISCOVERED_ID, "discovered", "discover")

    # 2. finish: validity, then duplicates, then sequence, level 2 first
    finished: list[Association] = []
    for level in (2, 3):
        asns = [done for a in associations if a.rule.level == level for done in a.finish()]
        asns = _prune(asns)
        _resequence(asns)
        finished.extend(asns)
    return finished


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
