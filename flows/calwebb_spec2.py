"""Stage 2 spectroscopy: calwebb_spec2 as a Prefect flow.

Count-rate spectra in (``_rate``/``_rateints``, or a level-2 spectroscopic association), calibrated
spectra out:

    <root>_cal.fits / _calints.fits     the calibrated exposure (slits, slit cutouts or the full frame)
    <root>_s2d.fits                     rectified 2-D spectra (slit modes, not for time series)
    <root>_s3d.fits                     the cube (IFU modes)
    <root>_x1d.fits / _x1dints.fits     the extracted 1-D spectra

The branch an exposure takes is plain code on EXP_TYPE: :func:`branch_for` returns a
:class:`Branch`, and each branch lists its steps in jwst 3.0's order (jwst's Spec2Pipeline calls
every step and lets inapplicable ones skip themselves; here a branch names only the steps of its
mode, and :data:`Branch.marked_skipped` names those whose cal_step keyword jwst records as SKIPPED
for the mode, so that the products carry the same keywords).  A mode joins spec2 by adding its
entries to :data:`BRANCHES`; the machinery around them (associations, members by type, product
names, saving, provenance) is shared.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from . import _prefect
from ._prefect import flow

from .. import models
from ..errors import InputFileError, ParameterError, UnsupportedModeError, a_an
from . import registry
from .calwebb_image2 import _is_asn, read_level2_members
from .observe import publish_stage
from .stage import LastRuns, StageRun, input_name, resolve_params, resolve_references, run_name, run_steps, save_product, stamp

log = logging.getLogger("webbflow.flows")


@dataclass(frozen=True)
class Branch:
    """One mode's way through spec2.

    ``calibrate``: the steps from assign_wcs to photom (the ``cal`` product), in order; a step
    listed as ``"bkg_subtract?"`` runs only when the association has background members (and
    ``"imprint_subtract?"`` only with imprint members).  ``resample``: ``"resample_spec"``,
    ``"cube_build"`` or None (time series).  ``extract``: run extract_1d on the resampled (or, with
    no resample, the calibrated) product.  ``marked_skipped``: steps jwst records as SKIPPED for this
    mode without running them.
    """

    name: str
    calibrate: tuple[str, ...]
    resample: str | None = None
    extract: bool = True
    marked_skipped: tuple[str, ...] = ()
    notes: str = ""
    extra: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def later(self) -> list[str]:
        """The steps after the cal: resampling, extraction, then those on the extracted spectra
        (``extra["after_extract"]``; SOSS: photom)."""
        return (([self.resample] if self.resample else []) + (["extract_1d"] if self.extract else [])
                + list(self.extra.get("after_extract", ())))

    @property
    def steps(self) -> list[str]:
        """Every step the branch may run, the optional ones included (adaptive_trace_model: every
        branch, after the cal, skipped by default)."""
        return list(dict.fromkeys([s.rstrip("?") for s in self.calibrate] + ["adaptive_trace_model"] + self.later))


# EXP_TYPE -> Branch; each mode adds its entries here
BRANCHES: dict[str, Branch] = {}

# MIRI LRS (jwst's _process_common): after assign_wcs and the nod background, the exposure goes on
# as a SlitModel (``extra["as_slit_before"]``), srctype to photom; the fixed slit is resampled to
# an s2d and extracted from it, the slitless TSO is extracted per integration from the calints.
# Marked SKIPPED as jwst's verification and default-skipped steps leave them on the cal product.
_LRS_SKIPPED = ("badpix_selfcal", "msa_flagging", "clean_flicker_noise", "bkg_subtract", "targ_centroid", "straylight",
                "fringe", "barshadow", "residual_fringe", "imprint")
# targ_centroid skips without a TA image, but jwst's pipeline has asked CRDS for its reference first
# and records it (R_FILOFF) on the products
# later_reads_only: resample_spec and extract_1d read the cal's arrays without writing into them
_LRS_EXTRA = {"as_slit_before": "srctype", "recorded_reftypes": ("filteroffset",), "later_reads_only": True}
BRANCHES["MIR_LRS-FIXEDSLIT"] = Branch(
    "miri_lrs_fixedslit", ("assign_wcs", "bkg_subtract?", "srctype", "flat_field", "pathloss", "photom"),
    resample="resample_spec", marked_skipped=_LRS_SKIPPED, notes="MIRI LRS fixed slit (nodded along the slit)",
    extra=_LRS_EXTRA)
BRANCHES["MIR_LRS-SLITLESS"] = Branch(
    "miri_lrs_slitless", ("assign_wcs", "bkg_subtract?", "srctype", "flat_field", "photom"),
    resample=None, marked_skipped=_LRS_SKIPPED + ("pathloss",), notes="MIRI LRS slitless (TSO, SLITLESSPRISM)",
    extra=_LRS_EXTRA)
# MIRI MRS (jwst's _process_common on an IFUImageModel): the cal (residual_fringe after photom, off
# unless --steps.residual_fringe.skip=false, as in jwst), then cube_build on it with spec2's
# settings (skip_dqflagging; the output type is the step's, ``band`` unless a parameter reference or the
# user says otherwise) and extract_1d on every cube.  jwst writes the first cube as <root>_s3d.fits.


def _mrs_prepare(model, params, members):
    """jwst's spec2 builds its cubes without the field-of-view DQ flagging."""
    if "cube_build" in params:
        params["cube_build"] = params["cube_build"].model_copy(update={"skip_dqflagging": True})


