"""A whole observation in one command: raw files (or their pool) in, every product out.

``webbflow run observation DIR_OR_POOL``:

1. makes the pool from the raw exposures' headers (``*_uncal.fits`` in DIR, as
   ``webbflow asn pool`` does) or reads the pool given;
2. generates the associations (as ``webbflow asn generate``) and writes them
   next to the raw files, where their members are;
3. runs every level-2 association (image2, spec2, tso-image2, tso-spec2), fanned out, then
   every level-3 association (image3, spec3, tso3, coron3, ami3, wfs-image3), each through the
   association flow (same caching and resume: a level-3
   association's members reuse the products its level-2 runs made); level-2
   associations that need a level-3 product (WFSS spectra need the direct
   image's catalogue) run after the level-3 ones, and the level-3 associations of their
   exposures (WFSS spec3) after them;
4. association types webbflow cannot calibrate yet are listed, with why, and skipped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from . import _prefect
from ._prefect import flow, task

from ..errors import InputFileError, WebbflowError
from . import registry

log = logging.getLogger("webbflow.flows")

# association types the association flow can run: each level-2 type through its members' level-2
# pipeline (image2 or spec2), each level-3 type through its Stage 3 flow (association.STAGE3_MEMBERS)
RUNNABLE = {"image2", "spec2", "tso-image2", "tso-spec2", "image3", "spec3", "tso3", "coron3", "ami3", "wfs-image3"}
# member types that name products of another association (run those first)
NEEDS_LEVEL3 = {"sourcecat", "segmap", "direct_image"}


@dataclass
class ObservationResult:
    pool: str
    associations: list[str] = field(default_factory=list)
    ran: dict[str, list[str]] = field(default_factory=dict)       # asn file -> products written
    skipped: dict[str, str] = field(default_factory=dict)         # asn file -> why
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def written(self) -> list[str]:
        return list(dict.fromkeys(p for ps in self.ran.values() for p in ps))


def make_observation_pool(folder: Path) -> Path:
    """The pool of the raw exposures in ``folder``, written there as ``<folder>_pool.csv``."""
    from .asn.mkpool import make_pool, write_pool

    raws = sorted(folder.glob("*_uncal.fits"))
    if not raws:
        raise InputFileError(folder, "no raw exposures (*_uncal.fits) in this folder")
    table = make_pool(raws)
    table["filename"] = [Path(f).name for f in table["filename"]]  # members are named relative to the pool
    return write_pool(table, folder / f"{folder.name}_pool.csv")


def plan(asns) -> tuple[list, list, list, dict]:
    """(level 2, level 3, level 2 needing level-3 products then the level 3 of their exposures,
    skipped: name -> why), in run order."""
    first, third, second, skipped = [], [], [], {}
    for a in asns:
        data = a.to_dict()
        if a.asn_type not in RUNNABLE:
            skipped[a.filename] = f"{a.asn_type} associations cannot be calibrated by webbflow yet"
            continue
        why = _no_spec2_branch(a)
        if why:
            skipped[a.filename] = why
            continue
        kinds = {m["exptype"] for p in data["products"] for m in p["members"]}
        if a.rule.level == 2 and kinds & NEEDS_LEVEL3:
            third.append(a)
        elif a.rule.level == 2:
            first.append(a)
        else:
            second.append(a)
    # a level-3 association of such exposures (WFSS spec3) follows them, after its level-2 products exist
    late = [p["name"] for a in third for p in a.to_dict()["products"]]
    for a in [a for a in second if any(m["expname"].startswith(n + "_") for n in late
                                       for p in a.to_dict()["products"] for m in p["members"])]:
        second.remove(a)
        third.append(a)
    return first, second, third, skipped


def _no_spec2_branch(a) -> str | None:
    """Why an association's spectroscopic members cannot go through spec2 yet (None: they can, or
    they are not spectroscopic)."""
    from .association import SPEC2_EXP_TYPES
    from .calwebb_spec2 import BRANCHES

    types = {str(r.get("exp_type") or "").upper() for r in getattr(a, "rows", [])}
    missing = sorted(t for t in types if t in SPEC2_EXP_TYPES and t not in BRANCHES)
    if missing:
        return f"spec2 has no branch for EXP_TYPE {', '.join(missing)} yet"
    return None


@task(name="run-association", cache_policy="NONE", persist_result=False)
def association_task(asn_path: str, output_dir: str, steps: dict | None, config: str | None) -> list[str]:
    from . import association

    kw = dict(output_dir=output_dir, steps=steps_for(asn_path, steps), config=config)
    if _prefect.in_prefect_run():  # a subflow run of the observation's flow run
        res = association.process_association(asn_path, **kw)
    else:  # plain calls, with the association's reuse of unchanged products
        res = association.run_association(asn_path, **kw)
    written = []
    for m in res.members:
        written.extend(str(p) for p in m.products)
    for prod in res.stage3.values():
        written.extend(str(p) for p in prod.get("written", []))
    return written


def _stages() -> set[str]:
    from .association import STAGE3_MEMBERS

    return {"detector1", "image2", "spec2", *STAGE3_MEMBERS}


def _known_steps() -> list[str]:
    from .association import STAGE3_MEMBERS, stage3_steps

    names = [n for names in _level2_names().values() for n in sorted(names)]
    for pipeline in STAGE3_MEMBERS:
        names += stage3_steps(pipeline)
    return list(dict.fromkeys(names))


def check_steps(steps: dict | None) -> None:
    """Step settings for a whole observation, flat as strun takes them (``{step: {param: value}}``)
    or already keyed by stage (``{"detector1": {...}, "image3": {...}}``): a step no stage of any
    pipeline has is refused before anything runs."""
    from ..errors import ParameterError, did_you_mean

    if not steps or set(steps) <= _stages():
        return
    from .stage import PIPELINE_STEP_NAMES

    known = _known_steps()
    for name in steps:
        if PIPELINE_STEP_NAMES.get(name, name) not in known:
            raise ParameterError(f"unknown step {name!r}{did_you_mean(name, known)}: no stage of any pipeline "
                                 "has it")


def steps_for(asn_path: str, steps: dict | None) -> dict | None:
    """One association's share of the observation's step settings, keyed by stage as the association
    flow takes them.  Each stage of the association's chain (detector1, image2 or spec2, and a
    level-3 association's Stage 3 flow) gets the settings of its own steps, so that a step several
    stages have (resample in image2 and image3) is set alike in all of them, and every association
    that reuses a member's level-2 products asks for the same ones."""
    from .association import load_asn, stage3_pipeline, stage3_steps

    if not steps or set(steps) <= _stages():
        return steps
    asn, _ = load_asn(asn_path)
    by_stage = {stage: {k: v for k, v in steps.items() if k in names} for stage, names in _level2_names().items()}
    if asn.level == 3:
        pipeline = stage3_pipeline(asn, asn_path)
        names = set(stage3_steps(pipeline))
        by_stage[pipeline] = {k: v for k, v in steps.items() if k in names}
    return by_stage


