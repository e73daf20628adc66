"""Stage 3 time series: calwebb_tso3 as a Prefect flow.

The calibrated cubes of integrations (``_calints``) of one TSO product in, in jwst 3.0's order:

    outlier_detection (mode tso, each cube against its median over time)
        -> <exposure>_<asn_id>_crfints.fits
    spectroscopic TSO: adaptive_trace_model (skipped by default; each cube, on its median image)
        -> extract_1d (every integration) -> <product>_x1dints.fits
        -> white_light -> <product>_whtlt.ecsv
    imaging TSO (NRC_TSIMAGE, MIRI imaging TSO): tso_photometry (each cube) -> <product>_phot.ecsv

``webbflow run tso3 ASN`` (also ``calwebb_tso3``, ``Tso3Pipeline``) takes a level-3 TSO
association whose science members are calints files, relative to the association's folder.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from . import _prefect
from ._prefect import flow

from .. import models
from ..errors import InputFileError, ParameterError, UnsupportedModeError
from . import registry
from .stage import LastRuns, StageRun, resolve_params, resolve_references, run_name, run_steps, stamp, trim_heap

STEPS = ["outlier_detection", "tso_photometry", "adaptive_trace_model", "extract_1d", "white_light"]
# jwst's tso3 also lists pixel_replace and photom (NIRISS SOSS); they are skipped by default there
# and are not implemented here
NOT_IMPLEMENTED = ("pixel_replace", "photom")
IMAGING_TSO = {"NRC_TSIMAGE"}
# the arrays of a spectroscopic cube that extract_1d's box extraction does not read (it reads SCI and
# the variances): with keep_arrays=False they go once the crfints product is written (adaptive_trace_model
# skipped, as by default) or once that step has run
_NOT_EXTRACTED = ("err", "dq")

_last = LastRuns()
log = logging.getLogger("webbflow.flows")


def _is_imaging(model) -> bool:
    et = model.meta.exposure.type or ""
    return et in IMAGING_TSO or (et == "MIR_IMAGE" and bool(model.meta.visit.tsovisit))


def crfints_name(filename: str, asn_id: str | None) -> str:
    """jwst's name of the outlier-flagged cube: ``<root>_<asn_id>_crfints.fits``."""
    from .naming import root_of

    root = root_of(filename)
    if asn_id and root.endswith("_" + asn_id):
        root = root[: -len(asn_id) - 1]
    return f"{root}_{asn_id}_crfints.fits" if asn_id else f"{root}_crfints.fits"


def _padded_int_times(cube, nints: int):
    """The INT_TIMES table of the product: ``nints`` rows, each integration's row where the cube has one."""
    it = cube.int_times
    out = np.zeros(nints, dtype=[(n, it.dtype[n].newbyteorder("=")) for n in it.dtype.names])
    _copy_int_times(it, out)
    return out


def _copy_int_times(rows, out) -> None:
    for row in rows:
        k = int(row["integration_number"]) - 1
        if 0 <= k < len(out):
            out[k] = tuple(row)


