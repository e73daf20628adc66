"""``build_references``: synthetic reference files and a local CRDS context for a set of exposures.

``build_references(exposures, output_dir) -> "jwst_0001.pmap"`` writes, for
every exposure's instrument, detector, subarray, readout pattern and filter,
the reference files jwst 3.0 reads (see :mod:`webbflow.refs.synthetic`) into
``output_dir`` laid out as a CRDS cache, and rules that select them
(:mod:`webbflow.refs.context`).  Afterwards ``CRDS_PATH=output_dir`` alone
makes both webbflow and jwst select exactly these files.

Building into a folder that already holds a cache adds to it: files whose
content would be the same are reused, new or changed ones get new names, and
if the rules change a new context (the next pmap) becomes the default while
the old ones stay, so that products made with either can be compared.
Darks (and MIRI reset files) cover the most groups any exposure of that
readout needs; an existing dark with enough groups is kept.

The command line: ``webbflow refs build --for FILE... --output-dir DIR``.
"""

from __future__ import annotations

import datetime
import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import ParameterError
from . import context as ctxmod
from .synthetic import (
    ExposureConfig,
    GENERATOR_VERSION,
    MAKERS,
    PER_READOUT,
    content_key,
    detector_truth,
    exposure_config,
    mode_reftypes,
    reference_region,
    selection_key,
)

log = logging.getLogger("webbflow.refs.build")

MANIFEST = "webbflow-references.json"
_EXT = {"distortion": ".asdf", "filteroffset": ".asdf", "abvegaoffset": ".asdf", "emicorr": ".asdf"}


@dataclass
class BuildResult:
    context: str  # the default context of the cache after the build
    new_context: bool  # whether this build wrote a new pmap
    written: list[Path] = field(default_factory=list)  # reference files written
    reused: list[Path] = field(default_factory=list)  # reference files already there and still selected
    mappings: list[str] = field(default_factory=list)  # mapping files written
    selections: dict[str, dict[str, str]] = field(default_factory=dict)  # exposure label -> {reftype: file}


def _label(exposure, i: int) -> str:
    if isinstance(exposure, (str, Path)):
        return str(exposure)
    name = getattr(getattr(exposure, "meta", None), "filename", None)
    return name or f"exposure {i + 1}"


def _load_manifest(root: Path) -> dict:
    p = root / MANIFEST
    if p.exists():
        try:
            return json.loads(p.read_text())
        except (ValueError, OSError):
            log.warning("ignoring unreadable %s", p)
    return {}


