"""The ``webbflow`` command line.

User errors (bad files, bad parameters, unknown pipelines) print one line,
``webbflow: error: <what> `` and exit non-zero, with no traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import sys
from pathlib import Path

from ..errors import ParameterError, WebbflowError, did_you_mean

# strun's pipeline aliases and class names -> our pipeline names
PIPELINE_ALIASES = {
    "calwebb_detector1": "detector1", "Detector1Pipeline": "detector1",
    "jwst.pipeline.Detector1Pipeline": "detector1",
    "calwebb_image2": "image2", "Image2Pipeline": "image2", "jwst.pipeline.Image2Pipeline": "image2",
    "calwebb_image3": "image3", "Image3Pipeline": "image3", "jwst.pipeline.Image3Pipeline": "image3",
    "calwebb_spec2": "spec2", "Spec2Pipeline": "spec2",
    "calwebb_spec3": "spec3", "Spec3Pipeline": "spec3",
    "calwebb_guider": "guider", "GuiderPipeline": "guider", "jwst.pipeline.GuiderPipeline": "guider",
    "calwebb_dark": "dark", "DarkPipeline": "dark", "jwst.pipeline.DarkPipeline": "dark",
    "calwebb_coron3": "coron3", "calwebb_ami3": "ami3", "calwebb_tso3": "tso3",
    "Tso3Pipeline": "tso3", "jwst.pipeline.Tso3Pipeline": "tso3",
    "Coron3Pipeline": "coron3", "jwst.pipeline.Coron3Pipeline": "coron3",
    "calwebb_tso-image2": "image2", "calwebb_wfs-image2": "image2",  # jwst's .cfg names for Image2Pipeline
    "calwebb_wfs-image3": "wfs-image3", "WfsCombineStep": "wfs-image3", "wfs_combine": "wfs-image3",
    "jwst.wfs_combine.WfsCombineStep": "wfs-image3",
    "Ami3Pipeline": "ami3", "jwst.pipeline.Ami3Pipeline": "ami3",
}


def _pipelines() -> dict:
    """Pipelines available so far: name -> callable(input, output_dir, steps, config)."""
    from . import registry

    return registry.PIPELINES


def resolve_target(name: str) -> tuple[str, str]:
    """Map a user's pipeline or step name (strun aliases included) to ("pipeline"|"step", name)."""
    from ..tasks import load_all
    from ..tasks.base import ALIASES, STEPS

    key = name[:-4] if name.endswith(".cfg") else name
    key = PIPELINE_ALIASES.get(key, key)
    if _step_alone(key):
        return "step", key
    pipes = _pipelines()
    if key in pipes:  # before importing every step module: a pipeline imports its own steps
        return "pipeline", key
    load_all()
    key = ALIASES.get(key, ALIASES.get(key.lower(), key))
    if key in STEPS:
        return "step", key
    known = sorted(pipes) + sorted(STEPS)
    raise WebbflowError(f"unknown pipeline or step {name!r}{did_you_mean(name, known + list(PIPELINE_ALIASES))}; "
                        f"known: {', '.join(known)}")


def _step_alone(key: str) -> bool:
    """Whether ``key`` is a step declared by the step module of that name (``tasks/<key>.py``),
    importing that module alone: ``run <step>`` then does not import every step and pipeline
    (Prefect among them) to find it.  No pipeline has a step's name (tests/test_cli_startup.py)."""
    import importlib
    import importlib.util

    from .. import tasks
    from ..tasks.base import STEPS

    if not key.isidentifier() or key.startswith("_") or key == "base":
        return False
    module = f"{tasks.__name__}.{key}"
    if importlib.util.find_spec(module) is None:
        return False
    importlib.import_module(module)
    return key in STEPS


# options of a pipeline besides its steps': --name, what it takes, what it does
PIPELINE_OPTIONS = {
    "detector1": [("save_calibrated_ramp", "bool", "false", "also write the calibrated ramp (<root>_ramp.fits)")],
    "image3": [
        ("runner", "threads|processes|dask", "threads", "how the association's exposures run in parallel"),
        ("max_workers", "int", "1 (min(4, cores) in a Prefect run)", "how many exposures at a time"),
        ("scheduler", "address", "-", "an existing Dask scheduler (with --runner dask), e.g. tcp://head:8786"),
        ("allow_partial", "bool", "false", "make Stage 3 from the members that succeeded when some failed"),
    ],
}


