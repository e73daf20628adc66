"""calwebb_dark as a Prefect flow: the detector1 corrections up to (not including) dark
subtraction, on dark exposures, producing ``<root>_dark.fits`` (a RampModel)."""

from __future__ import annotations


from . import _prefect
from ._prefect import flow

from ..errors import ParameterError, did_you_mean
from . import registry
from ._single_product import cli_runner, run_single_product
from .calwebb_detector1 import open_ramp
from .stage import LastRuns, input_name, resolve_params, run_name

NIR_STEPS = ["group_scale", "dq_init", "saturation", "ipc", "superbias", "refpix", "linearity"]
MIRI_STEPS = ["group_scale", "dq_init", "emicorr", "saturation", "ipc", "firstframe", "lastframe", "reset", "linearity", "rscd"]

_last = LastRuns()


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
        raise ParameterError(f"unknown step(s) {', '.join(bad)}{did_you_mean(bad[0], every)}; "
                             f"calwebb_dark's steps are: {', '.join(every)}")
    params = resolve_params(names, {k: v for k, v in steps.items() if k in names}, config, model=model, pipeline_class="DarkPipeline")
    result, run = run_single_product(model, names, params, pipeline="dark", source=source,
                                     output_dir=output_dir, suffix="dark")
    _last.clear()
    _last.append(run)
    return result


registry.register("dark")(cli_runner(dark, "dark", _last))


_prefect.lazy_module(__name__)
