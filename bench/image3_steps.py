"""Stage 3 alone, step by step: webbflow's image3 against jwst 3.0's Image3Pipeline on the same cal files.

    python bench/image3_steps.py --obs DIR [--rounds 3] [--before PATH] [--json out.json]

``--obs`` is a folder with a level-3 imaging association and its cal files (for example
the ``wf-0`` output folder of ``bench/observation.py`` with the simulated observation's
``*_image3_*asn.json`` copied in, or any image3 association whose members exist) and a
CRDS cache (``CRDS_PATH`` is set to it unless already set).  Each round runs, each in a
fresh process from a copy of that folder: jwst's ``Image3Pipeline.call(asn)``, webbflow's
``image3`` flow body on the association's members, and, with ``--before PATH``, the same
webbflow call with ``PATH`` first on ``PYTHONPATH`` (a folder holding an older checkout as
``PATH/webbflow``), so that a change is measured against the code before it under the same
load.  Every process records, per step, its wall time and its CPU time (the process's, all
threads, and its forked workers'), and its library imports separately.  The medians over ``--rounds`` are printed
with the ratios to jwst, and the libraries' imports plus the call.  Both sides import their steps'
libraries before the call (jwst with ``jwst.pipeline``, webbflow with the image3 module, the
libraries its steps use: photutils, tweakwcs, stcal, and the CRDS client, which ``jwst.pipeline``
imports through stpipe), so that "whole call" compares the same work.  On a shared machine compare the
CPU columns: wall times follow the load.  Not a pass/fail test.
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
from pathlib import Path

PY = sys.executable

# run in the child: prints one JSON line {"imports": s, "steps": {name: [wall, cpu]}, "total": [wall, cpu]}
_JWST = r"""
import json, os, sys, time
def cpu():  # this process's CPU and that of the children it waited for (webbflow's forked workers)
    t = os.times()
    return time.process_time() + t.children_user + t.children_system
c0 = cpu()
from jwst.pipeline import Image3Pipeline
import stpipe.step as S
imports = cpu() - c0
steps = {}
orig = S.Step.run
def run(self, *a, **k):
    w, c = time.perf_counter(), cpu()
    try:
        return orig(self, *a, **k)
    finally:
        n = type(self).__name__
        if n != "Image3Pipeline":
            s = steps.setdefault(n, [0.0, 0.0])
            s[0] += time.perf_counter() - w
            s[1] += cpu() - c
S.Step.run = run
w, c = time.perf_counter(), cpu()
Image3Pipeline.call(sys.argv[1], output_dir=sys.argv[2])
print(json.dumps({"imports": imports, "steps": steps, "total": [time.perf_counter() - w, cpu() - c]}))
"""

_WEBBFLOW = r"""
import json, os, sys, time
from pathlib import Path
def cpu():  # this process's CPU and that of the children it waited for (webbflow's forked workers)
    t = os.times()
    return time.process_time() + t.children_user + t.children_system
c0 = cpu()
import webbflow.flows.calwebb_image3 as i3
import webbflow.flows.stage as st
# the steps' libraries before the call, as jwst's ``import jwst.pipeline`` imports them with its step classes,
# and the CRDS client, which jwst's import brings in through stpipe (webbflow imports it at its first selection)
getattr(i3, "_import_step_libraries", lambda: None)()
import crds
image3 = vars(i3)["image3"]  # the flow's body as the module holds it (no Prefect import where it is deferred)
imports = cpu() - c0
steps = {}
orig = st.run_step
def run_step(name, *a, **k):
    w, c = time.perf_counter(), cpu()
    try:
        return orig(name, *a, **k)
    finally:
        s = steps.setdefault(name, [0.0, 0.0])
        s[0] += time.perf_counter() - w
        s[1] += cpu() - c
st.run_step = run_step
asn_path = Path(sys.argv[1])
asn = json.loads(asn_path.read_text())
product = asn["products"][0]
members = [str(asn_path.parent / m["expname"]) for m in product["members"] if m.get("exptype", "science") == "science"]
w, c = time.perf_counter(), cpu()
image3.fn(members, product_name=product["name"], output_dir=sys.argv[2], asn_id=asn.get("asn_id"),
          asn_info=(asn.get("asn_pool"), asn_path.name))
