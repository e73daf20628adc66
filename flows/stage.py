"""What every stage flow shares: parameter resolution, reference resolution,
the Prefect task that runs one step, product saving and provenance.

Parameter precedence, lowest first: step defaults, CRDS ``pars-*`` files,
the user's config file, then command-line or Python overrides.
"""

from __future__ import annotations

import functools
import logging
import os
import platform
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__, models
from ..errors import ParameterError, WebbflowError, did_you_mean
from ..tasks import load_all
from ..tasks.base import STEPS, StepParams, run_step
from .naming import product_path, root_of
from ._prefect import in_flow_run
from .params import load_config_file

log = logging.getLogger("webbflow.flows")
_crds_lock = threading.Lock()


@dataclass
class StepRecord:
    name: str
    status: str
    seconds: float
    references: dict[str, str] = field(default_factory=dict)
    reason: str = ""  # why it was skipped
    qa: dict[str, Any] = field(default_factory=dict)  # the step's science figures (tasks.base.report_qa)
    label: str = ""  # which product, when a step runs on several (gain_scale on rate and rateints)


class LastRuns:
    """The StageRuns of the latest call of a stage flow, kept per thread.

    Exposure flows of one association run concurrently on a thread pool; each must read back
    its own run's records (products written, timings), never a neighbour's.
    """

    def __init__(self):
        self._local = threading.local()

    @property
    def _runs(self) -> list:
        runs = getattr(self._local, "runs", None)
        if runs is None:
            runs = self._local.runs = []
        return runs

    def __getitem__(self, i):
        return self._runs[i]

    def __iter__(self):
        return iter(list(self._runs))

    def __len__(self) -> int:
        return len(self._runs)

    def append(self, run) -> None:
        self._runs.append(run)

    def clear(self) -> None:
        self._runs.clear()


@dataclass
class StageRun:
    """Bookkeeping of one exposure through one stage: resolved params, references, timings."""

    params: dict[str, StepParams]
    references: dict[str, dict[str, str]] = field(default_factory=dict)
    records: list[StepRecord] = field(default_factory=list)
    context: str | None = None
    written: list[str] = field(default_factory=list)


def _pars_reftype(step_name: str) -> str:
    return "pars-" + STEPS[step_name].jwst_class.lower()


# jwst's pipelines name some steps otherwise than the steps' own aliases (Spec2Pipeline's
# imprint_subtract is the imprint step): what a user writes for the pipeline -> webbflow's step
PIPELINE_STEP_NAMES = {"imprint_subtract": "imprint"}


def _pipeline_names(values: dict | None, step_names) -> dict:
    """``values`` keyed by webbflow's step names, a pipeline's own names for its steps translated."""
    out: dict = {}
    for name, v in (values or {}).items():
        ours = PIPELINE_STEP_NAMES.get(name, name)
        key = ours if ours in step_names and name not in step_names else name
        out[key] = {**out.get(key, {}), **v} if isinstance(v, dict) else v
    return out


def load_steps(step_names) -> None:
    """Import the modules declaring these steps (``tasks/<name>``), and every step module only when
    one of them is declared elsewhere: a stage flow does not import the seventy modules it does not run."""
    import importlib

    for name in step_names:
        if name not in STEPS:
            try:
                importlib.import_module(f"{load_all.__module__}.{name}")
            except ImportError:
                pass
    if any(name not in STEPS for name in step_names):
        load_all()


def resolve_params(step_names: list[str], user_steps: dict | None, config=None, model=None, pipeline_class: str | None = None) -> dict[str, StepParams]:
    """Resolve each step's parameters by the documented precedence; unknown steps or parameters are errors."""
    load_steps(step_names)
    user_steps = _pipeline_names(user_steps, step_names)
    unknown = [s for s in user_steps if s not in step_names]
    if unknown:
        raise ParameterError(f"unknown step(s) {', '.join(unknown)}{did_you_mean(unknown[0], step_names)}; "
                             f"this pipeline's steps are: {', '.join(step_names)}")
    from_crds = _pipeline_names(_crds_step_pars(model, step_names, pipeline_class) if model is not None else {},
                                step_names)
    from_file = _pipeline_names(load_config_file(config) if config else {}, step_names)
    out = {}
    for name in step_names:
        spec = STEPS[name]
        values: dict[str, Any] = {}
        values.update(from_crds.get(name, {}))
        values.update(from_file.get(name, {}))
        values.update(user_steps.get(name, {}))
        out[name] = spec.make_params(values)
    return out


