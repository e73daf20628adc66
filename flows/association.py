"""Associations: reading them, resolving each member to the work it still needs,
fanning the members out into parallel exposure flows, and joining for Stage 3.

- Reading: JWST ``*_asn.json`` files, level 2 and level 3, validated with pydantic.
- Paths: member paths are relative to the association's folder and never leave it.
- Resolving: ``_uncal`` needs detector1 then its level-2 pipeline; ``_rate``/``_rateints``
  need the level-2 pipeline; ``_cal``/``_calints`` need nothing.  :func:`level2_route` picks
  that pipeline (image2 or spec2) and whether the exposure goes on as rate -> cal or
  rateints -> calints, as jwst's association rules do.
- Stage 3: a level-3 association's product goes to the flow of its ``asn_type`` (image3,
  spec3, tso3, coron3, ami3, wfs-image3) with the member types that flow takes.
- Fan-out: one ``exposure`` flow per member, submitted as tasks to the flow's
  task runner (threads or processes locally, Dask when configured), then joined.
- Failures: one member's failure is reported and the others' products are kept.
  Stage 3 is made from the members that succeeded only when asked
  (``allow_partial``); otherwise the run finishes the rest, then fails.
- Caching: each exposure stage is keyed on the input checksum, the reference
  files, the resolved parameters and the code version; an unchanged rerun
  reuses the finished products.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .. import models
from ..errors import InputFileError, WebbflowError, a_an
from . import _prefect
from ._prefect import as_prefect, flow, in_prefect_run, plain, task
from .naming import root_of

log = logging.getLogger("webbflow.flows")


# ---------------------------------------------------------------------------
# the association format


class AsnMember(BaseModel):
    model_config = ConfigDict(extra="allow")
    expname: str
    exptype: str = "science"


class AsnProduct(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    members: list[AsnMember] = Field(min_length=1)


class Association(BaseModel):
    """A JWST association (asn.json)."""

    model_config = ConfigDict(extra="allow")
    asn_type: str | None = None
    asn_rule: str | None = None
    asn_id: str | None = None
    asn_pool: str | None = None
    program: str | None = None
    target: str | None = None
    version_id: str | None = None
    degraded_status: str | None = None
    products: list[AsnProduct] = Field(min_length=1)

    @property
    def level(self) -> int:
        t = (self.asn_type or "").lower()
        r = (self.asn_rule or "").lower()
        if t in ("image2", "spec2", "tso-image2", "tso-spec2", "wfs-image2") or "lv2" in r or "level2" in r:
            return 2
        return 3


def load_asn(path) -> tuple[Association, Path]:
    """Read and validate an association; returns it and its folder."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "no such file")
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputFileError(path, f"is not a readable association (invalid JSON: {exc})") from None
    try:
        asn = Association.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        raise InputFileError(path, f"is not a valid association: {loc}: {err['msg']}") from None
    return asn, path.resolve().parent


def member_path(asn_path, folder: Path, expname: str) -> Path:
    """The member's file, relative to the association's folder; refused if it would leave the folder."""
    if os.path.isabs(expname):
        raise InputFileError(asn_path, f"member {expname!r} is an absolute path; members must lie in the association's folder")
    p = (folder / expname).resolve()
    if folder != p and folder not in p.parents:
        raise InputFileError(asn_path, f"member {expname!r} lies outside the association's folder {folder}")
    return p


# ---------------------------------------------------------------------------
# a member's level-2 pipeline


# jwst's association rules (jwst.associations.lib.dms_base): the exposure types calibrated by
# Spec2Pipeline, those always taken as time series, the coronagraphic ones
SPEC2_EXP_TYPES = frozenset({
    "MIR_LRS-FIXEDSLIT", "MIR_LRS-SLITLESS", "MIR_MRS", "MIR_WFSS", "NIS_SOSS", "NIS_WFSS", "NRC_TSGRISM",
    "NRC_WFSS", "NRS_FIXEDSLIT", "NRS_IFU", "NRS_MSASPEC", "NRS_BRIGHTOBJ"})
TSO_EXP_TYPES = frozenset({"NRC_TSIMAGE", "NRC_TSGRISM", "NRS_BRIGHTOBJ"})
CORON_EXP_TYPES = frozenset({"MIR_4QPM", "MIR_LYOT", "NRC_CORON"})
# association types whose members are products of every integration (rateints, calints)
_PER_INTEGRATION_ASN = frozenset({"tso3", "tso-image2", "tso-spec2", "coron3", "ami3"})
_INTS_SUFFIXES = ("_rateints", "_calints", "_x1dints", "_crfints")
_EXPOSURE_SUFFIXES = ("_rate", "_cal", "_x1d", "_s2d", "_s3d", "_i2d", "_crf")


def _stem(name) -> str:
    """A file name in lower case without its .fits/.asdf extension (``x_calints``)."""
    return re.sub(r"\.(fits|asdf)$", "", Path(name).name.lower())


@dataclass(frozen=True)
class Level2Route:
    """How a member is calibrated at level 2: ``pipeline`` (the flow: image2 or spec2),
    ``asn_type`` (jwst's name for it: image2, spec2, tso-image2, tso-spec2, wfs-image2) and
    whether it goes on per integration (rateints -> calints) or as one image (rate -> cal)."""

    pipeline: str
    asn_type: str
    integrations: bool

    @property
    def rate(self) -> str:
        return "rateints" if self.integrations else "rate"

    @property
    def cal(self) -> str:
        return "calints" if self.integrations else "cal"