BRANCHES["MIR_MRS"] = Branch(
    "miri_mrs", ("assign_wcs", "bkg_subtract?", "srctype", "straylight", "flat_field", "fringe", "photom",
                 "residual_fringe"),
    resample="cube_build", extract=True, notes="MIRI MRS (IFU): cal, s3d (cube_build) and x1d",
    marked_skipped=("badpix_selfcal", "msa_flagging", "clean_flicker_noise", "bkg_subtract", "targ_centroid", "pathloss",
                    "barshadow", "imprint"),
    # as for the LRS, jwst's pipeline asks CRDS for targ_centroid's filteroffset and records it (R_FILOFF)
    extra={"model_class": "IFUImageModel", "prepare": _mrs_prepare, "recorded_reftypes": ("filteroffset",)})


def as_slit_model(model):
    """The exposure as a SlitModel (arrays shared, metadata and WCS kept), with the subarray as the slit's
    extent (xstart, ystart, xsize, ysize), as jwst's spec2 converts MIRI LRS exposures."""
    slit = models.SlitModel(model)
    for attr in ("xstart", "ystart", "xsize", "ysize"):
        setattr(slit, attr, getattr(model.meta.subarray, attr))
    # jwst's LRS cal/calints: SCI, ERR, DQ as the exposure had them, then the slit's arrays in schema order
    slit._hdu_order = ["SCI", "ERR", "DQ"]
    return slit


def branch_for(model) -> Branch:
    """The spec2 branch of an exposure, from its EXP_TYPE (UnsupportedModeError when there is none)."""
    exp_type = (model.meta.exposure.type or "").upper()
    b = BRANCHES.get(exp_type)
    if b is None:
        known = ", ".join(sorted(BRANCHES)) or "none yet"
        raise UnsupportedModeError(f"spec2 has no branch for EXP_TYPE {exp_type or '(none)'} (modes: {known})")
    return b


# ---------------------------------------------------------------------------
# inputs


def load_level2_asn(path) -> tuple[dict, list[dict]]:
    """Read a level-2 spectroscopic association: ``(asn, [{"name", "science": Path, <type>: [Path]}])``
    (members relative to the association's folder, as image2 reads them)."""
    return read_level2_members(path)


