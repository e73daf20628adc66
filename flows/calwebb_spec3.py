"""Stage 3 spectroscopy: calwebb_spec3 as a Prefect flow, with per-source fan-out.

The calibrated exposures (``_cal``) of one spec3 product in, in jwst 3.0's order:

    background members (x1d spectra): master_background subtracts their combined spectrum from
        the science exposures (:mod:`webbflow.tasks.master_background`; MOS slits get none)
    multi-slit exposures (MultiSlitModel): exp_to_source regroups their slits by source
        -> per source, one Prefect subflow (``spec3-source``), fanned out on the flow's task
           runner (threads, at most ``MAX_WORKERS`` sources at once); a run Prefect does not
           track (``webbflow run spec3`` with no Prefect API, see stage.prefect_tracking) runs
           the flow's body and each source as plain calls on as many threads instead:
              <source product>_cal.fits   the source's slits, one per exposure (MultiExposureModel)
              outlier_detection (mode spec)      -> <source product>_crf.fits
              adaptive_trace_model, pixel_replace (skipped by default, as in jwst)
              resample_spec                      -> <source product>_s2d.fits
              extract_1d on the s2d              -> <source product>_x1d.fits
           when resample_spec did not complete: extract_1d on each slit and combine_1d of
           those spectra -> <source product>_c1d.fits (jwst's branch; for resampled slits
           jwst writes no c1d)
    -> the join: every source's products; a source that failed is logged with its error and
       the others' products are kept, then the run ends with one line naming the failed
       sources (:class:`SourcesFailed`, non-zero exit from the command line).

Source product names are jwst's (:func:`webbflow.tasks.exp_to_source.source_product_name`):
``jw01345-o062_{source_id}_nirspec_clear-prism`` gives
``jw01345-o062_s000000933_nirspec_clear-prism``.

``webbflow run spec3 ASN`` (also ``calwebb_spec3``, ``Spec3Pipeline``) takes a level-3 spec3
association whose science members are cal files, relative to the association's folder.

IFU exposures (MIR_MRS, NRS_IFU) take their own path to cubes: :mod:`webbflow.flows._spec3_ifu`.

WFSS (NRC_WFSS, NIS_WFSS, MIR_WFSS) takes its own branch (:mod:`webbflow.flows._spec3_wfss`): the
sources in batches, one task run each, extracting and combining their spectra; the join writes jwst 3.0's two products,
``<product>_x1d.fits`` and ``<product>_c1d.fits``, every source in each.

NIRISS SOSS takes its own path to x1d and c1d: :mod:`webbflow.flows._spec3_soss`.

Not implemented yet (refused with one line, never skipped silently): moving targets (assign_mtwcs).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path

from . import _prefect
from ._prefect import Later, flow, task

from .. import models
from ..errors import InputFileError, ParameterError, UnsupportedModeError, WebbflowError, a_an
from . import registry
from ._spec3_wfss import WFSS_TYPES, open_cal, run_wfss
from .stage import LastRuns, StageRun, guarded, resolve_params, resolve_references, run_name, run_steps, stamp, trim_heap

STEPS = ["master_background", "outlier_detection", "adaptive_trace_model", "pixel_replace", "resample_spec",
         "cube_build", "extract_1d", "combine_1d", "spectral_leak"]  # cube_build, spectral_leak: IFU exposures only (flows/_spec3_ifu.py)
# jwst's spec3 steps that are not here yet; asking for them (skip=false) is refused
NOT_IMPLEMENTED = ("assign_mtwcs", "photom")
SLITLESS_TYPES = {"NIS_SOSS", "NIS_WFSS", "NRC_WFSS", "MIR_WFSS"}
IFU_TYPES = {"MIR_MRS", "NRS_IFU"}
MAX_WORKERS = 2

_last = LastRuns()
log = logging.getLogger("webbflow.flows")


class SourcesFailed(WebbflowError):
    """Some sources failed; the others' products were written (``.result`` holds what was done)."""

    def __init__(self, message: str, result: dict):
        super().__init__(message)
        self.result = result


@dataclass
class SourceResult:
    name: str
    written: list[str] = field(default_factory=list)
    error: str | None = None
    steps: list = field(default_factory=list)


def _save(model, out_dir: Path | None, name: str, written: list[str]) -> None:
    model.meta.filename = name
    if out_dir is not None:
        written.append(model.save(out_dir / name))