def level2_route(exp_type: str | None, *, tsovisit=False, asn_type: str | None = None, named: str | None = None,
                 subarray: str | None = None, visitype: str | None = None) -> Level2Route:
    """A member's level-2 pipeline and its rate/rateints input, as jwst's rules and strun choose them.

    - Spec2Pipeline for the spectroscopic exposure types, Image2Pipeline for the others (the
      tso-/wfs- pipelines of strun are those two classes).
    - Per integration (rateints -> calints) for time series (TSOVISIT, or an always-TSO type),
      coronagraphy (but NIRCam full-frame coronagraphy, which jwst's Asn_Lv2CoronAsRate takes as
      rate) and AMI, and for members of tso3, coron3, ami3 and tso-* associations.
    - ``named``, the file name the association gives the member, decides first: it is what strun
      reads (``_calints``/``_rateints``: per integration; ``_cal``/``_rate``/``_x1d``...: not).
    """
    e = (exp_type or "").upper()
    tso = str(tsovisit).strip().upper() in ("TRUE", "T", "1") or e in TSO_EXP_TYPES
    coron = e in CORON_EXP_TYPES and not (e == "NRC_CORON" and (subarray or "").upper() == "FULL")
    integrations = tso or coron or e == "NIS_AMI" or (asn_type or "").lower() in _PER_INTEGRATION_ASN
    stem = _stem(named) if named else ""
    if stem.endswith(_INTS_SUFFIXES):
        integrations = True
    elif stem.endswith(_EXPOSURE_SUFFIXES):
        integrations = False
    if e in SPEC2_EXP_TYPES:
        return Level2Route("spec2", "tso-spec2" if tso else "spec2", integrations)
    kind = "tso-image2" if tso else "wfs-image2" if "WFSC" in (visitype or "").upper() else "image2"
    return Level2Route("image2", kind, integrations)


IMAGING = Level2Route("image2", "image2", False)
# products that need no earlier stage
FINISHED = ("_cal.fits", "_calints.fits", "_crf.fits", "_x1d.fits", "_x1dints.fits", "_s2d.fits")


def route_for(path: Path, asn_type: str | None = None, named: str | None = None) -> Level2Route:
    """:func:`level2_route` from a file's primary header (EXP_TYPE, TSOVISIT, SUBARRAY, VISITYPE)."""
    from ..models.io import _open_fits

    try:
        with _open_fits(Path(path)) as hdul:
            h = hdul[0].header
            return level2_route(h.get("EXP_TYPE"), tsovisit=h.get("TSOVISIT", False), asn_type=asn_type,
                                named=named or Path(path).name, subarray=h.get("SUBARRAY"),
                                visitype=h.get("VISITYPE"))
    except InputFileError:
        raise
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise InputFileError(path, f"cannot read its header ({exc})") from None


def needs_work(path: Path) -> bool:
    """Whether a member still needs an earlier stage, from its product suffix alone."""
    stem = path.name.lower()
    return stem.endswith(("_uncal.fits", "_ramp.fits", "_rate.fits", "_rateints.fits"))


def work_needed(path: Path, route: Level2Route | None = None) -> list[str]:
    """The stages a member still needs, from its product suffix (or its model class); the level-2
    stage is ``route``'s pipeline, read from the file's header when not given (a file that cannot
    be read yet counts as imaging: opening it later says what is wrong)."""
    def level2() -> str:
        if route is not None:
            return route.pipeline
        try:
            return route_for(path).pipeline
        except InputFileError:
            return IMAGING.pipeline

    stem = path.name.lower()
    for suffix, raw in (("_uncal.fits", True), ("_ramp.fits", True), ("_rate.fits", False), ("_rateints.fits", False)):
        if stem.endswith(suffix):
            return ["detector1", level2()] if raw else [level2()]
    if stem.endswith(FINISHED):
        return []
    cls = models.class_for_file(path)
    if issubclass(cls, models.RampModel):
        return ["detector1", level2()]
    if cls in (models.ImageModel, models.CubeModel):
        m = models.open(path)
        return [] if m.meta.cal_step.photom == "COMPLETE" else [level2()]
    raise InputFileError(path, f"is {a_an(cls.__name__)}; not something this association can process")


def level2_products(folder: Path) -> dict[str, tuple[tuple[str, str], list[Path]]]:
    """The level-2 associations in ``folder``, by the exposure root of each product's science
    member: ``{root: ((pool, association file name), [background member paths])}``."""
    found: dict[str, tuple[tuple[str, str], list[Path]]] = {}
    for f in sorted(Path(folder).glob("*_asn.json")):
        try:
            asn, _ = load_asn(f)
        except InputFileError:
            continue
        if asn.level != 2:
            continue
        for prod in asn.products:
            sci = [m for m in prod.members if m.exptype.lower() == "science"]
            if not sci:
                continue
            try:
                bkg = [member_path(f, folder, m.expname) for m in prod.members if m.exptype.lower() == "background"]
            except InputFileError:
                continue
            found.setdefault(root_of(sci[0].expname), ((asn.asn_pool or " ", f.name), bkg))
    return found


def level2_others(folder: Path) -> dict[str, dict[str, list[Path]]]:
    """The level-2 associations' other members (WFSS: sourcecat, segmap, direct_image), by the
    exposure root of each product's science member: ``{root: {member type: [paths]}}``."""
    found: dict[str, dict[str, list[Path]]] = {}
    for f in sorted(Path(folder).glob("*_asn.json")):
        try:
            asn, _ = load_asn(f)
        except InputFileError:
            continue
        for prod in asn.products if asn.level == 2 else ():
            sci = [m for m in prod.members if m.exptype.lower() == "science"]
            kinds: dict[str, list[Path]] = {}
            try:
                for m in prod.members:
                    if m.exptype.lower() not in ("science", "background"):
                        kinds.setdefault(m.exptype.lower(), []).append(member_path(f, folder, m.expname))
            except InputFileError:
                continue
            if sci and kinds:
                found.setdefault(root_of(sci[0].expname), kinds)
    return found


def earliest_available(path: Path) -> Path:
    """A level-3 association names ``_cal``/``_calints`` (or ``_x1d``) members; when one is not
    there yet, take the exposure's rate (rateints for a per-integration member) or uncal file from
    the same folder, so the earlier stages can make it."""
    if path.exists():
        return path
    root = root_of(path.name)
    chain = ("calints", "rateints", "uncal") if _stem(path).endswith(_INTS_SUFFIXES) else ("cal", "rate", "uncal")
    for suffix in chain:
        alt = path.with_name(f"{root}_{suffix}.fits")
        if alt.exists():
            return alt
    raise InputFileError(path, f"no such file (nor its _{chain[1]} or _uncal file in the association's folder)")


