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
    AssociationMiriSteps,
    AssociationNirSteps,
    AssociationSteps,
    DarkSteps,
    Detector1MiriSteps,
    Detector1NirSteps,
    Detector1Steps,
    GuiderSteps,
    Image2Steps,
    Image3Steps,
    steps_dict,
)


def _abs(p: str | None) -> str | None:
    import os

    return os.path.abspath(os.path.expanduser(p)) if p else p


def _detector1(input, output_dir, steps, config, save_calibrated_ramp, family: str | None = None) -> list[str]:
    from ..flows import calwebb_detector1 as m

    path = _abs(input)
    if family is not None:
        head = m.open_ramp(path, arrays=())
        miri = (head.meta.instrument.name or "").upper() == "MIRI"
        if miri != (family == "miri"):
            from ..errors import InputFileError

            other = "miri-uncal-to-rate" if miri else "near-ir-uncal-to-rate"
            raise InputFileError(path, f"is a {head.meta.instrument.name} exposure; run it with the detector1/{other} deployment")
    m.detector1.fn(path, steps=steps_dict(steps) or None, config=_abs(config) or None, output_dir=_abs(output_dir),
                   save_calibrated_ramp=save_calibrated_ramp)
    return list(m.detector1_last_run[-1].written)


_DETECTOR1_ARGS = """

    Args:
        input: The raw {what}exposure (``_uncal.fits``), as a path the worker can read.
        output_dir: Folder for the products, as the worker sees it.
        steps: Parameters of each {which}step; a value left at its default is not set (CRDS parameter files and the config file still apply).
        config: Optional parameter file in jwst's layout (YAML or ASDF); empty for none.
        save_calibrated_ramp: Also write the calibrated ramp (``_ramp.fits``) before ramp fitting.
    """


def _detector1_flow(name: str, steps_form, family: str | None, summary: str, what: str = "", which: str = ""):
    """A detector1 deployment flow whose ``steps`` form is ``steps_form``; ``family`` ("nir", "miri")
    refuses exposures of the other family."""

    def body(input: str, output_dir: str, steps=None, config: str = "", save_calibrated_ramp: bool = False) -> list[str]:
        return _detector1(input, output_dir, steps, config, save_calibrated_ramp, family=family)

    body.__annotations__["steps"] = steps_form
    body.__defaults__ = (steps_form(), "", False)
    body.__name__ = body.__qualname__ = name  # the deployment's entry point: webbflow.deployments.flows.<name>
    body.__doc__ = summary + _DETECTOR1_ARGS.format(what=what, which=which)
    return flow(name="detector1", flow_run_name=run_name("detector1"), persist_result=False, log_prints=True)(body)


detector1 = _detector1_flow(
    "detector1", Detector1Steps, None,
    "calwebb_detector1: raw ramps (``_uncal``) to count rates (``_rate``, ``_rateints``); returns the files written.")
detector1_nir = _detector1_flow(
    "detector1_nir", Detector1NirSteps, "nir",
    "calwebb_detector1 for NIRCam, NIRISS, NIRSpec and FGS: ``_uncal`` to ``_rate`` and ``_rateints``.",
    what="near-infrared ", which="near-infrared ")
detector1_miri = _detector1_flow(
    "detector1_miri", Detector1MiriSteps, "miri", "calwebb_detector1 for MIRI: ``_uncal`` to ``_rate`` and ``_rateints``.",
    what="MIRI ", which="MIRI ")


@flow(name="image2", flow_run_name=run_name("image2"), persist_result=False, log_prints=True)
def image2(
    input: str,
    output_dir: str,
    steps: Image2Steps = Image2Steps(),
    config: str = "",
) -> list[str]:
    """calwebb_image2: a rate file or a level-2 association to ``_cal`` and ``_i2d``; returns the files written.

    Args:
        input: A count-rate file (``_rate.fits``) or a level-2 association (``_asn.json``), as the worker sees it.
        output_dir: Folder for the products, as the worker sees it.
        steps: Parameters of each step; a value left at its default is not set (CRDS parameter files and the config file still apply).
        config: Optional parameter file in jwst's layout (YAML or ASDF); empty for none.
    """
    from ..flows import calwebb_image2 as m

    m.image2.fn(_abs(input), steps=steps_dict(steps) or None, config=_abs(config) or None, output_dir=_abs(output_dir))
    return [p for r in m.image2_last_run for p in r.written]