def open_rate(inp):
    """Open a spectroscopic rate (ImageModel) or rateints (CubeModel) exposure; refuse anything else."""
    m = models.open(inp)
    name = inp if not isinstance(inp, models.DataModel) else (m.meta.filename or "<in-memory model>")
    if not isinstance(m, (models.ImageModel, models.CubeModel, models.IFUImageModel)):
        raise InputFileError(name, f"is {a_an(type(m).__name__)}; spec2 needs a count-rate exposure (_rate or _rateints)")
    try:
        branch = branch_for(m)
    except UnsupportedModeError as exc:
        raise UnsupportedModeError(f"{name}: {exc}") from None
    cls = branch.extra.get("model_class")  # the model jwst's ramp_fit gives the mode's rate (IFUImageModel)
    if cls and type(m).__name__ != cls:
        m = getattr(models, cls)(m)
    return m


def _steps_of(branch: Branch, members: dict) -> list[str]:
    out = []
    for s in branch.calibrate:
        if s.endswith("?"):
            s = s[:-1]
            kind = {"bkg_subtract": "background", "imprint_subtract": "imprint"}.get(s)
            if kind and not members.get(kind):
                continue
        out.append(s)
    return out


# ---------------------------------------------------------------------------
# one exposure


def calibrate_exposure(science, members: dict | None = None, *, steps=None, config=None, output_dir=None,
                       product_name=None, asn_info=None):
    """Run spec2 on one exposure; returns ``(cal, resampled or None, x1d or None, StageRun)``.

    ``members`` maps the association's other member types (``background``, ``imprint``,
    ``sourcecat``, ...) to lists of paths.
    """
    members = dict(members or {})
    source = product_name or input_name(science)
    model = open_rate(science)
    branch = branch_for(model)
    if asn_info:
        model.meta.asn.pool_name, model.meta.asn.table_name = asn_info
    cal_steps = _steps_of(branch, members)
    params = resolve_params(cal_steps + ["adaptive_trace_model"] + branch.later, steps, config, model=model,
                            pipeline_class="Spec2Pipeline")
    multi_int = model.data.ndim == 3
    if "bkg_subtract" in params and members.get("background"):
        params["bkg_subtract"] = params["bkg_subtract"].model_copy(
            update={"bkg_list": [str(b) for b in members["background"]]})
    hook = branch.extra.get("prepare")
    if hook is not None:  # a mode's own wiring of members into step parameters
        hook(model, params, members)
    run = StageRun(params=params)
    run.references, run.context = resolve_references(model, params)
    out_dir = Path(output_dir) if output_dir else None

    split = branch.extra.get("as_slit_before")
    own = branch.extra.get("calibrate")
    if own is not None:  # a mode's own way through its steps (NRS_MSASPEC: the MOS and fixed-slit split)
        model = own(model, cal_steps, run, output_dir=out_dir, source_name=source)
    elif split in cal_steps:  # the mode goes on as a SlitModel from that step (jwst's LRS)
        i = cal_steps.index(split)
        model = run_steps(model, cal_steps[:i], run, output_dir=out_dir, source_name=source)
        model = as_slit_model(model)  # rebound first: arrays the steps replace are not kept by the old model
        model = run_steps(model, cal_steps[i:], run, output_dir=out_dir, source_name=source)
    else:
        model = run_steps(model, cal_steps, run, output_dir=out_dir, source_name=source)
    for name in branch.marked_skipped:
        if name not in cal_steps and hasattr(model.meta.cal_step, name):
            setattr(model.meta.cal_step, name, "SKIPPED")
    _record_prefetched(model, branch.extra.get("recorded_reftypes", ()))
    stamp(model, run, "spec2")
    if out_dir is not None:
        run.written.append(save_product(model, out_dir, source, "calints" if multi_int else "cal", run))

    # jwst resamples and extracts a copy of the cal that went through adaptive_trace_model and
    # pixel_replace, both skipped by default: the s2d and x1d record them as SKIPPED
    # (LRS: nothing after the cal writes into its arrays, so the copy shares them, read-only)
    editing = [n for n in ("adaptive_trace_model", "pixel_replace") if n in params and not params[n].skip]
    share = bool(branch.extra.get("later_reads_only")) and not editing
    if branch.extra.get("later_shares_wcs") and isinstance(model, (models.MultiSlitModel, models.SlitModel)):
        from ._slit_fanout import copy_sharing_wcs  # the slits' WCSs are only evaluated from here on

        later_input = copy_sharing_wcs(model, share)
    else:
        later_input = model.copy(share_arrays=share)
    for name in ("adaptive_trace_model", "pixel_replace"):
        if name in editing:
            later_input = run_steps(later_input, [name], run, output_dir=out_dir, source_name=source)
        else:
            setattr(later_input.meta.cal_step, name, "SKIPPED")
    resampled = None
    if branch.resample and not multi_int and not params[branch.resample].skip:
        if branch.extra.get("resample_per_slit"):  # fanned out over the slits in a Prefect flow run
            from ._slit_fanout import run_slit_steps

            resampled = run_slit_steps(later_input, [branch.resample], run, source_name=source)
        else:
            resampled = run_steps(later_input, [branch.resample], run, output_dir=None, source_name=source)
        if isinstance(resampled, list):  # cube_build: one cube per band; jwst's spec2 writes the first
            return _ifu_later(model, resampled, params, run, out_dir, source)
        if isinstance(resampled, models.DataModel):
            stamp(resampled, run, "spec2")
            if out_dir is not None:
                sfx = "s3d" if branch.resample == "cube_build" else "s2d"
                run.written.append(save_product(resampled, out_dir, source, sfx, run))
    x1d = None
    no_cube = branch.resample == "cube_build" and resampled is None  # jwst extracts IFU spectra from cubes only
    if branch.extract and not params["extract_1d"].skip and not no_cube:
        extract = branch.extra.get("extract") or _extract
        x1d = extract(resampled if resampled is not None else later_input, run, source_name=source)
        after = [s for s in branch.extra.get("after_extract", ()) if not params[s].skip]
        if after and isinstance(x1d, models.DataModel):
            if x1d.meta.cal_step.extract_1d == "SKIPPED":
                x1d = None  # nothing extracted: no spectra to calibrate or write
            else:
                x1d = run_steps(x1d, after, run, output_dir=None, source_name=source)
        if isinstance(x1d, models.DataModel):
            stamp(x1d, run, "spec2")
            if out_dir is not None:
                run.written.append(save_product(x1d, out_dir, source, "x1dints" if multi_int else "x1d", run))
    publish_stage(run, "spec2", source, [model, resampled, x1d])
    return model, resampled, x1d, run