def _type_name(annotation) -> str:
    text = getattr(annotation, "__name__", None) if not getattr(annotation, "__args__", None) else None
    text = text or str(annotation)
    for junk in ("typing.", "<class '", "'>", "NoneType"):
        text = text.replace(junk, "None" if junk == "NoneType" else "")
    return text


def _param_lines(spec, prefix: str) -> list[str]:
    """One line per parameter of a step, from its pydantic model: --name=DEFAULT (type) description."""
    lines = []
    for fname, f in spec.params.model_fields.items():
        if fname == "overrides":
            continue
        default = f.get_default(call_default_factory=True)
        shown = "none" if default is None else str(default).lower() if isinstance(default, bool) else str(default)
        lines.append(f"    {prefix}{fname}={shown}  ({_type_name(f.annotation)})"
                     + (f"  {f.description}" if f.description else ""))
    for rt in spec.reftypes + spec.optional_reftypes:
        lines.append(f"    {prefix}override_{rt}=PATH  use this {rt} reference instead of CRDS' ('N/A' skips it)")
    return lines


def _branch_only(pipeline: str) -> dict[str, str]:
    """Steps that run on one branch only: `` [MIRI only]`` / `` [near-IR only]``."""
    if pipeline not in ("detector1", "dark"):
        return {}
    from importlib import import_module

    m = import_module(f"webbflow.flows.calwebb_{pipeline}")
    nir, miri = set(m.NIR_STEPS), set(m.MIRI_STEPS)
    return {**{s: " [MIRI only]" for s in miri - nir}, **{s: " [near-IR only]" for s in nir - miri}}


def target_help(kind: str, name: str) -> str:
    """``run PIPELINE --help`` / ``run STEP --help`` text, generated from the steps' declarations."""
    from ..tasks.base import STEPS

    common = ["  --output-dir DIR   where products go (default: the current folder)",
              "  --config FILE      parameter file (YAML or ASDF, jwst layout)"]
    if kind == "step":
        spec = STEPS[name]
        out = [f"usage: webbflow run {name} INPUT [--output-dir DIR] [--config FILE] [--<param>=VALUE ...]", "",
               f"{name} ({spec.jwst_class}): {spec.doc}", f"input: a {spec.input_class}; output suffix: _{spec.suffix}", "",
               "options:", *common, "", "parameters:"]
        out += _param_lines(spec, "--")
        return "\n".join(out) + "\n"
    from ..deployments.params import stage_steps

    try:
        steps = stage_steps(name)
    except KeyError:  # a stage with no deployment form: its flow module's own list (tso3, wfs-image3, ...)
        from importlib import import_module

        try:
            steps = list(getattr(import_module(f"webbflow.flows.calwebb_{name.replace('-', '_')}"), "STEPS", []))
        except ModuleNotFoundError:
            steps = []
    out = [f"usage: webbflow run {name} INPUT [--output-dir DIR] [--config FILE] [--steps.<step>.<param>=VALUE ...]", ""]
    out += ["options:", *common]
    for opt, typ, default, text in PIPELINE_OPTIONS.get(name, []):
        out.append(f"  --{opt}={default}  ({typ})  {text}")
    if steps:
        out += ["", f"steps of {name}, in order (each also takes --steps.<step>.skip=true and "
                "--steps.<step>.override_<reftype>=PATH):"]
    only = _branch_only(name)
    for s in steps:
        spec = STEPS[s]
        out += ["", f"  {s} ({spec.jwst_class}){only.get(s, '')}: {spec.doc}"]
        out += [ln for ln in _param_lines(spec, f"--steps.{s}.")
                if not any(f".{c}=" in ln for c in ("skip", "save_results", "suffix", "output_file", "output_dir"))
                and ".override_" not in ln]
        refs = spec.reftypes + spec.optional_reftypes
        if refs:
            out.append(f"    references: {', '.join(refs)}")
    return "\n".join(out) + "\n"


