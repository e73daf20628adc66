"""Reprocessing when CRDS delivers new reference files.

``reprocess(products, context)`` looks at a folder of products (or a list of
product files) and a CRDS context (by default the newest one: the server's
operational context when a CRDS server is configured, else the newest pmap in
the cache):

1. **What changed.**  For every exposure it reads, from its furthest product
   (``_cal`` over ``_rate``), the context each stage used (the product's
   provenance, else ``CRDS_CTX``) and the reference types each stage used (the
   provenance's references and the required reftypes of the steps that ran,
   else the product's ``R_*`` keywords).  It recomputes CRDS' best references
   for both contexts from the product's metadata, as ``crds bestrefs
   --old-context --new-context`` does, and keeps the reftypes whose choice
   differs.  Reftypes the user overrode are not compared: the override stays.
   When the old context cannot be read (not in the cache, or it now names a
   file marked bad) the references recorded in the product stand for it.
2. **What to redo.**  An exposure is redone from the earliest stage with a
   changed reftype: detector1 (from its ``_uncal`` file, found in ``raw_dirs``,
   the products folder or the associations' folders) then its level-2 stage, or
   that stage alone (from its ``_rate``/``_rateints``): image2, or spec2 (through the
   level-2 association in the products folder that names the exposure, so that its
   background members take part, else on the rate alone).  It is rerun with the step parameters its
   product recorded (those that differ from the defaults), under the new
   context, into the same folder: files are replaced atomically.  Stage 3
   products of level-3 associations that have a redone member, or whose own
   references changed, are remade: image3 from the members' cal files, the other
   Stage 3 flows (spec3, tso3, coron3, ami3, wfs-image3) from their association,
   which must sit in the products folder.
3. **The report.**  ``reprocess_<context>_<time>.json`` and ``.md`` in
   ``report_dir`` (default: the products folder) say which exposures were
   redone, from which stage, which reftypes changed (old and new file), what
   was written, which exposures were unchanged and what failed.  The markdown
   is also published as a Prefect artifact.

``dry_run=True`` stops after step 1 and writes the report of what would be done.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from prefect import flow

from .. import models
from ..errors import InputFileError, WebbflowError
from .naming import root_of

log = logging.getLogger("webbflow.flows.reprocess")

LEVEL2 = ("image2", "spec2")
STAGE3 = ("image3", "spec3", "tso3", "coron3", "ami3", "wfs-image3")
STAGE_ORDER = ("detector1",) + LEVEL2 + STAGE3
# product suffixes, furthest first: the product whose metadata and provenance describe the exposure
# (an exposure's cal over its rate; a Stage 3 product by any of its files)
EXPOSURE_SUFFIXES = ("cal", "calints", "rate", "rateints", "i2d", "s3d", "c1d", "x1d", "x1dints", "s2d", "psfsub")
_SUFFIX_STAGES = {"cal": ["detector1", "level2"], "calints": ["detector1", "level2"], "i2d": ["detector1", "image2"],
                  "rate": ["detector1"], "rateints": ["detector1"]}
_PMAP = re.compile(r"^jwst_(\d{4})\.pmap$")


# ---------------------------------------------------------------------------
# contexts


def newest_context() -> str:
    """The newest context: the server's operational one with a CRDS server, else the newest pmap in the cache."""
    from ..refs import context as ctxmod
    from ..refs import select as sel

    operational = sel.context_used("jwst-operational")
    if sel.server_url():
        return operational
    names = ctxmod.list_contexts(sel.cache_path())
    if _PMAP.match(operational or ""):
        names.append(operational)
    return max(names, key=lambda n: int(_PMAP.match(n).group(1))) if names else operational


def _choice_value(choice) -> str:
    if choice.kind == "file":
        return choice.value
    if choice.kind in ("n/a", "unknown"):
        return "N/A"
    return f"NOT FOUND ({choice.value})"


def bestrefs_for(model, context: str, reftypes) -> dict[str, str]:
    """``{reftype: file name or "N/A"}`` that ``context`` selects for the model's metadata (no download)."""
    from ..refs.select import bestrefs

    if not reftypes:
        return {}
    b = bestrefs(model, context=context, reftypes=sorted(reftypes))
    return {rt: _choice_value(c) for rt, c in b.choices.items()}


