"""The shared shape of stage flows that turn one exposure into one product (guider, dark)."""

from __future__ import annotations

from pathlib import Path

from ..errors import ParameterError
from .observe import publish_stage
from .stage import StageRun, resolve_references, run_steps, save_product, stamp


def run_single_product(model, names, params, *, pipeline: str, source: str, output_dir, suffix: str):
    """Resolve references once, run ``names`` as tasks, stamp provenance, save ``<root>_<suffix>``."""
    run = StageRun(params=params)
    run.references, run.context = resolve_references(model, params)
    out_dir = Path(output_dir) if output_dir else None
    result = run_steps(model, names, run, output_dir=out_dir, source_name=source)
    stamp(result, run, pipeline)
    if out_dir is not None:
        run.written.append(save_product(result, out_dir, source, suffix, run))
    publish_stage(run, pipeline, source, [result])
    return result, run


def cli_runner(flow_fn, pipeline: str, last: list):
    """A registry runner calling ``flow_fn`` for ``webbflow run <pipeline>``."""

    def runner(input_path, *, output_dir, steps=None, config=None, options=None):
        from .stage import quiet_prefect_settings

        if options:
            raise ParameterError(f"unknown option(s) for {pipeline}: {', '.join('--' + k for k in options)}")
        with quiet_prefect_settings():
            flow_fn(str(input_path), steps=steps, config=config, output_dir=str(output_dir))
        return last[-1].written if last else []

    return runner