def parse_step_overrides(extra: list[str]) -> tuple[dict[str, dict], dict]:
    """Parse ``--steps.<step>.<param>=value`` (and ``--<param>=value`` for a single step)."""
    steps: dict[str, dict] = {}
    top: dict = {}
    it = iter(extra)
    for arg in it:
        if not arg.startswith("--"):
            raise ParameterError(f"unexpected argument {arg!r}")
        body = arg[2:]
        if "=" in body:
            key, value = body.split("=", 1)
        else:
            key = body
            value = next(it, None)
            if value is None or value.startswith("--"):
                raise ParameterError(f"option --{key} needs a value (--{key}=VALUE)")
        if key.startswith("steps."):
            parts = key.split(".")
            if len(parts) != 3 or not parts[1] or not parts[2]:
                raise ParameterError(f"bad option --{key}; use --steps.<step>.<param>=VALUE")
            steps.setdefault(parts[1], {})[parts[2]] = _parse_value(value)
        else:
            top[key.replace("-", "_")] = _parse_value(value)
    return steps, top


def _parse_value(v: str):
    low = v.strip().lower()
    if low in ("true", "yes"):
        return True
    if low in ("false", "no"):
        return False
    if low in ("none", "null"):
        return None
    return v


def cmd_info(args) -> int:
    from .. import models

    if str(args.file).lower().endswith(".json"):
        return _info_association(args.file)
    m = models.open(args.file)
    meta = m.meta
    lines = [
        f"file:        {args.file}",
        f"model:       {type(m).__name__}",
        f"instrument:  {meta.instrument.name or '-'}",
        f"detector:    {meta.instrument.detector or '-'}",
        f"exp_type:    {meta.exposure.type or '-'}",
    ]
    if meta.reftype:
        lines.append(f"reftype:     {meta.reftype}")
    if meta.subarray.name:
        lines.append(f"subarray:    {meta.subarray.name}")
    if meta.exposure.readpatt:
        lines.append(
            f"readout:     {meta.exposure.readpatt} ngroups={meta.exposure.ngroups} nints={meta.exposure.nints}"
        )
    lines.append("arrays:")
    for name in m.array_names():
        a = m._arrays[name]
        if getattr(a, "dtype", None) is not None and a.dtype.names:
            lines.append(f"  {name:<22} table, {len(a)} rows")
        else:
            lines.append(f"  {name:<22} {tuple(a.shape)} {a.dtype.newbyteorder('=').name}")
    for i, slit in enumerate(getattr(m, "slits", None) or []):  # a MultiSlitModel
        lines.append(f"  slit {i + 1:<17} {slit.name} source {slit.source_id}: {', '.join(slit.array_names())} {slit.shape}")
    for h in m._extra_hdus:
        lines.append(f"  ({h.name} kept as is)")
    ctx = meta.ref_file.crds.context_used
    lines.append(f"crds context: {ctx or '-'}")
    print("\n".join(lines))
    return 0


def _info_association(path) -> int:
    from .association import load_asn

    asn, folder = load_asn(path)
    lines = [f"file:        {path}", "model:       association",
             f"asn_type:    {asn.asn_type or '-'}", f"asn_rule:    {asn.asn_rule or '-'}",
             f"asn_id:      {asn.asn_id or '-'}", f"level:       {asn.level}", "products:"]
    for prod in asn.products:
        lines.append(f"  {prod.name}")
        for m in prod.members:
            there = "" if (folder / m.expname).exists() else "  (not there yet)"
            lines.append(f"    {m.exptype:<12} {m.expname}{there}")
    print("\n".join(lines))
    return 0


