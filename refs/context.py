"""A local CRDS cache that the crds client selects from with no server.

Layout (what crds expects under ``CRDS_PATH``)::

    config/jwst/server_config            operational context, bad files (a Python literal)
    config/jwst/ref_cache_subdir_mode    "instrument"
    mappings/jwst/jwst_0001.pmap         PIPELINE mapping: instrument -> imap
    mappings/jwst/jwst_nircam_0001.imap  INSTRUMENT mapping: reftype -> rmap or N/A
    mappings/jwst/jwst_nircam_dark_0001.rmap   REFERENCE mapping: Match/UseAfter rules
    references/jwst/nircam/jwst_nircam_dark_0001.fits

With ``CRDS_PATH`` alone (no ``CRDS_CONTEXT``, no server reachable) crds
reads ``server_config`` and uses its ``operational_context`` (jwst first asks
the server for the build context of the installed jwst, which fails offline,
then falls back to that).  A context is never rewritten: a change writes new
rmaps, imaps and a new pmap with the next serial, and ``server_config`` then
names the new pmap, so older contexts stay usable with ``CRDS_CONTEXT``.

Mappings are written in CRDS's own syntax with a correct ``sha1sum`` (the
SHA-1 of the text without the sha1sum line, as crds checks it).  Every
reference type that a jwst 3.0 step can ask for is named in each imap, as
``N/A`` when we have no file, so that no step meets an "unknown reference
type" error; ``pars-*`` step-parameter types are N/A as well.
"""

from __future__ import annotations

import ast
import datetime
import fcntl
import hashlib
import pprint
import re

from ..models.atomic import atomic_write_text  # noqa: F401 - refs.build uses it from here too
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

OBSERVATORY = "jwst"
INSTRUMENTS = ("FGS", "MIRI", "NIRCAM", "NIRISS")
DATE_PARKEYS = ("META.OBSERVATION.DATE", "META.OBSERVATION.TIME")
RMAP_USEAFTER = "2000-01-01 00:00:00"

_DET = "META.INSTRUMENT.DETECTOR"
_SUB = "META.SUBARRAY.NAME"
_RP = "META.EXPOSURE.READPATT"
_FLT = "META.INSTRUMENT.FILTER"
_PUP = "META.INSTRUMENT.PUPIL"


def _parkeys() -> dict[tuple[str, str], tuple[str, ...]]:
    out = {}
    for ins in INSTRUMENTS:
        for rt in ("mask", "saturation", "superbias", "linearity", "gain", "readnoise", "area"):
            out[(ins, rt)] = (_DET, _SUB)
        for rt in ("dark", "reset"):
            out[(ins, rt)] = (_DET, _SUB, _RP)
        for rt in ("ipc", "photom", "distortion", "filteroffset", "apcorr", "abvegaoffset", "rscd", "emicorr"):
            out[(ins, rt)] = (_DET,)
    out[("NIRCAM", "flat")] = (_DET, _SUB, _FLT, _PUP)
    out[("NIRISS", "flat")] = (_DET, _SUB, _FLT, _PUP)
    out[("MIRI", "flat")] = (_DET, _SUB, _FLT)
    out[("FGS", "flat")] = (_DET, _SUB)
    return out


# The dataset parameters each of our rmaps matches on (besides the USEAFTER date).
RMAP_PARKEYS: dict[tuple[str, str], tuple[str, ...]] = _parkeys()

# Every reference type a jwst 3.0 step may request (Step.reference_file_types
# of all steps), so that each imap can answer N/A instead of "unknown type".
STEP_REFTYPES = (
    "abvegaoffset", "apcorr", "area", "barshadow", "bkg", "camera", "chromcorr", "collimator", "cubepar",
    "dark", "dflat", "disperser", "distortion", "drizpars", "emicorr", "extract1d", "fflat", "filteroffset",
    "flat", "fore", "fpa", "fringe", "fringefreq", "gain", "ifufore", "ifupost", "ifuslicer", "ipc",
    "linearity", "mask", "mrsptcorr", "mrsxartcorr", "msa", "msaoper", "nrm", "ote", "pastasoss", "pathloss",
    "persat", "photom", "pictureframe", "psf", "psfmask", "readnoise", "refpix", "regions", "reset", "rscd",
    "saturation", "sflat", "sirskernel", "speckernel", "specprofile", "specwcs", "superbias", "throughput",
    "trapdensity", "trappars", "tsophot", "wavecorr", "wavelengthrange", "wfssbkg",
)

