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

import copy
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, create_model

from ..tasks import load_all
from ..tasks.base import STEPS, StepParams


class StepForm(BaseModel):
    """A step's parameters as a deployment form shows them (see :func:`step_form`)."""

    model_config = ConfigDict(extra="forbid")


# per-step file naming has no use in a deployed stage (the run's output_dir names the folder)
FORM_LEAVES_OUT = ("suffix", "output_file", "output_dir")
_FORMS: dict[str, type[StepForm]] = {}


def _optional_str(f) -> bool:
    import types
    import typing

    ann = f.annotation
    return (typing.get_origin(ann) in (typing.Union, types.UnionType) and set(typing.get_args(ann)) == {str, type(None)}
            and f.default is None)


def _optional_number(f) -> str | None:
    """``"number"`` or ``"integer"`` for a ``float | None`` or ``int | None`` parameter, else None."""
    import types
    import typing

    ann = f.annotation
    if typing.get_origin(ann) not in (typing.Union, types.UnionType):
        return None
    args = set(typing.get_args(ann))
    return {frozenset({float, type(None)}): "number", frozenset({int, type(None)}): "integer"}.get(frozenset(args))


def step_form(name: str) -> type[StepForm]:
    """The form of step ``name``: its parameter model, with the same names, types, bounds, defaults and
    descriptions, less the per-step file naming, and with optional text as plain text (empty: not set)
    and optional numbers as plain numbers, which Prefect's form shows as a text or number box rather
    than a type switch."""
    form = _FORMS.get(name)
    if form is None:
        spec = STEPS[name]
        fields = {}
        for fname, f in spec.params.model_fields.items():
            if fname in FORM_LEAVES_OUT:
                continue
            if _optional_str(f):
                fields[fname] = (str, Field("", description=f"{f.description} (empty: not set)"))
            elif _optional_number(f):
                # a plain number box (empty: the default) instead of a number/None switch; None is still accepted
                g = copy.copy(f)
                if f.default is None:
                    g.description = f"{f.description} (empty: not set)" if f.description else "empty: not set"
                box = {"type": _optional_number(f)}
                for m in f.metadata:  # the bounds stay on the form
                    for attr, key in (("ge", "minimum"), ("le", "maximum"), ("gt", "exclusiveMinimum"), ("lt", "exclusiveMaximum")):
                        if getattr(m, attr, None) is not None:
                            box[key] = getattr(m, attr)
                fields[fname] = (Annotated[f.annotation, WithJsonSchema(box)], g)
            else:
                fields[fname] = (f.annotation, f)
        form = create_model(spec.params.__name__, __base__=StepForm, **fields)
        form.__doc__ = f"Parameters of {spec.jwst_class} ({name})."  # the field says what the step does
        _FORMS[name] = form
    return form


def _stage_model(name: str, step_names: list[str], doc: str) -> type[BaseModel]:
    load_all()
    fields = {}
    for s in step_names:
        spec = STEPS[s]
        form = step_form(s)
        fields[s] = (form, Field(default_factory=form, description=spec.doc or spec.jwst_class))
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
    if stage == "coron3":
        from ..flows import calwebb_coron3 as m

        return list(m.STEPS)
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


def _changed(p: StepParams | StepForm) -> dict:
    """A step's parameters that differ from the declared defaults (overrides by reftype included)."""
    out = p.model_dump(exclude_defaults=True)
    if isinstance(p, StepForm):
        out = {k: v for k, v in out.items() if v != "" or not _optional_str(type(p).model_fields[k])}
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
        if isinstance(p, (StepParams, StepForm)):
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
