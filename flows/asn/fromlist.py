"""An association from a list of files (``webbflow asn from-list``), as jwst's asn_from_list makes it."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ... import __version__
from ...errors import ParameterError
from .engine import DEGRADED_OK

RULES = ("DMS_Level3_Base", "DMSLevel2bBase")


def asn_from_list(files, product_name: str | None = None, rule: str = "DMS_Level3_Base") -> dict:
    """Level 3: all ``files`` as science members of one product (its name is required);
    level 2b: one product per file, named after the file."""
    if rule not in RULES:
        raise ParameterError(f"unknown rule {rule!r}; known: {', '.join(RULES)}")
    files = [str(f) for f in files]
    if not files:
        raise ParameterError("no files given")
    data = {
        "asn_type": "None", "asn_rule": rule, "version_id": None, "code_version": f"webbflow {__version__}",
        "degraded_status": DEGRADED_OK, "program": "noprogram", "constraints": "No constraints",
        "asn_id": "a3001",
    }
    if rule == "DMS_Level3_Base":
        if not product_name:
            raise ParameterError("a level-3 association needs --product-name")
        data.update(target="none", asn_pool="none")
        data["products"] = [{"name": product_name, "members": [{"expname": f, "exptype": "science"} for f in files]}]
        return data
    data["asn_pool"] = "none"
    data["products"] = [{"name": _root(f), "members": [{"expname": f, "exptype": "science"}]} for f in files]
    return data


def _root(path: str) -> str:
    """``dir/jw..._nrca1_rate.fits`` -> ``dir/jw..._nrca1``."""
    stem = Path(path).with_suffix("")
    name = re.sub(r"_[^_]+$", "", stem.name) if "_" in stem.name else stem.name
    return str(stem.parent / name) if str(stem.parent) != "." else name


def write_asn(data: dict, path) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=4))
    tmp.replace(path)
    return path
