"""MIRI LRS, uncal to Stage 3, webbflow against jwst 3.0 in one run.

    python bench/miri_lrs.py [--nints 12] [--rounds 1] [--workdir DIR] [--json out.json] [--per-stage] [--where]

Two simulated observations, each with its references and local CRDS cache (``CRDS_PATH``),
made once into ``--workdir`` by ``webbflow simulate``:

- **fixed slit** (``MIR_LRS-FIXEDSLIT``): two nods of a point source along the slit, full frame;
- **slitless time series** (``MIR_LRS-SLITLESS``): one SLITLESSPRISM exposure of ``--nints``
  integrations with a transit.

For each, alternately and each command a fresh process:

- **jwst, as its users run it**, from the associations' folder: ``strun calwebb_detector1`` on
  every uncal, ``strun calwebb_spec2`` on every level-2 association, then ``strun
  calwebb_spec3`` (fixed slit) or ``strun calwebb_tso3`` (slitless) on the level-3 association.
  Its time is the sum of the commands' wall times; its peak memory the largest command's.
- **webbflow**: ``webbflow run calwebb_spec3 ASN`` or ``webbflow run calwebb_tso3 ASN`` on the
  level-3 association alone, which runs detector1 and spec2 for the members first, into a new
  folder; then the same command again into the same folder (the unchanged rerun).

Wall time, peak RSS and CPU time come from ``/usr/bin/time``.  The table gives webbflow/jwst
ratios.  On a shared machine compare ratios, not seconds.  Not a pass/fail test.

``--per-stage`` also runs webbflow as jwst's chain is run, one ``webbflow run`` command per exposure
and stage (detector1, spec2, then the level-3 pipeline) from a copy of the inputs, and compares
each stage's peak memory and CPU time with jwst's command for it.  ``--modes "slitless TSO"`` runs
one mode only.

``--where`` then says where webbflow's memory goes: the same ``webbflow run`` in a fresh process whose
resident size is sampled every 5 ms, giving the size after the imports (before any exposure is read),
after the compiled kernels are loaded, and each stage's and each step's peak (the step that sets a
stage's peak is named).
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

MODES = {
    # name: (EXP_TYPE, extra simulate options, level-3 pipeline)
    "fixed slit": ("MIR_LRS-FIXEDSLIT", [], "calwebb_spec3"),
    "slitless TSO": ("MIR_LRS-SLITLESS", ["--nints", "{nints}"], "calwebb_tso3"),
}


def simulate(workdir: Path, exp_type: str, extra: list[str]) -> Path:
    """The simulated observation's folder (made once)."""
    d = workdir / exp_type.lower()
    if (d / ".bench-done").exists():
        return d
    if d.exists():
        shutil.rmtree(d)
    t = time.perf_counter()
    subprocess.run([str(BIN / "webbflow"), "simulate", "--instrument", "miri", "--exp-type", exp_type,
                    "--output-dir", str(d), "--seed", "7", *extra], check=True, capture_output=True)
    (d / ".bench-done").write_text("")
    print(f"simulated {exp_type} in {time.perf_counter() - t:.0f} s")
    return d


def level3_asn(obs: Path, pipeline: str) -> Path:
    kind = pipeline.removeprefix("calwebb_")
    found = sorted(obs.glob(f"*_{kind}_*asn.json"))
    if not found:
        raise SystemExit(f"{obs}: no {kind} association")
    return found[0]


def level2_asns(obs: Path) -> list[Path]:
    return sorted(p for p in obs.glob("*_asn.json") if json.loads(p.read_text()).get("asn_type", "").endswith("spec2"))


