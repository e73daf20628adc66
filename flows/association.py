"""Associations: reading them, resolving each member to the work it still needs,
fanning the members out into parallel exposure flows, and joining for Stage 3.

- Reading: JWST ``*_asn.json`` files, level 2 and level 3, validated with pydantic.
- Paths: member paths are relative to the association's folder and never leave it.
- Resolving: ``_uncal`` needs detector1 then image2; ``_rate``/``_rateints`` need
  image2; ``_cal``/``_calints`` need nothing.
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
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NONE
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .. import models
from ..errors import InputFileError, WebbflowError, a_an
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


def work_needed(path: Path) -> list[str]:
    """The stages a member still needs, from its product suffix (or its model class)."""
    stem = path.name.lower()
    for suffix, work in (
        ("_uncal.fits", ["detector1", "image2"]),
        ("_ramp.fits", ["detector1", "image2"]),
        ("_rate.fits", ["image2"]),
        ("_rateints.fits", ["image2"]),
        ("_cal.fits", []),
        ("_calints.fits", []),
        ("_crf.fits", []),
    ):
        if stem.endswith(suffix):
            return work
    cls = models.class_for_file(path)
    if issubclass(cls, models.RampModel):
        return ["detector1", "image2"]
    if cls in (models.ImageModel, models.CubeModel):
        m = models.open(path)
        return [] if m.meta.cal_step.photom == "COMPLETE" else ["image2"]
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


def earliest_available(path: Path) -> Path:
    """A level-3 association names ``_cal`` members; when one is not there yet, take the
    exposure's rate or uncal file from the same folder, so the earlier stages can make it."""
    if path.exists():
        return path
    root = root_of(path.name)
    for suffix in ("cal", "rate", "uncal"):
        alt = path.with_name(f"{root}_{suffix}.fits")
        if alt.exists():
            return alt
    raise InputFileError(path, "no such file (nor its _rate or _uncal file in the association's folder)")


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


def stage3_key(cal_paths: list[str], steps: dict | None, config) -> str:
    """Key of a Stage 3 product: its inputs' checksums, the image3 parameters and the code version."""
    from .calwebb_image3 import STEPS as I3
    from .stage import resolve_params

    params = resolve_params(I3, steps, config)
    doc = {
        "inputs": [file_checksum(Path(p)) for p in cal_paths],
        "params": {n: p.model_dump(mode="json") for n, p in params.items()},
        "code": code_version(),
    }
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


def in_prefect_run() -> bool:
    """Whether this code runs inside a Prefect flow run or task run (in any thread or worker)."""
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def call_flow(fl, *args, **kwargs):
    """A stage flow as a subflow run inside a Prefect run; outside one, its body as a plain call, so that
    an untracked run (no Prefect API, see stage.prefect_tracking) never starts Prefect's temporary server."""
    from prefect import Flow

    if isinstance(fl, Flow) and not in_prefect_run():
        return fl.fn(*args, **kwargs)
    return fl(*args, **kwargs)


@flow(name="exposure", flow_run_name=_member_run_name, validate_parameters=False, persist_result=False)
def calibrate_member(path: str, output_dir: str, steps: dict | None = None, config: str | None = None,
                     backgrounds: list[str] | None = None, until: str = "image2",
                     asn_info: tuple[str, str] | None = None) -> MemberResult:
    """Take one association member as far as a cal product (``until="detector1"``: a rate), reusing
    finished work; ``backgrounds`` (rate files) go to image2's bkg_subtract, as in a level-2
    association; ``asn_info`` = (pool, association file name) is recorded in image2's products."""
    from . import progress
    from .calwebb_detector1 import detector1, detector1_last_run
    from .calwebb_image2 import image2, image2_last_run
    from .stage import Reused, show_reuse

    t0 = time.perf_counter()
    src = Path(path)
    out = Path(output_dir)
    res = MemberResult(member=src.name, ok=False)
    progress.emit("begin", key=src.name, label=root_of(src.name))
    work = work_needed(src)
    current = src
    stages = (
        ("detector1", detector1, lambda: list(detector1_last_run[-1].written), "rate"),
        ("image2", image2, lambda: [p for r in image2_last_run for p in r.written], "cal"),
    )
    for stage, stage_flow, written_by_last_run, product in stages:
        if stage not in work or (until == "detector1" and stage == "image2"):
            continue
        root = root_of(current.name)
        model = models.open(current)
        key = stage_key(stage, current, model, _stage_steps(steps, stage), config, seen=res.references)
        extra = {}
        if stage == "image2" and (backgrounds or asn_info):
            extra = {"backgrounds": list(backgrounds or []), "asn_info": asn_info}
            key = hashlib.sha256(json.dumps([key, [file_checksum(Path(b)) for b in backgrounds or []],
                                             asn_info]).encode()).hexdigest()
        hit = cache_lookup(out, root, stage, key)
        progress.emit("stage", key=src.name, stage=stage, reused=bool(hit))
        res.stages.append(stage)
        if hit:
            res.reused.append(stage)
            res.products += [Reused(p) for p in hit]
            show_reuse(stage, f"{stage} of {root} reused: input, references, parameters and code unchanged")
        else:
            call_flow(stage_flow, model, steps=_stage_steps(steps, stage), config=config, output_dir=str(out), **extra)
            written = written_by_last_run()
            cache_store(out, root, stage, key, written)
            res.products += written
        del model
        current = out / f"{root}_{product}.fits"
    res.cal = str(current)
    res.ok = True
    res.seconds = time.perf_counter() - t0
    progress.emit("end", key=src.name, status="reused" if res.reused and len(res.reused) == len(work) else "done")
    return res


