"""Stage 2 imaging: calwebb_image2 as a Prefect flow (draft by the image2 steps helper).

Count-rate images in, calibrated images out, in jwst 3.0's order:

    bkg_subtract (only when the association has background members)
    assign_wcs -> flat_field -> photom            -> <root>_cal.fits (_calints for rateints)
    resample (2-D NRC/NIS/MIR/FGS_IMAGE only)     -> <root>_i2d.fits

The input is a rate/rateints file, a rate model in memory, or a level-2
association (``*_asn.json``) whose products each name one ``science`` member
and any number of ``background`` members.  Member paths are relative to the
association's folder (as the association format intends, whatever the
current directory) and may not leave it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from . import _prefect
from ._prefect import flow

from .. import models
from ..errors import InputFileError, ParameterError, UnsupportedModeError, a_an
from . import registry
from .observe import publish_stage
from .stage import LastRuns, StageRun, input_name, run_name, resolve_params, resolve_references, run_steps, save_product, stamp

STEPS = ["bkg_subtract", "assign_wcs", "flat_field", "photom", "resample"]
CAL_STEPS = ["assign_wcs", "flat_field", "photom"]
# exposure types whose 2-D cal is resampled into an i2d (jwst's Image2Pipeline.image_exptypes)
RESAMPLE_EXP_TYPES = ("MIR_IMAGE", "NRC_IMAGE", "NIS_IMAGE", "FGS_IMAGE")


# ---------------------------------------------------------------------------
# inputs


def _is_asn(inp) -> bool:
    return isinstance(inp, (str, os.PathLike)) and str(inp).lower().endswith(".json")


def read_level2_members(path) -> tuple[dict, list[dict]]:
    """Read a level-2 association: ``(asn, [{"name", "science": Path, <member type>: [Path], ...}])``.

    Members are relative to the association's folder (whatever the current directory) and may
    not leave it; a product with several science members keeps the first, as jwst does.
    """
    path = Path(path)
    try:
        asn = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputFileError(path, "no such file") from None
    except (OSError, ValueError) as exc:
        raise InputFileError(path, f"is not a readable association ({exc})") from None
    if not isinstance(asn, dict) or not isinstance(asn.get("products"), list) or not asn["products"]:
        raise InputFileError(path, "is not an association: it has no 'products' list")
    folder = path.resolve().parent
    products = []
    for i, prod in enumerate(asn["products"]):
        members = prod.get("members") if isinstance(prod, dict) else None
        if not isinstance(members, list):
            raise InputFileError(path, f"product {i} has no 'members' list")
        by_type: dict[str, list[Path]] = {}
        for mem in members:
            try:
                name, kind = mem["expname"], str(mem["exptype"]).lower()
            except (TypeError, KeyError):
                raise InputFileError(path, f"product {i} has a member without expname/exptype: {mem!r}") from None
            p = (folder / name).resolve()
            if folder not in p.parents:
                raise InputFileError(path, f"member {name!r} lies outside the association's folder {folder}")
            by_type.setdefault(kind, []).append(p)
        science = by_type.pop("science", [])
        if not science:
            raise InputFileError(path, f"product {prod.get('name', i)!r} has no science member")
        if len(science) > 1:
            import logging

            logging.getLogger("webbflow.flows").warning(
                "Product %s has %d science members; using only the first, as jwst does", prod.get("name", i), len(science)
            )
        products.append({"name": prod.get("name"), "science": science[0], **by_type})
    return asn, products


def load_level2_asn(path) -> tuple[dict, list[dict]]:
    """Read a level-2 imaging association: ``(asn, [{"name", "science": Path, "background": [Path]}])``."""
    asn, products = read_level2_members(path)
    return asn, [{"name": p["name"], "science": p["science"], "background": p.get("background", [])} for p in products]


def open_rate(inp):
    """Open a rate (ImageModel) or rateints (CubeModel) imaging exposure; refuse anything else clearly."""
    m = models.open(inp)
    name = inp if not isinstance(inp, models.DataModel) else (m.meta.filename or "<in-memory model>")
    if not isinstance(m, (models.ImageModel, models.CubeModel)):
        raise InputFileError(name, f"is {a_an(type(m).__name__)}; image2 needs a count-rate image (_rate or _rateints)")
    from ..tasks._wcs import IMAGING_MODES

    inst = (m.meta.instrument.name or "").upper()
    exp_type = (m.meta.exposure.type or "").upper()
    if exp_type not in IMAGING_MODES.get(inst, set()):
        raise UnsupportedModeError(f"{name}: {inst or '?'} {exp_type or '(no EXP_TYPE)'} is not an imaging mode image2 handles")
    return m


# ---------------------------------------------------------------------------
# one exposure


def calibrate_exposure(science, backgrounds=(), *, steps=None, config=None, output_dir=None, product_name=None, asn_info=None):
    """Run image2 on one exposure; returns ``(cal, i2d or None, StageRun)``."""
    source = product_name or input_name(science)
    model = open_rate(science)
    if asn_info:
        model.meta.asn.pool_name, model.meta.asn.table_name = asn_info
    params = resolve_params(STEPS, steps, config, model=model, pipeline_class="Image2Pipeline")
    run = StageRun(params=params)
    run.references, run.context = resolve_references(model, params)
    out_dir = Path(output_dir) if output_dir else None

    if backgrounds:
        p = params["bkg_subtract"]
        params["bkg_subtract"] = p.model_copy(update={"bkg_list": [str(b) for b in backgrounds]})
        if isinstance(model, models.CubeModel) and p.suffix is None:
            params["bkg_subtract"] = params["bkg_subtract"].model_copy(update={"suffix": "bsubints"})
        model = run_steps(model, ["bkg_subtract"], run, output_dir=out_dir, source_name=source)
    model = run_steps(model, CAL_STEPS, run, output_dir=out_dir, source_name=source)
    stamp(model, run, "image2")
    cal_suffix = "calints" if isinstance(model, models.CubeModel) else "cal"
    if out_dir is not None:
        run.written.append(save_product(model, out_dir, source, cal_suffix, run))

    i2d = None
    exp_type = (model.meta.exposure.type or "").upper()
    if exp_type in RESAMPLE_EXP_TYPES and model.data.ndim == 2 and not params["resample"].skip:
        i2d = run_steps(model, ["resample"], run, output_dir=None, source_name=source)
        if isinstance(i2d, models.DataModel):
            stamp(i2d, run, "image2")
            if out_dir is not None:
                run.written.append(save_product(i2d, out_dir, source, "i2d", run))
    publish_stage(run, "image2", source, [model, i2d])
    return model, i2d, run


# ---------------------------------------------------------------------------
# the flow


@flow(name="image2", flow_run_name=run_name("image2"), validate_parameters=False, persist_result=False, log_prints=True)
def image2(input, steps: dict | None = None, config: str | None = None, output_dir: str | None = None,
           backgrounds: list[str] | None = None, asn_info: tuple[str, str] | None = None):
    """Run calwebb_image2 on a rate file, a rate model or a level-2 association.

    ``backgrounds`` and ``asn_info`` (pool, association file name) serve an exposure given alone
    that comes from a level-2 association (the association flow): its background rate files
    and the association recorded in its products.

    Returns the list of calibrated models (one per association product); the
    i2d products are written when ``output_dir`` is given (and are in
    ``image2_last_run``).
    """
    image2_last_run.clear()
    if _is_asn(input):
        asn, products = load_level2_asn(input)
        info = (asn.get("asn_pool") or " ", Path(input).name)
        work = [(p["science"], p["background"], p["name"], info) for p in products]
    else:
        work = [(input, list(backgrounds or []), None, tuple(asn_info) if asn_info else None)]
    results = []
    for science, backgrounds, name, info in work:
        cal, _i2d, run = calibrate_exposure(
            science, backgrounds, steps=steps, config=config, output_dir=output_dir, product_name=name, asn_info=info
        )
        image2_last_run.append(run)
        results.append(cal)
    return results


# the StageRuns of the most recent call in this process (one per product)
image2_last_run = LastRuns()


@registry.register("image2")
def run_image2(input_path, *, output_dir, steps=None, config=None, options=None):
    from .stage import prefect_tracking, quiet_prefect_settings

    if options:
        raise ParameterError(f"unknown option(s) for image2: {', '.join('--' + k for k in options)}")
    from .association import run_from_raw  # members not made yet: detector1 first
    if (made := run_from_raw(input_path, "image2", output_dir=output_dir, steps=steps, config=config)) is not None:
        return made
    if prefect_tracking():
        with quiet_prefect_settings():
            _prefect.as_prefect(image2)(str(input_path), steps=steps, config=config, output_dir=str(output_dir))
    else:  # no Prefect server to show the run: the same flow body, without a temporary server
        image2.fn(str(input_path), steps=steps, config=config, output_dir=str(output_dir))
    return [w for run in image2_last_run for w in run.written]


_prefect.lazy_module(__name__)
