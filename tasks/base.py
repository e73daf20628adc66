"""How a calibration step is declared, run alone, and wrapped as a Prefect task.

A step is a plain science function ``fn(model, refs, params) -> model`` plus a
declaration (:class:`StepSpec`): its name, the jwst class it mirrors, the
model it takes, the reference types it needs, its parameter model and the
suffix of its output.  Flows, the command line, the docs and the parity tests
all read the declaration instead of repeating it.

``run_step`` resolves the reference files (CRDS, or ``override_<reftype>``),
skips the step when asked or when a required reftype is N/A, calls the
science function, and records ``meta.cal_step`` and ``meta.ref_file``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ParameterError, did_you_mean

log = logging.getLogger("webbflow.steps")


class StepParams(BaseModel):
    """Parameters every step has; each step subclasses this with its own, under jwst's names."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    skip: bool = Field(False, description="Skip this step: the product is marked SKIPPED for it")
    save_results: bool = Field(False, description="Also write this step's own output product")
    suffix: str | None = Field(None, description="Suffix of this step's output file (default: the step's own)")
    output_file: str | None = Field(None, description="File name of this step's output product")
    output_dir: str | None = Field(None, description="Folder for this step's output products")
    # override_<reftype> values are accepted by every step; kept here by reftype
    overrides: dict[str, str] = Field(
        {}, description="Reference files to use instead of CRDS' choice, by reftype ('N/A' skips that reference)")


@dataclass
class StepSpec:
    name: str  # jwst's step alias, e.g. "dq_init"
    jwst_class: str  # e.g. "DQInitStep"
    function: Callable[..., Any]
    params: type[StepParams] = StepParams
    reftypes: tuple[str, ...] = ()
    # reftypes whose N/A does not skip the step (optional references)
    optional_reftypes: tuple[str, ...] = ()
    suffix: str = ""
    cal_step: str | None = None  # meta.cal_step attribute; defaults to name
    input_class: str = "RampModel"
    doc: str = ""
    extra: dict = field(default_factory=dict)

    def make_params(self, values: dict | None = None) -> StepParams:
        """Validate user-given values (strings from the CLI are coerced) into the step's parameters."""
        values = dict(values or {})
        overrides = dict(values.pop("overrides", {}) or {})
        for k in list(values):
            if k.startswith("override_"):
                rt = k[len("override_"):]
                if rt not in self.reftypes + self.optional_reftypes:
                    raise ParameterError(
                        f"step {self.name}: unknown parameter {k!r}"
                        f"{did_you_mean(k, ['override_' + r for r in self.reftypes + self.optional_reftypes])} (its reference types are: "
                        f"{', '.join(self.reftypes + self.optional_reftypes) or 'none'})"
                    )
                overrides[rt] = values.pop(k)
        try:
            p = self.params.model_validate({**values, "overrides": overrides})
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(x) for x in err["loc"])
            if err["type"] == "extra_forbidden":
                known = sorted(n for n in self.params.model_fields if n != "overrides")
                hint = did_you_mean(loc, known) or f" (known: {', '.join(known)})"
                raise ParameterError(f"step {self.name}: unknown parameter {loc!r}{hint}") from None
            raise ParameterError(f"step {self.name}: parameter {loc!r}: {err['msg']} (got {err.get('input')!r})") from None
        return p


STEPS: dict[str, StepSpec] = {}
# jwst class names and strun aliases -> step name
ALIASES: dict[str, str] = {}


def describe_from_comments(params: type[StepParams]) -> None:
    """Give each parameter without a ``Field(description=...)`` the comment written beside it
    (``nbins: int | None = None  # bins in one phased wave``), so that the command line's help,
    the JSON schema and the deployment forms describe every parameter.  A redefined ``skip`` keeps
    the common text with its comment added."""
    import inspect
    import re

    try:
        source = inspect.getsource(params)
    except (OSError, TypeError):
        return
    comments = {}
    for line in source.splitlines():
        m = re.match(r"\s+(\w+)\s*:[^#]*#\s*(.+?)\s*$", line)
        if m and m.group(1) not in comments:
            comments[m.group(1)] = m.group(2)
    changed = False
    for name, f in params.model_fields.items():
        if f.description:
            continue
        note = comments.get(name)
        base = StepParams.model_fields.get(name)
        text = f"{base.description} ({note})" if base is not None and base.description and note else (
            note or (base.description if base is not None else None))
        if text:
            f.description = text[0].upper() + text[1:]
            changed = True
    if changed:
        params.model_rebuild(force=True)


def register(spec: StepSpec) -> StepSpec:
    if spec.params is not StepParams:
        describe_from_comments(spec.params)
    STEPS[spec.name] = spec
    ALIASES[spec.jwst_class] = spec.name
    ALIASES[spec.jwst_class.lower()] = spec.name
    ALIASES[f"jwst.{spec.name}.{spec.jwst_class}"] = spec.name
    return spec