def build_reference_cache(exposures, output_dir, seed: int = 0) -> BuildResult:
    """Write the references and rules for ``exposures`` into the CRDS cache ``output_dir``; see the module doc."""
    exposures = list(exposures) if not isinstance(exposures, (str, Path)) else [exposures]
    if not exposures:
        raise ParameterError("build_references needs at least one exposure")
    root = Path(output_dir)
    cfgs = [(_label(e, i), exposure_config(e)) for i, e in enumerate(exposures)]

    with ctxmod.cache_lock(root):
        manifest = _load_manifest(root)
        if ctxmod.current_context(root) is not None and not (root / MANIFEST).exists():
            raise ParameterError(
                f"{root} holds a CRDS cache that webbflow did not build; give an empty or webbflow-built folder"
            )
        current = ctxmod.read_context(root)
        rules: dict[str, dict[str, ctxmod.Rmap]] = {}
        for ins, rms in current.rmaps.items():
            rules[ins] = {rt: ctxmod.Rmap(ins, rt, rm.parkeys, dict(rm.entries), rm.name) for rt, rm in rms.items()}

        # what each (instrument, reftype, match) needs, merging exposures that share a rule
        wanted: dict[tuple, ExposureConfig] = {}
        selections: dict[str, dict[str, tuple]] = {}
        for label, cfg in cfgs:
            sel = selections.setdefault(label, {})
            for rt in mode_reftypes(cfg.instrument, cfg.exp_type):
                match = tuple(selection_key(cfg, rt).values())
                k = (cfg.instrument, rt, match)
                sel[rt] = k
                prev = wanted.get(k)
                if prev is None:
                    wanted[k] = cfg
                elif rt in PER_READOUT:
                    if (prev.nframes, prev.groupgap) != (cfg.nframes, cfg.groupgap):
                        raise ParameterError(
                            f"exposures with readout {cfg.readpatt} on {cfg.detector} {cfg.subarray} differ in "
                            f"NFRAMES/GROUPGAP ({prev.nframes}/{prev.groupgap} vs {cfg.nframes}/{cfg.groupgap})"
                        )
                    if cfg.ngroups > prev.ngroups:
                        wanted[k] = replace(prev, ngroups=cfg.ngroups)

        by_key: dict[str, str] = {v["key"]: name for name, v in manifest.items() if "key" in v}
        to_make: dict[str, tuple[ExposureConfig, str, str]] = {}  # filename -> (cfg, reftype, key)
        chosen: dict[tuple, str] = {}
        reused: set[str] = set()
        for (ins, rt, match), cfg in sorted(wanted.items(), key=lambda kv: repr(kv[0])):
            existing = rules.get(ins, {}).get(rt)
            existing_file = existing.entries.get(match) if existing else None
            if rt in PER_READOUT and existing_file in manifest:
                # keep a dark/reset that already covers enough groups; otherwise extend it
                m = manifest[existing_file]
                if m.get("base") == _base_key(cfg, rt, seed) and _exists(root, existing_file):
                    if m.get("ngroups", 0) >= cfg.ngroups:
                        chosen[(ins, rt, match)] = existing_file
                        reused.add(existing_file)
                        continue
                    cfg = replace(cfg, ngroups=max(cfg.ngroups, int(m.get("ngroups", 0))))
            key = content_key(cfg, rt, seed)
            name = by_key.get(key)
            if name is not None and (_exists(root, name) or name in to_make):
                chosen[(ins, rt, match)] = name
                if name not in to_make:
                    reused.add(name)
                continue
            name = _new_reference_name(root, ins, rt, set(to_make))
            to_make[name] = (cfg, rt, key)
            by_key[key] = name
            chosen[(ins, rt, match)] = name

        # generate and write the new files, one detector at a time
        written: list[Path] = []
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        order = sorted(to_make.items(), key=lambda kv: (kv[1][0].instrument, kv[1][0].detector, kv[0]))
        for name, (cfg, rt, key) in order:
            truth = detector_truth(cfg.instrument, cfg.detector, int(seed))
            model = MAKERS[rt](cfg, truth, reference_region(cfg, rt))
            model.meta.date = now
            path = ctxmod.reference_path(root, name)
            model.save(path)
            written.append(path)
            manifest[name] = {
                "key": key, "base": _base_key(cfg, rt, seed), "reftype": rt, "instrument": cfg.instrument,
                "detector": cfg.detector, "ngroups": cfg.ngroups if rt in PER_READOUT else None,
                "generator_version": GENERATOR_VERSION, "seed": int(seed),
            }
            log.info("wrote %s", path)
        if written:
            ctxmod.atomic_write_text(root / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")

        # the new rules: the current ones plus (or updated by) this build's selections
        for (ins, rt, match), name in chosen.items():
            rm = rules.setdefault(ins, {}).get(rt)
            if rm is None:
                rm = rules[ins][rt] = ctxmod.Rmap(ins, rt, ctxmod.RMAP_PARKEYS[(ins, rt)])
            rm.entries[match] = name
        dets = sorted({f"{c.instrument} {c.detector} {c.subarray}" for _l, c in cfgs})
        description = f"webbflow synthetic references (seed {seed}) for {', '.join(dets)}"
        result = ctxmod.write_context(root, rules, description[:200])

    sel_files = {label: {rt: chosen[k] for rt, k in sel.items()} for label, sel in selections.items()}
    return BuildResult(
        context=result.context, new_context=result.created, written=written,
        reused=sorted(ctxmod.reference_path(root, n) for n in reused), mappings=result.mappings,
        selections=sel_files,
    )


def build_references(exposures, output_dir, seed: int = 0) -> str:
    """Write synthetic references and a CRDS context for ``exposures`` into ``output_dir``; return the context name.

    ``exposures``: FITS paths or webbflow models (one or many).  ``seed``
    selects the synthetic detectors (the simulator uses the same seed).
    """
    return build_reference_cache(exposures, output_dir, seed=seed).context


def _base_key(cfg: ExposureConfig, rt: str, seed: int) -> str:
    """The content key of a dark/reset without its number of groups (to tell if an existing one can be extended)."""
    return content_key(replace(cfg, ngroups=0), rt, seed)


def _exists(root: Path, name: str) -> bool:
    return ctxmod.reference_path(root, name).exists()


def _new_reference_name(root: Path, instrument: str, reftype: str, pending: set[str]) -> str:
    ext = _EXT.get(reftype, ".fits")
    prefix = f"jwst_{instrument.lower()}_{reftype}_"
    d = ctxmod.references_dir(root, instrument)
    serial = ctxmod._next_serial(d, prefix, ext)
    # names reserved in this build but not yet written
    for p in pending:
        if p.startswith(prefix) and p.endswith(ext):
            serial = max(serial, int(p[len(prefix): -len(ext)]) + 1)
    return f"{prefix}{serial:04d}{ext}"


# ---------------------------------------------------------------------------
# command line


def add_build_command(refs_sub) -> None:
    """Add ``webbflow refs build`` to the ``refs`` subparsers."""
    s = refs_sub.add_parser(
        "build",
        help="write synthetic reference files and a local CRDS context for exposures",
        description="Write a complete set of synthetic reference files for the instrument, detector, "
        "subarray, readout and filter of each FILE into DIR, laid out as a CRDS cache with its own rules "
        "(config/jwst/server_config, pmap/imap/rmaps). Afterwards CRDS_PATH=DIR alone makes webbflow and "
        "jwst select these files. Building into an existing DIR adds a new context and keeps the old ones.",
    )
    s.add_argument("--for", dest="files", nargs="+", required=True, metavar="FILE",
                   help="exposure(s) to build references for (uncal or later products, FITS)")
    s.add_argument("--output-dir", "--output_dir", dest="output_dir", required=True, metavar="DIR",
                   help="the CRDS cache folder to write (created if needed)")
    s.add_argument("--seed", type=int, default=0, help="synthetic detector seed (default 0, as the simulator)")
    s.set_defaults(func=cmd_build)


def cmd_build(args) -> int:
    result = build_reference_cache(args.files, args.output_dir, seed=args.seed)
    state = "new context" if result.new_context else "context unchanged"
    print(f"context: {result.context} ({state})")
    print(f"cache:   {Path(args.output_dir).resolve()}")
    for p in result.written:
        print(f"wrote   {p}")
    for p in result.reused:
        print(f"kept    {p}")
    return 0


__all__ = ["build_references", "build_reference_cache", "BuildResult", "add_build_command"]
