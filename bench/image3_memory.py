"""Peak memory of Stage 3 (image3) as the number of exposures grows, webbflow against jwst.

    python bench/image3_memory.py [--counts 4 16] [--size 512] [--no-jwst] [--workdir DIR]

It simulates a dithered NIRCam observation, makes the cal files once (webbflow's
detector1 and image2, which agree with jwst's bit for bit), then runs Stage 3 on
the first N cal files in a fresh process per measurement, alternating webbflow
and jwst, and prints wall time and peak RSS with their ratios.  webbflow runs
twice: as it chooses by default (exposures that fit half of
WEBBFLOW_MEMORY_BUDGET are kept in memory, like jwst's in_memory=True) and with
``in_memory=False`` (one exposure in memory at a time, what it does beyond the
budget), whose peak should grow little with N.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _child import HWM  # bench/ is on sys.path when a benchmark runs as a script

CHILD = HWM + r"""
import json, os, resource, sys, time, warnings
warnings.simplefilter("ignore")
kind, out, cals = sys.argv[1], sys.argv[2], sys.argv[3:]
t0 = time.perf_counter()
if kind.startswith("webbflow"):
    from webbflow.flows.calwebb_image3 import image3
    from webbflow.flows.stage import quiet_prefect_settings
    with quiet_prefect_settings():
        image3.fn(cals, product_name="bench", output_dir=out, in_memory=False if kind == "webbflow-disk" else None)
else:
    from jwst.pipeline import Image3Pipeline
    from jwst.associations import asn_from_list
    from jwst.associations.lib.rules_level3_base import DMS_Level3_Base
    asn = asn_from_list.asn_from_list(cals, rule=DMS_Level3_Base, product_name="bench")
    p = os.path.join(out, "bench_asn.json")
    with open(p, "w") as f:
        f.write(asn.dump()[1])
    Image3Pipeline.call(p, output_dir=out)
print(json.dumps({"seconds": time.perf_counter() - t0,
                  "peak_rss_mib": _hwm()}))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--counts", type=int, nargs="+", default=[4, 16])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--no-jwst", action="store_true")
    ap.add_argument("--workdir", help="keep the simulated inputs and cal files here and reuse them")
    a = ap.parse_args()
    from webbflow.flows.association import run_association
    from webbflow.refs.select import reset_crds_state
    from webbflow.refs.simulator import simulate

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(a.workdir) if a.workdir else Path(tmp)
        n = max(a.counts)
        t0 = time.perf_counter()
        made = d / f"cal{a.size}x{n}.json"
        if made.exists():
            info = json.loads(made.read_text())
            crds_path, cals = info["crds_path"], info["cals"]
        else:
            sim = simulate(d / "raw", instrument="nircam", size=a.size, ngroups=4, nints=1, nexp=n, seed=99)
            crds_path = str(sim.crds_path)
            os.environ["CRDS_PATH"] = crds_path
            reset_crds_state()
            res = run_association(sim.asn_level3, output_dir=d / "cal", stage3=False)
            cals = [str(m.cal) for m in res.members if m.ok]
            made.write_text(json.dumps({"crds_path": crds_path, "cals": cals}))
        print(f"{len(cals)} cal files of {a.size}x{a.size} ready in {time.perf_counter() - t0:.0f} s; "
              f"load average {os.getloadavg()[0]:.1f}")
        env = {**os.environ, "CRDS_PATH": crds_path}
        kinds = ["webbflow", "webbflow-disk"] + ([] if a.no_jwst else ["jwst"])
        print(f"{'N':>4} " + " ".join(f"{k + ' s':>18} {'MiB':>6}" for k in kinds)
              + ("" if a.no_jwst else "   ratios to jwst (time, RSS): default, in_memory=False"))
        for count in a.counts:
            row = {}
            for kind in kinds:
                out = d / f"{kind}{count}"
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()
                r = subprocess.run([sys.executable, "-c", CHILD, kind, str(out), *cals[:count]], capture_output=True,
                                   text=True, env=env)
                if r.returncode != 0:
                    print(r.stderr[-3000:])
                    raise SystemExit(f"{kind} failed")
                row[kind] = json.loads(r.stdout.strip().splitlines()[-1])
            line = f"{count:>4} " + " ".join(f"{row[k]['seconds']:>18.1f} {row[k]['peak_rss_mib']:>6.0f}" for k in kinds)
            if "jwst" in row:
                j = row["jwst"]
                line += "   " + ", ".join(
                    f"{row[k]['seconds'] / j['seconds']:.2f} {row[k]['peak_rss_mib'] / j['peak_rss_mib']:.2f}"
                    for k in ("webbflow", "webbflow-disk"))
            print(line, flush=True)


if __name__ == "__main__":
    main()