@task(name="member", task_run_name=_member_task_name, cache_policy=NONE, persist_result=False)
def member_task(path: str, output_dir: str, steps: dict | None, config: str | None,
                backgrounds: list[str] | None = None, until: str = "image2",
                asn_info: tuple[str, str] | None = None) -> MemberResult:
    """Run one member's exposure flow; a failure is captured, never lost, and never stops the others."""
    t0 = time.perf_counter()
    try:
        return call_flow(calibrate_member, path, output_dir, steps=steps, config=config, backgrounds=backgrounds,
                         until=until, asn_info=asn_info)
    except WebbflowError as exc:
        from . import progress

        progress.emit("end", key=Path(path).name, status="FAILED")
        return MemberResult(member=Path(path).name, ok=False, error=str(exc), seconds=time.perf_counter() - t0)
    except Exception as exc:  # noqa: BLE001 - reported per member; the traceback goes to the log
        log.exception("member %s failed", path)
        return MemberResult(member=Path(path).name, ok=False, error=f"{type(exc).__name__}: {exc}",
                            seconds=time.perf_counter() - t0)


# untracked runs fan members out on plain threads, this many at a time (run_association sets it)
_PLAIN_WORKERS: contextvars.ContextVar[int | None] = contextvars.ContextVar("webbflow_plain_workers", default=None)
_PLAIN_POOLS: dict[int, ThreadPoolExecutor] = {}


