"""webbflow's detector1 against jwst 3.0's calwebb_detector1, side by side, in one run.

    python bench/detector1.py [--cases nircam,miri] [--rounds 1] [--workdir DIR]
                              [--miri-nints 3] [--miri-ngroups 50] [--scaling 1,2,4]
                              [--no-warm] [--no-prefect] [--json out.json]

What it does, all on the same inputs with the same CRDS cache:

1. **Inputs.**  ``webbflow.refs.simulator.simulate`` writes a NIRCam full frame
   (2048x2048, 10 groups, 1 integration) and a MIRI full frame (1024x1032,
   ``--miri-ngroups`` groups, ``--miri-nints`` integrations), each with its
   synthetic references and a local CRDS cache (``CRDS_PATH``), kept in
   ``--workdir`` for later runs.
2. **Whole commands**, alternating, each in a fresh process:
   ``strun calwebb_detector1 X_uncal.fits`` and ``webbflow run detector1
   X_uncal.fits``, ``--rounds`` times.  Wall time is the command's; peak RSS
   and CPU time come from ``/usr/bin/time`` started in between (a child
   spawned straight from this Python process would carry its high-water mark
   in ``ru_maxrss``), or ``wait4`` without it.  Per-step times come
   from jwst's log (``Step X running`` .. ``Step X done``) and from the
   provenance webbflow writes in the rate product.
3. **Warm process** (``--no-warm`` skips it): in one process per side, the
   pipeline runs once to warm imports, CRDS and compiled kernels, then again,
   timed: ``Detector1Pipeline.call`` against the detector1 flow's body
   (``detector1.fn``), neither writing files.
4. **Prefect's cost** (``--no-prefect`` skips it): the same flow under Prefect
   in a warm process with a temporary server: the first flow run (server
   start), then a run whose task bookkeeping is measured against the plain
   call; and the whole command with ``WEBBFLOW_PREFECT=on``.
5. **Memory scaling** (``--scaling 1,3,20``): webbflow's peak RSS for MIRI
   exposures of 1, 3, 20 ... integrations (the same groups; 20 integrations
   of 50 groups make a 2 GiB uncal file), streamed one integration at a time
   (``WEBBFLOW_STREAM=always``) and, where it fits the default memory budget,
   in memory; the default choice is marked.

It prints one table per section and the ratios webbflow/jwst.  Nothing here
is a pass/fail test.  The numba kernels are compiled (and cached) by a small
warm-up run before any timing; that one-time cost is printed too.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from _child import HWM  # bench/ is on sys.path when a benchmark runs as a script

PY = sys.executable
BIN = Path(PY).parent


# ---------------------------------------------------------------------------
# inputs


def simulate_case(workdir: Path, name: str, **kw) -> tuple[Path, Path]:
    """(uncal, crds_path) for a case, simulated once into workdir/name."""
    d = workdir / name
    done = d / ".bench-done.json"
    if done.exists():
        info = json.loads(done.read_text())
        return Path(info["uncal"]), Path(info["crds_path"])
    code = (
        "import json, sys\n"
        "from webbflow.refs.simulator import simulate\n"
        f"r = simulate({str(d)!r}, **{kw!r})\n"
        "print(json.dumps({'uncal': str(r.uncal[0]), 'crds_path': str(r.crds_path)}))\n"
    )
    t = time.perf_counter()
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True)
    info = json.loads(out.stdout.strip().splitlines()[-1])
    done.write_text(json.dumps(info))
    print(f"  simulated {name}: {Path(info['uncal']).name} ({Path(info['uncal']).stat().st_size / 2**20:.0f} MiB) "
          f"in {time.perf_counter() - t:.0f} s", flush=True)
    return Path(info["uncal"]), Path(info["crds_path"])


def case_env(crds_path: Path, prefect_home: Path, extra: dict | None = None) -> dict:
    env = dict(os.environ)
    for k in ("PREFECT_API_URL", "CRDS_CONTEXT", "CRDS_SERVER_URL"):
        env.pop(k, None)
    env.update({
        "CRDS_PATH": str(crds_path), "CRDS_MODE": "local",
        "PREFECT_HOME": str(prefect_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    })
    env.update(extra or {})
    return env


# ---------------------------------------------------------------------------
# running one command


TIME = Path("/usr/bin/time")


def run_measured(cmd: list[str], env: dict, cwd: Path, log: Path) -> dict:
    """Run cmd; its wall time, its own peak RSS and CPU time; stdout+stderr to log.

    The command is started by ``/usr/bin/time`` when there is one: a child
    spawned straight from this (larger) Python process would inherit its
    high-water mark in ``ru_maxrss``.  Otherwise ``wait4`` gives the numbers.
    """
    stats = log.with_suffix(".time")
    launcher = [str(TIME), "-f", "%e %M %U %S", "-o", str(stats)] if TIME.exists() else []
    with open(log, "w") as f:
        t = time.perf_counter()
        p = subprocess.Popen(launcher + cmd, env=env, cwd=cwd, stdout=f, stderr=subprocess.STDOUT)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n{tail}")
    if launcher:
        fields = stats.read_text().split()[-4:]
        return {"wall_s": wall, "peak_rss_mib": int(fields[1]) / 1024.0, "cpu_s": float(fields[2]) + float(fields[3])}
    return {"wall_s": wall, "peak_rss_mib": ru.ru_maxrss / 1024.0, "cpu_s": ru.ru_utime + ru.ru_stime}


JWST_LOG = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) - stpipe\.(?:step|pipeline)? ?- INFO - Step (\w+) (running|done)")
JWST_LOG2 = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) - [\w.]+ - INFO - Step (\w+) (running|done)")


def jwst_step_times(log: Path) -> dict[str, float]:
    """Seconds per step from strun's log (a step run twice, like gain_scale, is summed)."""
    start: dict[str, datetime] = {}
    out: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        m = JWST_LOG2.match(line)
        if not m:
            continue
        t = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
        name, what = m.group(2), m.group(3)
        if what == "running":
            start[name] = t
        elif name in start:
            out[name] = out.get(name, 0.0) + (t - start.pop(name)).total_seconds()
    return out