def process_source(source, name: str, run: StageRun, out_dir: Path | None, asn_table: str | None,
                   asn_id: str | None = None) -> SourceResult:
    """One source through spec3's slit branch: the science of the ``spec3-source`` subflow.

    A source that fails leaves no product: what it had written is removed before the error goes on.
    """
    from ..tasks._wcs_cache import reuse_wcs_transforms

    res = SourceResult(name)
    try:
        with reuse_wcs_transforms():  # each slit's gWCS transforms combined once for all its steps
            return _process_source(source, res, run, out_dir, asn_table, asn_id)
    except BaseException:
        for p in res.written:
            Path(p).unlink(missing_ok=True)
        raise


def _process_source(source, res: SourceResult, run: StageRun, out_dir: Path | None, asn_table: str | None,
                    asn_id: str | None = None):
    name = res.name
    is_multi = isinstance(source, models.MultiExposureModel)
    slits = list(source.slits) if isinstance(source, models.MultiSlitModel) else list(source)
    for s in slits:
        if s.meta.wcs is None:
            raise InputFileError(s.meta.filename or name, f"slit {s.name} (source {s.source_id}) has no WCS "
                                 "(assign_wcs must have run in Stage 2)")
    if is_multi:
        _save(source, out_dir, f"{name}_cal.fits", res.written)
    for s in slits:
        s.meta.asn.table_name = asn_table
    # single slits read by spec3 from their files: the arrays only their crf needs let go until then
    reread = [] if is_multi else [_unload_passive(s) for s in slits]
    slits = run_steps(slits, ["outlier_detection"], run)
    if is_multi:
        crf = models.MultiExposureModel()
        crf.meta = source.meta.model_copy(deep=True)
        crf._headers = {k: h.copy() for k, h in source._headers.items() if k == "PRIMARY"}
        crf.slits.extend(slits)
        _save(crf, out_dir, f"{name}_crf.fits", res.written)
    else:  # single slits (MIRI LRS): each exposure's flagged slit, <exposure>_<asn_id>_crf.fits as jwst names it
        for s, unloaded in zip(slits, reread):
            if s.meta.cal_step.outlier_detection == "COMPLETE":
                original = s.meta.filename
                _reload(s, unloaded)
                _save(s, out_dir, crf_name(original or name, asn_id), res.written)
                s.meta.filename = original
                unloaded.update(_unload_passive(s))
                trim_heap()  # the save's buffers and the arrays read again, given back before the next
        if not (run.params["adaptive_trace_model"].skip and run.params["pixel_replace"].skip):
            for s, unloaded in zip(slits, reread):
                _reload(s, unloaded)
            reread = []
    if run.params["adaptive_trace_model"].skip:  # jwst's adaptive_trace_model comes here, skipped by default
        for s in slits:
            s.meta.cal_step.adaptive_trace_model = "SKIPPED"
    else:
        slits = [run_steps(s, ["adaptive_trace_model"], run) for s in slits]
    slits = run_steps(slits, ["pixel_replace"], run)
    s2d = run_steps(slits, ["resample_spec"], run)
    if run.records[-1].status == "COMPLETE":
        crds = s2d.meta.ref_file.crds.model_copy()
        stamp(s2d, run, "spec3")
        s2d.meta.ref_file.crds = crds  # resample_spec uses no reference: the context stays the input's
        _save(s2d, out_dir, f"{name}_s2d.fits", res.written)
        x1d = run_steps(s2d, ["extract_1d"], run)
        if run.records[-1].status == "COMPLETE":
            stamp(x1d, run, "spec3")
            _save(x1d, out_dir, f"{name}_x1d.fits", res.written)
    else:
        for s, unloaded in zip(slits, reread):
            _reload(s, unloaded)
        spectra = [run_steps(s, ["extract_1d"], run) for s in slits]
        spectra = [x for x in spectra if isinstance(x, models.DataModel) and x.meta.cal_step.extract_1d == "COMPLETE"]
        if spectra:
            c1d = run_steps(spectra, ["combine_1d"], run)
            if run.records[-1].status == "COMPLETE":
                stamp(c1d, run, "spec3")
                _save(c1d, out_dir, f"{name}_c1d.fits", res.written)
    res.steps = [(r.name, r.status, r.seconds) for r in run.records]
    return res


# a single slit's arrays that outlier_detection and resample_spec do not read (jwst's crf carries them)
_PASSIVE = {"wavelength": "WAVELENGTH", "pathloss_point": "PATHLOSS_PS", "pathloss_uniform": "PATHLOSS_UN"}


