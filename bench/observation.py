"""A whole imaging observation, uncal to Stage 3, webbflow against jwst 3.0 in one run.

    python bench/observation.py [--nexp 4] [--size 1024] [--ngroups 10] [--rounds 1]
                                [--workdir DIR] [--json out.json]

All on the same simulated inputs and the same CRDS cache (``CRDS_PATH``):

1. **Inputs.**  ``webbflow simulate`` writes ``--nexp`` dithered NIRCam exposures
   (``--size`` pixels square, ``--ngroups`` groups), their level-2 and level-3
   associations, references and a local CRDS cache, once, into ``--workdir``.
2. **jwst, as its users run it**, sequentially, each command a fresh process, run
   from the associations' folder: ``strun calwebb_detector1`` on every uncal,
   ``strun calwebb_image2`` on the level-2 association, ``strun calwebb_image3`` on
   the level-3 association.  Its time is the sum of the commands' wall times; its
   peak memory is the largest command's.
3. **webbflow**: ``webbflow run image3 ASN`` on the level-3 association (the earlier
   stages run for the members that need them), into a new folder:
   - *fresh install*: with an empty numba cache (``NUMBA_CACHE_DIR``), as on a new
     machine, so the kernels compile;
   - *warm*: again into a new folder, kernels cached;
   - *unchanged rerun*: the warm command again into the same folder (everything reused).

Each command's wall time, peak RSS and CPU time come from ``/usr/bin/time``.  The
table gives the ratios webbflow/jwst (rerun: against webbflow's warm run; fresh
install: the seconds it adds to the warm run).  Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _child import timed  # bench/ is on sys.path when a benchmark runs as a script

PY = sys.executable
BIN = Path(PY).parent


def simulate(workdir: Path, nexp: int, size: int, ngroups: int) -> Path:
    """The simulated observation's folder (made once)."""
    d = workdir / f"nircam_{nexp}x{size}_{ngroups}g"
    if (d / ".bench-done").exists():
        return d
    if d.exists():
        shutil.rmtree(d)
    t = time.perf_counter()
    subprocess.run([str(BIN / "webbflow"), "simulate", "--output-dir", str(d), "--instrument", "nircam",
                    "--nexp", str(nexp), "--size", str(size), "--ngroups", str(ngroups), "--seed", "7"],
                   check=True, capture_output=True)
    (d / ".bench-done").write_text("")
    print(f"simulated {nexp} exposures of {size}x{size}, {ngroups} groups in {time.perf_counter() - t:.0f} s")
    return d


def run_jwst(obs: Path, work: Path, env: dict) -> dict:
    """strun detector1 on each uncal, image2 on the level-2 association, image3 on the level-3 one."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    for f in obs.glob("*_uncal.fits"):
        shutil.copy(f, work / f.name)
    for f in obs.glob("*_asn.json"):
        shutil.copy(f, work / f.name)
    strun = str(BIN / "strun")
    parts = []
    for f in sorted(work.glob("*_uncal.fits")):
        parts.append(timed([strun, "calwebb_detector1", f.name], work, env))
    for asn in sorted(work.glob("*_image2_*asn.json")):
        parts.append(timed([strun, "calwebb_image2", asn.name], work, env))
    for asn in sorted(work.glob("*_image3_*asn.json")):
        parts.append(timed([strun, "calwebb_image3", asn.name], work, env))
    return {"wall": sum(p["wall"] for p in parts), "rss": max(p["rss"] for p in parts),
            "cpu": sum(p["cpu"] for p in parts), "commands": len(parts)}


def run_webbflow(obs: Path, out: Path, env: dict, fresh: bool = False) -> dict:
    asn = next(iter(sorted(obs.glob("*_image3_*asn.json"))))
    env = dict(env)
    if fresh:
        cache = Path(tempfile.mkdtemp(prefix="numba-fresh-"))
        env["NUMBA_CACHE_DIR"] = str(cache)
    try:
        return timed([str(BIN / "webbflow"), "run", "image3", str(asn), "--output-dir", str(out)], obs, env)
    finally:
        if fresh:
            shutil.rmtree(cache, ignore_errors=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nexp", type=int, default=4)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--ngroups", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=1, help="times each side is run (medians shown)")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "webbflow-bench-observation")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)

    obs = simulate(args.workdir, args.nexp, args.size, args.ngroups)
    env = dict(os.environ, CRDS_PATH=str(obs), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    env.pop("PREFECT_API_URL", None)
    # kernels compiled and cached once before timing anything warm
    run_webbflow(obs, args.workdir / "wf-warmup", env)

    rows: dict[str, list[dict]] = {"jwst": [], "webbflow": [], "webbflow rerun": []}
    for r in range(args.rounds):
        rows["jwst"].append(run_jwst(obs, args.workdir / "jwst", env))
        out = args.workdir / f"wf-{r}"
        shutil.rmtree(out, ignore_errors=True)
        rows["webbflow"].append(run_webbflow(obs, out, env))
        rows["webbflow rerun"].append(run_webbflow(obs, out, env))
    out = args.workdir / "wf-fresh"
    shutil.rmtree(out, ignore_errors=True)
    rows["webbflow fresh install"] = [run_webbflow(obs, out, env, fresh=True)]

    med = {k: {m: statistics.median(x[m] for x in v) for m in ("wall", "rss", "cpu")} for k, v in rows.items()}
    j, w = med["jwst"], med["webbflow"]
    print(f"\n{args.nexp} NIRCam exposures of {args.size}x{args.size}, {args.ngroups} groups, uncal to Stage 3 "
          f"({args.rounds} round(s), medians)\n")
    print(f"{'run':<26}{'wall s':>9}{'peak MiB':>10}{'CPU s':>8}   ratio")
    for k, v in med.items():
        if k == "jwst":
            ratio = ""
        elif k == "webbflow rerun":
            ratio = f"{v['wall'] / w['wall']:.2f}x webbflow's run"
        elif k == "webbflow fresh install":
            ratio = f"+{v['wall'] - w['wall']:.1f} s over a warm run"
        else:
            ratio = f"{v['wall'] / j['wall']:.2f}x wall, {v['rss'] / j['rss']:.2f}x memory"
        print(f"{k:<26}{v['wall']:9.1f}{v['rss']:10.0f}{v['cpu']:8.1f}   {ratio}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": rows,
                                         "medians": med}, indent=2))


if __name__ == "__main__":
    main()