def webbflow_step_times(rate_path: Path) -> dict[str, float]:
    from webbflow import models

    m = models.open(rate_path)
    prov = m._asdf_extra.get("webbflow_provenance") or [{}]
    out: dict[str, float] = {}
    for s in prov[-1].get("steps", []):
        out[s["name"]] = out.get(s["name"], 0.0) + float(s["seconds"])
    return out


def run_jwst(uncal: Path, crds: Path, work: Path, tag: str) -> dict:
    out = work / f"jwst-{tag}"
    out.mkdir(parents=True, exist_ok=True)
    log = work / f"jwst-{tag}.log"
    env = case_env(crds, work / "prefect-home")
    res = run_measured([str(BIN / "strun"), "calwebb_detector1", str(uncal), "--output_dir", str(out)], env, work, log)
    res["steps"] = jwst_step_times(log)
    return res


def run_webbflow(uncal: Path, crds: Path, work: Path, tag: str, extra_env: dict | None = None) -> dict:
    out = work / f"webbflow-{tag}"
    out.mkdir(parents=True, exist_ok=True)
    log = work / f"webbflow-{tag}.log"
    env = case_env(crds, work / "prefect-home", extra_env)
    res = run_measured([str(BIN / "webbflow"), "run", "detector1", str(uncal), "--output-dir", str(out)], env, work, log)
    rate = out / uncal.name.replace("_uncal.fits", "_rate.fits")
    res["steps"] = webbflow_step_times(rate)
    return res


# ---------------------------------------------------------------------------
# warm process and Prefect