def _unload_passive(slit) -> dict:
    """Let go of a single slit's arrays that only its crf needs (``_PASSIVE``), when the cal file it was
    read from holds them unchanged (spec3 read it, see ``_source_path``): two full-frame arrays of an
    LRS exposure, 8 MiB, through outlier_detection and resample_spec.  Returns what :func:`_reload`
    needs to read them again; empty when nothing was let go."""
    path = getattr(slit, "_source_path", None)
    if path is None:
        return {}
    names = [n for n in _PASSIVE if slit.has(n)]
    for n in names:
        setattr(slit, n, None)
    return {"path": path, "names": names} if names else {}


def _reload(slit, unloaded: dict) -> None:
    """The arrays :func:`_unload_passive` let go, read again from the cal file."""
    if not unloaded or not unloaded.get("names"):
        return
    from astropy.io import fits

    with fits.open(unloaded["path"], memmap=False) as hdul:
        for n in unloaded["names"]:
            setattr(slit, n, hdul[_PASSIVE[n]].data)
    unloaded["names"] = []


def crf_name(filename: str, asn_id: str | None) -> str:
    """jwst's name of an exposure's outlier-flagged slit: ``<root>_<asn_id>_crf.fits``."""
    from .naming import root_of

    root = root_of(filename)
    if asn_id and root.endswith("_" + asn_id):
        root = root[: -len(asn_id) - 1]
    return f"{root}_{asn_id}_crf.fits" if asn_id else f"{root}_crf.fits"


@flow(name="spec3-source", flow_run_name="spec3 {name}", validate_parameters=False, persist_result=False)
def spec3_source(source, name: str, params: dict, references: dict, context: str | None,
                 output_dir: str | None, asn_table: str | None, asn_id: str | None = None) -> SourceResult:
    """The Stage 3 products of one source (a Prefect subflow; its steps are its task runs)."""
    run = StageRun(params=params, references=references, context=context)
    return process_source(source, name, run, Path(output_dir) if output_dir else None, asn_table, asn_id)


@task(name="source", cache_policy="NONE", persist_result=False)
def source_task(source, name: str, params: dict, references: dict, context: str | None,
                output_dir: str | None, asn_table: str | None, asn_id: str | None = None) -> SourceResult:
    """Run one source's subflow (its failure reported, see :func:`.stage.guarded`)."""
    return guarded(SourceResult, spec3_source, name, source, name, params, references, context, output_dir, asn_table, asn_id)


def _refuse_unsupported(exp_type: str | None, user: dict, where: str) -> None:
    if exp_type in SLITLESS_TYPES and exp_type not in WFSS_TYPES:
        raise UnsupportedModeError(f"{where}: spec3 for slitless {exp_type} is not implemented yet")
    if exp_type in IFU_TYPES:
        raise UnsupportedModeError(f"{where}: spec3 for IFU {exp_type} (cube_build) is not implemented yet")
    for name in NOT_IMPLEMENTED:
        values = user.pop(name, None)
        if values and str(values.get("skip", True)).lower() in ("false", "0"):
            raise UnsupportedModeError(f"spec3: step {name} is not implemented")


def _open_slits(src):
    """A spec3 member read without asdf's schema pass on read (as WFSS members are, :func:`open_cal`).

    Each slit's gWCS is converted from its own node (models/_lazy_wcs.py) and the tree is not
    validated against the schemas on read, which is most of the time of opening a file of many
    slits.  Except for WFSS cutouts (made on first use), the WCS objects are made here, before the
    model goes anywhere, so nothing downstream sees a lazy one."""
    from ..models._lazy_wcs import LazyWcs, lazy_wcs_reading
    from ..tasks._gc import collections_paused

    # every WCS is made here, so their YAML is parsed with the tree, not cut out (open_cal reads
    # WFSS members, whose cutouts' WCSs stay lazy, with the cutting)
    with collections_paused(), lazy_wcs_reading(cut_yaml=False):
        m = open_cal(src)
        if m.meta.exposure.type not in WFSS_TYPES:
            for s in getattr(m, "slits", None) or [m]:
                if isinstance(getattr(s.meta, "wcs", None), LazyWcs):
                    s.meta.wcs = s.meta.wcs.load()
    return m


def sources_of(exposures, product_name: str) -> list[tuple[str, object]]:
    """``[(source product name, source)]``: exp_to_source's regrouping for multi-slit exposures,
    else the one product of all the exposures (single slits)."""
    from ..tasks.exp_to_source import exp_to_source, source_product_name

    exp_type = exposures[0].meta.exposure.type
    if isinstance(exposures[0], models.MultiSlitModel):
        by_source = exp_to_source(exposures)
        return [(source_product_name(product_name, exp_type, src.slits, key), src) for key, src in by_source.items()]
    return [(product_name, list(exposures))]