# Step and pipeline classes of jwst 3.0 whose parameters stpipe looks up as
# ``pars-<classname>``: N/A in our contexts (the defaults apply).
PARS_CLASSES = (
    "AdaptiveTraceModelStep", "AlignRefsStep", "Ami3Pipeline", "AmiAnalyzeStep", "AmiNormalizeStep",
    "AssignMTWcsStep", "AssignWcsStep", "BackgroundStep", "BadpixSelfcalStep", "BarShadowStep",
    "ChargeMigrationStep", "CleanFlickerNoiseStep", "Combine1dStep", "Coron3Pipeline", "CubeBuildStep",
    "DQInitStep", "DarkCurrentStep", "DarkPipeline", "Detector1Pipeline", "EmiCorrStep", "Extract1dStep",
    "Extract2dStep", "FirstFrameStep", "FlatFieldStep", "FringeStep", "GainScaleStep", "GroupScaleStep",
    "GuiderCdsStep", "GuiderPipeline", "HlspStep", "IPCStep", "Image2Pipeline", "Image3Pipeline",
    "ImprintStep", "JumpStep", "KlipStep", "LastFrameStep", "LinearityStep", "MSAFlagOpenStep",
    "MasterBackgroundMosStep", "MasterBackgroundStep", "OutlierDetectionStep", "PathLossStep",
    "PersistenceStep", "PhotomStep", "PictureFrameStep", "PixelReplaceStep", "RampFitStep", "RefPixStep",
    "ResampleSpecStep", "ResampleStep", "ResetStep", "ResidualFringeStep", "RscdStep", "SaturationStep",
    "SkyMatchStep", "SourceCatalogStep", "SourceTypeStep", "Spec2Pipeline", "Spec3Pipeline",
    "SpectralLeakStep", "StackRefsStep", "StraylightStep", "SuperBiasStep", "TSOPhotometryStep",
    "TargCentroidStep", "Tso3Pipeline", "TweakRegStep", "WavecorrStep", "WfsCombineStep", "WfssContamStep",
    "WhiteLightStep",
)
PARS_REFTYPES = tuple(f"pars-{c.lower()}" for c in PARS_CLASSES)
ALL_REFTYPES = tuple(sorted(set(STEP_REFTYPES) | set(PARS_REFTYPES)))

_PMAP_RE = re.compile(r"^jwst_(\d{4})\.pmap$")


# ---------------------------------------------------------------------------
# the rules of one context, as plain data


@dataclass
class Rmap:
    """One reference mapping: match tuples (values in ``parkeys`` order) -> reference file name."""

    instrument: str
    reftype: str
    parkeys: tuple[str, ...]
    entries: dict[tuple[str, ...], str] = field(default_factory=dict)
    name: str | None = None  # file name once written

    def same_rules(self, other: "Rmap | None") -> bool:
        return other is not None and self.parkeys == other.parkeys and self.entries == other.entries


@dataclass
class Context:
    """The rules of one pmap: ``rmaps[instrument][reftype]``; ``imaps[instrument]`` names the imap written."""

    name: str | None = None
    rmaps: dict[str, dict[str, Rmap]] = field(default_factory=dict)
    imaps: dict[str, str] = field(default_factory=dict)

    def files(self) -> set[str]:
        return {f for ins in self.rmaps.values() for rm in ins.values() for f in rm.entries.values()}


# ---------------------------------------------------------------------------
# paths


def mappings_dir(root) -> Path:
    return Path(root) / "mappings" / OBSERVATORY


