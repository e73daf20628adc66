"""What the benchmarks share: source text for their child scripts (each run with ``python -c``),
and :func:`timed`, one command's wall time, peak RSS and CPU time."""

import subprocess
import tempfile
import time

# the child's own peak RSS in MiB; ru_maxrss would include the parent's high-water mark
HWM = r"""
def _hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
"""

# webbflow's bytecode written once (an editable install is not compiled by pip, as jwst's is), .venv left out
COMPILE = r"""
import compileall, pathlib, re, webbflow
compileall.compile_dir(pathlib.Path(webbflow.__file__).parent, rx=re.compile(r"[/\\]\.venv[/\\]"), quiet=1)
"""


def ratio_table(title: str, runs: dict) -> dict:
    """Print the medians of ``runs`` (``{"jwst": [timed(...)], "webbflow": [...]}``) as a markdown table with a
    webbflow/jwst row; returns the medians."""
    import statistics

    med = {k: {m: statistics.median(r[m] for r in v) for m in ("wall", "cpu", "rss")} for k, v in runs.items()}
    print(f"| {title} | wall s | CPU s | peak MiB |")
    print("| --- | --- | --- | --- |")
    for k in ("jwst", "webbflow"):
        print(f"| {k} | {med[k]['wall']:.1f} | {med[k]['cpu']:.1f} | {med[k]['rss']:.0f} |")
    j, w = med["jwst"], med["webbflow"]
    print(f"| webbflow / jwst | {w['wall'] / j['wall']:.2f} | {w['cpu'] / j['cpu']:.2f} | {w['rss'] / j['rss']:.2f} |")
    return med


def timed(cmd: list[str], cwd, env: dict, keep_output: bool = False) -> dict:
    """Run ``cmd`` under /usr/bin/time: ``{"wall": s, "rss": peak MiB, "cpu": user + system s}``
    (and ``"output"``, its stdout and stderr, with ``keep_output``).

    /usr/bin/time measures the command's own process tree, not this one's high-water mark."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        t = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", "-o", tf.name, *cmd], cwd=cwd, env=env,
                              capture_output=True, text=True)
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            raise SystemExit(f"failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{proc.stderr[-3000:]}")
        rss_kb, user, sys_ = tf.read().split()[-3:]
    res = {"wall": wall, "rss": int(rss_kb) / 1024, "cpu": float(user) + float(sys_)}
    if keep_output:
        res["output"] = proc.stdout + proc.stderr
    return res


def spec2_pair(sim, asn, inputs: list[str], work, env: dict, sides=("jwst", "webbflow")) -> dict:
    """``strun calwebb_spec2`` and ``webbflow run calwebb_spec2`` on the same level-2 association,
    each in its own folder ``work/jwst`` and ``work/webbflow`` holding a copy of ``inputs`` (names in
    ``sim``) and of the association: ``{"jwst": timed(...), "webbflow": timed(...)}``, printed with
    the ratios webbflow/jwst and the load average.  ``sides`` runs only those; a side not run this
    time is taken from its last run's figures (``work/<side>.json``), when there are some."""
    import json
    import os
    import shutil
    import sys
    from pathlib import Path

    venv = Path(sys.executable).parent
    asn = Path(asn).name
    runs = {}
    for who, cmd in (("jwst", [str(venv / "strun"), "calwebb_spec2", asn]),
                     ("webbflow", [str(venv / "webbflow"), "run", "calwebb_spec2", asn])):
        kept = Path(work) / f"{who}.json"
        if who not in sides:
            if kept.exists():
                runs[who] = json.loads(kept.read_text())
                print(f"{who:9s} (its last run, {runs[who]['date']}, load average {runs[who]['load']:.1f})")
            continue
        d = Path(work) / who
        d.mkdir(parents=True, exist_ok=True)
        for name in (*inputs, asn):
            shutil.copyfile(Path(sim) / name, d / name)
        runs[who] = timed(cmd, d, env)
        runs[who].update(load=os.getloadavg()[0], date=time.strftime("%Y-%m-%d %H:%M"))
        kept.write_text(json.dumps(runs[who]))
        print(f"{who:9s} wall {runs[who]['wall']:8.1f} s  cpu {runs[who]['cpu']:8.1f} s  "
              f"peak {runs[who]['rss']:8.0f} MiB  (load average {runs[who]['load']:.1f})", flush=True)
    if len(runs) < 2:
        return runs
    j, w = runs["jwst"], runs["webbflow"]
    print(f"ratio webbflow/jwst: wall {w['wall'] / j['wall']:.3f}  cpu {w['cpu'] / j['cpu']:.3f}  "
          f"peak {w['rss'] / j['rss']:.3f}")
    return runs


def simulated_spec2_pair(work, instrument: str, exp_type: str, nints: int, ngroups: int,
                         sides=("jwst", "webbflow")) -> str:
    """Simulate one time series (``webbflow simulate``) into ``work/sim``, make its rateints with
    jwst's calwebb_detector1, and run :func:`spec2_pair` on its level-2 association with the
    simulation's references; returns the x1dints file name (in ``work/jwst`` and ``work/webbflow``).

    A ``work`` folder where this was done before (``work/sim/.bench-done``, same integrations and
    groups) keeps its simulation and rateints.  The commands run as a user's install runs them:
    ``PYTHONDONTWRITEBYTECODE`` dropped and webbflow's bytecode compiled once before any timing (pip
    compiles jwst's at install)."""
    import json
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    work = Path(work)
    venv = Path(sys.executable).parent
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false", CRDS_MODE="local")
    env.pop("PREFECT_API_URL", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([sys.executable, "-c", COMPILE], env=env, check=True)
    sim = work / "sim"
    done = sim / ".bench-done"
    what = {"instrument": instrument, "exp_type": exp_type, "nints": nints, "ngroups": ngroups}
    if not done.exists() or json.loads(done.read_text()).get("what") != what:
        from webbflow.refs.simulator import simulate

        shutil.rmtree(sim, ignore_errors=True)
        res = simulate(sim, instrument=instrument, exp_type=exp_type, nints=nints, ngroups=ngroups)
        (uncal,) = res.uncal
        (asn,) = res.asn_level2
        env["CRDS_PATH"] = str(res.crds_path)
        timed([str(venv / "strun"), "calwebb_detector1", uncal.name], sim, env)
        done.write_text(json.dumps({"what": what, "uncal": uncal.name, "asn": Path(asn).name,
                                    "crds_path": str(res.crds_path)}))
    kept = json.loads(done.read_text())
    env["CRDS_PATH"] = kept["crds_path"]
    uncal = kept["uncal"]
    spec2_pair(sim, kept["asn"], [uncal.replace("_uncal", "_rateints")], work, env, sides)
    return uncal.replace("_uncal", "_x1dints")
