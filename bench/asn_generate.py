"""webbflow's association generator against jwst 3.0's asn_generate, pool by pool.

    python bench/asn_generate.py [--pools NAME,...] [--merged] [--mega] [--json out.json]

Each pool in ../shared/data/associations/pools is expanded as jwst's tests do
(``jwst.associations.tests.helpers.combine_pools``) and written '|'-separated; then

- jwst: ``Main.cli(["--dry-run"], pool=...)`` (default options: candidates and discovered);
- webbflow: ``read_pool`` + ``generate`` on the written pool (reading included);

and both lists are compared with jwst's ``compare_asn_lists`` (file names and fields
too, ``constraints`` and ``code_version`` left out). ``--merged`` adds one pool of
about 500 rows merged from several programs and modes; ``--mega`` adds mega_pool
(1,431 rows; jwst needs more than 5 minutes on it). It prints seconds, the ratio
webbflow/jwst, and whether the associations are the same.  Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
POOLS = REPO.parent / "shared" / "data" / "associations" / "pools"
DEFAULT = ["pool_001_candidates", "pool_002_image_miri", "pool_003_image_nircam", "pool_004_wfs",
           "pool_005_spec_niriss", "pool_007_spec_miri", "pool_019_niriss_wfss", "pool_021_tso",
           "jw00632_dups", "jw09505_20251216t202003_pool", "pool_033_wfs_jitter"]
MERGED = ["pool_001_candidates", "pool_004_wfs", "pool_007_spec_miri", "pool_013_coron_nircam",
          "pool_019_niriss_wfss", "pool_021_tso", "pool_002_image_miri", "pool_003_image_nircam",
          "pool_018_all_exptypes", "pool_006_spec_nirspec"]  # 510 rows


def _strip(a: dict) -> dict:
    return {k: v for k, v in a.items() if k not in ("constraints", "code_version")}


def run(label: str, sources: list[Path], work: Path) -> dict:
    from jwst.associations.lib.diff import MultiDiffError, compare_asn_lists
    from jwst.associations import AssociationPool
    from jwst.associations.main import Main
    from jwst.associations.tests.helpers import combine_pools

    from webbflow.flows.asn import generate, read_pool

    pool = combine_pools([str(p) for p in sources] if len(sources) > 1 else str(sources[0]))
    path = work / f"{label}.csv"
    pool.write(str(path), format="ascii", delimiter="|", overwrite=True)
    pool.meta["pool_file"] = str(path)

    t, c = time.perf_counter(), time.process_time()
    # jwst reads the written pool as webbflow does (the merged table in memory holds masked
    # cells where a pool lacks a column; read back, they are 'null' as in any pool file)
    theirs = Main.cli(["--dry-run"], pool=AssociationPool.read(str(path))).associations
    t_jwst, c_jwst = time.perf_counter() - t, time.process_time() - c
    theirs = {a.asn_name + ".json": _strip(json.loads(a.dump(format="json")[1])) for a in theirs}

    t, c = time.perf_counter(), time.process_time()
    ours = generate(read_pool(path, allow_duplicates=True))
    t_ours, c_ours = time.perf_counter() - t, time.process_time() - c
    ours = {a.filename: _strip(a.to_dict()) for a in ours}

    try:
        names = [a["products"][0]["name"] for a in theirs.values()]
        if len(set(names)) == len(names):
            compare_asn_lists(list(ours.values()), list(theirs.values()))
        same_asns = True
    except MultiDiffError:
        same_asns = False
    identical = sum(ours.get(f) == a for f, a in theirs.items())
    return {"pool": label, "rows": len(pool), "jwst_asns": len(theirs), "webbflow_asns": len(ours),
            "same_associations": same_asns, "identical_files": identical,
            "jwst_s": t_jwst, "webbflow_s": t_ours, "ratio": t_ours / t_jwst if t_jwst else None,
            "jwst_cpu_s": c_jwst, "webbflow_cpu_s": c_ours}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pools", default=",".join(DEFAULT), help="comma-separated pool names (no .csv)")
    ap.add_argument("--merged", action="store_true", help="add a ~500-row pool merged from several")
    ap.add_argument("--mega", action="store_true", help="add mega_pool (jwst: > 5 min)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    logging.disable(logging.WARNING)
    cases = [(n, [POOLS / f"{n}.csv"]) for n in args.pools.split(",") if n]
    if args.merged:
        cases.append(("merged", [POOLS / f"{n}.csv" for n in MERGED]))
    if args.mega:
        cases.append(("mega_pool", [POOLS / "mega_pool.csv"]))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'pool':32s} {'rows':>5s} {'asns':>9s} {'same':>5s} {'files':>9s} {'jwst s':>8s} "
              f"{'webbflow s':>10s} {'ratio':>7s}")
        for label, sources in cases:
            r = run(label, sources, Path(tmp))
            rows.append(r)
            print(f"{r['pool']:32s} {r['rows']:5d} {r['webbflow_asns']:4d}/{r['jwst_asns']:<4d} "
                  f"{'yes' if r['same_associations'] else 'NO':>5s} {r['identical_files']:4d}/{r['jwst_asns']:<4d} "
                  f"{r['jwst_s']:8.2f} {r['webbflow_s']:10.3f} {r['ratio']:7.4f}", flush=True)
    tj = sum(r["jwst_s"] for r in rows)
    tw = sum(r["webbflow_s"] for r in rows)
    cj = sum(r["jwst_cpu_s"] for r in rows)
    cw = sum(r["webbflow_cpu_s"] for r in rows)
    print(f"total: jwst {tj:.1f} s, webbflow {tw:.2f} s, ratio {tw / tj:.4f}; "
          f"CPU time (what a shared machine's load does not inflate): jwst {cj:.1f} s, webbflow {cw:.2f} s, "
          f"ratio {cw / cj:.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