def config_dir(root) -> Path:
    return Path(root) / "config" / OBSERVATORY


def references_dir(root, instrument: str | None = None) -> Path:
    d = Path(root) / "references" / OBSERVATORY
    return d / instrument.lower() if instrument else d


def reference_path(root, filename: str) -> Path:
    """Where crds (instrument sub-directory mode) finds ``jwst_<instrument>_<reftype>_NNNN.<ext>``."""
    instrument = filename.split("_")[1]
    return references_dir(root, instrument) / filename


def list_contexts(root) -> list[str]:
    """All pmaps in the cache, oldest first."""
    d = mappings_dir(root)
    if not d.is_dir():
        return []
    return sorted((p.name for p in d.iterdir() if _PMAP_RE.match(p.name)), key=lambda n: int(_PMAP_RE.match(n).group(1)))


def current_context(root) -> str | None:
    """The context crds uses by default in this cache: server_config's operational context, else the newest pmap."""
    cfg = config_dir(root) / "server_config"
    if cfg.exists():
        try:
            info = ast.literal_eval(cfg.read_text())
            name = info.get("operational_context")
            if name and (mappings_dir(root) / name).exists():
                return name
        except (ValueError, SyntaxError):
            pass
    names = list_contexts(root)
    return names[-1] if names else None


# ---------------------------------------------------------------------------
# writing mappings


def _sha1(text: str) -> str:
    body = "".join(line for line in text.splitlines(True) if "sha1sum" not in line)
    return hashlib.sha1(body.encode("utf-8")).hexdigest()


def _format_header(header: dict) -> str:
    lines = ["header = {"]
    for k in sorted(header):
        lines.append(f"    {k!r} : {header[k]!r},")
    lines.append("}")
    return "\n".join(lines)


def _with_checksum(header: dict, body: str) -> str:
    header = dict(header)
    header["sha1sum"] = "0" * 40
    text = _format_header(header) + "\n\n" + body
    header["sha1sum"] = _sha1(text)
    return _format_header(header) + "\n\n" + body


def format_rmap(rm: Rmap, name: str, derived_from: str) -> str:
    header = {
        "classes": ("Match", "UseAfter"),
        "derived_from": derived_from,
        "filekind": rm.reftype.upper(),
        "instrument": rm.instrument,
        "mapping": "REFERENCE",
        "name": name,
        "observatory": "JWST",
        "parkey": (tuple(rm.parkeys), DATE_PARKEYS),
        "suffix": rm.reftype,
        "text_descr": f"webbflow synthetic {rm.reftype}",
    }
    lines = ["selector = Match({"]
    for key in sorted(rm.entries):
        shown = key[0] if len(key) == 1 else tuple(key)
        lines.append(f"    {shown!r} : UseAfter({{")
        lines.append(f"        {RMAP_USEAFTER!r} : {rm.entries[key]!r},")
        lines.append("    }),")
    lines.append("})")
    return _with_checksum(header, "\n".join(lines) + "\n")


def format_imap(instrument: str, name: str, rmaps: dict[str, str], derived_from: str) -> str:
    header = {
        "derived_from": derived_from,
        "instrument": instrument,
        "mapping": "INSTRUMENT",
        "name": name,
        "observatory": "JWST",
        "parkey": ("REFTYPE",),
    }
    lines = ["selector = {"]
    for rt in sorted(set(ALL_REFTYPES) | set(rmaps)):
        lines.append(f"    {rt.upper()!r} : {rmaps.get(rt, 'N/A')!r},")
    lines.append("}")
    return _with_checksum(header, "\n".join(lines) + "\n")


def format_pmap(name: str, imaps: dict[str, str], derived_from: str, description: str) -> str:
    header = {
        "derived_from": derived_from,
        "description": description,
        "mapping": "PIPELINE",
        "name": name,
        "observatory": "JWST",
        "parkey": ("META.INSTRUMENT.NAME",),
    }
    lines = ["selector = {"]
    for ins in sorted(imaps):
        lines.append(f"    {ins!r} : {imaps[ins]!r},")
    lines.append("}")
    return _with_checksum(header, "\n".join(lines) + "\n")


