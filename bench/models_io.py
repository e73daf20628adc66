"""Peak memory and time of opening and saving a full-frame ramp with webbflow.models.

    python bench/models_io.py [--ngroups 10] [--size 2048] [--compare-stdatamodels]

Each measurement runs in a fresh process so that peak RSS belongs to it alone.
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

from _child import HWM  # bench/ is on sys.path when a benchmark runs as a script

CHILD = HWM + r"""
import json, resource, sys, time
import numpy as np
kind, src, dst = sys.argv[1:4]
t0 = time.perf_counter()
if kind == "webbflow":
    from webbflow import models
    m = models.open(src)
    m.save(dst)
else:
    from stdatamodels.jwst import datamodels
    m = datamodels.open(src)
    m.save(dst)
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "peak_rss_mib": _hwm()}))
"""

BASELINE = HWM + r"""
import json, resource
import numpy, astropy.io.fits, asdf, pydantic
KIND = __import__("sys").argv[1]
if KIND == "webbflow":
    import webbflow.models
else:
    import stdatamodels.jwst.datamodels
print(json.dumps({"peak_rss_mib": _hwm()}))
"""


def make_input(path, size, ngroups, nints=1):
    import numpy as np

    from webbflow import models

    rng = np.random.default_rng(1)
    data = rng.integers(10000, 20000, size=(nints, ngroups, size, size), dtype=np.uint16)
    m = models.Level1bModel(data)
    m.meta.instrument.name = "NIRCAM"
    m.meta.instrument.detector = "NRCA1"
    m.meta.exposure.type = "NRC_IMAGE"
    m.meta.exposure.ngroups = ngroups
    m.meta.exposure.nints = nints
    m.meta.telescope = "JWST"
    m.save(path)
    return os.path.getsize(path)


def run(kind, *args):
    out = subprocess.run([sys.executable, "-c", kind, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--ngroups", type=int, default=10)
    ap.add_argument("--compare-stdatamodels", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "jw00000000000_00000_00000_nrca1_uncal.fits")
        nbytes = make_input(src, a.size, a.ngroups)
        kinds = ["webbflow"] + (["stdatamodels"] if a.compare_stdatamodels else [])
        print(f"input: {a.size}x{a.size}x{a.ngroups} groups uint16, {nbytes / 2**20:.1f} MiB")
        for k in kinds:
            base = run(BASELINE, k)
            res = run(CHILD, k, src, os.path.join(d, f"out_{k}.fits"))
            print(
                f"{k:13s} open+save {res['seconds']:.2f} s, peak RSS {res['peak_rss_mib']:.0f} MiB "
                f"(imports alone {base['peak_rss_mib']:.0f} MiB, so {res['peak_rss_mib'] - base['peak_rss_mib']:.0f} MiB for the data)"
            )


if __name__ == "__main__":
    main()
