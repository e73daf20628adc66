"""image2 on a full-frame NIRCam rate: webbflow against jwst, in one run.

    python bench/image2.py [--size 2048] [--repeat 2]

Simulates one exposure with its references, makes its rate with webbflow's
detector1 (bit-identical to jwst's), then runs image2 alternately with jwst
(``Image2Pipeline``) and webbflow (``webbflow run image2``), each in a fresh
process with the same CRDS cache, and prints wall time, peak RSS (the
process's own VmHWM) and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _child import HWM  # bench/ is on sys.path when a benchmark runs as a script

CHILD = HWM + r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
kind, rate, out = sys.argv[1:4]
t0 = time.perf_counter()
if kind == "webbflow":
    from webbflow.flows.cli import main
    rc = main(["run", "image2", rate, "--output-dir", out])
    assert rc == 0
else:
    from jwst.pipeline import Image2Pipeline
    Image2Pipeline.call(rate, output_dir=out, save_results=True)
print(json.dumps({"seconds": time.perf_counter() - t0, "peak_rss_mib": _hwm()}))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    from webbflow.flows import detector1
    from webbflow.refs.select import reset_crds_state
    from webbflow.refs.simulator import simulate

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        sim = simulate(d / "raw", instrument="nircam", size=a.size, ngroups=4, nints=1, nexp=1, seed=5)
        os.environ["CRDS_PATH"] = str(sim.crds_path)
        reset_crds_state()
        detector1(str(sim.uncal[0]), output_dir=str(d / "rate"))
        rate = next((d / "rate").glob("*_rate.fits"))
        env = {**os.environ, "CRDS_PATH": str(sim.crds_path)}
        rows = {"webbflow": [], "jwst": []}
        for i in range(a.repeat):
            for kind in ("jwst", "webbflow"):
                out = d / f"{kind}{i}"
                out.mkdir()
                r = subprocess.run([sys.executable, "-c", CHILD, kind, str(rate), str(out)], capture_output=True, text=True, env=env)
                if r.returncode != 0:
                    print(r.stderr[-3000:])
                    raise SystemExit(f"{kind} failed")
                rows[kind].append(json.loads(r.stdout.strip().splitlines()[-1]))
        w = min(rows["webbflow"], key=lambda x: x["seconds"])
        j = min(rows["jwst"], key=lambda x: x["seconds"])
        print(f"image2 on a {a.size}x{a.size} NIRCam rate (best of {a.repeat}, each in a fresh process)")
        print(f"  jwst      {j['seconds']:6.1f} s  {j['peak_rss_mib']:6.0f} MiB")
        print(f"  webbflow  {w['seconds']:6.1f} s  {w['peak_rss_mib']:6.0f} MiB")
        print(f"  ratio     {w['seconds'] / j['seconds']:6.2f}    {w['peak_rss_mib'] / j['peak_rss_mib']:6.2f}")


if __name__ == "__main__":
    main()
