"""A whole imaging observation, uncal to Stage 3, webbflow against jwst 3.0 in one run.

    python bench/observation.py [--nexp 4] [--size 1024] [--ngroups 10] [--rounds 1]
                                [--workdir DIR] [--json out.json] [--before OLD] [--no-fresh]

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
install: the seconds it adds to the warm run).  A second table compares the stages
by the sum of their steps' times: jwst's from its log (``Step X running`` ..
``done``), webbflow's from the provenance its products record (image2 from the cal
files, Stage 3 from the i2d), with each jwst command's whole wall time beside them.
The load average is printed before and after: on a shared machine compare ratios,
not seconds.  Not a pass/fail test.

``--before OLD`` runs an older checkout too (``OLD/webbflow``, e.g. ``git archive <commit> | tar -x -C
OLD/webbflow``, first on ``PYTHONPATH``), interleaved with this one in each round, prints the ratio of the
two, and compares their last products file for file with ``bench/same_products.py``.

The commands run as a user's would: ``PYTHONDONTWRITEBYTECODE`` is dropped from
their environment (a user's Python caches the bytecode of webbflow's modules; jwst's
was compiled when pip installed it), and no ``PREFECT_API_URL`` is set.
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
from detector1 import jwst_step_times

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
    stages: dict[str, dict] = {}
    for stage, pattern, pipe in (("detector1", "*_uncal.fits", "calwebb_detector1"),
                                 ("image2", "*_image2_*asn.json", "calwebb_image2"),
                                 ("image3", "*_image3_*asn.json", "calwebb_image3")):
        for f in sorted(work.glob(pattern)):
            p = timed([strun, pipe, f.name], work, env, keep_output=True)
            log = work / f"{f.name}.log"
            log.write_text(p.pop("output"))
            parts.append(p)
            st = stages.setdefault(stage, {"wall": 0.0, "steps": 0.0})
            st["wall"] += p["wall"]
            st["steps"] += sum(v for k, v in jwst_step_times(log).items() if not k.endswith("Pipeline"))
    return {"wall": sum(p["wall"] for p in parts), "rss": max(p["rss"] for p in parts),
            "cpu": sum(p["cpu"] for p in parts), "commands": len(parts), "stages": stages}


def webbflow_stage_steps(out: Path) -> dict[str, float]:
    """Sum of the steps' seconds per stage, from the provenance of the products in ``out``."""
    from webbflow import models

    sums = {"detector1": 0.0, "image2": 0.0, "image3": 0.0}
    # image2's i2d of each exposure records no image3 entry
    for pattern, wanted in (("*_cal.fits", ("detector1", "image2")), ("*_i2d.fits", ("image3",))):
        for f in sorted(out.glob(pattern)):
            for entry in models.open(f)._asdf_extra.get("webbflow_provenance") or []:
                if entry.get("pipeline") in wanted:
                    sums[entry["pipeline"]] += sum(float(s["seconds"]) for s in entry.get("steps", []))
    return sums


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
    ap.add_argument("--before", type=Path, help="also run an older checkout, PATH/webbflow, first on PYTHONPATH, "
                                                "interleaved with this one, and compare their products")
    ap.add_argument("--no-fresh", action="store_true", help="skip the fresh-install run")
    args = ap.parse_args(argv)

    obs = simulate(args.workdir, args.nexp, args.size, args.ngroups)
    env = dict(os.environ, CRDS_PATH=str(obs), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    env.pop("PREFECT_API_URL", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    load_before = os.getloadavg()
    # kernels compiled and cached once before timing anything warm
    run_webbflow(obs, args.workdir / "wf-warmup", env)

    rows: dict[str, list[dict]] = {"jwst": [], "webbflow": [], "webbflow rerun": []}
    if args.before:
        before_env = dict(env, PYTHONPATH=os.pathsep.join([str(args.before.resolve())] + [
            p for p in [env.get("PYTHONPATH")] if p]))
        rows["webbflow before"] = []
        run_webbflow(obs, args.workdir / "wf-before-warmup", before_env)
    for r in range(args.rounds):
        rows["jwst"].append(run_jwst(obs, args.workdir / "jwst", env))
        out = args.workdir / f"wf-{r}"
        shutil.rmtree(out, ignore_errors=True)
        rows["webbflow"].append(run_webbflow(obs, out, env))
        rows["webbflow rerun"].append(run_webbflow(obs, out, env))
        if args.before:
            old = args.workdir / f"wf-before-{r}"
            shutil.rmtree(old, ignore_errors=True)
            rows["webbflow before"].append(run_webbflow(obs, old, before_env))
    if not args.no_fresh:
        out = args.workdir / "wf-fresh"
        shutil.rmtree(out, ignore_errors=True)
        rows["webbflow fresh install"] = [run_webbflow(obs, out, env, fresh=True)]

    load_after = os.getloadavg()
    med = {k: {m: statistics.median(x[m] for x in v) for m in ("wall", "rss", "cpu")} for k, v in rows.items()}
    j, w = med["jwst"], med["webbflow"]
    print(f"\n{args.nexp} NIRCam exposures of {args.size}x{args.size}, {args.ngroups} groups, uncal to Stage 3 "
          f"({args.rounds} round(s), medians); load average {load_before[0]:.1f} before, {load_after[0]:.1f} after\n")
    print(f"{'run':<26}{'wall s':>9}{'peak MiB':>10}{'CPU s':>8}   ratio")
    for k, v in med.items():
        if k == "jwst":
            ratio = ""
        elif k == "webbflow rerun":
            ratio = f"{v['wall'] / w['wall']:.2f}x webbflow's run"
        elif k == "webbflow fresh install":
            ratio = f"+{v['wall'] - w['wall']:.1f} s wall, +{v['cpu'] - w['cpu']:.1f} s CPU over a warm run"
        else:
            ratio = f"{v['wall'] / j['wall']:.2f}x wall, {v['cpu'] / j['cpu']:.2f}x CPU, {v['rss'] / j['rss']:.2f}x memory"
        print(f"{k:<26}{v['wall']:9.1f}{v['rss']:10.0f}{v['cpu']:8.1f}   {ratio}")
    # stages, by their steps' seconds (last round): jwst from its logs, webbflow from its products' provenance
    wf = webbflow_stage_steps(args.workdir / f"wf-{args.rounds - 1}")
    js = rows["jwst"][-1]["stages"]
    print(f"\n{'stage (sum of steps)':<22}{'jwst steps s':>13}{'jwst commands s':>17}{'webbflow steps s':>18}   ratio")
    for stage in ("detector1", "image2", "image3"):
        j_st = js.get(stage, {"wall": 0.0, "steps": 0.0})
        r = f"{wf[stage] / j_st['steps']:.2f}x jwst's steps" if j_st["steps"] else ""
        print(f"{stage:<22}{j_st['steps']:13.1f}{j_st['wall']:17.1f}{wf[stage]:18.1f}   {r}")
    med["stages"] = {"jwst": js, "webbflow": wf}
    if args.before:
        from same_products import compare_dirs

        b = med["webbflow before"]
        print(f"\nthis checkout against the one before: {w['wall'] / b['wall']:.2f}x wall, {w['cpu'] / b['cpu']:.2f}x CPU")
        problems, n = compare_dirs(args.workdir / f"wf-before-{args.rounds - 1}", args.workdir / f"wf-{args.rounds - 1}")
        print(f"products of the two, {n} files: " + ("the same (dates and timings aside)" if not problems else
                                                       f"{len(problems)} difference(s):\n  " + "\n  ".join(problems)))
        med["same_products"] = not problems
    med["load"] = {"before": load_before, "after": load_after}
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": rows,
                                         "medians": med}, indent=2))


if __name__ == "__main__":
    main()