def run_chain(obs: Path, work: Path, pipeline: str, env: dict, tool: str = "jwst") -> dict:
    """The chain as jwst's users run it, from a copy of the inputs: detector1 on each uncal, spec2 on
    each level-2 association, then the level-3 pipeline, one command each; ``tool`` "jwst" runs
    ``strun``, "webbflow" ``webbflow run`` (into the same folder).  Time and CPU are the commands'
    sums, the peak the largest command's."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    for f in list(obs.glob("*_uncal.fits")) + list(obs.glob("*_asn.json")):
        shutil.copy(f, work / f.name)
    commands = [["calwebb_detector1", f.name] for f in sorted(work.glob("*_uncal.fits"))]
    commands += [["calwebb_spec2", f.name] for f in level2_asns(work)]
    commands.append([pipeline, level3_asn(work, pipeline).name])
    if tool == "jwst":
        parts = [timed([str(BIN / "strun"), *c], work, env) for c in commands]
    else:
        parts = [timed([str(BIN / "webbflow"), "run", *c, "--output-dir", "."], work, env) for c in commands]
    return {"wall": sum(p["wall"] for p in parts), "rss": max(p["rss"] for p in parts),
            "cpu": sum(p["cpu"] for p in parts), "commands": len(parts),
            "stages": _by_stage(commands, parts)}


def _by_stage(commands: list[list[str]], parts: list[dict]) -> dict:
    """Per pipeline (detector1, spec2, the level-3 one): summed wall and CPU, largest peak."""
    out: dict[str, dict] = {}
    for c, p in zip(commands, parts):
        s = out.setdefault(c[0].removeprefix("calwebb_"), {"wall": 0.0, "cpu": 0.0, "rss": 0.0})
        s["wall"] += p["wall"]
        s["cpu"] += p["cpu"]
        s["rss"] = max(s["rss"], p["rss"])
    return out


def run_webbflow(obs: Path, out: Path, pipeline: str, env: dict) -> dict:
    return timed([str(BIN / "webbflow"), "run", pipeline, str(level3_asn(obs, pipeline)), "--output-dir", str(out)],
                 obs, env)


# the webbflow command in this process, its resident size sampled every 5 ms; prints one JSON line:
# {"imports": MiB after the imports, "kernels": MiB once a compiled kernel has run, "stages": [[stage,
# MiB at its start, its peak, MiB at its end, step of the peak, that step's rise]], "peak": MiB}
WHERE = r"""
import json, sys, threading, time
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
state = {"peak": 0.0, "step_peak": 0.0, "all": 0.0}
def sample():
    while True:
        r = rss()
        for k in ("peak", "step_peak", "all"):
            state[k] = max(state[k], r)
        time.sleep(0.005)
threading.Thread(target=sample, daemon=True).start()
from webbflow.flows import association, cli, stage
from webbflow.tasks import load_all
load_all()
association.warm_up_readers()
out = {"imports": rss(), "stages": []}
import numba, numpy as np
from webbflow.tasks import _saturation_kernel as k
k.flag_saturated(np.zeros((1, 2, 4, 4), np.float32), np.zeros((1, 2, 4, 4), np.uint8), np.ones((4, 4), np.float32),
                 np.zeros((4, 4), bool), sat=2, dnu=1, ad_floor=64, n_pix_grow_sat=1, read_pattern=None)
out["kernels"] = rss()
current = {"steps": []}
def staged(name, fn):
    def run(*a, **kw):
        start = rss(); state["peak"] = start; current["steps"] = []
        try:
            return fn(*a, **kw)
        finally:
            top = max(current["steps"], key=lambda x: x[1], default=("-", 0.0, 0.0))
            out["stages"].append([name, start, state["peak"], rss(), top[0], top[2]])
    return run
call_flow = association.call_flow
association.call_flow = lambda fl, *a, **kw: staged(getattr(fl, "name", "?"), call_flow)(fl, *a, **kw)
association._stage3_product = staged("stage 3", association._stage3_product)
execute = stage._execute
def step(name, *a, **kw):
    before = rss(); state["step_peak"] = before
    try:
        return execute(name, *a, **kw)
    finally:
        current["steps"].append((name, state["step_peak"], state["step_peak"] - before))
stage._execute = step
try:
    cli.main(sys.argv[1:])
except SystemExit:
    pass