@flow(name="tso3", flow_run_name=run_name("tso3"), validate_parameters=False, persist_result=False)
def tso3(input, product_name: str, asn_id: str | None = None, asn_pool: str | None = None,
         asn_table_name: str | None = None, steps: dict | None = None, config: str | None = None,
         output_dir: str | None = None, keep_arrays: bool = True) -> dict:
    """Run the TSO stage 3 steps on calints cubes (paths or CubeModels) of one product.

    Returns ``{"crfints": [models], "x1dints": model or None, "table": photometry or white-light
    table, "written": [paths]}``.  With ``keep_arrays=False`` (the command line's run, which
    only wants the files) each spectroscopic cube's arrays are let go once its spectra are
    extracted, so that the next cube and the x1dints product do not sit on top of them; the
    returned crfints models then hold their metadata only.
    """
    members = list(input) if isinstance(input, (list, tuple)) else [input]
    if not members:
        raise ParameterError("tso3 needs at least one calints exposure")
    # the command line's run (no arrays kept for a caller) reads the cubes' variances from their files
    # only when they are used (flows/_tso3_variances.py): index of the cube -> its variances' stand-ins
    deferred = {}
    if not keep_arrays:
        from ._tso3_variances import VARIANCES, variance_sources

        for k, m in enumerate(members):
            if not isinstance(m, models.DataModel) and str(m).lower().endswith(".fits"):
                found = variance_sources(m)
                if found:
                    deferred[k] = found
    cubes = [models.open(m, arrays=[s.name for s in models.class_for_file(Path(m)).arrays
                                    if s.name not in VARIANCES] if k in deferred else None)
             for k, m in enumerate(members)]
    for m, src in zip(cubes, members):
        if not isinstance(src, models.DataModel):
            m.meta.filename = Path(src).name  # products are named after the file, as jwst does
    for m, src in zip(cubes, members):
        if not (m.meta.visit.tsovisit or m.meta.exposure.type in ("NRC_TSIMAGE", "NRC_TSGRISM", "NIS_SOSS",
                                                                   "NRS_BRIGHTOBJ", "MIR_LRS-SLITLESS")):
            raise InputFileError(src if not isinstance(src, models.DataModel) else (m.meta.filename or "input"),
                                 "is not a TSO exposure (TSOVISIT is false); tso3 needs TSO calints")
    user = dict(steps or {})
    # NIRISS SOSS spectra are calibrated by photom after extract_1d, as jwst's tso3 does
    soss = (cubes[0].meta.exposure.type or "").upper() == "NIS_SOSS"
    for name in NOT_IMPLEMENTED:
        if soss and name == "photom":
            continue
        values = user.pop(name, None)
        if values and str(values.get("skip", True)).lower() in ("false", "0"):
            raise UnsupportedModeError(f"tso3: step {name} is not implemented (jwst skips it by default)")
    probe = cubes[0]
    params = resolve_params(STEPS + (["photom"] if soss else []), user, config, model=probe,
                            pipeline_class="Tso3Pipeline")
    if soss and not params["extract_1d"].skip:  # SOSS settings not implemented, bad ATOCA inputs: before any product
        from ..tasks.extract_1d.soss import check_params

        try:
            check_params(params["extract_1d"])
        except UnsupportedModeError as exc:
            raise UnsupportedModeError(f"{probe.meta.filename or 'tso3'}: {exc}") from None
    run = StageRun(params=params)
    imaging = _is_imaging(probe)
    later = ["tso_photometry"] if imaging else ["extract_1d", "white_light"] + (["photom"] if soss else [])
    run.references, run.context = resolve_references(probe, {k: v for k, v in params.items() if k in later})
    trim_heap()  # what reading the cubes and choosing the references freed, given back before the steps
    out_dir = Path(output_dir) if output_dir else None
    result: dict = {"crfints": [], "x1dints": None, "table": None, "written": []}

    atm_skipped = bool(params["adaptive_trace_model"].skip)  # when it runs, it reads the cube's ERR and DQ
    if deferred:
        from ..tasks.outlier_detection_tso import is_tso_cube
        from ._tso3_variances import apply_variance_nans, attach, read_whole

        for k in list(deferred):  # only a spectroscopic TSO cube's box extraction reads them as stand-ins
            if soss or imaging or not atm_skipped or cubes[k].data.ndim != 3 or not is_tso_cube(cubes[k]):
                read_whole(cubes[k], deferred.pop(k))
    flagged = []
    for k, cube in enumerate(cubes):
        if cube.data.ndim < 3:
            log.warning("Input data are 2D; skipping outlier_detection")
            flagged.append(cube)
            continue
        original = cube.meta.filename or "tso3"
        cube.meta.asn.pool_name = asn_pool  # as jwst's association container records them
        cube.meta.asn.table_name = asn_table_name
        cube = run_steps(cube, ["outlier_detection"], run)
        if k in deferred:  # the variances' part of the step's NaN agreement, then their stand-ins
            if cube.meta.cal_step.outlier_detection == "COMPLETE":
                apply_variance_nans(cube, deferred[k])
                attach(cube, deferred.pop(k))
            else:  # not flagged: the variances as they are, for extract_1d's own NaN agreement
                read_whole(cube, deferred.pop(k))
        if cube.meta.cal_step.outlier_detection == "COMPLETE":
            name = crfints_name(original, asn_id)
            cube.meta.filename = name
            crds = cube.meta.ref_file.crds.model_copy()
            stamp(cube, run, "tso3")
            cube.meta.ref_file.crds = crds  # outlier_detection uses no reference: the context stays the input's
            if out_dir is not None:
                trim_heap()  # the step's freed temporaries, not under the write's
                from ..models.io import released_once_written

                with released_once_written(() if keep_arrays or soss or imaging or not atm_skipped else _NOT_EXTRACTED):
                    result["written"].append(cube.save(out_dir / name))
                trim_heap()  # the write's freed buffers, before the next cube or extract_1d
            result["crfints"].append(cube)
            cube.meta.filename = original
        flagged.append(cube)

    if imaging:
        tables = [run_steps(cube, ["tso_photometry"], run) for cube in flagged]
        tables = [t for t in tables if t is not None and not isinstance(t, models.DataModel)]
        if not tables:
            log.warning("Could not create a photometric catalog; all results are null")
        else:
            from astropy.table import vstack

            _keep_table(result, vstack(tables), out_dir, f"{product_name}_phot.ecsv")
        return _finish(run, result)

    from ..models.spectra import TSOMultiSpecModel

    first = flagged[0]
    x1d = TSOMultiSpecModel()
    x1d.meta = first.meta.model_copy(deep=True)
    x1d.meta.model_type = "TSOMultiSpecModel"
    x1d.meta.wcs = None
    x1d.meta.filetype = None  # jwst's spectra carry no FILETYPE
    if "PRIMARY" in first._headers:
        x1d._headers = {"PRIMARY": first._headers["PRIMARY"].copy()}
    nints = first.meta.exposure.nints or first.data.shape[0]
    if first.has("int_times"):
        x1d.int_times = _padded_int_times(first, nints)
    from ..models.blend import MetaBlender

    blender = MetaBlender(spectra=True)  # each exposure's spectra's metadata, blended as jwst does
    atm_status = []
    for k, cube in enumerate(flagged):
        before = cube
        # jwst's adaptive_trace_model on each cube (skipped by default; a MIRI LRS slitless or NIRSpec
        # BOTS cube is fitted on its median image, other cubes are marked FAILED), then pixel_replace
        cube = flagged[k] = run_steps(cube, ["adaptive_trace_model"], run)
        atm_status.append(cube.meta.cal_step.adaptive_trace_model)
        if run.params["adaptive_trace_model"].save_results and out_dir is not None \
                and run.records[-1].status == "COMPLETE":  # jwst's name: <exposure>_<asn_id>_adaptive_trace_model
            result["written"].append(_save_as(cube, out_dir, "adaptive_trace_model", asn_id, run))
        cube.meta.cal_step.pixel_replace = "SKIPPED"
        if not keep_arrays and not soss:  # written already (crfints), and not read by extract_1d
            for name in _NOT_EXTRACTED:
                setattr(cube, name, None)
        spectra = run_steps(cube, ["extract_1d"], run)
        if cube.has("int_times") and x1d.has("int_times"):
            _copy_int_times(cube.int_times, x1d.int_times)
        if spectra is None or run.records[-1].status != "COMPLETE":
            continue
        if soss:
            spectra = run_steps(spectra, ["photom"], run)
            if not blender.rows:  # jwst's blended product starts from the first spectra's metadata
                _soss_metadata(spectra, x1d)
        x1d.spec.extend(spectra.spec)
        blender.accumulate(_primary_only(spectra))
        x1d.meta.ref_file.extract1d = spectra.meta.ref_file.extract1d
        if not keep_arrays:  # written already (crfints) and extracted: the cube's arrays are not read again
            for m in {id(before): before, id(cube): cube}.values():
                for name in m.array_names():
                    setattr(m, name, None)
    x1d.meta.target.source_type = None
    if not x1d.spec:
        log.warning("extract_1d step could not be completed for any integrations")
        log.warning("x1dints products will not be created.")
    else:
        table = run_steps(x1d, ["white_light"], run)
        blender.finalize(x1d)
        x1d.meta.asn.pool_name = asn_pool
        x1d.meta.asn.table_name = asn_table_name
        x1d.meta.cal_step.extract_1d = "COMPLETE"
        x1d.meta.cal_step.adaptive_trace_model = _summary_status(atm_status)
        x1d.meta.cal_step.pixel_replace = "SKIPPED"
        regions = [c.meta.wcsinfo.s_region for c in flagged if c.meta.wcsinfo.s_region]
        if regions:
            x1d.spec[0].meta["s_region"] = regions[0]
        x1d.meta.filename = f"{product_name}_x1dints.fits"
        stamp(x1d, run, "tso3")
        result["x1dints"] = x1d
        if out_dir is not None:
            result["written"].append(x1d.save(out_dir / x1d.meta.filename))
        if table is not None:
            _keep_table(result, table, out_dir, f"{product_name}_whtlt.ecsv")
    return _finish(run, result)


