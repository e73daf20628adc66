"""flat_field: divide imaging data by the flat (jwst's FlatFieldStep, non-NIRSpec-spectroscopic path).

Works on an ImageModel (cal), a CubeModel (calints) and the guider's
GuiderCalModel.  The flat's DQ (mapped to the standard bits through its
DQ_DEF) is OR'ed into the science DQ; flat pixels that are NaN or zero get
DO_NOT_USE + NO_FLAT_FIELD, NO_FLAT_FIELD implies DO_NOT_USE, and every
DO_NOT_USE flat pixel is treated as 1 (left uncorrected).  Variances:

- ``var_flat = (data / flat)**2 / flat**2 * flat_err**2`` (after the division);
- ``var_poisson`` and ``var_rnoise`` are divided by ``flat**2`` and
  ``err = sqrt(var_poisson + var_rnoise + var_flat)``;
- guider data went through no ramp fit, so there ``err = sqrt(err**2 + var_flat)``.

``inverse=True`` multiplies instead (var_flat becomes 0).  Finally NaNs and
DO_NOT_USE are made consistent across data, err, variances and DQ.

NIRSpec spectroscopy (fixed slits, MSA slitlets, BOTS) is flat-fielded with
the fflat/sflat/dflat flats in tasks/_flat_nirspec.py.

The flat is cut to the science subarray by ``_subarray.ref_region`` (jwst's
``reffile_utils`` rules), which also maps its DQ through DQ_DEF.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import ReferenceFileError, UnsupportedModeError, a_an
from ..models import dqflags
from ._subarray import ref_region
from .base import StepParams, _record_ref, step

log = logging.getLogger("webbflow.steps.flat_field")

# Exposure types for which extract_2d may have run before flat_field.
EXTRACT_2D_IS_OK = {"NRS_BRIGHTOBJ", "NRS_FIXEDSLIT", "NRS_LAMP", "NRS_MSASPEC", "NRS_AUTOWAVE", "NRS_AUTOFLAT"}
NRS_IMAGING_MODES = {
    "NRS_CONFIRM", "NRS_FOCUS", "NRS_IMAGE", "NRS_MIMF", "NRS_MSATA", "NRS_TACONFIRM", "NRS_TACQ",
    "NRS_TASLIT", "NRS_WATA",
}
NRS_SPEC_MODES = {"NRS_BRIGHTOBJ", "NRS_FIXEDSLIT", "NRS_IFU", "NRS_MSASPEC", "NRS_LAMP", "NRS_AUTOWAVE"}
NIRSPEC_SPECTRAL_EXPOSURES = {"NRS_AUTOWAVE", "NRS_BRIGHTOBJ", "NRS_FIXEDSLIT", "NRS_IFU", "NRS_LAMP", "NRS_MSASPEC"}

class FlatFieldParams(StepParams):
    save_interpolated_flat: bool = False  # save the flat that was applied (suffix interpolatedflat)
    user_supplied_flat: str | None = None  # a flat file to use instead of the CRDS flat
    inverse: bool = False  # multiply by the flat instead of dividing


# ---------------------------------------------------------------------------
# NaN / DO_NOT_USE consistency


def match_nans_and_flags(model, extra: dict[str, np.ndarray] | None = None) -> None:
    """Make NaN (or infinity) in any of data/err/variances and DO_NOT_USE in DQ agree, in place.

    Infinite values become NaN flagged DO_NOT_USE, so that they do not spread through resample.

    Arrays shaped unlike ``data`` are left alone (for instance the guider's
    2-D DQ next to its 3-D data).  ``extra`` holds arrays kept outside the
    model that take part (and are updated) too.

    A read-only model array (a copy sharing another model's arrays, see
    ``DataModel.copy(share_arrays=True)``) is replaced by an updated copy only
    when something in it changes.
    """
    arrays = []
    for name in ("data", "err", "var_rnoise", "var_poisson", "var_flat"):
        if name in (extra or {}):
            arrays.append((None, extra[name]))
        elif model.has(name) and isinstance(getattr(model, name), np.ndarray):
            # (not an array: tso3's variance read from its file when used, flows/_tso3_variances.py,
            # already NaN exactly where the data are, so nothing here would change it)
            arrays.append((name, getattr(model, name)))
    if not arrays:
        return
    shape = arrays[0][1].shape
    arrays = [(n, a) for n, a in arrays if a.shape == shape]
    dnu = np.uint32(dqflags.DO_NOT_USE)
    dq = model.dq if model.has("dq") and model.dq.shape == shape else None
    if len(shape) == 3:
        # a cube (integrations): one plane at a time, without cube-sized masks and DQ temporaries
        _match_planes(model, arrays, dq, dnu)
        return
    invalid = np.zeros(shape, dtype=bool)
    for _, a in arrays:
        invalid |= ~np.isfinite(a)  # infinities are as unusable as NaN (jwst checks NaN only)
    if dq is not None:
        invalid |= (dq & dnu) != 0
        if dq.flags.writeable:
            dq[invalid] |= dnu
        elif (invalid & ((dq & dnu) == 0)).any():
            dq = dq.copy()
            dq[invalid] |= dnu
            model.dq = dq
    for name, a in arrays:
        if a.flags.writeable or name is None:
            a[invalid] = np.nan
        elif (invalid & ~np.isnan(a)).any():
            a = a.copy()
            a[invalid] = np.nan
            setattr(model, name, a)


def _match_planes(model, arrays: list, dq, dnu) -> None:
    """:func:`match_nans_and_flags` on a cube, one integration at a time; a read-only model array is
    replaced by a copy (made once, whole) at the first plane where something in it changes."""
    arrays = [list(na) for na in arrays]
    for i in range(arrays[0][1].shape[0]):
        invalid = np.zeros(arrays[0][1].shape[1:], dtype=bool)
        for _, a in arrays:
            invalid |= ~np.isfinite(a[i])
        if dq is not None:
            invalid |= (dq[i] & dnu) != 0
            if not dq.flags.writeable and (invalid & ((dq[i] & dnu) == 0)).any():
                model.dq = dq.copy()
                dq = model.dq
            if dq.flags.writeable:
                dq[i][invalid] |= dnu
        for na in arrays:
            name, a = na
            if not a.flags.writeable and name is not None:
                if not (invalid & ~np.isnan(a[i])).any():
                    continue
                setattr(model, name, a.copy())
                na[1] = a = getattr(model, name)
            a[i][invalid] = np.nan


# ---------------------------------------------------------------------------
# the step


def _supported(model) -> bool:
    from ..models import CubeModel, GuiderCalModel, IFUImageModel, ImageModel, SlitModel

    if isinstance(model, IFUImageModel):  # MIRI MRS: flat-fielded as an image
        return (model.meta.exposure.type or "").upper() == "MIR_MRS"
    if isinstance(model, SlitModel):  # MIRI LRS: jwst's spec2 calibrates LRS exposures as a SlitModel
        return (model.meta.exposure.type or "").upper() in ("MIR_LRS-FIXEDSLIT", "MIR_LRS-SLITLESS")
    return isinstance(model, (ImageModel, CubeModel, GuiderCalModel))


@step(
    "flat_field",
    "FlatFieldStep",
    params=FlatFieldParams,
    optional_reftypes=("flat", "fflat", "sflat", "dflat"),
    suffix="flat_field",
    input_class="DataModel",
)
def flat_field(model, refs, params: FlatFieldParams):
    """Divide an image, cube or guider product by the flat and propagate DQ and variances."""
    from .. import models

    exp_type = (model.meta.exposure.type or "").upper()
    instrument = (model.meta.instrument.name or "").upper()
    if instrument == "NIRSPEC" and exp_type not in NRS_SPEC_MODES and exp_type not in NRS_IMAGING_MODES:
        log.warning("flat_field: exposure type %s is not supported; skipped", exp_type)
        return model, "SKIPPED"
    if getattr(model.meta.cal_step, "extract_2d", None) == "COMPLETE" and exp_type not in EXTRACT_2D_IS_OK:
        log.warning("flat_field: extract_2d should not have run for %s; skipped", exp_type)
        return model, "SKIPPED"
    if _nirspec_spectral(model):
        return _flat_nirspec_step(model, refs, params)
    if not _supported(model):
        raise UnsupportedModeError(
            f"flat_field takes an ImageModel, CubeModel or GuiderCalModel here, not {a_an(type(model).__name__)}"
        )

    flat = refs.get("flat")
    if params.user_supplied_flat:
        log.info("flat_field: using the user-supplied flat %s instead of any reference flat", params.user_supplied_flat)
        from ..refs import open_reference

        flat = open_reference("flat", params.user_supplied_flat)
        _record_ref(model, "flat", str(params.user_supplied_flat))
    if flat is None:
        log.warning("flat_field: no flat found or supplied; skipped")
        return model, "SKIPPED"
    if model.data.shape[-1] > flat.data.shape[-1] or model.data.shape[-2] > flat.data.shape[-2]:
        log.warning("flat_field: the flat is smaller than the science data; skipped")
        return model, "SKIPPED"

    apply_flat(model, flat, inverse=params.inverse)

    if params.save_interpolated_flat:
        from ..models.naming import product_path

        src = model.meta.filename or "flat_field.fits"
        path = product_path(params.output_dir or Path.cwd(), src, "interpolatedflat")
        models.FlatModel(flat).save(path)
        log.info("flat_field: flat written to %s", path)
    return model


def apply_flat(science, flat, inverse: bool = False) -> None:
    """Flat-field ``science`` in place with the FlatModel ``flat`` (cut to the science subarray)."""
    from ..models import GuiderCalModel

    try:
        fdata, fdq, ferr = ref_region(science, flat, "data", "dq", "err")
    except ValueError as exc:
        raise ReferenceFileError("flat", flat.meta.filename or "<in memory>", str(exc)) from None
    fdata = np.array(fdata, dtype=np.float32)  # copies: bad pixels are changed below
    fdq = np.zeros(fdata.shape, np.uint32) if fdq is None else np.array(fdq, dtype=np.uint32)
    ferr = np.zeros_like(fdata) if ferr is None else np.asarray(ferr, dtype=np.float32)

    dnu = np.uint32(dqflags.DO_NOT_USE)
    noflat = np.uint32(dqflags.NO_FLAT_FIELD)
    fdq[np.isnan(fdata) | (fdata == 0.0)] |= dnu | noflat
    fdq[(fdq & noflat) != 0] |= dnu
    fdata[(fdq & dnu) != 0] = 1.0

    fsq = fdata * fdata
    if not inverse:
        science.data /= fdata
        # (data**2 / fsq) * ferr**2, made in one array: no cube-sized temporaries
        var_flat = np.square(science.data)
        var_flat /= fsq
        var_flat *= ferr**2
    else:
        science.data *= fdata
        var_flat = np.zeros_like(science.data)

    guider = isinstance(science, GuiderCalModel)
    if not guider:
        science.var_flat = var_flat
        var_flat = science.var_flat
        op = np.divide if not inverse else np.multiply
        for name in ("var_poisson", "var_rnoise"):  # in place when the array can take the result
            setattr(science, name, _in_place(op, getattr(science, name), fsq))
        terms = (science.var_poisson, science.var_rnoise) + ((var_flat,) if not inverse else ())
        err = science.err if science.has("err") else None
        if not (isinstance(err, np.ndarray) and err.flags.writeable and err.shape == terms[0].shape
                and err.dtype == np.result_type(*terms) and not any(np.shares_memory(err, t) for t in terms)):
            err = None
        err = np.add(terms[0], terms[1], out=err)
        for t in terms[2:]:
            err += t
        science.err = np.sqrt(err, out=err)
        extra = None
    else:
        # GuiderCalModel has no variance arrays: fold the flat's variance into ERR.
        if not inverse:
            science.err = np.sqrt(science.err**2 + var_flat)
        extra = {"var_flat": var_flat}

    science.dq = _in_place(np.bitwise_or, science.dq, fdq)
    match_nans_and_flags(science, extra)


def _in_place(op, a, b):
    """``op(a, b)``, written into ``a`` when ``a`` is a writeable array of the result's type and shape
    (the same values: the cube's arrays are not copied whole for a 2-D reference)."""
    if (isinstance(a, np.ndarray) and a.flags.writeable and a.dtype == np.result_type(a, b)
            and np.broadcast_shapes(a.shape, np.shape(b)) == a.shape and not np.shares_memory(a, b)):
        return op(a, b, out=a)
    return op(a, b)


def _flat_refs_needed(model, params: FlatFieldParams):
    """No FLAT lookup when the user supplies the flat; NIRSpec spectroscopy reads the three flats."""
    if params.user_supplied_flat:
        return ()
    return ("fflat", "sflat", "dflat") if _nirspec_spectral(model) else ("flat",)


def _nirspec_spectral(model) -> bool:
    exp_type = (model.meta.exposure.type or "").upper()
    return exp_type in NIRSPEC_SPECTRAL_EXPOSURES and (model.meta.instrument.lamp_mode or "").upper() != "IMAGE"


def _flat_nirspec_step(model, refs, params: FlatFieldParams):
    """NIRSpec fixed slits, MSA slitlets and BOTS: the f/s/d flats (tasks/_flat_nirspec.py)."""
    from ._flat_nirspec import nirspec_flat_field

    if params.user_supplied_flat:
        raise UnsupportedModeError("flat_field: a user-supplied flat for NIRSpec spectroscopy is not implemented yet")
    made, status = nirspec_flat_field(model, refs, inverse=params.inverse)
    _record_ref(model, "flat", "N/A")  # jwst asks CRDS for a FLAT too: none for spectroscopy
    if params.save_interpolated_flat and made is not None:
        from ..models.naming import product_path

        src = model.meta.filename or "flat_field.fits"
        path = product_path(params.output_dir or Path.cwd(), src, "interpolatedflat")
        made.save(path)
        log.info("flat_field: interpolated flat written to %s", path)
    return model, status


def _reference_rows(model) -> dict:
    """NIRSpec slit spectroscopy reads its s-flat and d-flat at the slits' rows alone."""
    if not _nirspec_spectral(model):
        return {}
    from ._flat_nirspec import reference_rows

    return reference_rows(model)


def _register_extras():
    from .base import STEPS

    STEPS["flat_field"].extra["optional_reftypes_needed"] = _flat_refs_needed
    STEPS["flat_field"].extra["reference_rows"] = _reference_rows
    # jwst's FlatFieldStep asks CRDS for the NIRSpec flats too and records the answers (N/A)
    STEPS["flat_field"].extra["considered_reftypes"] = ("fflat", "sflat", "dflat")


_register_extras()
