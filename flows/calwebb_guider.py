"""calwebb_guider as a Prefect flow: dq_init, guider_cds, flat_field -> ``<root>_cal.fits``."""

from __future__ import annotations


from . import _prefect
from ._prefect import flow

from .. import models
from ..errors import InputFileError, UnsupportedModeError, a_an
from . import registry
from ._single_product import cli_runner, run_single_product
from .stage import LastRuns, input_name, resolve_params, run_name

STEPS = ["dq_init", "guider_cds", "flat_field"]
GUIDER_EXP_TYPES = ("FGS_ACQ1", "FGS_ACQ2", "FGS_TRACK", "FGS_FINEGUIDE", "FGS_ID-IMAGE", "FGS_ID-STACK")

_last = LastRuns()


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
        raise InputFileError(where, f"is {a_an(type(model).__name__)}; calwebb_guider needs a guider ramp (_uncal)")
    result, run = run_single_product(model, STEPS, params, pipeline="guider", source=source,
                                     output_dir=output_dir, suffix="cal")
    _last.clear()
    _last.append(run)
    return result


registry.register("guider")(cli_runner(guider, "guider", _last))


_prefect.lazy_module(__name__)
