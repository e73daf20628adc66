"""Selecting reference files through the crds client (first version; see refs issue)."""

from __future__ import annotations

from pathlib import Path

from ..errors import ReferenceFileError


def get_reference_paths(model, reftypes, overrides=None) -> dict[str, str]:
    overrides = dict(overrides or {})
    out: dict[str, str] = {}
    todo = []
    for rt in reftypes:
        if rt in overrides and overrides[rt] not in (None, ""):
            v = str(overrides[rt])
            out[rt] = "N/A" if v.upper() in ("N/A", "NONE") else v
        else:
            todo.append(rt)
    if todo:
        import crds

        params = {k: v for k, v in model.to_flat_dict().items() if isinstance(v, (str, int, float, bool))}
        res = crds.getreferences(params, reftypes=todo, observatory="jwst")
        for rt in todo:
            v = res.get(rt, "N/A")
            out[rt] = "N/A" if str(v).upper().startswith("NOT FOUND N/A") or str(v).upper() == "N/A" else v
    return out


def open_reference(reftype: str, path):
    from .. import models
    from ..models.classes import REFERENCE_MODELS

    p = Path(path)
    if not p.exists():
        raise ReferenceFileError(reftype, p, "file not found")
    try:
        m = models.open(p)
    except Exception as exc:  # noqa: BLE001
        raise ReferenceFileError(reftype, p, str(exc)) from None
    want = REFERENCE_MODELS.get(reftype)
    if want is not None and not isinstance(m, want) and not (reftype == "dark"):
        raise ReferenceFileError(reftype, p, f"is a {type(m).__name__}, expected a {want.__name__}")
    return m


def reset_crds_state() -> None:
    """Forget the crds client's cached configuration (after CRDS_* variables change)."""
    try:
        from crds.core import config, heavy_client

        for fn in ("get_processing_mode", "_initial_recommendations"):
            f = getattr(heavy_client, fn, None)
            if hasattr(f, "cache_clear"):
                f.cache_clear()
        config.reset_locks() if hasattr(config, "reset_locks") else None
    except Exception:  # noqa: BLE001 - best effort
        pass