print(json.dumps({"imports": imports, "steps": steps, "total": [time.perf_counter() - w, cpu() - c]}))
"""

# jwst's step classes and webbflow's step names, in the pipeline's order
STEPS = [("TweakRegStep", "tweakreg"), ("SkyMatchStep", "skymatch"), ("OutlierDetectionStep", "outlier_detection"),
         ("ResampleStep", "resample"), ("SourceCatalogStep", "source_catalog")]


def _run(code: str, obs: Path, work: Path, env: dict) -> dict:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    asn = next(iter(sorted(obs.glob("*_image3_*asn.json"))))
    shutil.copy(asn, work / asn.name)
    for m in json.loads(asn.read_text())["products"][0]["members"]:
        shutil.copy(obs / m["expname"], work / m["expname"])
    out = work / "out"
    out.mkdir()
    p = subprocess.run([PY, "-c", code, asn.name, str(out)], cwd=work, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"a Stage 3 run failed in {work}:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--obs", type=Path, required=True, help="folder with the image3 association and its cal files")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--before", type=Path, help="folder holding an older checkout as <folder>/webbflow")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "webbflow-bench-image3-steps")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false")
    env.setdefault("CRDS_PATH", str(args.obs))
    env.pop("PREFECT_API_URL", None)
    sides = {"jwst": (_JWST, env), "webbflow": (_WEBBFLOW, env)}
    if args.before:
        before = dict(env, PYTHONPATH=os.pathsep.join([str(args.before)] + [p for p in [env.get("PYTHONPATH")] if p]))
        sides["webbflow before"] = (_WEBBFLOW, before)
    runs: dict[str, list[dict]] = {k: [] for k in sides}
    load = [os.getloadavg()[0]]
    for r in range(args.rounds):
        for name, (code, e) in sides.items():  # interleaved: each round sees about the same load
            runs[name].append(_run(code, args.obs, args.workdir / name.replace(" ", "-"), e))
            print(f"round {r + 1}: {name} {runs[name][-1]['total'][1]:.1f} s CPU", flush=True)
    load.append(os.getloadavg()[0])

    def med(name, key, i):
        vals = []
        for run in runs[name]:
            if key == "steps":
                vals.append(sum(v[i] for v in run["steps"].values()))
            elif key in ("imports",):
                vals.append(run["imports"])
            elif key == "process":  # what the process spends: the libraries' imports and the call
                vals.append(run["imports"] + run["total"][1])
            elif key == "total":
                vals.append(run["total"][i])
            else:
                v = run["steps"].get(key)
                vals.append(v[i] if v else 0.0)
        return statistics.median(vals)

    print(f"\nStage 3, {args.rounds} round(s), medians; load average {load[0]:.1f} before, {load[1]:.1f} after\n")
    head = f"{'step':<20}" + "".join(f"{n + ' wall':>24}{n + ' CPU':>24}" for n in sides)
    print(head)
    rows = [(w, [j if n == "jwst" else w for n in sides]) for j, w in STEPS]
    for label, keys in rows + [("all steps", ["steps"] * len(sides)), ("whole call", ["total"] * len(sides)),
                               ("imports (CPU)", ["imports"] * len(sides)),
                               ("imports + call (CPU)", ["process"] * len(sides))]:
        line = f"{label:<20}"
        for n, k in zip(sides, keys):
            line += f"{med(n, k, 0):24.2f}{med(n, k, 1):24.2f}"
        print(line)
    for n in sides:
        if n != "jwst":
            print(f"\n{n} / jwst, all steps: {med(n, 'steps', 0) / med('jwst', 'steps', 0):.2f}x wall, "
                  f"{med(n, 'steps', 1) / med('jwst', 'steps', 1):.2f}x CPU; whole call "
                  f"{med(n, 'total', 0) / med('jwst', 'total', 0):.2f}x wall, {med(n, 'total', 1) / med('jwst', 'total', 1):.2f}x CPU; "
                  f"imports + call {med(n, 'process', 1) / med('jwst', 'process', 1):.2f}x CPU")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "load": load}, indent=2))


if __name__ == "__main__":
    main()
