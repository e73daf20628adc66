"""The flows that deployments run: one per stage, the association and reprocessing.

Each is the stage flow's body behind a typed signature: ``steps`` is a pydantic
model of every step's parameters (see :mod:`webbflow.deployments.params`), so
that Prefect's parameter schema, and hence the UI's run form, shows each step's
parameters with their types, defaults, bounds and descriptions.  They have the
stage flows' names (``detector1``, ``image2``, ...), so the UI lists deployed
and command-line runs under the same flow.  Paths are as the worker sees them;
give absolute ones.  CRDS settings come from the worker's environment
(``CRDS_PATH``, ``CRDS_SERVER_URL``, ``CRDS_CONTEXT``) or the run's job
variables (``env``).

Entry points are module paths (``webbflow.deployments.flows.detector1``), so a
process worker runs them wherever webbflow is installed, with no code to pull.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from ..flows.stage import run_name
from .params import (
    AssociationSteps,
    DarkSteps,
    Detector1Steps,
    GuiderSteps,
    Image2Steps,
    Image3Steps,
    steps_dict,
)


def _abs(p: str | None) -> str | None:
    import os

    return os.path.abspath(os.path.expanduser(p)) if p else p


@flow(name="detector1", flow_run_name=run_name("detector1"), persist_result=False, log_prints=True)
def detector1(
    input: str,
    output_dir: str,
    steps: Detector1Steps = Detector1Steps(),
    config: str | None = None,
    save_calibrated_ramp: bool = False,
) -> list[str]:
    """calwebb_detector1: raw ramps (``_uncal``) to count rates (``_rate``, ``_rateints``); returns the files written."""
    from ..flows import calwebb_detector1 as m

    m.detector1.fn(_abs(input), steps=steps_dict(steps) or None, config=_abs(config), output_dir=_abs(output_dir),
                   save_calibrated_ramp=save_calibrated_ramp)
    return list(m.detector1_last_run[-1].written)


@flow(name="image2", flow_run_name=run_name("image2"), persist_result=False, log_prints=True)
def image2(
    input: str,
    output_dir: str,
    steps: Image2Steps = Image2Steps(),
    config: str | None = None,
) -> list[str]:
    """calwebb_image2: a rate file or a level-2 association to ``_cal`` and ``_i2d``; returns the files written."""
    from ..flows import calwebb_image2 as m

    m.image2.fn(_abs(input), steps=steps_dict(steps) or None, config=_abs(config), output_dir=_abs(output_dir))
    return [p for r in m.image2_last_run for p in r.written]


@flow(name="guider", flow_run_name=run_name("guider"), persist_result=False, log_prints=True)
def guider(
    input: str,
    output_dir: str,
    steps: GuiderSteps = GuiderSteps(),
    config: str | None = None,
) -> list[str]:
    """calwebb_guider: an FGS guider-mode exposure to ``_cal``; returns the files written."""
    from ..flows import calwebb_guider as m

    m.guider.fn(_abs(input), steps=steps_dict(steps) or None, config=_abs(config), output_dir=_abs(output_dir))
    return list(m._last[-1].written) if m._last else []


@flow(name="dark", flow_run_name=run_name("dark"), persist_result=False, log_prints=True)
def dark(
    input: str,
    output_dir: str,
    steps: DarkSteps = DarkSteps(),
    config: str | None = None,
) -> list[str]:
    """calwebb_dark: a dark exposure to ``_dark`` (corrected ramps); returns the files written."""
    from ..flows import calwebb_dark as m

    m.dark.fn(_abs(input), steps=steps_dict(steps) or None, config=_abs(config), output_dir=_abs(output_dir))
    return list(m._last[-1].written) if m._last else []


if Image3Steps is not None:

    @flow(name="image3", flow_run_name=run_name("image3"), persist_result=False, log_prints=True)
    def image3(
        input: str | list[str],
        output_dir: str,
        product_name: str | None = None,
        steps: Image3Steps = Image3Steps(),  # type: ignore[valid-type]
        config: str | None = None,
    ) -> list[str]:
        """calwebb_image3: a level-3 association whose ``_cal`` members exist, or a list of ``_cal`` files,
        to the mosaic (``_i2d``), catalogue (``_cat.ecsv``), segmentation map and ``_crf`` files.

        (The ``association`` deployment also runs the earlier stages for members that need them.)
        Returns the files written.
        """
        from ..flows import calwebb_image3 as m

        jobs: list[tuple[list[str], str | None]] = []
        if isinstance(input, str) and input.lower().endswith(".json"):
            from ..errors import InputFileError
            from ..flows.association import _product_root, load_asn, member_path

            asn_path = _abs(input)
            asn, folder = load_asn(asn_path)
            for prod in asn.products:
                cals = [str(member_path(asn_path, folder, mem.expname)) for mem in prod.members
                        if mem.exptype.lower() == "science"]
                missing = [c for c in cals if not Path(c).is_file()]
                if missing:
                    raise InputFileError(missing[0], "no such file; the association deployment makes the _cal files first")
                jobs.append((cals, product_name or _product_root(prod.name)))
        else:
            files = [input] if isinstance(input, str) else list(input)
            jobs.append(([_abs(f) for f in files], product_name))
        written: list[str] = []
        for cals, name in jobs:
            res = m.image3.fn(cals, product_name=name, steps=steps_dict(steps) or None, config=_abs(config),
                              output_dir=_abs(output_dir))
            written += [str(p) for p in res.get("written", [])]
        return written


def _asn_run_name():
    from prefect.runtime import flow_run

    p = (flow_run.parameters or {}).get("asn_path") or ""
    return f"association {Path(str(p)).name.removesuffix('.json').removesuffix('_asn')}" if p else "association"


@flow(name="association", flow_run_name=_asn_run_name, persist_result=False, log_prints=True,
      task_runner=ThreadPoolTaskRunner(max_workers=4))
def association(
    asn_path: str,
    output_dir: str | None = None,
    steps: AssociationSteps = AssociationSteps(),
    config: str | None = None,
    stage3: bool = True,
    allow_partial: bool = False,
    runner: Literal["threads", "processes", "dask"] = "threads",
    max_workers: int | None = None,
    dask_address: str | None = None,
) -> dict:
    """An association: every member through detector1 and image2 in parallel (reusing finished work), then Stage 3.

    ``runner``: ``threads`` (4 at a time unless ``max_workers``), ``processes``,
    or ``dask`` (the scheduler at ``dask_address``, else a LocalCluster).
    Returns a summary: per member its products and which stages were reused.
    """
    from ..flows.association import make_task_runner, process_association

    args = (_abs(asn_path),)
    kwargs = dict(output_dir=_abs(output_dir), steps=steps_dict(steps) or None, config=_abs(config), stage3=stage3,
                  allow_partial=allow_partial)
    from ..flows.association import AssociationFailed
    from ..flows.observe import publish_association

    try:
        if runner == "threads" and not max_workers:
            res = process_association.fn(*args, **kwargs)
        else:
            fl = process_association.with_options(task_runner=make_task_runner(runner, max_workers, dask_address))
            res = fl(*args, **kwargs)
    except AssociationFailed as exc:
        publish_association(exc.result)  # what failed, and what was kept, stays visible on the run
        raise
    publish_association(res)
    return {
        "asn": res.asn,
        "seconds": round(res.seconds, 2),
        "members": [
            {"member": m.member, "ok": m.ok, "cal": m.cal, "products": list(m.products), "reused": list(m.reused),
             "seconds": round(m.seconds, 2), "error": m.error}
            for m in res.members
        ],
        "stage3": {k: _jsonable(v) for k, v in res.stage3.items()},
    }


def _jsonable(v):
    import json

    try:
        json.dumps(v)
        return v
    except TypeError:
        if isinstance(v, dict):
            return {str(k): _jsonable(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [_jsonable(x) for x in v]
        return str(v)


from ..flows.reprocess import reprocess  # noqa: E402 - the reprocess flow is deployed as it is


@flow(name="asn-generate", persist_result=False, log_prints=True)
def asn_generate(pool: str, output_dir: str, candidate_ids: list[str] | None = None, all_candidates: bool = False,
                 version_id: str | None = None) -> list[str]:
    """jwst's asn_generate: the associations of a pool (``|``-separated) written as ``_asn.json``
    files to ``output_dir``; returns the files written."""
    from ..flows.asn.flow import generate_files

    return generate_files(_abs(pool), _abs(output_dir), candidate_ids, all_candidates, version_id)

FLOWS = {"detector1": detector1, "image2": image2, "guider": guider, "dark": dark, "association": association,
         "reprocess": reprocess, "asn-generate": asn_generate}
if Image3Steps is not None:
    FLOWS["image3"] = image3

__all__ = list(FLOWS)
