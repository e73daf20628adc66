"""Load: one association of many small exposures through stages 1 to 3, on this machine.

    python bench/load.py [--nexp 32] [--size 128] [--ngroups 3] [--workers 2]
                         [--stars 40] [--skip-tweakreg] [--workdir DIR] [--json out.json]

1. This process simulates ``--nexp`` dithered NIRCam exposures (``--size`` square subarray,
   ``--ngroups`` groups, one integration) with their synthetic references and local CRDS
   cache (``webbflow.refs.simulator.simulate``), and the level-3 association the simulator
   writes (members named by their cal files; the flow starts each from its uncal).
2. A child process runs ``webbflow.flows.association.run_association`` on it: every member
   through detector1 and image2 on Prefect's thread runner (``--workers`` threads), then
   image3 on all the cal files.  Prefect runs with a temporary server in a private
   PREFECT_HOME, as a user's first run would.
3. Reported: the child's wall time, and the peak RSS of the child and what it waited for
   (``getrusage(RUSAGE_CHILDREN).ru_maxrss``: the largest of them, not a sum).  The
   simulation happens in this process, so it does not count.
4. Nothing lost: each member reported ok; ``--nexp`` rate, rateints and cal files exist and
   open with ``webbflow.models.open`` as the right model with the right shape; the i2d
   mosaic opens and has finite pixels; no ``.part`` temporary file remains.

tweakreg needs at least 15 matched stars per exposure (jwst's default): ``--stars`` sets the
simulated stars per field so that small fields can align; ``--skip-tweakreg`` passes
``{"image3": {"tweakreg": {"skip": True}}}`` instead.  This is a benchmark, not a test:
it prints figures and exits non-zero only when something was lost.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, sys, time
from webbflow.flows.association import run_association
asn, out, workers, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
t0 = time.perf_counter()
res = run_association(asn, output_dir=out, steps=steps or None, runner="threads", max_workers=workers)
summary = {
    "seconds_in_flow": time.perf_counter() - t0,
    "members": [{"member": m.member, "ok": m.ok, "error": m.error, "seconds": m.seconds, "cal": m.cal} for m in res.members],
    "stage3": {k: {"written": [str(p) for p in (v.get("written") or [])]} for k, v in res.stage3.items()},
}
print("LOAD-SUMMARY " + json.dumps(summary))
"""


def simulate_inputs(work: Path, nexp: int, size: int, ngroups: int, stars: int):
    from webbflow.refs.simulator import simulate

    t0 = time.perf_counter()
    sim = simulate(work / "raw", instrument="nircam", detector="nrca1", size=size, ngroups=ngroups, nints=1,
                   nexp=nexp, seed=2026, stars_per_field=stars)
    return sim, time.perf_counter() - t0