class _UserErrorFilter(logging.Filter):
    """Keep Prefect's console quiet about user errors: the CLI prints them as one line itself."""

    def __init__(self, verbose: bool):
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        seen = set()
        while exc is not None and id(exc) not in seen:
            seen.add(id(exc))
            if isinstance(exc, WebbflowError):
                return False
            if not self.verbose and _is_connection_error(exc):
                return False  # the Prefect API went away: the CLI says so in its one line
            exc = exc.__cause__ or exc.__context__
        if not self.verbose and _reports_api_outage(record):
            return False
        if "Encountered exception during execution: " in record.getMessage() and any(
            n in record.getMessage() for n in ("Error(", "Error: ")
        ):
            # Prefect's one-line failure summary repeats the exception; user errors are reported below
            msg = record.getMessage()
            if any(f"{c.__name__}(" in msg for c in _user_error_classes()):
                return False
        if not self.verbose and record.levelno < logging.WARNING:
            return False
        return True


def _is_connection_error(exc: BaseException) -> bool:
    """The Prefect API cannot be reached, or answers that it is unavailable (a server going down)."""
    try:
        import httpx
    except Exception:  # noqa: BLE001
        return False
    if isinstance(exc, httpx.TransportError):
        return True
    if isinstance(exc, httpx.HTTPStatusError):
        return getattr(exc.response, "status_code", None) in (502, 503, 504)
    return isinstance(exc, RuntimeError) and "Failed to reach API" in str(exc)


# what Prefect's event and log services, and the runs' own failure reports, say while the API is down
# (and the event service's drain at exit, which keeps sending what it could not)
_OUTAGE_MARKS = ("ConnectError", "Connection refused", "503 Service Unavailable", "All connection attempts failed", "Unable to connect to",
                 "failed to process item Event", "Still processing items")


def _reports_api_outage(record: logging.LogRecord) -> bool:
    try:
        msg = record.getMessage()
    except Exception:  # noqa: BLE001
        return False
    return any(m in msg for m in _OUTAGE_MARKS)


def _user_error_classes():
    import webbflow.errors as e

    return [c for c in vars(e).values() if isinstance(c, type) and issubclass(c, WebbflowError)]


# root-logger handlers that main() itself installed (basicConfig), and so may filter
_CLI_HANDLERS: set[logging.Handler] = set()


def _quiet_prefect_console(verbose: bool, prefect: bool = True) -> None:
    """Filter the console's handlers (see _UserErrorFilter); with ``prefect``, Prefect's logging
    is set up first (a run that involves no flow, such as one step on a file, leaves Prefect unimported)."""
    if prefect:
        from prefect.logging.configuration import setup_logging

        setup_logging()
    filt = _UserErrorFilter(verbose)
    if not verbose:
        # Prefect's log shipper writes its own failures straight to stderr ("--- Error logging to
        # API ---") when logging.raiseExceptions is set, as it is by default
        logging.raiseExceptions = False
    seen = set()
    for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs", "prefect.flow_engine", "prefect.task_engine",
                 "prefect._internal"):
        for h in logging.getLogger(name).handlers:
            # only the console handler main() set up and Prefect's own: a handler someone else put
            # on the root logger (an application's, pytest's) is not ours to quieten
            ours = h in _CLI_HANDLERS or type(h).__module__.startswith("prefect.")
            if id(h) in seen or type(h).__name__ == "APILogHandler" or not ours:
                continue
            seen.add(id(h))
            for old in [f for f in h.filters if isinstance(f, _UserErrorFilter)]:
                h.removeFilter(old)
            h.addFilter(filt)


@contextlib.contextmanager
def _imports_without_gc():
    """The run's imports with the cyclic garbage collector paused, the objects they made then set
    aside from its collections (``gc.freeze``) until :func:`cmd_run` returns.

    Importing the run's modules (astropy, scipy, gwcs, asdf's extensions, webbflow's models)
    makes some 280 000 long-lived objects the collector tracks; with it on, the collections
    triggered meanwhile walk them again and again, and the later ones of the run walk them too
    (together about 0.7 s of the 2.6 s of user CPU of a NIRSpec BOTS spec2 run of 100
    integrations).  What the imports leave as garbage cycles (a few thousand objects) is
    kept until the run ends."""
    from ..tasks._gc import collections_paused

    try:
        with collections_paused():
            yield
    finally:
        gc.freeze()