@flow(name="guider", flow_run_name=run_name("guider"), persist_result=False, log_prints=True)
def guider(
    input: str,
    output_dir: str,
    steps: GuiderSteps = GuiderSteps(),
    config: str = "",
) -> list[str]:
    """calwebb_guider: an FGS guider-mode exposure to ``_cal``; returns the files written.

    Args:
        input: The raw FGS guider exposure (``_uncal.fits``), as the worker sees it.
        output_dir: Folder for the products, as the worker sees it.
        steps: Parameters of each step; a value left at its default is not set (CRDS parameter files and the config file still apply).
        config: Optional parameter file in jwst's layout (YAML or ASDF); empty for none.
    """
    from ..flows import calwebb_guider as m

    m.guider.fn(_abs(input), steps=steps_dict(steps) or None, config=_abs(config) or None, output_dir=_abs(output_dir))
    return list(m._last[-1].written) if m._last else []


@flow(name="dark", flow_run_name=run_name("dark"), persist_result=False, log_prints=True)
def dark(
    input: str,
    output_dir: str,
    steps: DarkSteps = DarkSteps(),
    config: str = "",
) -> list[str]:
    """calwebb_dark: a dark exposure to ``_dark`` (corrected ramps); returns the files written.

    Args:
        input: The raw dark exposure (``_uncal.fits``), as the worker sees it.
        output_dir: Folder for the products, as the worker sees it.
        steps: Parameters of each step; a value left at its default is not set (CRDS parameter files and the config file still apply).
        config: Optional parameter file in jwst's layout (YAML or ASDF); empty for none.
    """
    from ..flows import calwebb_dark as m

    m.dark.fn(_abs(input), steps=steps_dict(steps) or None, config=_abs(config) or None, output_dir=_abs(output_dir))
    return list(m._last[-1].written) if m._last else []


