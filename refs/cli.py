"""``webbflow refs ...`` (and, later, ``webbflow simulate``) commands.

``add_commands(sub)`` receives the top-level subparsers object of the
``webbflow`` command.  It creates one ``refs`` parser whose own subparsers
object holds the reference-data commands; each command is added by its own
function taking that object (``add_bestrefs_command(refs_sub)``).  To add a
command: write ``add_<name>_command(refs_sub)`` and call it from
``add_commands``; top-level commands (``simulate``) take ``sub`` instead.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import ParameterError


def add_commands(sub) -> None:
    """Attach the reference-data commands to the top-level parser."""
    refs = sub.add_parser(
        "refs",
        help="reference data: CRDS selection (bestrefs), synthetic references",
        description="Reference-file commands. CRDS is configured by its own variables: "
        "CRDS_PATH (the cache), CRDS_SERVER_URL, CRDS_CONTEXT.",
    )
    refs_sub = refs.add_subparsers(dest="refs_command", metavar="REFS_COMMAND")
    refs.set_defaults(func=lambda args: _help(refs))
    add_bestrefs_command(refs_sub)
    # `refs build` imports the synthetic references (and all models, about 1.5 s): its parser is
    # added only when `refs` is the command given, so that other commands start without them
    _on_first_parse(refs, lambda: _add_build(refs_sub))
    from .sim_cli import add_simulate_command

    add_simulate_command(sub)


def _add_build(refs_sub) -> None:
    from .build import add_build_command

    add_build_command(refs_sub)


def _on_first_parse(parser: argparse.ArgumentParser, fill) -> None:
    """Call ``fill()`` before ``parser`` first parses: argparse parses a sub-command's
    arguments with the sub-command's own parser, and only for the command given."""
    parse = parser.parse_known_args

    def parse_known_args(*args, **kwargs):
        if parser.__dict__.pop("parse_known_args", None) is not None:
            fill()
        return parse(*args, **kwargs)

    parser.parse_known_args = parse_known_args


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


# ---------------------------------------------------------------------------
# refs bestrefs


def add_bestrefs_command(refs_sub) -> None:
    s = refs_sub.add_parser(
        "bestrefs",
        help="show the reference files CRDS selects for exposures",
        description="Print, for each FILE, every reference type with the file CRDS selects, or N/A. "
        "By default the reference types are those crds finds applicable to the exposure type "
        "(as `crds bestrefs` does); --all-types lists every type the context defines for the "
        "instrument. Nothing is downloaded.",
    )
    s.add_argument("files", nargs="+", metavar="FILE", help="exposure(s): uncal, rate, cal ... FITS or ASDF")
    s.add_argument("--context", default=None,
                   help="CRDS rules, e.g. jwst_0541.pmap (default: CRDS_CONTEXT, else crds' default)")
    s.add_argument("--reftypes", default=None, help="comma-separated reference types, e.g. dark,flat")
    s.add_argument("--all-types", action="store_true", help="every reference type of the instrument's rules")
    s.set_defaults(func=cmd_bestrefs)


def format_bestrefs(path: str, result) -> list[str]:
    """The lines printed for one file: a header line, then ``reftype  value``."""
    exp = result.exp_type or "-"
    lines = [f"# {path}  context={result.context}  instrument={result.instrument}  exp_type={exp}"]
    width = max([len(r) for r in result.choices] + [10])
    for rt, c in result.choices.items():
        note = ""
        if c.kind == "nomatch":
            note = f"  (no matching rule: {c.value})"
        elif c.kind == "unknown":
            note = f"  (not a reference type of {result.instrument} in {result.context})"
        lines.append(f"{rt:<{width}}  {c.shown}{note}")
    return lines


def cmd_bestrefs(args) -> int:
    from .select import bestrefs

    reftypes = None
    if args.reftypes is not None:
        reftypes = [r.strip() for r in args.reftypes.split(",") if r.strip()]
        if not reftypes:
            raise ParameterError("--reftypes is empty; give e.g. --reftypes dark,flat")
    for i, f in enumerate(args.files):
        result = bestrefs(f, context=args.context, reftypes=reftypes, all_types=args.all_types)
        if i:
            print()
        print("\n".join(format_bestrefs(f, result)))
        sys.stdout.flush()
    return 0