def _next_serial(directory: Path, prefix: str, suffix: str) -> int:
    pat = re.compile(rf"^{re.escape(prefix)}(\d{{4}}){re.escape(suffix)}$")
    best = 0
    if directory.is_dir():
        for p in directory.iterdir():
            m = pat.match(p.name)
            if m:
                best = max(best, int(m.group(1)))
    return best + 1


def next_name(directory: Path, prefix: str, suffix: str) -> str:
    """``<prefix>NNNN<suffix>`` with the next free serial in ``directory``."""
    return f"{prefix}{_next_serial(directory, prefix, suffix):04d}{suffix}"


# ---------------------------------------------------------------------------
# reading mappings back (only the ones this module writes: Match/UseAfter rmaps)


def _parse_mapping(text: str, where: str) -> tuple[dict, object]:
    """The ``header`` dict and the ``selector`` of a mapping's text, without executing it."""
    tree = ast.parse(text, filename=where)
    header = selector = None
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name == "header":
                header = ast.literal_eval(node.value)
            elif name == "selector":
                selector = _selector_value(node.value, where)
    if header is None or selector is None:
        raise ValueError(f"{where}: not a CRDS mapping (no header/selector)")
    return header, selector


def _selector_value(node, where):
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("Match", "UseAfter"):
        if len(node.args) != 1 or not isinstance(node.args[0], ast.Dict):
            raise ValueError(f"{where}: unexpected {node.func.id} selector")
        d = node.args[0]
        return (node.func.id, {ast.literal_eval(k): _selector_value(v, where) for k, v in zip(d.keys, d.values)})
    return ast.literal_eval(node)


def read_context(root, name: str | None = None) -> Context:
    """Read a context written by :func:`write_context` (the current one by default; empty if none)."""
    name = name or current_context(root)
    ctx = Context(name=name)
    if name is None:
        return ctx
    mdir = mappings_dir(root)
    _h, pmap_sel = _parse_mapping((mdir / name).read_text(), name)
    for ins, imap_name in pmap_sel.items():
        ctx.imaps[ins] = imap_name
        _h, imap_sel = _parse_mapping((mdir / imap_name).read_text(), imap_name)
        for rt_upper, rmap_name in imap_sel.items():
            if rmap_name == "N/A":
                continue
            header, sel = _parse_mapping((mdir / rmap_name).read_text(), rmap_name)
            parkeys = tuple(header["parkey"][0])
            kind, matches = sel
            entries = {}
            for key, val in matches.items():
                _kind, dates = val
                # the latest USEAFTER is the file in force
                fname = dates[max(dates)]
                entries[key if isinstance(key, tuple) else (key,)] = fname
            rt = header.get("filekind", rt_upper).lower()
            ctx.rmaps.setdefault(ins, {})[rt] = Rmap(ins, rt, parkeys, entries, name=rmap_name)
    return ctx


# ---------------------------------------------------------------------------
# writing a context


@dataclass
class ContextWrite:
    context: str  # the pmap in force after the write
    created: bool  # whether a new pmap was written
    mappings: list[str]  # mapping files written