def diff_bestrefs(model, old_context: str, new_context: str, reftypes) -> dict[str, tuple[str, str]]:
    """The reftypes whose best reference differs between two contexts: ``{reftype: (old, new)}``."""
    old = bestrefs_for(model, old_context, reftypes)
    new = bestrefs_for(model, new_context, reftypes)
    return {rt: (old.get(rt, "N/A"), new.get(rt, "N/A")) for rt in sorted(reftypes) if old.get(rt) != new.get(rt)}


def context_history(source, contexts: list[str] | None = None, reftypes=None) -> list[dict]:
    """Walk through ``contexts`` (default: every pmap in the cache, oldest first) and report, for one
    exposure's metadata, each context that changes its best references.

    Returns ``[{"context", "previous", "changed": {reftype: [old, new]}}]`` (the first readable context
    is the baseline, with all its choices under ``changed``) plus ``{"context", "error"}`` entries for
    contexts crds refuses (for example one naming a file since marked bad).
    """
    from ..refs import context as ctxmod
    from ..refs import select as sel

    model = models.open(source) if isinstance(source, (str, os.PathLike)) else source
    if contexts is None:
        contexts = ctxmod.list_contexts(sel.cache_path())
    out: list[dict] = []
    prev_name, prev = None, None
    for ctx in contexts:
        try:
            if reftypes is None:
                b = sel.bestrefs(model, context=ctx)
                cur = {rt: _choice_value(c) for rt, c in b.choices.items()}
            else:
                cur = bestrefs_for(model, ctx, reftypes)
        except WebbflowError as exc:
            out.append({"context": ctx, "error": str(exc)})
            continue
        if prev is None:
            out.append({"context": ctx, "previous": None, "changed": {rt: [None, v] for rt, v in sorted(cur.items())}})
        else:
            changed = {rt: [prev.get(rt, "N/A"), cur.get(rt, "N/A")] for rt in sorted(set(prev) | set(cur))
                       if prev.get(rt, "N/A") != cur.get(rt, "N/A")}
            if changed:
                out.append({"context": ctx, "previous": prev_name, "changed": changed})
        prev_name, prev = ctx, cur
    return out


@contextmanager
def crds_context(name: str):
    """Make ``name`` the context every selection in this process uses (CRDS_CONTEXT), then restore."""
    saved = os.environ.get("CRDS_CONTEXT")
    os.environ["CRDS_CONTEXT"] = name
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("CRDS_CONTEXT", None)
        else:
            os.environ["CRDS_CONTEXT"] = saved


# ---------------------------------------------------------------------------
# what each product says about how it was made


def provenance_records(model) -> dict[str, dict]:
    """The last provenance record of each stage in a product: ``{pipeline: record}``."""
    hist = getattr(model, "_asdf_extra", {}).get("webbflow_provenance")
    out: dict[str, dict] = {}
    if isinstance(hist, list):
        for rec in hist:
            if isinstance(rec, dict) and rec.get("pipeline"):
                out[str(rec["pipeline"])] = rec
    return out


def last_pipeline(model) -> str | None:
    """The stage that made a product: the pipeline of its last provenance record."""
    hist = getattr(model, "_asdf_extra", {}).get("webbflow_provenance")
    if isinstance(hist, list) and hist and isinstance(hist[-1], dict):
        return hist[-1].get("pipeline")
    return None


def _base_name(p) -> str:
    return os.path.basename(str(p).replace("crds://", "")) if p and str(p).upper() != "N/A" else "N/A"


def stage_reftypes(stage: str, record: dict | None, model=None) -> tuple[dict[str, str], set[str]]:
    """The reftypes a stage used, with the file recorded for each, and the reftypes the user overrode."""
    from ..tasks import load_all
    from ..tasks.base import STEPS

    load_all()
    used: dict[str, str] = {}
    overridden: set[str] = set()
    if record:
        for step, refs in (record.get("references") or {}).items():
            for rt, p in (refs or {}).items():
                used.setdefault(rt, _base_name(p))
        for step, p in (record.get("parameters") or {}).items():
            spec = STEPS.get(step)
            if spec is None or not isinstance(p, dict):
                continue
            overridden.update(str(k).lower() for k in (p.get("overrides") or {}))
            if not p.get("skip"):
                for rt in spec.reftypes:
                    used.setdefault(rt, "N/A")
        return {rt: v for rt, v in used.items() if rt not in overridden}, overridden
    # a product without webbflow provenance (made by jwst): its R_* keywords, by the stage that reads them
    from ..models.meta import REF_FILE_KEYWORDS

    stage_types = _stage_reftype_sets().get(stage, set())
    for rt in REF_FILE_KEYWORDS:
        if rt not in stage_types:
            continue
        entry = getattr(model.meta.ref_file, rt, None) if model is not None else None
        name = getattr(entry, "name", None)
        if name:
            used[rt] = _base_name(name)
    return used, overridden


