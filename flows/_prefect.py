"""Prefect, imported when a run uses it.

Importing Prefect costs about 1 s of CPU and 20-40 MiB, which a run without a Prefect API
(``stage.prefect_tracking()`` false: the flow bodies run as plain calls) does not need.  A flow
module declares its flows and tasks with :func:`flow` and :func:`task` below, which keep the
options and return the function itself, and ends with ``_prefect.lazy_module(__name__)``:

- inside the module, the name is the plain function (``x.fn`` is the function too, as on a
  Prefect object), and code that needs the Prefect object asks :func:`as_prefect`;
- from outside, ``module.x`` (``from module import x``) is the Prefect ``Flow`` or ``Task``,
  built with those options on first access; the module's global then holds it.
"""

from __future__ import annotations

import sys
import types

_MARK = "__webbflow_prefect__"
_BUILT = "__webbflow_prefect_object__"


def _deferred(kind: str, options: dict):
    def deco(fn):
        setattr(fn, _MARK, (kind, options))
        fn.fn = fn  # called like a Prefect object's .fn
        return fn

    return deco


def flow(**options):
    """``prefect.flow(**options)``, applied when the flow is first used as a Prefect flow."""
    return _deferred("flow", options)


def task(**options):
    """``prefect.task(**options)``, applied when the task is first used as a Prefect task;
    ``cache_policy="NONE"`` stands for ``prefect.cache_policies.NONE``."""
    return _deferred("task", options)


class Later:
    """An option value made when the Prefect object is built (``Later(lambda: ThreadPoolTaskRunner(...))``)."""

    def __init__(self, make):
        self.make = make


def is_deferred(obj) -> bool:
    return isinstance(obj, types.FunctionType) and _MARK in obj.__dict__


def as_prefect(obj):
    """The Prefect Flow or Task of a deferred function (built once); anything else as it is."""
    if not is_deferred(obj):
        return obj
    built = obj.__dict__.get(_BUILT)
    if built is None:
        kind, options = obj.__dict__[_MARK]
        options = {k: v.make() if isinstance(v, Later) else v for k, v in options.items()}
        if kind == "task":
            from prefect import task as make
            if options.get("cache_policy") == "NONE":
                from prefect.cache_policies import NONE

                options["cache_policy"] = NONE
        else:
            from prefect import flow as make
        built = make(**options)(obj)
        # Prefect copies the function's __dict__ onto its object (functools.update_wrapper): the
        # Prefect object is not itself deferred
        built.__dict__.pop(_MARK, None)
        obj.__dict__[_BUILT] = built
    return built


def in_prefect_run() -> bool:
    """Whether this code runs inside a Prefect flow run or task run (no run can exist before Prefect is imported)."""
    if "prefect.context" not in sys.modules:
        return False
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def in_flow_run() -> bool:
    """Whether this code runs inside a Prefect flow run (none before Prefect is imported)."""
    if "prefect.context" not in sys.modules:
        return False
    from prefect.context import FlowRunContext

    return FlowRunContext.get() is not None


def plain(module, name: str):
    """``module.name`` as the module holds it, without building its Prefect object (a deferred
    function, a Prefect object already built, or whatever a test put there)."""
    return vars(module)[name]


class _LazyPrefectModule(types.ModuleType):
    def __getattribute__(self, attr):
        value = super().__getattribute__(attr)
        if is_deferred(value):
            value = as_prefect(value)
            super().__setattr__(attr, value)
        return value


def lazy_module(name: str) -> None:
    """Make module ``name``'s deferred flows and tasks Prefect objects when read from outside it."""
    sys.modules[name].__class__ = _LazyPrefectModule