def _exit_without_collections() -> None:
    """Have the interpreter's exit skip the cyclic garbage collector's passes over what is still
    alive (an ``atexit`` hook, run before the interpreter's own finalization, that freezes every
    object; other ``atexit`` hooks run as before).

    The collections Python makes while it tears its modules down walk every object still alive,
    the run's imports included, to free what the process is about to give back anyway: about
    0.6 s of the 2.5 s of user CPU of a NIRSpec BOTS spec2 run of 100 integrations.  Products are
    written and closed before the run returns; what is skipped is finalizers of objects in
    garbage cycles, which Python does not promise to run at exit."""
    import atexit

    atexit.unregister(gc.freeze)  # one hook, however many runs a process makes
    atexit.register(gc.freeze)


def cmd_run(args, extra: list[str]) -> int:
    if args.pipeline is None:
        args.run_parser.print_help()
        return 0 if args.help else 2
    _exit_without_collections()
    try:
        with _imports_without_gc():
            kind, name = resolve_target(args.pipeline)
            if not args.help:
                from ..models.io import load_asdf_extensions

                load_asdf_extensions()  # every input and product has an ASDF tree: its converters' modules
        return _cmd_run(args, extra, kind, name)
    finally:
        gc.unfreeze()  # for a caller in the same process (tests): its objects collectable again


def _cmd_run(args, extra: list[str], kind: str, name: str) -> int:
    if args.help:
        sys.stdout.write(target_help(kind, name))
        return 0
    if args.input is None:
        raise ParameterError(f"run {args.pipeline}: an INPUT file is needed (webbflow run {args.pipeline} --help)")
    inp = Path(args.input)
    from ..models.io import check_readable

    if not (name == "observation" and inp.is_dir()):  # an observation may be a folder of raw files
        check_readable(inp)
    steps, top = parse_step_overrides(extra)
    out_dir = Path(args.output_dir) if args.output_dir else Path.cwd()
    # one step on a file runs no flow, and a run without a Prefect API runs the flows' bodies as plain
    # calls: Prefect (about 1 s of CPU and 20-40 MiB to import) is not needed
    from .stage import prefect_tracking

    _quiet_prefect_console(args.verbose, prefect=not (kind == "step" and inp.suffix.lower() != ".json")
                           and prefect_tracking())
    from . import progress

    try:
        try:
            # a progress display on a terminal only, and not over -v's per-step log
            from .naming import root_of

            title = f"{name} {root_of(inp.name) if not inp.name.endswith('.json') else inp.stem.removesuffix('_asn')}"
            with progress.display(title, enabled=sys.stdout.isatty() and not args.verbose):
                result = _run_target(kind, name, inp, out_dir, steps, top, args)
        except Exception as exc:  # noqa: BLE001 - only Prefect API connection failures are translated
            problem = _prefect_unreachable(exc) or _members_lost_the_api(exc)
            if problem is None:
                raise
            raise WebbflowError(problem) from None
    except WebbflowError as exc:
        # the line names the input the user gave, even when the error is about a reference or a member
        if inp.name not in str(exc) and not isinstance(exc, ParameterError):
            exc.args = (f"{args.input}: {exc}",)
        raise
    paths = [p for p in (result if isinstance(result, (list, tuple)) else [result]) if p]
    for p in paths:
        print(f"{'reused' if getattr(p, 'reused', False) else 'wrote'} {p}")
    reused = sum(1 for p in paths if getattr(p, "reused", False))
    if reused and sys.stdout.isatty():
        print(f"{len(paths) - reused} written, {reused} reused (inputs, references, parameters and code unchanged)")
    return 0


def _api_line(url: str, why: str, then: str = "") -> str:
    return (f"the Prefect API {url} cannot be reached ({why}); start it (prefect server start){then}, "
            "or unset PREFECT_API_URL, or set WEBBFLOW_PREFECT=off to run without Prefect")