def _save_as(cube, out_dir: Path, suffix: str, asn_id: str | None, run: StageRun) -> str:
    """An intermediate product of one cube, ``<exposure>_<asn_id>_<suffix>.fits``; the cube keeps its name."""
    original = cube.meta.filename
    name = crfints_name(original or "tso3", asn_id).replace("_crfints.fits", f"_{suffix}.fits")
    cube.meta.filename = name
    crds = cube.meta.ref_file.crds.model_copy()
    try:
        stamp(cube, run, "tso3")
        cube.meta.ref_file.crds = crds  # the step uses no reference: the context stays the input's
        return cube.save(out_dir / name)
    finally:
        cube.meta.filename = original


def _summary_status(values) -> str:
    """One status for a product made of several exposures, as jwst sums them up: COMPLETE if any
    exposure completed, else FAILED if any failed, else SKIPPED."""
    if "COMPLETE" in values:
        return "COMPLETE"
    return "FAILED" if "FAILED" in values else "SKIPPED"


def _primary_only(spectra):
    """The spectra's metadata as jwst's extract_1d copies it from the cube (``update(only="PRIMARY")``):
    keywords of the cube's SCI header (MJD-BEG, XPOSURE, ...) are not among what tso3 blends."""
    from ..models.meta import KEYWORD_FIELDS, get_path

    for path, _key, hdu, _ann in KEYWORD_FIELDS:
        if hdu == "SCI" and path[0] not in ("wcsinfo", "photometry", "wcs"):
            parent = get_path(spectra.meta, path[:-1]) if len(path) > 1 else spectra.meta
            if parent is not None and getattr(parent, path[-1], None) is not None:
                setattr(parent, path[-1], None)
    return spectra


