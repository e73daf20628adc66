"""Stage 1: calwebb_detector1 as a Prefect flow.

Raw ramps in, count-rate images out: ``<root>_rate.fits`` (ImageModel) and
``<root>_rateints.fits`` (CubeModel).  The near-IR and MIRI branches differ in
their first half and share the tail, in jwst 3.0's order.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from . import _prefect
from ._prefect import flow

from .. import models
from ..errors import InputFileError, UnsupportedModeError, a_an
from ..tasks._convert import as_ramp
from . import _streaming, registry
from .observe import publish_stage
from .stage import LastRuns, in_flow_run, StageRun, run_name, input_name, resolve_params, resolve_references, run_steps, save_product, stamp

NIR_STEPS = ["group_scale", "dq_init", "saturation", "ipc", "superbias", "refpix", "linearity", "dark_current"]
MIRI_STEPS = [
    "group_scale", "dq_init", "emicorr", "saturation", "ipc", "firstframe", "lastframe", "reset",
    "linearity", "rscd", "dark_current", "refpix",
]
TAIL_STEPS = ["charge_migration", "jump", "picture_frame", "clean_flicker_noise", "persistence"]
FIT_STEPS = ["ramp_fit", "gain_scale"]
ALL_STEPS = list(dict.fromkeys(NIR_STEPS + MIRI_STEPS + TAIL_STEPS + FIT_STEPS))
# a rate product: an ImageModel, or for an IFU exposure an IFUImageModel (as jwst writes them)
RATE_CLASSES = (models.ImageModel, models.IFUImageModel)

log = logging.getLogger("webbflow.flows")

SUPPORTED_INSTRUMENTS = ("NIRCAM", "NIRISS", "NIRSPEC", "MIRI", "FGS")


def open_ramp(inp, arrays=None):
    """Open the input as a ramp; anything that is not a ramp is refused with a clear line.

    ``arrays=()`` reads only the metadata of a file (see ``models.open``).
    """
    m = models.open(inp, arrays=arrays) if (arrays is not None and not isinstance(inp, models.DataModel)) else models.open(inp)
    if not isinstance(m, models.RampModel):
        name = inp if not isinstance(inp, models.DataModel) else (m.meta.filename or "<in-memory model>")
        raise InputFileError(name, f"is {a_an(type(m).__name__)}; detector1 needs raw ramps (an _uncal or _ramp file)")
    inst = (m.meta.instrument.name or "").upper()
    if inst not in SUPPORTED_INSTRUMENTS:
        name = inp if not isinstance(inp, models.DataModel) else (m.meta.filename or "<in-memory model>")
        raise UnsupportedModeError(
            f"{name}: instrument {inst or '(none)'} is not supported by detector1; supported: {', '.join(SUPPORTED_INSTRUMENTS)}"
        )
    return m


def branch_for(model) -> list[str]:
    """The steps for this exposure, in order: the branch is chosen on the instrument."""
    if (model.meta.instrument.name or "").upper() == "MIRI":
        return MIRI_STEPS + TAIL_STEPS + FIT_STEPS
    return NIR_STEPS + TAIL_STEPS + FIT_STEPS


@flow(name="detector1", flow_run_name=run_name("detector1"), validate_parameters=False, persist_result=False, log_prints=True)
def detector1(
    input,
    steps: dict | None = None,
    config: str | None = None,
    output_dir: str | None = None,
    save_calibrated_ramp: bool = False,
):
    """Run calwebb_detector1 on a path or a RampModel; return ``(rate, rateints)``.

    ``steps`` takes jwst's per-step parameters, e.g. ``{"jump": {"rejection_threshold": 5}}``,
    ``{"dark_current": {"skip": True}}`` or ``{"flat_field": {"override_flat": "f.fits"}}``.
    Files are written only when ``output_dir`` is given.
    """
    source = input_name(input)
    on_disk = isinstance(input, (str, os.PathLike))
    # a file's metadata first: the steps, parameters and references, and whether
    # the exposure streams through the steps one integration at a time (_streaming.py)
    head = open_ramp(input, arrays=() if on_disk else None)
    names = branch_for(head)
    params = resolve_params(names, _only(steps, names, ALL_STEPS), config, model=head, pipeline_class="Detector1Pipeline")
    run = StageRun(params=params)
    run.references, run.context = resolve_references(head, params)
    out_dir = Path(output_dir) if output_dir else None

    reason = _streaming.stream_reason(input, head, names, params, save_calibrated_ramp) if on_disk else "in-memory input"
    if reason is None:
        log.info("detector1: %s streams one integration at a time", source)
        model, rate, rateints = _streaming.run(input, names, run, tracked=in_flow_run())
    else:
        # uint16 counts become the float32 ramp once, here, so that the raw array is
        # released at once instead of living through every step
        model = (_streaming.load_ramp(input) if on_disk else None) or as_ramp(open_ramp(input) if on_disk else head)
        del head
        ramp_steps = [n for n in names if n not in FIT_STEPS]
        model = run_steps(model, ramp_steps, run, output_dir=out_dir, source_name=source)
        if save_calibrated_ramp and out_dir is not None:
            stamp(model, run, "detector1")
            run.written.append(save_product(model, out_dir, source, "ramp", run))

        # the ramp read here is not needed once fitted: ramp_fit gives its memory back as it goes
        model._release_after_fit = on_disk
        fit = run_steps(model, ["ramp_fit"], run, output_dir=out_dir, source_name=source)
        if isinstance(fit, (list, tuple)):
            rate, rateints = fit
        else:  # ramp_fit skipped: the product stays a ramp
            rate, rateints = fit, None
    if isinstance(rate, RATE_CLASSES):
        rate = run_steps(rate, ["gain_scale"], run, output_dir=None, source_name=source, label="rate")
        if rateints is not None:
            rateints = run_steps(rateints, ["gain_scale"], run, output_dir=None, source_name=source, label="rateints")
    for m in (rate, rateints):
        if m is not None:
            m.meta.filetype = None  # the raw file's FILETYPE does not survive into jwst's detector1 products
        stamp(m, run, "detector1")
    if out_dir is not None:
        if isinstance(rate, RATE_CLASSES):
            run.written.append(save_product(rate, out_dir, source, "rate", run))
        elif rate is not None:
            run.written.append(save_product(rate, out_dir, source, "ramp", run))
        if rateints is not None:
            run.written.append(save_product(rateints, out_dir, source, "rateints", run))
    publish_stage(run, "detector1", source, [rate, rateints])
    detector1_last_run.clear()
    detector1_last_run.append(run)
    return rate, rateints


# the StageRun of the most recent call in this thread (timings, references, files written)
detector1_last_run = LastRuns()


def _only(steps, names, all_steps):
    """Drop settings for steps of the other branch (a MIRI option on a NIR exposure is not an error)."""
    if not steps:
        return {}
    bad = [s for s in steps if s not in all_steps]
    if bad:
        from ..errors import ParameterError, did_you_mean

        raise ParameterError(f"unknown step(s) {', '.join(bad)}{did_you_mean(bad[0], all_steps)}; "
                             f"detector1's steps are: {', '.join(all_steps)}")
    return {k: v for k, v in steps.items() if k in names}


@registry.register("detector1")
def run_detector1(input_path, *, output_dir, steps=None, config=None, options=None):
    from ..errors import ParameterError
    from .stage import prefect_tracking, quiet_prefect_settings

    options = dict(options or {})
    save_ramp = bool(options.pop("save_calibrated_ramp", False))
    if options:
        raise ParameterError(f"unknown option(s) for detector1: {', '.join('--' + k for k in options)}")
    kwargs = dict(steps=steps, config=config, output_dir=str(output_dir), save_calibrated_ramp=save_ramp)
    if prefect_tracking():
        with quiet_prefect_settings():
            _prefect.as_prefect(detector1)(str(input_path), **kwargs)
    else:
        # no Prefect server to show the runs: the same flow body, without the temporary server
        detector1.fn(str(input_path), **kwargs)
    return detector1_last_run[-1].written if detector1_last_run else []


_prefect.lazy_module(__name__)
