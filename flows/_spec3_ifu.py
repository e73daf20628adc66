"""calwebb_spec3 for IFU exposures (MIR_MRS, NRS_IFU): the cal exposures of one product into cubes.

jwst 3.0's order for an IFU product (assign_mtwcs is for moving targets, skipped):

    master_background        with background members (x1d): their combined spectrum subtracted from
                             every MIRI MRS exposure at each pixel's wavelength
    outlier_detection        mode ifu (tasks/_outlier_ifu.py) -> <exposure>_<asn_id>_crf.fits each
    adaptive_trace_model     skipped by default, as in jwst; asked for, each exposure's slices are
                             fitted (TRACEMODEL; oversampled with ``oversample`` > 1) before the
                             cubes; saved only with ``save_results`` (jwst's spec3 default is not
                             to), as <exposure>_<asn_id>_adaptive_trace_model.fits
    pixel_replace            skipped by default, as in jwst
    cube_build               jwst's spec3 default, one cube per channel and band
                             -> <product>_ch1-short_s3d.fits, ... (NIRSpec: per grating and filter,
                             <product>_prism-clear_s3d.fits)
    extract_1d               on each cube -> <product>_ch1-short_x1d.fits (when the step takes cubes)
    spectral_leak            MIRI MRS: channel 3 SHORT corrected with channel 1 MEDIUM, when both
                             spectra are there; otherwise marked SKIPPED, as jwst does

The exposures are read one at a time (a model library on disk): memory does not grow with the
number of exposures.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .. import models
from ..errors import InputFileError, UnsupportedModeError
from .stage import StageRun, resolve_params, resolve_references, run_steps, stamp

log = logging.getLogger("webbflow.flows")

IFU_TYPES = {"MIR_MRS", "NRS_IFU"}
STEPS = ["master_background", "outlier_detection", "adaptive_trace_model", "pixel_replace", "cube_build",
         "extract_1d"]
LATER = ("spectral_leak",)  # jwst's step after extract_1d; run when registered, see _spectral_leak


def exp_type_of(member) -> str:
    """EXP_TYPE of a cal member (a path, read from its primary header, or a model)."""
    if isinstance(member, models.DataModel):
        return (member.meta.exposure.type or "").upper()
    from astropy.io import fits

    try:
        return str(fits.getval(member, "EXP_TYPE", 0)).upper()
    except (OSError, KeyError):
        return ""


def params_skip(steps, name: str) -> bool:
    return str(((steps or {}).get(name) or {}).get("skip", False)).lower() in ("true", "1")


def is_ifu(member) -> bool:
    return exp_type_of(member) in IFU_TYPES


def spec3_ifu(members, *, product_name: str, asn_id=None, asn_pool=None, asn_table_name=None, steps=None,
              config=None, output_dir=None, backgrounds=None) -> dict:
    """The spec3 products of one IFU product; returns ``{"sources": [], "written": [paths], "failed": []}``."""
    from ..tasks.base import STEPS as REGISTRY
    from .calwebb_spec3 import _last

    for m in members:
        if not isinstance(m, models.DataModel) and not Path(m).exists():
            raise InputFileError(m, "no such file (a member of the association)")
    first = models.open(members[0]) if not isinstance(members[0], models.DataModel) else members[0]
    name0 = first.meta.filename or str(members[0])
    if not isinstance(first, models.IFUImageModel):
        raise InputFileError(name0, f"is {type(first).__name__}; spec3 for IFUs needs IFUImageModel cal files")
    exp_type = (first.meta.exposure.type or "").upper()
    if exp_type not in IFU_TYPES:
        raise UnsupportedModeError(f"{name0}: spec3 for IFU {exp_type} is not implemented")
    if first.meta.wcs is None:
        raise InputFileError(name0, "has no WCS (assign_wcs must have run in Stage 2)")

    user = dict(steps or {})
    later = {k: user.pop(k) for k in LATER if k in user and k not in REGISTRY}
    for name in ("assign_mtwcs",):
        values = user.pop(name, None)
        if values and str(values.get("skip", True)).lower() in ("false", "0"):
            raise UnsupportedModeError(f"spec3: step {name} is not implemented")
    names = STEPS + [k for k in LATER if k in REGISTRY]
    params = resolve_params(names, user, config, model=first, pipeline_class="Spec3Pipeline")
    # spectral_leak works on the spectra: with extract_1d skipped there are none, and its reference
    # is not asked for
    wanted = ("cube_build", "extract_1d") + (() if params["extract_1d"].skip else ("spectral_leak",))
    references, context = resolve_references(first, {k: v for k, v in params.items() if k in wanted})
    del first
    out_dir = Path(output_dir) if output_dir else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    run = StageRun(params=params, references=references, context=context)
    written: list[str] = []
    try:
        if backgrounds:
            members = _master_background(members, backgrounds, run, out_dir, written, product_name, asn_id)
        result = _run(members, params, run, out_dir, written, later, product_name, asn_id, asn_pool, asn_table_name)
    except BaseException:  # no partial product: what this run wrote goes
        for p in written:
            Path(p).unlink(missing_ok=True)
        raise
    run.written = list(written)
    _last.clear()
    _last.append(run)  # the per-step log (-v) of this run
    return result


def _master_background(members, backgrounds, run, out_dir, written, product_name, asn_id):
    """master_background on the science exposures with the association's background spectra (x1d);
    returns the science exposures (models, the background subtracted unless the step was skipped)."""
    from ..tasks._library import ModelLibrary

    spectra = [b if isinstance(b, models.DataModel) else models.open(b) for b in backgrounds]
    science = [m if isinstance(m, models.DataModel) else models.open(m) for m in members]
    before = set(out_dir.iterdir()) if out_dir is not None and out_dir.exists() else set()
    result = run_steps(ModelLibrary(science + spectra, asn_id=asn_id), ["master_background"], run,
                       output_dir=out_dir, source_name=product_name)
    if out_dir is not None:  # save_background's products, removed with the rest if the run fails
        written.extend(str(p) for p in sorted(set(out_dir.iterdir()) - before))
    if hasattr(result, "to_list"):
        result = result.to_list()
    return [m for m in (result if isinstance(result, (list, tuple)) else [result])
            if isinstance(m, models.IFUImageModel)]


def _run(members, params, run, out_dir, written, later, product_name, asn_id, asn_pool, asn_table_name) -> dict:
    from ..tasks._library import ModelLibrary

    library = ModelLibrary(list(members), asn_id=asn_id, product_name=product_name,
                           asn_info=(asn_pool, asn_table_name) if asn_table_name else None)
    library = run_steps(library, ["outlier_detection"], run)
    if run.records[-1].status == "COMPLETE" and out_dir is not None:
        from .calwebb_spec3 import crf_name

        for _i, model in library.each(modify=False):
            original = model.meta.filename
            model.meta.filename = crf_name(original, asn_id)
            try:
                written.append(model.save(out_dir / model.meta.filename))
            finally:
                model.meta.filename = original
    if params["adaptive_trace_model"].skip:  # jwst's step here, skipped by default
        library.mark_step("adaptive_trace_model", "SKIPPED")
    else:  # each exposure in turn, updated in place as jwst's step updates its container's models
        for _i, model in library.each(modify=True):
            run_steps(model, ["adaptive_trace_model"], run, label=model.meta.filename or "")
            if params["adaptive_trace_model"].save_results and out_dir is not None \
                    and run.records[-1].status == "COMPLETE":  # <exposure>_<asn_id>_adaptive_trace_model.fits
                from .calwebb_spec3 import crf_name

                original = model.meta.filename
                model.meta.filename = crf_name(original, asn_id).replace("_crf.fits", "_adaptive_trace_model.fits")
                try:
                    written.append(model.save(out_dir / model.meta.filename))
                finally:
                    model.meta.filename = original
    library = run_steps(library, ["pixel_replace"], run)
    cubes = run_steps(library, ["cube_build"], run)
    if run.records[-1].status != "COMPLETE":
        log.warning("cube_build did not complete: no cubes, no spectra")
        return {"sources": [], "written": written, "failed": []}
    cubes = list(cubes) if isinstance(cubes, (list, tuple)) else [cubes]
    crds = [c.meta.ref_file.crds.model_copy() for c in cubes]
    for cube, c in zip(cubes, crds):
        stamp(cube, run, "spec3")
        cube.meta.ref_file.crds = c
        if out_dir is not None:
            written.append(cube.save(out_dir / cube.meta.filename))
    if params["extract_1d"].skip:  # jwst's extract_1d, skipped, hands the cubes on; spectral_leak skips them
        return {"sources": [], "written": written, "failed": []}
    spectra = []
    for cube in cubes:
        x1d = run_steps(cube, ["extract_1d"], run)
        if run.records[-1].status == "COMPLETE":
            x1d.meta.filename = cube.meta.filename.replace("_s3d.fits", "_x1d.fits")
            spectra.append(x1d)
    _spectral_leak(spectra, later, run)
    for x1d in spectra:
        stamp(x1d, run, "spec3")
        if out_dir is not None:
            written.append(x1d.save(out_dir / x1d.meta.filename))
    return {"sources": [], "written": written, "failed": []}


def _spectral_leak(spectra, user: dict, run: StageRun) -> None:
    """jwst's spectral_leak: channel 3 SHORT's spectrum corrected with channel 1 MEDIUM's.

    When the step is registered (tasks/spectral_leak.py) it runs on the spectra.  Until then the
    case with no correction to make (one of the two bands missing, or extended sources) is marked
    SKIPPED as jwst marks it, and the case that needs the correction is refused in one line."""
    from ..tasks.base import STEPS as REGISTRY

    if not any((s.meta.instrument.name or "").upper() == "MIRI" for s in spectra):
        return  # jwst runs spectral_leak on MIRI MRS spectra only: NIRSpec's are left unmarked
    if "spectral_leak" in REGISTRY:
        if spectra and not run.params["spectral_leak"].skip:
            run_steps(spectra, ["spectral_leak"], run)
        return
    if params_skip(user, "spectral_leak"):
        return
    extended = any(getattr(s.spec[0], "source_type", None) == "EXTENDED" for s in spectra if len(s.spec))
    bands = {(str(s.meta.instrument.channel), str(s.meta.instrument.band).upper()) for s in spectra}
    has_1b = any("1" in c and "MEDIUM" in b for c, b in bands)
    has_3a = any("3" in c and "SHORT" in b for c, b in bands)
    if has_1b and has_3a and not extended:  # jwst corrects no extended source
        raise UnsupportedModeError("spec3: spectral_leak (channel 3 SHORT corrected with channel 1 MEDIUM) is not "
                                   "implemented yet; run with --steps.spectral_leak.skip=true")
    for s in spectra:
        s.meta.cal_step.spectral_leak = "SKIPPED"
