"""Stage 3 coronagraphy: calwebb_coron3 as a Prefect flow.

The calibrated cubes of integrations (``_calints``) of one coronagraphic product in: the
science target's exposures and the PSF-reference exposures (members of type ``psf``).  In
jwst 3.0's order:

    outlier_detection (mode coron) on each PSF reference  -> <psf>_<asn_id>_crfints.fits
    stack_refs (every PSF integration in one cube)         -> <product>_psfstack.fits
    for each science exposure:
        outlier_detection (mode coron)                     -> <exposure>_<asn_id>_crfints.fits
        align_refs (the PSF stack shifted onto it)         -> <exposure>_<asn_id>_psfalign.fits
        klip (the PSF subtracted)                          -> <exposure>_<asn_id>_psfsub.fits
    resample of every PSF-subtracted integration           -> <product>_i2d.fits

``webbflow run coron3 ASN`` (also ``calwebb_coron3``, ``Coron3Pipeline``) takes a level-3
coronagraphic association whose members are calints files, relative to the association's folder.
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

# in the order they run (jwst's Coron3Pipeline declares them as stack_refs, align_refs, klip,
# outlier_detection, resample)
STEPS = ["outlier_detection", "stack_refs", "align_refs", "klip", "resample"]

_last = LastRuns()
log = logging.getLogger("webbflow.flows")


def coron3_name(filename: str, asn_id: str | None, suffix: str) -> str:
    """jwst's name of a per-exposure coron3 product: ``<root>_<asn_id>_<suffix>.fits``."""
    from .naming import root_of

    root = root_of(filename)
    if asn_id and root.endswith("_" + asn_id):
        root = root[: -len(asn_id) - 1]
    return f"{root}_{asn_id}_{suffix}.fits" if asn_id else f"{root}_{suffix}.fits"


def integrations_as_images(cube) -> list:
    """One ImageModel per integration of ``cube``, sharing its metadata and WCS (resample's input)."""
    images = []
    for k in range(cube.data.shape[0]):
        img = models.ImageModel(data=cube.data[k])
        for name in ("dq", "err", "zeroframe", "var_poisson", "var_rnoise", "var_flat"):
            if cube.has(name):
                arr = getattr(cube, name)
                setattr(img, name, arr[k] if arr.ndim == 3 else arr)
        if cube.has("area"):
            img.area = cube.area
        img.meta = cube.meta.model_copy(deep=True)
        img.meta.model_type = "ImageModel"
        for hdu in ("PRIMARY", "SCI"):
            if hdu in cube._headers:
                img._headers[hdu] = cube._headers[hdu].copy()
        images.append(img)
    return images


def blend_science_headers(i2d, first_meta, blender) -> None:
    """The mosaic's metadata as jwst's coron3 leaves it: resampled first, then every keyword of the
    first science exposure (but its WCS keywords) written over it, then the blended keywords (a keyword no science
    exposure has, such as a summed DURATION, is removed), and the HDRTAB of the science exposures."""
    from ..models.blend import BLEND_RULES
    from ..models.meta import get_path

    keep = {("filename",), ("model_type",), ("wcs",)}
    for path, _key, _hdu, _ann in type(i2d).keyword_fields():
        if path in keep or path[0] == "wcsinfo":  # the mosaic keeps its own WCS keywords
            continue
        value = get_path(first_meta, path)
        if value is not None:
            _set(i2d.meta, path, value)
    blender.finalize(i2d)
    by_key = {(key, hdu): path for path, key, hdu, _ann in type(i2d).keyword_fields()}
    for k in BLEND_RULES:
        if not blender.values.get(k) and k in by_key:
            _set(i2d.meta, by_key[k], None)
            hdu = i2d._headers.get(k[1])
            if hdu is not None:
                hdu.remove(k[0], ignore_missing=True)


def _set(meta, path, value) -> None:
    obj = meta
    for p in path[:-1]:
        obj = getattr(obj, p)
    setattr(obj, path[-1], value)


def _open_members(members, kind: str) -> list:
    cubes = []
    for src in members:
        m = models.open(src)
        name = src if not isinstance(src, models.DataModel) else (m.meta.filename or kind)
        if not isinstance(src, models.DataModel):
            m.meta.filename = Path(src).name
        if not isinstance(m, models.CubeModel):
            raise InputFileError(name, f"is {type(m).__name__}; coron3 needs calibrated cubes of integrations (_calints)")
        cubes.append(m)
    return cubes