def step(
    name: str,
    jwst_class: str,
    *,
    params: type[StepParams] = StepParams,
    reftypes: tuple[str, ...] = (),
    optional_reftypes: tuple[str, ...] = (),
    suffix: str | None = None,
    cal_step: str | None = None,
    input_class: str = "RampModel",
):
    """Decorator declaring a science function as a step."""

    def deco(fn):
        register(
            StepSpec(
                name=name,
                jwst_class=jwst_class,
                function=fn,
                params=params,
                reftypes=reftypes,
                optional_reftypes=optional_reftypes,
                suffix=suffix if suffix is not None else name,
                cal_step=cal_step or name,
                input_class=input_class,
                doc=(fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else "",
            )
        )
        return fn

    return deco


@dataclass
class StepResult:
    model: Any
    status: str  # COMPLETE or SKIPPED
    seconds: float
    references: dict[str, str]
    reason: str = ""  # why a step was skipped
    # the figures a scientist checks, as the step reported them (see report_qa)
    qa: dict[str, Any] = field(default_factory=dict)


_qa_local = threading.local()


def report_qa(**figures) -> None:
    """Record a step's science figures (jumps flagged, tweakreg RMS, sources found, ...).

    A step function calls this while it runs; :func:`run_step` puts the figures
    on the :class:`StepResult`, where the flows log them and show them in the
    steps table.  Outside ``run_step`` it does nothing.
    """
    sink = getattr(_qa_local, "sink", None)
    if sink is not None:
        sink.update(figures)


def run_step(name: str, model, params: StepParams | dict | None = None, *, references: dict[str, Any] | None = None) -> StepResult:
    """Run one step on an in-memory model.

    ``references`` maps reftype to an already-opened reference model or a path;
    missing reftypes are resolved through CRDS (honouring ``override_<reftype>``).
    """
    from .. import models
    from ..refs import get_reference_paths

    spec = STEPS[name]
    if not isinstance(params, StepParams):
        params = spec.make_params(params)
    t0 = time.perf_counter()
    cal_attr = spec.cal_step
    if params.skip:
        log.info("Step %s skipped (skip=True)", name)
        _mark(model, cal_attr, "SKIPPED")
        return StepResult(model, "SKIPPED", 0.0, {}, reason="skip=True")
    refs_in = dict(references or {})
    optional = spec.optional_reftypes
    # A step may say which optional references this input and these parameters
    # need (extra["optional_reftypes_needed"](model, params) -> reftypes), so that
    # unneeded ones are neither fetched nor recorded, as jwst only asks for what it uses.
    needed = spec.extra.get("optional_reftypes_needed")
    if needed is not None:
        want_opt = set(needed(model, params))
        optional = tuple(r for r in optional if r in want_opt or r in refs_in)
    wanted = [r for r in spec.reftypes + optional if r not in refs_in]
    paths = get_reference_paths(model, wanted, params.overrides) if wanted else {}
    opened: dict[str, Any] = {}
    used: dict[str, str] = {}
    for rt in spec.reftypes + optional:
        ref = refs_in.get(rt, paths.get(rt))
        if ref is None or (isinstance(ref, str) and ref.upper() == "N/A"):
            if rt in spec.reftypes:
                log.info("Step %s skipped: reference type %s is N/A for this exposure", name, rt)
                _mark(model, cal_attr, "SKIPPED")
                if isinstance(model, models.DataModel):
                    _record_ref(model, rt, "N/A")  # jwst records R_<reftype> = N/A (NIRSpec's R_IPC)
                return StepResult(model, "SKIPPED", time.perf_counter() - t0, {rt: "N/A"},
                                  reason=f"reference {rt} is N/A for this exposure")
            opened[rt] = None
            used[rt] = "N/A"
            continue
        if isinstance(ref, str) or hasattr(ref, "__fspath__"):
            from ..refs import open_reference

            used[rt] = str(ref)
            ref = open_reference(rt, ref)
        else:
            used[rt] = getattr(ref.meta, "filename", None) or "<in memory>"
        opened[rt] = ref
    qa: dict[str, Any] = {}
    outer = getattr(_qa_local, "sink", None)
    _qa_local.sink = qa
    # reftypes jwst's step asks CRDS for although this mode does not use them (assign_wcs's
    # spectroscopic ones on an image): recorded as CRDS answers, normally N/A, as jwst records them
    # (on the products only: the run's record keeps the references the step reads)
    considered = _considered(spec, model, params, refs_in, used)
    # override_<reftype> files are recorded by their full path, as jwst records them
    given = {rt: os.path.abspath(os.path.expanduser(str(v).strip())) for rt, v in params.overrides.items()
             if isinstance(v, (str, os.PathLike)) and str(v).strip().upper() not in ("", "N/A", "NONE")
             and used.get(rt, "N/A") != "N/A"}
    try:
        out = spec.function(model, opened, params)
    except ValueError as exc:
        _raise_geometry_error(exc, model, opened, used)
        raise
    finally:
        _qa_local.sink = outer
    status = "COMPLETE"
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], str):
        out, status = out
    # multi-exposure steps (Stage 3) set each exposure's status themselves
    marked = () if spec.extra.get("records_status") else (out if isinstance(out, (list, tuple)) else (out,))
    for result in marked:
        if isinstance(result, models.DataModel):
            _mark(result, cal_attr, status)
            for rt, p in {**considered, **used}.items():
                _record_ref(result, rt, given.get(rt, p), as_given=rt in given)
    dt = time.perf_counter() - t0
    log.info("Step %s done in %.2f s (%s)%s", name, dt, status, (": " + format_qa(qa)) if qa else "")
    # a step that looked at the exposure and declined it (a mode it does not apply to)
    reason = "" if status == "COMPLETE" else "not applicable to this exposure"
    return StepResult(out, status, dt, used, reason=reason, qa=qa)


