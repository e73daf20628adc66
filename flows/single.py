"""Running one step alone on a file (``webbflow run jump X_dark_current.fits``)."""

from __future__ import annotations

from pathlib import Path

from .. import models
from ..tasks.base import STEPS, run_step
from .naming import product_path
from .params import load_config_file


def run_single_step(name: str, input_path: Path, *, output_dir: Path, params: dict, config=None) -> list[str]:
    spec = STEPS[name]
    values = {}
    if config:
        values.update(load_config_file(config).get(name, {}))
    values.update(params)
    p = spec.make_params(values)
    model = models.open(input_path)
    model = _as_input(model, spec.input_class, input_path)
    result = run_step(name, model, p)
    outs = result.model if isinstance(result.model, (list, tuple)) else [result.model]
    written = []
    suffixes = spec.extra.get("suffixes") or [p.suffix or spec.suffix]
    for m, suffix in zip(outs, suffixes):
        if m is None:
            continue
        path = Path(p.output_file) if p.output_file else product_path(p.output_dir or output_dir, input_path.name, suffix)
        written.append(m.save(path))
    return written


def _as_input(model, class_name: str, path):
    """Give a step the model class it declares, converting raw ramps the way jwst opens them."""
    from ..errors import InputFileError

    want = models.REGISTRY.get(class_name)
    if want is None or isinstance(model, want):
        return model
    if isinstance(model, models.Level1bModel) and class_name in ("RampModel", "GuiderRawModel"):
        if class_name == "RampModel":
            from ..tasks._convert import as_ramp

            return as_ramp(model)
        return want(model)
    if class_name == "RampModel" and isinstance(model, models.RampModel):
        return model
    have = type(model).__name__
    raise InputFileError(path, f"is {_a(have)} {have}; this step needs {_a(class_name)} {class_name}")


def _a(word: str) -> str:
    """The indefinite article for a class name: an ImageModel, a RampModel."""
    return "an" if word[:1].upper() in "AEIOU" else "a"
