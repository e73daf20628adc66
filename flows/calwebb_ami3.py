"""Stage 3 aperture masking interferometry: calwebb_ami3 as a Prefect flow.

A level-3 AMI association names science (target) and psf (reference star) members, calibrated
cubes of integrations (``_calints``) relative to the association's folder.  In jwst 3.0's order:

    ami_analyze on each science member  -> <member>_<asn_id>_ami-oi.fits
    ami_analyze on each psf member      -> <member>_<asn_id>_psf-ami-oi.fits
    ami_normalize, target i by psf i    -> <product>_aminorm-oi.fits

Without psf members ami_normalize is skipped.  ``webbflow run ami3 ASN`` (also
``calwebb_ami3``, ``Ami3Pipeline``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from . import _prefect
from ._prefect import flow

from .. import models
from ..errors import InputFileError, ParameterError
from . import registry
from .stage import LastRuns, StageRun, resolve_params, resolve_references, run_name, run_steps, stamp

STEPS = ["ami_analyze", "ami_normalize"]
_last = LastRuns()
log = logging.getLogger("webbflow.flows")


def oi_name(filename: str, asn_id: str | None, suffix: str) -> str:
    """jwst's name of a member's product: ``<root>_<asn_id>_<suffix>.fits``."""
    from .naming import root_of

    root = root_of(filename)
    return f"{root}_{asn_id}_{suffix}.fits" if asn_id else f"{root}_{suffix}.fits"


@flow(name="ami3", flow_run_name=run_name("ami3"), validate_parameters=False, persist_result=False)
def ami3(science, psf=(), product_name: str = "ami3", asn_id: str | None = None, asn_pool: str | None = None,
         asn_table_name: str | None = None, steps: dict | None = None, config: str | None = None,
         output_dir: str | None = None) -> dict:
    """Fringe-fit the science and psf exposures (paths or models) and calibrate the first by the second.

    Returns ``{"science": [ami-oi models], "psf": [...], "aminorm": [models], "written": [paths]}``.
    """
    science = list(science) if isinstance(science, (list, tuple)) else [science]
    psf = list(psf) if isinstance(psf, (list, tuple)) else [psf]
    if not science:
        raise ParameterError("ami3 needs at least one science exposure")
    opened = {}
    for src in science + psf:
        m = models.open(src)
        if not isinstance(src, models.DataModel):
            m.meta.filename = Path(src).name
        if m.meta.exposure.type not in ("NIS_AMI", None):
            raise InputFileError(src if not isinstance(src, models.DataModel) else (m.meta.filename or "input"),
                                 f"is a {m.meta.exposure.type} exposure; ami3 takes NIS_AMI calints")
        opened[id(src)] = m
    probe = opened[id(science[0])]
    params = resolve_params(STEPS, steps, config, model=probe, pipeline_class="Ami3Pipeline")
    out_dir = Path(output_dir) if output_dir else None
    result: dict = {"science": [], "psf": [], "aminorm": [], "written": []}
    runs = []
    for kind, members, suffix in (("science", science, "ami-oi"), ("psf", psf, "psf-ami-oi")):
        for src in members:
            m = opened[id(src)]
            run = StageRun(params=params)
            run.references, run.context = resolve_references(m, {"ami_analyze": params["ami_analyze"]})
            # with save_results, the step's three products as jwst saves them: <member>_<suffix>.fits
            out = run_steps(m, ["ami_analyze"], run, label=m.meta.filename or "", output_dir=out_dir,
                            source_name=m.meta.filename)
            runs.append(run)
            if run.records[-1].status != "COMPLETE":
                continue
            oi = out[0]
            oi.meta.asn.pool_name = asn_pool
            oi.meta.asn.table_name = asn_table_name
            stamp(oi, run, "ami3")
            oi.meta.filename = oi_name(m.meta.filename or product_name, asn_id, suffix)
            result[kind].append(oi)
            if out_dir is not None:
                result["written"].append(oi.save(out_dir / oi.meta.filename))
    if not result["psf"]:
        log.info("No PSF reference members found in association table; ami_normalize will be skipped")
    elif not params["ami_normalize"].skip:
        for targ, ref in zip(result["science"], result["psf"]):
            run = StageRun(params=params)
            run.context = runs[0].context if runs else None
            norm = run_steps((targ, ref), ["ami_normalize"], run)
            runs.append(run)
            if run.records[-1].status != "COMPLETE":
                continue
            stamp(norm, run, "ami3")
            norm.meta.filename = f"{product_name}_aminorm-oi.fits"
            result["aminorm"].append(norm)
            if out_dir is not None:
                result["written"].append(norm.save(out_dir / norm.meta.filename))
    _last.clear()
    for run in runs:
        _last.append(run)
    result["steps"] = [(r.name, r.status, r.seconds) for run in runs for r in run.records]
    return result


@registry.register("ami3")
def run_ami3(input_path, *, output_dir, steps=None, config=None, options=None):
    """``webbflow run ami3 ASN``: the science and psf calints members of a level-3 AMI association."""
    from .association import load_asn, member_path
    from .stage import prefect_tracking, quiet_prefect_settings

    if options:
        raise ParameterError(f"unknown option(s) for ami3: {', '.join('--' + k for k in options)}")
    if not str(input_path).lower().endswith(".json"):
        raise InputFileError(input_path, "ami3 takes an association (_asn.json)")
    from .association import run_from_raw  # members not made yet: the earlier stages first
    if (made := run_from_raw(input_path, "ami3", output_dir=output_dir, steps=steps, config=config)) is not None:
        return made
    asn, folder = load_asn(input_path)
    written = []
    for product in asn.products[:1]:  # jwst's ami3 runs the association's first product
        members = {"science": [], "psf": []}
        for m in product.members:
            kind = str(m.exptype).lower()
            if kind in members:
                members[kind].append(member_path(input_path, folder, m.expname))
        if not members["science"]:
            raise InputFileError(input_path, f"product {product.name!r} has no science member")
        out = Path(output_dir or folder)
        kwargs = dict(product_name=product.name, asn_id=asn.asn_id, asn_pool=asn.asn_pool,
                      asn_table_name=Path(input_path).name, steps=steps, config=config, output_dir=str(out))
        if prefect_tracking():
            with quiet_prefect_settings():
                res = _prefect.as_prefect(ami3)(members["science"], members["psf"], **kwargs)
        else:  # no Prefect server to show the runs: the same flow body, without the temporary server
            res = ami3.fn(members["science"], members["psf"], **kwargs)
        written += res["written"]
    return written


_prefect.lazy_module(__name__)