def format_qa(qa: dict) -> str:
    """``jumps flagged 1234, rms 0.012`` from ``{"jumps flagged": 1234, "rms": 0.0123}``."""
    parts = []
    for k, v in qa.items():
        if isinstance(v, float):
            v = f"{v:.4g}"
        parts.append(f"{k} {v}")
    return ", ".join(parts)


def _considered(spec, model, params, refs_in: dict, used: dict) -> dict[str, str]:
    """``{reftype: file or "N/A"}`` for the step's ``extra["considered_reftypes"]`` not used otherwise.

    A reftype the context does not know, or has no rule for, is N/A here: nothing reads it.
    """
    from .. import models
    from ..errors import WebbflowError
    from ..refs import get_reference_paths

    extra = [rt for rt in spec.extra.get("considered_reftypes", ()) if rt not in used]
    if not extra or not isinstance(model, models.DataModel):
        return {}

    out = {rt: str(refs_in[rt]) for rt in extra if rt in refs_in}
    todo = [rt for rt in extra if rt not in out]
    if todo:
        try:
            got = get_reference_paths(model, todo, params.overrides)
        except WebbflowError:
            got = {}
            for rt in todo:
                try:
                    got.update(get_reference_paths(model, [rt], params.overrides))
                except WebbflowError:
                    got[rt] = "N/A"
        out.update({rt: str(got.get(rt, "N/A")) for rt in todo})
    return out


def _raise_geometry_error(exc: ValueError, model, opened: dict, used: dict) -> None:
    """A reference or science array that cannot be placed on the detector is a user error:
    one line naming the reftype and file (or the input), not a traceback."""
    from ..errors import InputFileError, ReferenceFileError
    from ._subarray import GeometryError

    if not isinstance(exc, GeometryError):
        return
    src = getattr(getattr(model, "meta", None), "filename", None) or "the input"
    if exc.ref is not None:
        for rt, ref in opened.items():
            if ref is exc.ref:
                raise ReferenceFileError(rt, used.get(rt, "<in memory>"), f"does not fit {src}: {exc}") from None
        raise ReferenceFileError("reference", getattr(exc.ref.meta, "filename", None) or "<in memory>",
                                 f"does not fit {src}: {exc}") from None
    raise InputFileError(src, str(exc)) from None


def _mark(model, attr: str, status: str) -> None:
    if hasattr(model, "mark_step"):  # a Stage 3 model library
        model.mark_step(attr, status)
        return
    if isinstance(model, (list, tuple)):
        for m in model:
            _mark(m, attr, status)
        return
    try:
        setattr(model.meta.cal_step, attr, status)
    except (AttributeError, ValueError):
        pass


# reference types stdatamodels' schemas give no R_ keyword: jwst's steps use them and record nothing
UNRECORDED_REFTYPES = ("apcorr", "abvegaoffset")


def _record_ref(model, reftype: str, path: str, as_given: bool = False) -> None:
    """R_<reftype>: ``crds://<name>`` for a file CRDS chose, the absolute path of an override file
    (``as_given``), or N/A; jwst's steps record them the same way."""
    import os

    from ..models.meta import REF_FILE_KEYWORDS

    if as_given:
        name = path
    else:
        name = path if path == "N/A" else "crds://" + os.path.basename(path) if "/" in path else path
    if reftype in UNRECORDED_REFTYPES:
        return
    if reftype in REF_FILE_KEYWORDS:
        entry_cls = type(model.meta.ref_file).model_fields[reftype].annotation
        import typing

        entry_cls = [a for a in typing.get_args(entry_cls) if a is not type(None)][0]
        setattr(model.meta.ref_file, reftype, entry_cls(name=name))