WARM_JWST = HWM + r"""
import json, resource, sys, time, warnings
warnings.simplefilter("ignore")
from jwst.pipeline import Detector1Pipeline
uncal = sys.argv[1]
t = time.perf_counter(); Detector1Pipeline.call(uncal, save_results=False); first = time.perf_counter() - t
t = time.perf_counter(); Detector1Pipeline.call(uncal, save_results=False); warm = time.perf_counter() - t
print("RESULT " + json.dumps({"first_s": first, "warm_s": warm, "peak_rss_mib": _hwm()}))
"""

WARM_WEBBFLOW = HWM + r"""
import json, resource, sys, time, warnings
warnings.simplefilter("ignore")
uncal, prefect = sys.argv[1], sys.argv[2] == "1"
from webbflow.flows.calwebb_detector1 import detector1, detector1_last_run
t = time.perf_counter(); detector1.fn(uncal); first = time.perf_counter() - t
t = time.perf_counter(); detector1.fn(uncal); warm = time.perf_counter() - t
steps = {r.name: r.seconds for r in detector1_last_run[-1].records}
res = {"first_s": first, "warm_s": warm, "steps": steps, "peak_rss_mib": _hwm()}
if prefect:
    from webbflow.flows.stage import quiet_prefect_settings
    with quiet_prefect_settings():
        t = time.perf_counter(); detector1(uncal); res["prefect_first_s"] = time.perf_counter() - t
        t = time.perf_counter(); detector1(uncal); res["prefect_warm_s"] = time.perf_counter() - t
    t = time.perf_counter(); detector1.fn(uncal); res["plain_again_s"] = time.perf_counter() - t
    res["n_tasks"] = len(detector1_last_run[-1].records)
print("RESULT " + json.dumps(res))
"""


def run_script(code: str, args: list[str], env: dict, cwd: Path, log: Path) -> dict:
    script = cwd / f".bench-{abs(hash(code))}.py"
    script.write_text(code)
    res = run_measured([PY, str(script), *args], env, cwd, log)
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("RESULT "):
            res.update(json.loads(line[len("RESULT "):]))
    return res


# ---------------------------------------------------------------------------
# report


def fmt(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}{unit}"
    return f"{v}{unit}"


def ratio(a, b):
    return None if (a is None or not b) else a / b


def print_table(title: str, header: list[str], rows: list[list]) -> None:
    print(f"\n{title}")
    widths = [max(len(str(h)), *(len(fmt(r[i])) for r in rows)) for i, h in enumerate(header)]
    print("  " + "  ".join(str(h).ljust(w) for h, w in zip(header, widths)))
    print("  " + "  ".join("-" * w for w in widths))
    for r in rows:
        print("  " + "  ".join(fmt(v).ljust(w) for v, w in zip(r, widths)))