def _stage_reftype_sets() -> dict[str, set[str]]:
    from ..tasks import load_all
    from ..tasks.base import STEPS
    from ..deployments.params import image3_available, stage_steps

    load_all()
    out = {}
    from .association import stage3_steps
    from .calwebb_spec2 import BRANCHES

    names = {"detector1": stage_steps("detector1"), "image2": stage_steps("image2"),
             "spec2": list(dict.fromkeys(s for b in BRANCHES.values() for s in b.steps))}
    if image3_available():
        names["image3"] = stage_steps("image3")
    for pipeline in STAGE3[1:]:
        names[pipeline] = stage3_steps(pipeline)
    for stage, steps in names.items():
        types: set[str] = set()
        for s in steps:
            if s in STEPS:
                types.update(STEPS[s].reftypes + STEPS[s].optional_reftypes)
        out[stage] = types
    return out


def recorded_steps(record: dict | None) -> dict[str, dict]:
    """The step parameters a product recorded that differ from the steps' defaults (to rerun it the same way)."""
    from ..tasks.base import STEPS

    out: dict[str, dict] = {}
    for step, values in ((record or {}).get("parameters") or {}).items():
        spec = STEPS.get(step)
        if spec is None or not isinstance(values, dict):
            continue
        defaults = spec.params().model_dump(mode="json")
        keep = {}
        for k, v in values.items():
            if k in ("output_dir", "output_file") or k not in defaults:
                continue
            if k == "overrides":
                if v:
                    keep["overrides"] = dict(v)
                continue
            if v != defaults[k]:
                keep[k] = v
        if keep:
            out[step] = keep
    return out


# ---------------------------------------------------------------------------
# the plan


@dataclass
class ExposureCheck:
    root: str
    folder: str
    product: str
    stages: list[str]
    old_context: dict[str, str | None] = field(default_factory=dict)  # stage -> context it used
    changed: dict[str, dict] = field(default_factory=dict)  # reftype -> {"stage", "old", "new"}
    redo_from: str | None = None
    redone: list[str] = field(default_factory=list)
    note: str | None = None
    error: str | None = None


@dataclass
class Stage3Check:
    product: str
    asn: str
    members: list[str]
    reason: str
    changed: dict[str, dict] = field(default_factory=dict)
    redone: list[str] = field(default_factory=list)
    error: str | None = None


def _suffix(path: Path) -> str | None:
    stem = re.sub(r"\.fits$", "", path.name)
    for s in EXPOSURE_SUFFIXES:
        if stem.endswith("_" + s):
            return s
    return None


def find_products(products) -> dict[tuple[str, str], Path]:
    """``{(folder, root): furthest product}`` from a folder or a list of product files."""
    if isinstance(products, (str, os.PathLike)):
        products = [products]
    files: list[Path] = []
    for p in products:
        p = Path(p)
        if p.is_dir():
            files += sorted(f for f in p.glob("*.fits") if _suffix(f))
        elif p.is_file():
            if not _suffix(p):
                raise InputFileError(p, "is not a product reprocess knows (" + ", ".join("_" + x for x in EXPOSURE_SUFFIXES) + ")")
            files.append(p)
        else:
            raise InputFileError(p, "no such file or folder")
    best: dict[tuple[str, str], Path] = {}
    for f in files:
        key = (str(f.resolve().parent), root_of(f.name))
        cur = best.get(key)
        if cur is None or EXPOSURE_SUFFIXES.index(_suffix(f)) < EXPOSURE_SUFFIXES.index(_suffix(cur)):
            best[key] = f
    return best