def submit_member(*args, **kwargs):
    """``member_task`` on the flow run's task runner inside a Prefect run; outside one (an untracked
    run) on a plain thread pool of this process, with the same result objects (``.result()``)."""
    if in_prefect_run():
        return member_task.submit(*args, **kwargs)
    n = _PLAIN_WORKERS.get() or min(4, os.cpu_count() or 2)
    pool = _PLAIN_POOLS.get(n)
    if pool is None:
        pool = _PLAIN_POOLS[n] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="webbflow-member")
    return pool.submit(member_task.fn, *args, **kwargs)


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
    # each product's own science members; a level-2 product's background members are brought to
    # rate files first and go to its science member's bkg_subtract (jwst's image3 takes science
    # members only)
    science: dict[int, list[Path]] = {}
    background: dict[int, list[Path]] = {}
    for i, prod in enumerate(asn.products):
        for m in prod.members:
            kind = m.exptype.lower()
            if kind == "science" or (kind == "background" and asn.level == 2):
                p = earliest_available(member_path(asn_path, folder, m.expname))
                group = science if kind == "science" else background
                if p not in group.setdefault(i, []):
                    group[i].append(p)
    # a level-3 association's members made from raw files go through image2 as their level-2
    # associations (in the same folder) say, as jwst's users run them: with their backgrounds,
    # and recording that association
    level2 = level2_products(folder) if asn.level == 3 else {}
    l2_info: dict[Path, tuple[str, str]] = {}
    for i, ps in science.items():
        for p in ps:
            hit = level2.get(root_of(p.name))
            if hit is not None and work_needed(p):
                l2_info[p] = hit[0]
                background.setdefault(("l2", p), []).extend(
                    b for b in (earliest_available(b) for b in hit[1]) if b not in background.get(("l2", p), []))
    bkg_paths = list(dict.fromkeys(p for ps in background.values() for p in ps))
    bkg_results = [f.result() for f in [submit_member(str(p), str(out), steps, config, until="detector1")
                                        for p in bkg_paths]]
    bkg_rate = {p: r.cal for p, r in zip(bkg_paths, bkg_results)}
    members: list[Path] = []
    member_bkg: dict[Path, list[str]] = {}
    for i in sorted(science):
        for p in science[i]:
            if p not in members:
                members.append(p)
                member_bkg[p] = [bkg_rate[b] for b in background.get(i, []) + background.get(("l2", p), [])
                                 if bkg_rate.get(b)]
    info = (asn.asn_pool or " ", Path(asn_path).name) if asn.level == 2 else None
    futures = [submit_member(str(p), str(out), steps, config, backgrounds=member_bkg[p] or None,
                                  asn_info=l2_info.get(p, info))
               for p in members]
    results = [r for r in bkg_results if not r.ok] + [f.result() for f in futures]
    for r in results:
        if not r.ok:
            log.error("member %s failed: %s", r.member, r.error)
    res = AssociationResult(asn=str(asn_path), members=results, backgrounds=bkg_results)
    failed = res.failed
    if stage3 and asn.level == 3 and (not failed or allow_partial):
        cal_of = {Path(str(p)).name: r.cal for p, r in zip(members, results[len(results) - len(members):])
                  if r.ok and r.cal}
        if cal_of:
            from .calwebb_image3 import image3

            for i, prod in enumerate(asn.products):
                good = [cal_of[p.name] for p in science.get(i, []) if p.name in cal_of]
                if not good:
                    continue
                root = _product_root(prod.name)
                key = stage3_key(good, (steps or {}).get("image3"), config)
                hit = cache_lookup(out, root, "image3", key)
                from . import progress
                from .stage import Reused, show_reuse

                progress.emit("begin", key=f"image3 {root}", label=root)
                progress.emit("stage", key=f"image3 {root}", stage="image3", reused=bool(hit))
                if hit:
                    cat = next((p for p in hit if p.endswith("_cat.ecsv")), None)
                    res.stage3[prod.name] = {"written": [Reused(p) for p in hit], "catalog": cat, "reused": True}
                    show_reuse("image3", f"image3 of {root} reused: inputs, parameters and code unchanged")
                    progress.emit("end", key=f"image3 {root}", status="reused")
                    continue
                res.stage3[prod.name] = call_flow(image3, good, product_name=root, steps=(steps or {}).get("image3"),
                                                  config=config, output_dir=str(out), asn_id=asn.asn_id,
                                                  asn_info=(asn.asn_pool or " ", Path(asn_path).name))
                cache_store(out, root, "image3", key, list(res.stage3[prod.name].get("written", [])))
                progress.emit("end", key=f"image3 {root}", status="done")
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
    flow's body runs untracked: the same members, stages, caching and products, as plain calls on a
    thread pool, without Prefect's temporary server (5-11 s, and most of an unchanged rerun)."""
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
        warm_up_readers()
        token = _PLAIN_WORKERS.set(max_workers or None)
        try:
            res = process_association.fn(str(asn_path), output_dir=str(output_dir) if output_dir else None, **kw)
        finally:
            _PLAIN_WORKERS.reset(token)
        _rerun.store(res, asn_path, out, **kw)
        return res
    fl = process_association.with_options(task_runner=make_task_runner(runner, max_workers, address))
    with quiet_prefect_settings():
        return fl(str(asn_path), output_dir=str(output_dir) if output_dir else None, steps=steps, config=config,
                  stage3=stage3, allow_partial=allow_partial)


_WARM = False


def warm_up_readers() -> None:
    """Import the steps and let asdf load its extensions and the transform and WCS converters, once, in
    this thread, before members start together on threads: a first ASDF read racing another thread's
    first one failed once here ("dictionary changed size during iteration" opening a distortion file)."""
    global _WARM
    if _WARM:
        return
    import io

    import asdf
    from astropy.modeling import models as am
    from gwcs import coordinate_frames as cf
    from gwcs import wcs as gw

    from ..tasks import load_all

    load_all()
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
    _WARM = True


def _show_reused(res: AssociationResult) -> None:
    """The progress display of a run found unchanged as a whole: every member and product reused."""
    from . import progress

    for m in res.members:
        progress.emit("begin", key=m.member, label=root_of(m.member))
        for stage in m.stages:
            progress.emit("stage", key=m.member, stage=stage, reused=True)
        progress.emit("end", key=m.member, status="reused")
    for name in res.stage3:
        root = _product_root(name)
        progress.emit("begin", key=f"image3 {root}", label=root)
        progress.emit("stage", key=f"image3 {root}", stage="image3", reused=True)
        progress.emit("end", key=f"image3 {root}", status="reused")