def _crds_step_pars(model, step_names, pipeline_class) -> dict[str, dict]:
    """Parameters from CRDS ``pars-<step>`` reference files, where the context provides them."""
    from ..refs import get_reference_paths

    wanted = {_pars_reftype(n): n for n in step_names}
    if pipeline_class:
        wanted["pars-" + pipeline_class.lower()] = "__pipeline__"
    try:
        with _crds_lock:
            paths = get_reference_paths(model, list(wanted), {})
    except WebbflowError:
        return {}
    except Exception:  # noqa: BLE001 - a context without pars rules simply has none
        return {}
    out: dict[str, dict] = {}
    for rt, path in paths.items():
        if not path or str(path).upper() == "N/A":
            continue
        try:
            pars = load_config_file(path)
        except WebbflowError:
            continue
        name = wanted[rt]
        if name == "__pipeline__":
            for k, v in pars.items():
                if k in step_names:
                    out.setdefault(k, {}).update(_only_known(k, v))
        else:
            for _k, v in pars.items():
                out.setdefault(name, {}).update(_only_known(name, v))
    return out


def _only_known(step_name, values: dict) -> dict:
    fields = STEPS[step_name].params.model_fields
    return {k: v for k, v in values.items() if k in fields and k not in ("output_dir", "output_file")}


def guarded(failed, fn, name: str, *args):
    """``fn(*args)`` for one source of a Stage 3 product: its failure is logged and becomes
    ``failed(name, error=...)``, reported at the join, never the whole run's."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - reported per source at the join
        log.error("source %s failed: %s", name, exc)
        return failed(name, error=str(exc) if isinstance(exc, WebbflowError) else f"{type(exc).__name__}: {exc}")


def resolve_references(model, params: dict[str, StepParams]) -> tuple[dict[str, dict[str, str]], str | None]:
    """Select every reference file the enabled steps need, once, in one place (crds keeps global state)."""
    from ..refs import get_reference_paths
    from ..refs import select as sel

    needed: dict[str, set[str]] = {}
    overrides: dict[str, str] = {}
    for name, p in params.items():
        if p.skip:
            continue
        spec = STEPS[name]
        optional = spec.optional_reftypes
        hook = spec.extra.get("optional_reftypes_needed")
        if hook is not None:
            # only the optional references this exposure and these parameters use (as jwst asks)
            want = set(hook(model, p))
            optional = tuple(r for r in optional if r in want)
        for rt in spec.reftypes + optional:
            needed.setdefault(rt, set()).add(name)
        overrides.update(p.overrides)
    if not needed:
        return {}, None
    with _crds_lock:
        paths = get_reference_paths(model, sorted(needed), overrides)
        ctx = None
        fn = getattr(sel, "context_used", None)
        if fn is not None:
            try:
                ctx = fn()
            except Exception:  # noqa: BLE001
                ctx = None
    per_step: dict[str, dict[str, str]] = {}
    for rt, steps in needed.items():
        for s in steps:
            per_step.setdefault(s, {})[rt] = paths.get(rt, "N/A")
    return per_step, ctx


def trim_heap() -> None:
    """Give the heap's free pages back to the system (glibc's ``malloc_trim``).  Arrays freed below
    glibc's mmap threshold (which grows, up to 32 MiB, as large arrays are freed) stay in the
    process's heap; a step's temporaries then keep the resident size up through the next steps."""
    global _TRIM
    if _TRIM is None:
        try:
            import ctypes

            _TRIM = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError):  # not glibc
            _TRIM = False
    if _TRIM:
        _TRIM(0)


_TRIM = None


def _execute(name: str, model, params: StepParams, references: dict[str, str]):
    t0 = time.perf_counter()
    refs = dict(references)
    if not params.skip:
        from ..tasks._lean_refs import open_step_references

        # references a step reads only in part are opened with just those arrays
        refs = open_step_references(name, refs, model)
    opened = time.perf_counter() - t0
    res = run_step(name, model, params, references=refs)
    res.seconds += opened
    trim_heap()  # the next step starts from what is alive, not from this one's high-water mark
    from ..tasks.base import format_qa

    line = f"{name}: {res.status} in {res.seconds:.2f} s"
    if res.reason:
        line += f" ({res.reason})"
    if res.qa:
        line += f": {format_qa(res.qa)}"
    from ._prefect import in_prefect_run

    try:
        if not in_prefect_run():
            raise LookupError
        from prefect import get_run_logger

        get_run_logger().info(line)
    except Exception:  # noqa: BLE001 - outside a run context: the plain log (shown with -v)
        log.info(line)
    from . import progress

    progress.emit("step", step=name, status=res.status)
    return res


# libraries whose own log lines (tweakreg's fits, stcal's notes) belong in the run's logs, not only on
# the console of the process that runs it (a worker's)
LIBRARY_LOGGERS = ("tweakwcs", "stcal")
_library_logs_routed = False


class _InARun(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        from prefect.context import FlowRunContext, TaskRunContext

        return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def route_library_logs() -> None:
    """Send the INFO lines of LIBRARY_LOGGERS, emitted inside a Prefect run, to that run's logs (once per process)."""
    global _library_logs_routed
    if _library_logs_routed:
        return
    _library_logs_routed = True
    try:
        from prefect.logging.handlers import APILogHandler

        handler = APILogHandler(level=logging.INFO)
        handler.addFilter(_InARun())
        for name in LIBRARY_LOGGERS:
            lg = logging.getLogger(name)
            lg.addHandler(handler)
            if lg.level == logging.NOTSET or lg.level > logging.INFO:
                lg.setLevel(logging.INFO)
    except Exception:  # noqa: BLE001 - logs are a courtesy
        pass