def _soss_metadata(spectra, x1d) -> None:
    """What a SOSS x1dints takes from its extracted spectra: the extraction's and photom's references,
    photom's status and the SOSS extraction keywords (TIKFACTR when ATOCA ran)."""
    for rt in ("pastasoss", "specprofile", "speckernel", "photom", "area"):
        setattr(x1d.meta.ref_file, rt, getattr(spectra.meta.ref_file, rt))
    x1d.meta.cal_step.photom = spectra.meta.cal_step.photom
    src = spectra._headers.get("PRIMARY")
    if src is not None:
        for key in ("SOSSWDTH", "TIKFACTR", "OVERSAMP", "THRESHLD"):
            if key in src:
                x1d._headers.setdefault("PRIMARY", type(src)())[key] = src[key]


def _keep_table(result: dict, table, out_dir, name: str) -> None:
    """A light-curve table (photometry or white light) into the result, and written when there is a folder."""
    table.meta["number_of_integrations"] = len(table)
    result["table"] = table
    if out_dir is not None:
        path = out_dir / name
        _write_table(table, path)
        result["written"].append(str(path))


def _finish(run: StageRun, result: dict) -> dict:
    run.written = list(result["written"])
    _last.clear()
    _last.append(run)
    result["steps"] = [(r.name, r.status, r.seconds) for r in run.records]
    return result


def _write_table(table, path: Path) -> None:
    from ..models.atomic import atomic_open

    with atomic_open(path, "w") as f:
        table.write(f, format="ascii.ecsv")


@registry.register("tso3")
def run_tso3(input_path, *, output_dir, steps=None, config=None, options=None):
    """``webbflow run tso3 ASN``: the calints science members of a level-3 TSO association."""
    from .association import load_asn, member_path

    if options:
        raise ParameterError(f"unknown option(s) for tso3: {', '.join('--' + k for k in options)}")
    if not str(input_path).lower().endswith(".json"):
        raise InputFileError(input_path, "tso3 takes an association (_asn.json)")
    from .association import run_from_raw  # members not made yet: the earlier stages first
    if (made := run_from_raw(input_path, "tso3", output_dir=output_dir, steps=steps, config=config)) is not None:
        return made
    from .stage import prefect_tracking, quiet_prefect_settings

    asn, folder = load_asn(input_path)
    out_dir = Path(output_dir or folder)
    written = []
    tracked = prefect_tracking()
    for product in asn.products:
        members = [member_path(input_path, folder, m.expname) for m in product.members if m.exptype == "science"]
        if not members:
            raise InputFileError(input_path, f"product {product.name!r} has no science member")
        kwargs = dict(product_name=product.name, asn_id=asn.asn_id, asn_pool=asn.asn_pool,
                      asn_table_name=Path(input_path).name, steps=steps, config=config, output_dir=str(out_dir),
                      keep_arrays=False)
        if tracked:
            with quiet_prefect_settings():
                res = _prefect.as_prefect(tso3)(members, **kwargs)
        else:  # no Prefect server to show the runs: the flow body as a plain call
            res = tso3.fn(members, **kwargs)
        written += res["written"]
    return written


_prefect.lazy_module(__name__)