def _thread_pool_runner(n: int):
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=n)


@flow(name="spec3", flow_run_name=run_name("spec3"), validate_parameters=False, persist_result=False,
      task_runner=Later(lambda: _thread_pool_runner(MAX_WORKERS)))
def spec3(input, product_name: str, asn_id: str | None = None, asn_pool: str | None = None,
          asn_table_name: str | None = None, steps: dict | None = None, config: str | None = None,
          output_dir: str | None = None, backgrounds=None) -> dict:
    """Run the Stage 3 spectroscopic steps on the cal exposures (paths or models) of one product.

    ``backgrounds``: the association's background members (x1d paths or models), for master_background.

    Returns ``{"sources": [SourceResult], "written": [paths], "failed": [SourceResult]}``; raises
    :class:`SourcesFailed` after the join when a source failed (the others' products are written).
    """
    members = list(input) if isinstance(input, (list, tuple)) else [input]
    if not members:
        raise ParameterError("spec3 needs at least one cal exposure")
    from ._spec3_ifu import is_ifu, spec3_ifu

    if is_ifu(members[0]):  # IFU exposures: cubes (flows/_spec3_ifu.py)
        return spec3_ifu(members, product_name=product_name, asn_id=asn_id, asn_pool=asn_pool,
                         asn_table_name=asn_table_name, steps=steps, config=config, output_dir=output_dir,
                         backgrounds=backgrounds)
    from ._spec3_soss import is_soss, spec3_soss

    if is_soss(members[0]):  # NIRISS SOSS: x1d and c1d of the product (flows/_spec3_soss.py)
        return spec3_soss(members, product_name=product_name, asn_id=asn_id, asn_pool=asn_pool,
                          asn_table_name=asn_table_name, steps=steps, config=config, output_dir=output_dir,
                          backgrounds=backgrounds)
    from ..models.io import fits_config_read_once
    from ..tasks._gc import older_objects_frozen, rarer_collections

    # the garbage collector was a fifth of the CPU of 20 sources: full collections walking the
    # modules' objects again while exposures were read, and young objects collected too early;
    # astropy's FITS configuration looked up again by every header card read or written
    with older_objects_frozen(), rarer_collections(), fits_config_read_once():
        return _spec3_slits(members, product_name, asn_id, asn_pool, asn_table_name, steps, config, output_dir,
                            backgrounds)


def _spec3_slits(members, product_name, asn_id, asn_pool, asn_table_name, steps, config, output_dir, backgrounds) -> dict:
    """spec3's slit and WFSS modes (the body of :func:`spec3` once IFU and SOSS exposures are sent their way)."""
    def open_member(src):
        m = _open_slits(src)  # WFSS cutouts' WCSs made on first use (flows/_spec3_wfss.py)
        if not isinstance(src, models.DataModel):
            m.meta.filename = Path(src).name
        if not isinstance(m, (models.MultiSlitModel, models.SlitModel)):
            raise InputFileError(src if not isinstance(src, models.DataModel) else (m.meta.filename or "input"),
                                 f"is {a_an(type(m).__name__)}; spec3's slit modes need MultiSlitModel or SlitModel cal files")
        m.meta.asn.pool_name = asn_pool  # as jwst's association container records them
        if isinstance(m, models.SlitModel) and not isinstance(src, models.DataModel):
            m._source_path = Path(src)  # its crf's passive arrays are read again from there (_unload_passive)
        m.meta.asn.table_name = asn_table_name
        return m

    exposures = [open_member(members[0])]
    if exposures[0].meta.exposure.type in WFSS_TYPES and not backgrounds:
        # WFSS: the other exposures are opened one at a time as their turn comes (flows/_spec3_wfss.py)
        exposures += [functools.partial(open_member, src) for src in members[1:]]
    else:
        exposures += [open_member(src) for src in members[1:]]
    user = dict(steps or {})
    probe = exposures[0]
    _refuse_unsupported(probe.meta.exposure.type, user, probe.meta.filename or "input")
    if len({type(m) for m in exposures if isinstance(m, models.DataModel)}) > 1:
        raise InputFileError(asn_table_name or "input", "mixes multi-slit and single-slit exposures")
    params = resolve_params(STEPS, user, config, model=probe, pipeline_class="Spec3Pipeline")
    references, context = resolve_references(probe, {k: v for k, v in params.items() if k == "extract_1d"})
    out_dir = Path(output_dir) if output_dir else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)

    if backgrounds:
        spectra = [models.open(b) for b in backgrounds]
        from ..tasks._library import ModelLibrary

        # as a library carrying the asn_id, which names save_background's products
        subtracted = run_steps(ModelLibrary(exposures + spectra, asn_id=asn_id), ["master_background"],
                               StageRun(params=params), output_dir=out_dir, source_name=product_name)
        exposures = [m for m in subtracted if isinstance(m, (models.MultiSlitModel, models.SlitModel))]
    tracked = _prefect.in_flow_run()
    results: list[SourceResult] = []
    if probe.meta.exposure.type in WFSS_TYPES:  # WFSS: per-source spectra joined into one x1d and one c1d
        del probe  # run_wfss releases each exposure once its cutouts are extracted
        results, written = run_wfss(exposures, product_name, params, references, context, out_dir, tracked)
        return _join(results, written, params, references, context)
    sources = sources_of(exposures, product_name)
    log.info("spec3: %d source(s) from %d exposure(s)", len(sources), len(exposures))
    if tracked:
        # the fan-out: the flow's task runner runs at most MAX_WORKERS sources at once
        # (``spec3.with_options(task_runner=...)`` for another bound)
        futures = [_prefect.as_prefect(source_task).submit(src, name, params, references, context, output_dir, asn_table_name, asn_id)
                   for name, src in sources]
        results = [f.result() for f in futures]
    else:
        # no Prefect run (``spec3.fn``): plain calls, the same products, MAX_WORKERS sources at once
        def one(item):
            name, src = item
            run = StageRun(params=params, references=references, context=context)
            return guarded(SourceResult, process_source, name, src, name, run, out_dir, asn_table_name, asn_id)

        if len(sources) > 1 and MAX_WORKERS > 1:
            from concurrent.futures import ThreadPoolExecutor

            from .association import warm_up_readers

            warm_up_readers()
            with ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="spec3-source") as pool:
                results = list(pool.map(one, sources))
        else:
            results = [one(item) for item in sources]
    written = [p for r in results for p in r.written]
    return _join(results, written, params, references, context)