def _execute_as_task(name: str, model, params: StepParams, references: dict[str, str]):
    """The task body: a skipped step ends in a Completed-type state named ``Skipped`` with its reason,
    so the UI tells it apart from a step that ran."""
    route_library_logs()
    res = _execute(name, model, params, references)
    if res.status == "SKIPPED":
        from prefect.states import Completed

        return Completed(data=res, name="Skipped", message=f"{name} skipped: {res.reason or 'not run'}")
    return res


class _StepTask:
    """A step's Prefect task, called like the plain function: it returns the StepResult even when
    the task run ended in a named state (Prefect hands back the state a task returned)."""

    def __init__(self, t):
        self.task = t

    def with_options(self, **options) -> "_StepTask":
        return _StepTask(self.task.with_options(**options))

    def __call__(self, *args, **kwargs):
        from prefect.states import State

        out = self.task(*args, **kwargs)
        return out.result() if isinstance(out, State) else out


_TASKS: dict[str, Any] = {}


def step_task(name: str) -> _StepTask:
    """The Prefect task that runs step ``name``: arrays pass in memory, never hashed or persisted."""
    t = _TASKS.get(name)
    if t is None:
        from prefect import task
        from prefect.cache_policies import NONE

        t = _StepTask(task(name=name, cache_policy=NONE, persist_result=False, log_prints=False)(_execute_as_task))
        _TASKS[name] = t
    return t


def run_steps(model, names: list[str], run: StageRun, *, output_dir=None, source_name: str | None = None,
              label: str = ""):
    """Run ``names`` in order, saving intermediate products when a step asks.

    Inside a Prefect flow run each step is a Prefect task run; outside one
    (a stage flow's ``.fn`` called directly, see :func:`prefect_tracking`)
    the steps run as plain function calls, with the same records.  ``label``
    tells apart runs of one step on several products (``gain_scale [rateints]``).
    """
    tracked = in_flow_run()
    for name in names:
        p = run.params[name]
        if output_dir is not None and p.output_dir is None:
            # side products a step writes itself (fitopt, masks, ...) go with the main products
            p = p.model_copy(update={"output_dir": str(output_dir)})
        refs = run.references.get(name, {})
        if tracked:
            t = step_task(name)
            if label:
                t = t.with_options(task_run_name=f"{name} [{label}]")
            res = t(name, model, p, refs)
        else:
            res = _execute(name, model, p, refs)
        run.records.append(StepRecord(name, res.status, res.seconds, res.references, reason=res.reason,
                                      qa=dict(res.qa), label=label))
        model = res.model
        if not p.skip:
            _record_version(model, res.references, run.context)
        if p.save_results and res.status == "COMPLETE" and output_dir is not None:
            outs = model if isinstance(model, (list, tuple)) else [model]
            suffixes = STEPS[name].extra.get("suffixes") or [p.suffix or STEPS[name].suffix]
            for m, sfx in zip(outs, suffixes):
                if isinstance(m, models.DataModel):  # libraries and tables save themselves
                    run.written.append(save_product(m, output_dir, source_name, sfx, run))
    return model