def check_product(path: Path, new_context: str) -> tuple[ExposureCheck, object, dict]:
    """Compare one product's references under its recorded context(s) with ``new_context``."""
    from ..models.blend import first_input

    model = models.open(path)
    recs = provenance_records(model)
    sfx = _suffix(path)
    if last_pipeline(model) in STAGE3:
        stages = [last_pipeline(model)]
    else:
        stages = [s for s in ("detector1",) + LEVEL2 if s in recs] or [
            level2_pipeline(model) if s == "level2" else s for s in _SUFFIX_STAGES.get(sfx, [])]
    chk = ExposureCheck(root=root_of(path.name), folder=str(path.resolve().parent), product=str(path), stages=stages)
    for stage in stages:
        rec = recs.get(stage)
        old_ctx = (rec or {}).get("crds_context") or model.meta.ref_file.crds.context_used
        chk.old_context[stage] = old_ctx
        used, _overridden = stage_reftypes(stage, rec, model)
        if not used:
            continue
        if old_ctx == new_context:
            continue
        # a Stage 3 product's references were selected on its first exposure (its own metadata
        # is blended: DETECTOR = MULTIPLE for a mosaic of several detectors)
        probe = first_input(model) if stage in STAGE3 else model
        new = bestrefs_for(probe, new_context, used)
        try:
            if not old_ctx:
                raise WebbflowError("no context recorded")
            old = bestrefs_for(probe, old_ctx, used)
        except WebbflowError as exc:
            log.info("%s: using the recorded references (%s)", path.name, exc)
            old = used
        for rt in sorted(used):
            if old.get(rt, "N/A") != new.get(rt, "N/A"):
                chk.changed[rt] = {"stage": stage, "old": old.get(rt, "N/A"), "new": new.get(rt, "N/A")}
    for stage in STAGE_ORDER:
        if any(c["stage"] == stage for c in chk.changed.values()):
            chk.redo_from = stage
            break
    return chk, model, recs


def level2_pipeline(model) -> str:
    """image2 or spec2: the level-2 pipeline jwst's rules give the exposure."""
    from .association import level2_route

    e = model.meta.exposure
    return level2_route(getattr(e, "type", None), tsovisit=getattr(model.meta.visit, "tsovisit", False)
                        if hasattr(model.meta, "visit") else False).pipeline


# ---------------------------------------------------------------------------
# redoing


def _find_raw(root: str, dirs: list[Path]) -> Path | None:
    for d in dirs:
        for sfx in ("uncal", "ramp"):
            p = d / f"{root}_{sfx}.fits"
            if p.is_file():
                return p
    return None


def redo_exposure(chk: ExposureCheck, recs: dict, search_dirs: list[Path]) -> list[str]:
    """Rerun an exposure from ``chk.redo_from`` into its folder; returns the files written."""
    from .calwebb_detector1 import detector1, detector1_last_run
    from .calwebb_image2 import image2, image2_last_run

    folder = Path(chk.folder)
    written: list[str] = []
    if chk.redo_from == "detector1":
        raw = _find_raw(chk.root, [folder] + search_dirs)
        if raw is None:
            raise InputFileError(
                folder / f"{chk.root}_uncal.fits",
                "the raw exposure is needed to redo detector1 and was not found (give its folder in raw_dirs)",
            )
        detector1(str(raw), steps=recorded_steps(recs.get("detector1")) or None, output_dir=str(folder))
        written += detector1_last_run[-1].written
    level2 = next((s for s in chk.stages if s in LEVEL2), None)
    if level2 and chk.redo_from in ("detector1", level2):
        from .calwebb_spec2 import spec2, spec2_last_run

        run, last = (image2, image2_last_run) if level2 == "image2" else (spec2, spec2_last_run)
        pairs = [("rate", "cal"), ("rateints", "calints")]
        done = False
        for src_sfx, out_sfx in pairs:
            src = folder / f"{chk.root}_{src_sfx}.fits"
            if src.is_file() and (folder / f"{chk.root}_{out_sfx}.fits").is_file():
                # a spectrum is redone through its level-2 association, when one in the products'
                # folder names it: its background members (nods) take part as they did
                asn = _level2_asn(folder, src.name) if level2 == "spec2" else None
                run(str(asn or src), steps=recorded_steps(recs.get(level2)) or None, output_dir=str(folder))
                written += [p for r in last for p in r.written]
                done = True
        if not done:
            raise InputFileError(folder / f"{chk.root}_rate.fits", f"is needed to redo {level2} and was not found")
    return written


