"""Typed parameters for the deployed flows, built from the steps' own parameter models.

Each stage gets a pydantic model with one field per step, typed as that step's
parameter class (``JumpParams``, ``FlatFieldParams``, ...: the declarations in
``tasks/*.py``).  Prefect derives a deployment's parameter schema from the
entry-point flow's type hints, so the UI shows each step as a form with its
parameters, types, bounds, defaults and descriptions, and rejects a wrong
type or an unknown name before the run starts.

Turning a form back into the ``steps`` dict the stage flows take keeps only
what differs from the step's declared default: a value left at its default
means "not set here", so CRDS parameter files (``pars-*``) and a ``config``
file still apply below it, as for the command line.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, create_model

from ..tasks import load_all
from ..tasks.base import STEPS, StepParams


def _stage_model(name: str, step_names: list[str], doc: str) -> type[BaseModel]:
    load_all()
    fields = {}
    for s in step_names:
        spec = STEPS[s]
        fields[s] = (spec.params, Field(default_factory=spec.params, description=spec.doc or spec.jwst_class))
    model = create_model(name, __config__=ConfigDict(extra="forbid"), **fields)
    model.__doc__ = doc
    return model


def stage_steps(stage: str) -> list[str]:
    """The steps of a stage flow, in the order the flow runs them (both branches for detector1 and dark)."""
    if stage == "detector1":
        from ..flows import calwebb_detector1 as m

        return list(m.ALL_STEPS)
    if stage == "image2":
        from ..flows import calwebb_image2 as m

        return list(m.STEPS)
    if stage == "guider":
        from ..flows import calwebb_guider as m

        return list(m.STEPS)
    if stage == "dark":
        from ..flows import calwebb_dark as m

        return list(dict.fromkeys(m.NIR_STEPS + m.MIRI_STEPS))
    if stage == "image3":
        from ..flows import calwebb_image3 as m

        return list(getattr(m, "STEPS", None) or getattr(m, "ALL_STEPS"))
    raise KeyError(stage)


def image3_available() -> bool:
    try:
        stage_steps("image3")
    except (ImportError, AttributeError):
        return False
    return True


Detector1Steps = _stage_model("Detector1Steps", stage_steps("detector1"),
                              "Parameters of each calwebb_detector1 step (near-IR and MIRI branches).")


def branch_steps(family: str) -> list[str]:
    """detector1's steps for one instrument family, in order: ``nir`` (NIRCam, NIRISS, NIRSpec, FGS) or ``miri``."""
    from ..flows import calwebb_detector1 as m

    first = m.MIRI_STEPS if family == "miri" else m.NIR_STEPS
    return list(first) + list(m.TAIL_STEPS) + list(m.FIT_STEPS)


# one form per instrument family: only the steps that run on it
Detector1NirSteps = _stage_model("Detector1NirSteps", branch_steps("nir"),
                                 "Parameters of each calwebb_detector1 step for NIRCam, NIRISS, NIRSpec and FGS.")
Detector1MiriSteps = _stage_model("Detector1MiriSteps", branch_steps("miri"),
                                  "Parameters of each calwebb_detector1 step for MIRI.")
Image2Steps = _stage_model("Image2Steps", stage_steps("image2"), "Parameters of each calwebb_image2 step.")
GuiderSteps = _stage_model("GuiderSteps", stage_steps("guider"), "Parameters of each calwebb_guider step.")
DarkSteps = _stage_model("DarkSteps", stage_steps("dark"), "Parameters of each calwebb_dark step.")
Image3Steps = (_stage_model("Image3Steps", stage_steps("image3"), "Parameters of each calwebb_image3 step.")
               if image3_available() else None)


def _association_model(d1: type[BaseModel] = Detector1Steps, name: str = "AssociationSteps") -> type[BaseModel]:
    fields = {
        "detector1": (d1, Field(default_factory=d1, description="calwebb_detector1, per exposure")),
        "image2": (Image2Steps, Field(default_factory=Image2Steps, description="calwebb_image2, per exposure")),
    }
    if Image3Steps is not None:
        fields["image3"] = (Image3Steps, Field(default_factory=Image3Steps, description="calwebb_image3, per product"))
    m = create_model(name, __config__=ConfigDict(extra="forbid"), **fields)
    m.__doc__ = "Step parameters of each stage an association runs."
    return m


AssociationSteps = _association_model()
AssociationNirSteps = _association_model(Detector1NirSteps, "AssociationNirSteps")
AssociationMiriSteps = _association_model(Detector1MiriSteps, "AssociationMiriSteps")


def _changed(p: StepParams) -> dict:
    """A step's parameters that differ from the declared defaults (overrides by reftype included)."""
    out = p.model_dump(exclude_defaults=True)
    out.pop("overrides", None)
    if p.overrides:
        out["overrides"] = dict(p.overrides)
    return out


def steps_dict(steps: BaseModel | dict | None) -> dict[str, dict]:
    """``{step: {param: value}}`` for what the form sets; empty steps are left out."""
    if steps is None:
        return {}
    if isinstance(steps, dict):
        return {k: dict(v) for k, v in steps.items() if v}
    out = {}
    for name in type(steps).model_fields:
        p = getattr(steps, name)
        if isinstance(p, StepParams):
            d = _changed(p)
        elif isinstance(p, BaseModel):
            d = steps_dict(p)  # a stage inside the association's parameters
        else:
            continue
        if d:
            out[name] = d
    return out


__all__ = ["Detector1Steps", "Image2Steps", "GuiderSteps", "DarkSteps", "Image3Steps", "AssociationSteps",
           "Detector1NirSteps", "Detector1MiriSteps", "AssociationNirSteps", "AssociationMiriSteps", "branch_steps",
           "steps_dict", "stage_steps", "image3_available"]
