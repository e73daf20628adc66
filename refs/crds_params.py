"""The matching parameters that the crds client sees for an exposure.

jwst hands crds ``model.get_crds_parameters()``: the datamodel flattened to
``{"meta.instrument.name": "NIRCAM", "meta.exposure.type": "NRC_IMAGE", ...}``
with only simple values (str, int, float, bool).  CRDS rules (rmaps) name their
matching parameters by these same datamodel paths (``META.INSTRUMENT.DETECTOR``,
``META.SUBARRAY.NAME``, ``META.VISIT.TSOVISIT`` ...), and crds upper-cases the
keys before matching.

We build the same dictionary from our models:

- every modelled field of ``model.meta`` (each is read from its FITS keyword,
  so FITS-only files give the same values jwst would read), and
- every entry of the file's ASDF metadata tree that we do not model (kept as
  pydantic extras): real JWST products carry their whole ``meta`` tree there,
  so a parameter a future context needs is present even if we never model it.

Only ``meta.*`` keys are passed.  Bare FITS keywords would make crds look them
up in the stdatamodels schema, which webbflow does not install at run time.
"""

from __future__ import annotations

import datetime
import numbers
from typing import Any

SIMPLE = (str, int, float, bool)

# The jwst release whose steps, parameters and pipelines webbflow reproduces.
# crds uses the calibration software version only to choose which reftypes a
# pipeline needs (its SYSTEM CRDSCFG); we state it for exposures without CAL_VER.
JWST_CAL_VER = "3.0.0"

# Which keyword a missing parameter is read from, for the one-line hints we give.
_HINT_KEYWORDS = {
    "meta.instrument.name": "INSTRUME",
    "meta.exposure.type": "EXP_TYPE",
    "meta.instrument.detector": "DETECTOR",
    "meta.observation.date": "DATE-OBS",
    "meta.observation.time": "TIME-OBS",
}


def _simple(value: Any):
    """``value`` as a crds-acceptable simple type, or None to drop it."""
    if value is None:
        return None
    if isinstance(value, SIMPLE):
        return value
    # numpy scalars and the like (ASDF trees may hold them)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (datetime.date, datetime.time)):
        return None  # jwst drops non-simple values too
    item = getattr(value, "item", None)
    if callable(item):
        try:
            v = item()
        except (TypeError, ValueError):
            return None
        return v if isinstance(v, SIMPLE) else None
    return None


def _flatten(obj: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(v, f"{prefix}.{k}", out)
        return
    if isinstance(obj, (list, tuple)):
        # jwst's flat dict numbers list items (meta.x.0, meta.x.1); rules never
        # match on them, but keep them for a faithful picture.
        for i, v in enumerate(obj):
            _flatten(v, f"{prefix}.{i}", out)
        return
    v = _simple(obj)
    if v is not None:
        out[prefix] = v


def crds_parameters(model) -> dict[str, Any]:
    """The ``{meta.path: value}`` dictionary crds matches on, for a model.

    A list or tuple of models (an association's members) uses its first member,
    as jwst does for a ModelContainer.
    """
    if isinstance(model, (list, tuple)):
        if not model:
            from ..errors import InputFileError

            raise InputFileError("<empty list>", "no exposures to select reference files for")
        model = model[0]
    if hasattr(model, "read_metadata") and not hasattr(model, "meta"):  # a model library: its first member
        meta = model.read_metadata(0)
    else:
        meta = model.meta
    # ``wcs`` is a gwcs object, never a matching parameter
    tree = meta.model_dump(exclude={"wcs"})
    out: dict[str, Any] = {}
    _flatten(tree, "meta", out)
    return out


def missing_parameter_hint(params: dict[str, Any], key: str) -> str:
    """``'INSTRUME (meta.instrument.name)'`` for messages about a missing parameter."""
    kw = _HINT_KEYWORDS.get(key.lower())
    return f"{kw} ({key.lower()})" if kw else key.lower()