def _level2_asn(folder: Path, science: str) -> Path | None:
    """The level-2 association in ``folder`` whose product has ``science`` as its science member (one product)."""
    from .association import load_asn

    for p in sorted(folder.glob("*_asn.json")):
        try:
            asn, _ = load_asn(p)
        except WebbflowError:
            continue
        if asn.level != 2 or len(asn.products) != 1:
            continue
        sci = [m.expname for m in asn.products[0].members if m.exptype.lower() == "science"]
        if sci == [science]:
            return p
    return None


def _level3_asns(dirs: list[Path], explicit: list[str] | None):
    from .association import load_asn

    paths = [Path(a) for a in explicit] if explicit else sorted({p for d in dirs for p in d.glob("*_asn.json")})
    out = []
    for p in paths:
        try:
            asn, folder = load_asn(p)
        except WebbflowError as exc:
            if explicit:
                raise
            log.info("ignoring %s: %s", p, exc)
            continue
        if asn.level == 3:
            out.append((p, asn))
    return out


def _redo_stage3(asn_path: Path, prod, folder: Path) -> list[str]:
    from .association import _product_root, load_asn, stage3_pipeline

    asn, asn_folder = load_asn(asn_path)
    pipeline = stage3_pipeline(asn, asn_path)
    if pipeline != "image3":
        # the other Stage 3 flows run on their association, whose members (named relative to it)
        # are the level-2 products just remade in its folder
        if asn_folder.resolve() != folder.resolve():
            raise InputFileError(asn_path, f"is not in the products' folder {folder}; {pipeline} is remade from "
                                           "an association beside the products")
        from . import registry

        runner = registry.PIPELINES[pipeline]
        return [str(p) for p in runner(str(asn_path), output_dir=folder, steps=None, config=None, options=None) or []]
    try:
        from .calwebb_image3 import image3
    except ImportError:
        raise WebbflowError("image3 is not available in this installation") from None
    cals = []
    for m in prod.members:
        if m.exptype.lower() != "science":
            continue
        cal = folder / f"{root_of(m.expname)}_cal.fits"
        if not cal.is_file():
            raise InputFileError(cal, f"member of {asn_path.name} has no cal product to remake Stage 3 from")
        cals.append(str(cal))
    res = image3(cals, product_name=_product_root(prod.name), output_dir=str(folder))
    return [str(p) for p in (res or {}).get("written", [])]


# ---------------------------------------------------------------------------
# the report


