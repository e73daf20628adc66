"""guider_cds: count rates of FGS guider ramps by correlated double sampling (jwst's GuiderCdsStep).

Each FGS guider mode has its own rule, as in calwebb_guider:

- FGS_ACQ1, FGS_ACQ2, FGS_TRACK (two groups an integration): rate = (group 2 - group 1) / TGROUP,
  one image per integration;
- FGS_FINEGUIDE: rate = (mean of the last 4 groups - mean of the first 4) / TGROUP, per integration;
- FGS_ID-IMAGE, FGS_ID-STACK (two integrations of two groups): one image,
  rate = min(diff of integration 1, diff of integration 2) / TGROUP.

Variances, from the gain and readnoise references (cut to the subarray):
``var_rnoise = 2 (readnoise / TGROUP)**2`` and ``var_poisson = diff / (gain TGROUP)``
(negative values set to 0; ``diff`` is the numerator of the rate, in DN), and
``err = sqrt(var_rnoise + var_poisson)``.  The output is a GuiderCalModel that
carries the input's 2-D DQ, metadata and star/pointing tables, with BUNIT DN/s.

For FGS_ID-STACK data whose subarray cannot be cut from a reference, the mean
of the reference array is used, as jwst does.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from ..errors import ReferenceFileError
from .base import StepParams, step
from ._subarray import ref_region

log = logging.getLogger("webbflow.steps.guider_cds")

_TABLES = ("planned_star_table", "flight_star_table", "pointing_table", "centroid_table", "track_sub_table")


class GuiderCdsParams(StepParams):
    pass


def _ref_array(model, ref) -> np.ndarray:
    try:
        return np.asarray(ref_region(model, ref, "data"), dtype=np.float32)
    except ValueError as exc:
        if "STACK" in (model.meta.exposure.type or "").upper() and model.data.shape[-2:] != ref.data.shape:
            log.debug("guider_cds: %s does not match the stacked FGS data; using its mean", ref.meta.reftype)
            return np.zeros(model.data.shape[-2:], dtype=np.float32) + np.mean(ref.data)
        raise ReferenceFileError(ref.meta.reftype or "reference", ref.meta.filename or "<in memory>", str(exc)) from None


def _input_dq(model) -> np.ndarray:
    """The 2-D DQ of a guider ramp: ``dq`` of a GuiderRawModel, or ``pixeldq`` of a RampModel."""
    ny, nx = model.data.shape[-2:]
    for name in ("dq", "pixeldq"):
        if type(model).spec(name) is not None and model.has(name):
            a = getattr(model, name)
            if a.shape == (ny, nx):
                return np.asarray(a, dtype=np.uint32)
    return np.zeros((ny, nx), dtype=np.uint32)


@step(
    "guider_cds",
    "GuiderCdsStep",
    params=GuiderCdsParams,
    reftypes=("gain", "readnoise"),
    suffix="guider_cds",
    input_class="GuiderRawModel",
)
def guider_cds(model, refs, params: GuiderCdsParams):
    """Turn an FGS guider ramp into count-rate images (a GuiderCalModel)."""
    from .. import models

    data = model.data
    if data.ndim != 4:
        from ..errors import InputFileError

        raise InputFileError(model.meta.filename or "<in memory>", f"guider_cds needs a 4-D ramp, got shape {data.shape}")
    exp_type = (model.meta.exposure.type or "").upper()
    tgroup = model.meta.exposure.group_time
    if tgroup is None:
        from ..errors import InputFileError

        raise InputFileError(model.meta.filename or "<in memory>", "has no TGROUP (meta.exposure.group_time)")
    tgroup = np.float32(tgroup)
    nints, ngroups, ny, nx = data.shape
    gain = _ref_array(model, refs["gain"])
    rnoise = _ref_array(model, refs["readnoise"])

    var_rn_img = np.float32(2) * (rnoise / tgroup) ** 2
    is_id = exp_type.startswith("FGS_ID")
    if is_id:
        if nints < 2:
            from ..errors import InputFileError

            raise InputFileError(model.meta.filename or "<in memory>", f"{exp_type} needs 2 integrations, found {nints}")
        d0 = data[0, 1].astype(np.float32) - data[0, 0].astype(np.float32)
        d1 = data[1, 1].astype(np.float32) - data[1, 0].astype(np.float32)
        diff = np.minimum(d1, d0)[None]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            rate = diff / tgroup
            var_pn = diff / (gain * tgroup)
        var_rn = var_rn_img[None]
    else:
        diff = np.empty((nints, ny, nx), dtype=np.float32)
        if exp_type == "FGS_FINEGUIDE":
            for i in range(nints):
                ramp = data[i].astype(np.float32)
                diff[i] = ramp[-4:].mean(axis=0) - ramp[:4].mean(axis=0)
        else:  # ACQ1, ACQ2, TRACK: second group minus first
            if ngroups < 2:
                from ..errors import InputFileError

                raise InputFileError(model.meta.filename or "<in memory>", f"{exp_type} needs 2 groups, found {ngroups}")
            for i in range(nints):
                diff[i] = data[i, 1].astype(np.float32) - data[i, 0].astype(np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            var_pn = diff / (gain * tgroup)
        rate = diff / tgroup
        var_rn = np.broadcast_to(var_rn_img, diff.shape)
    var_pn[var_pn < 0] = 0.0
    err = np.sqrt(var_rn + var_pn)

    out = models.GuiderCalModel(data=rate.astype(np.float32, copy=False))
    out.meta = model.meta.model_copy(deep=True)
    out.meta.model_type = "GuiderCalModel"
    out.meta.bunit_data = "DN/s"
    out._headers = {k: h.copy() for k, h in model._headers.items() if k in ("PRIMARY", "SCI")}
    out._asdf_extra = dict(model._asdf_extra)
    out.err = err.astype(np.float32, copy=False)
    out.dq = _input_dq(model)
    for name in _TABLES:
        if type(model).spec(name) is not None and model.has(name):
            setattr(out, name, getattr(model, name))
    return out
