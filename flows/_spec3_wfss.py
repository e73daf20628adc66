"""calwebb_spec3's slitless WFSS branch (NRC_WFSS, NIS_WFSS, MIR_WFSS), as jwst 3.0 runs it.

The cal exposures (MultiSlitModels: one cutout per source and order) are taken one at a time, in
the association's order: each is read with its cutouts' WCSs made only when used (:func:`open_cal`,
models/_lazy_wcs.py: a WFSS spectrum needs its WCS only for an aperture correction, and the
product's S_REGION only the first cutout's), its cutouts regrouped by source (exp_to_source) and
extracted, and the exposure is let go before the next is opened; each spectrum's table goes to a
temporary file as soon as it is made (models/wfss_spectra.py SpillFile) and is read back when
needed: memory holds one exposure plus the catalogue, not every exposure nor every spectrum.  The work is
fanned out on the spec3 flow's task runner in batches of sources (a few dozen): one Prefect task run
(``wfss-cutouts``) per batch and exposure, then one (``wfss-sources``) per batch for combine_1d, so
that hundreds of sources cost a few task runs, not one per cutout and step; within a batch each
source runs its steps as plain calls, with the same step records:

    pixel_replace (skipped by default, as in jwst)
    extract_1d of each cutout           -> the source's spectra, one per exposure and order, each
                                           with its exposure's file name and group id
                                           (``<exposure group>_<order>``) and the cutout's corners
    combine_1d of the source's spectra  -> one combined spectrum per order (weights: the source's
                                           first exposure's time, as jwst carries it)

No file is written per source (jwst writes none for WFSS).  The join writes the product's two
files, every source in each (:mod:`webbflow.models.wfss_spectra`):

    <product>_x1d.fits   WFSSMultiSpecModel: one EXTRACT1D table per exposure and order, one row
                         per source; S_REGION of the first table is the union of the exposures'
                         footprints (stcal's combine_sregions, through the first cutout's WCS)
    <product>_c1d.fits   WFSSMultiCombinedSpecModel: one COMBINE1D table per order, one row per source

A source that fails is left out of both files and named in the final error line
(:class:`~webbflow.flows.calwebb_spec3.SourcesFailed`); the others are kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from . import _prefect
from ._prefect import task

from .. import models
from ..errors import InputFileError, WebbflowError, a_an
from ..models.wfss_spectra import SpillFile, expand_wfss, wfss_c1d, wfss_x1d
from .stage import StageRun, guarded, stamp

WFSS_TYPES = {"NIS_WFSS", "NRC_WFSS", "MIR_WFSS"}
log = logging.getLogger("webbflow.flows")


@dataclass
class WfssSourceResult:
    """What one source gave: its spectra (with the weight times they carry) and combined spectra."""

    name: str
    source_id: int | None = None
    spectra: list = field(default_factory=list)
    exposure_time: float | None = None
    integration_time: float | None = None
    x1d_meta: object = None  # the source's extract_1d output (its primary metadata names the product's)
    combined: object = None  # the source's combine_1d output, or None
    error: str | None = None
    steps: list = field(default_factory=list)
    written: list = field(default_factory=list)  # nothing per source (the join writes the product)


def _group_id(slit, order) -> str | None:
    from ..tasks._library import group_id_of

    gid = group_id_of(slit.meta)
    return None if gid is None else f"{gid}_{order}"


def _spectra_of(result) -> list:
    """The Spectrum objects of an extract_1d output: a MultiSpecModel's, or a WFSS x1d's rows."""
    if isinstance(result, models.WFSSMultiSpecModel):
        return [s for _sid, spectra, _e, _i in expand_wfss(result) for s in spectra]
    return list(getattr(result, "spec", []) or [])


def extract_wfss_cutouts(slits: list, name: str, run: StageRun, first: bool, spill=None) -> WfssSourceResult:
    """One source's cutouts of one exposure through pixel_replace and extract_1d: its spectra, each
    tagged with its exposure's file name, group id and cutout corners (``first``: the source's
    first exposure, whose first cutout gives the weight times); with ``spill`` (a SpillFile) their
    tables are written to it at once and read back when needed."""
    res = WfssSourceResult(name)
    for s in slits:
        if s.meta.wcs is None:
            raise InputFileError(s.meta.filename or name, f"cutout {s.name} (source {s.source_id}) has no WCS "
                                 "(assign_wcs must have run in Stage 2)")
    res.source_id = int(slits[0].source_id) if slits and slits[0].source_id is not None else None
    slits = run_plain(slits, ["pixel_replace"], run)
    if first:
        res.exposure_time = slits[0].meta.exposure.exposure_time
        res.integration_time = slits[0].meta.exposure.integration_time
    for s in slits:
        order = s.meta.wcsinfo.spectral_order
        out = run_plain(s, ["extract_1d"], run, label=f"{s.meta.filename} order {order}")
        if run.records[-1].status != "COMPLETE":
            continue
        spectra = _spectra_of(out)
        if res.x1d_meta is None:
            out.meta.ref_file.extract1d = None  # not selected for WFSS, so not recorded (as jwst)
            out.spec = []  # only its metadata is kept: the spectra go to res.spectra
            res.x1d_meta = out
        for spec in spectra:
            spec.meta["filename"] = s.meta.filename
            spec.meta["group_id"] = _group_id(s, spec.meta.get("spectral_order", order))
            spec.meta.setdefault("source_id", s.source_id)
            if s.xstart is not None and s.ystart is not None:
                spec.meta["extract2d_xstart"], spec.meta["extract2d_ystart"] = s.xstart, s.ystart
                spec.meta["extract2d_xstop"] = s.xstart + s.xsize
                spec.meta["extract2d_ystop"] = s.ystart + s.ysize
            res.spectra.append(spill.spill(spec) if spill is not None else spec)
    res.steps = [(r.name, r.status, r.seconds) for r in run.records]
    return res


def combine_wfss_source(res: WfssSourceResult, run: StageRun, spill=None) -> WfssSourceResult:
    """combine_1d on one source's spectra of every exposure, weighted by the source's first
    exposure time (as jwst weights them); with ``spill``, the combined spectra's tables are
    written to it and read back when the c1d is saved."""
    if not res.spectra:
        raise WebbflowError(f"source {res.name}: extract_1d gave no spectrum")
    x1d = models.MultiSpecModel()
    x1d.meta = res.x1d_meta.meta.model_copy(deep=True)
    x1d.meta.exposure.exposure_time = res.exposure_time
    x1d.meta.exposure.integration_time = res.integration_time
    x1d._headers = {k: h.copy() for k, h in res.x1d_meta._headers.items() if k == "PRIMARY"}
    x1d.spec = res.spectra
    c1d = run_plain(x1d, ["combine_1d"], run)
    if run.records[-1].status == "COMPLETE" and isinstance(c1d, models.MultiCombinedSpecModel):
        if spill is not None:
            c1d.spec = [spill.spill(s) for s in c1d.spec]
        res.combined = c1d
    res.steps = [*res.steps, *((r.name, r.status, r.seconds) for r in run.records)]
    return res


# sources per Prefect task run: at least two batches per worker, at most this many sources in one
SOURCES_PER_BATCH = 40


def batches(sources: list, workers: int) -> list[list]:
    """``sources`` in contiguous batches: as many as the workers can share (two per worker), more
    when there are more than SOURCES_PER_BATCH sources per batch."""
    if not sources:
        return []
    n = min(len(sources), max(2 * workers, -(-len(sources) // SOURCES_PER_BATCH)))
    size = -(-len(sources) // n)
    return [sources[i:i + size] for i in range(0, len(sources), size)]


def run_plain(model, names: list[str], run: StageRun, label: str = ""):
    """``names`` on ``model`` as plain calls (no task run each), recorded in ``run`` as run_steps records them."""
    from .stage import StepRecord, _execute, _record_version

    for name in names:
        p = run.params[name]
        res = _execute(name, model, p, run.references.get(name, {}))
        run.records.append(StepRecord(name, res.status, res.seconds, res.references, reason=res.reason,
                                      qa=dict(res.qa), label=label))
        model = res.model
        if not p.skip:
            _record_version(model, res.references, run.context)
    return model


def _stage_run(params: dict, references: dict, context: str | None) -> StageRun:
    return StageRun(params=params, references=references, context=context)


def extract_batch(batch: list, params: dict, references: dict, context: str | None,
                  spill=None) -> list[WfssSourceResult]:
    """The cutouts of each source of ``batch`` (``[(name, slits, first)]``, one exposure's), their
    failure reported, not raised."""
    return [guarded(WfssSourceResult, extract_wfss_cutouts, name, slits, name, _stage_run(params, references, context),
                    first, spill) for name, slits, first in batch]


def combine_batch(batch: list, params: dict, references: dict, context: str | None,
                  spill=None) -> list[WfssSourceResult]:
    """combine_1d of each source of ``batch`` (their spectra of every exposure), failures reported."""
    return [guarded(WfssSourceResult, combine_wfss_source, res.name, res, _stage_run(params, references, context),
                    spill) for res in batch]


@task(name="wfss-cutouts", task_run_name="{label}", cache_policy="NONE", persist_result=False)
def wfss_extract_task(batch: list, label: str, params: dict, references: dict, context: str | None,
                      spill=None) -> list[WfssSourceResult]:
    """extract_1d of one exposure's cutouts of a batch of sources (a Prefect task run; plain calls within)."""
    return extract_batch(batch, params, references, context, spill)


@task(name="wfss-sources", task_run_name="{label}", cache_policy="NONE", persist_result=False)
def wfss_combine_task(batch: list, label: str, params: dict, references: dict, context: str | None,
                      spill=None) -> list[WfssSourceResult]:
    """combine_1d of a batch of sources (a Prefect task run; plain calls within)."""
    return combine_batch(batch, params, references, context, spill)


def _fan_out(fn, task_fn, groups: list, labels: list[str], tracked: bool, *args) -> list:
    """``fn`` on each batch of ``groups``: one task run each when ``tracked``, else plain calls."""
    if tracked:
        futures = [_prefect.as_prefect(task_fn).submit(g, label, *args) for g, label in zip(groups, labels)]
        return [r for f in futures for r in f.result()]
    return [r for g in groups for r in fn(g, *args)]


def _label(what: str, names: list[str]) -> str:
    first, last = names[0].rsplit(" ", 1)[-1], names[-1].rsplit(" ", 1)[-1]
    return f"{what} {len(names)} source(s): {first}{'..' + last if len(names) > 1 else ''}"


def open_cal(src):
    """A spec3 member: a WFSS cal file is read with its cutouts' WCSs made on first use and without
    asdf's schema validation on read (models/_lazy_wcs.py); anything else as ``models.open`` reads it."""
    if isinstance(src, models.DataModel):
        return models.open(src)
    try:
        from astropy.io import fits

        exp_type = str(fits.getval(src, "EXP_TYPE", 0)).upper()
    except Exception:  # noqa: BLE001 - models.open names the problem
        exp_type = None
    if exp_type in WFSS_TYPES:
        from ..models._lazy_wcs import lazy_wcs_reading

        with lazy_wcs_reading():
            return models.open(src)
    return models.open(src)


def _footprint(m):
    """An exposure's first cutout's S_REGION and WCS (None, None when it has no cutout)."""
    try:
        first = m.slits[0]
    except (AttributeError, IndexError):
        return None, None
    return first.meta.wcsinfo.s_region, first.meta.wcs


def combined_sregion(regions: list, wcs) -> str | None:
    """The union of the exposures' footprints (``regions``: their first cutout's S_REGION) through
    the first exposure's first cutout's WCS, as jwst's spec3 makes it."""
    from astropy.modeling.models import Mapping
    from stcal.alignment import combine_sregions

    if any(r is None for r in regions) or wcs is None:
        log.warning("One or more input model(s) are missing an `s_region` attribute; output S_REGION will not be set.")
        return None
    det2world = wcs.get_transform("detector", "world")
    to4 = Mapping((0, 1, 0, 1))
    to4.inverse = Mapping((0, 1), n_inputs=4)
    to2 = Mapping((0, 1), n_inputs=4)
    to2.inverse = Mapping((0, 1, 0, 1))
    try:
        return combine_sregions(regions, to4 | det2world | to2)
    except ValueError as exc:
        log.warning("Could not combine S_REGIONs: %s. Output S_REGION will not be set.", exc)
        return None


def run_wfss(exposures: list, product_name: str, params: dict, references: dict, context: str | None,
             out_dir: Path | None, tracked: bool) -> tuple[list[WfssSourceResult], list[str]]:
    """Every source of the exposures, then the join: the product's x1d and c1d.

    ``exposures`` holds the exposures in the association's order, each a MultiSlitModel or a
    function that opens it.  They are taken one at a time, and the list lets go of each before the
    next is opened: the cutouts of an exposure go through extract_1d (fanned out in batches of
    sources), only their spectra are kept, and the exposure is released; so memory holds one
    exposure plus the catalogue: each spectrum's table goes to a temporary file (SpillFile) as soon
    as it is extracted, and is read back for combine_1d of its source (fanned out likewise) and for
    the fill of its x1d table; the join writes the two files, making each table when its turn
    comes."""
    spill = SpillFile(out_dir)
    try:
        return _run_wfss(exposures, product_name, params, references, context, out_dir, tracked, spill)
    finally:
        spill.close()


def _run_wfss(exposures: list, product_name: str, params: dict, references: dict, context: str | None,
              out_dir: Path | None, tracked: bool, spill: SpillFile) -> tuple[list[WfssSourceResult], list[str]]:
    from ..tasks._library import group_id_of
    from ..tasks.exp_to_source import exp_to_source
    from .calwebb_spec3 import MAX_WORKERS

    # jwst's extract_1d never selects an extract1d reference for WFSS (the whole cutout is extracted)
    references = {k: dict(v) for k, v in references.items()}
    references.setdefault("extract_1d", {})["extract1d"] = "N/A"
    acc: dict[str, WfssSourceResult] = {}  # per source, in the order sources are first met
    regions: list = []
    first_wcs = None
    names: list[str] = []
    first: set[str] = set()  # the sources met for the first time in the current exposure
    nexp = len(exposures)
    for i in range(nexp):
        m = exposures[i]
        exposures[i] = None  # the list lets go of the exposure: it lives only until its cutouts are extracted
        if callable(m) and not isinstance(m, models.DataModel):
            m = m()
        names.append(m.meta.filename or "input")
        if not isinstance(m, models.MultiSlitModel):
            raise InputFileError(names[-1], f"is {a_an(type(m).__name__)}; WFSS spec3 needs MultiSlitModel cal "
                                 "files (extract_2d's cutouts)")
        if group_id_of(m.meta) is None:  # each exposure's spectra go to tables named by its exposure group
            raise InputFileError(names[-1], "lacks the observation identifiers (PROGRAM, OBSERVTN, VISIT, VISITGRP, "
                                 "SEQ_ID, ACT_ID, EXPOSURE) that name its exposure group")
        # the product's S_REGION: each exposure's first cutout's footprint, through the first one's WCS
        region, wcs = _footprint(m)
        regions.append(region)
        if i == 0:
            first_wcs = wcs.load() if hasattr(wcs, "load") else wcs  # made now: the file's tree goes with m
        batch = []
        for key, src in exp_to_source([m]).items():
            name = f"{product_name} source {key}"
            res = acc.get(name)
            if res is None:
                res = acc[name] = WfssSourceResult(name)
                first.add(name)
            elif res.error:
                continue
            batch.append((name, list(src.slits), name in first))
        del m
        log.info("spec3 (WFSS): exposure %s: %d source(s)", names[-1], len(batch))
        groups = batches(batch, MAX_WORKERS)
        parts = _fan_out(extract_batch, wfss_extract_task, groups, [_label("wfss cutouts", [x[0] for x in g]) for g in groups],
                         tracked, params, references, context, spill)
        del batch, groups
        for part in parts:
            _merge_part(acc[part.name], part, part.name in first)
        first.clear()
        del parts
    if not acc:
        raise InputFileError(", ".join(names), "holds no source cutout (extract_2d matched no catalogue source): "
                             "no spectrum to extract")
    sregion = combined_sregion(regions, first_wcs)
    log.info("spec3 (WFSS): %d source(s) from %d exposure(s)", len(acc), nexp)
    todo = [r for r in acc.values() if not r.error]
    groups = batches(todo, MAX_WORKERS)
    combined = {r.name: r for r in _fan_out(combine_batch, wfss_combine_task, groups,
                                             [_label("wfss", [r.name for r in g]) for g in groups],
                                             tracked, params, references, context, spill)}
    results = [combined.get(name, r) for name, r in acc.items()]
    done = [r for r in results if not r.error]
    written: list[str] = []
    if not done:
        return results, written
    run = StageRun(params=params, references=references, context=context)
    x1d = wfss_x1d([(r.spectra, r.exposure_time, r.integration_time) for r in done], done[0].x1d_meta, lazy=True)
    if x1d.spec and sregion is not None:
        x1d.spec[0].meta["s_region"] = sregion
    stamp(x1d, run, "spec3")
    x1d.meta.filename = f"{product_name}_x1d.fits"
    if out_dir is not None:
        written.append(x1d.save(out_dir / x1d.meta.filename))
    with_c1d = [r for r in done if r.combined is not None]
    if with_c1d:
        c1d = wfss_c1d([list(r.combined.spec) for r in with_c1d], with_c1d[0].combined, lazy=True)
        stamp(c1d, run, "spec3")
        c1d.meta.filename = f"{product_name}_c1d.fits"
        if out_dir is not None:
            written.append(c1d.save(out_dir / c1d.meta.filename))
    for r in results:  # the spectra's tables go with the spill file
        r.written, r.spectra = [], []
        if r.combined is not None:
            r.combined.spec = []
    return results, written


def _merge_part(res: WfssSourceResult, part: WfssSourceResult, first: bool) -> None:
    """One exposure's share of a source (``part``) added to what the source has so far (``res``)."""
    if part.error:  # the source fails as a whole: its spectra of other exposures are dropped
        res.error, res.spectra, res.x1d_meta = part.error, [], None
        return
    if res.source_id is None:
        res.source_id = part.source_id
    if first:  # the source's first exposure gives the weight times
        res.exposure_time, res.integration_time = part.exposure_time, part.integration_time
    if res.x1d_meta is None:
        res.x1d_meta = part.x1d_meta
    res.spectra.extend(part.spectra)
    res.steps.extend(part.steps)


_prefect.lazy_module(__name__)
