"""Per-slit fan-out of spec2's slit steps, and the join.

Inside a Prefect flow run (:func:`flows.stage.prefect_tracking`), :func:`run_slit_steps` runs a chain of
steps on each slit of a MultiSlitModel as its own task run (``slit <name> [<steps>]``, mapped over the
slits on the flow's task runner), then joins the slits, in their order, into one model: the exposure's
metadata with each step's status merged (COMPLETE when it completed on any slit, as jwst's steps record a
status for the whole model), and one step record per step, as the whole-model run gives.  Outside a flow
run the steps run on the whole model, as plain calls: the same products either way (checked in
tests/test_nirspec_msa_sim.py).

Only steps that treat each slit on its own may be fanned out: those of :data:`PER_SLIT` (jwst loops over
the slits in each of them); master_background_mos, which builds one background from all the slitlets,
runs on the whole model before.
"""

from __future__ import annotations

from .stage import StageRun, StepRecord, _execute, _record_version, run_steps

# steps whose work on one slit depends on that slit alone (and on the exposure's metadata)
PER_SLIT = frozenset({"srctype", "wavecorr", "flat_field", "pathloss", "barshadow", "photom", "resample_spec",
                      "extract_1d"})


def with_slits(model, slits, exp_type=None):
    """A MultiSlitModel with ``model``'s metadata (a copy) and the given slits (shared, not copied)."""
    held = model.slits
    object.__setattr__(model, "slits", [])
    try:
        part = model.copy(share_arrays=True)
    finally:
        object.__setattr__(model, "slits", held)
    part.slits.extend(slits)
    if exp_type is not None:
        part.meta.exposure.type = exp_type
    return part


def copy_sharing_wcs(model, share_arrays: bool = False):
    """A copy of a MultiSlitModel whose slits share their WCS objects with ``model``'s (not deep-copied: a
    hundred slitlets' gWCSs took most of the copy's time), or of a SlitModel sharing its WCS; for steps
    that only evaluate the WCSs."""
    held = [(s, s.meta.wcs) for s in getattr(model, "slits", None) or ()]
    top = model.meta.wcs
    for s, _ in held:
        s.meta.wcs = None
    model.meta.wcs = None
    try:
        new = model.copy(share_arrays=share_arrays)
    finally:
        for s, w in held:
            s.meta.wcs = w
        model.meta.wcs = top
    for s, (_, w) in zip(getattr(new, "slits", None) or (), held):
        s.meta.wcs = w
    new.meta.wcs = top
    return new


def _slit_chain(part, names, params, references):
    """The task body: ``names`` on a one-slit model, as plain calls; returns (model, step results)."""
    results = []
    for name in names:
        res = _execute(name, part, params[name], references.get(name, {}))
        part = res.model
        results.append(res)
    return part, results


_TASK = None


def _slit_task():
    global _TASK
    if _TASK is None:
        from prefect import task
        from prefect.cache_policies import NONE

        _TASK = task(name="slit", cache_policy=NONE, persist_result=False, log_prints=False)(_slit_chain)
    return _TASK


def _items(model) -> list:
    return list(getattr(model, "slits", None) or getattr(model, "spec", None) or [])


def _join(parts, names, run: StageRun, results_per_part, label: str):
    """One model from the per-slit parts: their slits (or spectra) in order, the first part's metadata with
    each step's cal_step merged, one record per step."""
    from .. import models

    first = parts[0]
    items = [it for p in parts for it in _items(p)]
    if isinstance(first, models.MultiSlitModel):
        joined = with_slits(first, items)
    else:  # extract_1d's MultiSpecModel
        joined = first.copy(share_arrays=True)
        object.__setattr__(joined, "spec", items)
    for i, name in enumerate(names):
        res = [rs[i] for rs in results_per_part]
        statuses = [getattr(p.meta.cal_step, _cal_step_field(name), None) for p in parts]
        if "COMPLETE" in statuses:
            setattr(joined.meta.cal_step, _cal_step_field(name), "COMPLETE")
        status = "COMPLETE" if any(r.status == "COMPLETE" for r in res) else res[0].status
        run.records.append(StepRecord(name, status, sum(r.seconds for r in res), res[0].references,
                                      reason=res[0].reason, qa=dict(res[0].qa), label=label))
        if not run.params[name].skip:
            _record_version(joined, res[0].references, run.context)
    return joined


def _cal_step_field(name: str) -> str:
    from ..tasks.base import STEPS

    return STEPS[name].cal_step or name


def run_slit_steps(model, names: list[str], run: StageRun, *, output_dir=None, source_name=None, label=""):
    """``names`` on ``model``: per slit as mapped Prefect task runs inside a flow run (joined), else on the
    whole model (:func:`flows.stage.run_steps`)."""
    from prefect.context import FlowRunContext

    from .. import models

    names = list(names)
    fan = (FlowRunContext.get() is not None and names and set(names) <= PER_SLIT
           and isinstance(model, models.MultiSlitModel) and len(model.slits) > 1
           and not any(run.params[n].save_results for n in names))
    if not fan:
        return run_steps(model, names, run, output_dir=output_dir, source_name=source_name, label=label)
    parts = [with_slits(model, [s]) for s in model.slits]
    t = _slit_task()
    futures = [t.with_options(task_run_name=f"slit {s.name} [{', '.join(names)}]").submit(
        p, names, run.params, run.references) for p, s in zip(parts, model.slits)]
    done = [f.result() for f in futures]
    return _join([d[0] for d in done], names, run, [d[1] for d in done], label)