def _extract(model, run, *, source_name):
    return run_steps(model, ["extract_1d"], run, output_dir=None, source_name=source_name)


def _ifu_later(cal, cubes: list, params, run, out_dir, source):
    """An IFU exposure after its cal: the first cube written as ``<root>_s3d.fits``, then extract_1d on
    every cube (``<root>_x1d.fits``; ``<root>_<i>_x1d.fits`` each when there are several)."""
    if not cubes:
        publish_stage(run, "spec2", source, [cal])
        return cal, None, None, run
    for c in cubes:
        stamp(c, run, "spec2")
    if out_dir is not None:
        run.written.append(save_product(cubes[0], out_dir, source, "s3d", run))
    spectra = []
    if not params["extract_1d"].skip:
        for i, cube in enumerate(cubes):
            x1d = run_steps(cube, ["extract_1d"], run, output_dir=None, source_name=source,
                            label=cube.meta.filename or str(i) if len(cubes) > 1 else "")
            stamp(x1d, run, "spec2")
            if out_dir is not None:
                run.written.append(save_product(x1d, out_dir, source, "x1d" if len(cubes) == 1 else f"{i}_x1d", run))
            spectra.append(x1d)
    publish_stage(run, "spec2", source, [cal, cubes[0]] + spectra)
    return cal, cubes[0], (spectra[0] if len(spectra) == 1 else spectra or None), run