@dataclass
class ReprocessReport:
    context: str
    products: list[str]
    dry_run: bool
    started: str
    exposures: list[ExposureCheck] = field(default_factory=list)
    stage3: list[Stage3Check] = field(default_factory=list)
    report_json: str | None = None
    report_markdown: str | None = None

    @property
    def redone(self) -> list[ExposureCheck]:
        return [e for e in self.exposures if e.redo_from]

    @property
    def unchanged(self) -> list[ExposureCheck]:
        return [e for e in self.exposures if not e.redo_from and not e.error]

    @property
    def failed(self) -> list:
        return [e for e in self.exposures if e.error] + [s for s in self.stage3 if s.error]

    def to_dict(self) -> dict:
        return {
            "context": self.context, "products": self.products, "dry_run": self.dry_run, "started": self.started,
            "summary": {
                "exposures": len(self.exposures), "redone": len(self.redone), "unchanged": len(self.unchanged),
                "stage3_redone": sum(1 for s in self.stage3 if s.redone or (self.dry_run and not s.error)),
                "failed": len(self.failed),
            },
            "exposures": [asdict(e) for e in self.exposures],
            "stage3": [asdict(s) for s in self.stage3],
        }

    def markdown(self) -> str:
        verb = "would be redone" if self.dry_run else "redone"
        lines = [f"# Reprocessing for CRDS context `{self.context}`", "",
                 f"- products: {', '.join(f'`{p}`' for p in self.products)}",
                 f"- {len(self.exposures)} exposures checked: {len(self.redone)} {verb}, "
                 f"{len(self.unchanged)} unchanged, {len(self.failed)} failed" + (" (dry run)" if self.dry_run else ""),
                 ""]
        if self.redone:
            lines += [f"## Exposures {verb}", "", "| exposure | from | old context | reftype | old | new |",
                      "| --- | --- | --- | --- | --- | --- |"]
            for e in self.redone:
                first = True
                for rt, c in sorted(e.changed.items()):
                    ctx = e.old_context.get(c["stage"]) or ""
                    head = f"| {e.root} | {e.redo_from} | {ctx} " if first else "| | | "
                    lines.append(f"{head}| {rt} | `{c['old']}` | `{c['new']}` |")
                    first = False
            lines.append("")
        unchanged = self.unchanged
        if unchanged:
            lines += ["## Unchanged", ""] + [f"- {e.root} ({', '.join(sorted(set(filter(None, e.old_context.values())))) or 'no context'})"
                                             for e in unchanged] + [""]
        if self.stage3:
            lines += ["## Stage 3", ""]
            for s in self.stage3:
                state = f"error: {s.error}" if s.error else (f"{len(s.redone)} files written" if s.redone else verb)
                lines.append(f"- `{s.product}` ({s.reason}): {state}")
            lines.append("")
        failed = [e for e in self.exposures if e.error]
        if failed:
            lines += ["## Failed", ""] + [f"- {e.root}: {e.error}" for e in failed] + [""]
        return "\n".join(lines)

    def write(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"reprocess_{self.context.replace('.pmap', '')}_{self.started.replace(':', '').replace('-', '')}"
        jpath, mpath = folder / f"{stem}.json", folder / f"{stem}.md"
        self.report_json, self.report_markdown = str(jpath), str(mpath)
        from ..models.atomic import atomic_write_text

        for path, text in ((jpath, json.dumps(self.to_dict(), indent=1) + "\n"), (mpath, self.markdown())):
            atomic_write_text(path, text)


# ---------------------------------------------------------------------------
# the flow


def _reprocess_run_name() -> str:
    """``reprocess products to jwst_0002.pmap`` (``newest`` without a context) instead of a random name."""
    from prefect.runtime import flow_run

    params = flow_run.parameters or {}
    prod = params.get("products") or ""
    what = Path(prod).name if isinstance(prod, str) else f"{len(prod)} products"
    return f"reprocess {what} to {params.get('context') or 'newest'}" + (" (dry run)" if params.get("dry_run") else "")


def _check_task():
    """check_product as a Prefect task run per exposure inside a flow run (so the run shows what was checked)."""
    from prefect import task
    from prefect.cache_policies import NONE
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:
        return check_product
    return task(name="check", task_run_name="check {path.name}", cache_policy=NONE, persist_result=False)(check_product)


@flow(name="reprocess", flow_run_name=_reprocess_run_name, persist_result=False, log_prints=True)
def reprocess(
    products: str | list[str],
    context: str | None = None,
    raw_dirs: list[str] | None = None,
    associations: list[str] | None = None,
    dry_run: bool = False,
    report_dir: str | None = None,
) -> dict:
    """Redo the exposures (and Stage 3 products) whose best references changed in ``context``.

    ``products``: a products folder, or a list of product files.  ``context``:
    a pmap such as ``jwst_0002.pmap`` (default: the newest).  ``raw_dirs``:
    folders holding the ``_uncal`` files (default: the products folder and the
    associations' folders).  ``associations``: level-3 associations whose
    products to remake (default: the ``*_asn.json`` files of those folders).
    Returns the report as a dict (also written as JSON and markdown).

    Args:
        products: A products folder, or a list of product files, as the worker sees them.
        context: The CRDS context to reprocess to (e.g. ``jwst_1322.pmap``); empty for the newest.
        raw_dirs: Folders holding the ``_uncal`` files; empty for the products' and associations' folders.
        associations: Level-3 associations whose products to remake; empty for the ``*_asn.json`` found.
        dry_run: Only report what would be redone, and why.
        report_dir: Folder for the report (JSON and markdown); empty for the products folder.
    """
    from ..refs.select import context_used

    new = context_used(context) if context else newest_context()  # an unknown context is one clear error
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    found = find_products(products)
    check = _check_task()
    folders = sorted({Path(f) for f, _r in found})
    if not found:
        raise InputFileError(products if isinstance(products, str) else ", ".join(products),
                             "holds no products to reprocess (" + ", ".join("_" + x for x in EXPOSURE_SUFFIXES) + ")")
    search = [Path(d) for d in (raw_dirs or [])] + folders
    asns = _level3_asns(sorted(set(search)) + [Path(a).resolve().parent for a in (associations or [])], associations)
    search += [p.resolve().parent for p, _a in asns]
    report = ReprocessReport(context=new, products=[str(p) for p in ([products] if isinstance(products, str) else products)],
                             dry_run=dry_run, started=started)

    stage3_roots: dict[str, ExposureCheck] = {}
    recs_by_root: dict[str, dict] = {}
    for (folder, root), path in sorted(found.items()):
        try:
            chk, model, recs = check(path, new)
        except WebbflowError as exc:
            report.exposures.append(ExposureCheck(root=root, folder=folder, product=str(path), stages=[], error=str(exc)))
            continue
        if len(chk.stages) == 1 and chk.stages[0] in STAGE3:
            stage3_roots[root] = chk  # a Stage 3 product: remade through its association below
            continue
        report.exposures.append(chk)
        recs_by_root[root] = recs
        del model

    with crds_context(new):
        if not dry_run:
            for chk in report.exposures:
                if not chk.redo_from or chk.error:
                    continue
                try:
                    chk.redone = redo_exposure(chk, recs_by_root[chk.root], search)
                except WebbflowError as exc:
                    chk.error = str(exc)
                    log.error("%s: %s", chk.root, exc)
        redone_roots = {e.root for e in report.exposures if e.redo_from and not e.error}
        from .association import _product_root

        for asn_path, asn in asns:
            for prod in asn.products:
                members = [root_of(m.expname) for m in prod.members if m.exptype.lower() == "science"]
                # any member redone (a spec3 product's background nods too) remakes the product
                hit = sorted({root_of(m.expname) for m in prod.members} & redone_roots)
                own = stage3_roots.get(_product_root(prod.name))
                if not hit and not (own and own.redo_from):
                    continue
                reason = f"members redone: {', '.join(hit)}" if hit else "its own references changed"
                s3 = Stage3Check(product=_product_root(prod.name), asn=str(asn_path), members=members, reason=reason,
                                 changed=dict(own.changed) if own else {})
                if not dry_run:
                    try:
                        folder = Path(own.folder) if own else Path(next(iter(folders)))
                        s3.redone = _redo_stage3(asn_path, prod, folder)
                    except WebbflowError as exc:
                        s3.error = str(exc)
                        log.error("Stage 3 %s: %s", s3.product, exc)
                report.stage3.append(s3)

    report.write(Path(report_dir) if report_dir else folders[0])
    _publish(report)
    line = (f"reprocess: {len(report.exposures)} exposures checked, {len(report.redone)} "
            f"{'would be redone' if dry_run else 'redone'}, report {report.report_markdown}")
    try:
        from prefect import get_run_logger

        get_run_logger().info(line)  # in the run's logs
    except Exception:  # noqa: BLE001 - outside a run: the plain log
        log.info(line)
    return report.to_dict() | {"report_json": report.report_json, "report_markdown": report.report_markdown}


def _publish(report: ReprocessReport) -> None:
    try:
        from prefect.context import FlowRunContext

        if FlowRunContext.get() is None:
            return
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(report.markdown(), key="reprocess-report",
                                 description=f"reprocessing for {report.context}")
    except Exception as exc:  # noqa: BLE001 - the report files are written already
        log.warning("could not publish the reprocess report artifact: %s", exc)


def run_reprocess(products, context=None, raw_dirs=None, associations=None, dry_run=False, report_dir=None) -> dict:
    """Run the reprocess flow locally (the CLI's entry); an unknown context or missing products fail before it starts."""
    from ..refs.select import context_used
    from .stage import quiet_prefect_settings

    if context:
        context_used(context)
    find_products(products)

    with quiet_prefect_settings():
        return reprocess(products, context=context, raw_dirs=raw_dirs, associations=associations, dry_run=dry_run,
                         report_dir=report_dir)


__all__ = ["reprocess", "run_reprocess", "newest_context", "diff_bestrefs", "bestrefs_for", "context_history",
           "find_products", "check_product", "recorded_steps", "ReprocessReport"]
