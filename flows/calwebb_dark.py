"""calwebb_dark as a Prefect flow: the detector1 corrections up to (not including) dark
subtraction, on dark exposures, producing ``<root>_dark.fits`` (a RampModel)."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from ..errors import ParameterError
from . import registry
from .observe import publish_stage
from .calwebb_detector1 import open_ramp
from .stage import StageRun, run_name, input_name, resolve_params, resolve_references, run_steps, save_product, stamp

NIR_STEPS = ["group_scale", "dq_init", "saturation", "ipc", "superbias", "refpix", "linearity"]
MIRI_STEPS = ["group_scale", "dq_init", "emicorr", "saturation", "ipc", "firstframe", "lastframe", "reset", "linearity", "rscd"]

_last: list[StageRun] = []


@flow(name="dark", flow_run_name=run_name("dark"), validate_parameters=False, persist_result=False)
def dark(input, steps: dict | None = None, config: str | None = None, output_dir: str | None = None):
    """Run calwebb_dark on a path or RampModel; returns the corrected RampModel."""
    source = input_name(input)
    model = open_ramp(input)
    names = MIRI_STEPS if (model.meta.instrument.name or "").upper() == "MIRI" else NIR_STEPS
    every = list(dict.fromkeys(NIR_STEPS + MIRI_STEPS))
    steps = dict(steps or {})
    bad = [s for s in steps if s not in every]
    if bad:
        raise ParameterError(f"unknown step(s) {', '.join(bad)}; calwebb_dark's steps are: {', '.join(every)}")
    params = resolve_params(names, {k: v for k, v in steps.items() if k in names}, config, model=model, pipeline_class="DarkPipeline")
    run = StageRun(params=params)
    run.references, run.context = resolve_references(model, params)
    out_dir = Path(output_dir) if output_dir else None
    result = run_steps(model, names, run, output_dir=out_dir, source_name=source)
    stamp(result, run, "dark")
    if out_dir is not None:
        run.written.append(save_product(result, out_dir, source, "dark", run))
    publish_stage(run, "dark", source, [result])
    _last[:] = [run]
    return result


@registry.register("dark")
def run_dark(input_path, *, output_dir, steps=None, config=None, options=None):
    from .stage import quiet_prefect_settings

    if options:
        raise ParameterError(f"unknown option(s) for dark: {', '.join('--' + k for k in options)}")
    with quiet_prefect_settings():
        dark(str(input_path), steps=steps, config=config, output_dir=str(output_dir))
    return _last[-1].written if _last else []
