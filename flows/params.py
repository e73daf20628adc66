"""Parameter files in the jwst layout (YAML or ASDF): steps: [{name: ..., parameters: {...}}]."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputFileError


def load_config_file(path) -> dict[str, dict]:
    """Return {step_name: {param: value}} from a jwst-style parameter file."""
    p = Path(path)
    if not p.exists():
        raise InputFileError(p, "no such parameter file")
    try:
        if p.suffix.lower() == ".asdf":
            import asdf

            with asdf.open(p, lazy_load=False) as af:
                tree = dict(af.tree)
        else:
            import yaml

            tree = yaml.safe_load(p.read_text()) or {}
    except Exception as exc:  # noqa: BLE001
        raise InputFileError(p, f"cannot read parameter file ({exc})") from None
    out: dict[str, dict] = {}
    if "steps" in tree and isinstance(tree["steps"], list):
        for s in tree["steps"]:
            name = s.get("name")
            if name:
                out[name] = dict(s.get("parameters") or {})
    elif "steps" in tree and isinstance(tree["steps"], dict):
        out = {k: dict(v or {}) for k, v in tree["steps"].items()}
    elif "parameters" in tree:
        out[tree.get("name", "")] = dict(tree["parameters"])
    return out