def _level2_names() -> dict[str, set[str]]:
    from .calwebb_detector1 import ALL_STEPS as D1
    from .calwebb_image2 import STEPS as I2
    from .calwebb_spec2 import BRANCHES

    return {"detector1": set(D1), "image2": set(I2), "spec2": {s for b in BRANCHES.values() for s in b.steps}}


@flow(name="observation", persist_result=False, validate_parameters=False)
def observation(source: str, output_dir: str | None = None, steps: dict | None = None,
                config: str | None = None) -> ObservationResult:
    """Pool, associations, then level 2 and level 3 in dependency order."""
    from .asn.engine import generate, write_associations
    from .asn.pool import read_pool

    check_steps(steps)
    src = Path(source)
    if not src.exists():
        raise InputFileError(src, "no such folder or pool file")
    pool_path = make_observation_pool(src) if src.is_dir() else src
    folder = pool_path.parent
    out = Path(output_dir) if output_dir else folder
    out.mkdir(parents=True, exist_ok=True)
    asns = generate(read_pool(pool_path))
    paths = write_associations(asns, folder)
    result = ObservationResult(pool=str(pool_path), associations=[str(p) for p in paths])
    first, second, third, result.skipped = plan(asns)
    for name, why in result.skipped.items():
        log.warning("skipping %s: %s", name, why)
    tracked = _prefect.in_prefect_run()
    for batch in (first, second, [a for a in third if a.rule.level == 2], [a for a in third if a.rule.level != 2]):
        args = [(a, (str(folder / a.filename), str(out), steps, config)) for a in batch]
        if tracked:  # a batch's associations as parallel task runs
            futures = [(a, _prefect.as_prefect(association_task).submit(*arg)) for a, arg in args]
            outcomes = [(a, fut.result) for a, fut in futures]
        else:  # an untracked run: one association after the other, each fanning out its own members
            outcomes = [(a, partial(association_task, *arg)) for a, arg in args]
        for a, outcome in outcomes:
            try:
                result.ran[a.filename] = outcome()
            except WebbflowError as exc:
                result.failed[a.filename] = str(exc)
    if result.failed:
        lines = "; ".join(f"{k}: {v}" for k, v in result.failed.items())
        raise WebbflowError(f"{len(result.failed)} of {len(result.ran) + len(result.failed)} associations failed ({lines})")
    return result


@registry.register("observation")
def run_observation_cli(inp, *, output_dir=None, steps=None, config=None, options=None) -> list[str]:
    """``webbflow run observation DIR_OR_POOL``: prints what was skipped, returns what was written."""
    from .stage import prefect_tracking, quiet_prefect_settings

    kwargs = dict(output_dir=str(output_dir) if output_dir else None, steps=steps or None, config=config)
    if prefect_tracking():  # a Prefect API is configured: one flow run, its associations as task runs
        with quiet_prefect_settings():
            res = _prefect.as_prefect(observation)(str(inp), **kwargs)
    else:  # no API: plain calls, neither Prefect nor a temporary server
        res = observation(str(inp), **kwargs)
    print(f"pool {res.pool}: {len(res.associations)} associations, {len(res.ran)} run, {len(res.skipped)} skipped")
    for name, why in res.skipped.items():
        print(f"skipped {name}: {why}")
    return res.written


_prefect.lazy_module(__name__)