def _join(results: list, written: list[str], params: dict, references: dict, context: str | None) -> dict:
    """The run's result; :class:`SourcesFailed` (after the others' products are written) when a source failed."""
    failed = [r for r in results if r.error]
    result = {"sources": results, "written": written, "failed": failed}
    run = StageRun(params=params, references=references, context=context, written=written)
    _last.clear()
    _last.append(run)
    if failed:
        lines = "; ".join(f"{r.name}: {r.error}" for r in failed)
        raise SourcesFailed(f"spec3: {len(failed)} of {len(results)} sources failed ({lines}); "
                            f"the other {len(results) - len(failed)} sources' products are kept", result)
    return result


@registry.register("spec3")
def run_spec3(input_path, *, output_dir, steps=None, config=None, options=None):
    """``webbflow run spec3 ASN``: the cal science members of a level-3 spec3 association."""
    from .association import in_prefect_run, load_asn, member_path
    from .stage import prefect_tracking

    if options:
        raise ParameterError(f"unknown option(s) for spec3: {', '.join('--' + k for k in options)}")
    if not str(input_path).lower().endswith(".json"):
        raise InputFileError(input_path, "spec3 takes an association (_asn.json)")
    from .association import run_from_raw  # members not made yet: the earlier stages first
    if (made := run_from_raw(input_path, "spec3", output_dir=output_dir, steps=steps, config=config)) is not None:
        return made
    asn, folder = load_asn(input_path)
    written = []
    for product in asn.products:
        members = [member_path(input_path, folder, m.expname) for m in product.members
                   if str(m.exptype).lower() == "science"]
        if not members:
            raise InputFileError(input_path, f"product {product.name!r} has no science member")
        backgrounds = [member_path(input_path, folder, m.expname) for m in product.members
                       if str(m.exptype).lower() == "background"]
        for p in members + backgrounds:
            if not p.exists():
                raise InputFileError(p, "no such file (a member of the association)")
        # a Prefect flow run when Prefect tracks runs (stage.prefect_tracking), else its body as plain
        # calls: no temporary Prefect server, no subflow per source, the same products
        body = _prefect.as_prefect(spec3) if prefect_tracking() or in_prefect_run() else spec3.fn
        res = body(members, backgrounds=backgrounds, product_name=product.name, asn_id=asn.asn_id, asn_pool=asn.asn_pool,
                   asn_table_name=Path(input_path).name, steps=steps, config=config,
                   output_dir=str(output_dir or folder))
        written += res["written"]
    return written


_prefect.lazy_module(__name__)
