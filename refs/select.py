"""Selecting reference files through the crds client.

Every reference file comes from the ``crds`` client, with the matching
parameters jwst would give it (see :mod:`webbflow.refs.crds_params`), or from
an ``override_<reftype>`` given by the user.  Nothing here knows a selection
rule: the rules are the context's rmaps.

Environment (crds' own variables, read on every call):

- ``CRDS_PATH``: the cache.  A cache holding ``config/jwst/server_config`` and
  the context's mappings works with no server at all.
- ``CRDS_SERVER_URL``: when set, crds may contact the server (context names,
  missing mappings, and downloads of missing reference files into the cache,
  all by ``crds.getreferences``).  When unset, crds never opens a connection
  (measured: no DNS lookup and no connect with only ``CRDS_PATH`` set, with or
  without ``CRDS_MODE=local``).
- ``CRDS_CONTEXT``: the rules to use (``jwst_0541.pmap``, ``jwst-operational``,
  a date).  Otherwise crds' default: the server's build context, or the cache's
  operational context when offline.

The crds client keeps process-wide state (its configuration, cached mappings,
the server proxy, a module-level server URL).  All calls into crds go through
this module and hold one lock; a change of any ``CRDS_*`` variable between
calls resets that state, so a long-lived worker can switch caches.

Downloads: crds 14 writes to a temporary name and renames, but when another
process is already downloading the same file it waits only 5 s and then hands
back a path that may not exist yet.  We therefore serialise selection plus
download between processes with a lock file in the cache, and check every file
crds returns before anybody opens it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..errors import ReferenceFileError, WebbflowError, a_an
from .crds_params import JWST_CAL_VER, crds_parameters, missing_parameter_hint

log = logging.getLogger(__name__)
crds_log = logging.getLogger("webbflow.refs.crds")

OBSERVATORY = "jwst"
# What the crds package itself uses when CRDS_SERVER_URL is unset.
SERVERLESS_URL = "https://crds-serverless-mode.stsci.edu"
LOCK_NAME = ".webbflow-crds.lock"

_LOCK = threading.RLock()
_STATE: dict[str, Any] = {"signature": None}


class ReferenceSelectionError(WebbflowError):
    """CRDS could not select (or fetch) a reference file for an exposure."""


class CrdsSetupError(ReferenceSelectionError):
    """The CRDS configuration is unusable: no cache, unknown context, no server..."""


# ---------------------------------------------------------------------------
# crds process state


def _signature() -> tuple:
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("CRDS_")))


def _reset_crds() -> None:
    """Make the crds client forget everything it derived from the environment."""
    from crds.client import api
    from crds.core import config, utils

    # crds reads CRDS_SERVER_URL once, at import; tell it again.
    api.set_crds_server(os.environ.get("CRDS_SERVER_URL") or SERVERLESS_URL)
    # configuration info, contexts, loaded mappings, server answers
    utils.clear_function_caches()
    # the cache layout (flat / instrument) is remembered per process
    config.CRDS_REF_SUBDIR_MODE = "None"


def _sync() -> None:
    """Bring crds up to date with the CRDS_* environment (call with _LOCK held)."""
    sig = _signature()
    if sig != _STATE["signature"]:
        _reset_crds()
        _STATE["signature"] = sig


def reset_crds_state() -> None:
    """Forget the crds client's cached configuration (after CRDS_* variables change).

    Calls into this module notice a change of any CRDS_* variable by themselves;
    this is for callers that change a cache's content under the same variables
    (for example a new context written into the same CRDS_PATH).
    """
    with _LOCK:
        try:
            _reset_crds()
        except ImportError:  # pragma: no cover - crds is a dependency
            pass
        _STATE["signature"] = None


def server_url() -> str | None:
    """The CRDS server crds will contact, or None when it works from the cache only."""
    url = os.environ.get("CRDS_SERVER_URL", "").strip()
    if not url or "serverless" in url or "server-less" in url:
        return None
    return url


def cache_path() -> Path:
    """The CRDS cache crds uses (CRDS_PATH, or crds' default)."""
    from crds.core import config

    return Path(config.get_crds_path())


class _Forward(logging.Handler):
    """Receives crds' log records while we call it: errors become our exceptions."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.errors: list[str] = []

    def emit(self, record):
        msg = record.getMessage().strip()
        msg = msg.split(" - ", 1)[-1] if msg.startswith("(") else msg
        if record.levelno >= logging.ERROR:
            self.errors.append(msg)
            crds_log.debug("%s", msg)
        elif record.levelno >= logging.WARNING:
            crds_log.info("%s", msg)
        else:
            crds_log.debug("%s", msg)


@contextlib.contextmanager
def _crds_calls():
    """Hold the lock, sync crds with the environment and route its log to ours."""
    with _LOCK:
        lg = logging.getLogger("CRDS")
        saved = list(lg.handlers)
        fwd = _Forward()
        for h in saved:
            lg.removeHandler(h)
        lg.addHandler(fwd)
        try:
            _sync()
            yield fwd
        finally:
            lg.removeHandler(fwd)
            for h in saved:
                lg.addHandler(h)


def _crds_message(exc: BaseException, fwd: _Forward | None = None) -> str:
    text = " ".join(str(exc).split())
    if (not text or isinstance(exc, SystemExit)) and fwd is not None and fwd.errors:
        text = " ".join(fwd.errors[-1].split())
    # crds messages end with pointers to its web documentation; keep the first sentence group
    for cut in (" See https://", " Cannot continue."):
        if cut in text:
            text = text.split(cut)[0]
    return text or type(exc).__name__


def _guarded(fwd: _Forward, what: str, fn, *args, **kwargs):
    """Call into crds, turning its failures into one-line webbflow errors."""
    from crds.core.exceptions import CrdsError

    try:
        return fn(*args, **kwargs)
    except (CrdsError, OSError, AssertionError, KeyError, ValueError) as exc:
        raise ReferenceSelectionError(f"{what}: {_crds_message(exc, fwd)}") from None
    except SystemExit as exc:  # crds' fatal_error() exits the process
        raise CrdsSetupError(f"{what}: {_crds_message(exc, fwd)}") from None


def _find_in_chain(exc: BaseException, kind: type):
    """The first exception of ``kind`` among ``exc``'s causes and contexts."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kind):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


# ---------------------------------------------------------------------------
# cache, context


def _check_cache() -> None:
    """A usable cache (server_config present) or a server, else one clear error."""
    from crds.core import config

    cfg = Path(config.locate_config("server_config", OBSERVATORY))
    if cfg.is_file() or server_url():
        return
    raise CrdsSetupError(
        f"no CRDS cache at {cache_path()} ({cfg} is missing) and no CRDS server configured; "
        "set CRDS_PATH to a CRDS cache (for example one written by `webbflow refs build`) "
        "or CRDS_SERVER_URL to a CRDS server"
    )


def _check_context_spec(context: str | None, origin: str) -> None:
    from crds.core import config

    if context is None:
        return
    ok = isinstance(context, str) and config.is_mapping_spec(context)
    if not ok or not (context.startswith(OBSERVATORY) or context == "latest"):
        raise CrdsSetupError(
            f"bad CRDS context {context!r} ({origin}): give a rules file such as jwst_0541.pmap, "
            "jwst-operational, jwst-latest, jwst-edit or a date such as jwst-2022-07-01T00:00:00"
        )


def _with_mappings(fwd: _Forward, context: str, what: str, fn, *args):
    """Run ``fn`` that loads mappings of ``context``; fetch missing ones from a server.

    crds loads rmaps lazily; a missing one would make crds try the server and
    print a traceback, so we load them ourselves first and say what is missing.
    """
    try:
        return _guarded(fwd, what, fn, *args)
    except ReferenceSelectionError as exc:
        notfound = _find_in_chain(exc, FileNotFoundError)
        if notfound is None:
            raise  # a damaged mapping (bad checksum, syntax): say so, do not refetch
        missing = notfound.filename or str(exc)
        if not server_url():
            state = "not in" if os.path.basename(str(missing)) == context else "not complete in"
            raise CrdsSetupError(
                f"CRDS context {context} is {state} the cache {cache_path()} (missing {missing}) "
                "and no CRDS server is configured (CRDS_SERVER_URL) to fetch it"
            ) from None
    from crds.client import api

    log.info("fetching the mappings of %s from %s", context, server_url())
    _guarded(fwd, f"cannot fetch CRDS context {context} from {server_url()}", api.dump_mappings, context)
    return _guarded(fwd, what, fn, *args)


def _final_context(fwd: _Forward, context: str | None) -> str:
    """The .pmap crds will use, present in the cache (fetched if a server is configured)."""
    from crds.core import heavy_client, rmap

    _check_context_spec(os.environ.get("CRDS_CONTEXT") or None, "CRDS_CONTEXT")
    _check_context_spec(context, "--context" if context else "context")
    _check_cache()
    where = f"CRDS context {context or os.environ.get('CRDS_CONTEXT') or '(default)'}"
    _mode, final = _guarded(fwd, where, heavy_client.get_processing_mode, OBSERVATORY, context)
    _with_mappings(fwd, final, f"CRDS context {final} in {cache_path()}", rmap.get_cached_mapping, final)
    return final


def context_used(context: str | None = None) -> str:
    """The CRDS context (e.g. ``jwst_0541.pmap``) selection uses now.

    This is what products record as ``meta.ref_file.crds.context_used``.
    """
    with _crds_calls() as fwd:
        return _final_context(fwd, context)


def crds_sw_version() -> str:
    """The crds client version, recorded as ``meta.ref_file.crds.sw_version``."""
    import crds

    return str(crds.__version__)


def record_crds_info(model, context: str | None = None) -> None:
    """Write the context used and the crds version into ``model.meta.ref_file.crds``."""
    model.meta.ref_file.crds.context_used = context_used(context)
    model.meta.ref_file.crds.sw_version = crds_sw_version()


# ---------------------------------------------------------------------------
# selection


@dataclass
class Choice:
    """CRDS' answer for one reftype."""

    reftype: str
    kind: str  # "file", "n/a" (the rules say not applicable), "nomatch", "unknown"
    value: str  # file name, "N/A", or crds' explanation
    raw: str = ""  # crds' own answer, e.g. "NOT FOUND n/a"

    @property
    def shown(self) -> str:
        return self.value if self.kind == "file" else "N/A"


def _classify(reftype: str, raw) -> Choice:
    text = str(raw)
    if isinstance(raw, str) and not text.upper().startswith("NOT FOUND"):
        return Choice(reftype, "file", raw, text)
    why = " ".join(text[len("NOT FOUND"):].split()) if text.upper().startswith("NOT FOUND") else text
    if "N/A" in text.upper():  # as jwst's crds_client: any N/A answer means not applicable
        return Choice(reftype, "n/a", "N/A", text)
    if "unknown reference type" in text.lower():
        return Choice(reftype, "unknown", why or "unknown reference type", text)
    return Choice(reftype, "nomatch", why or "no match", text)


def _instrument(params: dict) -> str:
    inst = params.get("meta.instrument.name")
    if not inst:
        raise ReferenceSelectionError(
            f"the exposure has no {missing_parameter_hint(params, 'meta.instrument.name')}; "
            "CRDS cannot select reference files without it"
        )
    return str(inst).upper()


def _imap(fwd: _Forward, context: str, instrument: str):
    """The instrument's rules in ``context``, with all its rmaps loaded."""
    from crds.core import rmap

    pmap = _guarded(fwd, f"CRDS context {context}", rmap.get_cached_mapping, context)
    if instrument.lower() not in {k.lower() for k in pmap.selections.keys()}:
        raise ReferenceSelectionError(f"CRDS context {context} has no rules for instrument {instrument!r}")
    what = f"CRDS rules for {instrument} in {context}"
    imap = _with_mappings(fwd, context, what, pmap.get_imap, instrument)
    _with_mappings(fwd, context, what, imap.get_required_parkeys)  # loads every rmap
    return imap


def _recommend(fwd: _Forward, params: dict, reftypes: list[str] | None, context: str) -> dict[str, Any]:
    import crds

    inst = _instrument(params)
    _imap(fwd, context, inst)
    return _guarded(
        fwd,
        f"CRDS selection for {inst} in {context}",
        crds.getrecommendations,
        params,
        reftypes=reftypes,
        context=context,
        observatory=OBSERVATORY,
    )


@contextlib.contextmanager
def _cache_file_lock():
    """One process at a time selects and downloads into a shared, writable cache."""
    from crds.core import config

    root = cache_path()
    if config.get_cache_readonly() or not root.is_dir() or not os.access(root, os.W_OK):
        yield  # nothing can be downloaded into it, so nothing to guard
        return
    from filelock import FileLock, Timeout

    lock = FileLock(str(root / LOCK_NAME))
    try:
        lock.acquire(timeout=2)
    except Timeout:
        log.info("waiting for the CRDS cache %s (another process is selecting or downloading)", root)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _locate(name: str) -> Path:
    import crds

    return Path(crds.locate_file(name, OBSERVATORY))


def _fetch(fwd: _Forward, params: dict, files: dict[str, str], context: str) -> dict[str, str]:
    """Paths in the cache for ``{reftype: file name}``, downloading through crds if needed."""
    import crds

    with _cache_file_lock():
        missing = sorted({n for n in files.values() if not _locate(n).is_file()})
        if missing and not server_url():
            names = ", ".join(missing)
            raise CrdsSetupError(
                f"reference file(s) {names} selected by {context} are not in the CRDS cache "
                f"{cache_path()} and no CRDS server is configured (CRDS_SERVER_URL) to download them"
            )
        if missing:
            log.info("downloading %s from %s into %s", ", ".join(missing), server_url(), cache_path())
        paths = _guarded(
            fwd,
            f"CRDS could not provide {', '.join(missing) or 'references'}",
            crds.getreferences,
            params,
            reftypes=list(files),
            context=context,
            observatory=OBSERVATORY,
        )
        out = {}
        for rt, name in files.items():
            p = paths.get(rt)
            if not isinstance(p, str) or os.path.basename(p) != name:
                raise ReferenceSelectionError(
                    f"CRDS returned {p!r} for {rt}, expected {name} (context {context} changed underneath?)"
                )
            pp = Path(p)
            if not pp.is_file() or pp.stat().st_size == 0:
                why = fwd.errors[-1] if fwd.errors else "not in the cache after download"
                raise ReferenceSelectionError(
                    f"{rt} reference {name} could not be fetched from {server_url() or 'the cache'}: {why}"
                )
            out[rt] = str(pp)
        return out


def _override(reftype: str, value) -> Any:
    """Validate one ``override_<reftype>``: "N/A", an existing file, or a model."""
    if hasattr(value, "meta") and not isinstance(value, (str, os.PathLike)):
        return value  # an already-open reference model
    text = str(value).strip()
    if text.upper() == "N/A":
        return "N/A"
    p = Path(text).expanduser()
    if not p.exists():
        raise ReferenceFileError(reftype, p, f"override_{reftype} file not found")
    if not p.is_file():
        raise ReferenceFileError(reftype, p, f"override_{reftype} is not a file")
    return str(p.resolve())


def get_reference_paths(model, reftypes: Iterable[str], overrides: dict | None = None,
                        context: str | None = None) -> dict[str, Any]:
    """``{reftype: path or "N/A"}`` for a model, through CRDS or ``override_<reftype>``.

    - An override that is ``"N/A"`` skips the reftype; a path must exist.
    - A reftype the rules mark N/A gives ``"N/A"`` (the step then skips itself).
    - A reftype with no matching rule, or unknown to the context, is an error,
      as it is for jwst; except step-parameter reftypes (``pars-*``), which are
      simply absent (``"N/A"``).
    - Files crds selects are downloaded into the cache when a server is configured.
    """
    overrides = {str(k).lower(): v for k, v in (overrides or {}).items()}
    wanted = [str(r).lower() for r in reftypes]
    out: dict[str, Any] = {}
    todo: list[str] = []
    for rt in wanted:
        v = overrides.get(rt)
        if v is None or (isinstance(v, str) and v.strip().lower() in ("", "none")):
            todo.append(rt)
        else:
            out[rt] = _override(rt, v)
    if not todo:
        return out
    params = crds_parameters(model)
    with _crds_calls() as fwd:
        ctx = _final_context(fwd, context)
        raw = _recommend(fwd, params, todo, ctx)
        choices = [_classify(rt, raw.get(rt, "NOT FOUND no answer from crds")) for rt in todo]
        problems = []
        files: dict[str, str] = {}
        for c in choices:
            if c.kind == "file":
                files[c.reftype] = c.value
            elif c.kind == "n/a" or c.reftype.startswith("pars-"):
                out[c.reftype] = "N/A"
            elif c.kind == "unknown":
                problems.append(f"{c.reftype} (not a reference type of {_instrument(params)} in {ctx})")
            else:
                problems.append(f"{c.reftype} ({c.value})")
        if problems:
            raise ReferenceSelectionError(
                f"CRDS found no reference file for {describe(params)} in {ctx}: " + "; ".join(problems)
            )
        if files:
            out.update(_fetch(fwd, params, files, ctx))
    for rt, v in out.items():
        if v == "N/A":
            log.debug("reference type %s is N/A for this exposure", rt)
    return {rt: out[rt] for rt in wanted}


def describe(params: dict) -> str:
    """``NIRCAM NRCA1 NRC_IMAGE`` for messages."""
    keys = ("meta.instrument.name", "meta.instrument.detector", "meta.exposure.type")
    return " ".join(str(params.get(k)) for k in keys if params.get(k)) or "this exposure"


# ---------------------------------------------------------------------------
# bestrefs (the `webbflow refs bestrefs` command)


@dataclass
class Bestrefs:
    context: str
    instrument: str
    exp_type: str | None
    choices: dict[str, Choice] = field(default_factory=dict)


def instrument_reftypes(instrument: str, context: str | None = None) -> list[str]:
    """Every reftype the context has rules (or N/A) for, for one instrument."""
    with _crds_calls() as fwd:
        ctx = _final_context(fwd, context)
        return sorted(k.lower() for k in _imap(fwd, ctx, instrument.upper()).selections)


def bestrefs(source, context: str | None = None, reftypes: Iterable[str] | None = None,
             all_types: bool = False) -> Bestrefs:
    """What CRDS selects for an exposure (a path or a model), without downloading.

    Reftypes, as ``crds bestrefs`` chooses them: the given ones; else with
    ``all_types`` every reftype of the instrument in the context; else the ones
    crds finds applicable to the exposure type (from its pipeline configuration),
    or every reftype of the instrument when crds cannot tell.
    """
    from .. import models

    model = models.open(source) if isinstance(source, (str, os.PathLike)) else source
    params = crds_parameters(model)
    inst = _instrument(params)
    with _crds_calls() as fwd:
        ctx = _final_context(fwd, context)
        imap = _imap(fwd, ctx, inst)
        everything = sorted(k.lower() for k in imap.selections)
        if reftypes:
            types = [str(r).strip().lower() for r in reftypes if str(r).strip()]
        elif all_types:
            types = everything
        else:
            # crds picks the types from its configuration of jwst's pipelines for
            # this EXP_TYPE and cal s/w version (CAL_VER).  Without CAL_VER crds
            # would import the installed jwst package for its version; we give it
            # the jwst release webbflow reproduces instead.
            probe = dict(params)
            probe.setdefault("meta.calibration_software_version", JWST_CAL_VER)
            types = sorted(_recommend(fwd, probe, None, ctx)) or everything
        raw = _recommend(fwd, params, types, ctx)
    result = Bestrefs(ctx, inst, params.get("meta.exposure.type"))
    for rt in types:
        result.choices[rt] = _classify(rt, raw.get(rt, "NOT FOUND no answer from crds"))
    return result


# ---------------------------------------------------------------------------
# opening


def open_reference(reftype: str, path, arrays=None, rows=None):
    """Open a reference file as its model class; ``arrays`` reads only those arrays, ``rows`` only
    those rows of its images when it can (see ``models.open``)."""
    from .. import models
    from ..models.classes import REFERENCE_MODELS

    p = Path(path)
    if not p.exists():
        raise ReferenceFileError(reftype, p, "file not found")
    if p.suffix.lower() == ".json":
        # JSON references (extract1d) are plain parameter trees, not datamodels
        import json

        try:
            return json.loads(p.read_text())
        except (UnicodeDecodeError, ValueError) as exc:
            raise ReferenceFileError(reftype, p, f"not valid JSON ({exc})") from None
    from ._ref_cache import cached_open

    try:
        m = cached_open(reftype, p, arrays, lambda: models.open(p, arrays=None if arrays is None else tuple(arrays),
                                                                rows=rows), rows=rows)
    except Exception as exc:  # noqa: BLE001 - any unreadable file (WebbflowError or not) is the user's
        raise ReferenceFileError(reftype, p, str(exc)) from None
    want = REFERENCE_MODELS.get(reftype)
    # a MIRI dark opens as DarkMIRIModel, which is not a DarkModel subclass
    if want is not None and not isinstance(m, want) and reftype != "dark":
        raise ReferenceFileError(reftype, p, f"is {a_an(type(m).__name__)}, expected {a_an(want.__name__)}")
    return m