def _members_lost_the_api(exc: BaseException) -> str | None:
    """An association whose every failed member failed because the Prefect API went away is
    reported as that, not as science failures (the members that finished keep their products)."""
    result = getattr(exc, "result", None)
    failed = [m for m in getattr(result, "members", []) or [] if not m.ok]
    url = os.environ.get("PREFECT_API_URL", "")
    if not url or not failed or not all(any(k in (m.error or "") for k in _OUTAGE_MARKS) for m in failed):
        return None
    return _api_line(url, f"it went away during the run: {len(failed)} of {len(result.members)} members stopped",
                     " and run again to finish")


def _prefect_unreachable(exc: BaseException) -> str | None:
    """A one-line message when ``exc`` says the Prefect API (PREFECT_API_URL) cannot be reached, else None.

    Prefect refuses to start a flow run when its server is down ("Failed to reach API"), and a
    server that stops during a run fails the next task-run call with an httpx connection error.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if _is_connection_error(exc):
            why = f"{type(exc).__name__}: {str(exc).split(' - ')[0]}"
            return _api_line(os.environ.get("PREFECT_API_URL", ""), why)
        exc = exc.__cause__ or exc.__context__
    return None


def _run_target(kind, name, inp, out_dir, steps, top, args):
    if kind == "pipeline":
        fn = _pipelines()[name]
        result = fn(inp, output_dir=out_dir, steps=steps, config=args.config, options=top)
    else:
        from .single import run_single_step

        params = dict(steps.pop(name, {}))
        params.update(top)
        if steps:
            raise ParameterError(f"options for other steps given to step {name}: {', '.join(steps)}")
        result = run_single_step(name, inp, output_dir=out_dir, params=params, config=args.config)
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="webbflow",
        description="The JWST science calibration pipeline as Prefect workflows.",
    )
    from .. import __version__

    p.add_argument("-v", "--verbose", action="store_true", help="log each step")
    p.add_argument("--version", action="version", version=f"webbflow {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("info", help="describe a JWST file: model, instrument, arrays, CRDS context")
    s.add_argument("file")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser(
        "run",
        help="run a pipeline or step on an input file or association",
        description="Run PIPELINE (detector1, image2, ..., or strun aliases like calwebb_detector1) "
        "or a single step on INPUT. Step parameters: --steps.<step>.<param>=VALUE, "
        "--steps.<step>.skip=true, --steps.<step>.override_<reftype>=PATH. "
        "`webbflow run PIPELINE --help` lists its steps and their parameters, "
        "`webbflow run STEP --help` that step's parameters.",
        add_help=False,
    )
    s.add_argument("-h", "--help", action="store_true", help="show this help, or PIPELINE's or STEP's parameters")
    s.add_argument("pipeline", nargs="?", help="pipeline or step name")
    s.add_argument("input", nargs="?", help="input file (uncal/rate/... FITS, or asn.json)")
    s.add_argument("--output-dir", "--output_dir", dest="output_dir", default=None)
    s.add_argument("--config", default=None, help="parameter file (YAML or ASDF, jwst layout)")
    s.set_defaults(func=cmd_run, takes_extra=True, run_parser=s)

    from ..refs import cli as refs_cli
    from .demo import add_demo_command

    refs_cli.add_commands(sub)
    add_demo_command(sub)
    from ..deployments import cli as ops_cli

    ops_cli.add_commands(sub)
    from .asn import cli as asn_cli

    asn_cli.add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    before = set(map(id, logging.getLogger().handlers))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    _CLI_HANDLERS.update(h for h in logging.getLogger().handlers if id(h) not in before)
    # basicConfig does nothing when the root logger has a handler already (an import may add one):
    # -v sets webbflow's own loggers, whose records reach the root's handlers whatever its level
    logging.getLogger("webbflow").setLevel(logging.INFO if args.verbose else logging.WARNING)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    if extra and not getattr(args, "takes_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if getattr(args, "takes_extra", False):
            return args.func(args, extra)
        return args.func(args)
    except WebbflowError as exc:
        # one line, whatever the message carries (YAML and pydantic errors span several)
        print("webbflow: error: " + " ".join(str(exc).split()), file=sys.stderr)
        return getattr(exc, "exit_code", 1) or 1
    except KeyboardInterrupt:
        print("webbflow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