def run_child(sim, out: Path, workers: int, steps: dict, work: Path) -> tuple[int, float, float, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "WEBBFLOW_PREFECT")}
    env.update(CRDS_PATH=str(sim.crds_path), PREFECT_HOME=str(work / "prefect-home"),
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING",
               PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180")
    log = work / "child.log"
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        p = subprocess.run([sys.executable, "-c", CHILD, str(sim.asn_level3), str(out), str(workers), json.dumps(steps)],
                           env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=work)
    wall = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    return p.returncode, wall, peak_kib / 1024.0, log.read_text()


def verify(sim, out: Path, nexp: int, size: int, summary: dict | None) -> list[str]:
    """Everything a user would check; returns the problems found (empty: nothing lost)."""
    import numpy as np

    from webbflow import models

    problems = []
    if summary is None:
        return ["the child printed no summary"]
    bad = [m for m in summary["members"] if not m["ok"]]
    if len(summary["members"]) != nexp:
        problems.append(f"{len(summary['members'])} members reported, expected {nexp}")
    problems += [f"member {m['member']} failed: {m['error']}" for m in bad]
    roots = [Path(u).name[: -len("_uncal.fits")] for u in sim.uncal]
    want = {"rate": (models.ImageModel, (size, size)), "rateints": (models.CubeModel, (1, size, size)),
            "cal": (models.ImageModel, (size, size))}
    for r in roots:
        for sfx, (cls, shape) in want.items():
            p = out / f"{r}_{sfx}.fits"
            if not p.exists():
                problems.append(f"missing {p.name}")
                continue
            try:
                m = models.open(p)
            except Exception as exc:  # noqa: BLE001
                problems.append(f"{p.name} does not open: {exc}")
                continue
            if not isinstance(m, cls) or m.data.shape != shape:
                problems.append(f"{p.name} is a {type(m).__name__} of shape {m.data.shape}")
    i2d = sorted(out.glob("*_i2d.fits"))
    i2d = [p for p in i2d if not any(p.name.startswith(r) for r in roots)]  # the mosaic, not per-exposure i2d
    if not i2d:
        problems.append("no Stage 3 i2d mosaic")
    for p in i2d:
        m = models.open(p)
        if not np.isfinite(m.data).any():
            problems.append(f"{p.name} has no finite pixel")
    parts = [p.name for p in out.rglob("*.part")]
    if parts:
        problems.append(f"temporary files left: {parts}")
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nexp", type=int, default=32)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--ngroups", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--stars", type=int, default=40, help="simulated stars per field (tweakreg needs 15 matches)")
    ap.add_argument("--skip-tweakreg", action="store_true")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)

    work = Path(a.workdir) if a.workdir else Path(tempfile.mkdtemp(prefix="webbflow-load-"))
    work.mkdir(parents=True, exist_ok=True)
    out = work / "products"
    sim, sim_s = simulate_inputs(work, a.nexp, a.size, a.ngroups, a.stars)
    raw_mb = sum(Path(u).stat().st_size for u in sim.uncal) / 1e6
    print(f"inputs: {a.nexp} NIRCam exposures {a.size}x{a.size}, {a.ngroups} groups, 1 integration "
          f"({raw_mb:.1f} MB of uncal), simulated in {sim_s:.1f} s, in {work}")
    steps = {"image3": {"tweakreg": {"skip": True}}} if a.skip_tweakreg else {}
    rc, wall, peak_mib, log = run_child(sim, out, a.workers, steps, work)
    summary = None
    for line in log.splitlines():
        if line.startswith("LOAD-SUMMARY "):
            summary = json.loads(line[len("LOAD-SUMMARY "):])
    if rc != 0:
        print(f"the association run failed (exit {rc}); the end of its log:\n{log[-4000:]}")
    problems = verify(sim, out, a.nexp, a.size, summary) if rc == 0 else ["the run failed"]

    per = sorted(m["seconds"] for m in summary["members"]) if summary else []
    print(f"runner: Prefect threads, {a.workers} workers; tweakreg {'skipped' if a.skip_tweakreg else 'on'}")
    print(f"wall time (child process, stages 1-3): {wall:.1f} s")
    if summary:
        print(f"  inside the association flow:        {summary['seconds_in_flow']:.1f} s")
        print(f"  per exposure (detector1+image2):    median {per[len(per) // 2]:.2f} s, max {per[-1]:.2f} s")
    print(f"peak RSS (child and what it waited for): {peak_mib:.0f} MiB")
    n_files = len([p for p in out.glob('*') if p.is_file()]) if out.exists() else 0
    print(f"products: {n_files} files in {out}")
    if problems:
        print("LOST OR INVALID:")
        for p in problems:
            print("  " + p)
    else:
        print(f"nothing lost: {a.nexp} rate, rateints and cal files and the i2d mosaic open with the expected "
              "models and shapes; no .part file")
    if a.json:
        Path(a.json).write_text(json.dumps({"wall_s": wall, "peak_rss_mib": peak_mib, "nexp": a.nexp, "size": a.size,
                                            "ngroups": a.ngroups, "workers": a.workers, "problems": problems,
                                            "summary": summary}, indent=1))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