@functools.lru_cache(maxsize=1)
def _crds_version() -> str | None:
    """The installed crds client's version (read once per process)."""
    try:
        from importlib.metadata import version

        return version("crds")
    except Exception:  # noqa: BLE001
        return None


def _record_version(result, references: dict, context: str | None) -> None:
    """The software that ran a step, on each model it returns (CAL_VER, CAL_VCS, and with references
    asked for, the crds version and context), as jwst's steps record theirs: an input blended into a
    Stage 3 product (HDRTAB) shows what processed it."""
    crds_version = _crds_version() if references else None
    for m in result if isinstance(result, (list, tuple)) else [result]:
        if isinstance(m, models.DataModel):
            m.meta.calibration_software_version = __version__
            m.meta.calibration_software_revision = "RELEASE"
            if references:
                if crds_version:
                    m.meta.ref_file.crds.sw_version = crds_version
                if context:
                    m.meta.ref_file.crds.context_used = context


def provenance(run: StageRun, pipeline: str) -> dict:
    import numpy

    versions = {"webbflow": __version__, "python": platform.python_version(), "numpy": numpy.__version__}
    for pkg in ("stcal", "crds", "astropy", "gwcs", "asdf", "prefect", "pydantic"):
        try:
            from importlib.metadata import version

            versions[pkg] = version(pkg)
        except Exception:  # noqa: BLE001
            pass
    return {
        "pipeline": pipeline,
        "crds_context": run.context,
        "parameters": {n: p.model_dump(exclude={"overrides"}) | {"overrides": dict(p.overrides)} for n, p in run.params.items()},
        "references": {r.name: r.references for r in run.records if r.references},
        "steps": [{"name": r.name, "status": r.status, "seconds": round(r.seconds, 4)} for r in run.records],
        "versions": versions,
    }


def stamp(model, run: StageRun, pipeline: str) -> None:
    """Record provenance in a product: CRDS context, references, parameters, software versions."""
    if model is None:
        return
    # CAL_VER and CAL_VCS, as jwst records its version (jwst writes no CAL_SW)
    model.meta.calibration_software_version = __version__
    model.meta.calibration_software_revision = "RELEASE"
    if run.context:
        model.meta.ref_file.crds.context_used = run.context
    if _crds_version():
        model.meta.ref_file.crds.sw_version = _crds_version()
    prov = provenance(run, pipeline)
    existing = model._asdf_extra.get("webbflow_provenance")
    history = list(existing) if isinstance(existing, list) else []
    history.append(prov)
    model._asdf_extra["webbflow_provenance"] = history


def save_product(model, output_dir, source_name: str | None, suffix: str, run: StageRun | None = None) -> str:
    name = source_name or model.meta.filename or "webbflow"
    path = product_path(output_dir, name, suffix)
    remove_stale_parts(path)
    return model.save(path)


def remove_stale_parts(path) -> None:
    """Delete what a killed writer of this product left: ``.<name>.<pid>.*.part`` files whose
    writer is no longer running.  A live writer's temporary file (another run writing the same
    product at the same time) is left alone."""
    import glob

    path = Path(path)
    prefix = f".{path.name}."
    for p in path.parent.glob(f".{glob.escape(path.name)}.*.part"):
        pid_text = p.name[len(prefix):].split(".", 1)[0]
        if pid_text.isdigit() and _alive(int(pid_text)):
            continue
        try:
            p.unlink()
        except OSError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Reused(str):
    """A product path that a run found finished and reused instead of writing (the CLI says "reused")."""

    reused = True

    def __reduce__(self):
        return (Reused, (str(self),))


def show_reuse(what: str, reason: str) -> None:
    """Inside a flow run, a task run in a Completed-type state named ``Cached`` for a reused stage, so
    that reuse shows in the run graph instead of being absent; nothing outside a run."""
    if not in_flow_run():
        return
    from prefect import task
    from prefect.cache_policies import NONE
    from prefect.states import Completed

    def _reused():
        return Completed(name="Cached", message=reason)

    task(name=what, task_run_name=f"{what} (reused)", cache_policy=NONE, persist_result=False)(_reused)()