# ---------------------------------------------------------------------------
# caching at the level of exposures and files


_CODE_VERSION: str | None = None


def code_version() -> str:
    """A digest of webbflow's own source: any code change invalidates cached work."""
    global _CODE_VERSION
    if _CODE_VERSION is None:
        import webbflow

        h = hashlib.sha256()
        root = Path(webbflow.__file__).parent
        for sub in ("", "models", "refs", "tasks", "flows"):
            for f in sorted((root / sub).glob("*.py")):
                h.update(f.name.encode())
                h.update(f.read_bytes())
        _CODE_VERSION = h.hexdigest()[:16]
    return _CODE_VERSION


def file_checksum(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _ref_identity(p: str) -> str:
    if not p or p.upper() == "N/A":
        return "N/A"
    try:
        st = os.stat(p)
        return f"{os.path.basename(p)}:{st.st_size}"
    except OSError:
        return os.path.basename(p)


def stage_key(stage: str, input_path: Path, model, steps: dict | None, config, seen: list | None = None) -> str:
    """Key of one exposure stage: input checksum, reference files, resolved parameters, code version.

    ``seen``, when given, receives the paths of the reference files the stage would use."""
    from .stage import resolve_params, resolve_references
    from . import calwebb_detector1, calwebb_image2

    if stage == "detector1":
        names = calwebb_detector1.branch_for(model)
        params = resolve_params(names, calwebb_detector1._only(steps, names, calwebb_detector1.ALL_STEPS), config, model=model,
                                pipeline_class="Detector1Pipeline")
    elif stage == "spec2":
        from .calwebb_spec2 import branch_for

        names = branch_for(model).steps  # every step the exposure's spec2 branch may run
        params = resolve_params(names, steps, config, model=model, pipeline_class="Spec2Pipeline")
    else:
        names = calwebb_image2.STEPS
        params = resolve_params(names, steps, config, model=model, pipeline_class="Image2Pipeline")
    refs, _ctx = resolve_references(model, params)
    if seen is not None:
        seen.extend(p for r in refs.values() for p in r.values() if p and str(p).upper() != "N/A")
    doc = {
        "stage": stage,
        "input": file_checksum(input_path),
        "params": {n: p.model_dump(mode="json") for n, p in params.items()},
        "refs": {s: {rt: _ref_identity(p) for rt, p in sorted(r.items())} for s, r in sorted(refs.items())},
        "code": code_version(),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def stage3_steps(pipeline: str) -> list[str]:
    """The steps of a Stage 3 flow (image3, spec3, tso3, coron3, ami3, wfs-image3), from its module."""
    from importlib import import_module

    return import_module(f"webbflow.flows.calwebb_{pipeline.replace('-', '_')}").STEPS


def stage3_key(cal_paths: list[str], steps: dict | None, config, pipeline: str = "image3") -> str:
    """Key of a Stage 3 product: its inputs' checksums, the Stage 3 flow's parameters and the code version."""
    from .stage import resolve_params

    params = resolve_params(stage3_steps(pipeline), steps, config)
    doc = {
        "inputs": [file_checksum(Path(p)) for p in cal_paths],
        "params": {n: p.model_dump(mode="json") for n, p in params.items()},
        "code": code_version(),
    }
    if pipeline != "image3":
        doc["pipeline"] = pipeline
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def _cache_file(output_dir: Path, root: str, stage: str) -> Path:
    return output_dir / ".webbflow-cache" / f"{root}.{stage}.json"


def cache_lookup(output_dir: Path, root: str, stage: str, key: str) -> list[str] | None:
    f = _cache_file(output_dir, root, stage)
    try:
        rec = json.loads(f.read_text())
    except (OSError, ValueError):
        return None
    if rec.get("key") != key:
        return None
    products = rec.get("products") or []
    if not products or not all(Path(p).exists() for p in products):
        return None
    return products


def cache_store(output_dir: Path, root: str, stage: str, key: str, products: list[str]) -> None:
    from ..models.atomic import atomic_write_text

    atomic_write_text(_cache_file(output_dir, root, stage),
                      json.dumps({"key": key, "products": products, "time": time.time()}, indent=1))


# ---------------------------------------------------------------------------
# one exposure: the stages it needs, each cached


@dataclass
class MemberResult:
    member: str
    ok: bool
    cal: str | None = None
    products: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None
    references: list[str] = field(default_factory=list)  # reference files its stages' keys rest on
    stages: list[str] = field(default_factory=list)  # the stages it went through, run or reused


def _stage_steps(steps: dict | None, stage: str) -> dict:
    return dict((steps or {}).get(stage, {}) or {})


def _member_run_name():
    from prefect.runtime import flow_run

    path = (flow_run.parameters or {}).get("path")
    return f"exposure {root_of(Path(str(path)).name)}" if path else "exposure"


def _member_task_name():
    from prefect.runtime import task_run

    path = (task_run.parameters or {}).get("path")
    return f"member {root_of(Path(str(path)).name)}" if path else "member"


def _asn_run_name():
    """``association jw01234-o001_20240115t030000_image3_00001`` instead of a random name."""
    from prefect.runtime import flow_run

    p = (flow_run.parameters or {}).get("asn_path") or ""
    return f"association {Path(str(p)).name.removesuffix('.json').removesuffix('_asn')}" if p else "association"


def call_flow(fl, *args, **kwargs):
    """A stage flow as a subflow run inside a Prefect run; outside one, its body as a plain call, so that
    an untracked run (no Prefect API, see stage.prefect_tracking) never starts Prefect's temporary server
    (nor imports Prefect: ``fl`` is the flow module's deferred function, see flows/_prefect.py)."""
    if in_prefect_run():
        return as_prefect(fl)(*args, **kwargs)
    if _prefect.is_deferred(fl) or _is_prefect_flow(fl):
        return fl.fn(*args, **kwargs)
    return fl(*args, **kwargs)


def _is_prefect_flow(obj) -> bool:
    import sys

    if "prefect.flows" not in sys.modules:
        return False
    from prefect import Flow

    return isinstance(obj, Flow)


@flow(name="exposure", flow_run_name=_member_run_name, validate_parameters=False, persist_result=False)
def calibrate_member(path: str, output_dir: str, steps: dict | None = None, config: str | None = None,
                     backgrounds: list[str] | None = None, until: str = "image2",
                     asn_info: tuple[str, str] | None = None, asn_type: str | None = None,
                     named: str | None = None, members: dict | None = None) -> MemberResult:
    """Take one association member as far as its calibrated product, cal or calints (``until="detector1"``:
    its rate or rateints), reusing finished work.

    The level-2 stage is the member's :func:`level2_route` (image2 or spec2, per integration or not),
    from its header, the association's ``asn_type`` and the name the association gives it
    (``named``).  ``backgrounds`` (rate files) go to bkg_subtract, ``members`` (other level-2 member
    types by type: imprint, sourcecat, ...) to spec2, as in a level-2 association; ``asn_info`` =
    (pool, association file name) is recorded in the level-2 products."""
    from . import progress
    from . import calwebb_detector1, calwebb_image2, calwebb_spec2
    from .calwebb_detector1 import detector1_last_run
    from .calwebb_image2 import image2_last_run
    from .calwebb_spec2 import spec2_last_run

    # the flows as their modules hold them: their bodies, unless a Prefect run needs the flows
    detector1, image2 = plain(calwebb_detector1, "detector1"), plain(calwebb_image2, "image2")
    spec2 = plain(calwebb_spec2, "spec2")
    from .stage import Reused, show_reuse

    t0 = time.perf_counter()
    src = Path(path)
    out = Path(output_dir)
    res = MemberResult(member=src.name, ok=False)
    progress.emit("begin", key=src.name, label=root_of(src.name))
    route = IMAGING if src.name.lower().endswith(FINISHED) else route_for(src, asn_type, named)
    work = work_needed(src, route)
    current = src
    level2_flow, level2_runs = (spec2, spec2_last_run) if route.pipeline == "spec2" else (image2, image2_last_run)
    stages = (
        ("detector1", detector1, lambda: list(detector1_last_run[-1].written), route.rate),
        (route.pipeline, level2_flow, lambda: [p for r in level2_runs for p in r.written], route.cal),
    )
    others = {k: [str(p) for p in v] for k, v in (members or {}).items() if v}
    for stage, stage_flow, written_by_last_run, product in stages:
        if stage not in work or (until == "detector1" and stage != "detector1"):
            continue
        root = root_of(current.name)
        # detector1 reads the raw file itself (one integration at a time into its float32 ramp, or
        # streamed): its key needs only the metadata, and the uint16 ramp is never held here as well.
        # spec2 opens its rate(ints) itself too, so that the arrays its steps replace are freed
        # rather than kept alive by this frame (a 300-integration calints is 6 cubes)
        raw = stage in ("detector1", "spec2")
        model = models.open(current, arrays=()) if raw else models.open(current)
        key = stage_key(stage, current, model, _stage_steps(steps, stage), config, seen=res.references)
        extra = {}
        if stage == "spec2":
            extra = {"members": {**others, **({"background": list(backgrounds)} if backgrounds else {})},
                     "asn_info": asn_info}
        elif stage == "image2" and (backgrounds or asn_info):
            extra = {"backgrounds": list(backgrounds or []), "asn_info": asn_info}
        if stage != "detector1" and (backgrounds or asn_info or others or route.integrations):
            inputs = [file_checksum(Path(b)) for b in backgrounds or []]
            inputs += [[k, [file_checksum(Path(p)) if Path(p).exists() else p for p in v]]
                       for k, v in sorted(others.items())]
            key = hashlib.sha256(json.dumps([key, inputs, asn_info] + ([route.asn_type] if route.integrations else [])
                                            ).encode()).hexdigest()
        hit = cache_lookup(out, root, stage, key)
        progress.emit("stage", key=src.name, stage=stage, reused=bool(hit))
        res.stages.append(stage)
        if hit:
            res.reused.append(stage)
            res.products += [Reused(p) for p in hit]
            show_reuse(stage, f"{stage} of {root} reused: input, references, parameters and code unchanged")
        else:
            call_flow(stage_flow, str(current) if raw else model, steps=_stage_steps(steps, stage), config=config,
                      output_dir=str(out), **extra)
            written = written_by_last_run()
            cache_store(out, root, stage, key, written)
            res.products += written
        del model
        _release_memory()  # the next stage starts from the process's floor, not from this one's high-water mark
        current = out / f"{root}_{product}.fits"
        if not current.exists():
            raise InputFileError(src, f"{stage} made no _{product} product, which its association "
                                      f"({route.asn_type}{', per integration' if route.integrations else ''}) needs")
    res.cal = str(current)
    res.ok = True
    res.seconds = time.perf_counter() - t0
    progress.emit("end", key=src.name, status="reused" if res.reused and len(res.reused) == len(work) else "done")
    return res


@task(name="member", task_run_name=_member_task_name, cache_policy="NONE", persist_result=False)
def member_task(path: str, output_dir: str, steps: dict | None, config: str | None,
                backgrounds: list[str] | None = None, until: str = "image2",
                asn_info: tuple[str, str] | None = None, asn_type: str | None = None, named: str | None = None,
                members: dict | None = None) -> MemberResult:
    """Run one member's exposure flow; a failure is captured, never lost, and never stops the others."""
    t0 = time.perf_counter()
    try:
        return call_flow(calibrate_member, path, output_dir, steps=steps, config=config, backgrounds=backgrounds,
                         until=until, asn_info=asn_info, asn_type=asn_type, named=named, members=members)
    except WebbflowError as exc:
        from . import progress

        progress.emit("end", key=Path(path).name, status="FAILED")
        return MemberResult(member=Path(path).name, ok=False, error=str(exc), seconds=time.perf_counter() - t0)
    except Exception as exc:  # noqa: BLE001 - reported per member; the traceback goes to the log
        log.exception("member %s failed", path)
        return MemberResult(member=Path(path).name, ok=False, error=f"{type(exc).__name__}: {exc}",
                            seconds=time.perf_counter() - t0)


# untracked runs take members this many at a time (run_association sets it from max_workers); by
# default one: one exposure's ramp, references and intermediate arrays in memory at a time, as in
# jwst's one-exposure-per-command runs (the compiled kernels use the cores within an exposure)
_PLAIN_WORKERS: contextvars.ContextVar[int | None] = contextvars.ContextVar("webbflow_plain_workers", default=None)
_PLAIN_POOLS: dict[int, ThreadPoolExecutor] = {}


def submit_member(*args, **kwargs):
    """``member_task`` on the flow run's task runner inside a Prefect run; outside one (an untracked
    run) in this thread, or with ``max_workers`` > 1 on a plain thread pool of this process, with the
    same result objects (``.result()``)."""
    if in_prefect_run():
        return as_prefect(member_task).submit(*args, **kwargs)
    n = _PLAIN_WORKERS.get() or 1
    if n == 1:
        from concurrent.futures import Future

        done: Future = Future()
        done.set_result(member_task.fn(*args, **kwargs))  # failures come back as a MemberResult
        _release_memory()
        return done
    pool = _PLAIN_POOLS.get(n)
    if pool is None:
        pool = _PLAIN_POOLS[n] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="webbflow-member")
    return pool.submit(member_task.fn, *args, **kwargs)


def _release_memory() -> None:
    """Between members: collect the last member's models and give the freed heap back to the system,
    so that the next member and Stage 3 start from the process's floor, not from its high-water mark."""
    import gc

    from .stage import trim_heap

    gc.collect()
    trim_heap()


# ---------------------------------------------------------------------------
# the association flow


@dataclass
class AssociationResult:
    asn: str
    members: list[MemberResult]
    stage3: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    backgrounds: list[MemberResult] = field(default_factory=list)  # level-2 backgrounds brought to rate files

    @property
    def failed(self) -> list[MemberResult]:
        return [m for m in self.members if not m.ok]


def make_task_runner(runner: str | None = None, max_workers: int | None = None, address: str | None = None):
    """threads (default), processes, or dask (an existing scheduler at ``address``, else a LocalCluster)."""
    from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

    runner = (runner or "threads").lower()
    n = max_workers or min(4, os.cpu_count() or 2)
    if runner == "threads":
        return ThreadPoolTaskRunner(max_workers=n)
    if runner == "processes":
        return ProcessPoolTaskRunner(max_workers=n)
    if runner == "dask":
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError:
            raise WebbflowError("--runner dask needs the dask extra: pip install 'webbflow[dask]'") from None
        if address:
            return DaskTaskRunner(address=address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": n, "threads_per_worker": 1, "processes": True})
    raise WebbflowError(f"unknown runner {runner!r}; use threads, processes or dask")


@flow(name="association", flow_run_name=_asn_run_name, validate_parameters=False, persist_result=False)
def process_association(
    asn_path: str,
    output_dir: str | None = None,
    steps: dict | None = None,
    config: str | None = None,
    stage3: bool = True,
    allow_partial: bool = False,
) -> AssociationResult:
    """Fan an association's members out to exposure flows, join, and make the Stage 3 products.

    ``steps`` is keyed by stage: ``{"detector1": {...}, "image2": {...}, "image3": {...}}``.
    """
    t0 = time.perf_counter()
    asn, folder = load_asn(asn_path)
    out = Path(output_dir) if output_dir else folder
    out.mkdir(parents=True, exist_ok=True)
    pipeline3 = stage3_pipeline(asn, asn_path) if asn.level == 3 else None
    kinds3 = STAGE3_MEMBERS.get(pipeline3, ())
    if stage3 and pipeline3:  # refused before anything is made: no partial product
        for prod in asn.products[:1] if pipeline3 == "ami3" else asn.products:
            kinds = {m.exptype.lower() for m in prod.members}
            missing = [k for k in STAGE3_REQUIRED.get(pipeline3, ()) if k not in kinds]
            if missing:
                label = _KIND_LABEL.get(missing[0], missing[0])
                raise InputFileError(asn_path, f"product {prod.name!r} has no {label} member")
    # each product's own members of the types its Stage 3 flow takes (jwst's image3 takes science
    # members only; coron3 and ami3 their psf members too, spec3 its backgrounds), as the
    # association names them and as they exist now; a level-2 product's background members are
    # brought to rate files first and go to its science member's bkg_subtract, its other members
    # (sourcecat, segmap, direct_image: level-3 products) to spec2 as they are
    science: dict[int, list[Path]] = {}
    background: dict[int, list[Path]] = {}
    named: dict[Path, Path] = {}
    wanted: dict[int, list[tuple[str, Path]]] = {}  # product -> (member type, file it names)
    others: dict[int, dict[str, list[Path]]] = {}
    source_of: dict[Path, Path] = {}  # file a member names -> the file its stages start from
    for i, prod in enumerate(asn.products):
        for m in prod.members:
            kind = m.exptype.lower()
            if asn.level == 2 and kind not in ("science", "background"):
                others.setdefault(i, {}).setdefault(kind, []).append(member_path(asn_path, folder, m.expname))
                continue
            if not (kind in kinds3 or (asn.level == 2 and kind in ("science", "background"))):
                continue
            want = member_path(asn_path, folder, m.expname)
            p = earliest_available(want)
            named.setdefault(p, want)
            source_of[want] = p
            wanted.setdefault(i, []).append((kind, want))
            group = background if kind == "background" and asn.level == 2 else science
            if p not in group.setdefault(i, []):
                group[i].append(p)
    if asn.level == 2 and others:  # WFSS: the direct image's level-3 products, made first where missing
        from ._spec2_grism import make_level3_members

        others = make_level3_members(asn_path, folder, out, others, steps=steps, config=config)
    # a level-3 association's members made from raw files go through their level-2 pipeline as
    # their level-2 associations (in the same folder) say, as jwst's users run them: with their
    # backgrounds, and recording that association
    level2 = level2_products(folder) if asn.level == 3 else {}
    l2_others = level2_others(folder) if asn.level == 3 else {}
    l2_info: dict[Path, tuple[str, str]] = {}
    for i, ps in science.items():
        for p in ps:
            hit = level2.get(root_of(p.name))
            if hit is not None and needs_work(p):
                l2_info[p] = hit[0]
                background.setdefault(("l2", p), []).extend(
                    b for b in (earliest_available(b) for b in hit[1]) if b not in background.get(("l2", p), []))
    bkg_paths = list(dict.fromkeys(p for ps in background.values() for p in ps))
    bkg_results = [f.result() for f in [submit_member(str(p), str(out), steps, config, until="detector1",
                                                      **_route_kw(asn, named.get(p, p), p))
                                        for p in bkg_paths]]
    bkg_rate = {p: r.cal for p, r in zip(bkg_paths, bkg_results)}
    members: list[Path] = []
    member_bkg: dict[Path, list[str]] = {}
    member_others: dict[Path, dict[str, list[Path]]] = {}
    for i in sorted(science):
        for p in science[i]:
            if p not in members:
                members.append(p)
                member_bkg[p] = [bkg_rate[b] for b in background.get(i, []) + background.get(("l2", p), [])
                                 if bkg_rate.get(b)]
                member_others[p] = others.get(i, {})
                if asn.level == 3 and needs_work(p) and root_of(p.name) in l2_others:  # WFSS: as its spec2 association
                    from ._spec2_grism import make_level3_members

                    member_others[p] = make_level3_members(asn_path, folder, out, {0: l2_others[root_of(p.name)]},
                                                           steps=steps, config=config)[0]
    info = (asn.asn_pool or " ", Path(asn_path).name) if asn.level == 2 else None
    futures = [submit_member(str(p), str(out), steps, config, backgrounds=member_bkg[p] or None,
                             asn_info=l2_info.get(p, info), **_route_kw(asn, named.get(p, p), p),
                             **({"members": member_others[p]} if member_others[p] else {}))
               for p in members]
    results = [r for r in bkg_results if not r.ok] + [f.result() for f in futures]
    for r in results:
        if not r.ok:
            log.error("member %s failed: %s", r.member, r.error)
    res = AssociationResult(asn=str(asn_path), members=results, backgrounds=bkg_results)
    failed = res.failed
    if stage3 and asn.level == 3 and (not failed or allow_partial):
        from ..refs._ref_cache import drop_kept

        drop_kept()  # the members' references (detector1's full-frame darks and the like) are not Stage 3's
        _release_memory()
        # the file each member names -> the file made for it (or found): several members may name
        # products of one exposure (its cal as science, its x1d as a spec3 background)
        result_of = dict(zip(members, results[len(results) - len(members):]))
        made: dict[Path, str] = {}
        for want, p in source_of.items():
            r = result_of.get(p)
            if r is None or not r.ok or not r.cal:
                continue
            if needs_work(want):  # an association naming raw files: what the member's stages made
                made[want] = r.cal
            elif want.exists():  # the file the association names, there already
                made[want] = str(want)
            elif (out / want.name).exists():  # the named file, made into the output folder
                made[want] = str(out / want.name)
            else:
                made[want] = r.cal
        for i, prod in enumerate(asn.products):
            if pipeline3 == "ami3" and i > 0:
                break  # jwst's ami3 runs the association's first product
            inputs: dict[str, list[str]] = {}
            for kind, want in wanted.get(i, []):
                if want in made and made[want] not in inputs.get(kind, []):
                    inputs.setdefault(kind, []).append(made[want])
            if not inputs.get("science"):
                continue
            _stage3_product(res, pipeline3, asn, asn_path, prod, inputs, steps, config, out)
    res.seconds = time.perf_counter() - t0
    from .observe import publish_association

    publish_association(res)  # however the run was started: members table and summary
    if failed:
        lines = "; ".join(f"{r.member}: {r.error}" for r in failed)
        kept = len(results) - len(failed)
        raise AssociationFailed(
            f"{Path(asn_path).name}: {len(failed)} of {len(results)} members failed ({lines}); "
            f"the other {kept} members' products are kept in {out}"
            + ("" if allow_partial or asn.level == 2 else "; Stage 3 was not made (use --allow-partial to make it from the rest)"),
            res,
        )
    return res


# the member types each Stage 3 flow takes, by association type
STAGE3_MEMBERS = {"image3": ("science",), "spec3": ("science", "background"), "tso3": ("science",),
                  "coron3": ("science", "psf"), "ami3": ("science", "psf"), "wfs-image3": ("science",)}


# the member types each Stage 3 flow cannot do without
STAGE3_REQUIRED = {"coron3": ("psf", "science")}
_KIND_LABEL = {"psf": "PSF-reference (psf)"}


def stage3_pipeline(asn: Association, asn_path=None) -> str:
    """The Stage 3 flow of a level-3 association, from its asn_type (image3 when it has none)."""
    t = (asn.asn_type or "image3").lower()
    if t not in STAGE3_MEMBERS:
        raise InputFileError(asn_path or "association", f"is a level-3 {t!r} association; webbflow's Stage 3 "
                                                          f"flows are {', '.join(STAGE3_MEMBERS)}")
    return t


def _route_kw(asn: Association, want: Path, src: Path) -> dict:
    """What the association says of a member's route beyond its header (calibrate_member's asn_type and
    named), given only when it says more: image2 and image3 members follow their headers, unless the
    association names a per-integration product."""
    kw = {}
    if (asn.asn_type or "").lower() not in ("", "image2", "image3"):
        kw["asn_type"] = asn.asn_type
    ints = _stem(want).endswith(_INTS_SUFFIXES)
    if want != src and (kw or ints):
        kw["named"] = want.name
    return kw


def _stage3_product(res: AssociationResult, pipeline: str, asn: Association, asn_path, prod, inputs: dict,
                    steps: dict | None, config, out: Path) -> None:
    """One level-3 product through its Stage 3 flow, reused when its inputs, parameters and code are unchanged."""
    from . import progress
    from .stage import Reused, show_reuse

    root = _product_root(prod.name)
    stage_steps = (steps or {}).get(pipeline)
    if pipeline == "image3":
        key = stage3_key(inputs["science"], stage_steps, config)
    else:
        key = stage3_key([p for kind in sorted(inputs) for p in inputs[kind]], stage_steps, config, pipeline)
        key = hashlib.sha256(json.dumps([key, {k: len(v) for k, v in sorted(inputs.items())}]).encode()).hexdigest()
    hit = cache_lookup(out, root, pipeline, key)
    label = f"{pipeline} {root}"
    progress.emit("begin", key=label, label=root)
    progress.emit("stage", key=label, stage=pipeline, reused=bool(hit))
    if hit:
        cat = next((p for p in hit if p.endswith("_cat.ecsv")), None)
        res.stage3[prod.name] = {"written": [Reused(p) for p in hit], "catalog": cat, "reused": True}
        show_reuse(pipeline, f"{pipeline} of {root} reused: inputs, parameters and code unchanged")
        progress.emit("end", key=label, status="reused")
        return
    common = dict(steps=stage_steps, config=config, output_dir=str(out))
    named3 = dict(product_name=prod.name, asn_id=asn.asn_id, asn_pool=asn.asn_pool,
                  asn_table_name=Path(asn_path).name, **common)
    sci = inputs["science"]
    if pipeline == "image3":
        from . import calwebb_image3

        image3 = plain(calwebb_image3, "image3")

        done = call_flow(image3, sci, product_name=root, asn_id=asn.asn_id,
                         asn_info=(asn.asn_pool or " ", Path(asn_path).name), **common)
    elif pipeline == "coron3":
        from . import calwebb_coron3

        coron3 = plain(calwebb_coron3, "coron3")

        done = call_flow(coron3, sci, inputs.get("psf", []), **named3)
    elif pipeline == "ami3":
        from . import calwebb_ami3

        ami3 = plain(calwebb_ami3, "ami3")

        done = call_flow(ami3, sci, inputs.get("psf", []), **named3)
    elif pipeline == "tso3":
        from . import calwebb_tso3

        tso3 = plain(calwebb_tso3, "tso3")

        done = call_flow(tso3, sci, **named3)
    elif pipeline == "spec3":
        from . import calwebb_spec3

        spec3 = plain(calwebb_spec3, "spec3")

        done = call_flow(spec3, sci, backgrounds=inputs.get("background", []), **named3)
    else:  # wfs-image3: the product's pair
        from . import calwebb_wfs_image3

        wfs_image3 = plain(calwebb_wfs_image3, "wfs_image3")

        done = call_flow(wfs_image3, [(prod.name, sci)], asn_pool=asn.asn_pool, asn_table_name=Path(asn_path).name,
                         **common)
    res.stage3[prod.name] = (done if pipeline == "image3"
                             else {"written": list(done.get("written", [])), "catalog": None})
    cache_store(out, root, pipeline, key, [str(p) for p in done.get("written", [])])
    progress.emit("end", key=label, status="done")


class AssociationFailed(WebbflowError):
    def __init__(self, message: str, result: AssociationResult):
        super().__init__(message)
        self.result = result


def _product_root(name: str) -> str:
    n = Path(name).name
    for ext in (".fits", ".json"):
        if n.endswith(ext):
            n = n[: -len(ext)]
    return n


def run_association(asn_path, *, output_dir=None, steps=None, config=None, stage3=True, allow_partial=False,
                    runner=None, max_workers=None, address=None) -> AssociationResult:
    """Run the association flow with the chosen task runner (used by the CLI and the demo).

    With no Prefect API configured (``stage.prefect_tracking``) and the default thread runner, the
    flow's body runs untracked: the same members, stages, caching and products, as plain calls, one
    member at a time (``max_workers`` > 1: that many on a thread pool), without Prefect's temporary
    server (5-11 s, and most of an unchanged rerun)."""
    from ..refs._ref_cache import reference_cache
    from .stage import prefect_tracking, quiet_prefect_settings

    if (runner or "threads").lower() == "threads" and not prefect_tracking() and not in_prefect_run():
        from . import _rerun

        kw = dict(steps=steps, config=config, stage3=stage3, allow_partial=allow_partial)
        out = Path(output_dir) if output_dir else Path(asn_path).resolve().parent
        hit = _rerun.lookup(asn_path, out, **kw)
        if hit is not None:
            _show_reused(hit)
            return hit
        _rerun.record_path(asn_path, out).unlink(missing_ok=True)
        if (max_workers or 1) > 1:
            warm_up_readers()  # members start together on threads
        else:  # one member at a time in this thread: no first reads to race, no step it does not run to import
            _freeze_startup_objects()
        token = _PLAIN_WORKERS.set(max_workers or None)
        try:
            with reference_cache():  # each reference file parsed once for the whole run
                res = process_association.fn(str(asn_path), output_dir=str(output_dir) if output_dir else None, **kw)
        finally:
            _PLAIN_WORKERS.reset(token)
        _rerun.store(res, asn_path, out, **kw)
        return res
    fl = as_prefect(process_association).with_options(task_runner=make_task_runner(runner, max_workers, address))
    with quiet_prefect_settings():
        return fl(str(asn_path), output_dir=str(output_dir) if output_dir else None, steps=steps, config=config,
                  stage3=stage3, allow_partial=allow_partial)


_WARM = False


def warm_up_readers() -> None:
    """Import the steps and let asdf load its extensions and the transform and WCS converters, once, in
    this thread, before members start together on threads: a first ASDF read racing another thread's
    first one failed once here ("dictionary changed size during iteration" opening a distortion file).
    A run taking its members one at a time does without (importing every step module costs ~0.7 s of
    CPU and 10 MiB)."""
    global _WARM
    if _WARM:
        return
    import io

    import asdf
    from astropy.modeling import models as am
    from gwcs import coordinate_frames as cf
    from gwcs import wcs as gw

    from ..models.io import load_asdf_extensions
    from ..tasks import load_all

    load_all()
    load_asdf_extensions()
    transform = (am.Shift(1.0) & am.Shift(2.0)) | am.Mapping((0, 1, 0, 1)) | (
        am.Polynomial2D(1) & am.Polynomial2D(1)) | am.Scale(1.0) & am.Scale(1.0) | am.Pix2Sky_TAN() | (
        am.RotateNative2Celestial(10.0, 20.0, 180.0))
    from astropy.coordinates import ICRS

    world = cf.CelestialFrame(reference_frame=ICRS(), name="world")
    wcs = gw.WCS([(cf.Frame2D(name="detector"), transform), (world, None)])
    buf = io.BytesIO()
    asdf.AsdfFile({"wcs": wcs}).write_to(buf)
    buf.seek(0)
    with asdf.open(buf, lazy_load=False, memmap=False) as af:
        af.tree["wcs"].forward_transform
    _freeze_startup_objects()
    _WARM = True


def _freeze_startup_objects() -> None:
    """Move the objects alive now (the modules imported so far, their classes, schemas and compiled kernels'
    dispatchers: some 300,000 objects) out of the cyclic garbage collector's reach, once per process.

    They live as long as the process anyway, but every full collection walked them all again: about 0.16 s
    of CPU for each of the collections :func:`_release_memory` makes between stages (two per member), and for
    Python's own full collections.  Objects made later are collected as before."""
    import gc

    gc.collect()
    gc.freeze()


def _show_reused(res: AssociationResult) -> None:
    """The progress display of a run found unchanged as a whole: every member and product reused."""
    from . import progress

    for m in res.members:
        progress.emit("begin", key=m.member, label=root_of(m.member))
        for stage in m.stages:
            progress.emit("stage", key=m.member, stage=stage, reused=True)
        progress.emit("end", key=m.member, status="reused")
    try:
        pipeline = stage3_pipeline(load_asn(res.asn)[0], res.asn)
    except InputFileError:
        pipeline = "image3"
    for name in res.stage3:
        root = _product_root(name)
        progress.emit("begin", key=f"{pipeline} {root}", label=root)
        progress.emit("stage", key=f"{pipeline} {root}", stage=pipeline, reused=True)
        progress.emit("end", key=f"{pipeline} {root}", status="reused")


# ---------------------------------------------------------------------------
# `webbflow run <stage-3 pipeline> ASN` from raw files


def steps_by_stage(steps: dict | None, pipeline: str) -> dict[str, dict]:
    """A Stage 3 command line's step settings, flat as strun takes them, keyed by the stage they belong to:
    the Stage 3 flow's own steps first, then level 2 (image2 and spec2 alike), then detector1."""
    if not steps:  # nothing to sort: the earlier stages' flow modules are not imported for their step lists
        return {"detector1": {}, "image2": {}, "spec2": {}, pipeline: {}}
    from ..errors import ParameterError, did_you_mean
    from .calwebb_detector1 import ALL_STEPS as D1
    from .calwebb_image2 import STEPS as I2
    from .calwebb_spec2 import BRANCHES

    S3 = stage3_steps(pipeline)
    S2 = list(dict.fromkeys(s for b in BRANCHES.values() for s in b.steps))
    out: dict[str, dict] = {"detector1": {}, "image2": {}, "spec2": {}, pipeline: {}}
    from .stage import PIPELINE_STEP_NAMES

    for name, values in (steps or {}).items():
        name = PIPELINE_STEP_NAMES.get(name, name) if name not in S3 else name
        if name in S3:
            out[pipeline][name] = values
        elif name in I2 or name in S2:
            for stage, names in (("image2", I2), ("spec2", S2)):
                if name in names:
                    out[stage][name] = values
        elif name in D1:
            out["detector1"][name] = values
        else:
            known = list(dict.fromkeys(list(D1) + list(I2) + S2 + list(S3)))
            raise ParameterError(f"unknown step {name!r}{did_you_mean(name, known)} for {pipeline} "
                                 "and the stages before it")
    return out


def run_from_raw(input_path, pipeline: str, *, output_dir=None, steps=None, config=None) -> list[str] | None:
    """``webbflow run <pipeline> ASN`` when a member the pipeline takes is not made yet (or the
    association flow made its products in ``output_dir`` before, so that an unchanged rerun reuses
    them): the association flow, which makes the members from their rate or uncal files through
    detector1 and their level-2 pipeline, then (level 3) the Stage 3 flow, each cached.
    None when every member is there and the pipeline's own runner can take them as they are."""
    from . import _rerun

    if not str(input_path).lower().endswith(".json"):
        return None
    asn, folder = load_asn(input_path)
    out = Path(output_dir) if output_dir else folder
    if asn.level == 2:
        if pipeline not in ("image2", "spec2"):
            return None
        kinds, stage3 = ("science", "background"), False
        keys = [(root_of(m.expname), s) for prod in asn.products for m in prod.members for s in ("image2", "spec2")]
        by_stage = level2_steps(steps)
    else:
        if (asn.asn_type or "image3").lower() != pipeline:
            return None
        kinds, stage3 = STAGE3_MEMBERS[pipeline], True
        keys = [(_product_root(prod.name), pipeline) for prod in asn.products]
        by_stage = steps_by_stage(steps, pipeline)
    wanted = [member_path(input_path, folder, m.expname) for prod in asn.products for m in prod.members
              if m.exptype.lower() in kinds]
    made_here_before = _rerun.record_path(input_path, out).exists() or any(
        _cache_file(out, root, stage).exists() for root, stage in keys)
    if all(p.exists() for p in wanted) and not made_here_before:
        return None
    res = run_association(input_path, output_dir=out, steps=by_stage, config=config, stage3=stage3)
    written = [p for m in list(res.backgrounds) + list(res.members) for p in m.products]
    for prod in res.stage3.values():
        written += prod.get("written", [])
    return list(dict.fromkeys(written))


def level2_steps(steps: dict | None) -> dict[str, dict]:
    """A level-2 command line's step settings, keyed by stage: detector1's own, and the rest for the
    member's level-2 pipeline (image2 or spec2, whichever its route is)."""
    from .calwebb_detector1 import ALL_STEPS as D1

    steps = dict(steps or {})
    level2 = {k: v for k, v in steps.items() if k not in D1}
    return {"detector1": {k: v for k, v in steps.items() if k in D1}, "image2": level2, "spec2": dict(level2)}


_prefect.lazy_module(__name__)
