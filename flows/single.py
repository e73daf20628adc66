"""Running one step alone on a file (``webbflow run jump X_dark_current.fits``)."""

from __future__ import annotations

from pathlib import Path

from .. import models
from ..tasks.base import STEPS, run_step
from .naming import product_path
from .params import load_config_file


def run_single_step(name: str, input_path: Path, *, output_dir: Path, params: dict, config=None) -> list[str]:
    spec = STEPS[name]
    values = {}
    if config:
        values.update(load_config_file(config).get(name, {}))
    values.update(params)
    p = spec.make_params(values)
    if input_path.suffix.lower() == ".json":
        return _run_on_association(name, input_path, output_dir=output_dir, params=p)
    model = models.open(input_path)
    model = _as_input(model, spec.input_class, input_path)
    result = run_step(name, model, p)
    outs = result.model if isinstance(result.model, (list, tuple)) else [result.model]
    written = []
    suffixes = spec.extra.get("suffixes") or [p.suffix or spec.suffix]
    for m, suffix in zip(outs, suffixes):
        if m is None:
            continue
        path = Path(p.output_file) if p.output_file else product_path(p.output_dir or output_dir, input_path.name, suffix)
        written.append(m.save(path))
    return written


def _as_input(model, class_name: str, path):
    """Give a step the model class it declares, converting raw ramps the way jwst opens them."""
    from ..errors import InputFileError, a_an

    want = models.REGISTRY.get(class_name)
    if want is None or isinstance(model, want):
        return model
    if isinstance(model, models.Level1bModel) and class_name in ("RampModel", "GuiderRawModel"):
        if class_name == "RampModel":
            from ..tasks._convert import as_ramp

            return as_ramp(model)
        return want(model)
    if class_name == "RampModel" and isinstance(model, models.RampModel):
        return model
    have = type(model).__name__
    raise InputFileError(path, f"is {a_an(have)}; this step needs {a_an(class_name)}")


def _run_on_association(name: str, asn_path: Path, *, output_dir: Path, params) -> list[str]:
    """A multi-input step on an association's members, as ``strun STEP asn.json`` runs it.

    Members are read relative to the association's folder and carry its
    table and pool names (ASNTABLE, ASNPOOL).  Products are named as strun
    names them: the step's class name in lower case as the suffix; one
    output per member is ``<member root>_<asn_id>_<suffix>.fits``, a single
    combined output ``<association file stem>_<suffix>.fits``.
    """
    from ..errors import InputFileError
    from ..tasks._library import ModelLibrary
    from .association import load_asn, member_path
    from .naming import root_of

    spec = STEPS[name]
    if spec.input_class != "ModelLibrary":
        raise InputFileError(asn_path, f"is an association; step {name} takes one exposure")
    asn, folder = load_asn(asn_path)
    members = []
    for product in asn.products:
        for member in product.members:
            if str(getattr(member, "exptype", "science")).lower() != "science":
                continue
            m = models.open(member_path(asn_path, folder, member.expname))
            m.meta.asn.table_name = asn_path.name
            m.meta.asn.pool_name = asn.asn_pool
            members.append(m)
    if not members:
        raise InputFileError(asn_path, "has no science members")
    library = ModelLibrary(members, asn_id=asn.asn_id, product_name=asn.products[0].name if asn.products else None)
    result = run_step(name, library, params)
    suffix = params.suffix or spec.jwst_class.lower()
    out_dir = Path(params.output_dir or output_dir)
    if isinstance(result.model, ModelLibrary):
        return result.model.save_members(out_dir, suffix)
    outs = result.model if isinstance(result.model, (list, tuple)) else [result.model]
    written = []
    for m in outs:
        path = Path(params.output_file) if params.output_file else out_dir / f"{root_of(asn_path.stem)}_{suffix}.fits"
        written.append(m.save(path))
    return written
