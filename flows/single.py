"""Running one step alone on a file (``webbflow run jump X_dark_current.fits``)."""

from __future__ import annotations

import re
from pathlib import Path

from .. import models
from ..tasks.base import STEPS, run_step
from .naming import KNOWN_SUFFIXES
from .params import load_config_file


# every declared step's jwst class name in lower case, the suffix strun gives a step's product
# (``X_jumpstep.fits``): strun_root removes them without importing the seventy step modules to
# learn them (tests/test_cli_startup.py checks the list against the declarations)
STEP_CLASS_SUFFIXES = frozenset({
    "adaptivetracemodelstep", "alignrefsstep", "amianalyzestep", "aminormalizestep", "assignmtwcsstep",
    "assignwcsstep", "backgroundstep", "barshadowstep", "chargemigrationstep", "cleanflickernoisestep",
    "combine1dstep", "cubebuildstep", "darkcurrentstep", "dqinitstep", "emicorrstep", "extract1dstep",
    "extract2dstep", "firstframestep", "flatfieldstep", "fringestep", "gainscalestep", "groupscalestep",
    "guidercdsstep", "imprintstep", "ipcstep", "jumpstep", "klipstep", "lastframestep", "linearitystep",
    "masterbackgroundmosstep", "masterbackgroundstep", "msaflagopenstep", "outlierdetectionstep",
    "pathlossstep", "persistencestep", "photomstep", "pictureframestep", "pixelreplacestep", "rampfitstep",
    "refpixstep", "resamplespecstep", "resamplestep", "resetstep", "residualfringestep", "rscdstep",
    "saturationstep", "skymatchstep", "sourcecatalogstep", "sourcetypestep", "spectralleakstep",
    "stackrefsstep", "straylightstep", "superbiasstep", "tsophotometrystep", "tweakregstep", "wavecorrstep",
    "wfscombinestep", "whitelightstep",
})


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
    for idx, m in enumerate(outs):
        if m is None:
            continue
        path = strun_output_path(spec, p, input_path.name, output_dir, idx=idx if len(outs) > 1 else None)
        if spec.extra.get("names_products") and m.meta.filename:  # a step that names its products (cube_build)
            path = Path(p.output_dir or output_dir) / m.meta.filename
        if isinstance(m, models.DataModel):
            _stamp_alone(m, with_crds=bool(result.references))
        written.append(m.save(path))
    return written


def _stamp_alone(model, with_crds: bool = True) -> None:
    """CAL_VER and CAL_VCS on every step's product, and the CRDS context and version when the step
    asked for references, as strun records them (a step that reads none, such as resample_spec or
    combine_1d, leaves the input's CRDS keywords as they were)."""
    from ..refs.select import record_crds_info
    from .stage import StageRun, stamp

    crds = model.meta.ref_file.crds.model_copy()
    stamp(model, StageRun(params={}), "single step")
    if not with_crds:
        model.meta.ref_file.crds = crds
        return
    try:
        record_crds_info(model)
    except Exception:  # noqa: BLE001 - references given as files, no CRDS cache: nothing to record
        pass


def strun_suffix(spec, params) -> str:
    """The suffix ``strun STEP`` gives a step's product.

    A suffix the user sets wins; then the one the step's own parameters
    declare (jwst's steps that name their product, e.g. source_catalog's
    ``cat`` or white_light's ``whtlt``); otherwise the step's class name in
    lower case (``extract1dstep``), since strun names the step after its
    class.
    """
    return params.suffix or spec.jwst_class.lower()


def strun_root(name: str) -> str:
    """An input file's root as strun finds it: one known suffix and the extension removed.

    strun removes a single trailing suffix it knows (a product suffix such as
    ``cal`` or ``rate``, a step's alias such as ``dark_current``, or a step
    product's class-name suffix such as ``jumpstep``); ``X_cal_x1d`` keeps
    ``X_cal``.
    """
    stem = re.sub(r"\.(fits|asdf|ecsv)(\.gz)?$", "", Path(name).name)
    known = set(KNOWN_SUFFIXES) | STEP_CLASS_SUFFIXES | {s.jwst_class.lower() for s in STEPS.values()}
    for s in sorted(known, key=len, reverse=True):
        for sep in ("_", "-"):
            if stem.endswith(sep + s) and len(stem) > len(s) + 1:
                return stem[: -(len(s) + 1)]
    return stem


def strun_output_path(spec, params, input_name: str, output_dir, *, idx: int | None = None) -> Path:
    """Where ``strun STEP input`` writes the product: ``<root>[_<idx>]_<suffix><ext>``.

    With ``output_file`` its file name stands in for the input's (strun still
    puts the suffix on it, in the output folder); several outputs (ramp_fit's rate and rateints) are
    numbered 0, 1, ... in the order the step returns them.  A step whose ``search_output_file`` is
    false (jwst's residual_fringe) names its product after the input whatever ``output_file`` says,
    as stpipe does.
    """
    use_output_file = getattr(params, "search_output_file", True)
    base = (params.output_file if use_output_file else None) or input_name
    ext = getattr(params, "output_ext", None) or ".fits"
    if not ext.startswith("."):
        ext = "." + ext
    parts = [strun_root(base)] + ([str(idx)] if idx is not None else []) + [strun_suffix(spec, params)]
    if idx is not None and not params.suffix and spec.extra.get("strun_suffixes"):
        parts = [strun_root(base), spec.extra["strun_suffixes"][idx]]  # a step that names each product (ami_analyze)
    return Path(params.output_dir or output_dir) / ("_".join(parts) + ext)


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
    # a step reads the member types it declares (master_background also reads the backgrounds)
    kinds = set(spec.extra.get("asn_member_types", ("science",)))
    members = []
    for product in asn.products:
        for member in product.members:
            if str(getattr(member, "exptype", "science")).lower() not in kinds:
                continue
            if spec.extra.get("streams_members"):  # the step opens one member at a time (cube_build)
                members.append(member_path(asn_path, folder, member.expname))
                continue
            m = models.open(member_path(asn_path, folder, member.expname))
            m.meta.asn.table_name = asn_path.name
            m.meta.asn.pool_name = asn.asn_pool
            members.append(m)
    if not any(str(getattr(mem, "exptype", "science")).lower() == "science"
               for product in asn.products for mem in product.members):
        raise InputFileError(asn_path, "has no science members")
    if params.output_dir is None:  # side products (master_background's save_background) go with the products
        params = params.model_copy(update={"output_dir": str(output_dir)})
    library = ModelLibrary(members, asn_id=asn.asn_id, product_name=asn.products[0].name if asn.products else None,
                           asn_info=(asn.asn_pool, asn_path.name) if spec.extra.get("streams_members") else None)
    result = run_step(name, library, params)
    suffix = strun_suffix(spec, params)
    out_dir = Path(params.output_dir or output_dir)
    if isinstance(result.model, ModelLibrary):
        return result.model.save_members(out_dir, suffix)
    outs = result.model if isinstance(result.model, (list, tuple)) else [result.model]
    written = []
    for m in outs:
        if spec.extra.get("names_products") and m.meta.filename:  # a step that names its products (cube_build)
            written.append(m.save(out_dir / m.meta.filename))
            continue
        if len(outs) > 1 and m.meta.filename:
            # one product per member (master_background's science): named after the member, as strun does
            path = out_dir / f"{strun_root(m.meta.filename)}_{suffix}.fits"
        else:
            path = Path(params.output_file) if params.output_file else out_dir / f"{root_of(asn_path.stem)}_{suffix}.fits"
        written.append(m.save(path))
    return written
