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
        from . import _prefect
        from .stage import prefect_tracking, quiet_prefect_settings

        if options:
            raise ParameterError(f"unknown option(s) for {pipeline}: {', '.join('--' + k for k in options)}")
        kwargs = dict(steps=steps, config=config, output_dir=str(output_dir))
        if prefect_tracking():
            with quiet_prefect_settings():
                _prefect.as_prefect(flow_fn)(str(input_path), **kwargs)
        else:  # no Prefect server to show the run: the same flow body, without a temporary server
            flow_fn.fn(str(input_path), **kwargs)
        return last[-1].written if last else []

    return runner
