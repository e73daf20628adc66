"""Stage 3 wavefront sensing: calwebb_wfs-image3 (jwst's WfsCombineStep) as a Prefect flow.

A ``wfs-image3`` association (rule Asn_Lv3WFSCMB) lists, per product, the two cal images of a
WFS&C dither pair; each pair becomes one image, ``wfs_combine``'s, written as the product's
name with its ``{suffix}`` filled in: ``<...>_wfscmb-<activity>.fits``.

``webbflow run wfs-image3 ASN`` (also ``calwebb_wfs-image3``, ``WfsCombineStep`` and
``wfs_combine``, the names strun knows) takes the step's parameters as ``--do_refine=true``
or ``--steps.wfs_combine.do_refine=true``. Members are relative to the association's folder;
a member not calibrated yet is made from its rate or uncal file there (detector1, image2),
as a jwst user running the level-2 associations first would get.
"""

from __future__ import annotations

import logging
from pathlib import Path

from . import _prefect
from ._prefect import flow

from .. import models
from ..errors import InputFileError, ParameterError
from . import registry
from .stage import LastRuns, StageRun, resolve_params, run_name, run_steps, stamp

STEPS = ["wfs_combine"]
SUFFIX = "wfscmb"

_last = LastRuns()
log = logging.getLogger("webbflow.flows")


def product_filename(name: str) -> str:
    """The product's file name: its ``{suffix}`` placeholder filled (or the suffix appended), ``.fits``."""
    return (name.format(suffix=SUFFIX) if "{suffix}" in name else f"{name}_{SUFFIX}") + ".fits"


@flow(name="wfs-image3", flow_run_name=run_name("wfs-image3"), validate_parameters=False, persist_result=False)
def wfs_image3(pairs: list, asn_pool: str | None = None, asn_table_name: str | None = None,
               steps: dict | None = None, config: str | None = None, output_dir: str | None = None) -> dict:
    """Combine each ``(product name, [cal 1, cal 2])`` pair; returns ``{"models": [...], "written": [...]}``."""
    if not pairs:
        raise ParameterError("wfs-image3 needs at least one pair of cal images")
    first = models.open(pairs[0][1][0])
    params = resolve_params(STEPS, steps, config, model=first, pipeline_class="WfsCombineStep")
    run = StageRun(params=params)
    out_dir = Path(output_dir) if output_dir else None
    result: dict = {"models": [], "written": []}
    for name, members in pairs:
        if len(members) != 2:
            raise InputFileError(asn_table_name or name, f"product {name!r} has {len(members)} science members; "
                                                         "wfs_combine combines a pair")
        pair = []
        for p in members:
            m = models.open(p)
            if not isinstance(m, models.ImageModel):
                raise InputFileError(p, f"is not a calibrated image ({type(m).__name__}); wfs_combine needs cal images")
            if not isinstance(p, models.DataModel):
                m.meta.filename = Path(p).name
            pair.append(m)
        combined = run_steps(pair, ["wfs_combine"], run)
        if not isinstance(combined, models.ImageModel):
            continue
        combined.meta.asn.pool_name = asn_pool
        combined.meta.asn.table_name = asn_table_name
        combined.meta.filename = product_filename(name)
        crds = combined.meta.ref_file.crds.model_copy()
        stamp(combined, run, "wfs-image3")
        combined.meta.ref_file.crds = crds  # the step reads no reference: the context stays the input's
        if out_dir is not None:
            result["written"].append(combined.save(out_dir / combined.meta.filename))
        result["models"].append(combined)
    run.written = list(result["written"])
    _last.clear()
    _last.append(run)
    return result


@registry.register("wfs-image3")
def run_wfs_image3(input_path, *, output_dir, steps=None, config=None, options=None):
    """``webbflow run wfs-image3 ASN``: each product's two science members combined."""
    from .association import load_asn, member_path
    from .stage import prefect_tracking, quiet_prefect_settings

    steps = dict(steps or {})
    if options:  # the step's own parameters, as strun takes them for calwebb_wfs-image3
        from ..tasks.base import STEPS as DECLARED

        known = set(DECLARED["wfs_combine"].params.model_fields) - {"overrides"}
        unknown = [k for k in options if k not in known]
        if unknown:
            raise ParameterError(f"unknown option(s) for wfs-image3: {', '.join('--' + k for k in unknown)}")
        steps["wfs_combine"] = {**options, **dict(steps.get("wfs_combine") or {})}
    if not str(input_path).lower().endswith(".json"):
        raise InputFileError(input_path, "wfs-image3 takes an association (_asn.json)")
    from .association import run_from_raw  # members not made yet: the earlier stages first
    if (made := run_from_raw(input_path, "wfs-image3", output_dir=output_dir, steps=steps, config=config)) is not None:
        return made
    asn, folder = load_asn(input_path)
    out_dir = Path(output_dir or folder)
    written: list[str] = []
    pairs = []
    for product in asn.products:
        members = [member_path(input_path, folder, m.expname) for m in product.members
                   if m.exptype.lower() == "science"]
        pairs.append((product.name, members))
    kwargs = dict(asn_pool=asn.asn_pool, asn_table_name=Path(input_path).name, steps=steps, config=config,
                  output_dir=str(out_dir))
    if prefect_tracking():
        with quiet_prefect_settings():
            res = _prefect.as_prefect(wfs_image3)(pairs, **kwargs)
    else:  # no Prefect server to show the run: the same flow body, without a temporary server
        res = wfs_image3.fn(pairs, **kwargs)
    return written + res["written"]


_prefect.lazy_module(__name__)