if Image3Steps is not None:

    @flow(name="image3", flow_run_name=run_name("image3"), persist_result=False, log_prints=True)
    def image3(
        input: str | list[str],
        output_dir: str,
        product_name: str = "",
        steps: Image3Steps = Image3Steps(),  # type: ignore[valid-type]
        config: str = "",
    ) -> list[str]:
        """calwebb_image3: a level-3 association whose ``_cal`` members exist, or a list of ``_cal`` files,
        to the mosaic (``_i2d``), catalogue (``_cat.ecsv``), segmentation map and ``_crf`` files.

        (The ``association`` deployments also run the earlier stages for members that need them.)
        Returns the files written.

        Args:
            input: A level-3 association (``_asn.json``) or a list of ``_cal`` files, as the worker sees them.
            output_dir: Folder for the products, as the worker sees it.
            product_name: Root of the products' names; empty for the association's product names.
            steps: Parameters of each step; a value left at its default is not set (CRDS parameter files and the config file still apply).
            config: Optional parameter file in jwst's layout (YAML or ASDF); empty for none.
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
            res = m.image3.fn(cals, product_name=name or None, steps=steps_dict(steps) or None, config=_abs(config) or None,
                              output_dir=_abs(output_dir))
            written += [str(p) for p in res.get("written", [])]
        return written


from ..flows.association import _asn_run_name  # noqa: E402 - one namer for every association run


def _association(asn_path, output_dir, steps, config, stage3, allow_partial, runner, max_workers, dask_address) -> dict:
    from ..flows.association import make_task_runner, process_association

    args = (_abs(asn_path),)
    kwargs = dict(output_dir=_abs(output_dir) or None, steps=steps_dict(steps) or None, config=_abs(config) or None,
                  stage3=stage3, allow_partial=allow_partial)
    # the association flow publishes its members table and summary itself, on success and on failure
    if runner == "threads" and not max_workers:
        res = process_association.fn(*args, **kwargs)
    else:
        fl = process_association.with_options(
            task_runner=make_task_runner(runner, max_workers or None, dask_address or None))
        res = fl(*args, **kwargs)
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


_ASSOCIATION_ARGS = """

    Args:
        asn_path: The association (``_asn.json``), level 2 or 3, as the worker sees it; members are found beside it.
        output_dir: Folder for the products; empty for the association's folder.
        steps: Parameters of each step, by stage; a value left at its default is not set.
        config: Optional parameter file in jwst's layout (YAML or ASDF); empty for none.
        stage3: Make the Stage 3 products of a level-3 association.
        allow_partial: Make Stage 3 from the members that succeeded when some failed.
        runner: How the members run in parallel: threads, processes, or Dask.
        max_workers: How many members at a time (0: up to 4).
        dask_address: An existing Dask scheduler (``tcp://host:8786``) for the dask runner; empty for a local cluster.
    """


def _association_flow(name: str, steps_form, summary: str):
    """An association deployment flow whose ``steps`` form is ``steps_form``."""

    def body(asn_path: str, output_dir: str = "", steps=None, config: str = "", stage3: bool = True,
             allow_partial: bool = False, runner: Literal["threads", "processes", "dask"] = "threads",
             max_workers: int = 0, dask_address: str = "") -> dict:
        return _association(asn_path, output_dir, steps, config, stage3, allow_partial, runner, max_workers,
                            dask_address)

    body.__annotations__["steps"] = steps_form
    body.__defaults__ = ("", steps_form(), "", True, False, "threads", 0, "")
    body.__name__ = body.__qualname__ = name  # the deployment's entry point: webbflow.deployments.flows.<name>
    body.__doc__ = summary + _ASSOCIATION_ARGS
    return flow(name="association", flow_run_name=_asn_run_name, persist_result=False, log_prints=True,
                task_runner=ThreadPoolTaskRunner(max_workers=4))(body)


association = _association_flow(
    "association", AssociationSteps,
    "An association: every member through detector1 and image2 in parallel (reusing finished work), then Stage 3.\n\n"
    "    Returns a summary: per member its products and which stages were reused.")
association_nir = _association_flow(
    "association_nir", AssociationNirSteps,
    "A NIRCam, NIRISS, NIRSpec or FGS association: members through detector1 and image2, then Stage 3.")
association_miri = _association_flow(
    "association_miri", AssociationMiriSteps, "A MIRI association: members through detector1 and image2, then Stage 3.")


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
                 version_id: str = "") -> list[str]:
    """jwst's asn_generate: the associations of a pool written as ``_asn.json`` files; returns the files written.

    Args:
        pool: The association pool (``|``-separated table, as DMS writes it), as the worker sees it.
        output_dir: Folder for the association files, as the worker sees it.
        candidate_ids: Only the candidates with these IDs (asn_generate's -i); empty for all observation candidates.
        all_candidates: Make the associations of every candidate, not only observation candidates (--all-candidates).
        version_id: The version string in the file names (--version-id); empty for the time of the run.
    """
    from ..flows.asn.flow import generate_files

    return generate_files(_abs(pool), _abs(output_dir), candidate_ids or None, all_candidates, version_id or None)


# what is deployed, by entry point (webbflow.deployments.flows.<key>): one form per instrument family where
# the steps differ (detector1 and the association); ``detector1`` and ``association`` (both branches) stay
# importable for Python callers
FLOWS = {"detector1_nir": detector1_nir, "detector1_miri": detector1_miri, "image2": image2, "guider": guider,
         "dark": dark, "association_nir": association_nir, "association_miri": association_miri,
         "reprocess": reprocess, "asn_generate": asn_generate}
if Image3Steps is not None:
    FLOWS["image3"] = image3

__all__ = list(FLOWS) + ["detector1", "association"]
