"""``webbflow asn generate|pool|from-list``: association tools on the command line."""

from __future__ import annotations

import os
from pathlib import Path


def add_commands(sub) -> None:
    """Add ``asn`` and its sub-commands to the ``webbflow`` parser."""
    asn = sub.add_parser("asn", help="make associations: from a pool (generate), a pool from exposures (pool), "
                                      "an association from a list of files (from-list)")
    asub = asn.add_subparsers(dest="asn_command", metavar="ASN_COMMAND", required=True)

    g = asub.add_parser("generate", help="generate the associations of a pool (jwst's asn_generate)")
    g.add_argument("pool", help="association pool ('|'-separated table)")
    g.add_argument("-o", "--output-dir", "--output_dir", dest="output_dir", default=".")
    mode = g.add_mutually_exclusive_group()
    mode.add_argument("-i", "--ids", nargs="+", dest="candidate_ids", default=None,
                      help="only these association candidate ids")
    mode.add_argument("--all-candidates", action="store_true", help="only the candidates' associations, "
                      "none discovered")
    g.add_argument("-r", "--rules", action="append", default=None,
                   help="rule set to use: level2b, level3 or a rule name (repeatable; default: all)")
    g.add_argument("--version-id", default=None, nargs="?", const=True,
                   help="tag names with this version (a timestamp when given without a value)")
    g.add_argument("--dry-run", action="store_true", help="list the associations, write nothing")
    g.add_argument("--allow-duplicates", action="store_true",
                   help="accept rows that repeat an exposure's file name (jwst's synthetic test pools do)")
    g.add_argument("--prefect", action="store_true", help="run as the asn-generate Prefect flow")
    g.set_defaults(func=cmd_generate)

    p = asub.add_parser("pool", help="make a pool from exposure headers (jwst's mkpool)")
    p.add_argument("files", nargs="+", help="exposures (FITS)")
    p.add_argument("-o", "--output", default=None, help="pool file to write (default: print it)")
    p.add_argument("--asn-candidate", default=None, help="further candidates, e.g. \"[('c1000', 'mosaic')]\"")
    p.add_argument("--dms-note", default="")
    p.add_argument("--is-imprt", default="f")
    p.add_argument("--pntgtype", default="science")
    p.set_defaults(func=cmd_pool)

    f = asub.add_parser("from-list", help="one association from a list of files (jwst's asn_from_list)")
    f.add_argument("files", nargs="+")
    f.add_argument("-o", "--output-file", required=True)
    f.add_argument("--product-name", default=None)
    f.add_argument("-r", "--rule", default="DMS_Level3_Base", help="DMS_Level3_Base or DMSLevel2bBase")
    f.set_defaults(func=cmd_from_list)


def cmd_pool(args) -> int:
    import sys

    from .mkpool import make_pool, write_pool

    table = make_pool(args.files, asn_candidate=args.asn_candidate, dms_note=args.dms_note,
                      is_imprt=args.is_imprt, pntgtype=args.pntgtype)
    if args.output:
        print(f"wrote {write_pool(table, args.output)}")
    else:
        table.write(sys.stdout, format="ascii", delimiter="|")
    return 0


def cmd_from_list(args) -> int:
    from .fromlist import asn_from_list, write_asn

    print(f"wrote {write_asn(asn_from_list(args.files, args.product_name, args.rule), args.output_file)}")
    return 0


def _select_rules(names):
    from ...errors import ParameterError
    from .rules import RULES

    if not names:
        return RULES
    chosen = []
    for name in names:
        key = os.path.basename(name).removesuffix(".py").lower()
        level = {"level2b": 2, "rules_level2b": 2, "level3": 3, "rules_level3": 3}.get(key)
        hits = [r for r in RULES if (r.level == level if level else r.name.lower() == key)]
        if not hits:
            known = "level2b, level3, " + ", ".join(r.name for r in RULES)
            raise ParameterError(f"unknown rules {name!r}; known: {known}")
        chosen.extend(h for h in hits if h not in chosen)
    return tuple(chosen)


def cmd_generate(args) -> int:
    from .engine import generate, write_associations
    from .pool import read_pool

    rules = _select_rules(args.rules)
    if args.prefect:
        from .flow import asn_generate

        for p in asn_generate(args.pool, args.output_dir, args.candidate_ids, args.all_candidates,
                              args.version_id, args.dry_run, rules, args.allow_duplicates):
            print(p if args.dry_run else f"wrote {p}")
        return 0
    pool = read_pool(args.pool, allow_duplicates=args.allow_duplicates)
    asns = generate(pool, rules=rules, candidate_ids=args.candidate_ids, all_candidates=args.all_candidates,
                    version_id=args.version_id)
    if args.dry_run:
        for a in asns:
            print(f"{a.filename}  {a.asn_type}  {a.to_dict()['products'][0]['name']}  "
                  f"({len(a.members())} members)")
        return 0
    for p in write_associations(asns, Path(args.output_dir)):
        print(f"wrote {p}")
    return 0
