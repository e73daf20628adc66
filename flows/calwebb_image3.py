"""Stage 3 imaging: calwebb_image3 as a Prefect flow.

Calibrated exposures of one product in, combined products out, in jwst 3.0's order:

    assign_mtwcs (moving targets) or tweakreg -> skymatch -> outlier_detection (<root>_crf.fits)
    -> resample (<product>_i2d.fits) -> source_catalog (<product>_cat.ecsv, <product>_segm.fits)

The exposures travel in a ModelLibrary.  When their files together take at
most half of ``WEBBFLOW_MEMORY_BUDGET`` (default 2 GiB; the other half is for
the median stack and the mosaic), they are read once and kept in memory, as
jwst's ``in_memory=True`` does; beyond that the library keeps at most one of
them in memory at full size at a time, so a product of hundreds of exposures
fits in memory.  ``in_memory=True|False`` forces either way.
``webbflow run image3 ASN`` goes through the association flow, which first
brings members that need it through detector1 and image2.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from . import _prefect
from ._prefect import flow

from .. import models
from ..errors import InputFileError, ParameterError, did_you_mean
from ..tasks._gc import older_objects_frozen
from . import registry
from .observe import publish_stage
from .stage import LastRuns, StageRun, resolve_params, resolve_references, run_name, run_steps, save_product, stamp

STEPS = ["assign_mtwcs", "tweakreg", "skymatch", "outlier_detection", "resample", "source_catalog"]

_last = LastRuns()
log = logging.getLogger("webbflow.flows")


def keep_in_memory(members) -> bool:
    """Whether the exposure files of one product fit in memory: together at most half the budget.

    Members given as models are in memory already and do not count.
    """
    from ._streaming import memory_budget

    paths = [m for m in members if isinstance(m, (str, os.PathLike))]
    size = 0
    for p in paths:
        try:
            size += os.path.getsize(p)
        except OSError:
            pass  # the library names a missing file itself
    fits = 2 * size <= memory_budget()
    if paths:
        log.info("image3: %d exposure files, %.0f MiB: %s", len(paths), size / 2**20,
                 "kept in memory" if fits else "read one at a time (over half of WEBBFLOW_MEMORY_BUDGET)")
    return fits


# the libraries Stage 3's steps use, imported before the steps start (as jwst's are, with its step
# classes), so that a step's recorded seconds are its own work
_STEP_LIBRARIES = ("photutils.background", "photutils.detection", "photutils.segmentation", "photutils.aperture",
                   "tweakwcs.correctors", "stcal.tweakreg.tweakreg", "stcal.skymatch", "stcal.resample",
                   "stcal.outlier_detection.utils", "stcal.outlier_detection.median", "scipy.spatial")


def _import_step_libraries() -> None:
    import importlib

    for name in _STEP_LIBRARIES:
        try:
            importlib.import_module(name)
        except ImportError:  # the step that needs it says so
            pass


def _is_moving_target(meta) -> bool:
    return str(getattr(meta.target, "type", "") or "").upper() == "MOVING"


@flow(name="image3", flow_run_name=run_name("image3"), validate_parameters=False, persist_result=False)
def image3(input, product_name: str | None = None, steps: dict | None = None, config: str | None = None,
           output_dir: str | None = None, in_memory: bool | None = None, asn_id: str | None = None,
           asn_info: tuple[str, str] | None = None) -> dict:
    """Combine calibrated exposures (paths or models) into one mosaic and its source catalogue.

    ``in_memory``: None decides by ``WEBBFLOW_MEMORY_BUDGET``; True reads each exposure once and
    keeps it; False keeps them on disk, one in memory at a time (changed ones in a temporary folder).
    ``asn_id``: the association's id, which jwst puts into the crf names (``<exposure>_<asn_id>_crf.fits``);
    ``asn_info``: (pool, association file name), recorded in the products as jwst does.
    Returns ``{"i2d": model, "catalog": table path or table, "written": [paths], ...}``.
    """
    # what exists now (modules, the caller's data) stays out of the collections made while the members
    # are read and the steps run, which walk only what was made since
    with older_objects_frozen():
        return _combine(input, product_name, steps, config, output_dir, in_memory, asn_id, asn_info)


def _combine(input, product_name, steps, config, output_dir, in_memory, asn_id, asn_info) -> dict:
    from ..tasks._library import ModelLibrary

    members = list(input) if isinstance(input, (list, tuple)) else [input]
    if not members:
        raise ParameterError("image3 needs at least one calibrated exposure")
    # on_disk: False keeps every member once read, True writes even in-memory models to a temporary
    # folder, None keeps files on disk and models in memory
    if in_memory is None:
        on_disk = False if keep_in_memory(members) else None
    else:
        on_disk = not in_memory
    # refuses members that are not 2-D images, naming them
    library = ModelLibrary(members, on_disk=on_disk, asn_id=asn_id, product_name=product_name, asn_info=asn_info)
    # the first member's metadata (no pixels) drives CRDS parameter files and references
    probe = library.stub(0)
    for i, member in enumerate(members):
        meta = library.read_metadata(i)
        where = member if not isinstance(member, models.DataModel) else (meta.filename or f"member {i}")
        if getattr(meta, "wcs", None) is None:
            raise InputFileError(where, "has no WCS; image3 needs calibrated images from image2 (assign_wcs)")
    params = resolve_params(STEPS, steps, config, model=probe, pipeline_class="Image3Pipeline")
    user = (steps or {}).get("outlier_detection", {})
    if "save_results" not in user and output_dir is not None:
        # jwst's image3 writes the crf products
        params["outlier_detection"] = params["outlier_detection"].model_copy(update={"save_results": True})
    moving = _is_moving_target(probe.meta)
    run = StageRun(params=params)
    run.references, run.context = resolve_references(probe, {k: v for k, v in params.items() if k == "source_catalog"})
    out_dir = Path(output_dir) if output_dir else None
    root = product_name or _default_root(probe)
    if out_dir is not None:
        for name in ("outlier_detection", "source_catalog"):
            if params[name].output_dir is None:
                params[name] = params[name].model_copy(update={"output_dir": str(out_dir)})

    align = ["assign_mtwcs"] if moving else ["tweakreg"]
    _import_step_libraries()
    library = run_steps(library, align + ["skymatch", "outlier_detection"], run, output_dir=None, source_name=root)
    i2d = run_steps(library, ["resample"], run, output_dir=None, source_name=root)
    result: dict = {"written": [], "i2d": i2d, "catalog": None}
    if isinstance(i2d, models.DataModel):
        i2d.meta.filename = f"{root}_i2d.fits"
        if asn_info:  # ASNPOOL / ASNTABLE of the association, as jwst's resample copies them
            i2d.meta.asn.pool_name, i2d.meta.asn.table_name = asn_info
        stamp(i2d, run, "image3")
        if out_dir is not None:
            result["written"].append(save_product(i2d, out_dir, f"{root}_i2d.fits", "i2d", run))
        cat = run_steps(i2d, ["source_catalog"], run, output_dir=None, source_name=root)
        if isinstance(cat, tuple) and len(cat) == 2:
            catalog, segm = cat
            result["catalog_table"] = catalog
            if out_dir is not None:
                from ..tasks.source_catalog import write_products

                if segm is not None:
                    stamp(segm, run, "image3")
                written = write_products(catalog, segm, out_dir, root)
                result["written"] += written
                result["catalog"] = next((p for p in written if p.endswith("_cat.ecsv")), None)
    if out_dir is not None:
        result["written"] += sorted(str(p) for p in out_dir.glob("*_crf.fits"))
    run.written = list(result["written"])
    crfs = [p for p in run.written if str(p).endswith("_crf.fits")]
    publish_stage(run, "image3", f"{root}_i2d.fits", [i2d if isinstance(i2d, models.DataModel) else None] + crfs)
    _last.clear()
    _last.append(run)
    result["steps"] = [(r.name, r.status, r.seconds) for r in run.records]
    return result


def _default_root(model) -> str:
    from .naming import root_of

    return root_of(model.meta.filename or "webbflow_image3") + "_image3"


@registry.register("image3")
def run_image3(input_path, *, output_dir, steps=None, config=None, options=None):
    """``webbflow run image3 ASN``: the association flow, with earlier stages for members that need them."""
    from .association import run_association
    from .calwebb_detector1 import ALL_STEPS as D1
    from .calwebb_image2 import STEPS as I2

    options = dict(options or {})
    runner = options.pop("runner", None)
    workers = options.pop("max_workers", None)
    address = options.pop("scheduler", None) or options.pop("dask_address", None)
    allow_partial = bool(options.pop("allow_partial", False))
    if options:
        raise ParameterError(f"unknown option(s) for image3: {', '.join('--' + k for k in options)}")
    if not str(input_path).lower().endswith(".json"):
        raise InputFileError(input_path, "image3 takes an association (_asn.json)")
    by_stage: dict[str, dict] = {"detector1": {}, "image2": {}, "image3": {}}
    for name, values in (steps or {}).items():
        stage = "image3" if name in STEPS else "image2" if name in I2 else "detector1" if name in D1 else None
        if stage is None:
            known = list(D1) + list(I2) + list(STEPS)
            raise ParameterError(f"unknown step {name!r}{did_you_mean(name, known)} for image3 and the stages before it")
        by_stage[stage][name] = values
    res = run_association(input_path, output_dir=output_dir, steps=by_stage, config=config, stage3=True,
                          allow_partial=allow_partial, runner=runner, max_workers=int(workers) if workers else None,
                          address=address)
    written = [p for m in res.members for p in m.products]
    for prod in res.stage3.values():
        written += prod.get("written", [])
    return written


_prefect.lazy_module(__name__)
