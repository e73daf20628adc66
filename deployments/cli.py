"""``webbflow deploy`` and ``webbflow reprocess``: the operations commands.

``add_commands(sub)`` attaches them to the ``webbflow`` command's subparsers.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ParameterError, WebbflowError


def add_commands(sub) -> None:
    from . import DEFAULT_CRON, DEFAULT_POOL

    s = sub.add_parser(
        "deploy",
        help="create the Prefect deployments (a process work pool, one deployment per flow, scheduled reprocessing)",
        description="Register webbflow's deployments (detector1 and association per instrument family, image2, image3, "
        "guider, dark, reprocess) "
        "with the Prefect server at PREFECT_API_URL, on a process work pool (created if missing). Then start a worker: "
        "prefect worker start --pool POOL.",
    )
    s.add_argument("--pool", default=DEFAULT_POOL, help=f"process work pool (default {DEFAULT_POOL})")
    s.add_argument("--products", metavar="DIR", default=None,
                   help="products folder the scheduled reprocessing watches (without it the schedule is off)")
    s.add_argument("--cron", default=DEFAULT_CRON, help=f"reprocessing schedule, UTC (default {DEFAULT_CRON!r})")
    s.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment for every run, e.g. --env CRDS_PATH=/data/crds (repeatable)")
    s.add_argument("--only", action="append", default=None, metavar="ENTRY",
                   help="deploy only these entry points (repeatable): detector1_nir, detector1_miri, image2, image3, "
                   "guider, dark, association_nir, association_miri, reprocess")
    s.set_defaults(func=cmd_deploy)

    s = sub.add_parser(
        "reprocess",
        help="redo the products whose best references changed in a (newer) CRDS context",
        description="Compare, for every exposure in PRODUCTS (a folder or product files), CRDS' best references under "
        "the context its products recorded and under CONTEXT (default: the newest), redo the exposures whose "
        "references changed from the earliest changed stage, remake the Stage 3 products that depend on them, and "
        "write a report (JSON and markdown).",
    )
    s.add_argument("products", nargs="+", help="a products folder, or product files (_cal, _rate, ...)")
    s.add_argument("--context", default=None, help="CRDS context, e.g. jwst_0002.pmap (default: the newest)")
    s.add_argument("--raw-dir", "--raw_dir", dest="raw_dirs", action="append", default=None, metavar="DIR",
                   help="folder holding the _uncal files (repeatable; default: the products and associations' folders)")
    s.add_argument("--asn", dest="associations", action="append", default=None, metavar="ASN",
                   help="level-3 association whose products to remake (repeatable; default: *_asn.json found)")
    s.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true", help="only report what would be redone")
    s.add_argument("--report-dir", "--report_dir", dest="report_dir", default=None,
                   help="where to write the report (default: the products folder)")
    s.set_defaults(func=cmd_reprocess)


def _parse_env(items: list[str]) -> dict[str, str]:
    env = {}
    for item in items:
        if "=" not in item:
            raise ParameterError(f"--env {item!r}: use KEY=VALUE")
        k, v = item.split("=", 1)
        env[k.strip()] = v
    return env


def cmd_deploy(args) -> int:
    if not os.environ.get("PREFECT_API_URL"):
        from prefect.settings import get_current_settings

        if not get_current_settings().api.url:
            raise WebbflowError(
                "no Prefect server: start one (prefect server start) and set PREFECT_API_URL, "
                "e.g. PREFECT_API_URL=http://127.0.0.1:4200/api"
            )
    from . import deploy_all

    ids = deploy_all(work_pool=args.pool, products_dir=args.products, cron=args.cron, env=_parse_env(args.env),
                     names=args.only)
    for name, dep_id in ids.items():
        print(f"deployed {name} ({dep_id})")
    sched = f"reprocess runs at {args.cron!r} (UTC) on {Path(args.products).resolve()}" if args.products else \
        "reprocess schedule is off: give --products DIR, or set its products parameter in the UI and turn it on"
    print(sched)
    print(f"start a worker: prefect worker start --pool {args.pool}")
    return 0


def cmd_reprocess(args) -> int:
    from ..flows.cli import _quiet_prefect_console
    from ..flows.reprocess import run_reprocess

    _quiet_prefect_console(getattr(args, "verbose", False))
    products = args.products[0] if len(args.products) == 1 and Path(args.products[0]).is_dir() else args.products
    rep = run_reprocess(products, context=args.context, raw_dirs=args.raw_dirs, associations=args.associations,
                        dry_run=args.dry_run, report_dir=args.report_dir)
    s = rep["summary"]
    verb = "would be redone" if args.dry_run else "redone"
    print(f"context {rep['context']}: {s['exposures']} exposures checked, {s['redone']} {verb}, "
          f"{s['unchanged']} unchanged, {s['failed']} failed; Stage 3 products {verb}: {s['stage3_redone']}")
    for e in rep["exposures"]:
        if e["redo_from"]:
            changed = ", ".join(f"{rt} {c['old']} -> {c['new']}" for rt, c in sorted(e["changed"].items()))
            state = f"error: {e['error']}" if e["error"] else f"from {e['redo_from']}"
            print(f"  {e['root']}: {state} ({changed})")
    for s3 in rep["stage3"]:
        print(f"  {s3['product']}: " + (f"error: {s3['error']}" if s3["error"] else s3["reason"]))
    print(f"report: {rep['report_markdown']}")
    return 1 if s["failed"] else 0


__all__ = ["add_commands", "cmd_deploy", "cmd_reprocess"]
