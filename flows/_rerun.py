"""An unchanged rerun of a whole association, recognised without opening a model or asking CRDS.

An untracked association run (no Prefect API, see ``stage.prefect_tracking``) that ends without
failures leaves a record, ``<output_dir>/.webbflow-cache/<association>.association.json``, of what
its products rest on:

- the association file and the other associations of its folder (level-2 ones name backgrounds and
  the pool recorded in the products), by checksum;
- every file the run takes as input now (each member's uncal, rate or cal, backgrounds), by checksum;
- the step parameters, the config file (checksum), ``stage3`` and ``allow_partial``, webbflow's code;
- the CRDS set-up: the ``CRDS_*`` variables, the files of the cache's ``config`` and ``mappings``
  folders (name, size, modification time), which decide the context and every selection, and the
  reference files the stages' keys rested on (size, modification time);
- the products, and which stages each member reused.

A rerun that finds all of these unchanged, and every product in place, recomputes nothing: it reports
the products as reused in a fraction of a second, instead of opening every exposure and asking CRDS
for its references again (most of an unchanged rerun before).  Anything different, or a CRDS server
whose operational context may have moved (``CRDS_SERVER_URL`` without a pinned ``CRDS_CONTEXT``),
falls through to the stage-by-stage cache of ``flows.association``, which redoes only what changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

VERSION = 1
_CRDS_VARIABLES = ("CRDS_PATH", "CRDS_SERVER_URL", "CRDS_CONTEXT", "CRDS_OBSERVATORY", "CRDS_MODE", "CRDS_MAPPATH",
                   "CRDS_REFPATH", "CRDS_CFGPATH", "CRDS_ALLOW_BAD_RULES", "CRDS_ALLOW_BAD_REFERENCES",
                   "CRDS_ALLOW_BAD_USEAFTER", "CRDS_ALLOW_BAD_PARKEY_VALUES")


def record_path(asn_path, output_dir) -> Path:
    name = Path(asn_path).name.removesuffix(".json")
    return Path(output_dir) / ".webbflow-cache" / f"{name}.association.json"


def _tree_state(folder: Path) -> str:
    """A digest of the names, sizes and modification times of the files under ``folder``."""
    h = hashlib.sha256()
    if folder.is_dir():
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            for f in sorted(files):
                p = os.path.join(root, f)
                try:
                    st = os.stat(p)
                except OSError:
                    continue
                h.update(f"{os.path.relpath(p, folder)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def crds_state() -> dict | None:
    """What decides CRDS' selections here, or None when it cannot be told without asking a server."""
    # the variables that change what crds selects; crds, once imported, writes its defaults into the
    # environment ("None", "auto", "false"), which count as unset
    env = {k: os.environ[k] for k in _CRDS_VARIABLES
           if os.environ.get(k, "").strip() not in ("", "None", "none", "false", "False", "auto")}
    url = env.get("CRDS_SERVER_URL", "").strip()
    remote = bool(url) and "serverless" not in url and "server-less" not in url
    if remote and not env.get("CRDS_CONTEXT", "").strip().endswith(".pmap"):
        return None  # the server's operational context may have changed since
    cache = Path(env.get("CRDS_PATH") or Path.home() / "crds_cache")
    config = Path(env.get("CRDS_CFGPATH") or cache / "config")
    mappings = Path(env.get("CRDS_MAPPATH") or cache / "mappings")
    return {"env": env, "config": _tree_state(config), "mappings": _tree_state(mappings)}


def _stat(p: str) -> list | None:
    try:
        st = os.stat(p)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _inputs(asn_path) -> dict[str, str] | None:
    """The files an association run reads before it makes anything, by checksum (None: a member is missing)."""
    from ..errors import InputFileError
    from .association import earliest_available, file_checksum, level2_products, load_asn, member_path

    try:
        asn, folder = load_asn(asn_path)
        paths = {Path(asn_path).resolve()}
        paths.update(f.resolve() for f in folder.glob("*_asn.json"))
        for prod in asn.products:
            for m in prod.members:
                paths.add(earliest_available(member_path(asn_path, folder, m.expname)))
        if asn.level == 3:
            for _info, backgrounds in level2_products(folder).values():
                paths.update(earliest_available(b) for b in backgrounds)
        return {str(p): file_checksum(p) for p in sorted(paths)}
    except (InputFileError, OSError):
        return None


