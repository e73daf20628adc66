"""calwebb_spec3 for NIRISS SOSS (NIS_SOSS): the cal exposures of one product into x1d and c1d.

jwst's association rules make a spec3 association for SOSS exposures that are not time series
(Asn_Lv3SlitlessSpectral: TSOVISIT false; time series go to tso3), its members the ``_cal`` files.
jwst 3.0's Spec3Pipeline on such a product (SOSS is slitless: no outlier_detection, no
adaptive_trace_model, no resampling):

    pixel_replace     on every exposure, skipped by default
    extract_1d        not saved; SOSS extraction takes the first exposure of the product only (jwst's
                      Extract1dStep extracts ``input[0]`` for SOSS): ATOCA decontamination then
                      box sums (jwst's default ``soss_atoca=true``, :mod:`webbflow.tasks.extract_1d._atoca`),
                      or the plain box with ``soss_atoca=false`` (:mod:`webbflow.tasks.extract_1d.soss`)
    photom            on the extracted spectra -> <product>_x1d.fits (a TSOMultiSpecModel)
    combine_1d        -> <product>_c1d.fits (one combined spectrum per order)

When extract_1d does not complete (jwst: SOSS F277W or FULL frame) nothing is written, as in jwst.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .. import models
from ..errors import InputFileError, UnsupportedModeError, a_an
from .stage import StageRun, resolve_params, resolve_references, run_steps, stamp

log = logging.getLogger("webbflow.flows")

STEPS = ["pixel_replace", "extract_1d", "photom", "combine_1d"]


def is_soss(member) -> bool:
    from ._spec3_ifu import exp_type_of

    return exp_type_of(member) == "NIS_SOSS"


def spec3_soss(members, *, product_name: str, asn_id=None, asn_pool=None, asn_table_name=None, steps=None,
               config=None, output_dir=None, backgrounds=None) -> dict:
    """The spec3 products of one SOSS product; returns ``{"sources": [], "written": [paths], "failed": []}``."""
    from .calwebb_spec3 import STEPS as SPEC3_STEPS
    from .calwebb_spec3 import _last

    exposures = []
    for src in members:
        if not isinstance(src, models.DataModel) and not Path(src).exists():
            raise InputFileError(src, "no such file (a member of the association)")
        m = models.open(src)
        name = m.meta.filename if isinstance(src, models.DataModel) else Path(src).name
        m.meta.filename = name
        if not isinstance(m, (models.ImageModel, models.CubeModel)):
            raise InputFileError(name or "input", f"is {a_an(type(m).__name__)}; SOSS spec3 needs ImageModel or "
                                 "CubeModel cal files")
        m.meta.asn.pool_name = asn_pool  # as jwst's association container records them
        m.meta.asn.table_name = asn_table_name
        exposures.append(m)
    if backgrounds:
        raise UnsupportedModeError(f"{asn_table_name or exposures[0].meta.filename}: background members in a SOSS "
                                   "spec3 association are not supported")
    # the spec3 steps SOSS does not run are accepted and ignored, as jwst's pipeline ignores them for SOSS
    user = {k: v for k, v in (steps or {}).items() if k not in SPEC3_STEPS or k in STEPS}
    first = exposures[0]
    params = resolve_params(STEPS, user, config, model=first, pipeline_class="Spec3Pipeline")
    if not params["extract_1d"].skip:  # bad ATOCA inputs refused before anything is written
        from ..tasks.extract_1d.soss import check_params

        try:
            check_params(params["extract_1d"])
        except UnsupportedModeError as exc:
            raise UnsupportedModeError(f"{first.meta.filename}: {exc}") from None
    references, context = resolve_references(first, {k: v for k, v in params.items() if k in ("extract_1d", "photom")})
    out_dir = Path(output_dir) if output_dir else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    run = StageRun(params=params, references=references, context=context)
    written: list[str] = []
    try:
        _run(exposures, params, run, out_dir, written, product_name)
    except BaseException:  # no partial product
        for p in written:
            Path(p).unlink(missing_ok=True)
        raise
    run.written = list(written)
    _last.clear()
    _last.append(run)
    return {"sources": [], "written": written, "failed": []}


def _run(exposures, params, run: StageRun, out_dir, written, product_name) -> None:
    exposures = [run_steps(m, ["pixel_replace"], run) for m in exposures]
    if len(exposures) > 1:
        log.warning("SOSS spec3: %d exposures; jwst's extract_1d extracts the first (%s) only", len(exposures),
                    exposures[0].meta.filename)
    if params["extract_1d"].skip:
        return
    x1d = run_steps(exposures[0], ["extract_1d"], run)
    if not isinstance(x1d, models.DataModel) or x1d.meta.cal_step.extract_1d != "COMPLETE":
        log.warning("SOSS spec3: extract_1d did not complete; no x1d or c1d")
        return
    if not params["photom"].skip:
        x1d = run_steps(x1d, ["photom"], run)
    stamp(x1d, run, "spec3")
    _save(x1d, out_dir, f"{product_name}_x1d.fits", written)
    if params["combine_1d"].skip:
        return
    c1d = run_steps(x1d, ["combine_1d"], run)
    stamp(c1d, run, "spec3")
    _save(c1d, out_dir, f"{product_name}_c1d.fits", written)


def _save(model, out_dir, name: str, written: list[str]) -> None:
    model.meta.filename = name
    if out_dir is not None:
        written.append(model.save(out_dir / name))
