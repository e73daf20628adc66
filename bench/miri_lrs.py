"""MIRI LRS, uncal to Stage 3, webbflow against jwst 3.0 in one run.

    python bench/miri_lrs.py [--nints 12] [--rounds 1] [--workdir DIR] [--json out.json]

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


def run_jwst(obs: Path, work: Path, pipeline: str, env: dict) -> dict:
    """strun detector1 on each uncal, spec2 on each level-2 association, then the level-3 pipeline."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    for f in list(obs.glob("*_uncal.fits")) + list(obs.glob("*_asn.json")):
        shutil.copy(f, work / f.name)
    strun = str(BIN / "strun")
    commands = [["calwebb_detector1", f.name] for f in sorted(work.glob("*_uncal.fits"))]
    commands += [["calwebb_spec2", f.name] for f in level2_asns(work)]
    commands.append([pipeline, level3_asn(work, pipeline).name])
    parts = [timed([strun, *c], work, env) for c in commands]
    return {"wall": sum(p["wall"] for p in parts), "rss": max(p["rss"] for p in parts),
            "cpu": sum(p["cpu"] for p in parts), "commands": len(parts)}


def run_webbflow(obs: Path, out: Path, pipeline: str, env: dict) -> dict:
    return timed([str(BIN / "webbflow"), "run", pipeline, str(level3_asn(obs, pipeline)), "--output-dir", str(out)],
                 obs, env)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nints", type=int, default=12, help="integrations of the slitless time series")
    ap.add_argument("--rounds", type=int, default=1, help="times each side is run (medians shown)")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "webbflow-bench-miri-lrs")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)

    results = {}
    load_before = os.getloadavg()
    for name, (exp_type, extra, pipeline) in MODES.items():
        obs = simulate(args.workdir, exp_type, [x.format(nints=args.nints) for x in extra])
        env = dict(os.environ, CRDS_PATH=str(obs), PREFECT_SERVER_ANALYTICS_ENABLED="false")
        env.pop("PREFECT_API_URL", None)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        run_webbflow(obs, args.workdir / f"{exp_type}-warmup", pipeline, env)  # kernels compiled once
        rows: dict[str, list[dict]] = {"jwst": [], "webbflow": [], "webbflow rerun": []}
        for r in range(args.rounds):
            rows["jwst"].append(run_jwst(obs, args.workdir / f"{exp_type}-jwst", pipeline, env))
            out = args.workdir / f"{exp_type}-wf-{r}"
            shutil.rmtree(out, ignore_errors=True)
            rows["webbflow"].append(run_webbflow(obs, out, pipeline, env))
            rows["webbflow rerun"].append(run_webbflow(obs, out, pipeline, env))
        results[name] = {k: {m: statistics.median(x[m] for x in v) for m in ("wall", "rss", "cpu")}
                         for k, v in rows.items()}
    load_after = os.getloadavg()

    print(f"\nMIRI LRS, uncal to Stage 3 ({args.rounds} round(s), medians); load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after\n")
    print(f"{'mode':<15}{'run':<16}{'wall s':>9}{'peak MiB':>10}{'CPU s':>8}   ratio")
    for name, med in results.items():
        j, w = med["jwst"], med["webbflow"]
        for k, v in med.items():
            if k == "jwst":
                ratio = ""
            elif k == "webbflow rerun":
                ratio = f"{v['wall'] / w['wall']:.2f}x webbflow's run"
            else:
                ratio = (f"{v['wall'] / j['wall']:.2f}x wall, {v['cpu'] / j['cpu']:.2f}x CPU, "
                         f"{v['rss'] / j['rss']:.2f}x memory")
            print(f"{name:<15}{k:<16}{v['wall']:9.1f}{v['rss']:10.0f}{v['cpu']:8.1f}   {ratio}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "medians": results,
                                         "load": {"before": load_before, "after": load_after}}, indent=2))


if __name__ == "__main__":
    main()