out["peak"] = state["all"]
print(json.dumps(out))
"""


def where(obs: Path, out: Path, pipeline: str, env: dict) -> dict:
    """Where the memory of ``webbflow run`` goes (see WHERE), on a fresh output folder."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [PY, "-c", WHERE, "run", pipeline, str(level3_asn(obs, pipeline)), "--output-dir", str(out)]
    proc = subprocess.run(cmd, cwd=obs, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd[3:])}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def print_where(name: str, w: dict) -> None:
    print(f"\n{name}: where webbflow's memory goes (MiB, resident)")
    print(f"  imports (models, WCS, Prefect, every step)  {w['imports']:7.0f}")
    print(f"  + the compiled kernels loaded               {w['kernels']:7.0f}")
    print(f"  {'stage':<22}{'start':>8}{'peak':>8}{'end':>8}   step of the peak (its rise)")
    for stage, start, peak, end, top, rise in w["stages"]:
        label = "  the member, whole" if stage == "exposure" else stage  # its stages, then the heap trimmed
        print(f"  {label:<22}{start:8.0f}{peak:8.0f}{end:8.0f}   {top} (+{rise:.0f})")
    print(f"  whole command's peak                        {w['peak']:7.0f}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nints", type=int, default=12, help="integrations of the slitless time series")
    ap.add_argument("--rounds", type=int, default=1, help="times each side is run (medians shown)")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "webbflow-bench-miri-lrs")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--where", action="store_true", help="also break webbflow's peak memory down by stage and step")
    ap.add_argument("--per-stage", action="store_true",
                    help="also run webbflow one command per stage, as jwst's strun chain runs, and compare stage by stage")
    ap.add_argument("--modes", default=",".join(MODES), help="comma-separated modes to run (default: both)")
    args = ap.parse_args(argv)

    results = {}
    load_before = os.getloadavg()
    for name, (exp_type, extra, pipeline) in MODES.items():
        if name not in args.modes.split(","):
            continue
        obs = simulate(args.workdir, exp_type, [x.format(nints=args.nints) for x in extra])
        env = dict(os.environ, CRDS_PATH=str(obs), PREFECT_SERVER_ANALYTICS_ENABLED="false")
        env.pop("PREFECT_API_URL", None)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        run_webbflow(obs, args.workdir / f"{exp_type}-warmup", pipeline, env)  # kernels compiled once
        rows: dict[str, list[dict]] = {"jwst": [], "webbflow": [], "webbflow rerun": []}
        for r in range(args.rounds):
            rows["jwst"].append(run_chain(obs, args.workdir / f"{exp_type}-jwst", pipeline, env))
            out = args.workdir / f"{exp_type}-wf-{r}"
            shutil.rmtree(out, ignore_errors=True)
            rows["webbflow"].append(run_webbflow(obs, out, pipeline, env))
            rows["webbflow rerun"].append(run_webbflow(obs, out, pipeline, env))
            if args.per_stage:
                rows.setdefault("webbflow per stage", []).append(
                    run_chain(obs, args.workdir / f"{exp_type}-wf-stages", pipeline, env, tool="webbflow"))
        results[name] = {k: {m: statistics.median(x[m] for x in v) for m in ("wall", "rss", "cpu")}
                         for k, v in rows.items()}
        if args.per_stage:
            results[name]["stages"] = {
                side: {st: {m: statistics.median(x["stages"][st][m] for x in rows[key]) for m in ("wall", "rss", "cpu")}
                       for st in rows[key][0]["stages"]}
                for side, key in (("jwst", "jwst"), ("webbflow", "webbflow per stage"))}
        if args.where:
            results[name]["where"] = where(obs, args.workdir / f"{exp_type}-where", pipeline, env)
    load_after = os.getloadavg()

    print(f"\nMIRI LRS, uncal to Stage 3 ({args.rounds} round(s), medians); load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after\n")
    print(f"{'mode':<15}{'run':<19}{'wall s':>9}{'peak MiB':>10}{'CPU s':>8}   ratio")
    for name, med in results.items():
        j, w = med["jwst"], med["webbflow"]
        for k, v in med.items():
            if k in ("where", "stages"):
                continue
            if k == "jwst":
                ratio = ""
            elif k == "webbflow rerun":
                ratio = f"{v['wall'] / w['wall']:.2f}x webbflow's run"
            else:
                ratio = (f"{v['wall'] / j['wall']:.2f}x wall, {v['cpu'] / j['cpu']:.2f}x CPU, "
                         f"{v['rss'] / j['rss']:.2f}x memory")
            print(f"{name:<15}{k:<19}{v['wall']:9.1f}{v['rss']:10.0f}{v['cpu']:8.1f}   {ratio}")
    for name, med in results.items():
        if "stages" not in med:
            continue
        print(f"\n{name}, one command per stage (jwst's strun / webbflow run): peak MiB, CPU s, ratios")
        js, ws = med["stages"]["jwst"], med["stages"]["webbflow"]
        for st in js:
            a, b = js[st], ws.get(st)
            if b is None:
                continue
            print(f"  {st:<12}{a['rss']:7.0f} / {b['rss']:7.0f} MiB ({b['rss'] / a['rss']:.2f}x)   "
                  f"{a['cpu']:7.1f} / {b['cpu']:7.1f} s CPU ({b['cpu'] / a['cpu']:.2f}x)")
    for name, med in results.items():
        if "where" in med:
            print_where(name, med["where"])
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "medians": results,
                                         "load": {"before": load_before, "after": load_after}}, indent=2))


if __name__ == "__main__":
    main()
