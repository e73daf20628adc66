"""Turning what a detector1 step is given into the ramp model it works on.

jwst opens a step's input "as a ramp": an uncalibrated exposure (uint16
``Level1bModel``) becomes a ``RampModel`` with float32 data and zeroed
PIXELDQ, GROUPDQ and ERR arrays; FGS guider exposures become a
``GuiderRawModel`` (float32 data, one 2-D DQ).  ``as_ramp`` does the same
for our models, once, on purpose (see DESIGN.md on uint16 ramps).
"""

from __future__ import annotations

import numpy as np

from .. import models
from ..errors import InputFileError

FGS_GUIDE_EXP_TYPES = {"FGS_ACQ1", "FGS_ACQ2", "FGS_FINEGUIDE", "FGS_ID-IMAGE", "FGS_ID-STACK", "FGS_TRACK"}


def is_guider(model) -> bool:
    return str(model.meta.exposure.type or "").upper() in FGS_GUIDE_EXP_TYPES


def as_ramp(model):
    """Return ``model`` as a float32 ramp (``RampModel`` or ``GuiderRawModel``).

    A model that already is one is returned unchanged (no copy).  Otherwise a
    new model is made that shares metadata (copied) and converts the arrays
    to the ramp's dtypes: the uint16 SCI, ZEROFRAME and REFOUT arrays become
    float32, as in jwst.
    """
    if is_guider(model):
        if isinstance(model, models.GuiderRawModel):
            out = model
        else:
            out = models.GuiderRawModel(model)
        if out.data.dtype != np.float32:
            out.data = out.data.astype(np.float32)
        return out
    if isinstance(model, models.RampModel) and not isinstance(model, models.Level1bModel):
        return model
    data = getattr(model, "data", None) if isinstance(model, models.DataModel) else None
    if data is None or data.ndim != 4:
        where = getattr(model, "_path", None) or getattr(getattr(model, "meta", None), "filename", None) or "<input>"
        raise InputFileError(
            where,
            f"holds {type(model).__name__} data of shape {getattr(data, 'shape', None)}; "
            "this step needs a ramp (nints, ngroups, ny, nx), e.g. an _uncal or _ramp file",
        )
    return models.RampModel(model)


# ---------------------------------------------------------------------------
# integrations of an exposure processed one at a time (flows/_streaming.py)


def integration_offset(model) -> int:
    """Index in the whole exposure of the model's first integration (0 unless the model is one piece of it)."""
    return int(getattr(model, "_integration_offset", 0) or 0)


def integration_total(model) -> int:
    """Number of integrations of the whole exposure the model belongs to."""
    n = getattr(model, "_integration_total", None)
    return int(n) if n else int(model.data.shape[0])


def stream_state(model) -> dict | None:
    """A dict shared by the pieces of one exposure (for steps that add up over integrations), else None."""
    return getattr(model, "_stream_state", None)