def write_context(root, rules: dict[str, dict[str, Rmap]], description: str) -> ContextWrite:
    """Make ``rules`` the default context of the cache at ``root``.

    Unchanged rmaps and imaps of the current context are reused; changed ones
    are written under new names; if anything changed a new pmap is written and
    ``server_config`` names it.  Returns the context in force.
    """
    root = Path(root)
    mdir = mappings_dir(root)
    mdir.mkdir(parents=True, exist_ok=True)
    old = read_context(root)
    written: list[str] = []
    imaps: dict[str, str] = dict(old.imaps)
    for ins in sorted(rules):
        new_rmaps: dict[str, str] = {}
        for rt in sorted(rules[ins]):
            rm = rules[ins][rt]
            prev = old.rmaps.get(ins, {}).get(rt)
            if rm.same_rules(prev):
                new_rmaps[rt] = prev.name
                continue
            name = next_name(mdir, f"jwst_{ins.lower()}_{rt}_", ".rmap")
            atomic_write_text(mdir / name, format_rmap(rm, name, prev.name if prev else "webbflow synthetic references"))
            written.append(name)
            new_rmaps[rt] = name
            rm.name = name
        old_rmaps = {rt: r.name for rt, r in old.rmaps.get(ins, {}).items()}
        # reftypes the old imap had that these rules no longer give stay as they were
        merged = dict(old_rmaps)
        merged.update(new_rmaps)
        if ins in old.imaps and merged == old_rmaps:
            continue
        name = next_name(mdir, f"jwst_{ins.lower()}_", ".imap")
        atomic_write_text(mdir / name, format_imap(ins, name, merged, old.imaps.get(ins, "webbflow synthetic references")))
        written.append(name)
        imaps[ins] = name
    if old.name is not None and imaps == old.imaps:
        write_server_config(root, old.name, None)
        return ContextWrite(old.name, False, written)
    name = next_name(mdir, "jwst_", ".pmap")
    atomic_write_text(mdir / name, format_pmap(name, imaps, old.name or "webbflow synthetic references", description))
    written.append(name)
    write_server_config(root, name, description)
    return ContextWrite(name, True, written)


def write_server_config(root, context: str, description: str | None) -> Path:
    """Write ``config/jwst/server_config`` naming ``context`` as the operational (default) context."""
    cdir = config_dir(root)
    cdir.mkdir(parents=True, exist_ok=True)
    path = cdir / "server_config"
    history: list = []
    bad: list = []
    if path.exists():
        try:
            prev = ast.literal_eval(path.read_text())
            history = list(prev.get("context_history", []))
            bad = list(prev.get("bad_files_list", []))
        except (ValueError, SyntaxError):
            pass
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    if description is not None and (not history or history[0][1] != context):
        history.insert(0, [now, context, description])
    try:
        import crds

        crds_version = {"str": crds.__version__, "rev": "", "svnurl": "/"}
    except Exception:  # noqa: BLE001 - crds is a dependency; be robust anyway
        crds_version = {"str": "unknown", "rev": "", "svnurl": "/"}
    info = {
        "observatory": OBSERVATORY,
        "operational_context": context,
        "latest_context": context,
        "edit_context": context,
        "versions_context": context,
        "context_history": history,
        "bad_files_list": bad,
        "connected": False,
        "force_remote_mode": 0,
        "status": "cache",
        "crds_version": crds_version,
        "server": "local cache written by webbflow (no server)",
        "mapping_url": {OBSERVATORY: "file://" + str(mappings_dir(root).resolve()) + "/"},
        "reference_url": {OBSERVATORY: "file://" + str(references_dir(root).resolve()) + "/"},
        "last_synced": now,
        "last_refreshed": now,
        "max_bestrefs_per_rpc": 1000,
        "max_headers_per_rpc": 1000,
        "mappings": sorted(p.name for p in mappings_dir(root).iterdir()) if mappings_dir(root).is_dir() else [],
    }
    atomic_write_text(path, pprint.pformat(info) + "\n")
    atomic_write_text(cdir / "ref_cache_subdir_mode", "instrument\n")
    atomic_write_text(cdir / "bad_files.txt", "\n".join(bad))
    return path


@contextmanager
def cache_lock(root):
    """Serialise writers of one cache (two builds into the same folder wait for each other)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".webbflow-build.lock", "w") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


__all__ = [
    "RMAP_PARKEYS", "ALL_REFTYPES", "Rmap", "Context", "ContextWrite", "read_context", "write_context",
    "write_server_config", "current_context", "list_contexts", "reference_path", "references_dir",
    "mappings_dir", "config_dir", "next_name", "cache_lock", "format_rmap", "format_imap", "format_pmap",
]
