"""calwebb_spec3 on many NIRCam WFSS sources, webbflow against jwst 3.0 in one run.

    python bench/wfss_spec3.py [--sources 20,200] [--rounds 1] [--skip-jwst] [--workdir DIR] [--json out.json]

The input is tests/wfss_scene.py's observation with ``--sources`` catalogue sources: two dispersed
NRC_WFSS exposures (F444W/GRISMR, full frame), calibrated to cal files by jwst's own Stage 2 steps
(assign_wcs, extract_2d, srctype, photom), each holding one cutout per source and order.  Both
pipelines then run in a fresh process on the same spec3 association, from its folder, with the real
2019 CRDS rules (context jwst_0541, local mode) and extract_1d's apcorr/psf references N/A with
``apply_apcorr=false``: jwst's Spec3Pipeline as the parity test calls it, webbflow as
``webbflow run spec3``.  Both write ``<product>_x1d.fits`` and ``<product>_c1d.fits``.

Wall time, peak RSS and CPU time of each command come from ``/usr/bin/time``; the table gives, for
each source count, the ratios webbflow/jwst and checks that both wrote the same product names;
with several counts, how webbflow's peak memory grew between the smallest and the largest, against
the size of one cal exposure and of the products.  The load average (start, end) is printed with
the figures: on the shared machine the wall times depend on it.  Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from _child import timed  # bench/ is on sys.path when a benchmark runs as a script

PY = sys.executable
BIN = Path(PY).parent
REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
NA = {"override_apcorr": "N/A", "override_psf": "N/A", "apply_apcorr": False}

JWST_CHILD = """
import sys, warnings
warnings.simplefilter("ignore")
from jwst.pipeline import Spec3Pipeline
p = Spec3Pipeline(steps={"extract_1d": %r})
p.prefetch_references = False
p.save_results = True
p.output_dir = sys.argv[2]
p.run(sys.argv[1])
""" % (NA,)


def make_inputs(folder: Path, nsources: int) -> Path:
    """The jwst-calibrated cal files of ``nsources`` sources and their spec3 association (kept between runs)."""
    sys.path.insert(0, str(REPO / "tests"))
    from wfss_scene import ASN, jwst_wfss_cals, many_sources

    asn = folder / "inputs" / ASN
    if asn.exists():
        return asn
    cache = folder / "crds"
    shutil.rmtree(cache, ignore_errors=True)
    shutil.copytree(SHARED / "crds-rules", cache)
    return jwst_wfss_cals(folder / "inputs", folder / "refs", cache, sources=many_sources(nsources))["asn"]


def run_one(n: int, args) -> dict:
    """Both pipelines (or webbflow alone, ``--skip-jwst``) on ``n`` sources, ``--rounds`` times."""
    work = args.workdir / f"n{n}"
    asn = make_inputs(work, n)
    env = dict(os.environ, CRDS_PATH=str(work / "crds"), CRDS_CONTEXT="jwst_0541.pmap", CRDS_MODE="local")
    env.pop("PREFECT_API_URL", None)
    steps = [f"--steps.extract_1d.{k}={v}" for k, v in NA.items()]
    sides = ("webbflow",) if args.skip_jwst else ("jwst", "webbflow")
    runs: dict[str, list[dict]] = {k: [] for k in sides}
    names, sizes = {}, {}
    for r in range(args.rounds):
        for side in sides:
            folder = work / f"{side}-{r}"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            for p in asn.parent.iterdir():
                shutil.copy(p, folder / p.name)
            inputs = {p.name for p in folder.iterdir()}
            if side == "jwst":
                cmd = [PY, "-c", JWST_CHILD, asn.name, str(folder)]
            else:
                cmd = [str(BIN / "webbflow"), "run", "spec3", asn.name, "--output-dir", str(folder), *steps]
            runs[side].append(timed(cmd, folder, env))
            names[side] = {p.name for p in folder.iterdir()} - inputs
            sizes[side] = sum((folder / x).stat().st_size for x in names[side]) / 2**20
    cals = sorted(asn.parent.glob("*_cal.fits"))
    med = {k: {m: statistics.median(x[m] for x in v) for m in ("wall", "rss", "cpu")} for k, v in runs.items()}
    return {"n": n, "runs": runs, "medians": med, "names": {k: sorted(v) for k, v in names.items()},
            "product_mib": sizes.get("webbflow"), "cal_mib": max(p.stat().st_size for p in cals) / 2**20}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sources", default="200", help="source counts, comma-separated (e.g. 20,200)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--skip-jwst", action="store_true", help="webbflow alone (its memory against the source count)")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "webbflow-bench-wfss-spec3")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    counts = [int(x) for x in str(args.sources).split(",") if x.strip()]
    load0 = os.getloadavg()
    results = [run_one(n, args) for n in counts]
    load1 = os.getloadavg()
    print(f"\ncalwebb_spec3 on NIRCam WFSS sources x 2 exposures x 2 orders ({args.rounds} round(s), medians); "
          f"load average {load0[0]:.1f} at the start, {load1[0]:.1f} at the end (2 cores)\n")
    print(f"{'sources':>8} {'':<10}{'wall s':>9}{'peak MiB':>10}{'CPU s':>8}   products")
    for res in results:
        for k, v in res["medians"].items():
            print(f"{res['n']:>8} {k:<10}{v['wall']:9.1f}{v['rss']:10.0f}{v['cpu']:8.1f}   {res['names'][k]}")
    print()
    for res in results:
        med = res["medians"]
        if "jwst" in med:
            j, w = med["jwst"], med["webbflow"]
            print(f"{res['n']:>4} sources: webbflow/jwst {w['wall'] / j['wall']:.2f}x wall, {w['cpu'] / j['cpu']:.2f}x CPU, "
                  f"{w['rss'] / j['rss']:.2f}x peak memory; same product names: {res['names']['jwst'] == res['names']['webbflow']}")
    if len(results) > 1:
        lo, hi = results[0], results[-1]
        grow = hi["medians"]["webbflow"]["rss"] - lo["medians"]["webbflow"]["rss"]
        print(f"webbflow peak memory {lo['n']} -> {hi['n']} sources: {grow:+.0f} MiB; one cal exposure of {hi['n']} sources "
              f"is {hi['cal_mib']:.0f} MiB on disk, the x1d + c1d {hi['product_mib']:.0f} MiB")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "load": [load0, load1],
                                         "results": results}, indent=2))


if __name__ == "__main__":
    main()