def _settings(output_dir, steps, config, stage3, allow_partial) -> dict | None:
    from .association import code_version, file_checksum

    try:
        cfg = file_checksum(Path(config)) if config else None
    except OSError:
        return None
    return {"version": VERSION, "output_dir": str(Path(output_dir).resolve()),
            "steps": json.loads(json.dumps(steps or {}, sort_keys=True, default=str)),
            "config": [str(config), cfg] if config else None, "stage3": bool(stage3),
            "allow_partial": bool(allow_partial), "code": code_version()}


def lookup(asn_path, output_dir, steps=None, config=None, stage3=True, allow_partial=False):
    """The AssociationResult of an unchanged rerun (every product reused), or None when anything changed."""
    from .association import AssociationResult, MemberResult
    from .stage import Reused

    try:
        rec = json.loads(record_path(asn_path, output_dir).read_text())
    except (OSError, ValueError):
        return None
    # cheap checks first, the checksums of the inputs last
    if rec.get("settings") != _settings(output_dir, steps, config, stage3, allow_partial):
        return None
    crds = crds_state()
    if crds is None or rec.get("crds") != crds:
        return None
    if any(_stat(p) != st for p, st in (rec.get("references") or {}).items()):
        return None
    products = [p for m in rec["members"] + rec["backgrounds"] for p in m["products"]]
    products += [p for s in rec["stage3"].values() for p in s["written"]]
    if not all(os.path.exists(p) for p in products):
        return None
    if rec.get("inputs") != _inputs(asn_path):
        return None
    def member(m: dict) -> MemberResult:
        return MemberResult(member=m["member"], ok=True, cal=m["cal"], products=[Reused(p) for p in m["products"]],
                            reused=list(m["stages"]), references=list(m["references"]), stages=list(m["stages"]))

    stage3_res = {name: {"written": [Reused(p) for p in s["written"]], "catalog": s["catalog"], "reused": True}
                  for name, s in rec["stage3"].items()}
    return AssociationResult(asn=str(asn_path), members=[member(m) for m in rec["members"]], stage3=stage3_res,
                             backgrounds=[member(m) for m in rec["backgrounds"]])


def store(res, asn_path, output_dir, steps=None, config=None, stage3=True, allow_partial=False) -> None:
    """Record a run that ended without failures, for :func:`lookup`; a run that cannot be described
    (a missing input, a CRDS server's moving context) leaves no record, and an old one is removed."""
    from ..models.atomic import atomic_write_text

    path = record_path(asn_path, output_dir)
    settings = _settings(output_dir, steps, config, stage3, allow_partial)
    crds = crds_state()
    inputs = _inputs(asn_path)
    if res.failed or any(not m.ok for m in res.backgrounds) or settings is None or crds is None or inputs is None:
        path.unlink(missing_ok=True)
        return
    everyone = list(res.members) + list(res.backgrounds)
    refs = sorted({p for m in everyone for p in m.references})
    rec = {
        "settings": settings,
        "crds": crds,
        "references": {p: _stat(p) for p in refs},
        "inputs": inputs,
        "members": [_member(m) for m in res.members],
        "backgrounds": [_member(m) for m in res.backgrounds],
        "stage3": {name: {"written": [str(p) for p in s.get("written", [])],
                          "catalog": str(s["catalog"]) if s.get("catalog") else None}
                   for name, s in res.stage3.items()},
    }
    atomic_write_text(path, json.dumps(rec, indent=1))


def _member(m) -> dict:
    return {"member": m.member, "cal": m.cal, "products": [str(p) for p in m.products], "stages": list(m.stages),
            "references": sorted(set(m.references))}