def _record_prefetched(model, reftypes) -> None:
    """Record what CRDS selects for ``reftypes`` on the product, as jwst's pipeline prefetch does."""
    if not reftypes:
        return
    from ..refs import get_reference_paths
    from ..tasks.base import _record_ref
    from .stage import _crds_lock

    from ..refs.select import CrdsSetupError, ReferenceSelectionError

    try:
        with _crds_lock:
            paths = get_reference_paths(model, list(reftypes), {})
    except (CrdsSetupError, ReferenceSelectionError) as exc:
        # references given by overrides alone, with no CRDS cache to ask or one without rules for
        # this instrument: the run does not depend on these records, so nothing is recorded
        log.debug("no CRDS answer to record %s from: %s", ", ".join(reftypes), exc)
        return
    for rt in reftypes:
        _record_ref(model, rt, paths.get(rt, "N/A"))


# ---------------------------------------------------------------------------
# the flow


@flow(name="spec2", flow_run_name=run_name("spec2"), validate_parameters=False, persist_result=False, log_prints=True)
def spec2(input, steps: dict | None = None, config: str | None = None, output_dir: str | None = None,
          members: dict | None = None, asn_info: tuple[str, str] | None = None):
    """Run calwebb_spec2 on a rate/rateints file, a model in memory or a level-2 association.

    ``members`` and ``asn_info`` serve an exposure given alone that comes from a level-2
    association (the association flow): its other members by type, and the association's pool and
    file name.  Returns the calibrated models, one per association product.
    """
    spec2_last_run.clear()
    if _is_asn(input):
        asn, products = load_level2_asn(input)
        info = (asn.get("asn_pool") or " ", Path(input).name)
        work = [(p.pop("science"), {k: v for k, v in p.items() if k != "name"}, p["name"], info) for p in products]
    else:
        # a lone exposure is jwst's "singleton" association (ASNPOOL, ASNTABLE)
        work = [(input, dict(members or {}), None, tuple(asn_info) if asn_info else ("singleton", "singleton"))]
    results = []
    for science, mem, name, info in work:
        cal, _res, _x1d, run = calibrate_exposure(science, mem, steps=steps, config=config, output_dir=output_dir,
                                                  product_name=name, asn_info=info)
        spec2_last_run.append(run)
        results.append(cal)
    return results


# the StageRuns of the most recent call in this process (one per product)
spec2_last_run = LastRuns()


@registry.register("spec2")
def run_spec2(input_path, *, output_dir, steps=None, config=None, options=None):
    from .stage import prefect_tracking, quiet_prefect_settings

    if options:
        raise ParameterError(f"unknown option(s) for spec2: {', '.join('--' + k for k in options)}")
    from .association import run_from_raw  # members not made yet: detector1 first
    if (made := run_from_raw(input_path, "spec2", output_dir=output_dir, steps=steps, config=config)) is not None:
        return made
    if prefect_tracking():
        with quiet_prefect_settings():
            _prefect.as_prefect(spec2)(str(input_path), steps=steps, config=config, output_dir=str(output_dir))
    else:
        # no Prefect server to show the runs: the same flow body, without the temporary server (and
        # without task states holding every step's model)
        spec2.fn(str(input_path), steps=steps, config=config, output_dir=str(output_dir))
    return [w for run in spec2_last_run for w in run.written]


# the modes that add their branches from their own modules
from . import _spec2_grism  # noqa: E402,F401
from . import _spec2_soss  # noqa: E402,F401
from . import _spec2_nirspec  # noqa: E402,F401
from . import _spec2_nrs_ifu  # noqa: E402,F401


_prefect.lazy_module(__name__)