def median(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def report_case(name: str, runs_j: list[dict], runs_w: list[dict], runs_wp: list[dict]) -> dict:
    wj = median([r["wall_s"] for r in runs_j])
    ww = median([r["wall_s"] for r in runs_w])
    mj = median([r["peak_rss_mib"] for r in runs_j])
    mw = median([r["peak_rss_mib"] for r in runs_w])
    rows = [
        ["jwst strun calwebb_detector1", wj, mj, median([r["cpu_s"] for r in runs_j]), None, None],
        ["webbflow run detector1", ww, mw, median([r["cpu_s"] for r in runs_w]), ratio(ww, wj), ratio(mw, mj)],
    ]
    if runs_wp:
        wp = median([r["wall_s"] for r in runs_wp])
        mp = median([r["peak_rss_mib"] for r in runs_wp])
        rows.append(["  same, WEBBFLOW_PREFECT=on", wp, mp, median([r["cpu_s"] for r in runs_wp]),
                     ratio(wp, wj), ratio(mp, mj)])
    print_table(f"[{name}] whole command (median of {len(runs_j)} alternating rounds)",
                ["command", "wall s", "peak RSS MiB", "cpu s", "wall ratio", "RSS ratio"], rows)
    if len(runs_j) > 1:
        print("  rounds: jwst wall " + ", ".join(f"{r['wall_s']:.1f}" for r in runs_j)
              + " | webbflow wall " + ", ".join(f"{r['wall_s']:.1f}" for r in runs_w))
    # per step
    sj: dict[str, list] = {}
    sw: dict[str, list] = {}
    for r in runs_j:
        for k, v in r["steps"].items():
            sj.setdefault(k, []).append(v)
    for r in runs_w:
        for k, v in r["steps"].items():
            sw.setdefault(k, []).append(v)
    names = [k for k in sj if k != "Detector1Pipeline"] + [k for k in sw if k not in sj]
    rows = []
    for k in names:
        a, b = median(sj.get(k, [])), median(sw.get(k, []))
        rows.append([k, a, b, ratio(b, a)])
    tj = sum(median(v) for k, v in sj.items() if k != "Detector1Pipeline")
    tw = sum(median(v) for v in sw.values())
    rows.append(["sum of steps", tj, tw, ratio(tw, tj)])
    rows.append(["outside the steps", wj - tj if wj else None, ww - tw if ww else None, None])
    print_table(f"[{name}] per step, seconds (inside the whole command)", ["step", "jwst", "webbflow", "ratio"], rows)
    return {"jwst": runs_j, "webbflow": runs_w, "webbflow_prefect_on": runs_wp,
            "wall_ratio": ratio(ww, wj), "rss_ratio": ratio(mw, mj)}


# ---------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="nircam,miri", help="comma list of nircam, miri")
    ap.add_argument("--rounds", type=int, default=1, help="alternating jwst/webbflow rounds per case")
    ap.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "webbflow-bench-detector1"))
    ap.add_argument("--miri-nints", type=int, default=3)
    ap.add_argument("--miri-ngroups", type=int, default=50)
    ap.add_argument("--scaling", default="", help="comma list of MIRI integration counts for the memory-scaling table")
    ap.add_argument("--no-warm", action="store_true", help="skip the warm-process comparison")
    ap.add_argument("--no-prefect", action="store_true", help="skip the Prefect cost measurements")
    ap.add_argument("--json", default=None, help="also write the measurements to this JSON file")
    args = ap.parse_args(argv)

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    (work / "prefect-home").mkdir(exist_ok=True)
    cases = [c.strip().lower() for c in args.cases.split(",") if c.strip()]
    specs = {
        "nircam": dict(instrument="nircam", ngroups=10, nints=1, seed=1),
        "miri": dict(instrument="miri", ngroups=args.miri_ngroups, nints=args.miri_nints, seed=2),
    }
    import platform

    print(f"webbflow detector1 benchmark, {datetime.now():%Y-%m-%d %H:%M}, {platform.node()}, "
          f"{os.cpu_count()} CPUs, python {platform.python_version()}")
    try:
        load = os.getloadavg()
        print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    except OSError:
        pass
    print("inputs:")
    inputs = {c: simulate_case(work, f"{c}-{'x'.join(str(specs[c][k]) for k in ('ngroups', 'nints'))}", **specs[c])
              for c in cases}

    # compile and cache the kernels once, on a small exposure of each instrument
    t = time.perf_counter()
    for c in cases:
        small_uncal, small_crds = simulate_case(work, f"{c}-warmup", instrument=specs[c]["instrument"], size=64,
                                                ngroups=min(specs[c]["ngroups"], 12), nints=2, seed=3)
        run_webbflow(small_uncal, small_crds, work, f"{c}-warmup")
    print(f"warm-up (kernel compilation on first use, then cached): {time.perf_counter() - t:.1f} s")

    results: dict = {"cases": {}}
    for c in cases:
        uncal, crds = inputs[c]
        runs_j, runs_w, runs_wp = [], [], []
        for r in range(args.rounds):
            order = ("jwst", "webbflow") if r % 2 == 0 else ("webbflow", "jwst")
            for who in order:
                if who == "jwst":
                    runs_j.append(run_jwst(uncal, crds, work, f"{c}-{r}"))
                else:
                    runs_w.append(run_webbflow(uncal, crds, work, f"{c}-{r}"))
                print(f"  {c} round {r + 1}: {who} {(runs_j if who == 'jwst' else runs_w)[-1]['wall_s']:.1f} s", flush=True)
        if not args.no_prefect:
            runs_wp.append(run_webbflow(uncal, crds, work, f"{c}-prefect", {"WEBBFLOW_PREFECT": "on"}))
        results["cases"][c] = report_case(c, runs_j, runs_w, runs_wp)

        if not args.no_warm:
            env = case_env(crds, work / "prefect-home")
            wj = run_script(WARM_JWST, [str(uncal)], env, work, work / f"warm-jwst-{c}.log")
            ww = run_script(WARM_WEBBFLOW, [str(uncal), "0" if args.no_prefect else "1"], env, work,
                            work / f"warm-webbflow-{c}.log")
            rows = [["jwst Detector1Pipeline.call", wj["first_s"], wj["warm_s"], None],
                    ["webbflow detector1 (flow body)", ww["first_s"], ww["warm_s"], ratio(ww["warm_s"], wj["warm_s"])]]
            print_table(f"[{c}] warm process: second call in the same process, no files written",
                        ["run", "first s", "warm s", "warm ratio"], rows)
            results["cases"][c]["warm"] = {"jwst": wj, "webbflow": ww}
            if not args.no_prefect and "prefect_warm_s" in ww:
                plain = median([ww["warm_s"], ww.get("plain_again_s")])
                book = ww["prefect_warm_s"] - plain
                rows = [
                    ["first flow run under Prefect (temporary server start)", ww["prefect_first_s"] - plain],
                    [f"task bookkeeping per flow run ({ww['n_tasks']} task runs)", book],
                    ["  per task run", book / max(1, ww["n_tasks"])],
                ]
                if runs_wp:
                    rows.append(["whole command: WEBBFLOW_PREFECT=on minus plain",
                                 median([r["wall_s"] for r in runs_wp]) - median([r["wall_s"] for r in runs_w])])
                print_table(f"[{c}] Prefect's cost, seconds (warm process, temporary server)", ["what", "seconds"], rows)

    if args.scaling:
        rows = []
        base = specs["miri"]
        budget = 2 << 30  # flows/_streaming.py's default WEBBFLOW_MEMORY_BUDGET
        for n in [int(x) for x in args.scaling.split(",") if x.strip()]:
            uncal, crds = simulate_case(work, f"miri-{base['ngroups']}x{n}", instrument="miri",
                                        ngroups=base["ngroups"], nints=n, seed=2)
            size = uncal.stat().st_size
            samples = n * base["ngroups"] * 1024 * 1032
            modes = [("streamed", "always")]
            if samples * 5 <= budget:
                modes.insert(0, ("in memory", "never"))
            for label, mode in modes:
                r = run_webbflow(uncal, crds, work, f"scaling-{n}-{mode}", {"WEBBFLOW_STREAM": mode})
                default = (mode == "always") == (samples * 5 > budget)
                rows.append([n, size / 2**20, label + (" (default)" if default else ""), r["peak_rss_mib"],
                             r["peak_rss_mib"] / (size / 2**20), r["wall_s"]])
                results.setdefault("scaling", []).append({"nints": n, "uncal_mib": size / 2**20, "mode": label, **r})
        print_table(f"memory scaling: webbflow run detector1 on MIRI full frames, {base['ngroups']} groups",
                    ["nints", "uncal MiB", "mode", "peak RSS MiB", "RSS / uncal", "wall s"], rows)

    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
