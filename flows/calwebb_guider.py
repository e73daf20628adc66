"""calwebb_guider as a Prefect flow: dq_init, guider_cds, flat_field -> ``<root>_cal.fits``."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from .. import models
from ..errors import InputFileError, ParameterError, UnsupportedModeError
from . import registry
from .observe import publish_stage
from .stage import StageRun, run_name, input_name, resolve_params, resolve_references, run_steps, save_product, stamp

STEPS = ["dq_init", "guider_cds", "flat_field"]
GUIDER_EXP_TYPES = ("FGS_ACQ1", "FGS_ACQ2", "FGS_TRACK", "FGS_FINEGUIDE", "FGS_ID-IMAGE", "FGS_ID-STACK")

_last: list[StageRun] = []


@flow(name="guider", flow_run_name=run_name("guider"), validate_parameters=False, persist_result=False)
def guider(input, steps: dict | None = None, config: str | None = None, output_dir: str | None = None):
    """Calibrate an FGS guider-mode exposure; returns the GuiderCalModel."""
    source = input_name(input)
    model = models.open(input)
    where = input if not isinstance(input, models.DataModel) else source
    if (model.meta.exposure.type or "").upper() not in GUIDER_EXP_TYPES:
        raise UnsupportedModeError(
            f"{where}: exposure type {model.meta.exposure.type or '(none)'} is not a guider mode; "
            f"calwebb_guider supports {', '.join(GUIDER_EXP_TYPES)}"
        )
    params = resolve_params(STEPS, steps, config, model=model, pipeline_class="GuiderPipeline")
    if not isinstance(model, models.RampModel) and not (params["dq_init"].skip and params["guider_cds"].skip):
        raise InputFileError(where, f"is a {type(model).__name__}; calwebb_guider needs a guider ramp (_uncal)")
    run = StageRun(params=params)
    run.references, run.context = resolve_references(model, params)
    out_dir = Path(output_dir) if output_dir else None
    result = run_steps(model, STEPS, run, output_dir=out_dir, source_name=source)
    stamp(result, run, "guider")
    if out_dir is not None:
        run.written.append(save_product(result, out_dir, source, "cal", run))
    publish_stage(run, "guider", source, [result])
    _last[:] = [run]
    return result


@registry.register("guider")
def run_guider(input_path, *, output_dir, steps=None, config=None, options=None):
    from .stage import quiet_prefect_settings

    if options:
        raise ParameterError(f"unknown option(s) for guider: {', '.join('--' + k for k in options)}")
    with quiet_prefect_settings():
        guider(str(input_path), steps=steps, config=config, output_dir=str(output_dir))
    return _last[-1].written if _last else []