def input_name(inp) -> str:
    if isinstance(inp, (str, os.PathLike)):
        return Path(inp).name
    return inp.meta.filename or "unnamed_uncal.fits"


def run_name(stage: str):
    """A flow-run namer: ``detector1 jw01234001001_02101_00001_nrca1`` instead of a random name."""

    def namer():
        from prefect.runtime import flow_run

        params = flow_run.parameters or {}
        inp = params.get("input")
        product = params.get("product_name")
        try:
            if product:
                return f"{stage} {product}"
            if isinstance(inp, (list, tuple)):
                first = root_of(input_name(inp[0])) if inp else ""
                return f"{stage} {len(inp)} exposures from {first}" if len(inp) > 1 else f"{stage} {first}"
            return f"{stage} {root_of(input_name(inp))}"
        except Exception:  # noqa: BLE001
            return stage

    return namer


def prefect_tracking() -> bool:
    """Whether a command-line stage run goes through Prefect (a flow run with one task run per step).

    ``WEBBFLOW_PREFECT``: ``on`` always (with no ``PREFECT_API_URL`` Prefect
    starts a temporary server: 5-11 s, DESIGN.md section 4); ``off`` never;
    ``auto`` (the default) when a Prefect API is configured, i.e. when a
    server exists whose UI would show the runs.  Without Prefect the same
    steps run in the same order as plain calls, with the same products and
    provenance.
    """
    mode = os.environ.get("WEBBFLOW_PREFECT", "auto").strip().lower()
    if mode in ("1", "on", "true", "yes", "always"):
        return True
    if mode in ("0", "off", "false", "no", "never"):
        return False
    configured = _api_url_without_prefect()
    if configured is not None:
        return configured
    try:
        from prefect.settings import PREFECT_API_URL

        return bool(PREFECT_API_URL.value())
    except Exception:  # noqa: BLE001
        return bool(os.environ.get("PREFECT_API_URL"))


def _api_url_without_prefect() -> bool | None:
    """Whether a Prefect API URL is configured, found without importing Prefect (about 1 s of CPU
    and 20-40 MiB), or None when only Prefect's settings can tell.

    Prefect reads ``PREFECT_API_URL`` from the environment, then from the active profile
    (``PREFECT_PROFILES_PATH``, else ``$PREFECT_HOME/profiles.toml``), then from ``.env``,
    ``prefect.toml`` or ``pyproject.toml`` in the working folder.  Once Prefect is imported (a test
    harness, a Python caller's temporary settings) its own answer is taken.
    """
    import sys

    if "prefect.settings" in sys.modules:
        return None
    if "PREFECT_API_URL" in os.environ:
        return bool(os.environ["PREFECT_API_URL"].strip())
    cwd = Path.cwd()
    # a project's pyproject.toml names prefect among its dependencies; only its [tool.prefect]
    # table holds settings
    for name, mark in ((".env", "PREFECT_"), ("prefect.toml", ""), ("pyproject.toml", "[tool.prefect")):
        try:
            text = (cwd / name).read_text(errors="replace")
        except OSError:
            continue
        if mark.lower() in text.lower():
            return None
    home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    profiles = Path(os.environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml").expanduser()
    if not profiles.exists():
        return None if os.environ.get("PREFECT_PROFILE") else False  # Prefect's default profile has no API URL
    try:
        import tomllib

        data = tomllib.loads(profiles.read_text())
        active = os.environ.get("PREFECT_PROFILE") or data.get("active")
        if not active:
            return None
        settings = (data.get("profiles") or {}).get(active)
        if settings is None:
            return None
        return bool(str(settings.get("PREFECT_API_URL", "") or "").strip())
    except Exception:  # noqa: BLE001 - a file Prefect reads its own way
        return None


def quiet_prefect_settings():
    """Settings that keep a local run light: no heartbeat wait, no analytics."""
    from prefect.settings import temporary_settings

    try:
        from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY

        return temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})
    except Exception:  # noqa: BLE001
        import contextlib

        return contextlib.nullcontext()


__all__ = [
    "StageRun", "resolve_params", "resolve_references", "run_steps", "stamp", "save_product", "input_name",
    "root_of", "time",
]