@flow(name="coron3", flow_run_name=run_name("coron3"), validate_parameters=False, persist_result=False)
def coron3(science, psf, product_name: str, asn_id: str | None = None, asn_pool: str | None = None,
           asn_table_name: str | None = None, steps: dict | None = None, config: str | None = None,
           output_dir: str | None = None) -> dict:
    """Run the coronagraphic Stage 3 steps on the science and PSF-reference calints (paths or CubeModels).

    Returns ``{"psfstack": model, "psfalign": [models], "psfsub": [models], "crfints": [models],
    "i2d": model, "written": [paths]}``.
    """
    from ..models.blend import MetaBlender
    from ..tasks.align_refs import TargetAndPsfs

    psf_list = list(psf) if isinstance(psf, (list, tuple)) else [psf]
    sci_list = list(science) if isinstance(science, (list, tuple)) else [science]
    if not psf_list:
        raise ParameterError("coron3 needs at least one PSF-reference exposure (association members of type psf)")
    if not sci_list:
        raise ParameterError("coron3 needs at least one science exposure")
    psfs = _open_members(psf_list, "psf")
    targets = _open_members(sci_list, "science")
    for m in psfs + targets:  # as jwst's association container records them on every member
        m.meta.asn.pool_name = asn_pool
        m.meta.asn.table_name = asn_table_name
    params = resolve_params(STEPS, steps, config, model=targets[0], pipeline_class="Coron3Pipeline")
    user = (steps or {}).get("outlier_detection", {})
    if "save_results" not in user and output_dir is not None:  # jwst's coron3 writes the crfints products
        params["outlier_detection"] = params["outlier_detection"].model_copy(update={"save_results": True})
    user = (steps or {}).get("resample", {})
    if "blendheaders" not in user:  # coron3 blends the science headers itself, after resampling
        params["resample"] = params["resample"].model_copy(update={"blendheaders": False})
    run = StageRun(params=params)
    run.references, run.context = resolve_references(targets[0], {"align_refs": params["align_refs"]})
    out_dir = Path(output_dir) if output_dir else None
    result: dict = {"psfstack": None, "psfalign": [], "psfsub": [], "crfints": [], "i2d": None, "written": []}

    def write(model, name: str, references: bool = False) -> None:
        if out_dir is None:
            return
        original = model.meta.filename
        model.meta.filename = name
        model.meta.asn.pool_name = asn_pool
        model.meta.asn.table_name = asn_table_name
        crds = model.meta.ref_file.crds.model_copy()
        stamp(model, run, "coron3")
        if not references:  # only align_refs reads a reference: the other products keep their input's context
            model.meta.ref_file.crds = crds
        result["written"].append(model.save(out_dir / name))
        model.meta.filename = original

    def outliers(cube):
        if params["outlier_detection"].skip:
            return cube
        cube = run_steps(cube, ["outlier_detection"], run, label=cube.meta.filename or "")
        if params["outlier_detection"].save_results and cube.meta.cal_step.outlier_detection == "COMPLETE":
            result["crfints"].append(cube)
            write(cube, coron3_name(cube.meta.filename or "coron3", asn_id, params["outlier_detection"].suffix
                                    or "crfints"))
        return cube

    psfs = [outliers(p) for p in psfs]
    stack = run_steps(psfs, ["stack_refs"], run)
    result["psfstack"] = stack
    write(stack, f"{product_name}_psfstack.fits")

    blender = MetaBlender()
    first_meta = targets[0].meta.model_copy(deep=True)
    images = []
    for target in targets:
        original = target.meta.filename or "coron3"
        blender.accumulate(target)
        target = outliers(target)
        aligned = run_steps(TargetAndPsfs(target, stack), ["align_refs"], run, label=original)
        if isinstance(aligned, TargetAndPsfs):  # skipped (no psfmask): jwst goes on with the unaligned stack
            aligned = stack
        result["psfalign"].append(aligned)
        write(aligned, coron3_name(original, asn_id, "psfalign"), references=aligned is not stack)
        sub = run_steps(TargetAndPsfs(target, aligned), ["klip"], run, label=original)
        if isinstance(sub, TargetAndPsfs):
            sub = target
        result["psfsub"].append(sub)
        write(sub, coron3_name(original, asn_id, "psfsub"))
        images += integrations_as_images(sub)

    i2d = run_steps(images, ["resample"], run, source_name=product_name)
    if isinstance(i2d, models.DataModel):
        if i2d.meta.cal_step.resample == "COMPLETE":
            blend_science_headers(i2d, first_meta, blender)
        result["i2d"] = i2d
        write(i2d, f"{product_name}_i2d.fits")
    run.written = list(result["written"])
    _last.clear()
    _last.append(run)
    result["steps"] = [(r.name, r.status, r.seconds) for r in run.records]
    return result


@registry.register("coron3")
def run_coron3(input_path, *, output_dir, steps=None, config=None, options=None):
    """``webbflow run coron3 ASN``: the science and psf members (calints) of a level-3 coronagraphic association."""
    from .association import load_asn, member_path
    from .stage import prefect_tracking, quiet_prefect_settings

    if options:
        raise ParameterError(f"unknown option(s) for coron3: {', '.join('--' + k for k in options)}")
    if not str(input_path).lower().endswith(".json"):
        raise InputFileError(input_path, "coron3 takes an association (_asn.json)")
    from .association import run_from_raw  # members not made yet: the earlier stages first
    if (made := run_from_raw(input_path, "coron3", output_dir=output_dir, steps=steps, config=config)) is not None:
        return made
    asn, folder = load_asn(input_path)
    written = []
    for product in asn.products:
        by_type: dict[str, list] = {"science": [], "psf": []}
        for m in product.members:
            if m.exptype in by_type:
                by_type[m.exptype].append(member_path(input_path, folder, m.expname))
        for kind, label in (("psf", "PSF-reference (psf)"), ("science", "science")):
            if not by_type[kind]:
                raise InputFileError(input_path, f"product {product.name!r} has no {label} member")
        for p in by_type["psf"] + by_type["science"]:
            if not p.exists():
                raise InputFileError(p, "no such file (a member of the association)")
        kwargs = dict(product_name=product.name, asn_id=asn.asn_id, asn_pool=asn.asn_pool,
                      asn_table_name=Path(input_path).name, steps=steps, config=config,
                      output_dir=str(output_dir or folder))
        if prefect_tracking():
            with quiet_prefect_settings():
                res = _prefect.as_prefect(coron3)(by_type["science"], by_type["psf"], **kwargs)
        else:  # no Prefect server to show the run: the same flow body, without a temporary server
            res = coron3.fn(by_type["science"], by_type["psf"], **kwargs)
        written += res["written"]
    return written


_prefect.lazy_module(__name__)
